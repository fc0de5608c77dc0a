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

/* The geometry of a sliding window over one column's image: c channels of h x w (channel-major,
 * element (ci, y, x) at ci*h*w + y*w + x), a kh x kw window moved by `stride` over the image
 * zero-padded by `pad` on every side, giving oh x ow positions (oh = (h + 2 pad - kh) / stride
 * + 1, likewise ow). Convolution and pooling share it; pooling has pad 0. */
typedef struct bp_window {
    int c, h, w;
    int kh, kw, stride, pad;
    int oh, ow;
} bp_window;

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

    /* Convolution's lowering to GEMM. With P = oh*ow positions and R = c*kh*kw window taps,
     * the columns of a batch stack into one matrix X of (cols*P) x R, ld ldx >= cols*P:
     *   X(j*P + oy*ow + ox, (ci*kh + ky)*kw + kx) = in_j(ci, oy*stride + ky - pad,
     *                                                   ox*stride + kx - pad),
     * 0 where that falls in the padding; in_j is column j of `in` (c*h*w floats, ld ldin).
     * With cols = 1 and ldx = P, X is one column's P x R matrix of windows, which times the
     * filters is the column's output planes (conv.c works a column at a time). */
    void (*im2col)(const bp_window *g, int cols, const float *in, int ldin, float *x, int ldx);
    /* The adjoint: out_j = the sum, over every entry of X that im2col would fill from an
     * element of in_j, of that entry (0 for elements no window covers). Overwrites out. */
    void (*col2im)(const bp_window *g, int cols, const float *x, int ldx, float *out, int ldout);
    /* A = act(Z + bias per channel) in place over cols columns of `channels` planes of `plane`
     * floats each (channel-major): z_j[ch*plane + p] = act(z_j[ch*plane + p] + bias[ch]). Not
     * for softmax. */
    void (*bias_act_planes)(bp_activation act, int plane, int channels, int cols,
                            const float *bias, float *z, int ldz);

    /* Pooling over a window with pad 0, per channel: out_j(ci, oy, ox) over c*oh*ow floats.
     * maxpool_fwd writes the window's maximum and, in arg (c*oh*ow floats per column, ld
     * ldarg), the index in in_j of the first element holding it (row-major order in the
     * window; exact as a float below 2^24); maxpool_bwd routes d to those indices, summing where
     * windows overlap, and writes 0 elsewhere in d_in (c*h*w). avgpool is the mean of the
     * window and its adjoint spreads d / (kh*kw) over it. The backward kernels overwrite d_in. */
    void (*maxpool_fwd)(const bp_window *g, int cols, const float *in, int ldin, float *out,
                        int ldout, float *arg, int ldarg);
    void (*maxpool_bwd)(const bp_window *g, int cols, const float *d, int ldd,
                        const float *arg, int ldarg, float *d_in, int ld_din);
    void (*avgpool_fwd)(const bp_window *g, int cols, const float *in, int ldin, float *out,
                        int ldout);
    void (*avgpool_bwd)(const bp_window *g, int cols, const float *d, int ldd, float *d_in,
                        int ld_din);

    /* One time step of an LSTM cell over cols columns (layers/lstm.c). Column j's gates, at
     * gates + j ldg, are 4h floats (input, forget, cell, output: PyTorch's order) of W_x x_t +
     * W_h h_{t-1} without the bias; lstm_fwd replaces them with their activations (sigmoid,
     * sigmoid, tanh, sigmoid of z + bias) and writes c = f c_prev + i g, tc = tanh c (h
     * floats each, column j at j lds; c_prev NULL at the first step: zeros) and out = o tc
     * (column j at j ldo).
     * lstm_bwd takes the activated gates, c_prev and tc, this step's dC/dh (dh) and the
     * dC/dc carried from the later steps (dc, both ld ldd), and leaves the gates' dC/dZ in
     * place of the gates and dC/dc_prev in dc. */
    void (*lstm_fwd)(int h, int cols, const float *bias, float *gates, int ldg,
                     const float *c_prev, float *c, float *tc, int lds, float *out, int ldo);
    void (*lstm_bwd)(int h, int cols, float *gates, int ldg, const float *c_prev,
                     const float *tc, int lds, const float *dh, float *dc, int ldd);
    /* One time step of a GRU cell over cols columns (layers/gru.c). Column j, at gates + j ldg,
     * holds W_x x_t (3h: r, z, n, PyTorch's order), W_h h_{t-1} (3h) and h_{t-1} (h), the
     * products without their biases bx and bh. gru_fwd turns the first 3h into r, z, n, the
     * n part of the second into hn = W_hn h_{t-1} + b_hn, and writes h_t to out (column j at
     * j ldo). gru_bwd takes those and this step's dC/dh_t (dh, ld ldd) and leaves the dC/dZ of
     * the first 3h and of the second 3h in their places, and z dh, the part of dC/dh_{t-1}
     * outside W_h, in dh. */
    void (*gru_fwd)(int h, int cols, const float *bx, const float *bh, float *gates, int ldg,
                    float *out, int ldo);
    void (*gru_bwd)(int h, int cols, float *gates, int ldg, float *dh, int ldd);
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
void bp_im2col_ref(const bp_window *g, int cols, const float *in, int ldin, float *x, int ldx);
void bp_col2im_ref(const bp_window *g, int cols, const float *x, int ldx, float *out, int ldout);
void bp_bias_act_planes_ref(bp_activation act, int plane, int channels, int cols,
                            const float *bias, float *z, int ldz);
void bp_maxpool_fwd_ref(const bp_window *g, int cols, const float *in, int ldin, float *out,
                        int ldout, float *arg, int ldarg);
void bp_maxpool_bwd_ref(const bp_window *g, int cols, const float *d, int ldd, const float *arg,
                        int ldarg, float *d_in, int ld_din);
void bp_avgpool_fwd_ref(const bp_window *g, int cols, const float *in, int ldin, float *out,
                        int ldout);
void bp_avgpool_bwd_ref(const bp_window *g, int cols, const float *d, int ldd, float *d_in,
                        int ld_din);

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
/* The window kernels (window.c) with their inner loops over contiguous runs: im2col and col2im
 * copy or add whole rows of a window's tap, the pooling kernels handle a row of outputs at a
 * time. The same values as the reference ones: im2col, bias_act_planes (relu, linear) and
 * pooling to the bit; col2im sums in another order (within rounding). */
/* The LSTM and GRU cells (recurrent.c): libm's exponential in the reference, vexp.h's in the fast form;
 * the backward pass has none and is shared. */
void bp_lstm_fwd_ref(int h, int cols, const float *bias, float *gates, int ldg,
                     const float *c_prev, float *c, float *tc, int lds, float *out, int ldo);
void bp_lstm_fwd_fast(int h, int cols, const float *bias, float *gates, int ldg,
                      const float *c_prev, float *c, float *tc, int lds, float *out, int ldo);
void bp_lstm_bwd(int h, int cols, float *gates, int ldg, const float *c_prev, const float *tc,
                 int lds, const float *dh, float *dc, int ldd);
void bp_gru_fwd_ref(int h, int cols, const float *bx, const float *bh, float *gates, int ldg,
                    float *out, int ldo);
void bp_gru_fwd_fast(int h, int cols, const float *bx, const float *bh, float *gates, int ldg,
                     float *out, int ldo);
void bp_gru_bwd(int h, int cols, float *gates, int ldg, float *dh, int ldd);
void bp_im2col_fast(const bp_window *g, int cols, const float *in, int ldin, float *x, int ldx);
void bp_col2im_fast(const bp_window *g, int cols, const float *x, int ldx, float *out,
                    int ldout);
void bp_bias_act_planes_fast(bp_activation act, int plane, int channels, int cols,
                             const float *bias, float *z, int ldz);
void bp_maxpool_fwd_fast(const bp_window *g, int cols, const float *in, int ldin, float *out,
                         int ldout, float *arg, int ldarg);
void bp_avgpool_fwd_fast(const bp_window *g, int cols, const float *in, int ldin, float *out,
                         int ldout);

#endif
