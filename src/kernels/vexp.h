/*
 * vexp.h - expf, sigmoid and tanh written so that a loop calling them vectorises: straight-line
 * float and integer arithmetic, no branches, no libm calls, no tables. The fast kernels
 * (fast.c) inline them into loops compiled once per ISA.
 *
 * e^x = 2^n e^r: n = round(x / ln 2), r = x - n ln 2 with |r| <= ln2/2; e^r from a polynomial;
 * 2^n put into the exponent bits of a float.
 *
 * Error bounds, from an exhaustive run over every float (tests/test_fastmath.c, with
 * BP_FASTMATH_EXHAUSTIVE=1; by default it sweeps every 97th float) against double exp and tanh,
 * in ulp of the true value (2^-149 in the subnormal range; a true value beyond FLT_MAX counts
 * as 2^128, so +Inf there is exact):
 *   bp_vexpf      < 1 ulp (max 0.81, at -87.64; faithful rounding) on [-104, 89], which holds
 *                 every x with a nonzero finite e^x, subnormal results included. Below -104 it
 *                 returns +0, above 89 +Inf (so -Inf gives 0, +Inf gives +Inf); NaN gives NaN.
 *   bp_vsigmoidf  <= 2 ulp (max 1.97) on every finite float, subnormal results included;
 *                 exactly 1 above z ~ 17.33 and exactly 0 below z ~ -103.97 (where the true
 *                 value rounds to them); +-Inf give 1 and 0; NaN gives NaN.
 *   bp_vtanhf     <= 2 ulp (max 1.99) on every finite float, relative down to the smallest
 *                 subnormal z (where tanh z = z); exactly +-1 beyond |z| ~ 9.01; +-Inf give
 *                 +-1; tanh(-0) = -0; NaN gives NaN.
 * These assume round-to-nearest and no -ffast-math (which would fold the rounding constant and
 * the exact-error terms below away). No fused multiply-add is used, and C11 mode keeps GCC
 * from contracting one in (a GNU mode would not: -std=gnu11 contracts in the AVX-512 clone),
 * so every ISA's clone gives the same bits as the scalar form, which the test checks.
 */
#ifndef BP_VEXP_H
#define BP_VEXP_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* The clamp: any x below VEXP_LO gives 0 and any above VEXP_HI gives +Inf without a select,
 * because 2^n e^r then underflows or overflows in the final multiplication. */
#define BP_VEXP_LO (-104.0f) /* e^-104 < 2^-150: rounds to +0 */
#define BP_VEXP_HI 89.0f     /* e^89 > FLT_MAX: rounds to +Inf */

static inline uint32_t bp_vexp_bits_(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float bp_vexp_float_(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* x = n ln2 + r_hi - r_lo, with r = r_hi - r_lo in [-ln2/2, ln2/2] (up to roundings). n comes
 * back through *n (-150 .. 129 after the clamp; for NaN some value within +-2^22, harmless
 * since r is NaN) and r_lo through *r_lo.
 * n: adding 1.5 * 2^23 pushes the fraction bits out, so the sum rounds to an integer (ties to
 * even) in [2^23, 2^24), whose 23 mantissa bits hold n + 2^22. r: Cody-Waite, ln2 split into a
 * 9-bit head, so that n ln2_hi is exact for |n| < 2^15 and so is x - n ln2_hi (a multiple of
 * ulp(x) below 0.4: x itself for n = 0, else |x| > 0.34 and 0.4 < 2^24 ulp(x)), and a tail,
 * whose product r_lo = n ln2_lo (|r_lo| < 0.032) is the only rounded term. */
static inline float bp_vexp_reduce_(float x, float *r_lo, int32_t *n)
{
    const float log2e = 0x1.715476p+0f, shifter = 0x1.8p23f;
    const float ln2_hi = 0x1.63p-1f, ln2_lo = -0x1.bd0106p-13f; /* ln2_hi + ln2_lo ~ ln 2 */
    float t = x * log2e + shifter;
    float nf = t - shifter;
    *n = (int32_t)(bp_vexp_bits_(t) & 0x7fffff) - 0x400000;
    *r_lo = nf * ln2_lo;
    return x - nf * ln2_hi;
}

/* q(r) ~ (e^r - 1 - r) / r^2 for |r| <= 0.3466: the degree-4 weighted minimax fit (Remez, then
 * coefficients rounded to float) with the error of 1 + r + r^2 q relative to e^r, which is
 * below 4.3e-9 (0.09 ulp at worst). Only r^2 q is computed through q, so its roundings are
 * scaled down by r^2 / 2 < 0.061. */
static inline float bp_vexp_q_(float r)
{
    const float c2 = 0x1.fffffep-2f, c3 = 0x1.55547ep-3f, c4 = 0x1.555638p-5f,
                c5 = 0x1.1246e6p-7f, c6 = 0x1.6c350ep-10f;
    return c2 + r * (c3 + r * (c4 + r * (c5 + r * c6)));
}

/* c ? a : b through bit masks. A plain ?: on floats lets GCC thread the clamped branch (x is
 * then a known constant) into separate code paths, which it will not vectorise without AVX-512
 * masks; the masks leave it one straight line for every ISA. NaN compares false, so it picks
 * b, which the clamps below use to let NaN through. */
static inline float bp_vsel_(int c, float a, float b)
{
    uint32_t m = (uint32_t)0 - (uint32_t)c;
    return bp_vexp_float_((bp_vexp_bits_(a) & m) | (bp_vexp_bits_(b) & ~m));
}

/* 2^n as a float, for -126 <= n <= 127. */
static inline float bp_vexp_pow2_(int32_t n) { return bp_vexp_float_((uint32_t)(n + 127) << 23); }

/* e^x = 2^n e^r. e^r = 1 + r + r^2 q(r) is summed so that only the last addition rounds at the
 * result's scale: h = 1 + r_hi rounds, but its error e = r_hi - (h - 1) is exact (Fast2Sum,
 * |r_hi| < 1), and it joins the small terms, e - r_lo + r^2 q (< 0.09 in size, so their
 * roundings are below 2^-28). The scaling 2^n is applied in two halves, each in the normal
 * range, so a subnormal result is rounded once, and n = 128 reaches +Inf by overflow rather
 * than by a select. A NaN passes the clamps (they compare false) and propagates. */
static inline float bp_vexpf(float x)
{
    x = bp_vsel_(x < BP_VEXP_LO, BP_VEXP_LO, x);
    x = bp_vsel_(x > BP_VEXP_HI, BP_VEXP_HI, x);
    int32_t n;
    float r_lo, r_hi = bp_vexp_reduce_(x, &r_lo, &n);
    float r = r_hi - r_lo;
    float h = 1.0f + r_hi;
    float e = r_hi - (h - 1.0f);
    float p = h + ((e - r_lo) + (r * r) * bp_vexp_q_(r));
    /* n1 = floor(n / 2) by a shift of n + 2^22 >= 0; n1, n2 in [-75, 65]. */
    int32_t n1 = (int32_t)((uint32_t)(n + 0x400000) >> 1) - 0x200000, n2 = n - n1;
    return p * bp_vexp_pow2_(n1) * bp_vexp_pow2_(n2);
}

/* sigma(z) = 1 / (1 + t) for z >= 0 and t / (1 + t) for z < 0, with t = e^-|z| in (0, 1]: nothing
 * overflows, and below z = -88.7 (where e^-z would be +Inf and 1 / (1 + e^-z) a flat 0) the
 * subnormal values of sigma come out. The rounding of d = 1 + t would alone cost up to 1 ulp
 * of the result; its error is exact (Fast2Sum, t <= 1), so the quotient q = num / d is
 * corrected to first order, num / (d + e) = q - q e / d, with 1 / d = q (z >= 0) or
 * 1 - q (z < 0). Exactly 1 for z > 17.33 (1 - t rounds to 1), exactly 0 once t underflows
 * (z < -103.97); +-Inf give 1 and 0, NaN gives NaN. */
static inline float bp_vsigmoidf(float z)
{
    float t = bp_vexpf(-fabsf(z));
    float d = 1.0f + t;
    float e = t - (d - 1.0f);
    int neg = z < 0.0f;
    float q = bp_vsel_(neg, t, 1.0f) / d;
    float inv_d = bp_vsel_(neg, 1.0f - q, q);
    return q - q * (inv_d * e);
}

/* tanh |z| = (1 - t) / (1 + t) with t = e^(-2|z|) = 2^n e^r in (0, 1], and the sign of z put
 * back. Two forms of the quotient, chosen by a select:
 * - |z| < 0.55 (tanh < 0.5): the numerator 1 - t = -m, with m = expm1(-2|z|) = (2^n - 1) +
 *   2^n (e^r - 1) formed without cancellation (for n = 0, r = -2|z| exactly), so the result is
 *   relatively accurate down to subnormal z;
 * - |z| >= 0.55: 1 - 2t / (1 + t), where 2t / (1 + t) <= 0.5, so its error is halved.
 * m or t is v = B + 2^n r_hi + 2^n (r^2 q(r) - r_lo) with B = 2^n - 1 or 2^n (both exact, as is
 * 2^n r_hi): the first sum's error is recovered (Fast2Sum, |B| >= |2^n r_hi| or B = 0) and
 * added to the small terms, so v carries one rounding. The denominator 1 + t is then 2 + m or
 * 1 + t, whose rounding is again exact and corrected to first order as in the sigmoid, with
 * 1 / (1 + t) = (1 + q) / 2 (first form) or 1 - q / 2 (second). |z| is clamped to 9.5, where
 * tanh already rounds to 1, so 2^n stays normal. -0 gives -0, +-Inf give +-1, NaN gives NaN. */
static inline float bp_vtanhf(float z)
{
    float a = fabsf(z);
    a = bp_vsel_(a > 9.5f, 9.5f, a);
    int32_t n;
    float r_lo, r_hi = bp_vexp_reduce_(-(a + a), &r_lo, &n); /* n in [-28, 0] */
    float r = r_hi - r_lo;
    float s = bp_vexp_pow2_(n);
    int small = a < 0.55f;
    float b = bp_vsel_(small, s - 1.0f, s), w = s * r_hi;
    float v_hi = b + w;
    float v = v_hi + ((w - (v_hi - b)) + s * ((r * r) * bp_vexp_q_(r) - r_lo));
    float one = bp_vsel_(small, 2.0f, 1.0f); /* 1 + t = one + v */
    float d = one + v;
    float e = v - (d - one);
    float q = bp_vsel_(small, -v, v + v) / d;
    float inv_d = bp_vsel_(small, (1.0f + q) * 0.5f, 1.0f - q * 0.5f);
    q = q - q * (inv_d * e);
    return copysignf(bp_vsel_(small, q, 1.0f - q), z);
}

/* y[i] = e^x[i] for n floats, through the ISA-specific clone of the vectorised loop (fast.c).
 * x and y must not overlap. */
void bp_vexp_fast(size_t n, const float *restrict x, float *restrict y);

#endif
