/* alloc.c - the library's one allocator: aligned, and counted so tests can prove that a
 * training step makes no heap allocation. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

static atomic_uint_fast64_t n_allocs, n_frees, n_live_bytes;

/* The size is kept in a header of one alignment unit in front of the block, so bp_free can
 * keep bytes_live honest without asking the C library. */
void *bp_alloc(size_t bytes)
{
    if (bytes == 0 || bytes > SIZE_MAX - 2 * BP_ALIGN)
        return NULL;
    size_t total = (bytes + BP_ALIGN + BP_ALIGN - 1) / BP_ALIGN * BP_ALIGN;
    unsigned char *raw = aligned_alloc(BP_ALIGN, total);
    if (!raw)
        return NULL;
    memcpy(raw, &bytes, sizeof bytes);
    atomic_fetch_add(&n_allocs, 1);
    atomic_fetch_add(&n_live_bytes, bytes);
    return raw + BP_ALIGN;
}

void *bp_calloc(size_t count, size_t size)
{
    if (size && count > SIZE_MAX / size)
        return NULL;
    void *p = bp_alloc(count * size);
    if (p)
        memset(p, 0, count * size);
    return p;
}

void bp_free(void *p)
{
    if (!p)
        return;
    unsigned char *raw = (unsigned char *)p - BP_ALIGN;
    size_t bytes;
    memcpy(&bytes, raw, sizeof bytes);
    atomic_fetch_add(&n_frees, 1);
    atomic_fetch_sub(&n_live_bytes, bytes);
    free(raw);
}

void bp_alloc_stats_get(bp_alloc_stats *out)
{
    if (!out)
        return;
    out->allocations = atomic_load(&n_allocs);
    out->frees = atomic_load(&n_frees);
    out->bytes_live = atomic_load(&n_live_bytes);
}
