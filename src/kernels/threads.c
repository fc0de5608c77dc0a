/* threads.c - the per-shape thread choice for OpenBLAS sgemm (see threads.h for why). */
#include <stdatomic.h>

#include <cblas.h>

#include "kernels/threads.h"

/*
 * The rule, from timing every GEMM of [784,100,10] and [784,1024,1024,10] steps at B = 1 .. 1024
 * with one and two threads (bench/ops reports the same table):
 * - below about 4 million multiply-adds the second thread's start-up and the split's smaller
 *   blocks cost more than it brings;
 * - OpenBLAS splits the rows of C: with fewer than 64 rows (an output layer of 10) each thread
 *   gets a sliver too thin for its kernel;
 * - the NT product D A^T with fewer than 256 rows (a 100-neuron layer's weight gradient) is
 *   slower or no faster on two threads up to B = 256 (100 x 784 x 256), 22% faster at
 *   B = 1024 (100 x 784 x 1024);
 * - a matrix-vector product (B = 1) is bound by reading the matrix, and two cores read faster
 *   than one once the matrix is past ~2 MB (half a million floats).
 */
int bp_gemm_threads(bp_trans ta, bp_trans tb, int m, int n, int k, int max_threads)
{
    (void)ta;
    if (max_threads <= 1)
        return 1;
    double mk = (double)m * k;
    if (n == 1)
        return mk >= 512.0 * 1024 ? max_threads : 1;
    if (mk * n < 4.0 * 1024 * 1024 || m < 64)
        return 1;
    if (tb == BP_TRANS && m < 256 && mk * n < 32.0 * 1024 * 1024)
        return 1;
    return max_threads;
}

static atomic_int current_threads;

void bp_blas_use_threads(int threads)
{
    if (atomic_exchange(&current_threads, threads) != threads)
        openblas_set_num_threads(threads);
}
