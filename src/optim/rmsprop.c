/*
 * rmsprop.c - RMSProp (Hinton's lecture 6e): one state block, the running mean of G^2, zero at
 * the start, with beta2 as its decay:
 *
 *   v <- b2 v + (1 - b2) G^2;  W <- W - eta G / (sqrt(v) + eps)
 *
 * No bias correction (the rule as published has none), so the first steps are large: with
 * v = (1 - b2) G^2 the first is eta / sqrt(1 - b2) per element, about 32 eta at b2 = 0.999.
 */
#include <math.h>

#include "optim/optim.h"

BP_OPTIM_INLINE void rmsprop_span(const bp_optimizer *opt, float *restrict w,
                                  const float *restrict g, float *restrict v, size_t i0,
                                  size_t i1, int regularised)
{
    const float b2 = opt->beta2, a2 = 1.0f - b2, eps = opt->eps, eta = opt->eta;
    const float scale = opt->grad_scale;
    const float decay = regularised ? opt->decay : 0.0f, l1 = regularised ? opt->l1 : 0.0f;
    for (size_t i = i0; i < i1; i++) {
        float G = regularised ? bp_optim_grad(g[i], w[i], scale, decay, l1) : scale * g[i];
        float vi = b2 * v[i] + a2 * (G * G);
        v[i] = vi;
        w[i] -= eta * G / (sqrtf(vi) + eps);
    }
}

BP_CLONES static void rmsprop_step(const bp_optimizer *opt, float *params, const float *grads,
                                   float *state, size_t n, size_t i0, size_t i1)
{
    (void)n;
    if (bp_optim_regularised(opt))
        rmsprop_span(opt, params, grads, state, i0, i1, 1);
    else
        rmsprop_span(opt, params, grads, state, i0, i1, 0);
}

const bp_optimizer_ops bp_rmsprop_ops = {
    .name = "rmsprop",
    .state_per_param = 1,
    .fuse = bp_optimizer_never_fuse,
    .step = rmsprop_step,
};
