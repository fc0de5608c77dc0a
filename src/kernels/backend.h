/*
 * backend.h - the backend table: the arithmetic a network needs, in two interchangeable forms.
 *
 * `naive` is the textbook reference (plain loops, the test oracle and the benchmark baseline);
 * `blas` starts from the same table and overrides the entries that earn it (sgemm through
 * OpenBLAS). Layers call these pointers and never BLAS directly.
 *
 * The contract, for every backend:
 * - column-major: element (i, j) of a matrix is p[i + j * ld], ld >= rows;
 * - sgemm computes C = alpha op(A) op(B) + beta C for all four transpose cases; beta == 0
 *   means C is not read (NaN or garbage in C does not survive); m, n or k == 0 returns at once
 *   (with k == 0, C = beta C);
 * - shapes are checked by the caller, once, when a net is planned: kernels do not check.
 */
#ifndef BP_BACKEND_H
#define BP_BACKEND_H

#include <stddef.h>

#include "backprop.h"

typedef enum bp_trans { BP_NOTRANS = 0, BP_TRANS = 1 } bp_trans;

typedef struct bp_backend {
    const char *name;

    /* C (m x n) = alpha op(A) op(B) + beta C; op(A) is m x k, op(B) is k x n. */
    void (*sgemm)(bp_trans ta, bp_trans tb, int m, int n, int k, float alpha, const float *a,
                  int lda, const float *b, int ldb, float beta, float *c, int ldc);

    /* Forward, fused: A = act(Z + b 1^T) in place over Z (rows x cols). For softmax the
     * activation runs down each column. */
    void (*bias_act)(bp_activation act, int rows, int cols, const float *bias, float *z, int ldz);

    /* BP2's Hadamard, fused: D = D .* act'(Z), with act' expressed through A = act(Z)
     * (sigmoid: a(1-a), tanh: 1-a^2, relu: a > 0, linear: 1). Not for softmax. */
    void (*act_bwd_hadamard)(bp_activation act, int rows, int cols, const float *a, int lda,
                             float *d, int ldd);

    /* BP3: out[i] = alpha * sum_j D(i, j). */
    void (*rowsum)(int rows, int cols, float alpha, const float *d, int ldd, float *out);

    /* y += alpha x over n contiguous floats: the fused bias update (b += alpha G_b). */
    void (*axpy)(size_t n, float alpha, const float *x, float *y);
} bp_backend;

extern const bp_backend bp_backend_naive;
extern const bp_backend bp_backend_blas;

/* The table named `name`, or NULL. */
const bp_backend *bp_backend_find(const char *name);

/* The reference kernels, shared by the tables and used by tests as the oracle. */
void bp_sgemm_naive(bp_trans ta, bp_trans tb, int m, int n, int k, float alpha, const float *a,
                    int lda, const float *b, int ldb, float beta, float *c, int ldc);
void bp_bias_act_ref(bp_activation act, int rows, int cols, const float *bias, float *z, int ldz);
void bp_act_bwd_hadamard_ref(bp_activation act, int rows, int cols, const float *a, int lda,
                             float *d, int ldd);
void bp_rowsum_ref(int rows, int cols, float alpha, const float *d, int ldd, float *out);
void bp_axpy_ref(size_t n, float alpha, const float *x, float *y);

/* The fast elementwise kernels (fast.c), used by `blas`: the same contracts, with a vectorisable
 * exp (vexp.h), compiled per ISA and chosen at load time. They agree with the reference
 * kernels within a few ulp (sigmoid, tanh, softmax) or to the bit (relu, linear, the Hadamard
 * products, row sums, axpy), and give the same bits on every x86-64. `blas` hands axpy over
 * 2^17 floats to OpenBLAS, whose threads win there. */
void bp_bias_act_fast(bp_activation act, int rows, int cols, const float *bias, float *z,
                      int ldz);
void bp_act_bwd_hadamard_fast(bp_activation act, int rows, int cols, const float *a, int lda,
                              float *d, int ldd);
void bp_rowsum_fast(int rows, int cols, float alpha, const float *d, int ldd, float *out);
void bp_axpy_fast(size_t n, float alpha, const float *x, float *y);

#endif
