/*
 * test_learn.c - small problems are learned; divergence is reported, not hidden.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backprop.h"
#include "testutil.h"

static bp_dataset *xor_set(void)
{
    const float x[] = {0, 0, 0, 1, 1, 0, 1, 1};
    const int labels[] = {0, 1, 1, 0};
    bp_dataset *ds;
    ck_assert_int_eq(bp_dataset_from_floats(&ds, x, labels, 4, 2, 2), BP_OK);
    return ds;
}

/* XOR is not linearly separable: a net without a working hidden layer and BP2 stays at 50%. */
START_TEST(test_learns_xor)
{
    const int sizes[] = {2, 8, 2};
    const struct {
        bp_activation hidden, output;
        bp_cost cost;
        float eta;
    } setups[] = {
        {BP_ACT_SIGMOID, BP_ACT_SIGMOID, BP_COST_QUADRATIC, 3.0f},
        {BP_ACT_TANH, BP_ACT_SOFTMAX, BP_COST_LOG_LIKELIHOOD, 0.5f},
        {BP_ACT_RELU, BP_ACT_SIGMOID, BP_COST_CROSS_ENTROPY, 0.5f},
    };
    bp_dataset *ds = xor_set();
    for (size_t s = 0; s < sizeof setups / sizeof *setups; s++) {
        bp_net_config cfg;
        bp_net_config_init(&cfg);
        cfg.sizes = sizes;
        cfg.n_sizes = 3;
        cfg.hidden = setups[s].hidden;
        cfg.output = setups[s].output;
        cfg.cost = setups[s].cost;
        cfg.seed = 3;
        bp_net *net;
        ck_assert_int_eq(bp_net_create(&net, &cfg), BP_OK);
        float before, after;
        double cost_before, cost_after;
        ck_assert_int_eq(bp_evaluate(net, ds, &before, &cost_before), BP_OK);
        bp_train_config tc;
        bp_train_config_init(&tc);
        tc.epochs = 3000;
        tc.batch = 2;
        tc.eta = setups[s].eta;
        ck_assert_int_eq(bp_train(net, ds, NULL, &tc, NULL), BP_OK);
        ck_assert_int_eq(bp_evaluate(net, ds, &after, &cost_after), BP_OK);
        ck_assert_msg(after == 1.0f, "%s/%s/%s: XOR accuracy %g", bp_activation_name(cfg.hidden),
                      bp_activation_name(cfg.output), bp_cost_name(cfg.cost), after);
        ck_assert_msg(cost_after < 0.1 * cost_before, "cost %g -> %g", cost_before, cost_after);
        bp_net_free(net);
    }
    bp_dataset_free(ds);
}
END_TEST

/* Two interleaved spirals of 1.5 turns each, 2 x 97 points, coordinates up to 6.5 as in Lang &
 * Witbrock's benchmark (whose 3 turns need far longer training than a unit test may take). */
START_TEST(test_learns_two_spirals)
{
    enum { PER = 97 };
    float x[2 * 2 * PER];
    int labels[2 * PER];
    for (int i = 0; i < PER; i++) {
        double angle = i * M_PI / 32.0, radius = 6.5 * (104 - i) / 104.0;
        for (int c = 0; c < 2; c++) {
            int k = 2 * i + c;
            double sgn = c ? -1 : 1;
            x[2 * k] = (float)(sgn * radius * sin(angle));
            x[2 * k + 1] = (float)(sgn * radius * cos(angle));
            labels[k] = c;
        }
    }
    bp_dataset *ds;
    ck_assert_int_eq(bp_dataset_from_floats(&ds, x, labels, 2 * PER, 2, 2), BP_OK);
    const int sizes[] = {2, 64, 64, 2};
    bp_net_config cfg;
    bp_net_config_init(&cfg);
    cfg.sizes = sizes;
    cfg.n_sizes = 4;
    cfg.hidden = BP_ACT_TANH;
    cfg.output = BP_ACT_SOFTMAX;
    cfg.cost = BP_COST_LOG_LIKELIHOOD;
    cfg.init = BP_INIT_XAVIER;
    bp_net *net;
    ck_assert_int_eq(bp_net_create(&net, &cfg), BP_OK);
    bp_train_config tc;
    bp_train_config_init(&tc);
    tc.epochs = 3000;
    tc.batch = 8;
    tc.eta = 0.1f;
    ck_assert_int_eq(bp_train(net, ds, NULL, &tc, NULL), BP_OK);
    float acc;
    ck_assert_int_eq(bp_evaluate(net, ds, &acc, NULL), BP_OK);
    ck_assert_msg(acc == 1.0f, "two spirals accuracy %g", acc);
    bp_net_free(net);
    bp_dataset_free(ds);
}
END_TEST

static int count_epochs(const bp_epoch_report *r, void *user)
{
    int *calls = user;
    ck_assert_int_eq(r->epoch, *calls + 1);
    ck_assert(r->samples_per_second > 0);
    ++*calls;
    return *calls == 2; /* stop after the second epoch */
}

START_TEST(test_callback_and_early_stop)
{
    const int sizes[] = {2, 3, 2};
    bp_net_config cfg;
    bp_net_config_init(&cfg);
    cfg.sizes = sizes;
    cfg.n_sizes = 3;
    bp_net *net;
    ck_assert_int_eq(bp_net_create(&net, &cfg), BP_OK);
    bp_dataset *ds = xor_set();
    int calls = 0;
    bp_train_config tc;
    bp_train_config_init(&tc);
    tc.epochs = 10;
    tc.on_epoch = count_epochs;
    tc.user = &calls;
    bp_train_result res;
    ck_assert_int_eq(bp_train(net, ds, ds, &tc, &res), BP_OK);
    ck_assert_int_eq(calls, 2);
    ck_assert_int_eq(res.epochs, 2);
    ck_assert(res.validation_accuracy >= 0 && res.validation_accuracy <= 1);
    bp_net_free(net);
    bp_dataset_free(ds);
}
END_TEST

/* A linear net with a huge learning rate blows up: the library says so and stops. */
START_TEST(test_divergence_is_reported)
{
    const int sizes[] = {2, 4, 2};
    bp_net_config cfg;
    bp_net_config_init(&cfg);
    cfg.sizes = sizes;
    cfg.n_sizes = 3;
    cfg.hidden = BP_ACT_LINEAR;
    cfg.output = BP_ACT_LINEAR;
    cfg.cost = BP_COST_QUADRATIC;
    cfg.init = BP_INIT_LARGE;
    bp_net *net;
    ck_assert_int_eq(bp_net_create(&net, &cfg), BP_OK);
    bp_dataset *ds = xor_set();
    bp_train_config tc;
    bp_train_config_init(&tc);
    tc.epochs = 1000;
    tc.batch = 1;
    tc.eta = 1e3f;
    bp_train_result res;
    ck_assert_int_eq(bp_train(net, ds, NULL, &tc, &res), BP_EDIVERGED);
    ck_assert_ptr_nonnull(strstr(bp_last_error(), "epoch"));
    ck_assert_int_lt(res.epochs, 1000);
    bp_net_free(net);
    bp_dataset_free(ds);
}
END_TEST

/* A random 40-sample, 12-input, 10-class set for the divergence tests. */
static bp_dataset *noise_set(void)
{
    enum { N = 40, DIM = 12 };
    float x[N * DIM];
    int labels[N];
    uint64_t seed = 77;
    bp_test_fill(x, N * DIM, 0, 1, &seed);
    for (int i = 0; i < N; i++)
        labels[i] = i % 10;
    bp_dataset *ds;
    ck_assert_int_eq(bp_dataset_from_floats(&ds, x, labels, N, DIM, 10), BP_OK);
    return ds;
}

static bp_net *divergence_net(bp_activation hidden, bp_activation output, bp_cost cost)
{
    const int sizes[] = {12, 30, 10};
    bp_net_config cfg;
    bp_net_config_init(&cfg);
    cfg.sizes = sizes;
    cfg.n_sizes = 3;
    cfg.hidden = hidden;
    cfg.output = output;
    cfg.cost = cost;
    bp_net *net;
    ck_assert_int_eq(bp_net_create(&net, &cfg), BP_OK);
    return net;
}

/* The outside report: eta = 3.4e38 with sigmoid + cross-entropy turned every parameter into NaN
 * while the cost, its logs clamped, stayed finite and training "succeeded". A NaN output must
 * reach the cost, for both log costs, and the message must name the epoch and the layer. */
START_TEST(test_nan_parameters_are_divergence)
{
    const struct { bp_activation output; bp_cost cost; } pairs[] = {
        {BP_ACT_SIGMOID, BP_COST_CROSS_ENTROPY},
        {BP_ACT_SOFTMAX, BP_COST_LOG_LIKELIHOOD},
    };
    bp_dataset *ds = noise_set();
    for (size_t p = 0; p < sizeof pairs / sizeof *pairs; p++) {
        bp_net *net = divergence_net(BP_ACT_SIGMOID, pairs[p].output, pairs[p].cost);
        bp_train_config tc;
        bp_train_config_init(&tc);
        tc.epochs = 50;
        tc.eta = 3.4e38f;
        bp_train_result res;
        bp_status st = bp_train(net, ds, ds, &tc, &res);
        ck_assert_msg(st == BP_EDIVERGED, "%s: status %d after %d epochs",
                      bp_cost_name(pairs[p].cost), st, res.epochs);
        const char *msg = bp_last_error();
        char epoch[32];
        snprintf(epoch, sizeof epoch, "epoch %d", res.epochs + 1);
        ck_assert_msg(strstr(msg, epoch) && strstr(msg, "layer "), "%s: message '%s'",
                      bp_cost_name(pairs[p].cost), msg);
        bp_net_free(net);
    }
    bp_dataset_free(ds);
}
END_TEST

/* A parameter can be lost while the cost looks well (a NaN weight into a ReLU that maps it to 0,
 * a NaN bias whose unit feeds nothing that matters): the end-of-epoch check finds it and names
 * the layer that holds it. */
START_TEST(test_lost_parameter_names_its_layer)
{
    bp_dataset *ds = noise_set();
    bp_net *net = divergence_net(BP_ACT_RELU, BP_ACT_SIGMOID, BP_COST_CROSS_ENTROPY);
    bp_net_biases(net, 2)[3] = NAN;
    bp_train_config tc;
    bp_train_config_init(&tc);
    tc.epochs = 3;
    tc.eta = 0.1f;
    ck_assert_int_eq(bp_train(net, ds, NULL, &tc, NULL), BP_EDIVERGED);
    ck_assert_msg(strstr(bp_last_error(), "layer 2"), "message '%s'", bp_last_error());
    bp_net_free(net);
    bp_dataset_free(ds);
}
END_TEST

/* Saturation is not divergence: eta = 1e30 pins the sigmoids at 0 or 1, the cost is large but
 * finite and the parameters finite, so training runs to the end (the CLI warns about the
 * accuracy instead). */
START_TEST(test_saturation_is_not_divergence)
{
    bp_dataset *ds = noise_set();
    bp_net *net = divergence_net(BP_ACT_SIGMOID, BP_ACT_SIGMOID, BP_COST_CROSS_ENTROPY);
    bp_train_config tc;
    bp_train_config_init(&tc);
    tc.epochs = 2;
    tc.eta = 1e30f;
    bp_train_result res;
    bp_status st = bp_train(net, ds, ds, &tc, &res);
    ck_assert_msg(st == BP_OK, "%s", bp_last_error());
    ck_assert_int_eq(res.epochs, 2);
    bp_net_free(net);
    bp_dataset_free(ds);
}
END_TEST

/* The low-level step says so too, rather than handing back a NaN cost with BP_OK. */
START_TEST(test_step_reports_a_nan_cost)
{
    bp_net *net = divergence_net(BP_ACT_SIGMOID, BP_ACT_SIGMOID, BP_COST_CROSS_ENTROPY);
    float x[12 * 2] = {0}, y[10 * 2] = {0};
    y[0] = y[11] = 1;
    x[5] = NAN;
    double cost = 0;
    ck_assert_int_eq(bp_net_gradient(net, x, 12, y, 10, 2, &cost), BP_EDIVERGED);
    ck_assert(isnan(cost));
    ck_assert_ptr_nonnull(strstr(bp_last_error(), "input"));
    bp_net_free(net);
}
END_TEST

START_TEST(test_train_rejects_mismatched_data)
{
    const int sizes[] = {3, 3, 2};
    bp_net_config cfg;
    bp_net_config_init(&cfg);
    cfg.sizes = sizes;
    cfg.n_sizes = 3;
    bp_net *net;
    ck_assert_int_eq(bp_net_create(&net, &cfg), BP_OK);
    bp_dataset *ds = xor_set(); /* 2 inputs, the net wants 3 */
    bp_train_config tc;
    bp_train_config_init(&tc);
    ck_assert_int_eq(bp_train(net, ds, NULL, &tc, NULL), BP_EINVAL);
    ck_assert_ptr_nonnull(strstr(bp_last_error(), "3 inputs"));
    tc.batch = 0;
    ck_assert_int_eq(bp_train(net, ds, NULL, &tc, NULL), BP_EINVAL);
    bp_net_free(net);
    bp_dataset_free(ds);
}
END_TEST

static Suite *learn_suite(void)
{
    Suite *s = suite_create("learn");
    TCase *tc = tcase_create("learn");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, test_learns_xor);
    tcase_add_test(tc, test_learns_two_spirals);
    tcase_add_test(tc, test_callback_and_early_stop);
    tcase_add_test(tc, test_divergence_is_reported);
    tcase_add_test(tc, test_nan_parameters_are_divergence);
    tcase_add_test(tc, test_lost_parameter_names_its_layer);
    tcase_add_test(tc, test_saturation_is_not_divergence);
    tcase_add_test(tc, test_step_reports_a_nan_cost);
    tcase_add_test(tc, test_train_rejects_mismatched_data);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return bp_test_main(learn_suite()); }
