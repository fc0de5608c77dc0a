/*
 * test_checkpoint.c - checkpoints: a run stopped after an epoch and a few mini-batches, saved to
 * a file, loaded into a new net and trainer and run to the end, finishes with the parameters of
 * the run that never stopped, to the bit, for every optimiser (one thread); with batch norm,
 * dropout, a schedule and early stopping's best copy as well; a checkpoint saved on two threads
 * resumes on one; bp_model_load reads a checkpoint as its model; what is not a checkpoint of
 * this run is refused.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backprop.h"
#include "testutil.h"

enum { N = 200, DIM = 10, CLASSES = 4, BATCH = 16 };

static char dir[64];

static int make_dir(void)
{
    snprintf(dir, sizeof dir, "/tmp/bp-ckpt-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static void path_in_dir(char *out, size_t size, const char *name)
{
    snprintf(out, size, "%s/%s", dir, name);
}

static bp_dataset *make_set(size_t n)
{
    static float x[N * DIM];
    int labels[N];
    uint64_t seed = 23;
    bp_test_fill(x, N * DIM, 0, 1, &seed);
    for (int i = 0; i < N; i++)
        labels[i] = (int)(x[i * DIM] * 3.99f);
    bp_dataset *ds;
    ck_assert_int_eq(bp_dataset_from_floats(&ds, x, labels, n, DIM, CLASSES), BP_OK);
    return ds;
}

typedef struct variant {
    bp_optimizer_kind optimizer;
    int batchnorm;
    float dropout;
    int early_stop;
    bp_schedule_kind schedule;
} variant;

static bp_net *make_net(const variant *v, int threads)
{
    const int sizes[] = {DIM, 24, CLASSES};
    bp_net_config cfg;
    bp_net_config_init(&cfg);
    cfg.sizes = sizes;
    cfg.n_sizes = 3;
    cfg.max_batch = BATCH;
    cfg.threads = threads;
    cfg.seed = 5;
    cfg.batchnorm = v->batchnorm;
    cfg.dropout = v->dropout;
    bp_net *net;
    ck_assert_int_eq(bp_net_create(&net, &cfg), BP_OK);
    return net;
}

static void train_config(const variant *v, bp_train_config *tc)
{
    bp_train_config_init(tc);
    tc->epochs = 4;
    tc->batch = BATCH;
    tc->seed = 91;
    tc->optimizer = v->optimizer;
    tc->eta = v->optimizer == BP_OPT_SGD ? 0.5f : 0.02f;
    tc->lambda = 0.5f;
    tc->early_stop = v->early_stop;
    tc->schedule.kind = v->schedule;
    if (v->schedule == BP_SCHEDULE_STEP)
        tc->schedule = (bp_schedule){BP_SCHEDULE_STEP, 1, 0.5f};
}

/* Epochs 1 .. 4 with validation, straight or through a checkpoint after epoch 1 and 5 more
 * mini-batches (saved on `threads_before`, resumed on one thread). */
static void check_resume(const variant *v, int threads_before)
{
    bp_dataset *ds = make_set(N);
    bp_train_config tc;
    train_config(v, &tc);
    bp_net *straight = make_net(v, 1);
    bp_trainer *ts;
    ck_assert_int_eq(bp_trainer_create(&ts, straight, ds, &tc), BP_OK);
    bp_train_result want;
    ck_assert_int_eq(bp_trainer_run(ts, ds, 4, NULL, NULL, &want), BP_OK);

    bp_net *first = make_net(v, threads_before);
    bp_trainer *t1;
    ck_assert_int_eq(bp_trainer_create(&t1, first, ds, &tc), BP_OK);
    ck_assert_int_eq(bp_trainer_run(t1, ds, 1, NULL, NULL, NULL), BP_OK);
    int finished;
    ck_assert_int_eq(bp_trainer_batches(t1, 5, &finished, NULL), BP_OK);
    ck_assert_int_eq(finished, 0);
    char path[128];
    path_in_dir(path, sizeof path, "run.ckpt");
    const bp_model_meta meta = {.input_rows = 2, .input_cols = 5, .input_scale = 0.5f};
    ck_assert_msg(bp_checkpoint_save(t1, path, &meta) == BP_OK, "%s", bp_last_error());
    bp_trainer_free(t1);
    bp_net_free(first);

    bp_net *net;
    bp_trainer *t2;
    bp_model_meta back;
    bp_net_config one;
    bp_net_config_init(&one);
    one.threads = 1;
    ck_assert_msg(bp_checkpoint_load(path, ds, &one, &net, &t2, &back) == BP_OK, "%s",
                  bp_last_error());
    ck_assert_int_eq(back.input_rows, 2);
    ck_assert(back.input_scale == 0.5f);
    ck_assert_int_eq(bp_trainer_epochs_done(t2), 1);
    bp_train_config cfg;
    ck_assert_int_eq(bp_trainer_config(t2, &cfg), BP_OK);
    ck_assert(cfg.optimizer == tc.optimizer && cfg.eta == tc.eta && cfg.lambda == tc.lambda &&
              cfg.seed == tc.seed && cfg.schedule.kind == tc.schedule.kind &&
              cfg.early_stop == tc.early_stop);
    bp_train_result got;
    ck_assert_int_eq(bp_trainer_run(t2, ds, 4, NULL, NULL, &got), BP_OK);
    ck_assert_int_eq(got.epochs, want.epochs);
    ck_assert_int_eq(got.best_epoch, want.best_epoch);
    size_t n, ns;
    const float *a = bp_net_params(straight, &n), *b = bp_net_params(net, NULL);
    const float *sa = bp_net_state(straight, &ns), *sb = bp_net_state(net, NULL);
    if (threads_before == 1) {
        ck_assert_msg(memcmp(a, b, n * sizeof *a) == 0, "parameters differ after resume");
        ck_assert(ns == 0 || memcmp(sa, sb, ns * sizeof *sa) == 0);
        ck_assert(got.validation_accuracy == want.validation_accuracy);
    } else {
        /* Another split of the first steps: the same run but for the last bits. */
        ck_assert_msg(bp_test_nmse(b, a, n) < 1e-6, "nmse %g", bp_test_nmse(b, a, n));
    }
    bp_trainer_free(t2);
    bp_net_free(net);
    bp_trainer_free(ts);
    bp_net_free(straight);
    bp_dataset_free(ds);
    unlink(path);
}

START_TEST(test_resume_every_optimizer)
{
    for (int k = 0; k < BP_OPT_COUNT; k++) {
        variant v = {.optimizer = (bp_optimizer_kind)k};
        check_resume(&v, 1);
    }
}
END_TEST

START_TEST(test_resume_with_everything)
{
    variant v = {BP_OPT_ADAM, 1, 0.25f, 2, BP_SCHEDULE_STEP};
    check_resume(&v, 1);
    v = (variant){BP_OPT_MOMENTUM, 0, 0.5f, 3, BP_SCHEDULE_COSINE};
    check_resume(&v, 1);
}
END_TEST

START_TEST(test_resume_on_other_threads)
{
    variant v = {.optimizer = BP_OPT_ADAM, .batchnorm = 1};
    check_resume(&v, 2);
}
END_TEST

/* A checkpoint is also a model file: bp_model_load gives its net, identical outputs. A model
 * file is not a checkpoint, nor is a checkpoint of another training set's size. */
START_TEST(test_model_and_refusals)
{
    variant v = {.optimizer = BP_OPT_MOMENTUM};
    bp_dataset *ds = make_set(N), *other = make_set(N - 10);
    bp_train_config tc;
    train_config(&v, &tc);
    bp_net *net = make_net(&v, 1);
    bp_trainer *t;
    ck_assert_int_eq(bp_trainer_create(&t, net, ds, &tc), BP_OK);
    ck_assert_int_eq(bp_trainer_epoch(t, NULL), BP_OK);
    char ckpt[128], model[128];
    path_in_dir(ckpt, sizeof ckpt, "a.ckpt");
    path_in_dir(model, sizeof model, "a.model");
    ck_assert_int_eq(bp_checkpoint_save(t, ckpt, NULL), BP_OK);
    ck_assert_int_eq(bp_model_save(net, model, NULL), BP_OK);

    bp_net *as_model;
    ck_assert_msg(bp_model_load(&as_model, ckpt, NULL, NULL) == BP_OK, "%s", bp_last_error());
    float x[DIM * 8], y1[CLASSES * 8], y2[CLASSES * 8];
    ck_assert_int_eq(bp_dataset_gather(ds, NULL, 8, x, NULL, CLASSES), BP_OK);
    ck_assert_int_eq(bp_net_forward(net, x, DIM, 8, y1, CLASSES), BP_OK);
    ck_assert_int_eq(bp_net_forward(as_model, x, DIM, 8, y2, CLASSES), BP_OK);
    ck_assert(memcmp(y1, y2, sizeof y1) == 0);
    bp_net_free(as_model);

    bp_net *n2 = (bp_net *)1;
    bp_trainer *t2 = (bp_trainer *)1;
    ck_assert_int_eq(bp_checkpoint_load(model, ds, NULL, &n2, &t2, NULL), BP_EFORMAT);
    ck_assert_ptr_nonnull(strstr(bp_last_error(), "not a checkpoint"));
    ck_assert_ptr_null(n2);
    ck_assert_ptr_null(t2);
    ck_assert_int_eq(bp_checkpoint_load(ckpt, other, NULL, &n2, &t2, NULL), BP_EINVAL);
    ck_assert_ptr_nonnull(strstr(bp_last_error(), "a.ckpt"));
    ck_assert_ptr_null(n2);
    ck_assert_int_eq(bp_checkpoint_load(NULL, ds, NULL, &n2, &t2, NULL), BP_EINVAL);
    ck_assert_int_eq(bp_checkpoint_save(NULL, ckpt, NULL), BP_EINVAL);
    /* Saving into a folder that does not exist fails naming the path; the old file stays. */
    ck_assert_int_eq(bp_checkpoint_save(t, "/nonexistent-dir/x.ckpt", NULL), BP_EIO);
    ck_assert_ptr_nonnull(strstr(bp_last_error(), "/nonexistent-dir"));
    bp_trainer_free(t);
    bp_net_free(net);
    bp_dataset_free(ds);
    bp_dataset_free(other);
    unlink(ckpt);
    unlink(model);
}
END_TEST

int main(void)
{
    if (make_dir() != 0) {
        perror("test_checkpoint: mkdtemp");
        return 1;
    }
    Suite *s = suite_create("checkpoint");
    TCase *tc = tcase_create("checkpoint");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_resume_every_optimizer);
    tcase_add_test(tc, test_resume_with_everything);
    tcase_add_test(tc, test_resume_on_other_threads);
    tcase_add_test(tc, test_model_and_refusals);
    suite_add_tcase(s, tc);
    int rc = bp_test_main(s);
    rmdir(dir);
    return rc;
}
