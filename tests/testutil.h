/* testutil.h - what the Check suites share: the runner, random fills, error measures. */
#ifndef BP_TESTUTIL_H
#define BP_TESTUTIL_H

#include <check.h>
#include <stddef.h>
#include <stdint.h>

/* Run one suite with TAP on stdout (meson reads it); exit status 0 only if all passed. */
int bp_test_main(Suite *suite);

/* Deterministic uniform floats in [lo, hi). */
void bp_test_fill(float *x, size_t n, float lo, float hi, uint64_t *state);

/* Normalised mean squared error sum (a-b)^2 / sum b^2 over n values (b is the reference). */
double bp_test_nmse(const float *a, const float *b, size_t n);

/* The arena offset of element e (row-major over its shape) of a tensor of the net's table. */
struct bp_tensor_info;
size_t bp_test_tensor_at(const struct bp_tensor_info *t, size_t e);

#endif
