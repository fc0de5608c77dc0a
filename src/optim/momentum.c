/*
 * momentum.c - heavy-ball momentum (Nielsen ch. 3) and Nesterov's accelerated gradient in
 * Sutskever et al.'s (2013) form. One state block: the velocity v, zero at the start.
 *
 *   momentum  v <- mu v - eta G;  W <- W + v
 *   nesterov  v <- mu v - eta G;  W <- W + mu v - eta G
 *
 * eta sits inside v, as in Nielsen, so a schedule that lowers eta lowers the new steps and
 * lets the old velocity decay by mu on its own.
 */
#include "optim/optim.h"

/* Both rules in one loop body; `nesterov` and `regularised` are constants at each call, so
 * every combination compiles to its own branch-free loop. */
BP_OPTIM_INLINE void velocity_span(const bp_optimizer *opt, float *restrict w,
                                   const float *restrict g, float *restrict v, size_t i0,
                                   size_t i1, int nesterov, int regularised)
{
    const float eta = opt->eta, mu = opt->mu, scale = opt->grad_scale;
    const float decay = regularised ? opt->decay : 0.0f, l1 = regularised ? opt->l1 : 0.0f;
    for (size_t i = i0; i < i1; i++) {
        float G = regularised ? bp_optim_grad(g[i], w[i], scale, decay, l1) : scale * g[i];
        float vi = mu * v[i] - eta * G;
        v[i] = vi;
        w[i] += nesterov ? mu * vi - eta * G : vi;
    }
}

BP_CLONES static void momentum_step(const bp_optimizer *opt, float *params, const float *grads,
                                    float *state, size_t n, size_t i0, size_t i1)
{
    (void)n;
    if (bp_optim_regularised(opt))
        velocity_span(opt, params, grads, state, i0, i1, 0, 1);
    else
        velocity_span(opt, params, grads, state, i0, i1, 0, 0);
}

BP_CLONES static void nesterov_step(const bp_optimizer *opt, float *params, const float *grads,
                                    float *state, size_t n, size_t i0, size_t i1)
{
    (void)n;
    if (bp_optim_regularised(opt))
        velocity_span(opt, params, grads, state, i0, i1, 1, 1);
    else
        velocity_span(opt, params, grads, state, i0, i1, 1, 0);
}

const bp_optimizer_ops bp_momentum_ops = {
    .name = "momentum",
    .state_per_param = 1,
    .fuse = bp_optimizer_never_fuse,
    .step = momentum_step,
};

const bp_optimizer_ops bp_nesterov_ops = {
    .name = "nesterov",
    .state_per_param = 1,
    .fuse = bp_optimizer_never_fuse,
    .step = nesterov_step,
};
