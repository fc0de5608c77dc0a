/*
 * elementwise.c - the reference elementwise kernels: bias + activation (forward), activation
 * derivative (.) delta (BP2's Hadamard), row sums (BP3), axpy (the update). Each is one pass
 * over contiguous columns, written so the compiler can vectorise the inner loop.
 */
#include <math.h>

#include "kernels/backend.h"

/* sigma(z) = 1 / (1 + e^-z); for z < -88 e^-z overflows to inf and the result is exactly 0,
 * which is the right limit. */
static inline float sigmoidf(float z) { return 1.0f / (1.0f + expf(-z)); }

/* Softmax of one column: a_j = e^(z_j - max) / sum_k e^(z_k - max). Subtracting the maximum
 * keeps every exponent <= 0, so nothing overflows and the largest term is exactly 1. */
static void softmax_column(int rows, float *z)
{
    float max = z[0];
    for (int i = 1; i < rows; i++)
        max = z[i] > max ? z[i] : max;
    float sum = 0.0f;
    for (int i = 0; i < rows; i++) {
        z[i] = expf(z[i] - max);
        sum += z[i];
    }
    float inv = 1.0f / sum;
    for (int i = 0; i < rows; i++)
        z[i] *= inv;
}

void bp_bias_act_ref(bp_activation act, int rows, int cols, const float *bias, float *z, int ldz)
{
    for (int j = 0; j < cols; j++) {
        float *col = z + (size_t)j * ldz;
        switch (act) {
        case BP_ACT_SIGMOID:
            for (int i = 0; i < rows; i++)
                col[i] = sigmoidf(col[i] + bias[i]);
            break;
        case BP_ACT_TANH:
            for (int i = 0; i < rows; i++)
                col[i] = tanhf(col[i] + bias[i]);
            break;
        case BP_ACT_RELU:
            for (int i = 0; i < rows; i++) {
                float v = col[i] + bias[i];
                col[i] = v > 0.0f ? v : 0.0f;
            }
            break;
        case BP_ACT_LINEAR:
            for (int i = 0; i < rows; i++)
                col[i] += bias[i];
            break;
        case BP_ACT_SOFTMAX:
            for (int i = 0; i < rows; i++)
                col[i] += bias[i];
            softmax_column(rows, col);
            break;
        default:
            break;
        }
    }
}

void bp_bias_act_planes_ref(bp_activation act, int plane, int channels, int cols,
                            const float *bias, float *z, int ldz)
{
    for (int j = 0; j < cols; j++)
        for (int c = 0; c < channels; c++) {
            float *x = z + (size_t)j * ldz + (size_t)c * (size_t)plane;
            for (int i = 0; i < plane; i++) {
                float v = x[i] + bias[c];
                switch (act) {
                case BP_ACT_SIGMOID: x[i] = sigmoidf(v); break;
                case BP_ACT_TANH: x[i] = tanhf(v); break;
                case BP_ACT_RELU: x[i] = v > 0.0f ? v : 0.0f; break;
                case BP_ACT_LINEAR: x[i] = v; break;
                default: break; /* softmax is refused when a layer is planned */
                }
            }
        }
}

void bp_act_bwd_hadamard_ref(bp_activation act, int rows, int cols, const float *a, int lda,
                             float *d, int ldd)
{
    for (int j = 0; j < cols; j++) {
        const float *ac = a + (size_t)j * lda;
        float *dc = d + (size_t)j * ldd;
        switch (act) {
        case BP_ACT_SIGMOID:
            for (int i = 0; i < rows; i++)
                dc[i] *= ac[i] * (1.0f - ac[i]);
            break;
        case BP_ACT_TANH:
            for (int i = 0; i < rows; i++)
                dc[i] *= 1.0f - ac[i] * ac[i];
            break;
        case BP_ACT_RELU:
            /* The subgradient at 0 is taken as 0, matching a = max(0, z) seen from the left. */
            for (int i = 0; i < rows; i++)
                dc[i] = ac[i] > 0.0f ? dc[i] : 0.0f;
            break;
        default: /* linear: the derivative is 1; softmax never reaches here */
            break;
        }
    }
}

void bp_rowsum_ref(int rows, int cols, float alpha, const float *d, int ldd, float *out)
{
    for (int i = 0; i < rows; i++)
        out[i] = 0.0f;
    /* Column by column, so memory is read in order; the sum per row is in column order. */
    for (int j = 0; j < cols; j++) {
        const float *dc = d + (size_t)j * ldd;
        for (int i = 0; i < rows; i++)
            out[i] += dc[i];
    }
    for (int i = 0; i < rows; i++)
        out[i] *= alpha;
}

void bp_axpy_ref(size_t n, float alpha, const float *x, float *y)
{
    for (size_t i = 0; i < n; i++)
        y[i] += alpha * x[i];
}
