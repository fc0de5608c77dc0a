/*
 * test_layers.c - layer specs and planning: the registry parses "kind:args" strings, a net built
 * from specs is the net built from sizes (to the bit, through training), and the checks that
 * need the whole stack (softmax only at the output, the cost's pairing) still hold.
 */
#include <stdlib.h>
#include <string.h>

#include "backprop.h"
#include "layers/layer.h"
#include "testutil.h"

START_TEST(test_specs_parse)
{
    bp_layer_spec s;
    ck_assert_int_eq(bp_layer_spec_parse("dense:100:relu", &s), BP_OK);
    ck_assert_ptr_eq(s.ops, &bp_dense_ops);
    ck_assert_int_eq(s.units, 100);
    ck_assert_int_eq(s.act, BP_ACT_RELU);
    ck_assert_int_eq(bp_layer_spec_parse("dense:7", &s), BP_OK);
    ck_assert_int_eq(s.units, 7);
    ck_assert_int_eq(s.act, BP_ACT_SIGMOID); /* Nielsen's neuron by default */
    static const struct { const char *text, *says; } bad[] = {
        {"rnn:3", "unknown kind 'rnn' (known: dense, dropout, batchnorm, conv, maxpool, "
                  "avgpool, lstm, gru)"},
        {"conv:3", "conv: '3' is not KxHxW"},
        {"dense", "width"},
        {"dense:", "width"},
        {"dense:0", "width"},
        {"dense:-4", "width"},
        {"dense:10x", "width"},
        {"dense:1048577", "width"},
        {"dense:10:swish", "unknown activation 'swish'"},
        {"", "unknown kind"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ck_assert_msg(bp_layer_spec_parse(bad[i].text, &s) == BP_EINVAL, "'%s' accepted",
                      bad[i].text);
        ck_assert_msg(strstr(bp_last_error(), bad[i].says), "'%s': message '%s'", bad[i].text,
                      bp_last_error());
    }
}
END_TEST

static bp_net *net_from(const int *sizes, int n_sizes, const char *layers, bp_activation hidden,
                        bp_activation output, bp_cost cost, bp_status want)
{
    bp_net_config cfg;
    bp_net_config_init(&cfg);
    cfg.sizes = sizes;
    cfg.n_sizes = n_sizes;
    cfg.layers = layers;
    cfg.hidden = hidden;
    cfg.output = output;
    cfg.cost = cost;
    cfg.threads = 1;
    cfg.max_batch = 8;
    bp_net *net = NULL;
    bp_status st = bp_net_create(&net, &cfg);
    ck_assert_msg(st == want, "'%s': status %d (%s)", layers ? layers : "(sizes)", st,
                  bp_last_error());
    return net;
}

/* The spec string and the sizes say the same net: same shapes, same initial parameters (the
 * layers draw from one RNG in order), the same bits after two epochs of training. */
START_TEST(test_spec_net_is_the_sizes_net)
{
    const int sizes[] = {12, 30, 9, 10}, input[] = {12};
    bp_net *a = net_from(sizes, 4, NULL, BP_ACT_TANH, BP_ACT_SOFTMAX, BP_COST_LOG_LIKELIHOOD,
                         BP_OK);
    bp_net *b = net_from(input, 1, "dense:30:tanh,dense:9:tanh,dense:10:softmax",
                         BP_ACT_SIGMOID, BP_ACT_SIGMOID, BP_COST_LOG_LIKELIHOOD, BP_OK);
    ck_assert_int_eq(bp_net_layers(b), 3);
    for (int i = 0; i <= 3; i++)
        ck_assert_int_eq(bp_net_size(b, i), sizes[i]);
    size_t n, nb;
    ck_assert_mem_eq(bp_net_params(a, &n), bp_net_params(b, &nb), n * sizeof(float));
    ck_assert_uint_eq(n, nb);

    enum { N = 64 };
    float x[N * 12];
    int labels[N];
    uint64_t seed = 5;
    bp_test_fill(x, N * 12, 0, 1, &seed);
    for (int i = 0; i < N; i++)
        labels[i] = i % 10;
    bp_dataset *ds;
    ck_assert_int_eq(bp_dataset_from_floats(&ds, x, labels, N, 12, 10), BP_OK);
    bp_train_config tc;
    bp_train_config_init(&tc);
    tc.epochs = 2;
    tc.batch = 8;
    tc.eta = 0.2f;
    ck_assert_int_eq(bp_train(a, ds, NULL, &tc, NULL), BP_OK);
    ck_assert_int_eq(bp_train(b, ds, NULL, &tc, NULL), BP_OK);
    ck_assert_mem_eq(bp_net_params(a, NULL), bp_net_params(b, NULL), n * sizeof(float));
    bp_dataset_free(ds);
    bp_net_free(a);
    bp_net_free(b);
}
END_TEST

START_TEST(test_stack_checks_hold_for_specs)
{
    const int input[] = {12}, two[] = {12, 10};
    /* softmax inside the stack */
    net_from(input, 1, "dense:30:softmax,dense:10:softmax", 0, 0, BP_COST_LOG_LIKELIHOOD,
             BP_EINVAL);
    ck_assert_ptr_nonnull(strstr(bp_last_error(), "softmax is an output activation"));
    /* cross-entropy needs outputs in (0,1) */
    net_from(input, 1, "dense:10:relu", 0, 0, BP_COST_CROSS_ENTROPY, BP_EINVAL);
    ck_assert_ptr_nonnull(strstr(bp_last_error(), "cross-entropy"));
    /* a spec string with sizes beyond the input */
    net_from(two, 2, "dense:10", 0, 0, BP_COST_QUADRATIC, BP_EINVAL);
    ck_assert_ptr_nonnull(strstr(bp_last_error(), "input width alone"));
    /* an empty entry, an unknown kind */
    net_from(input, 1, "dense:10,,dense:3", 0, 0, BP_COST_QUADRATIC, BP_EINVAL);
    ck_assert_ptr_nonnull(strstr(bp_last_error(), "empty"));
    net_from(input, 1, "dense:10,pool:2", 0, 0, BP_COST_QUADRATIC, BP_EINVAL);
    ck_assert_ptr_nonnull(strstr(bp_last_error(), "unknown kind 'pool'"));
    /* and a good one with the default activation */
    bp_net *ok = net_from(input, 1, "dense:10", 0, 0, BP_COST_QUADRATIC, BP_OK);
    bp_net_free(ok);
}
END_TEST

static Suite *layers_suite(void)
{
    Suite *s = suite_create("layers");
    TCase *tc = tcase_create("specs");
    tcase_add_test(tc, test_specs_parse);
    tcase_add_test(tc, test_spec_net_is_the_sizes_net);
    tcase_add_test(tc, test_stack_checks_hold_for_specs);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return bp_test_main(layers_suite()); }
