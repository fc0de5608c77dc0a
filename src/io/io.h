/*
 * io.h - the IDX reader behind bp_dataset_load_idx_ex and bp_idx_info_read (MNIST,
 * Fashion-MNIST; raw or gzip), and what the file code shares. Private to the library.
 */
#ifndef BP_IO_H
#define BP_IO_H

#include <stddef.h>
#include <stdint.h>

#include "backprop.h"

/* Sane limits applied to every header before anything is allocated. With the bound a .gz
 * file's compressed size puts on its decompressed size (idx.c), they cap what a lying header
 * can make us allocate before its data runs out. */
#define BP_IDX_MAX_SIDE 4096                    /* rows and cols */
#define BP_IDX_MAX_COUNT ((uint64_t)1 << 28)    /* images or labels */
#define BP_IDX_MAX_BYTES ((uint64_t)1 << 30)    /* the whole payload */

/* "" or "s", so that a count reads as English: "%llu byte%s", n, bp_plural(n). Every noun the
 * messages count (byte, image, label, sample, input, dimension) takes a plain s. */
static inline const char *bp_plural(unsigned long long n) { return n == 1 ? "" : "s"; }

/* What an image file's header must agree with, checked after the header's own fields and
 * before any of the payload is read or allocated. A zero field means "anything". */
typedef struct bp_idx_want {
    size_t count;           /* images: the label file's count */
    const char *count_path; /* the file that count comes from, named in the message */
    int rows, cols;         /* exact image shape */
    int dim;                /* rows * cols */
} bp_idx_want;

/* Read an IDX image file (magic 0x00000803: count x rows x cols unsigned bytes). want may be
 * NULL. On success *pixels is a bp_alloc'd buffer of count * rows * cols bytes, one image after
 * another (row-major within an image), which the caller frees with bp_free, and *info holds
 * the header. On failure *pixels is NULL, nothing is left allocated and the status is BP_EIO,
 * BP_EFORMAT or BP_ENOMEM with a message naming the file and the field. */
bp_status bp_idx_read_images_want(const char *path, const bp_idx_want *want, uint8_t **pixels,
                                  bp_idx_info *info);

/* bp_idx_read_images_want without expectations, the header returned field by field. */
bp_status bp_idx_read_images(const char *path, uint8_t **pixels, size_t *count, int *rows,
                             int *cols);

/* Read an IDX label file (magic 0x00000801: count unsigned bytes). As above; *labels holds
 * count bytes. */
bp_status bp_idx_read_labels(const char *path, uint8_t **labels, size_t *count);

/* bp_dataset_gather without its checks, for callers that have made them once (train/: the
 * epoch's order is a permutation of the set, and its labels fit the net): each thread of a
 * training step gathers its own columns through this. */
void bp_dataset_gather_unchecked(const bp_dataset *ds, const size_t *idx, int batch, float *x,
                                 float *y, int n_out);

#endif
