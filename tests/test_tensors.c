/*
 * test_tensors.c - the net's tensor table against the arenas and the layer views: offsets,
 * shapes, strides and counts, names and roles, lookups, bad arguments, and that reading the
 * table allocates nothing.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backprop.h"
#include "testutil.h"

static bp_net *make_net(const int *sizes, int n)
{
    bp_net_config cfg;
    bp_net_config_init(&cfg);
    cfg.sizes = sizes;
    cfg.n_sizes = n;
    cfg.cost = BP_COST_QUADRATIC;
    cfg.max_batch = 4;
    cfg.threads = 1;
    bp_net *net = NULL;
    ck_assert_msg(bp_net_create(&net, &cfg) == BP_OK, "create: %s", bp_last_error());
    return net;
}

typedef struct shape_case {
    int sizes[5];
    int n;
} shape_case;

/* The 1-neuron cases make a weight that is a single float, a row or a column, and biases far
 * shorter than the cache line each tensor starts on. */
static const shape_case cases[] = {
    {{784, 100, 10}, 3},
    {{5, 3, 7, 2}, 4},
    {{1, 1}, 2},
    {{4, 1, 3}, 3},
    {{1, 17, 1}, 3},
};
enum { N_CASES = sizeof cases / sizeof *cases };

static bp_tensor_info tensor_at(const bp_net *net, int index)
{
    bp_tensor_info info;
    ck_assert_msg(bp_net_tensor(net, index, &info) == BP_OK, "tensor %d: %s", index,
                  bp_last_error());
    return info;
}

/* Every entry agrees with the views bp_net_weights/bp_net_biases return: same floats of the
 * parameter arena and, at the same offset, of the gradient arena. */
START_TEST(test_table_matches_the_arena_views)
{
    const shape_case *c = &cases[_i];
    bp_net *net = make_net(c->sizes, c->n);
    int L = bp_net_layers(net);
    ck_assert_int_eq(bp_net_tensor_count(net), 2 * L);
    size_t n_params;
    float *params = bp_net_params(net, &n_params), *grads = bp_net_grads(net, NULL);
    for (int l = 1; l <= L; l++) {
        int rows, cols, ld;
        float *w = bp_net_weights(net, l, &rows, &cols, &ld);
        bp_tensor_info wi = tensor_at(net, 2 * (l - 1)), bi = tensor_at(net, 2 * (l - 1) + 1);

        ck_assert_int_eq(wi.layer, l);
        ck_assert_int_eq(wi.role, BP_ROLE_WEIGHT);
        ck_assert_int_eq(wi.ndim, 2);
        ck_assert_int_eq(wi.shape[0], rows);
        ck_assert_int_eq(wi.shape[1], cols);
        ck_assert_int_eq(rows, c->sizes[l]);
        ck_assert_int_eq(cols, c->sizes[l - 1]);
        ck_assert_int_eq(wi.stride[0], 1);
        ck_assert_int_eq(wi.stride[1], ld);
        ck_assert_uint_eq(wi.count, (size_t)rows * (size_t)cols);
        ck_assert_ptr_eq(params + wi.offset, w);
        ck_assert_ptr_eq(grads + wi.offset, bp_net_weight_grads(net, l));

        ck_assert_int_eq(bi.layer, l);
        ck_assert_int_eq(bi.role, BP_ROLE_BIAS);
        ck_assert_int_eq(bi.ndim, 1);
        ck_assert_int_eq(bi.shape[0], rows);
        ck_assert_int_eq(bi.stride[0], 1);
        ck_assert_uint_eq(bi.count, (size_t)rows);
        ck_assert_ptr_eq(params + bi.offset, bp_net_biases(net, l));
        ck_assert_ptr_eq(grads + bi.offset, bp_net_bias_grads(net, l));

        /* Dimensions past ndim are zero, so a consumer may print or compare whole arrays. */
        for (int k = wi.ndim; k < BP_TENSOR_MAX_DIMS; k++)
            ck_assert(wi.shape[k] == 0 && wi.stride[k] == 0);
        for (int k = bi.ndim; k < BP_TENSOR_MAX_DIMS; k++)
            ck_assert(bi.shape[k] == 0 && bi.stride[k] == 0);
    }
    bp_net_free(net);
}
END_TEST

/* The layout promises: in arena order, disjoint, inside the arena, each on a cache line,
 * compact (count floats from offset), and everything between tensors is padding that stays
 * zero in both arenas after a gradient and a step, so whole-arena loops may include it. */
START_TEST(test_tensors_tile_the_arena)
{
    const shape_case *c = &cases[_i];
    bp_net *net = make_net(c->sizes, c->n);
    size_t n_params;
    float *params = bp_net_params(net, &n_params), *grads = bp_net_grads(net, NULL);
    int n = bp_net_tensor_count(net);
    char *covered = calloc(n_params, 1);
    size_t end = 0, total = 0;
    for (int t = 0; t < n; t++) {
        bp_tensor_info info = tensor_at(net, t);
        ck_assert_msg(info.offset >= end, "tensor %d starts at %zu, inside its predecessor "
                      "(ends at %zu)", t, info.offset, end);
        ck_assert_uint_eq(info.offset % 16, 0);
        ck_assert_uint_eq((uintptr_t)(params + info.offset) % 64, 0);
        ck_assert_uint_le(info.offset + info.count, n_params);
        size_t product = 1, span = 1;
        for (int k = 0; k < info.ndim; k++) {
            ck_assert(info.shape[k] >= 1);
            product *= (size_t)info.shape[k];
            span += (size_t)(info.shape[k] - 1) * (size_t)info.stride[k];
        }
        ck_assert_uint_eq(info.count, product);
        ck_assert_uint_eq(span, info.count); /* compact: the last element is count - 1 */
        int64_t expect = 1; /* column-major: each stride is the product of the shapes before */
        for (int k = 0; k < info.ndim; k++) {
            ck_assert_int_eq(info.stride[k], expect);
            expect *= info.shape[k];
        }
        memset(covered + info.offset, 1, info.count);
        end = info.offset + info.count;
        total += info.count;
    }
    /* Padding is under a cache line per tensor. */
    ck_assert_uint_lt(n_params - total, (size_t)16 * (size_t)n);

    int n_in = c->sizes[0], n_out = c->sizes[c->n - 1], B = 3;
    float *x = malloc(sizeof(float) * (size_t)n_in * B), *y = malloc(sizeof(float) * (size_t)n_out * B);
    uint64_t seed = 11;
    bp_test_fill(x, (size_t)n_in * B, 0, 1, &seed);
    bp_test_fill(y, (size_t)n_out * B, 0, 1, &seed);
    ck_assert_int_eq(bp_net_gradient(net, x, n_in, y, n_out, B, NULL), BP_OK);
    ck_assert_int_eq(bp_net_sgd_step(net, x, n_in, y, n_out, B, 0.5f, NULL), BP_OK);
    ck_assert_int_eq(bp_net_gradient(net, x, n_in, y, n_out, B, NULL), BP_OK);
    for (size_t i = 0; i < n_params; i++)
        if (!covered[i])
            ck_assert_msg(params[i] == 0.0f && grads[i] == 0.0f,
                          "padding float %zu is %g / %g", i, (double)params[i], (double)grads[i]);
    free(x);
    free(y);
    free(covered);
    bp_net_free(net);
}
END_TEST

/* Names follow the documented pattern "layers.<l-1>.<role>", are unique, and find() maps each
 * back to its index; near misses and other conventions are not found. */
START_TEST(test_names_and_find)
{
    const shape_case *c = &cases[_i];
    bp_net *net = make_net(c->sizes, c->n);
    int n = bp_net_tensor_count(net);
    for (int t = 0; t < n; t++) {
        bp_tensor_info info = tensor_at(net, t);
        char want[64];
        snprintf(want, sizeof want, "layers.%d.%s", info.layer - 1,
                 bp_tensor_role_name(info.role));
        ck_assert_str_eq(info.name, want);
        ck_assert_int_eq(bp_net_tensor_find(net, info.name), t);
        ck_assert_int_eq(bp_net_tensor_find(net, want), t); /* by contents, not by pointer */
        for (int u = 0; u < t; u++)
            ck_assert_str_ne(tensor_at(net, u).name, info.name);
    }
    int L = bp_net_layers(net);
    char past[64];
    snprintf(past, sizeof past, "layers.%d.weight", L);
    const char *unknown[] = {past, "layers.0.weigh", "layers.0.weights", "layers.-1.bias",
                             "0.weight", "layers.0", "layers.1.weight ", "", "LAYERS.0.WEIGHT"};
    for (size_t i = 0; i < sizeof unknown / sizeof *unknown; i++)
        ck_assert_msg(bp_net_tensor_find(net, unknown[i]) == -1, "'%s' was found", unknown[i]);
    bp_net_free(net);
}
END_TEST

/* The table's shape order and strides mean what the header says: a weight written through
 * them as element (i = output, j = input) is the W of y = W x + b. */
START_TEST(test_table_indexes_the_math)
{
    const int sizes[] = {3, 2};
    bp_net_config cfg;
    bp_net_config_init(&cfg);
    cfg.sizes = sizes;
    cfg.n_sizes = 2;
    cfg.output = BP_ACT_LINEAR;
    cfg.cost = BP_COST_QUADRATIC;
    bp_net *net = NULL;
    ck_assert_int_eq(bp_net_create(&net, &cfg), BP_OK);
    float *params = bp_net_params(net, NULL);
    bp_tensor_info w = tensor_at(net, bp_net_tensor_find(net, "layers.0.weight"));
    bp_tensor_info b = tensor_at(net, bp_net_tensor_find(net, "layers.0.bias"));
    const float W[2][3] = {{1, 2, 3}, {-4, 5, 0.5f}}, bias[2] = {0.25f, -1};
    for (int i = 0; i < 2; i++) {
        for (int j = 0; j < 3; j++)
            params[w.offset + (size_t)(i * w.stride[0] + j * w.stride[1])] = W[i][j];
        params[b.offset + (size_t)(i * b.stride[0])] = bias[i];
    }
    const float x[3] = {1, -2, 4};
    float out[2];
    ck_assert_int_eq(bp_net_forward(net, x, 3, 1, out, 2), BP_OK);
    for (int i = 0; i < 2; i++) {
        float want = bias[i];
        for (int j = 0; j < 3; j++)
            want += W[i][j] * x[j];
        ck_assert_float_eq_tol(out[i], want, 1e-6f);
    }
    bp_net_free(net);
}
END_TEST

START_TEST(test_bad_arguments)
{
    const int sizes[] = {5, 3, 2};
    bp_net *net = make_net(sizes, 3);
    bp_tensor_info info;
    ck_assert_int_eq(bp_net_tensor_count(NULL), 0);
    const int bad_index[] = {-1, 4, 5, INT32_MAX, INT32_MIN};
    for (size_t i = 0; i < sizeof bad_index / sizeof *bad_index; i++) {
        memset(&info, 0xab, sizeof info);
        ck_assert_int_eq(bp_net_tensor(net, bad_index[i], &info), BP_EINVAL);
        ck_assert_ptr_null(info.name);
        ck_assert_int_eq(info.ndim, 0);
        ck_assert_uint_eq(info.count, 0);
        ck_assert_str_ne(bp_last_error(), "");
    }
    memset(&info, 0xab, sizeof info);
    ck_assert_int_eq(bp_net_tensor(NULL, 0, &info), BP_EINVAL);
    ck_assert_ptr_null(info.name);
    ck_assert_int_eq(bp_net_tensor(net, 0, NULL), BP_EINVAL);
    ck_assert_int_eq(bp_net_tensor(NULL, 0, NULL), BP_EINVAL);
    ck_assert_int_eq(bp_net_tensor_find(NULL, "layers.0.weight"), -1);
    ck_assert_int_eq(bp_net_tensor_find(net, NULL), -1);
    ck_assert_int_eq(bp_net_tensor_find(NULL, NULL), -1);
    ck_assert_str_eq(bp_tensor_role_name(BP_ROLE_WEIGHT), "weight");
    ck_assert_str_eq(bp_tensor_role_name(BP_ROLE_BIAS), "bias");
    ck_assert_str_eq(bp_tensor_role_name(BP_ROLE_COUNT), "unknown");
    ck_assert_str_eq(bp_tensor_role_name((bp_tensor_role)-1), "unknown");
    bp_net_free(net);
}
END_TEST

/* The table is made with the net: reading it, failed lookups included, allocates nothing, and
 * replanning the buffers or the threads leaves it (and its name pointers) as it was. Freeing
 * the net gives back everything the table took. */
START_TEST(test_table_allocates_nothing_after_create)
{
    bp_alloc_stats before_create, before, after;
    bp_alloc_stats_get(&before_create);
    const int sizes[] = {784, 100, 10};
    bp_net *net = make_net(sizes, 3);
    int n = bp_net_tensor_count(net);
    bp_tensor_info first[8];
    ck_assert_int_le(n, 8);
    for (int t = 0; t < n; t++)
        first[t] = tensor_at(net, t);

    bp_alloc_stats_get(&before);
    for (int rep = 0; rep < 3; rep++) {
        ck_assert_int_eq(bp_net_tensor_count(net), n);
        for (int t = 0; t < n; t++) {
            bp_tensor_info info = tensor_at(net, t);
            ck_assert_int_eq(bp_net_tensor_find(net, info.name), t);
            ck_assert_ptr_nonnull(bp_tensor_role_name(info.role));
        }
        bp_tensor_info info;
        ck_assert_int_eq(bp_net_tensor(net, n, &info), BP_EINVAL);
        ck_assert_int_eq(bp_net_tensor_find(net, "nothing.here"), -1);
    }
    bp_alloc_stats_get(&after);
    ck_assert_uint_eq(after.allocations, before.allocations);
    ck_assert_uint_eq(after.frees, before.frees);
    ck_assert_uint_eq(after.bytes_live, before.bytes_live);

    ck_assert_int_eq(bp_net_reserve(net, 512), BP_OK);
    ck_assert_int_eq(bp_net_set_threads(net, 2), BP_OK);
    ck_assert_int_eq(bp_net_tensor_count(net), n);
    for (int t = 0; t < n; t++) {
        bp_tensor_info info = tensor_at(net, t);
        ck_assert_ptr_eq(info.name, first[t].name);
        ck_assert(info.layer == first[t].layer && info.role == first[t].role &&
                  info.ndim == first[t].ndim && info.offset == first[t].offset &&
                  info.count == first[t].count);
        for (int k = 0; k < BP_TENSOR_MAX_DIMS; k++)
            ck_assert(info.shape[k] == first[t].shape[k] && info.stride[k] == first[t].stride[k]);
    }
    bp_net_free(net);
    bp_alloc_stats_get(&after);
    ck_assert_uint_eq(after.bytes_live, before_create.bytes_live);
    ck_assert_uint_eq(after.allocations - before_create.allocations,
                      after.frees - before_create.frees);
}
END_TEST

/* The spec a net records spells every layer out, and a net made from it has the same stack:
 * the same spec again and the same tables. */
START_TEST(test_spec_round_trips)
{
    const int sizes[] = {12, 7, 5, 3};
    bp_net_config cfg;
    bp_net_config_init(&cfg);
    cfg.sizes = sizes;
    cfg.n_sizes = 4;
    cfg.hidden = BP_ACT_TANH;
    cfg.batchnorm = 1;
    cfg.dropout = 0.25f;
    cfg.threads = 1;
    bp_net *a = NULL, *b = NULL;
    ck_assert_int_eq(bp_net_create(&a, &cfg), BP_OK);
    ck_assert_str_eq(bp_net_spec(a), "dense:7:linear,batchnorm:tanh,dropout:0.25,"
                                     "dense:5:linear,batchnorm:tanh,dropout:0.25,dense:3:sigmoid");
    int input = 12;
    bp_net_config again;
    bp_net_config_init(&again);
    again.sizes = &input;
    again.n_sizes = 1;
    again.layers = "dense:4,batchnorm,dense:2:softmax";
    again.cost = BP_COST_LOG_LIKELIHOOD;
    ck_assert_int_eq(bp_net_create(&b, &again), BP_OK);
    ck_assert_str_eq(bp_net_spec(b), "dense:4:sigmoid,batchnorm:linear,dense:2:softmax");
    bp_net_free(b);
    again.layers = bp_net_spec(a);
    again.cost = bp_net_cost(a);
    ck_assert_int_eq(bp_net_create(&b, &again), BP_OK);
    ck_assert_str_eq(bp_net_spec(b), bp_net_spec(a));
    ck_assert_int_eq(bp_net_tensor_count(b), bp_net_tensor_count(a));
    ck_assert_int_eq(bp_net_buffer_count(b), bp_net_buffer_count(a));
    for (int k = 0; k < bp_net_tensor_count(a); k++) {
        bp_tensor_info ia, ib;
        bp_net_tensor(a, k, &ia);
        bp_net_tensor(b, k, &ib);
        ck_assert_str_eq(ia.name, ib.name);
        ck_assert_uint_eq(ia.offset, ib.offset);
        ck_assert_uint_eq(ia.count, ib.count);
    }
    ck_assert_ptr_null(bp_net_spec(NULL));
    bp_net_free(a);
    bp_net_free(b);
}
END_TEST

/* Batch norm's running averages are the buffer table, inside the state arena, starting as
 * PyTorch's (mean 0, variance 1); a net without them has an empty table and no state. */
START_TEST(test_buffer_table)
{
    const int sizes[] = {6, 5, 4, 2};
    bp_net *plain = make_net(sizes, 4);
    ck_assert_int_eq(bp_net_buffer_count(plain), 0);
    size_t n = 99;
    ck_assert_ptr_null(bp_net_state(plain, &n));
    ck_assert_uint_eq(n, 0);
    bp_tensor_info info;
    ck_assert_int_eq(bp_net_buffer(plain, 0, &info), BP_EINVAL);
    bp_net_free(plain);

    bp_net_config cfg;
    bp_net_config_init(&cfg);
    cfg.sizes = sizes;
    cfg.n_sizes = 4;
    cfg.batchnorm = 1;
    cfg.threads = 1;
    bp_net *net = NULL;
    ck_assert_int_eq(bp_net_create(&net, &cfg), BP_OK);
    float *state = bp_net_state(net, &n);
    ck_assert_ptr_nonnull(state);
    ck_assert_int_eq(bp_net_buffer_count(net), 4);
    static const char *const names[] = {"layers.1.running_mean", "layers.1.running_var",
                                        "layers.3.running_mean", "layers.3.running_var"};
    static const int width[] = {5, 5, 4, 4};
    size_t end = 0;
    for (int k = 0; k < 4; k++) {
        ck_assert_int_eq(bp_net_buffer(net, k, &info), BP_OK);
        ck_assert_str_eq(info.name, names[k]);
        ck_assert_int_eq(info.role, k % 2 ? BP_ROLE_RUNNING_VAR : BP_ROLE_RUNNING_MEAN);
        ck_assert_str_eq(bp_tensor_role_name(info.role), k % 2 ? "running_var" : "running_mean");
        ck_assert_int_eq(info.layer, k < 2 ? 2 : 4);
        ck_assert_int_eq(info.ndim, 1);
        ck_assert_int_eq(info.shape[0], width[k]);
        ck_assert_uint_eq(info.count, (size_t)width[k]);
        ck_assert_uint_ge(info.offset, end); /* in order, no overlap */
        end = info.offset + info.count;
        ck_assert_uint_le(end, n);
        for (size_t i = 0; i < info.count; i++)
            ck_assert(state[info.offset + i] == (k % 2 ? 1.0f : 0.0f));
    }
    ck_assert_int_eq(bp_net_buffer(net, 4, &info), BP_EINVAL);
    ck_assert_int_eq(bp_net_buffer(NULL, 0, &info), BP_EINVAL);
    bp_net_free(net);
}
END_TEST

static Suite *tensors_suite(void)
{
    Suite *s = suite_create("tensors");
    TCase *tc = tcase_create("tensors");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_table_matches_the_arena_views, 0, N_CASES);
    tcase_add_loop_test(tc, test_tensors_tile_the_arena, 0, N_CASES);
    tcase_add_loop_test(tc, test_names_and_find, 0, N_CASES);
    tcase_add_test(tc, test_table_indexes_the_math);
    tcase_add_test(tc, test_bad_arguments);
    tcase_add_test(tc, test_table_allocates_nothing_after_create);
    tcase_add_test(tc, test_spec_round_trips);
    tcase_add_test(tc, test_buffer_table);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return bp_test_main(tensors_suite()); }
