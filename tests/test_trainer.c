/*
 * test_trainer.c - the resumable trainer: a run stopped anywhere between mini-batches, copied
 * out as plain state (with the parameters and the optimiser's state arena) and continued by a
 * new trainer on a new net, ends bit-identical to the run that never stopped, for SGD and for
 * the stateful optimisers; bp_train is that same loop; bad states are refused.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backprop.h"
#include "testutil.h"

enum { N = 300, DIM = 12, CLASSES = 5, BATCH = 16 };

static bp_dataset *make_set(void)
{
    static float x[N * DIM];
    int labels[N];
    uint64_t seed = 19;
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
    cfg.seed = 4;
    bp_net *net;
    ck_assert_int_eq(bp_net_create(&net, &cfg), BP_OK);
    return net;
}

static void train_config(bp_train_config *tc)
{
    bp_train_config_init(tc);
    tc->batch = BATCH;
    tc->eta = 0.5f;
    tc->seed = 77;
}

/* Stopped after one epoch and `extra` mini-batches of the second, resumed elsewhere, run to
 * the end of epoch 3: parameters and epoch costs equal the straight run's to the bit. With a
 * stateful optimiser the state arena (and the step count, Adam's t) must travel too. */
static void check_resume_with(long extra, bp_optimizer_kind kind, float clip_norm)
{
    bp_dataset *ds = make_set();
    bp_train_config tc;
    train_config(&tc);
    tc.optimizer = kind;
    tc.clip_norm = clip_norm;
    if (kind != BP_OPT_SGD)
        tc.eta = 0.02f;

    bp_net *straight = make_net();
    bp_trainer *ts;
    ck_assert_int_eq(bp_trainer_create(&ts, straight, ds, &tc), BP_OK);
    bp_epoch_report want[3];
    for (int e = 0; e < 3; e++)
        ck_assert_int_eq(bp_trainer_epoch(ts, &want[e]), BP_OK);
    ck_assert_int_eq(bp_trainer_epochs_done(ts), 3);

    bp_net *first = make_net();
    bp_trainer *t1;
    ck_assert_int_eq(bp_trainer_create(&t1, first, ds, &tc), BP_OK);
    bp_epoch_report r;
    ck_assert_int_eq(bp_trainer_epoch(t1, &r), BP_OK);
    ck_assert_double_eq(r.train_cost, want[0].train_cost);
    int finished = 1;
    ck_assert_int_eq(bp_trainer_batches(t1, extra, &finished, &r), BP_OK);
    ck_assert_int_eq(finished, 0);

    /* Copy everything out as plain data, then destroy the originals. */
    bp_trainer_state st;
    ck_assert_int_eq(bp_trainer_get_state(t1, &st), BP_OK);
    ck_assert_int_eq(st.epoch, 1);
    ck_assert_uint_eq(st.position, (size_t)(extra * BATCH));
    size_t *order = malloc(sizeof *order * st.n);
    memcpy(order, st.order, sizeof *order * st.n);
    st.order = order;
    size_t n_params;
    bp_net_params(first, &n_params);
    ck_assert_uint_eq(st.steps, (size_t)((N + BATCH - 1) / BATCH + extra));
    float *opt_state = NULL;
    if (kind == BP_OPT_SGD) {
        ck_assert_ptr_null(st.optimizer_state);
        ck_assert_uint_eq(st.optimizer_state_count, 0);
    } else {
        ck_assert_uint_ge(st.optimizer_state_count, n_params);
        opt_state = malloc(sizeof(float) * st.optimizer_state_count);
        memcpy(opt_state, st.optimizer_state, sizeof(float) * st.optimizer_state_count);
        st.optimizer_state = opt_state;
    }
    float *params = malloc(sizeof(float) * n_params);
    memcpy(params, bp_net_params(first, NULL), sizeof(float) * n_params);
    bp_trainer_free(t1);
    bp_net_free(first);

    bp_net *resumed = make_net(); /* same config, but its own initial parameters get replaced */
    memcpy(bp_net_params(resumed, NULL), params, sizeof(float) * n_params);
    bp_trainer *t2;
    ck_assert_int_eq(bp_trainer_create(&t2, resumed, ds, &tc), BP_OK);
    ck_assert_int_eq(bp_trainer_set_state(t2, &st), BP_OK);
    ck_assert_int_eq(bp_trainer_epochs_done(t2), 1);
    for (int e = 1; e < 3; e++) {
        ck_assert_int_eq(bp_trainer_epoch(t2, &r), BP_OK);
        ck_assert_int_eq(r.epoch, e + 1);
        ck_assert_msg(r.train_cost == want[e].train_cost, "epoch %d cost %.17g vs %.17g", e + 1,
                      r.train_cost, want[e].train_cost);
    }
    ck_assert_mem_eq(bp_net_params(resumed, NULL), bp_net_params(straight, NULL),
                     sizeof(float) * n_params);
    free(order), free(params), free(opt_state);
    bp_trainer_free(t2);
    bp_trainer_free(ts);
    bp_net_free(resumed);
    bp_net_free(straight);
    bp_dataset_free(ds);
}

static void check_resume(long extra) { check_resume_with(extra, BP_OPT_SGD, 0.0f); }

START_TEST(test_resume_mid_epoch_is_bit_identical) { check_resume(7); }
END_TEST
START_TEST(test_resume_after_one_batch_is_bit_identical) { check_resume(1); }
END_TEST
START_TEST(test_resume_with_state_is_bit_identical)
{
    check_resume_with(7, BP_OPT_MOMENTUM, 0.0f);
    check_resume_with(5, BP_OPT_ADAM, 0.0f);
    check_resume_with(3, BP_OPT_ADAMW, 0.5f);
    check_resume_with(2, BP_OPT_RMSPROP, 0.0f);
    check_resume_with(4, BP_OPT_NESTEROV, 0.0f);
}
END_TEST

/* bp_train is the trainer's loop: the same parameters, to the bit. */
START_TEST(test_train_is_the_trainer_loop)
{
    bp_dataset *ds = make_set();
    bp_train_config tc;
    train_config(&tc);
    tc.epochs = 3;
    bp_net *a = make_net(), *b = make_net();
    ck_assert_int_eq(bp_train(a, ds, NULL, &tc, NULL), BP_OK);
    bp_trainer *t;
    ck_assert_int_eq(bp_trainer_create(&t, b, ds, &tc), BP_OK);
    for (int e = 0; e < 3; e++)
        ck_assert_int_eq(bp_trainer_epoch(t, NULL), BP_OK);
    size_t n;
    ck_assert_mem_eq(bp_net_params(a, &n), bp_net_params(b, NULL), sizeof(float) * n);
    bp_trainer_free(t);
    bp_net_free(a);
    bp_net_free(b);
    bp_dataset_free(ds);
}
END_TEST

/* Mini-batches after the trainer is made allocate nothing: for SGD, and for Adam with clipping,
 * a schedule and early stopping (whose best copy is made at create, not when an epoch is
 * observed). */
static void check_no_allocation(const bp_train_config *tc)
{
    bp_dataset *ds = make_set();
    bp_net *net = make_net();
    bp_trainer *t;
    ck_assert_int_eq(bp_trainer_create(&t, net, ds, tc), BP_OK);
    bp_alloc_stats s0, s1;
    bp_alloc_stats_get(&s0);
    int failures = 0;
    for (int e = 0; e < 3; e++) {
        failures += bp_trainer_epoch(t, NULL) != BP_OK;
        failures += bp_trainer_observe(t, 0.5 + 0.1 * (e == 1), NULL) != BP_OK;
    }
    bp_alloc_stats_get(&s1);
    ck_assert_int_eq(failures, 0);
    ck_assert_uint_eq(s1.allocations, s0.allocations);
    bp_trainer_free(t);
    bp_net_free(net);
    bp_dataset_free(ds);
}

START_TEST(test_batches_allocate_nothing)
{
    bp_train_config tc;
    train_config(&tc);
    check_no_allocation(&tc);
    tc.optimizer = BP_OPT_ADAM;
    tc.eta = 0.01f;
    tc.clip_norm = 1.0f;
    tc.schedule = (bp_schedule){BP_SCHEDULE_HALVE, 1, 0.0f};
    tc.early_stop = 4;
    check_no_allocation(&tc);
}
END_TEST

START_TEST(test_bad_states_are_refused)
{
    bp_dataset *ds = make_set();
    bp_train_config tc;
    train_config(&tc);
    bp_net *net = make_net();
    bp_trainer *t;
    ck_assert_int_eq(bp_trainer_create(&t, net, ds, &tc), BP_OK);
    bp_trainer_state good, st;
    ck_assert_int_eq(bp_trainer_get_state(t, &good), BP_OK);
    size_t *order = malloc(sizeof *order * N);
    memcpy(order, good.order, sizeof *order * N);
    good.order = order;

    st = good;
    order[3] = order[4]; /* a repeat */
    ck_assert_int_eq(bp_trainer_set_state(t, &st), BP_EINVAL);
    ck_assert_ptr_nonnull(strstr(bp_last_error(), "not a permutation"));
    order[3] = N; /* out of range */
    ck_assert_int_eq(bp_trainer_set_state(t, &st), BP_EINVAL);
    ck_assert_ptr_nonnull(strstr(bp_last_error(), "out of range"));
    order[3] = 3;
    order[4] = 4;
    for (size_t i = 0; i < N; i++)
        order[i] = i;
    st.n = N - 1;
    ck_assert_int_eq(bp_trainer_set_state(t, &st), BP_EINVAL);
    st = good;
    st.position = N;
    ck_assert_int_eq(bp_trainer_set_state(t, &st), BP_EINVAL);
    st = good;
    memset(st.rng, 0, sizeof st.rng);
    ck_assert_int_eq(bp_trainer_set_state(t, &st), BP_EINVAL);
    st = good;
    st.optimizer_state_count = 3;
    ck_assert_int_eq(bp_trainer_set_state(t, &st), BP_EINVAL);
    ck_assert_int_eq(bp_trainer_set_state(t, NULL), BP_EINVAL);
    ck_assert_int_eq(bp_trainer_batches(t, 0, NULL, NULL), BP_EINVAL);
    /* A refused state changes nothing: the trainer still trains from where it was. */
    ck_assert_int_eq(bp_trainer_epochs_done(t), 0);
    ck_assert_int_eq(bp_trainer_epoch(t, NULL), BP_OK);
    free(order);
    bp_trainer_free(t);
    bp_net_free(net);
    bp_dataset_free(ds);
}
END_TEST

/* bp_trainer_run in two calls (to epoch 2, then to epoch 4) is bp_train over 4 epochs, to the
 * bit, and counts all the trainer's epochs; bp_trainer_config gives back the configuration
 * without its callback. */
static int count_epochs(const bp_epoch_report *r, void *user)
{
    (void)r;
    ++*(int *)user;
    return 0;
}

START_TEST(test_run_continues_to_the_total)
{
    bp_dataset *ds = make_set();
    bp_train_config tc;
    train_config(&tc);
    tc.epochs = 4;
    tc.optimizer = BP_OPT_MOMENTUM;
    tc.eta = 0.05f;
    bp_net *straight = make_net();
    ck_assert_int_eq(bp_train(straight, ds, ds, &tc, NULL), BP_OK);

    int calls = 0;
    tc.on_epoch = count_epochs;
    tc.user = &calls;
    bp_net *net = make_net();
    bp_trainer *t;
    ck_assert_int_eq(bp_trainer_create(&t, net, ds, &tc), BP_OK);
    bp_train_config back;
    ck_assert_int_eq(bp_trainer_config(t, &back), BP_OK);
    ck_assert(back.on_epoch == NULL);
    ck_assert_ptr_null(back.user);
    ck_assert_int_eq(back.optimizer, BP_OPT_MOMENTUM);
    ck_assert(back.eta == tc.eta && back.epochs == 4 && back.seed == tc.seed);
    ck_assert_ptr_eq(bp_trainer_net(t), net);
    bp_train_result res;
    ck_assert_int_eq(bp_trainer_run(t, ds, 2, count_epochs, &calls, &res), BP_OK);
    ck_assert_int_eq(res.epochs, 2);
    ck_assert_int_eq(bp_trainer_run(t, ds, 4, count_epochs, &calls, &res), BP_OK);
    ck_assert_int_eq(res.epochs, 4);
    ck_assert_int_eq(calls, 4);
    ck_assert(res.validation_accuracy >= 0.0);
    size_t n;
    const float *a = bp_net_params(straight, &n), *b = bp_net_params(net, NULL);
    ck_assert(memcmp(a, b, n * sizeof *a) == 0);
    /* Nothing left to do: a run to a total already reached trains nothing. */
    ck_assert_int_eq(bp_trainer_run(t, ds, 3, NULL, NULL, &res), BP_OK);
    ck_assert_int_eq(res.epochs, 4);
    ck_assert(memcmp(a, b, n * sizeof *a) == 0);
    ck_assert_int_eq(bp_trainer_run(t, ds, 0, NULL, NULL, NULL), BP_EINVAL);
    ck_assert_int_eq(bp_trainer_run(NULL, ds, 1, NULL, NULL, NULL), BP_EINVAL);
    ck_assert_int_eq(bp_trainer_config(NULL, &back), BP_EINVAL);
    bp_trainer_free(t);
    bp_net_free(net);
    bp_net_free(straight);
    bp_dataset_free(ds);
}
END_TEST

static Suite *trainer_suite(void)
{
    Suite *s = suite_create("trainer");
    TCase *tc = tcase_create("trainer");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_resume_mid_epoch_is_bit_identical);
    tcase_add_test(tc, test_resume_after_one_batch_is_bit_identical);
    tcase_add_test(tc, test_resume_with_state_is_bit_identical);
    tcase_add_test(tc, test_train_is_the_trainer_loop);
    tcase_add_test(tc, test_run_continues_to_the_total);
    tcase_add_test(tc, test_batches_allocate_nothing);
    tcase_add_test(tc, test_bad_states_are_refused);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return bp_test_main(trainer_suite()); }
