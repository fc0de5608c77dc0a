/* naive.c - the reference backend: the textbook triple loop for sgemm, the plain elementwise
 * kernels. It is the oracle every faster kernel is tested against. */
#include "kernels/backend.h"

/* C = alpha op(A) op(B) + beta C, one dot product per element, accumulated in float in the
 * order k = 0, 1, ... so results are reproducible. */
void bp_sgemm_naive(bp_trans ta, bp_trans tb, int m, int n, int k, float alpha, const float *a,
                    int lda, const float *b, int ldb, float beta, float *c, int ldc)
{
    if (m <= 0 || n <= 0)
        return;
    for (int j = 0; j < n; j++) {
        for (int i = 0; i < m; i++) {
            float sum = 0.0f;
            for (int p = 0; p < k; p++) {
                float aip = ta == BP_NOTRANS ? a[i + (size_t)p * lda] : a[p + (size_t)i * lda];
                float bpj = tb == BP_NOTRANS ? b[p + (size_t)j * ldb] : b[j + (size_t)p * ldb];
                sum += aip * bpj;
            }
            float *cij = &c[i + (size_t)j * ldc];
            *cij = beta == 0.0f ? alpha * sum : alpha * sum + beta * *cij;
        }
    }
}

const bp_backend bp_backend_naive = {
    .name = "naive",
    .sgemm = bp_sgemm_naive,
    .bias_act = bp_bias_act_ref,
    .act_bwd_hadamard = bp_act_bwd_hadamard_ref,
    .rowsum = bp_rowsum_ref,
    .axpy = bp_axpy_ref,
    .im2col = bp_im2col_ref,
    .col2im = bp_col2im_ref,
    .bias_act_planes = bp_bias_act_planes_ref,
    .maxpool_fwd = bp_maxpool_fwd_ref,
    .maxpool_bwd = bp_maxpool_bwd_ref,
    .avgpool_fwd = bp_avgpool_fwd_ref,
    .avgpool_bwd = bp_avgpool_bwd_ref,
    .lstm_fwd = bp_lstm_fwd_ref,
    .lstm_bwd = bp_lstm_bwd,
    .gru_fwd = bp_gru_fwd_ref,
    .gru_bwd = bp_gru_bwd,
};
