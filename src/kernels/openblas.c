/* openblas.c - which kernels OpenBLAS runs, and whether they fit the CPU.
 *
 * OpenBLAS chooses its kernels once, when it loads, from OPENBLAS_CORETYPE or else from the
 * CPU's family and model. A release older than the CPU does not know the model and falls back
 * to its oldest kernels: Debian 12's 0.3.21 runs the SSE3 "Prescott" kernels on Xeons of
 * family 6, model 207, which have AVX-512 (sgemm five times slower; docs/PERFORMANCE.md). The
 * library cannot change that choice after OpenBLAS has loaded; it can tell its caller. */
#include <stddef.h>
#include <strings.h>

#include <cblas.h>

#include "backprop.h"

const char *bp_blas_core(void)
{
    const char *core = openblas_get_corename();
    return core && *core ? core : "unknown";
}

/* The widest vectors a core's kernels use: 1 SSE, 2 AVX, 3 AVX2, 4 AVX-512. */
static int vector_width(const char *core)
{
    static const struct { const char *name; int width; } widths[] = {
        {"skylakex", 4}, {"cooperlake", 4}, {"sapphirerapids", 4},
        {"haswell", 3},  {"zen", 3},        {"sandybridge", 2},
    };
    for (size_t i = 0; i < sizeof widths / sizeof *widths; i++)
        if (strcasecmp(core, widths[i].name) == 0)
            return widths[i].width;
    return 1;
}

const char *bp_blas_core_fitting(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    const char *fits = NULL;
    int fit_width = 0;
    /* SkylakeX's kernels use the AVX-512 subsets that Skylake-SP introduced together. */
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512cd")) {
        fits = "SkylakeX";
        fit_width = 4;
    } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        fits = "Haswell";
        fit_width = 3;
    }
    int chosen = vector_width(bp_blas_core());
    /* Only a fallback is second-guessed: a core OpenBLAS chose for a CPU it knows (its Zen
     * kernels on a Zen 4, say) is a pairing its authors tuned, whatever its width. */
    if (fits && chosen <= 2 && chosen < fit_width)
        return fits;
#endif
    return NULL;
}
