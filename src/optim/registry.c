/* registry.c - the optimiser kinds: their tables and names, the defaults, the per-step setup. */
#include <math.h>
#include <string.h>

#include "optim/optim.h"

static const bp_optimizer_ops *const tables[] = {
    [BP_OPT_SGD] = &bp_sgd_ops,         [BP_OPT_MOMENTUM] = &bp_momentum_ops,
    [BP_OPT_NESTEROV] = &bp_nesterov_ops, [BP_OPT_ADAM] = &bp_adam_ops,
    [BP_OPT_ADAMW] = &bp_adamw_ops,     [BP_OPT_RMSPROP] = &bp_rmsprop_ops,
};
_Static_assert(sizeof tables / sizeof *tables == BP_OPT_COUNT, "every optimiser needs a table");

const bp_optimizer_ops *bp_optimizer_ops_of(bp_optimizer_kind kind)
{
    return (int)kind >= 0 && kind < BP_OPT_COUNT ? tables[kind] : NULL;
}

bp_status bp_optimizer_parse(const char *name, bp_optimizer_kind *out)
{
    for (int k = 0; name && out && k < BP_OPT_COUNT; k++)
        if (strcmp(tables[k]->name, name) == 0) {
            *out = (bp_optimizer_kind)k;
            return BP_OK;
        }
    return bp_fail(BP_EINVAL, "unknown optimizer '%s' (sgd, momentum, nesterov, adam, adamw, "
                   "rmsprop)", name ? name : "(null)");
}

const char *bp_optimizer_name(bp_optimizer_kind k)
{
    const bp_optimizer_ops *ops = bp_optimizer_ops_of(k);
    return ops ? ops->name : "unknown";
}

int bp_optimizer_never_fuse(const bp_optimizer *opt, bp_grad_target *target)
{
    (void)opt, (void)target;
    return 0;
}

void bp_optimizer_init(bp_optimizer *opt, const bp_optimizer_ops *ops, float eta)
{
    *opt = (bp_optimizer){.ops = ops, .eta = eta, .mu = 0.9f, .beta1 = 0.9f, .beta2 = 0.999f,
                          .eps = 1e-8f, .grad_scale = 1.0f, .t = 0, .correction1 = 1.0,
                          .correction2 = 1.0};
}

void bp_optimizer_begin_step(bp_optimizer *opt, uint64_t t)
{
    opt->t = t;
    opt->grad_scale = 1.0f;
    /* b^t underflows to 0 long before t overflows a double's exponent, so the corrections go
     * to exactly 1, as they should; t = 0 would divide by zero and is not a step. */
    double td = t ? (double)t : 1.0;
    opt->correction1 = 1.0 / (1.0 - pow((double)opt->beta1, td));
    opt->correction2 = 1.0 / (1.0 - pow((double)opt->beta2, td));
}
