/* blas.c - the OpenBLAS backend: the reference table with sgemm replaced by cblas_sgemm. */
#include <cblas.h>

#include "kernels/backend.h"
#include "kernels/threads.h"

static void sgemm_blas(bp_trans ta, bp_trans tb, int m, int n, int k, float alpha,
                       const float *a, int lda, const float *b, int ldb, float beta, float *c,
                       int ldc)
{
    if (m <= 0 || n <= 0)
        return;
    bp_blas_use_threads(bp_gemm_threads(ta, tb, m, n, k, bp_get_threads()));
    cblas_sgemm(CblasColMajor, ta == BP_TRANS ? CblasTrans : CblasNoTrans,
                tb == BP_TRANS ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b, ldb, beta,
                c, ldc);
}

static void axpy_blas(size_t n, float alpha, const float *x, float *y)
{
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
    .bias_act = bp_bias_act_ref,
    .act_bwd_hadamard = bp_act_bwd_hadamard_ref,
    .rowsum = bp_rowsum_ref,
    .axpy = axpy_blas,
};
