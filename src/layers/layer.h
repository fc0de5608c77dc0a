/*
 * layer.h - what a layer kind provides to the net: a const ops table, and the small common
 * struct the net fills with views into its arenas and buffers.
 *
 * A layer never allocates in forward or backward and never knows files, epochs or optimisers.
 * New kinds (conv2d through im2col, maxpool, dropout, batchnorm) add a table and, where they need
 * it, a private state; the net code does not change.
 */
#ifndef BP_LAYER_H
#define BP_LAYER_H

#include <stddef.h>

#include "backprop.h"
#include "core/core.h"
#include "kernels/backend.h"

typedef struct bp_layer bp_layer;

typedef struct bp_layer_ops {
    const char *name;
    /* Floats this layer needs in the parameter arena (the gradient arena mirrors it), including
     * padding that keeps each tensor on a cache line. */
    size_t (*param_count)(const bp_layer *l);
    /* Point the layer's views into the arenas at the offset the net chose. */
    void (*bind)(bp_layer *l, float *params, float *grads);
    /* The layer's parameter tensors, for the net's tensor table (bp_tensor_info in backprop.h):
     * fills up to max entries of out (out may be NULL when max is 0) and returns how many the
     * layer has, however many it filled. Each entry gets `name` as the layer's own static name
     * for the tensor ("weight"), unique within the layer; role, ndim, shape, stride and count;
     * and `offset` counted from the layer's first float, the one bind's `params` points at,
     * agreeing with bind's layout and lying inside param_count. The net prefixes the name and
     * sets `layer` and the arena offset. NULL for a kind with no parameters. */
    int (*tensors)(const bp_layer *l, bp_tensor_info *out, int max);
    /* Fill the parameters; may allocate (initialisation is not part of a training step). */
    bp_status (*init)(bp_layer *l, bp_init scheme, bp_rng *rng);
    /* out (n_out x batch) = act(layer(in)); in is n_in x batch. */
    void (*forward)(const bp_layer *l, const bp_backend *be, int batch, const float *in, int ldin,
                    float *out, int ldout);
    /* Backpropagation comes in two halves, so a step can split the first by samples (columns)
     * and the second by parameters across threads, with one barrier between them.
     * BP2: given d = dC/dZ of this layer (n_out x batch), write dC/dA_in (n_in x batch) into
     * d_in, from the parameters as they are before this step's update. Each column depends on
     * its own column of d alone: the net may call this on any column range. */
    void (*backward_data)(const bp_layer *l, const bp_backend *be, int batch, const float *d,
                          int ldd, float *d_in, int ld_din);
    /* BP3/BP4 over the whole batch, for part `part` of `parts` of this layer's parameters
     * (dense: a block of W's columns or rows, and of b): write the gradient of the mean cost
     * into `target` (core.h: T = beta T + alpha G, T the gradient arena or the parameters; a
     * layer never decides which, and never knows an optimiser). Parts are disjoint, so they
     * may run concurrently. */
    void (*backward_params)(const bp_layer *l, const bp_backend *be, int batch, const float *in,
                            int ldin, const float *d, int ldd, const bp_grad_target *target,
                            int part, int parts);
} bp_layer_ops;


struct bp_layer {
    const bp_layer_ops *ops;
    int n_in, n_out;      /* flattened sizes of the input and output columns */
    bp_activation act;    /* applied inside forward; its derivative by the net in BP2 */
    /* Views into the arenas (dense: W is n_out x n_in with leading dimension ldw). */
    float *w, *b, *gw, *gb;
    int ldw;
};

extern const bp_layer_ops bp_dense_ops;

#endif
