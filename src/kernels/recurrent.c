/*
 * recurrent.c - the LSTM and GRU cells of one time step over a block of columns, forward and
 * backward, each a few passes over the gates (layers/lstm.c and gru.c do the GEMMs around
 * them).
 *
 * The reference form calls libm's expf and tanhf; the fast form inlines vexp.h's sigmoid and
 * tanh into the same loop, compiled once per ISA, so it vectorises. The two agree to within
 * vexp.h's 2 ulp per activation, not to the bit (tests/test_lstm.c compares them).
 */
#include <math.h>
#include <stddef.h>

#include "core/core.h"
#include "kernels/backend.h"
#include "kernels/vexp.h"

#define BP_INLINE static inline __attribute__((always_inline))

BP_INLINE float sigmoid_of(float z, int fast)
{
    return fast ? bp_vsigmoidf(z) : 1.0f / (1.0f + expf(-z));
}

BP_INLINE float tanh_of(float z, int fast) { return fast ? bp_vtanhf(z) : tanhf(z); }

/* One column: the gates z (i, f, g, o: four runs of h floats, before the bias) become their
 * activations in place; c = f c_prev + i g, tc = tanh c, out = o tc. Each pass is a loop over
 * one contiguous run with no branch inside, which the compiler vectorises (one loop doing all
 * of it per unit did not vectorise, and took two thirds of an LSTM epoch). `fast` is a
 * constant in each caller, so the choice of functions folds away. */
BP_INLINE void lstm_column_fwd(int h, const float *restrict bias, float *restrict z,
                               const float *restrict c_prev, float *restrict c,
                               float *restrict tc, float *restrict out, int fast)
{
    for (int k = 0; k < 2 * h; k++)
        z[k] = sigmoid_of(z[k] + bias[k], fast);
    for (int k = 2 * h; k < 3 * h; k++)
        z[k] = tanh_of(z[k] + bias[k], fast);
    for (int k = 3 * h; k < 4 * h; k++)
        z[k] = sigmoid_of(z[k] + bias[k], fast);
    const float *i = z, *f = z + h, *g = z + 2 * h, *o = z + 3 * h;
    if (c_prev)
        for (int k = 0; k < h; k++)
            c[k] = f[k] * c_prev[k] + i[k] * g[k];
    else
        for (int k = 0; k < h; k++)
            c[k] = i[k] * g[k];
    for (int k = 0; k < h; k++)
        tc[k] = tanh_of(c[k], fast);
    for (int k = 0; k < h; k++)
        out[k] = o[k] * tc[k];
}

void bp_lstm_fwd_ref(int h, int cols, const float *bias, float *gates, int ldg,
                     const float *c_prev, float *c, float *tc, int lds, float *out, int ldo)
{
    for (int j = 0; j < cols; j++) {
        size_t s = (size_t)j * lds;
        lstm_column_fwd(h, bias, gates + (size_t)j * ldg, c_prev ? c_prev + s : NULL, c + s,
                        tc + s, out + (size_t)j * ldo, 0);
    }
}

BP_CLONES void bp_lstm_fwd_fast(int h, int cols, const float *bias, float *gates, int ldg,
                                const float *c_prev, float *c, float *tc, int lds, float *out,
                                int ldo)
{
    for (int j = 0; j < cols; j++) {
        size_t s = (size_t)j * lds;
        lstm_column_fwd(h, bias, gates + (size_t)j * ldg, c_prev ? c_prev + s : NULL, c + s,
                        tc + s, out + (size_t)j * ldo, 1);
    }
}

/* One column backward, from the activated gates, c_prev, tanh c and this step's dC/dh (dh)
 * and dC/dc from the steps after it (dc): the gates' dC/dZ replace the gates, dC/dc_prev
 * replaces dc. No exponential, so one form serves both tables. */
BP_CLONES void bp_lstm_bwd(int h, int cols, float *gates, int ldg, const float *c_prev,
                           const float *tc, int lds, const float *dh, float *dc, int ldd)
{
    for (int j = 0; j < cols; j++) {
        float *restrict z = gates + (size_t)j * ldg;
        const float *restrict cp = c_prev ? c_prev + (size_t)j * lds : NULL;
        const float *restrict t = tc + (size_t)j * lds;
        const float *restrict dhj = dh + (size_t)j * ldd;
        float *restrict dcj = dc + (size_t)j * ldd;
        for (int k = 0; k < h; k++) {
            float i = z[k], f = z[h + k], g = z[2 * h + k], o = z[3 * h + k], tk = t[k];
            float dct = dcj[k] + dhj[k] * o * (1.0f - tk * tk);
            float before = cp ? cp[k] : 0.0f;
            z[k] = dct * g * i * (1.0f - i);
            z[h + k] = dct * before * f * (1.0f - f);
            z[2 * h + k] = dct * i * (1.0f - g * g);
            z[3 * h + k] = dhj[k] * tk * o * (1.0f - o);
            dcj[k] = dct * f;
        }
    }
}

/* One GRU column (PyTorch's equations and gate order r, z, n): x = W_x x_t and hz = W_h h_{t-1}
 * (3h floats each, before their biases), then hp = h_{t-1}:
 *   r = sigmoid(x_r + b_xr + hz_r + b_hr), z likewise, hn = hz_n + b_hn,
 *   n = tanh(x_n + b_xn + r hn), h_t = (1 - z) n + z h_{t-1}.
 * x becomes r, z, n; hz's n part becomes hn (BPTT needs it); the rest of hz is spent. */
BP_INLINE void gru_column_fwd(int h, const float *restrict bx, const float *restrict bh,
                              float *restrict x, float *restrict hz, const float *restrict hp,
                              float *restrict out, int fast)
{
    for (int k = 0; k < 2 * h; k++)
        x[k] = sigmoid_of(x[k] + bx[k] + hz[k] + bh[k], fast);
    float *restrict hn = hz + 2 * h, *restrict n = x + 2 * h;
    const float *r = x, *z = x + h;
    for (int k = 0; k < h; k++)
        hn[k] += bh[2 * h + k];
    for (int k = 0; k < h; k++)
        n[k] = tanh_of(n[k] + bx[2 * h + k] + r[k] * hn[k], fast);
    for (int k = 0; k < h; k++)
        out[k] = n[k] + z[k] * (hp[k] - n[k]);
}

void bp_gru_fwd_ref(int h, int cols, const float *bx, const float *bh, float *gates, int ldg,
                    float *out, int ldo)
{
    for (int j = 0; j < cols; j++) {
        float *g = gates + (size_t)j * ldg;
        gru_column_fwd(h, bx, bh, g, g + 3 * h, g + 6 * h, out + (size_t)j * ldo, 0);
    }
}

BP_CLONES void bp_gru_fwd_fast(int h, int cols, const float *bx, const float *bh, float *gates,
                               int ldg, float *out, int ldo)
{
    for (int j = 0; j < cols; j++) {
        float *g = gates + (size_t)j * ldg;
        gru_column_fwd(h, bx, bh, g, g + 3 * h, g + 6 * h, out + (size_t)j * ldo, 1);
    }
}

/* One GRU column backward, from r, z, n, hn and h_{t-1} and this step's dC/dh_t (dh): the x
 * side gets dC/dZ of x_r, x_z, x_n, the h side dC/dZ of hz_r, hz_z, hz_n (the first two the
 * same, the third r times the second's n part), and dh becomes z dh, the part of dC/dh_{t-1}
 * that does not pass through W_h. */
BP_CLONES void bp_gru_bwd(int h, int cols, float *gates, int ldg, float *dh, int ldd)
{
    for (int j = 0; j < cols; j++) {
        float *restrict x = gates + (size_t)j * ldg, *restrict hz = x + 3 * h;
        const float *restrict hp = x + 6 * h;
        float *restrict d = dh + (size_t)j * ldd;
        for (int k = 0; k < h; k++) {
            float r = x[k], z = x[h + k], n = x[2 * h + k], hn = hz[2 * h + k], dk = d[k];
            float dn = dk * (1.0f - z) * (1.0f - n * n);
            float dz = dk * (hp[k] - n) * z * (1.0f - z);
            float dr = dn * hn * r * (1.0f - r);
            x[k] = hz[k] = dr;
            x[h + k] = hz[h + k] = dz;
            x[2 * h + k] = dn;
            hz[2 * h + k] = dn * r;
            d[k] = dk * z;
        }
    }
}
