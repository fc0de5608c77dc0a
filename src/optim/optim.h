/*
 * optim.h - optimisers: update rules over the parameter arena, its gradient arena and a state
 * arena of the same layout. They know no layers and no net (train/ drives them), so the net
 * never knows an optimiser either: the gradient target in core.h is the whole interface.
 */
#ifndef BP_OPTIM_H
#define BP_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

typedef struct bp_optimizer bp_optimizer;

typedef struct bp_optimizer_ops {
    const char *name;
    /* Floats of state per parameter: sgd 0, momentum 1 (velocity), adam 2 (m, v). The state
     * arena is that many blocks of n_params floats, each laid out like the parameters (block
     * k's element i is state[k * n_params + i]), so the tensor table's offsets hold in every
     * block and a range [i0, i1) of the parameters is the same range of each block. */
    int state_per_param;
    /* Whether this step may fold into BP4 (a stateless rule whose gradient nobody else needs);
     * if so, fill *target with where and how BP4 should write, and skip step(). */
    int (*fuse)(const bp_optimizer *opt, bp_grad_target *target);
    /* The update of elements [i0, i1) of arenas of n floats, from the gradient of the mean
     * cost in grads: a range, so threads (and later MPI ranks) can each take their own. n is
     * also the stride between the state blocks. Elementwise: any split of the arena into
     * ranges gives the same bits. */
    void (*step)(const bp_optimizer *opt, float *params, const float *grads, float *state,
                 size_t n, size_t i0, size_t i1);
} bp_optimizer_ops;

/* An optimiser and its hyper-parameters, as plain data. Made by bp_optimizer_init (which sets
 * the neutral values: a zeroed struct would scale every gradient by 0). */
struct bp_optimizer {
    const bp_optimizer_ops *ops;
    float eta;
    /* Regularisation of the weights only, per Nielsen's network2 (n the training-set size):
     * decay = lambda / n (L2), l1 = l1 / n; both enter G = grad_scale g + decay W + l1 sign(W).
     * A fused rule puts 1 - eta * decay into the target's beta, which dense applies to W and
     * not to b. step() applies them to whatever range it is given: the trainer calls it per
     * tensor role, with them zeroed (and weight_decay too) for everything but weights. */
    float decay, l1;
    float mu;             /* momentum, nesterov */
    float beta1, beta2;   /* adam, adamw; rmsprop uses beta2 */
    float eps;            /* adam, adamw, rmsprop */
    float weight_decay;   /* adamw's decoupled decay: W <- (1 - eta weight_decay) W - ... */
    float clip_norm;      /* > 0: the trainer clips g by global norm, so nothing may fuse */
    /* Set per step by bp_optimizer_begin_step and the trainer: */
    float grad_scale;     /* g's factor: 1, or clip_norm / ||g|| when clipping */
    uint64_t t;           /* the step number, from 1 */
    double correction1;   /* 1 / (1 - beta1^t): Adam's m_hat = m * correction1 */
    double correction2;   /* 1 / (1 - beta2^t): v_hat = v * correction2 */
};

/* The loops' helpers are inlined into each clone (BP_CLONES), so they are compiled for its ISA. */
#define BP_OPTIM_INLINE static inline __attribute__((always_inline))

/* G of one element: g (times scale, when clipping) plus the L2 and L1 terms of a weight,
 * sign(0) = 0. Without branches, so the loops that call it vectorise; the callers copy the
 * hyper-parameters into locals first, so no store through the arenas can seem to change them. */
BP_OPTIM_INLINE float bp_optim_grad(float g, float w, float scale, float decay, float l1)
{
    float sign = (float)(w > 0.0f) - (float)(w < 0.0f);
    return scale * g + decay * w + l1 * sign;
}

/* Whether a range needs the regularisation terms at all (weights with lambda or l1 set): the
 * step functions test it once per range and run a plainer loop otherwise. */
static inline int bp_optim_regularised(const bp_optimizer *opt)
{
    return opt->decay != 0.0f || opt->l1 != 0.0f;
}

/* ops with the learning rate eta, no regularisation, no clipping, and the library's default
 * hyper-parameters (those of bp_train_config_init). */
void bp_optimizer_init(bp_optimizer *opt, const bp_optimizer_ops *ops, float eta);

/* Before the unfused step number t (from 1): the step count and Adam's bias corrections,
 * computed once here in double rather than per element, and grad_scale reset to 1. */
void bp_optimizer_begin_step(bp_optimizer *opt, uint64_t t);

/* fuse() of every rule with state: its step needs the gradient in memory. */
int bp_optimizer_never_fuse(const bp_optimizer *opt, bp_grad_target *target);

/* The table of a kind (registry.c); NULL out of range. */
const bp_optimizer_ops *bp_optimizer_ops_of(bp_optimizer_kind kind);

/* Plain SGD, params -= eta * (mean gradient): Nielsen's W -= eta/B sum_x dC_x/dW. It keeps no
 * state, so without L1 or clipping it folds into BP4 ({BP_TARGET_PARAMS, alpha -eta, beta 1}). */
extern const bp_optimizer_ops bp_sgd_ops;
/* The rules of backprop.h's table, each one loop over [i0, i1) of every arena it touches. */
extern const bp_optimizer_ops bp_momentum_ops;
extern const bp_optimizer_ops bp_nesterov_ops;
extern const bp_optimizer_ops bp_adam_ops;
extern const bp_optimizer_ops bp_adamw_ops;
extern const bp_optimizer_ops bp_rmsprop_ops;

#endif
