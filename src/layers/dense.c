/*
 * dense.c - the fully connected layer: Z = W A + b 1^T, A' = act(Z).
 *
 * Shapes: W n_out x n_in (ld = ldw), b n_out, inputs n_in x B, outputs and deltas n_out x B.
 * Every product is one GEMM over the whole mini-batch.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lapacke.h>

#include "layers/layer.h"
#include "parallel/team.h"

/* Layout of the layer's block: W (column-major, ld = n_out, so compact), then b on the next
 * cache line. bind and tensors both read it from here. */
static size_t dense_bias_at(const bp_layer *l)
{
    return bp_round_floats((size_t)l->n_out * (size_t)l->n_in);
}

/* "UNITS[:ACTIVATION]", the activation sigmoid by default (Nielsen's neuron). */
static bp_status dense_parse(const char *args, bp_layer_spec *spec)
{
    char *end;
    errno = 0;
    long units = strtol(args, &end, 10);
    if (end == args || !isdigit((unsigned char)args[0]) || errno == ERANGE || units < 1 ||
        units > BP_MAX_WIDTH || (*end != '\0' && *end != ':'))
        return bp_fail(BP_EINVAL, "dense: '%s' does not start with a width of 1 to %d neurons",
                       args, BP_MAX_WIDTH);
    spec->units = (int)units;
    spec->act = BP_ACT_SIGMOID;
    if (*end == ':' && bp_activation_parse(end + 1, &spec->act) != BP_OK)
        return bp_fail(BP_EINVAL, "dense: unknown activation '%s'", end + 1);
    return BP_OK;
}

/* A dense layer sees its input column flat: C*H*W inputs, whatever their layout. */
static bp_status dense_plan(bp_layer *l, const bp_layer_spec *spec, bp_shape in,
                            bp_layer_plan *plan)
{
    size_t n_in = bp_shape_size(in);
    if (n_in < 1 || n_in > BP_MAX_WIDTH)
        return bp_fail(BP_EINVAL, "dense: %zu inputs (allowed: 1 to %d)", n_in, BP_MAX_WIDTH);
    if (spec->units < 1 || spec->units > BP_MAX_WIDTH)
        return bp_fail(BP_EINVAL, "dense: %d neurons (allowed: 1 to %d)", spec->units,
                       BP_MAX_WIDTH);
    if ((unsigned)spec->act >= BP_ACT_COUNT)
        return bp_fail(BP_EINVAL, "dense: unknown activation %d", (int)spec->act);
    l->in = in;
    l->out = (bp_shape){spec->units, 1, 1};
    l->n_in = (int)n_in;
    l->n_out = spec->units;
    l->act = spec->act;
    *plan = (bp_layer_plan){
        .out = l->out,
        .params = dense_bias_at(l) + bp_round_floats((size_t)l->n_out),
    };
    return BP_OK;
}

static void dense_bind(bp_layer *l, float *params, float *grads)
{
    size_t wsize = dense_bias_at(l);
    l->ldw = l->n_out;
    l->w = params;
    l->gw = grads;
    l->b = params + wsize;
    l->gb = grads + wsize;
}

static int dense_tensors(const bp_layer *l, bp_tensor_info *out, int max)
{
    const bp_tensor_info tensors[] = {
        {.name = "weight", .role = BP_ROLE_WEIGHT, .ndim = 2,
         .shape = {l->n_out, l->n_in}, .stride = {1, l->n_out}, .offset = 0,
         .count = (size_t)l->n_out * (size_t)l->n_in},
        {.name = "bias", .role = BP_ROLE_BIAS, .ndim = 1, .shape = {l->n_out}, .stride = {1},
         .offset = dense_bias_at(l), .count = (size_t)l->n_out},
    };
    int n = (int)(sizeof tensors / sizeof *tensors);
    for (int i = 0; i < n && i < max; i++)
        out[i] = tensors[i];
    return n;
}

/* W = the orthonormal factor of a Gaussian matrix: QR of the taller of G (rows x cols) and its
 * transpose, so W has orthonormal columns (rows >= cols) or rows (rows < cols). Multiplying
 * each column of Q by the sign of R's diagonal makes the result uniformly (Haar) distributed. */
bp_status bp_init_orthogonal(float *w, int rows, int cols, size_t row_stride,
                             size_t col_stride, bp_rng *rng)
{
    int tall = rows >= cols;
    int m = tall ? rows : cols; /* rows of the matrix factorised */
    int n = tall ? cols : rows;
    float *q = bp_alloc(sizeof(float) * (size_t)m * (size_t)n);
    float *tau = bp_alloc(sizeof(float) * (size_t)n);
    float *sign = bp_alloc(sizeof(float) * (size_t)n);
    bp_status st = BP_OK;
    if (!q || !tau || !sign) {
        st = bp_fail(BP_ENOMEM, "orthogonal init: no memory for a %d x %d matrix", m, n);
        goto out;
    }
    for (size_t i = 0; i < (size_t)m * (size_t)n; i++)
        q[i] = (float)bp_rng_gaussian(rng);
    lapack_int info = LAPACKE_sgeqrf(LAPACK_COL_MAJOR, m, n, q, m, tau);
    if (info == 0) {
        for (int j = 0; j < n; j++)
            sign[j] = q[j + (size_t)j * m] < 0.0f ? -1.0f : 1.0f;
        info = LAPACKE_sorgqr(LAPACK_COL_MAJOR, m, n, n, q, m, tau);
    }
    if (info != 0) {
        st = bp_fail(BP_EINVAL, "orthogonal init: LAPACK returned %d for a %d x %d matrix",
                     (int)info, m, n);
        goto out;
    }
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            float v = q[i + (size_t)j * m] * sign[j];
            if (tall)
                w[(size_t)i * row_stride + (size_t)j * col_stride] = v;
            else
                w[(size_t)j * row_stride + (size_t)i * col_stride] = v;
        }
out:
    bp_free(q);
    bp_free(tau);
    bp_free(sign);
    return st;
}

static bp_status dense_init(bp_layer *l, bp_init scheme, bp_rng *rng)
{
    double n_in = l->n_in, n_out = l->n_out;
    int gaussian_biases = scheme == BP_INIT_GAUSSIAN || scheme == BP_INIT_LARGE;
    if (scheme == BP_INIT_ORTHOGONAL) {
        bp_status st = bp_init_orthogonal(l->w, l->n_out, l->n_in, 1, (size_t)l->ldw, rng);
        if (st != BP_OK)
            return st;
    } else {
        double scale = 1.0, bound = sqrt(6.0 / (n_in + n_out));
        if (scheme == BP_INIT_GAUSSIAN)
            scale = 1.0 / sqrt(n_in);
        else if (scheme == BP_INIT_HE)
            scale = sqrt(2.0 / n_in);
        for (int j = 0; j < l->n_in; j++)
            for (int i = 0; i < l->n_out; i++) {
                double v = scheme == BP_INIT_XAVIER ? bound * (2.0 * bp_rng_uniform(rng) - 1.0)
                                                    : scale * bp_rng_gaussian(rng);
                l->w[i + (size_t)j * l->ldw] = (float)v;
            }
    }
    for (int i = 0; i < l->n_out; i++)
        l->b[i] = gaussian_biases ? (float)bp_rng_gaussian(rng) : 0.0f;
    return BP_OK;
}

static void dense_forward(const bp_layer *l, const bp_backend *be, const bp_pass *pass,
                          int batch, const float *in, int ldin, float *out, int ldout)
{
    (void)pass; /* the same in training and inference */
    /* Z = W A: (n_out x n_in)(n_in x B); then A' = act(Z + b 1^T) in the same pass. */
    be->sgemm(BP_NOTRANS, BP_NOTRANS, l->n_out, batch, l->n_in, 1.0f, l->w, l->ldw, in, ldin,
              0.0f, out, ldout);
    be->bias_act(l->act, l->n_out, batch, l->b, out, ldout);
}

/* dC/dZ = dC/dA (.) act'(Z), act' through A = out (sigmoid a(1-a), tanh 1-a^2, ...). Softmax
 * couples a column and is only allowed where BP1 takes its Jacobian: the output layer. */
static void dense_act_backward(const bp_layer *l, const bp_backend *be, int batch,
                               const float *out, int ldout, float *d, int ldd)
{
    be->act_bwd_hadamard(l->act, l->n_out, batch, out, ldout, d, ldd);
}

static void dense_backward_data(const bp_layer *l, const bp_backend *be, const bp_pass *pass,
                                int batch, const float *in, int ldin, const float *out,
                                int ldout, const float *d, int ldd, float *d_in, int ld_din)
{
    (void)pass, (void)in, (void)ldin, (void)out, (void)ldout; /* W^T D needs none of them */
    /* W^T D: dC/dA of the layer below, which turns it into its own dC/dZ (act_backward). */
    be->sgemm(BP_TRANS, BP_NOTRANS, l->n_in, batch, l->n_out, 1.0f, l->w, l->ldw, d, ldd, 0.0f,
              d_in, ld_din);
}

/* The gradient of the mean cost C = (1/B) sum_x C_x: G_b = D 1 / B (BP3), G_W = D A_in^T / B
 * (BP4), written as target says. */
static void dense_backward_params(const bp_layer *l, const bp_backend *be, int batch,
                                  const float *in, int ldin, const float *d, int ldd,
                                  const bp_grad_target *target, int part, int parts)
{
    float inv_batch = 1.0f / (float)batch;
    int into_params = target->into == BP_TARGET_PARAMS;
    /* BP3 for rows [r0, r1) of b. Into the parameters, the gradient arena is borrowed as
     * scratch and added to b at once (b = b + alpha G_b). */
    int r0, r1;
    bp_team_share(l->n_out, part, parts, 1, &r0, &r1);
    if (r1 > r0) {
        float *gb = l->gb + r0;
        size_t rows_b = (size_t)(r1 - r0);
        if (into_params) {
            be->rowsum(r1 - r0, batch, inv_batch, d + r0, ldd, gb);
            be->axpy(rows_b, target->alpha, gb, l->b + r0);
        } else {
            be->rowsum(r1 - r0, batch, target->alpha * inv_batch, d + r0, ldd, gb);
        }
    }
    /* BP4 for a block of W: D A_in^T / B is (n_out x B)(B x n_in), and each part's GEMM packs
     * the whole of one operand and its share of the other. Splitting the longer side of W
     * shares out the larger operand: for the first layer of [784,100,10] each part packs half
     * of the 784 x B inputs instead of all of them. A block of columns of W is also contiguous
     * in memory; a block of rows is not. */
    int by_columns = l->n_in >= l->n_out;
    int c0 = 0, c1 = l->n_in, w0 = 0, w1 = l->n_out;
    if (by_columns)
        bp_team_share(l->n_in, part, parts, 4, &c0, &c1);
    else /* 16 rows: whole vector registers and GEMM row blocks rather than a ragged edge */
        bp_team_share(l->n_out, part, parts, 16, &w0, &w1);
    int rows = w1 - w0, cols = c1 - c0;
    if (rows <= 0 || cols <= 0)
        return;
    size_t w_at = (size_t)w0 + (size_t)c0 * l->ldw;
    /* One GEMM either way: T = beta T + (alpha / B) D A_in^T. Into the parameters, the weight
     * gradient is never written to memory and read back. */
    float *t = (into_params ? l->w : l->gw) + w_at;
    be->sgemm(BP_NOTRANS, BP_TRANS, rows, cols, batch, target->alpha * inv_batch, d + w0, ldd,
              in + c0, ldin, target->beta, t, l->ldw);
}

static int dense_format(const bp_layer *l, char *buf, size_t size)
{
    return snprintf(buf, size, "dense:%d:%s", l->n_out, bp_activation_name(l->act));
}

const bp_layer_ops bp_dense_ops = {
    .name = "dense",
    .parse = dense_parse,
    .format = dense_format,
    .plan = dense_plan,
    .act_backward = dense_act_backward,
    .bind = dense_bind,
    .tensors = dense_tensors,
    .init = dense_init,
    .forward = dense_forward,
    .backward_data = dense_backward_data,
    .backward_params = dense_backward_params,
};
