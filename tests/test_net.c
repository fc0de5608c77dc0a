/*
 * test_net.c - the network as a whole: backend equivalence, determinism, configuration checks,
 * initialisation schemes, argument errors.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backprop.h"
#include "testutil.h"

/* blas and naive differ only in the summation order inside each GEMM (relative error ~1e-7 per
 * value, NMSE ~1e-14 per product); through a few layers the differences add, not multiply
 * (sigmoid and tanh are contractive), so 1e-9 is a wide bound that a transposed or mis-strided
 * product (NMSE ~1) cannot meet. */
static const double BACKEND_NMSE = 1e-9;

static bp_net *make_net(const int *sizes, int n, bp_activation hidden, bp_activation output,
                        bp_cost cost, int max_batch, const char *backend, uint64_t seed)
{
    bp_net_config cfg;
    bp_net_config_init(&cfg);
    cfg.sizes = sizes;
    cfg.n_sizes = n;
    cfg.hidden = hidden;
    cfg.output = output;
    cfg.cost = cost;
    cfg.max_batch = max_batch;
    cfg.backend = backend;
    cfg.seed = seed;
    bp_net *net = NULL;
    ck_assert_msg(bp_net_create(&net, &cfg) == BP_OK, "create: %s", bp_last_error());
    return net;
}

/* Train `net` on ds for `epochs` epochs at batch B and rate eta (shuffle seed `seed`), free it,
 * and return a malloc'd copy of its parameters (*n floats). */
static float *trained_params(bp_net *net, const bp_dataset *ds, int epochs, int batch, float eta,
                            uint64_t seed, size_t *n)
{
    bp_train_config tc;
    bp_train_config_init(&tc);
    tc.epochs = epochs;
    tc.batch = batch;
    tc.eta = eta;
    tc.seed = seed;
    ck_assert_int_eq(bp_train(net, ds, ds, &tc, NULL), BP_OK);
    const float *p = bp_net_params(net, n);
    float *copy = malloc(*n * sizeof(float));
    memcpy(copy, p, *n * sizeof(float));
    bp_net_free(net);
    return copy;
}

static const int batches[] = {1, 7, 64, 13};

START_TEST(test_backends_agree)
{
    const int sizes[] = {37, 33, 17, 10};
    const bp_activation hidden = (bp_activation)(_i % 3); /* sigmoid, tanh, relu */
    for (size_t bi = 0; bi < sizeof batches / sizeof *batches; bi++) {
        int B = batches[bi];
        bp_net *blas = make_net(sizes, 4, hidden, BP_ACT_SOFTMAX, BP_COST_LOG_LIKELIHOOD, B,
                                "blas", 77);
        bp_net *naive = make_net(sizes, 4, hidden, BP_ACT_SOFTMAX, BP_COST_LOG_LIKELIHOOD, B,
                                 "naive", 77);
        size_t n;
        float *pb = bp_net_params(blas, &n), *pn = bp_net_params(naive, NULL);
        ck_assert_mem_eq(pb, pn, n * sizeof(float)); /* same seed, same parameters */

        float *x = malloc(sizeof(float) * 37 * B), *y = calloc(10 * (size_t)B, sizeof(float));
        uint64_t seed = 3 + (uint64_t)B;
        bp_test_fill(x, 37 * (size_t)B, 0, 1, &seed);
        for (int s = 0; s < B; s++)
            y[s * 10 + (s * 7) % 10] = 1;
        float *ob = malloc(sizeof(float) * 10 * B), *on = malloc(sizeof(float) * 10 * B);
        ck_assert_int_eq(bp_net_forward(blas, x, 37, B, ob, 10), BP_OK);
        ck_assert_int_eq(bp_net_forward(naive, x, 37, B, on, 10), BP_OK);
        double e = bp_test_nmse(ob, on, 10 * (size_t)B);
        ck_assert_msg(e < BACKEND_NMSE, "B=%d outputs nmse %g", B, e);

        double cb, cn;
        ck_assert_int_eq(bp_net_gradient(blas, x, 37, y, 10, B, &cb), BP_OK);
        ck_assert_int_eq(bp_net_gradient(naive, x, 37, y, 10, B, &cn), BP_OK);
        ck_assert_double_eq_tol(cb, cn, 1e-5 * fabs(cn));
        for (int l = 1; l <= 3; l++) {
            int rows, cols, ld;
            bp_net_weights(blas, l, &rows, &cols, &ld);
            e = bp_test_nmse(bp_net_weight_grads(blas, l), bp_net_weight_grads(naive, l),
                             (size_t)ld * cols);
            ck_assert_msg(e < BACKEND_NMSE, "B=%d layer %d dW nmse %g", B, l, e);
            e = bp_test_nmse(bp_net_bias_grads(blas, l), bp_net_bias_grads(naive, l),
                             (size_t)rows);
            ck_assert_msg(e < BACKEND_NMSE, "B=%d layer %d db nmse %g", B, l, e);
        }
        free(x), free(y), free(ob), free(on);
        bp_net_free(blas);
        bp_net_free(naive);
    }
}
END_TEST

/* Same seed, backend and one thread: bit-identical parameters after training. */
START_TEST(test_training_is_deterministic)
{
    bp_set_threads(1);
    const int sizes[] = {20, 16, 4};
    float x[20 * 200];
    int labels[200];
    uint64_t seed = 11;
    bp_test_fill(x, sizeof x / sizeof *x, 0, 1, &seed);
    for (int i = 0; i < 200; i++)
        labels[i] = (x[i * 20] > 0.5f) + 2 * (x[i * 20 + 1] > 0.5f);
    bp_dataset *ds;
    ck_assert_int_eq(bp_dataset_from_floats(&ds, x, labels, 200, 20, 4), BP_OK);
    float *runs[3];
    size_t n = 0;
    for (int r = 0; r < 3; r++)
        runs[r] = trained_params(make_net(sizes, 3, BP_ACT_TANH, BP_ACT_SOFTMAX,
                                          BP_COST_LOG_LIKELIHOOD, 10, r == 2 ? "naive" : "blas", 5),
                                 ds, 3, 10, 0.3f, 8, &n);
    ck_assert_mem_eq(runs[0], runs[1], n * sizeof(float));
    /* The other backend trains to nearly the same place (not bit-identical: summation order). */
    ck_assert_msg(bp_test_nmse(runs[2], runs[0], n) < 1e-6, "naive vs blas after training");
    /* A different shuffle seed gives a different run, so the equality above is not vacuous. */
    float *other = trained_params(make_net(sizes, 3, BP_ACT_TANH, BP_ACT_SOFTMAX,
                                           BP_COST_LOG_LIKELIHOOD, 10, "blas", 5),
                                  ds, 3, 10, 0.3f, 9, &n);
    ck_assert(memcmp(other, runs[0], n * sizeof(float)) != 0);
    free(other);
    for (int r = 0; r < 3; r++)
        free(runs[r]);
    bp_dataset_free(ds);
    bp_set_threads(0);
}
END_TEST

START_TEST(test_bad_configurations_are_refused)
{
    bp_net_config cfg;
    bp_net *net = (bp_net *)&cfg; /* must be reset to NULL on failure */
    const int ok[] = {4, 3, 2}, zero[] = {4, 0, 2};
    bp_net_config_init(&cfg);
    ck_assert_int_eq(bp_net_create(&net, &cfg), BP_EINVAL); /* no sizes */
    ck_assert_ptr_null(net);
    cfg.sizes = zero;
    cfg.n_sizes = 3;
    ck_assert_int_eq(bp_net_create(&net, &cfg), BP_EINVAL);
    ck_assert_ptr_nonnull(strstr(bp_last_error(), "layer 1 has 0 neurons"));
    cfg.sizes = ok;
    cfg.n_sizes = 1;
    ck_assert_int_eq(bp_net_create(&net, &cfg), BP_EINVAL);
    cfg.n_sizes = 3;
    cfg.hidden = BP_ACT_SOFTMAX;
    ck_assert_int_eq(bp_net_create(&net, &cfg), BP_EINVAL);
    cfg.hidden = BP_ACT_SIGMOID;
    cfg.output = BP_ACT_TANH;
    cfg.cost = BP_COST_CROSS_ENTROPY;
    ck_assert_int_eq(bp_net_create(&net, &cfg), BP_EINVAL);
    ck_assert_ptr_nonnull(strstr(bp_last_error(), "cross-entropy"));
    cfg.cost = BP_COST_LOG_LIKELIHOOD;
    cfg.output = BP_ACT_RELU;
    ck_assert_int_eq(bp_net_create(&net, &cfg), BP_EINVAL);
    cfg.cost = BP_COST_QUADRATIC; /* quadratic takes any output */
    ck_assert_int_eq(bp_net_create(&net, &cfg), BP_OK);
    bp_net_free(net);
    cfg.backend = "gpu";
    ck_assert_int_eq(bp_net_create(&net, &cfg), BP_EINVAL);
    ck_assert_ptr_nonnull(strstr(bp_last_error(), "gpu"));
    cfg.backend = NULL;
    cfg.max_batch = 0;
    ck_assert_int_eq(bp_net_create(&net, &cfg), BP_EINVAL);
    ck_assert_int_eq(bp_net_create(NULL, &cfg), BP_EINVAL);
    ck_assert_str_eq(bp_status_str(BP_EFORMAT), "bad file format");
    ck_assert_str_eq(bp_status_str((bp_status)999), "unknown status");
}
END_TEST

START_TEST(test_bad_calls_are_refused)
{
    const int sizes[] = {4, 3, 2};
    bp_net *net = make_net(sizes, 3, BP_ACT_SIGMOID, BP_ACT_SIGMOID, BP_COST_QUADRATIC, 4,
                           "blas", 1);
    float x[4 * 8] = {0}, y[2 * 8] = {0};
    ck_assert_int_eq(bp_net_forward(net, x, 3, 1, NULL, 0), BP_EINVAL); /* ldx < 4 */
    ck_assert_ptr_nonnull(strstr(bp_last_error(), "expects 4"));
    ck_assert_int_eq(bp_net_forward(net, x, 4, 0, NULL, 0), BP_EINVAL);
    ck_assert_int_eq(bp_net_gradient(net, x, 4, y, 1, 2, NULL), BP_EINVAL); /* ldy < 2 */
    ck_assert_int_eq(bp_net_sgd_step(net, x, 4, y, 2, 8, 0.1f, NULL), BP_EINVAL); /* > planned */
    ck_assert_int_eq(bp_net_sgd_step(net, x, 4, y, 2, 2, NAN, NULL), BP_EINVAL);
    ck_assert_int_eq(bp_net_sgd_step(net, x, 4, y, 2, 2, -1.0f, NULL), BP_EINVAL);
    ck_assert_int_eq(bp_net_set_backend(net, "nope"), BP_EINVAL);
    ck_assert_int_eq(bp_net_set_backend(net, "naive"), BP_OK);
    ck_assert_str_eq(bp_net_backend(net), "naive");
    /* forward with a larger batch reserves instead of failing */
    ck_assert_int_eq(bp_net_forward(net, x, 4, 8, NULL, 0), BP_OK);
    ck_assert_int_eq(bp_net_sgd_step(net, x, 4, y, 2, 8, 0.1f, NULL), BP_OK);
    ck_assert_ptr_null(bp_net_weights(net, 0, NULL, NULL, NULL));
    ck_assert_ptr_null(bp_net_weights(net, 3, NULL, NULL, NULL));
    bp_net_free(net);
}
END_TEST

/* Sample statistics of each scheme against its stated distribution; for 200x300 weights the
 * sample variance is within a few percent of the true one. */
START_TEST(test_init_schemes)
{
    const int sizes[] = {300, 200, 100};
    for (int scheme = 0; scheme < BP_INIT_COUNT; scheme++) {
        bp_net_config cfg;
        bp_net_config_init(&cfg);
        cfg.sizes = sizes;
        cfg.n_sizes = 3;
        cfg.init = (bp_init)scheme;
        bp_net *net;
        ck_assert_int_eq(bp_net_create(&net, &cfg), BP_OK);
        int rows, cols, ld;
        const float *w = bp_net_weights(net, 1, &rows, &cols, &ld);
        const float *b = bp_net_biases(net, 1);
        double sum = 0, sq = 0, bsq = 0;
        for (int j = 0; j < cols; j++)
            for (int i = 0; i < rows; i++)
                sum += w[i + j * ld], sq += (double)w[i + j * ld] * w[i + j * ld];
        for (int i = 0; i < rows; i++)
            bsq += (double)b[i] * b[i];
        double n = (double)rows * cols, var = sq / n - (sum / n) * (sum / n);
        double want = scheme == BP_INIT_GAUSSIAN ? 1.0 / 300
                      : scheme == BP_INIT_LARGE  ? 1.0
                      : scheme == BP_INIT_XAVIER ? 2.0 / 500 /* (2b)^2/12 with b^2 = 6/500 */
                      : scheme == BP_INIT_HE     ? 2.0 / 300
                                                 : 1.0 / 300; /* orthonormal rows of length 1 */
        ck_assert_msg(fabs(var / want - 1) < 0.05, "%s: variance %g, want %g",
                      bp_init_name(scheme), var, want);
        if (scheme == BP_INIT_GAUSSIAN || scheme == BP_INIT_LARGE)
            ck_assert_msg(fabs(bsq / rows - 1) < 0.3, "%s: bias variance %g",
                          bp_init_name(scheme), bsq / rows);
        else
            ck_assert_double_eq(bsq, 0);
        if (scheme == BP_INIT_ORTHOGONAL) { /* 200 x 300: W W^T = I */
            double worst = 0;
            for (int p = 0; p < rows; p++)
                for (int q = 0; q <= p; q++) {
                    double dot = 0;
                    for (int j = 0; j < cols; j++)
                        dot += (double)w[p + j * ld] * w[q + j * ld];
                    worst = fmax(worst, fabs(dot - (p == q)));
                }
            ck_assert_msg(worst < 1e-4, "W W^T deviates from I by %g", worst);
        }
        bp_net_free(net);
    }
}
END_TEST

START_TEST(test_orthogonal_tall)
{
    const int sizes[] = {20, 50, 3};
    bp_net_config cfg;
    bp_net_config_init(&cfg);
    cfg.sizes = sizes;
    cfg.n_sizes = 3;
    cfg.init = BP_INIT_ORTHOGONAL;
    bp_net *net;
    ck_assert_int_eq(bp_net_create(&net, &cfg), BP_OK);
    int rows, cols, ld;
    const float *w = bp_net_weights(net, 1, &rows, &cols, &ld); /* 50 x 20: W^T W = I */
    for (int p = 0; p < cols; p++)
        for (int q = 0; q < cols; q++) {
            double dot = 0;
            for (int i = 0; i < rows; i++)
                dot += (double)w[i + p * ld] * w[i + q * ld];
            ck_assert_double_eq_tol(dot, p == q, 1e-5);
        }
    bp_net_free(net);
}
END_TEST

START_TEST(test_names_round_trip)
{
    for (int a = 0; a < BP_ACT_COUNT; a++) {
        bp_activation got;
        ck_assert_int_eq(bp_activation_parse(bp_activation_name(a), &got), BP_OK);
        ck_assert_int_eq(got, a);
    }
    for (int c = 0; c < BP_COST_COUNT; c++) {
        bp_cost got;
        ck_assert_int_eq(bp_cost_parse(bp_cost_name(c), &got), BP_OK);
        ck_assert_int_eq(got, c);
    }
    for (int i = 0; i < BP_INIT_COUNT; i++) {
        bp_init got;
        ck_assert_int_eq(bp_init_parse(bp_init_name(i), &got), BP_OK);
        ck_assert_int_eq(got, i);
    }
    bp_cost c;
    ck_assert_int_eq(bp_cost_parse("entropy", &c), BP_EINVAL);
    ck_assert_ptr_nonnull(strstr(bp_last_error(), "entropy"));
}
END_TEST


/* A step split across a team of threads (by columns for the forward pass and BP1/BP2, by
 * parameters for BP3/BP4) computes what one thread computes, up to summation order inside the
 * GEMMs. The shapes make every split path run: 20 -> 70 splits W by rows (n_in < n_out), the
 * others by columns; B = 37 leaves a ragged last share; 3 threads on a 2-core machine makes
 * members sleep and wake. */
START_TEST(test_thread_counts_agree)
{
    const int sizes[] = {20, 70, 40, 10};
    const int team_batches[] = {64, 37, 200};
    const int thread_counts[] = {2, 3};
    for (size_t bi = 0; bi < sizeof team_batches / sizeof *team_batches; bi++)
        for (size_t ti = 0; ti < sizeof thread_counts / sizeof *thread_counts; ti++) {
            int B = team_batches[bi], T = thread_counts[ti];
            /* A net takes the process's thread count when it is made. */
            bp_set_threads(1);
            bp_net *one = make_net(sizes, 4, BP_ACT_RELU, BP_ACT_SOFTMAX, BP_COST_LOG_LIKELIHOOD,
                                   B, "blas", 31);
            bp_set_threads(T);
            bp_net *team = make_net(sizes, 4, BP_ACT_RELU, BP_ACT_SOFTMAX,
                                    BP_COST_LOG_LIKELIHOOD, B, "blas", 31);
            ck_assert_int_eq(bp_net_threads(one), 1);
            ck_assert_int_eq(bp_net_threads(team), T);
            float *x = malloc(sizeof(float) * 20 * B), *y = calloc(10 * (size_t)B, sizeof(float));
            float *o1 = malloc(sizeof(float) * 10 * B), *oT = malloc(sizeof(float) * 10 * B);
            uint64_t seed = 5 + (uint64_t)B;
            bp_test_fill(x, 20 * (size_t)B, 0, 1, &seed);
            for (int s = 0; s < B; s++)
                y[s * 10 + (s * 3) % 10] = 1;
            double c1, cT;
            ck_assert_int_eq(bp_net_forward(one, x, 20, B, o1, 10), BP_OK);
            ck_assert_int_eq(bp_net_gradient(one, x, 20, y, 10, B, &c1), BP_OK);
            ck_assert_int_eq(bp_net_forward(team, x, 20, B, oT, 10), BP_OK);
            ck_assert_int_eq(bp_net_gradient(team, x, 20, y, 10, B, &cT), BP_OK);
            double e = bp_test_nmse(oT, o1, 10 * (size_t)B);
            ck_assert_msg(e < BACKEND_NMSE, "B=%d T=%d outputs nmse %g", B, T, e);
            ck_assert_double_eq_tol(cT, c1, 1e-6 * fabs(c1));
            size_t n;
            float *g1 = bp_net_grads(one, &n), *gT = bp_net_grads(team, NULL);
            e = bp_test_nmse(gT, g1, n);
            ck_assert_msg(e < BACKEND_NMSE, "B=%d T=%d gradient nmse %g", B, T, e);
            for (int step = 0; step < 3; step++) {
                ck_assert_int_eq(bp_net_sgd_step(one, x, 20, y, 10, B, 0.1f, NULL), BP_OK);
                ck_assert_int_eq(bp_net_sgd_step(team, x, 20, y, 10, B, 0.1f, NULL), BP_OK);
            }
            e = bp_test_nmse(bp_net_params(team, NULL), bp_net_params(one, NULL), n);
            ck_assert_msg(e < BACKEND_NMSE, "B=%d T=%d parameters after 3 steps nmse %g", B, T, e);
            free(x), free(y), free(o1), free(oT);
            bp_net_free(one);
            bp_net_free(team);
        }
    bp_set_threads(0);
}
END_TEST

/* With a team of two, training is still reproducible to the bit: each member always gets the
 * same columns and parameters, and partial costs are added in member order. */
START_TEST(test_team_training_is_deterministic)
{
    bp_set_threads(2);
    const int sizes[] = {30, 48, 10};
    enum { N = 640 };
    float *x = malloc(sizeof(float) * 30 * N);
    int labels[N];
    uint64_t seed = 23;
    bp_test_fill(x, 30 * N, 0, 1, &seed);
    for (int i = 0; i < N; i++)
        labels[i] = (int)(x[i * 30] * 9.99f);
    bp_dataset *ds;
    ck_assert_int_eq(bp_dataset_from_floats(&ds, x, labels, N, 30, 10), BP_OK);
    float *runs[2];
    size_t n = 0;
    for (int r = 0; r < 2; r++)
        runs[r] = trained_params(make_net(sizes, 3, BP_ACT_SIGMOID, BP_ACT_SIGMOID,
                                          BP_COST_CROSS_ENTROPY, 64, "blas", 5),
                                 ds, 3, 64, 0.5f, 1, &n);
    ck_assert_mem_eq(runs[0], runs[1], n * sizeof(float));
    free(runs[0]), free(runs[1]), free(x);
    bp_dataset_free(ds);
    bp_set_threads(0);
}
END_TEST

/* The SGD step folds the update into BP4's GEMM (W = W - eta/B D A^T): it must land where the
 * unfused gradient and an explicit update land. Float rounding differs only in where the
 * update is added, so agreement to 1e-6 relative per parameter is expected. */
START_TEST(test_fused_sgd_step_matches_gradient_update)
{
    const int sizes[] = {13, 9, 7, 4};
    for (int be = 0; be < bp_backend_count(); be++) {
        bp_net *net = make_net(sizes, 4, BP_ACT_TANH, BP_ACT_SIGMOID, BP_COST_CROSS_ENTROPY, 6,
                               bp_backend_name(be), 21);
        float x[13 * 6], y[4 * 6] = {0};
        uint64_t seed = 17;
        bp_test_fill(x, 13 * 6, -1, 1, &seed);
        for (int s = 0; s < 6; s++)
            y[s * 4 + s % 4] = 1;
        size_t n;
        float *p = bp_net_params(net, &n);
        float *expected = malloc(n * sizeof(float));
        double c_grad, c_step;
        ck_assert_int_eq(bp_net_gradient(net, x, 13, y, 4, 6, &c_grad), BP_OK);
        const float *g = bp_net_grads(net, NULL);
        for (size_t i = 0; i < n; i++)
            expected[i] = p[i] - 0.7f * g[i];
        ck_assert_int_eq(bp_net_sgd_step(net, x, 13, y, 4, 6, 0.7f, &c_step), BP_OK);
        ck_assert_double_eq(c_grad, c_step); /* the cost is of the parameters before the step */
        double worst = 0;
        for (size_t i = 0; i < n; i++)
            worst = fmax(worst, fabs(p[i] - expected[i]) / fmax(1e-3, fabs(expected[i])));
        ck_assert_msg(worst < 1e-5, "%s: fused step differs by %g", bp_backend_name(be), worst);
        free(expected);
        bp_net_free(net);
    }
}
END_TEST

/* The thread count belongs to the net: fixed when it is made (the process default, or the
 * config's), changed only by bp_net_set_threads, and unmoved by a later bp_set_threads. */
START_TEST(test_threads_belong_to_the_net)
{
    const int sizes[] = {8, 40, 4};
    bp_set_threads(3);
    bp_net *net = make_net(sizes, 3, BP_ACT_SIGMOID, BP_ACT_SIGMOID, BP_COST_QUADRATIC, 64,
                           "blas", 1);
    ck_assert_int_eq(bp_net_threads(net), 3);
    bp_set_threads(1);
    ck_assert_int_eq(bp_net_threads(net), 3);
    ck_assert_int_eq(bp_net_set_threads(net, 2), BP_OK);
    ck_assert_int_eq(bp_net_threads(net), 2);
    ck_assert_int_eq(bp_net_set_threads(net, 0), BP_OK); /* back to the process default */
    ck_assert_int_eq(bp_net_threads(net), 1);
    bp_net_free(net);

    bp_net_config cfg;
    bp_net_config_init(&cfg);
    cfg.sizes = sizes;
    cfg.n_sizes = 3;
    cfg.threads = 2;
    ck_assert_int_eq(bp_net_create(&net, &cfg), BP_OK);
    ck_assert_int_eq(bp_net_threads(net), 2);
    bp_net_free(net);
    ck_assert_int_eq(bp_net_set_threads(NULL, 2), BP_EINVAL);
    bp_set_threads(0);
}
END_TEST

/* A plan that cannot fit is refused before it is allocated, with the bytes it needs: under a
 * limit set by the caller, and under the machine's own available memory (a [2^20, 2^20] net
 * needs 8.8 TB on any machine we will see). A batch larger than the training set plans only
 * for the set. */
START_TEST(test_memory_limit_refuses_huge_plans)
{
    bp_alloc_stats before, after;
    bp_net_config cfg;
    bp_net_config_init(&cfg);
    const int wide[] = {1 << 20, 1 << 20};
    cfg.sizes = wide;
    cfg.n_sizes = 2;
    bp_net *net = (bp_net *)&cfg;
    bp_alloc_stats_get(&before);
    ck_assert_int_eq(bp_net_create(&net, &cfg), BP_ENOMEM);
    ck_assert_ptr_null(net);
    ck_assert_msg(strstr(bp_last_error(), "bytes") && strstr(bp_last_error(), "available"),
                  "message '%s'", bp_last_error());
    bp_alloc_stats_get(&after);
    ck_assert_uint_eq(after.bytes_live, before.bytes_live);

    /* [784,1000,10]: 2 x 795,010 parameters (padded) and 64 columns of buffers, ~6.7 MB. */
    const int sizes[] = {784, 1000, 10};
    cfg.sizes = sizes;
    cfg.n_sizes = 3;
    ck_assert_int_eq(bp_set_memory_limit(4u << 20), BP_OK);
    ck_assert_uint_eq(bp_get_memory_limit(), 4u << 20);
    ck_assert_int_eq(bp_net_create(&net, &cfg), BP_ENOMEM);
    ck_assert_msg(strstr(bp_last_error(), "[784,1000,10]") && strstr(bp_last_error(), "limit"),
                  "message '%s'", bp_last_error());
    ck_assert_int_eq(bp_set_memory_limit(16u << 20), BP_OK);
    ck_assert_int_eq(bp_net_create(&net, &cfg), BP_OK);
    /* Growing the buffers past the limit is refused the same way, and the net stays usable. */
    ck_assert_int_eq(bp_net_reserve(net, 4096), BP_ENOMEM);
    ck_assert_int_eq(bp_net_reserve(net, 128), BP_OK);
    ck_assert_int_eq(bp_set_memory_limit(0), BP_OK);

    /* --batch 1048576 on 50 samples: bp_train plans 50 columns, not a million. */
    enum { N = 50 };
    float *x = calloc(784 * N, sizeof(float));
    int labels[N];
    for (int i = 0; i < N; i++)
        labels[i] = i % 10, x[i * 784 + i] = 1.0f;
    bp_dataset *ds;
    ck_assert_int_eq(bp_dataset_from_floats(&ds, x, labels, N, 784, 10), BP_OK);
    bp_train_config tc;
    bp_train_config_init(&tc);
    tc.epochs = 1;
    tc.batch = 1 << 20;
    tc.eta = 0.1f;
    bp_alloc_stats_get(&before);
    ck_assert_int_eq(bp_train(net, ds, NULL, &tc, NULL), BP_OK);
    bp_alloc_stats_get(&after);
    ck_assert_msg(after.bytes_live <= before.bytes_live, "training grew the plan by %llu bytes",
                  (unsigned long long)(after.bytes_live - before.bytes_live));
    bp_dataset_free(ds);
    free(x);
    bp_net_free(net);
}
END_TEST

/* Every getter takes NULL without crashing (bp_net_cost once dereferenced it). */
START_TEST(test_getters_accept_null)
{
    ck_assert_int_eq(bp_net_cost(NULL), BP_COST_COUNT);
    ck_assert_int_eq(bp_net_layers(NULL), 0);
    ck_assert_int_eq(bp_net_size(NULL, 0), 0);
    ck_assert_int_eq(bp_net_threads(NULL), 0);
    ck_assert_ptr_null(bp_net_backend(NULL));
    ck_assert_ptr_null(bp_net_params(NULL, NULL));
    ck_assert_ptr_null(bp_net_grads(NULL, NULL));
    ck_assert_ptr_null(bp_net_weights(NULL, 1, NULL, NULL, NULL));
    ck_assert_ptr_null(bp_net_biases(NULL, 1));
}
END_TEST

static Suite *net_suite(void)
{
    Suite *s = suite_create("net");
    TCase *tc = tcase_create("net");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_backends_agree, 0, 3);
    tcase_add_test(tc, test_training_is_deterministic);
    tcase_add_test(tc, test_thread_counts_agree);
    tcase_add_test(tc, test_team_training_is_deterministic);
    tcase_add_test(tc, test_fused_sgd_step_matches_gradient_update);
    tcase_add_test(tc, test_bad_configurations_are_refused);
    tcase_add_test(tc, test_bad_calls_are_refused);
    tcase_add_test(tc, test_init_schemes);
    tcase_add_test(tc, test_orthogonal_tall);
    tcase_add_test(tc, test_names_round_trip);
    tcase_add_test(tc, test_threads_belong_to_the_net);
    tcase_add_test(tc, test_getters_accept_null);
    tcase_add_test(tc, test_memory_limit_refuses_huge_plans);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return bp_test_main(net_suite()); }
