/*
 * model.c - model files: a net's parameters and buffers in a safetensors container
 * (io/safetensors.c), named and laid out as the state_dict of the equivalent PyTorch module, with
 * the metadata that makes the same net again. docs/FORMAT.md ("Models") is the specification.
 *
 * The arena stores each tensor column-major (a dense weight [out, in] with strides {1, out}),
 * PyTorch row-major; the file follows PyTorch, so every tensor goes through its strides on the
 * way out and back on the way in, whatever its rank. Bytes are little-endian, which is the
 * host's order on every target we build; a big-endian build would have to swap here.
 *
 * The loader trusts nothing in the file: the container has checked its structure and CRCs, and
 * this file checks what the container cannot know: that the metadata describes a net this
 * library can make, that the tensors are exactly that net's, and that every value is finite.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/model.h"
#include "io/safetensors.h"
#include "net/net.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "model files hold little-endian floats: a big-endian build must byte-swap in model.c"
#endif

#define FORMAT_NAME "backprop.model"
#define FORMAT_MAJOR 1
#define FORMAT_MINOR 0

/* The metadata keys (docs/FORMAT.md). */
#define KEY_FORMAT "format"
#define KEY_VERSION "format_version"
#define KEY_ARCH "architecture"
#define KEY_WIDTH "input_width"
#define KEY_COST "cost"
#define KEY_ROWS "input_rows"
#define KEY_COLS "input_cols"
#define KEY_SHAPE "input_shape"
#define KEY_SCALE "input_scale"
#define KEY_CLASSES "class_names"
#define KEY_TRAINING "training"
#define KEY_LIBRARY "library_version"

/* ---- tensors in row-major order --------------------------------------------------------- */

/* A position in a tensor, stepped in row-major order of its shape (the last index fastest),
 * with `at` the arena offset of that element relative to the tensor's own. */
typedef struct walk {
    int64_t idx[BP_TENSOR_MAX_DIMS];
    size_t at;
} walk;

static void walk_next(walk *w, const bp_tensor_info *t)
{
    for (int d = t->ndim - 1; d >= 0; d--) {
        w->at += (size_t)t->stride[d];
        if (++w->idx[d] < t->shape[d])
            return;
        w->at -= (size_t)t->shape[d] * (size_t)t->stride[d];
        w->idx[d] = 0;
    }
}

void bp_tensor_gather_row_major(float *out, const bp_tensor_info *t, const float *arena)
{
    const float *base = arena + t->offset;
    walk w = {{0}, 0};
    for (size_t k = 0; k < t->count; k++, walk_next(&w, t))
        out[k] = base[w.at];
}

/* "[3, 17]" for messages. */
static void format_index(char *buf, size_t cap, const int64_t *idx, int ndim)
{
    size_t used = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < ndim && used < cap; d++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%lld", d ? ", " : "",
                                 (long long)idx[d]);
    if (used < cap)
        snprintf(buf + used, cap - used, "]");
}

static void format_shape(char *buf, size_t cap, const int64_t *shape, int ndim)
{
    format_index(buf, cap, shape, ndim);
}

/* The tensors a model file holds: the parameter table, then the buffer table, each entry with
 * the arena it lives in. */
typedef struct entry {
    bp_tensor_info info;
    float *arena;
} entry;

static bp_status list_entries(const bp_net *net, entry **out, int *count)
{
    int n_params = bp_net_tensor_count(net), n_buffers = bp_net_buffer_count(net);
    int n = n_params + n_buffers;
    *out = NULL;
    *count = n;
    if (n == 0)
        return BP_OK;
    entry *e = bp_calloc((size_t)n, sizeof *e);
    if (!e)
        return bp_fail(BP_ENOMEM, "no memory for a list of %d tensors", n);
    for (int i = 0; i < n; i++) {
        bp_status st = i < n_params ? bp_net_tensor(net, i, &e[i].info)
                                    : bp_net_buffer(net, i - n_params, &e[i].info);
        if (st != BP_OK) {
            bp_free(e);
            return st;
        }
        e[i].arena = i < n_params ? net->params : net->state;
    }
    *out = e;
    return BP_OK;
}

/* ---- saving ----------------------------------------------------------------------------- */

static size_t count_names(const char *list)
{
    size_t n = 1;
    for (const char *p = list; *p; p++)
        n += *p == ',';
    return n;
}

/* A JSON object, as the training field must be: cJSON parses it (no JSON code of our own),
 * NUL-terminated with nothing after the value. */
static int is_json_object(const char *text)
{
    const char *end = NULL;
    cJSON *json = cJSON_ParseWithOpts(text, &end, 1);
    int ok = json && cJSON_IsObject(json);
    cJSON_Delete(json);
    return ok;
}

bp_status bp_model_check_meta(const bp_net *net, const char *path, const bp_model_meta *meta)
{
    int width = bp_net_size(net, 0), outputs = bp_net_size(net, bp_net_layers(net));
    if (meta->input_rows < 0 || meta->input_cols < 0 ||
        (meta->input_rows == 0) != (meta->input_cols == 0))
        return bp_fail(BP_EINVAL, "model '%s': input shape %d x %d (both positive, or 0 x 0 "
                       "when unknown)", path, meta->input_rows, meta->input_cols);
    if (meta->input_rows && (long long)meta->input_rows * meta->input_cols != width)
        return bp_fail(BP_EINVAL, "model '%s': input shape %d x %d is not the net's input "
                       "width %d", path, meta->input_rows, meta->input_cols, width);
    if (!(meta->input_scale == 0.0f || (isfinite(meta->input_scale) && meta->input_scale > 0.0f)))
        return bp_fail(BP_EINVAL, "model '%s': input scale %g (positive and finite, or 0 when "
                       "unknown)", path, (double)meta->input_scale);
    if (meta->class_names && count_names(meta->class_names) != (size_t)outputs)
        return bp_fail(BP_EINVAL, "model '%s': class_names lists %zu name%s for the net's %d "
                       "outputs", path, count_names(meta->class_names),
                       count_names(meta->class_names) == 1 ? "" : "s", outputs);
    if (meta->training && !is_json_object(meta->training))
        return bp_fail(BP_EINVAL, "model '%s': the training configuration is not a JSON object",
                       path);
    return BP_OK;
}

/* The first NaN or infinity of the net's tensors, refused before anything is written: the
 * loader would refuse the file, so saving it would only replace a good file with a useless
 * one. */
static bp_status check_finite(const entry *e, int n, const char *path)
{
    for (int i = 0; i < n; i++) {
        const bp_tensor_info *t = &e[i].info;
        const float *base = e[i].arena + t->offset;
        walk w = {{0}, 0};
        for (size_t k = 0; k < t->count; k++, walk_next(&w, t)) {
            if (isfinite(base[w.at]))
                continue;
            size_t bad = 0;
            for (size_t j = 0; j < t->count; j++)
                bad += !isfinite(base[j]);
            char where[96];
            format_index(where, sizeof where, w.idx, t->ndim);
            return bp_fail(BP_EDIVERGED, "model '%s' not saved: tensor '%s' has %zu NaN or "
                           "infinite value%s (element %s is %g)", path, t->name, bad,
                           bad == 1 ? "" : "s", where, (double)base[w.at]);
        }
    }
    return BP_OK;
}

bp_status bp_model_save(const bp_net *net, const char *path, const bp_model_meta *meta)
{
    return bp_model_write(net, path, meta, NULL, 0, NULL, 0);
}

bp_status bp_model_write(const bp_net *net, const char *path, const bp_model_meta *meta,
                         const bp_st_tensor *extra, int n_extra, const bp_st_meta *extra_meta,
                         int n_extra_meta)
{
    if (!net || !path)
        return bp_fail(BP_EINVAL, "bp_model_save: %s is NULL", net ? "path" : "net");
    bp_model_meta none = {0};
    if (!meta)
        meta = &none;
    bp_status st = bp_model_check_meta(net, path, meta);
    if (st != BP_OK)
        return st;
    entry *e;
    int n;
    if ((st = list_entries(net, &e, &n)) != BP_OK)
        return st;
    if ((st = check_finite(e, n, path)) != BP_OK) {
        bp_free(e);
        return st;
    }

    size_t floats = 0;
    for (int i = 0; i < n; i++)
        floats += e[i].info.count;
    bp_st_tensor *tensors = bp_calloc((size_t)(n + n_extra), sizeof *tensors);
    float *data = bp_calloc(floats ? floats : 1, sizeof(float));
    if (!tensors || !data) {
        bp_free(tensors);
        bp_free(data);
        bp_free(e);
        return bp_fail(BP_ENOMEM, "model '%s': no memory for %zu floats of tensors", path, floats);
    }
    float *at = data;
    for (int i = 0; i < n; i++) {
        const bp_tensor_info *t = &e[i].info;
        bp_tensor_gather_row_major(at, t, e[i].arena);
        tensors[i] = (bp_st_tensor){.name = t->name, .dtype = BP_ST_F32, .ndim = t->ndim,
                                    .data = at, .bytes = t->count * sizeof(float)};
        memcpy(tensors[i].shape, t->shape, sizeof t->shape);
        at += t->count;
    }

    for (int i = 0; i < n_extra; i++)
        tensors[n + i] = extra[i];

    char version[16], width[16], rows[16], cols[16], scale[32], shape[48];
    snprintf(version, sizeof version, "%d.%d", FORMAT_MAJOR, FORMAT_MINOR);
    snprintf(width, sizeof width, "%d", bp_net_size(net, 0));
    bp_st_meta *keys = bp_calloc((size_t)(16 + n_extra_meta), sizeof *keys);
    if (!keys) {
        bp_free(tensors);
        bp_free(data);
        bp_free(e);
        return bp_fail(BP_ENOMEM, "model '%s': no memory for its metadata", path);
    }
    int k = 0;
    keys[k++] = (bp_st_meta){KEY_FORMAT, FORMAT_NAME};
    keys[k++] = (bp_st_meta){KEY_VERSION, version};
    keys[k++] = (bp_st_meta){KEY_ARCH, bp_net_spec(net)};
    keys[k++] = (bp_st_meta){KEY_WIDTH, width};
    keys[k++] = (bp_st_meta){KEY_COST, bp_cost_name(bp_net_cost(net))};
    if (net->input_shaped) {
        /* The column's shape the conv and pooling layers were planned for, "CxHxW". */
        snprintf(shape, sizeof shape, "%dx%dx%d", net->input.c, net->input.h, net->input.w);
        keys[k++] = (bp_st_meta){KEY_SHAPE, shape};
    }
    if (meta->input_rows) {
        snprintf(rows, sizeof rows, "%d", meta->input_rows);
        snprintf(cols, sizeof cols, "%d", meta->input_cols);
        keys[k++] = (bp_st_meta){KEY_ROWS, rows};
        keys[k++] = (bp_st_meta){KEY_COLS, cols};
    }
    if (meta->input_scale != 0.0f) {
        /* Nine significant digits give back the same float through strtof. */
        snprintf(scale, sizeof scale, "%.9g", (double)meta->input_scale);
        keys[k++] = (bp_st_meta){KEY_SCALE, scale};
    }
    if (meta->class_names)
        keys[k++] = (bp_st_meta){KEY_CLASSES, meta->class_names};
    if (meta->training)
        keys[k++] = (bp_st_meta){KEY_TRAINING, meta->training};
    keys[k++] = (bp_st_meta){KEY_LIBRARY, bp_version()};
    for (int i = 0; i < n_extra_meta; i++)
        keys[k++] = extra_meta[i];

    st = bp_st_write(path, tensors, n + n_extra, keys, k);
    bp_free(keys);
    bp_free(tensors);
    bp_free(data);
    bp_free(e);
    return st;
}

/* ---- loading ---------------------------------------------------------------------------- */

/* What the metadata says, checked field by field. Strings point into the file. */
typedef struct header {
    const char *arch, *class_names, *training;
    int width, rows, cols;
    int shape[3]; /* channels, rows, columns of an input column; 0s when flat */
    bp_cost cost;
    float scale;
} header;

static bp_status bad_field(const bp_st_file *f, const char *key, const char *value,
                           const char *why)
{
    if (!value)
        return bp_fail(BP_EFORMAT, "model file '%s': metadata has no '%s' (%s)", bp_st_name(f),
                       key, why);
    return bp_fail(BP_EFORMAT, "model file '%s': metadata '%s' is '%.80s'%s: %s", bp_st_name(f),
                   key, value, strlen(value) > 80 ? "..." : "", why);
}

/* A decimal integer in [lo, hi], digits only (no sign, no spaces, no leading zeros). */
static int parse_int(const char *text, long lo, long hi, int *out)
{
    if (!text || !*text || strlen(text) > 10 || (text[0] == '0' && text[1]))
        return 0;
    long v = 0;
    for (const char *p = text; *p; p++) {
        if (*p < '0' || *p > '9')
            return 0;
        v = v * 10 + (*p - '0');
    }
    if (v < lo || v > hi)
        return 0;
    *out = (int)v;
    return 1;
}

/* "MAJOR.MINOR", both decimal. */
static int parse_version(const char *text, int *major, int *minor)
{
    const char *dot = text ? strchr(text, '.') : NULL;
    if (!dot || (size_t)(dot - text) > 10)
        return 0;
    char head[12];
    memcpy(head, text, (size_t)(dot - text));
    head[dot - text] = '\0';
    return parse_int(head, 0, INT_MAX, major) && parse_int(dot + 1, 0, INT_MAX, minor);
}

static bp_status read_header(const bp_st_file *f, header *h)
{
    memset(h, 0, sizeof *h);
    const char *format = bp_st_meta_get(f, KEY_FORMAT);
    if (!format || strcmp(format, FORMAT_NAME) != 0)
        return bad_field(f, KEY_FORMAT, format, "not a backprop model file (it must be '"
                         FORMAT_NAME "')");
    const char *version = bp_st_meta_get(f, KEY_VERSION);
    int major, minor;
    if (!parse_version(version, &major, &minor))
        return bad_field(f, KEY_VERSION, version, "a version is MAJOR.MINOR");
    if (major != FORMAT_MAJOR) {
        char why[96];
        snprintf(why, sizeof why, "major version %d is not supported (this library reads %d.x)",
                 major, FORMAT_MAJOR);
        return bad_field(f, KEY_VERSION, version, why);
    }

    h->arch = bp_st_meta_get(f, KEY_ARCH);
    if (!h->arch || !*h->arch)
        return bad_field(f, KEY_ARCH, h->arch, "the layer spec string is required");
    const char *width = bp_st_meta_get(f, KEY_WIDTH);
    if (!parse_int(width, 1, BP_MAX_WIDTH, &h->width))
        return bad_field(f, KEY_WIDTH, width, "the input width is an integer from 1 to 1048576");
    const char *cost = bp_st_meta_get(f, KEY_COST);
    if (!cost || bp_cost_parse(cost, &h->cost) != BP_OK)
        return bad_field(f, KEY_COST, cost, "the cost is quadratic, cross-entropy or "
                         "log-likelihood");

    const char *rows = bp_st_meta_get(f, KEY_ROWS), *cols = bp_st_meta_get(f, KEY_COLS);
    if ((rows == NULL) != (cols == NULL))
        return bad_field(f, rows ? KEY_COLS : KEY_ROWS, NULL, "the input shape has both rows "
                         "and columns or neither");
    if (rows) {
        if (!parse_int(rows, 1, BP_MAX_WIDTH, &h->rows))
            return bad_field(f, KEY_ROWS, rows, "a positive integer");
        if (!parse_int(cols, 1, BP_MAX_WIDTH, &h->cols))
            return bad_field(f, KEY_COLS, cols, "a positive integer");
        if ((long long)h->rows * h->cols != h->width)
            return bad_field(f, KEY_ROWS, rows, "rows times columns is not the input width");
    }
    const char *shape = bp_st_meta_get(f, KEY_SHAPE);
    if (shape) {
        const char *p = shape;
        for (int i = 0; i < 3; i++) {
            char part[12];
            size_t len = strcspn(p, "x");
            if ((i < 2) != (p[len] == 'x') || len >= sizeof part)
                return bad_field(f, KEY_SHAPE, shape, "the shape is CxHxW");
            memcpy(part, p, len);
            part[len] = '\0';
            if (!parse_int(part, 1, BP_MAX_WIDTH, &h->shape[i]))
                return bad_field(f, KEY_SHAPE, shape, "the shape is CxHxW, each positive");
            p += len + (i < 2);
        }
        if ((long long)h->shape[0] * h->shape[1] * h->shape[2] != h->width)
            return bad_field(f, KEY_SHAPE, shape, "its product is not the input width");
    }
    const char *scale = bp_st_meta_get(f, KEY_SCALE);
    if (scale) {
        char *end;
        errno = 0;
        h->scale = strtof(scale, &end);
        if (end == scale || *end != '\0' || errno == ERANGE || !isfinite(h->scale) ||
            !(h->scale > 0.0f))
            return bad_field(f, KEY_SCALE, scale, "a positive finite number");
    }
    h->class_names = bp_st_meta_get(f, KEY_CLASSES);
    h->training = bp_st_meta_get(f, KEY_TRAINING);
    if (h->training && !is_json_object(h->training))
        return bad_field(f, KEY_TRAINING, h->training, "not a JSON object");
    return BP_OK;
}

/* The caller's part of the net: what is wrong there is BP_EINVAL, so that everything
 * bp_net_create refuses afterwards is the file's fault. */
static bp_status check_caller_config(const bp_net_config *cfg)
{
    if (!cfg)
        return BP_OK;
    if (cfg->max_batch < 1 || cfg->max_batch > BP_MAX_BATCH)
        return bp_fail(BP_EINVAL, "bp_model_load: max_batch must be 1 to %d, got %d",
                       BP_MAX_BATCH, cfg->max_batch);
    if (cfg->backend) {
        int known = 0;
        for (int i = 0; i < bp_backend_count(); i++)
            known |= strcmp(cfg->backend, bp_backend_name(i)) == 0;
        if (!known)
            return bp_fail(BP_EINVAL, "bp_model_load: unknown backend '%s' (blas, naive)",
                           cfg->backend);
    }
    return BP_OK;
}

static bp_status make_net(const bp_st_file *f, const header *h, const bp_net_config *cfg,
                          bp_net **out)
{
    bp_net_config nc;
    bp_net_config_init(&nc);
    if (cfg) {
        nc.threads = cfg->threads;
        nc.backend = cfg->backend;
        nc.max_batch = cfg->max_batch;
        nc.seed = cfg->seed; /* the key of the dropout masks if the net trains on */
    }
    int sizes[1] = {h->width};
    nc.sizes = sizes;
    nc.n_sizes = 1;
    nc.layers = h->arch;
    nc.cost = h->cost;
    nc.input_channels = h->shape[0];
    nc.input_rows = h->shape[1];
    nc.input_cols = h->shape[2];
    bp_status st = bp_net_create(out, &nc);
    if (st == BP_EINVAL)
        return bp_fail_context(BP_EFORMAT, "model file '%s': metadata '%s' with input width %d "
                               "and cost %s", bp_st_name(f), KEY_ARCH, h->width,
                               bp_cost_name(h->cost));
    return st;
}

static int find_entry(const entry *e, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(e[i].info.name, name) == 0)
            return i;
    return -1;
}

/* The file's tensors must be exactly the net's: the same names, each F32 with the net's shape.
 * A partial match would leave some of the net at its random initialisation. */
static bp_status match_tensors(const bp_st_file *f, const entry *e, int n)
{
    const char *name = bp_st_name(f);
    /* A checkpoint (io/checkpoint.c) is a model file with the trainer's state beside it. */
    int checkpoint = bp_st_meta_get(f, "checkpoint") != NULL;
    for (int i = 0; i < bp_st_count(f); i++) {
        const bp_st_tensor *t = bp_st_at(f, i);
        if (checkpoint && strncmp(t->name, "trainer.", 8) == 0)
            continue;
        if (find_entry(e, n, t->name) < 0)
            return bp_fail(BP_EFORMAT, "model file '%s': tensor '%s' is not one of the "
                           "architecture's", name, t->name);
    }
    for (int i = 0; i < n; i++) {
        const bp_tensor_info *info = &e[i].info;
        const bp_st_tensor *t = bp_st_find(f, info->name);
        if (!t)
            return bp_fail(BP_EFORMAT, "model file '%s': tensor '%s' is missing (the "
                           "architecture has it)", name, info->name);
        if (t->dtype != BP_ST_F32)
            return bp_fail(BP_EFORMAT, "model file '%s': tensor '%s' is not F32", name,
                           info->name);
        int same = t->ndim == info->ndim;
        for (int d = 0; same && d < info->ndim; d++)
            same = t->shape[d] == info->shape[d];
        if (!same) {
            char got[96], want[96];
            format_shape(got, sizeof got, t->shape, t->ndim);
            format_shape(want, sizeof want, info->shape, info->ndim);
            return bp_fail(BP_EFORMAT, "model file '%s': tensor '%s' has shape %s; the "
                           "architecture's is %s", name, info->name, got, want);
        }
    }
    return BP_OK;
}

/* Each tensor from the file's row-major bytes into the arena through its strides, refusing the
 * first value that is not finite. The bytes may sit at any alignment in the file. */
static bp_status copy_tensors(const bp_st_file *f, const entry *e, int n)
{
    for (int i = 0; i < n; i++) {
        const bp_tensor_info *info = &e[i].info;
        const unsigned char *bytes = bp_st_find(f, info->name)->data;
        float *base = e[i].arena + info->offset;
        walk w = {{0}, 0};
        for (size_t k = 0; k < info->count; k++, walk_next(&w, info)) {
            float v;
            memcpy(&v, bytes + k * sizeof v, sizeof v);
            if (!isfinite(v)) {
                char where[96];
                format_index(where, sizeof where, w.idx, info->ndim);
                return bp_fail(BP_EFORMAT, "model file '%s': tensor '%s' element %s is %g",
                               bp_st_name(f), info->name, where, (double)v);
            }
            base[w.at] = v;
        }
    }
    return BP_OK;
}

/* The metadata strings the caller gets, copied into one block the net frees. */
static bp_status keep_strings(bp_net *net, const bp_st_file *f, const header *h,
                              bp_model_meta *meta)
{
    size_t a = h->class_names ? strlen(h->class_names) + 1 : 0;
    size_t b = h->training ? strlen(h->training) + 1 : 0;
    char *block = a + b ? bp_alloc(a + b) : NULL;
    if (a + b && !block)
        return bp_fail(BP_ENOMEM, "model file '%s': no memory for its metadata", bp_st_name(f));
    if (a)
        memcpy(block, h->class_names, a);
    if (b)
        memcpy(block + a, h->training, b);
    bp_free(net->meta_strings);
    net->meta_strings = block;
    *meta = (bp_model_meta){.input_rows = h->rows, .input_cols = h->cols,
                            .input_scale = h->scale, .class_names = a ? block : NULL,
                            .training = b ? block + a : NULL};
    return BP_OK;
}

bp_status bp_model_load(bp_net **out, const char *path, const bp_net_config *cfg,
                        bp_model_meta *meta)
{
    if (meta)
        memset(meta, 0, sizeof *meta);
    if (!out || !path)
        return bp_fail(BP_EINVAL, "bp_model_load: %s is NULL", out ? "path" : "out");
    *out = NULL;
    bp_status st = check_caller_config(cfg);
    if (st != BP_OK)
        return st;
    bp_st_file *f;
    if ((st = bp_st_read(&f, path)) != BP_OK)
        return st;
    bp_net *net = NULL;
    st = bp_model_read(f, cfg, meta, &net);
    bp_st_free(f);
    if (st != BP_OK)
        return st;
    *out = net;
    return BP_OK;
}

bp_status bp_model_read(const bp_st_file *f, const bp_net_config *cfg, bp_model_meta *meta,
                        bp_net **out)
{
    if (meta)
        memset(meta, 0, sizeof *meta);
    *out = NULL;
    bp_status st = check_caller_config(cfg);
    if (st != BP_OK)
        return st;
    header h;
    bp_net *net = NULL;
    entry *e = NULL;
    int n = 0;
    st = read_header(f, &h);
    if (st == BP_OK)
        st = make_net(f, &h, cfg, &net);
    if (st == BP_OK && h.class_names &&
        count_names(h.class_names) != (size_t)bp_net_size(net, bp_net_layers(net)))
        st = bad_field(f, KEY_CLASSES, h.class_names, "not one name per output of the net");
    if (st == BP_OK)
        st = list_entries(net, &e, &n);
    if (st == BP_OK)
        st = match_tensors(f, e, n);
    if (st == BP_OK)
        st = copy_tensors(f, e, n);
    if (st == BP_OK && meta)
        st = keep_strings(net, f, &h, meta);
    bp_free(e);
    if (st != BP_OK) {
        if (meta)
            memset(meta, 0, sizeof *meta);
        bp_net_free(net);
        return st;
    }
    *out = net;
    return BP_OK;
}
