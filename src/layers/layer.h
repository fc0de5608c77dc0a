/*
 * layer.h - what a layer kind provides to the net: a const ops table, and the small common
 * struct the net fills with views into its arenas and buffers.
 *
 * A layer never allocates in forward or backward and never knows files, epochs or optimisers.
 * A layer is planned from the shape of its input column and says what it needs; the net adds
 * up the plans and allocates everything once. It owns its activation and the derivative of it.
 * New kinds (conv2d through im2col, maxpool, dropout, batchnorm) add a file with a table and a
 * line in the registry (registry.c); the net code does not change.
 */
#ifndef BP_LAYER_H
#define BP_LAYER_H

#include <stddef.h>

#include "backprop.h"
#include "core/core.h"
#include "kernels/backend.h"
#include "parallel/team.h"

typedef struct bp_layer bp_layer;
typedef struct bp_layer_ops bp_layer_ops;

/* The layout of one column of activations: C channels of H x W (a dense layer's input or
 * output is C x 1 x 1; an image 1 x 28 x 28). Columns are stored flat, C*H*W floats. */
typedef struct bp_shape {
    int c, h, w;
} bp_shape;

static inline size_t bp_shape_size(bp_shape s) { return (size_t)s.c * (size_t)s.h * (size_t)s.w; }

/* A layer as a spec string names it ("dense:100:relu"), before it is planned. */
typedef struct bp_layer_spec {
    const bp_layer_ops *ops;
    int units;          /* dense: output neurons */
    bp_activation act;
    float rate;         /* dropout: the probability of dropping a unit */
    /* conv (units: filters) and pooling: the window, its stride and zero padding */
    int kh, kw, stride, pad;
    /* lstm, gru (units: hidden units): read the input image column by column, not row by row */
    int by_cols;
} bp_layer_spec;

/* What kind of pass a forward or backward call is part of. Layers that behave the same in
 * training and inference (dense) ignore it. */
typedef enum bp_pass_mode {
    BP_PASS_INFER = 0, /* evaluation and prediction: no dropout, running statistics */
    BP_PASS_TRAIN,     /* a training step: dropout masks, batch statistics (and running
                          averages moved by them) */
    BP_PASS_PROBE,     /* a measurement of the training-mode gradient (bp_net_grad_norms):
                          batch statistics, but no dropout and no running average moved */
} bp_pass_mode;

/* The pass a call belongs to, and where its columns sit in the whole mini-batch: a step splits
 * the batch by columns across a team, and a layer that draws randomness or needs statistics of
 * the whole batch must not depend on that split. */
typedef struct bp_pass {
    bp_pass_mode mode;
    uint64_t seed, step;  /* the counter-based generator's key (bp_rng_counter) for this step */
    int column0;          /* this call's first column, counted in the whole batch */
    /* column0's place in the step's global mini-batch, which data-parallel training splits
     * across ranks (train.c): what randomness is keyed by, so masks do not depend on the
     * split. column0 itself when the whole mini-batch is here. */
    uint32_t key_column0;
    int batch;            /* the whole batch's columns */
    /* The team the batch is split across and this call's member (NULL: one thread), with the
     * net's scratch for bp_pass_sum: BP_TEAM_MAX slots of reduce_stride doubles. */
    bp_team *team;
    int member;
    double *reduce;
    size_t reduce_stride;
} bp_pass;

/* Sum values[0..n) over the members of the pass's team, in member order (so every thread
 * count gives one deterministic result for a given split), leaving the total in every member's
 * values. Every member must make the same calls in the same order: it synchronises them
 * (twice: once the slots are written, once they have been read). n is at most the plan's
 * `reduce` of the calling layer. On one thread it does nothing. */
void bp_pass_sum(const bp_pass *pass, double *values, size_t n);

/* What a planned layer needs, for the net to allocate once: floats in the parameter arena (the
 * gradient and optimiser-state arenas mirror it), non-trained state (running statistics),
 * floats a column keeps from forward to backward (dropout masks, pooling argmax), scratch
 * floats per column (im2col), and the most doubles it sums across a team at once
 * (bp_pass_sum: batch statistics). */
typedef struct bp_layer_plan {
    bp_shape out;
    size_t params, state, saved_per_column, work_per_column, reduce;
    /* Non-zero for kinds that must not be the output layer (dropout, batch norm): the cost's
     * BP1 needs the output activation of a layer that computes one. */
    int hidden_only;
    /* Non-zero for kinds whose backward_params reads what backward_data leaves (lstm: the
     * gates' dC/dZ of every time step, from backpropagation through time): the net then calls
     * backward_data for them even as the first layer, with d_in NULL when nothing asked for
     * dC/dX. */
    int params_need_data_pass;
} bp_layer_plan;

/* "dense:100:relu" -> spec, by the kinds the registry lists (registry.c). */
bp_status bp_layer_spec_parse(const char *text, bp_layer_spec *out);

struct bp_layer_ops {
    const char *name;   /* the kind, as spec strings name it */
    /* The arguments after "kind:" of a spec string ("100:relu"), into *spec. */
    bp_status (*parse)(const char *args, bp_layer_spec *spec);
    /* The planned layer's spec string in full, every default spelled out ("dense:100:relu"),
     * into buf as snprintf does: parse gives back the same layer. */
    int (*format)(const bp_layer *l, char *buf, size_t size);
    /* Plan the layer for input columns of shape `in`: set the layer's sizes from the spec and
     * fill *plan. Refuses (BP_EINVAL, a message) what the kind cannot do. */
    bp_status (*plan)(bp_layer *l, const bp_layer_spec *spec, bp_shape in, bp_layer_plan *plan);
    /* Point the layer's views into the arenas at the offset the net chose. */
    void (*bind)(bp_layer *l, float *params, float *grads);
    /* The layer's parameter tensors, for the net's tensor table (bp_tensor_info in backprop.h):
     * fills up to max entries of out (out may be NULL when max is 0) and returns how many the
     * layer has, however many it filled. Each entry gets `name` as the layer's own static name
     * for the tensor ("weight"), unique within the layer; role, ndim, shape, stride and count;
     * and `offset` counted from the layer's first float, the one bind's `params` points at,
     * agreeing with bind's layout and lying inside the plan's params. The net prefixes the name and
     * sets `layer` and the arena offset. NULL for a kind with no parameters. */
    int (*tensors)(const bp_layer *l, bp_tensor_info *out, int max);
    /* The same for the layer's buffers, the parts of its non-trained state a saved net must
     * keep (running statistics), for the net's buffer table: offsets count from the layer's
     * first state float (l->state) and lie inside the plan's `state`. NULL for a kind with
     * none. */
    int (*buffers)(const bp_layer *l, bp_tensor_info *out, int max);
    /* Fill the parameters; may allocate (initialisation is not part of a training step). */
    bp_status (*init)(bp_layer *l, bp_init scheme, bp_rng *rng);
    /* out (n_out x batch) = act(layer(in)); in is n_in x batch, columns pass->column0 on of
     * the whole batch. A kind whose output depends on other columns (batch norm) combines
     * partial sums with bp_pass_sum; every other kind must be column-separable. */
    void (*forward)(const bp_layer *l, const bp_backend *be, const bp_pass *pass, int batch,
                    const float *in, int ldin, float *out, int ldout);
    /* The layer's own activation derivative: d (n_out x batch) holds dC/dA of its output and
     * becomes dC/dZ, from out = act(Z). The net calls it for every layer but the last, whose
     * dC/dZ BP1 gives (loss/). Column-separable. */
    void (*act_backward)(const bp_layer *l, const bp_backend *be, int batch, const float *out,
                         int ldout, float *d, int ldd);
    /* Backpropagation comes in two halves, so a step can split the first by samples (columns)
     * and the second by parameters across threads, with one barrier between them.
     * BP2: given d = dC/dZ of this layer (n_out x batch), write dC/dA_in (n_in x batch) into
     * d_in, from the parameters as they are before this step's update; in and out are the
     * forward pass's input and output of these columns (pass as for forward). Each column
     * depends on its own column alone, except through bp_pass_sum: the net may call this on
     * any column range. d_in may be NULL for a kind that plans params_need_data_pass. */
    void (*backward_data)(const bp_layer *l, const bp_backend *be, const bp_pass *pass,
                          int batch, const float *in, int ldin, const float *out, int ldout,
                          const float *d, int ldd, float *d_in, int ld_din);
    /* BP3/BP4 over the whole batch, for part `part` of `parts` of this layer's parameters
     * (dense: a block of W's columns or rows, and of b): write the gradient of the mean cost
     * into `target` (core.h: T = beta T + alpha G, T the gradient arena or the parameters; a
     * layer never decides which, and never knows an optimiser). Parts are disjoint, so they
     * may run concurrently. */
    void (*backward_params)(const bp_layer *l, const bp_backend *be, int batch, const float *in,
                            int ldin, const float *d, int ldd, const bp_grad_target *target,
                            int part, int parts);
};


struct bp_layer {
    const bp_layer_ops *ops;
    int index;            /* 0-based position in the stack: the generator's layer key */
    bp_shape in, out;     /* the planned shapes of a column */
    int n_in, n_out;      /* flattened sizes of the input and output columns */
    bp_activation act;    /* applied inside forward, differentiated by act_backward */
    float rate;           /* dropout: the drop probability */
    bp_window win;        /* conv and pooling: the window over the input image */
    size_t n_params;      /* floats in the arenas, from the plan */
    /* The rest of the plan, allocated by the net once (NULL where the plan asked for none):
     * non-trained state (n_state floats), and per-column buffers for max_batch columns,
     * column j's at saved + j * saved_per_column (likewise work). */
    size_t n_state, saved_per_column, work_per_column;
    float *state, *saved, *work;
    int params_need_data_pass; /* from the plan */
    /* Views into the arenas (dense: W is n_out x n_in with leading dimension ldw). */
    float *w, *b, *gw, *gb;
    int ldw;
    /* Batch norm's gamma and beta (n_out each) and their gradients. Not w and b: those are the
     * public bp_net_weights view, which promises an n_out x n_in matrix. */
    float *scale, *shift, *gscale, *gshift;
    /* A recurrent layer's second weight matrix, W_h (lstm: 4H x H, ld ldw), and its gradient;
     * w is then W_x. gru's second bias, b_h (3H), and its gradient; b is then b_x. */
    float *w2, *gw2, *b2, *gb2;
    /* lstm, gru (sequence.c): time steps and features per step of the input column, which is
     * 1 x steps x features, or 1 x features x steps when by_cols. */
    int steps, features, by_cols;
    /* The columns the per-column buffers hold (the planned batch), set with saved and work:
     * a layer may lay its buffers out by part rather than by column (sequence.c does). */
    int columns;
};

extern const bp_layer_ops bp_dense_ops;
extern const bp_layer_ops bp_dropout_ops;
extern const bp_layer_ops bp_batchnorm_ops;

/* Batch norm's epsilon in sqrt(var + eps), PyTorch's default: a constant of the kind, here so
 * that code describing a net elsewhere (the ONNX export) writes the one the layer computes with. */
#define BP_BATCHNORM_EPS 1e-5
extern const bp_layer_ops bp_conv_ops;
extern const bp_layer_ops bp_maxpool_ops;
extern const bp_layer_ops bp_avgpool_ops;
extern const bp_layer_ops bp_lstm_ops;
extern const bp_layer_ops bp_gru_ops;

/* What the recurrent kinds share (sequence.c). A spec's arguments are "H" or "H:rows" or
 * "H:cols"; the layer reads a 1 x R x C input as R steps of C features (rows) or C steps of R
 * (cols). `gates` is the kind's gate count (lstm 4, gru 3): the rows of W_x and W_h. */
bp_status bp_sequence_parse(const char *kind, const char *args, int gates,
                            bp_layer_spec *spec);
bp_status bp_sequence_plan(bp_layer *l, const char *kind, int gates, const bp_layer_spec *spec,
                           bp_shape in);
int bp_sequence_format(const bp_layer *l, char *buf, size_t size);
/* The work floats a column needs for the transposed copy of its input (0 when by rows); the
 * kind adds them to its plan's work_per_column, and keeps its own per-column work at the
 * stride bp_sequence_work_stride gives, below the copies. */
size_t bp_sequence_copy_floats(const bp_layer *l);
size_t bp_sequence_work_stride(const bp_layer *l);
/* The input projection of every step of these columns, Z = W_x X (rows x steps per column,
 * ld ldz between steps, column j's first step at z + j spc), as one GEMM over the columns' steps;
 * by cols it first copies each column's input transposed into the layer's work. */
void bp_sequence_project(const bp_layer *l, const bp_backend *be, const bp_pass *pass,
                         int batch, const float *in, int ldin, float *z, int rows, int ldz,
                         int spc);
/* dC/dX = W_x^T dZ, dZ laid out as bp_sequence_project's Z, into d_in (column j at j ld_din),
 * in the input's own order (rows or cols). */
void bp_sequence_input_grad(const bp_layer *l, const bp_backend *be, int batch,
                            const float *dz, int ldz, int spc, float *d_in, int ld_din);
/* BP4 of W_x's rows [r0, r0 + rows): target_w = beta target_w + alpha dZ X^T over the batch's
 * (column, step) pairs, with X as bp_sequence_project read it. */
void bp_sequence_weight_grad(const bp_layer *l, const bp_backend *be, int batch,
                             const float *in, int ldin, const float *dz, int rows, int ldz,
                             int spc, float alpha, float beta, float *target_w);
/* W_x's and W_h's gate blocks initialised each on its own (fan-in F or H), gate by gate. */
bp_status bp_sequence_init_weights(bp_layer *l, int gates, bp_init scheme, bp_rng *rng);

/* The window of a kh x kw kernel moved by `stride` over `in` zero-padded by `pad` (conv.c),
 * for conv and pooling; BP_EINVAL naming `kind` when it does not fit the input. */
bp_status bp_window_plan(const char *kind, bp_shape in, int kh, int kw, int stride, int pad,
                         bp_window *out);

/* Fill a rows x cols matrix, element (i, j) at w[i * row_stride + j * col_stride], with the
 * orthonormal factor of a Gaussian one (BP_INIT_ORTHOGONAL; dense.c says how): dense's weight
 * and conv's filters (a row per filter) share it. May allocate. */
bp_status bp_init_orthogonal(float *w, int rows, int cols, size_t row_stride,
                             size_t col_stride, bp_rng *rng);

#endif
