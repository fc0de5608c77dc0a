/*
 * step.c - a fixed small amount of training for instruction counting under
 * `valgrind --tool=callgrind` (bench/perf_check.py). Counts do not depend on the machine's load,
 * so a change in any op's count is a change in the code (or in the libraries it calls).
 *
 * [784,100,10] sigmoid / cross-entropy, B = 32, one BLAS thread, synthetic data generated here
 * (so the count does not depend on a download): 20 training steps through bp_train and one
 * evaluation pass. An optional second argument trains a variant instead of plain fused SGD
 * (momentum, adam, dropout 0.5 or batchnorm), so the perf suite counts what each feature adds.
 *
 * usage: bench_step [blas|naive] [sgd|momentum|adam|dropout|batchnorm]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backprop.h"

enum { N = 640, DIM = 784, CLASSES = 10, BATCH = 32 };

int main(int argc, char **argv)
{
    const char *backend = argc > 1 ? argv[1] : "blas";
    const char *variant = argc > 2 ? argv[2] : "sgd";
    bp_set_threads(1);
    float *x = malloc(sizeof(float) * DIM * N);
    int *labels = malloc(sizeof(int) * N);
    unsigned s = 7;
    for (size_t i = 0; i < (size_t)DIM * N; i++) {
        s = s * 1103515245u + 12345u;
        x[i] = (float)((s >> 16) & 255) / 255.0f;
    }
    for (int i = 0; i < N; i++)
        labels[i] = i % CLASSES;
    bp_dataset *ds;
    const int sizes[] = {DIM, 100, CLASSES};
    bp_net_config nc;
    bp_net_config_init(&nc);
    nc.sizes = sizes;
    nc.n_sizes = 3;
    nc.max_batch = BATCH;
    nc.backend = backend;
    nc.dropout = strcmp(variant, "dropout") == 0 ? 0.5f : 0.0f;
    nc.batchnorm = strcmp(variant, "batchnorm") == 0;
    bp_net *net;
    bp_train_config tc;
    bp_train_config_init(&tc);
    tc.epochs = 1;
    tc.batch = BATCH;
    tc.eta = 0.5f;
    if (strcmp(variant, "momentum") == 0) {
        tc.optimizer = BP_OPT_MOMENTUM;
    } else if (strcmp(variant, "adam") == 0) {
        tc.optimizer = BP_OPT_ADAM;
        tc.eta = 0.001f;
    } else if (strcmp(variant, "sgd") != 0 && !nc.dropout && !nc.batchnorm) {
        fprintf(stderr, "bench_step: unknown variant '%s'\n", variant);
        return 2;
    }
    float acc = 0;
    if (bp_dataset_from_floats(&ds, x, labels, N, DIM, CLASSES) != BP_OK ||
        bp_net_create(&net, &nc) != BP_OK || bp_train(net, ds, NULL, &tc, NULL) != BP_OK ||
        bp_evaluate(net, ds, &acc, NULL) != BP_OK) {
        fprintf(stderr, "bench_step: %s\n", bp_last_error());
        return 1;
    }
    printf("accuracy %.4f\n", acc);
    bp_net_free(net);
    bp_dataset_free(ds);
    free(x);
    free(labels);
    return 0;
}
