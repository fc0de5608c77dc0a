/*
 * onnx.c - a net as an ONNX model (bp_net_export_onnx), encoded by protobuf-c from the
 * onnx.proto of Debian's libonnx-dev (C generated at build time, never committed). docs/FORMAT.md
 * ("ONNX export") is the description of the graph.
 *
 * The graph computes what bp_net_forward computes: input "input" [N, n_in] float, already
 * scaled (bytes times the metadata's input_scale; the scale is not in the graph, so the graph is
 * the net alone and takes any float input, as bp_net_forward does), output "output" [N, n_out].
 * Each layer kind has its emitter in `emitters` below, found by the kind's name; a kind without
 * one is refused (BP_ENOTSUP) rather than written wrong. Initialisers are the net's tensors
 * under their table names, laid out as the model file lays them out (row-major in PyTorch's
 * shape, so a dense weight is [n_out, n_in] and Gemm takes it with transB = 1, as PyTorch's own
 * export of nn.Linear does): the same bytes under the same names in both files.
 *
 * Every message of the model is allocated from one list of blocks (`builder`) and freed with
 * it, so no failure part-way leaks; the packed bytes go to bp_file_write_atomic in one piece.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/core.h"
#include "io/model.h"
#include "net/net.h"

#if BP_HAVE_ONNX

#include "onnx.pb-c.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "ONNX raw_data is little-endian: a big-endian build must byte-swap in onnx.c"
#endif

/* IR version 8 (ONNX 1.10 to 1.12) with operator set 13: the newest pair the Debian 12 checker
 * (onnx 1.12) knows and that every ONNX Runtime since 1.10 runs. Opset 13 is the first with
 * Softmax over one axis (the old one flattened from `axis` on), which is what a column's
 * softmax is. */
enum { IR_VERSION = 8, OPSET = 13 };

/* ---- one allocation list for the whole model -------------------------------------------- */

typedef struct block {
    struct block *next;
} block;

/* The messages and strings of one export, and the graph's growing lists. `failed` records
 * the first allocation that failed; every later helper then does nothing, and the export
 * checks it once per layer. */
typedef struct builder {
    block *blocks;
    int failed;
    Onnx__NodeProto **nodes;
    size_t n_nodes, cap_nodes;
    Onnx__TensorProto **inits;
    size_t n_inits, cap_inits;
    const char *current; /* the value the next layer reads */
    int image;           /* current is [N, C, H, W] (after a Reshape), not [N, features] */
    const char *path;
} builder;

/* Zeroed memory that lives until builder_free. The header is padded to the allocator's
 * alignment so the memory after it is aligned for anything. */
enum { BLOCK_HEADER = BP_ALIGN };
_Static_assert(sizeof(block) <= BLOCK_HEADER, "a block's header fits its padding");

static void *take(builder *b, size_t bytes)
{
    if (b->failed)
        return NULL;
    block *blk = bytes > SIZE_MAX - BLOCK_HEADER ? NULL : bp_calloc(1, BLOCK_HEADER + bytes);
    if (!blk) {
        b->failed = 1;
        return NULL;
    }
    blk->next = b->blocks;
    b->blocks = blk;
    return (char *)blk + BLOCK_HEADER;
}

static void builder_free(builder *b)
{
    for (block *blk = b->blocks, *next; blk; blk = next) {
        next = blk->next;
        bp_free(blk);
    }
    b->blocks = NULL;
}

__attribute__((format(printf, 2, 3))) static char *text(builder *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = n < 0 ? NULL : take(b, (size_t)n + 1);
    if (!s)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

/* A list of n elements of `size` bytes with room for one more: the same list, or a copy twice
 * as long (the old one stays in the block list: lists are a few hundred pointers at most).
 * NULL when it cannot grow (b->failed is then set). */
static void *room_for_one(builder *b, void *list, size_t n, size_t *cap, size_t size)
{
    if (b->failed)
        return NULL;
    if (n < *cap)
        return list;
    size_t grown = *cap ? 2 * *cap : 16;
    void *bigger = take(b, grown * size);
    if (!bigger)
        return NULL;
    if (n)
        memcpy(bigger, list, n * size);
    *cap = grown;
    return bigger;
}

/* ---- messages --------------------------------------------------------------------------- */

static Onnx__AttributeProto *attr_int(builder *b, const char *name, int64_t value)
{
    Onnx__AttributeProto *a = take(b, sizeof *a);
    if (!a)
        return NULL;
    onnx__attribute_proto__init(a);
    a->name = (char *)name;
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
    a->has_type = 1;
    a->i = value;
    a->has_i = 1;
    return a;
}

static Onnx__AttributeProto *attr_float(builder *b, const char *name, float value)
{
    Onnx__AttributeProto *a = take(b, sizeof *a);
    if (!a)
        return NULL;
    onnx__attribute_proto__init(a);
    a->name = (char *)name;
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT;
    a->has_type = 1;
    a->f = value;
    a->has_f = 1;
    return a;
}

/* A list of ints, as Conv's and the pools' kernel_shape, strides and pads. */
static Onnx__AttributeProto *attr_ints(builder *b, const char *name, const int64_t *values,
                                       size_t n)
{
    Onnx__AttributeProto *a = take(b, sizeof *a);
    int64_t *list = take(b, n * sizeof *list);
    if (b->failed)
        return NULL;
    onnx__attribute_proto__init(a);
    a->name = (char *)name;
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
    a->has_type = 1;
    memcpy(list, values, n * sizeof *list);
    a->ints = list;
    a->n_ints = n;
    return a;
}

/* A node named "layers.<p>.<what>" reading `inputs` (the current value first, for every op
 * used here) and writing one value of the same name, which becomes the current one, as its
 * output number `slot`: the outputs before it are left out (named "", as ONNX spells an
 * optional output not asked for), so LSTM and GRU can give only their last hidden state. */
static void add_node_output(builder *b, int position, const char *what, const char *op,
                            const char *const *inputs, size_t n_inputs,
                            Onnx__AttributeProto **attrs, size_t n_attrs, size_t slot)
{
    Onnx__NodeProto *node = take(b, sizeof *node);
    char *name = text(b, "layers.%d.%s", position, what);
    char **in = take(b, n_inputs * sizeof *in);
    char **out = take(b, (slot + 1) * sizeof *out);
    Onnx__AttributeProto **at = n_attrs ? take(b, n_attrs * sizeof *at) : NULL;
    if (b->failed)
        return;
    onnx__node_proto__init(node);
    node->name = name;
    node->op_type = (char *)op;
    for (size_t i = 0; i < n_inputs; i++)
        in[i] = (char *)inputs[i];
    node->input = in;
    node->n_input = n_inputs;
    for (size_t i = 0; i < slot; i++)
        out[i] = "";
    out[slot] = name;
    node->output = out;
    node->n_output = slot + 1;
    for (size_t i = 0; i < n_attrs; i++) {
        if (!attrs[i])
            return; /* its allocation failed: b->failed is set */
        at[i] = attrs[i];
    }
    node->attribute = at;
    node->n_attribute = n_attrs;
    b->nodes = room_for_one(b, b->nodes, b->n_nodes, &b->cap_nodes, sizeof *b->nodes);
    if (!b->nodes)
        return;
    b->nodes[b->n_nodes++] = node;
    b->current = name;
}

static void add_node(builder *b, int position, const char *what, const char *op,
                     const char *const *inputs, size_t n_inputs, Onnx__AttributeProto **attrs,
                     size_t n_attrs)
{
    add_node_output(b, position, what, op, inputs, n_inputs, attrs, n_attrs, 0);
}

/* A float initialiser of the given dims holding data (count floats from the builder, so they
 * live as long as the message). A NaN or an infinity is refused: a runtime would compute
 * garbage from it without a word. */
static bp_status add_float_initializer(builder *b, const char *name, const int64_t *dims,
                                       int ndim, float *data, size_t count)
{
    Onnx__TensorProto *tp = take(b, sizeof *tp);
    int64_t *shape = take(b, (size_t)ndim * sizeof *shape);
    if (b->failed)
        return bp_fail(BP_ENOMEM, "ONNX export to '%s': no memory for tensor '%s'", b->path,
                       name);
    size_t bad = 0;
    for (size_t k = 0; k < count; k++)
        bad += !isfinite(data[k]);
    if (bad)
        return bp_fail(BP_EDIVERGED, "ONNX export to '%s' refused: tensor '%s' has %zu NaN or "
                       "infinite value%s", b->path, name, bad, bad == 1 ? "" : "s");
    onnx__tensor_proto__init(tp);
    tp->name = (char *)name;
    memcpy(shape, dims, (size_t)ndim * sizeof *shape);
    tp->dims = shape;
    tp->n_dims = (size_t)ndim;
    tp->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    tp->has_data_type = 1;
    tp->raw_data.data = (uint8_t *)data;
    tp->raw_data.len = count * sizeof *data;
    tp->has_raw_data = 1;
    b->inits = room_for_one(b, b->inits, b->n_inits, &b->cap_inits, sizeof *b->inits);
    if (!b->inits)
        return bp_fail(BP_ENOMEM, "ONNX export to '%s': no memory", b->path);
    b->inits[b->n_inits++] = tp;
    return BP_OK;
}

/* The floats of a tensor of the net's tables, row-major (bp_tensor_gather_row_major), in
 * memory of the builder; NULL when there is none. */
static float *gather(builder *b, const bp_tensor_info *t, const float *arena)
{
    float *data = take(b, (t->count ? t->count : 1) * sizeof *data);
    if (data)
        bp_tensor_gather_row_major(data, t, arena);
    return data;
}

/* A tensor of the net's tables as an initialiser of the same name and shape. */
static bp_status add_initializer(builder *b, const bp_tensor_info *t, const float *arena)
{
    float *data = gather(b, t, arena);
    if (!data)
        return bp_fail(BP_ENOMEM, "ONNX export to '%s': no memory for tensor '%s' (%zu floats)",
                       b->path, t->name, t->count);
    return add_float_initializer(b, t->name, t->shape, t->ndim, data, t->count);
}

/* An int64 initialiser of n elements, named `name`: a Reshape's target shape. */
static void add_int64_initializer(builder *b, const char *name, const int64_t *values, size_t n)
{
    Onnx__TensorProto *tp = take(b, sizeof *tp);
    int64_t *dims = take(b, sizeof *dims);
    int64_t *data = take(b, n * sizeof *data);
    if (b->failed)
        return;
    memcpy(data, values, n * sizeof *data);
    onnx__tensor_proto__init(tp);
    tp->name = (char *)name;
    dims[0] = (int64_t)n;
    tp->dims = dims;
    tp->n_dims = 1;
    tp->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__INT64;
    tp->has_data_type = 1;
    tp->raw_data.data = (uint8_t *)data;
    tp->raw_data.len = n * sizeof *data;
    tp->has_raw_data = 1;
    b->inits = room_for_one(b, b->inits, b->n_inits, &b->cap_inits, sizeof *b->inits);
    if (b->inits)
        b->inits[b->n_inits++] = tp;
}

/* A float tensor [N, width] with N symbolic: the graph's input or output. */
static Onnx__ValueInfoProto *batch_value(builder *b, const char *name, int width,
                                         const char *doc)
{
    Onnx__ValueInfoProto *v = take(b, sizeof *v);
    Onnx__TypeProto *type = take(b, sizeof *type);
    Onnx__TypeProto__Tensor *tensor = take(b, sizeof *tensor);
    Onnx__TensorShapeProto *shape = take(b, sizeof *shape);
    Onnx__TensorShapeProto__Dimension **dim = take(b, 2 * sizeof *dim);
    Onnx__TensorShapeProto__Dimension *batch = take(b, sizeof *batch);
    Onnx__TensorShapeProto__Dimension *features = take(b, sizeof *features);
    if (b->failed)
        return NULL;
    onnx__tensor_shape_proto__dimension__init(batch);
    batch->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
    batch->dim_param = "N";
    onnx__tensor_shape_proto__dimension__init(features);
    features->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
    features->dim_value = width;
    dim[0] = batch;
    dim[1] = features;
    onnx__tensor_shape_proto__init(shape);
    shape->dim = dim;
    shape->n_dim = 2;
    onnx__type_proto__tensor__init(tensor);
    tensor->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    tensor->has_elem_type = 1;
    tensor->shape = shape;
    onnx__type_proto__init(type);
    type->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    type->tensor_type = tensor;
    onnx__value_info_proto__init(v);
    v->name = (char *)name;
    v->type = type;
    v->doc_string = (char *)doc;
    return v;
}

/* ---- the layer kinds -------------------------------------------------------------------- */

/* What an emitter is given: the layer (kind, sizes, activation) and its entries of the tensor
 * and buffer tables, with the arena each lives in. */
enum { MAX_LAYER_TENSORS = 16 };

typedef struct layer_tensor {
    bp_tensor_info info;
    const float *arena;
} layer_tensor;

typedef struct layer_view {
    const bp_layer *layer;
    int position; /* p of "layers.<p>" */
    layer_tensor tensors[MAX_LAYER_TENSORS];
    int n_tensors;
} layer_view;

/* The layer's tensor of a role, or NULL (its emitter then reports the net as broken). */
static const layer_tensor *find_role(const layer_view *v, bp_tensor_role role)
{
    for (int i = 0; i < v->n_tensors; i++)
        if (v->tensors[i].info.role == role)
            return &v->tensors[i];
    return NULL;
}

/* Each role's initialiser, in the order the op takes them, as the node's inputs after the
 * current value. */
static bp_status add_inputs(builder *b, const layer_view *v, const bp_tensor_role *roles,
                            size_t n, const char **inputs)
{
    inputs[0] = b->current;
    for (size_t i = 0; i < n; i++) {
        const layer_tensor *t = find_role(v, roles[i]);
        if (!t)
            return bp_fail(BP_EINVAL, "ONNX export: layer %d (%s) has no %s tensor",
                           v->position + 1, v->layer->ops->name, bp_tensor_role_name(roles[i]));
        bp_status st = add_initializer(b, &t->info, t->arena);
        if (st != BP_OK)
            return st;
        inputs[i + 1] = t->info.name;
    }
    return BP_OK;
}

/* The ONNX operator of each activation; linear is none. Softmax is over the features of one
 * sample, axis 1 of [N, n]. */
static const char *const activation_ops[] = {
    [BP_ACT_SIGMOID] = "Sigmoid",
    [BP_ACT_TANH] = "Tanh",
    [BP_ACT_RELU] = "Relu",
    [BP_ACT_LINEAR] = NULL,
    [BP_ACT_SOFTMAX] = "Softmax",
};
_Static_assert(sizeof activation_ops / sizeof *activation_ops == BP_ACT_COUNT,
               "every activation needs its ONNX operator (or NULL for none)");

static bp_status emit_activation(builder *b, const layer_view *v, bp_activation act)
{
    if ((unsigned)act >= BP_ACT_COUNT)
        return bp_fail(BP_EINVAL, "ONNX export: layer %d has unknown activation %d",
                       v->position + 1, (int)act);
    const char *op = activation_ops[act];
    if (!op)
        return BP_OK;
    const char *in[] = {b->current};
    Onnx__AttributeProto *axis[] = {act == BP_ACT_SOFTMAX ? attr_int(b, "axis", 1) : NULL};
    add_node(b, v->position, bp_activation_name(act), op, in, 1, axis,
             act == BP_ACT_SOFTMAX ? 1 : 0);
    return BP_OK;
}

/* The graph's input is [N, C*H*W], the columns bp_net_forward takes, so the same floats go
 * to both; the image layers want [N, C, H, W]. A column is channel-major (C planes of H x W,
 * each row by row), which is exactly the row-major order of an NCHW sample: Reshape to the
 * layer's input shape before the first image layer, and Flatten (axis 1) back before a dense
 * layer, move no element. The reshape's batch dimension is -1 so N stays free. */
static void as_image(builder *b, const layer_view *v)
{
    if (b->image)
        return;
    const bp_layer *l = v->layer;
    const char *shape = text(b, "layers.%d.image_shape", v->position);
    const int64_t dims[] = {-1, l->in.c, l->in.h, l->in.w};
    add_int64_initializer(b, shape, dims, 4);
    const char *in[] = {b->current, shape};
    add_node(b, v->position, "reshape", "Reshape", in, 2, NULL, 0);
    b->image = 1;
}

static void as_flat(builder *b, int position)
{
    if (!b->image)
        return;
    const char *in[] = {b->current};
    Onnx__AttributeProto *axis[] = {attr_int(b, "axis", 1)};
    add_node(b, position, "flatten", "Flatten", in, 1, axis, 1);
    b->image = 0;
}

/* dense: Gemm(X, W, b) = X W^T + b with W [n_out, n_in] (transB = 1), then the activation. */
static bp_status emit_dense(builder *b, const layer_view *v)
{
    as_flat(b, v->position);
    static const bp_tensor_role roles[] = {BP_ROLE_WEIGHT, BP_ROLE_BIAS};
    const char *in[3];
    bp_status st = add_inputs(b, v, roles, 2, in);
    if (st != BP_OK)
        return st;
    Onnx__AttributeProto *attrs[] = {attr_int(b, "transB", 1)};
    add_node(b, v->position, "gemm", "Gemm", in, 3, attrs, 1);
    return emit_activation(b, v, v->layer->act);
}

/* dropout: the identity at inference (inverted dropout scales in training only). An Identity
 * node rather than nothing keeps the layer visible in the graph; runtimes remove it. */
static bp_status emit_dropout(builder *b, const layer_view *v)
{
    const char *in[] = {b->current};
    add_node(b, v->position, "dropout", "Identity", in, 1, NULL, 0);
    return BP_OK;
}

/* batchnorm, inference form: BatchNormalization(X, gamma, beta, running mean, running var)
 * with the layer's epsilon, then the activation the layer applies after it. Not folded into
 * the Gemm or Conv before it: the statistics stay visible and named as in PyTorch, and
 * runtimes fold them themselves. ONNX normalises per channel, axis 1: on [N, features] that is
 * per feature (BatchNorm1d), on [N, C, H, W] per channel over the plane (BatchNorm2d), which is
 * what the layer does after a convolution (planes of more than one position). */
static bp_status emit_batchnorm(builder *b, const layer_view *v)
{
    static const bp_tensor_role roles[] = {BP_ROLE_SCALE, BP_ROLE_SHIFT, BP_ROLE_RUNNING_MEAN,
                                           BP_ROLE_RUNNING_VAR};
    if (v->layer->in.h * v->layer->in.w > 1)
        as_image(b, v);
    const char *in[5];
    bp_status st = add_inputs(b, v, roles, 4, in);
    if (st != BP_OK)
        return st;
    Onnx__AttributeProto *attrs[] = {attr_float(b, "epsilon", (float)BP_BATCHNORM_EPS)};
    add_node(b, v->position, "batchnorm", "BatchNormalization", in, 5, attrs, 1);
    return emit_activation(b, v, v->layer->act);
}

/* conv: Conv(X, W, B) with W [K, C, kh, kw] as the layer stores it (PyTorch's Conv2d.weight,
 * also ONNX's layout), the same padding on every side, then the activation. */
static bp_status emit_conv(builder *b, const layer_view *v)
{
    const bp_window *w = &v->layer->win;
    as_image(b, v);
    static const bp_tensor_role roles[] = {BP_ROLE_WEIGHT, BP_ROLE_BIAS};
    const char *in[3];
    bp_status st = add_inputs(b, v, roles, 2, in);
    if (st != BP_OK)
        return st;
    const int64_t kernel[] = {w->kh, w->kw}, strides[] = {w->stride, w->stride},
                  pads[] = {w->pad, w->pad, w->pad, w->pad};
    Onnx__AttributeProto *attrs[] = {attr_ints(b, "kernel_shape", kernel, 2),
                                     attr_ints(b, "strides", strides, 2),
                                     attr_ints(b, "pads", pads, 4)};
    add_node(b, v->position, "conv", "Conv", in, 3, attrs, 3);
    return emit_activation(b, v, v->layer->act);
}

/* maxpool and avgpool: MaxPool / AveragePool over the layer's window and stride. The layer has
 * no padding and floors the output size (pool.c, bp_window_plan), so every window lies inside
 * the plane and an average is over all N x N of its inputs: ONNX's defaults (pads 0,
 * ceil_mode 0) say the same, and count_include_pad, which only matters with padding, is left
 * at its default. */
static bp_status emit_pool(builder *b, const layer_view *v, const char *what, const char *op)
{
    const bp_window *w = &v->layer->win;
    as_image(b, v);
    const int64_t kernel[] = {w->kh, w->kw}, strides[] = {w->stride, w->stride};
    const char *in[] = {b->current};
    Onnx__AttributeProto *attrs[] = {attr_ints(b, "kernel_shape", kernel, 2),
                                     attr_ints(b, "strides", strides, 2)};
    add_node(b, v->position, what, op, in, 1, attrs, 2);
    return BP_OK;
}

static bp_status emit_maxpool(builder *b, const layer_view *v)
{
    return emit_pool(b, v, "maxpool", "MaxPool");
}

static bp_status emit_avgpool(builder *b, const layer_view *v)
{
    return emit_pool(b, v, "avgpool", "AveragePool");
}

/* lstm and gru: ONNX's LSTM and GRU operators over the sequence the layer reads, giving only
 * Y_h, the last step's hidden state, which is what the layer returns.
 *
 * The sample's R x C image (flat, or the [N, 1, R, C] of a conv before it) is reshaped to
 * [N, R, C] and transposed to ONNX's time-major [T, N, F] (opset 13 has no batch-major
 * layout): perm [1, 0, 2] by rows (T = R steps of C features), [2, 0, 1] by cols (T = C steps
 * of R). Y_h [1, N, H] is reshaped to [N, H].
 *
 * The weights cannot be the model file's bytes under its names, as the other kinds' are: the
 * operators want [1, G H, F] and [1, G H, H] in their own gate order (LSTM i, o, f, c; GRU z,
 * r, h) where the layer keeps PyTorch's (i, f, g, o; r, z, n), and both biases in one
 * [1, 2 G H]. So each becomes an initialiser under ONNX's input name ("layers.<p>.W", ".R",
 * ".B"), its gate blocks moved; the LSTM's recurrent bias is 0, and no peepholes. GRU takes
 * r into the recurrent product after it is formed (linear_before_reset = 1), as the layer does. */
typedef struct recurrent_op {
    const char *what, *op;
    int gates;
    int order[4];        /* ONNX's gate k is the layer's gate order[k] */
    const char *bias_hh; /* the layer's recurrent bias tensor, or NULL for none (zeros) */
    int linear_before_reset;
} recurrent_op;

static const recurrent_op lstm_op = {"lstm", "LSTM", 4, {0, 3, 1, 2}, NULL, 0};
static const recurrent_op gru_op = {"gru", "GRU", 3, {1, 0, 2}, "bias_hh", 1};

/* The layer's tensor whose name ends in ".<field>" ("weight_ih"), or NULL. */
static const layer_tensor *find_field(const layer_view *v, const char *field)
{
    for (int i = 0; i < v->n_tensors; i++) {
        const char *dot = strrchr(v->tensors[i].info.name, '.');
        if (dot && strcmp(dot + 1, field) == 0)
            return &v->tensors[i];
    }
    return NULL;
}

/* The layer's tensor `field` ([G H, width] or [G H]) row-major with its gate blocks of H rows
 * in ONNX's order, into out; zeros when field is NULL. */
static bp_status gates_in_onnx_order(builder *b, const layer_view *v, const recurrent_op *r,
                                     const char *field, size_t per_gate, float *out)
{
    if (!field)
        return BP_OK; /* take() gave zeros */
    const layer_tensor *t = find_field(v, field);
    if (!t || t->info.count != per_gate * (size_t)r->gates)
        return bp_fail(BP_EINVAL, "ONNX export: layer %d (%s) has no %s tensor of %zu floats",
                       v->position + 1, r->what, field, per_gate * (size_t)r->gates);
    float *rows = gather(b, &t->info, t->arena);
    if (!rows)
        return bp_fail(BP_ENOMEM, "ONNX export to '%s': no memory for tensor '%s'", b->path,
                       t->info.name);
    for (int k = 0; k < r->gates; k++)
        memcpy(out + (size_t)k * per_gate, rows + (size_t)r->order[k] * per_gate,
               per_gate * sizeof *out);
    return BP_OK;
}

static bp_status emit_recurrent(builder *b, const layer_view *v, const recurrent_op *r)
{
    const bp_layer *l = v->layer;
    const int64_t h = l->n_out, g = r->gates * h, f = l->features;
    const char *shape = text(b, "layers.%d.sequence_shape", v->position);
    const int64_t sequence[] = {-1, l->in.h, l->in.w};
    add_int64_initializer(b, shape, sequence, 3);
    const char *reshape_in[] = {b->current, shape};
    add_node(b, v->position, "sequence", "Reshape", reshape_in, 2, NULL, 0);
    const int64_t by_rows[] = {1, 0, 2}, by_cols[] = {2, 0, 1};
    Onnx__AttributeProto *perm[] = {attr_ints(b, "perm", l->by_cols ? by_cols : by_rows, 3)};
    const char *transpose_in[] = {b->current};
    add_node(b, v->position, "time_major", "Transpose", transpose_in, 1, perm, 1);
    b->image = 0;

    const char *names[3] = {text(b, "layers.%d.W", v->position),
                            text(b, "layers.%d.R", v->position),
                            text(b, "layers.%d.B", v->position)};
    size_t counts[3] = {(size_t)(g * f), (size_t)(g * h), (size_t)(2 * g)};
    float *data[3];
    for (int i = 0; i < 3; i++)
        data[i] = take(b, counts[i] * sizeof(float));
    if (b->failed)
        return bp_fail(BP_ENOMEM, "ONNX export to '%s': no memory for layer %d", b->path,
                       v->position + 1);
    bp_status st = gates_in_onnx_order(b, v, r, "weight_ih", (size_t)(h * f), data[0]);
    if (st == BP_OK)
        st = gates_in_onnx_order(b, v, r, "weight_hh", (size_t)(h * h), data[1]);
    if (st == BP_OK)
        st = gates_in_onnx_order(b, v, r, r->bias_hh ? "bias_ih" : "bias", (size_t)h, data[2]);
    if (st == BP_OK)
        st = gates_in_onnx_order(b, v, r, r->bias_hh, (size_t)h, data[2] + g);
    const int64_t dims[3][3] = {{1, g, f}, {1, g, h}, {1, 2 * g}};
    for (int i = 0; i < 3 && st == BP_OK; i++)
        st = add_float_initializer(b, names[i], dims[i], i == 2 ? 2 : 3, data[i], counts[i]);
    if (st != BP_OK)
        return st;

    const char *op_in[] = {b->current, names[0], names[1], names[2]};
    Onnx__AttributeProto *attrs[] = {attr_int(b, "hidden_size", h),
                                     attr_int(b, "linear_before_reset", 1)};
    add_node_output(b, v->position, r->what, r->op, op_in, 4, attrs,
                    r->linear_before_reset ? 2 : 1, 1);
    const char *last = text(b, "layers.%d.hidden_shape", v->position);
    const int64_t hidden[] = {-1, h};
    add_int64_initializer(b, last, hidden, 2);
    const char *flat_in[] = {b->current, last};
    add_node(b, v->position, "last_step", "Reshape", flat_in, 2, NULL, 0);
    return BP_OK;
}

static bp_status emit_lstm(builder *b, const layer_view *v)
{
    return emit_recurrent(b, v, &lstm_op);
}

static bp_status emit_gru(builder *b, const layer_view *v)
{
    return emit_recurrent(b, v, &gru_op);
}

/* The kinds the export knows. A new kind adds its emitter here; the rest of the file does not
 * change. */
typedef struct emitter {
    const char *kind; /* bp_layer_ops.name */
    bp_status (*emit)(builder *b, const layer_view *v);
} emitter;

static const emitter emitters[] = {
    {"dense", emit_dense},
    {"dropout", emit_dropout},
    {"batchnorm", emit_batchnorm},
    {"conv", emit_conv},
    {"maxpool", emit_maxpool},
    {"avgpool", emit_avgpool},
    {"lstm", emit_lstm},
    {"gru", emit_gru},
};

static const emitter *find_emitter(const char *kind)
{
    for (size_t i = 0; i < sizeof emitters / sizeof *emitters; i++)
        if (strcmp(emitters[i].kind, kind) == 0)
            return &emitters[i];
    return NULL;
}

/* Layer p's entries of the tensor table (parameters) and the buffer table (state). */
static bp_status view_layer(const bp_net *net, int p, layer_view *v)
{
    *v = (layer_view){.layer = &net->layers[p], .position = p};
    for (int table = 0; table < 2; table++) {
        int n = table == 0 ? bp_net_tensor_count(net) : bp_net_buffer_count(net);
        for (int i = 0; i < n; i++) {
            bp_tensor_info info;
            bp_status st = table == 0 ? bp_net_tensor(net, i, &info)
                                      : bp_net_buffer(net, i, &info);
            if (st != BP_OK)
                return st;
            if (info.layer != p + 1)
                continue;
            if (v->n_tensors == MAX_LAYER_TENSORS)
                return bp_fail(BP_ENOTSUP, "ONNX export: layer %d has more than %d tensors",
                               p + 1, MAX_LAYER_TENSORS);
            v->tensors[v->n_tensors++] =
                (layer_tensor){.info = info, .arena = table == 0 ? net->params : net->state};
        }
    }
    return BP_OK;
}

/* ---- the model -------------------------------------------------------------------------- */

static void add_meta(builder *b, Onnx__StringStringEntryProto **list, size_t *n,
                     const char *key, const char *value)
{
    Onnx__StringStringEntryProto *e = take(b, sizeof *e);
    if (!e || !value)
        return;
    onnx__string_string_entry_proto__init(e);
    e->key = (char *)key;
    e->value = (char *)value;
    list[(*n)++] = e;
}

enum { MAX_META = 16 };

/* The model file's metadata under its own keys (docs/FORMAT.md, "Metadata"), so a deployer
 * reads the input scale, the image shape and the class names where a backprop user would. */
static void add_model_meta(builder *b, Onnx__ModelProto *model, const bp_net *net,
                           const bp_model_meta *meta)
{
    Onnx__StringStringEntryProto **list = take(b, MAX_META * sizeof *list);
    if (!list)
        return;
    size_t n = 0;
    add_meta(b, list, &n, "architecture", bp_net_spec(net));
    add_meta(b, list, &n, "input_width", text(b, "%d", bp_net_size(net, 0)));
    add_meta(b, list, &n, "cost", bp_cost_name(bp_net_cost(net)));
    int channels, rows, cols;
    bp_net_input_shape(net, &channels, &rows, &cols);
    if (channels)
        add_meta(b, list, &n, "input_shape", text(b, "%dx%dx%d", channels, rows, cols));
    if (meta->input_rows) {
        add_meta(b, list, &n, "input_rows", text(b, "%d", meta->input_rows));
        add_meta(b, list, &n, "input_cols", text(b, "%d", meta->input_cols));
    }
    if (meta->input_scale != 0.0f) /* nine digits give the same float back */
        add_meta(b, list, &n, "input_scale", text(b, "%.9g", (double)meta->input_scale));
    if (meta->class_names)
        add_meta(b, list, &n, "class_names", meta->class_names);
    if (meta->training)
        add_meta(b, list, &n, "training", meta->training);
    add_meta(b, list, &n, "library_version", bp_version());
    model->metadata_props = list;
    model->n_metadata_props = n;
}

static const char *input_doc(builder *b, const bp_net *net, const bp_model_meta *meta)
{
    if (meta->input_scale != 0.0f && meta->input_rows)
        return text(b, "one sample a row: the %d x %d image's %d pixel bytes, row by row, "
                    "each times input_scale (%.9g)", meta->input_rows, meta->input_cols,
                    bp_net_size(net, 0), (double)meta->input_scale);
    if (meta->input_scale != 0.0f)
        return text(b, "one sample a row: %d input bytes, each times input_scale (%.9g)",
                    bp_net_size(net, 0), (double)meta->input_scale);
    return text(b, "one sample a row: the net's %d inputs, as bp_net_forward takes them",
                bp_net_size(net, 0));
}

/* The graph, layer by layer, into b; then the model around it. */
static bp_status build_model(builder *b, const bp_net *net, const bp_model_meta *meta,
                             Onnx__ModelProto *model)
{
    b->current = "input";
    for (int p = 0; p < net->n_layers; p++) {
        const char *kind = net->layers[p].ops->name;
        const emitter *em = find_emitter(kind);
        if (!em)
            return bp_fail(BP_ENOTSUP, "ONNX export to '%s': layer %d is a %s layer, which the "
                           "export does not know yet", b->path, p + 1, kind);
        layer_view v;
        bp_status st = view_layer(net, p, &v);
        if (st == BP_OK)
            st = em->emit(b, &v);
        if (st != BP_OK)
            return st;
        if (b->failed)
            return bp_fail(BP_ENOMEM, "ONNX export to '%s': no memory for layer %d", b->path,
                           p + 1);
    }
    /* A net ending on a convolution gives its planes back as the column they are. */
    as_flat(b, net->n_layers - 1);
    if (b->failed)
        return bp_fail(BP_ENOMEM, "ONNX export to '%s': no memory for the graph", b->path);
    /* The last node's value is the graph's output; an emitter always ends on a node of its
     * own, so that node exists. */
    if (b->n_nodes == 0 || strcmp(b->nodes[b->n_nodes - 1]->output[0], b->current) != 0)
        return bp_fail(BP_EINVAL, "ONNX export: the graph of %d layers has no output node",
                       net->n_layers);
    b->nodes[b->n_nodes - 1]->output[0] = "output";

    Onnx__GraphProto *graph = take(b, sizeof *graph);
    Onnx__ValueInfoProto **in = take(b, sizeof *in), **out = take(b, sizeof *out);
    Onnx__OperatorSetIdProto *opset = take(b, sizeof *opset);
    Onnx__OperatorSetIdProto **opsets = take(b, sizeof *opsets);
    const char *doc_in = input_doc(b, net, meta);
    const char *doc_out =
        text(b, "one sample a row: the net's %d outputs%s%s", bp_net_size(net, net->n_layers),
             meta->class_names ? ", classes " : "", meta->class_names ? meta->class_names : "");
    if (in)
        in[0] = batch_value(b, "input", bp_net_size(net, 0), doc_in);
    if (out)
        out[0] = batch_value(b, "output", bp_net_size(net, net->n_layers), doc_out);
    add_model_meta(b, model, net, meta);
    if (b->failed)
        return bp_fail(BP_ENOMEM, "ONNX export to '%s': no memory for the graph", b->path);

    onnx__graph_proto__init(graph);
    graph->name = "backprop";
    graph->node = b->nodes;
    graph->n_node = b->n_nodes;
    graph->initializer = b->inits;
    graph->n_initializer = b->n_inits;
    graph->input = in;
    graph->n_input = 1;
    graph->output = out;
    graph->n_output = 1;

    onnx__operator_set_id_proto__init(opset);
    opset->domain = ""; /* the default domain: ai.onnx */
    opset->version = OPSET;
    opset->has_version = 1;
    opsets[0] = opset;

    model->ir_version = IR_VERSION;
    model->has_ir_version = 1;
    model->opset_import = opsets;
    model->n_opset_import = 1;
    model->producer_name = "backprop";
    model->producer_version = (char *)bp_version();
    model->graph = graph;
    return BP_OK;
}

bp_status bp_net_export_onnx(const bp_net *net, const char *path, const bp_model_meta *meta)
{
    if (!net || !path)
        return bp_fail(BP_EINVAL, "bp_net_export_onnx: %s is NULL", net ? "path" : "net");
    bp_model_meta none = {0};
    if (!meta)
        meta = &none;
    bp_status st = bp_model_check_meta(net, path, meta);
    if (st != BP_OK)
        return st;

    builder b = {.path = path};
    Onnx__ModelProto model;
    onnx__model_proto__init(&model);
    st = build_model(&b, net, meta, &model);
    uint8_t *bytes = NULL;
    size_t n = 0;
    if (st == BP_OK) {
        n = onnx__model_proto__get_packed_size(&model);
        /* Protobuf readers (onnx, ONNX Runtime) refuse a message of 2 GiB or more; such a net
         * would need its tensors in external files, which this export does not write. */
        bytes = n <= INT32_MAX ? bp_alloc(n ? n : 1) : NULL;
        if (n > INT32_MAX)
            st = bp_fail(BP_ENOTSUP, "ONNX export to '%s': the model would take %zu bytes, "
                         "over protobuf's 2 GiB (external tensor data is not written)", path, n);
        else if (!bytes)
            st = bp_fail(BP_ENOMEM, "ONNX export to '%s': no memory for %zu bytes", path, n);
    }
    if (st == BP_OK && onnx__model_proto__pack(&model, bytes) != n)
        st = bp_fail(BP_EINVAL, "ONNX export to '%s': protobuf-c packed a size other than "
                     "it promised", path);
    builder_free(&b);
    if (st == BP_OK)
        st = bp_file_write_atomic(path, bytes, n);
    bp_free(bytes);
    return st;
}

#else /* !BP_HAVE_ONNX */

bp_status bp_net_export_onnx(const bp_net *net, const char *path, const bp_model_meta *meta)
{
    (void)net, (void)meta;
    return bp_fail(BP_ENOTSUP, "ONNX export to '%s': built without ONNX support: install "
                   "protobuf-c-compiler, libprotobuf-c-dev, libonnx-dev and reconfigure",
                   path ? path : "(NULL)");
}

#endif
