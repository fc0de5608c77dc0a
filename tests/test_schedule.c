/*
 * test_schedule.c - learning-rate schedules and early stopping. Scripted validation accuracies
 * are fed to bp_trainer_observe and the rate after each, the stop epoch and the best epoch are
 * checked against the rules worked out by hand; the kept parameters really are the best
 * epoch's; bp_train stops, restores and reports; the whole trainer state (schedule and best
 * parameters included) round-trips bit for bit and bad states are refused; the per-epoch
 * gradient norms reach the report.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backprop.h"
#include "testutil.h"

enum { N = 24, DIM = 4, CLASSES = 2 };
static const float ETA0 = 0.5f;

/* Two classes split by the first coordinate: separable, so a validation set equal to the
 * training set reaches accuracy 1 in a few epochs and can then no longer improve. */
static bp_dataset *make_set(void)
{
    static float x[N * DIM];
    int labels[N];
    uint64_t seed = 3;
    bp_test_fill(x, N * DIM, -1, 1, &seed);
    for (int i = 0; i < N; i++) {
        labels[i] = i % 2;
        x[i * DIM] = labels[i] ? 0.5f + 0.5f * fabsf(x[i * DIM]) : -0.5f - 0.5f * fabsf(x[i * DIM]);
    }
    bp_dataset *ds;
    ck_assert_int_eq(bp_dataset_from_floats(&ds, x, labels, N, DIM, CLASSES), BP_OK);
    return ds;
}

static bp_net *make_net(void)
{
    const int sizes[] = {DIM, 6, CLASSES};
    bp_net_config cfg;
    bp_net_config_init(&cfg);
    cfg.sizes = sizes;
    cfg.n_sizes = 3;
    cfg.max_batch = 8;
    cfg.threads = 1;
    cfg.seed = 8;
    bp_net *net;
    ck_assert_int_eq(bp_net_create(&net, &cfg), BP_OK);
    return net;
}

static void base_config(bp_train_config *tc)
{
    bp_train_config_init(tc);
    tc->batch = 8;
    tc->eta = ETA0;
    tc->seed = 12;
}

/* A trainer over a fresh net; the caller frees all three. */
typedef struct rig {
    bp_dataset *ds;
    bp_net *net;
    bp_trainer *t;
} rig;

static rig make_rig(const bp_train_config *tc)
{
    rig r = {make_set(), make_net(), NULL};
    ck_assert_int_eq(bp_trainer_create(&r.t, r.net, r.ds, tc), BP_OK);
    return r;
}

static void free_rig(rig *r)
{
    bp_trainer_free(r->t);
    bp_net_free(r->net);
    bp_dataset_free(r->ds);
}

/* Feed acc[0..n) one epoch at a time: after epoch e (1-based), the epoch's report must say it
 * trained at report_eta[e-1] * ETA0 (when given), the trainer's rate must be eta[e-1] * ETA0,
 * its best epoch best[e-1], and stop must be set exactly at epoch stop_at (0: never). */
static void run_script(const bp_train_config *tc, int n, const double *acc, const double *eta,
                       const double *report_eta, const int *best, int stop_at)
{
    rig r = make_rig(tc);
    ck_assert(bp_trainer_eta(r.t) == (double)ETA0);
    for (int e = 1; e <= n; e++) {
        bp_epoch_report rep;
        ck_assert_int_eq(bp_trainer_epoch(r.t, &rep), BP_OK);
        if (report_eta)
            ck_assert_msg(fabs(rep.eta - report_eta[e - 1] * ETA0) <= 1e-6 * ETA0,
                          "epoch %d trained at %.9g, want %.9g", e, rep.eta,
                          report_eta[e - 1] * ETA0);
        int stop = -1;
        ck_assert_int_eq(bp_trainer_observe(r.t, acc[e - 1], &stop), BP_OK);
        ck_assert_msg(fabs(bp_trainer_eta(r.t) - eta[e - 1] * ETA0) <= 1e-12,
                      "after epoch %d eta %.17g, want %.17g", e, bp_trainer_eta(r.t),
                      eta[e - 1] * ETA0);
        if (best) {
            double best_acc;
            ck_assert_int_eq(bp_trainer_best(r.t, &best_acc), best[e - 1]);
            ck_assert(best_acc == acc[best[e - 1] - 1]);
        }
        ck_assert_msg(stop == (e == stop_at), "epoch %d: stop %d, want it at epoch %d", e, stop,
                      stop_at);
    }
    free_rig(&r);
}

START_TEST(test_parse)
{
    bp_schedule s;
    ck_assert_int_eq(bp_schedule_parse("const", &s), BP_OK);
    ck_assert_int_eq(s.kind, BP_SCHEDULE_CONST);
    ck_assert_int_eq(bp_schedule_parse("cosine", &s), BP_OK);
    ck_assert_int_eq(s.kind, BP_SCHEDULE_COSINE);
    ck_assert_int_eq(bp_schedule_parse("halve:10", &s), BP_OK);
    ck_assert_int_eq(s.kind, BP_SCHEDULE_HALVE);
    ck_assert_int_eq(s.epochs, 10);
    ck_assert_int_eq(bp_schedule_parse("step:5:0.5", &s), BP_OK);
    ck_assert_int_eq(s.kind, BP_SCHEDULE_STEP);
    ck_assert_int_eq(s.epochs, 5);
    ck_assert_float_eq(s.factor, 0.5f);
    ck_assert_int_eq(bp_schedule_parse("step:1:1e-1", &s), BP_OK);
    ck_assert_float_eq(s.factor, 0.1f);
    ck_assert_int_eq(bp_schedule_parse("step:3:2", &s), BP_OK);
    ck_assert_float_eq(s.factor, 2.0f);
    const char *bad[] = {"", "Const", "constant", "cosine:4", "halve", "halve:", "halve:0",
                         "halve:-1", "halve:+3", "halve: 3", "halve:3x", "halve:99999999999",
                         "step", "step:5", "step:5:", "step:0:0.5", "step:5:0", "step:5:-1",
                         "step:5:inf", "step:5:nan", "step:5:0x1p-1", "step:5:0.5:1",
                         "step::0.5", "step:5:1e-60", "step:5:1e60"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        s = (bp_schedule){BP_SCHEDULE_COSINE, 7, 7.0f};
        ck_assert_msg(bp_schedule_parse(bad[i], &s) == BP_EINVAL, "'%s' was accepted", bad[i]);
        ck_assert_ptr_nonnull(strstr(bp_last_error(), bad[i]));
        ck_assert_int_eq(s.kind, BP_SCHEDULE_COSINE); /* untouched */
    }
    ck_assert_int_eq(bp_schedule_parse(NULL, &s), BP_EINVAL);
    ck_assert_int_eq(bp_schedule_parse("const", NULL), BP_EINVAL);
}
END_TEST

/* const: eta never moves; the best is the first epoch of the strictly greatest accuracy
 * (0.7 again at epoch 3 is not an improvement). */
START_TEST(test_const_keeps_eta_and_tracks_the_best)
{
    bp_train_config tc;
    base_config(&tc);
    const double acc[] = {0.5, 0.7, 0.7, 0.6, 0.8};
    const double eta[] = {1, 1, 1, 1, 1};
    const int best[] = {1, 2, 2, 2, 5};
    run_script(&tc, 5, acc, eta, eta, best, 0);
}
END_TEST

/* halve:2. since_best after each epoch: 0 0 1 2 | 0 1 2 3 4 5 6 7 8 9 10 11 12; a halving at
 * every positive multiple of 2 without improvement: epochs 4, 7, 9, 11, 13, 15 and 17, the
 * seventh leaving eta0/128, where the run stops. Each epoch trains at the previous rate. */
START_TEST(test_halve_by_script)
{
    bp_train_config tc;
    base_config(&tc);
    tc.schedule = (bp_schedule){BP_SCHEDULE_HALVE, 2, 0.0f};
    double acc[17];
    const double head[] = {0.5, 0.6, 0.6, 0.55, 0.7};
    for (int e = 0; e < 17; e++)
        acc[e] = e < 5 ? head[e] : 0.6;
    const double h = 0.5, q = 0.25, o = 0.125;
    const double eta[] = {1, 1, 1, h, h, h, q, q, o, o, o / 2, o / 2, o / 4, o / 4, o / 8,
                          o / 8, o / 16};
    double report_eta[17] = {1};
    for (int e = 1; e < 17; e++)
        report_eta[e] = eta[e - 1];
    const int best[] = {1, 2, 2, 2, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5};
    run_script(&tc, 17, acc, eta, report_eta, best, 17);
}
END_TEST

/* step:2:0.5 over 6 epochs, no validation (-1): epochs train at 1, 1, 1/2, 1/2, 1/4, 1/4, so
 * after epoch e the rate (of epoch e + 1) is 1, 1/2, 1/2, 1/4, 1/4, 1/8. */
START_TEST(test_step_by_script)
{
    bp_train_config tc;
    base_config(&tc);
    tc.schedule = (bp_schedule){BP_SCHEDULE_STEP, 2, 0.5f};
    const double acc[] = {-1, -1, -1, -1, -1, -1};
    const double eta[] = {1, 0.5, 0.5, 0.25, 0.25, 0.125};
    const double report_eta[] = {1, 1, 0.5, 0.5, 0.25, 0.25};
    run_script(&tc, 6, acc, eta, report_eta, NULL, 0);
}
END_TEST

/* cosine over E = 4: eta_e = (1 + cos(pi (e - 1) / 4)) / 2 = 1, (1 + 0.7071068) / 2 =
 * 0.8535534, 0.5, (1 - 0.7071068) / 2 = 0.1464466; a fifth epoch keeps epoch 4's rate. */
START_TEST(test_cosine_by_script)
{
    bp_train_config tc;
    base_config(&tc);
    tc.epochs = 4;
    tc.schedule = (bp_schedule){BP_SCHEDULE_COSINE, 0, 0.0f};
    const double acc[] = {0.5, 0.6, 0.7, 0.8, 0.9};
    const double c = 0.70710678118654752;
    const double eta[] = {(1 + c) / 2, 0.5, (1 - c) / 2, (1 - c) / 2, (1 - c) / 2};
    const double report_eta[] = {1, (1 + c) / 2, 0.5, (1 - c) / 2, (1 - c) / 2};
    run_script(&tc, 5, acc, eta, report_eta, NULL, 0);
}
END_TEST

/* early_stop 3: no improvement for 3 epochs ends the run; an improvement restarts the count. */
START_TEST(test_early_stop_by_script)
{
    bp_train_config tc;
    base_config(&tc);
    tc.early_stop = 3;
    const double ones[] = {1, 1, 1, 1, 1, 1, 1};
    /* since_best: 0 0 1 2 3 -> stops at 5, best 2 (the repeat 0.6 at 4 does not improve). */
    const double a1[] = {0.5, 0.6, 0.55, 0.6, 0.58};
    const int b1[] = {1, 2, 2, 2, 2};
    run_script(&tc, 5, a1, ones, ones, b1, 5);
    /* since_best: 0 1 2 0 1 2 3 -> stops at 7, best 4. */
    const double a2[] = {0.5, 0.4, 0.4, 0.6, 0.5, 0.5, 0.5};
    const int b2[] = {1, 1, 1, 4, 4, 4, 4};
    run_script(&tc, 7, a2, ones, ones, b2, 7);
    /* With halve:2 as well, each halving restarts the patience: halvings after epochs 3 and 5
     * (since_best 2 and 4), and since_best mod 2 never reaches 3, so no early stop (stop_at 0:
     * never). */
    tc.schedule = (bp_schedule){BP_SCHEDULE_HALVE, 2, 0.0f};
    const double a3[] = {0.5, 0.4, 0.4, 0.4, 0.4, 0.4};
    const double e3[] = {1, 1, 0.5, 0.5, 0.25, 0.25};
    const int b3[] = {1, 1, 1, 1, 1, 1};
    run_script(&tc, 6, a3, e3, NULL, b3, 0);
    /* A patience below N stops before the first halving: halve:3 with early_stop 2 stops
     * after epoch 3 (since_best 2) at the initial rate. */
    tc.early_stop = 2;
    tc.schedule = (bp_schedule){BP_SCHEDULE_HALVE, 3, 0.0f};
    const double a4[] = {0.5, 0.4, 0.4};
    const double e4[] = {1, 1, 1};
    const int b4[] = {1, 1, 1};
    run_script(&tc, 3, a4, e4, NULL, b4, 3);
    /* halve:2 with early_stop 2: the patience is used up exactly when the rate halves; the
     * halving wins and the run goes on, ending only at eta0 / 128 (seven halvings, after
     * epoch 1 + 14). */
    tc.schedule = (bp_schedule){BP_SCHEDULE_HALVE, 2, 0.0f};
    double a5[15], e5[15];
    int b5[15];
    for (int e = 0; e < 15; e++) {
        a5[e] = e == 0 ? 0.5 : 0.4;
        e5[e] = ldexp(1.0, -(e / 2));
        b5[e] = 1;
    }
    run_script(&tc, 15, a5, e5, NULL, b5, 15);
}
END_TEST

START_TEST(test_observe_refusals_change_nothing)
{
    bp_train_config tc;
    base_config(&tc);
    tc.early_stop = 2;
    rig r = make_rig(&tc);
    int stop = 7;
    ck_assert_int_eq(bp_trainer_observe(r.t, 0.5, &stop), BP_EINVAL); /* no epoch yet */
    ck_assert_int_eq(stop, 0);
    ck_assert_ptr_nonnull(strstr(bp_last_error(), "no epoch has finished"));
    ck_assert_int_eq(bp_trainer_epoch(r.t, NULL), BP_OK);
    const double bad[] = {1.5, -0.5, NAN, INFINITY, -1.0 /* early_stop needs one */};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        ck_assert_int_eq(bp_trainer_observe(r.t, bad[i], NULL), BP_EINVAL);
    ck_assert_int_eq(bp_trainer_best(r.t, NULL), 0);
    ck_assert_int_eq(bp_trainer_observe(r.t, 0.5, &stop), BP_OK);
    ck_assert_int_eq(bp_trainer_best(r.t, NULL), 1);
    ck_assert_int_eq(bp_trainer_observe(r.t, 0.9, &stop), BP_EINVAL); /* epoch 1 again */
    double best;
    ck_assert_int_eq(bp_trainer_best(r.t, &best), 1);
    ck_assert(best == 0.5);
    ck_assert_int_eq(bp_trainer_observe(NULL, 0.5, NULL), BP_EINVAL);
    ck_assert_int_eq(bp_trainer_best(NULL, &best), 0);
    ck_assert(best == -1.0);
    free_rig(&r);
    /* Without early stopping or halving, -1 is an observation like any other. */
    base_config(&tc);
    tc.schedule = (bp_schedule){BP_SCHEDULE_STEP, 1, 0.5f};
    r = make_rig(&tc);
    ck_assert_int_eq(bp_trainer_epoch(r.t, NULL), BP_OK);
    ck_assert_int_eq(bp_trainer_observe(r.t, -1.0, &stop), BP_OK);
    ck_assert_int_eq(bp_trainer_best(r.t, &best), 0);
    ck_assert(best == -1.0);
    ck_assert(bp_trainer_eta(r.t) == ETA0 * 0.5);
    free_rig(&r);
}
END_TEST

/* The kept parameters are the best epoch's, to the bit, after later epochs moved the net. */
/* With batch norm the best epoch is also its running statistics: after restore_best the net's
 * inference outputs are those it gave at the best epoch, not a mix of that epoch's scales and
 * the last epoch's averages. */
START_TEST(test_restore_best_with_batch_norm)
{
    const int sizes[] = {DIM, 6, CLASSES};
    bp_net_config nc;
    bp_net_config_init(&nc);
    nc.sizes = sizes;
    nc.n_sizes = 3;
    nc.max_batch = 8;
    nc.threads = 1;
    nc.batchnorm = 1;
    bp_net *net;
    ck_assert_int_eq(bp_net_create(&net, &nc), BP_OK);
    bp_dataset *ds = make_set();
    bp_train_config tc;
    base_config(&tc);
    tc.early_stop = 5;
    bp_trainer *t;
    ck_assert_int_eq(bp_trainer_create(&t, net, ds, &tc), BP_OK);
    float x[DIM * N], at_best[CLASSES * N], now[CLASSES * N];
    ck_assert_int_eq(bp_dataset_gather(ds, NULL, N, x, NULL, CLASSES), BP_OK);
    ck_assert_int_eq(bp_trainer_epoch(t, NULL), BP_OK);
    ck_assert_int_eq(bp_trainer_observe(t, 0.9, NULL), BP_OK); /* epoch 1: the best */
    ck_assert_int_eq(bp_net_forward(net, x, DIM, N, at_best, CLASSES), BP_OK);
    for (int e = 2; e <= 4; e++) {
        ck_assert_int_eq(bp_trainer_epoch(t, NULL), BP_OK);
        ck_assert_int_eq(bp_trainer_observe(t, 0.5, NULL), BP_OK);
    }
    ck_assert_int_eq(bp_net_forward(net, x, DIM, N, now, CLASSES), BP_OK);
    ck_assert(memcmp(now, at_best, sizeof now) != 0);
    ck_assert_int_eq(bp_trainer_restore_best(t), BP_OK);
    ck_assert_int_eq(bp_net_forward(net, x, DIM, N, now, CLASSES), BP_OK);
    ck_assert(memcmp(now, at_best, sizeof now) == 0);
    /* The state carries both parts, and a wrong count is refused. */
    bp_trainer_state st;
    ck_assert_int_eq(bp_trainer_get_state(t, &st), BP_OK);
    size_t n_params;
    bp_net_params(net, &n_params);
    ck_assert_uint_gt(st.best_count, n_params);
    st.best_count = n_params;
    ck_assert_int_eq(bp_trainer_set_state(t, &st), BP_EINVAL);
    ck_assert_ptr_nonnull(strstr(bp_last_error(), "running statistics"));
    bp_trainer_free(t);
    bp_net_free(net);
    bp_dataset_free(ds);
}
END_TEST

START_TEST(test_restore_best_restores_that_epoch)
{
    bp_train_config tc;
    base_config(&tc);
    tc.early_stop = 5;
    rig r = make_rig(&tc);
    size_t n;
    float *p = bp_net_params(r.net, &n);
    ck_assert_int_eq(bp_trainer_restore_best(r.t), BP_EINVAL); /* nothing observed yet */
    float *at2 = malloc(n * sizeof *at2);
    const double acc[] = {0.3, 0.8, 0.5, 0.6};
    for (int e = 1; e <= 4; e++) {
        ck_assert_int_eq(bp_trainer_epoch(r.t, NULL), BP_OK);
        if (e == 2)
            memcpy(at2, p, n * sizeof *p);
        ck_assert_int_eq(bp_trainer_observe(r.t, acc[e - 1], NULL), BP_OK);
    }
    ck_assert_int_ne(memcmp(p, at2, n * sizeof *p), 0);
    ck_assert_int_eq(bp_trainer_restore_best(r.t), BP_OK);
    ck_assert_mem_eq(p, at2, n * sizeof *p);
    free(at2);
    free_rig(&r);
    base_config(&tc); /* no early stopping: nothing is kept */
    r = make_rig(&tc);
    ck_assert_int_eq(bp_trainer_epoch(r.t, NULL), BP_OK);
    ck_assert_int_eq(bp_trainer_observe(r.t, 0.5, NULL), BP_OK);
    ck_assert_int_eq(bp_trainer_restore_best(r.t), BP_EINVAL);
    ck_assert_ptr_nonnull(strstr(bp_last_error(), "early_stop"));
    free_rig(&r);
}
END_TEST

/* bp_train's side: what each epoch left, recorded by the callback. */
typedef struct record {
    bp_net *net;
    int epochs;
    double acc[64], eta[64];
    float *params[64];
} record;

static int record_epoch(const bp_epoch_report *rep, void *user)
{
    record *rec = user;
    size_t n;
    const float *p = bp_net_params(rec->net, &n);
    ck_assert_int_eq(rep->epoch, rec->epochs + 1);
    ck_assert_int_lt(rec->epochs, 64);
    rec->acc[rec->epochs] = rep->validation_accuracy;
    rec->eta[rec->epochs] = rep->eta;
    rec->params[rec->epochs] = malloc(n * sizeof(float));
    memcpy(rec->params[rec->epochs], p, n * sizeof(float));
    rec->epochs++;
    return 0;
}

static void free_record(record *rec)
{
    for (int e = 0; e < rec->epochs; e++)
        free(rec->params[e]);
}

/* The validation set is the (separable) training set: accuracy reaches 1 and stays, so from
 * then on nothing improves and early stopping must end the run 3 epochs after the best, with
 * the net holding the best epoch's parameters (the first epoch at the maximum). */
START_TEST(test_train_stops_early_and_restores)
{
    bp_dataset *ds = make_set();
    bp_net *net = make_net();
    record rec = {.net = net};
    bp_train_config tc;
    base_config(&tc);
    tc.eta = 2.0f;
    tc.epochs = 60;
    tc.early_stop = 3;
    tc.on_epoch = record_epoch;
    tc.user = &rec;
    bp_train_result res;
    ck_assert_int_eq(bp_train(net, ds, ds, &tc, &res), BP_OK);
    int best = 0;
    for (int e = 0; e < rec.epochs; e++)
        if (rec.acc[e] > rec.acc[best])
            best = e;
    ck_assert_int_eq(res.epochs, rec.epochs);
    ck_assert_int_eq(res.best_epoch, best + 1);
    ck_assert(res.best_validation_accuracy == rec.acc[best]);
    ck_assert_msg(res.stopped_early && res.epochs == best + 1 + 3 && res.epochs < 60,
                  "ran %d epochs, best %d, stopped_early %d", res.epochs, best + 1,
                  res.stopped_early);
    ck_assert(res.validation_accuracy == rec.acc[rec.epochs - 1]);
    ck_assert(res.final_eta == 2.0);
    size_t n;
    ck_assert_mem_eq(bp_net_params(net, &n), rec.params[best], n * sizeof(float));
    free_record(&rec);
    bp_net_free(net);
    bp_dataset_free(ds);
}
END_TEST

/* halve:1 on the same plateau: every epoch without improvement halves eta, the seventh halving
 * (eta0/128) ends the run; without early_stop the net keeps its last parameters. The rule is
 * replayed here on the accuracies the run reported. */
START_TEST(test_train_halves_and_stops)
{
    bp_dataset *ds = make_set();
    bp_net *net = make_net();
    record rec = {.net = net};
    bp_train_config tc;
    base_config(&tc);
    tc.eta = 2.0f;
    tc.epochs = 60;
    tc.schedule = (bp_schedule){BP_SCHEDULE_HALVE, 1, 0.0f};
    tc.on_epoch = record_epoch;
    tc.user = &rec;
    bp_train_result res;
    ck_assert_int_eq(bp_train(net, ds, ds, &tc, &res), BP_OK);
    double best = -1, eta = 2.0;
    int stop_at = 0, halvings = 0;
    for (int e = 0; e < rec.epochs && !stop_at; e++) {
        ck_assert_msg(rec.eta[e] == eta, "epoch %d trained at %g, want %g", e + 1, rec.eta[e],
                      eta);
        if (rec.acc[e] > best)
            best = rec.acc[e];
        else if (++halvings, (eta /= 2) <= 2.0 / 128)
            stop_at = e + 1;
    }
    ck_assert_int_eq(halvings, 7);
    ck_assert_int_eq(res.epochs, stop_at);
    ck_assert_int_eq(rec.epochs, stop_at);
    ck_assert(res.stopped_early);
    ck_assert(res.final_eta == 2.0 / 128);
    ck_assert(res.best_validation_accuracy == best);
    size_t n;
    ck_assert_mem_eq(bp_net_params(net, &n), rec.params[rec.epochs - 1], n * sizeof(float));
    free_record(&rec);
    bp_net_free(net);
    bp_dataset_free(ds);
}
END_TEST

/* ---- the state ------------------------------------------------------------------------ */

static void adam_halving_config(bp_train_config *tc)
{
    base_config(tc);
    tc->optimizer = BP_OPT_ADAM;
    tc->eta = 0.05f;
    tc->clip_norm = 0.3f;
    tc->schedule = (bp_schedule){BP_SCHEDULE_HALVE, 1, 0.0f};
    tc->early_stop = 3;
}

static const double script[] = {0.5, 0.7, 0.6, 0.65, 0.7};

/* A straight run of 5 epochs against one stopped 3 mini-batches into epoch 3, its state (with
 * Adam's moments, the halved rate, the best epoch and its parameters) copied out as plain data
 * and set on a new trainer over a new net holding the same parameters. */
START_TEST(test_state_round_trip_is_bit_identical)
{
    bp_train_config tc;
    adam_halving_config(&tc);
    rig straight = make_rig(&tc);
    bp_epoch_report want[5];
    for (int e = 0; e < 5; e++) {
        ck_assert_int_eq(bp_trainer_epoch(straight.t, &want[e]), BP_OK);
        ck_assert_int_eq(bp_trainer_observe(straight.t, script[e], NULL), BP_OK);
    }

    rig first = make_rig(&tc);
    for (int e = 0; e < 2; e++) {
        ck_assert_int_eq(bp_trainer_epoch(first.t, NULL), BP_OK);
        ck_assert_int_eq(bp_trainer_observe(first.t, script[e], NULL), BP_OK);
    }
    int finished;
    ck_assert_int_eq(bp_trainer_batches(first.t, 2, &finished, NULL), BP_OK);
    ck_assert_int_eq(finished, 0);
    bp_trainer_state st;
    ck_assert_int_eq(bp_trainer_get_state(first.t, &st), BP_OK);
    ck_assert_uint_eq(st.steps, 2 * 3 + 2); /* 24 samples in batches of 8 */
    ck_assert_int_eq(st.best_epoch, 2);
    ck_assert_int_eq(st.observed, 2);
    ck_assert_int_eq(st.since_best, 0);
    ck_assert(st.eta == 0.05f);
    ck_assert_ptr_nonnull(st.best_params);
    size_t n;
    bp_net_params(first.net, &n);
    ck_assert_uint_eq(st.optimizer_state_count, 2 * n);
    size_t *order = malloc(st.n * sizeof *order);
    float *moments = malloc(st.optimizer_state_count * sizeof *moments);
    float *best = malloc(n * sizeof *best), *params = malloc(n * sizeof *params);
    memcpy(order, st.order, st.n * sizeof *order);
    memcpy(moments, st.optimizer_state, st.optimizer_state_count * sizeof *moments);
    memcpy(best, st.best_params, n * sizeof *best);
    memcpy(params, bp_net_params(first.net, NULL), n * sizeof *params);
    st.order = order, st.optimizer_state = moments, st.best_params = best;
    free_rig(&first);

    rig resumed = make_rig(&tc);
    memcpy(bp_net_params(resumed.net, NULL), params, n * sizeof *params);
    ck_assert_int_eq(bp_trainer_set_state(resumed.t, &st), BP_OK);
    for (int e = 2; e < 5; e++) {
        bp_epoch_report r;
        ck_assert_int_eq(bp_trainer_epoch(resumed.t, &r), BP_OK);
        ck_assert_msg(r.train_cost == want[e].train_cost && r.eta == want[e].eta,
                      "epoch %d: cost %.17g vs %.17g, eta %g vs %g", e + 1, r.train_cost,
                      want[e].train_cost, r.eta, want[e].eta);
        ck_assert_int_eq(bp_trainer_observe(resumed.t, script[e], NULL), BP_OK);
    }
    ck_assert_mem_eq(bp_net_params(resumed.net, NULL), bp_net_params(straight.net, NULL),
                     n * sizeof(float));
    ck_assert(bp_trainer_eta(resumed.t) == bp_trainer_eta(straight.t));
    ck_assert(bp_trainer_eta(resumed.t) == (double)0.05f / 8); /* halved after epochs 3-5 */
    ck_assert_int_eq(bp_trainer_best(resumed.t, NULL), 2);
    /* The best copy travelled too: restoring it on both gives the same net. */
    ck_assert_int_eq(bp_trainer_restore_best(resumed.t), BP_OK);
    ck_assert_int_eq(bp_trainer_restore_best(straight.t), BP_OK);
    ck_assert_mem_eq(bp_net_params(resumed.net, NULL), bp_net_params(straight.net, NULL),
                     n * sizeof(float));
    free(order), free(moments), free(best), free(params);
    free_rig(&resumed);
    free_rig(&straight);
}
END_TEST

START_TEST(test_bad_progress_states_refused)
{
    bp_train_config tc;
    adam_halving_config(&tc);
    rig r = make_rig(&tc);
    for (int e = 0; e < 3; e++) {
        ck_assert_int_eq(bp_trainer_epoch(r.t, NULL), BP_OK);
        ck_assert_int_eq(bp_trainer_observe(r.t, script[e], NULL), BP_OK);
    }
    bp_trainer_state good, st;
    ck_assert_int_eq(bp_trainer_get_state(r.t, &good), BP_OK);
    ck_assert_int_eq(good.best_epoch, 2);
    ck_assert_int_eq(good.since_best, 1);
    size_t *order = malloc(good.n * sizeof *order);
    memcpy(order, good.order, good.n * sizeof *order);
    good.order = order;
#define REFUSED(stmt)                                                                              \
    do {                                                                                           \
        st = good;                                                                                 \
        stmt;                                                                                      \
        ck_assert_int_eq(bp_trainer_set_state(r.t, &st), BP_EINVAL);                               \
    } while (0)
    REFUSED(st.eta = 0.0);
    REFUSED(st.eta = -0.1);
    REFUSED(st.eta = NAN);
    REFUSED(st.eta = INFINITY);
    REFUSED(st.observed = 4);         /* more than the 3 epochs done */
    REFUSED(st.observed = -1);
    REFUSED((st.best_epoch = 3, st.observed = 2));
    REFUSED(st.best_epoch = 0);       /* with accuracy 0.7 */
    REFUSED(st.best_accuracy = -1.0); /* with best epoch 2 */
    REFUSED(st.best_accuracy = 1.5);
    REFUSED(st.since_best = 2);       /* only 1 observation after epoch 2 */
    REFUSED(st.since_best = -1);
    REFUSED(st.best_params = NULL);   /* early stopping keeps one */
#undef REFUSED
    /* A refused state changed nothing. */
    ck_assert_int_eq(bp_trainer_best(r.t, NULL), 2);
    ck_assert(bp_trainer_eta(r.t) == good.eta);
    ck_assert_int_eq(bp_trainer_set_state(r.t, &good), BP_OK);
    free_rig(&r);

    /* A trainer without early stopping refuses best parameters it would never have kept. */
    base_config(&tc);
    r = make_rig(&tc);
    ck_assert_int_eq(bp_trainer_epoch(r.t, NULL), BP_OK);
    ck_assert_int_eq(bp_trainer_observe(r.t, 0.5, NULL), BP_OK);
    ck_assert_int_eq(bp_trainer_get_state(r.t, &st), BP_OK);
    ck_assert_ptr_null(st.best_params);
    ck_assert_ptr_null(st.optimizer_state);
    size_t n;
    const float *p = bp_net_params(r.net, &n);
    st.best_params = p;
    ck_assert_int_eq(bp_trainer_set_state(r.t, &st), BP_EINVAL);
    ck_assert_ptr_nonnull(strstr(bp_last_error(), "best_params"));
    free(order);
    free_rig(&r);
}
END_TEST

/* norm_samples: the report carries bp_net_grad_norms of the epoch's end parameters. */
START_TEST(test_grad_norms_reach_the_report)
{
    bp_train_config tc;
    base_config(&tc);
    tc.norm_samples = 16;
    rig r = make_rig(&tc);
    bp_epoch_report rep;
    ck_assert_int_eq(bp_trainer_epoch(r.t, &rep), BP_OK);
    int k = bp_net_tensor_count(r.net);
    ck_assert_int_eq(rep.n_grad_norms, k);
    ck_assert_ptr_nonnull(rep.grad_norms);
    double direct[8];
    ck_assert_int_le(k, 8);
    ck_assert_int_eq(bp_net_grad_norms(r.net, r.ds, 16, direct, k), BP_OK);
    for (int i = 0; i < k; i++) {
        ck_assert(rep.grad_norms[i] > 0.0);
        ck_assert(rep.grad_norms[i] == direct[i]);
    }
    free_rig(&r);
    base_config(&tc);
    r = make_rig(&tc);
    ck_assert_int_eq(bp_trainer_epoch(r.t, &rep), BP_OK);
    ck_assert_ptr_null(rep.grad_norms);
    ck_assert_int_eq(rep.n_grad_norms, 0);
    free_rig(&r);
}
END_TEST

static Suite *schedule_suite(void)
{
    Suite *s = suite_create("schedule");
    TCase *tc = tcase_create("schedule");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_parse);
    tcase_add_test(tc, test_const_keeps_eta_and_tracks_the_best);
    tcase_add_test(tc, test_halve_by_script);
    tcase_add_test(tc, test_step_by_script);
    tcase_add_test(tc, test_cosine_by_script);
    tcase_add_test(tc, test_early_stop_by_script);
    tcase_add_test(tc, test_observe_refusals_change_nothing);
    tcase_add_test(tc, test_restore_best_restores_that_epoch);
    tcase_add_test(tc, test_train_stops_early_and_restores);
    tcase_add_test(tc, test_train_halves_and_stops);
    tcase_add_test(tc, test_state_round_trip_is_bit_identical);
    tcase_add_test(tc, test_bad_progress_states_refused);
    tcase_add_test(tc, test_grad_norms_reach_the_report);
    tcase_add_test(tc, test_restore_best_with_batch_norm);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return bp_test_main(schedule_suite()); }
