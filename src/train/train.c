/*
 * train.c - epochs of mini-batch training: the seeded shuffle, the gather of each mini-batch
 * into the net's planned buffers, the optimiser step (net and optimiser meet here, and only
 * here), the schedule and early stopping between epochs, validation after each epoch, and
 * evaluation.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/fpenv.h"
#include "io/io.h"
#include "loss/loss.h"
#include "net/net.h"
#include "optim/optim.h"

enum {
    /* Evaluation goes in chunks of up to EVAL_BATCH columns, fewer when the net's buffers
     * would take more than EVAL_BUDGET bytes: a dense net's columns are a few KB, so its
     * chunks are 256, while a conv net keeps its im2col windows per column (network3: 520 KB,
     * so 256 columns would be 133 MB for a pass that gains nothing from the width; its
     * layers go column by column anyway). The chunk depends on the net alone, not on the
     * batch it happens to have reserved, so a model evaluates to the same bits in train and
     * in eval. */
    EVAL_BATCH = 256,
    EVAL_MIN_BATCH = 16,
    EVAL_BUDGET = 32 << 20,
    /* The unfused update is split across the net's team only when every member gets this many
     * floats: below it, waking the members costs more than the loop. */
    UPDATE_MIN_PER_MEMBER = 1 << 14,
    /* Members' ranges start on cache lines (the arena is 64-byte aligned), so no two members
     * write the same line. */
    UPDATE_ALIGN = 16,
};

/* ---- the unfused update ---------------------------------------------------------------- */

/* One update over the arenas, per role: `weights` carries the regularisation (L2, L1, AdamW's
 * decay), `others` (biases, scales, shifts) the same rule with all of it zeroed. */
typedef struct update_job {
    bp_net *net;
    const bp_optimizer *weights, *others;
    float *state;
} update_job;

/* Elements [r0, r1) of the arena, tensor by tensor: the table is sorted by offset and its
 * tensors do not overlap, so every float is read and written once; the padding between
 * tensors, zero in both arenas, is left alone. */
static void update_range(const update_job *u, size_t r0, size_t r1)
{
    bp_net *net = u->net;
    for (int k = 0; k < net->n_tensors; k++) {
        const bp_tensor_info *info = &net->tensors[k];
        size_t lo = info->offset, hi = info->offset + info->count;
        if (lo >= r1)
            break;
        if (hi <= r0)
            continue;
        lo = lo > r0 ? lo : r0;
        hi = hi < r1 ? hi : r1;
        const bp_optimizer *o = info->role == BP_ROLE_WEIGHT ? u->weights : u->others;
        o->ops->step(o, net->params, net->grads, u->state, net->n_params, lo, hi);
    }
}

static void update_member(void *arg, int member, int size)
{
    const update_job *u = arg;
    size_t n = u->net->n_params;
    size_t r0 = n / (size_t)size * (size_t)member, r1 = n / (size_t)size * (size_t)(member + 1);
    r0 -= r0 % UPDATE_ALIGN;
    r1 = member == size - 1 ? n : r1 - r1 % UPDATE_ALIGN;
    update_range(u, r0, r1);
}

/* ||g|| over the table's tensors, in double. Eight independent partial sums per tensor, added
 * in a fixed order: the compiler can keep them in vector lanes, and the result does not
 * depend on the thread count (this runs on the calling thread only). */
static double gradient_norm(const bp_net *net)
{
    double total = 0.0;
    for (int k = 0; k < net->n_tensors; k++) {
        const float *g = net->grads + net->tensors[k].offset;
        size_t count = net->tensors[k].count, i = 0;
        double part[8] = {0};
        for (; i + 8 <= count; i += 8)
            for (int j = 0; j < 8; j++)
                part[j] += (double)g[i + j] * (double)g[i + j];
        for (; i < count; i++)
            part[0] += (double)g[i] * (double)g[i];
        for (int j = 0; j < 8; j++)
            total += part[j];
    }
    return sqrt(total);
}

/* The optimiser's step number `step` over the gradient arena: clipping, then one pass of the
 * rule over the arena and its state, split across the net's team when the arena is large
 * enough. Runs with subnormals flushed, like the rest of the step (a second moment of tiny
 * gradients is where they would appear). */
static void unfused_update(bp_net *net, const bp_optimizer *opt, float *state, uint64_t step)
{
    bp_optimizer weights = *opt;
    bp_optimizer_begin_step(&weights, step);
    if (weights.clip_norm > 0.0f) {
        double norm = gradient_norm(net);
        if (norm > (double)weights.clip_norm)
            weights.grad_scale = (float)((double)weights.clip_norm / norm);
    }
    bp_optimizer others = weights;
    others.decay = others.l1 = others.weight_decay = 0.0f;
    update_job job = {net, &weights, &others, state};
    bp_fpenv fpenv = bp_fpenv_flush();
    if (net->team && net->n_params >= (size_t)bp_team_size(net->team) * UPDATE_MIN_PER_MEMBER)
        bp_team_run(net->team, update_member, &job);
    else
        update_range(&job, 0, net->n_params);
    bp_fpenv_restore(fpenv);
}

/* One optimiser step on one mini-batch: folded into BP4 when the optimiser allows it, else
 * backpropagation into the gradient arena and then the optimiser's update over the arena and
 * its state (optim.h: state_per_param blocks, each with the parameters' layout). `step` is
 * the step's number from 1 (Adam's t). Returns the summed cost before the update. Not
 * inlined: the perf suite counts its instructions as the whole training step. */
__attribute__((noinline)) static double bp_train_step(bp_net *net, const bp_optimizer *opt,
                                                      float *state, uint64_t step,
                                                      const float *x, int ldx, const float *y,
                                                      int ldy, int batch,
                                                      const bp_batch_fill *fill)
{
    bp_grad_target target;
    if (opt->ops->fuse(opt, &target))
        return bp_net_backprop_unchecked(net, x, ldx, y, ldy, batch, &target, fill);
    double cost = bp_net_backprop_unchecked(net, x, ldx, y, ldy, batch, NULL, fill);
    unfused_update(net, opt, state, step);
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
    bp_optimizer sgd;
    bp_optimizer_init(&sgd, &bp_sgd_ops, eta);
    /* Each call is a new step for the randomness drawn inside it (net.h). */
    net->step++;
    double c = bp_train_step(net, &sgd, NULL, net->step, x, ldx, y, ldy, batch, NULL) / batch;
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
    cfg->optimizer = BP_OPT_SGD;
    cfg->momentum = 0.9f;
    cfg->beta1 = 0.9f;
    cfg->beta2 = 0.999f;
    cfg->eps = 1e-8f;
    cfg->schedule = (bp_schedule){BP_SCHEDULE_CONST, 0, 0.0f};
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

/* Samples [lo, hi) of ds: how many the net labels right and their summed cost. */
static bp_status evaluate_range(bp_net *net, const bp_dataset *ds, size_t lo, size_t hi,
                                size_t *correct_out, double *cost_out)
{
    size_t fit = EVAL_BUDGET / bp_net_column_bytes(net);
    int chunk = fit >= EVAL_BATCH ? EVAL_BATCH : fit <= EVAL_MIN_BATCH ? EVAL_MIN_BATCH : (int)fit;
    bp_status st = bp_net_reserve(net, chunk);
    if (st != BP_OK)
        return st;
    size_t correct = 0;
    int n_out = bp_net_outputs(net);
    double total = 0.0;
    size_t idx[EVAL_BATCH];
    for (size_t start = lo; start < hi; start += (size_t)chunk) {
        int batch = hi - start < (size_t)chunk ? (int)(hi - start) : chunk;
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
        if (cost_out)
            total += bp_loss_value(net->cost, n_out, batch, out, net->y_batch, n_out);
    }
    *correct_out = correct;
    if (cost_out)
        *cost_out = total;
    return BP_OK;
}

bp_status bp_evaluate(bp_net *net, const bp_dataset *ds, float *accuracy, double *cost)
{
    if (!net || !ds)
        return bp_fail(BP_EINVAL, "bp_evaluate: network or data set is NULL");
    bp_status st = check_data(net, ds, "evaluation");
    size_t n = bp_dataset_count(ds), correct = 0;
    double total = 0.0;
    if (st != BP_OK || (st = evaluate_range(net, ds, 0, n, &correct, cost ? &total : NULL)) !=
                           BP_OK)
        return st;
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
    /* The configuration as given to create, callback cleared: the run's settings (batch, seed,
     * regularisation, schedule, eta0 = cfg.eta, cfg.epochs the length cosine anneals over)
     * and what a checkpoint records. */
    bp_train_config cfg;
    const bp_dataset *train;
    bp_optimizer opt;     /* the weights' hyper-parameters; opt.eta follows `eta` below */
    size_t n;
    double *norms;        /* n_norms per-tensor gradient norms, when cfg.norm_samples > 0 */
    int n_norms;
    /* The resumable state (bp_trainer_state): */
    int epoch;            /* epochs completed */
    size_t position;      /* samples of the current epoch trained; 0 before it is shuffled */
    double epoch_cost;    /* summed cost of the current epoch so far */
    double epoch_seconds; /* wall time of the current epoch so far (not part of the state) */
    size_t epoch_timed;   /* samples trained in epoch_seconds (fewer than position when the
                             epoch was resumed) */
    bp_batch_callback on_batch; /* with batch_user; NULL: none */
    void *batch_user;
    int stop_asked;       /* on_batch asked to stop after the epoch's last mini-batch */
    bp_rng rng;           /* the shuffle's generator */
    size_t *order;        /* the current epoch's sample order */
    uint64_t steps;       /* optimiser steps taken */
    float *state;         /* the optimiser's state arena, parallel to the parameters (NULL
                             for a rule without state, such as plain SGD) */
    size_t state_count;
    double eta;           /* the rate of the next mini-batch */
    double best_accuracy; /* -1 before any */
    int best_epoch;       /* 0 before any */
    int since_best;       /* observations without improvement since the best */
    int observed;         /* epochs completed at the last bp_trainer_observe */
    float *best_params;   /* n_params + n_state floats (the parameter arena, then the net's
                             running statistics) when early_stop > 0, else NULL; valid once
                             best_epoch > 0 */
    bp_collective coll;   /* the ranks this trainer is one of; size 0: it trains alone */
    long resyncs;         /* epochs after which the ranks' parameters differed (the
                             transport's sums were not the same bits everywhere) and rank 0's
                             were broadcast again */
    int next_sum;         /* with coll's start_sum_floats: the layer whose gradient sum starts
                             next (they go top down); sum_failed, one of them failed */
    int sum_failed;
    int vote;             /* this rank's batch callback asked to stop; the ranks sum the votes
                             with the next mini-batch's cost, or at the epoch's end */
};

/* Nielsen's regularisation term of the cost, from the weights as they are now:
 * (lambda / 2n) sum w^2 + (l1 / n) sum |w|. */
static double regularisation_cost(const bp_trainer *t)
{
    if (t->cfg.lambda == 0.0f && t->cfg.l1 == 0.0f)
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
    return (double)t->cfg.lambda / (2.0 * (double)t->n) * squares +
           (double)t->cfg.l1 / (double)t->n * absolutes;
}

static int finite_nonnegative(float v) { return v >= 0.0f && isfinite(v); }
static int unit_interval(float v) { return v >= 0.0f && v < 1.0f; } /* [0, 1); NaN fails */

/* Every field of cfg the trainer uses, each refused by name and value. */
static bp_status check_config(const bp_train_config *cfg)
{
    if (cfg->batch < 1)
        return bp_fail(BP_EINVAL, "batch size must be at least 1 (got %d)", cfg->batch);
    if (!(cfg->eta > 0.0f) || !isfinite(cfg->eta))
        return bp_fail(BP_EINVAL, "learning rate must be positive and finite, got %g", cfg->eta);
    if (!finite_nonnegative(cfg->lambda) || !finite_nonnegative(cfg->l1))
        return bp_fail(BP_EINVAL, "regularisation must be finite and >= 0, got lambda %g and "
                       "l1 %g", cfg->lambda, cfg->l1);
    if (!bp_optimizer_ops_of(cfg->optimizer))
        return bp_fail(BP_EINVAL, "optimizer %d is not a bp_optimizer_kind (0..%d)",
                       (int)cfg->optimizer, BP_OPT_COUNT - 1);
    if (!unit_interval(cfg->momentum))
        return bp_fail(BP_EINVAL, "momentum must be in [0, 1), got %g", cfg->momentum);
    if (!unit_interval(cfg->beta1) || !unit_interval(cfg->beta2))
        return bp_fail(BP_EINVAL, "beta1 and beta2 must be in [0, 1), got %g and %g",
                       cfg->beta1, cfg->beta2);
    if (!(cfg->eps > 0.0f) || !isfinite(cfg->eps))
        return bp_fail(BP_EINVAL, "eps must be positive and finite, got %g", cfg->eps);
    if (!finite_nonnegative(cfg->weight_decay))
        return bp_fail(BP_EINVAL, "weight_decay must be finite and >= 0, got %g",
                       cfg->weight_decay);
    /* Anything else would be silently ignored: the decoupled decay is adamw's alone. */
    if (cfg->weight_decay != 0.0f && cfg->optimizer != BP_OPT_ADAMW)
        return bp_fail(BP_EINVAL, "weight_decay %g is adamw's decoupled decay, which %s does "
                       "not have (L2 for any optimizer is lambda)", cfg->weight_decay,
                       bp_optimizer_name(cfg->optimizer));
    if (!finite_nonnegative(cfg->clip_norm))
        return bp_fail(BP_EINVAL, "clip_norm must be finite and >= 0 (0: off), got %g",
                       cfg->clip_norm);
    const bp_schedule *s = &cfg->schedule;
    switch (s->kind) {
    case BP_SCHEDULE_CONST:
        break;
    case BP_SCHEDULE_HALVE:
        if (s->epochs < 1)
            return bp_fail(BP_EINVAL, "schedule halve:N needs N >= 1, got %d", s->epochs);
        break;
    case BP_SCHEDULE_STEP:
        if (s->epochs < 1 || !(s->factor > 0.0f) || !isfinite(s->factor))
            return bp_fail(BP_EINVAL, "schedule step:E:F needs E >= 1 and F positive and "
                           "finite, got E %d and F %g", s->epochs, s->factor);
        break;
    case BP_SCHEDULE_COSINE:
        if (cfg->epochs < 1)
            return bp_fail(BP_EINVAL, "schedule cosine anneals over the epochs, which must be "
                           "at least 1 (got %d)", cfg->epochs);
        break;
    default:
        return bp_fail(BP_EINVAL, "schedule kind %d is not a bp_schedule_kind (0..%d)",
                       (int)s->kind, BP_SCHEDULE_COUNT - 1);
    }
    if (cfg->early_stop < 0)
        return bp_fail(BP_EINVAL, "early_stop must be >= 0 (0: off), got %d", cfg->early_stop);
    if (cfg->norm_samples < 0)
        return bp_fail(BP_EINVAL, "norm_samples must be >= 0 (0: off), got %d",
                       cfg->norm_samples);
    return BP_OK;
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
    bp_status st = check_config(cfg);
    if (st == BP_OK)
        st = check_data(net, train, "training");
    if (st != BP_OK)
        return st;
    size_t n = bp_dataset_count(train);
    /* A batch larger than the set trains as one batch of the whole set: plan no more. */
    int planned = (size_t)cfg->batch < n ? cfg->batch : (int)n;
    if ((st = bp_net_reserve(net, planned)) != BP_OK)
        return st;

    bp_optimizer opt;
    bp_optimizer_init(&opt, bp_optimizer_ops_of(cfg->optimizer), cfg->eta);
    opt.decay = cfg->lambda / (float)n;
    opt.l1 = cfg->l1 / (float)n;
    opt.mu = cfg->momentum;
    opt.beta1 = cfg->beta1;
    opt.beta2 = cfg->beta2;
    opt.eps = cfg->eps;
    opt.weight_decay = cfg->weight_decay;
    opt.clip_norm = cfg->clip_norm;
    size_t state_count = (size_t)opt.ops->state_per_param * net->n_params;
    /* The best epoch is its parameters and its running statistics (batch norm's), which its
     * scales and shifts were trained with: restoring one without the other would not give
     * back the net that scored best. */
    size_t best_count = cfg->early_stop > 0 ? net->n_params + net->n_state : 0;
    int n_norms = cfg->norm_samples > 0 ? net->n_tensors : 0;
    /* The state and the best epoch's copy are as large as the parameters (Adam's twice as
     * large): refused before they are asked for, like the net's own plan. */
    uint64_t extra = (uint64_t)(state_count + best_count) * sizeof(float);
    if (extra && (st = bp_memory_check(extra, "the trainer's optimizer state and best "
                                       "parameters")) != BP_OK)
        return st;
    bp_trainer *t = bp_calloc(1, sizeof *t);
    size_t *order = bp_alloc(sizeof(size_t) * n);
    float *state = state_count ? bp_calloc(state_count, sizeof(float)) : NULL;
    float *best = best_count ? bp_alloc(best_count * sizeof(float)) : NULL;
    double *norms = n_norms ? bp_calloc((size_t)n_norms, sizeof(double)) : NULL;
    if (!t || !order || (state_count && !state) || (best_count && !best) ||
        (n_norms && !norms)) {
        bp_free(t);
        bp_free(order);
        bp_free(state);
        bp_free(best);
        bp_free(norms);
        return bp_fail(BP_ENOMEM, "no memory for a trainer over %zu samples", n);
    }
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    *t = (bp_trainer){.net = net, .train = train, .opt = opt, .n = n, .norms = norms,
                      .n_norms = n_norms, .order = order, .state = state,
                      .state_count = state_count, .eta = cfg->eta, .best_accuracy = -1.0,
                      .best_params = best, .cfg = *cfg};
    t->cfg.on_epoch = NULL;
    t->cfg.on_batch = NULL;
    t->cfg.user = NULL;
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
    bp_free(t->best_params);
    bp_free(t->norms);
    bp_free(t);
}

int bp_trainer_epochs_done(const bp_trainer *t) { return t ? t->epoch : 0; }

bp_status bp_trainer_set_batch_callback(bp_trainer *t, bp_batch_callback on_batch, void *user)
{
    if (!t)
        return bp_fail(BP_EINVAL, "bp_trainer_set_batch_callback: trainer is NULL");
    t->on_batch = on_batch;
    t->batch_user = on_batch ? user : NULL;
    return BP_OK;
}

/* The batch callback's view of the epoch; false when it asks to stop. */
static int batch_done(const bp_trainer *t, double epoch_start_seconds, double t0)
{
    long batch = t->cfg.batch;
    bp_batch_report r = {
        .epoch = t->epoch + 1,
        .samples_done = t->position,
        .samples = t->n,
        .batches_done = (long)((t->position + (size_t)batch - 1) / (size_t)batch),
        .mean_cost = t->epoch_cost / (double)t->position,
        .seconds = epoch_start_seconds + (bp_now() - t0),
        .samples_timed = t->epoch_timed,
    };
    return t->on_batch(&r, t->batch_user) == 0;
}

/* ---- sharing a step across ranks ------------------------------------------------------ */

static bp_status collective_failed(const char *what)
{
    return bp_fail(BP_EIO, "data-parallel training: the collective %s failed", what);
}

/* Rank r's share of `count` things: [count r / size, count (r + 1) / size). */
static size_t share_start(size_t count, int rank, int size)
{
    size_t r = (size_t)rank, p = (size_t)size; /* count r / p, exact and without overflow */
    return count / p * r + count % p * r / p;
}

/* Start the gradient sums of the layers from t->next_sum down to `layer`, each over its
 * block of the arena (the top one also over the arena's end past its block). Every rank
 * starts the same ranges in the same order whatever its share, and whether its step ran on
 * a team (the layers' blocks then start after BP4) or not (each as its BP4 ends). */
static void start_sums_down_to(bp_trainer *t, int layer)
{
    bp_net *net = t->net;
    for (; t->next_sum >= layer; t->next_sum--) {
        size_t lo = 0;
        for (int i = 0; i < t->next_sum; i++)
            lo += net->layers[i].n_params;
        size_t hi = t->next_sum == net->n_layers - 1 ? net->n_params
                                                     : lo + net->layers[t->next_sum].n_params;
        if (hi > lo && t->coll.start_sum_floats(t->coll.user, net->grads + lo, hi - lo) != 0)
            t->sum_failed = 1;
    }
}

static void layer_gradients_done(void *ctx, int layer) { start_sums_down_to(ctx, layer); }

/* The mini-batch of `batch` samples at `start` of the order, as this rank's share of it: its
 * columns backpropagated into the gradient arena scaled by share / batch, so that the sum
 * over ranks is the mean gradient of the whole batch; the arenas summed; the optimiser's step
 * on the sum. *cost is the whole batch's summed cost, *votes the ranks' stop votes. */
static bp_status shared_step(bp_trainer *t, size_t start, int batch, double *cost, double *votes)
{
    bp_net *net = t->net;
    const bp_collective *c = &t->coll;
    int n_in = bp_net_inputs(net), n_out = bp_net_outputs(net);
    size_t lo = share_start((size_t)batch, c->rank, c->size),
           hi = share_start((size_t)batch, c->rank + 1, c->size);
    int local = (int)(hi - lo);
    double sums[2] = {0.0, (double)t->vote};
    int overlap = c->start_sum_floats != NULL;
    if (overlap) {
        t->next_sum = net->n_layers - 1;
        t->sum_failed = 0;
        net->params_done = layer_gradients_done;
        net->params_done_ctx = t;
    }
    if (local > 0) {
        gather_job gather = {t->train, t->order + start + lo, net->x_batch, net->y_batch, n_in,
                             n_out};
        const bp_batch_fill fill = {gather_columns, &gather};
        const bp_grad_target share = {BP_TARGET_GRADS, (float)local / (float)batch, 0.0f};
        net->key_column0 = (uint32_t)lo;
        sums[0] = bp_net_backprop_unchecked(net, net->x_batch, n_in, net->y_batch, n_out, local,
                                            &share, &fill);
        net->key_column0 = 0;
    } else {
        memset(net->grads, 0, sizeof(float) * net->n_params); /* fewer samples than ranks */
    }
    if (overlap) {
        net->params_done = NULL;
        start_sums_down_to(t, 0);
        if (c->finish_sums(c->user) != 0 || t->sum_failed)
            return collective_failed("sum of the gradients");
    } else if (c->sum_floats(c->user, net->grads, net->n_params) != 0) {
        return collective_failed("sum of the gradients");
    }
    if (c->sum_doubles(c->user, sums, 2) != 0)
        return collective_failed("sum of the costs");
    *cost = sums[0];
    *votes = sums[1];
    if (isfinite(sums[0]))
        unfused_update(net, &t->opt, t->state, t->steps);
    return BP_OK;
}

/* A 64-bit FNV-1a of n floats' bits, folded into h. */
static uint64_t hash_floats(uint64_t h, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, &x[i], sizeof bits);
        h = (h ^ bits) * 0x100000001b3ULL;
    }
    return h;
}

/* Every rank takes the same step only if every rank gets the same sums, which MPI advises
 * but does not promise (an implementation may combine in another order on each rank). After
 * each epoch the ranks compare a hash of their parameters and optimiser state with rank 0's;
 * on any difference rank 0's are broadcast again and the trainer counts it
 * (bp_trainer_resyncs), so the ranks never drift apart silently. */
static bp_status check_ranks_agree(bp_trainer *t)
{
    bp_net *net = t->net;
    const bp_collective *c = &t->coll;
    uint64_t mine = hash_floats(0xcbf29ce484222325ULL, net->params, net->n_params);
    mine = hash_floats(mine, net->state, net->n_state);
    mine = hash_floats(mine, t->state, t->state_count);
    float bits[2]; /* the hash travels as the bits of two floats: a broadcast copies them */
    memcpy(bits, &mine, sizeof bits);
    if (c->broadcast_floats(c->user, bits, 2, 0) != 0)
        return collective_failed("broadcast of rank 0's parameter hash");
    uint64_t theirs;
    memcpy(&theirs, bits, sizeof theirs);
    double differ[1] = {theirs != mine};
    if (c->sum_doubles(c->user, differ, 1) != 0)
        return collective_failed("sum of the parameter checks");
    if (differ[0] == 0.0)
        return BP_OK;
    if (c->broadcast_floats(c->user, net->params, net->n_params, 0) != 0 ||
        (net->n_state && c->broadcast_floats(c->user, net->state, net->n_state, 0) != 0) ||
        (t->state_count && c->broadcast_floats(c->user, t->state, t->state_count, 0) != 0))
        return collective_failed("broadcast of rank 0's parameters");
    t->resyncs++;
    return BP_OK;
}

/* The votes not yet summed, at the end of an epoch: the stop one of the ranks asked for after
 * the epoch's last mini-batch. */
static bp_status last_votes(bp_trainer *t, double *votes)
{
    double sums[1] = {(double)t->vote};
    if (t->coll.sum_doubles(t->coll.user, sums, 1) != 0)
        return collective_failed("sum of the stop votes");
    *votes = sums[0];
    return BP_OK;
}

/* Mini-batches of the current epoch, up to max_batches of them (or all that are left when
 * max_batches <= 0), shuffling first when the epoch has not begun, until the batch callback
 * says stop (BP_ESTOPPED mid-epoch; at the epoch's end, stop_asked). *finished says whether the
 * epoch is complete; the epoch-end parameter check runs then. */
static bp_status run_batches(bp_trainer *t, long max_batches, int *finished)
{
    bp_net *net = t->net;
    int n_in = bp_net_inputs(net), n_out = bp_net_outputs(net);
    if (t->position == 0) {
        shuffle(t->order, t->n, &t->rng);
        t->epoch_cost = 0.0;
        t->epoch_seconds = 0.0;
        t->epoch_timed = 0;
    }
    t->stop_asked = 0;
    double t0 = bp_now();
    bp_status st = BP_OK;
    for (long done = 0; t->position < t->n && (max_batches <= 0 || done < max_batches); done++) {
        size_t start = t->position;
        /* Nielsen keeps the last, shorter mini-batch; so do we. */
        int batch = t->n - start < (size_t)t->cfg.batch ? (int)(t->n - start) : t->cfg.batch;
        gather_job gather = {t->train, t->order + start, net->x_batch, net->y_batch, n_in, n_out};
        const bp_batch_fill fill = {gather_columns, &gather};
        /* The run's seed and the step's number key the randomness drawn inside it (net.h),
         * so a resumed run, whose net was made again from a file, draws the same masks. */
        t->steps++;
        net->seed = t->cfg.seed;
        net->step = t->steps;
        double c = 0.0, votes = 0.0;
        if (t->coll.size) {
            if ((st = shared_step(t, start, batch, &c, &votes)) != BP_OK) {
                t->steps--; /* not taken: a resume numbers the next step as this one */
                break;
            }
        } else {
            c = bp_train_step(net, &t->opt, t->state, t->steps, net->x_batch, n_in,
                              net->y_batch, n_out, batch, &fill);
        }
        if (!isfinite(c)) {
            char where[96];
            snprintf(where, sizeof where, "epoch %d, mini-batch at sample %zu", t->epoch + 1,
                     start);
            st = bp_net_diverged(net, where, c, t->opt.eta);
            break;
        }
        t->epoch_cost += c;
        t->position += (size_t)batch;
        t->epoch_timed += (size_t)batch;
        if (t->coll.size) {
            /* A rank's callback votes after its mini-batch and the votes travel with the next
             * one's sums; the epoch's last mini-batch has no next, so its votes are summed
             * at once. Every rank has the same sum: all stop after the same mini-batch. */
            int last = t->position == t->n;
            if (t->on_batch && !batch_done(t, t->epoch_seconds, t0))
                t->vote = 1;
            if (last && votes == 0.0 && (st = last_votes(t, &votes)) != BP_OK)
                break;
            if (votes > 0.0) {
                t->vote = 0;
                if (!last)
                    st = bp_fail(BP_ESTOPPED, "stopped by the batch callback at epoch %d, "
                                 "sample %zu of %zu", t->epoch + 1, t->position, t->n);
                else
                    t->stop_asked = 1;
                break;
            }
            continue;
        }
        if (t->on_batch && !batch_done(t, t->epoch_seconds, t0)) {
            if (t->position < t->n)
                st = bp_fail(BP_ESTOPPED, "stopped by the batch callback at epoch %d, sample "
                             "%zu of %zu", t->epoch + 1, t->position, t->n);
            else
                t->stop_asked = 1;
            break;
        }
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

/* The epoch is complete: count it, and fill the report, with the learning-speed diagnostics
 * when they were asked for (which is the one thing here that can fail). */
static bp_status finish_epoch(bp_trainer *t, bp_epoch_report *report)
{
    t->epoch++;
    t->position = 0;
    bp_status st = BP_OK;
    bp_net *net = t->net;
    /* Each rank's batch statistics moved its own running averages: their mean is the net's. */
    if (t->coll.size && net->n_state) {
        if (t->coll.sum_floats(t->coll.user, net->state, net->n_state) != 0)
            return collective_failed("sum of the running statistics");
        float share = 1.0f / (float)t->coll.size;
        for (size_t i = 0; i < net->n_state; i++)
            net->state[i] *= share;
    }
    if (t->coll.size && (st = check_ranks_agree(t)) != BP_OK)
        return st;
    if (t->n_norms)
        st = bp_net_grad_norms(t->net, t->train, (size_t)t->cfg.norm_samples, t->norms, t->n_norms);
    if (report)
        *report = (bp_epoch_report){
            .epoch = t->epoch,
            .eta = t->opt.eta,
            .train_cost = t->epoch_cost / (double)t->n + regularisation_cost(t),
            .validation_accuracy = -1.0,
            .validation_cost = -1.0,
            .seconds = t->epoch_seconds,
            .samples_per_second = (double)t->epoch_timed / t->epoch_seconds,
            .grad_norms = t->n_norms && st == BP_OK ? t->norms : NULL,
            .n_grad_norms = st == BP_OK ? t->n_norms : 0,
        };
    return st;
}

bp_status bp_trainer_epoch(bp_trainer *t, bp_epoch_report *report)
{
    if (!t)
        return bp_fail(BP_EINVAL, "bp_trainer_epoch: trainer is NULL");
    int finished;
    bp_status st = run_batches(t, 0, &finished);
    if (st == BP_OK)
        st = finish_epoch(t, report);
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
        if (epoch_finished)
            *epoch_finished = 1;
        st = finish_epoch(t, report);
    }
    return st;
}

/* ---- schedules and early stopping ------------------------------------------------------ */

/* The rate of epoch e (1-based) under the schedules that depend on the epoch alone. Cosine
 * keeps epoch E's rate after E: its formula reaches 0 at E + 1 and would climb again after. */
static double scheduled_eta(const bp_trainer *t, int e)
{
    const bp_schedule *s = &t->cfg.schedule;
    if (s->kind == BP_SCHEDULE_STEP)
        return t->cfg.eta * pow((double)s->factor, (double)((e - 1) / s->epochs));
    if (s->kind == BP_SCHEDULE_COSINE) {
        int k = e < t->cfg.epochs ? e : t->cfg.epochs;
        return t->cfg.eta * (1.0 + cos(M_PI * (double)(k - 1) / (double)t->cfg.epochs)) / 2.0;
    }
    return t->eta;
}

static void keep_best(bp_trainer *t)
{
    const bp_net *net = t->net;
    memcpy(t->best_params, net->params, sizeof(float) * net->n_params);
    if (net->n_state)
        memcpy(t->best_params + net->n_params, net->state, sizeof(float) * net->n_state);
}

bp_status bp_trainer_observe(bp_trainer *t, double validation_accuracy, int *stop)
{
    if (stop)
        *stop = 0;
    if (!t)
        return bp_fail(BP_EINVAL, "bp_trainer_observe: trainer is NULL");
    if (t->observed >= t->epoch)
        return bp_fail(BP_EINVAL, "bp_trainer_observe: no epoch has finished since the last "
                       "call (%d done, %d observed)", t->epoch, t->observed);
    double acc = validation_accuracy;
    if (!(acc == -1.0 || (acc >= 0.0 && acc <= 1.0)))
        return bp_fail(BP_EINVAL, "bp_trainer_observe: validation accuracy %g is neither in "
                       "[0, 1] nor -1 (none)", acc);
    int needs_accuracy = t->cfg.early_stop > 0 || t->cfg.schedule.kind == BP_SCHEDULE_HALVE;
    if (acc < 0.0 && needs_accuracy)
        return bp_fail(BP_EINVAL, "bp_trainer_observe: %s needs a validation accuracy, got -1",
                       t->cfg.early_stop > 0 ? "early stopping" : "the halve schedule");
    t->observed = t->epoch;
    int improved = acc >= 0.0 && acc > t->best_accuracy, halt = 0;
    if (improved) {
        t->best_accuracy = acc;
        t->best_epoch = t->epoch;
        t->since_best = 0;
        if (t->best_params)
            keep_best(t);
    } else if (acc >= 0.0) {
        t->since_best++;
    }
    if (t->cfg.schedule.kind == BP_SCHEDULE_HALVE) {
        /* Every N epochs without improvement: since_best counts from the best epoch, so its
         * multiples of N are the halvings, each restarting the count of N. Nielsen stops when
         * eta has dropped to 1/128 of eta0: seven halvings, exact in binary. */
        if (!improved && t->since_best % t->cfg.schedule.epochs == 0) {
            t->eta /= 2.0;
            halt = t->eta <= t->cfg.eta / 128.0;
        }
    } else {
        t->eta = scheduled_eta(t, t->epoch + 1);
    }
    t->opt.eta = (float)t->eta;
    /* Under halve:N a halving gives the net a fresh patience at its new rate: early stopping
     * counts from the later of the best epoch and the last halving, since_best mod N. So
     * "halve:10 --early-stop 10" runs Nielsen's schedule to its end at eta0/128 and keeps the
     * best epoch; an early_stop below N stops before the first halving. */
    int patience_used = t->cfg.schedule.kind == BP_SCHEDULE_HALVE
                            ? t->since_best % t->cfg.schedule.epochs
                            : t->since_best;
    if (t->cfg.early_stop > 0 && patience_used >= t->cfg.early_stop)
        halt = 1;
    if (stop)
        *stop = halt;
    return BP_OK;
}

double bp_trainer_eta(const bp_trainer *t) { return t ? t->eta : 0.0; }

int bp_trainer_best(const bp_trainer *t, double *accuracy)
{
    if (accuracy)
        *accuracy = t ? t->best_accuracy : -1.0;
    return t ? t->best_epoch : 0;
}

bp_status bp_trainer_restore_best(bp_trainer *t)
{
    if (!t)
        return bp_fail(BP_EINVAL, "bp_trainer_restore_best: trainer is NULL");
    if (!t->best_params || t->best_epoch == 0)
        return bp_fail(BP_EINVAL, "bp_trainer_restore_best: no best parameters are kept (%s)",
                       t->best_params ? "no accuracy observed yet" : "early_stop is 0");
    bp_net *net = t->net;
    memcpy(net->params, t->best_params, sizeof(float) * net->n_params);
    if (net->n_state)
        memcpy(net->state, t->best_params + net->n_params, sizeof(float) * net->n_state);
    return BP_OK;
}

/* ---- the state ------------------------------------------------------------------------ */

bp_status bp_trainer_config(const bp_trainer *t, bp_train_config *out)
{
    if (!t || !out)
        return bp_fail(BP_EINVAL, "bp_trainer_config: %s is NULL", t ? "out" : "trainer");
    *out = t->cfg;
    return BP_OK;
}

bp_net *bp_trainer_net(const bp_trainer *t) { return t ? t->net : NULL; }

bp_status bp_trainer_get_state(const bp_trainer *t, bp_trainer_state *out)
{
    if (!t || !out)
        return bp_fail(BP_EINVAL, "bp_trainer_get_state: %s is NULL", t ? "out" : "trainer");
    *out = (bp_trainer_state){
        .epoch = t->epoch,
        .position = t->position,
        .epoch_cost = t->epoch_cost,
        .steps = t->steps,
        .n = t->n,
        .order = t->order,
        .optimizer_state = t->state,
        .optimizer_state_count = t->state_count,
        .eta = t->eta,
        .best_accuracy = t->best_accuracy,
        .best_epoch = t->best_epoch,
        .since_best = t->since_best,
        .observed = t->observed,
        .best_params = t->best_epoch > 0 ? t->best_params : NULL,
        .best_count = t->best_epoch > 0 && t->best_params ? t->net->n_params + t->net->n_state
                                                          : 0,
    };
    memcpy(out->rng, t->rng.s, sizeof out->rng);
    return BP_OK;
}

/* The schedule's and early stopping's part of a state: one a trainer could have reached. */
static bp_status check_progress(const bp_trainer *t, const bp_trainer_state *in)
{
    if (!(in->eta > 0.0) || !isfinite(in->eta))
        return bp_fail(BP_EINVAL, "bp_trainer_set_state: eta %g is not positive and finite",
                       in->eta);
    if (in->observed < 0 || in->observed > in->epoch)
        return bp_fail(BP_EINVAL, "bp_trainer_set_state: %d epochs observed of %d done",
                       in->observed, in->epoch);
    int none = in->best_epoch == 0;
    if (in->best_epoch < 0 || in->best_epoch > in->observed ||
        (none ? in->best_accuracy != -1.0
              : !(in->best_accuracy >= 0.0 && in->best_accuracy <= 1.0)))
        return bp_fail(BP_EINVAL, "bp_trainer_set_state: best epoch %d with accuracy %g (after "
                       "%d observed) is not a best a trainer can have", in->best_epoch,
                       in->best_accuracy, in->observed);
    if (in->since_best < 0 || in->since_best > in->observed - in->best_epoch)
        return bp_fail(BP_EINVAL, "bp_trainer_set_state: %d epochs since the best (epoch %d "
                       "of %d observed)", in->since_best, in->best_epoch, in->observed);
    int kept = t->best_params && !none;
    size_t want = kept ? t->net->n_params + t->net->n_state : 0;
    if (kept && in->best_params && in->best_count != want)
        return bp_fail(BP_EINVAL, "bp_trainer_set_state: best_params holds %zu floats, this "
                       "net's parameters and running statistics are %zu", in->best_count, want);
    if (kept != (in->best_params != NULL))
        return bp_fail(BP_EINVAL, "bp_trainer_set_state: %s", kept
                       ? "early stopping keeps the best epoch's parameters, but best_params "
                         "is NULL"
                       : "best_params is set, but this trainer keeps none (early_stop 0 or no "
                         "best epoch yet)");
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
    bp_status st = check_progress(t, in);
    if (st != BP_OK)
        return st;
    /* The order must be a permutation, or the unchecked gather could read past the set. */
    size_t *copy = bp_alloc(sizeof(size_t) * t->n);
    unsigned char *seen = bp_calloc(t->n, 1);
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
    t->epoch_timed = 0;
    t->steps = in->steps;
    if (t->state_count)
        memcpy(t->state, in->optimizer_state, sizeof(float) * t->state_count);
    memcpy(t->rng.s, in->rng, sizeof in->rng);
    t->eta = in->eta;
    t->opt.eta = (float)in->eta;
    t->best_accuracy = in->best_accuracy;
    t->best_epoch = in->best_epoch;
    t->since_best = in->since_best;
    t->observed = in->observed;
    if (in->best_params)
        memcpy(t->best_params, in->best_params,
               sizeof(float) * (t->net->n_params + t->net->n_state));
    return BP_OK;
}

/* ---- ranks ----------------------------------------------------------------------------- */

bp_status bp_trainer_set_collective(bp_trainer *t, const bp_collective *c)
{
    if (!t)
        return bp_fail(BP_EINVAL, "bp_trainer_set_collective: trainer is NULL");
    if (!c) {
        memset(&t->coll, 0, sizeof t->coll);
        t->vote = 0;
        return BP_OK;
    }
    if (c->size < 1 || c->rank < 0 || c->rank >= c->size)
        return bp_fail(BP_EINVAL, "bp_trainer_set_collective: rank %d of %d ranks", c->rank,
                       c->size);
    if (!c->sum_floats || !c->sum_doubles || !c->broadcast_floats)
        return bp_fail(BP_EINVAL, "bp_trainer_set_collective: the %s function is NULL",
                       !c->sum_floats ? "sum_floats" : !c->sum_doubles ? "sum_doubles"
                                                                         : "broadcast_floats");
    if (!c->start_sum_floats != !c->finish_sums)
        return bp_fail(BP_EINVAL, "bp_trainer_set_collective: start_sum_floats and "
                       "finish_sums come together (one is NULL, the other is not)");
    bp_net *net = t->net;
    if (c->broadcast_floats(c->user, net->params, net->n_params, 0) != 0 ||
        (net->n_state && c->broadcast_floats(c->user, net->state, net->n_state, 0) != 0) ||
        (t->state_count && c->broadcast_floats(c->user, t->state, t->state_count, 0) != 0))
        return collective_failed("broadcast of rank 0's parameters");
    t->coll = *c;
    t->vote = 0;
    return BP_OK;
}

long bp_trainer_resyncs(const bp_trainer *t) { return t ? t->resyncs : 0; }

bp_status bp_trainer_evaluate(bp_trainer *t, const bp_dataset *ds, float *accuracy, double *cost)
{
    if (!t || !ds)
        return bp_fail(BP_EINVAL, "bp_trainer_evaluate: trainer or data set is NULL");
    if (!t->coll.size)
        return bp_evaluate(t->net, ds, accuracy, cost);
    bp_status st = check_data(t->net, ds, "evaluation");
    if (st != BP_OK) /* the same set on every rank: refused on every rank */
        return st;
    size_t n = bp_dataset_count(ds), correct = 0;
    double total = 0.0;
    st = evaluate_range(t->net, ds, share_start(n, t->coll.rank, t->coll.size),
                        share_start(n, t->coll.rank + 1, t->coll.size), &correct, &total);
    /* Summed even when this rank failed, so that no rank waits for it. */
    double sums[3] = {(double)correct, total, st != BP_OK};
    if (t->coll.sum_doubles(t->coll.user, sums, 3) != 0)
        return collective_failed("sum of the evaluation");
    if (st != BP_OK)
        return st;
    if (sums[2] > 0.0)
        return bp_fail(BP_EIO, "data-parallel evaluation: %.0f of %d ranks failed", sums[2],
                       t->coll.size);
    if (accuracy)
        *accuracy = (float)(sums[0] / (double)n);
    if (cost)
        *cost = sums[1] / (double)n;
    return BP_OK;
}

/* ---- the whole run --------------------------------------------------------------------- */

bp_status bp_trainer_run(bp_trainer *t, const bp_dataset *validation, int epochs,
                         bp_epoch_callback on_epoch, void *user, bp_train_result *result)
{
    if (result) {
        memset(result, 0, sizeof *result);
        result->validation_accuracy = -1.0;
        result->best_validation_accuracy = -1.0;
    }
    if (!t)
        return bp_fail(BP_EINVAL, "bp_trainer_run: trainer is NULL");
    if (epochs < 1)
        return bp_fail(BP_EINVAL, "epochs must be at least 1 (got %d)", epochs);
    if (!validation && (t->cfg.early_stop > 0 || t->cfg.schedule.kind == BP_SCHEDULE_HALVE))
        return bp_fail(BP_EINVAL, "%s needs a validation set (the validation set is NULL)",
                       t->cfg.early_stop > 0 ? "early_stop" : "the halve schedule");
    bp_net *net = t->net;
    bp_status st = validation ? check_data(net, validation, "validation") : BP_OK;
    if (st != BP_OK)
        return st;
    /* What this call trains and how long it takes, partial epochs included (a resumed epoch's
     * earlier samples and seconds are not this call's). */
    double seconds_total = 0.0;
    size_t samples_total = 0;
    float accuracy = -1.0f;
    int stop = 0;
    if (result)
        result->epochs = t->epoch;
    while (t->epoch < epochs && !stop) {
        bp_epoch_report report;
        size_t position = t->position;
        double seconds = position ? t->epoch_seconds : 0.0;
        st = bp_trainer_epoch(t, &report);
        if (st == BP_ESTOPPED) {
            seconds_total += t->epoch_seconds - seconds;
            samples_total += t->position - position;
        }
        if (st != BP_OK)
            break;
        seconds_total += report.seconds - seconds;
        samples_total += t->n - position;
        double validation_cost = -1.0;
        if (validation &&
            (st = bp_trainer_evaluate(t, validation, &accuracy, &validation_cost)) != BP_OK)
            break;
        report.validation_accuracy = validation ? accuracy : -1.0;
        report.validation_cost = validation_cost;
        if ((st = bp_trainer_observe(t, report.validation_accuracy, &stop)) != BP_OK)
            break;
        if (result) {
            result->epochs = t->epoch;
            result->validation_accuracy = report.validation_accuracy;
            result->stopped_early = stop && t->epoch < epochs;
        }
        if (on_epoch && on_epoch(&report, user))
            break;
        /* A stop asked at the end of the run's last epoch has nothing left to stop. */
        if (t->stop_asked && !stop && t->epoch < epochs) {
            st = bp_fail(BP_ESTOPPED, "stopped by the batch callback at the end of epoch %d",
                         t->epoch);
            break;
        }
    }
    /* Nielsen's early stopping keeps the best epoch's network, however the run ended; a run
     * the batch callback paused keeps the net it is training, to go on with. */
    if (st == BP_OK && t->best_params && t->best_epoch > 0)
        st = bp_trainer_restore_best(t);
    if (result) {
        result->epochs = t->epoch;
        result->train_seconds = seconds_total;
        result->samples_per_second = seconds_total > 0.0 ? (double)samples_total / seconds_total
                                                         : 0.0;
        result->best_validation_accuracy = t->best_accuracy;
        result->best_epoch = t->best_epoch;
        result->final_eta = t->eta;
    }
    return st;
}

bp_status bp_train(bp_net *net, const bp_dataset *train, const bp_dataset *validation,
                   const bp_train_config *cfg, bp_train_result *result)
{
    if (result) {
        memset(result, 0, sizeof *result);
        result->validation_accuracy = -1.0;
        result->best_validation_accuracy = -1.0;
    }
    if (!net || !train || !cfg)
        return bp_fail(BP_EINVAL, "bp_train: network, training set or configuration is NULL");
    if (cfg->epochs < 1 || cfg->batch < 1)
        return bp_fail(BP_EINVAL, "epochs and batch size must be at least 1 (got %d and %d)",
                       cfg->epochs, cfg->batch);
    if (!validation && (cfg->early_stop > 0 || cfg->schedule.kind == BP_SCHEDULE_HALVE))
        return bp_fail(BP_EINVAL, "%s needs a validation set (bp_train's validation is NULL)",
                       cfg->early_stop > 0 ? "early_stop" : "the halve schedule");
    bp_status st = validation ? check_data(net, validation, "validation") : BP_OK;
    bp_trainer *t = NULL;
    if (st == BP_OK)
        st = bp_trainer_create(&t, net, train, cfg);
    if (st != BP_OK)
        return st;
    bp_trainer_set_batch_callback(t, cfg->on_batch, cfg->user);
    st = bp_trainer_run(t, validation, cfg->epochs, cfg->on_epoch, cfg->user, result);
    bp_trainer_free(t);
    return st;
}
