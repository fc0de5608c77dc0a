/*
 * net.c - building a network (arenas, views, planned buffers), the forward pass and
 * backpropagation BP1-BP4 over a whole mini-batch.
 */
#include <math.h>
#include <string.h>

#include "loss/loss.h"
#include "net/net.h"
#include "optim/optim.h"

/* Generous limits: they exist so a typo (or a hostile model file later) is refused before it
 * turns into a huge allocation. */
enum { MAX_LAYERS = 64, MAX_WIDTH = 1 << 20, MAX_BATCH = 1 << 20 };

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
    if (cfg->n_sizes < 2 || cfg->n_sizes > MAX_LAYERS + 1)
        return bp_fail(BP_EINVAL, "a network needs 2 to %d layer sizes, got %d", MAX_LAYERS + 1,
                       cfg->n_sizes);
    for (int i = 0; i < cfg->n_sizes; i++)
        if (cfg->sizes[i] < 1 || cfg->sizes[i] > MAX_WIDTH)
            return bp_fail(BP_EINVAL, "layer %d has %d neurons (allowed: 1 to %d)", i,
                           cfg->sizes[i], MAX_WIDTH);
    if ((unsigned)cfg->hidden >= BP_ACT_COUNT || (unsigned)cfg->output >= BP_ACT_COUNT)
        return bp_fail(BP_EINVAL, "unknown activation");
    if (cfg->hidden == BP_ACT_SOFTMAX && cfg->n_sizes > 2)
        return bp_fail(BP_EINVAL, "softmax is an output activation, not a hidden one");
    if ((unsigned)cfg->init >= BP_INIT_COUNT)
        return bp_fail(BP_EINVAL, "unknown initialisation %d", (int)cfg->init);
    if (cfg->max_batch < 1 || cfg->max_batch > MAX_BATCH)
        return bp_fail(BP_EINVAL, "max_batch must be 1 to %d, got %d", MAX_BATCH, cfg->max_batch);
    if (cfg->backend && !bp_backend_find(cfg->backend))
        return bp_fail(BP_EINVAL, "unknown backend '%s' (blas, naive)", cfg->backend);
    return bp_loss_check(cfg->cost, cfg->output);
}

/* (Re)plan the activation, delta and batch buffers for max_batch columns in one block. */
static bp_status plan_buffers(bp_net *net, int max_batch)
{
    size_t total = bp_round_floats((size_t)bp_net_inputs(net) * max_batch) +
                   bp_round_floats((size_t)bp_net_outputs(net) * max_batch);
    for (int i = 0; i < net->n_layers; i++)
        total += 2 * bp_round_floats((size_t)net->sizes[i + 1] * max_batch);
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
    int L = cfg->n_sizes - 1;
    net->n_layers = L;
    net->cost = cfg->cost;
    net->be = bp_backend_find(cfg->backend ? cfg->backend : "blas");
    net->sizes = bp_calloc((size_t)cfg->n_sizes, sizeof(int));
    net->layers = bp_calloc((size_t)L, sizeof(bp_layer));
    net->a = bp_calloc((size_t)L, sizeof(float *));
    net->d = bp_calloc((size_t)L, sizeof(float *));
    if (!net->sizes || !net->layers || !net->a || !net->d) {
        bp_net_free(net);
        return bp_fail(BP_ENOMEM, "no memory for a network of %d layers", L);
    }
    memcpy(net->sizes, cfg->sizes, sizeof(int) * (size_t)cfg->n_sizes);

    for (int i = 0; i < L; i++) {
        bp_layer *l = &net->layers[i];
        l->ops = &bp_dense_ops;
        l->n_in = net->sizes[i];
        l->n_out = net->sizes[i + 1];
        l->act = i == L - 1 ? cfg->output : cfg->hidden;
        net->n_params += l->ops->param_count(l);
    }
    net->params = bp_calloc(net->n_params, sizeof(float));
    net->grads = bp_calloc(net->n_params, sizeof(float));
    if (!net->params || !net->grads) {
        bp_net_free(net);
        return bp_fail(BP_ENOMEM, "no memory for %zu parameters", net->n_params);
    }
    size_t offset = 0;
    bp_rng rng;
    bp_rng_seed(&rng, cfg->seed);
    for (int i = 0; i < L; i++) {
        bp_layer *l = &net->layers[i];
        l->ops->bind(l, net->params + offset, net->grads + offset);
        offset += l->ops->param_count(l);
        st = l->ops->init(l, cfg->init, &rng);
        if (st != BP_OK) {
            bp_net_free(net);
            return st;
        }
    }
    st = plan_buffers(net, cfg->max_batch);
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
    bp_free(net->buffers);
    bp_free(net->params);
    bp_free(net->grads);
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

bp_cost bp_net_cost(const bp_net *net) { return net->cost; }

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
    return layer ? layer->gw : NULL;
}

float *bp_net_bias_grads(bp_net *net, int l)
{
    bp_layer *layer = layer_at(net, l);
    return layer ? layer->gb : NULL;
}

void bp_net_forward_unchecked(bp_net *net, const float *x, int ldx, int batch)
{
    const float *in = x;
    int ldin = ldx;
    for (int i = 0; i < net->n_layers; i++) {
        bp_layer *l = &net->layers[i];
        l->ops->forward(l, net->be, batch, in, ldin, net->a[i], l->n_out);
        in = net->a[i];
        ldin = l->n_out;
    }
}

double bp_net_backprop_unchecked(bp_net *net, const float *x, int ldx, const float *y, int ldy,
                                 int batch, const bp_fused_step *step)
{
    bp_net_forward_unchecked(net, x, ldx, batch);
    int L = net->n_layers;
    bp_layer *out = &net->layers[L - 1];
    double cost = bp_loss_value(net->cost, out->n_out, batch, net->a[L - 1], y, ldy);
    /* BP1 */
    bp_loss_delta(net->cost, out->act, out->n_out, batch, net->a[L - 1], y, ldy, net->d[L - 1]);
    for (int i = L - 1; i >= 0; i--) {
        bp_layer *l = &net->layers[i];
        const float *in = i == 0 ? x : net->a[i - 1];
        int ldin = i == 0 ? ldx : l->n_in;
        /* The input layer has no delta to propagate into: skip its BP2. */
        float *d_in = i == 0 ? NULL : net->d[i - 1];
        l->ops->backward(l, net->be, batch, in, ldin, net->d[i], l->n_out, d_in, l->n_in, step);
        if (d_in) {
            const bp_layer *below = &net->layers[i - 1];
            net->be->act_bwd_hadamard(below->act, below->n_out, batch, net->a[i - 1],
                                      below->n_out, d_in, below->n_out);
        }
    }
    return cost;
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

bp_status bp_net_gradient(bp_net *net, const float *x, int ldx, const float *y, int ldy,
                          int batch, double *cost)
{
    bp_status st = check_batch(net, x, ldx, batch);
    if (st == BP_OK)
        st = check_targets(net, y, ldy, batch);
    if (st != BP_OK)
        return st;
    double c = bp_net_backprop_unchecked(net, x, ldx, y, ldy, batch, NULL) / batch;
    if (cost)
        *cost = c;
    return BP_OK;
}

bp_status bp_net_sgd_step(bp_net *net, const float *x, int ldx, const float *y, int ldy,
                          int batch, float eta, double *cost)
{
    bp_status st = check_batch(net, x, ldx, batch);
    if (st == BP_OK)
        st = check_targets(net, y, ldy, batch);
    if (st != BP_OK)
        return st;
    if (!(eta > 0.0f) || !isfinite(eta))
        return bp_fail(BP_EINVAL, "learning rate must be positive and finite, got %g", eta);
    double c = bp_sgd_step_unchecked(net, x, ldx, y, ldy, batch, eta) / batch;
    if (cost)
        *cost = c;
    return BP_OK;
}
