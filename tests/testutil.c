/* testutil.c - the runner and helpers every suite links. */
#include <stdlib.h>

#include "backprop.h"
#include "testutil.h"

int bp_test_main(Suite *suite)
{
    SRunner *sr = srunner_create(suite);
    srunner_set_tap(sr, "-"); /* "-" is stdout: reopening /dev/stdout would clobber a redirected log */
    srunner_run_all(sr, CK_SILENT);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

void bp_test_fill(float *x, size_t n, float lo, float hi, uint64_t *state)
{
    for (size_t i = 0; i < n; i++) {
        /* xorshift64*: enough for test data, independent of the library's RNG under test. */
        *state ^= *state >> 12;
        *state ^= *state << 25;
        *state ^= *state >> 27;
        uint64_t r = *state * 0x2545F4914F6CDD1DULL;
        x[i] = lo + (hi - lo) * (float)((double)(r >> 40) / (double)(1ULL << 24));
    }
}

double bp_test_nmse(const float *a, const float *b, size_t n)
{
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = (double)a[i] - (double)b[i];
        num += e * e;
        den += (double)b[i] * (double)b[i];
    }
    return den > 0.0 ? num / den : num;
}

size_t bp_test_tensor_at(const bp_tensor_info *t, size_t e)
{
    size_t at = t->offset;
    for (int d = t->ndim - 1; d >= 0; d--) {
        at += (e % (size_t)t->shape[d]) * (size_t)t->stride[d];
        e /= (size_t)t->shape[d];
    }
    return at;
}
