/*
 * features.c - what the training features cost, as ratios to plain fused SGD measured in the
 * same run: momentum, Adam, dropout and batch norm on [784,100,10] (sigmoid, cross-entropy).
 *
 * The variants train in rotation, one slice of samples each per round (each round starting
 * with the next variant), so a burst of load on the shared machine lands on all of them alike; each variant's figure is the median over the
 * rounds of its time divided by SGD's time in the same round. The budgets (at B = 128,
 * one thread): momentum and Adam at most 1.15x, dropout 1.10x, batch norm 1.30x.
 *
 * Usage: bench_features [--batch B] [--threads T] [--rounds R] [--samples N] [--json]
 * Data: bench_load_training_set (real MNIST, or random images of its shape).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backprop.h"
#include "common.h"

typedef struct variant {
    const char *name;
    bp_optimizer_kind optimizer;
    float dropout;
    int batchnorm;
    double budget; /* the ceiling for the ratio to SGD; 0 for SGD itself */
} variant;

static const variant variants[] = {
    {"sgd (fused)", BP_OPT_SGD, 0.0f, 0, 0.0},
    {"momentum", BP_OPT_MOMENTUM, 0.0f, 0, 1.15},
    {"adam", BP_OPT_ADAM, 0.0f, 0, 1.15},
    {"dropout 0.5", BP_OPT_SGD, 0.5f, 0, 1.10},
    {"batchnorm", BP_OPT_SGD, 0.0f, 1, 1.30},
};
enum { N_VARIANTS = sizeof variants / sizeof *variants, MAX_ROUNDS = 64 };

typedef struct runner {
    bp_net *net;
    bp_trainer *trainer;
} runner;

static void die(const char *what)
{
    fprintf(stderr, "bench_features: %s: %s\n", what, bp_last_error());
    exit(1);
}

/* A net and a trainer over the slice, warmed up by one pass over it. */
static runner make_runner(const variant *v, const bp_dataset *slice, int batch, int threads)
{
    static const int sizes[] = {784, 100, 10};
    bp_net_config nc;
    bp_net_config_init(&nc);
    nc.sizes = sizes;
    nc.n_sizes = 3;
    nc.cost = BP_COST_CROSS_ENTROPY;
    nc.max_batch = batch;
    nc.threads = threads;
    nc.dropout = v->dropout;
    nc.batchnorm = v->batchnorm;
    runner r = {0};
    if (bp_net_create(&r.net, &nc) != BP_OK)
        die(v->name);
    bp_train_config tc;
    bp_train_config_init(&tc);
    tc.batch = batch;
    tc.optimizer = v->optimizer;
    /* Small rates: the bench measures speed and must not diverge. */
    tc.eta = v->optimizer == BP_OPT_ADAM ? 1e-4f : 0.01f;
    if (bp_trainer_create(&r.trainer, r.net, slice, &tc) != BP_OK)
        die(v->name);
    if (bp_trainer_epoch(r.trainer, NULL) != BP_OK)
        die(v->name);
    return r;
}

static double median(double *v, int n)
{
    bench_sort(v, n);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int main(int argc, char **argv)
{
    int batch = 128, threads = 1, rounds = 9, samples = 15360, json = 0;
    for (int i = 1; i < argc; i++) {
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(argv[i], "--json") == 0)
            json = 1;
        else if (strcmp(argv[i], "--batch") == 0 && next)
            batch = atoi(argv[++i]);
        else if (strcmp(argv[i], "--threads") == 0 && next)
            threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--rounds") == 0 && next)
            rounds = atoi(argv[++i]);
        else if (strcmp(argv[i], "--samples") == 0 && next)
            samples = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_features [--batch B] [--threads T] [--rounds R] "
                            "[--samples N] [--json]\n");
            return 2;
        }
    }
    if (batch < 1 || threads < 1 || rounds < 1 || rounds > MAX_ROUNDS || samples < batch) {
        fprintf(stderr, "bench_features: bad --batch, --threads, --rounds (1-%d) or --samples "
                        "(at least the batch)\n", MAX_ROUNDS);
        return 2;
    }
    const char *source;
    bp_dataset *data = bench_load_training_set(&source), *slice = NULL;
    if (!data || bp_dataset_slice(data, 0, (size_t)samples, &slice) != BP_OK)
        die("data");
    runner r[N_VARIANTS];
    for (int v = 0; v < N_VARIANTS; v++)
        r[v] = make_runner(&variants[v], slice, batch, threads);

    double seconds[N_VARIANTS][MAX_ROUNDS], ratio[N_VARIANTS][MAX_ROUNDS];
    /* Each round starts one variant later, so none always runs first (or right after the
     * same neighbour). */
    for (int k = 0; k < rounds; k++)
        for (int i = 0; i < N_VARIANTS; i++) {
            int v = (i + k) % N_VARIANTS;
            bp_epoch_report rep;
            if (bp_trainer_epoch(r[v].trainer, &rep) != BP_OK)
                die(variants[v].name);
            seconds[v][k] = rep.seconds;
        }
    for (int v = 0; v < N_VARIANTS; v++)
        for (int k = 0; k < rounds; k++)
            ratio[v][k] = seconds[v][k] / seconds[0][k];

    char tdesc[32];
    snprintf(tdesc, sizeof tdesc, "%d", threads);
    bench_header(stdout, json, tdesc);
    if (json)
        printf("\n");
    else
        printf("[784,100,10] sigmoid, cross-entropy, B=%d, %d thread%s, %s data, %d samples a "
               "slice, %d rounds\n%-14s %12s %10s %8s\n", batch, threads, threads == 1 ? "" : "s",
               source, samples, rounds, "variant", "s/epoch(60k)", "x sgd", "budget");
    for (int v = 0; v < N_VARIANTS; v++) {
        double per_epoch = median(seconds[v], rounds) * 60000.0 / samples;
        double x = median(ratio[v], rounds);
        if (json)
            printf("{\"variant\": \"%s\", \"batch\": %d, \"threads\": %d, \"epoch_seconds\": "
                   "%.6f, \"ratio_to_sgd\": %.4f, \"budget\": %.2f}\n", variants[v].name, batch,
                   threads, per_epoch, x, variants[v].budget);
        else if (v == 0)
            printf("%-14s %12.3f %10s %8s\n", variants[v].name, per_epoch, "1", "");
        else
            printf("%-14s %12.3f %10.3f %7.2fx%s\n", variants[v].name, per_epoch, x,
                   variants[v].budget, x > variants[v].budget ? "  OVER" : "");
    }
    for (int v = 0; v < N_VARIANTS; v++) {
        bp_trainer_free(r[v].trainer);
        bp_net_free(r[v].net);
    }
    bp_dataset_free(slice);
    bp_dataset_free(data);
    return 0;
}
