/*
 * diagnostics.c - measurements of a net that are not training steps: the per-tensor norms of
 * the gradient of the mean cost over a sample of a data set (Nielsen ch. 5's learning speed of
 * each layer), and the singular values of a weight matrix through LAPACK's sgesdd.
 *
 * Neither is on the hot path, so both may allocate: the norms a double accumulator (only when
 * the sample does not fit one planned batch), the spectrum a copy of the tensor and LAPACK's
 * workspace. Both go through the library's allocator and the memory check.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <lapacke.h>

#include "io/io.h"
#include "net/net.h"

/* The samples one chunk gathers: the net's planned batch, so measuring never replans. */
static int chunk_columns(const bp_net *net, size_t left)
{
    return left < (size_t)net->max_batch ? (int)left : net->max_batch;
}

static bp_status check_norms_args(const bp_net *net, const bp_dataset *ds, size_t samples,
                                  const double *norms, int n_norms)
{
    if (!net || !ds || !norms)
        return bp_fail(BP_EINVAL, "bp_net_grad_norms: %s is NULL",
                       !net ? "net" : !ds ? "the data set" : "norms");
    if (n_norms < net->n_tensors)
        return bp_fail(BP_EINVAL, "bp_net_grad_norms: room for %d norm%s, but the net has %d "
                       "tensors", n_norms, bp_plural((unsigned)(n_norms > 0 ? n_norms : 0)),
                       net->n_tensors);
    if (samples == 0)
        return bp_fail(BP_EINVAL, "bp_net_grad_norms: a gradient over 0 samples (samples must "
                       "be at least 1)");
    if (bp_dataset_count(ds) == 0)
        return bp_fail(BP_EINVAL, "bp_net_grad_norms: the data set is empty");
    if (bp_dataset_dim(ds) != bp_net_inputs(net))
        return bp_fail(BP_EINVAL, "bp_net_grad_norms: the network has %d inputs but the samples "
                       "have %d values", bp_net_inputs(net), bp_dataset_dim(ds));
    if (bp_dataset_classes(ds) > bp_net_outputs(net))
        return bp_fail(BP_EINVAL, "bp_net_grad_norms: the network has %d outputs but the labels "
                       "go up to %d", bp_net_outputs(net), bp_dataset_classes(ds) - 1);
    return BP_OK;
}

/* Forward and backward over samples [first, first + cols) into the gradient arena, which then
 * holds that chunk's mean gradient. A probe pass: the training-mode net (batch statistics) with
 * no dropout mask drawn and no running average moved, so measuring changes nothing a later
 * step or evaluation sees. idx has room for the planned batch. */
static void chunk_gradient(bp_net *net, const bp_dataset *ds, size_t first, int cols,
                           size_t *idx)
{
    int n_in = bp_net_inputs(net), n_out = bp_net_outputs(net);
    for (int j = 0; j < cols; j++)
        idx[j] = first + (size_t)j;
    /* The arguments were checked once (indices below the count, labels below n_out). */
    bp_dataset_gather_unchecked(ds, idx, cols, net->x_batch, net->y_batch, n_out);
    bp_net_backprop_pass(net, BP_PASS_PROBE, net->x_batch, n_in, net->y_batch, n_out, cols,
                         NULL, NULL);
}

/* norms[k] = || g[tensor k] || with g = scale * src, squares summed in double. src is the
 * gradient arena (float) or the accumulator (double); exactly one of them is set. */
static void tensor_norms(const bp_net *net, const float *g32, const double *g64, double scale,
                         double *norms)
{
    for (int k = 0; k < net->n_tensors; k++) {
        const bp_tensor_info *info = &net->tensors[k];
        double squares = 0.0;
        for (size_t i = info->offset; i < info->offset + info->count; i++) {
            double v = scale * (g32 ? (double)g32[i] : g64[i]);
            squares += v * v;
        }
        norms[k] = sqrt(squares);
    }
}

bp_status bp_net_grad_norms(bp_net *net, const bp_dataset *ds, size_t samples, double *norms,
                            int n_norms)
{
    bp_status st = check_norms_args(net, ds, samples, norms, n_norms);
    if (st != BP_OK)
        return st;
    size_t total = samples < bp_dataset_count(ds) ? samples : bp_dataset_count(ds);
    int one_chunk = total <= (size_t)net->max_batch;
    /* The accumulator spans the arena, padding included, so a tensor's offset indexes it as it
     * indexes the arena; only the tensors' floats are ever added to it. */
    size_t idx_bytes = sizeof(size_t) * (size_t)net->max_batch;
    size_t acc_bytes = one_chunk ? 0 : sizeof(double) * net->n_params;
    uint64_t bytes = (uint64_t)idx_bytes + acc_bytes;
    char what[96];
    snprintf(what, sizeof what, "bp_net_grad_norms' accumulator for %zu parameters",
             net->n_params);
    if ((st = bp_memory_check(bytes, what)) != BP_OK)
        return st;
    size_t *idx = bp_alloc(idx_bytes);
    double *acc = acc_bytes ? bp_calloc(net->n_params, sizeof(double)) : NULL;
    if (!idx || (acc_bytes && !acc)) {
        bp_free(idx);
        bp_free(acc);
        return bp_fail(BP_ENOMEM, "no memory for %s (%llu bytes)", what,
                       (unsigned long long)bytes);
    }
    if (one_chunk) {
        /* The arena already holds the mean over all of them: nothing to weigh or add. */
        chunk_gradient(net, ds, 0, (int)total, idx);
        tensor_norms(net, net->grads, NULL, 1.0, norms);
    } else {
        /* Each chunk leaves its own mean; weighted by its size, the chunks add up to the sum of
         * the per-sample gradients, whatever the last chunk's size. */
        for (size_t first = 0; first < total;) {
            int cols = chunk_columns(net, total - first);
            chunk_gradient(net, ds, first, cols, idx);
            for (int k = 0; k < net->n_tensors; k++) {
                const bp_tensor_info *info = &net->tensors[k];
                const float *g = net->grads;
                for (size_t i = info->offset; i < info->offset + info->count; i++)
                    acc[i] += (double)cols * (double)g[i];
            }
            first += (size_t)cols;
        }
        tensor_norms(net, NULL, acc, 1.0 / (double)total, norms);
    }
    bp_free(idx);
    bp_free(acc);
    return BP_OK;
}

/* ---- singular values ------------------------------------------------------------------ */

static bp_status check_spectrum_args(const bp_net *net, int tensor, const bp_spectrum *out,
                                     const bp_tensor_info **info)
{
    if (!net || !out)
        return bp_fail(BP_EINVAL, "bp_net_weight_spectrum: %s is NULL", net ? "out" : "net");
    if (tensor < 0 || tensor >= net->n_tensors)
        return bp_fail(BP_EINVAL, "bp_net_weight_spectrum: tensor %d does not exist (the net "
                       "has %d)", tensor, net->n_tensors);
    *info = &net->tensors[tensor];
    if ((*info)->ndim != 2)
        return bp_fail(BP_EINVAL, "bp_net_weight_spectrum: tensor %d ('%s') has %d "
                       "dimension%s; singular values need a matrix", tensor, (*info)->name,
                       (*info)->ndim, bp_plural((unsigned)(*info)->ndim));
    return BP_OK;
}

bp_status bp_net_weight_spectrum(const bp_net *net, int tensor, bp_spectrum *out, float *values,
                                 int n_values)
{
    if (out)
        memset(out, 0, sizeof *out);
    const bp_tensor_info *info = NULL;
    bp_status st = check_spectrum_args(net, tensor, out, &info);
    if (st != BP_OK)
        return st;
    /* Shapes are capped at BP_MAX_WIDTH by the plan, so they and LAPACK's int sizes agree. */
    int m = (int)info->shape[0], n = (int)info->shape[1], k = m < n ? m : n;
    if (values && n_values < k)
        return bp_fail(BP_EINVAL, "bp_net_weight_spectrum: room for %d value%s, but '%s' (%d x "
                       "%d) has %d singular values", n_values,
                       bp_plural((unsigned)(n_values > 0 ? n_values : 0)), info->name, m, n, k);

    /* Column-major and compact for LAPACK, read through the table's strides so the copy does
     * not assume the layer's layout. A NaN would make sgesdd loop or return noise. */
    const float *w = net->params + info->offset;
    size_t nonfinite = 0;
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++)
            nonfinite += !isfinite(w[(size_t)i * info->stride[0] + (size_t)j * info->stride[1]]);
    if (nonfinite)
        return bp_fail(BP_EDIVERGED, "bp_net_weight_spectrum: '%s' holds %zu NaN or infinite "
                       "value%s, which have no singular values", info->name, nonfinite,
                       bp_plural(nonfinite));

    /* sgesdd with jobz 'N' needs lwork >= 3k + max(max(m, n), 7k) and 8k ints; the query may
     * ask for more (blocked bidiagonalisation), and gets the larger of the two. */
    lapack_int lm = m, ln = n;
    float query = 0.0f;
    lapack_int info_q = LAPACKE_sgesdd_work(LAPACK_COL_MAJOR, 'N', lm, ln, NULL, lm, NULL, NULL,
                                            1, NULL, 1, &query, -1, NULL);
    size_t big = (size_t)(m > n ? m : n);
    size_t min_work = 3 * (size_t)k + (big > 7 * (size_t)k ? big : 7 * (size_t)k);
    /* The query's float can round the size down past 2^24; a little slack covers that. */
    size_t lwork = info_q == 0 && (double)query * 1.0001 + 1.0 > (double)min_work
                       ? (size_t)((double)query * 1.0001 + 1.0)
                       : min_work;
    size_t a_floats = (size_t)m * (size_t)n;
    if (lwork > (size_t)INT32_MAX)
        return bp_fail(BP_ENOMEM, "bp_net_weight_spectrum: '%s' (%d x %d) needs %zu floats of "
                       "LAPACK workspace, more than its int sizes can say", info->name, m, n,
                       lwork);
    uint64_t bytes = sizeof(float) * ((uint64_t)a_floats + (uint64_t)k + lwork) +
                     sizeof(lapack_int) * 8 * (uint64_t)k;
    char what[160];
    snprintf(what, sizeof what, "the singular values of '%s' (%d x %d)", info->name, m, n);
    if ((st = bp_memory_check(bytes, what)) != BP_OK)
        return st;
    float *a = bp_alloc(sizeof(float) * a_floats);
    float *s = bp_alloc(sizeof(float) * (size_t)k);
    float *work = bp_alloc(sizeof(float) * lwork);
    lapack_int *iwork = bp_alloc(sizeof(lapack_int) * 8 * (size_t)k);
    if (!a || !s || !work || !iwork) {
        st = bp_fail(BP_ENOMEM, "no memory for %s (%llu bytes)", what, (unsigned long long)bytes);
        goto out;
    }
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++)
            a[i + (size_t)j * m] = w[(size_t)i * info->stride[0] + (size_t)j * info->stride[1]];
    lapack_int result = LAPACKE_sgesdd_work(LAPACK_COL_MAJOR, 'N', lm, ln, a, lm, s, NULL, 1,
                                            NULL, 1, work, (lapack_int)lwork, iwork);
    if (result != 0) {
        st = bp_fail(BP_EINVAL, "%s: LAPACK's sgesdd %s (info %d)", what,
                     result > 0 ? "did not converge" : "refused an argument", (int)result);
        goto out;
    }
    out->count = k;
    out->largest = s[0];
    out->smallest = s[k - 1];
    out->condition = s[k - 1] == 0.0f ? INFINITY : (double)s[0] / (double)s[k - 1];
    if (values)
        memcpy(values, s, sizeof(float) * (size_t)k);
out:
    bp_free(a);
    bp_free(s);
    bp_free(work);
    bp_free(iwork);
    return st;
}
