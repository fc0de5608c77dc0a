/*
 * test_gradcheck.c - backpropagation against centred finite differences.
 *
 * The finite differences are taken of an independent double-precision model of the same net
 * (written here, sharing no code with the library), with h = 1e-5: the truncation error is
 * O(h^2) ~ 1e-10 and the rounding error O(1e-16 / h) ~ 1e-11, so the reference gradient is good
 * to ~1e-9 relative. The library computes in float: each GEMM and elementwise pass adds a relative
 * error of order sqrt(k) * 6e-8, a few times 1e-6 after three layers and the cost's divisions.
 * We assert a norm-wise relative error below 1e-4: 1-2 orders above float rounding, while a
 * wrong sign, a missing sigma' or a wrong 1/B factor gives an error of order 1.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backprop.h"
#include "testutil.h"

static const double GRAD_REL_TOL = 1e-4;
enum { BATCH = 5, MAXL = 4 };

typedef struct {
    int n_layers, sizes[MAXL + 1];
    bp_activation hidden, output;
    bp_cost cost;
    double *w[MAXL], *b[MAXL]; /* double copies of the parameters, column-major */
} ref_net;

static double act_d(bp_activation act, double z)
{
    switch (act) {
    case BP_ACT_SIGMOID: return 1.0 / (1.0 + exp(-z));
    case BP_ACT_TANH: return tanh(z);
    case BP_ACT_RELU: return z > 0 ? z : 0;
    default: return z;
    }
}

/* When set, the cost is not the net's but a caller's own: C_x = sum_i R(i, x) a_i^L, so that
 * dC_x/dA^L = R, the gradient bp_net_backward is given. */
static const float *external_r;

/* The mean cost over the batch, all in double, inputs in double too (so that they can be
 * perturbed finely for dC/dX). */
static double ref_cost_dx(const ref_net *r, const double *x, const float *y)
{
    double total = 0;
    double a[64], z[64];
    for (int s = 0; s < BATCH; s++) {
        for (int i = 0; i < r->sizes[0]; i++)
            a[i] = x[i + s * r->sizes[0]];
        for (int l = 0; l < r->n_layers; l++) {
            int nin = r->sizes[l], nout = r->sizes[l + 1];
            bp_activation act = l == r->n_layers - 1 ? r->output : r->hidden;
            double zmax = -INFINITY;
            for (int i = 0; i < nout; i++) {
                z[i] = r->b[l][i];
                for (int k = 0; k < nin; k++)
                    z[i] += r->w[l][i + k * nout] * a[k];
                zmax = fmax(zmax, z[i]);
            }
            if (act == BP_ACT_SOFTMAX) {
                double sum = 0;
                for (int i = 0; i < nout; i++)
                    sum += exp(z[i] - zmax);
                for (int i = 0; i < nout; i++)
                    a[i] = exp(z[i] - zmax) / sum;
            } else {
                for (int i = 0; i < nout; i++)
                    a[i] = act_d(act, z[i]);
            }
        }
        int nL = r->sizes[r->n_layers];
        for (int i = 0; i < nL && external_r; i++)
            total += (double)external_r[i + s * nL] * a[i];
        for (int i = 0; i < nL && !external_r; i++) {
            double yi = y[i + s * nL], ai = a[i];
            if (r->cost == BP_COST_QUADRATIC)
                total += 0.5 * (ai - yi) * (ai - yi);
            else if (r->cost == BP_COST_CROSS_ENTROPY)
                total -= yi * log(ai) + (1 - yi) * log(1 - ai);
            else
                total -= yi * log(ai);
        }
    }
    return total / BATCH;
}

static double ref_cost(const ref_net *r, const float *x, const float *y)
{
    double xd[64 * BATCH];
    for (int i = 0; i < r->sizes[0] * BATCH; i++)
        xd[i] = x[i];
    return ref_cost_dx(r, xd, y);
}

/* The targets check_net trains against: one-hot columns (what a data set's labels give), or a
 * mix that a caller's own targets may hold: a column of zeros, soft targets that do not sum
 * to 1, and a one-hot column. BP1 must be exact for all of them, shortcuts included. */
static int general_targets;

/* Returns the norm-wise relative error ||g_bp - g_fd|| / ||g_fd||. */
static double check_net(int n_layers, const int *sizes, bp_activation hidden,
                        bp_activation output, bp_cost cost, const char *backend)
{
    bp_net_config cfg;
    bp_net_config_init(&cfg);
    cfg.sizes = sizes;
    cfg.n_sizes = n_layers + 1;
    cfg.hidden = hidden;
    cfg.output = output;
    cfg.cost = cost;
    cfg.seed = 1234 + n_layers;
    cfg.max_batch = BATCH;
    cfg.backend = backend;
    /* Xavier keeps the pre-activations O(1), so no ReLU sits near its kink by accident
     * more often than chance, and sigmoids are not saturated. */
    cfg.init = BP_INIT_XAVIER;
    bp_net *net;
    ck_assert_int_eq(bp_net_create(&net, &cfg), BP_OK);

    ref_net r = {.n_layers = n_layers, .hidden = hidden, .output = output, .cost = cost};
    memcpy(r.sizes, sizes, sizeof(int) * (n_layers + 1));
    uint64_t seed = 99 + (uint64_t)hidden * 7 + (uint64_t)output * 31 + (uint64_t)cost;
    for (int l = 1; l <= n_layers; l++) {
        int rows, cols, ld;
        float *w = bp_net_weights(net, l, &rows, &cols, &ld);
        float *b = bp_net_biases(net, l);
        /* Non-zero biases too, so BP3 is exercised. */
        bp_test_fill(b, rows, -0.5f, 0.5f, &seed);
        r.w[l - 1] = malloc(sizeof(double) * rows * cols);
        r.b[l - 1] = malloc(sizeof(double) * rows);
        for (int j = 0; j < cols; j++)
            for (int i = 0; i < rows; i++)
                r.w[l - 1][i + j * rows] = w[i + j * ld];
        for (int i = 0; i < rows; i++)
            r.b[l - 1][i] = b[i];
    }

    int n0 = sizes[0], nL = sizes[n_layers];
    float x[64 * BATCH], y[64 * BATCH];
    bp_test_fill(x, (size_t)n0 * BATCH, -1, 1, &seed);
    memset(y, 0, sizeof y);
    for (int s = 0; s < BATCH; s++)
        y[(s * 3) % nL + s * nL] = 1.0f; /* one-hot targets */
    if (general_targets) {
        memset(y, 0, sizeof(float) * nL);                     /* sample 0: all zero */
        bp_test_fill(y + nL, (size_t)nL * 2, 0.0f, 0.7f, &seed); /* samples 1, 2: soft */
    }

    const double h = 1e-5;
    double num = 0, den = 0;
    if (external_r) {
        /* The caller's own cost: backpropagate its gradient, and check dC_x/dX as well. The
         * reference's dC/dX of the mean cost is (1/B) dC_x/dX of sample x's column. */
        float dx[64 * BATCH];
        ck_assert_int_eq(bp_net_backward(net, x, n0, external_r, nL, BATCH, dx, n0), BP_OK);
        double xd[64 * BATCH];
        for (int i = 0; i < n0 * BATCH; i++)
            xd[i] = x[i];
        for (int i = 0; i < n0 * BATCH; i++) {
            double saved = xd[i];
            xd[i] = saved + h;
            double up = ref_cost_dx(&r, xd, y);
            xd[i] = saved - h;
            double down = ref_cost_dx(&r, xd, y);
            xd[i] = saved;
            double fd = (up - down) / (2 * h), bp = dx[i] / (double)BATCH;
            num += (bp - fd) * (bp - fd);
            den += fd * fd;
        }
    } else {
        double cost_bp;
        ck_assert_int_eq(bp_net_gradient(net, x, n0, y, nL, BATCH, &cost_bp), BP_OK);
        double cost_ref = ref_cost(&r, x, y);
        ck_assert_msg(fabs(cost_bp - cost_ref) <= 1e-5 * fmax(1, fabs(cost_ref)),
                      "cost %g vs reference %g", cost_bp, cost_ref);
    }
    for (int l = 1; l <= n_layers; l++) {
        int rows, cols, ld;
        bp_net_weights(net, l, &rows, &cols, &ld);
        const float *gw = bp_net_weight_grads(net, l), *gb = bp_net_bias_grads(net, l);
        for (int idx = 0; idx < rows * cols + rows; idx++) {
            double *p = idx < rows * cols ? &r.w[l - 1][idx] : &r.b[l - 1][idx - rows * cols];
            double bp = idx < rows * cols ? gw[(idx % rows) + (idx / rows) * ld]
                                          : gb[idx - rows * cols];
            double saved = *p;
            *p = saved + h;
            double up = ref_cost(&r, x, y);
            *p = saved - h;
            double down = ref_cost(&r, x, y);
            *p = saved;
            double fd = (up - down) / (2 * h);
            num += (bp - fd) * (bp - fd);
            den += fd * fd;
        }
    }
    for (int l = 0; l < n_layers; l++)
        free(r.w[l]), free(r.b[l]);
    bp_net_free(net);
    ck_assert_msg(den > 1e-12, "the gradient is zero: the check would prove nothing");
    return sqrt(num / den);
}

static const int nets[][MAXL + 1] = {{6, 5, 4}, {6, 7, 5, 4}, {5, 8, 6, 7, 4}};

/* One test per (hidden, output, cost) triple, each over 1, 2 and 3 hidden layers. The loop
 * index of the Check loop test enumerates the triples. */
START_TEST(test_gradients_match_finite_differences)
{
    int hidden = _i / (BP_ACT_COUNT * BP_COST_COUNT);
    int output = (_i / BP_COST_COUNT) % BP_ACT_COUNT;
    int cost = _i % BP_COST_COUNT;
    if (hidden == BP_ACT_SOFTMAX)
        return; /* refused as a hidden activation (tested in test_net) */
    int needs_unit_interval = cost != BP_COST_QUADRATIC;
    if (needs_unit_interval && output != BP_ACT_SIGMOID && output != BP_ACT_SOFTMAX)
        return; /* refused pairing (tested in test_net) */
    for (int depth = 1; depth <= 3; depth++)
        for (int be = 0; be < bp_backend_count(); be++) {
            double err = check_net(depth + 1, nets[depth - 1], hidden, output, cost,
                                   bp_backend_name(be));
            ck_assert_msg(err < GRAD_REL_TOL, "%s hidden, %s output, %s cost, %d hidden layers, "
                          "%s: relative gradient error %g", bp_activation_name(hidden),
                          bp_activation_name(output), bp_cost_name(cost), depth,
                          bp_backend_name(be), err);
        }
}
END_TEST

/* Targets that are not one-hot (an all-zero column, soft columns summing to anything): the
 * softmax + log-likelihood shortcut D = A - Y would be wrong here (an all-zero column has zero
 * cost but would get the gradient A); every pair must still match the finite differences. */
START_TEST(test_gradients_with_general_targets)
{
    static const bp_activation outputs[] = {BP_ACT_SIGMOID, BP_ACT_SOFTMAX};
    general_targets = 1;
    for (int o = 0; o < 2; o++)
        for (int cost = 0; cost < BP_COST_COUNT; cost++)
            for (int be = 0; be < bp_backend_count(); be++) {
                double err = check_net(2, nets[0], BP_ACT_TANH, outputs[o], cost,
                                       bp_backend_name(be));
                ck_assert_msg(err < GRAD_REL_TOL, "%s output, %s cost, %s, general targets: "
                              "relative gradient error %g", bp_activation_name(outputs[o]),
                              bp_cost_name(cost), bp_backend_name(be), err);
            }
    general_targets = 0;
}
END_TEST

/* bp_net_backward from a caller's gradient dC_x/dA^L = R (random, per sample): the arena is the
 * gradient of the mean of C_x = R^T a^L and dc_dx is dC_x/dX, both against finite differences,
 * for every output activation (softmax's Jacobian included), one to three hidden layers. */
START_TEST(test_backward_from_output_gradient)
{
    float r_values[64 * BATCH];
    for (int output = 0; output < BP_ACT_COUNT; output++)
        for (int depth = 1; depth <= 3; depth++)
            for (int be = 0; be < bp_backend_count(); be++) {
                uint64_t seed = 7 + (uint64_t)output * 3 + (uint64_t)depth;
                bp_test_fill(r_values, sizeof r_values / sizeof *r_values, -1, 1, &seed);
                external_r = r_values;
                double err = check_net(depth + 1, nets[depth - 1], BP_ACT_TANH, output,
                                       BP_COST_QUADRATIC, bp_backend_name(be));
                external_r = NULL;
                ck_assert_msg(err < GRAD_REL_TOL, "%s output, %d hidden layers, %s: relative "
                              "error of the parameter and input gradients %g",
                              bp_activation_name(output), depth, bp_backend_name(be), err);
            }
}
END_TEST

/* Given the cost's own gradient, bp_net_backward computes what bp_net_gradient computes. */
START_TEST(test_backward_matches_gradient)
{
    const int sizes[] = {6, 7, 5, 4};
    bp_net_config cfg;
    bp_net_config_init(&cfg);
    cfg.sizes = sizes;
    cfg.n_sizes = 4;
    cfg.output = BP_ACT_SOFTMAX;
    cfg.cost = BP_COST_QUADRATIC;
    cfg.max_batch = BATCH;
    bp_net *net;
    ck_assert_int_eq(bp_net_create(&net, &cfg), BP_OK);
    float x[6 * BATCH], y[4 * BATCH] = {0}, out[4 * BATCH], g[4 * BATCH];
    uint64_t seed = 3;
    bp_test_fill(x, 6 * BATCH, -1, 1, &seed);
    for (int s = 0; s < BATCH; s++)
        y[s * 4 + s % 4] = 1;
    ck_assert_int_eq(bp_net_forward(net, x, 6, BATCH, out, 4), BP_OK);
    for (int i = 0; i < 4 * BATCH; i++)
        g[i] = out[i] - y[i]; /* dC_x/dA of the quadratic cost */
    size_t n;
    ck_assert_int_eq(bp_net_gradient(net, x, 6, y, 4, BATCH, NULL), BP_OK);
    bp_net_params(net, &n);
    float *want = malloc(sizeof(float) * n);
    memcpy(want, bp_net_grads(net, NULL), sizeof(float) * n);
    ck_assert_int_eq(bp_net_backward(net, x, 6, g, 4, BATCH, NULL, 0), BP_OK);
    double e = bp_test_nmse(bp_net_grads(net, NULL), want, n);
    ck_assert_msg(e < 1e-12, "nmse %g", e);
    ck_assert_int_eq(bp_net_backward(net, x, 6, g, 4, BATCH, out, 5), BP_EINVAL); /* lddx < 6 */
    ck_assert_int_eq(bp_net_backward(net, x, 6, NULL, 4, BATCH, NULL, 0), BP_EINVAL);
    free(want);
    bp_net_free(net);
}
END_TEST

/* The check must be able to fail: corrupt one gradient entry and see the error jump. */
START_TEST(test_gradcheck_detects_a_wrong_gradient)
{
    const int sizes[] = {4, 3, 2};
    bp_net_config cfg;
    bp_net_config_init(&cfg);
    cfg.sizes = sizes;
    cfg.n_sizes = 3;
    cfg.max_batch = BATCH;
    bp_net *net;
    ck_assert_int_eq(bp_net_create(&net, &cfg), BP_OK);
    float x[4 * BATCH], y[2 * BATCH] = {1, 0, 0, 1, 1, 0, 0, 1, 1, 0};
    uint64_t seed = 5;
    bp_test_fill(x, 4 * BATCH, -1, 1, &seed);
    double c1, c2;
    ck_assert_int_eq(bp_net_gradient(net, x, 4, y, 2, BATCH, &c1), BP_OK);
    /* Directional derivative along the gradient itself: (C(p + h g) - C(p - h g)) / 2h = |g|^2
     * for the true gradient. Scaling g by 2 breaks the identity. */
    size_t n;
    float *p = bp_net_params(net, &n), *g = bp_net_grads(net, NULL);
    float *saved = malloc(sizeof(float) * n), *gcopy = malloc(sizeof(float) * n);
    memcpy(saved, p, sizeof(float) * n);
    memcpy(gcopy, g, sizeof(float) * n);
    double g2 = 0;
    for (size_t i = 0; i < n; i++)
        g2 += (double)gcopy[i] * gcopy[i];
    const float h = 1e-2f / (float)sqrt(g2);
    for (size_t i = 0; i < n; i++)
        p[i] = saved[i] + h * gcopy[i];
    ck_assert_int_eq(bp_net_gradient(net, x, 4, y, 2, BATCH, &c1), BP_OK);
    for (size_t i = 0; i < n; i++)
        p[i] = saved[i] - h * gcopy[i];
    ck_assert_int_eq(bp_net_gradient(net, x, 4, y, 2, BATCH, &c2), BP_OK);
    double directional = (c1 - c2) / (2 * h);
    ck_assert_msg(fabs(directional - g2) < 1e-2 * g2, "directional %g vs |g|^2 %g", directional,
                  g2);
    ck_assert_msg(fabs(directional - 4 * g2) > 1e-1 * g2, "a doubled gradient went unnoticed");
    free(saved), free(gcopy);
    bp_net_free(net);
}
END_TEST

static Suite *gradcheck_suite(void)
{
    Suite *s = suite_create("gradcheck");
    TCase *tc = tcase_create("finite-differences");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_gradients_match_finite_differences, 0,
                        BP_ACT_COUNT * BP_ACT_COUNT * BP_COST_COUNT);
    tcase_add_test(tc, test_gradients_with_general_targets);
    tcase_add_test(tc, test_backward_from_output_gradient);
    tcase_add_test(tc, test_backward_matches_gradient);
    tcase_add_test(tc, test_gradcheck_detects_a_wrong_gradient);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return bp_test_main(gradcheck_suite()); }
