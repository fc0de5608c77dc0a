/* sgd.c - the plain stochastic gradient descent update over the whole arena. */
#include "optim/optim.h"

void bp_sgd_update(bp_net *net, float eta)
{
    net->be->axpy(net->n_params, -eta, net->grads, net->params);
}
