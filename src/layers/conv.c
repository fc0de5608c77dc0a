/*
 * conv.c - the 2-d convolution (Nielsen ch. 6: local receptive fields, shared weights):
 * K filters of C x kh x kw slide over a C x H x W input with a stride and zero padding, each
 * giving one output plane of oh x ow, Z(k, p) = b_k + sum_r W(k, r) X(p, r), A = act(Z).
 *
 * Lowered to GEMM through im2col (backend.h, bp_window). With P = oh*ow positions and R =
 * C*kh*kw taps, the windows of column j form X_j, P x R with ld P. A column of the net's
 * buffers is channel-major (K planes of P floats, as PyTorch lays out an NCHW sample), which is
 * the P x K matrix Z_j with ld P, so with no reshaping anywhere:
 *   forward  Z_j = X_j W^T, A_j = act(Z_j + b)          straight into the column's planes
 *   BP2      dX_j = D_j W, dC/dA_in,j = col2im(dX_j)
 *   BP4      G_W^T = (1/B) sum_j X_j^T D_j, G_b = (1/B) sum_j of D_j's plane sums
 * BP4 is the batch's GEMMs accumulating into one target (beta for the first, 1 after), so
 * the sum over the mini-batch happens inside the GEMMs, as in dense's one BP4 GEMM.
 * Everything goes column by column because a column's X_j and its outputs stay in cache from
 * im2col through the GEMM to the activation (X_j is 57 KB for network3's first layer; the
 * batch's X stacked into one (B P) x R matrix, the first version of this file, is megabytes,
 * and its long leading dimension sent a column's taps into the same cache sets), while each
 * column's GEMM is still 0.3-1.3 million multiply-adds in network3.
 *
 * Buffers, planned per column: saved holds X_j from forward to BP4 (R P floats), work holds
 * dX_j during BP2 (R P floats). A member of a team touches only its own columns' shares, so the
 * forward pass and BP2 split by columns; BP4 splits by filters, every part reading all of X
 * and its own filters' planes of D.
 *
 * Filters are stored as PyTorch's Conv2d.weight [K, C, kh, kw] row-major: column-major that is
 * the R x K matrix W^T, ld = R, which is what the GEMMs above take.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layers/layer.h"
#include "parallel/team.h"

static size_t taps(const bp_layer *l) { return (size_t)l->win.c * l->win.kh * l->win.kw; }
static size_t positions(const bp_layer *l) { return (size_t)l->win.oh * l->win.ow; }
static int filters(const bp_layer *l) { return l->out.c; }
static size_t conv_bias_at(const bp_layer *l)
{
    return bp_round_floats(taps(l) * (size_t)filters(l));
}

/* A positive decimal of at most 7 digits at *p, advancing *p past it. */
static int read_count(const char **p, int *out)
{
    const char *s = *p;
    if (!isdigit((unsigned char)*s))
        return 0;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno == ERANGE || end - s > 7)
        return 0;
    *out = (int)v;
    *p = end;
    return 1;
}

/* One ":sS" or ":pP" option: a letter and a count (stride >= 1, padding >= 0). */
static bp_status read_option(const char *kind, const char *token, size_t len, int *value,
                             int least)
{
    const char *p = token + 1;
    int v;
    if (!read_count(&p, &v) || (size_t)(p - token) != len || v < least)
        return bp_fail(BP_EINVAL, "%s: '%.*s' is not %s", kind, (int)len, token,
                       token[0] == 's' ? "a stride sS with S >= 1" : "a padding pP with P >= 0");
    *value = v;
    return BP_OK;
}

/* "KxHxW[:ACT][:sS][:pP]": K filters of H x W, the activation (relu by default), the stride
 * (1) and the zero padding (0). */
static bp_status conv_parse(const char *args, bp_layer_spec *spec)
{
    size_t first = strcspn(args, ":");
    int counts[3], n = 0;
    for (const char *p = args; n < 3; n++) {
        if (!read_count(&p, &counts[n]) || *p != (n < 2 ? 'x' : args[first]))
            return bp_fail(BP_EINVAL, "conv: '%.*s' is not KxHxW (K filters of H x W, e.g. "
                           "20x5x5)", (int)first, args);
        p++;
    }
    if (counts[0] < 1 || counts[1] < 1 || counts[2] < 1)
        return bp_fail(BP_EINVAL, "conv: '%.*s' has a zero count (filters, height and width "
                       "are at least 1)", (int)first, args);
    const bp_layer_ops *ops = spec->ops;
    *spec = (bp_layer_spec){.ops = ops, .units = counts[0], .kh = counts[1], .kw = counts[2],
                            .stride = 1, .pad = 0, .act = BP_ACT_RELU};
    const char *p;
    int seen_act = 0, seen_s = 0, seen_p = 0;
    for (p = args + first; *p == ':';) {
        const char *token = p + 1;
        size_t len = strcspn(token, ":");
        bp_status st = BP_OK;
        int *seen;
        if ((token[0] == 's' || token[0] == 'p') && isdigit((unsigned char)token[1])) {
            seen = token[0] == 's' ? &seen_s : &seen_p;
            st = token[0] == 's' ? read_option("conv", token, len, &spec->stride, 1)
                                 : read_option("conv", token, len, &spec->pad, 0);
        } else {
            char name[32];
            seen = &seen_act;
            if (len == 0 || len >= sizeof name)
                st = bp_fail(BP_EINVAL, "conv: '%.*s' is not an activation, sS or pP",
                             (int)len, token);
            else {
                memcpy(name, token, len);
                name[len] = '\0';
                if (bp_activation_parse(name, &spec->act) != BP_OK)
                    st = bp_fail(BP_EINVAL, "conv: '%s' is not an activation (sigmoid, tanh, "
                                 "relu, linear), sS or pP", name);
                else if (spec->act == BP_ACT_SOFTMAX)
                    st = bp_fail(BP_EINVAL, "conv: softmax normalises a whole output column, "
                                 "which a convolution's planes are not; use it on a dense "
                                 "output layer");
            }
        }
        if (st != BP_OK)
            return st;
        if (*seen)
            return bp_fail(BP_EINVAL, "conv: '%.*s' repeats an option already given", (int)len,
                           token);
        *seen = 1;
        p = token + len;
    }
    return BP_OK;
}

/* The window of a kernel of kh x kw moved by stride over `in` padded by pad, or a message
 * naming `kind` when it does not fit. Shared with pooling (pool.c). */
bp_status bp_window_plan(const char *kind, bp_shape in, int kh, int kw, int stride, int pad,
                         bp_window *out)
{
    if (in.c < 1 || in.h < 1 || in.w < 1)
        return bp_fail(BP_EINVAL, "%s: an input of %d x %d x %d", kind, in.c, in.h, in.w);
    if (stride < 1 || pad < 0 || kh < 1 || kw < 1)
        return bp_fail(BP_EINVAL, "%s: a %d x %d window, stride %d, padding %d", kind, kh, kw,
                       stride, pad);
    if (pad >= kh || pad >= kw)
        return bp_fail(BP_EINVAL, "%s: padding %d is not below the %d x %d window (a window "
                       "would see only zeros)", kind, pad, kh, kw);
    if ((long)in.h + 2L * pad < kh || (long)in.w + 2L * pad < kw)
        return bp_fail(BP_EINVAL, "%s: a %d x %d window (padding %d) is larger than its %d x "
                       "%d input", kind, kh, kw, pad, in.h, in.w);
    *out = (bp_window){.c = in.c, .h = in.h, .w = in.w, .kh = kh, .kw = kw, .stride = stride,
                       .pad = pad, .oh = (in.h + 2 * pad - kh) / stride + 1,
                       .ow = (in.w + 2 * pad - kw) / stride + 1};
    return BP_OK;
}

static bp_status conv_plan(bp_layer *l, const bp_layer_spec *spec, bp_shape in,
                           bp_layer_plan *plan)
{
    if (spec->units < 1 || spec->units > BP_MAX_WIDTH)
        return bp_fail(BP_EINVAL, "conv: %d filters (allowed: 1 to %d)", spec->units,
                       BP_MAX_WIDTH);
    if ((unsigned)spec->act >= BP_ACT_COUNT || spec->act == BP_ACT_SOFTMAX)
        return bp_fail(BP_EINVAL, "conv: activation %d is not one a convolution takes",
                       (int)spec->act);
    bp_status st = bp_window_plan("conv", in, spec->kh, spec->kw, spec->stride, spec->pad,
                                  &l->win);
    if (st != BP_OK)
        return st;
    size_t r = (size_t)in.c * spec->kh * spec->kw, p = (size_t)l->win.oh * l->win.ow;
    if (r > BP_MAX_WIDTH || bp_shape_size(in) > BP_MAX_WIDTH ||
        (size_t)spec->units * p > BP_MAX_WIDTH)
        return bp_fail(BP_EINVAL, "conv: %d filters of %d x %d x %d over %d x %d x %d: more "
                       "than %d values in a column", spec->units, in.c, spec->kh, spec->kw, in.c,
                       in.h, in.w, BP_MAX_WIDTH);
    l->in = in;
    l->out = (bp_shape){spec->units, l->win.oh, l->win.ow};
    l->n_in = (int)bp_shape_size(in);
    l->n_out = (int)bp_shape_size(l->out);
    l->act = spec->act;
    *plan = (bp_layer_plan){
        .out = l->out,
        .params = conv_bias_at(l) + bp_round_floats((size_t)spec->units),
        .saved_per_column = r * p, /* X_j, kept for BP4 */
        .work_per_column = r * p,  /* dX_j */
    };
    return BP_OK;
}

static void conv_bind(bp_layer *l, float *params, float *grads)
{
    size_t at = conv_bias_at(l);
    l->ldw = (int)taps(l);
    l->w = params;
    l->gw = grads;
    l->b = params + at;
    l->gb = grads + at;
}

static int conv_tensors(const bp_layer *l, bp_tensor_info *out, int max)
{
    int64_t k = filters(l), c = l->win.c, kh = l->win.kh, kw = l->win.kw;
    const bp_tensor_info tensors[] = {
        {.name = "weight", .role = BP_ROLE_WEIGHT, .ndim = 4, .shape = {k, c, kh, kw},
         .stride = {c * kh * kw, kh * kw, kw, 1}, .offset = 0,
         .count = (size_t)(k * c * kh * kw)},
        {.name = "bias", .role = BP_ROLE_BIAS, .ndim = 1, .shape = {k}, .stride = {1},
         .offset = conv_bias_at(l), .count = (size_t)k},
    };
    int n = (int)(sizeof tensors / sizeof *tensors);
    for (int i = 0; i < n && i < max; i++)
        out[i] = tensors[i];
    return n;
}

/* The schemes as for dense, with a filter's fan-in C kh kw and fan-out K kh kw (PyTorch's
 * receptive-field reading of Glorot and He). */
static bp_status conv_init(bp_layer *l, bp_init scheme, bp_rng *rng)
{
    size_t r = taps(l);
    int k = filters(l);
    double fan_in = (double)r, fan_out = (double)k * l->win.kh * l->win.kw;
    int gaussian_biases = scheme == BP_INIT_GAUSSIAN || scheme == BP_INIT_LARGE;
    if (scheme == BP_INIT_ORTHOGONAL) {
        bp_status st = bp_init_orthogonal(l->w, k, (int)r, r, 1, rng);
        if (st != BP_OK)
            return st;
    } else {
        double scale = 1.0, bound = sqrt(6.0 / (fan_in + fan_out));
        if (scheme == BP_INIT_GAUSSIAN)
            scale = 1.0 / sqrt(fan_in);
        else if (scheme == BP_INIT_HE)
            scale = sqrt(2.0 / fan_in);
        for (size_t i = 0; i < r * (size_t)k; i++)
            l->w[i] = (float)(scheme == BP_INIT_XAVIER ? bound * (2.0 * bp_rng_uniform(rng) - 1.0)
                                                       : scale * bp_rng_gaussian(rng));
    }
    for (int i = 0; i < k; i++)
        l->b[i] = gaussian_biases ? (float)bp_rng_gaussian(rng) : 0.0f;
    return BP_OK;
}

static void conv_forward(const bp_layer *l, const bp_backend *be, const bp_pass *pass,
                         int batch, const float *in, int ldin, float *out, int ldout)
{
    size_t p = positions(l);
    int r = (int)taps(l), k = filters(l);
    for (int j = 0; j < batch; j++) {
        float *x = l->saved + (size_t)(pass->column0 + j) * l->saved_per_column;
        float *o = out + (size_t)j * ldout;
        be->im2col(&l->win, 1, in + (size_t)j * ldin, ldin, x, (int)p);
        /* Z_j = X_j W^T: (P x R)(R x K), W^T stored R x K with ld R, straight into the
         * column's K planes of P. */
        be->sgemm(BP_NOTRANS, BP_NOTRANS, (int)p, k, r, 1.0f, x, (int)p, l->w, l->ldw, 0.0f, o,
                  (int)p);
        be->bias_act_planes(l->act, (int)p, k, 1, l->b, o, ldout);
    }
}

static void conv_act_backward(const bp_layer *l, const bp_backend *be, int batch,
                              const float *out, int ldout, float *d, int ldd)
{
    be->act_bwd_hadamard(l->act, l->n_out, batch, out, ldout, d, ldd);
}

/* dX_j in the column's own share of the work block, hot in cache for col2im; the column's
 * planes of D are already the P x K matrix D_j with ld P. */
static void conv_backward_data(const bp_layer *l, const bp_backend *be, const bp_pass *pass,
                               int batch, const float *in, int ldin, const float *out,
                               int ldout, const float *d, int ldd, float *d_in, int ld_din)
{
    (void)in, (void)ldin, (void)out, (void)ldout; /* D W needs none of them */
    size_t p = positions(l);
    int r = (int)taps(l), k = filters(l);
    for (int j = 0; j < batch; j++) {
        float *dx = l->work + (size_t)(pass->column0 + j) * l->work_per_column;
        /* dX_j = D_j W: (P x K)(K x R), W the transpose of the stored R x K. */
        be->sgemm(BP_NOTRANS, BP_TRANS, (int)p, r, k, 1.0f, d + (size_t)j * ldd, (int)p, l->w,
                  l->ldw, 0.0f, dx, (int)p);
        be->col2im(&l->win, 1, dx, (int)p, d_in + (size_t)j * ld_din, ld_din);
    }
}

/* The sum of n floats in double, in eight interleaved partial sums (added in a fixed order at
 * the end): one running sum would be a chain of dependent additions, 36,864 of them per filter
 * for network3's first layer at B = 64, and they took most of its BP4. */
BP_CLONES static double sum_floats(const float *restrict x, size_t n)
{
    double part[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int v = 0; v < 8; v++)
            part[v] += x[i + v];
    for (; i < n; i++)
        part[i % 8] += x[i];
    return ((part[0] + part[1]) + (part[2] + part[3])) +
           ((part[4] + part[5]) + (part[6] + part[7]));
}

/* BP3/BP4 of the mean cost for filters [k0, k1) of part `part`, written as target says: G_b
 * from the plane sums of every column, G_W^T's columns by one GEMM per column of the batch
 * accumulating into T (T = beta T + (alpha / B) X_0^T D_0, then T += (alpha / B) X_j^T D_j),
 * columns in order, so the result does not depend on how the filters are shared out. */
static void conv_backward_params(const bp_layer *l, const bp_backend *be, int batch,
                                 const float *in, int ldin, const float *d, int ldd,
                                 const bp_grad_target *target, int part, int parts)
{
    (void)in, (void)ldin; /* X was kept by forward */
    int k0, k1;
    bp_team_share(filters(l), part, parts, 1, &k0, &k1);
    if (k1 <= k0)
        return;
    size_t p = positions(l);
    int r = (int)taps(l);
    float inv_batch = 1.0f / (float)batch;
    int into_params = target->into == BP_TARGET_PARAMS;
    for (int k = k0; k < k1; k++) {
        double sum = 0.0;
        for (int j = 0; j < batch; j++)
            sum += sum_floats(d + (size_t)j * ldd + (size_t)k * p, p);
        float g = (float)sum * inv_batch;
        if (into_params)
            l->b[k] += target->alpha * g;
        else
            l->gb[k] = target->alpha * g;
    }
    float *t = (into_params ? l->w : l->gw) + (size_t)k0 * l->ldw;
    for (int j = 0; j < batch; j++)
        be->sgemm(BP_TRANS, BP_NOTRANS, r, k1 - k0, (int)p, target->alpha * inv_batch,
                  l->saved + (size_t)j * l->saved_per_column, (int)p,
                  d + (size_t)j * ldd + (size_t)k0 * p, (int)p, j ? 1.0f : target->beta, t,
                  l->ldw);
}

static int conv_format(const bp_layer *l, char *buf, size_t size)
{
    return snprintf(buf, size, "conv:%dx%dx%d:%s:s%d:p%d", filters(l), l->win.kh, l->win.kw,
                    bp_activation_name(l->act), l->win.stride, l->win.pad);
}

const bp_layer_ops bp_conv_ops = {
    .name = "conv",
    .parse = conv_parse,
    .format = conv_format,
    .plan = conv_plan,
    .bind = conv_bind,
    .tensors = conv_tensors,
    .init = conv_init,
    .forward = conv_forward,
    .act_backward = conv_act_backward,
    .backward_data = conv_backward_data,
    .backward_params = conv_backward_params,
};
