/*
 * test_onnx.c - the ONNX export (bp_net_export_onnx). Each export is read back with protobuf-c
 * and checked against the net: the model's versions and metadata, the graph's input and
 * output, the operators in order for every layer kind and activation, the attributes, each
 * initialiser's shape and elements against the net's own views (bp_net_weights, the tensor and
 * buffer tables), and the graph's arithmetic, evaluated here in double from the file alone by
 * the ONNX operators' definitions, against bp_net_forward. Then what must fail: a path that
 * cannot be written, non-finite parameters, metadata that does not fit; nothing is left behind
 * and an existing file keeps its bytes.
 *
 * Built without ONNX support (and, in a build with it, as the 'onnx-missing' test, with the
 * library's export compiled again without it): the call exists and says what to install.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backprop.h"
#include "testutil.h"

#if BP_HAVE_ONNX
#include "onnx.pb-c.h"
#endif

#define ck_assert_error_has(needle)                                                          \
    ck_assert_msg(strstr(bp_last_error(), (needle)) != NULL,                                 \
                  "message '%s' does not contain '%s'", bp_last_error(), (needle))

/* ---- a temporary folder per test -------------------------------------------------------- */

static char tmp_dir[256];

static void make_tmp_dir(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmp_dir, sizeof tmp_dir, "%s/bp-onnx-XXXXXX", base && *base ? base : "/tmp");
    ck_assert_msg(mkdtemp(tmp_dir) != NULL, "mkdtemp: %s", strerror(errno));
}

static void remove_tmp_dir(void)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
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

/* Entries of the folder (. and .. not counted): a failed export leaves no temporary file. */
static int tmp_entries(void)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "ls -A '%s' | wc -l", tmp_dir);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    int n = -1;
    ck_assert_int_eq(fscanf(p, "%d", &n), 1);
    pclose(p);
    return n;
}

static bp_net *make_net(int width, const char *layers)
{
    bp_net_config cfg;
    bp_net_config_init(&cfg);
    cfg.sizes = &width;
    cfg.n_sizes = 1;
    cfg.layers = layers;
    cfg.cost = BP_COST_QUADRATIC;
    cfg.threads = 1;
    cfg.seed = 7;
    bp_net *net;
    ck_assert_msg(bp_net_create(&net, &cfg) == BP_OK, "%s: %s", layers, bp_last_error());
    return net;
}

#if BP_HAVE_ONNX

/* ---- reading an export back ------------------------------------------------------------- */

static Onnx__ModelProto *read_model(const char *path)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
    ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    ck_assert_int_gt(n, 0);
    rewind(f);
    uint8_t *bytes = malloc((size_t)n);
    ck_assert_ptr_nonnull(bytes);
    ck_assert_uint_eq(fread(bytes, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, (size_t)n, bytes);
    free(bytes);
    ck_assert_msg(m != NULL, "%s does not parse as an ONNX ModelProto", path);
    return m;
}

static const Onnx__TensorProto *initializer_or_null(const Onnx__GraphProto *g,
                                                    const char *name)
{
    for (size_t i = 0; i < g->n_initializer; i++)
        if (strcmp(g->initializer[i]->name, name) == 0)
            return g->initializer[i];
    return NULL;
}

static const Onnx__TensorProto *initializer(const Onnx__GraphProto *g, const char *name)
{
    const Onnx__TensorProto *t = initializer_or_null(g, name);
    ck_assert_msg(t != NULL, "no initialiser named %s", name);
    return t;
}

static const Onnx__AttributeProto *attribute(const Onnx__NodeProto *n, const char *name)
{
    for (size_t i = 0; i < n->n_attribute; i++)
        if (strcmp(n->attribute[i]->name, name) == 0)
            return n->attribute[i];
    return NULL;
}

static const char *meta_value(const Onnx__ModelProto *m, const char *key)
{
    for (size_t i = 0; i < m->n_metadata_props; i++)
        if (strcmp(m->metadata_props[i]->key, key) == 0)
            return m->metadata_props[i]->value;
    return NULL;
}

/* A float initialiser's element k, from its little-endian raw_data. */
static float element(const Onnx__TensorProto *t, size_t k)
{
    ck_assert(t->has_raw_data);
    ck_assert_uint_ge(t->raw_data.len, (k + 1) * sizeof(float));
    float v;
    memcpy(&v, t->raw_data.data + k * sizeof v, sizeof v);
    return v;
}

static size_t elements(const Onnx__TensorProto *t)
{
    size_t n = 1;
    for (size_t d = 0; d < t->n_dims; d++)
        n *= (size_t)t->dims[d];
    return n;
}

/* The graph's input or output: float [N, width], N symbolic. */
static void check_batch_value(const Onnx__ValueInfoProto *v, const char *name, int width)
{
    ck_assert_str_eq(v->name, name);
    ck_assert_ptr_nonnull(v->type);
    ck_assert_int_eq(v->type->value_case, ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE);
    const Onnx__TypeProto__Tensor *t = v->type->tensor_type;
    ck_assert_int_eq(t->elem_type, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT);
    ck_assert_uint_eq(t->shape->n_dim, 2);
    ck_assert_int_eq(t->shape->dim[0]->value_case,
                     ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM);
    ck_assert_str_eq(t->shape->dim[0]->dim_param, "N");
    ck_assert_int_eq(t->shape->dim[1]->value_case,
                     ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE);
    ck_assert_int_eq(t->shape->dim[1]->dim_value, width);
}

static int is_recurrent_op(const Onnx__NodeProto *n)
{
    return strcmp(n->op_type, "LSTM") == 0 || strcmp(n->op_type, "GRU") == 0;
}

/* The node that reads the initialiser "layers.<layer - 1>.W", if it is an LSTM or GRU. */
static int in_recurrent_layer(const Onnx__GraphProto *g, int layer)
{
    char name[64];
    snprintf(name, sizeof name, "layers.%d.W", layer - 1);
    for (size_t i = 0; i < g->n_node; i++)
        if (is_recurrent_op(g->node[i]) && g->node[i]->n_input > 1 &&
            strcmp(g->node[i]->input[1], name) == 0)
            return 1;
    return 0;
}

/* Every tensor of the net's parameter and buffer tables is an initialiser of the same name
 * and shape whose elements, row-major, are the arena's through the table's strides; nothing
 * else is, but the int64 target shapes of Reshape nodes (one per Reshape, checked by
 * eval_reshape) and a recurrent layer's W, R and B, which hold its tensors in the operator's
 * gate order (check_recurrent_initializers, and eval_recurrent by the operator's definition)
 * in place of its own. */
static void check_initializers(bp_net *net, const Onnx__GraphProto *g)
{
    size_t n_params, n_state;
    const float *params = bp_net_params(net, &n_params), *state = bp_net_state(net, &n_state);
    int n_tensors = bp_net_tensor_count(net), n_buffers = bp_net_buffer_count(net);
    size_t n_reshapes = 0, n_int64 = 0, n_recurrent = 0, n_own = 0;
    for (size_t i = 0; i < g->n_node; i++) {
        n_reshapes += strcmp(g->node[i]->op_type, "Reshape") == 0;
        n_recurrent += is_recurrent_op(g->node[i]);
    }
    for (size_t i = 0; i < g->n_initializer; i++)
        n_int64 += g->initializer[i]->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__INT64;
    ck_assert_uint_eq(n_int64, n_reshapes);
    for (int i = 0; i < n_tensors + n_buffers; i++) {
        bp_tensor_info t;
        ck_assert_int_eq(i < n_tensors ? bp_net_tensor(net, i, &t)
                                       : bp_net_buffer(net, i - n_tensors, &t), BP_OK);
        n_own += !in_recurrent_layer(g, t.layer);
    }
    ck_assert_uint_eq(g->n_initializer, n_own + 3 * n_recurrent + n_int64);
    for (int i = 0; i < n_tensors + n_buffers; i++) {
        bp_tensor_info t;
        ck_assert_int_eq(i < n_tensors ? bp_net_tensor(net, i, &t)
                                       : bp_net_buffer(net, i - n_tensors, &t), BP_OK);
        if (in_recurrent_layer(g, t.layer)) {
            ck_assert_msg(!initializer_or_null(g, t.name), "%s is in the graph besides W, R "
                          "and B", t.name);
            continue;
        }
        const float *arena = i < n_tensors ? params : state;
        const Onnx__TensorProto *init = initializer(g, t.name);
        ck_assert_int_eq(init->data_type, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT);
        ck_assert_uint_eq(init->n_dims, (size_t)t.ndim);
        for (int d = 0; d < t.ndim; d++)
            ck_assert_int_eq(init->dims[d], t.shape[d]);
        ck_assert_uint_eq(init->raw_data.len, t.count * sizeof(float));
        /* Row-major: the last index fastest, each through the table's stride. */
        ck_assert_int_le(t.ndim, 4);
        int64_t index[4] = {0};
        for (size_t k = 0; k < t.count; k++) {
            size_t at = t.offset;
            for (int d = 0; d < t.ndim; d++)
                at += (size_t)(index[d] * t.stride[d]);
            ck_assert_float_eq(element(init, k), arena[at]);
            for (int d = t.ndim - 1; d >= 0 && ++index[d] == t.shape[d]; d--)
                index[d] = 0;
        }
    }
}

/* Dense weights once more through the public matrix view, independently of the tables: W is
 * n_out x n_in column-major (element (i, j) at w[i + j ld]); the file's [n_out, n_in] is
 * row-major. */
static void check_dense_weight(bp_net *net, int l, const Onnx__GraphProto *g)
{
    int rows, cols, ld;
    const float *w = bp_net_weights(net, l, &rows, &cols, &ld);
    ck_assert_ptr_nonnull(w);
    char name[64];
    snprintf(name, sizeof name, "layers.%d.weight", l - 1);
    const Onnx__TensorProto *t = initializer(g, name);
    ck_assert_uint_eq(t->n_dims, 2);
    ck_assert_int_eq(t->dims[0], rows);
    ck_assert_int_eq(t->dims[1], cols);
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++)
            ck_assert_float_eq(element(t, (size_t)i * (size_t)cols + (size_t)j),
                               w[i + (size_t)j * (size_t)ld]);
    const float *b = bp_net_biases(net, l);
    snprintf(name, sizeof name, "layers.%d.bias", l - 1);
    t = initializer(g, name);
    for (int i = 0; i < rows; i++)
        ck_assert_float_eq(element(t, (size_t)i), b[i]);
}

static void check_ops(const Onnx__GraphProto *g, const char *const *ops, size_t n)
{
    ck_assert_uint_eq(g->n_node, n);
    for (size_t i = 0; i < n; i++) {
        ck_assert_msg(strcmp(g->node[i]->op_type, ops[i]) == 0, "node %zu is %s, not %s", i,
                      g->node[i]->op_type, ops[i]);
        ck_assert_str_eq(g->node[i]->domain ? g->node[i]->domain : "", "");
    }
}

/* ---- the graph evaluated by the operators' definitions ---------------------------------- */

/* A value of the graph: rows samples of cols = c h w numbers each, row-major, in double;
 * [rows, cols] when ndim is 2 (then c = cols, h = w = 1), [rows, c, h, w] when it is 4. */
typedef struct value {
    const char *name;
    int rows, cols;
    double *x;
    int ndim, c, h, w;
} value;

enum { MAX_VALUES = 64 };

typedef struct graph_eval {
    value v[MAX_VALUES];
    int n;
} graph_eval;

static const value *lookup(const graph_eval *e, const char *name)
{
    for (int i = 0; i < e->n; i++)
        if (strcmp(e->v[i].name, name) == 0)
            return &e->v[i];
    ck_abort_msg("the graph reads %s before anything writes it", name);
    return NULL;
}

static value *define_image(graph_eval *e, const char *name, int rows, int c, int h, int w)
{
    ck_assert_int_lt(e->n, MAX_VALUES);
    for (int i = 0; i < e->n; i++)
        ck_assert_msg(strcmp(e->v[i].name, name) != 0, "%s is written twice", name);
    value *v = &e->v[e->n++];
    int cols = c * h * w;
    *v = (value){name, rows, cols, calloc((size_t)rows * (size_t)cols, sizeof(double)), 4, c,
                 h, w};
    ck_assert_ptr_nonnull(v->x);
    return v;
}

static value *define(graph_eval *e, const char *name, int rows, int cols)
{
    value *v = define_image(e, name, rows, cols, 1, 1);
    v->ndim = 2;
    return v;
}

/* A value of x's shape (an elementwise op's output). */
static value *define_like(graph_eval *e, const char *name, const value *x)
{
    value *v = define_image(e, name, x->rows, x->c, x->h, x->w);
    v->ndim = x->ndim;
    return v;
}

/* An INTS attribute of exactly n values. */
static const int64_t *ints(const Onnx__NodeProto *n, const char *name, size_t count)
{
    const Onnx__AttributeProto *a = attribute(n, name);
    ck_assert_msg(a != NULL, "%s %s has no %s", n->op_type, n->name, name);
    ck_assert_int_eq(a->type, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
    ck_assert_uint_eq(a->n_ints, count);
    return a->ints;
}

/* Reshape(X, shape) with shape [-1, ...] of 2 to 4 numbers from an int64 initialiser: the
 * same numbers in the same order, now as [N, F] (a recurrent layer's last step), [N, T, F] (a
 * sequence) or [N, C, H, W] (images). A 3-D value [A, B, C] is kept as rows A of c = 1,
 * h = B, w = C. */
static void eval_reshape(graph_eval *e, const Onnx__GraphProto *g, const Onnx__NodeProto *n)
{
    ck_assert_uint_eq(n->n_input, 2);
    ck_assert_uint_eq(n->n_attribute, 0);
    const value *x = lookup(e, n->input[0]);
    const Onnx__TensorProto *t = initializer(g, n->input[1]);
    ck_assert_int_eq(t->data_type, ONNX__TENSOR_PROTO__DATA_TYPE__INT64);
    size_t count = elements(t);
    ck_assert(count >= 2 && count <= 4);
    ck_assert_uint_eq(t->raw_data.len, count * sizeof(int64_t));
    int64_t d[4] = {0, 1, 1, 1};
    memcpy(d, t->raw_data.data, count * sizeof *d);
    ck_assert_int_eq(d[0], -1);
    size_t total = (size_t)x->rows * (size_t)x->cols, rest = (size_t)(d[1] * d[2] * d[3]);
    ck_assert(rest > 0 && total % rest == 0);
    int rows = (int)(total / rest);
    value *y = count == 4 ? define_image(e, n->output[0], rows, (int)d[1], (int)d[2], (int)d[3])
             : count == 3 ? define_image(e, n->output[0], rows, 1, (int)d[1], (int)d[2])
                          : define(e, n->output[0], rows, (int)d[1]);
    y->ndim = (int)count;
    memcpy(y->x, x->x, sizeof(double) * total);
}

/* Transpose of a 3-D value by its perm attribute. */
static void eval_transpose(graph_eval *e, const Onnx__NodeProto *n)
{
    ck_assert_uint_eq(n->n_input, 1);
    const value *x = lookup(e, n->input[0]);
    ck_assert_int_eq(x->ndim, 3);
    const int64_t *perm = ints(n, "perm", 3);
    int in[3] = {x->rows, x->h, x->w}, out[3];
    for (int k = 0; k < 3; k++) {
        ck_assert(perm[k] >= 0 && perm[k] < 3);
        out[k] = in[perm[k]];
    }
    value *y = define_image(e, n->output[0], out[0], 1, out[1], out[2]);
    y->ndim = 3;
    int at[3];
    for (at[0] = 0; at[0] < in[0]; at[0]++)
        for (at[1] = 0; at[1] < in[1]; at[1]++)
            for (at[2] = 0; at[2] < in[2]; at[2]++) {
                int o0 = at[perm[0]], o1 = at[perm[1]], o2 = at[perm[2]];
                y->x[((size_t)o0 * (size_t)out[1] + (size_t)o1) * (size_t)out[2] + (size_t)o2] =
                    x->x[((size_t)at[0] * (size_t)in[1] + (size_t)at[1]) * (size_t)in[2] +
                         (size_t)at[2]];
            }
}

static double logistic(double z) { return 1.0 / (1.0 + exp(-z)); }

/* LSTM and GRU by the operators' definitions (forward, no sequence_lens, no initial state,
 * default activations), from X [T, N, F], W [1, G H, F], R [1, G H, H], B [1, 2 G H], to
 * Y_h [1, N, H], the only output the export asks for (Y is left out: named ""). The gate
 * blocks are ONNX's: LSTM i, o, f, c; GRU z, r, h, the latter with linear_before_reset = 1,
 * r applied to R_h h + Rb_h. */
static void eval_recurrent(graph_eval *e, const Onnx__GraphProto *g, const Onnx__NodeProto *n)
{
    int lstm = strcmp(n->op_type, "LSTM") == 0, gates = lstm ? 4 : 3;
    ck_assert_uint_eq(n->n_input, 4);
    ck_assert_uint_eq(n->n_output, 2);
    ck_assert_str_eq(n->output[0], "");
    const Onnx__AttributeProto *hs = attribute(n, "hidden_size");
    ck_assert_ptr_nonnull(hs);
    int hid = (int)hs->i;
    ck_assert_uint_eq(n->n_attribute, lstm ? 1 : 2);
    if (!lstm) {
        const Onnx__AttributeProto *lbr = attribute(n, "linear_before_reset");
        ck_assert_msg(lbr && lbr->i == 1, "GRU %s: linear_before_reset must be 1", n->name);
    }
    const value *x = lookup(e, n->input[0]);
    ck_assert_int_eq(x->ndim, 3);
    int steps = x->rows, batch = x->h, feat = x->w, rows = gates * hid;
    const Onnx__TensorProto *w = initializer(g, n->input[1]), *r = initializer(g, n->input[2]),
                            *b = initializer(g, n->input[3]);
    ck_assert(w->n_dims == 3 && w->dims[0] == 1 && w->dims[1] == rows && w->dims[2] == feat);
    ck_assert(r->n_dims == 3 && r->dims[0] == 1 && r->dims[1] == rows && r->dims[2] == hid);
    ck_assert(b->n_dims == 2 && b->dims[0] == 1 && b->dims[1] == 2 * rows);
    value *y = define_image(e, n->output[1], 1, 1, batch, hid);
    y->ndim = 3;
    double *h = calloc((size_t)hid, sizeof *h), *c = calloc((size_t)hid, sizeof *c);
    double *xw = malloc((size_t)rows * sizeof *xw), *hr = malloc((size_t)rows * sizeof *hr);
    ck_assert(h && c && xw && hr);
    for (int s = 0; s < batch; s++) {
        memset(h, 0, (size_t)hid * sizeof *h);
        memset(c, 0, (size_t)hid * sizeof *c);
        for (int t = 0; t < steps; t++) {
            const double *xt = x->x + ((size_t)t * (size_t)batch + (size_t)s) * (size_t)feat;
            for (int q = 0; q < rows; q++) {
                xw[q] = element(b, (size_t)q);
                hr[q] = element(b, (size_t)(rows + q));
                for (int j = 0; j < feat; j++)
                    xw[q] += element(w, (size_t)q * (size_t)feat + (size_t)j) * xt[j];
                for (int j = 0; j < hid; j++)
                    hr[q] += element(r, (size_t)q * (size_t)hid + (size_t)j) * h[j];
            }
            for (int u = 0; u < hid; u++) {
                if (lstm) {
                    double in = logistic(xw[u] + hr[u]), out = logistic(xw[hid + u] + hr[hid + u]);
                    double forget = logistic(xw[2 * hid + u] + hr[2 * hid + u]);
                    double cell = tanh(xw[3 * hid + u] + hr[3 * hid + u]);
                    c[u] = forget * c[u] + in * cell;
                    xw[u] = out * tanh(c[u]); /* h_t, kept apart until every unit has h_{t-1} */
                } else {
                    double update = logistic(xw[u] + hr[u]);
                    double reset = logistic(xw[hid + u] + hr[hid + u]);
                    double fresh = tanh(xw[2 * hid + u] + reset * hr[2 * hid + u]);
                    xw[u] = (1 - update) * fresh + update * h[u];
                }
            }
            memcpy(h, xw, (size_t)hid * sizeof *h);
        }
        memcpy(y->x + (size_t)s * (size_t)hid, h, (size_t)hid * sizeof *h);
    }
    free(h);
    free(c);
    free(xw);
    free(hr);
}

/* Flatten with axis 1: [N, C, H, W] to [N, C H W] in the same order. */
static void eval_flatten(graph_eval *e, const Onnx__NodeProto *n)
{
    const Onnx__AttributeProto *axis = attribute(n, "axis");
    ck_assert_msg(axis && axis->i == 1, "Flatten %s: axis must be 1", n->name);
    const value *x = lookup(e, n->input[0]);
    ck_assert_int_eq(x->ndim, 4);
    value *y = define(e, n->output[0], x->rows, x->cols);
    memcpy(y->x, x->x, sizeof(double) * (size_t)x->rows * (size_t)x->cols);
}

/* An image's element (sample s, channel c, row r, column q), 0 outside the plane (padding). */
static double pixel(const value *x, int s, int c, int r, int q)
{
    if (r < 0 || r >= x->h || q < 0 || q >= x->w)
        return 0.0;
    return x->x[(size_t)s * (size_t)x->cols + ((size_t)c * (size_t)x->h + (size_t)r) *
                                                  (size_t)x->w + (size_t)q];
}

/* Y[s, k, oy, ox] = B[k] + sum over c, ky, kx of W[k, c, ky, kx] X[s, c, oy S + ky - P,
 * ox S + kx - P]: the definition, with the same padding on every side, no dilation, one
 * group. */
static void eval_conv(graph_eval *e, const Onnx__GraphProto *g, const Onnx__NodeProto *n)
{
    ck_assert_uint_eq(n->n_input, 3);
    ck_assert_uint_eq(n->n_attribute, 3);
    const value *x = lookup(e, n->input[0]);
    ck_assert_int_eq(x->ndim, 4);
    const Onnx__TensorProto *w = initializer(g, n->input[1]), *b = initializer(g, n->input[2]);
    const int64_t *kernel = ints(n, "kernel_shape", 2), *strides = ints(n, "strides", 2),
                  *pads = ints(n, "pads", 4);
    ck_assert_uint_eq(w->n_dims, 4);
    ck_assert_int_eq(w->dims[1], x->c);
    ck_assert_int_eq(w->dims[2], kernel[0]);
    ck_assert_int_eq(w->dims[3], kernel[1]);
    ck_assert_int_eq(strides[0], strides[1]);
    for (int i = 1; i < 4; i++)
        ck_assert_int_eq(pads[i], pads[0]);
    int k_out = (int)w->dims[0], kh = (int)kernel[0], kw = (int)kernel[1];
    int stride = (int)strides[0], pad = (int)pads[0];
    ck_assert_uint_eq(elements(b), (size_t)k_out);
    int oh = (x->h + 2 * pad - kh) / stride + 1, ow = (x->w + 2 * pad - kw) / stride + 1;
    value *y = define_image(e, n->output[0], x->rows, k_out, oh, ow);
    for (int s = 0; s < x->rows; s++)
        for (int k = 0; k < k_out; k++)
            for (int oy = 0; oy < oh; oy++)
                for (int ox = 0; ox < ow; ox++) {
                    double z = element(b, (size_t)k);
                    for (int c = 0; c < x->c; c++)
                        for (int ky = 0; ky < kh; ky++)
                            for (int kx = 0; kx < kw; kx++)
                                z += element(w, (((size_t)k * (size_t)x->c + (size_t)c) *
                                                     (size_t)kh + (size_t)ky) * (size_t)kw +
                                                    (size_t)kx) *
                                     pixel(x, s, c, oy * stride + ky - pad,
                                           ox * stride + kx - pad);
                    y->x[(size_t)s * (size_t)y->cols +
                         ((size_t)k * (size_t)oh + (size_t)oy) * (size_t)ow + (size_t)ox] = z;
                }
}

/* MaxPool and AveragePool with no padding and ceil_mode 0, as the export writes them: the
 * maximum or the mean of each window. */
static void eval_pool(graph_eval *e, const Onnx__NodeProto *n, int is_max)
{
    ck_assert_uint_eq(n->n_input, 1);
    ck_assert_ptr_null(attribute(n, "pads"));
    ck_assert_ptr_null(attribute(n, "ceil_mode"));
    ck_assert_ptr_null(attribute(n, "auto_pad"));
    ck_assert_ptr_null(attribute(n, "dilations"));
    const value *x = lookup(e, n->input[0]);
    ck_assert_int_eq(x->ndim, 4);
    const int64_t *kernel = ints(n, "kernel_shape", 2), *strides = ints(n, "strides", 2);
    int kh = (int)kernel[0], kw = (int)kernel[1], sy = (int)strides[0], sx = (int)strides[1];
    int oh = (x->h - kh) / sy + 1, ow = (x->w - kw) / sx + 1;
    value *y = define_image(e, n->output[0], x->rows, x->c, oh, ow);
    for (int s = 0; s < x->rows; s++)
        for (int c = 0; c < x->c; c++)
            for (int oy = 0; oy < oh; oy++)
                for (int ox = 0; ox < ow; ox++) {
                    double best = -INFINITY, sum = 0;
                    for (int ky = 0; ky < kh; ky++)
                        for (int kx = 0; kx < kw; kx++) {
                            double v = pixel(x, s, c, oy * sy + ky, ox * sx + kx);
                            best = v > best ? v : best;
                            sum += v;
                        }
                    y->x[(size_t)s * (size_t)y->cols +
                         ((size_t)c * (size_t)oh + (size_t)oy) * (size_t)ow + (size_t)ox] =
                        is_max ? best : sum / (kh * kw);
                }
}

/* Y = X W^T + b (Gemm with transB = 1, alpha = beta = 1, as the export writes it). */
static void eval_gemm(graph_eval *e, const Onnx__GraphProto *g, const Onnx__NodeProto *n)
{
    const Onnx__AttributeProto *tb = attribute(n, "transB");
    ck_assert_msg(tb && tb->i == 1, "Gemm %s: transB must be 1", n->name);
    ck_assert_ptr_null(attribute(n, "transA"));
    ck_assert_ptr_null(attribute(n, "alpha"));
    ck_assert_ptr_null(attribute(n, "beta"));
    ck_assert_uint_eq(n->n_input, 3);
    const value *x = lookup(e, n->input[0]);
    ck_assert_int_eq(x->ndim, 2);
    const Onnx__TensorProto *w = initializer(g, n->input[1]), *b = initializer(g, n->input[2]);
    ck_assert_uint_eq(w->n_dims, 2);
    ck_assert_int_eq(w->dims[1], x->cols);
    int out = (int)w->dims[0];
    ck_assert_uint_eq(elements(b), (size_t)out);
    value *y = define(e, n->output[0], x->rows, out);
    for (int s = 0; s < x->rows; s++)
        for (int o = 0; o < out; o++) {
            double z = element(b, (size_t)o);
            for (int k = 0; k < x->cols; k++)
                z += x->x[(size_t)s * (size_t)x->cols + (size_t)k] *
                     element(w, (size_t)o * (size_t)x->cols + (size_t)k);
            y->x[(size_t)s * (size_t)out + (size_t)o] = z;
        }
}

/* Y = scale (X - mean) / sqrt(var + epsilon) + B, per index of axis 1: a feature of
 * [N, features], a channel (its whole plane) of [N, C, H, W]. */
static void eval_batchnorm(graph_eval *e, const Onnx__GraphProto *g, const Onnx__NodeProto *n)
{
    ck_assert_uint_eq(n->n_input, 5);
    ck_assert_uint_eq(n->n_output, 1); /* inference: no running statistics out */
    const Onnx__AttributeProto *eps = attribute(n, "epsilon");
    ck_assert_ptr_nonnull(eps);
    const value *x = lookup(e, n->input[0]);
    const Onnx__TensorProto *p[4];
    for (int i = 0; i < 4; i++) {
        p[i] = initializer(g, n->input[i + 1]);
        ck_assert_uint_eq(elements(p[i]), (size_t)x->c);
    }
    value *y = define_like(e, n->output[0], x);
    size_t plane = (size_t)x->h * (size_t)x->w;
    for (int s = 0; s < x->rows; s++)
        for (size_t k = 0; k < (size_t)x->cols; k++) {
            size_t at = (size_t)s * (size_t)x->cols + k, c = k / plane;
            y->x[at] = element(p[0], c) * (x->x[at] - element(p[2], c)) /
                           sqrt(element(p[3], c) + (double)eps->f) +
                       element(p[1], c);
        }
}

static void eval_elementwise(graph_eval *e, const Onnx__NodeProto *n)
{
    ck_assert_uint_eq(n->n_input, 1);
    const value *x = lookup(e, n->input[0]);
    value *y = define_like(e, n->output[0], x);
    const char *op = n->op_type;
    for (size_t k = 0; k < (size_t)x->rows * (size_t)x->cols; k++) {
        double z = x->x[k];
        y->x[k] = strcmp(op, "Sigmoid") == 0 ? 1.0 / (1.0 + exp(-z))
                : strcmp(op, "Tanh") == 0    ? tanh(z)
                : strcmp(op, "Relu") == 0    ? (z > 0 ? z : 0)
                                             : z; /* Identity */
    }
}

/* Softmax along axis 1 (opset 13: that axis alone). */
static void eval_softmax(graph_eval *e, const Onnx__NodeProto *n)
{
    const Onnx__AttributeProto *axis = attribute(n, "axis");
    ck_assert_msg(axis && axis->i == 1, "Softmax %s: axis must be 1", n->name);
    const value *x = lookup(e, n->input[0]);
    ck_assert_int_eq(x->ndim, 2);
    value *y = define(e, n->output[0], x->rows, x->cols);
    for (int s = 0; s < x->rows; s++) {
        const double *z = x->x + (size_t)s * (size_t)x->cols;
        double *a = y->x + (size_t)s * (size_t)x->cols, top = z[0], sum = 0;
        for (int c = 1; c < x->cols; c++)
            top = z[c] > top ? z[c] : top;
        for (int c = 0; c < x->cols; c++)
            sum += a[c] = exp(z[c] - top);
        for (int c = 0; c < x->cols; c++)
            a[c] /= sum;
    }
}

/* Run the file's graph on `batch` samples (x column-major, as the net takes them) and compare
 * "output" with bp_net_forward's. The graph is float; the net rounds in float, this in double,
 * so the bound is float rounding through a few layers. */
static void check_arithmetic(bp_net *net, const Onnx__GraphProto *g, int batch)
{
    int n_in = bp_net_size(net, 0), n_out = bp_net_size(net, bp_net_layers(net));
    float *x = malloc(sizeof(float) * (size_t)n_in * (size_t)batch);
    float *want = malloc(sizeof(float) * (size_t)n_out * (size_t)batch);
    ck_assert(x && want);
    uint64_t seed = 99;
    bp_test_fill(x, (size_t)n_in * (size_t)batch, -1.0f, 1.0f, &seed);
    ck_assert_int_eq(bp_net_forward(net, x, n_in, batch, want, n_out), BP_OK);

    graph_eval e = {.n = 0};
    value *in = define(&e, "input", batch, n_in);
    for (int s = 0; s < batch; s++)
        for (int k = 0; k < n_in; k++)
            in->x[(size_t)s * (size_t)n_in + (size_t)k] = x[k + (size_t)s * (size_t)n_in];
    for (size_t i = 0; i < g->n_node; i++) {
        const Onnx__NodeProto *n = g->node[i];
        if (is_recurrent_op(n)) {
            eval_recurrent(&e, g, n);
            continue;
        }
        ck_assert_uint_eq(n->n_output, 1);
        if (strcmp(n->op_type, "Transpose") == 0)
            eval_transpose(&e, n);
        else if (strcmp(n->op_type, "Gemm") == 0)
            eval_gemm(&e, g, n);
        else if (strcmp(n->op_type, "BatchNormalization") == 0)
            eval_batchnorm(&e, g, n);
        else if (strcmp(n->op_type, "Softmax") == 0)
            eval_softmax(&e, n);
        else if (strcmp(n->op_type, "Reshape") == 0)
            eval_reshape(&e, g, n);
        else if (strcmp(n->op_type, "Flatten") == 0)
            eval_flatten(&e, n);
        else if (strcmp(n->op_type, "Conv") == 0)
            eval_conv(&e, g, n);
        else if (strcmp(n->op_type, "MaxPool") == 0 || strcmp(n->op_type, "AveragePool") == 0)
            eval_pool(&e, n, strcmp(n->op_type, "MaxPool") == 0);
        else if (strcmp(n->op_type, "Sigmoid") == 0 || strcmp(n->op_type, "Tanh") == 0 ||
                 strcmp(n->op_type, "Relu") == 0 || strcmp(n->op_type, "Identity") == 0)
            eval_elementwise(&e, n);
        else
            ck_abort_msg("operator %s is not one the export writes", n->op_type);
    }
    const value *y = lookup(&e, "output");
    ck_assert_int_eq(y->ndim, 2);
    ck_assert_int_eq(y->cols, n_out);
    double worst = 0;
    for (int s = 0; s < batch; s++)
        for (int o = 0; o < n_out; o++) {
            double d = fabs(y->x[(size_t)s * (size_t)n_out + (size_t)o] -
                            want[o + (size_t)s * (size_t)n_out]);
            worst = d > worst ? d : worst;
        }
    ck_assert_msg(worst < 1e-5, "graph and net differ by %g", worst);
    for (int i = 0; i < e.n; i++)
        free(e.v[i].x);
    free(x);
    free(want);
}

/* ---- the exports ------------------------------------------------------------------------ */

static Onnx__ModelProto *export_and_read(bp_net *net, const char *name,
                                         const bp_model_meta *meta)
{
    const char *path = tmp_path(name);
    bp_alloc_stats before, after;
    bp_alloc_stats_get(&before);
    ck_assert_msg(bp_net_export_onnx(net, path, meta) == BP_OK, "%s", bp_last_error());
    bp_alloc_stats_get(&after); /* everything the export allocated, it freed */
    ck_assert_uint_eq(after.bytes_live, before.bytes_live);
    ck_assert_uint_eq(after.allocations - before.allocations, after.frees - before.frees);
    Onnx__ModelProto *m = read_model(path);
    ck_assert(m->has_ir_version);
    ck_assert_int_eq(m->ir_version, 8);
    ck_assert_uint_eq(m->n_opset_import, 1);
    ck_assert_str_eq(m->opset_import[0]->domain ? m->opset_import[0]->domain : "", "");
    ck_assert_int_eq(m->opset_import[0]->version, 13);
    ck_assert_str_eq(m->producer_name, "backprop");
    ck_assert_str_eq(m->producer_version, bp_version());
    const Onnx__GraphProto *g = m->graph;
    ck_assert_ptr_nonnull(g);
    ck_assert_uint_eq(g->n_input, 1);
    ck_assert_uint_eq(g->n_output, 1);
    check_batch_value(g->input[0], "input", bp_net_size(net, 0));
    check_batch_value(g->output[0], "output", bp_net_size(net, bp_net_layers(net)));
    ck_assert_str_eq(g->node[g->n_node - 1]->output[0], "output");
    ck_assert_str_eq(g->node[0]->input[0], "input");
    ck_assert_str_eq(meta_value(m, "architecture"), bp_net_spec(net));
    check_initializers(net, g);
    return m;
}

START_TEST(test_dense_every_activation)
{
    make_tmp_dir();
    bp_net *net = make_net(7, "dense:5:sigmoid,dense:4:tanh,dense:6:relu,dense:3:linear,"
                              "dense:2:softmax");
    Onnx__ModelProto *m = export_and_read(net, "dense.onnx", NULL);
    static const char *const ops[] = {"Gemm", "Sigmoid", "Gemm", "Tanh", "Gemm", "Relu",
                                      "Gemm", "Gemm", "Softmax"};
    check_ops(m->graph, ops, sizeof ops / sizeof *ops);
    for (int l = 1; l <= bp_net_layers(net); l++)
        check_dense_weight(net, l, m->graph);
    check_arithmetic(net, m->graph, 9);
    /* No metadata given: the net's own facts, no input shape or scale. */
    ck_assert_str_eq(meta_value(m, "input_width"), "7");
    ck_assert_str_eq(meta_value(m, "cost"), "quadratic");
    ck_assert_ptr_null(meta_value(m, "input_scale"));
    ck_assert_ptr_null(meta_value(m, "input_rows"));
    ck_assert_ptr_null(meta_value(m, "class_names"));
    onnx__model_proto__free_unpacked(m, NULL);
    bp_net_free(net);
    remove_tmp_dir();
}
END_TEST

START_TEST(test_dropout_is_identity)
{
    make_tmp_dir();
    bp_net *net = make_net(6, "dense:8:relu,dropout:0.5,dense:3:sigmoid");
    Onnx__ModelProto *m = export_and_read(net, "dropout.onnx", NULL);
    static const char *const ops[] = {"Gemm", "Relu", "Identity", "Gemm", "Sigmoid"};
    check_ops(m->graph, ops, sizeof ops / sizeof *ops);
    ck_assert_str_eq(m->graph->node[2]->name, "layers.1.dropout");
    check_dense_weight(net, 1, m->graph);
    check_dense_weight(net, 3, m->graph);
    /* The second Gemm reads what the Identity wrote: the chain is connected. */
    ck_assert_str_eq(m->graph->node[3]->input[0], m->graph->node[2]->output[0]);
    check_arithmetic(net, m->graph, 5);
    onnx__model_proto__free_unpacked(m, NULL);
    bp_net_free(net);
    remove_tmp_dir();
}
END_TEST

/* Batch norm with statistics that are not the initial ones (mean 0, var 1, gamma 1, beta 0),
 * so the order of BatchNormalization's four inputs matters. */
START_TEST(test_batchnorm_inference_form)
{
    make_tmp_dir();
    bp_net *net = make_net(6, "dense:5:linear,batchnorm:tanh,dense:3:softmax");
    size_t n_params, n_state;
    float *params = bp_net_params(net, &n_params), *state = bp_net_state(net, &n_state);
    ck_assert_ptr_nonnull(state);
    for (int i = 0; i < bp_net_tensor_count(net); i++) {
        bp_tensor_info t;
        ck_assert_int_eq(bp_net_tensor(net, i, &t), BP_OK);
        if (t.role == BP_ROLE_SCALE || t.role == BP_ROLE_SHIFT)
            for (size_t k = 0; k < t.count; k++)
                params[t.offset + k] = (t.role == BP_ROLE_SCALE ? 0.5f : -0.25f) + 0.1f * (float)k;
    }
    for (int i = 0; i < bp_net_buffer_count(net); i++) {
        bp_tensor_info t;
        ck_assert_int_eq(bp_net_buffer(net, i, &t), BP_OK);
        for (size_t k = 0; k < t.count; k++)
            state[t.offset + k] = t.role == BP_ROLE_RUNNING_MEAN ? 0.3f - 0.2f * (float)k
                                                                 : 2.0f + 0.5f * (float)k;
    }
    Onnx__ModelProto *m = export_and_read(net, "batchnorm.onnx", NULL);
    static const char *const ops[] = {"Gemm", "BatchNormalization", "Tanh", "Gemm", "Softmax"};
    check_ops(m->graph, ops, sizeof ops / sizeof *ops);
    const Onnx__NodeProto *bn = m->graph->node[1];
    ck_assert_uint_eq(bn->n_input, 5);
    static const char *const inputs[] = {"layers.1.weight", "layers.1.bias",
                                         "layers.1.running_mean", "layers.1.running_var"};
    for (int i = 0; i < 4; i++)
        ck_assert_str_eq(bn->input[i + 1], inputs[i]);
    const Onnx__AttributeProto *eps = attribute(bn, "epsilon");
    ck_assert_ptr_nonnull(eps);
    ck_assert_float_eq(eps->f, 1e-5f);
    check_arithmetic(net, m->graph, 7);
    onnx__model_proto__free_unpacked(m, NULL);
    bp_net_free(net);
    remove_tmp_dir();
}
END_TEST

START_TEST(test_metadata)
{
    make_tmp_dir();
    bp_net *net = make_net(6, "dense:4:sigmoid,dense:3:softmax");
    bp_model_meta meta = {.input_rows = 2, .input_cols = 3, .input_scale = 1.0f / 255.0f,
                          .class_names = "cat,dog,emu", .training = "{\"epochs\": 2}"};
    Onnx__ModelProto *m = export_and_read(net, "meta.onnx", &meta);
    ck_assert_str_eq(meta_value(m, "input_rows"), "2");
    ck_assert_str_eq(meta_value(m, "input_cols"), "3");
    ck_assert_float_eq(strtof(meta_value(m, "input_scale"), NULL), 1.0f / 255.0f);
    ck_assert_str_eq(meta_value(m, "class_names"), "cat,dog,emu");
    ck_assert_str_eq(meta_value(m, "training"), "{\"epochs\": 2}");
    ck_assert_str_eq(meta_value(m, "library_version"), bp_version());
    /* The input's documentation tells a deployer how to scale. */
    ck_assert_ptr_nonnull(strstr(m->graph->input[0]->doc_string, "input_scale"));
    onnx__model_proto__free_unpacked(m, NULL);
    bp_net_free(net);
    remove_tmp_dir();
}
END_TEST

/* An existing file is replaced whole, keeping its permission bits. */
START_TEST(test_replaces_existing_file)
{
    make_tmp_dir();
    const char *path = tmp_path("old.onnx");
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("not a model, and longer than nothing", f);
    fclose(f);
    ck_assert_int_eq(chmod(path, 0640), 0);
    bp_net *net = make_net(3, "dense:2:sigmoid");
    ck_assert_msg(bp_net_export_onnx(net, path, NULL) == BP_OK, "%s", bp_last_error());
    Onnx__ModelProto *m = read_model(path);
    ck_assert_uint_eq(m->graph->n_node, 2);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0640);
    ck_assert_int_eq(tmp_entries(), 1);
    onnx__model_proto__free_unpacked(m, NULL);
    bp_net_free(net);
    remove_tmp_dir();
}
END_TEST

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

static void check_text(const char *path, const char *text)
{
    char buf[256] = "";
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    ck_assert_str_eq(buf, text);
}

START_TEST(test_refuses_non_finite)
{
    make_tmp_dir();
    const char *path = tmp_path("keep.onnx");
    write_text(path, "the old file");
    bp_net *net = make_net(4, "dense:3:relu,dense:2:sigmoid");
    int rows, cols, ld;
    bp_net_weights(net, 2, &rows, &cols, &ld)[1 + ld] = NAN;
    bp_alloc_stats before, after;
    bp_alloc_stats_get(&before);
    ck_assert_int_eq(bp_net_export_onnx(net, path, NULL), BP_EDIVERGED);
    bp_alloc_stats_get(&after); /* a refusal part-way frees what was built */
    ck_assert_uint_eq(after.bytes_live, before.bytes_live);
    ck_assert_error_has("layers.1.weight");
    ck_assert_error_has("1 NaN or infinite value");
    check_text(path, "the old file");
    ck_assert_int_eq(tmp_entries(), 1);
    bp_net_free(net);
    remove_tmp_dir();
}
END_TEST

START_TEST(test_refuses_bad_metadata)
{
    make_tmp_dir();
    bp_net *net = make_net(6, "dense:3:softmax");
    bp_model_meta names = {.class_names = "a,b"};
    ck_assert_int_eq(bp_net_export_onnx(net, tmp_path("m.onnx"), &names), BP_EINVAL);
    ck_assert_error_has("class_names");
    bp_model_meta shape = {.input_rows = 2, .input_cols = 2};
    ck_assert_int_eq(bp_net_export_onnx(net, tmp_path("m.onnx"), &shape), BP_EINVAL);
    ck_assert_error_has("input width 6");
    bp_model_meta scale = {.input_scale = -1.0f};
    ck_assert_int_eq(bp_net_export_onnx(net, tmp_path("m.onnx"), &scale), BP_EINVAL);
    ck_assert_int_eq(tmp_entries(), 0);
    ck_assert_int_eq(bp_net_export_onnx(NULL, tmp_path("m.onnx"), NULL), BP_EINVAL);
    ck_assert_int_eq(bp_net_export_onnx(net, NULL, NULL), BP_EINVAL);
    bp_net_free(net);
    remove_tmp_dir();
}
END_TEST

START_TEST(test_unwritable_paths)
{
    make_tmp_dir();
    bp_net *net = make_net(4, "dense:2:sigmoid");
    ck_assert_int_eq(bp_net_export_onnx(net, tmp_path("missing/m.onnx"), NULL), BP_EIO);
    ck_assert_error_has("missing");
    ck_assert_int_eq(mkdir(tmp_path("dir.onnx"), 0755), 0);
    ck_assert_int_eq(bp_net_export_onnx(net, tmp_path("dir.onnx"), NULL), BP_EIO);
    ck_assert_error_has("directory");
    ck_assert_int_eq(bp_net_export_onnx(net, "/dev/null", NULL), BP_EIO);
    ck_assert_int_eq(tmp_entries(), 1); /* dir.onnx alone: no temporary file left */
    bp_net_free(net);
    remove_tmp_dir();
}
END_TEST

static bp_net *make_image_net(int channels, int rows, int cols, const char *layers)
{
    int width = channels * rows * cols;
    bp_net_config cfg;
    bp_net_config_init(&cfg);
    cfg.sizes = &width;
    cfg.n_sizes = 1;
    cfg.input_channels = channels;
    cfg.input_rows = rows;
    cfg.input_cols = cols;
    cfg.layers = layers;
    cfg.cost = BP_COST_QUADRATIC;
    cfg.threads = 1;
    cfg.seed = 11;
    bp_net *net;
    ck_assert_msg(bp_net_create(&net, &cfg) == BP_OK, "%s: %s", layers, bp_last_error());
    return net;
}

/* Biases and batch norm's four tensors away from their initial values (zeros, ones), so a
 * bias left out or statistics taken in the wrong order change the outputs. */
static void perturb(bp_net *net)
{
    size_t n_params, n_state;
    float *params = bp_net_params(net, &n_params), *state = bp_net_state(net, &n_state);
    for (int i = 0; i < bp_net_tensor_count(net); i++) {
        bp_tensor_info t;
        ck_assert_int_eq(bp_net_tensor(net, i, &t), BP_OK);
        if (t.role != BP_ROLE_WEIGHT)
            for (size_t k = 0; k < t.count; k++)
                params[t.offset + k] = (t.role == BP_ROLE_SCALE ? 0.7f : -0.2f) + 0.15f * (float)k;
    }
    for (int i = 0; i < bp_net_buffer_count(net); i++) {
        bp_tensor_info t;
        ck_assert_int_eq(bp_net_buffer(net, i, &t), BP_OK);
        for (size_t k = 0; k < t.count; k++)
            state[t.offset + k] = t.role == BP_ROLE_RUNNING_MEAN ? 0.2f - 0.1f * (float)k
                                                                 : 1.5f + 0.25f * (float)k;
    }
}

static void check_ints(const Onnx__NodeProto *n, const char *name, const int64_t *want,
                       size_t count)
{
    const int64_t *got = ints(n, name, count);
    for (size_t i = 0; i < count; i++)
        ck_assert_msg(got[i] == want[i], "%s %s[%zu] is %lld, not %lld", n->name, name, i,
                      (long long)got[i], (long long)want[i]);
}

static void check_reshape_target(const Onnx__GraphProto *g, const Onnx__NodeProto *n, int c,
                                 int h, int w)
{
    ck_assert_str_eq(n->op_type, "Reshape");
    const Onnx__TensorProto *t = initializer(g, n->input[1]);
    ck_assert_int_eq(t->data_type, ONNX__TENSOR_PROTO__DATA_TYPE__INT64);
    int64_t d[4], want[4] = {-1, c, h, w};
    ck_assert_uint_eq(t->raw_data.len, sizeof d);
    memcpy(d, t->raw_data.data, sizeof d);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(d[i], want[i]);
}

/* Conv with stride and padding over two channels, max pooling whose last row and column of
 * windows do not fit (floored away), dropout between images, then dense layers: the input
 * reshaped to the net's image shape, flattened before the first dense layer. */
START_TEST(test_conv_maxpool)
{
    make_tmp_dir();
    bp_net *net = make_image_net(2, 9, 9, "conv:3x3x3:tanh:s2:p1,maxpool:2,dropout:0.5,"
                                          "dense:4:sigmoid,dense:3:softmax");
    perturb(net);
    Onnx__ModelProto *m = export_and_read(net, "conv.onnx", NULL);
    const Onnx__GraphProto *g = m->graph;
    static const char *const ops[] = {"Reshape", "Conv", "Tanh", "MaxPool", "Identity",
                                      "Flatten", "Gemm", "Sigmoid", "Gemm", "Softmax"};
    check_ops(g, ops, sizeof ops / sizeof *ops);
    check_reshape_target(g, g->node[0], 2, 9, 9);
    const Onnx__NodeProto *conv = g->node[1], *pool = g->node[3];
    ck_assert_str_eq(conv->input[1], "layers.0.weight");
    ck_assert_str_eq(conv->input[2], "layers.0.bias");
    const Onnx__TensorProto *w = initializer(g, "layers.0.weight");
    static const int64_t filters[] = {3, 2, 3, 3};
    ck_assert_uint_eq(w->n_dims, 4);
    for (int d = 0; d < 4; d++)
        ck_assert_int_eq(w->dims[d], filters[d]);
    check_ints(conv, "kernel_shape", (const int64_t[]){3, 3}, 2);
    check_ints(conv, "strides", (const int64_t[]){2, 2}, 2);
    check_ints(conv, "pads", (const int64_t[]){1, 1, 1, 1}, 4);
    check_ints(pool, "kernel_shape", (const int64_t[]){2, 2}, 2);
    check_ints(pool, "strides", (const int64_t[]){2, 2}, 2);
    ck_assert_str_eq(g->node[5]->name, "layers.3.flatten");
    /* Dense layer 4 reads 3 channels of 2 x 2 (5 x 5 pooled by 2, floored). */
    ck_assert_int_eq(initializer(g, "layers.3.weight")->dims[1], 12);
    check_dense_weight(net, 4, g);
    check_dense_weight(net, 5, g);
    ck_assert_str_eq(meta_value(m, "input_shape"), "2x9x9");
    check_arithmetic(net, g, 6);
    onnx__model_proto__free_unpacked(m, NULL);
    bp_net_free(net);
    remove_tmp_dir();
}
END_TEST

/* Per-channel batch norm after a linear conv, overlapping average pooling (3 x 3 by 2, the
 * last column of the plane dropped), a second conv whose 1 x 1 planes the dense layer takes. */
START_TEST(test_channel_batchnorm_avgpool)
{
    make_tmp_dir();
    bp_net *net = make_image_net(1, 8, 8, "conv:4x3x3:linear,batchnorm:relu,avgpool:3:s2,"
                                          "conv:2x2x2:sigmoid,dense:3:linear");
    perturb(net);
    Onnx__ModelProto *m = export_and_read(net, "bn.onnx", NULL);
    const Onnx__GraphProto *g = m->graph;
    static const char *const ops[] = {"Reshape", "Conv", "BatchNormalization", "Relu",
                                      "AveragePool", "Conv", "Sigmoid", "Flatten", "Gemm"};
    check_ops(g, ops, sizeof ops / sizeof *ops);
    check_reshape_target(g, g->node[0], 1, 8, 8);
    const Onnx__NodeProto *bn = g->node[2];
    static const char *const inputs[] = {"layers.1.weight", "layers.1.bias",
                                         "layers.1.running_mean", "layers.1.running_var"};
    for (int i = 0; i < 4; i++) {
        ck_assert_str_eq(bn->input[i + 1], inputs[i]);
        ck_assert_int_eq(elements(initializer(g, inputs[i])), 4); /* one per channel */
    }
    check_ints(g->node[4], "kernel_shape", (const int64_t[]){3, 3}, 2);
    check_ints(g->node[4], "strides", (const int64_t[]){2, 2}, 2);
    check_ints(g->node[5], "pads", (const int64_t[]){0, 0, 0, 0}, 4);
    check_ints(g->node[5], "strides", (const int64_t[]){1, 1}, 2);
    check_dense_weight(net, 5, g);
    check_arithmetic(net, g, 5);
    onnx__model_proto__free_unpacked(m, NULL);
    bp_net_free(net);
    remove_tmp_dir();
}
END_TEST

/* Where the reshapes go: batch norm per channel straight on the input; a dense net on an image
 * input (no reshape at all); a net ending on a convolution (its planes flattened into the
 * output). */
START_TEST(test_image_reshapes)
{
    make_tmp_dir();
    bp_net *net = make_image_net(2, 4, 4, "batchnorm:tanh,maxpool:2:s1,dense:3:softmax");
    perturb(net);
    Onnx__ModelProto *m = export_and_read(net, "first.onnx", NULL);
    static const char *const first[] = {"Reshape", "BatchNormalization", "Tanh", "MaxPool",
                                        "Flatten", "Gemm", "Softmax"};
    check_ops(m->graph, first, sizeof first / sizeof *first);
    check_reshape_target(m->graph, m->graph->node[0], 2, 4, 4);
    check_arithmetic(net, m->graph, 4);
    onnx__model_proto__free_unpacked(m, NULL);
    bp_net_free(net);

    net = make_image_net(1, 4, 4, "dense:5:relu,dense:3:softmax");
    m = export_and_read(net, "dense.onnx", NULL);
    static const char *const dense[] = {"Gemm", "Relu", "Gemm", "Softmax"};
    check_ops(m->graph, dense, sizeof dense / sizeof *dense);
    ck_assert_str_eq(meta_value(m, "input_shape"), "1x4x4");
    check_arithmetic(net, m->graph, 3);
    onnx__model_proto__free_unpacked(m, NULL);
    bp_net_free(net);

    net = make_image_net(1, 5, 5, "conv:2x3x3:sigmoid");
    perturb(net);
    m = export_and_read(net, "last.onnx", NULL);
    static const char *const last[] = {"Reshape", "Conv", "Sigmoid", "Flatten"};
    check_ops(m->graph, last, sizeof last / sizeof *last);
    check_arithmetic(net, m->graph, 3);
    onnx__model_proto__free_unpacked(m, NULL);
    bp_net_free(net);
    remove_tmp_dir();
}
END_TEST

/* A recurrent layer's W, R and B hold its own tensors with the gate blocks moved into the
 * operator's order: ONNX gate k is the layer's gate order[k] (PyTorch's order: LSTM i, f, g, o;
 * GRU r, z, n). B is the input-side bias, then the recurrent one (zero for the LSTM, whose
 * one bias is PyTorch's bias_ih). Element by element through the tables' strides, apart from
 * the export's gather. */
static void check_recurrent_initializers(bp_net *net, const Onnx__GraphProto *g, int layer,
                                         int gates, const int *order)
{
    size_t n_params;
    const float *params = bp_net_params(net, &n_params);
    char name[64];
    snprintf(name, sizeof name, "layers.%d.", layer - 1);
    size_t prefix = strlen(name);
    const char *own[] = {"weight_ih", "weight_hh", gates == 4 ? "bias" : "bias_ih", "bias_hh"};
    const char *onnx[] = {"W", "R", "B", "B"};
    int found = 0;
    for (int i = 0; i < bp_net_tensor_count(net); i++) {
        bp_tensor_info t;
        ck_assert_int_eq(bp_net_tensor(net, i, &t), BP_OK);
        if (t.layer != layer)
            continue;
        int which = -1;
        for (int k = 0; k < 4; k++)
            if (strcmp(t.name + prefix, own[k]) == 0)
                which = k;
        ck_assert_msg(which >= 0, "%s is no tensor of an LSTM or GRU", t.name);
        found++;
        snprintf(name + prefix, sizeof name - prefix, "%s", onnx[which]);
        const Onnx__TensorProto *init = initializer(g, name);
        int64_t rows = t.shape[0], hid = rows / gates, cols = t.ndim == 2 ? t.shape[1] : 1;
        size_t base = which == 3 ? (size_t)rows : 0; /* bias_hh: B's second half */
        for (int64_t q = 0; q < rows; q++)
            for (int64_t j = 0; j < cols; j++) {
                int64_t gate = q / hid, unit = q % hid, from = order[gate] * hid + unit;
                size_t at = t.offset + (size_t)(from * t.stride[0]) +
                            (t.ndim == 2 ? (size_t)(j * t.stride[1]) : 0);
                ck_assert_float_eq(element(init, base + (size_t)(q * cols + j)), params[at]);
            }
        if (gates == 4 && which == 2)
            for (int64_t q = 0; q < rows; q++) /* no recurrent bias */
                ck_assert_float_eq(element(init, (size_t)(rows + q)), 0.0f);
    }
    ck_assert_int_eq(found, gates == 4 ? 3 : 4);
}

/* LSTM and GRU reading rows and cols, alone and after a one-channel convolution: the
 * sequence reshaped and transposed time-major, the operator's gate order, only the last
 * hidden state out, and the graph's arithmetic by the operators' definitions equal to the
 * net's forward pass. */
START_TEST(test_recurrent_layers)
{
    static const int lstm_order[] = {0, 3, 1, 2}, gru_order[] = {1, 0, 2};
    static const struct {
        int rows, cols;
        const char *layers, *op;
        int layer, steps, features;
        int64_t perm[3];
    } cases[] = {
        {5, 3, "lstm:4,dense:3:softmax", "LSTM", 1, 5, 3, {1, 0, 2}},
        {5, 3, "gru:4:cols,dense:3:softmax", "GRU", 1, 3, 5, {2, 0, 1}},
        {6, 5, "conv:1x3x3:tanh,lstm:3:cols,dense:2:sigmoid", "LSTM", 2, 3, 4, {2, 0, 1}},
        {4, 6, "gru:5,dense:2:linear", "GRU", 1, 4, 6, {1, 0, 2}},
    };
    make_tmp_dir();
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        bp_net *net = make_image_net(1, cases[c].rows, cases[c].cols, cases[c].layers);
        perturb(net);
        Onnx__ModelProto *m = export_and_read(net, "rnn.onnx", NULL);
        const Onnx__GraphProto *g = m->graph;
        size_t at = cases[c].layer == 2 ? 3 : 0; /* the conv's Reshape, Conv and Tanh first */
        ck_assert_str_eq(g->node[at]->op_type, "Reshape");
        ck_assert_str_eq(g->node[at + 1]->op_type, "Transpose");
        ck_assert_str_eq(g->node[at + 2]->op_type, cases[c].op);
        ck_assert_str_eq(g->node[at + 3]->op_type, "Reshape");
        ck_assert_str_eq(g->node[at + 4]->op_type, "Gemm");
        check_ints(g->node[at + 1], "perm", cases[c].perm, 3);
        const Onnx__TensorProto *w = initializer(g, g->node[at + 2]->input[1]);
        ck_assert_int_eq(w->dims[2], cases[c].features);
        int lstm = strcmp(cases[c].op, "LSTM") == 0;
        check_recurrent_initializers(net, g, cases[c].layer, lstm ? 4 : 3,
                                     lstm ? lstm_order : gru_order);
        check_arithmetic(net, g, 4);
        (void)cases[c].steps; /* the Transpose's output, checked by eval_transpose */
        onnx__model_proto__free_unpacked(m, NULL);
        bp_net_free(net);
    }
    /* A fresh LSTM's forget gate starts at bias 1 and the rest at 0: in B, ONNX's third
     * block (i, o, f, c) is the ones. */
    bp_net *net = make_image_net(1, 4, 4, "lstm:3,dense:2:sigmoid");
    Onnx__ModelProto *m = export_and_read(net, "fresh.onnx", NULL);
    const Onnx__TensorProto *b = initializer(m->graph, "layers.0.B");
    ck_assert_uint_eq(elements(b), 24);
    for (size_t k = 0; k < 24; k++)
        ck_assert_float_eq(element(b, k), k >= 6 && k < 9 ? 1.0f : 0.0f);
    onnx__model_proto__free_unpacked(m, NULL);
    bp_net_free(net);
    remove_tmp_dir();
}
END_TEST

#else /* !BP_HAVE_ONNX */

START_TEST(test_without_support)
{
    make_tmp_dir();
    bp_net *net = make_net(4, "dense:2:sigmoid");
    const char *path = tmp_path("m.onnx");
    ck_assert_int_eq(bp_net_export_onnx(net, path, NULL), BP_ENOTSUP);
    ck_assert_error_has("built without ONNX support");
    ck_assert_error_has("protobuf-c-compiler, libprotobuf-c-dev, libonnx-dev");
    ck_assert_error_has(path);
    ck_assert_int_eq(tmp_entries(), 0);
    bp_net_free(net);
    remove_tmp_dir();
}
END_TEST

#endif

static Suite *onnx_suite(void)
{
    Suite *s = suite_create("onnx");
    TCase *tc = tcase_create("export");
    tcase_set_timeout(tc, 60);
#if BP_HAVE_ONNX
    tcase_add_test(tc, test_dense_every_activation);
    tcase_add_test(tc, test_dropout_is_identity);
    tcase_add_test(tc, test_batchnorm_inference_form);
    tcase_add_test(tc, test_metadata);
    tcase_add_test(tc, test_replaces_existing_file);
    tcase_add_test(tc, test_refuses_non_finite);
    tcase_add_test(tc, test_refuses_bad_metadata);
    tcase_add_test(tc, test_unwritable_paths);
    tcase_add_test(tc, test_conv_maxpool);
    tcase_add_test(tc, test_channel_batchnorm_avgpool);
    tcase_add_test(tc, test_image_reshapes);
    tcase_add_test(tc, test_recurrent_layers);
#else
    tcase_add_test(tc, test_without_support);
#endif
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return bp_test_main(onnx_suite()); }
