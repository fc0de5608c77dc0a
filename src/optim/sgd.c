/* sgd.c - plain stochastic gradient descent. */
#include "optim/optim.h"

static int sgd_fuse(const bp_optimizer *opt, bp_grad_target *target)
{
    /* L1 needs sign(W) of the weights before the update, which BP4's GEMM cannot give. */
    if (opt->l1 != 0.0f)
        return 0;
    *target = (bp_grad_target){BP_TARGET_PARAMS, -opt->eta, 1.0f - opt->eta * opt->decay};
    return 1;
}

/* The unfused form, W <- (1 - eta decay) W - (eta l1) sign(W) - eta G, sign(0) = 0: taken
 * with L1, or when a caller asks for the gradient arena first. */
static void sgd_step(const bp_optimizer *opt, float *params, const float *grads, float *state,
                     size_t n, size_t i0, size_t i1)
{
    (void)state, (void)n;
    float eta = opt->eta, keep = 1.0f - eta * opt->decay, shrink = eta * opt->l1;
    if (keep == 1.0f && shrink == 0.0f) {
        for (size_t i = i0; i < i1; i++)
            params[i] -= eta * grads[i];
        return;
    }
    for (size_t i = i0; i < i1; i++) {
        float sign = (float)(params[i] > 0.0f) - (float)(params[i] < 0.0f);
        params[i] = keep * params[i] - shrink * sign - eta * grads[i];
    }
}

const bp_optimizer_ops bp_sgd_ops = {
    .name = "sgd",
    .state_per_param = 0,
    .fuse = sgd_fuse,
    .step = sgd_step,
};
