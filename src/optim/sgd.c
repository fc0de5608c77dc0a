/* sgd.c - plain stochastic gradient descent. */
#include "optim/optim.h"

static int sgd_fuse(const bp_optimizer *opt, bp_grad_target *target)
{
    *target = (bp_grad_target){BP_TARGET_PARAMS, -opt->eta, 1.0f - opt->eta * opt->decay};
    return 1;
}

/* The unfused form: the same rule when a caller asks for the gradient arena first. */
static void sgd_step(const bp_optimizer *opt, float *params, const float *grads, float *state,
                     size_t n, size_t i0, size_t i1)
{
    (void)state, (void)n;
    for (size_t i = i0; i < i1; i++)
        params[i] -= opt->eta * grads[i];
}

const bp_optimizer_ops bp_sgd_ops = {
    .name = "sgd",
    .state_per_param = 0,
    .fuse = sgd_fuse,
    .step = sgd_step,
};
