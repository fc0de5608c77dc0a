/*
 * window.c - the kernels of sliding windows over a column's image (bp_window, backend.h):
 * im2col and col2im, convolution's lowering to GEMM, and max and average pooling. The
 * reference forms visit one output element at a time with every bound checked; the fast forms
 * work on a row of outputs at a time, with each window tap's valid range of positions computed
 * once, so the inner loops are contiguous copies (stride 1) or short strided ones without
 * branches. Both visit the contributions to any one element in the same order, so they give
 * the same bits (backend.h).
 */
#include <stdint.h>
#include <string.h>

#include "core/core.h"
#include "kernels/backend.h"

/* The input element (y, x) of channel ci's plane for output (oy, ox) and tap (ky, kx), or -1
 * in the padding. */
static inline long tap_index(const bp_window *g, int ci, int oy, int ox, int ky, int kx)
{
    int y = oy * g->stride + ky - g->pad, x = ox * g->stride + kx - g->pad;
    if (y < 0 || y >= g->h || x < 0 || x >= g->w)
        return -1;
    return ((long)ci * g->h + y) * g->w + x;
}

void bp_im2col_ref(const bp_window *g, int cols, const float *in, int ldin, float *x, int ldx)
{
    size_t plane = (size_t)g->oh * g->ow;
    for (int ci = 0; ci < g->c; ci++)
        for (int ky = 0; ky < g->kh; ky++)
            for (int kx = 0; kx < g->kw; kx++) {
                float *tap = x + (size_t)((ci * g->kh + ky) * g->kw + kx) * ldx;
                for (int j = 0; j < cols; j++)
                    for (int oy = 0; oy < g->oh; oy++)
                        for (int ox = 0; ox < g->ow; ox++) {
                            long at = tap_index(g, ci, oy, ox, ky, kx);
                            tap[j * plane + (size_t)oy * g->ow + ox] =
                                at < 0 ? 0.0f : in[(size_t)j * ldin + (size_t)at];
                        }
            }
}

void bp_col2im_ref(const bp_window *g, int cols, const float *x, int ldx, float *out, int ldout)
{
    size_t plane = (size_t)g->oh * g->ow, image = (size_t)g->c * g->h * g->w;
    for (int j = 0; j < cols; j++)
        memset(out + (size_t)j * ldout, 0, sizeof(float) * image);
    for (int ci = 0; ci < g->c; ci++)
        for (int ky = 0; ky < g->kh; ky++)
            for (int kx = 0; kx < g->kw; kx++) {
                const float *tap = x + (size_t)((ci * g->kh + ky) * g->kw + kx) * ldx;
                for (int j = 0; j < cols; j++)
                    for (int oy = 0; oy < g->oh; oy++)
                        for (int ox = 0; ox < g->ow; ox++) {
                            long at = tap_index(g, ci, oy, ox, ky, kx);
                            if (at >= 0)
                                out[(size_t)j * ldout + (size_t)at] +=
                                    tap[j * plane + (size_t)oy * g->ow + ox];
                        }
            }
}

void bp_maxpool_fwd_ref(const bp_window *g, int cols, const float *in, int ldin, float *out,
                        int ldout, float *arg, int ldarg)
{
    for (int j = 0; j < cols; j++)
        for (int ci = 0; ci < g->c; ci++)
            for (int oy = 0; oy < g->oh; oy++)
                for (int ox = 0; ox < g->ow; ox++) {
                    const float *img = in + (size_t)j * ldin;
                    long best = tap_index(g, ci, oy, ox, 0, 0);
                    for (int ky = 0; ky < g->kh; ky++)
                        for (int kx = 0; kx < g->kw; kx++) {
                            long at = tap_index(g, ci, oy, ox, ky, kx);
                            if (img[at] > img[best])
                                best = at;
                        }
                    size_t o = ((size_t)ci * g->oh + oy) * g->ow + ox;
                    out[(size_t)j * ldout + o] = img[best];
                    arg[(size_t)j * ldarg + o] = (float)best;
                }
}

void bp_maxpool_bwd_ref(const bp_window *g, int cols, const float *d, int ldd, const float *arg,
                        int ldarg, float *d_in, int ld_din)
{
    size_t outs = (size_t)g->c * g->oh * g->ow, image = (size_t)g->c * g->h * g->w;
    for (int j = 0; j < cols; j++) {
        float *dj = d_in + (size_t)j * ld_din;
        memset(dj, 0, sizeof(float) * image);
        for (size_t o = 0; o < outs; o++)
            dj[(size_t)arg[(size_t)j * ldarg + o]] += d[(size_t)j * ldd + o];
    }
}

void bp_avgpool_fwd_ref(const bp_window *g, int cols, const float *in, int ldin, float *out,
                        int ldout)
{
    float n = (float)(g->kh * g->kw);
    for (int j = 0; j < cols; j++)
        for (int ci = 0; ci < g->c; ci++)
            for (int oy = 0; oy < g->oh; oy++)
                for (int ox = 0; ox < g->ow; ox++) {
                    float sum = 0.0f;
                    for (int ky = 0; ky < g->kh; ky++)
                        for (int kx = 0; kx < g->kw; kx++)
                            sum += in[(size_t)j * ldin +
                                      (size_t)tap_index(g, ci, oy, ox, ky, kx)];
                    out[(size_t)j * ldout + ((size_t)ci * g->oh + oy) * g->ow + ox] = sum / n;
                }
}

void bp_avgpool_bwd_ref(const bp_window *g, int cols, const float *d, int ldd, float *d_in,
                        int ld_din)
{
    size_t image = (size_t)g->c * g->h * g->w;
    float n = (float)(g->kh * g->kw);
    for (int j = 0; j < cols; j++) {
        float *dj = d_in + (size_t)j * ld_din;
        memset(dj, 0, sizeof(float) * image);
        for (int ci = 0; ci < g->c; ci++)
            for (int oy = 0; oy < g->oh; oy++)
                for (int ox = 0; ox < g->ow; ox++) {
                    float share = d[(size_t)j * ldd + ((size_t)ci * g->oh + oy) * g->ow + ox] / n;
                    for (int ky = 0; ky < g->kh; ky++)
                        for (int kx = 0; kx < g->kw; kx++)
                            dj[tap_index(g, ci, oy, ox, ky, kx)] += share;
                }
    }
}

/* ---- the fast forms ---------------------------------------------------------------------- */

/* The outputs [lo, hi) of a row whose tap column kx lands inside the image: x = ox * stride +
 * kx - pad in [0, w). */
static inline void tap_range(const bp_window *g, int kx, int *lo, int *hi)
{
    int s = g->stride, first = g->pad - kx, last = g->w - 1 + g->pad - kx;
    int a = first <= 0 ? 0 : (first + s - 1) / s;
    int b = last < 0 ? 0 : last / s + 1;
    *lo = a < g->ow ? a : g->ow;
    *hi = b < g->ow ? b : g->ow;
    if (*hi < *lo)
        *hi = *lo;
}

/* Rows of n floats, src rows ld_src apart, dst rows ld_dst apart: the case of a stride of 1
 * without padding, where a tap's rows are whole. Rows are short (8 to 24 floats in network3),
 * so the copy goes by vectors of 8 with the loop bookkeeping of a row kept to a minimum. */
static inline __attribute__((always_inline)) void
copy_rows(int rows, int n, const float *restrict src, size_t ld_src, float *restrict dst,
          size_t ld_dst)
{
    for (int y = 0; y < rows; y++, src += ld_src, dst += ld_dst) {
        int i = 0;
        for (; i + 8 <= n; i += 8)
            for (int v = 0; v < 8; v++)
                dst[i + v] = src[i + v];
        for (; i < n; i++)
            dst[i] = src[i];
    }
}

BP_CLONES void bp_im2col_fast(const bp_window *g, int cols, const float *in, int ldin, float *x,
                              int ldx)
{
    size_t plane = (size_t)g->oh * g->ow;
    int s = g->stride, ow = g->ow;
    if (s == 1 && g->pad == 0) {
        for (int ci = 0; ci < g->c; ci++)
            for (int ky = 0; ky < g->kh; ky++)
                for (int kx = 0; kx < g->kw; kx++) {
                    float *tap = x + (size_t)((ci * g->kh + ky) * g->kw + kx) * ldx;
                    for (int j = 0; j < cols; j++)
                        copy_rows(g->oh, ow,
                                  in + (size_t)j * ldin + ((size_t)ci * g->h + ky) * g->w + kx,
                                  (size_t)g->w, tap + j * plane, (size_t)ow);
                }
        return;
    }
    for (int ci = 0; ci < g->c; ci++)
        for (int ky = 0; ky < g->kh; ky++)
            for (int kx = 0; kx < g->kw; kx++) {
                float *tap = x + (size_t)((ci * g->kh + ky) * g->kw + kx) * ldx;
                int lo, hi;
                tap_range(g, kx, &lo, &hi);
                for (int j = 0; j < cols; j++) {
                    const float *img = in + (size_t)j * ldin + (size_t)ci * g->h * g->w;
                    for (int oy = 0; oy < g->oh; oy++) {
                        float *restrict row = tap + j * plane + (size_t)oy * ow;
                        int y = oy * s + ky - g->pad;
                        if (y < 0 || y >= g->h) {
                            memset(row, 0, sizeof(float) * (size_t)ow);
                            continue;
                        }
                        const float *restrict src = img + (size_t)y * g->w + kx - g->pad;
                        for (int ox = 0; ox < lo; ox++)
                            row[ox] = 0.0f;
                        /* A loop, not memcpy: rows are a few dozen floats, where the call
                         * costs more than the copy. */
                        if (s == 1)
                            for (int ox = lo; ox < hi; ox++)
                                row[ox] = src[ox];
                        else
                            for (int ox = lo; ox < hi; ox++)
                                row[ox] = src[(size_t)ox * s];
                        for (int ox = hi; ox < ow; ox++)
                            row[ox] = 0.0f;
                    }
                }
            }
}

/* dst rows += src rows, as copy_rows copies them (col2im's stride-1 unpadded case). */
static inline __attribute__((always_inline)) void
add_rows(int rows, int n, const float *restrict src, size_t ld_src, float *restrict dst,
         size_t ld_dst)
{
    for (int y = 0; y < rows; y++, src += ld_src, dst += ld_dst) {
        int i = 0;
        for (; i + 8 <= n; i += 8)
            for (int v = 0; v < 8; v++)
                dst[i + v] += src[i + v];
        for (; i < n; i++)
            dst[i] += src[i];
    }
}

BP_CLONES void bp_col2im_fast(const bp_window *g, int cols, const float *x, int ldx, float *out,
                              int ldout)
{
    size_t plane = (size_t)g->oh * g->ow, image = (size_t)g->c * g->h * g->w;
    int s = g->stride, ow = g->ow;
    for (int j = 0; j < cols; j++)
        memset(out + (size_t)j * ldout, 0, sizeof(float) * image);
    if (s == 1 && g->pad == 0) {
        for (int ci = 0; ci < g->c; ci++)
            for (int ky = 0; ky < g->kh; ky++)
                for (int kx = 0; kx < g->kw; kx++) {
                    const float *tap = x + (size_t)((ci * g->kh + ky) * g->kw + kx) * ldx;
                    for (int j = 0; j < cols; j++)
                        add_rows(g->oh, ow, tap + j * plane, (size_t)ow,
                                 out + (size_t)j * ldout + ((size_t)ci * g->h + ky) * g->w + kx,
                                 (size_t)g->w);
                }
        return;
    }
    for (int ci = 0; ci < g->c; ci++)
        for (int ky = 0; ky < g->kh; ky++)
            for (int kx = 0; kx < g->kw; kx++) {
                const float *tap = x + (size_t)((ci * g->kh + ky) * g->kw + kx) * ldx;
                int lo, hi;
                tap_range(g, kx, &lo, &hi);
                for (int j = 0; j < cols; j++) {
                    float *img = out + (size_t)j * ldout + (size_t)ci * g->h * g->w;
                    for (int oy = 0; oy < g->oh; oy++) {
                        int y = oy * s + ky - g->pad;
                        if (y < 0 || y >= g->h)
                            continue;
                        const float *restrict row = tap + j * plane + (size_t)oy * ow;
                        float *restrict dst = img + (size_t)y * g->w + kx - g->pad;
                        if (s == 1)
                            for (int ox = lo; ox < hi; ox++)
                                dst[ox] += row[ox];
                        else
                            for (int ox = lo; ox < hi; ox++)
                                dst[(size_t)ox * s] += row[ox];
                    }
                }
            }
}

/* c ? a : b, by masks on the bits: GCC compiles the ternary on floats back into a branch,
 * which mispredicts half the time on data (the benchmark, replaying one input, hid it). */
static inline __attribute__((always_inline)) float pick_float(int c, float a, float b)
{
    uint32_t ua, ub, mask = 0u - (uint32_t)c;
    memcpy(&ua, &a, sizeof ua);
    memcpy(&ub, &b, sizeof ub);
    ua = (ua & mask) | (ub & ~mask);
    memcpy(&a, &ua, sizeof a);
    return a;
}

static inline __attribute__((always_inline)) int pick_int(int c, int a, int b)
{
    int mask = -c;
    return (a & mask) | (b & ~mask);
}

/* One output at a time with no bound checks (pooling has no padding, so every tap is inside
 * the image), int indices (one instruction to convert to float) and selects by mask
 * instead of branches, whose outcome on data is a coin toss. Taps in the reference's order, the first
 * maximum wins. */
BP_CLONES void bp_maxpool_fwd_fast(const bp_window *g, int cols, const float *in, int ldin,
                                   float *out, int ldout, float *arg, int ldarg)
{
    int s = g->stride, w = g->w, ow = g->ow;
    for (int j = 0; j < cols; j++)
        for (int ci = 0; ci < g->c; ci++) {
            const float *img = in + (size_t)j * ldin;
            for (int oy = 0; oy < g->oh; oy++) {
                size_t o = ((size_t)ci * g->oh + oy) * ow;
                float *restrict best = out + (size_t)j * ldout + o;
                float *restrict at = arg + (size_t)j * ldarg + o;
                int top = (ci * g->h + oy * s) * w;
                if (g->kh == 2 && g->kw == 2) { /* the usual window, its four taps unrolled */
                    for (int ox = 0; ox < ow; ox++) {
                        int k0 = top + ox * s, k1 = k0 + 1, k2 = k0 + w, k3 = k2 + 1;
                        float m = img[k0], v;
                        int where = k0;
                        int c;
                        v = img[k1], c = v > m, where = pick_int(c, k1, where);
                        m = pick_float(c, v, m);
                        v = img[k2], c = v > m, where = pick_int(c, k2, where);
                        m = pick_float(c, v, m);
                        v = img[k3], c = v > m, where = pick_int(c, k3, where);
                        m = pick_float(c, v, m);
                        best[ox] = m;
                        at[ox] = (float)where;
                    }
                    continue;
                }
                for (int ox = 0; ox < ow; ox++) {
                    int first = top + ox * s, where = first;
                    float m = img[first];
                    for (int ky = 0; ky < g->kh; ky++)
                        for (int kx = 0; kx < g->kw; kx++) {
                            int k = first + ky * w + kx;
                            float v = img[k];
                            int wins = v > m;
                            where = pick_int(wins, k, where);
                            m = pick_float(wins, v, m);
                        }
                    best[ox] = m;
                    at[ox] = (float)where;
                }
            }
        }
}

BP_CLONES void bp_avgpool_fwd_fast(const bp_window *g, int cols, const float *in, int ldin,
                                   float *out, int ldout)
{
    int s = g->stride, ow = g->ow;
    float n = (float)(g->kh * g->kw);
    for (int j = 0; j < cols; j++)
        for (int ci = 0; ci < g->c; ci++) {
            const float *img = in + (size_t)j * ldin + (size_t)ci * g->h * g->w;
            for (int oy = 0; oy < g->oh; oy++) {
                float *restrict sum = out + (size_t)j * ldout + ((size_t)ci * g->oh + oy) * ow;
                for (int ox = 0; ox < ow; ox++)
                    sum[ox] = 0.0f;
                for (int ky = 0; ky < g->kh; ky++)
                    for (int kx = 0; kx < g->kw; kx++) {
                        const float *restrict src =
                            img + (size_t)(oy * s + ky) * g->w + kx;
                        for (int ox = 0; ox < ow; ox++)
                            sum[ox] += src[(size_t)ox * s];
                    }
                for (int ox = 0; ox < ow; ox++)
                    sum[ox] /= n;
            }
        }
}
