/*
 * sequence.c - what the recurrent kinds (lstm.c, gru.c) share: their spec, the plan of a
 * sequence input, the input side of their GEMMs, and the per-gate initialisation.
 *
 * A column is an image 1 x R x C, read as R steps of C features (by rows: step t's features
 * are contiguous, at t C) or as C steps of R features (by cols: step t's feature k is at
 * k C + t). By rows the batch's columns already are the F x (B T) matrix X whose product
 * with W_x is every step's input projection at once. By cols they are not, and a per-column
 * transposed GEMM would cut that one GEMM into B small ones; so the forward pass copies each
 * column transposed (784 floats for MNIST, against the 4H x 784 multiply-adds it feeds) into
 * the layer's work, where BP4 finds it again. The copies sit after the kind's own per-column
 * work, column after column, so together they are one matrix with ld F.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layers/layer.h"

bp_status bp_sequence_parse(const char *kind, const char *args, int gates, bp_layer_spec *spec)
{
    char *end;
    errno = 0;
    long units = strtol(args, &end, 10);
    int max = BP_MAX_WIDTH / gates;
    if (end == args || !isdigit((unsigned char)args[0]) || errno == ERANGE || units < 1 ||
        units > max || (*end != '\0' && *end != ':'))
        return bp_fail(BP_EINVAL, "%s: '%s' is not a count of 1 to %d hidden units (e.g. "
                       "%s:128)", kind, args, max, kind);
    spec->units = (int)units;
    spec->act = BP_ACT_LINEAR;
    spec->by_cols = 0;
    if (*end == ':') {
        if (!strcmp(end + 1, "cols"))
            spec->by_cols = 1;
        else if (strcmp(end + 1, "rows") != 0)
            return bp_fail(BP_EINVAL, "%s: '%s' after the hidden units; a sequence is read by "
                           "'rows' (the default) or 'cols'", kind, end + 1);
    }
    return BP_OK;
}

bp_status bp_sequence_plan(bp_layer *l, const char *kind, int gates, const bp_layer_spec *spec,
                           bp_shape in)
{
    if (in.c != 1)
        return bp_fail(BP_EINVAL, "%s: an input of %d x %d x %d; a sequence is 1 x steps x "
                       "features (input_channels 1, input_rows steps, input_cols features; "
                       "or read by cols)", kind, in.c, in.h, in.w);
    int max = BP_MAX_WIDTH / gates;
    if (spec->units < 1 || spec->units > max)
        return bp_fail(BP_EINVAL, "%s: %d hidden units (allowed: 1 to %d)", kind, spec->units,
                       max);
    int steps = spec->by_cols ? in.w : in.h;
    if ((size_t)steps * (size_t)gates * (size_t)spec->units > BP_MAX_WIDTH)
        return bp_fail(BP_EINVAL, "%s: %d steps of %d gates are more than %d values in a "
                       "column", kind, steps, gates * spec->units, BP_MAX_WIDTH);
    l->in = in;
    l->out = (bp_shape){spec->units, 1, 1};
    l->n_in = (int)bp_shape_size(in);
    l->n_out = spec->units;
    l->steps = steps;
    l->features = spec->by_cols ? in.h : in.w;
    l->by_cols = spec->by_cols;
    l->act = BP_ACT_LINEAR;
    return BP_OK;
}

int bp_sequence_format(const bp_layer *l, char *buf, size_t size)
{
    return snprintf(buf, size, "%s:%d%s", l->ops->name, l->n_out, l->by_cols ? ":cols" : "");
}

size_t bp_sequence_copy_floats(const bp_layer *l)
{
    return l->by_cols ? (size_t)l->steps * (size_t)l->features : 0;
}

size_t bp_sequence_work_stride(const bp_layer *l)
{
    return l->work_per_column - bp_sequence_copy_floats(l);
}

/* Column `column`'s transposed copy. */
static float *copy_of(const bp_layer *l, int column)
{
    return l->work + (size_t)l->columns * bp_sequence_work_stride(l) +
           (size_t)column * bp_sequence_copy_floats(l);
}

void bp_sequence_project(const bp_layer *l, const bp_backend *be, const bp_pass *pass,
                         int batch, const float *in, int ldin, float *z, int rows, int ldz,
                         int spc)
{
    int steps = l->steps, f = l->features, tf = steps * f;
    if (l->by_cols) {
        float *x = copy_of(l, pass->column0);
        for (int j = 0; j < batch; j++) {
            const float *image = in + (size_t)j * ldin; /* f rows of steps */
            float *seq = x + (size_t)j * tf;
            for (int k = 0; k < f; k++)
                for (int t = 0; t < steps; t++)
                    seq[(size_t)t * f + k] = image[(size_t)k * steps + t];
        }
        in = x;
        ldin = tf;
    }
    /* Column j + 1's steps follow column j's when the columns are packed (ldin = T F) and
     * the gates' blocks are too (spc = T ldz). */
    if (ldin == tf && spc == steps * ldz)
        be->sgemm(BP_NOTRANS, BP_NOTRANS, rows, batch * steps, f, 1.0f, l->w, l->ldw, in, f,
                  0.0f, z, ldz);
    else
        for (int j = 0; j < batch; j++)
            be->sgemm(BP_NOTRANS, BP_NOTRANS, rows, steps, f, 1.0f, l->w, l->ldw,
                      in + (size_t)j * ldin, f, 0.0f, z + (size_t)j * spc, ldz);
}

void bp_sequence_input_grad(const bp_layer *l, const bp_backend *be, int batch,
                            const float *dz, int ldz, int spc, float *d_in, int ld_din)
{
    int steps = l->steps, f = l->features, g = l->ldw;
    if (l->by_cols) {
        /* dX^T = dZ^T W_x is steps x features with ld steps: feature k of step t lands at
         * k steps + t, where the image has it. */
        for (int j = 0; j < batch; j++)
            be->sgemm(BP_TRANS, BP_NOTRANS, steps, f, g, 1.0f, dz + (size_t)j * spc, ldz, l->w,
                      l->ldw, 0.0f, d_in + (size_t)j * ld_din, steps);
        return;
    }
    if (ld_din == steps * f && spc == steps * ldz)
        be->sgemm(BP_TRANS, BP_NOTRANS, f, batch * steps, g, 1.0f, l->w, l->ldw, dz, ldz, 0.0f,
                  d_in, f);
    else
        for (int j = 0; j < batch; j++)
            be->sgemm(BP_TRANS, BP_NOTRANS, f, steps, g, 1.0f, l->w, l->ldw,
                      dz + (size_t)j * spc, ldz, 0.0f, d_in + (size_t)j * ld_din, f);
}

void bp_sequence_weight_grad(const bp_layer *l, const bp_backend *be, int batch,
                             const float *in, int ldin, const float *dz, int rows, int ldz,
                             int spc, float alpha, float beta, float *target_w)
{
    int steps = l->steps, f = l->features, tf = steps * f;
    if (l->by_cols) {
        in = copy_of(l, 0);
        ldin = tf;
    }
    if (ldin == tf && spc == steps * ldz)
        be->sgemm(BP_NOTRANS, BP_TRANS, rows, f, batch * steps, alpha, dz, ldz, in, f, beta,
                  target_w, l->ldw);
    else
        for (int j = 0; j < batch; j++)
            be->sgemm(BP_NOTRANS, BP_TRANS, rows, f, steps, alpha, dz + (size_t)j * spc, ldz,
                      in + (size_t)j * ldin, f, j ? 1.0f : beta, target_w, l->ldw);
}

/* One gate's block (n rows of a matrix with ld ld) by the scheme, fan-in `fan_in`. */
static bp_status init_block(float *w, int rows, int fan_in, int ld, bp_init scheme,
                            bp_rng *rng)
{
    if (scheme == BP_INIT_ORTHOGONAL)
        return bp_init_orthogonal(w, rows, fan_in, 1, (size_t)ld, rng);
    double scale = scheme == BP_INIT_HE ? sqrt(2.0 / fan_in)
                   : scheme == BP_INIT_LARGE ? 1.0 : 1.0 / sqrt((double)fan_in);
    double bound = sqrt(6.0 / ((double)fan_in + rows));
    for (int j = 0; j < fan_in; j++)
        for (int i = 0; i < rows; i++)
            w[i + (size_t)j * ld] =
                (float)(scheme == BP_INIT_XAVIER ? bound * (2.0 * bp_rng_uniform(rng) - 1.0)
                                                 : scale * bp_rng_gaussian(rng));
    return BP_OK;
}

/* Orthogonal makes each H x H recurrent block orthogonal, which keeps a fresh net's h from
 * growing or fading over the steps (Saxe et al.). */
bp_status bp_sequence_init_weights(bp_layer *l, int gates, bp_init scheme, bp_rng *rng)
{
    int h = l->n_out;
    for (int q = 0; q < gates; q++) {
        bp_status st = init_block(l->w + (size_t)q * h, h, l->features, l->ldw, scheme, rng);
        if (st == BP_OK)
            st = init_block(l->w2 + (size_t)q * h, h, h, l->ldw, scheme, rng);
        if (st != BP_OK)
            return st;
    }
    return BP_OK;
}
