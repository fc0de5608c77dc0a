/*
 * test_rng.c - the library's generators: the seeded stream is the same on every platform, and
 * the counter-based draws are a pure function of their key, well spread, and unrelated for
 * neighbouring keys.
 */
#include <math.h>
#include <stdlib.h>

#include "core/core.h"
#include "testutil.h"

/* xoshiro256** seeded through splitmix64 from 1: the first outputs, pinned, so a change of the
 * stream (which would change every initialisation and shuffle) cannot pass unnoticed. The
 * values come from an independent implementation of the published algorithms (a few lines of
 * Python with 64-bit masks), not from this library. */
START_TEST(test_seeded_stream_is_stable)
{
    static const uint64_t first[4] = {0xb3f2af6d0fc710c5ULL, 0x853b559647364ceaULL,
                                      0x92f89756082a4514ULL, 0x642e1c7bc266a3a7ULL};
    bp_rng a, b;
    bp_rng_seed(&a, 1);
    for (int i = 0; i < 4; i++)
        ck_assert_uint_eq(bp_rng_next(&a), first[i]);
    bp_rng_seed(&a, 1);
    bp_rng_seed(&b, 1);
    for (int i = 0; i < 1000; i++)
        ck_assert_uint_eq(bp_rng_next(&a), bp_rng_next(&b));
    bp_rng_seed(&b, 2);
    int same = 0;
    for (int i = 0; i < 1000; i++)
        same += bp_rng_next(&a) == bp_rng_next(&b);
    ck_assert_int_eq(same, 0);
}
END_TEST

START_TEST(test_counter_is_a_pure_function)
{
    /* The same key gives the same value, whatever was drawn in between or in what order. */
    uint64_t v[4][8];
    for (uint32_t c = 0; c < 8; c++)
        for (int k = 0; k < 4; k++)
            v[k][c] = bp_rng_counter(42, 1000 + (uint64_t)k, 2, c, 0);
    for (int k = 3; k >= 0; k--)
        for (int c = 7; c >= 0; c--)
            ck_assert_uint_eq(bp_rng_counter(42, 1000 + (uint64_t)k, 2, (uint32_t)c, 0),
                              v[k][c]);
    /* Every coordinate of the key matters. */
    uint64_t base = bp_rng_counter(42, 7, 3, 5, 11);
    ck_assert_uint_ne(bp_rng_counter(43, 7, 3, 5, 11), base);
    ck_assert_uint_ne(bp_rng_counter(42, 8, 3, 5, 11), base);
    ck_assert_uint_ne(bp_rng_counter(42, 7, 4, 5, 11), base);
    ck_assert_uint_ne(bp_rng_counter(42, 7, 3, 6, 11), base);
    ck_assert_uint_ne(bp_rng_counter(42, 7, 3, 5, 12), base);
    ck_assert_uint_ne(bp_rng_counter(42, 7, 5, 3, 11), base); /* layer and column swapped */
}
END_TEST

/* Neighbouring keys (consecutive columns, as a mask is drawn) give well-spread, uncorrelated
 * values: each of the 64 bits is set about half the time, uniforms fill 16 bins evenly
 * (chi-square), and consecutive draws are not correlated. */
START_TEST(test_counter_draws_are_well_spread)
{
    enum { N = 1 << 16, BINS = 16 };
    long bits[64] = {0}, bins[BINS] = {0};
    double sum_xy = 0, sum_x = 0, sum_x2 = 0;
    float prev = 0;
    for (uint32_t i = 0; i < N; i++) {
        uint64_t r = bp_rng_counter(9, 3, 1, i, 0);
        for (int b = 0; b < 64; b++)
            bits[b] += (long)(r >> b & 1);
        float u = bp_rng_counter_uniform(r);
        ck_assert(u >= 0.0f && u < 1.0f);
        bins[(int)(u * BINS)]++;
        sum_x += u;
        sum_x2 += (double)u * u;
        if (i)
            sum_xy += (double)u * prev;
        prev = u;
    }
    /* A bit's count over N fair draws has sd sqrt(N)/2 = 128: 6 sd is 768. */
    for (int b = 0; b < 64; b++)
        ck_assert_msg(labs(bits[b] - N / 2) < 768, "bit %d set %ld times of %d", b, bits[b], N);
    double chi2 = 0, expect = (double)N / BINS;
    for (int k = 0; k < BINS; k++)
        chi2 += (bins[k] - expect) * (bins[k] - expect) / expect;
    ck_assert_msg(chi2 < 45.0, "chi-square %g over 15 degrees of freedom", chi2); /* p ~ 1e-4 */
    double mean = sum_x / N, var = sum_x2 / N - mean * mean;
    double corr = (sum_xy / (N - 1) - mean * mean) / var;
    ck_assert_msg(fabs(corr) < 0.02, "lag-1 correlation %g", corr); /* 5 sd of 1/sqrt(N) */
}
END_TEST

static Suite *rng_suite(void)
{
    Suite *s = suite_create("rng");
    TCase *tc = tcase_create("rng");
    tcase_add_test(tc, test_seeded_stream_is_stable);
    tcase_add_test(tc, test_counter_is_a_pure_function);
    tcase_add_test(tc, test_counter_draws_are_well_spread);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return bp_test_main(rng_suite()); }
