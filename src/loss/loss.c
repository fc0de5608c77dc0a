/* loss.c - quadratic, cross-entropy and log-likelihood: the cost value and BP1. */
#include <math.h>

#include "core/core.h"
#include "kernels/backend.h"
#include "loss/loss.h"

bp_status bp_loss_check(bp_cost cost, bp_activation act)
{
    if ((unsigned)cost >= BP_COST_COUNT)
        return bp_fail(BP_EINVAL, "unknown cost %d", (int)cost);
    if (cost == BP_COST_QUADRATIC)
        return BP_OK;
    if (act == BP_ACT_SIGMOID || act == BP_ACT_SOFTMAX)
        return BP_OK;
    return bp_fail(BP_EINVAL, "the %s cost needs outputs in (0,1) (sigmoid or softmax), not %s",
                   bp_cost_name(cost), bp_activation_name(act));
}

/* A saturated sigmoid or softmax output is exactly 0 or 1 in float; the log is taken of at least
 * the smallest float so the cost stays finite (and large) instead of becoming NaN from 0 * -inf,
 * as Nielsen's nan_to_num does. A NaN output is NOT clamped: it must reach the cost, so that a
 * diverged net is reported instead of training on with a finite-looking cost. The test is
 * against 0 and the clamp is the constant ln(2^-149): the steps run with denormals-are-zero
 * (core/fpenv.h), under which a comparison with the subnormal 2^-149 itself would let 0 through
 * to logf (an infinite cost, reported as divergence). */
static inline double safe_log(float x)
{
    return x <= 0.0f ? -0x1.9d1dap+6f : logf(x); /* logf(2^-149), bit for bit; NaN goes to logf */
}

double bp_loss_value(bp_cost cost, int rows, int cols, const float *a, const float *y, int ldy)
{
    double total = 0.0;
    for (int j = 0; j < cols; j++) {
        const float *ac = a + (size_t)j * rows;
        const float *yc = y + (size_t)j * ldy;
        for (int i = 0; i < rows; i++) {
            /* The logs are taken in float (the outputs are floats; logf is accurate to an ulp
             * and twice as fast as log), the sum in double. */
            float ai = ac[i], yi = yc[i];
            switch (cost) {
            case BP_COST_QUADRATIC:
                total += 0.5 * ((double)ai - yi) * ((double)ai - yi);
                break;
            case BP_COST_CROSS_ENTROPY:
                if (yi != 0.0f)
                    total -= yi * safe_log(ai);
                if (yi != 1.0f)
                    total -= (1.0 - yi) * safe_log(1.0f - ai);
                break;
            case BP_COST_LOG_LIKELIHOOD:
                if (yi != 0.0f)
                    total -= yi * safe_log(ai);
                break;
            default:
                break;
            }
        }
    }
    return total;
}

static int is_matched_pair(bp_cost cost, bp_activation act)
{
    return (cost == BP_COST_CROSS_ENTROPY && act == BP_ACT_SIGMOID) ||
           (cost == BP_COST_QUADRATIC && act == BP_ACT_LINEAR);
}

/* dC_x/da_i for one column. The divisions are guarded the same way as the logs above. */
static void cost_gradient(bp_cost cost, int rows, const float *a, const float *y, float *g)
{
    for (int i = 0; i < rows; i++) {
        float ai = a[i], yi = y[i];
        switch (cost) {
        case BP_COST_QUADRATIC:
            g[i] = ai - yi;
            break;
        case BP_COST_CROSS_ENTROPY: {
            float den = ai * (1.0f - ai);
            g[i] = (ai - yi) / (den > 1e-30f ? den : 1e-30f);
            break;
        }
        case BP_COST_LOG_LIKELIHOOD:
            g[i] = yi == 0.0f ? 0.0f : -yi / (ai > 1e-30f ? ai : 1e-30f);
            break;
        default:
            g[i] = 0.0f;
            break;
        }
    }
}

void bp_loss_delta(bp_cost cost, bp_activation act, int rows, int cols, const float *a,
                   const float *y, int ldy, float *d)
{
    if (cost == BP_COST_LOG_LIKELIHOOD && act == BP_ACT_SOFTMAX) {
        /* dC/dz_k of -sum_i y_i ln a_i through softmax is a_k S - y_k, S = sum_i y_i: A - Y only
         * when a column of Y sums to 1. Computing S keeps any target honest (an all-zero column
         * has zero cost and zero gradient) and costs one pass over a column of Y; for one-hot
         * targets a_k * 1.0f is exact, so the result is A - Y to the bit. */
        for (int j = 0; j < cols; j++) {
            const float *ac = a + (size_t)j * rows;
            const float *yc = y + (size_t)j * ldy;
            float *dc = d + (size_t)j * rows;
            float sum = 0.0f;
            for (int i = 0; i < rows; i++)
                sum += yc[i];
            for (int i = 0; i < rows; i++)
                dc[i] = ac[i] * sum - yc[i];
        }
        return;
    }
    if (is_matched_pair(cost, act)) {
        /* The sigma' of the activation cancels the cost's denominator, elementwise: D = A - Y
         * for any targets. */
        for (int j = 0; j < cols; j++) {
            const float *ac = a + (size_t)j * rows;
            const float *yc = y + (size_t)j * ldy;
            float *dc = d + (size_t)j * rows;
            for (int i = 0; i < rows; i++)
                dc[i] = ac[i] - yc[i];
        }
        return;
    }
    for (int j = 0; j < cols; j++)
        cost_gradient(cost, rows, a + (size_t)j * rows, y + (size_t)j * ldy,
                      d + (size_t)j * rows);
    bp_output_delta(act, rows, cols, a, d, rows, d);
}

void bp_output_delta(bp_activation act, int rows, int cols, const float *a, const float *g,
                     int ldg, float *d)
{
    if (act != BP_ACT_SOFTMAX) {
        for (int j = 0; j < cols && d != g; j++)
            for (int i = 0; i < rows; i++)
                d[i + (size_t)j * rows] = g[i + (size_t)j * ldg];
        bp_act_bwd_hadamard_ref(act, rows, cols, a, rows, d, rows);
        return;
    }
    /* Softmax couples a column: da_i/dz_k = a_i (delta_ik - a_k), so
     * D_k = sum_i g_i a_i (delta_ik - a_k) = a_k (g_k - sum_i a_i g_i). */
    for (int j = 0; j < cols; j++) {
        const float *ac = a + (size_t)j * rows;
        const float *gc = g + (size_t)j * ldg;
        float *dc = d + (size_t)j * rows;
        double dot = 0.0;
        for (int i = 0; i < rows; i++)
            dot += (double)ac[i] * gc[i];
        for (int i = 0; i < rows; i++)
            dc[i] = ac[i] * (gc[i] - (float)dot);
    }
}
