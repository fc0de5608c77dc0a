/*
 * fuzz_model.c - libFuzzer target for the model loader above the container: any bytes the
 * container accepts, its CRCs aside, go to bp_model_read, which must make a net or refuse
 * with a status (never a crash, a leak or undefined behaviour) - a hostile architecture string,
 * width, cost, class list or training JSON, a tensor set that does not match, a NaN. The memory
 * limit keeps a file that claims a huge net from taking the machine. Built and run by
 * scripts/fuzz.sh, from seeds that are real model files (fuzz/seeds.c).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "backprop.h"
#include "io/model.h"
#include "io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int limited;
    if (!limited) {
        bp_set_memory_limit((uint64_t)64 << 20);
        bp_set_threads(1);
        limited = 1;
    }
    bp_alloc_stats before, after;
    bp_alloc_stats_get(&before);
    bp_st_file *f = NULL;
    /* Past the container's CRCs, which a mutator cannot keep, so the loader sees what a
     * hostile writer could put in a file with matching ones. */
    if (bp_st_read_memory_ignoring_crcs(&f, data, size, "fuzz") != BP_OK)
        return 0;
    bp_net *net = NULL;
    bp_model_meta meta;
    bp_status st = bp_model_read(f, NULL, &meta, &net);
    if (st != BP_OK && net)
        abort();
    if (st == BP_OK) {
        /* A net it made must run: one forward pass of zeros. */
        int in = bp_net_size(net, 0);
        float *x = calloc((size_t)in, sizeof *x);
        if (x && bp_net_forward(net, x, in, 1, NULL, 0) != BP_OK)
            abort();
        free(x);
        bp_net_free(net);
    }
    bp_st_free(f);
    bp_alloc_stats_get(&after);
    if (after.bytes_live != before.bytes_live)
        abort();
    return 0;
}
