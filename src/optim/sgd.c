/* sgd.c - plain stochastic gradient descent, fused into backpropagation. */
#include "optim/optim.h"

double bp_sgd_step_unchecked(bp_net *net, const float *x, int ldx, const float *y, int ldy,
                             int batch, float eta, const bp_batch_fill *fill)
{
    const bp_fused_step step = {.scale = -eta, .decay = 1.0f};
    return bp_net_backprop_unchecked(net, x, ldx, y, ldy, batch, &step, fill);
}
