/* threads.c - the per-shape thread choice for OpenBLAS sgemm (see threads.h for why). */
#include <stdatomic.h>
#include <unistd.h>

#include <cblas.h>

#include "kernels/threads.h"

/*
 * The rule, from timing every GEMM of [784,100,10] and [784,1024,1024,10] steps at B = 1 .. 1024
 * with one and two threads, alone (bench/ops) and inside whole epochs (backprop train):
 * - OpenBLAS splits the rows of C: with fewer than 64 rows (an output layer of 10) each thread
 *   gets a sliver too thin for its kernel (1.2-3x slower on two threads);
 * - below about 8 million multiply-adds the second thread's wake-up and the thinner blocks cost
 *   more than it brings; tall products (m >= 512 rows) pay off from about 4 million;
 * - a matrix-vector product (B = 1) is bound by reading the matrix, and two cores read faster
 *   than one once the matrix is past ~2 MB (half a million floats).
 * Inside an epoch the narrow (m = 100) weight-gradient GEMM at B = 128 gains from two threads
 * although it loses alone: the epoch measurement decided (B = 128: 285k -> 315k samples/s).
 */
int bp_gemm_threads(bp_trans ta, bp_trans tb, int m, int n, int k, int max_threads)
{
    (void)ta;
    (void)tb;
    if (max_threads <= 1)
        return 1;
    double mk = (double)m * k;
    if (n == 1)
        return mk >= 512.0 * 1024 ? max_threads : 1;
    double enough = (m >= 512 ? 4.0 : 8.0) * 1024 * 1024;
    if (mk * n < enough || m < 64)
        return 1;
    return max_threads;
}

/* Atomic: nets may be made on several threads at once, and the first bp_get_threads() of each
 * may set it. */
static atomic_int thread_count;

/* The process-wide count: the default of nets made afterwards, and OpenBLAS's ceiling for calls
 * made outside a net's step. */
bp_status bp_set_threads(int n)
{
    if (n <= 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        n = cores > 0 ? (int)cores : 1;
    }
    atomic_store(&thread_count, n);
    /* The blas backend chooses per GEMM (kernels/threads.c); this is the ceiling, and what
     * OpenBLAS uses for any call made outside our backend. */
    bp_blas_use_threads(n);
    return BP_OK;
}

int bp_get_threads(void)
{
    int n = atomic_load(&thread_count);
    if (n == 0) {
        bp_set_threads(0);
        n = atomic_load(&thread_count);
    }
    return n;
}

static _Thread_local int thread_budget;

int bp_blas_thread_budget(void) { return thread_budget > 0 ? thread_budget : bp_get_threads(); }

int bp_blas_set_thread_budget(int threads)
{
    int previous = thread_budget;
    thread_budget = threads;
    return previous;
}

static atomic_int current_threads;

void bp_blas_use_threads(int threads)
{
#ifdef BP_OPENBLAS_SERIAL
    /* The ThreadSanitizer build (meson.build): TSan cannot judge OpenBLAS's own threads. */
    threads = 1;
#endif
    if (atomic_exchange(&current_threads, threads) != threads)
        openblas_set_num_threads(threads);
}
