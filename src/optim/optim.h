/*
 * optim.h - optimisers: they read the gradient arena and write the parameter arena, one loop
 * over each, so they never need to know the layers.
 */
#ifndef BP_OPTIM_H
#define BP_OPTIM_H

#include "net/net.h"

/* Plain SGD: params -= eta * grads (the grads already hold the batch mean, so this is Nielsen's
 * W -= eta/B sum_x dC_x/dW). */
void bp_sgd_update(bp_net *net, float eta);

#endif
