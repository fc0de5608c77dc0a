/* blas.c - the OpenBLAS backend: sgemm through cblas_sgemm (and its k = 1 case by a rank-1
 * loop), the elementwise kernels from fast.c, and axpy from either. */
#include <cblas.h>

#include "core/core.h"
#include "kernels/backend.h"
#include "kernels/threads.h"

/* C = alpha a b^T + beta C for a contiguous column a (m) and a strided row b (n, stride incb):
 * the k = 1 product of BP4 at B = 1 (W -= eta d x^T). OpenBLAS 0.3.21 takes ~9 us for the
 * 100 x 784 case through sgemm and ~8 us through sger on SkylakeX (14 us through sger on
 * Zen 3); this loop, one axpy per column of C, takes ~5.7 us (5.3 us on Zen 3). Compiled for
 * AVX-512, AVX2 and baseline x86-64, picked when the library loads. */
BP_CLONES static void
rank1_update(int m, int n, float alpha, const float *restrict a, const float *restrict b,
             int incb, float beta, float *restrict c, int ldc)
{
    for (int j = 0; j < n; j++) {
        float bj = alpha * b[(size_t)j * incb];
        float *restrict cj = c + (size_t)j * ldc;
        if (beta == 0.0f)
            for (int i = 0; i < m; i++)
                cj[i] = bj * a[i];
        else if (beta == 1.0f) {
            /* As reference BLAS's sger does, a zero in b leaves its column alone: MNIST's
             * inputs are ~80% zero pixels, so BP4 of the first layer touches a fifth of W. */
            if (bj == 0.0f)
                continue;
            for (int i = 0; i < m; i++)
                cj[i] += bj * a[i];
        }
        else
            for (int i = 0; i < m; i++)
                cj[i] = beta * cj[i] + bj * a[i];
    }
}

/* c = alpha A x + beta c for A m x k (column-major, lda) when most of x is zero: only the
 * columns of A that meet a non-zero x_j are read. A forward pass at B = 1 on MNIST reads a fifth
 * of W this way; sgemv reads all of it. */
BP_CLONES static void
sparse_gemv_n(int m, int k, float alpha, const float *restrict a, int lda,
              const float *restrict x, float beta, float *restrict c)
{
    if (beta == 0.0f)
        for (int i = 0; i < m; i++)
            c[i] = 0.0f;
    else if (beta != 1.0f)
        for (int i = 0; i < m; i++)
            c[i] *= beta;
    for (int j = 0; j < k; j++) {
        float xj = alpha * x[j];
        if (xj == 0.0f)
            continue;
        const float *restrict aj = a + (size_t)j * lda;
        for (int i = 0; i < m; i++)
            c[i] += xj * aj[i];
    }
}

/* The share of zeros in x (n floats) from which sparse_gemv_n beats sgemv. */
static int mostly_zero(int n, const float *x)
{
    int zeros = 0;
    for (int j = 0; j < n; j++)
        zeros += x[j] == 0.0f;
    return zeros * 2 > n;
}

static void sgemm_blas(bp_trans ta, bp_trans tb, int m, int n, int k, float alpha,
                       const float *a, int lda, const float *b, int ldb, float beta, float *c,
                       int ldc)
{
    if (m <= 0 || n <= 0)
        return;
    if (k == 1 && ta == BP_NOTRANS) {
        /* op(B) is 1 x n: B^T's column (tb = T) is contiguous, B's row (tb = N) has stride ldb */
        rank1_update(m, n, alpha, a, b, tb == BP_TRANS ? 1 : ldb, beta, c, ldc);
        return;
    }
    bp_blas_use_threads(bp_gemm_threads(ta, tb, m, n, k, bp_blas_thread_budget()));
    if (n == 1 && k > 0) {
        /* One column of C (B = 1, or the evaluation of one sample): a matrix-vector product.
         * OpenBLAS 0.3.21 sends sgemm with n = 1 through its full packing path: 27-33 us for
         * the 100 x 784 products of [784,100,10] on Zen 3, against 5.4-6.9 us through sgemv.
         * op(B) is k x 1: B's first column (tb = N) or first row (tb = T, stride ldb). */
        if (ta == BP_NOTRANS && tb == BP_NOTRANS && mostly_zero(k, b)) {
            sparse_gemv_n(m, k, alpha, a, lda, b, beta, c);
            return;
        }
        int rows_a = ta == BP_TRANS ? k : m, cols_a = ta == BP_TRANS ? m : k;
        if (beta == 0.0f) /* the contract: C is not read; sgemv would scale it (NaN * 0) */
            for (int i = 0; i < m; i++)
                c[i] = 0.0f;
        cblas_sgemv(CblasColMajor, ta == BP_TRANS ? CblasTrans : CblasNoTrans, rows_a, cols_a,
                    alpha, a, lda, b, tb == BP_TRANS ? ldb : 1, beta, c, 1);
        return;
    }
    cblas_sgemm(CblasColMajor, ta == BP_TRANS ? CblasTrans : CblasNoTrans,
                tb == BP_TRANS ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b, ldb, beta,
                c, ldc);
}

/* y += alpha x. Below 2^17 floats, where x and y still sit in L2, the fast loop wins (1.1x at
 * 100 floats, 1.6-2.3x at 10^4-10^5: saxpy's call and thread overhead); beyond, memory
 * bandwidth rules and OpenBLAS's threads win (1.7x at 2^20 floats with 2 threads, equal with
 * 1). Measured on the development machine (AVX-512), OpenBLAS 0.3.21. */
static void axpy_blas(size_t n, float alpha, const float *x, float *y)
{
    if (n < ((size_t)1 << 17)) {
        bp_axpy_fast(n, alpha, x, y);
        return;
    }
    /* saxpy takes an int length; arenas beyond 2^31 floats go through in pieces. */
    while (n > 0) {
        int chunk = n > (1u << 30) ? (1 << 30) : (int)n;
        cblas_saxpy(chunk, alpha, x, 1, y, 1);
        x += chunk;
        y += chunk;
        n -= (size_t)chunk;
    }
}

const bp_backend bp_backend_blas = {
    .name = "blas",
    .sgemm = sgemm_blas,
    .bias_act = bp_bias_act_fast,
    .act_bwd_hadamard = bp_act_bwd_hadamard_fast,
    .rowsum = bp_rowsum_fast,
    .axpy = axpy_blas,
    .im2col = bp_im2col_fast,
    .col2im = bp_col2im_fast,
    .bias_act_planes = bp_bias_act_planes_fast,
    .maxpool_fwd = bp_maxpool_fwd_fast,
    .maxpool_bwd = bp_maxpool_bwd_ref, /* a scatter: nothing to vectorise */
    .avgpool_fwd = bp_avgpool_fwd_fast,
    .avgpool_bwd = bp_avgpool_bwd_ref,
    .lstm_fwd = bp_lstm_fwd_fast,
    .lstm_bwd = bp_lstm_bwd,
    .gru_fwd = bp_gru_fwd_fast,
    .gru_bwd = bp_gru_bwd,
};
