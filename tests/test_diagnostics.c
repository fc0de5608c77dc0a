/*
 * test_diagnostics.c - bp_net_grad_norms against the norms of bp_net_gradient's arena over the
 * same samples in one batch (chunked through a small planned batch and on a team alike), a
 * closed-form gradient, the exact zeros a zeroed output layer leaves below it, no dropout in
 * the measurement, batch norm on batch statistics with its running averages left alone, and
 * bad arguments; bp_net_weight_spectrum against matrices whose singular
 * values are known by construction (rotations and signed permutations around a diagonal),
 * rank-deficient ones, the orthogonal initialisation, and bad arguments.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backprop.h"
#include "net/net.h"
#include "testutil.h"

enum { MAX_TENSORS = 16 };

static bp_net *make_net_ex(const int *sizes, int n, int max_batch, int threads, bp_cost cost,
                           bp_activation hidden, bp_activation output, bp_init init)
{
    bp_net_config cfg;
    bp_net_config_init(&cfg);
    cfg.sizes = sizes;
    cfg.n_sizes = n;
    cfg.cost = cost;
    cfg.hidden = hidden;
    cfg.output = output;
    cfg.init = init;
    cfg.max_batch = max_batch;
    cfg.threads = threads;
    cfg.seed = 11;
    bp_net *net = NULL;
    ck_assert_msg(bp_net_create(&net, &cfg) == BP_OK, "create: %s", bp_last_error());
    return net;
}

static bp_net *make_net(const int *sizes, int n, int max_batch, int threads)
{
    return make_net_ex(sizes, n, max_batch, threads, BP_COST_CROSS_ENTROPY, BP_ACT_SIGMOID,
                       BP_ACT_SIGMOID, BP_INIT_GAUSSIAN);
}

/* n samples of dim uniform values, labels i % classes. */
static bp_dataset *make_data(size_t n, int dim, int classes, uint64_t seed)
{
    float *x = malloc(sizeof(float) * n * (size_t)dim);
    int *y = malloc(sizeof(int) * n);
    ck_assert(x && y);
    bp_test_fill(x, n * (size_t)dim, 0.0f, 1.0f, &seed);
    for (size_t i = 0; i < n; i++)
        y[i] = (int)(i % (size_t)classes);
    bp_dataset *ds = NULL;
    ck_assert_msg(bp_dataset_from_floats(&ds, x, y, n, dim, classes) == BP_OK, "%s",
                  bp_last_error());
    free(x);
    free(y);
    return ds;
}

/* The reference: the first `samples` of ds in one batch through bp_net_gradient on a net
 * planned for them, and each tensor's norm of the arena it leaves. */
static void reference_norms(bp_net *net, const bp_dataset *ds, int samples, double *norms)
{
    int n_in = bp_net_size(net, 0), n_out = bp_net_size(net, bp_net_layers(net));
    float *x = malloc(sizeof(float) * (size_t)samples * (size_t)n_in);
    float *y = malloc(sizeof(float) * (size_t)samples * (size_t)n_out);
    ck_assert(x && y);
    ck_assert_int_eq(bp_dataset_gather(ds, NULL, samples, x, y, n_out), BP_OK);
    ck_assert_int_eq(bp_net_reserve(net, samples), BP_OK);
    ck_assert_msg(bp_net_gradient(net, x, n_in, y, n_out, samples, NULL) == BP_OK, "%s",
                  bp_last_error());
    const float *g = bp_net_grads(net, NULL);
    for (int k = 0; k < bp_net_tensor_count(net); k++) {
        bp_tensor_info info;
        ck_assert_int_eq(bp_net_tensor(net, k, &info), BP_OK);
        double sq = 0.0;
        for (size_t i = 0; i < info.count; i++)
            sq += (double)g[info.offset + i] * g[info.offset + i];
        norms[k] = sqrt(sq);
    }
    free(x);
    free(y);
}

static void assert_close(const double *got, const double *want, int n, double rel,
                         const char *what)
{
    for (int k = 0; k < n; k++) {
        double err = fabs(got[k] - want[k]);
        ck_assert_msg(want[k] > 0.0, "%s: tensor %d's reference norm is %g (the test needs a "
                      "non-zero gradient)", what, k, want[k]);
        ck_assert_msg(err <= rel * want[k], "%s: tensor %d: %.9g, reference %.9g (relative "
                      "error %.3g > %.1g)", what, k, got[k], want[k], err / want[k], rel);
    }
}

/* Chunks of the planned batch (4 columns, 23 samples: five of 4 and one of 3) give the norms
 * of one batch of all 23, and the parameters, the planned batch and the heap are as they were.
 * The loop runs on one thread, then on a team of 2 with chunks big enough to split (32 of 100
 * samples: 16 columns a member). */
START_TEST(test_chunked_norms_equal_one_batch)
{
    const int sizes[] = {6, 5, 4, 3};
    int threads = _i == 0 ? 1 : 2, planned = _i == 0 ? 4 : 32, samples = _i == 0 ? 23 : 100;
    bp_dataset *ds = make_data((size_t)samples + 7, 6, 3, 99);
    bp_net *chunked = make_net(sizes, 4, planned, threads);
    bp_net *whole = make_net(sizes, 4, 1, 1);
    int n_tensors = bp_net_tensor_count(chunked);
    ck_assert_int_eq(n_tensors, 6);

    size_t n_params;
    const float *params = bp_net_params(chunked, &n_params);
    float *before = malloc(sizeof(float) * n_params);
    memcpy(before, params, sizeof(float) * n_params);
    double got[MAX_TENSORS], want[MAX_TENSORS], first[MAX_TENSORS];
    ck_assert_msg(bp_net_grad_norms(chunked, ds, (size_t)samples, first, MAX_TENSORS) == BP_OK,
                  "%s", bp_last_error());
    /* Counted from the second call: by then the team's members have started (each frees its
     * start block on its own thread, whenever it gets to run). */
    bp_alloc_stats s0, s1;
    bp_alloc_stats_get(&s0);
    ck_assert_int_eq(bp_net_grad_norms(chunked, ds, (size_t)samples, got, MAX_TENSORS), BP_OK);
    bp_alloc_stats_get(&s1);
    for (int k = 0; k < n_tensors; k++)
        ck_assert_msg(got[k] == first[k], "tensor %d: %.9g, then %.9g", k, first[k], got[k]);
    reference_norms(whole, ds, samples, want);
    assert_close(got, want, n_tensors, 1e-5, "chunked vs one batch");

    ck_assert_int_eq(memcmp(before, params, sizeof(float) * n_params), 0);
    ck_assert_int_eq(chunked->max_batch, planned);
    ck_assert_uint_eq(s1.bytes_live, s0.bytes_live);
    ck_assert_uint_eq(s1.allocations - s0.allocations, s1.frees - s0.frees);

    free(before);
    bp_net_free(chunked);
    bp_net_free(whole);
    bp_dataset_free(ds);
}
END_TEST

/* "The first `samples` samples": fewer than the set are those and no others; more than the set
 * are all of it. */
START_TEST(test_first_samples_only)
{
    const int sizes[] = {5, 4, 3};
    bp_dataset *ds = make_data(30, 5, 3, 7);
    bp_net *net = make_net(sizes, 3, 4, 1);
    bp_net *ref = make_net(sizes, 3, 1, 1);
    int n = bp_net_tensor_count(net);
    double got[MAX_TENSORS], want[MAX_TENSORS], all[MAX_TENSORS], beyond[MAX_TENSORS];

    ck_assert_int_eq(bp_net_grad_norms(net, ds, 10, got, n), BP_OK);
    reference_norms(ref, ds, 10, want);
    assert_close(got, want, n, 1e-5, "first 10");

    ck_assert_int_eq(bp_net_grad_norms(net, ds, 30, all, n), BP_OK);
    ck_assert_int_eq(bp_net_grad_norms(net, ds, 100000, beyond, n), BP_OK);
    for (int k = 0; k < n; k++)
        ck_assert_msg(all[k] == beyond[k], "tensor %d: %.9g over 30, %.9g when asked for more",
                      k, all[k], beyond[k]);
    /* The first 10 are not the whole set: the two gradients differ somewhere. */
    int differ = 0;
    for (int k = 0; k < n; k++)
        differ += fabs(all[k] - got[k]) > 1e-4 * all[k];
    ck_assert_int_gt(differ, 0);

    /* One sample fits one chunk, the path without an accumulator. */
    ck_assert_int_eq(bp_net_grad_norms(net, ds, 1, got, n), BP_OK);
    reference_norms(ref, ds, 1, want);
    assert_close(got, want, n, 1e-6, "one sample");

    bp_net_free(net);
    bp_net_free(ref);
    bp_dataset_free(ds);
}
END_TEST

/* A linear layer with the quadratic cost, W = 0 and b = 0: a = 0, so dC/db = mean(-y) (the
 * classes' frequencies, signs flipped) and dC/dW = -mean(y x^T), whatever the chunks. */
START_TEST(test_closed_form_gradient)
{
    enum { N = 21, DIM = 4, CLASSES = 3 };
    const int sizes[] = {DIM, CLASSES};
    bp_dataset *ds = make_data(N, DIM, CLASSES, 5);
    bp_net *net = make_net_ex(sizes, 2, 4, 1, BP_COST_QUADRATIC, BP_ACT_SIGMOID, BP_ACT_LINEAR,
                              BP_INIT_GAUSSIAN);
    size_t n_params;
    float *p = bp_net_params(net, &n_params);
    memset(p, 0, sizeof(float) * n_params);

    float x[N * DIM];
    ck_assert_int_eq(bp_dataset_gather(ds, NULL, N, x, NULL, CLASSES), BP_OK);
    double gw[CLASSES][DIM] = {{0}}, gb[CLASSES] = {0};
    for (int j = 0; j < N; j++) {
        int c = j % CLASSES;
        gb[c] -= 1.0 / N;
        for (int i = 0; i < DIM; i++)
            gw[c][i] -= (double)x[j * DIM + i] / N;
    }
    double w_sq = 0.0, b_sq = 0.0;
    for (int c = 0; c < CLASSES; c++) {
        b_sq += gb[c] * gb[c];
        for (int i = 0; i < DIM; i++)
            w_sq += gw[c][i] * gw[c][i];
    }
    double norms[2];
    ck_assert_int_eq(bp_net_grad_norms(net, ds, N, norms, 2), BP_OK);
    /* 21 samples of 3 classes: 7 each, so ||dC/db|| = sqrt(3) / 3. */
    ck_assert_double_eq_tol(sqrt(b_sq), sqrt(3.0) / 3.0, 1e-12);
    ck_assert_double_eq_tol(norms[1], sqrt(b_sq), 1e-6);
    ck_assert_double_eq_tol(norms[0], sqrt(w_sq), 1e-6 * sqrt(w_sq));
    bp_net_free(net);
    bp_dataset_free(ds);
}
END_TEST

/* With the output layer's weights zero, BP2 sends nothing down: every hidden tensor's gradient
 * is exactly 0, while the output layer's are not (sigmoid(b) against one-hot targets). */
START_TEST(test_zero_output_weights_silence_the_layers_below)
{
    const int sizes[] = {6, 5, 4, 3};
    bp_dataset *ds = make_data(19, 6, 3, 3);
    bp_net *net = make_net(sizes, 4, 4, 1);
    int rows, cols, ld;
    float *w = bp_net_weights(net, 3, &rows, &cols, &ld);
    for (int j = 0; j < cols; j++)
        for (int i = 0; i < rows; i++)
            w[i + (size_t)j * ld] = 0.0f;
    double norms[6];
    ck_assert_int_eq(bp_net_grad_norms(net, ds, 19, norms, 6), BP_OK);
    for (int k = 0; k < 4; k++)
        ck_assert_msg(norms[k] == 0.0, "hidden tensor %d has gradient norm %g", k, norms[k]);
    ck_assert_double_gt(norms[4], 0.0);
    ck_assert_double_gt(norms[5], 0.0);
    bp_net_free(net);
    bp_dataset_free(ds);
}
END_TEST

/* Dropout is a training-step thing: the norms of a net with dropout layers are those of the
 * same net without them (the probe draws no mask), every call alike, while a training-mode
 * gradient of it, with its masks, is another gradient. Dropout layers hold no tensors, so both
 * tables list the same tensors in the same order. */
START_TEST(test_no_dropout_in_the_measurement)
{
    const int sizes[] = {6, 5, 4, 3};
    bp_net_config cfg;
    bp_net_config_init(&cfg);
    cfg.sizes = sizes;
    cfg.n_sizes = 4;
    cfg.max_batch = 4;
    cfg.threads = 1;
    cfg.dropout = 0.5f;
    bp_net *drop = NULL, *plain = make_net(sizes, 4, 1, 1);
    ck_assert_msg(bp_net_create(&drop, &cfg) == BP_OK, "%s", bp_last_error());
    int n = bp_net_tensor_count(drop);
    ck_assert_int_eq(n, bp_net_tensor_count(plain));
    ck_assert_int_gt(bp_net_layers(drop), bp_net_layers(plain));
    float *p_drop = bp_net_params(drop, NULL), *p_plain = bp_net_params(plain, NULL);
    for (int k = 0; k < n; k++) {
        bp_tensor_info a, b;
        ck_assert_int_eq(bp_net_tensor(drop, k, &a), BP_OK);
        ck_assert_int_eq(bp_net_tensor(plain, k, &b), BP_OK);
        ck_assert_uint_eq(a.count, b.count);
        memcpy(p_drop + a.offset, p_plain + b.offset, sizeof(float) * a.count);
    }
    bp_dataset *ds = make_data(18, 6, 3, 21);
    double got[MAX_TENSORS], again[MAX_TENSORS], want[MAX_TENSORS], trained[MAX_TENSORS];
    ck_assert_int_eq(bp_net_grad_norms(drop, ds, 18, got, n), BP_OK);
    ck_assert_int_eq(bp_net_grad_norms(drop, ds, 18, again, n), BP_OK);
    reference_norms(plain, ds, 18, want);
    assert_close(got, want, n, 1e-5, "with dropout layers vs without");
    for (int k = 0; k < n; k++)
        ck_assert(got[k] == again[k]);
    reference_norms(drop, ds, 18, trained);
    int differ = 0;
    for (int k = 0; k < n; k++)
        differ += fabs(trained[k] - want[k]) > 1e-3 * want[k];
    ck_assert_msg(differ > 0, "a training-mode gradient with dropout 0.5 equals the one without");
    bp_net_free(drop);
    bp_net_free(plain);
    bp_dataset_free(ds);
}
END_TEST

/* Batch norm is measured as it trains, on the batch's own statistics: over one chunk the norms
 * are those of a training-mode gradient of the same samples. And the measurement moves no
 * running average: the inference outputs, which use them, are what they were, while one
 * training-mode gradient changes them. */
START_TEST(test_batchnorm_measured_on_batch_statistics)
{
    const int sizes[] = {6, 5, 4, 3};
    bp_net_config cfg;
    bp_net_config_init(&cfg);
    cfg.sizes = sizes;
    cfg.n_sizes = 4;
    cfg.max_batch = 24;
    cfg.threads = 1;
    cfg.batchnorm = 1;
    bp_net *net = NULL;
    ck_assert_msg(bp_net_create(&net, &cfg) == BP_OK, "%s", bp_last_error());
    int n = bp_net_tensor_count(net);
    ck_assert_int_le(n, MAX_TENSORS);
    bp_dataset *ds = make_data(24, 6, 3, 8);
    float x[6 * 24], before[3 * 24], after[3 * 24];
    ck_assert_int_eq(bp_dataset_gather(ds, NULL, 24, x, NULL, 3), BP_OK);
    ck_assert_int_eq(bp_net_forward(net, x, 6, 24, before, 3), BP_OK);

    double got[MAX_TENSORS], want[MAX_TENSORS];
    ck_assert_int_eq(bp_net_grad_norms(net, ds, 24, got, n), BP_OK);
    ck_assert_int_eq(bp_net_forward(net, x, 6, 24, after, 3), BP_OK);
    ck_assert_msg(memcmp(before, after, sizeof before) == 0,
                  "measuring the gradient changed the inference outputs");

    reference_norms(net, ds, 24, want);
    assert_close(got, want, n, 1e-6, "batch norm, one chunk");
    ck_assert_int_eq(bp_net_forward(net, x, 6, 24, after, 3), BP_OK);
    ck_assert_msg(memcmp(before, after, sizeof before) != 0,
                  "a training-mode gradient left the running averages as they were");
    bp_net_free(net);
    bp_dataset_free(ds);
}
END_TEST

static int message_has(const char *text) { return strstr(bp_last_error(), text) != NULL; }

START_TEST(test_grad_norms_bad_arguments)
{
    const int sizes[] = {6, 4, 3};
    bp_net *net = make_net(sizes, 3, 4, 1);
    bp_dataset *ds = make_data(10, 6, 3, 1), *wide = make_data(10, 7, 3, 1);
    bp_dataset *many = make_data(10, 6, 5, 1);
    double norms[4];

    ck_assert_int_eq(bp_net_grad_norms(NULL, ds, 5, norms, 4), BP_EINVAL);
    ck_assert(message_has("net is NULL"));
    ck_assert_int_eq(bp_net_grad_norms(net, NULL, 5, norms, 4), BP_EINVAL);
    ck_assert(message_has("data set is NULL"));
    ck_assert_int_eq(bp_net_grad_norms(net, ds, 5, NULL, 4), BP_EINVAL);
    ck_assert(message_has("norms is NULL"));
    ck_assert_int_eq(bp_net_grad_norms(net, ds, 5, norms, 3), BP_EINVAL);
    ck_assert_msg(message_has("room for 3 norms, but the net has 4 tensors"), "%s",
                  bp_last_error());
    ck_assert_int_eq(bp_net_grad_norms(net, ds, 0, norms, 4), BP_EINVAL);
    ck_assert(message_has("0 samples"));
    ck_assert_int_eq(bp_net_grad_norms(net, wide, 5, norms, 4), BP_EINVAL);
    ck_assert_msg(message_has("6 inputs but the samples have 7 values"), "%s", bp_last_error());
    ck_assert_int_eq(bp_net_grad_norms(net, many, 5, norms, 4), BP_EINVAL);
    ck_assert_msg(message_has("3 outputs but the labels go up to 4"), "%s", bp_last_error());
    /* And the same net, given what it needs, still measures. */
    ck_assert_int_eq(bp_net_grad_norms(net, ds, 5, norms, 4), BP_OK);

    bp_net_free(net);
    bp_dataset_free(ds);
    bp_dataset_free(wide);
    bp_dataset_free(many);
}
END_TEST

/* ---- spectra --------------------------------------------------------------------------- */

/* Q (n x n, column-major) = a Givens rotation by `angle` in the plane of axes (0, 1), then a
 * cyclic shift of the axes by `shift`, then a sign flip of every odd axis: orthogonal, and
 * dense enough in its first two axes that sgesdd has to work. */
static void orthogonal(double *q, int n, double angle, int shift)
{
    double r[64] = {0};
    for (int i = 0; i < n; i++)
        r[i + i * n] = 1.0;
    if (n >= 2) {
        r[0] = cos(angle), r[1] = sin(angle);
        r[n] = -sin(angle), r[1 + n] = cos(angle);
    }
    for (int j = 0; j < n; j++)
        for (int i = 0; i < n; i++) {
            int to = (i + shift) % n;
            q[to + j * n] = (to % 2 ? -1.0 : 1.0) * r[i + j * n];
        }
}

/* W (m x n) = U diag(s) V^T written into the net's weight l. */
static void set_weight(bp_net *net, int l, const double *s, double angle_u, double angle_v)
{
    int m, n, ld;
    float *w = bp_net_weights(net, l, &m, &n, &ld);
    ck_assert(m <= 8 && n <= 8);
    double u[64], v[64];
    orthogonal(u, m, angle_u, 1);
    orthogonal(v, n, angle_v, 2);
    int k = m < n ? m : n;
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            double sum = 0.0;
            for (int t = 0; t < k; t++)
                sum += u[i + t * m] * s[t] * v[j + t * n];
            w[i + (size_t)j * ld] = (float)sum;
        }
}

static void check_spectrum(const bp_net *net, int tensor, const double *s, int k)
{
    bp_spectrum sp;
    float values[8];
    ck_assert_msg(bp_net_weight_spectrum(net, tensor, &sp, values, 8) == BP_OK, "%s",
                  bp_last_error());
    ck_assert_int_eq(sp.count, k);
    ck_assert_double_eq_tol(sp.largest, s[0], 1e-5 * s[0]);
    ck_assert_double_eq_tol(sp.smallest, s[k - 1], 1e-5 * s[0]);
    ck_assert_double_eq_tol(sp.condition, s[0] / s[k - 1], 1e-4 * s[0] / s[k - 1]);
    for (int t = 0; t < k; t++)
        ck_assert_msg(fabs(values[t] - s[t]) <= 1e-5 * s[0], "value %d: %.8g, want %.8g", t,
                      (double)values[t], s[t]);
}

/* A wide (3 x 4) and a tall (5 x 3) weight with singular values chosen up front. */
START_TEST(test_spectrum_of_known_matrices)
{
    const int sizes[] = {4, 3, 5};
    bp_net *net = make_net(sizes, 3, 4, 1);
    const double s1[] = {5.0, 2.0, 0.5}, s2[] = {3.0, 1.5, 0.25};
    set_weight(net, 1, s1, 0.7, -1.1);
    set_weight(net, 2, s2, 2.3, 0.4);
    size_t n_params;
    const float *p = bp_net_params(net, &n_params);
    float *before = malloc(sizeof(float) * n_params);
    memcpy(before, p, sizeof(float) * n_params);
    check_spectrum(net, 0, s1, 3);
    check_spectrum(net, 2, s2, 3);
    ck_assert_int_eq(memcmp(before, p, sizeof(float) * n_params), 0);
    /* Without the values, and then with exactly enough room for them. */
    bp_spectrum sp;
    ck_assert_int_eq(bp_net_weight_spectrum(net, 0, &sp, NULL, 0), BP_OK);
    ck_assert_double_eq_tol(sp.condition, 10.0, 1e-3);
    float three[3];
    ck_assert_int_eq(bp_net_weight_spectrum(net, 2, &sp, three, 3), BP_OK);
    ck_assert_double_eq_tol(three[1], 1.5, 1e-5);
    free(before);
    bp_net_free(net);
}
END_TEST

/* An exact zero singular value (a signed permutation of diag(3, 1, 0): no rounding anywhere)
 * has an infinite condition; so has the zero matrix. A rank-1 matrix made with rotations has a
 * smallest value at rounding level and a condition far above anything well-posed. */
START_TEST(test_rank_deficient)
{
    const int sizes[] = {4, 3};
    bp_net *net = make_net(sizes, 2, 4, 1);
    const double s[] = {3.0, 1.0, 0.0};
    set_weight(net, 1, s, 0.0, 0.0);
    bp_spectrum sp;
    ck_assert_int_eq(bp_net_weight_spectrum(net, 0, &sp, NULL, 0), BP_OK);
    ck_assert_double_eq_tol(sp.largest, 3.0, 1e-6);
    ck_assert(sp.smallest == 0.0);
    ck_assert(isinf(sp.condition) && sp.condition > 0);

    int m, n, ld;
    float *w = bp_net_weights(net, 1, &m, &n, &ld);
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++)
            w[i + (size_t)j * ld] = 0.0f;
    ck_assert_int_eq(bp_net_weight_spectrum(net, 0, &sp, NULL, 0), BP_OK);
    ck_assert(sp.largest == 0.0 && sp.smallest == 0.0 && isinf(sp.condition));

    const double r1[] = {2.0, 0.0, 0.0};
    set_weight(net, 1, r1, 0.9, 0.3);
    ck_assert_int_eq(bp_net_weight_spectrum(net, 0, &sp, NULL, 0), BP_OK);
    ck_assert_double_eq_tol(sp.largest, 2.0, 1e-5);
    ck_assert_double_le(sp.smallest, 1e-5);
    ck_assert_double_gt(sp.condition, 1e5);
    bp_net_free(net);
}
END_TEST

/* BP_INIT_ORTHOGONAL makes orthonormal rows or columns: every singular value is 1. */
START_TEST(test_orthogonal_init_is_perfectly_conditioned)
{
    const int sizes[] = {20, 7, 12};
    bp_net *net = make_net_ex(sizes, 3, 4, 1, BP_COST_CROSS_ENTROPY, BP_ACT_SIGMOID,
                              BP_ACT_SIGMOID, BP_INIT_ORTHOGONAL);
    for (int t = 0; t < 4; t += 2) {
        bp_spectrum sp;
        ck_assert_int_eq(bp_net_weight_spectrum(net, t, &sp, NULL, 0), BP_OK);
        ck_assert_int_eq(sp.count, 7);
        ck_assert_double_eq_tol(sp.largest, 1.0, 1e-5);
        ck_assert_double_eq_tol(sp.smallest, 1.0, 1e-5);
        ck_assert_double_eq_tol(sp.condition, 1.0, 1e-4);
    }
    /* The Gaussian initialisation is not: a check that the test above can tell. */
    bp_net *g = make_net(sizes, 3, 4, 1);
    bp_spectrum sp;
    ck_assert_int_eq(bp_net_weight_spectrum(g, 0, &sp, NULL, 0), BP_OK);
    ck_assert_double_gt(sp.condition, 1.5);
    bp_net_free(g);
    bp_net_free(net);
}
END_TEST

START_TEST(test_spectrum_bad_arguments)
{
    const int sizes[] = {4, 3, 2};
    bp_net *net = make_net(sizes, 3, 4, 1);
    bp_spectrum sp;
    float values[3];
    memset(&sp, 0xff, sizeof sp);
    ck_assert_int_eq(bp_net_weight_spectrum(NULL, 0, &sp, NULL, 0), BP_EINVAL);
    ck_assert(message_has("net is NULL"));
    ck_assert(sp.count == 0 && sp.largest == 0.0);
    ck_assert_int_eq(bp_net_weight_spectrum(net, 0, NULL, NULL, 0), BP_EINVAL);
    ck_assert(message_has("out is NULL"));
    ck_assert_int_eq(bp_net_weight_spectrum(net, -1, &sp, NULL, 0), BP_EINVAL);
    ck_assert(message_has("tensor -1 does not exist (the net has 4)"));
    ck_assert_int_eq(bp_net_weight_spectrum(net, 4, &sp, NULL, 0), BP_EINVAL);
    ck_assert(message_has("tensor 4 does not exist"));
    ck_assert_int_eq(bp_net_weight_spectrum(net, 1, &sp, NULL, 0), BP_EINVAL);
    ck_assert_msg(message_has("tensor 1 ('layers.0.bias') has 1 dimension"), "%s", bp_last_error());
    ck_assert_int_eq(bp_net_weight_spectrum(net, 0, &sp, values, 2), BP_EINVAL);
    ck_assert_msg(message_has("room for 2 values"), "%s", bp_last_error());
    ck_assert_int_eq(bp_net_weight_spectrum(net, 2, &sp, values, 2), BP_OK);
    ck_assert_int_eq(sp.count, 2);

    float *w = bp_net_weights(net, 2, NULL, NULL, NULL);
    w[1] = NAN;
    ck_assert_int_eq(bp_net_weight_spectrum(net, 2, &sp, NULL, 0), BP_EDIVERGED);
    ck_assert_msg(message_has("'layers.1.weight' holds 1 NaN or infinite value"), "%s",
                  bp_last_error());
    ck_assert(sp.count == 0);
    bp_net_free(net);
}
END_TEST

static Suite *diagnostics_suite(void)
{
    Suite *s = suite_create("diagnostics");
    TCase *tc = tcase_create("diagnostics");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_chunked_norms_equal_one_batch, 0, 2);
    tcase_add_test(tc, test_first_samples_only);
    tcase_add_test(tc, test_closed_form_gradient);
    tcase_add_test(tc, test_zero_output_weights_silence_the_layers_below);
    tcase_add_test(tc, test_no_dropout_in_the_measurement);
    tcase_add_test(tc, test_batchnorm_measured_on_batch_statistics);
    tcase_add_test(tc, test_grad_norms_bad_arguments);
    tcase_add_test(tc, test_spectrum_of_known_matrices);
    tcase_add_test(tc, test_rank_deficient);
    tcase_add_test(tc, test_orthogonal_init_is_perfectly_conditioned);
    tcase_add_test(tc, test_spectrum_bad_arguments);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return bp_test_main(diagnostics_suite()); }
