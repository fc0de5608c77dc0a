/*
 * test_fpenv.c - subnormals are flushed inside the library's steps and forward passes, on every
 * thread of a step, and the caller's floating-point environment is exactly what it was after
 * each entry point (core/fpenv.h).
 *
 * Timing is not tested here: bench_train's saturated case and the perf suite's ratio carry the
 * speed evidence. What is tested is the mechanism: a value that is subnormal in the caller's
 * arithmetic comes out of the library as 0, from the caller's columns and the team members'.
 */
#include <fenv.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backprop.h"
#include "core/fpenv.h"
#include "net/net.h"
#include "testutil.h"

/* A batch the net's team of 2 splits (it needs 16 columns a member: net.c's step_team), with
 * member 1's share (columns 16..39) larger than the caller's. */
enum { TEAM_BATCH = 40 };

static bp_net *make_net(const int *sizes, int n, bp_activation hidden, bp_activation output,
                        bp_cost cost, int threads, const char *backend)
{
    bp_net_config cfg;
    bp_net_config_init(&cfg);
    cfg.sizes = sizes;
    cfg.n_sizes = n;
    cfg.hidden = hidden;
    cfg.output = output;
    cfg.cost = cost;
    cfg.max_batch = TEAM_BATCH;
    cfg.threads = threads;
    cfg.backend = backend;
    bp_net *net = NULL;
    ck_assert_msg(bp_net_create(&net, &cfg) == BP_OK, "create: %s", bp_last_error());
    ck_assert_int_eq(bp_net_threads(net), threads);
    return net;
}

/* ---- the caller's environment is untouched ------------------------------------------------ */

enum { SMALL_IN = 6, SMALL_OUT = 3 };

enum { ENTRY_FORWARD, ENTRY_GRADIENT, ENTRY_SGD_STEP, ENTRY_TRAIN, ENTRY_FORWARD_UNCHECKED,
       ENTRY_STEP_UNCHECKED, ENTRY_COUNT };
static const char *const entry_names[ENTRY_COUNT] = {
    "bp_net_forward", "bp_net_gradient", "bp_net_sgd_step", "bp_train",
    "bp_net_forward_unchecked", "bp_net_backprop_unchecked"};

/* Call one entry point on a small sigmoid net with a batch of `batch`. */
static void call_entry(int entry, bp_net *net, const bp_dataset *ds, int batch)
{
    float x[SMALL_IN * TEAM_BATCH], y[SMALL_OUT * TEAM_BATCH] = {0}, out[SMALL_OUT * TEAM_BATCH];
    uint64_t seed = 11;
    bp_test_fill(x, SMALL_IN * TEAM_BATCH, 0, 1, &seed);
    for (int j = 0; j < TEAM_BATCH; j++)
        y[j * SMALL_OUT + j % SMALL_OUT] = 1.0f;
    double cost = 0;
    bp_status st = BP_OK;
    switch (entry) {
    case ENTRY_FORWARD:
        st = bp_net_forward(net, x, SMALL_IN, batch, out, SMALL_OUT);
        break;
    case ENTRY_GRADIENT:
        st = bp_net_gradient(net, x, SMALL_IN, y, SMALL_OUT, batch, &cost);
        break;
    case ENTRY_SGD_STEP:
        st = bp_net_sgd_step(net, x, SMALL_IN, y, SMALL_OUT, batch, 0.5f, &cost);
        break;
    case ENTRY_TRAIN: {
        bp_train_config tc;
        bp_train_config_init(&tc);
        tc.epochs = 2;
        tc.batch = batch;
        st = bp_train(net, ds, ds, &tc, NULL);
        break;
    }
    case ENTRY_FORWARD_UNCHECKED:
        bp_net_forward_unchecked(net, x, SMALL_IN, batch);
        break;
    case ENTRY_STEP_UNCHECKED:
        bp_net_backprop_unchecked(net, x, SMALL_IN, y, SMALL_OUT, batch, NULL, NULL);
        break;
    }
    ck_assert_msg(st == BP_OK, "%s: %s", entry_names[entry], bp_last_error());
}

/* Caller states to preserve: the default; the caller already flushing (it must stay so); on
 * x86 each of the two bits alone and a sticky flag the caller has raised; and a rounding mode
 * of the caller's own. The exception masks stay as they are (unmasking one would trap). */
static int caller_states(bp_fpenv base, bp_fpenv *states)
{
    int n = 0;
    states[n++] = base;
    states[n++] = base | BP_FPENV_FLUSH;
#if defined(BP_FPENV_FTZ)
    states[n++] = base | BP_FPENV_FTZ;
    states[n++] = base | BP_FPENV_DAZ;
    states[n++] = base | 0x0020u; /* MXCSR.PE, the precision (inexact) flag */
#endif
    fesetround(FE_TOWARDZERO);
    states[n++] = bp_fpenv_get();
    fesetround(FE_TONEAREST);
    bp_fpenv_set(base);
    return n;
}

/* The step and the forward pass themselves give back the register exactly, flags included;
 * the public entry points also do arithmetic of their own in the caller's environment (a mean
 * cost, a time), which may raise flags there like any function's: for them the modes must be
 * exact and the caller's own flags still raised. */
START_TEST(test_caller_environment_is_restored)
{
    const int sizes[] = {SMALL_IN, 8, SMALL_OUT};
    enum { SAMPLES = 2 * TEAM_BATCH };
    float *x = malloc(sizeof(float) * SMALL_IN * SAMPLES);
    int labels[SAMPLES];
    uint64_t seed = 5;
    bp_test_fill(x, SMALL_IN * (size_t)SAMPLES, 0, 1, &seed);
    for (int i = 0; i < SAMPLES; i++)
        labels[i] = i % SMALL_OUT;
    bp_dataset *ds = NULL;
    ck_assert_int_eq(bp_dataset_from_floats(&ds, x, labels, SAMPLES, SMALL_IN, SMALL_OUT), BP_OK);
    free(x);

    const bp_fpenv base = bp_fpenv_get() & ~(bp_fpenv)BP_FPENV_STATUS;
    ck_assert_msg((base & BP_FPENV_FLUSH) == 0, "the test process starts flushing: %#llx",
                  (unsigned long long)base);
    bp_fpenv states[8];
    int n_states = caller_states(base, states);
    const int threads[] = {1, 2};
    for (size_t ti = 0; ti < sizeof threads / sizeof *threads; ti++) {
        bp_net *net = make_net(sizes, 3, BP_ACT_SIGMOID, BP_ACT_SIGMOID, BP_COST_CROSS_ENTROPY,
                               threads[ti], "blas");
        /* A batch of 1 runs on the calling thread alone, TEAM_BATCH on the team too. */
        const int batches[] = {1, TEAM_BATCH};
        for (int s = 0; s < n_states; s++)
            for (int e = 0; e < ENTRY_COUNT; e++)
                for (size_t bi = 0; bi < sizeof batches / sizeof *batches; bi++) {
                    bp_fpenv want = states[s];
                    bp_fpenv_set(want);
                    call_entry(e, net, ds, batches[bi]);
                    bp_fpenv got = bp_fpenv_get();
                    bp_fpenv_set(base);
                    int exact = e == ENTRY_FORWARD_UNCHECKED || e == ENTRY_STEP_UNCHECKED;
                    bp_fpenv mask = exact ? ~(bp_fpenv)0 : ~(bp_fpenv)BP_FPENV_STATUS;
                    ck_assert_msg((got & mask) == (want & mask) && (got & want) == want,
                                  "%s, %d thread(s), batch %d: the caller's environment %#llx "
                                  "came back as %#llx", entry_names[e], threads[ti],
                                  batches[bi], (unsigned long long)want,
                                  (unsigned long long)got);
                }
        bp_net_free(net);
    }
    bp_dataset_free(ds);
}
END_TEST

/* ---- inside, subnormals are zero ----------------------------------------------------------- */

/* A one-layer linear net (quadratic cost, so BP1 is A - Y) with every weight w and bias 0, and
 * the batch's every input x: each output is the sum of N_IN products w x. */
enum { N_IN = 3, N_OUT = 2 };

typedef struct linear_case {
    const char *what;
    float w, x;
} linear_case;

/* Two ways into the subnormal range, as the caller's arithmetic sees them: products that are
 * subnormal results (FTZ makes them 0), and subnormal inputs whose products would be normal
 * (DAZ reads them as 0). */
static const linear_case cases[] = {
    {"subnormal products (1e-20 * 1e-20)", 1e-20f, 1e-20f},
    {"subnormal inputs (1e30 * 1e-39)", 1e30f, 1e-39f},
};

static bp_net *linear_net(const linear_case *c, int threads, const char *backend)
{
    const int sizes[] = {N_IN, N_OUT};
    bp_net *net = make_net(sizes, 2, BP_ACT_LINEAR, BP_ACT_LINEAR, BP_COST_QUADRATIC, threads,
                           backend);
    int rows, cols, ld;
    float *w = bp_net_weights(net, 1, &rows, &cols, &ld);
    for (int j = 0; j < cols; j++)
        for (int i = 0; i < rows; i++)
            w[i + (size_t)j * ld] = c->w;
    memset(bp_net_biases(net, 1), 0, sizeof(float) * N_OUT);
    return net;
}

/* What the output would be without the flush, in the test's own (non-flushing) arithmetic: a
 * positive value, or the test would prove nothing. */
static void check_case_is_meaningful(const linear_case *c)
{
    volatile float w = c->w, x = c->x;
    float z = 0.0f;
    for (int k = 0; k < N_IN; k++)
        z += w * x;
    ck_assert_msg(z > 0.0f, "%s: %g without the flush", c->what, (double)z);
}

static const char *const backends[] = {"blas", "naive"};

START_TEST(test_forward_flushes_on_every_thread)
{
    const linear_case *c = &cases[_i % 2];
    const char *backend = backends[_i / 2];
    check_case_is_meaningful(c);
    float x[N_IN * TEAM_BATCH], out[N_OUT * TEAM_BATCH];
    for (int k = 0; k < N_IN * TEAM_BATCH; k++)
        x[k] = c->x;
    const int threads[] = {1, 2};
    const int batches[] = {1, 8, TEAM_BATCH};
    for (size_t ti = 0; ti < sizeof threads / sizeof *threads; ti++) {
        bp_net *net = linear_net(c, threads[ti], backend);
        for (size_t bi = 0; bi < sizeof batches / sizeof *batches; bi++) {
            int B = batches[bi];
            for (int k = 0; k < N_OUT * TEAM_BATCH; k++)
                out[k] = -1.0f;
            ck_assert_int_eq(bp_net_forward(net, x, N_IN, B, out, N_OUT), BP_OK);
            /* Every column: with 2 threads and TEAM_BATCH, columns 16.. are member 1's. */
            for (int j = 0; j < B; j++)
                for (int i = 0; i < N_OUT; i++)
                    ck_assert_msg(out[i + j * N_OUT] == 0.0f, "%s, %s, %d thread(s), batch %d: "
                                  "output %d of column %d is %g, not 0", c->what, backend,
                                  threads[ti], B, i, j, (double)out[i + j * N_OUT]);
        }
        bp_net_free(net);
    }
}
END_TEST

/* The step: the outputs it leaves behind (every column) and the bias gradient, the row sum of
 * D = A - Y = A over the batch, which without the flush would be a subnormal 3e-40. */
START_TEST(test_step_flushes_on_every_thread)
{
    const linear_case *c = &cases[_i % 2];
    const char *backend = backends[_i / 2];
    check_case_is_meaningful(c);
    float x[N_IN * TEAM_BATCH], y[N_OUT * TEAM_BATCH] = {0};
    for (int k = 0; k < N_IN * TEAM_BATCH; k++)
        x[k] = c->x;
    const int threads[] = {1, 2};
    const int batches[] = {1, 8, TEAM_BATCH};
    for (size_t ti = 0; ti < sizeof threads / sizeof *threads; ti++) {
        bp_net *net = linear_net(c, threads[ti], backend);
        for (size_t bi = 0; bi < sizeof batches / sizeof *batches; bi++) {
            int B = batches[bi];
            double cost = -1;
            ck_assert_int_eq(bp_net_gradient(net, x, N_IN, y, N_OUT, B, &cost), BP_OK);
            const float *a = bp_net_output(net), *gb = bp_net_bias_grads(net, 1);
            for (int j = 0; j < B; j++)
                for (int i = 0; i < N_OUT; i++)
                    ck_assert_msg(a[i + j * N_OUT] == 0.0f, "%s, %s, %d thread(s), batch %d: "
                                  "in the step, output %d of column %d is %g, not 0", c->what,
                                  backend, threads[ti], B, i, j, (double)a[i + j * N_OUT]);
            for (int i = 0; i < N_OUT; i++)
                ck_assert_msg(gb[i] == 0.0f, "%s, %s, %d thread(s), batch %d: bias gradient "
                              "%d is %g, not 0", c->what, backend, threads[ti], B, i,
                              (double)gb[i]);
            ck_assert(cost == 0.0);
        }
        bp_net_free(net);
    }
}
END_TEST

/* A sigmoid output pinned at exactly 0 where the target is 1 (a confidently wrong net, what a
 * far too large eta makes) is saturation, not divergence: inside a flushing step its cost must
 * stay finite, as it is without the flush. */
START_TEST(test_saturated_cost_stays_finite)
{
    const int sizes[] = {N_IN, N_OUT};
    bp_net *net = make_net(sizes, 2, BP_ACT_SIGMOID, BP_ACT_SIGMOID, BP_COST_CROSS_ENTROPY,
                           _i + 1, "blas");
    int rows, cols, ld;
    float *w = bp_net_weights(net, 1, &rows, &cols, &ld);
    for (int j = 0; j < cols; j++)
        for (int i = 0; i < rows; i++)
            w[i + (size_t)j * ld] = -1e3f; /* z = -3000: sigma(z) is exactly 0 */
    memset(bp_net_biases(net, 1), 0, sizeof(float) * N_OUT);
    float x[N_IN * TEAM_BATCH], y[N_OUT * TEAM_BATCH];
    for (int k = 0; k < N_IN * TEAM_BATCH; k++)
        x[k] = 1.0f;
    for (int k = 0; k < N_OUT * TEAM_BATCH; k++)
        y[k] = 1.0f;
    double cost = 0;
    ck_assert_msg(bp_net_gradient(net, x, N_IN, y, N_OUT, TEAM_BATCH, &cost) == BP_OK, "%s",
                  bp_last_error());
    ck_assert_msg(isfinite(cost) && cost > 100.0, "cost %g", cost);
    bp_net_free(net);
}
END_TEST

static Suite *fpenv_suite(void)
{
    Suite *s = suite_create("fpenv");
    TCase *tc = tcase_create("fpenv");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_caller_environment_is_restored);
#if BP_FPENV_FLUSHES
    /* 2 cases x 2 backends. */
    tcase_add_loop_test(tc, test_forward_flushes_on_every_thread, 0, 4);
    tcase_add_loop_test(tc, test_step_flushes_on_every_thread, 0, 4);
#endif
    tcase_add_loop_test(tc, test_saturated_cost_stays_finite, 0, 2);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return bp_test_main(fpenv_suite()); }
