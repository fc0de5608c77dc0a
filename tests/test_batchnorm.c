/*
 * test_batchnorm.c - batch normalisation against an independent double-precision model: the
 * gradient (finite differences) with the batch split across 1, 2 and 3 threads and on both
 * backends, training-mode outputs that do not depend on the split, PyTorch's running averages
 * and their use at inference, the tensor table, L2 and L1 leaving gamma and beta alone, bad
 * specs, and a net that learns with it.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backprop.h"
#include "net/net.h"
#include "testutil.h"

/* B = 96 splits 48 + 48 on two threads and 32 x 3 on three: the net splits a step only when
 * every member gets 16 columns, so these really are split. */
enum { IN = 8, HID = 20, OUT = 4, B = 96 };

static const double GRAD_REL_TOL = 1e-4; /* as test_gradcheck.c argues it */

/* ---- the reference model ---------------------------------------------------------------- */

/* softmax(W2 sigmoid(BN(W1 x + b1)) + b2), or with pre == 0 softmax(W2 sigmoid(BN(x)) + b2);
 * BN(z) = gamma (z - mean) / sqrt(var + 1e-5) + beta, with the batch's mean and biased
 * variance in training and the running ones at inference. */
typedef struct {
    int pre;
    int in; /* IN with the dense layer in front, HID without */
    double w1[HID * IN], b1[HID], gamma[HID], beta[HID], w2[OUT * HID], b2[OUT];
    double rmean[HID], rvar[HID];
} ref_model;

/* The pre-activations of the batch-norm layer, HID x batch. */
static void ref_z1(const ref_model *r, const float *x, int batch, double *z)
{
    for (int j = 0; j < batch; j++)
        for (int i = 0; i < HID; i++) {
            if (!r->pre) {
                z[i + j * HID] = x[i + j * r->in];
                continue;
            }
            double a = r->b1[i];
            for (int k = 0; k < IN; k++)
                a += r->w1[i + k * HID] * x[k + j * IN];
            z[i + j * HID] = a;
        }
}

/* Per feature: the batch's mean and biased variance of z. */
static void ref_stats(const double *z, int batch, double *mean, double *var)
{
    for (int i = 0; i < HID; i++) {
        double m = 0.0, v = 0.0;
        for (int j = 0; j < batch; j++)
            m += z[i + j * HID];
        m /= batch;
        for (int j = 0; j < batch; j++)
            v += (z[i + j * HID] - m) * (z[i + j * HID] - m);
        mean[i] = m;
        var[i] = v / batch;
    }
}

/* The forward pass: h (HID x batch, the batch-norm layer's output) and p (OUT x batch), either
 * may be NULL; returns the mean log-likelihood cost against labels (NULL: 0). */
static double ref_pass(const ref_model *r, const float *x, const int *labels, int batch,
                       int infer, double *h_out, double *p_out)
{
    static double z[HID * B], h[HID * B];
    double mean[HID], var[HID];
    ref_z1(r, x, batch, z);
    if (infer) {
        memcpy(mean, r->rmean, sizeof mean);
        memcpy(var, r->rvar, sizeof var);
    } else {
        ref_stats(z, batch, mean, var);
    }
    for (int j = 0; j < batch; j++)
        for (int i = 0; i < HID; i++) {
            double y = r->gamma[i] * (z[i + j * HID] - mean[i]) / sqrt(var[i] + 1e-5) +
                       r->beta[i];
            h[i + j * HID] = 1.0 / (1.0 + exp(-y));
        }
    if (h_out)
        memcpy(h_out, h, sizeof(double) * HID * (size_t)batch);
    double cost = 0.0;
    for (int j = 0; j < batch; j++) {
        double o[OUT], zmax = -INFINITY, sum = 0.0;
        for (int i = 0; i < OUT; i++) {
            o[i] = r->b2[i];
            for (int k = 0; k < HID; k++)
                o[i] += r->w2[i + k * OUT] * h[k + j * HID];
            zmax = fmax(zmax, o[i]);
        }
        for (int i = 0; i < OUT; i++)
            sum += exp(o[i] - zmax);
        for (int i = 0; i < OUT && p_out; i++)
            p_out[i + j * OUT] = exp(o[i] - zmax) / sum;
        if (labels)
            cost -= o[labels[j]] - zmax - log(sum);
    }
    return cost / batch;
}

/* ---- nets and data ---------------------------------------------------------------------- */

/* [IN, HID, OUT] with --batchnorm (pre), or the spec "batchnorm:sigmoid,dense:OUT:softmax" on
 * HID inputs: batch norm as the first layer, where BP2 below it is never asked for. */
static bp_net *make_net(int pre, int threads, int max_batch, const char *backend)
{
    static const int sizes[] = {IN, HID, OUT};
    static const int width = HID;
    bp_net_config nc;
    bp_net_config_init(&nc);
    if (pre) {
        nc.sizes = sizes;
        nc.n_sizes = 3;
        nc.batchnorm = 1;
    } else {
        nc.sizes = &width;
        nc.n_sizes = 1;
        nc.layers = "batchnorm:sigmoid,dense:4:softmax";
    }
    nc.hidden = BP_ACT_SIGMOID;
    nc.output = BP_ACT_SOFTMAX;
    nc.cost = BP_COST_LOG_LIKELIHOOD;
    nc.threads = threads;
    nc.max_batch = max_batch;
    nc.backend = backend;
    nc.seed = 21;
    bp_net *net = NULL;
    ck_assert_msg(bp_net_create(&net, &nc) == BP_OK, "%s", bp_last_error());
    ck_assert_int_eq(bp_net_threads(net), threads);
    /* gamma and beta away from their identity start, so a swapped or missing factor shows. */
    bp_layer *bn = &net->layers[pre ? 1 : 0];
    for (int i = 0; i < HID; i++) {
        bn->scale[i] = 0.6f + 0.07f * (float)i;
        bn->shift[i] = 0.1f * (float)(i % 5) - 0.2f;
    }
    return net;
}

static ref_model *ref_of(const bp_net *net, int pre)
{
    ref_model *r = calloc(1, sizeof *r);
    ck_assert_ptr_nonnull(r);
    r->pre = pre;
    r->in = pre ? IN : HID;
    const bp_layer *bn = &net->layers[pre ? 1 : 0], *top = &net->layers[pre ? 2 : 1];
    if (pre) {
        const bp_layer *l1 = &net->layers[0];
        for (int i = 0; i < HID * IN; i++)
            r->w1[i] = l1->w[i];
        for (int i = 0; i < HID; i++)
            r->b1[i] = l1->b[i];
    }
    for (int i = 0; i < HID; i++) {
        r->gamma[i] = bn->scale[i];
        r->beta[i] = bn->shift[i];
        r->rmean[i] = 0.0;
        r->rvar[i] = 1.0;
    }
    for (int i = 0; i < OUT * HID; i++)
        r->w2[i] = top->w[i];
    for (int i = 0; i < OUT; i++)
        r->b2[i] = top->b[i];
    return r;
}

/* Inputs with a feature-dependent offset and scale (what batch norm is for), and one-hot
 * targets of labels that are not the column's position modulo OUT. */
static void fill_batch(float *x, float *y, int *labels, int in, int batch, uint64_t seed)
{
    uint64_t s = seed;
    bp_test_fill(x, (size_t)in * batch, -1.0f, 1.0f, &s);
    for (int j = 0; j < batch; j++)
        for (int k = 0; k < in; k++)
            x[k + j * in] = x[k + j * in] * (0.5f + 0.2f * (float)(k % 4)) + 0.3f * (float)(k % 3);
    memset(y, 0, sizeof(float) * (size_t)OUT * batch);
    for (int j = 0; j < batch; j++) {
        labels[j] = (j * 7 + 3 + (int)(seed % 5)) % OUT;
        y[(size_t)j * OUT + labels[j]] = 1.0f;
    }
}

static float *running_mean_of(const bp_net *net, int pre) { return net->layers[pre ? 1 : 0].state; }
static float *running_var_of(const bp_net *net, int pre)
{
    return net->layers[pre ? 1 : 0].state + bp_round_floats(HID);
}

/* ---- (1) the gradient ------------------------------------------------------------------- */

/* The norm-wise relative error of each parameter group against centred differences of the
 * reference; b1 is separate: batch norm subtracts the mean, so the cost does not depend on it
 * and its gradient must be 0 (up to float rounding) rather than match a relative bound. */
static void check_gradient(int pre, int threads, const char *backend)
{
    bp_net *net = make_net(pre, threads, B, backend);
    int in = pre ? IN : HID;
    static float x[HID * B], y[OUT * B];
    int labels[B];
    fill_batch(x, y, labels, in, B, 5);
    double cost;
    ck_assert_int_eq(bp_net_gradient(net, x, in, y, OUT, B, &cost), BP_OK);
    ref_model *r = ref_of(net, pre);
    double want_cost = ref_pass(r, x, labels, B, 0, NULL, NULL);
    ck_assert_msg(fabs(cost - want_cost) < 1e-5 * fabs(want_cost), "cost %.9g, reference %.9g",
                  cost, want_cost);

    const bp_layer *l1 = &net->layers[0], *bn = &net->layers[pre ? 1 : 0],
                   *top = &net->layers[pre ? 2 : 1];
    struct {
        const char *name;
        double *p;
        const float *g;
        int n;
    } groups[] = {
        {"gamma", r->gamma, bn->gscale, HID}, {"beta", r->beta, bn->gshift, HID},
        {"W2", r->w2, top->gw, OUT * HID},    {"b2", r->b2, top->gb, OUT},
        {"W1", r->w1, pre ? l1->gw : NULL, HID * IN}, {"b1", r->b1, pre ? l1->gb : NULL, HID},
    };
    const double h = 1e-5;
    double b1_norm = 0.0, all_norm = 0.0;
    for (size_t t = 0; t < sizeof groups / sizeof *groups; t++) {
        if (!groups[t].g)
            continue;
        double err = 0.0, norm = 0.0;
        for (int i = 0; i < groups[t].n; i++) {
            double keep = groups[t].p[i];
            groups[t].p[i] = keep + h;
            double up = ref_pass(r, x, labels, B, 0, NULL, NULL);
            groups[t].p[i] = keep - h;
            double down = ref_pass(r, x, labels, B, 0, NULL, NULL);
            groups[t].p[i] = keep;
            double fd = (up - down) / (2 * h), got = groups[t].g[i];
            err += (fd - got) * (fd - got);
            norm += fd * fd;
            if (t == 5)
                b1_norm += got * got;
        }
        all_norm += norm;
        if (t == 5)
            continue;
        ck_assert_msg(norm > 0.0, "%s: the reference gradient is 0", groups[t].name);
        ck_assert_msg(sqrt(err / norm) < GRAD_REL_TOL,
                      "%s, %d thread(s), %s, %s: relative gradient error %g", groups[t].name,
                      threads, backend, pre ? "after dense" : "first layer", sqrt(err / norm));
    }
    if (pre)
        ck_assert_msg(sqrt(b1_norm / all_norm) < GRAD_REL_TOL, "b1's gradient is %g of the "
                      "whole, not 0", sqrt(b1_norm / all_norm));
    free(r);
    bp_net_free(net);
}

START_TEST(test_gradient_1_2_3_threads)
{
    for (int t = 1; t <= 3; t++)
        check_gradient(1, t, "blas");
}
END_TEST

START_TEST(test_gradient_naive_backend)
{
    check_gradient(1, 1, "naive");
    check_gradient(1, 3, "naive");
}
END_TEST

START_TEST(test_gradient_as_first_layer)
{
    check_gradient(0, 1, "blas");
    check_gradient(0, 2, "blas");
}
END_TEST

/* ---- (2) whole-batch statistics ----------------------------------------------------------- */

/* The training-mode outputs of the batch-norm layer and of the net are those of the whole
 * batch's statistics, whichever thread computed a column. */
START_TEST(test_outputs_do_not_depend_on_threads)
{
    static float x[IN * B], y[OUT * B], h[3][HID * B], p[3][OUT * B];
    int labels[B];
    fill_batch(x, y, labels, IN, B, 9);
    static double h_ref[HID * B], p_ref[OUT * B];
    for (int t = 1; t <= 3; t++) {
        bp_net *net = make_net(1, t, B, "blas");
        bp_net_backprop_unchecked(net, x, IN, y, OUT, B, NULL, NULL);
        memcpy(h[t - 1], net->a[1], sizeof h[0]);
        memcpy(p[t - 1], net->a[2], sizeof p[0]);
        if (t == 1) {
            ref_model *r = ref_of(net, 1);
            ref_pass(r, x, labels, B, 0, h_ref, p_ref);
            free(r);
        }
        bp_net_free(net);
    }
    double split = 0.0, ref = 0.0;
    for (int t = 0; t < 3; t++) {
        for (int i = 0; i < HID * B; i++) {
            split = fmax(split, fabs((double)h[t][i] - h[0][i]));
            ref = fmax(ref, fabs(h[t][i] - h_ref[i]));
        }
        for (int i = 0; i < OUT * B; i++) {
            split = fmax(split, fabs((double)p[t][i] - p[0][i]));
            ref = fmax(ref, fabs(p[t][i] - p_ref[i]));
        }
    }
    ck_assert_msg(split <= 1e-6, "1, 2 and 3 threads differ by %g", split);
    ck_assert_msg(ref <= 2e-6, "outputs differ from the double model by %g", ref);
}
END_TEST

/* ---- (3) running averages, inference, probes ---------------------------------------------- */

/* After each training pass, running = 0.9 running + 0.1 batch (the unbiased variance for
 * running_var), as PyTorch's BatchNorm1d; inference normalises by them; a probe of the gradient
 * leaves them alone and gives the training pass's gradient. */
static void check_running(int threads)
{
    enum { RB = 48 };
    bp_net *net = make_net(1, threads, RB, "blas");
    ref_model *r = ref_of(net, 1);
    static float x[IN * RB], y[OUT * RB];
    int labels[RB];
    static double z[HID * RB];
    for (int step = 0; step < 4; step++) {
        fill_batch(x, y, labels, IN, RB, 100 + (uint64_t)step);
        bp_net_backprop_unchecked(net, x, IN, y, OUT, RB, NULL, NULL);
        double mean[HID], var[HID];
        ref_z1(r, x, RB, z);
        ref_stats(z, RB, mean, var);
        for (int i = 0; i < HID; i++) {
            r->rmean[i] = 0.9 * r->rmean[i] + 0.1 * mean[i];
            r->rvar[i] = 0.9 * r->rvar[i] + 0.1 * var[i] * RB / (RB - 1.0);
        }
    }
    const float *rm = running_mean_of(net, 1), *rv = running_var_of(net, 1);
    for (int i = 0; i < HID; i++) {
        ck_assert_msg(fabs(rm[i] - r->rmean[i]) <= 1e-6 * (1.0 + fabs(r->rmean[i])),
                      "running_mean[%d] %.9g, formula %.9g", i, (double)rm[i], r->rmean[i]);
        ck_assert_msg(fabs(rv[i] - r->rvar[i]) <= 1e-6 * r->rvar[i],
                      "running_var[%d] %.9g, formula %.9g", i, (double)rv[i], r->rvar[i]);
    }

    /* Inference: the running statistics, column by column. */
    fill_batch(x, y, labels, IN, RB, 7);
    static float out[OUT * RB];
    static double p_ref[OUT * RB];
    ck_assert_int_eq(bp_net_forward(net, x, IN, RB, out, OUT), BP_OK);
    ref_pass(r, x, NULL, RB, 1, NULL, p_ref);
    double worst = 0.0;
    for (int i = 0; i < OUT * RB; i++)
        worst = fmax(worst, fabs(out[i] - p_ref[i]));
    ck_assert_msg(worst <= 2e-6, "%d thread(s): inference differs from the running-statistics "
                  "model by %g", threads, worst);
    /* One column alone gives its column of the batch: nothing is shared at inference (to
     * float rounding: a one-column GEMM takes another kernel). */
    float one[OUT];
    ck_assert_int_eq(bp_net_forward(net, x + 5 * IN, IN, 1, one, OUT), BP_OK);
    for (int i = 0; i < OUT; i++)
        ck_assert_msg(fabsf(one[i] - out[5 * OUT + i]) <= 1e-6f, "column 5 alone: %g vs %g",
                      (double)one[i], (double)out[5 * OUT + i]);

    /* A probe: batch statistics, the training pass's gradient, running statistics unmoved. */
    static float before[2 * HID], grads[2 * HID + 1024];
    memcpy(before, rm, sizeof(float) * HID);
    memcpy(before + HID, rv, sizeof(float) * HID);
    size_t n;
    float *g = bp_net_grads(net, &n);
    ck_assert_uint_le(n, sizeof grads / sizeof *grads);
    bp_net_backprop_pass(net, BP_PASS_PROBE, x, IN, y, OUT, RB, NULL, NULL);
    memcpy(grads, g, sizeof(float) * n);
    ck_assert(memcmp(before, rm, sizeof(float) * HID) == 0);
    ck_assert(memcmp(before + HID, rv, sizeof(float) * HID) == 0);
    bp_net_backprop_unchecked(net, x, IN, y, OUT, RB, NULL, NULL);
    ck_assert(memcmp(grads, g, sizeof(float) * n) == 0);
    ck_assert(memcmp(before, rm, sizeof(float) * HID) != 0);
    free(r);
    bp_net_free(net);
}

START_TEST(test_running_statistics)
{
    check_running(1);
    check_running(3);
}
END_TEST

/* A batch of one sample has no unbiased variance: running_var stays, running_mean moves, and
 * the output is finite (every xhat is 0, so the layer gives act(beta)). */
START_TEST(test_batch_of_one)
{
    bp_net *net = make_net(1, 1, 4, "blas");
    float x[IN], y[OUT];
    int label;
    fill_batch(x, y, &label, IN, 1, 3);
    const float *rm = running_mean_of(net, 1), *rv = running_var_of(net, 1);
    ck_assert_int_eq(bp_net_gradient(net, x, IN, y, OUT, 1, NULL), BP_OK);
    const bp_layer *bn = &net->layers[1];
    for (int i = 0; i < HID; i++) {
        ck_assert(rv[i] == 1.0f);
        ck_assert(isfinite(rm[i]));
        float want = 1.0f / (1.0f + expf(-bn->shift[i]));
        ck_assert_msg(fabsf(net->a[1][i] - want) < 1e-6f, "unit %d: %g, not act(beta) %g", i,
                      (double)net->a[1][i], (double)want);
    }
    ck_assert(rm[0] != 0.0f);
    bp_net_free(net);
}
END_TEST

/* ---- (4) the tensor table ----------------------------------------------------------------- */

START_TEST(test_stack_and_tensors)
{
    bp_net *net = make_net(1, 1, 8, "blas");
    ck_assert_int_eq(bp_net_layers(net), 3);
    ck_assert_str_eq(net->layers[0].ops->name, "dense");
    ck_assert_int_eq(net->layers[0].act, BP_ACT_LINEAR);
    ck_assert_str_eq(net->layers[1].ops->name, "batchnorm");
    ck_assert_int_eq(net->layers[1].act, BP_ACT_SIGMOID);
    ck_assert_int_eq(bp_net_size(net, 2), HID);
    /* Not a dense weight matrix: the public weight view has nothing to show. */
    ck_assert_ptr_null(bp_net_weights(net, 2, NULL, NULL, NULL));
    ck_assert_int_eq(bp_net_tensor_count(net), 6);
    static const struct {
        const char *name;
        bp_tensor_role role;
        const char *role_name;
    } want[] = {{"layers.1.weight", BP_ROLE_SCALE, "scale"},
                {"layers.1.bias", BP_ROLE_SHIFT, "shift"}};
    for (int k = 0; k < 2; k++) {
        int t = bp_net_tensor_find(net, want[k].name);
        ck_assert_int_ge(t, 0);
        bp_tensor_info info;
        ck_assert_int_eq(bp_net_tensor(net, t, &info), BP_OK);
        ck_assert_int_eq(info.layer, 2);
        ck_assert_int_eq(info.role, want[k].role);
        ck_assert_str_eq(bp_tensor_role_name(info.role), want[k].role_name);
        ck_assert_int_eq(info.ndim, 1);
        ck_assert_int_eq(info.shape[0], HID);
        ck_assert_int_eq(info.stride[0], 1);
        ck_assert_uint_eq(info.count, HID);
        ck_assert_uint_eq(info.offset % 16, 0);
        const float *p = bp_net_params(net, NULL) + info.offset;
        ck_assert_ptr_eq(p, k == 0 ? net->layers[1].scale : net->layers[1].shift);
    }
    bp_net_free(net);

    /* Initialised as PyTorch does: gamma 1, beta 0, running mean 0, running variance 1. */
    int sizes[] = {IN, HID, OUT};
    bp_net_config nc;
    bp_net_config_init(&nc);
    nc.sizes = sizes;
    nc.n_sizes = 3;
    nc.batchnorm = 1;
    nc.dropout = 0.25f;
    ck_assert_int_eq(bp_net_create(&net, &nc), BP_OK);
    /* dense:linear, batchnorm, dropout, dense: the dropout follows the normalised output. */
    ck_assert_int_eq(bp_net_layers(net), 4);
    ck_assert_str_eq(net->layers[2].ops->name, "dropout");
    const bp_layer *bn = &net->layers[1];
    for (int i = 0; i < HID; i++) {
        ck_assert(bn->scale[i] == 1.0f && bn->shift[i] == 0.0f);
        ck_assert(running_mean_of(net, 1)[i] == 0.0f && running_var_of(net, 1)[i] == 1.0f);
    }
    bp_net_free(net);
}
END_TEST

/* ---- (5) regularisation skips gamma and beta ---------------------------------------------- */

/* One full-batch step: gamma and beta are the same bits with lambda 0, lambda 5 (fused into
 * BP4's target) and l1 3 (the unfused step), and each lands at value - eta G, G the gradient
 * bp_net_gradient gives at the same parameters; the weights, meanwhile, are decayed. */
START_TEST(test_regularisation_leaves_gamma_and_beta)
{
    enum { N = 48 };
    const float eta = 0.5f;
    static float x[IN * N], y[OUT * N];
    int labels[N];
    fill_batch(x, y, labels, IN, N, 17);
    bp_dataset *ds;
    ck_assert_int_eq(bp_dataset_from_floats(&ds, x, labels, N, IN, OUT), BP_OK);

    bp_net *ref = make_net(1, 1, N, "blas");
    ck_assert_int_eq(bp_net_gradient(ref, x, IN, y, OUT, N, NULL), BP_OK);
    const bp_layer *rbn = &ref->layers[1];

    const float lambdas[] = {0.0f, 5.0f, 0.0f}, l1s[] = {0.0f, 0.0f, 3.0f};
    static float gamma[3][HID], beta[3][HID], w1[3][HID * IN];
    for (int c = 0; c < 3; c++) {
        bp_net *net = make_net(1, 1, N, "blas");
        bp_train_config tc;
        bp_train_config_init(&tc);
        tc.batch = N;
        tc.eta = eta;
        tc.lambda = lambdas[c];
        tc.l1 = l1s[c];
        bp_trainer *tr;
        ck_assert_int_eq(bp_trainer_create(&tr, net, ds, &tc), BP_OK);
        bp_epoch_report rep;
        ck_assert_int_eq(bp_trainer_epoch(tr, &rep), BP_OK);
        memcpy(gamma[c], net->layers[1].scale, sizeof gamma[c]);
        memcpy(beta[c], net->layers[1].shift, sizeof beta[c]);
        memcpy(w1[c], net->layers[0].w, sizeof w1[c]);
        bp_trainer_free(tr);
        bp_net_free(net);
    }
    for (int c = 1; c < 3; c++) {
        ck_assert_msg(memcmp(gamma[c], gamma[0], sizeof gamma[0]) == 0, "case %d moved gamma", c);
        ck_assert_msg(memcmp(beta[c], beta[0], sizeof beta[0]) == 0, "case %d moved beta", c);
        ck_assert_msg(memcmp(w1[c], w1[0], sizeof w1[0]) != 0, "case %d left W1 alone", c);
    }
    for (int i = 0; i < HID; i++) {
        /* The trainer's shuffle reorders the sums: equal to float rounding, not to the bit. */
        double want_g = rbn->scale[i] - (double)eta * rbn->gscale[i];
        double want_b = rbn->shift[i] - (double)eta * rbn->gshift[i];
        ck_assert_msg(fabs(gamma[0][i] - want_g) < 1e-6, "gamma[%d] %.9g, want %.9g", i,
                      (double)gamma[0][i], want_g);
        ck_assert_msg(fabs(beta[0][i] - want_b) < 1e-6, "beta[%d] %.9g, want %.9g", i,
                      (double)beta[0][i], want_b);
    }
    bp_net_free(ref);
    bp_dataset_free(ds);
}
END_TEST

/* ---- (6) refusals ------------------------------------------------------------------------- */

static void expect_refused(const char *layers, int batchnorm, const char *text)
{
    int in = 4;
    bp_net_config nc;
    bp_net_config_init(&nc);
    nc.sizes = &in;
    nc.n_sizes = 1;
    nc.layers = layers;
    nc.batchnorm = batchnorm;
    nc.cost = BP_COST_QUADRATIC;
    bp_net *net = NULL;
    ck_assert_int_eq(bp_net_create(&net, &nc), BP_EINVAL);
    ck_assert_ptr_null(net);
    ck_assert_msg(strstr(bp_last_error(), text), "'%s': %s", layers, bp_last_error());
}

START_TEST(test_bad_specs)
{
    expect_refused("dense:8:linear,batchnorm:foo,dense:2", 0, "batchnorm: unknown activation "
                   "'foo'");
    expect_refused("dense:8:linear,batchnorm:sigmoid:2,dense:2", 0, "unknown activation");
    expect_refused("dense:8:linear,batchnorm", 0, "batchnorm cannot be the output layer");
    expect_refused("dense:8:linear,batchnorm:softmax,dense:2", 0, "softmax is an output "
                   "activation");
    expect_refused("dense:8,dense:2", 1, "layers of the spec");
    /* And a good spec with it in the middle plans. */
    int in = 4;
    bp_net_config nc;
    bp_net_config_init(&nc);
    nc.sizes = &in;
    nc.n_sizes = 1;
    nc.layers = "dense:8:linear,batchnorm,dense:2";
    bp_net *net = NULL;
    ck_assert_msg(bp_net_create(&net, &nc) == BP_OK, "%s", bp_last_error());
    ck_assert_int_eq(net->layers[1].act, BP_ACT_LINEAR);
    bp_net_free(net);
}
END_TEST

/* ---- (7) it learns ------------------------------------------------------------------------ */

/* Three classes around random centres, with features on scales from 0.01 to 10 and offsets of
 * up to 18: plain SGD at this rate gets about 65% of the test set (the large features swamp
 * the small ones), batch norm evens them out. Batches of 32 on two threads, so the steps are
 * split. */
START_TEST(test_learns)
{
    enum { N = 900, D = 10, C = 3 };
    static float x[N * D], centres[C * D];
    int labels[N];
    uint64_t s = 77;
    bp_test_fill(centres, C * D, -1.0f, 1.0f, &s);
    static float noise[N * D];
    bp_test_fill(noise, N * D, -0.6f, 0.6f, &s);
    static const float scales[D] = {0.01f, 0.1f, 1.0f, 10.0f, 0.05f, 3.0f, 0.3f, 1.0f, 5.0f, 0.02f};
    for (int j = 0; j < N; j++) {
        labels[j] = j % C;
        for (int k = 0; k < D; k++)
            x[k + j * D] = scales[k] * (centres[k + labels[j] * D] + noise[k + j * D]) +
                           (float)(k * 2);
    }
    bp_dataset *all, *train, *test;
    ck_assert_int_eq(bp_dataset_from_floats(&all, x, labels, N, D, C), BP_OK);
    ck_assert_int_eq(bp_dataset_slice(all, 0, 600, &train), BP_OK);
    ck_assert_int_eq(bp_dataset_slice(all, 600, 300, &test), BP_OK);
    int sizes[] = {D, 24, C};
    bp_net_config nc;
    bp_net_config_init(&nc);
    nc.sizes = sizes;
    nc.n_sizes = 3;
    nc.batchnorm = 1;
    nc.output = BP_ACT_SOFTMAX;
    nc.cost = BP_COST_LOG_LIKELIHOOD;
    nc.threads = 2;
    nc.max_batch = 32;
    bp_net *net;
    ck_assert_int_eq(bp_net_create(&net, &nc), BP_OK);
    bp_train_config tc;
    bp_train_config_init(&tc);
    tc.epochs = 15;
    tc.batch = 32;
    tc.eta = 0.5f;
    tc.lambda = 1.0f;
    bp_train_result res;
    ck_assert_msg(bp_train(net, train, NULL, &tc, &res) == BP_OK, "%s", bp_last_error());
    float acc;
    ck_assert_int_eq(bp_evaluate(net, test, &acc, NULL), BP_OK);
    ck_assert_msg(acc >= 0.95f, "test accuracy %.3f after 15 epochs", (double)acc);
    bp_net_free(net);
    bp_dataset_free(test);
    bp_dataset_free(train);
    bp_dataset_free(all);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("batchnorm");
    TCase *tc = tcase_create("batchnorm");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_gradient_1_2_3_threads);
    tcase_add_test(tc, test_gradient_naive_backend);
    tcase_add_test(tc, test_gradient_as_first_layer);
    tcase_add_test(tc, test_outputs_do_not_depend_on_threads);
    tcase_add_test(tc, test_running_statistics);
    tcase_add_test(tc, test_batch_of_one);
    tcase_add_test(tc, test_stack_and_tensors);
    tcase_add_test(tc, test_regularisation_leaves_gamma_and_beta);
    tcase_add_test(tc, test_bad_specs);
    tcase_add_test(tc, test_learns);
    suite_add_tcase(s, tc);
    return bp_test_main(s);
}
