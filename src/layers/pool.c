/*
 * pool.c - max and average pooling (Nielsen ch. 6): each channel's plane is summarised over an
 * N x N window moved by a stride (N by default, so windows tile the plane), no padding, no
 * parameters, no activation. The output plane is oh x ow with oh = (H - N) / S + 1.
 *
 * Max pooling's BP2 routes each output's delta to the input that was the window's maximum, so
 * forward keeps, per column, the index of that input (saved: one float per output, the index
 * exact below 2^24 > BP_MAX_WIDTH); with overlapping windows (S < N) an input that wins twice
 * gets both deltas. Ties go to the first maximum in the window, row by row. Average pooling
 * spreads each delta evenly over its window. The kernels are the backend's (backend.h).
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layers/layer.h"

/* "N[:sS]", window N x N, stride S (N by default). `kind` names the layer in messages. */
static bp_status pool_parse_as(const char *kind, const char *args, bp_layer_spec *spec)
{
    char *end;
    errno = 0;
    long n = strtol(args, &end, 10);
    if (end == args || !isdigit((unsigned char)args[0]) || errno == ERANGE || n < 1 ||
        n > 65535 || (*end != '\0' && *end != ':'))
        return bp_fail(BP_EINVAL, "%s: '%s' does not start with a window size N >= 1 (an N x "
                       "N window)", kind, args);
    spec->kh = spec->kw = spec->stride = (int)n;
    spec->pad = 0;
    spec->act = BP_ACT_LINEAR;
    if (*end == '\0')
        return BP_OK;
    const char *s = end + 1;
    long stride = 0;
    if (s[0] == 's' && isdigit((unsigned char)s[1])) {
        errno = 0;
        stride = strtol(s + 1, &end, 10);
    }
    if (stride < 1 || stride > 65535 || errno == ERANGE || *end != '\0')
        return bp_fail(BP_EINVAL, "%s: '%s' is not a stride sS with S >= 1", kind, s);
    spec->stride = (int)stride;
    return BP_OK;
}

static bp_status maxpool_parse(const char *args, bp_layer_spec *spec)
{
    return pool_parse_as("maxpool", args, spec);
}

static bp_status avgpool_parse(const char *args, bp_layer_spec *spec)
{
    return pool_parse_as("avgpool", args, spec);
}

static bp_status pool_plan(bp_layer *l, const bp_layer_spec *spec, bp_shape in,
                           bp_layer_plan *plan)
{
    bp_status st = bp_window_plan(l->ops->name, in, spec->kh, spec->kw, spec->stride, 0,
                                  &l->win);
    if (st != BP_OK)
        return st;
    l->in = in;
    l->out = (bp_shape){in.c, l->win.oh, l->win.ow};
    l->n_in = (int)bp_shape_size(in);
    l->n_out = (int)bp_shape_size(l->out);
    l->act = BP_ACT_LINEAR;
    *plan = (bp_layer_plan){
        .out = l->out,
        .saved_per_column = l->ops == &bp_maxpool_ops ? (size_t)l->n_out : 0, /* argmax */
        .hidden_only = 1,
    };
    return BP_OK;
}

static void pool_bind(bp_layer *l, float *params, float *grads)
{
    (void)l, (void)params, (void)grads; /* no parameters */
}

static bp_status pool_init(bp_layer *l, bp_init scheme, bp_rng *rng)
{
    (void)l, (void)scheme, (void)rng;
    return BP_OK;
}

/* saved holds max_batch columns of argmax, indexed by the column's place in the whole batch. */
static float *argmax_of(const bp_layer *l, const bp_pass *pass)
{
    return l->saved + (size_t)pass->column0 * l->saved_per_column;
}

static void maxpool_forward(const bp_layer *l, const bp_backend *be, const bp_pass *pass,
                            int batch, const float *in, int ldin, float *out, int ldout)
{
    be->maxpool_fwd(&l->win, batch, in, ldin, out, ldout, argmax_of(l, pass),
                    (int)l->saved_per_column);
}

static void avgpool_forward(const bp_layer *l, const bp_backend *be, const bp_pass *pass,
                            int batch, const float *in, int ldin, float *out, int ldout)
{
    (void)pass;
    be->avgpool_fwd(&l->win, batch, in, ldin, out, ldout);
}

/* No activation: dC/dA is already dC/dZ. */
static void pool_act_backward(const bp_layer *l, const bp_backend *be, int batch,
                              const float *out, int ldout, float *d, int ldd)
{
    (void)l, (void)be, (void)batch, (void)out, (void)ldout, (void)d, (void)ldd;
}

static void maxpool_backward_data(const bp_layer *l, const bp_backend *be, const bp_pass *pass,
                                  int batch, const float *in, int ldin, const float *out,
                                  int ldout, const float *d, int ldd, float *d_in, int ld_din)
{
    (void)in, (void)ldin, (void)out, (void)ldout;
    be->maxpool_bwd(&l->win, batch, d, ldd, argmax_of(l, pass), (int)l->saved_per_column, d_in,
                    ld_din);
}

static void avgpool_backward_data(const bp_layer *l, const bp_backend *be, const bp_pass *pass,
                                  int batch, const float *in, int ldin, const float *out,
                                  int ldout, const float *d, int ldd, float *d_in, int ld_din)
{
    (void)pass, (void)in, (void)ldin, (void)out, (void)ldout;
    be->avgpool_bwd(&l->win, batch, d, ldd, d_in, ld_din);
}

static void pool_backward_params(const bp_layer *l, const bp_backend *be, int batch,
                                 const float *in, int ldin, const float *d, int ldd,
                                 const bp_grad_target *target, int part, int parts)
{
    (void)l, (void)be, (void)batch, (void)in, (void)ldin, (void)d, (void)ldd, (void)target,
        (void)part, (void)parts; /* nothing to learn */
}

static int pool_format(const bp_layer *l, char *buf, size_t size)
{
    return snprintf(buf, size, "%s:%d:s%d", l->ops->name, l->win.kh, l->win.stride);
}

const bp_layer_ops bp_maxpool_ops = {
    .name = "maxpool",
    .parse = maxpool_parse,
    .format = pool_format,
    .plan = pool_plan,
    .bind = pool_bind,
    .init = pool_init,
    .forward = maxpool_forward,
    .act_backward = pool_act_backward,
    .backward_data = maxpool_backward_data,
    .backward_params = pool_backward_params,
};

const bp_layer_ops bp_avgpool_ops = {
    .name = "avgpool",
    .parse = avgpool_parse,
    .format = pool_format,
    .plan = pool_plan,
    .bind = pool_bind,
    .init = pool_init,
    .forward = avgpool_forward,
    .act_backward = pool_act_backward,
    .backward_data = avgpool_backward_data,
    .backward_params = pool_backward_params,
};
