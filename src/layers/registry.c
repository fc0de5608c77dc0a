/* registry.c - the layer kinds a spec string may name ("dense:100:relu"). Adding a kind is a
 * file with its ops table and one line here. */
#include <stdio.h>
#include <string.h>

#include "layers/layer.h"

static const bp_layer_ops *const kinds[] = {
    &bp_dense_ops,
    &bp_dropout_ops,
    &bp_batchnorm_ops,
    &bp_conv_ops,
    &bp_maxpool_ops,
    &bp_avgpool_ops,
    &bp_lstm_ops,
    &bp_gru_ops,
};

bp_status bp_layer_spec_parse(const char *text, bp_layer_spec *out)
{
    if (!text || !out)
        return bp_fail(BP_EINVAL, "layer spec: NULL argument");
    const char *colon = strchr(text, ':');
    size_t kind_len = colon ? (size_t)(colon - text) : strlen(text);
    for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++) {
        const bp_layer_ops *ops = kinds[i];
        if (strlen(ops->name) != kind_len || strncmp(ops->name, text, kind_len) != 0)
            continue;
        *out = (bp_layer_spec){.ops = ops};
        bp_status st = ops->parse(colon ? colon + 1 : "", out);
        if (st != BP_OK)
            return bp_fail_context(st, "layer spec '%s'", text);
        return BP_OK;
    }
    char known[128] = "";
    for (size_t i = 0, used = 0; i < sizeof kinds / sizeof *kinds && used < sizeof known; i++)
        used += (size_t)snprintf(known + used, sizeof known - used, "%s%s", i ? ", " : "",
                                 kinds[i]->name);
    return bp_fail(BP_EINVAL, "layer spec '%s': unknown kind '%.*s' (known: %s)", text,
                   (int)kind_len, text, known);
}
