/*
 * test_optim.c - the optimiser table: SGD's fused form (folded into BP4 through the gradient
 * target) and its unfused form (an update over ranges of the arena) land on the same
 * parameters, however the arena is split into ranges.
 */
#include <math.h>
#include <stdlib.h>

#include "backprop.h"
#include "optim/optim.h"
#include "testutil.h"

START_TEST(test_sgd_fused_and_ranged_agree)
{
    const int sizes[] = {13, 9, 7, 4};
    bp_net_config cfg;
    bp_net_config_init(&cfg);
    cfg.sizes = sizes;
    cfg.n_sizes = 4;
    cfg.max_batch = 6;
    cfg.threads = 1;
    bp_net *fused, *ranged;
    ck_assert_int_eq(bp_net_create(&fused, &cfg), BP_OK);
    ck_assert_int_eq(bp_net_create(&ranged, &cfg), BP_OK);
    float x[13 * 6], y[4 * 6] = {0};
    uint64_t seed = 41;
    bp_test_fill(x, 13 * 6, -1, 1, &seed);
    for (int s = 0; s < 6; s++)
        y[s * 4 + (s * 3) % 4] = 1;
    const bp_optimizer sgd = {&bp_sgd_ops, 0.3f, 0.0f, 0.0f};
    bp_grad_target target;
    ck_assert_int_eq(sgd.ops->fuse(&sgd, &target), 1);
    ck_assert_int_eq(target.into, BP_TARGET_PARAMS);
    ck_assert_float_eq(target.alpha, -0.3f);
    ck_assert_int_eq(sgd.ops->state_per_param, 0);

    size_t n;
    float *p = bp_net_params(ranged, &n);
    const float *g = bp_net_grads(ranged, NULL);
    for (int step = 0; step < 3; step++) {
        ck_assert_int_eq(bp_net_sgd_step(fused, x, 13, y, 4, 6, 0.3f, NULL), BP_OK);
        ck_assert_int_eq(bp_net_gradient(ranged, x, 13, y, 4, 6, NULL), BP_OK);
        /* Three uneven ranges, in an order that is not the arena's. */
        size_t cut1 = n / 3, cut2 = n - 5;
        sgd.ops->step(&sgd, p, g, NULL, n, cut2, n);
        sgd.ops->step(&sgd, p, g, NULL, n, 0, cut1);
        sgd.ops->step(&sgd, p, g, NULL, n, cut1, cut2);
    }
    const float *pf = bp_net_params(fused, NULL);
    double worst = 0;
    for (size_t i = 0; i < n; i++)
        worst = fmax(worst, fabs(pf[i] - p[i]) / fmax(1e-3, fabs(p[i])));
    /* Only where the update is rounded differs (inside the GEMM or after it). */
    ck_assert_msg(worst < 1e-5, "fused and ranged SGD differ by %g", worst);
    bp_net_free(fused);
    bp_net_free(ranged);
}
END_TEST

static Suite *optim_suite(void)
{
    Suite *s = suite_create("optim");
    TCase *tc = tcase_create("sgd");
    tcase_add_test(tc, test_sgd_fused_and_ranged_agree);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return bp_test_main(optim_suite()); }
