/*
 * train.c - epochs of mini-batch SGD: the seeded shuffle, the gather of each mini-batch into the
 * net's planned buffers, validation after each epoch, and evaluation.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "io/io.h"
#include "loss/loss.h"
#include "net/net.h"
#include "optim/optim.h"

enum { EVAL_BATCH = 256 };

void bp_train_config_init(bp_train_config *cfg)
{
    if (!cfg)
        return;
    memset(cfg, 0, sizeof *cfg);
    cfg->epochs = 30;
    cfg->batch = 10;
    cfg->eta = 3.0f;
    cfg->seed = 1;
}

static bp_status check_data(const bp_net *net, const bp_dataset *ds, const char *what)
{
    if (bp_dataset_count(ds) == 0)
        return bp_fail(BP_EINVAL, "the %s set is empty", what);
    if (bp_dataset_dim(ds) != bp_net_inputs(net))
        return bp_fail(BP_EINVAL, "the network has %d inputs but the %s samples have %d values",
                       bp_net_inputs(net), what, bp_dataset_dim(ds));
    if (bp_dataset_classes(ds) > bp_net_outputs(net))
        return bp_fail(BP_EINVAL, "the network has %d outputs but the %s labels go up to %d",
                       bp_net_outputs(net), what, bp_dataset_classes(ds) - 1);
    return BP_OK;
}

static int argmax_column(const float *a, int rows)
{
    int best = 0;
    for (int i = 1; i < rows; i++)
        if (a[i] > a[best])
            best = i;
    return best;
}

bp_status bp_evaluate(bp_net *net, const bp_dataset *ds, float *accuracy, double *cost)
{
    if (!net || !ds)
        return bp_fail(BP_EINVAL, "bp_evaluate: network or data set is NULL");
    bp_status st = check_data(net, ds, "evaluation");
    if (st != BP_OK || (st = bp_net_reserve(net, EVAL_BATCH)) != BP_OK)
        return st;
    size_t n = bp_dataset_count(ds), correct = 0;
    int n_out = bp_net_outputs(net);
    double total = 0.0;
    size_t idx[EVAL_BATCH];
    for (size_t start = 0; start < n; start += EVAL_BATCH) {
        int batch = n - start < EVAL_BATCH ? (int)(n - start) : EVAL_BATCH;
        for (int j = 0; j < batch; j++)
            idx[j] = start + (size_t)j;
        st = bp_dataset_gather(ds, idx, batch, net->x_batch, net->y_batch, n_out);
        if (st != BP_OK)
            return st;
        bp_net_forward_unchecked(net, net->x_batch, bp_net_inputs(net), batch);
        const float *out = bp_net_output(net);
        for (int j = 0; j < batch; j++)
            correct += argmax_column(out + (size_t)j * n_out, n_out) ==
                       bp_dataset_label(ds, start + (size_t)j);
        if (cost)
            total += bp_loss_value(net->cost, n_out, batch, out, net->y_batch, n_out);
    }
    if (accuracy)
        *accuracy = (float)((double)correct / (double)n);
    if (cost)
        *cost = total / (double)n;
    return BP_OK;
}

/* Fisher-Yates with the library's RNG: the same seed gives the same epoch order everywhere. */
static void shuffle(size_t *order, size_t n, bp_rng *rng)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)bp_rng_below(rng, i);
        size_t t = order[i - 1];
        order[i - 1] = order[j];
        order[j] = t;
    }
}

/* The gather of one mini-batch, done column range by column range by the threads of the step
 * (the order is a permutation of the set and check_data has matched labels to outputs, so the
 * unchecked gather is safe). */
typedef struct gather_job {
    const bp_dataset *set;
    const size_t *idx;
    float *x, *y;
    int n_in, n_out;
} gather_job;

static void gather_columns(void *ctx, int c0, int c1)
{
    const gather_job *g = ctx;
    bp_dataset_gather_unchecked(g->set, g->idx + c0, c1 - c0, g->x + (size_t)c0 * g->n_in,
                                g->y + (size_t)c0 * g->n_out, g->n_out);
}

bp_status bp_train(bp_net *net, const bp_dataset *train, const bp_dataset *validation,
                   const bp_train_config *cfg, bp_train_result *result)
{
    if (result) {
        memset(result, 0, sizeof *result);
        result->validation_accuracy = -1.0;
    }
    if (!net || !train || !cfg)
        return bp_fail(BP_EINVAL, "bp_train: network, training set or configuration is NULL");
    if (cfg->epochs < 1 || cfg->batch < 1)
        return bp_fail(BP_EINVAL, "epochs and batch size must be at least 1 (got %d and %d)",
                       cfg->epochs, cfg->batch);
    if (!(cfg->eta > 0.0f) || !isfinite(cfg->eta))
        return bp_fail(BP_EINVAL, "learning rate must be positive and finite, got %g", cfg->eta);
    bp_status st = check_data(net, train, "training");
    if (st == BP_OK && validation)
        st = check_data(net, validation, "validation");
    size_t n = bp_dataset_count(train);
    /* A batch larger than the set trains as one batch of the whole set: plan no more. */
    int planned = (size_t)cfg->batch < n ? cfg->batch : (int)n;
    if (st == BP_OK)
        st = bp_net_reserve(net, planned);
    if (st != BP_OK)
        return st;

    size_t *order = bp_alloc(sizeof(size_t) * n);
    if (!order)
        return bp_fail(BP_ENOMEM, "no memory for the order of %zu samples", n);
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    bp_rng rng;
    bp_rng_seed(&rng, cfg->seed);
    int n_in = bp_net_inputs(net), n_out = bp_net_outputs(net);
    double seconds_total = 0.0;
    float accuracy = -1.0f;

    for (int epoch = 1; epoch <= cfg->epochs && st == BP_OK; epoch++) {
        shuffle(order, n, &rng);
        double cost = 0.0, t0 = bp_now();
        for (size_t start = 0; start < n; start += (size_t)cfg->batch) {
            /* Nielsen keeps the last, shorter mini-batch; so do we. */
            int batch = n - start < (size_t)cfg->batch ? (int)(n - start) : cfg->batch;
            gather_job gather = {train, order + start, net->x_batch, net->y_batch, n_in, n_out};
            const bp_batch_fill fill = {gather_columns, &gather};
            double c = bp_sgd_step_unchecked(net, net->x_batch, n_in, net->y_batch, n_out,
                                             batch, cfg->eta, &fill);
            if (!isfinite(c)) {
                char where[96];
                snprintf(where, sizeof where, "epoch %d, mini-batch at sample %zu", epoch, start);
                st = bp_net_diverged(net, where, c, cfg->eta);
                break;
            }
            cost += c;
        }
        double seconds = bp_now() - t0;
        /* A finite cost does not prove finite parameters: a ReLU maps NaN to 0 and a saturated
         * sigmoid maps +-inf to 1 or 0, so a parameter can be lost while the cost still looks
         * well. One pass over the arena per epoch (microseconds against the epoch) settles it. */
        if (st == BP_OK && bp_net_nonfinite_layer(net, NULL)) {
            char where[32];
            snprintf(where, sizeof where, "epoch %d", epoch);
            st = bp_net_diverged(net, where, cost / (double)n, cfg->eta);
        }
        if (st != BP_OK)
            break;
        seconds_total += seconds;
        if (validation && (st = bp_evaluate(net, validation, &accuracy, NULL)) != BP_OK)
            break;
        if (result) {
            result->epochs = epoch;
            result->train_seconds = seconds_total;
            result->samples_per_second = (double)n * epoch / seconds_total;
            result->validation_accuracy = validation ? accuracy : -1.0;
        }
        bp_epoch_report report = {
            .epoch = epoch,
            .train_cost = cost / (double)n,
            .validation_accuracy = validation ? accuracy : -1.0,
            .seconds = seconds,
            .samples_per_second = (double)n / seconds,
        };
        if (cfg->on_epoch && cfg->on_epoch(&report, cfg->user))
            break;
    }
    bp_free(order);
    return st;
}
