/*
 * safetensors.h - the safetensors container, written and read strictly: the library's model
 * files and checkpoints are made of it (io/model.c), and nothing above this file knows its
 * bytes. Private to the library; the format is documented in docs/FORMAT.md.
 *
 * A file is: an 8-byte little-endian header length N, N bytes of JSON (an object: one member
 * per tensor, {"dtype", "shape", "data_offsets": [begin, end]}, and an optional "__metadata__"
 * object of string values), then the data section, the tensors' bytes back to back from offset
 * 0, each tensor's range exactly its shape's element count times its dtype's size.
 */
#ifndef BP_SAFETENSORS_H
#define BP_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "backprop.h"

/* The reader refuses a header longer than this before allocating for it: the reference
 * implementation's own cap, so any header it reads passes this check. */
#define BP_ST_MAX_HEADER 100000000
/* Shape entries and data offsets are integers up to 2^53 - 1: cJSON holds numbers as doubles,
 * which are exact only that far. */
#define BP_ST_MAX_INT ((INT64_C(1) << 53) - 1)

typedef enum bp_st_dtype {
    BP_ST_F32 = 0, /* "F32": parameters, buffers, optimiser state */
    BP_ST_I64,     /* "I64": counters and sample orders (checkpoints) */
    BP_ST_DTYPE_COUNT
} bp_st_dtype;

/* One tensor. Writing: data points at `bytes` bytes in the file's byte order (little-endian,
 * row-major for the shape: the caller has already laid them out); it may be NULL when bytes is
 * 0. Reading: data is a view into the loaded file's data, valid until bp_st_free, aligned for
 * its dtype whatever its offset in the file (never NULL, even for zero bytes). */
typedef struct bp_st_tensor {
    const char *name;
    bp_st_dtype dtype;
    int ndim; /* 0 .. BP_TENSOR_MAX_DIMS (0: a scalar, one element) */
    int64_t shape[BP_TENSOR_MAX_DIMS];
    const void *data;
    size_t bytes;
} bp_st_tensor;

typedef struct bp_st_meta {
    const char *key, *value; /* UTF-8 strings */
} bp_st_meta;

/* Write the tensors in the order given (their data offsets follow that order) and the metadata
 * to path through the library's atomic writer. The writer adds the integrity keys
 * ("crc32.header" over the rest of the header, "crc32.<tensor>" per tensor; docs/FORMAT.md says
 * exactly over what): callers' keys must not start with "crc32.". Names must be unique,
 * non-empty and not "__metadata__"; names, keys and values valid UTF-8 (the reader requires a
 * UTF-8 header). Any violation is BP_EINVAL before anything is written; a write failure
 * BP_EIO naming path, with path left as it was. */
bp_status bp_st_write(const char *path, const bp_st_tensor *tensors, int n_tensors,
                      const bp_st_meta *meta, int n_meta);

typedef struct bp_st_file bp_st_file;

/* Read and check a whole file (every rule of docs/FORMAT.md, every CRC) into memory. Any defect
 * is BP_EFORMAT with a message naming `path` and the field; an unreadable file BP_EIO. */
bp_status bp_st_read(bp_st_file **out, const char *path);
/* The same on bytes already in memory (the fuzz target's entry); `name` stands for the file in
 * messages. The bytes are copied. */
bp_status bp_st_read_memory(bp_st_file **out, const void *data, size_t n, const char *name);
/* bp_st_read_memory with every rule but the CRCs': for the fuzz target of the model loader
 * (fuzz/fuzz_model.c), whose mutated inputs could otherwise never get past them. Nothing else
 * may call it. */
bp_status bp_st_read_memory_ignoring_crcs(bp_st_file **out, const void *data, size_t n,
                                          const char *name);
void bp_st_free(bp_st_file *f);

int bp_st_count(const bp_st_file *f);
/* In data-offset order: by begin, then end, then name (which orders zero-size tensors that
 * share an offset), so a file written by bp_st_write comes back in its writing order except
 * within such a run of empty tensors. */
const bp_st_tensor *bp_st_at(const bp_st_file *f, int index);
const bp_st_tensor *bp_st_find(const bp_st_file *f, const char *name); /* NULL if absent */
/* A metadata value by key, NULL if absent (the crc32 keys are readable too). */
const char *bp_st_meta_get(const bp_st_file *f, const char *key);
int bp_st_meta_count(const bp_st_file *f);
const bp_st_meta *bp_st_meta_at(const bp_st_file *f, int index); /* in the header's order */
/* The name messages use for the file. */
const char *bp_st_name(const bp_st_file *f);

#endif
