/*
 * dataset.c - the bp_dataset handle: samples as columns of one shared, reference-counted store,
 * views (slices) into it, and the gather that turns a list of sample indices into the float
 * mini-batch and one-hot targets the network consumes.
 *
 * IDX pixels stay unsigned bytes in memory (MNIST's training set is 47 MB as bytes, 188 MB as
 * floats) and are scaled to [0,1] as they are gathered; bp_dataset_from_floats keeps floats.
 */
#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "core/core.h"
#include "io/io.h"

/* What the views share. Exactly one of pixels and floats is set. */
typedef struct ds_storage {
    atomic_size_t refs;  /* views alive; the last bp_dataset_free releases the store */
    uint8_t *pixels;     /* dim x n bytes, one sample a column (ld = dim) */
    float *floats;       /* dim x n floats, likewise */
    int32_t *labels;     /* n; int32 rather than bytes so from_floats may have > 256 classes */
    size_t n;
    int dim;
    int rows, cols;      /* the image shape, rows * cols = dim; dim x 1 for from_floats */
    int classes;
} ds_storage;

/* A view: samples [first, first + count) of the store. Slices inherit the store's class count,
 * so a validation slice that happens to lack some label still asks for the full output width. */
struct bp_dataset {
    ds_storage *st;
    size_t first;
    size_t count;
    /* bp_dataset_expand_shifts: first and count then index the store's samples times
     * SHIFTS, sample a being stored sample a / SHIFTS moved as shift a % SHIFTS says, so a
     * slice of such a view needs nothing of its own. */
    int expanded;
};

/* Unmoved, then one pixel up, down, left, right (Nielsen's expand_mnist.py order). */
enum { SHIFT_NONE, SHIFT_UP, SHIFT_DOWN, SHIFT_LEFT, SHIFT_RIGHT, SHIFTS };

static void storage_release(ds_storage *st)
{
    if (atomic_fetch_sub_explicit(&st->refs, 1, memory_order_acq_rel) != 1)
        return;
    bp_free(st->pixels);
    bp_free(st->floats);
    bp_free(st->labels);
    bp_free(st);
}

/* Wrap a filled store in its first view. Takes ownership of st (freed on failure). */
static bp_status dataset_wrap(ds_storage *st, bp_dataset **out)
{
    bp_dataset *ds = bp_alloc(sizeof *ds);
    if (!ds) {
        storage_release(st);
        return bp_fail(BP_ENOMEM, "cannot allocate a data set handle");
    }
    ds->st = st;
    ds->first = 0;
    ds->count = st->n;
    ds->expanded = 0;
    *out = ds;
    return BP_OK;
}

static ds_storage *storage_new(void)
{
    ds_storage *st = bp_calloc(1, sizeof *st);
    if (st)
        atomic_init(&st->refs, 1);
    return st;
}

/* A zero field means "anything"; a negative one, or a shape that contradicts dim, is a caller's
 * mistake rather than a file's. */
static bp_status check_expect(const bp_idx_expect *e)
{
    if (e->rows < 0 || e->cols < 0 || e->dim < 0)
        return bp_fail(BP_EINVAL, "bp_dataset_load_idx_ex: expect has a negative field (rows "
                       "= %d, cols = %d, dim = %d)", e->rows, e->cols, e->dim);
    if (e->rows && e->cols && e->dim && (long long)e->rows * e->cols != e->dim)
        return bp_fail(BP_EINVAL, "bp_dataset_load_idx_ex: expect asks for %dx%d images and "
                       "dim = %d, which cannot both hold", e->rows, e->cols, e->dim);
    return BP_OK;
}

bp_status bp_dataset_load_idx_ex(bp_dataset **out, const char *images_path,
                                 const char *labels_path, const bp_idx_expect *expect)
{
    if (!out)
        return bp_fail(BP_EINVAL, "bp_dataset_load_idx_ex: out is NULL");
    *out = NULL;
    if (!images_path || !labels_path)
        return bp_fail(BP_EINVAL, "bp_dataset_load_idx_ex: %s path is NULL",
                       images_path ? "labels" : "images");
    bp_status s;
    if (expect && (s = check_expect(expect)) != BP_OK)
        return s;

    /* Labels first: they are small, and their count lets the image header be refused before
     * any of a payload that may be a gigabyte (or a gzip bomb) is read. */
    uint8_t *pixels = NULL, *label_bytes = NULL;
    size_t n_labels = 0;
    if ((s = bp_idx_read_labels(labels_path, &label_bytes, &n_labels)) != BP_OK)
        return s;
    bp_idx_want want = {.count = n_labels, .count_path = labels_path};
    if (expect) {
        want.rows = expect->rows;
        want.cols = expect->cols;
        want.dim = expect->dim;
    }
    bp_idx_info info;
    if ((s = bp_idx_read_images_want(images_path, &want, &pixels, &info)) != BP_OK) {
        bp_free(label_bytes);
        return s;
    }

    ds_storage *st = storage_new();
    int32_t *labels = bp_alloc(n_labels * sizeof *labels);
    if (!st || !labels) {
        bp_free(st);
        bp_free(labels);
        bp_free(pixels);
        bp_free(label_bytes);
        return bp_fail(BP_ENOMEM, "cannot allocate the data set for %s", images_path);
    }
    int largest = 0;
    for (size_t i = 0; i < n_labels; i++) {
        labels[i] = label_bytes[i];
        if (label_bytes[i] > largest)
            largest = label_bytes[i];
    }
    bp_free(label_bytes);

    st->pixels = pixels;
    st->labels = labels;
    st->n = info.count;
    st->rows = info.rows;
    st->cols = info.cols;
    st->dim = info.rows * info.cols; /* at most 4096 * 4096: the reader's limits keep it an int */
    st->classes = largest + 1;
    return dataset_wrap(st, out);
}

bp_status bp_dataset_load_idx(bp_dataset **out, const char *images_path,
                              const char *labels_path)
{
    return bp_dataset_load_idx_ex(out, images_path, labels_path, NULL);
}

bp_status bp_dataset_from_floats(bp_dataset **out, const float *x, const int *labels, size_t n,
                                 int dim, int classes)
{
    if (!out)
        return bp_fail(BP_EINVAL, "bp_dataset_from_floats: out is NULL");
    *out = NULL;
    if (!x || !labels)
        return bp_fail(BP_EINVAL, "bp_dataset_from_floats: %s is NULL", x ? "labels" : "x");
    if (n == 0)
        return bp_fail(BP_EINVAL, "bp_dataset_from_floats: no samples (n = 0)");
    if (dim <= 0)
        return bp_fail(BP_EINVAL, "bp_dataset_from_floats: dim = %d, must be positive", dim);
    if (classes <= 0)
        return bp_fail(BP_EINVAL, "bp_dataset_from_floats: classes = %d, must be positive",
                       classes);
    if (n > SIZE_MAX / sizeof(float) / (size_t)dim)
        return bp_fail(BP_EINVAL, "bp_dataset_from_floats: %zu sample%s of %d float%s do not "
                       "fit in memory", n, bp_plural(n), dim, bp_plural((unsigned)dim));
    for (size_t i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] >= classes)
            return bp_fail(BP_EINVAL, "bp_dataset_from_floats: labels[%zu] = %d is outside "
                           "[0, %d)", i, labels[i], classes);
    /* A NaN or an infinity would go through the first GEMM into every output of its column,
     * and training on it fails epochs later, far from the cause: refuse it here, where the
     * sample can be named. */
    const size_t total = n * (size_t)dim;
    for (size_t k = 0; k < total; k++)
        if (!isfinite(x[k]))
            return bp_fail(BP_EINVAL, "bp_dataset_from_floats: x[%zu] of sample %zu is %s",
                           k % (size_t)dim, k / (size_t)dim,
                           isnan(x[k]) ? "nan" : x[k] > 0 ? "inf" : "-inf");

    ds_storage *st = storage_new();
    float *xs = bp_alloc(n * (size_t)dim * sizeof *xs);
    int32_t *ls = bp_alloc(n * sizeof *ls);
    if (!st || !xs || !ls) {
        bp_free(st);
        bp_free(xs);
        bp_free(ls);
        return bp_fail(BP_ENOMEM, "cannot allocate a data set of %zu sample%s of %d float%s",
                       n, bp_plural(n), dim, bp_plural((unsigned)dim));
    }
    memcpy(xs, x, n * (size_t)dim * sizeof *xs);
    for (size_t i = 0; i < n; i++)
        ls[i] = labels[i];
    st->floats = xs;
    st->labels = ls;
    st->n = n;
    st->dim = dim;
    st->rows = dim;
    st->cols = 1;
    st->classes = classes;
    return dataset_wrap(st, out);
}

bp_status bp_dataset_slice(const bp_dataset *src, size_t first, size_t count, bp_dataset **out)
{
    if (!out)
        return bp_fail(BP_EINVAL, "bp_dataset_slice: out is NULL");
    *out = NULL;
    if (!src)
        return bp_fail(BP_EINVAL, "bp_dataset_slice: src is NULL");
    if (count == 0)
        return bp_fail(BP_EINVAL, "bp_dataset_slice: a slice needs at least one sample");
    if (first > src->count || count > src->count - first)
        return bp_fail(BP_EINVAL, "bp_dataset_slice: samples [%zu, %zu + %zu) are outside the "
                       "%zu of the data set", first, first, count, src->count);
    bp_dataset *ds = bp_alloc(sizeof *ds);
    if (!ds)
        return bp_fail(BP_ENOMEM, "cannot allocate a data set view");
    atomic_fetch_add_explicit(&src->st->refs, 1, memory_order_relaxed);
    ds->st = src->st;
    ds->first = src->first + first;
    ds->count = count;
    ds->expanded = src->expanded;
    *out = ds;
    return BP_OK;
}

bp_status bp_dataset_expand_shifts(const bp_dataset *src, bp_dataset **out)
{
    if (!out)
        return bp_fail(BP_EINVAL, "bp_dataset_expand_shifts: out is NULL");
    *out = NULL;
    if (!src)
        return bp_fail(BP_EINVAL, "bp_dataset_expand_shifts: src is NULL");
    if (src->expanded)
        return bp_fail(BP_EINVAL, "bp_dataset_expand_shifts: src is already expanded");
    if (src->count > SIZE_MAX / SHIFTS)
        return bp_fail(BP_EINVAL, "bp_dataset_expand_shifts: %zu samples times %d overflow",
                       src->count, SHIFTS);
    bp_dataset *ds = bp_alloc(sizeof *ds);
    if (!ds)
        return bp_fail(BP_ENOMEM, "cannot allocate a data set view");
    atomic_fetch_add_explicit(&src->st->refs, 1, memory_order_relaxed);
    ds->st = src->st;
    ds->first = src->first * SHIFTS;
    ds->count = src->count * SHIFTS;
    ds->expanded = 1;
    *out = ds;
    return BP_OK;
}

/* The stored sample behind sample s of the view, and the shift it is seen through. */
static size_t stored_sample(const bp_dataset *ds, size_t s, int *shift)
{
    size_t a = ds->first + s;
    if (!ds->expanded) {
        *shift = SHIFT_NONE;
        return a;
    }
    *shift = (int)(a % SHIFTS);
    return a / SHIFTS;
}

/* Move a rows x cols image one pixel in place, the pixels that come in being 0 (black). */
static void shift_image(float *img, int rows, int cols, int shift)
{
    size_t r = (size_t)rows, c = (size_t)cols, row_bytes = c * sizeof *img;
    switch (shift) {
    case SHIFT_UP:
        memmove(img, img + c, (r - 1) * row_bytes);
        memset(img + (r - 1) * c, 0, row_bytes);
        break;
    case SHIFT_DOWN:
        memmove(img + c, img, (r - 1) * row_bytes);
        memset(img, 0, row_bytes);
        break;
    case SHIFT_LEFT:
        for (size_t i = 0; i < r; i++) {
            memmove(img + i * c, img + i * c + 1, (c - 1) * sizeof *img);
            img[i * c + c - 1] = 0.0f;
        }
        break;
    case SHIFT_RIGHT:
        for (size_t i = 0; i < r; i++) {
            memmove(img + i * c + 1, img + i * c, (c - 1) * sizeof *img);
            img[i * c] = 0.0f;
        }
        break;
    default: break;
    }
}

void bp_dataset_free(bp_dataset *ds)
{
    if (!ds)
        return;
    storage_release(ds->st);
    bp_free(ds);
}

size_t bp_dataset_count(const bp_dataset *ds) { return ds ? ds->count : 0; }

int bp_dataset_dim(const bp_dataset *ds) { return ds ? ds->st->dim : 0; }

void bp_dataset_image_shape(const bp_dataset *ds, int *rows, int *cols)
{
    if (rows)
        *rows = ds ? ds->st->rows : 0;
    if (cols)
        *cols = ds ? ds->st->cols : 0;
}

int bp_dataset_classes(const bp_dataset *ds) { return ds ? ds->st->classes : 0; }

int bp_dataset_label(const bp_dataset *ds, size_t i)
{
    if (!ds) {
        bp_fail(BP_EINVAL, "bp_dataset_label: ds is NULL");
        return -1;
    }
    if (i >= ds->count) {
        bp_fail(BP_EINVAL, "bp_dataset_label: sample %zu is out of range (the data set holds "
                "%zu sample%s)", i, ds->count, bp_plural(ds->count));
        return -1;
    }
    int shift;
    return ds->st->labels[stored_sample(ds, i, &shift)];
}

/* The hot loops, kept apart with restrict so the compiler vectorises them.
 * dst[k] = src[k] / 255 as a multiply: 255 * (1/255.f) rounds to exactly 1.0f.
 * Built for AVX-512, AVX2 and baseline x86-64 (picked at load time): the AVX-512 copy cut a
 * shuffled MNIST epoch's gather at B = 1024 from 24 to 16 ms. */
BP_CLONES static void
column_from_bytes(float *restrict dst, const uint8_t *restrict src, size_t dim)
{
    const float scale = 1.0f / 255.0f;
    for (size_t k = 0; k < dim; k++)
        dst[k] = (float)src[k] * scale;
}

static void column_one_hot(float *restrict dst, int n_out, int label)
{
    for (int k = 0; k < n_out; k++)
        dst[k] = 0.0f;
    dst[label] = 1.0f;
}

bp_status bp_dataset_gather(const bp_dataset *ds, const size_t *idx, int batch, float *x,
                            float *y, int n_out)
{
    if (!ds || !x)
        return bp_fail(BP_EINVAL, "bp_dataset_gather: %s is NULL", ds ? "x" : "ds");
    if (batch < 0)
        return bp_fail(BP_EINVAL, "bp_dataset_gather: batch = %d is negative", batch);
    if (y && n_out <= 0)
        return bp_fail(BP_EINVAL, "bp_dataset_gather: n_out = %d, must be positive", n_out);
    if (!idx && (size_t)batch > ds->count)
        return bp_fail(BP_EINVAL, "bp_dataset_gather: batch of %d sample%s but the data set "
                       "holds %zu", batch, bp_plural((unsigned)batch), ds->count);
    const ds_storage *st = ds->st;
    int shift;

    /* Check everything before writing anything, so a failed call leaves x and y as they were.
     * One pass over batch indices: nothing next to the copy below. */
    for (int j = 0; j < batch; j++) {
        size_t s = idx ? idx[j] : (size_t)j;
        if (s >= ds->count)
            return bp_fail(BP_EINVAL, "bp_dataset_gather: idx[%d] = %zu is out of range (the "
                           "data set holds %zu sample%s)", j, s, ds->count,
                           bp_plural(ds->count));
        int label = y ? st->labels[stored_sample(ds, s, &shift)] : 0;
        if (y && label >= n_out)
            return bp_fail(BP_EINVAL, "bp_dataset_gather: sample %zu has label %d, which "
                           "does not fit %d output%s", s, label, n_out,
                           bp_plural((unsigned)n_out));
    }
    bp_dataset_gather_unchecked(ds, idx, batch, x, y, n_out);
    return BP_OK;
}

void bp_dataset_gather_unchecked(const bp_dataset *ds, const size_t *idx, int batch, float *x,
                                 float *y, int n_out)
{
    const ds_storage *st = ds->st;
    const int32_t *labels = st->labels + ds->first;
    const size_t dim = (size_t)st->dim;
    if (ds->expanded) {
        /* Kept off the plain path below, whose prefetching row walk it would not fit. */
        for (int j = 0; j < batch; j++) {
            int shift;
            size_t a = stored_sample(ds, idx ? idx[j] : (size_t)j, &shift);
            float *col = x + (size_t)j * dim;
            if (st->pixels)
                column_from_bytes(col, st->pixels + a * dim, dim);
            else
                memcpy(col, st->floats + a * dim, dim * sizeof *col);
            shift_image(col, st->rows, st->cols, shift);
            if (y)
                column_one_hot(y + (size_t)j * (size_t)n_out, n_out, st->labels[a]);
        }
        return;
    }
    if (st->pixels) {
        const uint8_t *base = st->pixels + ds->first * dim;
        /* A shuffled epoch reads rows in random order, so each row starts with cache misses
         * that the hardware prefetcher cannot foresee: ask for the row PREFETCH_AHEAD samples
         * on while converting this one (measured: the gather went from 17% of an epoch at
         * B = 128 to a few percent). */
        enum { PREFETCH_AHEAD = 2, LINE = 64 };
        for (int j = 0; j < batch; j++) {
            if (j + PREFETCH_AHEAD < batch) {
                size_t ahead = idx ? idx[j + PREFETCH_AHEAD] : (size_t)(j + PREFETCH_AHEAD);
                const uint8_t *row = base + ahead * dim;
                for (size_t k = 0; k < dim; k += LINE)
                    __builtin_prefetch(row + k);
            }
            size_t s = idx ? idx[j] : (size_t)j;
            column_from_bytes(x + (size_t)j * dim, base + s * dim, dim);
        }
    } else {
        const float *base = st->floats + ds->first * dim;
        for (int j = 0; j < batch; j++) {
            size_t s = idx ? idx[j] : (size_t)j;
            memcpy(x + (size_t)j * dim, base + s * dim, dim * sizeof *x);
        }
    }
    if (y)
        for (int j = 0; j < batch; j++) {
            size_t s = idx ? idx[j] : (size_t)j;
            column_one_hot(y + (size_t)j * (size_t)n_out, n_out, labels[s]);
        }
}
