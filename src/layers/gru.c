/*
 * gru.c - the gated recurrent unit (Cho et al., 2014), trained by backpropagation through
 * time. The column is a sequence as for lstm.c (sequence.c reads it by rows or by cols) and
 * the layer returns the last step's h_T. Per step, with PyTorch's equations and gate order
 * (reset, update, new):
 *   r = sigmoid(W_xr x_t + b_xr + W_hr h_{t-1} + b_hr),  z likewise
 *   n = tanh(W_xn x_t + b_xn + r (W_hn h_{t-1} + b_hn))
 *   h_t = (1 - z) n + z h_{t-1}                          (h_0 = 0)
 * The reset gate multiplies W_hn h_{t-1} + b_hn, not h_{t-1} itself (PyTorch's form, and ONNX's
 * linear_before_reset = 1): so the whole recurrent product W_h h_{t-1} is one GEMM per step
 * over the batch, as the input one is one GEMM over every step of every column.
 *
 * saved holds, per step, W_x x_t (3H, activations r, z, n after the forward pass), W_h h_{t-1}
 * (3H, of which the forward pass keeps hn = W_hn h_{t-1} + b_hn) and h_{t-1} (H): 7H floats.
 * BPTT leaves the dC/dZ of both products in their places, which differ only in the new gate
 * (r times the other), so BP4 is G_Wx = dZ_x X^T, G_Wh = dZ_h H_prev^T and the two bias sums,
 * each one GEMM or row sum over all B T (column, step) pairs, and dC/dh_{t-1} = z dC/dh_t +
 * W_h^T dZ_h one GEMM per step. work holds BPTT's running dC/dh (H), then sequence.c's copies.
 *
 * Parameters: W_x 3H x F and W_h 3H x H column-major (ld 3H: nn.GRU's weight_ih_l0 and
 * weight_hh_l0 row-major), and both biases, bias_ih and bias_hh, as nn.GRU has them: b_hn
 * cannot be folded into b_xn, and keeping b_hr, b_hz apart from b_xr, b_xz (whose gradients
 * are the same) costs 2H floats and makes a PyTorch model load as it is. Biases start at 0.
 */
#include <string.h>

#include "layers/layer.h"
#include "parallel/team.h"

static int gate_rows(const bp_layer *l) { return 3 * l->n_out; }

static size_t gru_recurrent_at(const bp_layer *l)
{
    return bp_round_floats((size_t)gate_rows(l) * (size_t)l->features);
}

static size_t gru_bias_at(const bp_layer *l)
{
    return gru_recurrent_at(l) + bp_round_floats((size_t)gate_rows(l) * (size_t)l->n_out);
}

static size_t gru_bias_hh_at(const bp_layer *l)
{
    return gru_bias_at(l) + bp_round_floats((size_t)gate_rows(l));
}

static bp_status gru_parse(const char *args, bp_layer_spec *spec)
{
    return bp_sequence_parse("gru", args, 3, spec);
}

static bp_status gru_plan(bp_layer *l, const bp_layer_spec *spec, bp_shape in,
                          bp_layer_plan *plan)
{
    bp_status st = bp_sequence_plan(l, "gru", 3, spec, in);
    if (st != BP_OK)
        return st;
    size_t h = (size_t)l->n_out, t = (size_t)l->steps;
    *plan = (bp_layer_plan){
        .out = l->out,
        .params = gru_bias_hh_at(l) + bp_round_floats(3 * h),
        .saved_per_column = t * 7 * h,
        .work_per_column = h + bp_sequence_copy_floats(l),
        .params_need_data_pass = 1,
    };
    return BP_OK;
}

static void gru_bind(bp_layer *l, float *params, float *grads)
{
    size_t rec = gru_recurrent_at(l), bias = gru_bias_at(l), bias_hh = gru_bias_hh_at(l);
    l->ldw = gate_rows(l);
    l->w = params;
    l->gw = grads;
    l->w2 = params + rec;
    l->gw2 = grads + rec;
    l->b = params + bias;
    l->gb = grads + bias;
    l->b2 = params + bias_hh;
    l->gb2 = grads + bias_hh;
}

static int gru_tensors(const bp_layer *l, bp_tensor_info *out, int max)
{
    int64_t g = gate_rows(l), f = l->features, h = l->n_out;
    const bp_tensor_info tensors[] = {
        {.name = "weight_ih", .role = BP_ROLE_WEIGHT, .ndim = 2, .shape = {g, f},
         .stride = {1, g}, .offset = 0, .count = (size_t)(g * f)},
        {.name = "weight_hh", .role = BP_ROLE_WEIGHT, .ndim = 2, .shape = {g, h},
         .stride = {1, g}, .offset = gru_recurrent_at(l), .count = (size_t)(g * h)},
        {.name = "bias_ih", .role = BP_ROLE_BIAS, .ndim = 1, .shape = {g}, .stride = {1},
         .offset = gru_bias_at(l), .count = (size_t)g},
        {.name = "bias_hh", .role = BP_ROLE_BIAS, .ndim = 1, .shape = {g}, .stride = {1},
         .offset = gru_bias_hh_at(l), .count = (size_t)g},
    };
    int n = (int)(sizeof tensors / sizeof *tensors);
    for (int i = 0; i < n && i < max; i++)
        out[i] = tensors[i];
    return n;
}

static bp_status gru_init(bp_layer *l, bp_init scheme, bp_rng *rng)
{
    bp_status st = bp_sequence_init_weights(l, 3, scheme, rng);
    if (st != BP_OK)
        return st;
    memset(l->b, 0, sizeof(float) * (size_t)gate_rows(l));
    memset(l->b2, 0, sizeof(float) * (size_t)gate_rows(l));
    return BP_OK;
}

static float *steps_of(const bp_layer *l, const bp_pass *pass)
{
    return l->saved + (size_t)pass->column0 * l->saved_per_column;
}

static float *dh_of(const bp_layer *l, const bp_pass *pass)
{
    return l->work + (size_t)pass->column0 * bp_sequence_work_stride(l);
}

static void gru_forward(const bp_layer *l, const bp_backend *be, const bp_pass *pass,
                        int batch, const float *in, int ldin, float *out, int ldout)
{
    int h = l->n_out, g3 = gate_rows(l), g7 = 7 * h, steps = l->steps;
    int spc = (int)l->saved_per_column;
    float *s = steps_of(l, pass);
    bp_sequence_project(l, be, pass, batch, in, ldin, s, g3, g7, spc);
    for (int t = 0; t < steps; t++) {
        float *st = s + (size_t)t * g7;
        if (t == 0) /* h_0 = 0, so is W_h h_0 */
            for (int j = 0; j < batch; j++)
                memset(st + (size_t)j * spc + g3, 0, sizeof(float) * (size_t)(g3 + h));
        else
            be->sgemm(BP_NOTRANS, BP_NOTRANS, g3, batch, h, 1.0f, l->w2, l->ldw,
                      st + 2 * g3, spc, 0.0f, st + g3, spc);
        int last = t == steps - 1; /* h_t goes where step t + 1 reads it, or out */
        be->gru_fwd(h, batch, l->b, l->b2, st, spc, last ? out : st + g7 + 2 * g3,
                    last ? ldout : spc);
    }
}

/* The output is h_T itself: dC/dA is dC/dZ. */
static void gru_act_backward(const bp_layer *l, const bp_backend *be, int batch,
                             const float *out, int ldout, float *d, int ldd)
{
    (void)l, (void)be, (void)batch, (void)out, (void)ldout, (void)d, (void)ldd;
}

static void gru_backward_data(const bp_layer *l, const bp_backend *be, const bp_pass *pass,
                              int batch, const float *in, int ldin, const float *out,
                              int ldout, const float *d, int ldd, float *d_in, int ld_din)
{
    (void)in, (void)ldin, (void)out, (void)ldout;
    int h = l->n_out, g3 = gate_rows(l), g7 = 7 * h, steps = l->steps;
    int spc = (int)l->saved_per_column, wpc = (int)bp_sequence_work_stride(l);
    float *s = steps_of(l, pass), *dh = dh_of(l, pass);
    for (int j = 0; j < batch; j++)
        memcpy(dh + (size_t)j * wpc, d + (size_t)j * ldd, sizeof(float) * (size_t)h);
    for (int t = steps - 1; t >= 0; t--) {
        float *st = s + (size_t)t * g7;
        be->gru_bwd(h, batch, st, spc, dh, wpc);
        if (t > 0)
            be->sgemm(BP_TRANS, BP_NOTRANS, h, batch, g3, 1.0f, l->w2, l->ldw, st + g3, spc,
                      1.0f, dh, wpc);
    }
    if (d_in)
        bp_sequence_input_grad(l, be, batch, s, g7, spc, d_in, ld_din);
}

/* BP3/BP4 for rows [r0, r1) of the gates, of both biases and both weight matrices. */
static void gru_backward_params(const bp_layer *l, const bp_backend *be, int batch,
                                const float *in, int ldin, const float *d, int ldd,
                                const bp_grad_target *target, int part, int parts)
{
    (void)d, (void)ldd; /* BPTT has turned it into the gates' dC/dZ */
    int h = l->n_out, g3 = gate_rows(l), g7 = 7 * h;
    int spc = (int)l->saved_per_column, pairs = batch * l->steps;
    int r0, r1;
    bp_team_share(g3, part, parts, 16, &r0, &r1);
    if (r1 <= r0)
        return;
    int rows = r1 - r0;
    float inv_batch = 1.0f / (float)batch, a = target->alpha * inv_batch;
    int into_params = target->into == BP_TARGET_PARAMS;
    const float *dzx = l->saved + r0, *dzh = l->saved + g3 + r0, *h_prev = l->saved + 2 * g3;
    if (into_params) {
        be->rowsum(rows, pairs, inv_batch, dzx, g7, l->gb + r0);
        be->axpy((size_t)rows, target->alpha, l->gb + r0, l->b + r0);
        be->rowsum(rows, pairs, inv_batch, dzh, g7, l->gb2 + r0);
        be->axpy((size_t)rows, target->alpha, l->gb2 + r0, l->b2 + r0);
    } else {
        be->rowsum(rows, pairs, a, dzx, g7, l->gb + r0);
        be->rowsum(rows, pairs, a, dzh, g7, l->gb2 + r0);
    }
    bp_sequence_weight_grad(l, be, batch, in, ldin, dzx, rows, g7, spc, a, target->beta,
                            (into_params ? l->w : l->gw) + r0);
    be->sgemm(BP_NOTRANS, BP_TRANS, rows, h, pairs, a, dzh, g7, h_prev, g7, target->beta,
              (into_params ? l->w2 : l->gw2) + r0, l->ldw);
}

const bp_layer_ops bp_gru_ops = {
    .name = "gru",
    .parse = gru_parse,
    .format = bp_sequence_format,
    .plan = gru_plan,
    .bind = gru_bind,
    .tensors = gru_tensors,
    .init = gru_init,
    .forward = gru_forward,
    .act_backward = gru_act_backward,
    .backward_data = gru_backward_data,
    .backward_params = gru_backward_params,
};
