/* names.c - the names of the public enums, one table each, for parsing and printing. */
#include <string.h>

#include "core/core.h"

static const char *const activation_names[] = {
    [BP_ACT_SIGMOID] = "sigmoid", [BP_ACT_TANH] = "tanh",       [BP_ACT_RELU] = "relu",
    [BP_ACT_LINEAR] = "linear",   [BP_ACT_SOFTMAX] = "softmax",
};
_Static_assert(sizeof activation_names / sizeof *activation_names == BP_ACT_COUNT,
               "every activation needs a name");

static const char *const cost_names[] = {
    [BP_COST_QUADRATIC] = "quadratic",
    [BP_COST_CROSS_ENTROPY] = "cross-entropy",
    [BP_COST_LOG_LIKELIHOOD] = "log-likelihood",
};
_Static_assert(sizeof cost_names / sizeof *cost_names == BP_COST_COUNT, "every cost needs a name");

static const char *const init_names[] = {
    [BP_INIT_GAUSSIAN] = "gaussian", [BP_INIT_LARGE] = "large",
    [BP_INIT_XAVIER] = "xavier",     [BP_INIT_HE] = "he",
    [BP_INIT_ORTHOGONAL] = "orthogonal",
};
_Static_assert(sizeof init_names / sizeof *init_names == BP_INIT_COUNT, "every init needs a name");

static int lookup(const char *const *names, int count, const char *name)
{
    for (int i = 0; name && i < count; i++)
        if (strcmp(names[i], name) == 0)
            return i;
    return -1;
}

static const char *name_of(const char *const *names, int count, int value)
{
    return value >= 0 && value < count ? names[value] : "unknown";
}

bp_status bp_activation_parse(const char *name, bp_activation *out)
{
    int v = lookup(activation_names, BP_ACT_COUNT, name);
    if (v < 0 || !out)
        return bp_fail(BP_EINVAL, "unknown activation '%s' (sigmoid, tanh, relu, linear, softmax)",
                       name ? name : "(null)");
    *out = (bp_activation)v;
    return BP_OK;
}

bp_status bp_cost_parse(const char *name, bp_cost *out)
{
    int v = lookup(cost_names, BP_COST_COUNT, name);
    if (v < 0 || !out)
        return bp_fail(BP_EINVAL, "unknown cost '%s' (quadratic, cross-entropy, log-likelihood)",
                       name ? name : "(null)");
    *out = (bp_cost)v;
    return BP_OK;
}

bp_status bp_init_parse(const char *name, bp_init *out)
{
    int v = lookup(init_names, BP_INIT_COUNT, name);
    if (v < 0 || !out)
        return bp_fail(BP_EINVAL,
                       "unknown initialisation '%s' (gaussian, large, xavier, he, orthogonal)",
                       name ? name : "(null)");
    *out = (bp_init)v;
    return BP_OK;
}

const char *bp_activation_name(bp_activation a) { return name_of(activation_names, BP_ACT_COUNT, a); }
const char *bp_cost_name(bp_cost c) { return name_of(cost_names, BP_COST_COUNT, c); }
const char *bp_init_name(bp_init i) { return name_of(init_names, BP_INIT_COUNT, i); }
