/*
 * fuzz_safetensors.c - libFuzzer target for the strict safetensors reader: any bytes given to
 * bp_st_read_memory must end in BP_OK or BP_EFORMAT (never a crash, a leak or undefined
 * behaviour, which the sanitizers of scripts/fuzz.sh turn into crashes), and a file it accepts
 * must hold what its table says. Built and run by scripts/fuzz.sh.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backprop.h"
#include "io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bp_alloc_stats before, after;
    bp_alloc_stats_get(&before);
    bp_st_file *f = NULL;
    bp_status st = bp_st_read_memory(&f, data, size, "fuzz");
    /* ENOMEM is possible in principle (a 100 MB header on a small machine); nothing else. */
    if (st != BP_OK && st != BP_EFORMAT && st != BP_ENOMEM)
        abort();
    if (st != BP_OK && f)
        abort();
    if (st == BP_OK) {
        /* Touch every byte the table promises, so ASan sees any view past the block. */
        volatile unsigned char sink = 0;
        for (int i = 0; i < bp_st_count(f); i++) {
            const bp_st_tensor *t = bp_st_at(f, i);
            if (!t || !t->data || bp_st_find(f, t->name) != t)
                abort();
            size_t elem = t->dtype == BP_ST_I64 ? 8 : 4;
            if ((uintptr_t)t->data % elem != 0)
                abort();
            const unsigned char *b = t->data;
            for (size_t k = 0; k < t->bytes; k++)
                sink ^= b[k];
        }
        for (int i = 0; i < bp_st_meta_count(f); i++) {
            const bp_st_meta *m = bp_st_meta_at(f, i);
            if (!m || bp_st_meta_get(f, m->key) != m->value)
                abort();
        }
        (void)sink;
        bp_st_free(f);
    }
    /* Everything the reader allocated through the library's allocator is given back. */
    bp_alloc_stats_get(&after);
    if (after.bytes_live != before.bytes_live)
        abort();
    return 0;
}
