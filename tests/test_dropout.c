/*
 * test_dropout.c - inverted dropout: the masks (their rate, their scale, their independence from
 * the thread count, their key), the identity at inference, and backpropagation through a fixed
 * mask against finite differences of an independent double-precision model.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "backprop.h"
#include "net/net.h"
#include "testutil.h"

enum { IN = 12, HID = 40, OUT = 4 };

static bp_net *make_net(float p, int threads, int max_batch, bp_cost cost, bp_activation out)
{
    int sizes[] = {IN, HID, OUT};
    bp_net_config nc;
    bp_net_config_init(&nc);
    nc.sizes = sizes;
    nc.n_sizes = 3;
    nc.dropout = p;
    nc.threads = threads;
    nc.max_batch = max_batch;
    nc.cost = cost;
    nc.output = out;
    nc.seed = 7;
    bp_net *net = NULL;
    ck_assert_msg(bp_net_create(&net, &nc) == BP_OK, "%s", bp_last_error());
    return net;
}

static void fill_batch(float *x, float *y, int batch, uint64_t seed)
{
    uint64_t s = seed;
    bp_test_fill(x, (size_t)IN * batch, -1.0f, 1.0f, &s);
    memset(y, 0, sizeof(float) * (size_t)OUT * batch);
    for (int j = 0; j < batch; j++)
        y[(size_t)j * OUT + (size_t)j % OUT] = 1.0f;
}

/* The stack a dropout option makes: dense, dropout, dense; the masks live in the middle. */
START_TEST(test_stack_and_names)
{
    bp_net *net = make_net(0.5f, 1, 8, BP_COST_CROSS_ENTROPY, BP_ACT_SIGMOID);
    ck_assert_int_eq(bp_net_layers(net), 3);
    ck_assert_str_eq(net->layers[1].ops->name, "dropout");
    ck_assert_int_eq(bp_net_size(net, 2), HID);
    /* No parameters: the table goes from layers.0 to layers.2, as PyTorch counts positions. */
    ck_assert_int_eq(bp_net_tensor_count(net), 4);
    ck_assert_int_ge(bp_net_tensor_find(net, "layers.2.weight"), 0);
    ck_assert_int_eq(bp_net_tensor_find(net, "layers.1.weight"), -1);
    bp_net_free(net);
}
END_TEST

/* The share dropped is p (within 5 standard deviations over many draws), the kept units are
 * scaled by exactly 1 / (1 - p), and a new step draws a new mask. */
START_TEST(test_mask_rate_and_scale)
{
    const float p = 0.3f;
    enum { B = 64 };
    bp_net *net = make_net(p, 1, B, BP_COST_CROSS_ENTROPY, BP_ACT_SIGMOID);
    float x[IN * B], y[OUT * B];
    fill_batch(x, y, B, 1);
    const bp_layer *d = &net->layers[1];
    size_t n = (size_t)HID * B, dropped = 0, changed = 0;
    static float first[HID * B];
    for (int step = 0; step < 20; step++) {
        net->step = (uint64_t)step;
        bp_net_backprop_unchecked(net, x, IN, y, OUT, B, NULL, NULL);
        for (size_t i = 0; i < n; i++) {
            float m = d->saved[i];
            ck_assert_msg(m == 0.0f || m == 1.0f / (1.0f - p), "mask value %g", (double)m);
            dropped += m == 0.0f;
            if (step == 0)
                first[i] = m;
            else if (step == 1)
                changed += m != first[i];
        }
    }
    double share = (double)dropped / (20.0 * (double)n);
    double sd = sqrt(p * (1.0 - p) / (20.0 * (double)n));
    ck_assert_msg(fabs(share - p) < 5 * sd, "dropped %.4f of units, expected %.2f", share, p);
    /* Two independent masks differ in 2p(1-p) = 42% of the units. */
    ck_assert_msg(changed > n / 4, "step 1's mask equals step 0's in all but %zu units", changed);
    bp_net_free(net);
}
END_TEST

/* The masks of a step are the same on 1, 2 and 3 threads: each column's comes from its place
 * in the whole batch, not from the thread that computes it. */
START_TEST(test_masks_do_not_depend_on_threads)
{
    enum { B = 96 }; /* 32 columns a member on 3 threads: the step is really split */
    float x[IN * B], y[OUT * B];
    fill_batch(x, y, B, 2);
    static float masks[3][HID * B];
    for (int t = 1; t <= 3; t++) {
        bp_net *net = make_net(0.5f, t, B, BP_COST_CROSS_ENTROPY, BP_ACT_SIGMOID);
        ck_assert_int_eq(bp_net_threads(net), t);
        net->step = 12345;
        bp_net_backprop_unchecked(net, x, IN, y, OUT, B, NULL, NULL);
        memcpy(masks[t - 1], net->layers[1].saved, sizeof masks[0]);
        bp_net_free(net);
    }
    ck_assert(memcmp(masks[0], masks[1], sizeof masks[0]) == 0);
    ck_assert(memcmp(masks[0], masks[2], sizeof masks[0]) == 0);
}
END_TEST

/* At inference dropout is absent: the outputs equal those of the same parameters in a net
 * without the layer, bit for bit, on one thread and on a team. */
START_TEST(test_identity_at_inference)
{
    enum { B = 64 };
    float x[IN * B], y[OUT * B], with[OUT * B], without[OUT * B];
    fill_batch(x, y, B, 3);
    for (int t = 1; t <= 2; t++) {
        bp_net *a = make_net(0.5f, t, B, BP_COST_CROSS_ENTROPY, BP_ACT_SIGMOID);
        bp_net *b = make_net(0.0f, t, B, BP_COST_CROSS_ENTROPY, BP_ACT_SIGMOID);
        /* Same seed, same dense layers: same initial parameters, layer by layer. */
        for (int k = 0; k < bp_net_tensor_count(b); k++) {
            bp_tensor_info ib, ia;
            bp_net_tensor(b, k, &ib);
            /* b's layer 2 is a's layer 3: the dropout layer sits between. */
            char name[32];
            snprintf(name, sizeof name, "layers.%d.%s", ib.layer == 1 ? 0 : 2,
                     bp_tensor_role_name(ib.role));
            int ka = bp_net_tensor_find(a, name);
            ck_assert_int_ge(ka, 0);
            bp_net_tensor(a, ka, &ia);
            ck_assert_uint_eq(ia.count, ib.count);
            memcpy(bp_net_params(a, NULL) + ia.offset, bp_net_params(b, NULL) + ib.offset,
                   sizeof(float) * ib.count);
        }
        a->step = b->step = 99;
        ck_assert_int_eq(bp_net_forward(a, x, IN, B, with, OUT), BP_OK);
        ck_assert_int_eq(bp_net_forward(b, x, IN, B, without, OUT), BP_OK);
        ck_assert(memcmp(with, without, sizeof with) == 0);
        /* And a training pass does drop: its outputs differ. */
        bp_net_backprop_unchecked(a, x, IN, y, OUT, B, NULL, NULL);
        ck_assert(memcmp(bp_net_output(a), without, sizeof without) != 0);
        bp_net_free(a);
        bp_net_free(b);
    }
}
END_TEST

/* Backpropagation through a fixed mask: the library's gradient against centred differences of
 * a double model of softmax(W2 (m .* sigmoid(W1 x + b1)) + b2) with log-likelihood, m the mask
 * the library drew for the step. Tolerance as in test_gradcheck (float vs double). */
enum { GB = 6 };

typedef struct {
    double w1[HID * IN], b1[HID], w2[OUT * HID], b2[OUT], mask[HID * GB];
} ref_model;

static double ref_cost(const ref_model *r, const float *x, const float *y)
{
    double total = 0.0;
    for (int s = 0; s < GB; s++) {
        double h[HID], z[OUT], zmax = -INFINITY, sum = 0.0;
        for (int i = 0; i < HID; i++) {
            double a = r->b1[i];
            for (int k = 0; k < IN; k++)
                a += r->w1[i + k * HID] * x[k + s * IN];
            h[i] = r->mask[i + s * HID] / (1.0 + exp(-a));
        }
        for (int i = 0; i < OUT; i++) {
            z[i] = r->b2[i];
            for (int k = 0; k < HID; k++)
                z[i] += r->w2[i + k * OUT] * h[k];
            zmax = fmax(zmax, z[i]);
        }
        for (int i = 0; i < OUT; i++)
            sum += exp(z[i] - zmax);
        for (int i = 0; i < OUT; i++)
            if (y[i + s * OUT] == 1.0f)
                total -= z[i] - zmax - log(sum);
    }
    return total / GB;
}

/* On each backend (_i: 0 blas, 1 naive). */
START_TEST(test_gradient_through_a_fixed_mask)
{
    bp_net *net = make_net(0.4f, 1, GB, BP_COST_LOG_LIKELIHOOD, BP_ACT_SOFTMAX);
    ck_assert_int_eq(bp_net_set_backend(net, bp_backend_name(_i)), BP_OK);
    float x[IN * GB], y[OUT * GB];
    fill_batch(x, y, GB, 4);
    net->step = 5;
    bp_net_backprop_unchecked(net, x, IN, y, OUT, GB, NULL, NULL);
    static ref_model r;
    const bp_layer *l1 = &net->layers[0], *l3 = &net->layers[2];
    for (int i = 0; i < HID * IN; i++)
        r.w1[i] = l1->w[i];
    for (int i = 0; i < HID; i++)
        r.b1[i] = l1->b[i];
    for (int i = 0; i < OUT * HID; i++)
        r.w2[i] = l3->w[i];
    for (int i = 0; i < OUT; i++)
        r.b2[i] = l3->b[i];
    size_t zeros = 0;
    for (int i = 0; i < HID * GB; i++) {
        r.mask[i] = net->layers[1].saved[i];
        zeros += r.mask[i] == 0.0;
    }
    ck_assert_msg(zeros > 0 && zeros < HID * GB, "the mask must drop some units, not all");
    /* Every parameter of both dense layers, in the order of the library's arrays. */
    double *params[] = {r.w1, r.b1, r.w2, r.b2};
    const float *grads[] = {l1->gw, l1->gb, l3->gw, l3->gb};
    int counts[] = {HID * IN, HID, OUT * HID, OUT};
    double err = 0.0, ref_norm = 0.0;
    const double h = 1e-5;
    for (int t = 0; t < 4; t++)
        for (int i = 0; i < counts[t]; i++) {
            double keep = params[t][i];
            params[t][i] = keep + h;
            double up = ref_cost(&r, x, y);
            params[t][i] = keep - h;
            double down = ref_cost(&r, x, y);
            params[t][i] = keep;
            double fd = (up - down) / (2 * h);
            err += (fd - grads[t][i]) * (fd - grads[t][i]);
            ref_norm += fd * fd;
        }
    ck_assert_msg(sqrt(err / ref_norm) < 1e-4, "relative gradient error %g",
                  sqrt(err / ref_norm));
    bp_net_free(net);
}
END_TEST

START_TEST(test_bad_specs)
{
    static const char *const bad[] = {"dropout:1", "dropout:-0.1", "dropout:x", "dropout:",
                                      "dropout:0.5x", "dropout:nan"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int in = 4;
        bp_net_config nc;
        bp_net_config_init(&nc);
        nc.sizes = &in;
        nc.n_sizes = 1;
        char spec[64];
        snprintf(spec, sizeof spec, "dense:8,%s,dense:2", bad[i]);
        nc.layers = spec;
        bp_net *net = NULL;
        ck_assert_int_eq(bp_net_create(&net, &nc), BP_EINVAL);
        ck_assert_ptr_null(net);
        ck_assert_msg(strstr(bp_last_error(), "drop probability"), "%s: %s", bad[i],
                      bp_last_error());
    }
    /* Not as the output layer, and not as an option beside a spec. */
    int in = 4;
    bp_net_config nc;
    bp_net_config_init(&nc);
    nc.sizes = &in;
    nc.n_sizes = 1;
    nc.layers = "dense:8,dropout:0.5";
    bp_net *net = NULL;
    ck_assert_int_eq(bp_net_create(&net, &nc), BP_EINVAL);
    ck_assert_ptr_nonnull(strstr(bp_last_error(), "cannot be the output layer"));
    nc.layers = "dense:8,dense:2";
    nc.dropout = 0.5f;
    ck_assert_int_eq(bp_net_create(&net, &nc), BP_EINVAL);
    ck_assert_ptr_nonnull(strstr(bp_last_error(), "layers of the spec"));
    int sizes[] = {4, 8, 2};
    bp_net_config_init(&nc);
    nc.sizes = sizes;
    nc.n_sizes = 3;
    nc.dropout = 1.0f;
    ck_assert_int_eq(bp_net_create(&net, &nc), BP_EINVAL);
    ck_assert_ptr_nonnull(strstr(bp_last_error(), "probability in [0, 1)"));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("dropout");
    TCase *tc = tcase_create("dropout");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_stack_and_names);
    tcase_add_test(tc, test_mask_rate_and_scale);
    tcase_add_test(tc, test_masks_do_not_depend_on_threads);
    tcase_add_test(tc, test_identity_at_inference);
    tcase_add_loop_test(tc, test_gradient_through_a_fixed_mask, 0, bp_backend_count());
    tcase_add_test(tc, test_bad_specs);
    suite_add_tcase(s, tc);
    return bp_test_main(s);
}
