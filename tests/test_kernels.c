/*
 * test_kernels.c - every backend's kernels against the naive reference on odd shapes.
 *
 * Tolerance: a float dot product of k terms carries a relative rounding error of about
 * sqrt(k) * 2^-24 when the terms' signs are random; squared, the NMSE is about k * 3.6e-15.
 * Blocked BLAS sums in another order but with the same error law, so for k <= 1000 we expect
 * well under 1e-11 and assert 1e-9: two orders of margin, while any indexing or transpose bug
 * gives an NMSE near 1.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "kernels/threads.h"
#include "testutil.h"

static const double GEMM_NMSE = 1e-9;

/* m, n, k; each case also runs with padded leading dimensions. */
static const int shapes[][3] = {
    {1, 1, 1}, {7, 1, 33}, {1, 7, 5}, {33, 7, 64}, {64, 33, 7}, {100, 13, 784}, {10, 64, 100},
    {300, 200, 160}, /* large enough that the blas backend runs it on every thread */
    {100, 784, 1}, {33, 17, 1}, /* k = 1: the rank-1 path of BP4 at B = 1 */
    {100, 1, 784}, {784, 1, 100}, {1024, 1, 1024}, /* n = 1: the matrix-vector path (B = 1) */
};

static const bp_backend *backend_at(int i) { return bp_backend_find(bp_backend_name(i)); }

START_TEST(test_sgemm_matches_naive)
{
    uint64_t seed = 42;
    for (int be_i = 0; be_i < bp_backend_count(); be_i++) {
        const bp_backend *be = backend_at(be_i);
        for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
            for (int pad = 0; pad <= 3; pad += 3)
                for (int ta = 0; ta < 2; ta++)
                    for (int tb = 0; tb < 2; tb++)
                        for (int beta_i = 0; beta_i < 2; beta_i++) {
                            int m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
                            int ar = ta ? k : m, ac = ta ? m : k;
                            int br = tb ? n : k, bc = tb ? k : n;
                            int lda = ar + pad, ldb = br + pad, ldc = m + pad;
                            float *a = malloc(sizeof(float) * lda * ac);
                            float *b = malloc(sizeof(float) * ldb * bc);
                            float *c = malloc(sizeof(float) * ldc * n);
                            float *ref = malloc(sizeof(float) * ldc * n);
                            bp_test_fill(a, (size_t)lda * ac, -1, 1, &seed);
                            bp_test_fill(b, (size_t)ldb * bc, -1, 1, &seed);
                            bp_test_fill(ref, (size_t)ldc * n, -1, 1, &seed);
                            memcpy(c, ref, sizeof(float) * ldc * n);
                            float beta = beta_i ? 0.5f : 0.0f;
                            if (beta == 0.0f) /* beta = 0 must not read C: NaN may not survive */
                                for (int i = 0; i < ldc * n; i++)
                                    c[i] = NAN;
                            bp_sgemm_naive(ta, tb, m, n, k, 0.75f, a, lda, b, ldb, beta, ref,
                                           ldc);
                            be->sgemm(ta, tb, m, n, k, 0.75f, a, lda, b, ldb, beta, c, ldc);
                            /* Compare only the m x n block; padding rows are not C's. */
                            double num = 0, den = 0;
                            for (int j = 0; j < n; j++)
                                for (int i = 0; i < m; i++) {
                                    double x = c[i + j * ldc], r = ref[i + j * ldc];
                                    ck_assert_msg(isfinite(x), "%s: non-finite C(%d,%d)",
                                                  be->name, i, j);
                                    num += (x - r) * (x - r);
                                    den += r * r;
                                }
                            ck_assert_msg(num / den < GEMM_NMSE,
                                          "%s sgemm %c%c m=%d n=%d k=%d pad=%d beta=%g: nmse %g",
                                          be->name, ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, pad,
                                          beta, num / den);
                            free(a), free(b), free(c), free(ref);
                        }
    }
}
END_TEST

/* The matrix-vector (n = 1) and rank-1 (k = 1) products skip the zeros of their vector operand,
 * as MNIST's inputs are mostly zero: with 80% zeros (and NaN in C where beta = 0 forbids reading
 * it), both still agree with the naive loops, for beta 0, 1/2 and 1 and a padded lda. */
START_TEST(test_sgemm_sparse_vector_operand)
{
    uint64_t seed = 11;
    const int m = 100, k = 784, lda = 104;
    const float betas[] = {0.0f, 0.5f, 1.0f};
    float *w = malloc(sizeof(float) * lda * k), *x = malloc(sizeof(float) * k);
    float *c = malloc(sizeof(float) * lda * k), *ref = malloc(sizeof(float) * lda * k);
    float *d = malloc(sizeof(float) * m);
    bp_test_fill(w, (size_t)lda * k, -1, 1, &seed);
    bp_test_fill(x, (size_t)k, -1, 1, &seed);
    bp_test_fill(d, (size_t)m, -1, 1, &seed);
    for (int j = 0; j < k; j++)
        if (j % 5 != 0)
            x[j] = 0.0f;
    for (int be_i = 0; be_i < bp_backend_count(); be_i++) {
        const bp_backend *be = backend_at(be_i);
        for (int bi = 0; bi < 3; bi++) {
            float beta = betas[bi];
            /* forward at B = 1: c (m) = W x */
            bp_test_fill(ref, (size_t)m, -1, 1, &seed);
            for (int i = 0; i < m; i++)
                c[i] = beta == 0.0f ? NAN : ref[i];
            bp_sgemm_naive(BP_NOTRANS, BP_NOTRANS, m, 1, k, 0.75f, w, lda, x, k, beta, ref, m);
            be->sgemm(BP_NOTRANS, BP_NOTRANS, m, 1, k, 0.75f, w, lda, x, k, beta, c, m);
            ck_assert_msg(bp_test_nmse(c, ref, (size_t)m) < GEMM_NMSE,
                          "%s matrix-vector, sparse x, beta %g", be->name, beta);
            /* BP4 at B = 1: C (m x k, ld lda) = beta C - d x^T */
            bp_test_fill(ref, (size_t)lda * k, -1, 1, &seed);
            for (size_t i = 0; i < (size_t)lda * k; i++)
                c[i] = beta == 0.0f ? NAN : ref[i];
            bp_sgemm_naive(BP_NOTRANS, BP_TRANS, m, k, 1, -0.5f, d, m, x, k, beta, ref, lda);
            be->sgemm(BP_NOTRANS, BP_TRANS, m, k, 1, -0.5f, d, m, x, k, beta, c, lda);
            for (int j = 0; j < k; j++)
                for (int i = 0; i < m; i++)
                    ck_assert_msg(fabsf(c[i + j * lda] - ref[i + j * lda]) <= 1e-6f,
                                  "%s rank-1, sparse x, beta %g: C(%d,%d) = %g, want %g",
                                  be->name, beta, i, j, c[i + j * lda], ref[i + j * lda]);
        }
    }
    free(w), free(x), free(c), free(ref), free(d);
}
END_TEST

/* The naive sgemm itself, against a hand-computed product, so the oracle is not trusted blind. */
START_TEST(test_naive_sgemm_by_hand)
{
    /* A = [1 2; 3 4] (column-major {1,3,2,4}), B = [5 6; 7 8] ({5,7,6,8}). */
    const float a[] = {1, 3, 2, 4}, b[] = {5, 7, 6, 8};
    float c[4];
    bp_sgemm_naive(BP_NOTRANS, BP_NOTRANS, 2, 2, 2, 1, a, 2, b, 2, 0, c, 2);
    const float ab[] = {19, 43, 22, 50};
    ck_assert_mem_eq(c, ab, sizeof c);
    bp_sgemm_naive(BP_TRANS, BP_NOTRANS, 2, 2, 2, 1, a, 2, b, 2, 0, c, 2);
    const float atb[] = {26, 38, 30, 44}; /* A^T B */
    ck_assert_mem_eq(c, atb, sizeof c);
    bp_sgemm_naive(BP_NOTRANS, BP_TRANS, 2, 2, 2, 1, a, 2, b, 2, 0, c, 2);
    const float abt[] = {17, 39, 23, 53}; /* A B^T */
    ck_assert_mem_eq(c, abt, sizeof c);
    bp_sgemm_naive(BP_TRANS, BP_TRANS, 2, 2, 2, 2, a, 2, b, 2, 1, c, 2);
    const float atbt[] = {17 + 2 * 23, 39 + 2 * 34, 23 + 2 * 31, 53 + 2 * 46}; /* 2 A^T B^T + C */
    ck_assert_mem_eq(c, atbt, sizeof c);
}
END_TEST

static double ref_act(bp_activation act, double z)
{
    switch (act) {
    case BP_ACT_SIGMOID: return 1.0 / (1.0 + exp(-z));
    case BP_ACT_TANH: return tanh(z);
    case BP_ACT_RELU: return z > 0 ? z : 0;
    default: return z;
    }
}

/* bias+activation against a double-precision evaluation, for every backend; odd shapes and
 * padded ld. Elementwise float functions are accurate to a few ulp, so 1e-6 relative. */
START_TEST(test_bias_act_all_backends)
{
    uint64_t seed = 7;
    const int rows = 13, cols = 9, ld = 16;
    float z[16 * 9], bias[13], orig[16 * 9];
    bp_test_fill(orig, 16 * 9, -30, 30, &seed);
    bp_test_fill(bias, 13, -2, 2, &seed);
    for (int be_i = 0; be_i < bp_backend_count(); be_i++)
        for (int act = 0; act < BP_ACT_COUNT; act++) {
            const bp_backend *be = backend_at(be_i);
            memcpy(z, orig, sizeof z);
            be->bias_act(act, rows, cols, bias, z, ld);
            for (int j = 0; j < cols; j++) {
                double max = -INFINITY, sum = 0;
                for (int i = 0; i < rows; i++)
                    max = fmax(max, orig[i + j * ld] + (double)bias[i]);
                for (int i = 0; i < rows; i++)
                    sum += exp(orig[i + j * ld] + (double)bias[i] - max);
                for (int i = 0; i < rows; i++) {
                    double zz = orig[i + j * ld] + (double)bias[i];
                    double want = act == BP_ACT_SOFTMAX ? exp(zz - max) / sum
                                                        : ref_act(act, zz);
                    ck_assert_msg(fabs(z[i + j * ld] - want) <= 1e-6 * fmax(1.0, fabs(want)),
                                  "%s %s(%g) = %g, want %g", be->name, bp_activation_name(act),
                                  zz, z[i + j * ld], want);
                }
                for (int i = rows; i < ld; i++) /* padding untouched */
                    ck_assert_float_eq(z[i + j * ld], orig[i + j * ld]);
            }
        }
}
END_TEST

START_TEST(test_act_bwd_and_rowsum_all_backends)
{
    uint64_t seed = 9;
    const int rows = 7, cols = 5, ld = 8;
    float a[8 * 5], d[8 * 5], d0[8 * 5], sums[7];
    for (int be_i = 0; be_i < bp_backend_count(); be_i++) {
        const bp_backend *be = backend_at(be_i);
        for (int act = 0; act < BP_ACT_SOFTMAX; act++) {
            bp_test_fill(a, 40, -1, 1, &seed);
            if (act == BP_ACT_SIGMOID)
                for (int i = 0; i < 40; i++)
                    a[i] = 0.5f + 0.5f * a[i];
            bp_test_fill(d0, 40, -1, 1, &seed);
            memcpy(d, d0, sizeof d);
            be->act_bwd_hadamard(act, rows, cols, a, ld, d, ld);
            for (int j = 0; j < cols; j++)
                for (int i = 0; i < rows; i++) {
                    double x = a[i + j * ld], deriv = act == BP_ACT_SIGMOID ? x * (1 - x)
                                                    : act == BP_ACT_TANH    ? 1 - x * x
                                                    : act == BP_ACT_RELU    ? (x > 0)
                                                                            : 1.0;
                    ck_assert_double_eq_tol(d[i + j * ld], d0[i + j * ld] * deriv, 1e-6);
                }
        }
        be->rowsum(rows, cols, 0.5f, d0, ld, sums);
        for (int i = 0; i < rows; i++) {
            double s = 0;
            for (int j = 0; j < cols; j++)
                s += d0[i + j * ld];
            ck_assert_double_eq_tol(sums[i], 0.5 * s, 1e-6);
        }
        float x[37], y[37], y0[37];
        bp_test_fill(x, 37, -1, 1, &seed);
        bp_test_fill(y0, 37, -1, 1, &seed);
        memcpy(y, y0, sizeof y);
        be->axpy(37, -0.25f, x, y);
        for (int i = 0; i < 37; i++)
            ck_assert_float_eq_tol(y[i], y0[i] - 0.25f * x[i], 1e-6f);
    }
}
END_TEST

START_TEST(test_backend_registry)
{
    ck_assert_int_eq(bp_backend_count(), 2);
    ck_assert_ptr_eq(bp_backend_find("blas"), &bp_backend_blas);
    ck_assert_ptr_eq(bp_backend_find("naive"), &bp_backend_naive);
    ck_assert_ptr_null(bp_backend_find("cuda"));
    ck_assert_ptr_null(bp_backend_find(NULL));
    ck_assert_ptr_null(bp_backend_name(2));
}
END_TEST

/* The per-shape thread rule: one thread where a second one was measured to lose. */
START_TEST(test_gemm_thread_choice)
{
    ck_assert_int_eq(bp_gemm_threads(BP_NOTRANS, BP_NOTRANS, 300, 200, 160, 2), 2);
    ck_assert_int_eq(bp_gemm_threads(BP_NOTRANS, BP_NOTRANS, 300, 200, 160, 1), 1);
    ck_assert_int_eq(bp_gemm_threads(BP_NOTRANS, BP_TRANS, 100, 784, 32, 2), 1);  /* BP4, B=32 */
    ck_assert_int_eq(bp_gemm_threads(BP_TRANS, BP_NOTRANS, 100, 1024, 10, 2), 1); /* BP2 */
    ck_assert_int_eq(bp_gemm_threads(BP_NOTRANS, BP_NOTRANS, 10, 1024, 1024, 2), 1);
    ck_assert_int_eq(bp_gemm_threads(BP_NOTRANS, BP_NOTRANS, 1024, 1, 1024, 2), 2); /* B=1 */
    ck_assert_int_eq(bp_gemm_threads(BP_NOTRANS, BP_NOTRANS, 100, 1, 784, 2), 1);
    ck_assert_int_eq(bp_gemm_threads(BP_NOTRANS, BP_TRANS, 1024, 1024, 256, 2), 2);
    ck_assert_int_eq(bp_gemm_threads(BP_NOTRANS, BP_TRANS, 100, 784, 64, 2), 1);
    ck_assert_int_eq(bp_gemm_threads(BP_NOTRANS, BP_TRANS, 1024, 784, 10, 2), 2);
    ck_assert_int_eq(bp_gemm_threads(BP_NOTRANS, BP_TRANS, 100, 784, 1024, 2), 2);
}
END_TEST

static Suite *kernels_suite(void)
{
    Suite *s = suite_create("kernels");
    TCase *tc = tcase_create("parity");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_naive_sgemm_by_hand);
    tcase_add_test(tc, test_sgemm_matches_naive);
    tcase_add_test(tc, test_sgemm_sparse_vector_operand);
    tcase_add_test(tc, test_bias_act_all_backends);
    tcase_add_test(tc, test_act_bwd_and_rowsum_all_backends);
    tcase_add_test(tc, test_backend_registry);
    tcase_add_test(tc, test_gemm_thread_choice);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return bp_test_main(kernels_suite()); }
