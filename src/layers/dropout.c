/*
 * dropout.c - inverted dropout (Srivastava et al.; Nielsen ch. 3): in a training step each unit
 * of each sample is kept with probability 1 - p and then scaled by 1 / (1 - p), so the expected
 * activation is unchanged and inference is the identity.
 *
 * The mask is not drawn from a stream but from the counter-based generator keyed by (seed,
 * step, layer, column of the whole batch, unit), so it is the same whichever thread computes a
 * column and however many threads there are, and a resumed run draws the masks the uninterrupted
 * one would have. It is kept per column (saved) from forward to backward: BP2 of dropout is the
 * same multiplication.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layers/layer.h"

/* "P", the probability of dropping a unit, in [0, 1). */
static bp_status dropout_parse(const char *args, bp_layer_spec *spec)
{
    char *end;
    errno = 0;
    float p = strtof(args, &end);
    if (end == args || *end != '\0' || errno == ERANGE || !(p >= 0.0f && p < 1.0f))
        return bp_fail(BP_EINVAL, "dropout: '%s' is not a drop probability in [0, 1)", args);
    spec->rate = p;
    spec->act = BP_ACT_LINEAR;
    return BP_OK;
}

static bp_status dropout_plan(bp_layer *l, const bp_layer_spec *spec, bp_shape in,
                              bp_layer_plan *plan)
{
    if (!(spec->rate >= 0.0f && spec->rate < 1.0f))
        return bp_fail(BP_EINVAL, "dropout: drop probability %g is not in [0, 1)",
                       (double)spec->rate);
    l->in = l->out = in;
    l->n_in = l->n_out = (int)bp_shape_size(in);
    l->act = BP_ACT_LINEAR;
    l->rate = spec->rate;
    *plan = (bp_layer_plan){.out = in, .saved_per_column = (size_t)l->n_out, .hidden_only = 1};
    return BP_OK;
}

static void dropout_bind(bp_layer *l, float *params, float *grads)
{
    (void)l, (void)params, (void)grads; /* no parameters */
}

static bp_status dropout_init(bp_layer *l, bp_init scheme, bp_rng *rng)
{
    (void)l, (void)scheme, (void)rng;
    return BP_OK;
}

static int drops(const bp_layer *l, const bp_pass *pass)
{
    return pass->mode == BP_PASS_TRAIN && l->rate > 0.0f;
}

/* One column's mask of n units: 0 for a dropped unit, `keep` = 1 / (1 - p) for a kept one.
 * Each 64-bit draw decides two units by its halves, each compared with p as a 32-bit
 * threshold: unit k by draw k's high half, unit k + half by its low half, so both stores are
 * contiguous and the loop vectorises (AVX2 and AVX-512 clones; the multiplies of the mix are
 * the cost). */
BP_CLONES static void draw_mask(uint64_t key, uint32_t threshold, float keep, int n,
                                float *restrict mask)
{
    int half = (n + 1) / 2, low = n / 2;
    for (int k = 0; k < low; k++) {
        uint64_t bits = bp_rng_counter_draw(key, (uint32_t)k);
        mask[k] = (uint32_t)(bits >> 32) >= threshold ? keep : 0.0f;
        mask[half + k] = (uint32_t)bits >= threshold ? keep : 0.0f;
    }
    if (half > low) /* odd n: the middle unit takes the high half of the last draw */
        mask[low] = (uint32_t)(bp_rng_counter_draw(key, (uint32_t)low) >> 32) >= threshold
                        ? keep
                        : 0.0f;
}

static void column_mask(const bp_layer *l, const bp_pass *pass, uint32_t column, float *mask)
{
    uint64_t key = bp_rng_counter_key(pass->seed, pass->step, (uint32_t)l->index,
                                      (uint32_t)column);
    uint32_t threshold = (uint32_t)floor((double)l->rate * 4294967296.0);
    draw_mask(key, threshold, 1.0f / (1.0f - l->rate), l->n_out, mask);
}

BP_CLONES static void multiply(int n, const float *restrict a, const float *restrict m, float *restrict out)
{
    for (int i = 0; i < n; i++)
        out[i] = a[i] * m[i];
}

static void dropout_forward(const bp_layer *l, const bp_backend *be, const bp_pass *pass,
                            int batch, const float *in, int ldin, float *out, int ldout)
{
    (void)be;
    int n = l->n_out;
    for (int j = 0; j < batch; j++) {
        const float *a = in + (size_t)j * ldin;
        float *o = out + (size_t)j * ldout;
        if (!drops(l, pass)) {
            memcpy(o, a, sizeof(float) * (size_t)n);
            continue;
        }
        /* saved holds max_batch columns indexed by the column's place in the whole batch. */
        float *mask = l->saved + (size_t)(pass->column0 + j) * l->saved_per_column;
        column_mask(l, pass, pass->key_column0 + (uint32_t)j, mask);
        multiply(n, a, mask, o);
    }
}

/* The activation is the identity: dC/dA is already dC/dZ. */
static void dropout_act_backward(const bp_layer *l, const bp_backend *be, int batch,
                                 const float *out, int ldout, float *d, int ldd)
{
    (void)l, (void)be, (void)batch, (void)out, (void)ldout, (void)d, (void)ldd;
}

static void dropout_backward_data(const bp_layer *l, const bp_backend *be, const bp_pass *pass,
                                  int batch, const float *in, int ldin, const float *out,
                                  int ldout, const float *d, int ldd, float *d_in, int ld_din)
{
    (void)be, (void)in, (void)ldin, (void)out, (void)ldout;
    int n = l->n_out;
    for (int j = 0; j < batch; j++) {
        const float *dj = d + (size_t)j * ldd;
        float *dij = d_in + (size_t)j * ld_din;
        if (!drops(l, pass))
            memcpy(dij, dj, sizeof(float) * (size_t)n);
        else
            multiply(n, dj,
                     l->saved + (size_t)(pass->column0 + j) * l->saved_per_column, dij);
    }
}

static void dropout_backward_params(const bp_layer *l, const bp_backend *be, int batch,
                                    const float *in, int ldin, const float *d, int ldd,
                                    const bp_grad_target *target, int part, int parts)
{
    (void)l, (void)be, (void)batch, (void)in, (void)ldin, (void)d, (void)ldd, (void)target,
        (void)part, (void)parts; /* nothing to learn */
}

/* %.9g: the shortest form that reads back as the same float. */
static int dropout_format(const bp_layer *l, char *buf, size_t size)
{
    return snprintf(buf, size, "dropout:%.9g", (double)l->rate);
}

const bp_layer_ops bp_dropout_ops = {
    .name = "dropout",
    .parse = dropout_parse,
    .format = dropout_format,
    .plan = dropout_plan,
    .bind = dropout_bind,
    .tensors = NULL,
    .init = dropout_init,
    .forward = dropout_forward,
    .act_backward = dropout_act_backward,
    .backward_data = dropout_backward_data,
    .backward_params = dropout_backward_params,
};
