/*
 * net.h - the layer stack, its arenas and its planned buffers. Private to the library; train/
 * and the tests reach the batch buffers through here.
 */
#ifndef BP_NET_H
#define BP_NET_H

#include "core/core.h"
#include "kernels/backend.h"
#include "layers/layer.h"
#include "parallel/team.h"

struct bp_net {
    int n_layers;          /* weight layers */
    int *sizes;            /* n_layers + 1 entries, input first */
    bp_shape input;        /* an input column's shape: as configured, or 1 x 1 x sizes[0] */
    int input_shaped;      /* the configuration gave the shape (bp_net_input_shape) */
    bp_layer *layers;
    bp_cost cost;
    const bp_backend *be;

    float *params, *grads; /* the two arenas, n_params floats each, same layout */
    size_t n_params;
    float *state;          /* the layers' non-trained state (running statistics), n_state */
    size_t n_state;

    /* The tensor table (bp_net_tensor), made in bp_net_create from each layer's tensors hook
     * and fixed for the net's life; the names live in one block. */
    bp_tensor_info *tensors;
    int n_tensors;
    char *tensor_names;
    /* The buffer table (bp_net_buffer), the same way, offsets into `state`. */
    bp_tensor_info *buffer_table;
    int n_buffers;
    char *buffer_names;
    /* The stack as a spec string (bp_net_spec). */
    char *spec;
    /* The strings of a loaded model's metadata (io/model.c), handed to the caller as views
     * that must live as long as the net; NULL for a net that was not loaded. */
    char *meta_strings;

    /* Planned once for max_batch columns: one block holding, for every layer, its activations
     * A (n_out x max_batch) and deltas D (same), and the input and target batch buffers that
     * training gathers into. Column-major with ld = rows, so a smaller batch is a column prefix. */
    int max_batch;
    float *buffers;
    float **a, **d;        /* a[i], d[i]: output and delta of layers[i] */
    float *x_batch;        /* sizes[0] x max_batch */
    float *y_batch;        /* sizes[n_layers] x max_batch */

    /* The threads of a step: `threads` bounds the team and every GEMM of the net's steps. The
     * team is made with the plan (bp_net_create, bp_net_set_threads), never inside a step;
     * NULL when threads == 1. */
    int threads;
    bp_team *team;
    /* Scratch for bp_pass_sum (layer.h): BP_TEAM_MAX slots of reduce_stride doubles, the
     * largest `reduce` a layer planned; NULL when no layer sums across the batch. */
    double *reduce;
    size_t reduce_stride;

    /* The key of the randomness drawn inside a training step (dropout masks): a seed (the
     * net's own at creation; a trainer sets its run's, bp_train_config.seed) and the step
     * number, which the trainer sets before each step (and a caller of bp_net_sgd_step
     * advances by one per call), so a step's masks depend on neither the thread count nor on
     * anything drawn before. key_column0 is where this net's columns begin in the step's
     * global mini-batch when ranks split it (0 otherwise), so the masks do not depend on
     * the rank count either. */
    uint64_t seed, step;
    uint32_t key_column0;

    /* Called on the calling thread after BP4 of layer i (top first) has written its
     * gradients, when a step runs without the team; NULL: not called. The data-parallel
     * trainer starts that layer's sum across ranks here. */
    void (*params_done)(void *ctx, int layer);
    void *params_done_ctx;
};

/* Fills columns [c0, c1) of the inputs and targets a step was given: the mini-batch gather,
 * handed to the step so each thread gathers the columns it is about to compute. It cannot fail:
 * its caller checks indices and labels once, beforehand. */
typedef struct bp_batch_fill {
    void (*fill)(void *ctx, int c0, int c1);
    void *ctx;
} bp_batch_fill;

static inline int bp_net_inputs(const bp_net *net) { return net->sizes[0]; }
static inline int bp_net_outputs(const bp_net *net) { return net->sizes[net->n_layers]; }
static inline const float *bp_net_output(const bp_net *net) { return net->a[net->n_layers - 1]; }

/* Forward and backward over `batch` columns with no argument checks and no allocation: the
 * inner part of bp_net_gradient and of every optimiser step. BP3/BP4 write the gradient of the
 * mean cost into `target` (core.h), which the caller chose; NULL means the gradient arena,
 * overwritten ({BP_TARGET_GRADS, alpha 1, beta 0}). With `fill`, x and y are filled by it
 * first (they must be the net's x_batch and y_batch or other memory of that size). Returns the
 * summed (not mean) cost of the batch before any update.
 *
 * Results are deterministic for a given thread count; a different count splits the batch
 * differently and may change the last bits. */
double bp_net_backprop_unchecked(bp_net *net, const float *x, int ldx, const float *y, int ldy,
                                 int batch, const bp_grad_target *target,
                                 const bp_batch_fill *fill);
/* The same for a pass of the given mode: bp_net_backprop_unchecked is BP_PASS_TRAIN, and
 * BP_PASS_PROBE measures the training-mode gradient without dropout or moving running
 * statistics. */
double bp_net_backprop_pass(bp_net *net, bp_pass_mode mode, const float *x, int ldx,
                            const float *y, int ldy, int batch, const bp_grad_target *target,
                            const bp_batch_fill *fill);
/* The bytes of buffers one column of a planned batch needs (activations, deltas, the batch,
 * what the layers keep per column), an upper bound including each buffer's rounding. */
size_t bp_net_column_bytes(const bp_net *net);

void bp_net_forward_unchecked(bp_net *net, const float *x, int ldx, int batch);

/* The checks of a step's arguments (inputs, targets, leading dimensions, the planned batch),
 * for the entry points that run one: bp_net_gradient here, the optimiser steps in train/. */
bp_status bp_net_check_step(const bp_net *net, const float *x, int ldx, const float *y,
                            int ldy, int batch);

/* The first layer (1-based) whose parameters are not all finite, with *count the number of
 * NaN or infinite values in it; 0 if every parameter is finite. One pass over the arena. */
int bp_net_nonfinite_layer(const bp_net *net, size_t *count);

/* Fail with BP_EDIVERGED, naming `where` ("epoch 3, sample 4170"), what went non-finite (the
 * cost, the outputs, or a layer's parameters) and the learning rate if eta > 0. */
bp_status bp_net_diverged(const bp_net *net, const char *where, double cost, float eta);

#endif
