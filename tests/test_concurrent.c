/*
 * test_concurrent.c - what the header's thread-safety statement promises: distinct nets
 * trained on distinct threads at the same time, over one shared data set, end with exactly the
 * parameters each gets when trained alone (a net on its own team of two threads included),
 * bp_last_error() is each thread's own, and the process-wide thread count may be set first from
 * two threads at once. The fast suites also run under ThreadSanitizer
 * (scripts/test.sh), which fails this test on any data race between the two runs.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "backprop.h"
#include "testutil.h"

enum { DIM = 8, CLASSES = 3, SAMPLES = 512 };

typedef struct job {
    const bp_dataset *train; /* shared, read-only */
    int threads, batch;
    uint64_t seed;
    float *params; /* out: a copy of the trained parameters, malloc'ed */
    size_t n;
    bp_status status;
} job;

static bp_dataset *make_set(void)
{
    static float x[DIM * SAMPLES];
    static int labels[SAMPLES];
    uint64_t state = 7;
    bp_test_fill(x, DIM * SAMPLES, -1.0f, 1.0f, &state);
    for (int i = 0; i < SAMPLES; i++)
        labels[i] = x[DIM * i] + x[DIM * i + 1] > 0.5f ? 2 : x[DIM * i] > 0.0f ? 1 : 0;
    bp_dataset *ds = NULL;
    ck_assert_int_eq(bp_dataset_from_floats(&ds, x, labels, SAMPLES, DIM, CLASSES), BP_OK);
    return ds;
}

static void *run_job(void *arg)
{
    job *j = arg;
    int sizes[] = {DIM, 24, CLASSES};
    bp_net_config nc;
    bp_net_config_init(&nc);
    nc.sizes = sizes;
    nc.n_sizes = 3;
    nc.seed = j->seed;
    nc.threads = j->threads;
    nc.max_batch = j->batch;
    bp_net *net = NULL;
    j->status = bp_net_create(&net, &nc);
    if (j->status != BP_OK)
        return NULL;
    bp_train_config tc;
    bp_train_config_init(&tc);
    tc.epochs = 3;
    tc.batch = j->batch;
    tc.seed = j->seed;
    tc.optimizer = BP_OPT_ADAM;
    tc.eta = 0.01f;
    j->status = bp_train(net, j->train, NULL, &tc, NULL);
    const float *p = bp_net_params(net, &j->n);
    j->params = malloc(j->n * sizeof *j->params);
    if (j->params)
        memcpy(j->params, p, j->n * sizeof *p);
    bp_net_free(net);
    return NULL;
}

/* One net on the calling thread (batch 10: its GEMMs on OpenBLAS, capped at one thread by the
 * net's count), one on a team of two (batch 32, 16 columns a member: single-threaded GEMMs). */
static const struct { int threads, batch; uint64_t seed; } kinds[2] = {{1, 10, 3}, {2, 32, 4}};

START_TEST(test_nets_on_threads_match_nets_alone)
{
    bp_dataset *ds = make_set();
    job alone[2], together[2];
    for (int k = 0; k < 2; k++) {
        alone[k] = (job){ds, kinds[k].threads, kinds[k].batch, kinds[k].seed, NULL, 0, BP_OK};
        run_job(&alone[k]);
        ck_assert_int_eq(alone[k].status, BP_OK);
        ck_assert_ptr_nonnull(alone[k].params);
    }
    for (int round = 0; round < 3; round++) {
        pthread_t th[2];
        for (int k = 0; k < 2; k++) {
            together[k] = alone[k];
            together[k].params = NULL;
            ck_assert_int_eq(pthread_create(&th[k], NULL, run_job, &together[k]), 0);
        }
        for (int k = 0; k < 2; k++) {
            ck_assert_int_eq(pthread_join(th[k], NULL), 0);
            ck_assert_int_eq(together[k].status, BP_OK);
            ck_assert_ptr_nonnull(together[k].params);
            ck_assert_uint_eq(together[k].n, alone[k].n);
            ck_assert_msg(memcmp(together[k].params, alone[k].params,
                                 alone[k].n * sizeof(float)) == 0,
                          "round %d: net %d (threads %d) trained beside another differs", round,
                          k, kinds[k].threads);
            free(together[k].params);
        }
    }
    /* The runs must differ from each other, or the comparison above could not tell them
     * apart. */
    ck_assert(alone[0].n != alone[1].n ||
              memcmp(alone[0].params, alone[1].params, alone[0].n * sizeof(float)) != 0);
    free(alone[0].params);
    free(alone[1].params);
    bp_dataset_free(ds);
}
END_TEST

static void *default_threads(void *arg)
{
    int *out = arg;
    *out = bp_get_threads();
    return NULL;
}

/* The first bp_get_threads() of a process sets the default count; two threads making their
 * first nets at once both get there (each test runs in a fresh fork, the count unset). */
START_TEST(test_default_thread_count_on_two_threads)
{
    int counts[2] = {0, 0};
    pthread_t th[2];
    for (int k = 0; k < 2; k++)
        ck_assert_int_eq(pthread_create(&th[k], NULL, default_threads, &counts[k]), 0);
    for (int k = 0; k < 2; k++)
        ck_assert_int_eq(pthread_join(th[k], NULL), 0);
    ck_assert_int_gt(counts[0], 0);
    ck_assert_int_eq(counts[0], counts[1]);
    ck_assert_int_eq(counts[0], bp_get_threads());
}
END_TEST

static void *fail_on_thread(void *arg)
{
    (void)arg;
    bp_activation a;
    bp_status st = bp_activation_parse("no-such-activation-on-the-other-thread", &a);
    return st == BP_EINVAL && strstr(bp_last_error(), "on-the-other-thread") ? arg : NULL;
}

START_TEST(test_last_error_is_per_thread)
{
    bp_cost c;
    ck_assert_int_eq(bp_cost_parse("no-such-cost-here", &c), BP_EINVAL);
    ck_assert_ptr_nonnull(strstr(bp_last_error(), "no-such-cost-here"));
    static int token;
    pthread_t th;
    void *result = NULL;
    ck_assert_int_eq(pthread_create(&th, NULL, fail_on_thread, &token), 0);
    ck_assert_int_eq(pthread_join(th, &result), 0);
    ck_assert_msg(result == &token, "the other thread did not see its own message");
    /* This thread's message is still its own. */
    ck_assert_ptr_nonnull(strstr(bp_last_error(), "no-such-cost-here"));
    ck_assert_ptr_null(strstr(bp_last_error(), "other-thread"));
}
END_TEST

static Suite *concurrent_suite(void)
{
    Suite *s = suite_create("concurrent");
    TCase *tc = tcase_create("concurrent");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_nets_on_threads_match_nets_alone);
    tcase_add_test(tc, test_last_error_is_per_thread);
    tcase_add_test(tc, test_default_thread_count_on_two_threads);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return bp_test_main(concurrent_suite()); }
