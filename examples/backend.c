/*
 * backend.c - backprop as the training backend of a program that owns its data: the samples
 * are made here, in memory (no files), handed over with bp_dataset_from_floats, and the
 * program follows training through its own epoch callback, which records every epoch and
 * stops the run once validation accuracy reaches a target.
 *
 *     cc backend.c $(pkg-config --cflags --libs backprop) -o backend && ./backend
 *
 * The task: a 3 x 3 checkerboard of point clusters in the plane, two classes alternating
 * (an XOR of three by three), so no linear model does better than about 5 in 9 and the hidden
 * layer has to find the cells; the clusters' spread makes a perfect score impossible. Exits 0
 * only if the held-out accuracy reaches MIN_TEST_ACCURACY.
 */
#include <stdio.h>
#include <stdlib.h>

#include <backprop.h>

enum { GRID = 3, CLASSES = 2, DIM = 2, TRAIN = 5000, VALIDATION = 1000, TEST = 1000,
       MAX_EPOCHS = 60 };
#define SPREAD 0.2f           /* each cluster's standard deviation; the cells are 1 apart */
#define TARGET_ACCURACY 0.95  /* the callback stops training here */
#define MIN_TEST_ACCURACY 0.92

/* What the callback keeps: the caller's own record of the run. */
typedef struct progress {
    double accuracy[MAX_EPOCHS + 1]; /* by epoch, 1-based */
    double cost[MAX_EPOCHS + 1];
    int epochs;
    double target;
} progress;

static int on_epoch(const bp_epoch_report *r, void *user)
{
    progress *p = user;
    if (r->epoch >= 1 && r->epoch <= MAX_EPOCHS) {
        p->accuracy[r->epoch] = r->validation_accuracy;
        p->cost[r->epoch] = r->train_cost;
        p->epochs = r->epoch;
    }
    printf("epoch %2d: training cost %.4f, validation accuracy %.4f (%.0f samples/s)\n",
           r->epoch, r->train_cost, r->validation_accuracy, r->samples_per_second);
    return r->validation_accuracy >= p->target; /* non-zero stops the run */
}

/* Roughly a standard normal draw: the sum of 12 uniforms less 6 (mean 0, variance 1), from the
 * C library's generator, the caller's own; no libm, so pkg-config's flags are all it needs. */
static float gaussian(void)
{
    double sum = 0.0;
    for (int i = 0; i < 12; i++)
        sum += (double)rand() / (double)RAND_MAX;
    return (float)(sum - 6.0);
}

/* n samples as columns of x (DIM x n, ld = DIM), their classes in labels. */
static void make_points(float *x, int *labels, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int cx = rand() % GRID, cy = rand() % GRID; /* the cell, centred on (cx-1, cy-1) */
        x[DIM * i] = (float)(cx - GRID / 2) + SPREAD * gaussian();
        x[DIM * i + 1] = (float)(cy - GRID / 2) + SPREAD * gaussian();
        labels[i] = (cx + cy) % 2;
    }
}

/* The caller's arrays become a library data set (copied: the caller may free them). */
static bp_dataset *dataset(size_t n)
{
    float *x = malloc(DIM * n * sizeof *x);
    int *labels = malloc(n * sizeof *labels);
    bp_dataset *ds = NULL;
    if (x && labels) {
        make_points(x, labels, n);
        bp_status st = bp_dataset_from_floats(&ds, x, labels, n, DIM, CLASSES);
        if (st != BP_OK)
            fprintf(stderr, "backend: bp_dataset_from_floats: %s\n", bp_last_error());
    } else {
        fprintf(stderr, "backend: out of memory\n");
    }
    free(x);
    free(labels);
    return ds;
}

int main(void)
{
    srand(12345);
    bp_dataset *train = dataset(TRAIN), *validation = dataset(VALIDATION), *test = dataset(TEST);
    bp_net *net = NULL;
    int ok = 0;
    if (!train || !validation || !test)
        goto done;

    int sizes[] = {DIM, 32, CLASSES};
    bp_net_config nc;
    bp_net_config_init(&nc);
    nc.sizes = sizes;
    nc.n_sizes = 3;
    nc.hidden = BP_ACT_TANH;
    nc.output = BP_ACT_SOFTMAX;
    nc.cost = BP_COST_LOG_LIKELIHOOD;
    nc.init = BP_INIT_XAVIER;
    if (bp_net_create(&net, &nc) != BP_OK) {
        fprintf(stderr, "backend: bp_net_create: %s\n", bp_last_error());
        goto done;
    }

    progress p = {.target = TARGET_ACCURACY};
    bp_train_config tc;
    bp_train_config_init(&tc);
    tc.epochs = MAX_EPOCHS;
    tc.batch = 20;
    tc.eta = 0.01f;
    tc.optimizer = BP_OPT_ADAM;
    tc.on_epoch = on_epoch;
    tc.user = &p;
    bp_train_result result;
    if (bp_train(net, train, validation, &tc, &result) != BP_OK) {
        fprintf(stderr, "backend: bp_train: %s\n", bp_last_error());
        goto done;
    }
    /* The callback saw every epoch the library ran, and stopping was its decision. */
    if (p.epochs != result.epochs) {
        fprintf(stderr, "backend: the callback saw %d epochs, bp_train ran %d\n", p.epochs,
                result.epochs);
        goto done;
    }
    int stopped = p.epochs < MAX_EPOCHS;
    printf("%s after %d epochs (validation accuracy %.4f, first epoch %.4f)\n",
           stopped ? "target reached, stopped by the callback" : "ran all epochs", p.epochs,
           p.accuracy[p.epochs], p.accuracy[1]);

    float accuracy;
    if (bp_evaluate(net, test, &accuracy, NULL) != BP_OK) {
        fprintf(stderr, "backend: bp_evaluate: %s\n", bp_last_error());
        goto done;
    }
    printf("final test accuracy: %.4f\n", (double)accuracy);
    ok = accuracy >= MIN_TEST_ACCURACY;
    if (!ok)
        fprintf(stderr, "backend: test accuracy %.4f below %.2f: the net did not learn the task\n",
                (double)accuracy, MIN_TEST_ACCURACY);

done:
    bp_net_free(net);
    bp_dataset_free(train);
    bp_dataset_free(validation);
    bp_dataset_free(test);
    return ok ? EXIT_SUCCESS : EXIT_FAILURE;
}
