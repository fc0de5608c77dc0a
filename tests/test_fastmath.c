/*
 * test_fastmath.c - the vectorised exp, sigmoid, tanh and softmax (kernels/vexp.h) against double
 * precision over their whole float range, and the fast kernels (kernels/fast.c) against the
 * reference kernels on odd shapes.
 *
 * Errors are in ulp of the true value: |got - want| / ulp(want), with ulp(w) = 2^(e - 23) for
 * 2^e <= |w| < 2^(e+1), 2^-149 in the subnormal range, and values at or beyond 2^128 counted
 * as 2^128, so +Inf where the true value overflows costs nothing and FLT_MAX there costs 1 ulp.
 * Double exp and tanh are good to ~2^-52, so the measured ulp is exact to ~2^-28.
 *
 * The sweeps take every 97th float bit pattern (an odd stride, so every low mantissa bit
 * pattern occurs) through the vectorised kernels, i.e. through the clone the loader picked
 * for this CPU, and check that the scalar inline functions agree bit for bit with them.
 * BP_FASTMATH_EXHAUSTIVE=1 takes every float instead (about 8 minutes); the bounds asserted
 * are the maxima of that exhaustive run rounded up, see vexp.h.
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "kernels/vexp.h"
#include "testutil.h"

static const double EXP_ULP = 1.0;     /* exhaustive: 0.81 */
static const double SIGMOID_ULP = 2.0; /* exhaustive: 1.97 */
static const double TANH_ULP = 2.0;    /* exhaustive: 1.99 */

enum { CHUNK = 1 << 14 };

static uint32_t sweep_stride(void)
{
    const char *e = getenv("BP_FASTMATH_EXHAUSTIVE");
    return e && *e && strcmp(e, "0") != 0 ? 1u : 97u;
}

static float from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static uint32_t bits_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static double ulp_err(float got, double want)
{
    if (isnan(want))
        return isnan(got) ? 0.0 : INFINITY;
    if (isnan(got))
        return INFINITY;
    const double lim = 0x1p128;
    double w = copysign(fmin(fabs(want), lim), want);
    double g = isinf(got) ? copysign(lim, got) : (double)got;
    /* The binade of w from its exponent bits (ilogb and ldexp would dominate the sweeps). */
    uint64_t wb;
    memcpy(&wb, &w, sizeof wb);
    int e = (int)((wb >> 52) & 0x7ff) - 1023;
    e = e < -126 ? -126 : e > 127 ? 127 : e;
    uint64_t ub = (uint64_t)(e - 23 + 1023) << 52;
    double ulp;
    memcpy(&ulp, &ub, sizeof ulp);
    return fabs(g - w) / ulp;
}

typedef enum { F_EXP, F_SIGMOID, F_TANH } fn_id;

static double exact(fn_id f, double x)
{
    switch (f) {
    case F_EXP: return exp(x);
    case F_SIGMOID: return 1.0 / (1.0 + exp(-x));
    default: return tanh(x);
    }
}

static float scalar(fn_id f, float x)
{
    switch (f) {
    case F_EXP: return bp_vexpf(x);
    case F_SIGMOID: return bp_vsigmoidf(x);
    default: return bp_vtanhf(x);
    }
}

/* y = f(x) through the vectorised code: the array exp, or bias+activation with a zero bias over
 * one contiguous column (the flat path), with z + 0 = z for every z but -0. */
static void vectorised(fn_id f, int n, const float *x, float *y)
{
    static const float zero[CHUNK];
    if (f == F_EXP) {
        bp_vexp_fast((size_t)n, x, y);
        return;
    }
    memcpy(y, x, sizeof(float) * (size_t)n);
    bp_bias_act_fast(f == F_SIGMOID ? BP_ACT_SIGMOID : BP_ACT_TANH, n, 1, zero, y, n);
}

typedef struct {
    double max_ulp;
    float worst;
    size_t count, mismatches; /* mismatches: scalar and vectorised results differ */
    float mismatch;
} sweep_result;

/* Every stride-th bit pattern from `from` up to `to` (same sign: magnitudes increasing), and
 * `to` itself; the scalar form is checked against the vectorised one on each chunk. */
static void sweep(fn_id f, uint32_t from, uint32_t to, uint32_t stride, sweep_result *res)
{
    static float x[CHUNK], y[CHUNK];
    uint64_t k = from;
    int last_done = 0;
    while (!last_done) {
        int m = 0;
        for (; m < CHUNK && !last_done; m++) {
            last_done = k >= to;
            x[m] = from_bits(last_done ? to : (uint32_t)k);
            k += stride;
        }
        vectorised(f, m, x, y);
        /* No ck_assert per point: Check reports each assertion's location to its parent
         * process through a pipe, a system call per call. The scalar forms, with their
         * microcode-assisted underflows, are checked on every 16th point unless exhaustive. */
        for (int i = 0; i < m; i++) {
            if (stride == 1 || i % 16 == 0) {
                float s = scalar(f, x[i]);
                if (bits_of(s) != bits_of(y[i]) && !(f != F_EXP && x[i] == 0.0f) &&
                    res->mismatches++ == 0)
                    res->mismatch = x[i];
            }
            double e = ulp_err(y[i], exact(f, x[i]));
            if (e > res->max_ulp) {
                res->max_ulp = e;
                res->worst = x[i];
            }
        }
        res->count += (size_t)m;
    }
}

/* Both signs from 0 to the given magnitudes. */
static sweep_result sweep_range(fn_id f, float neg_end, float pos_end)
{
    sweep_result res = {0, 0, 0, 0, 0};
    uint32_t stride = sweep_stride();
    sweep(f, 0x00000000u, bits_of(pos_end), stride, &res);
    sweep(f, 0x80000000u, bits_of(neg_end), stride, &res);
    ck_assert_msg(res.mismatches == 0, "f%d: %zu scalar/vectorised mismatches, first at %a",
                  (int)f, res.mismatches, (double)res.mismatch);
    return res;
}

START_TEST(test_exp_sweep)
{
    sweep_result r = sweep_range(F_EXP, BP_VEXP_LO, BP_VEXP_HI);
    ck_assert_msg(r.count > 30000000u / sweep_stride(), "only %zu points", r.count);
    ck_assert_msg(r.max_ulp <= EXP_ULP, "exp: %.3f ulp at %a (%zu points)", r.max_ulp,
                  (double)r.worst, r.count);
}
END_TEST

START_TEST(test_sigmoid_sweep)
{
    sweep_result r = sweep_range(F_SIGMOID, -FLT_MAX, FLT_MAX);
    ck_assert_msg(r.max_ulp <= SIGMOID_ULP, "sigmoid: %.3f ulp at %a (%zu points)", r.max_ulp,
                  (double)r.worst, r.count);
}
END_TEST

START_TEST(test_tanh_sweep)
{
    sweep_result r = sweep_range(F_TANH, -FLT_MAX, FLT_MAX);
    ck_assert_msg(r.max_ulp <= TANH_ULP, "tanh: %.3f ulp at %a (%zu points)", r.max_ulp,
                  (double)r.worst, r.count);
}
END_TEST

/* Each special value through the scalar form and through the vectorised loop. */
static void check_special(fn_id f, float x, float want)
{
    float y[1];
    vectorised(f, 1, &x, y);
    float s = scalar(f, x);
    if (isnan(want)) {
        ck_assert_msg(isnan(s) && isnan(y[0]), "f%d(%a) = %a / %a, want NaN", (int)f, x, s, y[0]);
        return;
    }
    ck_assert_msg(bits_of(s) == bits_of(want) && bits_of(y[0]) == bits_of(want),
                  "f%d(%a) = %a / %a, want %a", (int)f, x, s, y[0], want);
}

START_TEST(test_exp_specials)
{
    check_special(F_EXP, NAN, NAN);
    check_special(F_EXP, -NAN, NAN);
    check_special(F_EXP, INFINITY, INFINITY);
    check_special(F_EXP, -INFINITY, 0.0f);
    check_special(F_EXP, 0.0f, 1.0f);
    check_special(F_EXP, -0.0f, 1.0f);
    check_special(F_EXP, 0x1p-30f, 1.0f);
    /* Overflow: e^x > FLT_MAX from x = 88.7228394; the last float below stays finite. */
    check_special(F_EXP, 0x1.62e430p+6f, INFINITY);
    check_special(F_EXP, 89.0f, INFINITY);
    check_special(F_EXP, 1000.0f, INFINITY);
    check_special(F_EXP, FLT_MAX, INFINITY);
    ck_assert(isfinite(bp_vexpf(0x1.62e42ep+6f)));
    /* Deep underflow: e^x < 2^-150 below x = -103.972 rounds to +0. */
    check_special(F_EXP, -104.0f, 0.0f);
    check_special(F_EXP, -1000.0f, 0.0f);
    check_special(F_EXP, -FLT_MAX, 0.0f);
    /* Gradual underflow: subnormal results, one rounding. */
    for (float x = -103.9f; x < -87.0f; x += 0.37f)
        ck_assert_msg(ulp_err(bp_vexpf(x), exp(x)) <= EXP_ULP, "exp(%a) = %a", x, bp_vexpf(x));
    ck_assert(bp_vexpf(-103.0f) > 0.0f && bp_vexpf(-103.0f) < FLT_MIN);
}
END_TEST

START_TEST(test_sigmoid_specials)
{
    check_special(F_SIGMOID, NAN, NAN);
    check_special(F_SIGMOID, INFINITY, 1.0f);
    check_special(F_SIGMOID, -INFINITY, 0.0f);
    check_special(F_SIGMOID, 0.0f, 0.5f);
    /* Saturation without NaN: exactly 1 once 1 - sigma < 2^-25, exactly 0 below -103.98. */
    const float ones[] = {17.4f, 20.0f, 88.8f, 100.0f, 1e30f, FLT_MAX};
    const float zeros[] = {-104.0f, -110.0f, -1000.0f, -1e30f, -FLT_MAX};
    for (size_t i = 0; i < sizeof ones / sizeof *ones; i++)
        check_special(F_SIGMOID, ones[i], 1.0f);
    for (size_t i = 0; i < sizeof zeros / sizeof *zeros; i++)
        check_special(F_SIGMOID, zeros[i], 0.0f);
    /* Where 1 / (1 + e^-z) would already be a flat 0, sigma is a subnormal e^z. */
    ck_assert(bp_vsigmoidf(-95.0f) > 0.0f && bp_vsigmoidf(-95.0f) < FLT_MIN);
    ck_assert(ulp_err(bp_vsigmoidf(-95.0f), exp(-95.0)) <= SIGMOID_ULP);
}
END_TEST

START_TEST(test_tanh_specials)
{
    check_special(F_TANH, NAN, NAN);
    check_special(F_TANH, INFINITY, 1.0f);
    check_special(F_TANH, -INFINITY, -1.0f);
    check_special(F_TANH, 0.0f, 0.0f);
    ck_assert_uint_eq(bits_of(bp_vtanhf(-0.0f)), bits_of(-0.0f)); /* the kernel adds +0 */
    const float ones[] = {9.1f, 9.5f, 10.0f, 88.8f, 1e30f, FLT_MAX};
    for (size_t i = 0; i < sizeof ones / sizeof *ones; i++) {
        check_special(F_TANH, ones[i], 1.0f);
        check_special(F_TANH, -ones[i], -1.0f);
    }
    /* tanh z = z to the rounding for tiny and subnormal z. */
    const float tiny[] = {0x1p-13f, 0x1p-40f, FLT_MIN, 0x1p-140f, 0x1p-149f};
    for (size_t i = 0; i < sizeof tiny / sizeof *tiny; i++) {
        check_special(F_TANH, tiny[i], tiny[i]);
        check_special(F_TANH, -tiny[i], -tiny[i]);
    }
}
END_TEST

/* Softmax of one column in double, for comparison. */
static void softmax_exact(int rows, const float *z, const float *b, double *out)
{
    double max = -INFINITY, sum = 0;
    for (int i = 0; i < rows; i++)
        max = fmax(max, (double)z[i] + b[i]);
    for (int i = 0; i < rows; i++)
        sum += out[i] = exp((double)z[i] + b[i] - max);
    for (int i = 0; i < rows; i++)
        out[i] /= sum;
}

/* Columns of extreme and ordinary values; some with 4-column blocks, some left over.
 * Error bound per output: a_k = e_k (1 / S). e_k carries <= 1 ulp (2^-23 relative), S is a sum
 * of `rows` such terms with rows - 1 roundings (<= rows 2^-23 together), then 1 / S and the
 * product one rounding each: (rows + 3) 2^-23 relative, plus 2^-149 where a_k underflows. */
START_TEST(test_softmax_extremes)
{
    enum { ROWS = 10, COLS = 9, LD = 12 };
    float z[LD * COLS], z0[LD * COLS], bias[ROWS] = {0};
    uint64_t seed = 5;
    bp_test_fill(z0, LD * COLS, -10, 10, &seed);
    for (int i = 0; i < ROWS; i++) {
        z0[i + 0 * LD] = i % 2 ? 3e38f : -3e38f; /* z - max = -6e38 overflows to -Inf: e = 0 */
        z0[i + 1 * LD] = 1e30f + (float)i * 1e24f;
        z0[i + 2 * LD] = -1e30f;               /* all equal: 1 / rows each */
        z0[i + 3 * LD] = (float)i * 20.0f;     /* spread beyond exp's range */
        z0[i + 4 * LD] = i == 3 ? 88.0f : -88.0f;
    }
    for (int i = ROWS; i < LD; i++)
        for (int j = 0; j < COLS; j++)
            z0[i + j * LD] = 12345.0f;
    memcpy(z, z0, sizeof z);
    bp_bias_act_fast(BP_ACT_SOFTMAX, ROWS, COLS, bias, z, LD);
    const double tol = (ROWS + 3) * 0x1p-23;
    for (int j = 0; j < COLS; j++) {
        double want[ROWS], sum = 0;
        softmax_exact(ROWS, z0 + j * LD, bias, want);
        for (int i = 0; i < ROWS; i++) {
            float a = z[i + j * LD];
            ck_assert_msg(isfinite(a) && a >= 0.0f, "column %d row %d: %g", j, i, a);
            /* 2^-148: a subnormal e_k is rounded twice (exp, then the product). */
            ck_assert_msg(fabs(a - want[i]) <= tol * want[i] + 0x1p-148,
                          "column %d row %d: %a, want %a", j, i, a, want[i]);
            sum += a;
        }
        ck_assert_msg(fabs(sum - 1.0) <= tol, "column %d sums to 1 + %g", j, sum - 1.0);
        for (int i = ROWS; i < LD; i++)
            ck_assert_float_eq(z[i + j * LD], 12345.0f);
    }
    ck_assert_float_eq(z[2 * LD], 0.1f);
}
END_TEST

/* ---- the fast kernels against the reference kernels ---- */

static const int ROWS[] = {1, 7, 13, 33, 100};
static const int COLS[] = {1, 7, 64};

/* Bound for bias+activation: each value, fast or reference, is within 2 ulp of the true one
 * (reference: libm expf/tanhf <= 1 ulp plus the 1 + e and the division), so the two differ by
 * at most 4 ulp, 4 * 2^-23 relative; squared, an NMSE of 2.3e-13 at the very worst, so 1e-12.
 * Softmax: (rows + 3) 2^-23 each (see above), doubled for two implementations, squared. Linear
 * and ReLU are one addition (and a comparison) in both: equal to the bit. An indexing or bias
 * mistake gives an NMSE near 1. */
static double bias_act_nmse_bound(bp_activation act, int rows)
{
    switch (act) {
    case BP_ACT_SIGMOID:
    case BP_ACT_TANH: return 1e-12;
    case BP_ACT_SOFTMAX: return pow(2.0 * (rows + 3) * 0x1p-23, 2);
    default: return 0.0;
    }
}

static const float PAD = -7777.0f; /* in the padding rows: must survive every kernel */

static void fill_padded(float *x, int rows, int cols, int ld, float lo, float hi, uint64_t *seed)
{
    for (int j = 0; j < cols; j++) {
        bp_test_fill(x + (size_t)j * ld, (size_t)rows, lo, hi, seed);
        for (int i = rows; i < ld; i++)
            x[i + (size_t)j * ld] = PAD;
    }
}

/* NMSE over the rows x cols block, and the padding checked untouched. */
static double block_nmse(const float *got, const float *want, int rows, int cols, int ld)
{
    double num = 0, den = 0;
    for (int j = 0; j < cols; j++) {
        for (int i = 0; i < rows; i++) {
            double g = got[i + (size_t)j * ld], w = want[i + (size_t)j * ld];
            ck_assert_msg(isfinite(g), "non-finite value at (%d, %d)", i, j);
            num += (g - w) * (g - w);
            den += w * w;
        }
        for (int i = rows; i < ld; i++)
            ck_assert_msg(got[i + (size_t)j * ld] == PAD, "padding (%d, %d) written", i, j);
    }
    return den > 0 ? num / den : num;
}

START_TEST(test_bias_act_vs_reference)
{
    uint64_t seed = 11;
    for (size_t ri = 0; ri < sizeof ROWS / sizeof *ROWS; ri++)
        for (size_t ci = 0; ci < sizeof COLS / sizeof *COLS; ci++)
            for (int pad = 0; pad <= 3; pad += 3)
                for (int act = 0; act < BP_ACT_COUNT; act++) {
                    int rows = ROWS[ri], cols = COLS[ci], ld = rows + pad;
                    size_t n = (size_t)ld * cols;
                    float *z = malloc(sizeof(float) * n), *ref = malloc(sizeof(float) * n);
                    float *bias = malloc(sizeof(float) * rows);
                    /* +-12 reaches both saturated ends of sigmoid and tanh in float. */
                    fill_padded(ref, rows, cols, ld, -12, 12, &seed);
                    bp_test_fill(bias, (size_t)rows, -2, 2, &seed);
                    memcpy(z, ref, sizeof(float) * n);
                    bp_bias_act_ref(act, rows, cols, bias, ref, ld);
                    bp_bias_act_fast(act, rows, cols, bias, z, ld);
                    double e = block_nmse(z, ref, rows, cols, ld);
                    ck_assert_msg(e <= bias_act_nmse_bound(act, rows),
                                  "%s rows=%d cols=%d ld=%d: nmse %g",
                                  bp_activation_name(act), rows, cols, ld, e);
                    free(z), free(ref), free(bias);
                }
}
END_TEST

/* The Hadamard products, row sums and axpy do the reference's operations in its order (no FMA,
 * no reassociation), so they must agree to the bit: an NMSE of 0. */
START_TEST(test_bwd_rowsum_axpy_vs_reference)
{
    uint64_t seed = 13;
    for (size_t ri = 0; ri < sizeof ROWS / sizeof *ROWS; ri++)
        for (size_t ci = 0; ci < sizeof COLS / sizeof *COLS; ci++)
            for (int pad = 0; pad <= 3; pad += 3) {
                int rows = ROWS[ri], cols = COLS[ci];
                /* D with ld = rows + pad, A with its own ld, so both paths (contiguous and
                 * per column) run. */
                int ldd = rows + pad, lda = rows + (pad ? 1 : 0);
                float *a = malloc(sizeof(float) * (size_t)lda * cols);
                float *d = malloc(sizeof(float) * (size_t)ldd * cols);
                float *ref = malloc(sizeof(float) * (size_t)ldd * cols);
                for (int act = 0; act < BP_ACT_SOFTMAX; act++) {
                    fill_padded(a, rows, cols, lda, act == BP_ACT_SIGMOID ? 0 : -1, 1, &seed);
                    fill_padded(ref, rows, cols, ldd, -1, 1, &seed);
                    memcpy(d, ref, sizeof(float) * (size_t)ldd * cols);
                    bp_act_bwd_hadamard_ref(act, rows, cols, a, lda, ref, ldd);
                    bp_act_bwd_hadamard_fast(act, rows, cols, a, lda, d, ldd);
                    double e = block_nmse(d, ref, rows, cols, ldd);
                    ck_assert_msg(e == 0.0, "hadamard %s rows=%d cols=%d: nmse %g",
                                  bp_activation_name(act), rows, cols, e);
                }
                float out[101], want[101];
                out[rows] = want[rows] = PAD;
                bp_rowsum_ref(rows, cols, 0.125f, d, ldd, want);
                bp_rowsum_fast(rows, cols, 0.125f, d, ldd, out);
                ck_assert_msg(memcmp(out, want, sizeof(float) * (size_t)(rows + 1)) == 0,
                              "rowsum rows=%d cols=%d ld=%d differs", rows, cols, ldd);
                size_t n = (size_t)lda * cols - 1; /* a + 1 is read: odd lengths, unaligned */
                memcpy(ref, a, sizeof(float) * n);
                memcpy(d, a, sizeof(float) * n);
                bp_axpy_ref(n, -0.3f, a + 1, ref);
                bp_axpy_fast(n, -0.3f, a + 1, d);
                ck_assert_msg(memcmp(d, ref, sizeof(float) * n) == 0, "axpy n=%zu differs", n);
                free(a), free(d), free(ref);
            }
}
END_TEST

/* blas's axpy on both sides of its switch to cblas_saxpy (2^17 floats). saxpy may fuse the
 * multiply-add: each y + alpha x then differs from the reference's by at most about
 * 2^-23 (|y| + |alpha x|); with independent random signs sum (y + alpha x)^2 is about
 * sum y^2 + sum (alpha x)^2, so the NMSE is below 2 * 2^-46 = 2.8e-14. Assert 1e-12. */
START_TEST(test_blas_axpy_lengths)
{
    const size_t lengths[] = {1, 100, ((size_t)1 << 17) - 1, ((size_t)1 << 17) + 3};
    uint64_t seed = 17;
    for (size_t li = 0; li < sizeof lengths / sizeof *lengths; li++) {
        size_t n = lengths[li];
        float *x = malloc(sizeof(float) * n), *y = malloc(sizeof(float) * n);
        float *ref = malloc(sizeof(float) * n);
        bp_test_fill(x, n, -1, 1, &seed);
        bp_test_fill(ref, n, -1, 1, &seed);
        memcpy(y, ref, sizeof(float) * n);
        bp_axpy_ref(n, -0.7f, x, ref);
        bp_backend_blas.axpy(n, -0.7f, x, y);
        double e = bp_test_nmse(y, ref, n);
        ck_assert_msg(e <= 1e-12, "blas axpy n=%zu: nmse %g", n, e);
        free(x), free(y), free(ref);
    }
}
END_TEST

/* The blas table uses the fast kernels; naive keeps the references (the oracle). */
START_TEST(test_tables)
{
    ck_assert(bp_backend_blas.bias_act == bp_bias_act_fast);
    ck_assert(bp_backend_blas.act_bwd_hadamard == bp_act_bwd_hadamard_fast);
    ck_assert(bp_backend_blas.rowsum == bp_rowsum_fast);
    ck_assert(bp_backend_naive.bias_act == bp_bias_act_ref);
    ck_assert(bp_backend_naive.act_bwd_hadamard == bp_act_bwd_hadamard_ref);
    ck_assert(bp_backend_naive.rowsum == bp_rowsum_ref);
    ck_assert(bp_backend_naive.axpy == bp_axpy_ref);
}
END_TEST

static Suite *fastmath_suite(void)
{
    Suite *s = suite_create("fastmath");
    TCase *tc = tcase_create("functions");
    /* The sweeps take about a second each; exhaustive ones a few minutes. */
    tcase_set_timeout(tc, sweep_stride() == 1 ? 3600 : 240);
    tcase_add_test(tc, test_exp_sweep);
    tcase_add_test(tc, test_sigmoid_sweep);
    tcase_add_test(tc, test_tanh_sweep);
    tcase_add_test(tc, test_exp_specials);
    tcase_add_test(tc, test_sigmoid_specials);
    tcase_add_test(tc, test_tanh_specials);
    tcase_add_test(tc, test_softmax_extremes);
    suite_add_tcase(s, tc);
    TCase *tk = tcase_create("kernels");
    tcase_set_timeout(tk, 60);
    tcase_add_test(tk, test_bias_act_vs_reference);
    tcase_add_test(tk, test_bwd_rowsum_axpy_vs_reference);
    tcase_add_test(tk, test_blas_axpy_lengths);
    tcase_add_test(tk, test_tables);
    suite_add_tcase(s, tk);
    return s;
}

int main(void) { return bp_test_main(fastmath_suite()); }
