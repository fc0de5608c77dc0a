/*
 * fast.c - the blas backend's elementwise kernels: the reference kernels' contracts
 * (elementwise.c, backend.h) with the exponential from vexp.h, the activation switch outside
 * the column loop, and a contiguous inner loop the compiler vectorises.
 *
 * When a matrix has ld == rows (how the net plans every buffer) its columns are one contiguous
 * run, and the exp-heavy loops go over all rows x cols values at once: for an output layer of
 * 10 rows a per-column loop would be mostly remainder iterations.
 *
 * The default build targets baseline x86-64 (SSE2), so the kernels are compiled several times
 * (GCC function multi-versioning) and the loader picks the widest clone the CPU supports.
 * Every clone does the same IEEE operations in the same order (no FMA contraction in C11 mode,
 * no reassociation without -ffast-math), so results do not depend on the machine, and the
 * row sums are in the reference's column order, bit for bit.
 */
#include "core/core.h"
#include "kernels/backend.h"
#include "kernels/vexp.h"

/* Loop helpers are inlined into each clone, so they are compiled for its ISA. */
#define BP_INLINE static inline __attribute__((always_inline))

/* ---- forward: A = act(Z + b 1^T) ---- */

/* Z(:, j) += b for every column: Z rows x cols, ld = ldz. */
BP_INLINE void add_bias(int rows, int cols, const float *restrict b, float *restrict z,
                        size_t ldz)
{
    for (int j = 0; j < cols; j++) {
        float *col = z + (size_t)j * ldz;
        for (int i = 0; i < rows; i++)
            col[i] += b[i];
    }
}

BP_INLINE void sigmoid_span(size_t n, float *restrict x)
{
    for (size_t i = 0; i < n; i++)
        x[i] = bp_vsigmoidf(x[i]);
}

BP_INLINE void tanh_span(size_t n, float *restrict x)
{
    for (size_t i = 0; i < n; i++)
        x[i] = bp_vtanhf(x[i]);
}

BP_INLINE void exp_span(size_t n, float *restrict x)
{
    for (size_t i = 0; i < n; i++)
        x[i] = bp_vexpf(x[i]);
}

/* The maximum of z + b over one column, as the reference takes it (a NaN after the first row
 * is skipped; the exponentials and the sum make the whole column NaN anyway). */
BP_INLINE float column_max(int rows, const float *restrict b, const float *restrict col)
{
    float max = col[0] + b[0];
    for (int i = 1; i < rows; i++) {
        float v = col[i] + b[i];
        max = v > max ? v : max;
    }
    return max;
}

/* Softmax down each column, in three passes so the exponentials form one contiguous loop:
 * (1) the column maximum m of z + b, then z = (z + b) - m, so every exponent is <= 0: nothing
 * overflows and the largest term is exactly 1 (as in the reference); (2) e^z; (3) divide by the
 * column sum, summed in row order like the reference. A column holding +Inf gives NaN, as
 * there. Two details for short columns (10 rows for MNIST): the maximum is taken without
 * writing z (and z + b recomputed), since scalar stores followed by vector loads of the same
 * bytes stall on store forwarding; and four columns are reduced in one loop, so that four
 * dependency chains (max, sum) run side by side, each still in row order. */
BP_INLINE void softmax_block(int rows, int cols, const float *restrict b, float *restrict z,
                             size_t ldz)
{
    enum { K = 4 };
    int j = 0;
    for (; j + K <= cols; j += K) {
        float *col = z + (size_t)j * ldz;
        float max[K];
        for (int k = 0; k < K; k++)
            max[k] = col[k * ldz] + b[0];
        for (int i = 1; i < rows; i++)
            for (int k = 0; k < K; k++) {
                float v = col[i + k * ldz] + b[i];
                max[k] = v > max[k] ? v : max[k];
            }
        for (int k = 0; k < K; k++)
            for (int i = 0; i < rows; i++)
                col[i + k * ldz] = (col[i + k * ldz] + b[i]) - max[k];
    }
    for (; j < cols; j++) {
        float *col = z + (size_t)j * ldz;
        float max = column_max(rows, b, col);
        for (int i = 0; i < rows; i++)
            col[i] = (col[i] + b[i]) - max;
    }

    if (ldz == (size_t)rows)
        exp_span((size_t)rows * (size_t)cols, z);
    else
        for (j = 0; j < cols; j++)
            exp_span((size_t)rows, z + (size_t)j * ldz);

    for (j = 0; j + K <= cols; j += K) {
        float *col = z + (size_t)j * ldz;
        float sum[K] = {0.0f};
        for (int i = 0; i < rows; i++)
            for (int k = 0; k < K; k++)
                sum[k] += col[i + k * ldz];
        for (int k = 0; k < K; k++) {
            float inv = 1.0f / sum[k];
            for (int i = 0; i < rows; i++)
                col[i + k * ldz] *= inv;
        }
    }
    for (; j < cols; j++) {
        float *col = z + (size_t)j * ldz;
        float sum = 0.0f;
        for (int i = 0; i < rows; i++)
            sum += col[i];
        float inv = 1.0f / sum;
        for (int i = 0; i < rows; i++)
            col[i] *= inv;
    }
}

/* Z: rows x cols, ld = ldz, overwritten by A; bias: rows. */
BP_CLONES void bp_bias_act_fast(bp_activation act, int rows, int cols, const float *bias,
                                float *z, int ldz)
{
    if (rows <= 0 || cols <= 0)
        return;
    size_t ld = (size_t)ldz, n = (size_t)rows * (size_t)cols;
    int flat = ld == (size_t)rows;
    switch (act) {
    case BP_ACT_SIGMOID:
        if (flat) {
            add_bias(rows, cols, bias, z, ld);
            sigmoid_span(n, z);
        } else {
            for (int j = 0; j < cols; j++) {
                float *restrict col = z + (size_t)j * ld;
                for (int i = 0; i < rows; i++)
                    col[i] = bp_vsigmoidf(col[i] + bias[i]);
            }
        }
        break;
    case BP_ACT_TANH:
        if (flat) {
            add_bias(rows, cols, bias, z, ld);
            tanh_span(n, z);
        } else {
            for (int j = 0; j < cols; j++) {
                float *restrict col = z + (size_t)j * ld;
                for (int i = 0; i < rows; i++)
                    col[i] = bp_vtanhf(col[i] + bias[i]);
            }
        }
        break;
    case BP_ACT_RELU:
        /* No exp to amortise a second pass over Z: fused, per column. */
        for (int j = 0; j < cols; j++) {
            float *restrict col = z + (size_t)j * ld;
            for (int i = 0; i < rows; i++) {
                float v = col[i] + bias[i];
                col[i] = v > 0.0f ? v : 0.0f;
            }
        }
        break;
    case BP_ACT_LINEAR:
        add_bias(rows, cols, bias, z, ld);
        break;
    case BP_ACT_SOFTMAX:
        softmax_block(rows, cols, bias, z, ld);
        break;
    default:
        break;
    }
}

/* Z: cols columns of `channels` planes of `plane` floats (ld = ldz); plane p of a column gets
 * bias[p] before the activation. Each plane is a contiguous run: one vectorised pass. */
BP_CLONES void bp_bias_act_planes_fast(bp_activation act, int plane, int channels, int cols,
                                       const float *bias, float *z, int ldz)
{
    size_t n = (size_t)plane;
    for (int j = 0; j < cols; j++)
        for (int c = 0; c < channels; c++) {
            float *restrict x = z + (size_t)j * ldz + (size_t)c * n;
            float b = bias[c];
            switch (act) {
            case BP_ACT_SIGMOID:
                for (size_t i = 0; i < n; i++)
                    x[i] = bp_vsigmoidf(x[i] + b);
                break;
            case BP_ACT_TANH:
                for (size_t i = 0; i < n; i++)
                    x[i] = bp_vtanhf(x[i] + b);
                break;
            case BP_ACT_RELU:
                for (size_t i = 0; i < n; i++) {
                    float v = x[i] + b;
                    x[i] = v > 0.0f ? v : 0.0f;
                }
                break;
            case BP_ACT_LINEAR:
                for (size_t i = 0; i < n; i++)
                    x[i] += b;
                break;
            default: /* softmax is refused when a layer is planned */
                break;
            }
        }
}

/* ---- BP2's Hadamard: D = D .* act'(Z), act' through A ---- */

/* A: rows x cols, ld = lda; D: rows x cols, ld = ldd, updated. Contiguous A and D are walked
 * as one column of rows * cols. The products are the reference's, in its order. */
BP_CLONES void bp_act_bwd_hadamard_fast(bp_activation act, int rows, int cols, const float *a,
                                        int lda, float *d, int ldd)
{
    if (rows <= 0 || cols <= 0)
        return;
    size_t n = (size_t)rows, m = (size_t)cols; /* m columns of n */
    if (lda == rows && ldd == rows) {
        n *= m;
        m = 1;
    }
    switch (act) {
    case BP_ACT_SIGMOID:
        for (size_t j = 0; j < m; j++) {
            const float *restrict ac = a + j * (size_t)lda;
            float *restrict dc = d + j * (size_t)ldd;
            for (size_t i = 0; i < n; i++)
                dc[i] *= ac[i] * (1.0f - ac[i]);
        }
        break;
    case BP_ACT_TANH:
        for (size_t j = 0; j < m; j++) {
            const float *restrict ac = a + j * (size_t)lda;
            float *restrict dc = d + j * (size_t)ldd;
            for (size_t i = 0; i < n; i++)
                dc[i] *= 1.0f - ac[i] * ac[i];
        }
        break;
    case BP_ACT_RELU:
        /* The subgradient at 0 is 0, as in the reference. */
        for (size_t j = 0; j < m; j++) {
            const float *restrict ac = a + j * (size_t)lda;
            float *restrict dc = d + j * (size_t)ldd;
            for (size_t i = 0; i < n; i++)
                dc[i] = ac[i] > 0.0f ? dc[i] : 0.0f;
        }
        break;
    default: /* linear: the derivative is 1; softmax never reaches here */
        break;
    }
}

/* ---- BP3: out = alpha D 1 ---- */

/* D: rows x cols, ld = ldd; out: rows. Each row is summed in column order, as in the
 * reference (so the result is the same to the bit); the vectors run down the rows. */
BP_CLONES void bp_rowsum_fast(int rows, int cols, float alpha, const float *d, int ldd,
                              float *out)
{
    if (rows <= 0)
        return;
    float *restrict o = out;
    size_t ld = (size_t)ldd;
    for (int i = 0; i < rows; i++)
        o[i] = 0.0f;
    /* Four columns per pass over out: a quarter of its loads and stores, the same order. */
    int j = 0;
    for (; j + 4 <= cols; j += 4) {
        const float *restrict c0 = d + (size_t)j * ld, *restrict c1 = c0 + ld,
                              *restrict c2 = c1 + ld, *restrict c3 = c2 + ld;
        for (int i = 0; i < rows; i++)
            o[i] = (((o[i] + c0[i]) + c1[i]) + c2[i]) + c3[i];
    }
    for (; j < cols; j++) {
        const float *restrict dc = d + (size_t)j * ld;
        for (int i = 0; i < rows; i++)
            o[i] += dc[i];
    }
    for (int i = 0; i < rows; i++)
        o[i] *= alpha;
}

/* ---- the update ---- */

/* y += alpha x over n contiguous floats. */
BP_CLONES void bp_axpy_fast(size_t n, float alpha, const float *x, float *y)
{
    const float *restrict xr = x;
    float *restrict yr = y;
    for (size_t i = 0; i < n; i++)
        yr[i] += alpha * xr[i];
}

/* ---- the exponential as an array operation, for tests and benchmarks ---- */

BP_CLONES void bp_vexp_fast(size_t n, const float *restrict x, float *restrict y)
{
    for (size_t i = 0; i < n; i++)
        y[i] = bp_vexpf(x[i]);
}
