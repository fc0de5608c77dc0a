/*
 * net.c - building a network (arenas, views, planned buffers), the forward pass and
 * backpropagation BP1-BP4 over a whole mini-batch.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/fpenv.h"
#include "loss/loss.h"
#include "net/net.h"
#include "kernels/threads.h"

/* The public limits (see backprop.h); MAX_LAYERS counts weight layers, one fewer than sizes. */
enum { MAX_LAYERS = BP_MAX_SIZES - 1, MAX_WIDTH = BP_MAX_WIDTH, MAX_BATCH = BP_MAX_BATCH };

void bp_net_config_init(bp_net_config *cfg)
{
    if (!cfg)
        return;
    memset(cfg, 0, sizeof *cfg);
    cfg->hidden = BP_ACT_SIGMOID;
    cfg->output = BP_ACT_SIGMOID;
    cfg->cost = BP_COST_CROSS_ENTROPY;
    cfg->init = BP_INIT_GAUSSIAN;
    cfg->seed = 1;
    cfg->max_batch = 64;
    cfg->backend = "blas";
}

static bp_status check_config(const bp_net_config *cfg)
{
    if (!cfg || !cfg->sizes)
        return bp_fail(BP_EINVAL, "no network configuration or no layer sizes");
    if (cfg->layers && cfg->n_sizes != 1)
        return bp_fail(BP_EINVAL, "with a layers spec, sizes holds the input width alone "
                       "(n_sizes 1, got %d)", cfg->n_sizes);
    if (!cfg->layers && (cfg->n_sizes < 2 || cfg->n_sizes > MAX_LAYERS + 1))
        return bp_fail(BP_EINVAL, "a network needs 2 to %d layer sizes, got %d", MAX_LAYERS + 1,
                       cfg->n_sizes);
    for (int i = 0; i < cfg->n_sizes; i++)
        if (cfg->sizes[i] < 1 || cfg->sizes[i] > MAX_WIDTH)
            return bp_fail(BP_EINVAL, "layer %d has %d neurons (allowed: 1 to %d)", i,
                           cfg->sizes[i], MAX_WIDTH);
    if ((unsigned)cfg->hidden >= BP_ACT_COUNT || (unsigned)cfg->output >= BP_ACT_COUNT)
        return bp_fail(BP_EINVAL, "unknown activation");
    if ((unsigned)cfg->init >= BP_INIT_COUNT)
        return bp_fail(BP_EINVAL, "unknown initialisation %d", (int)cfg->init);
    if (cfg->max_batch < 1 || cfg->max_batch > MAX_BATCH)
        return bp_fail(BP_EINVAL, "max_batch must be 1 to %d, got %d", MAX_BATCH, cfg->max_batch);
    if (cfg->backend && !bp_backend_find(cfg->backend))
        return bp_fail(BP_EINVAL, "unknown backend '%s' (blas, naive)", cfg->backend);
    if (!(cfg->dropout >= 0.0f && cfg->dropout < 1.0f))
        return bp_fail(BP_EINVAL, "dropout must be a probability in [0, 1), got %g",
                       (double)cfg->dropout);
    int shaped = cfg->input_channels || cfg->input_rows || cfg->input_cols;
    if (shaped && (cfg->input_channels < 1 || cfg->input_rows < 1 || cfg->input_cols < 1 ||
                   (long long)cfg->input_channels * cfg->input_rows * cfg->input_cols !=
                       cfg->sizes[0]))
        return bp_fail(BP_EINVAL, "input shape %d x %d x %d: channels, rows and columns are "
                       "all positive with the input width %d as their product (or all 0 for "
                       "a flat input)", cfg->input_channels, cfg->input_rows, cfg->input_cols,
                       cfg->sizes[0]);
    if (cfg->layers && (cfg->dropout > 0.0f || cfg->batchnorm))
        return bp_fail(BP_EINVAL, "with a layers spec, dropout and batch norm are layers of the "
                       "spec ('dropout:P', 'batchnorm'), not options");
    return BP_OK;
}

/* The spec string of a sizes-based config: one dense layer per size; behind each hidden one,
 * batch normalisation when asked (which takes over the activation, so it normalises Z and
 * not act(Z)) and then dropout. *out is bp_alloc'd. */
static bp_status sizes_spec(const bp_net_config *cfg, char **out)
{
    size_t cap = (size_t)cfg->n_sizes * 96, used = 0;
    char *text = bp_alloc(cap);
    if (!text)
        return bp_fail(BP_ENOMEM, "no memory for a spec of %d layers", cfg->n_sizes - 1);
    text[0] = '\0';
    for (int i = 1; i < cfg->n_sizes; i++) {
        int hidden = i < cfg->n_sizes - 1;
        bp_activation act = hidden ? cfg->hidden : cfg->output;
        const char *sep = i > 1 ? "," : "";
        if (hidden && cfg->batchnorm)
            used += (size_t)snprintf(text + used, cap - used, "%sdense:%d:linear,batchnorm:%s",
                                     sep, cfg->sizes[i], bp_activation_name(act));
        else
            used += (size_t)snprintf(text + used, cap - used, "%sdense:%d:%s", sep,
                                     cfg->sizes[i], bp_activation_name(act));
        if (hidden && cfg->dropout > 0.0f)
            used += (size_t)snprintf(text + used, cap - used, ",dropout:%.9g",
                                     (double)cfg->dropout);
    }
    *out = text;
    return BP_OK;
}

/* The layers the config asks for, as specs, parsed through the registry from its spec string
 * or from the one its sizes make. *out is bp_alloc'd. */
static bp_status make_specs(const bp_net_config *cfg, bp_layer_spec **out, int *count)
{
    char *made = NULL;
    if (!cfg->layers) {
        bp_status st = sizes_spec(cfg, &made);
        if (st != BP_OK)
            return st;
    }
    const char *text = cfg->layers ? cfg->layers : made;
    int n = 1;
    for (const char *p = text; *p; p++)
        n += *p == ',';
    if (n > MAX_LAYERS) {
        bp_free(made);
        return bp_fail(BP_EINVAL, "layers spec: %d layers, at most %d", n, MAX_LAYERS);
    }
    bp_layer_spec *specs = bp_calloc((size_t)n, sizeof *specs);
    bp_status st = specs ? BP_OK : bp_fail(BP_ENOMEM, "no memory for %d layer specs", n);
    const char *p = text;
    for (int i = 0; i < n && st == BP_OK; i++) {
        char one[128];
        size_t len = strcspn(p, ",");
        if (len == 0 || len >= sizeof one) {
            st = bp_fail(BP_EINVAL, "layers spec: entry %d of '%s' is %s", i + 1, text,
                         len ? "too long" : "empty");
            break;
        }
        memcpy(one, p, len);
        one[len] = '\0';
        /* Entries can repeat ("dense:0,...,dense:0"): the position says which one is meant. */
        if ((st = bp_layer_spec_parse(one, &specs[i])) != BP_OK)
            st = bp_fail_context(st, "layers spec: entry %d of '%s'", i + 1, text);
        p += len + (p[len] == ',');
    }
    bp_free(made);
    if (st != BP_OK) {
        bp_free(specs);
        return st;
    }
    *out = specs;
    *count = n;
    return BP_OK;
}

/* Plan every layer from its input shape, the first from the net's: shapes, sizes and the
 * parameter count; then the checks that need the whole stack (softmax only at the output, the
 * cost's pairing with the output activation). */
static bp_status plan_layers(bp_net *net, const bp_layer_spec *specs)
{
    bp_shape in = net->input;
    net->sizes[0] = (int)bp_shape_size(in);
    for (int i = 0; i < net->n_layers; i++) {
        bp_layer *l = &net->layers[i];
        bp_layer_plan plan;
        l->ops = specs[i].ops;
        l->index = i;
        bp_status st = l->ops->plan(l, &specs[i], in, &plan);
        if (st != BP_OK)
            return bp_fail_context(st, "layer %d", i + 1);
        if (bp_shape_size(plan.out) > MAX_WIDTH)
            return bp_fail(BP_EINVAL, "layer %d: %zu outputs (allowed: 1 to %d)", i + 1,
                           bp_shape_size(plan.out), MAX_WIDTH);
        if (l->act == BP_ACT_SOFTMAX && i < net->n_layers - 1)
            return bp_fail(BP_EINVAL, "softmax is an output activation, not a hidden one "
                           "(layer %d of %d)", i + 1, net->n_layers);
        if (plan.hidden_only && i == net->n_layers - 1)
            return bp_fail(BP_EINVAL, "layer %d: %s cannot be the output layer (the cost needs "
                           "the output of a layer with an activation, such as dense)", i + 1,
                           l->ops->name);
        if (plan.reduce > net->reduce_stride)
            net->reduce_stride = plan.reduce;
        l->n_params = plan.params;
        l->n_state = plan.state;
        l->saved_per_column = plan.saved_per_column;
        l->work_per_column = plan.work_per_column;
        l->params_need_data_pass = plan.params_need_data_pass;
        net->n_params += plan.params;
        net->n_state += plan.state;
        net->sizes[i + 1] = (int)bp_shape_size(plan.out);
        in = plan.out;
    }
    return bp_loss_check(net->cost, net->layers[net->n_layers - 1].act);
}

static bp_status plan_team(bp_net *net, int threads);
static bp_status plan_tensors(bp_net *net);

/* The stack's spec string, each layer spelled out in full by its kind (bp_net_spec): what a
 * model file records, so the same net can be made again however it was first described. */
static bp_status plan_spec(bp_net *net)
{
    size_t bytes = 1;
    for (int i = 0; i < net->n_layers; i++) {
        const bp_layer *l = &net->layers[i];
        bytes += (size_t)l->ops->format(l, NULL, 0) + 1;
    }
    char *text = bp_alloc(bytes);
    if (!text)
        return bp_fail(BP_ENOMEM, "no memory for the spec of %d layers", net->n_layers);
    size_t used = 0;
    text[0] = '\0';
    for (int i = 0; i < net->n_layers; i++) {
        const bp_layer *l = &net->layers[i];
        if (i)
            text[used++] = ',';
        used += (size_t)l->ops->format(l, text + used, bytes - used);
    }
    net->spec = text;
    return BP_OK;
}

/* The floats of the buffer block for max_batch columns. */
static size_t buffer_floats(const bp_net *net, int max_batch)
{
    size_t total = bp_round_floats((size_t)bp_net_inputs(net) * max_batch) +
                   bp_round_floats((size_t)bp_net_outputs(net) * max_batch);
    for (int i = 0; i < net->n_layers; i++) {
        const bp_layer *l = &net->layers[i];
        total += 2 * bp_round_floats((size_t)net->sizes[i + 1] * max_batch) +
                 bp_round_floats(l->saved_per_column * (size_t)max_batch) +
                 bp_round_floats(l->work_per_column * (size_t)max_batch);
    }
    return total;
}

/* The memory a plan holds: both arenas and the buffers for max_batch columns, checked against
 * the limit before any of it is allocated. */
static bp_status check_plan_memory(const bp_net *net, int max_batch)
{
    uint64_t bytes = ((uint64_t)2 * net->n_params + net->n_state + buffer_floats(net, max_batch)) *
                     sizeof(float);
    char what[160];
    int used = snprintf(what, sizeof what, "a [");
    for (int i = 0; i <= net->n_layers && used < (int)sizeof what - 24; i++)
        used += snprintf(what + used, sizeof what - (size_t)used, "%s%d", i ? "," : "",
                         net->sizes[i]);
    snprintf(what + used, sizeof what - (size_t)used, "] net planned for %d column%s",
             max_batch, max_batch == 1 ? "" : "s");
    return bp_memory_check(bytes, what);
}

/* (Re)plan the activation, delta and batch buffers for max_batch columns in one block. */
static bp_status plan_buffers(bp_net *net, int max_batch)
{
    bp_status st = check_plan_memory(net, max_batch);
    if (st != BP_OK)
        return st;
    size_t total = buffer_floats(net, max_batch);
    float *block = bp_calloc(total, sizeof(float));
    if (!block)
        return bp_fail(BP_ENOMEM, "no memory for the buffers of a %d-column batch (%zu floats)",
                       max_batch, total);
    bp_free(net->buffers);
    net->buffers = block;
    net->max_batch = max_batch;
    float *p = block;
    for (int i = 0; i < net->n_layers; i++) {
        size_t n = bp_round_floats((size_t)net->sizes[i + 1] * max_batch);
        net->a[i] = p;
        net->d[i] = p + n;
        p += 2 * n;
    }
    net->x_batch = p;
    p += bp_round_floats((size_t)bp_net_inputs(net) * max_batch);
    net->y_batch = p;
    p += bp_round_floats((size_t)bp_net_outputs(net) * max_batch);
    /* What the plans asked for per column (dropout masks, pooling argmax, im2col). */
    for (int i = 0; i < net->n_layers; i++) {
        bp_layer *l = &net->layers[i];
        size_t saved = l->saved_per_column * (size_t)max_batch;
        size_t work = l->work_per_column * (size_t)max_batch;
        l->saved = saved ? p : NULL;
        p += bp_round_floats(saved);
        l->work = work ? p : NULL;
        p += bp_round_floats(work);
        l->columns = max_batch;
    }
    return BP_OK;
}

bp_status bp_net_create(bp_net **out, const bp_net_config *cfg)
{
    if (!out)
        return bp_fail(BP_EINVAL, "bp_net_create: out is NULL");
    *out = NULL;
    bp_status st = check_config(cfg);
    if (st != BP_OK)
        return st;

    bp_net *net = bp_calloc(1, sizeof *net);
    if (!net)
        return bp_fail(BP_ENOMEM, "no memory for a network");
    bp_layer_spec *specs = NULL;
    int L = 0;
    if ((st = make_specs(cfg, &specs, &L)) != BP_OK) {
        bp_free(net);
        return st;
    }
    net->n_layers = L;
    net->cost = cfg->cost;
    net->be = bp_backend_find(cfg->backend ? cfg->backend : "blas");
    net->sizes = bp_calloc((size_t)L + 1, sizeof(int));
    net->layers = bp_calloc((size_t)L, sizeof(bp_layer));
    net->a = bp_calloc((size_t)L, sizeof(float *));
    net->d = bp_calloc((size_t)L, sizeof(float *));
    if (!net->sizes || !net->layers || !net->a || !net->d) {
        bp_free(specs);
        bp_net_free(net);
        return bp_fail(BP_ENOMEM, "no memory for a network of %d layers", L);
    }
    net->input_shaped = cfg->input_channels > 0;
    net->input = net->input_shaped ? (bp_shape){cfg->input_channels, cfg->input_rows,
                                                cfg->input_cols}
                                   : (bp_shape){cfg->sizes[0], 1, 1};
    st = plan_layers(net, specs);
    bp_free(specs);
    if (st == BP_OK)
        st = check_plan_memory(net, cfg->max_batch);
    if (st != BP_OK) {
        bp_net_free(net);
        return st;
    }
    net->params = bp_calloc(net->n_params, sizeof(float));
    net->grads = bp_calloc(net->n_params, sizeof(float));
    net->state = net->n_state ? bp_calloc(net->n_state, sizeof(float)) : NULL;
    net->reduce = net->reduce_stride
                      ? bp_calloc((size_t)BP_TEAM_MAX * net->reduce_stride, sizeof(double))
                      : NULL;
    net->seed = cfg->seed;
    if (!net->params || !net->grads || (net->n_state && !net->state) ||
        (net->reduce_stride && !net->reduce)) {
        bp_net_free(net);
        return bp_fail(BP_ENOMEM, "no memory for %zu parameters", net->n_params);
    }
    size_t offset = 0, state_offset = 0;
    bp_rng rng;
    bp_rng_seed(&rng, cfg->seed);
    for (int i = 0; i < L; i++) {
        bp_layer *l = &net->layers[i];
        l->ops->bind(l, net->params + offset, net->grads + offset);
        offset += l->n_params;
        l->state = l->n_state ? net->state + state_offset : NULL;
        state_offset += l->n_state;
        st = l->ops->init(l, cfg->init, &rng);
        if (st != BP_OK) {
            bp_net_free(net);
            return st;
        }
    }
    st = plan_tensors(net);
    if (st == BP_OK)
        st = plan_spec(net);
    if (st == BP_OK)
        st = plan_buffers(net, cfg->max_batch);
    if (st == BP_OK)
        st = plan_team(net, cfg->threads > 0 ? cfg->threads : bp_get_threads());
    if (st != BP_OK) {
        bp_net_free(net);
        return st;
    }
    *out = net;
    return BP_OK;
}

void bp_net_free(bp_net *net)
{
    if (!net)
        return;
    bp_team_free(net->team);
    bp_free(net->buffers);
    bp_free(net->params);
    bp_free(net->grads);
    bp_free(net->state);
    bp_free(net->reduce);
    bp_free(net->tensors);
    bp_free(net->tensor_names);
    bp_free(net->buffer_table);
    bp_free(net->buffer_names);
    bp_free(net->spec);
    bp_free(net->meta_strings);
    bp_free(net->a);
    bp_free(net->d);
    bp_free(net->layers);
    bp_free(net->sizes);
    bp_free(net);
}

bp_status bp_net_set_backend(bp_net *net, const char *name)
{
    const bp_backend *be = bp_backend_find(name);
    if (!net || !be)
        return bp_fail(BP_EINVAL, "unknown backend '%s' (blas, naive)", name ? name : "(null)");
    net->be = be;
    return BP_OK;
}

const char *bp_net_backend(const bp_net *net) { return net ? net->be->name : NULL; }

size_t bp_net_column_bytes(const bp_net *net)
{
    return buffer_floats(net, 1) * sizeof(float);
}

bp_status bp_net_reserve(bp_net *net, int max_batch)
{
    if (!net || max_batch < 1 || max_batch > MAX_BATCH)
        return bp_fail(BP_EINVAL, "batch size must be 1 to %d, got %d", MAX_BATCH, max_batch);
    return max_batch <= net->max_batch ? BP_OK : plan_buffers(net, max_batch);
}

int bp_net_layers(const bp_net *net) { return net ? net->n_layers : 0; }

int bp_net_size(const bp_net *net, int i)
{
    return net && i >= 0 && i <= net->n_layers ? net->sizes[i] : 0;
}

bp_cost bp_net_cost(const bp_net *net) { return net ? net->cost : BP_COST_COUNT; }

float *bp_net_params(bp_net *net, size_t *n)
{
    if (n)
        *n = net ? net->n_params : 0;
    return net ? net->params : NULL;
}

float *bp_net_grads(bp_net *net, size_t *n)
{
    if (n)
        *n = net ? net->n_params : 0;
    return net ? net->grads : NULL;
}

static bp_layer *layer_at(bp_net *net, int l)
{
    return net && l >= 1 && l <= net->n_layers ? &net->layers[l - 1] : NULL;
}

float *bp_net_weights(bp_net *net, int l, int *rows, int *cols, int *ld)
{
    bp_layer *layer = layer_at(net, l);
    if (layer && layer->ops != &bp_dense_ops)
        layer = NULL; /* only a dense weight is the n_out x n_in matrix this view promises */
    if (rows)
        *rows = layer ? layer->n_out : 0;
    if (cols)
        *cols = layer ? layer->n_in : 0;
    if (ld)
        *ld = layer ? layer->ldw : 0;
    return layer ? layer->w : NULL;
}

float *bp_net_biases(bp_net *net, int l)
{
    bp_layer *layer = layer_at(net, l);
    return layer ? layer->b : NULL;
}

float *bp_net_weight_grads(bp_net *net, int l)
{
    bp_layer *layer = layer_at(net, l);
    return layer && layer->ops == &bp_dense_ops ? layer->gw : NULL;
}

float *bp_net_bias_grads(bp_net *net, int l)
{
    bp_layer *layer = layer_at(net, l);
    return layer ? layer->gb : NULL;
}

/* The pass of a call on columns [c0, c1) of a `batch`-column step by `member` of `team`. */
static bp_pass make_pass(const bp_net *net, bp_pass_mode mode, bp_team *team, int member,
                         int c0, int batch)
{
    return (bp_pass){.mode = mode, .seed = net->seed, .step = net->step, .column0 = c0,
                     .key_column0 = net->key_column0 + (uint32_t)c0,
                     .batch = batch, .team = team, .member = member, .reduce = net->reduce,
                     .reduce_stride = net->reduce_stride};
}

void bp_pass_sum(const bp_pass *pass, double *values, size_t n)
{
    if (!pass->team)
        return;
    int members = bp_team_size(pass->team);
    memcpy(pass->reduce + (size_t)pass->member * pass->reduce_stride, values,
           n * sizeof(double));
    bp_team_barrier(pass->team);
    for (size_t i = 0; i < n; i++) {
        double total = 0.0;
        for (int m = 0; m < members; m++)
            total += pass->reduce[(size_t)m * pass->reduce_stride + i];
        values[i] = total;
    }
    /* No member may write its slot for the next sum before every member has read this one. */
    bp_team_barrier(pass->team);
}

static void forward_columns(bp_net *net, const bp_pass *pass, const float *x, int ldx, int c0,
                            int c1)
{
    const float *in = x + (size_t)c0 * ldx;
    int ldin = ldx;
    for (int i = 0; i < net->n_layers; i++) {
        bp_layer *l = &net->layers[i];
        float *out = net->a[i] + (size_t)c0 * l->n_out;
        l->ops->forward(l, net->be, pass, c1 - c0, in, ldin, out, l->n_out);
        in = out;
        ldin = l->n_out;
    }
}

/* A training step is split across a team only when every member gets at least this many
 * columns: below it, single-threaded GEMMs on slivers of the batch lose to one thread. */
enum { MIN_COLUMNS_PER_MEMBER = 16 };

/* The columns of a batch that member `member` of `size` computes, in the step and the forward
 * pass alike: boundaries on multiples of 8 columns keep each member's GEMM on whole column
 * blocks of OpenBLAS's kernels. */
static void member_columns(int batch, int member, int size, int *c0, int *c1)
{
    bp_team_share(batch, member, size, 8, c0, c1);
}

typedef struct step_job {
    bp_net *net;
    bp_pass_mode mode;
    const float *x, *y;
    int ldx, ldy, batch;
    const bp_grad_target *target;
    const bp_batch_fill *fill;
    /* Backpropagation from the caller's dC_x/dA^L instead of a cost (y is then that gradient,
     * ldy its leading dimension), and dC_x/dX out when dx is not NULL. */
    int from_output_grad;
    float *dx;
    int lddx;
    double cost[BP_TEAM_MAX];  /* each member's share of the summed cost */
} step_job;

/* The column half of a step on columns [c0, c1): gather, forward, cost, BP1 and BP2. Touches
 * only those columns of every buffer and reads the parameters. Returns the columns' cost. */
static double step_columns(const step_job *job, bp_team *team, int member, int c0, int c1)
{
    bp_net *net = job->net;
    const bp_backend *be = net->be;
    int cols = c1 - c0, L = net->n_layers;
    const bp_pass pass = make_pass(net, job->mode, team, member, c0, job->batch);
    if (job->fill)
        job->fill->fill(job->fill->ctx, c0, c1);
    forward_columns(net, &pass, job->x, job->ldx, c0, c1);
    const float *y = job->y + (size_t)c0 * job->ldy;
    bp_layer *top = &net->layers[L - 1];
    const float *a_top = net->a[L - 1] + (size_t)c0 * top->n_out;
    float *d_top = net->d[L - 1] + (size_t)c0 * top->n_out;
    /* The loss phase: its value and BP1, or BP1 from a gradient the caller computed. */
    double cost = 0.0;
    if (job->from_output_grad) {
        bp_output_delta(top->act, top->n_out, cols, a_top, y, job->ldy, d_top);
    } else {
        cost = bp_loss_value(net->cost, top->n_out, cols, a_top, y, job->ldy);
        bp_loss_delta(net->cost, top->act, top->n_out, cols, a_top, y, job->ldy, d_top);
    }
    /* BP2 down to the first hidden layer; the input layer has no delta to propagate into. */
    for (int i = L - 1; i >= 1; i--) {
        const bp_layer *l = &net->layers[i], *below = &net->layers[i - 1];
        const float *in = net->a[i - 1] + (size_t)c0 * l->n_in;
        float *d_in = net->d[i - 1] + (size_t)c0 * l->n_in;
        l->ops->backward_data(l, be, &pass, cols, in, l->n_in,
                              net->a[i] + (size_t)c0 * l->n_out,
                              l->n_out, net->d[i] + (size_t)c0 * l->n_out, l->n_out, d_in,
                              l->n_in);
        /* dC/dA of the layer below becomes its dC/dZ: its activation, its derivative. */
        below->ops->act_backward(below, be, cols, in, below->n_out, d_in, below->n_out);
    }
    /* dC_x/dX = W1^T D1 when asked: the input has no activation to differentiate. A first
     * layer whose BP4 needs its own data pass (lstm's backpropagation through time) gets it
     * either way. */
    if (job->dx || net->layers[0].params_need_data_pass) {
        const bp_layer *first = &net->layers[0];
        first->ops->backward_data(first, be, &pass, cols, job->x + (size_t)c0 * job->ldx,
                                  job->ldx,
                                  net->a[0] + (size_t)c0 * first->n_out, first->n_out,
                                  net->d[0] + (size_t)c0 * first->n_out, first->n_out,
                                  job->dx ? job->dx + (size_t)c0 * job->lddx : NULL,
                                  job->lddx);
    }
    return cost;
}

/* The parameter half: BP3 and BP4 into the target, for part `part` of `parts` of every layer,
 * over all columns. */
static void step_params(const step_job *job, int part, int parts)
{
    bp_net *net = job->net;
    for (int i = net->n_layers - 1; i >= 0; i--) {
        bp_layer *l = &net->layers[i];
        const float *in = i == 0 ? job->x : net->a[i - 1];
        int ldin = i == 0 ? job->ldx : l->n_in;
        l->ops->backward_params(l, net->be, job->batch, in, ldin, net->d[i], l->n_out,
                                job->target, part, parts);
        if (parts == 1 && net->params_done)
            net->params_done(net->params_done_ctx, i);
    }
}

static void step_member(void *arg, int member, int size)
{
    step_job *job = arg;
    int c0, c1;
    member_columns(job->batch, member, size, &c0, &c1);
    /* Every member gets columns (step_team), so each makes the same bp_pass_sum calls. */
    job->cost[member] = step_columns(job, job->net->team, member, c0, c1);
    bp_team_barrier(job->net->team);
    step_params(job, member, size);
}

/* The team for a step of `batch` columns, or NULL to run it on the calling thread: below
 * MIN_COLUMNS_PER_MEMBER columns each, one thread with OpenBLAS's own choice wins. */
static bp_team *step_team(const bp_net *net, int batch)
{
    if (!net->team || batch < bp_team_size(net->team) * MIN_COLUMNS_PER_MEMBER)
        return NULL;
    return net->team;
}

/* Make the team for `threads` (part of the plan: a step never creates threads). On failure the
 * net keeps what it had. */
static bp_status plan_team(bp_net *net, int threads)
{
    int members = threads < BP_TEAM_MAX ? threads : BP_TEAM_MAX;
    bp_team *team = NULL;
    if (members >= 2) {
        bp_status st = bp_team_create(&team, members);
        if (st != BP_OK)
            return st;
    }
    bp_team_free(net->team);
    net->team = team;
    net->threads = threads;
    return BP_OK;
}

bp_status bp_net_set_threads(bp_net *net, int n)
{
    if (!net)
        return bp_fail(BP_EINVAL, "bp_net_set_threads: net is NULL");
    return plan_team(net, n > 0 ? n : bp_get_threads());
}

int bp_net_threads(const bp_net *net) { return net ? net->threads : 0; }

typedef struct forward_job {
    bp_net *net;
    const float *x;
    int ldx, batch;
} forward_job;

static void forward_member(void *arg, int member, int size)
{
    forward_job *job = arg;
    int c0, c1;
    member_columns(job->batch, member, size, &c0, &c1);
    const bp_pass pass = make_pass(job->net, BP_PASS_INFER, job->net->team, member, c0,
                                   job->batch);
    if (c1 > c0)
        forward_columns(job->net, &pass, job->x, job->ldx, c0, c1);
}

/* Split like a training step, so evaluating between epochs never wakes OpenBLAS's own threads
 * (which then spin for a tenth of a second and take a core from the team). */
void bp_net_forward_unchecked(bp_net *net, const float *x, int ldx, int batch)
{
    /* Subnormals flushed for the pass, on this thread (the team's members flush their own). */
    bp_fpenv fpenv = bp_fpenv_flush();
    bp_team *team = step_team(net, batch);
    if (!team) {
        int budget = bp_blas_set_thread_budget(net->threads);
        const bp_pass pass = make_pass(net, BP_PASS_INFER, NULL, 0, 0, batch);
        forward_columns(net, &pass, x, ldx, 0, batch);
        bp_blas_set_thread_budget(budget);
    } else {
        forward_job job = {net, x, ldx, batch};
        bp_team_run(team, forward_member, &job);
    }
    bp_fpenv_restore(fpenv);
}

/* Run a prepared step on the net's team, or on this thread; returns the summed cost. */
static double run_step(step_job *job)
{
    bp_net *net = job->net;
    int batch = job->batch;
    /* Saturated sigmoids make subnormals, and arithmetic on them is ~100x slower on x86; they
     * cannot change a parameter (core/fpenv.h), so the step flushes them and then gives the
     * caller back its own floating-point environment. */
    bp_fpenv fpenv = bp_fpenv_flush();
    double cost = 0.0;
    bp_team *team = step_team(net, batch);
    if (!team) {
        /* The net's thread count bounds OpenBLAS's threads in its GEMMs. */
        int budget = bp_blas_set_thread_budget(net->threads);
        cost = step_columns(job, NULL, 0, 0, batch);
        step_params(job, 0, 1);
        bp_blas_set_thread_budget(budget);
    } else {
        bp_team_run(team, step_member, job);
        for (int m = 0; m < bp_team_size(team); m++)
            cost += job->cost[m];
    }
    bp_fpenv_restore(fpenv);
    return cost;
}

double bp_net_backprop_pass(bp_net *net, bp_pass_mode mode, const float *x, int ldx,
                            const float *y, int ldy, int batch, const bp_grad_target *target,
                            const bp_batch_fill *fill)
{
    static const bp_grad_target mean_gradient = {BP_TARGET_GRADS, 1.0f, 0.0f};
    step_job job = {.net = net, .mode = mode, .x = x, .y = y, .ldx = ldx, .ldy = ldy,
                    .batch = batch, .target = target ? target : &mean_gradient, .fill = fill};
    return run_step(&job);
}

double bp_net_backprop_unchecked(bp_net *net, const float *x, int ldx, const float *y, int ldy,
                                 int batch, const bp_grad_target *target,
                                 const bp_batch_fill *fill)
{
    return bp_net_backprop_pass(net, BP_PASS_TRAIN, x, ldx, y, ldy, batch, target, fill);
}

static size_t count_nonfinite(const float *p, size_t n)
{
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        bad += !isfinite(p[i]);
    return bad;
}

/* The NaN or infinite parameters of layer `layer` (1-based) and the parameters it has, from
 * the tensor table: any layer kind, and none of the arena's padding. */
static size_t layer_nonfinite(const bp_net *net, int layer, size_t *total)
{
    size_t bad = 0;
    *total = 0;
    for (int t = 0; t < net->n_tensors; t++) {
        const bp_tensor_info *info = &net->tensors[t];
        if (info->layer != layer)
            continue;
        bad += count_nonfinite(net->params + info->offset, info->count);
        *total += info->count;
    }
    return bad;
}

int bp_net_nonfinite_layer(const bp_net *net, size_t *count)
{
    for (int i = 1; i <= net->n_layers; i++) {
        size_t total, bad = layer_nonfinite(net, i, &total);
        if (bad) {
            if (count)
                *count = bad;
            return i;
        }
    }
    if (count)
        *count = 0;
    return 0;
}

bp_status bp_net_diverged(const bp_net *net, const char *where, double cost, float eta)
{
    char rate[48] = "";
    if (eta > 0.0f)
        snprintf(rate, sizeof rate, " (learning rate %g)", (double)eta);
    /* Every layer that lost parameters: by the time a step's cost shows it, its update has
     * carried the NaN down through BP2, so the first such layer is not always the origin. */
    char layers[256] = "";
    size_t used = 0;
    for (int i = 1; i <= net->n_layers; i++) {
        size_t total, bad = layer_nonfinite(net, i, &total);
        if (!bad || used >= sizeof layers)
            continue;
        int w = snprintf(layers + used, sizeof layers - used, "%slayer %d has %zu of %zu",
                         used ? ", " : "", i, bad, total);
        used += w > 0 ? (size_t)w : 0;
    }
    if (used)
        return bp_fail(BP_EDIVERGED, "%s: parameters became NaN or infinite (%s; cost %g)%s",
                       where, layers, cost, rate);
    /* Finite parameters with a non-finite cost: the inputs or the outputs overflowed. */
    return bp_fail(BP_EDIVERGED, "%s: the cost is %g with finite parameters (an output or an "
                   "input is NaN or infinite)%s", where, cost, rate);
}

static bp_status check_batch(const bp_net *net, const float *x, int ldx, int batch)
{
    if (!net || !x)
        return bp_fail(BP_EINVAL, "network or input is NULL");
    if (batch < 1 || batch > MAX_BATCH)
        return bp_fail(BP_EINVAL, "batch size must be 1 to %d, got %d", MAX_BATCH, batch);
    if (ldx < bp_net_inputs(net))
        return bp_fail(BP_EINVAL, "the input has leading dimension %d, the network expects %d "
                       "inputs per sample", ldx, bp_net_inputs(net));
    return BP_OK;
}

bp_status bp_net_forward(bp_net *net, const float *x, int ldx, int batch, float *out, int ldout)
{
    bp_status st = check_batch(net, x, ldx, batch);
    if (st != BP_OK)
        return st;
    int n_out = bp_net_outputs(net);
    if (out && ldout < n_out)
        return bp_fail(BP_EINVAL, "output leading dimension %d is below the %d outputs", ldout,
                       n_out);
    if ((st = bp_net_reserve(net, batch)) != BP_OK)
        return st;
    bp_net_forward_unchecked(net, x, ldx, batch);
    if (out)
        for (int j = 0; j < batch; j++)
            memcpy(out + (size_t)j * ldout, bp_net_output(net) + (size_t)j * n_out,
                   sizeof(float) * (size_t)n_out);
    return BP_OK;
}

static bp_status check_targets(const bp_net *net, const float *y, int ldy, int batch)
{
    if (!y)
        return bp_fail(BP_EINVAL, "targets are NULL");
    if (ldy < bp_net_outputs(net))
        return bp_fail(BP_EINVAL, "targets have leading dimension %d, the network has %d outputs",
                       ldy, bp_net_outputs(net));
    if (batch > net->max_batch)
        return bp_fail(BP_EINVAL, "batch of %d exceeds the planned %d (call bp_net_reserve)",
                       batch, net->max_batch);
    return BP_OK;
}

bp_status bp_net_check_step(const bp_net *net, const float *x, int ldx, const float *y,
                            int ldy, int batch)
{
    bp_status st = check_batch(net, x, ldx, batch);
    return st == BP_OK ? check_targets(net, y, ldy, batch) : st;
}

bp_status bp_net_backward(bp_net *net, const float *x, int ldx, const float *dc_da, int ldg,
                          int batch, float *dc_dx, int lddx)
{
    bp_status st = bp_net_check_step(net, x, ldx, dc_da, ldg, batch);
    if (st != BP_OK)
        return st;
    if (dc_dx && lddx < bp_net_inputs(net))
        return bp_fail(BP_EINVAL, "dc_dx has leading dimension %d, below the %d inputs", lddx,
                       bp_net_inputs(net));
    static const bp_grad_target mean_gradient = {BP_TARGET_GRADS, 1.0f, 0.0f};
    step_job job = {.net = net, .mode = BP_PASS_TRAIN, .x = x, .y = dc_da, .ldx = ldx,
                    .ldy = ldg, .batch = batch, .target = &mean_gradient,
                    .from_output_grad = 1, .dx = dc_dx,
                    .lddx = lddx};
    run_step(&job);
    return BP_OK;
}

bp_status bp_net_gradient(bp_net *net, const float *x, int ldx, const float *y, int ldy,
                          int batch, double *cost)
{
    bp_status st = bp_net_check_step(net, x, ldx, y, ldy, batch);
    if (st != BP_OK)
        return st;
    double c = bp_net_backprop_unchecked(net, x, ldx, y, ldy, batch, NULL, NULL) / batch;
    if (cost)
        *cost = c;
    return isfinite(c) ? BP_OK : bp_net_diverged(net, "bp_net_gradient", c, 0.0f);
}

/* ---- the tensor table ------------------------------------------------------------------- */

/* A layer's entries of the parameter table or (buffers set) of the buffer table. */
static int layer_entries(const bp_layer *l, int buffers, bp_tensor_info *out, int max)
{
    int (*hook)(const bp_layer *, bp_tensor_info *, int) =
        buffers ? l->ops->buffers : l->ops->tensors;
    return hook ? hook(l, out, max) : 0;
}

/* Build a table from the layers' own descriptions: each layer's entries get the layer's arena
 * offset (the one bind was given, or its state block's: the sum of the planned params, or
 * state, below it), its number and the "layers.<p>." prefix. Sizes are taken first, so the
 * table and its names are one allocation each, made here and never again. */
static bp_status plan_table(bp_net *net, int buffers, bp_tensor_info **table, int *count,
                            char **names)
{
    const char *what = buffers ? "buffers" : "tensors";
    int total = 0;
    for (int i = 0; i < net->n_layers; i++)
        total += layer_entries(&net->layers[i], buffers, NULL, 0);
    if (total == 0)
        return BP_OK;
    bp_tensor_info *t = *table = bp_calloc((size_t)total, sizeof **table);
    if (!t)
        return bp_fail(BP_ENOMEM, "no memory for a table of %d %s", total, what);
    size_t base = 0, name_bytes = 0;
    int n = 0;
    for (int i = 0; i < net->n_layers; i++) {
        const bp_layer *l = &net->layers[i];
        int k = layer_entries(l, buffers, t + n, total - n);
        for (int e = n; e < n + k; e++) {
            t[e].layer = i + 1;
            t[e].offset += base;
            name_bytes += (size_t)snprintf(NULL, 0, "layers.%d.%s", i, t[e].name) + 1;
        }
        n += k;
        base += buffers ? l->n_state : l->n_params;
    }
    char *at = *names = bp_alloc(name_bytes);
    if (!at)
        return bp_fail(BP_ENOMEM, "no memory for the names of %d %s", total, what);
    for (int e = 0; e < total; e++) {
        int len = snprintf(at, name_bytes - (size_t)(at - *names), "layers.%d.%s",
                           t[e].layer - 1, t[e].name);
        t[e].name = at;
        at += len + 1;
    }
    *count = total;
    return BP_OK;
}

static bp_status plan_tensors(bp_net *net)
{
    bp_status st = plan_table(net, 0, &net->tensors, &net->n_tensors, &net->tensor_names);
    return st == BP_OK ? plan_table(net, 1, &net->buffer_table, &net->n_buffers, &net->buffer_names)
                       : st;
}

int bp_net_buffer_count(const bp_net *net) { return net ? net->n_buffers : 0; }

bp_status bp_net_buffer(const bp_net *net, int index, bp_tensor_info *out)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (!net || !out)
        return bp_fail(BP_EINVAL, "bp_net_buffer: %s is NULL", net ? "out" : "net");
    if (index < 0 || index >= net->n_buffers)
        return bp_fail(BP_EINVAL, "buffer %d does not exist (the net has %d)", index,
                       net->n_buffers);
    *out = net->buffer_table[index];
    return BP_OK;
}

float *bp_net_state(bp_net *net, size_t *n)
{
    if (n)
        *n = net ? net->n_state : 0;
    return net && net->n_state ? net->state : NULL;
}

const char *bp_net_spec(const bp_net *net) { return net ? net->spec : NULL; }

void bp_net_input_shape(const bp_net *net, int *channels, int *rows, int *cols)
{
    int shaped = net && net->input_shaped;
    if (channels)
        *channels = shaped ? net->input.c : 0;
    if (rows)
        *rows = shaped ? net->input.h : 0;
    if (cols)
        *cols = shaped ? net->input.w : 0;
}

int bp_net_tensor_count(const bp_net *net) { return net ? net->n_tensors : 0; }

bp_status bp_net_tensor(const bp_net *net, int index, bp_tensor_info *out)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (!net || !out)
        return bp_fail(BP_EINVAL, "bp_net_tensor: %s is NULL", net ? "out" : "net");
    if (index < 0 || index >= net->n_tensors)
        return bp_fail(BP_EINVAL, "tensor %d does not exist (the net has %d)", index,
                       net->n_tensors);
    *out = net->tensors[index];
    return BP_OK;
}

int bp_net_tensor_find(const bp_net *net, const char *name)
{
    for (int t = 0; net && name && t < net->n_tensors; t++)
        if (strcmp(net->tensors[t].name, name) == 0)
            return t;
    return -1;
}

static const char *const role_names[] = {
    [BP_ROLE_WEIGHT] = "weight",
    [BP_ROLE_BIAS] = "bias",
    [BP_ROLE_SCALE] = "scale",
    [BP_ROLE_SHIFT] = "shift",
    [BP_ROLE_RUNNING_MEAN] = "running_mean",
    [BP_ROLE_RUNNING_VAR] = "running_var",
};
_Static_assert(sizeof role_names / sizeof *role_names == BP_ROLE_COUNT,
               "every tensor role needs a name");

const char *bp_tensor_role_name(bp_tensor_role role)
{
    return (unsigned)role < BP_ROLE_COUNT ? role_names[role] : "unknown";
}
