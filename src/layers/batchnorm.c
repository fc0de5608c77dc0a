/*
 * batchnorm.c - batch normalisation of dense features (Ioffe & Szegedy 2015): in training each
 * feature is standardised by the mean and variance of the whole mini-batch, xhat = (x - mean) /
 * sqrt(var + eps), then scaled and shifted by learned gamma and beta, y = gamma xhat + beta, and
 * put through the layer's activation. Inference uses running averages of the batch statistics
 * instead, so a sample's output no longer depends on the others.
 *
 * The constants and the running averages are PyTorch's BatchNorm1d defaults (eps 1e-5, momentum
 * 0.1, the unbiased variance in running_var), and gamma and beta are named like its state_dict
 * keys, so parameters and results can be compared with it directly.
 *
 * After a convolution (an input of C planes of H x W, H W > 1) it normalises per channel, as
 * PyTorch's BatchNorm2d: one mean and variance per channel over the batch and every position
 * of the plane, one gamma and beta per channel; the dense case is the plane of one position,
 * kept on its own loops (the vectorised ones over features).
 *
 * A step splits the batch across threads by columns, and the statistics must not depend on that
 * split: each thread sums its own columns in double and bp_pass_sum adds the partial sums in
 * member order, so every thread holds the same totals, whatever the thread count (up to the
 * order of a double sum). The same goes for the two sums BP2 needs.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "layers/layer.h"
#include "parallel/team.h"

/* PyTorch's defaults, so the same net trained there lands in the same place. */
#define BN_EPS BP_BATCHNORM_EPS
#define BN_MOMENTUM 0.1

/* Features handled per bp_pass_sum: the partial sums live on the stack (a layer never
 * allocates in a pass and the net has no per-thread scratch of a layer's width), and 512
 * features keep that at 8 KiB. Layers up to this width pay one sum per pass. */
enum { CHUNK = 512 };

/* Layout of the state block (floats): running mean, running variance (PyTorch's buffers), and
 * the batch's 1/sqrt(var + eps) from the last training-mode forward pass, which BP2 reads.
 * Each on its own cache lines. */
/* The normalised features: the channels of a shaped input, every unit of a flat one; each has
 * a plane of `plane` positions in a column (1 for a flat input). */
static int features(const bp_layer *l)
{
    return l->out.h * l->out.w == 1 ? l->n_out : l->out.c;
}
static int plane(const bp_layer *l) { return l->n_out / features(l); }
static size_t state_stride(const bp_layer *l) { return bp_round_floats((size_t)features(l)); }
static float *running_mean(const bp_layer *l) { return l->state; }
static float *running_var(const bp_layer *l) { return l->state + state_stride(l); }
static float *batch_inv_std(const bp_layer *l) { return l->state + 2 * state_stride(l); }

/* "[ACTIVATION]", linear by default: batch norm sits between a dense layer's linear part and
 * the activation it takes over ("dense:100:linear,batchnorm:sigmoid"). */
static bp_status batchnorm_parse(const char *args, bp_layer_spec *spec)
{
    spec->act = BP_ACT_LINEAR;
    if (*args != '\0' && bp_activation_parse(args, &spec->act) != BP_OK)
        return bp_fail(BP_EINVAL, "batchnorm: unknown activation '%s'", args);
    return BP_OK;
}

static bp_status batchnorm_plan(bp_layer *l, const bp_layer_spec *spec, bp_shape in,
                                bp_layer_plan *plan)
{
    size_t n = bp_shape_size(in);
    if (n < 1 || n > BP_MAX_WIDTH)
        return bp_fail(BP_EINVAL, "batchnorm: %zu features (allowed: 1 to %d)", n, BP_MAX_WIDTH);
    if ((unsigned)spec->act >= BP_ACT_COUNT)
        return bp_fail(BP_EINVAL, "batchnorm: unknown activation %d", (int)spec->act);
    l->in = l->out = in;
    l->n_in = l->n_out = (int)n;
    l->act = spec->act;
    size_t f = (size_t)features(l), stride = bp_round_floats(f);
    *plan = (bp_layer_plan){
        .out = in,
        .params = 2 * stride,
        .state = 3 * stride,
        .saved_per_column = n, /* xhat */
        .reduce = 2 * (f < CHUNK ? f : CHUNK),
        .hidden_only = 1,
    };
    return BP_OK;
}

/* gamma, then beta on the next cache line; tensors reads the same layout. */
static void batchnorm_bind(bp_layer *l, float *params, float *grads)
{
    size_t stride = state_stride(l);
    l->scale = params;
    l->gscale = grads;
    l->shift = params + stride;
    l->gshift = grads + stride;
}

static int batchnorm_tensors(const bp_layer *l, bp_tensor_info *out, int max)
{
    const bp_tensor_info tensors[] = {
        {.name = "weight", .role = BP_ROLE_SCALE, .ndim = 1, .shape = {features(l)},
         .stride = {1}, .offset = 0, .count = (size_t)features(l)},
        {.name = "bias", .role = BP_ROLE_SHIFT, .ndim = 1, .shape = {features(l)},
         .stride = {1}, .offset = state_stride(l), .count = (size_t)features(l)},
    };
    int n = (int)(sizeof tensors / sizeof *tensors);
    for (int i = 0; i < n && i < max; i++)
        out[i] = tensors[i];
    return n;
}

/* The running averages as buffers (the net's buffer table; offsets into the layer's state
 * block). The batch's 1/sigma after them is scratch between the passes of one step. */
static int batchnorm_buffers(const bp_layer *l, bp_tensor_info *out, int max)
{
    const bp_tensor_info buffers[] = {
        {.name = "running_mean", .role = BP_ROLE_RUNNING_MEAN, .ndim = 1,
         .shape = {features(l)}, .stride = {1}, .offset = 0, .count = (size_t)features(l)},
        {.name = "running_var", .role = BP_ROLE_RUNNING_VAR, .ndim = 1,
         .shape = {features(l)}, .stride = {1}, .offset = state_stride(l),
         .count = (size_t)features(l)},
    };
    int n = (int)(sizeof buffers / sizeof *buffers);
    for (int i = 0; i < n && i < max; i++)
        out[i] = buffers[i];
    return n;
}

/* The identity transform to start from, whatever the scheme (as PyTorch does): the layer first
 * only standardises. */
static bp_status batchnorm_init(bp_layer *l, bp_init scheme, bp_rng *rng)
{
    (void)scheme, (void)rng;
    for (int i = 0; i < features(l); i++) {
        l->scale[i] = 1.0f;
        l->shift[i] = 0.0f;
        running_mean(l)[i] = 0.0f;
        running_var(l)[i] = 1.0f;
        batch_inv_std(l)[i] = 1.0f;
    }
    return BP_OK;
}

/* One thread writes the shared state; the others hold the same totals and only read it, in
 * BP2, after a barrier. */
static int writes_state(const bp_pass *pass) { return !pass->team || pass->member == 0; }

/* From the team-wide sums and sums of squares (sums[0..n), sums[n..2n)) of `count` values per
 * feature or channel: the mean and 1/std that normalise, and, by the one writer, the saved
 * 1/std and (training only) the running averages moved. Dense and per-channel batch norm share
 * it: their statistics differ only in what they count. */
static void finish_statistics(const bp_layer *l, const bp_pass *pass, int f0, int n,
                              const double *sums, double count, float *mean, float *inv)
{
    const double *s = sums, *q = sums + n;
    int writer = writes_state(pass), moves = pass->mode == BP_PASS_TRAIN;
    for (int k = 0; k < n; k++) {
        double m = s[k] / count, var = q[k] / count - m * m;
        var = var > 0.0 ? var : 0.0;
        mean[k] = (float)m;
        inv[k] = (float)(1.0 / sqrt(var + BN_EPS));
        if (!writer)
            continue;
        batch_inv_std(l)[f0 + k] = inv[k];
        if (!moves)
            continue;
        float *rm = running_mean(l) + f0 + k, *rv = running_var(l) + f0 + k;
        *rm = (float)((1.0 - BN_MOMENTUM) * *rm + BN_MOMENTUM * m);
        /* PyTorch's unbiased estimate. One value has none (PyTorch refuses such a batch); the
         * last mini-batch of an epoch can be one sample, so the estimate is left as it was. */
        if (count > 1.0)
            *rv = (float)((1.0 - BN_MOMENTUM) * *rv + BN_MOMENTUM * var * count / (count - 1.0));
    }
}

/* Training mode for features [f0, f0 + n): statistics of the whole batch, xhat kept per column,
 * out = gamma xhat (beta and the activation follow over the whole block). */
BP_CLONES static void normalise_batch(const bp_layer *l, const bp_pass *pass, int f0, int n,
                                      int batch, const float *in, int ldin, float *out,
                                      int ldout)
{
    /* Sum and sum of squares in one pass, so one bp_pass_sum (two barriers) per chunk: the
     * products of floats are exact in double and E[x^2] - mean^2 loses ~|mean|^2/var * 1e-16
     * relative, far below what the float inputs already lost when |mean| >> std. */
    double sums[2 * CHUNK];
    double *s = sums, *q = sums + n;
    memset(sums, 0, sizeof(double) * 2 * (size_t)n);
    for (int j = 0; j < batch; j++) {
        const float *restrict x = in + (size_t)j * ldin + f0;
        for (int k = 0; k < n; k++) {
            double v = x[k];
            s[k] += v;
            q[k] += v * v;
        }
    }
    bp_pass_sum(pass, sums, 2 * (size_t)n);

    float mean[CHUNK], inv[CHUNK];
    finish_statistics(l, pass, f0, n, sums, pass->batch, mean, inv);

    const float *restrict gamma = l->scale + f0;
    for (int j = 0; j < batch; j++) {
        const float *restrict x = in + (size_t)j * ldin + f0;
        float *restrict xhat = l->saved + (size_t)(pass->column0 + j) * l->saved_per_column + f0;
        float *restrict o = out + (size_t)j * ldout + f0;
        for (int k = 0; k < n; k++) {
            float v = (x[k] - mean[k]) * inv[k];
            xhat[k] = v;
            o[k] = gamma[k] * v;
        }
    }
}

/* Inference for features [f0, f0 + n): out = gamma (x - running mean) / sqrt(running var +
 * eps), column by column. */
BP_CLONES static void normalise_running(const bp_layer *l, int f0, int n, int batch,
                                        const float *in, int ldin, float *out, int ldout)
{
    float mean[CHUNK], scale[CHUNK];
    for (int k = 0; k < n; k++) {
        mean[k] = running_mean(l)[f0 + k];
        scale[k] = (float)(l->scale[f0 + k] / sqrt((double)running_var(l)[f0 + k] + BN_EPS));
    }
    for (int j = 0; j < batch; j++) {
        const float *restrict x = in + (size_t)j * ldin + f0;
        float *restrict o = out + (size_t)j * ldout + f0;
        for (int k = 0; k < n; k++)
            o[k] = scale[k] * (x[k] - mean[k]);
    }
}

static void planar_forward(const bp_layer *l, const bp_backend *be, const bp_pass *pass,
                           int batch, const float *in, int ldin, float *out, int ldout);
static void planar_backward_data(const bp_layer *l, const bp_pass *pass, int batch,
                                 const float *d, int ldd, float *d_in, int ld_din);
static void planar_backward_params(const bp_layer *l, int batch, const float *d, int ldd,
                                   const bp_grad_target *target, int part, int parts);

static void batchnorm_forward(const bp_layer *l, const bp_backend *be, const bp_pass *pass,
                              int batch, const float *in, int ldin, float *out, int ldout)
{
    if (plane(l) > 1) {
        planar_forward(l, be, pass, batch, in, ldin, out, ldout);
        return;
    }
    int c = l->n_out;
    for (int f0 = 0; f0 < c; f0 += CHUNK) {
        int n = c - f0 < CHUNK ? c - f0 : CHUNK;
        if (pass->mode == BP_PASS_INFER)
            normalise_running(l, f0, n, batch, in, ldin, out, ldout);
        else
            normalise_batch(l, pass, f0, n, batch, in, ldin, out, ldout);
    }
    /* + beta and the activation in one of the backend's fused passes. */
    be->bias_act(l->act, c, batch, l->shift, out, ldout);
}

static void batchnorm_act_backward(const bp_layer *l, const bp_backend *be, int batch,
                                   const float *out, int ldout, float *d, int ldd)
{
    be->act_bwd_hadamard(l->act, l->n_out, batch, out, ldout, d, ldd);
}

/* BP2 through the normalisation. d holds each column's dC_x/dY (the net's deltas are per sample;
 * backward_params divides by B), so for the summed cost over the batch
 *   dC/dx_j = gamma inv_std / B (B d_j - sum_i d_i - xhat_j sum_i d_i xhat_i),
 * the mean and the variance carrying every column's delta into every other. The two sums are
 * of the whole batch. */
BP_CLONES static void batchnorm_backward_data(const bp_layer *l, const bp_backend *be,
                                              const bp_pass *pass, int batch, const float *in,
                                              int ldin, const float *out, int ldout,
                                              const float *d, int ldd, float *d_in, int ld_din)
{
    (void)be, (void)in, (void)ldin, (void)out, (void)ldout; /* xhat was saved */
    if (plane(l) > 1) {
        planar_backward_data(l, pass, batch, d, ldd, d_in, ld_din);
        return;
    }
    int c = l->n_out;
    double b = pass->batch;
    for (int f0 = 0; f0 < c; f0 += CHUNK) {
        int n = c - f0 < CHUNK ? c - f0 : CHUNK;
        double sums[2 * CHUNK];
        double *sd = sums, *sdx = sums + n;
        memset(sums, 0, sizeof(double) * 2 * (size_t)n);
        for (int j = 0; j < batch; j++) {
            const float *restrict dj = d + (size_t)j * ldd + f0;
            const float *restrict xhat =
                l->saved + (size_t)(pass->column0 + j) * l->saved_per_column + f0;
            for (int k = 0; k < n; k++) {
                sd[k] += dj[k];
                sdx[k] += (double)dj[k] * xhat[k];
            }
        }
        bp_pass_sum(pass, sums, 2 * (size_t)n);
        /* inv_std was written in the forward pass by one member; the barriers of the sum above
         * order that write before this read on every other. */
        float g[CHUNK], off[CHUNK], slope[CHUNK];
        for (int k = 0; k < n; k++) {
            double gk = (double)l->scale[f0 + k] * batch_inv_std(l)[f0 + k];
            g[k] = (float)gk;
            off[k] = (float)(-gk * sd[k] / b);
            slope[k] = (float)(-gk * sdx[k] / b);
        }
        for (int j = 0; j < batch; j++) {
            const float *restrict dj = d + (size_t)j * ldd + f0;
            const float *restrict xhat =
                l->saved + (size_t)(pass->column0 + j) * l->saved_per_column + f0;
            float *restrict dx = d_in + (size_t)j * ld_din + f0;
            for (int k = 0; k < n; k++)
                dx[k] = g[k] * dj[k] + off[k] + slope[k] * xhat[k];
        }
    }
}

/* G_gamma = (1/B) sum_j d_j xhat_j, G_beta = (1/B) sum_j d_j over the whole batch, for part
 * `part` of the features. Gamma and beta are never decayed: into the parameters they take
 * T + alpha G whatever target->beta says (that is L2 on weights), as dense's biases do. */
BP_CLONES static void batchnorm_backward_params(const bp_layer *l, const bp_backend *be,
                                                int batch, const float *in, int ldin,
                                                const float *d, int ldd,
                                                const bp_grad_target *target, int part,
                                                int parts)
{
    (void)be, (void)in, (void)ldin;
    if (plane(l) > 1) {
        planar_backward_params(l, batch, d, ldd, target, part, parts);
        return;
    }
    int r0, r1;
    /* Whole cache lines of gamma and beta per part: no two threads write one line. */
    bp_team_share(l->n_out, part, parts, 16, &r0, &r1);
    int into_params = target->into == BP_TARGET_PARAMS;
    float alpha = target->alpha;
    double b = batch;
    for (int f0 = r0; f0 < r1; f0 += CHUNK) {
        int n = r1 - f0 < CHUNK ? r1 - f0 : CHUNK;
        double sums[2 * CHUNK];
        double *sd = sums, *sdx = sums + n;
        memset(sums, 0, sizeof(double) * 2 * (size_t)n);
        for (int j = 0; j < batch; j++) {
            const float *restrict dj = d + (size_t)j * ldd + f0;
            const float *restrict xhat = l->saved + (size_t)j * l->saved_per_column + f0;
            for (int k = 0; k < n; k++) {
                sd[k] += dj[k];
                sdx[k] += (double)dj[k] * xhat[k];
            }
        }
        float *gamma = (into_params ? l->scale : l->gscale) + f0;
        float *beta = (into_params ? l->shift : l->gshift) + f0;
        for (int k = 0; k < n; k++) {
            float g_gamma = (float)(sdx[k] / b), g_beta = (float)(sd[k] / b);
            gamma[k] = (into_params ? gamma[k] : 0.0f) + alpha * g_gamma;
            beta[k] = (into_params ? beta[k] : 0.0f) + alpha * g_beta;
        }
    }
}

/* ---- per channel, after a convolution: the same, each sum over a channel's plane too ---- */

/* out = gamma xhat for channels [f0, f0 + n) of `plane` positions, the statistics over the
 * whole batch's B plane values of each channel (training) or the running ones. */
BP_CLONES static void planar_normalise(const bp_layer *l, const bp_pass *pass, int f0, int n,
                                       int batch, const float *in, int ldin, float *out,
                                       int ldout)
{
    size_t np = (size_t)plane(l);
    float mean[CHUNK], inv[CHUNK];
    if (pass->mode == BP_PASS_INFER) {
        for (int k = 0; k < n; k++) {
            mean[k] = running_mean(l)[f0 + k];
            inv[k] = (float)(1.0 / sqrt((double)running_var(l)[f0 + k] + BN_EPS));
        }
    } else {
        double sums[2 * CHUNK];
        double *s = sums, *q = sums + n;
        memset(sums, 0, sizeof(double) * 2 * (size_t)n);
        for (int j = 0; j < batch; j++)
            for (int k = 0; k < n; k++) {
                const float *restrict x = in + (size_t)j * ldin + (size_t)(f0 + k) * np;
                double sk = 0.0, qk = 0.0;
                for (size_t i = 0; i < np; i++) {
                    double v = x[i];
                    sk += v;
                    qk += v * v;
                }
                s[k] += sk;
                q[k] += qk;
            }
        bp_pass_sum(pass, sums, 2 * (size_t)n);
        finish_statistics(l, pass, f0, n, sums, (double)pass->batch * (double)np, mean, inv);
    }
    int train = pass->mode != BP_PASS_INFER;
    for (int j = 0; j < batch; j++)
        for (int k = 0; k < n; k++) {
            size_t at = (size_t)(f0 + k) * np;
            const float *restrict x = in + (size_t)j * ldin + at;
            float *restrict o = out + (size_t)j * ldout + at;
            float *restrict xhat =
                l->saved + (size_t)(pass->column0 + j) * l->saved_per_column + at;
            float g = l->scale[f0 + k], mk = mean[k], ik = inv[k];
            if (train)
                for (size_t i = 0; i < np; i++) {
                    float v = (x[i] - mk) * ik;
                    xhat[i] = v;
                    o[i] = g * v;
                }
            else
                for (size_t i = 0; i < np; i++)
                    o[i] = g * ((x[i] - mk) * ik);
        }
}

static void planar_forward(const bp_layer *l, const bp_backend *be, const bp_pass *pass,
                           int batch, const float *in, int ldin, float *out, int ldout)
{
    int c = features(l);
    for (int f0 = 0; f0 < c; f0 += CHUNK)
        planar_normalise(l, pass, f0, c - f0 < CHUNK ? c - f0 : CHUNK, batch, in, ldin, out,
                         ldout);
    be->bias_act_planes(l->act, plane(l), c, batch, l->shift, out, ldout);
}

/* The sums of d and d xhat over columns [0, batch) (of the pass's columns from column0) and
 * positions, for channels [f0, f0 + n). */
BP_CLONES static void planar_sums(const bp_layer *l, int column0, int f0, int n, int batch,
                                  const float *d, int ldd, double *sd, double *sdx)
{
    size_t np = (size_t)plane(l);
    memset(sd, 0, sizeof(double) * (size_t)n);
    memset(sdx, 0, sizeof(double) * (size_t)n);
    for (int j = 0; j < batch; j++)
        for (int k = 0; k < n; k++) {
            size_t at = (size_t)(f0 + k) * np;
            const float *restrict dj = d + (size_t)j * ldd + at;
            const float *restrict xhat =
                l->saved + (size_t)(column0 + j) * l->saved_per_column + at;
            double a = 0.0, b = 0.0;
            for (size_t i = 0; i < np; i++) {
                a += dj[i];
                b += (double)dj[i] * xhat[i];
            }
            sd[k] += a;
            sdx[k] += b;
        }
}

/* BP2 as for features, with M = B plane values per channel in place of B:
 *   dC/dx = gamma inv_std / M (M d - sum d - xhat sum d xhat). */
BP_CLONES static void planar_backward_data(const bp_layer *l, const bp_pass *pass, int batch,
                                           const float *d, int ldd, float *d_in, int ld_din)
{
    int c = features(l);
    size_t np = (size_t)plane(l);
    double m_count = (double)pass->batch * (double)np;
    for (int f0 = 0; f0 < c; f0 += CHUNK) {
        int n = c - f0 < CHUNK ? c - f0 : CHUNK;
        double sums[2 * CHUNK];
        planar_sums(l, pass->column0, f0, n, batch, d, ldd, sums, sums + n);
        bp_pass_sum(pass, sums, 2 * (size_t)n);
        float g[CHUNK], off[CHUNK], slope[CHUNK];
        for (int k = 0; k < n; k++) {
            double gk = (double)l->scale[f0 + k] * batch_inv_std(l)[f0 + k];
            g[k] = (float)gk;
            off[k] = (float)(-gk * sums[k] / m_count);
            slope[k] = (float)(-gk * sums[n + k] / m_count);
        }
        for (int j = 0; j < batch; j++)
            for (int k = 0; k < n; k++) {
                size_t at = (size_t)(f0 + k) * np;
                const float *restrict dj = d + (size_t)j * ldd + at;
                const float *restrict xhat =
                    l->saved + (size_t)(pass->column0 + j) * l->saved_per_column + at;
                float *restrict dx = d_in + (size_t)j * ld_din + at;
                float gk = g[k], ok = off[k], sk = slope[k];
                for (size_t i = 0; i < np; i++)
                    dx[i] = gk * dj[i] + ok + sk * xhat[i];
            }
    }
}

/* G_gamma = (1/B) sum over samples and positions of d xhat, G_beta of d, for part `part` of
 * the channels; never decayed, as for features. */
static void planar_backward_params(const bp_layer *l, int batch, const float *d, int ldd,
                                   const bp_grad_target *target, int part, int parts)
{
    int r0, r1;
    bp_team_share(features(l), part, parts, 16, &r0, &r1);
    int into_params = target->into == BP_TARGET_PARAMS;
    float alpha = target->alpha;
    for (int f0 = r0; f0 < r1; f0 += CHUNK) {
        int n = r1 - f0 < CHUNK ? r1 - f0 : CHUNK;
        double sd[CHUNK], sdx[CHUNK];
        planar_sums(l, 0, f0, n, batch, d, ldd, sd, sdx);
        float *gamma = (into_params ? l->scale : l->gscale) + f0;
        float *beta = (into_params ? l->shift : l->gshift) + f0;
        for (int k = 0; k < n; k++) {
            float g_gamma = (float)(sdx[k] / batch), g_beta = (float)(sd[k] / batch);
            gamma[k] = (into_params ? gamma[k] : 0.0f) + alpha * g_gamma;
            beta[k] = (into_params ? beta[k] : 0.0f) + alpha * g_beta;
        }
    }
}

static int batchnorm_format(const bp_layer *l, char *buf, size_t size)
{
    return snprintf(buf, size, "batchnorm:%s", bp_activation_name(l->act));
}

const bp_layer_ops bp_batchnorm_ops = {
    .name = "batchnorm",
    .parse = batchnorm_parse,
    .format = batchnorm_format,
    .plan = batchnorm_plan,
    .bind = batchnorm_bind,
    .tensors = batchnorm_tensors,
    .buffers = batchnorm_buffers,
    .init = batchnorm_init,
    .forward = batchnorm_forward,
    .act_backward = batchnorm_act_backward,
    .backward_data = batchnorm_backward_data,
    .backward_params = batchnorm_backward_params,
};
