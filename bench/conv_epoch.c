/*
 * conv_epoch.c - the wall time of training epochs of a convolutional net on MNIST, by default
 * Nielsen's two-stage network3 with ReLU (conv:20x5x5, maxpool:2, conv:40x5x5, maxpool:2,
 * dense:100:relu, dense:10:softmax; log-likelihood, SGD, eta 0.03, lambda 0.1), and the
 * accuracy it reaches on the 10,000 images after the first 50,000 of the training file (the
 * test files are the fidelity suite's business).
 *
 *   bench_conv_epoch [--batch 10,64] [--threads 1] [--epochs 1] [--backend blas]
 *                    [--arch SPEC] [--train N] [--json]
 *
 * One line per batch size: "batch B threads T epochs E seconds S per_epoch S/E accuracy A".
 * The net is made afresh for each batch size from the same seed. The peak resident set
 * (getrusage) is printed at the end. With --json the header and each of these is one JSON
 * object per line instead.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "backprop.h"
#include "common.h"

enum { MAX_LIST = 8, VALIDATION = 10000 };

int main(int argc, char **argv)
{
    int batches[MAX_LIST] = {10, 64}, n_batches = 2, threads = 1, epochs = 1, train_n = 50000;
    const char *backend = "blas";
    int json = 0;
    const char *arch = "conv:20x5x5:relu,maxpool:2,conv:40x5x5:relu,maxpool:2,dense:100:relu,"
                       "dense:10:softmax";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--json")) {
            json = 1;
            continue;
        }
        int ok = v != NULL;
        if (ok && !strcmp(a, "--batch"))
            ok = (n_batches = bench_parse_list(v, batches, MAX_LIST, 1)) > 0;
        else if (ok && !strcmp(a, "--threads"))
            ok = bench_parse_list(v, &threads, 1, 1) == 1;
        else if (ok && !strcmp(a, "--epochs"))
            ok = bench_parse_list(v, &epochs, 1, 1) == 1;
        else if (ok && !strcmp(a, "--train"))
            ok = bench_parse_list(v, &train_n, 1, 1) == 1 && train_n <= BENCH_SET - VALIDATION;
        else if (ok && !strcmp(a, "--backend"))
            backend = v;
        else if (ok && !strcmp(a, "--arch"))
            arch = v;
        else
            ok = 0;
        if (!ok) {
            fprintf(stderr, "bench_conv_epoch: bad argument %s\n", a);
            return 2;
        }
        i++;
    }
    const char *source;
    bp_dataset *all = bench_load_training_set(&source);
    if (!all)
        return 1;
    bp_dataset *train, *valid;
    if (bp_dataset_slice(all, 0, (size_t)train_n, &train) != BP_OK ||
        bp_dataset_slice(all, BENCH_SET - VALIDATION, VALIDATION, &valid) != BP_OK) {
        fprintf(stderr, "bench_conv_epoch: %s\n", bp_last_error());
        return 1;
    }
    char tdesc[16];
    snprintf(tdesc, sizeof tdesc, "%d", threads);
    bench_header(stdout, json, tdesc);
    if (json)
        printf("\n{\"arch\": \"%s\", \"data\": \"%s\", \"train\": %d, \"backend\": \"%s\"}\n",
               arch, source, train_n, backend);
    else
        printf("# %s, data %s, %d training images, backend %s\n", arch, source, train_n,
               backend);
    int status = 0;
    for (int b = 0; b < n_batches && status == 0; b++) {
        int sizes[1] = {784};
        bp_net_config nc;
        bp_net_config_init(&nc);
        nc.sizes = sizes;
        nc.n_sizes = 1;
        nc.layers = arch;
        nc.input_channels = 1;
        nc.input_rows = nc.input_cols = 28;
        nc.cost = BP_COST_LOG_LIKELIHOOD;
        nc.init = BP_INIT_HE;
        nc.max_batch = batches[b];
        nc.threads = threads;
        nc.backend = backend;
        bp_net *net;
        if (bp_net_create(&net, &nc) != BP_OK) {
            fprintf(stderr, "bench_conv_epoch: %s\n", bp_last_error());
            status = 1;
            break;
        }
        bp_train_config tc;
        bp_train_config_init(&tc);
        tc.epochs = epochs;
        tc.batch = batches[b];
        tc.eta = 0.03f;
        tc.lambda = 0.1f;
        bp_train_result res;
        float accuracy = 0;
        if (bp_train(net, train, NULL, &tc, &res) != BP_OK ||
            bp_evaluate(net, valid, &accuracy, NULL) != BP_OK) {
            fprintf(stderr, "bench_conv_epoch: %s\n", bp_last_error());
            status = 1;
        } else {
            printf(json ? "{\"batch\": %d, \"threads\": %d, \"epochs\": %d, \"seconds\": %.3f, "
                          "\"per_epoch\": %.3f, \"accuracy\": %.4f}\n"
                        : "batch %d threads %d epochs %d seconds %.2f per_epoch %.2f accuracy "
                          "%.4f\n",
                   batches[b], threads, epochs, res.train_seconds, res.train_seconds / epochs,
                   accuracy);
            fflush(stdout);
        }
        bp_net_free(net);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf(json ? "{\"peak_resident_mb\": %.1f}\n" : "# peak resident set %.1f MB\n",
           ru.ru_maxrss / 1024.0);
    bp_dataset_free(train);
    bp_dataset_free(valid);
    bp_dataset_free(all);
    return status;
}
