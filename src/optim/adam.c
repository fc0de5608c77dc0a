/*
 * adam.c - Adam (Kingma & Ba, 2015) and AdamW (Loshchilov & Hutter, 2019). Two state blocks,
 * the moments m (block 0) and v (block 1), zero at the start:
 *
 *   m <- b1 m + (1 - b1) G;  v <- b2 v + (1 - b2) G^2
 *   W <- (1 - eta weight_decay) W - eta m_hat / (sqrt(v_hat) + eps)
 *   m_hat = m / (1 - b1^t), v_hat = v / (1 - b2^t)
 *
 * adam has weight_decay 0 (the trainer refuses anything else), so the factor is exactly 1 and
 * both rules share the loop. AdamW's decay is of W as it was before the step, outside G and
 * the moments: the paper's and torch.optim.AdamW's form. The bias corrections come from
 * bp_optimizer_begin_step, in double, once per step.
 */
#include <math.h>

#include "optim/optim.h"

/* sqrtf of a sum of squares: v >= 0 always, so the library's -fno-math-errno (meson.build)
 * costs nothing and lets sqrtf be one vector instruction instead of a call that sets errno. */
BP_OPTIM_INLINE void adam_span(const bp_optimizer *opt, float *restrict w,
                               const float *restrict g, float *restrict m, float *restrict v,
                               size_t i0, size_t i1, int regularised)
{
    const float b1 = opt->beta1, b2 = opt->beta2, a1 = 1.0f - b1, a2 = 1.0f - b2;
    const float eps = opt->eps, scale = opt->grad_scale;
    const float keep = 1.0f - opt->eta * opt->weight_decay;
    /* eta m_hat = (eta / (1 - b1^t)) m: one factor, rounded once from double. */
    const float rate = (float)((double)opt->eta * opt->correction1);
    const float c2 = (float)opt->correction2;
    const float decay = regularised ? opt->decay : 0.0f, l1 = regularised ? opt->l1 : 0.0f;
    for (size_t i = i0; i < i1; i++) {
        float G = regularised ? bp_optim_grad(g[i], w[i], scale, decay, l1) : scale * g[i];
        float mi = b1 * m[i] + a1 * G;
        float vi = b2 * v[i] + a2 * (G * G);
        m[i] = mi;
        v[i] = vi;
        w[i] = keep * w[i] - rate * mi / (sqrtf(vi * c2) + eps);
    }
}

BP_CLONES static void adam_step(const bp_optimizer *opt, float *params, const float *grads,
                                float *state, size_t n, size_t i0, size_t i1)
{
    if (bp_optim_regularised(opt))
        adam_span(opt, params, grads, state, state + n, i0, i1, 1);
    else
        adam_span(opt, params, grads, state, state + n, i0, i1, 0);
}

const bp_optimizer_ops bp_adam_ops = {
    .name = "adam",
    .state_per_param = 2,
    .fuse = bp_optimizer_never_fuse,
    .step = adam_step,
};

const bp_optimizer_ops bp_adamw_ops = {
    .name = "adamw",
    .state_per_param = 2,
    .fuse = bp_optimizer_never_fuse,
    .step = adam_step,
};
