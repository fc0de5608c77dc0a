/*
 * optim.h - optimisers: they read the gradient arena and write the parameter arena, one loop
 * over each, so they never need to know the layers.
 */
#ifndef BP_OPTIM_H
#define BP_OPTIM_H

#include "net/net.h"

/* One plain SGD step, params -= eta * (mean gradient), which is Nielsen's
 * W -= eta/B sum_x dC_x/dW. Plain SGD keeps no state, so the update is fused into BP4's GEMM
 * and the gradient arena is not written. `fill` as for bp_net_backprop_unchecked. Returns the summed cost before the update. */
double bp_sgd_step_unchecked(bp_net *net, const float *x, int ldx, const float *y, int ldy,
                             int batch, float eta, const bp_batch_fill *fill);

#endif
