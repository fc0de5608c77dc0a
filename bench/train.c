/*
 * train.c - epoch times of real training against the GEMM floor and the sgemm roofline, all
 * measured in one process so every ratio compares like with like on a noisy machine.
 *
 * For each net, thread count and batch size B it reports:
 *   epoch     seconds for 60,000 samples of bp_train (shuffle, gather, forward, BP, update);
 *   floor     seconds for only the GEMM calls that same step makes, same shapes, all on the
 *             run's thread count, for the same number of steps: what an implementation that
 *             did nothing but OpenBLAS's GEMMs would pay (the library picks threads per shape,
 *             so with 2 threads it can beat this floor);
 *             epoch and floor are measured alternately, --reps times (3; 1 with --quick), and
 *             each is the best of its runs: noise on a shared machine only adds;
 *   GFLOPS    true training FLOPs (no BP2 into the input layer) per second of the epoch;
 *   x floor   training time over floor time and
 *   %roof     training speed over the 2048^3 sgemm roofline on the same threads, both paired:
 *             medians over 16 slices (4 with --quick) of a separate training run, each slice
 *             against its own floor and a roofline product run just before it (see
 *             paired_ratios).
 * Plus, for [784,100,10]: the naive backend (on a slice, scaled, marked), and a per-sample
 * baseline that runs each sample alone through matrix-vector products and accumulates, as
 * Nielsen's network.py does, to show what batching buys. And saturation: [784,30,10] trained
 * at eta 3, where some sigmoids sink below FLT_MIN, against the same net at eta 0.5, where none
 * do, in alternating slices (see saturation_ratio).
 *
 * Data: real MNIST when scripts/fetch-mnist.sh has put it in place, else random bytes of the
 * same shape (the arithmetic's cost does not depend on the values, subnormals apart, which the
 * saturation case is about: it saturates on either).
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cblas.h>

#include "backprop.h"
#include "common.h"
#include "kernels/threads.h"
#include "net/net.h"
#include "parallel/team.h"

enum { EPOCH = 60000, MAX_NET = 8 };

typedef struct net_spec {
    const char *name;
    int sizes[MAX_NET];
    int n;
    bp_activation hidden, output;
    bp_cost cost;
} net_spec;

static const net_spec nets[] = {
    {"784-100-10", {784, 100, 10}, 3, BP_ACT_SIGMOID, BP_ACT_SIGMOID, BP_COST_CROSS_ENTROPY},
    {"784-1024-1024-10", {784, 1024, 1024, 10}, 4, BP_ACT_RELU, BP_ACT_SOFTMAX,
     BP_COST_LOG_LIKELIHOOD},
};

typedef struct options {
    int json, quick, reps;
    int batches[8], n_batches;
    int threads[4], n_threads;
    unsigned net_mask;
} options;

/* FLOPs of one training step: forward and BP4 for every layer, BP2 for all but the first. */
static double step_flops(const net_spec *net, int batch)
{
    double f = 0;
    for (int l = 0; l + 1 < net->n; l++) {
        double mn = (double)net->sizes[l] * net->sizes[l + 1];
        f += 2 * 2 * mn * batch + (l > 0 ? 2 * mn * batch : 0);
    }
    return f;
}

/* How many samples a case runs before scaling to an epoch: the whole epoch unless that would
 * take more than `budget` GFLOP of work. */
static int samples_for(const net_spec *net, int batch, double budget_gflop)
{
    double per_sample = step_flops(net, batch) / batch;
    double n = budget_gflop * 1e9 / per_sample;
    if (n >= EPOCH)
        return EPOCH;
    int steps = (int)(n / batch);
    return (steps < 4 ? 4 : steps) * batch;
}

/* ---- the data ----------------------------------------------------------------------------- */

/* ---- one training epoch through the library -------------------------------------------- */

static bp_net *make_net(const net_spec *spec, int batch, const char *backend)
{
    bp_net_config cfg;
    bp_net_config_init(&cfg);
    cfg.sizes = spec->sizes;
    cfg.n_sizes = spec->n;
    cfg.hidden = spec->hidden;
    cfg.output = spec->output;
    cfg.cost = spec->cost;
    cfg.max_batch = batch;
    cfg.backend = backend;
    cfg.init = spec->hidden == BP_ACT_RELU ? BP_INIT_HE : BP_INIT_GAUSSIAN;
    bp_net *net = NULL;
    if (bp_net_create(&net, &cfg) != BP_OK) {
        fprintf(stderr, "bench_train: %s\n", bp_last_error());
        exit(1);
    }
    return net;
}

/* After a call on two or more threads, OpenBLAS 0.3.21's idle workers spin and yield for about
 * 0.11 s of CPU (measured here: getrusage across a sleep after one 2-thread sgemm). Right after
 * the floor they would take the second core from the library's own step threads, so a run waits
 * for them to go to sleep first. */
static void settle_openblas_pool(int threads)
{
    if (threads > 1)
        usleep(250000);
}

/* Seconds to train `samples` samples at batch B (the net's first steps are a warm-up). */
static double train_seconds(const net_spec *spec, const bp_dataset *data, int batch, int samples,
                            const char *backend)
{
    bp_net *net = make_net(spec, batch, backend);
    bp_train_config tc;
    bp_train_config_init(&tc);
    tc.epochs = 1;
    tc.batch = batch;
    tc.eta = 0.01f; /* small: the bench measures speed, and must not diverge */
    bp_dataset *slice = NULL, *warm = NULL;
    bp_dataset_slice(data, 0, (size_t)samples, &slice);
    bp_dataset_slice(data, 0, (size_t)(batch * 4 < samples ? batch * 4 : samples), &warm);
    bp_train_result res;
    bp_train(net, warm, NULL, &tc, &res);
    if (bp_train(net, slice, NULL, &tc, &res) != BP_OK) {
        fprintf(stderr, "bench_train: %s\n", bp_last_error());
        exit(1);
    }
    bp_dataset_free(slice);
    bp_dataset_free(warm);
    bp_net_free(net);
    return res.train_seconds;
}

/* ---- the GEMM floor ------------------------------------------------------------------------ */

typedef struct floor_case {
    const net_spec *spec;
    int batch, steps, threads;
    float *w[MAX_NET], *a[MAX_NET], *d[MAX_NET];
} floor_case;

/* Exactly the sgemm calls of `steps` training steps, on buffers of the real shapes. */
static void floor_run(void *arg)
{
    floor_case *fc = arg;
    const int *n = fc->spec->sizes, L = fc->spec->n - 1, B = fc->batch;
    /* The floor is the issue's: every call on the same fixed thread count (the library itself
     * chooses per shape, so it can come in under this floor). Through the library's setter, so
     * its record of OpenBLAS's setting stays true. */
    bp_blas_use_threads(fc->threads);
    for (int s = 0; s < fc->steps; s++) {
        for (int l = 0; l < L; l++)
            cblas_sgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, n[l + 1], B, n[l], 1.0f,
                        fc->w[l], n[l + 1], fc->a[l], n[l], 0.0f, fc->a[l + 1], n[l + 1]);
        for (int l = L - 1; l >= 0; l--) {
            if (l > 0)
                cblas_sgemm(CblasColMajor, CblasTrans, CblasNoTrans, n[l], B, n[l + 1], 1.0f,
                            fc->w[l], n[l + 1], fc->d[l + 1], n[l + 1], 0.0f, fc->d[l], n[l]);
            cblas_sgemm(CblasColMajor, CblasNoTrans, CblasTrans, n[l + 1], n[l], B, -0.01f,
                        fc->d[l + 1], n[l + 1], fc->a[l], n[l], 1.0f, fc->w[l], n[l + 1]);
        }
    }
}

static floor_case floor_make(const net_spec *spec, int batch)
{
    floor_case fc = {.spec = spec, .batch = batch, .threads = bp_get_threads()};
    for (int l = 0; l < spec->n; l++) {
        size_t act = (size_t)spec->sizes[l] * batch;
        fc.a[l] = calloc(act, sizeof(float));
        fc.d[l] = calloc(act, sizeof(float));
        if (l + 1 < spec->n)
            fc.w[l] = calloc((size_t)spec->sizes[l] * spec->sizes[l + 1], sizeof(float));
    }
    return fc;
}

static void floor_free(floor_case *fc)
{
    for (int l = 0; l < fc->spec->n; l++)
        free(fc->a[l]), free(fc->d[l]), free(fc->w[l]);
}

static double floor_seconds(const net_spec *spec, int batch, int samples)
{
    floor_case fc = floor_make(spec, batch);
    fc.steps = samples / batch < 4 ? samples / batch : 4;
    floor_run(&fc); /* warm-up */
    fc.steps = samples / batch;
    bench_stats st = bench_time(floor_run, &fc, 0, 1);
    floor_free(&fc);
    return st.best;
}

/* ---- %roof: training and the roofline, paired ---------------------------------------------- */

static double median(double *v, int n)
{
    bench_sort(v, n);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

typedef struct paired {
    double x_floor, roof; /* medians over the pairs */
} paired;

enum { MAX_PAIRS = 64 };

/* The ratios, measured in pairs. A separate training run is cut into `pairs` slices of the
 * measured samples; before each slice run its GEMM floor (same steps, same shapes) and one
 * roofline product (the faster of two) on the same threads. x_floor is the median of
 * slice time over floor time, roof the median of the slice's GFLOPS over the product's. Each
 * ratio compares runs a fraction of a second apart, so the machine's drifts cancel; dividing
 * a best-of-3 epoch by a best-of-5 product does not (a 0.1 s product finds quiet spells a 4 s
 * epoch never has, and a roofline taken in a fast minute flatters a slow hour's epoch). */
static paired paired_ratios(const net_spec *spec, const bp_dataset *data, int batch, int samples,
                            int pairs, bp_team *team)
{
    int steps = samples / batch;
    if (pairs > MAX_PAIRS)
        pairs = MAX_PAIRS;
    if (pairs > steps)
        pairs = steps;
    bp_net *net = make_net(spec, batch, "blas");
    floor_case fc = floor_make(spec, batch);
    bp_train_config tc;
    bp_train_config_init(&tc);
    tc.epochs = 1;
    tc.batch = batch;
    tc.eta = 0.01f;
    double x_floor[MAX_PAIRS], roof[MAX_PAIRS], step_gflop = step_flops(spec, batch) * 1e-9;
    for (int p = -1; p < pairs; p++) { /* p = -1 warms everything up */
        int s0 = p < 0 ? 0 : steps * p / pairs, s1 = p < 0 ? 1 : steps * (p + 1) / pairs;
        fc.steps = s1 - s0;
        double t0 = bench_now();
        floor_run(&fc);
        double floor_s = bench_now() - t0;
        settle_openblas_pool(fc.threads);
        /* The roofline between the sleep and the slice: it brings its 48 MB of operands back
         * into cache (hence the faster of two) and the cores back up to speed, so the slice
         * never starts on a core that has just idled. */
        double roof_gflops = bench_roofline_flops() * 1e-9 /
                             fmin(bench_roofline_seconds(team), bench_roofline_seconds(team));
        bp_dataset *slice = NULL;
        bp_train_result res;
        if (bp_dataset_slice(data, (size_t)s0 * batch, (size_t)(s1 - s0) * batch, &slice) !=
                BP_OK ||
            bp_train(net, slice, NULL, &tc, &res) != BP_OK) {
            fprintf(stderr, "bench_train: %s\n", bp_last_error());
            exit(1);
        }
        bp_dataset_free(slice);
        if (p >= 0) {
            x_floor[p] = res.train_seconds / floor_s;
            roof[p] = step_gflop * (s1 - s0) / res.train_seconds / roof_gflops;
        }
    }
    floor_free(&fc);
    bp_net_free(net);
    return (paired){median(x_floor, pairs), median(roof, pairs)};
}

/* ---- saturation: what subnormal numbers would cost ---------------------------------------- */

/* The run: `backprop train --layers 784,30,10 --cost cross-entropy --eta 3`, B = 10. At
 * eta 3 a few percent of the sigmoids saturate below FLT_MIN (z < -87; on MNIST the share grows
 * through the first epoch, on the synthetic data it is there after a few thousand samples); at
 * eta 0.5 none do. Arithmetic on subnormals costs ~100 cycles on x86, so before the library
 * flushed them inside its steps (core/fpenv.h) those few percent made the epoch 2-6x slower
 * (docs/PERFORMANCE.md); with the flush the two rates train at the same speed. */
static const net_spec saturating = {"784-30-10", {784, 30, 10}, 3, BP_ACT_SIGMOID,
                                    BP_ACT_SIGMOID, BP_COST_CROSS_ENTROPY};

enum { SAT_BATCH = 10, SAT_WARM = 60000, SAT_SLICE = 5000, SAT_PROBE = 1000 };

typedef struct saturation {
    double saturated_s, unsaturated_s; /* per epoch, from the sums of the timed slices */
    double ratio;                      /* median of the pairs' saturated / unsaturated */
    double saturated_share, unsaturated_share; /* activations below FLT_MIN, after the run */
    int pairs;
} saturation;

/* The share of all activations (hidden and output) below FLT_MIN over the first SAT_PROBE
 * samples: what saturation sent into the subnormal range (or, flushed, to 0). In batches of
 * the net's planned size, so nothing is replanned. */
static double share_below_flt_min(bp_net *net, const bp_dataset *data)
{
    float *x = malloc(sizeof(float) * 784 * SAT_BATCH);
    long below = 0, total = 0;
    for (int first = 0; first + SAT_BATCH <= SAT_PROBE; first += SAT_BATCH) {
        size_t idx[SAT_BATCH];
        for (int j = 0; j < SAT_BATCH; j++)
            idx[j] = (size_t)(first + j);
        bp_dataset_gather(data, idx, SAT_BATCH, x, NULL, 10);
        bp_net_forward(net, x, 784, SAT_BATCH, NULL, 0);
        for (int l = 0; l < net->n_layers; l++)
            for (long k = 0; k < (long)net->sizes[l + 1] * SAT_BATCH; k++) {
                below += net->a[l][k] < FLT_MIN;
                total++;
            }
    }
    free(x);
    return (double)below / (double)total;
}

static double train_slice(bp_net *net, const bp_dataset *data, size_t first, float eta)
{
    bp_train_config tc;
    bp_train_config_init(&tc);
    tc.epochs = 1;
    tc.batch = SAT_BATCH;
    tc.eta = eta;
    bp_dataset *slice = NULL;
    bp_train_result res;
    if (bp_dataset_slice(data, first, SAT_SLICE, &slice) != BP_OK ||
        bp_train(net, slice, NULL, &tc, &res) != BP_OK) {
        fprintf(stderr, "bench_train: %s\n", bp_last_error());
        exit(1);
    }
    bp_dataset_free(slice);
    return res.train_seconds;
}

/* Both nets (same seed) first train SAT_WARM samples at their rates, untimed, which saturates
 * the eta 3 one; then they train the same slices in turn, the order swapped every pair so
 * neither always runs on a core the other has just warmed. The ratio is the median over the
 * pairs, like the other paired ratios. */
static saturation saturation_ratio(const bp_dataset *data, int pairs)
{
    if (pairs > MAX_PAIRS)
        pairs = MAX_PAIRS;
    const float eta[2] = {3.0f, 0.5f}; /* saturated, unsaturated */
    bp_net *net[2];
    size_t n = bp_dataset_count(data);
    for (int k = 0; k < 2; k++) {
        net[k] = make_net(&saturating, SAT_BATCH, "blas");
        for (size_t first = 0; first + SAT_SLICE <= SAT_WARM; first += SAT_SLICE)
            train_slice(net[k], data, first % (n - SAT_SLICE), eta[k]);
    }
    double ratio[MAX_PAIRS], total[2] = {0, 0};
    for (int p = 0; p < pairs; p++) {
        size_t first = (SAT_WARM + (size_t)p * SAT_SLICE) % (n - SAT_SLICE);
        double t[2];
        for (int i = 0; i < 2; i++) {
            int k = (i + p) % 2;
            t[k] = train_slice(net[k], data, first, eta[k]);
            total[k] += t[k];
        }
        ratio[p] = t[0] / t[1];
    }
    double scale = (double)EPOCH / ((double)pairs * SAT_SLICE);
    saturation r = {.saturated_s = total[0] * scale, .unsaturated_s = total[1] * scale,
                    .ratio = median(ratio, pairs), .pairs = pairs,
                    .saturated_share = share_below_flt_min(net[0], data),
                    .unsaturated_share = share_below_flt_min(net[1], data)};
    bp_net_free(net[0]);
    bp_net_free(net[1]);
    return r;
}

static void report_saturation(const options *o, int threads, const saturation *r)
{
    if (o->json) {
        printf("{\"net\": \"%s\", \"variant\": \"saturation\", \"threads\": %d, \"batch\": %d, "
               "\"saturated_epoch_s\": %.6g, \"unsaturated_epoch_s\": %.6g, \"ratio\": %.4g, "
               "\"saturated_share\": %.4g, \"unsaturated_share\": %.4g, \"pairs\": %d}\n",
               saturating.name, threads, SAT_BATCH, r->saturated_s, r->unsaturated_s, r->ratio,
               r->saturated_share, r->unsaturated_share, r->pairs);
        return;
    }
    printf("%-17s %-10s %3d %5d %9.3f %10.0f %8s %7s %8s %6s  %.1f%% of activations < FLT_MIN\n",
           saturating.name, "eta 3", threads, SAT_BATCH, r->saturated_s,
           EPOCH / r->saturated_s, "-", "-", "-", "-", 100 * r->saturated_share);
    printf("%-17s %-10s %3d %5d %9.3f %10.0f %8s %7s %8s %6s  %.1f%% of activations < FLT_MIN\n",
           saturating.name, "eta 0.5", threads, SAT_BATCH, r->unsaturated_s,
           EPOCH / r->unsaturated_s, "-", "-", "-", "-", 100 * r->unsaturated_share);
    printf("# saturated / unsaturated epoch time, %d thread%s: %.2f (median of %d pairs of "
           "%d-sample slices)\n", threads, threads > 1 ? "s" : "", r->ratio, r->pairs, SAT_SLICE);
    fflush(stdout);
}

/* ---- the per-sample baseline (network.py's loop) ------------------------------------------ */

/* [784,100,10], sigmoid, quadratic cost as in network.py: each sample's gradient by
 * matrix-vector products, summed over the mini-batch of 10, then the update. */
static double per_sample_seconds(const bp_dataset *data, int samples)
{
    enum { N0 = 784, N1 = 100, N2 = 10, MB = 10 };
    static float w1[N1 * N0], w2[N2 * N1], b1[N1], b2[N2], gw1[N1 * N0], gw2[N2 * N1], gb1[N1],
        gb2[N2];
    float x[N0], y[N2], a1[N1], a2[N2], d1[N1], d2[N2];
    for (int i = 0; i < N1 * N0; i++)
        w1[i] = (float)((i * 37) % 101) / 1010.0f - 0.05f;
    for (int i = 0; i < N2 * N1; i++)
        w2[i] = (float)((i * 17) % 103) / 1030.0f - 0.05f;
    double t0 = bench_now();
    for (int start = 0; start + MB <= samples; start += MB) {
        memset(gw1, 0, sizeof gw1), memset(gw2, 0, sizeof gw2);
        memset(gb1, 0, sizeof gb1), memset(gb2, 0, sizeof gb2);
        for (int s = start; s < start + MB; s++) {
            size_t idx = (size_t)s;
            bp_dataset_gather(data, &idx, 1, x, y, N2);
            memcpy(a1, b1, sizeof a1);
            cblas_sgemv(CblasColMajor, CblasNoTrans, N1, N0, 1.0f, w1, N1, x, 1, 1.0f, a1, 1);
            for (int i = 0; i < N1; i++)
                a1[i] = 1.0f / (1.0f + expf(-a1[i]));
            memcpy(a2, b2, sizeof a2);
            cblas_sgemv(CblasColMajor, CblasNoTrans, N2, N1, 1.0f, w2, N2, a1, 1, 1.0f, a2, 1);
            for (int i = 0; i < N2; i++) {
                a2[i] = 1.0f / (1.0f + expf(-a2[i]));
                d2[i] = (a2[i] - y[i]) * a2[i] * (1.0f - a2[i]);
                gb2[i] += d2[i];
            }
            cblas_sger(CblasColMajor, N2, N1, 1.0f, d2, 1, a1, 1, gw2, N2);
            cblas_sgemv(CblasColMajor, CblasTrans, N2, N1, 1.0f, w2, N2, d2, 1, 0.0f, d1, 1);
            for (int i = 0; i < N1; i++) {
                d1[i] *= a1[i] * (1.0f - a1[i]);
                gb1[i] += d1[i];
            }
            cblas_sger(CblasColMajor, N1, N0, 1.0f, d1, 1, x, 1, gw1, N1);
        }
        cblas_saxpy(N1 * N0, -0.3f, gw1, 1, w1, 1);
        cblas_saxpy(N2 * N1, -0.3f, gw2, 1, w2, 1);
        cblas_saxpy(N1, -0.3f, gb1, 1, b1, 1);
        cblas_saxpy(N2, -0.3f, gb2, 1, b2, 1);
    }
    return bench_now() - t0;
}

/* ---- reporting -------------------------------------------------------------------------- */

static void report(const options *o, const char *net, const char *what, int threads, int batch,
                   int samples, double seconds, double floor, double x_floor,
                   double flops_per_epoch, double roof_ratio)
{
    double scale = (double)EPOCH / samples, epoch = seconds * scale;
    double gflops = flops_per_epoch / epoch * 1e-9;
    if (o->json) {
        printf("{\"net\": \"%s\", \"variant\": \"%s\", \"threads\": %d, \"batch\": %d, "
               "\"epoch_s\": %.6g, \"samples_per_s\": %.6g, \"floor_s\": %.6g, "
               "\"x_floor\": %.4g, \"gflops\": %.4g, \"roof_ratio\": %.4g, "
               "\"measured_samples\": %d, \"scaled\": %s}\n",
               net, what, threads, batch, epoch, EPOCH / epoch, floor > 0 ? floor * scale : 0,
               x_floor, gflops, roof_ratio, samples,
               samples < EPOCH ? "true" : "false");
        return;
    }
    char fl[32] = "-", xf[32] = "-", rr[32] = "-";
    if (roof_ratio > 0)
        snprintf(rr, sizeof rr, "%.0f%%", 100 * roof_ratio);
    if (floor > 0)
        snprintf(fl, sizeof fl, "%.3f", floor * scale);
    if (x_floor > 0)
        snprintf(xf, sizeof xf, "%.2f", x_floor);
    printf("%-17s %-10s %3d %5d %9.3f %10.0f %8s %7s %8.1f %6s  %s\n", net, what, threads,
           batch, epoch, EPOCH / epoch, fl, xf, gflops, rr,
           samples < EPOCH ? "scaled" : "");
    fflush(stdout);
}

int main(int argc, char **argv)
{
    options o = {.batches = {1, 10, 32, 128, 256, 1024}, .n_batches = 6, .threads = {1, 2},
                 .n_threads = 2, .net_mask = 3, .reps = 3};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            o.json = 1;
        else if (!strcmp(argv[i], "--quick"))
            o.quick = 1;
        else if (!strcmp(argv[i], "--small"))
            o.net_mask = 1;
        else if (!strcmp(argv[i], "--big"))
            o.net_mask = 2;
        else if (!strcmp(argv[i], "--batches") && i + 1 < argc)
            o.n_batches = bench_parse_list(argv[++i], o.batches, 8, 1);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            o.n_threads = bench_parse_list(argv[++i], o.threads, 4, 1);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            o.reps = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_train [--quick] [--json] [--small|--big] "
                            "[--batches 1,10,...] [--threads 1,2] [--reps 3]\n");
            return 2;
        }
        if (o.n_batches < 1 || o.n_threads < 1 || o.reps < 1) {
            fprintf(stderr, "bench_train: bad list after %s\n", argv[i - 1]);
            return 2;
        }
    }
    const char *source;
    bp_dataset *data = bench_load_training_set(&source);
    if (!data) {
        fprintf(stderr, "bench_train: no data\n");
        return 1;
    }
    char tdesc[64];
    bench_join_ints(tdesc, sizeof tdesc, o.threads, o.n_threads);
    bench_header(stdout, o.json, tdesc);
    if (o.json)
        printf("\n{\"data\": \"%s\", \"epoch_samples\": %d}\n", source, EPOCH);
    else
        printf("# data %s; every time is per epoch of %d samples; 'scaled' rows ran a slice\n"
               "%-17s %-10s %3s %5s %9s %10s %8s %7s %8s %6s\n",
               source, EPOCH, "net", "variant", "thr", "B", "s/epoch", "samples/s", "floor",
               "x floor", "GFLOPS", "%roof");

    /* Work per case: a full epoch where affordable; --quick trims for CI. */
    double budget = o.quick ? 3.0 : 60.0;
    for (int t = 0; t < o.n_threads; t++) {
        int threads = o.threads[t];
        bp_set_threads(threads);
        double roof = bench_roofline_gflops();
        bp_team *team = NULL;
        if (threads > 1 && bp_team_create(&team, threads) != BP_OK) {
            fprintf(stderr, "bench_train: %s\n", bp_last_error());
            return 1;
        }
        double split_roof = 0;
        for (int r = 0; r < 5; r++)
            split_roof = fmax(split_roof, bench_roofline_flops() * 1e-9 / bench_roofline_seconds(team));
        settle_openblas_pool(threads);
        if (o.json)
            printf("{\"roofline_gflops\": %.4g, \"split_roofline_gflops\": %.4g, "
                   "\"threads\": %d}\n", roof, split_roof, threads);
        else
            printf("# sgemm roofline (2048^3), %d thread%s, best of 5: %.1f GFLOPS through "
                   "OpenBLAS's threads, %.1f as %d single-threaded part%s (the paired %%roof's)\n",
                   threads, threads > 1 ? "s" : "", roof, split_roof, threads,
                   threads > 1 ? "s" : "");
        for (size_t ni = 0; ni < sizeof nets / sizeof *nets; ni++) {
            if (!(o.net_mask & (1u << ni)))
                continue;
            const net_spec *spec = &nets[ni];
            for (int bi = 0; bi < o.n_batches; bi++) {
                int B = o.batches[bi];
                int samples = samples_for(spec, B, budget);
                double flops = step_flops(spec, B) * ((double)EPOCH / B);
                /* Epoch and floor alternate, and each keeps its best of `reps`: on a shared
                 * machine noise only ever adds time, and alternating exposes both to the same
                 * spells of it. */
                double fl = INFINITY, s = INFINITY;
                for (int r = 0; r < (o.quick ? 1 : o.reps); r++) {
                    fl = fmin(fl, floor_seconds(spec, B, samples));
                    settle_openblas_pool(threads);
                    s = fmin(s, train_seconds(spec, data, B, samples, "blas"));
                }
                paired pr = paired_ratios(spec, data, B, samples, o.quick ? 4 : 16, team);
                report(&o, spec->name, "blas", threads, B, samples, s, fl, pr.x_floor, flops,
                       pr.roof);
            }
            if (ni == 0 && threads == 1) {
                /* The reference loops: a slice, since an epoch takes minutes. */
                int slice = o.quick ? 500 : 3000;
                for (int bi = 0; bi < o.n_batches; bi++) {
                    int B = o.batches[bi];
                    if (B != 10 && B != 128)
                        continue;
                    int n = slice / B * B;
                    double fl = floor_seconds(spec, B, n);
                    double s = train_seconds(spec, data, B, n, "naive");
                    report(&o, spec->name, "naive", threads, B, n, s, fl, s / fl,
                           step_flops(spec, B) * ((double)EPOCH / B), 0);
                }
                int n = o.quick ? 3000 : 12000;
                double s = per_sample_seconds(data, n);
                report(&o, spec->name, "per-sample", threads, 10, n, s, 0, 0,
                       step_flops(spec, 10) * ((double)EPOCH / 10), 0);
            }
        }
        if (o.net_mask & 1) {
            saturation sat = saturation_ratio(data, o.quick ? 4 : 12);
            report_saturation(&o, threads, &sat);
        }
        bp_team_free(team);
    }
    bp_dataset_free(data);
    return 0;
}
