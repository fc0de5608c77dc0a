/*
 * loss.h - the costs: their value and BP1, the output delta D^L = dC_x/dZ^L.
 */
#ifndef BP_LOSS_H
#define BP_LOSS_H

#include "backprop.h"

/* Whether `cost` is defined for outputs of `act` (cross-entropy and log-likelihood take logs
 * of a and 1 - a, so they need outputs in (0,1)). On false, sets the error message. */
bp_status bp_loss_check(bp_cost cost, bp_activation act);

/* Sum over the batch of C_x, accumulated in double. A: rows x cols, ld = rows; Y: ld = ldy. */
double bp_loss_value(bp_cost cost, int rows, int cols, const float *a, const float *y, int ldy);

/* BP1: D = dC_x/dZ per sample (not divided by the batch size). For the matched pairs
 * (sigmoid + cross-entropy, linear + quadratic) this is A - Y; for softmax + log-likelihood
 * A (.) colsum(Y) - Y, which is A - Y for one-hot targets;
 * otherwise grad_A C (.) sigma'(Z), with softmax's full Jacobian
 * D_i = a_i (g_i - sum_j a_j g_j). A, D: rows x cols, ld = rows; Y: ld = ldy. */
void bp_loss_delta(bp_cost cost, bp_activation act, int rows, int cols, const float *a,
                   const float *y, int ldy, float *d);

/* The output activation's half of BP1: D = dC/dZ from G = dC/dA (rows x cols, ld = ldg; g
 * may be d itself with ldg = rows): G (.) sigma'(Z) through A, or softmax's Jacobian
 * D_k = a_k (g_k - sum_i a_i g_i). It is BP1 for a cost the caller differentiated itself. */
void bp_output_delta(bp_activation act, int rows, int cols, const float *a, const float *g,
                     int ldg, float *d);

#endif
