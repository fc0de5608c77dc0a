/*
 * ceiling.c - how close a training step is to what its GEMMs alone allow, and how close those
 * GEMMs are to the sgemm roofline, measured in pairs so a noisy machine's drifts cancel.
 *
 * Three things are timed in rotation, many times over:
 *   step       bp_net's real training step (forward, BP1-BP4, fused update), on the run's
 *              threads, split across the library's team exactly as in training;
 *   gemm-only  the same step through a backend whose elementwise kernels do nothing: the same
 *              GEMM calls on the same threads, split the same way, and nothing else (BP1 and
 *              the cost remain: 10 x B each). Its values are meaningless; its time is the
 *              ceiling of this way of splitting the step;
 *   roofline   one 2048^3 sgemm, as one single-threaded part per thread.
 * Each ratio is formed from runs a fraction of a second apart and the median over rounds is
 * printed (with the quartiles): step / roofline, gemm-only / roofline and step / gemm-only.
 *
 * Usage: bench_ceiling [--sizes 784,1024,1024,10] [--batch 256] [--threads 2] [--rounds 30]
 * Synthetic data: the speed of dense GEMMs does not depend on the values.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "net/net.h"
#include "optim/optim.h"

enum { MAX_SIZES = 8, MAX_ROUNDS = 200, STEPS_PER_ROUND = 10 };

static void no_bias_act(bp_activation act, int rows, int cols, const float *bias, float *z,
                        int ldz)
{
    (void)act, (void)rows, (void)cols, (void)bias, (void)z, (void)ldz;
}

static void no_hadamard(bp_activation act, int rows, int cols, const float *a, int lda, float *d,
                        int ldd)
{
    (void)act, (void)rows, (void)cols, (void)a, (void)lda, (void)d, (void)ldd;
}

static void no_rowsum(int rows, int cols, float alpha, const float *d, int ldd, float *out)
{
    (void)rows, (void)cols, (void)alpha, (void)d, (void)ldd, (void)out;
}

static void no_axpy(size_t n, float alpha, const float *x, float *y)
{
    (void)n, (void)alpha, (void)x, (void)y;
}

typedef struct rig {
    bp_net *net;
    float *x, *y;
    int batch;
    bp_team *roof_team;
} rig;

static double steps_seconds(rig *r, const bp_backend *be)
{
    r->net->be = be;
    /* A tiny rate: the gemm-only variant has no activations to keep values bounded. */
    const bp_grad_target step = {BP_TARGET_PARAMS, -1e-7f, 1.0f};
    double t0 = bench_now();
    for (int s = 0; s < STEPS_PER_ROUND; s++)
        bp_net_backprop_unchecked(r->net, r->x, bp_net_inputs(r->net), r->y,
                                  bp_net_outputs(r->net), r->batch, &step, NULL);
    return bench_now() - t0;
}

/* The faster of two products: the first also brings the operands back into cache. */
static double roofline_seconds(rig *r)
{
    return fmin(bench_roofline_seconds(r->roof_team), bench_roofline_seconds(r->roof_team));
}

static void print_ratio(const char *what, double *v, int n)
{
    bench_sort(v, n);
    printf("%-24s median %5.1f%%   quartiles %5.1f%% .. %5.1f%%\n", what, 100 * v[n / 2],
           100 * v[n / 4], 100 * v[(3 * n) / 4]);
}

int main(int argc, char **argv)
{
    int sizes[MAX_SIZES] = {784, 1024, 1024, 10}, n_sizes = 4, batch = 256, threads = 2,
        rounds = 30;
    for (int i = 1; i < argc; i++) {
        int ok = i + 1 < argc;
        if (ok && !strcmp(argv[i], "--sizes"))
            ok = (n_sizes = bench_parse_list(argv[++i], sizes, MAX_SIZES, 1)) >= 2;
        else if (ok && !strcmp(argv[i], "--batch"))
            ok = (batch = atoi(argv[++i])) >= 1;
        else if (ok && !strcmp(argv[i], "--threads"))
            ok = (threads = atoi(argv[++i])) >= 1 && threads <= BP_TEAM_MAX;
        else if (ok && !strcmp(argv[i], "--rounds"))
            ok = (rounds = atoi(argv[++i])) >= 4 && rounds <= MAX_ROUNDS;
        else
            ok = 0;
        if (!ok) {
            fprintf(stderr, "usage: bench_ceiling [--sizes 784,1024,1024,10] [--batch 256] "
                            "[--threads 2] [--rounds 4..200]\n");
            return 2;
        }
    }
    char tdesc[16];
    snprintf(tdesc, sizeof tdesc, "%d", threads);
    bench_header(stdout, 0, tdesc);

    bp_net_config cfg;
    bp_net_config_init(&cfg);
    cfg.sizes = sizes;
    cfg.n_sizes = n_sizes;
    cfg.hidden = BP_ACT_RELU;
    cfg.output = BP_ACT_SOFTMAX;
    cfg.cost = BP_COST_LOG_LIKELIHOOD;
    cfg.init = BP_INIT_HE;
    cfg.max_batch = batch;
    rig r = {.batch = batch};
    if (bp_set_threads(threads) != BP_OK || bp_net_create(&r.net, &cfg) != BP_OK ||
        (threads > 1 && bp_team_create(&r.roof_team, threads) != BP_OK)) {
        fprintf(stderr, "bench_ceiling: %s\n", bp_last_error());
        return 1;
    }
    int n_in = sizes[0], n_out = sizes[n_sizes - 1];
    r.x = malloc(sizeof(float) * (size_t)n_in * batch);
    r.y = calloc((size_t)n_out * batch, sizeof(float));
    if (!r.x || !r.y)
        return 1;
    unsigned s = 7;
    for (size_t i = 0; i < (size_t)n_in * batch; i++) {
        s = s * 1103515245u + 12345u;
        r.x[i] = (float)((s >> 16) & 255) / 255.0f;
    }
    for (int j = 0; j < batch; j++)
        r.y[(size_t)j * n_out + j % n_out] = 1.0f;

    bp_backend gemm_only = *bp_backend_find("blas");
    gemm_only.name = "gemm-only";
    gemm_only.bias_act = no_bias_act;
    gemm_only.act_bwd_hadamard = no_hadamard;
    gemm_only.rowsum = no_rowsum;
    gemm_only.axpy = no_axpy;
    const bp_backend *real = r.net->be;

    double flops = 0; /* per step: forward and BP4 everywhere, BP2 above the first layer */
    for (int l = 0; l + 1 < n_sizes; l++)
        flops += (l > 0 ? 6.0 : 4.0) * sizes[l] * sizes[l + 1] * batch;
    flops *= STEPS_PER_ROUND;

    double step_roof[MAX_ROUNDS], gemm_roof[MAX_ROUNDS], step_gemm[MAX_ROUNDS];
    double best_step = INFINITY, best_gemm = INFINITY, best_roof = INFINITY;
    steps_seconds(&r, real); /* warm-up: the team, the buffers, the caches */
    steps_seconds(&r, &gemm_only);
    roofline_seconds(&r);
    for (int i = 0; i < rounds; i++) {
        double ts = steps_seconds(&r, real), tg = steps_seconds(&r, &gemm_only);
        double tr = roofline_seconds(&r) / bench_roofline_flops(); /* seconds per FLOP */
        step_roof[i] = tr * flops / ts;
        gemm_roof[i] = tr * flops / tg;
        step_gemm[i] = tg / ts;
        best_step = fmin(best_step, ts);
        best_gemm = fmin(best_gemm, tg);
        best_roof = fmin(best_roof, tr);
    }
    r.net->be = real;
    printf("# sizes");
    for (int i = 0; i < n_sizes; i++)
        printf("%c%d", i ? ',' : ' ', sizes[i]);
    printf(", B=%d, %d thread%s, %d rounds of %d steps; best: step %.1f GFLOPS, gemm-only %.1f, "
           "roofline %.1f\n",
           batch, threads, threads > 1 ? "s" : "", rounds, STEPS_PER_ROUND,
           flops / best_step * 1e-9, flops / best_gemm * 1e-9, 1e-9 / best_roof);
    print_ratio("step / roofline", step_roof, rounds);
    print_ratio("gemm-only / roofline", gemm_roof, rounds);
    print_ratio("step / gemm-only", step_gemm, rounds);

    bp_team_free(r.roof_team);
    bp_net_free(r.net);
    free(r.x);
    free(r.y);
    return 0;
}
