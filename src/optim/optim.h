/*
 * optim.h - optimisers: update rules over the parameter arena, its gradient arena and a state
 * arena of the same layout. They know no layers and no net (train/ drives them), so the net
 * never knows an optimiser either: the gradient target in core.h is the whole interface.
 */
#ifndef BP_OPTIM_H
#define BP_OPTIM_H

#include <stddef.h>

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
     * also the stride between the state blocks. */
    void (*step)(const bp_optimizer *opt, float *params, const float *grads, float *state,
                 size_t n, size_t i0, size_t i1);
} bp_optimizer_ops;

/* An optimiser and its hyper-parameters, as plain data. */
struct bp_optimizer {
    const bp_optimizer_ops *ops;
    float eta;
    /* Regularisation of the weights only, per Nielsen's network2 (n the training-set size):
     * decay = lambda / n (L2), l1 = l1 / n. A fused rule puts 1 - eta * decay into the
     * target's beta, which dense applies to W and not to b. step() applies both to whatever
     * range it is given: the trainer calls it tensor by tensor, with both zeroed for biases. */
    float decay, l1;
};

/* Plain SGD, params -= eta * (mean gradient): Nielsen's W -= eta/B sum_x dC_x/dW. It keeps no
 * state, so it always folds into BP4 ({BP_TARGET_PARAMS, alpha -eta, beta 1}). */
extern const bp_optimizer_ops bp_sgd_ops;

#endif
