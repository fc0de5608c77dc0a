/* settings.c - process-wide settings (thread count), the version, the clock. */
#include <time.h>
#include <unistd.h>

#include "core.h"
#include "kernels/threads.h"

static int thread_count;

bp_status bp_set_threads(int n)
{
    if (n <= 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        n = cores > 0 ? (int)cores : 1;
    }
    thread_count = n;
    /* The blas backend chooses per GEMM (kernels/threads.c); this is the ceiling, and what
     * OpenBLAS uses for any call made outside our backend. */
    bp_blas_use_threads(n);
    return BP_OK;
}

int bp_get_threads(void)
{
    if (thread_count == 0)
        bp_set_threads(0);
    return thread_count;
}

const char *bp_version(void) { return "0.1.0"; }

double bp_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
