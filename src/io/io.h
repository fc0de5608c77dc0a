/*
 * io.h - the IDX reader behind bp_dataset_load_idx (MNIST, Fashion-MNIST; raw or gzip).
 * Private to the library.
 */
#ifndef BP_IO_H
#define BP_IO_H

#include <stddef.h>
#include <stdint.h>

#include "backprop.h"

/* Sane limits applied to every header before anything is allocated. They bound what a lying
 * .gz header can ask for, since its decompressed length is unknown until it is read. */
#define BP_IDX_MAX_SIDE 4096                    /* rows and cols */
#define BP_IDX_MAX_COUNT ((uint64_t)1 << 28)    /* images or labels */
#define BP_IDX_MAX_BYTES ((uint64_t)1 << 30)    /* the whole payload */

/* Read an IDX image file (magic 0x00000803: count x rows x cols unsigned bytes). On success
 * *pixels is a bp_alloc'd buffer of count * rows * cols bytes, one image after another (row-major
 * within an image), which the caller frees with bp_free. On failure nothing is left allocated and
 * the status is BP_EIO, BP_EFORMAT or BP_ENOMEM with a message naming the file and the field. */
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
