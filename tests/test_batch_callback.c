/*
 * test_batch_callback.c - the trainer's mini-batch callback: what it sees (samples rising batch
 * by batch to the set's size, the epoch, the running mean cost that the epoch report ends
 * with), that a non-zero return stops the trainer after exactly that mini-batch with
 * BP_ESTOPPED and nothing restored, and that the stopped trainer, continued in place or from
 * a checkpoint written at the stop, ends bit-identical to the run that was never stopped (one
 * thread, with early stopping's best copy and an optimiser with state).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backprop.h"
#include "testutil.h"

enum { N = 300, DIM = 12, CLASSES = 5, BATCH = 16, BATCHES = (N + BATCH - 1) / BATCH };

static bp_dataset *make_set(void)
{
    static float x[N * DIM];
    int labels[N];
    uint64_t seed = 31;
    bp_test_fill(x, N * DIM, 0, 1, &seed);
    for (int i = 0; i < N; i++)
        labels[i] = (int)(x[i * DIM] * 4.99f);
    bp_dataset *ds;
    ck_assert_int_eq(bp_dataset_from_floats(&ds, x, labels, N, DIM, CLASSES), BP_OK);
    return ds;
}

static bp_net *make_net(void)
{
    const int sizes[] = {DIM, 20, CLASSES};
    bp_net_config cfg;
    bp_net_config_init(&cfg);
    cfg.sizes = sizes;
    cfg.n_sizes = 3;
    cfg.max_batch = BATCH;
    cfg.threads = 1;
    cfg.seed = 8;
    bp_net *net;
    ck_assert_int_eq(bp_net_create(&net, &cfg), BP_OK);
    return net;
}

/* Momentum (a state arena that must travel) and early stopping (a best copy, and a restore at
 * the end of the run that a pause must not do). */
static void train_config(bp_train_config *tc)
{
    bp_train_config_init(tc);
    tc->batch = BATCH;
    tc->eta = 0.05f;
    tc->seed = 5;
    tc->epochs = 3;
    tc->optimizer = BP_OPT_MOMENTUM;
    tc->early_stop = 10;
}

/* What the callback saw, and when it says stop: at its call number stop_at (0: never). */
typedef struct watch {
    long calls, stop_at;
    int epoch;
    size_t last_done;
    long last_batches;
    double last_seconds, last_mean_cost;
    int bad; /* the first call that broke an expectation, 0 if none */
} watch;

static int on_batch(const bp_batch_report *r, void *user)
{
    watch *w = user;
    w->calls++;
    if (r->epoch != w->epoch) { /* a new epoch starts from its first mini-batch */
        w->epoch = r->epoch;
        w->last_done = 0;
        w->last_batches = 0;
        w->last_seconds = 0.0;
    }
    size_t want = w->last_done + BATCH < N ? w->last_done + BATCH : N;
    if (!w->bad && (r->samples != N || r->samples_done != want ||
                    r->batches_done != w->last_batches + 1 || !(r->seconds >= w->last_seconds) ||
                    !isfinite(r->mean_cost) || r->samples_timed != r->samples_done))
        w->bad = (int)w->calls;
    w->last_done = r->samples_done;
    w->last_batches = r->batches_done;
    w->last_seconds = r->seconds;
    w->last_mean_cost = r->mean_cost;
    return w->stop_at && w->calls == w->stop_at;
}

static bp_epoch_report last_epoch;
static int epochs_seen;

static int on_epoch(const bp_epoch_report *r, void *user)
{
    (void)user;
    last_epoch = *r;
    epochs_seen++;
    return 0;
}

/* The run that is never stopped: bp_train over the configuration. */
static float *straight_params(const bp_dataset *ds, size_t *n)
{
    bp_train_config tc;
    train_config(&tc);
    bp_net *net = make_net();
    ck_assert_int_eq(bp_train(net, ds, ds, &tc, NULL), BP_OK);
    const float *p = bp_net_params(net, n);
    float *copy = malloc(sizeof(float) * *n);
    memcpy(copy, p, sizeof(float) * *n);
    bp_net_free(net);
    return copy;
}

START_TEST(test_callback_sees_every_batch_in_order)
{
    bp_dataset *ds = make_set();
    bp_train_config tc;
    train_config(&tc);
    tc.early_stop = 0;
    bp_net *net = make_net();
    bp_trainer *t;
    ck_assert_int_eq(bp_trainer_create(&t, net, ds, &tc), BP_OK);
    watch w = {0};
    ck_assert_int_eq(bp_trainer_set_batch_callback(t, on_batch, &w), BP_OK);
    for (int e = 1; e <= 2; e++) {
        bp_epoch_report r;
        ck_assert_int_eq(bp_trainer_epoch(t, &r), BP_OK);
        ck_assert_msg(!w.bad, "call %d broke the order", w.bad);
        ck_assert_int_eq(w.calls, e * BATCHES);
        ck_assert_int_eq(w.epoch, e);
        ck_assert_uint_eq(w.last_done, N);
        /* The epoch's cost is the running mean at its last mini-batch (no regularisation). */
        ck_assert_double_eq(r.train_cost, w.last_mean_cost);
        ck_assert(r.seconds >= w.last_seconds);
    }
    /* bp_train hands the configuration's callback to its trainer, with user. */
    watch w2 = {0};
    tc.on_batch = on_batch;
    tc.user = &w2;
    tc.epochs = 2;
    bp_net *net2 = make_net();
    ck_assert_int_eq(bp_train(net2, ds, NULL, &tc, NULL), BP_OK);
    ck_assert_int_eq(w2.calls, 2 * BATCHES);
    ck_assert(!w2.bad);
    size_t n;
    ck_assert_mem_eq(bp_net_params(net, &n), bp_net_params(net2, NULL), sizeof(float) * n);
    /* The trainer keeps no callback in its configuration (a checkpoint records it). */
    bp_train_config back;
    ck_assert_int_eq(bp_trainer_config(t, &back), BP_OK);
    ck_assert(back.on_batch == NULL);
    ck_assert_int_eq(bp_trainer_set_batch_callback(NULL, on_batch, NULL), BP_EINVAL);
    ck_assert_int_eq(bp_trainer_set_batch_callback(t, NULL, NULL), BP_OK);
    ck_assert_int_eq(bp_trainer_epoch(t, NULL), BP_OK);
    ck_assert_int_eq(w.calls, 2 * BATCHES);
    bp_trainer_free(t);
    bp_net_free(net);
    bp_net_free(net2);
    bp_dataset_free(ds);
}
END_TEST

/* Stopped after its k-th mini-batch of the first epoch: the trainer is there and no further. */
START_TEST(test_stop_after_k_batches)
{
    bp_dataset *ds = make_set();
    bp_train_config tc;
    train_config(&tc);
    for (long k = 1; k < BATCHES; k += 6) {
        bp_net *net = make_net();
        bp_trainer *t;
        ck_assert_int_eq(bp_trainer_create(&t, net, ds, &tc), BP_OK);
        watch w = {.stop_at = k};
        bp_trainer_set_batch_callback(t, on_batch, &w);
        bp_epoch_report r = {.epoch = -7};
        ck_assert_int_eq(bp_trainer_epoch(t, &r), BP_ESTOPPED);
        ck_assert_int_eq(r.epoch, -7); /* no report for an epoch that did not end */
        ck_assert_int_eq(w.calls, k);
        ck_assert_ptr_nonnull(strstr(bp_last_error(), "stopped by the batch callback at epoch 1"));
        bp_trainer_state st;
        ck_assert_int_eq(bp_trainer_get_state(t, &st), BP_OK);
        ck_assert_int_eq(st.epoch, 0);
        ck_assert_uint_eq(st.position, (size_t)k * BATCH);
        ck_assert_uint_eq(st.steps, (uint64_t)k);
        /* bp_trainer_batches stops the same way, before its own limit. */
        w.stop_at = k + 2;
        int finished = 1;
        ck_assert_int_eq(bp_trainer_batches(t, 5, &finished, NULL), BP_ESTOPPED);
        ck_assert_int_eq(finished, 0);
        ck_assert_int_eq(bp_trainer_get_state(t, &st), BP_OK);
        ck_assert_uint_eq(st.position, (size_t)(k + 2) * BATCH);
        bp_trainer_free(t);
        bp_net_free(net);
    }
    bp_dataset_free(ds);
}
END_TEST

/* bp_trainer_run stopped in the middle of epoch 2, then run on by the same trainer: the
 * parameters of bp_train to the bit; the pause restored no best epoch and counted its part. */
START_TEST(test_run_stopped_mid_epoch_goes_on)
{
    bp_dataset *ds = make_set();
    size_t n;
    float *want = straight_params(ds, &n);
    bp_train_config tc;
    train_config(&tc);
    bp_net *net = make_net();
    bp_trainer *t;
    ck_assert_int_eq(bp_trainer_create(&t, net, ds, &tc), BP_OK);
    watch w = {.stop_at = BATCHES + 5};
    bp_trainer_set_batch_callback(t, on_batch, &w);
    epochs_seen = 0;
    bp_train_result res;
    ck_assert_int_eq(bp_trainer_run(t, ds, 3, on_epoch, NULL, &res), BP_ESTOPPED);
    ck_assert_int_eq(res.epochs, 1);
    ck_assert_int_eq(epochs_seen, 1);
    ck_assert(res.train_seconds > 0.0 && res.samples_per_second > 0.0);
    ck_assert_int_eq(res.best_epoch, 1);
    bp_trainer_state st;
    bp_trainer_get_state(t, &st);
    ck_assert_uint_eq(st.position, 5 * BATCH);
    /* The net is the one being trained, not the best epoch's copy. */
    ck_assert(memcmp(bp_net_params(net, NULL), st.best_params, sizeof(float) * n) != 0);
    bp_trainer_set_batch_callback(t, NULL, NULL);
    ck_assert_int_eq(bp_trainer_run(t, ds, 3, on_epoch, NULL, &res), BP_OK);
    ck_assert_int_eq(res.epochs, 3);
    ck_assert_int_eq(epochs_seen, 3);
    ck_assert_mem_eq(bp_net_params(net, NULL), want, sizeof(float) * n);
    bp_trainer_free(t);
    bp_net_free(net);
    bp_dataset_free(ds);
    free(want);
}
END_TEST

/* A stop asked at an epoch's last mini-batch ends that epoch (evaluated, on_epoch called) and
 * then the run, at the epoch boundary; at the run's last one there is nothing left to stop. */
START_TEST(test_stop_at_an_epoch_end)
{
    bp_dataset *ds = make_set();
    size_t n;
    float *want = straight_params(ds, &n);
    bp_train_config tc;
    train_config(&tc);
    bp_net *net = make_net();
    bp_trainer *t;
    ck_assert_int_eq(bp_trainer_create(&t, net, ds, &tc), BP_OK);
    watch w = {.stop_at = BATCHES};
    bp_trainer_set_batch_callback(t, on_batch, &w);
    epochs_seen = 0;
    bp_train_result res;
    ck_assert_int_eq(bp_trainer_run(t, ds, 3, on_epoch, NULL, &res), BP_ESTOPPED);
    ck_assert_int_eq(epochs_seen, 1);
    ck_assert_int_eq(last_epoch.epoch, 1);
    ck_assert(last_epoch.validation_accuracy >= 0.0);
    bp_trainer_state st;
    bp_trainer_get_state(t, &st);
    ck_assert_int_eq(st.epoch, 1);
    ck_assert_uint_eq(st.position, 0);
    w.stop_at = 3 * BATCHES;
    ck_assert_int_eq(bp_trainer_run(t, ds, 3, on_epoch, NULL, &res), BP_OK);
    ck_assert_int_eq(w.calls, 3 * BATCHES);
    ck_assert_int_eq(res.epochs, 3);
    ck_assert_mem_eq(bp_net_params(net, NULL), want, sizeof(float) * n);
    bp_trainer_free(t);
    bp_net_free(net);
    bp_dataset_free(ds);
    free(want);
}
END_TEST

/* The stopped trainer checkpointed, loaded into a new net and trainer in a clean state, and run
 * to the end: bp_train's parameters to the bit (the CLI's Ctrl-C path). */
START_TEST(test_checkpoint_at_the_stop_resumes_bit_exactly)
{
    bp_dataset *ds = make_set();
    size_t n;
    float *want = straight_params(ds, &n);
    char dir[] = "/tmp/bp-batchcb-XXXXXX", path[64];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/run.ckpt", dir);
    bp_train_config tc;
    train_config(&tc);
    for (long stop_at = 2 * BATCHES - 1; stop_at >= BATCHES - 3; stop_at -= 4) {
        bp_net *net = make_net();
        bp_trainer *t;
        ck_assert_int_eq(bp_trainer_create(&t, net, ds, &tc), BP_OK);
        watch w = {.stop_at = stop_at};
        bp_trainer_set_batch_callback(t, on_batch, &w);
        ck_assert_int_eq(bp_trainer_run(t, ds, 3, NULL, NULL, NULL), BP_ESTOPPED);
        ck_assert_int_eq(bp_checkpoint_save(t, path, NULL), BP_OK);
        bp_trainer_free(t);
        bp_net_free(net);

        bp_net *resumed;
        bp_trainer *t2;
        ck_assert_int_eq(bp_checkpoint_load(path, ds, NULL, &resumed, &t2, NULL), BP_OK);
        bp_trainer_state st;
        bp_trainer_get_state(t2, &st);
        ck_assert_uint_eq(st.epoch * BATCHES + (long)(st.position / BATCH), stop_at);
        ck_assert_int_eq(bp_trainer_run(t2, ds, 3, NULL, NULL, NULL), BP_OK);
        ck_assert_msg(memcmp(bp_net_params(resumed, NULL), want, sizeof(float) * n) == 0,
                      "stopped at mini-batch %ld: the resumed run differs", stop_at);
        bp_trainer_free(t2);
        bp_net_free(resumed);
    }
    unlink(path);
    rmdir(dir);
    bp_dataset_free(ds);
    free(want);
}
END_TEST

static Suite *batch_callback_suite(void)
{
    Suite *s = suite_create("batch-callback");
    TCase *tc = tcase_create("batch-callback");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_callback_sees_every_batch_in_order);
    tcase_add_test(tc, test_stop_after_k_batches);
    tcase_add_test(tc, test_run_stopped_mid_epoch_goes_on);
    tcase_add_test(tc, test_stop_at_an_epoch_end);
    tcase_add_test(tc, test_checkpoint_at_the_stop_resumes_bit_exactly);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return bp_test_main(batch_callback_suite()); }
