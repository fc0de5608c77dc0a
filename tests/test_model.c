/*
 * test_model.c - model files (bp_model_save, bp_model_load): a round trip for every layer kind
 * and activation on both backends, with trained batch-norm statistics, giving bit-identical
 * parameters, buffers and outputs; the PyTorch layout of the bytes; the metadata; thread
 * counts; and the files the loader must refuse, made by rewriting a good file through the
 * container (io/safetensors.h) with one defect each; and the saves that must not happen.
 */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "backprop.h"
#include "io/safetensors.h"
#include "testutil.h"

#ifndef SYSFS_MAGIC_NUMBER
#define SYSFS_MAGIC_NUMBER 0x62656572
#endif

#define ck_assert_error_has(needle)                                                          \
    ck_assert_msg(strstr(bp_last_error(), (needle)) != NULL,                                 \
                  "message '%s' does not contain '%s'", bp_last_error(), (needle))

enum { WIDTH = 8, B = 64, EVAL = 24 };

/* ---- a temporary folder per test -------------------------------------------------------- */

static char tmp_dir[256];

static void make_tmp_dir(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmp_dir, sizeof tmp_dir, "%s/bp-model-XXXXXX", base && *base ? base : "/tmp");
    ck_assert_msg(mkdtemp(tmp_dir) != NULL, "mkdtemp: %s", strerror(errno));
}

static void remove_tmp_dir(void)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "chmod -R u+w '%s' && rm -rf '%s'", tmp_dir, tmp_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmp_dir);
}

static const char *tmp_path(const char *name)
{
    static char paths[8][512];
    static int next;
    char *p = paths[next++ % 8];
    snprintf(p, 512, "%s/%s", tmp_dir, name);
    return p;
}

/* ---- nets ------------------------------------------------------------------------------- */

typedef struct net_case {
    const char *spec;
    bp_cost cost;
} net_case;

/* Every layer kind, every activation of a dense layer, batch norm at the input and inside. */
static const net_case cases[] = {
    {"dense:7:sigmoid,dense:3:sigmoid", BP_COST_QUADRATIC},
    {"dense:7:tanh,dense:3:softmax", BP_COST_LOG_LIKELIHOOD},
    {"dense:7:relu,dense:5:linear,dense:3:sigmoid", BP_COST_CROSS_ENTROPY},
    {"dense:9:relu,dropout:0.5,dense:3:softmax", BP_COST_LOG_LIKELIHOOD},
    {"dense:9:linear,batchnorm:sigmoid,dense:6:tanh,dropout:0.25,dense:3:softmax",
     BP_COST_LOG_LIKELIHOOD},
    {"batchnorm:relu,dense:5:linear,batchnorm:tanh,dense:3:linear", BP_COST_QUADRATIC},
};
enum { N_CASES = sizeof cases / sizeof *cases };

static bp_net *make_net(const char *spec, bp_cost cost, const char *backend, int threads)
{
    int sizes[1] = {WIDTH};
    bp_net_config cfg;
    bp_net_config_init(&cfg);
    cfg.sizes = sizes;
    cfg.n_sizes = 1;
    cfg.layers = spec;
    cfg.cost = cost;
    cfg.backend = backend;
    cfg.threads = threads;
    cfg.max_batch = B;
    cfg.seed = 5;
    bp_net *net = NULL;
    ck_assert_msg(bp_net_create(&net, &cfg) == BP_OK, "create %s: %s", spec, bp_last_error());
    return net;
}

static float inputs[WIDTH * B];

static void fill_inputs(uint64_t seed)
{
    bp_test_fill(inputs, WIDTH * B, 0.0f, 1.0f, &seed);
}

/* A few SGD steps on random inputs and one-hot targets: moves every parameter off its
 * initialisation and batch norm's running statistics off 0 and 1. */
static void train(bp_net *net, int steps)
{
    int n_out = bp_net_size(net, bp_net_layers(net));
    float *y = calloc((size_t)n_out * B, sizeof(float));
    float x[WIDTH * B];
    uint64_t seed = 99;
    for (int s = 0; s < steps; s++) {
        bp_test_fill(x, WIDTH * B, -1.0f, 2.0f, &seed);
        memset(y, 0, sizeof(float) * (size_t)n_out * B);
        for (int j = 0; j < B; j++)
            y[(size_t)j * n_out + (size_t)(j + s) % (size_t)n_out] = 1.0f;
        double cost;
        ck_assert_msg(bp_net_sgd_step(net, x, WIDTH, y, n_out, B, 0.1f, &cost) == BP_OK,
                      "step %d: %s", s, bp_last_error());
    }
    free(y);
}

/* The net's inference outputs on the shared inputs, malloc'd. */
static float *outputs(bp_net *net)
{
    int n_out = bp_net_size(net, bp_net_layers(net));
    float *out = malloc(sizeof(float) * (size_t)n_out * EVAL);
    ck_assert_int_eq(bp_net_forward(net, inputs, WIDTH, EVAL, out, n_out), BP_OK);
    return out;
}

static int same_bits(const float *a, const float *b, size_t n)
{
    return memcmp(a, b, n * sizeof(float)) == 0;
}

/* Parameters and buffers of b equal a's bit for bit, tensor by tensor (padding aside). */
static void assert_same_tensors(bp_net *a, bp_net *b)
{
    ck_assert_int_eq(bp_net_tensor_count(a), bp_net_tensor_count(b));
    ck_assert_int_eq(bp_net_buffer_count(a), bp_net_buffer_count(b));
    for (int t = 0; t < bp_net_tensor_count(a); t++) {
        bp_tensor_info ia, ib;
        ck_assert_int_eq(bp_net_tensor(a, t, &ia), BP_OK);
        ck_assert_int_eq(bp_net_tensor(b, t, &ib), BP_OK);
        ck_assert_str_eq(ia.name, ib.name);
        ck_assert_msg(same_bits(bp_net_params(a, NULL) + ia.offset,
                                bp_net_params(b, NULL) + ib.offset, ia.count),
                      "tensor %s differs", ia.name);
    }
    for (int t = 0; t < bp_net_buffer_count(a); t++) {
        bp_tensor_info ia, ib;
        ck_assert_int_eq(bp_net_buffer(a, t, &ia), BP_OK);
        ck_assert_int_eq(bp_net_buffer(b, t, &ib), BP_OK);
        ck_assert_str_eq(ia.name, ib.name);
        ck_assert_msg(same_bits(bp_net_state(a, NULL) + ia.offset,
                                bp_net_state(b, NULL) + ib.offset, ia.count),
                      "buffer %s differs", ia.name);
    }
}

static bp_net *load(const char *path, const char *backend, int threads, bp_model_meta *meta)
{
    bp_net_config cfg;
    bp_net_config_init(&cfg);
    cfg.backend = backend;
    cfg.threads = threads;
    cfg.max_batch = B;
    bp_net *net = NULL;
    ck_assert_msg(bp_model_load(&net, path, &cfg, meta) == BP_OK, "load %s: %s", path,
                  bp_last_error());
    ck_assert_ptr_nonnull(net);
    return net;
}

/* ---- round trips ------------------------------------------------------------------------ */

/* _i: case * 2 + backend. Save, load, and find the same net: spec, cost, every tensor and
 * buffer, and the outputs, bit for bit. Nets without dropout then take the same training step
 * and still agree, so nothing a step reads was left behind. */
START_TEST(test_round_trip)
{
    const net_case *c = &cases[_i / 2];
    const char *backend = bp_backend_name(_i % 2);
    bp_net *net = make_net(c->spec, c->cost, backend, 1);
    train(net, 5);
    fill_inputs(3);
    float *before = outputs(net);

    const char *path = tmp_path("model.safetensors");
    ck_assert_msg(bp_model_save(net, path, NULL) == BP_OK, "save: %s", bp_last_error());
    bp_model_meta meta;
    bp_net *back = load(path, backend, 1, &meta);

    ck_assert_str_eq(bp_net_spec(back), bp_net_spec(net));
    ck_assert_str_eq(bp_net_backend(back), backend);
    ck_assert_int_eq(bp_net_cost(back), c->cost);
    ck_assert_int_eq(bp_net_layers(back), bp_net_layers(net));
    for (int l = 0; l <= bp_net_layers(net); l++)
        ck_assert_int_eq(bp_net_size(back, l), bp_net_size(net, l));
    assert_same_tensors(net, back);
    int n_out = bp_net_size(net, bp_net_layers(net));
    float *after = outputs(back);
    ck_assert_msg(same_bits(before, after, (size_t)n_out * EVAL), "outputs differ");
    /* Saved without metadata: the loader reports none. */
    ck_assert_int_eq(meta.input_rows, 0);
    ck_assert_int_eq(meta.input_cols, 0);
    ck_assert(meta.input_scale == 0.0f);
    ck_assert_ptr_null(meta.class_names);
    ck_assert_ptr_null(meta.training);

    if (!strstr(c->spec, "dropout")) {
        train(net, 1);
        train(back, 1);
        assert_same_tensors(net, back);
    }
    free(before);
    free(after);
    bp_net_free(back);
    bp_net_free(net);
}
END_TEST

/* Batch norm's running statistics really were trained, so the round trip above compares
 * values that a loader forgetting the buffers would get wrong. */
START_TEST(test_buffers_are_trained_and_written)
{
    bp_net *net = make_net(cases[4].spec, cases[4].cost, "blas", 1);
    ck_assert_int_eq(bp_net_buffer_count(net), 2);
    train(net, 5);
    bp_tensor_info mean, var;
    ck_assert_int_eq(bp_net_buffer(net, 0, &mean), BP_OK);
    ck_assert_int_eq(bp_net_buffer(net, 1, &var), BP_OK);
    ck_assert_str_eq(mean.name, "layers.1.running_mean");
    ck_assert_str_eq(var.name, "layers.1.running_var");
    const float *state = bp_net_state(net, NULL);
    for (size_t k = 0; k < mean.count; k++) {
        ck_assert(state[mean.offset + k] != 0.0f);
        ck_assert(state[var.offset + k] != 1.0f);
    }
    const char *path = tmp_path("bn.safetensors");
    ck_assert_int_eq(bp_model_save(net, path, NULL), BP_OK);
    bp_st_file *f;
    ck_assert_msg(bp_st_read(&f, path) == BP_OK, "%s", bp_last_error());
    const bp_st_tensor *t = bp_st_find(f, "layers.1.running_var");
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(t->ndim, 1);
    ck_assert_int_eq(t->shape[0], 9);
    ck_assert(memcmp(t->data, state + var.offset, 9 * sizeof(float)) == 0);
    /* No scratch of the layer and nothing PyTorch would not expect. */
    ck_assert_int_eq(bp_st_count(f), bp_net_tensor_count(net) + bp_net_buffer_count(net));
    ck_assert_ptr_null(bp_st_find(f, "layers.1.num_batches_tracked"));
    bp_st_free(f);
    bp_net_free(net);
}
END_TEST

/* The bytes are PyTorch's: every tensor under its table name, F32, its shape in PyTorch's
 * order, elements row-major for that shape, so a dense weight is the transpose of the arena's
 * column-major matrix. */
START_TEST(test_file_layout_is_pytorch)
{
    bp_net *net = make_net("dense:5:relu,dropout:0.2,dense:3:sigmoid", BP_COST_QUADRATIC,
                           "blas", 1);
    train(net, 2);
    const char *path = tmp_path("layout.safetensors");
    ck_assert_int_eq(bp_model_save(net, path, NULL), BP_OK);
    bp_st_file *f;
    ck_assert_msg(bp_st_read(&f, path) == BP_OK, "%s", bp_last_error());
    ck_assert_int_eq(bp_st_count(f), 4);
    /* Dropout holds position 1, so the second dense layer is layers.2. */
    static const char *const names[] = {"layers.0.weight", "layers.0.bias", "layers.2.weight",
                                        "layers.2.bias"};
    static const int layer_of[] = {1, 1, 3, 3};
    for (int k = 0; k < 4; k++) {
        const bp_st_tensor *t = bp_st_find(f, names[k]);
        ck_assert_msg(t != NULL, "%s missing", names[k]);
        ck_assert_int_eq(t->dtype, BP_ST_F32);
        int rows, cols, ld;
        const float *w = bp_net_weights(net, layer_of[k], &rows, &cols, &ld);
        const float *b = bp_net_biases(net, layer_of[k]);
        const float *data = t->data;
        if (k % 2 == 0) {
            ck_assert_int_eq(t->ndim, 2);
            ck_assert_int_eq(t->shape[0], rows);
            ck_assert_int_eq(t->shape[1], cols);
            ck_assert_uint_eq(t->bytes, sizeof(float) * (size_t)rows * (size_t)cols);
            for (int i = 0; i < rows; i++)
                for (int j = 0; j < cols; j++) {
                    float v;
                    memcpy(&v, data + (size_t)i * cols + j, sizeof v);
                    ck_assert_msg(v == w[i + (size_t)j * ld], "%s[%d, %d]", names[k], i, j);
                }
        } else {
            ck_assert_int_eq(t->ndim, 1);
            ck_assert_int_eq(t->shape[0], rows);
            ck_assert(memcmp(data, b, sizeof(float) * (size_t)rows) == 0);
        }
    }
    bp_st_free(f);
    bp_net_free(net);
}
END_TEST

/* What the metadata holds, as keys in the file and back through the loader. */
START_TEST(test_metadata_round_trip)
{
    bp_net *net = make_net(cases[1].spec, cases[1].cost, "blas", 1);
    const char *training = "{\"epochs\": 3, \"eta\": 0.5, \"optimizer\": {\"name\": \"adam\"}}";
    bp_model_meta meta = {.input_rows = 2, .input_cols = 4, .input_scale = 1.0f / 255.0f,
                          .class_names = "zero,one,two", .training = training};
    const char *path = tmp_path("meta.safetensors");
    ck_assert_msg(bp_model_save(net, path, &meta) == BP_OK, "%s", bp_last_error());

    bp_st_file *f;
    ck_assert_msg(bp_st_read(&f, path) == BP_OK, "%s", bp_last_error());
    ck_assert_str_eq(bp_st_meta_get(f, "format"), "backprop.model");
    ck_assert_str_eq(bp_st_meta_get(f, "format_version"), "1.0");
    ck_assert_str_eq(bp_st_meta_get(f, "architecture"), bp_net_spec(net));
    ck_assert_str_eq(bp_st_meta_get(f, "input_width"), "8");
    ck_assert_str_eq(bp_st_meta_get(f, "cost"), "log-likelihood");
    ck_assert_str_eq(bp_st_meta_get(f, "input_rows"), "2");
    ck_assert_str_eq(bp_st_meta_get(f, "input_cols"), "4");
    ck_assert_str_eq(bp_st_meta_get(f, "class_names"), "zero,one,two");
    ck_assert_str_eq(bp_st_meta_get(f, "training"), training);
    ck_assert_str_eq(bp_st_meta_get(f, "library_version"), bp_version());
    bp_st_free(f);

    bp_model_meta got;
    bp_net *back = load(path, NULL, 1, &got);
    ck_assert_int_eq(got.input_rows, 2);
    ck_assert_int_eq(got.input_cols, 4);
    ck_assert(memcmp(&got.input_scale, &meta.input_scale, sizeof(float)) == 0);
    ck_assert_str_eq(got.class_names, "zero,one,two");
    ck_assert_str_eq(got.training, training);
    /* The strings are the net's: they outlive the file and a second load. */
    bp_net *other = load(path, NULL, 1, NULL);
    bp_net_free(other);
    ck_assert_str_eq(got.class_names, "zero,one,two");
    ck_assert_str_eq(got.training, training);
    bp_net_free(back);
    bp_net_free(net);
}
END_TEST

/* A NULL cfg takes the defaults; a net trained and saved on two threads (its steps split)
 * loads on one, with the same tensors and, on one thread each, the same outputs. */
START_TEST(test_threads_and_defaults)
{
    bp_net *net = make_net(cases[4].spec, cases[4].cost, "blas", 2);
    ck_assert_int_eq(bp_net_threads(net), 2);
    train(net, 4);
    const char *path = tmp_path("threads.safetensors");
    ck_assert_int_eq(bp_model_save(net, path, NULL), BP_OK);

    bp_net *one = load(path, "naive", 1, NULL);
    ck_assert_int_eq(bp_net_threads(one), 1);
    ck_assert_str_eq(bp_net_backend(one), "naive");
    assert_same_tensors(net, one);
    ck_assert_int_eq(bp_net_set_threads(net, 1), BP_OK);
    ck_assert_int_eq(bp_net_set_backend(net, "naive"), BP_OK);
    fill_inputs(8);
    float *a = outputs(net), *b = outputs(one);
    ck_assert(same_bits(a, b, 3 * EVAL));

    bp_net *dflt = NULL;
    ck_assert_msg(bp_model_load(&dflt, path, NULL, NULL) == BP_OK, "%s", bp_last_error());
    ck_assert_str_eq(bp_net_backend(dflt), "blas");
    ck_assert_int_eq(bp_net_threads(dflt), bp_get_threads());
    assert_same_tensors(net, dflt);
    free(a);
    free(b);
    bp_net_free(dflt);
    bp_net_free(one);
    bp_net_free(net);
}
END_TEST

/* A net made from sizes (with dropout and batch norm options) records the spec they stand
 * for and comes back as the same stack. */
START_TEST(test_sizes_net_round_trip)
{
    int sizes[] = {WIDTH, 6, 4};
    bp_net_config cfg;
    bp_net_config_init(&cfg);
    cfg.sizes = sizes;
    cfg.n_sizes = 3;
    cfg.batchnorm = 1;
    cfg.dropout = 0.3f;
    cfg.output = BP_ACT_SOFTMAX;
    cfg.cost = BP_COST_LOG_LIKELIHOOD;
    cfg.max_batch = B;
    cfg.threads = 1;
    bp_net *net;
    ck_assert_int_eq(bp_net_create(&net, &cfg), BP_OK);
    train(net, 3);
    const char *path = tmp_path("sizes.safetensors");
    ck_assert_int_eq(bp_model_save(net, path, NULL), BP_OK);
    bp_net *back = load(path, NULL, 1, NULL);
    ck_assert_str_eq(bp_net_spec(back), bp_net_spec(net));
    assert_same_tensors(net, back);
    fill_inputs(4);
    float *a = outputs(net), *b = outputs(back);
    ck_assert(same_bits(a, b, 4 * EVAL));
    free(a);
    free(b);
    bp_net_free(back);
    bp_net_free(net);
}
END_TEST

/* ---- files the loader refuses ----------------------------------------------------------- */

/* A model file taken apart through the container, to be changed and written again: the crc32
 * keys are left out (the writer makes them anew), so each file differs from a good one by its
 * one defect and the container's checks all pass. */
typedef struct doc {
    bp_st_file *file;
    bp_st_tensor t[32];
    int nt;
    bp_st_meta m[32];
    int nm;
} doc;

static void doc_read(doc *d, const char *path)
{
    memset(d, 0, sizeof *d);
    ck_assert_msg(bp_st_read(&d->file, path) == BP_OK, "%s", bp_last_error());
    d->nt = bp_st_count(d->file);
    ck_assert_int_le(d->nt, 32);
    for (int i = 0; i < d->nt; i++)
        d->t[i] = *bp_st_at(d->file, i);
    for (int i = 0; i < bp_st_meta_count(d->file); i++) {
        const bp_st_meta *m = bp_st_meta_at(d->file, i);
        if (strncmp(m->key, "crc32.", 6) != 0)
            d->m[d->nm++] = *m;
    }
}

static bp_st_tensor *doc_tensor(doc *d, const char *name)
{
    for (int i = 0; i < d->nt; i++)
        if (strcmp(d->t[i].name, name) == 0)
            return &d->t[i];
    ck_abort_msg("no tensor %s", name);
    return NULL;
}

static void doc_drop(doc *d, const char *name)
{
    bp_st_tensor *t = doc_tensor(d, name);
    memmove(t, t + 1, sizeof *t * (size_t)(d->t + d->nt - (t + 1)));
    d->nt--;
}

/* Set (or with value NULL remove) a metadata key. */
static void doc_meta(doc *d, const char *key, const char *value)
{
    for (int i = 0; i < d->nm; i++)
        if (strcmp(d->m[i].key, key) == 0) {
            if (value) {
                d->m[i].value = value;
            } else {
                memmove(&d->m[i], &d->m[i + 1], sizeof d->m[0] * (size_t)(d->nm - i - 1));
                d->nm--;
            }
            return;
        }
    if (value)
        d->m[d->nm++] = (bp_st_meta){key, value};
}

static void doc_write(const doc *d, const char *path)
{
    ck_assert_msg(bp_st_write(path, d->t, d->nt, d->m, d->nm) == BP_OK, "rewrite: %s",
                  bp_last_error());
}

static void doc_free(doc *d) { bp_st_free(d->file); }

/* A trained batch-norm net's file, taken apart. */
static const char *good_file(doc *d)
{
    bp_net *net = make_net(cases[4].spec, cases[4].cost, "blas", 1);
    train(net, 3);
    bp_model_meta meta = {.class_names = "a,b,c", .training = "{\"eta\": 0.1}"};
    const char *path = tmp_path("good.safetensors");
    ck_assert_msg(bp_model_save(net, path, &meta) == BP_OK, "%s", bp_last_error());
    bp_net_free(net);
    doc_read(d, path);
    return path;
}

/* The load fails with BP_EFORMAT, naming the file and `what`, and leaves nothing behind. */
static void assert_refused(const char *path, const char *what)
{
    bp_net *net = (bp_net *)&net; /* not NULL, so the test sees the loader clear it */
    bp_model_meta meta = {.input_rows = 7, .class_names = "x"};
    bp_status st = bp_model_load(&net, path, NULL, &meta);
    ck_assert_msg(st == BP_EFORMAT, "%s: got %s (%s)", what, bp_status_str(st), bp_last_error());
    ck_assert_ptr_null(net);
    ck_assert_int_eq(meta.input_rows, 0);
    ck_assert_ptr_null(meta.class_names);
    ck_assert_error_has(path);
    ck_assert_error_has(what);
}

/* The rewriting itself makes a file that loads: the defects below are the only reason the
 * others fail. Minor versions and keys a later 1.x may add are accepted. */
START_TEST(test_rewritten_good_file_loads)
{
    doc d;
    good_file(&d);
    const char *path = tmp_path("same.safetensors");
    doc_write(&d, path);
    bp_net *net = load(path, NULL, 1, NULL);
    bp_net_free(net);

    doc_meta(&d, "format_version", "1.7");
    doc_meta(&d, "a_later_key", "whatever it means");
    doc_write(&d, path);
    bp_model_meta meta;
    net = load(path, NULL, 1, &meta);
    ck_assert_str_eq(meta.class_names, "a,b,c");
    bp_net_free(net);
    doc_free(&d);
}
END_TEST

START_TEST(test_refuses_unknown_major_version)
{
    doc d;
    good_file(&d);
    const char *path = tmp_path("v2.safetensors");
    doc_meta(&d, "format_version", "2.0");
    doc_write(&d, path);
    assert_refused(path, "format_version");
    ck_assert_error_has("major version 2");
    doc_meta(&d, "format_version", "0.9");
    doc_write(&d, path);
    assert_refused(path, "major version 0");
    doc_meta(&d, "format_version", "1");
    doc_write(&d, path);
    assert_refused(path, "format_version");
    doc_meta(&d, "format_version", NULL);
    doc_write(&d, path);
    assert_refused(path, "format_version");
    doc_free(&d);
}
END_TEST

START_TEST(test_refuses_foreign_or_bad_metadata)
{
    doc d;
    good_file(&d);
    const char *path = tmp_path("meta.safetensors");
    static const struct {
        const char *key, *value, *what;
    } bad[] = {
        {"format", "pt", "format"},
        {"format", NULL, "format"},
        {"architecture", NULL, "architecture"},
        {"architecture", "dense:0:sigmoid", "architecture"},
        {"architecture", "conv:3", "architecture"},
        {"input_width", "07", "input_width"},
        {"input_width", "-8", "input_width"},
        {"input_width", "9", "architecture"}, /* the weight's shape no longer fits the net */
        {"architecture", "dense:9:softmax,dense:3:softmax", "architecture"},
        /* The same layers with a linear output, which the file's log-likelihood cannot take. */
        {"architecture", "dense:9:linear,batchnorm:sigmoid,dense:6:tanh,dropout:0.25,"
                         "dense:3:linear", "architecture"},
        {"cost", "hinge", "cost"},
        {"input_rows", "2", "input_cols"},        /* without its partner */
        {"input_scale", "nan", "input_scale"},
        {"input_scale", "-1", "input_scale"},
        {"class_names", "a,b", "class_names"},
        {"training", "[1, 2]", "training"},
        {"training", "{\"eta\": ", "training"},
        {"training", "{} {}", "training"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        doc e = d;
        doc_meta(&e, bad[k].key, bad[k].value);
        doc_write(&e, path);
        bp_net *net = NULL;
        bp_status st = bp_model_load(&net, path, NULL, NULL);
        ck_assert_msg(st == BP_EFORMAT, "%s=%s: %s (%s)", bad[k].key,
                      bad[k].value ? bad[k].value : "(absent)", bp_status_str(st),
                      bp_last_error());
        ck_assert_ptr_null(net);
        ck_assert_error_has(path);
        ck_assert_error_has(bad[k].what);
    }
    doc_free(&d);
}
END_TEST

START_TEST(test_refuses_missing_tensor)
{
    static const char *const names[] = {"layers.0.bias", "layers.1.weight",
                                        "layers.1.running_var", "layers.4.weight"};
    for (int k = 0; k < 4; k++) {
        doc d;
        good_file(&d);
        doc_drop(&d, names[k]);
        const char *path = tmp_path("missing.safetensors");
        doc_write(&d, path);
        assert_refused(path, names[k]);
        ck_assert_error_has("missing");
        doc_free(&d);
    }
}
END_TEST

START_TEST(test_refuses_extra_tensor)
{
    static const float data[3] = {1, 2, 3};
    static const char *const names[] = {"layers.3.weight", "layers.1.num_batches_tracked",
                                        "extra"};
    for (int k = 0; k < 3; k++) {
        doc d;
        good_file(&d);
        d.t[d.nt++] = (bp_st_tensor){.name = names[k], .dtype = BP_ST_F32, .ndim = 1,
                                     .shape = {3}, .data = data, .bytes = sizeof data};
        const char *path = tmp_path("extra.safetensors");
        doc_write(&d, path);
        assert_refused(path, names[k]);
        doc_free(&d);
    }
}
END_TEST

START_TEST(test_refuses_wrong_shape)
{
    doc d;
    good_file(&d);
    const char *path = tmp_path("shape.safetensors");
    /* The arena's own order, [in, out]: what a writer forgetting the transpose would make. */
    bp_st_tensor *w = doc_tensor(&d, "layers.0.weight");
    ck_assert_int_eq(w->shape[0], 9);
    ck_assert_int_eq(w->shape[1], 8);
    w->shape[0] = 8;
    w->shape[1] = 9;
    doc_write(&d, path);
    assert_refused(path, "layers.0.weight");
    ck_assert_error_has("[8, 9]");
    ck_assert_error_has("[9, 8]");
    /* Same count, other rank. */
    w->ndim = 1;
    w->shape[0] = 72;
    w->shape[1] = 0;
    doc_write(&d, path);
    assert_refused(path, "layers.0.weight");
    doc_free(&d);

    good_file(&d);
    bp_st_tensor *b = doc_tensor(&d, "layers.4.bias");
    b->shape[0] = 2;
    b->bytes = 2 * sizeof(float);
    doc_write(&d, path);
    assert_refused(path, "layers.4.bias");
    doc_free(&d);
}
END_TEST

START_TEST(test_refuses_wrong_dtype)
{
    doc d;
    good_file(&d);
    static int64_t ints[9];
    bp_st_tensor *t = doc_tensor(&d, "layers.1.running_mean");
    t->dtype = BP_ST_I64;
    t->data = ints;
    t->bytes = sizeof ints;
    const char *path = tmp_path("dtype.safetensors");
    doc_write(&d, path);
    assert_refused(path, "layers.1.running_mean");
    ck_assert_error_has("F32");
    doc_free(&d);
}
END_TEST

/* NaN or infinity anywhere (a weight, a bias, a running variance) is refused, naming the
 * tensor and the element in PyTorch's indexing. */
START_TEST(test_refuses_non_finite_values)
{
    static const struct {
        const char *name;
        size_t index;
        float value;
        const char *where;
    } bad[] = {
        {"layers.0.weight", 2 * 8 + 5, NAN, "[2, 5]"},
        {"layers.2.bias", 3, INFINITY, "[3]"},
        {"layers.1.running_var", 8, -INFINITY, "[8]"},
    };
    for (int k = 0; k < 3; k++) {
        doc d;
        good_file(&d);
        bp_st_tensor *t = doc_tensor(&d, bad[k].name);
        float *copy = malloc(t->bytes);
        memcpy(copy, t->data, t->bytes);
        copy[bad[k].index] = bad[k].value;
        t->data = copy;
        const char *path = tmp_path("nan.safetensors");
        doc_write(&d, path);
        assert_refused(path, bad[k].name);
        ck_assert_error_has(bad[k].where);
        free(copy);
        doc_free(&d);
    }
}
END_TEST

START_TEST(test_load_bad_arguments)
{
    doc d;
    const char *path = good_file(&d);
    doc_free(&d);
    bp_net *net = NULL;
    ck_assert_int_eq(bp_model_load(NULL, path, NULL, NULL), BP_EINVAL);
    ck_assert_int_eq(bp_model_load(&net, NULL, NULL, NULL), BP_EINVAL);
    bp_net_config cfg;
    bp_net_config_init(&cfg);
    cfg.backend = "gpu";
    ck_assert_int_eq(bp_model_load(&net, path, &cfg, NULL), BP_EINVAL);
    ck_assert_error_has("gpu");
    ck_assert_ptr_null(net);
    bp_net_config_init(&cfg);
    cfg.max_batch = 0;
    ck_assert_int_eq(bp_model_load(&net, path, &cfg, NULL), BP_EINVAL);
    ck_assert_ptr_null(net);
    const char *none = tmp_path("absent.safetensors");
    ck_assert_int_eq(bp_model_load(&net, none, NULL, NULL), BP_EIO);
    ck_assert_error_has(none);
    ck_assert_ptr_null(net);
}
END_TEST

/* ---- saves that must not happen --------------------------------------------------------- */

START_TEST(test_save_refuses_non_finite)
{
    const char *path = tmp_path("nan.safetensors");
    bp_net *net = make_net(cases[4].spec, cases[4].cost, "blas", 1);
    bp_tensor_info info;
    ck_assert_int_eq(bp_net_tensor(net, bp_net_tensor_find(net, "layers.2.weight"), &info),
                     BP_OK);
    float *p = bp_net_params(net, NULL);
    /* Element [4, 1] of the [6, 9] weight, column-major in the arena. */
    p[info.offset + 4 + 1 * (size_t)info.stride[1]] = NAN;
    ck_assert_int_eq(bp_model_save(net, path, NULL), BP_EDIVERGED);
    ck_assert_error_has("layers.2.weight");
    ck_assert_error_has("[4, 1]");
    ck_assert_error_has(path);
    ck_assert_int_eq(access(path, F_OK), -1);
    p[info.offset + 4 + 1 * (size_t)info.stride[1]] = 0.5f;

    /* A buffer too: the loader would refuse the file. */
    ck_assert_int_eq(bp_net_buffer(net, 0, &info), BP_OK);
    bp_net_state(net, NULL)[info.offset + 2] = INFINITY;
    ck_assert_int_eq(bp_model_save(net, path, NULL), BP_EDIVERGED);
    ck_assert_error_has("layers.1.running_mean");
    ck_assert_int_eq(access(path, F_OK), -1);
    bp_net_state(net, NULL)[info.offset + 2] = 0.0f;
    ck_assert_int_eq(bp_model_save(net, path, NULL), BP_OK);
    bp_net_free(net);
}
END_TEST

START_TEST(test_save_refuses_bad_metadata)
{
    const char *path = tmp_path("meta.safetensors");
    bp_net *net = make_net(cases[0].spec, cases[0].cost, "blas", 1);
    static const bp_model_meta bad[] = {
        {.training = "[1]"},
        {.training = "not json"},
        {.training = "{\"a\": 1} trailing"},
        {.class_names = "a,b"},
        {.input_rows = 3, .input_cols = 3},
        {.input_rows = 8},
        {.input_scale = -1.0f},
        {.input_scale = NAN},
    };
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        ck_assert_msg(bp_model_save(net, path, &bad[k]) == BP_EINVAL, "case %zu", k);
        ck_assert_error_has(path);
        ck_assert_int_eq(access(path, F_OK), -1);
    }
    ck_assert_int_eq(bp_model_save(NULL, path, NULL), BP_EINVAL);
    ck_assert_int_eq(bp_model_save(net, NULL, NULL), BP_EINVAL);
    bp_model_meta ok = {.input_rows = 4, .input_cols = 2, .class_names = "a,b,c",
                        .training = "{}"};
    ck_assert_int_eq(bp_model_save(net, path, &ok), BP_OK);
    bp_net_free(net);
}
END_TEST

/* The old model is still there, and still loads as itself, after a save that failed. */
static void assert_old_model(const char *path, bp_net *old)
{
    bp_net *back = load(path, NULL, 1, NULL);
    ck_assert_str_eq(bp_net_spec(back), bp_net_spec(old));
    assert_same_tensors(old, back);
    bp_net_free(back);
}

START_TEST(test_save_unwritable_directory)
{
    bp_net *old = make_net(cases[0].spec, cases[0].cost, "blas", 1);
    bp_net *net = make_net(cases[2].spec, cases[2].cost, "blas", 1);
    const char *missing = tmp_path("no/such/dir/m.safetensors");
    ck_assert_int_eq(bp_model_save(net, missing, NULL), BP_EIO);
    ck_assert_error_has(missing);

    if (geteuid() != 0) {
        const char *dir = tmp_path("ro");
        ck_assert_int_eq(mkdir(dir, 0755), 0);
        char path[600];
        snprintf(path, sizeof path, "%s/m.safetensors", dir);
        ck_assert_int_eq(bp_model_save(old, path, NULL), BP_OK);
        ck_assert_int_eq(chmod(dir, 0555), 0);
        ck_assert_int_eq(bp_model_save(net, path, NULL), BP_EIO);
        ck_assert_error_has(path);
        assert_old_model(path, old);
    } else {
        /* chmod does not stop root; nobody can create a regular file in sysfs. */
        struct statfs fs;
        if (statfs("/sys", &fs) == 0 && (unsigned long)fs.f_type == SYSFS_MAGIC_NUMBER) {
            const char *path = "/sys/bp-model-probe.safetensors";
            ck_assert_int_eq(bp_model_save(net, path, NULL), BP_EIO);
            ck_assert_error_has(path);
            ck_assert_int_eq(access(path, F_OK), -1);
        }
    }
    bp_net_free(net);
    bp_net_free(old);
}
END_TEST

/* A full disk (RLIMIT_FSIZE stands in: write() fails with EFBIG) in the middle of the new
 * file: BP_EIO naming the path, the old model intact, no temporary file left. */
START_TEST(test_save_full_disk_keeps_old_file)
{
    bp_net *old = make_net(cases[0].spec, cases[0].cost, "blas", 1);
    bp_net *net = make_net("dense:200:relu,dense:3:sigmoid", BP_COST_QUADRATIC, "blas", 1);
    const char *path = tmp_path("m.safetensors");
    ck_assert_int_eq(bp_model_save(old, path, NULL), BP_OK);
    struct rlimit saved;
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &saved), 0);
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim = {.rlim_cur = 4096, .rlim_max = saved.rlim_max};
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
    bp_status st = bp_model_save(net, path, NULL);
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", bp_last_error());
    setrlimit(RLIMIT_FSIZE, &saved);
    signal(SIGXFSZ, SIG_DFL);
    ck_assert_int_eq(st, BP_EIO);
    ck_assert_msg(strstr(msg, path) != NULL, "message: %s", msg);
    assert_old_model(path, old);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "test $(ls -A '%s' | wc -l) -eq 1", tmp_dir);
    ck_assert_msg(system(cmd) == 0, "a temporary file was left in %s", tmp_dir);
    bp_net_free(net);
    bp_net_free(old);
}
END_TEST

static Suite *model_suite(void)
{
    Suite *s = suite_create("model");
    TCase *rt = tcase_create("round trip");
    tcase_add_checked_fixture(rt, make_tmp_dir, remove_tmp_dir);
    tcase_set_timeout(rt, 60);
    tcase_add_loop_test(rt, test_round_trip, 0, 2 * N_CASES);
    tcase_add_test(rt, test_buffers_are_trained_and_written);
    tcase_add_test(rt, test_file_layout_is_pytorch);
    tcase_add_test(rt, test_metadata_round_trip);
    tcase_add_test(rt, test_threads_and_defaults);
    tcase_add_test(rt, test_sizes_net_round_trip);
    suite_add_tcase(s, rt);

    TCase *bad = tcase_create("refusals");
    tcase_add_checked_fixture(bad, make_tmp_dir, remove_tmp_dir);
    tcase_set_timeout(bad, 60);
    tcase_add_test(bad, test_rewritten_good_file_loads);
    tcase_add_test(bad, test_refuses_unknown_major_version);
    tcase_add_test(bad, test_refuses_foreign_or_bad_metadata);
    tcase_add_test(bad, test_refuses_missing_tensor);
    tcase_add_test(bad, test_refuses_extra_tensor);
    tcase_add_test(bad, test_refuses_wrong_shape);
    tcase_add_test(bad, test_refuses_wrong_dtype);
    tcase_add_test(bad, test_refuses_non_finite_values);
    tcase_add_test(bad, test_load_bad_arguments);
    tcase_add_test(bad, test_save_refuses_non_finite);
    tcase_add_test(bad, test_save_refuses_bad_metadata);
    tcase_add_test(bad, test_save_unwritable_directory);
    tcase_add_test(bad, test_save_full_disk_keeps_old_file);
    suite_add_tcase(s, bad);
    return s;
}

int main(void) { return bp_test_main(model_suite()); }
