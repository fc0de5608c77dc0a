/*
 * lstm.c - the long short-term memory layer, trained by backpropagation through time.
 *
 * A column is a sequence: 1 x T x F, T time steps of F features, step t's features contiguous
 * at t F (an MNIST image read row by row is 28 steps of 28), or with lstm:H:cols an image read
 * column by column (sequence.c, which also does the input side of the GEMMs). The layer returns the last
 * step's hidden state h_T (H floats), so what follows it sees one H-vector per sample. Per
 * step, in PyTorch's gate order (input, forget, cell, output):
 *   z_t = W_x x_t + W_h h_{t-1} + b               (4H)
 *   i, f, o = sigmoid(z_i, z_f, z_o), g = tanh(z_g)
 *   c_t = f c_{t-1} + i g, h_t = o tanh(c_t)      (h_0 = c_0 = 0 before the first step)
 *
 * The GEMMs: the input projection of every step of every column is one GEMM, W_x times the
 * F x (B T) matrix the batch's columns already are (column j's steps follow each other, and
 * column j + 1 follows column j); the recurrent projection is one GEMM per step over the
 * batch, W_h times the batch's h_{t-1}, added onto that step's gates; the cell's elementwise
 * work is one fused pass per step (backend.h, lstm_fwd and lstm_bwd). Backward mirrors it:
 * the cell pass per step, dC/dh_{t-1} = W_h^T dZ_t per step over the batch, and then
 * dC/dX = W_x^T dZ, G_Wx = dZ X^T / B, G_Wh = dZ H_prev^T / B and G_b = dZ 1 / B as one GEMM
 * (or row sum) each over all B T (column, step) pairs.
 *
 * Buffers, planned per column for the largest batch. saved holds, for every step t, the gates
 * (4H floats: their activations after the forward pass, their dC/dZ after BPTT, which BP4
 * reads) followed by h_{t-1} (H floats, zeros at the first step): 5H floats a step, so over a
 * batch the gates are one 4H x (B T) matrix and the previous hidden states one H x (B T)
 * matrix, both with ld 5H, paired step by step as G_Wh's GEMM needs them. work holds c_t and
 * tanh c_t of every step (2 T H floats) and BPTT's running dC/dh and dC/dc (2 H), then, by
 * cols, sequence.c's transposed copies of the inputs.
 *
 * Parameters, stored so that PyTorch's nn.LSTM tensors are their transposes' views: W_x is
 * 4H x F column-major (ld 4H), which row-major is weight_ih_l0^T; likewise W_h; one bias of 4H
 * (PyTorch's bias_ih_l0, with bias_hh_l0 zero). The forget gate's bias starts at 1, so a
 * fresh cell keeps its state rather than forgetting it (Gers et al.; Jozefowicz et al.).
 */
#include <string.h>

#include "layers/layer.h"
#include "parallel/team.h"

static int gate_rows(const bp_layer *l) { return 4 * l->n_out; }

static size_t lstm_recurrent_at(const bp_layer *l)
{
    return bp_round_floats((size_t)gate_rows(l) * (size_t)l->features);
}

static size_t lstm_bias_at(const bp_layer *l)
{
    return lstm_recurrent_at(l) + bp_round_floats((size_t)gate_rows(l) * (size_t)l->n_out);
}

static bp_status lstm_parse(const char *args, bp_layer_spec *spec)
{
    return bp_sequence_parse("lstm", args, 4, spec);
}

static bp_status lstm_plan(bp_layer *l, const bp_layer_spec *spec, bp_shape in,
                           bp_layer_plan *plan)
{
    bp_status st = bp_sequence_plan(l, "lstm", 4, spec, in);
    if (st != BP_OK)
        return st;
    size_t h = (size_t)l->n_out, t = (size_t)l->steps;
    *plan = (bp_layer_plan){
        .out = l->out,
        .params = lstm_bias_at(l) + bp_round_floats(4 * h),
        .saved_per_column = t * 5 * h, /* per step the gates and h_{t-1} */
        /* c, tanh c per step; BPTT's dh, dc; the transposed input by cols */
        .work_per_column = 2 * t * h + 2 * h + bp_sequence_copy_floats(l),
        .params_need_data_pass = 1,
    };
    return BP_OK;
}

static void lstm_bind(bp_layer *l, float *params, float *grads)
{
    size_t rec = lstm_recurrent_at(l), bias = lstm_bias_at(l);
    l->ldw = gate_rows(l);
    l->w = params;
    l->gw = grads;
    l->w2 = params + rec;
    l->gw2 = grads + rec;
    l->b = params + bias;
    l->gb = grads + bias;
}

static int lstm_tensors(const bp_layer *l, bp_tensor_info *out, int max)
{
    int64_t g = gate_rows(l), f = l->features, h = l->n_out;
    const bp_tensor_info tensors[] = {
        {.name = "weight_ih", .role = BP_ROLE_WEIGHT, .ndim = 2, .shape = {g, f},
         .stride = {1, g}, .offset = 0, .count = (size_t)(g * f)},
        {.name = "weight_hh", .role = BP_ROLE_WEIGHT, .ndim = 2, .shape = {g, h},
         .stride = {1, g}, .offset = lstm_recurrent_at(l), .count = (size_t)(g * h)},
        {.name = "bias", .role = BP_ROLE_BIAS, .ndim = 1, .shape = {g}, .stride = {1},
         .offset = lstm_bias_at(l), .count = (size_t)g},
    };
    int n = (int)(sizeof tensors / sizeof *tensors);
    for (int i = 0; i < n && i < max; i++)
        out[i] = tensors[i];
    return n;
}

/* Biases 0 but the forget gate's, 1. */
static bp_status lstm_init(bp_layer *l, bp_init scheme, bp_rng *rng)
{
    bp_status st = bp_sequence_init_weights(l, 4, scheme, rng);
    if (st != BP_OK)
        return st;
    int h = l->n_out, g = gate_rows(l);
    for (int i = 0; i < g; i++)
        l->b[i] = i >= h && i < 2 * h ? 1.0f : 0.0f;
    return BP_OK;
}

/* The buffers of a pass's columns: its first column's gates and states. */
static float *gates_of(const bp_layer *l, const bp_pass *pass)
{
    return l->saved + (size_t)pass->column0 * l->saved_per_column;
}

static float *states_of(const bp_layer *l, const bp_pass *pass)
{
    return l->work + (size_t)pass->column0 * bp_sequence_work_stride(l);
}

static void lstm_forward(const bp_layer *l, const bp_backend *be, const bp_pass *pass,
                         int batch, const float *in, int ldin, float *out, int ldout)
{
    int h = l->n_out, g4 = gate_rows(l), g5 = g4 + h, steps = l->steps;
    int spc = (int)l->saved_per_column, wpc = (int)bp_sequence_work_stride(l);
    float *gates = gates_of(l, pass), *s = states_of(l, pass);
    float *c = s, *tc = s + (size_t)steps * h;
    bp_sequence_project(l, be, pass, batch, in, ldin, gates, g4, g5, spc);
    for (int j = 0; j < batch; j++)
        memset(gates + (size_t)j * spc + g4, 0, sizeof(float) * (size_t)h); /* h_0 */
    for (int t = 0; t < steps; t++) {
        float *zt = gates + (size_t)t * g5;
        if (t > 0)
            be->sgemm(BP_NOTRANS, BP_NOTRANS, g4, batch, h, 1.0f, l->w2, l->ldw, zt + g4, spc,
                      1.0f, zt, spc);
        /* h_t goes where step t + 1 reads it, or, at the last step, out. */
        int last = t == steps - 1;
        be->lstm_fwd(h, batch, l->b, zt, spc, t ? c + (size_t)(t - 1) * h : NULL,
                     c + (size_t)t * h, tc + (size_t)t * h, wpc,
                     last ? out : zt + g5 + g4, last ? ldout : spc);
    }
}

/* The output is h_T itself: dC/dA is dC/dZ. */
static void lstm_act_backward(const bp_layer *l, const bp_backend *be, int batch,
                              const float *out, int ldout, float *d, int ldd)
{
    (void)l, (void)be, (void)batch, (void)out, (void)ldout, (void)d, (void)ldd;
}

/* BPTT for these columns: the gates' dC/dZ of every step replace their activations in saved
 * (backward_params reads them), and dC/dX goes to d_in when it is not NULL. */
static void lstm_backward_data(const bp_layer *l, const bp_backend *be, const bp_pass *pass,
                               int batch, const float *in, int ldin, const float *out,
                               int ldout, const float *d, int ldd, float *d_in, int ld_din)
{
    (void)in, (void)ldin, (void)out, (void)ldout;
    int h = l->n_out, g4 = gate_rows(l), g5 = g4 + h, steps = l->steps;
    int spc = (int)l->saved_per_column, wpc = (int)bp_sequence_work_stride(l);
    float *gates = gates_of(l, pass), *s = states_of(l, pass);
    size_t th = (size_t)steps * h;
    float *c = s, *tc = s + th, *dh = s + 2 * th, *dc = dh + h;
    for (int j = 0; j < batch; j++) {
        memcpy(dh + (size_t)j * wpc, d + (size_t)j * ldd, sizeof(float) * (size_t)h);
        memset(dc + (size_t)j * wpc, 0, sizeof(float) * (size_t)h);
    }
    for (int t = steps - 1; t >= 0; t--) {
        float *zt = gates + (size_t)t * g5;
        be->lstm_bwd(h, batch, zt, spc, t ? c + (size_t)(t - 1) * h : NULL, tc + (size_t)t * h,
                     wpc, dh, dc, wpc);
        if (t > 0) /* dC/dh_{t-1} = W_h^T dZ_t: h_{t-1} feeds nothing else */
            be->sgemm(BP_TRANS, BP_NOTRANS, h, batch, g4, 1.0f, l->w2, l->ldw, zt, spc, 0.0f,
                      dh, wpc);
    }
    if (d_in)
        bp_sequence_input_grad(l, be, batch, gates, g5, spc, d_in, ld_din);
}

/* BP3/BP4 for rows [r0, r1) of the gates (of b, W_x and W_h alike), from the dC/dZ BPTT left
 * in saved, written as target says: each one GEMM or row sum over the B T (column, step)
 * pairs, dZ_t meeting x_t and h_{t-1} (zeros at the first step). */
static void lstm_backward_params(const bp_layer *l, const bp_backend *be, int batch,
                                 const float *in, int ldin, const float *d, int ldd,
                                 const bp_grad_target *target, int part, int parts)
{
    (void)d, (void)ldd; /* BPTT has turned it into the gates' dC/dZ */
    int h = l->n_out, g4 = gate_rows(l), g5 = g4 + h;
    int spc = (int)l->saved_per_column, pairs = batch * l->steps;
    int r0, r1;
    bp_team_share(g4, part, parts, 16, &r0, &r1);
    if (r1 <= r0)
        return;
    int rows = r1 - r0;
    float inv_batch = 1.0f / (float)batch, a = target->alpha * inv_batch;
    int into_params = target->into == BP_TARGET_PARAMS;
    const float *dz = l->saved + r0, *h_prev = l->saved + g4;
    if (into_params) {
        be->rowsum(rows, pairs, inv_batch, dz, g5, l->gb + r0);
        be->axpy((size_t)rows, target->alpha, l->gb + r0, l->b + r0);
    } else {
        be->rowsum(rows, pairs, a, dz, g5, l->gb + r0);
    }
    bp_sequence_weight_grad(l, be, batch, in, ldin, dz, rows, g5, spc, a, target->beta,
                            (into_params ? l->w : l->gw) + r0);
    float *th = (into_params ? l->w2 : l->gw2) + r0;
    be->sgemm(BP_NOTRANS, BP_TRANS, rows, h, pairs, a, dz, g5, h_prev, g5, target->beta, th,
              l->ldw);
}

const bp_layer_ops bp_lstm_ops = {
    .name = "lstm",
    .parse = lstm_parse,
    .format = bp_sequence_format,
    .plan = lstm_plan,
    .bind = lstm_bind,
    .tensors = lstm_tensors,
    .init = lstm_init,
    .forward = lstm_forward,
    .act_backward = lstm_act_backward,
    .backward_data = lstm_backward_data,
    .backward_params = lstm_backward_params,
};
