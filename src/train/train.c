/*
 * train.c - epochs of mini-batch SGD: the seeded shuffle, the gather of each mini-batch into the
 * net's planned buffers, the optimiser step (net and optimiser meet here, and only here),
 * validation after each epoch, and evaluation.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "io/io.h"
#include "loss/loss.h"
#include "net/net.h"
#include "optim/optim.h"

enum { EVAL_BATCH = 256 };

/* One optimiser step on one mini-batch: folded into BP4 when the optimiser allows it, else
 * backpropagation into the gradient arena and then the optimiser's update over the arena and
 * its state (optim.h: state_per_param blocks, each with the parameters' layout).
 * Returns the summed cost before the update. Not inlined: the perf suite counts its
 * instructions as the whole training step. */
__attribute__((noinline)) static double bp_train_step(bp_net *net, const bp_optimizer *opt,
                                                      float *state, const float *x, int ldx,
                                                      const float *y, int ldy, int batch,
                                                      const bp_batch_fill *fill)
{
    bp_grad_target target;
    if (opt->ops->fuse(opt, &target))
        return bp_net_backprop_unchecked(net, x, ldx, y, ldy, batch, &target, fill);
    double cost = bp_net_backprop_unchecked(net, x, ldx, y, ldy, batch, NULL, fill);
    /* Tensor by tensor, so that regularisation reaches the weights only (the table's roles). */
    int n_tensors = bp_net_tensor_count(net);
    for (int k = 0; k < n_tensors; k++) {
        const bp_tensor_info *info = &net->tensors[k];
        bp_optimizer o = *opt;
        if (info->role != BP_ROLE_WEIGHT)
            o.decay = o.l1 = 0.0f;
        o.ops->step(&o, net->params, net->grads, state, net->n_params, info->offset,
                    info->offset + info->count);
    }
    return cost;
}

bp_status bp_net_sgd_step(bp_net *net, const float *x, int ldx, const float *y, int ldy,
                          int batch, float eta, double *cost)
{
    bp_status st = bp_net_check_step(net, x, ldx, y, ldy, batch);
    if (st != BP_OK)
        return st;
    if (!(eta > 0.0f) || !isfinite(eta))
        return bp_fail(BP_EINVAL, "learning rate must be positive and finite, got %g", eta);
    const bp_optimizer sgd = {&bp_sgd_ops, eta, 0.0f, 0.0f};
    double c = bp_train_step(net, &sgd, NULL, x, ldx, y, ldy, batch, NULL) / batch;
    if (cost)
        *cost = c;
    return isfinite(c) ? BP_OK : bp_net_diverged(net, "bp_net_sgd_step", c, eta);
}

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

/* ---- the trainer ---------------------------------------------------------------------- */

struct bp_trainer {
    bp_net *net;
    const bp_dataset *train;
    bp_optimizer opt;
    int batch;
    uint64_t seed;
    size_t n;
    /* The resumable state (bp_trainer_state): */
    int epoch;            /* epochs completed */
    size_t position;      /* samples of the current epoch trained; 0 before it is shuffled */
    double epoch_cost;    /* summed cost of the current epoch so far */
    double epoch_seconds; /* wall time of the current epoch so far (not part of the state) */
    bp_rng rng;           /* the shuffle's generator */
    size_t *order;        /* the current epoch's sample order */
    float *state;         /* the optimiser's state arena, parallel to the parameters (NULL
                             for a rule without state, such as plain SGD) */
    size_t state_count;
    float lambda, l1;     /* the regularisation, as configured; n divides them */
};

/* Nielsen's regularisation term of the cost, from the weights as they are now:
 * (lambda / 2n) sum w^2 + (l1 / n) sum |w|. */
static double regularisation_cost(const bp_trainer *t)
{
    if (t->lambda == 0.0f && t->l1 == 0.0f)
        return 0.0;
    double squares = 0.0, absolutes = 0.0;
    int n_tensors = bp_net_tensor_count(t->net);
    for (int k = 0; k < n_tensors; k++) {
        bp_tensor_info info;
        bp_net_tensor(t->net, k, &info);
        if (info.role != BP_ROLE_WEIGHT)
            continue;
        const float *w = t->net->params + info.offset;
        for (size_t i = 0; i < info.count; i++) {
            squares += (double)w[i] * w[i];
            absolutes += fabs((double)w[i]);
        }
    }
    return (double)t->lambda / (2.0 * (double)t->n) * squares +
           (double)t->l1 / (double)t->n * absolutes;
}

bp_status bp_trainer_create(bp_trainer **out, bp_net *net, const bp_dataset *train,
                            const bp_train_config *cfg)
{
    if (!out)
        return bp_fail(BP_EINVAL, "bp_trainer_create: out is NULL");
    *out = NULL;
    if (!net || !train || !cfg)
        return bp_fail(BP_EINVAL, "bp_trainer_create: network, training set or configuration "
                       "is NULL");
    if (cfg->batch < 1)
        return bp_fail(BP_EINVAL, "batch size must be at least 1 (got %d)", cfg->batch);
    if (!(cfg->eta > 0.0f) || !isfinite(cfg->eta))
        return bp_fail(BP_EINVAL, "learning rate must be positive and finite, got %g", cfg->eta);
    if (!(cfg->lambda >= 0.0f) || !isfinite(cfg->lambda) || !(cfg->l1 >= 0.0f) ||
        !isfinite(cfg->l1))
        return bp_fail(BP_EINVAL, "regularisation must be finite and >= 0, got lambda %g and "
                       "l1 %g", cfg->lambda, cfg->l1);
    bp_status st = check_data(net, train, "training");
    size_t n = bp_dataset_count(train);
    /* A batch larger than the set trains as one batch of the whole set: plan no more. */
    int planned = (size_t)cfg->batch < n ? cfg->batch : (int)n;
    if (st == BP_OK)
        st = bp_net_reserve(net, planned);
    if (st != BP_OK)
        return st;
    const bp_optimizer opt = {&bp_sgd_ops, cfg->eta, cfg->lambda / (float)n, cfg->l1 / (float)n};
    size_t state_count = (size_t)opt.ops->state_per_param * net->n_params;
    bp_trainer *t = bp_calloc(1, sizeof *t);
    size_t *order = bp_alloc(sizeof(size_t) * n);
    float *state = state_count ? bp_calloc(state_count, sizeof(float)) : NULL;
    if (!t || !order || (state_count && !state)) {
        bp_free(t);
        bp_free(order);
        bp_free(state);
        return bp_fail(BP_ENOMEM, "no memory for a trainer over %zu samples", n);
    }
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    *t = (bp_trainer){.net = net, .train = train, .opt = opt, .batch = cfg->batch,
                      .seed = cfg->seed, .n = n, .order = order, .state = state,
                      .state_count = state_count, .lambda = cfg->lambda, .l1 = cfg->l1};
    bp_rng_seed(&t->rng, cfg->seed);
    *out = t;
    return BP_OK;
}

void bp_trainer_free(bp_trainer *t)
{
    if (!t)
        return;
    bp_free(t->order);
    bp_free(t->state);
    bp_free(t);
}

int bp_trainer_epochs_done(const bp_trainer *t) { return t ? t->epoch : 0; }

/* Mini-batches of the current epoch, up to max_batches of them (or all that are left when
 * max_batches <= 0), shuffling first when the epoch has not begun. *finished says whether the
 * epoch is complete; the epoch-end parameter check runs then. */
static bp_status run_batches(bp_trainer *t, long max_batches, int *finished)
{
    bp_net *net = t->net;
    int n_in = bp_net_inputs(net), n_out = bp_net_outputs(net);
    if (t->position == 0) {
        shuffle(t->order, t->n, &t->rng);
        t->epoch_cost = 0.0;
        t->epoch_seconds = 0.0;
    }
    double t0 = bp_now();
    bp_status st = BP_OK;
    for (long done = 0; t->position < t->n && (max_batches <= 0 || done < max_batches); done++) {
        size_t start = t->position;
        /* Nielsen keeps the last, shorter mini-batch; so do we. */
        int batch = t->n - start < (size_t)t->batch ? (int)(t->n - start) : t->batch;
        gather_job gather = {t->train, t->order + start, net->x_batch, net->y_batch, n_in, n_out};
        const bp_batch_fill fill = {gather_columns, &gather};
        double c = bp_train_step(net, &t->opt, t->state, net->x_batch, n_in, net->y_batch,
                                 n_out, batch, &fill);
        if (!isfinite(c)) {
            char where[96];
            snprintf(where, sizeof where, "epoch %d, mini-batch at sample %zu", t->epoch + 1,
                     start);
            st = bp_net_diverged(net, where, c, t->opt.eta);
            break;
        }
        t->epoch_cost += c;
        t->position += (size_t)batch;
    }
    t->epoch_seconds += bp_now() - t0;
    *finished = st == BP_OK && t->position == t->n;
    /* A finite cost does not prove finite parameters: a ReLU maps NaN to 0 and a saturated
     * sigmoid maps +-inf to 1 or 0, so a parameter can be lost while the cost still looks
     * well. One pass over the arena per epoch (microseconds against the epoch) settles it. */
    if (*finished && bp_net_nonfinite_layer(net, NULL)) {
        char where[32];
        snprintf(where, sizeof where, "epoch %d", t->epoch + 1);
        st = bp_net_diverged(net, where, t->epoch_cost / (double)t->n, t->opt.eta);
        *finished = 0;
    }
    return st;
}

static void finish_epoch(bp_trainer *t, bp_epoch_report *report)
{
    t->epoch++;
    t->position = 0;
    if (report)
        *report = (bp_epoch_report){
            .epoch = t->epoch,
            .train_cost = t->epoch_cost / (double)t->n + regularisation_cost(t),
            .validation_accuracy = -1.0,
            .validation_cost = -1.0,
            .seconds = t->epoch_seconds,
            .samples_per_second = (double)t->n / t->epoch_seconds,
        };
}

bp_status bp_trainer_epoch(bp_trainer *t, bp_epoch_report *report)
{
    if (!t)
        return bp_fail(BP_EINVAL, "bp_trainer_epoch: trainer is NULL");
    int finished;
    bp_status st = run_batches(t, 0, &finished);
    if (st == BP_OK)
        finish_epoch(t, report);
    return st;
}

bp_status bp_trainer_batches(bp_trainer *t, long max_batches, int *epoch_finished,
                             bp_epoch_report *report)
{
    if (epoch_finished)
        *epoch_finished = 0;
    if (!t || max_batches < 1)
        return bp_fail(BP_EINVAL, "bp_trainer_batches: %s", t ? "max_batches must be at least 1"
                                                              : "trainer is NULL");
    int finished;
    bp_status st = run_batches(t, max_batches, &finished);
    if (st == BP_OK && finished) {
        finish_epoch(t, report);
        if (epoch_finished)
            *epoch_finished = 1;
    }
    return st;
}

bp_status bp_trainer_get_state(const bp_trainer *t, bp_trainer_state *out)
{
    if (!t || !out)
        return bp_fail(BP_EINVAL, "bp_trainer_get_state: %s is NULL", t ? "out" : "trainer");
    *out = (bp_trainer_state){
        .epoch = t->epoch,
        .position = t->position,
        .epoch_cost = t->epoch_cost,
        .n = t->n,
        .order = t->order,
        .optimizer_state = t->state,
        .optimizer_state_count = t->state_count,
    };
    memcpy(out->rng, t->rng.s, sizeof out->rng);
    return BP_OK;
}

bp_status bp_trainer_set_state(bp_trainer *t, const bp_trainer_state *in)
{
    if (!t || !in)
        return bp_fail(BP_EINVAL, "bp_trainer_set_state: %s is NULL", t ? "state" : "trainer");
    if (in->n != t->n || !in->order)
        return bp_fail(BP_EINVAL, "bp_trainer_set_state: the state is of %zu samples, this "
                       "trainer's set has %zu", in->n, t->n);
    if (in->epoch < 0 || in->position > t->n || (in->position > 0 && in->position == t->n))
        return bp_fail(BP_EINVAL, "bp_trainer_set_state: epoch %d, position %zu of %zu is not "
                       "a state a trainer can be in", in->epoch, in->position, t->n);
    if (in->optimizer_state_count != t->state_count || (t->state_count && !in->optimizer_state))
        return bp_fail(BP_EINVAL, "bp_trainer_set_state: %zu floats of optimiser state, but "
                       "%s over this net keeps %zu", in->optimizer_state_count,
                       t->opt.ops->name, t->state_count);
    if (!(in->rng[0] | in->rng[1] | in->rng[2] | in->rng[3]))
        return bp_fail(BP_EINVAL, "bp_trainer_set_state: an all-zero generator state "
                       "(xoshiro256** never reaches it)");
    /* The order must be a permutation, or the unchecked gather could read past the set. */
    size_t *copy = bp_alloc(sizeof(size_t) * t->n);
    unsigned char *seen = bp_calloc(t->n, 1);
    bp_status st = BP_OK;
    if (!copy || !seen) {
        st = bp_fail(BP_ENOMEM, "no memory to check a sample order of %zu", t->n);
    } else {
        for (size_t i = 0; i < t->n && st == BP_OK; i++) {
            size_t s = in->order[i];
            if (s >= t->n || seen[s])
                st = bp_fail(BP_EINVAL, "bp_trainer_set_state: order[%zu] = %zu is %s", i, s,
                             s >= t->n ? "out of range" : "repeated (not a permutation)");
            else
                seen[s] = 1, copy[i] = s;
        }
    }
    bp_free(seen);
    if (st != BP_OK) {
        bp_free(copy);
        return st;
    }
    bp_free(t->order);
    t->order = copy;
    t->epoch = in->epoch;
    t->position = in->position;
    t->epoch_cost = in->epoch_cost;
    t->epoch_seconds = 0.0;
    if (t->state_count)
        memcpy(t->state, in->optimizer_state, sizeof(float) * t->state_count);
    memcpy(t->rng.s, in->rng, sizeof in->rng);
    return BP_OK;
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
    bp_status st = validation ? check_data(net, validation, "validation") : BP_OK;
    bp_trainer *t = NULL;
    if (st == BP_OK)
        st = bp_trainer_create(&t, net, train, cfg);
    if (st != BP_OK)
        return st;
    double seconds_total = 0.0;
    float accuracy = -1.0f;
    for (int epoch = 1; epoch <= cfg->epochs; epoch++) {
        bp_epoch_report report;
        if ((st = bp_trainer_epoch(t, &report)) != BP_OK)
            break;
        seconds_total += report.seconds;
        double validation_cost = -1.0;
        if (validation &&
            (st = bp_evaluate(net, validation, &accuracy, &validation_cost)) != BP_OK)
            break;
        report.validation_accuracy = validation ? accuracy : -1.0;
        report.validation_cost = validation_cost;
        if (result) {
            result->epochs = epoch;
            result->train_seconds = seconds_total;
            result->samples_per_second = (double)t->n * epoch / seconds_total;
            result->validation_accuracy = report.validation_accuracy;
        }
        if (cfg->on_epoch && cfg->on_epoch(&report, cfg->user))
            break;
    }
    bp_trainer_free(t);
    return st;
}
