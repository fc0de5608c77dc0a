/*
 * test_regularisation.c - L2 and L1 as Nielsen's network2 defines them: one full-batch step
 * lands where the formula says (weights decayed or shrunk by sign, biases not), the reported
 * training cost carries the regularisation term, the validation cost is reported, bad values
 * are refused.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backprop.h"
#include "testutil.h"

enum { N = 40, DIM = 6, CLASSES = 3 };

static bp_dataset *make_set(void)
{
    static float x[N * DIM];
    int labels[N];
    uint64_t seed = 11;
    bp_test_fill(x, N * DIM, -1, 1, &seed);
    for (int i = 0; i < N; i++)
        labels[i] = i % CLASSES;
    bp_dataset *ds;
    ck_assert_int_eq(bp_dataset_from_floats(&ds, x, labels, N, DIM, CLASSES), BP_OK);
    return ds;
}

static bp_net *make_net(void)
{
    const int sizes[] = {DIM, 5, CLASSES};
    bp_net_config cfg;
    bp_net_config_init(&cfg);
    cfg.sizes = sizes;
    cfg.n_sizes = 3;
    cfg.max_batch = N;
    cfg.threads = 1;
    bp_net *net;
    ck_assert_int_eq(bp_net_create(&net, &cfg), BP_OK);
    return net;
}

/* One step over the whole set (batch N, so the epoch's shuffle changes only the order of the
 * sum), against the formula applied to bp_net_gradient's gradient at the same parameters. */
static void check_one_step(float lambda, float l1)
{
    const float eta = 0.7f;
    bp_dataset *ds = make_set();
    bp_net *net = make_net();
    /* A weight at exactly zero: L1's sign(0) must be 0. */
    int rows, cols, ld;
    bp_net_weights(net, 1, &rows, &cols, &ld)[0] = 0.0f;
    size_t n;
    float *p = bp_net_params(net, &n);
    float *before = malloc(n * sizeof *p), *want = malloc(n * sizeof *p);
    memcpy(before, p, n * sizeof *p);
    float x[N * DIM], y[N * CLASSES];
    ck_assert_int_eq(bp_dataset_gather(ds, NULL, N, x, y, CLASSES), BP_OK);
    double c0;
    ck_assert_int_eq(bp_net_gradient(net, x, DIM, y, CLASSES, N, &c0), BP_OK);
    const float *g = bp_net_grads(net, NULL);
    memcpy(want, before, n * sizeof *p);
    for (int k = 0; k < bp_net_tensor_count(net); k++) {
        bp_tensor_info t;
        ck_assert_int_eq(bp_net_tensor(net, k, &t), BP_OK);
        for (size_t i = t.offset; i < t.offset + t.count; i++) {
            double w = before[i], step = eta * (double)g[i];
            if (t.role == BP_ROLE_WEIGHT)
                want[i] = (float)((1.0 - eta * lambda / N) * w -
                                  eta * l1 / N * ((w > 0) - (w < 0)) - step);
            else
                want[i] = (float)(w - step);
        }
    }

    bp_train_config tc;
    bp_train_config_init(&tc);
    tc.batch = N;
    tc.eta = eta;
    tc.lambda = lambda;
    tc.l1 = l1;
    bp_trainer *tr;
    ck_assert_int_eq(bp_trainer_create(&tr, net, ds, &tc), BP_OK);
    bp_epoch_report r;
    ck_assert_int_eq(bp_trainer_epoch(tr, &r), BP_OK);
    double worst = 0, squares = 0, absolutes = 0;
    for (size_t i = 0; i < n; i++)
        worst = fmax(worst, fabs(p[i] - want[i]) / fmax(1e-3, fabs(want[i])));
    ck_assert_msg(worst < 1e-5, "lambda %g l1 %g: step differs from the formula by %g", lambda,
                  l1, worst);
    /* (The zero weight is in that comparison: with sign(0) = +-1 it would be off by eta l1 / n,
     * 0.05 here, far outside the bound.) */
    /* The reported cost: the batch's cost before the step plus the term of the new weights. */
    for (int k = 0; k < bp_net_tensor_count(net); k++) {
        bp_tensor_info t;
        bp_net_tensor(net, k, &t);
        for (size_t i = t.offset; t.role == BP_ROLE_WEIGHT && i < t.offset + t.count; i++)
            squares += (double)p[i] * p[i], absolutes += fabs((double)p[i]);
    }
    double want_cost = c0 + lambda / (2.0 * N) * squares + l1 / (double)N * absolutes;
    ck_assert_msg(fabs(r.train_cost - want_cost) <= 1e-6 * fabs(want_cost), "cost %.9g vs %.9g",
                  r.train_cost, want_cost);
    bp_trainer_free(tr);
    free(before), free(want);
    bp_net_free(net);
    bp_dataset_free(ds);
}

START_TEST(test_l2_step_is_nielsens) { check_one_step(5.0f, 0.0f); }
END_TEST
START_TEST(test_l1_step_is_nielsens) { check_one_step(0.0f, 3.0f); }
END_TEST
START_TEST(test_l1_and_l2_together) { check_one_step(2.0f, 1.5f); }
END_TEST
START_TEST(test_no_regularisation_is_plain_sgd) { check_one_step(0.0f, 0.0f); }
END_TEST

START_TEST(test_validation_cost_and_bad_values)
{
    bp_dataset *ds = make_set();
    bp_net *net = make_net();
    bp_train_config tc;
    bp_train_config_init(&tc);
    tc.epochs = 1;
    tc.batch = 8;
    tc.eta = 0.1f;
    tc.lambda = -1.0f;
    ck_assert_int_eq(bp_train(net, ds, ds, &tc, NULL), BP_EINVAL);
    ck_assert_ptr_nonnull(strstr(bp_last_error(), "regularisation"));
    tc.lambda = 0.0f;
    tc.l1 = NAN;
    ck_assert_int_eq(bp_train(net, ds, ds, &tc, NULL), BP_EINVAL);
    tc.l1 = 0.0f;
    bp_trainer *tr;
    ck_assert_int_eq(bp_trainer_create(&tr, net, ds, &tc), BP_OK);
    bp_epoch_report r;
    ck_assert_int_eq(bp_trainer_epoch(tr, &r), BP_OK);
    ck_assert(r.validation_cost == -1.0); /* the trainer does not evaluate */
    bp_trainer_free(tr);
    bp_net_free(net);
    bp_dataset_free(ds);
}
END_TEST

static Suite *regularisation_suite(void)
{
    Suite *s = suite_create("regularisation");
    TCase *tc = tcase_create("regularisation");
    tcase_add_test(tc, test_l2_step_is_nielsens);
    tcase_add_test(tc, test_l1_step_is_nielsens);
    tcase_add_test(tc, test_l1_and_l2_together);
    tcase_add_test(tc, test_no_regularisation_is_plain_sgd);
    tcase_add_test(tc, test_validation_cost_and_bad_values);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return bp_test_main(regularisation_suite()); }
