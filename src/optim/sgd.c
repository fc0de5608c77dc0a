/* sgd.c - plain stochastic gradient descent. */
#include "optim/optim.h"

static int sgd_fuse(const bp_optimizer *opt, bp_grad_target *target)
{
    /* L1 needs sign(W) of the weights before the update, which BP4's GEMM cannot give; clipping
     * needs the whole gradient's norm before any of it is applied. */
    if (opt->l1 != 0.0f || opt->clip_norm > 0.0f)
        return 0;
    *target = (bp_grad_target){BP_TARGET_PARAMS, -opt->eta, 1.0f - opt->eta * opt->decay};
    return 1;
}

/* The unfused form, W <- (1 - eta decay) W - (eta l1) sign(W) - eta s g, sign(0) = 0 (s the
 * clipping factor): taken with L1 or clipping, or when a caller asks for the gradient arena
 * first. */
BP_CLONES static void sgd_step(const bp_optimizer *opt, float *restrict params,
                               const float *restrict grads, float *state, size_t n, size_t i0,
                               size_t i1)
{
    (void)state, (void)n;
    const float eta = opt->eta, keep = 1.0f - eta * opt->decay, shrink = eta * opt->l1;
    const float scale = opt->grad_scale;
    if (keep == 1.0f && shrink == 0.0f) {
        for (size_t i = i0; i < i1; i++)
            params[i] -= eta * (scale * grads[i]);
        return;
    }
    for (size_t i = i0; i < i1; i++) {
        float sign = (float)(params[i] > 0.0f) - (float)(params[i] < 0.0f);
        params[i] = keep * params[i] - shrink * sign - eta * (scale * grads[i]);
    }
}

const bp_optimizer_ops bp_sgd_ops = {
    .name = "sgd",
    .state_per_param = 0,
    .fuse = sgd_fuse,
    .step = sgd_step,
};
