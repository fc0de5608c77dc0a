/*
 * vanishing.c - Nielsen's chapter 5 measurement of the vanishing gradient: the speed at which
 * each hidden layer of a [784,30,30,30,30,10] net learns, as ||dC/db^l||, the norm of the
 * gradient of the mean cost with respect to layer l's biases over the first 1000 MNIST
 * training images (bp_net_grad_norms), at initialisation and after each of a few epochs of
 * mini-batch SGD (eta 0.1, B 10, on the 50,000 training images, as Nielsen splits them).
 *
 * Two nets, the same but for their hidden layers:
 *   sigmoid  Nielsen's: sigmoid hidden layers, W ~ N(0, 1/n_in), b ~ N(0, 1) (his
 *            default_weight_initializer);
 *   relu     ReLU hidden layers with He initialisation, W ~ N(0, 2/n_in), b = 0.
 * Both keep a sigmoid output layer with the cross-entropy cost, so the output layer and the
 * cost, which set the error BP1 starts from, are the same for both and the tables differ only
 * by what BP2 does to that error on its way down.
 *
 * The last column, l4 / l1, is the gap between the last hidden layer and the first: Nielsen's
 * sigmoid nets start with each hidden layer learning several times faster than the one below
 * it, two orders of magnitude across four of them.
 *
 * usage: bench_vanishing [--epochs 3] [--samples 1000] [--seed 1] [--threads T]
 * Data: $BACKPROP_MNIST_DIR, else ${BACKPROP_DATA_DIR:-$HOME/.cache/backprop}/mnist (fetch with
 * scripts/fetch-mnist.sh). Real MNIST only: the point is what real images do to the gradient.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backprop.h"
#include "common.h"

enum { HIDDEN = 4, MAX_TENSORS = 16, TRAIN = 50000 };

static const int sizes[] = {784, 30, 30, 30, 30, 10};

typedef struct variant {
    const char *name;
    bp_activation hidden;
    bp_init init;
} variant;

static const variant variants[] = {
    {"sigmoid hidden layers, gaussian init (Nielsen)", BP_ACT_SIGMOID, BP_INIT_GAUSSIAN},
    {"relu hidden layers, he init", BP_ACT_RELU, BP_INIT_HE},
};

static int fail(const char *what)
{
    fprintf(stderr, "bench_vanishing: %s: %s\n", what, bp_last_error());
    return 1;
}

static int mnist_dir(char *out, size_t size)
{
    const char *dir = getenv("BACKPROP_MNIST_DIR"), *root = getenv("BACKPROP_DATA_DIR");
    const char *home = getenv("HOME");
    int w;
    if (dir && *dir)
        w = snprintf(out, size, "%s", dir);
    else if (root && *root)
        w = snprintf(out, size, "%s/mnist", root);
    else
        w = snprintf(out, size, "%s/.cache/backprop/mnist", home ? home : ".");
    return w > 0 && (size_t)w < size ? 0 : -1;
}

/* The bias tensors of the hidden layers, in layer order, from the table. */
static int hidden_biases(const bp_net *net, int out[HIDDEN])
{
    int found = 0;
    for (int k = 0; k < bp_net_tensor_count(net) && found < HIDDEN; k++) {
        bp_tensor_info info;
        if (bp_net_tensor(net, k, &info) == BP_OK && info.role == BP_ROLE_BIAS &&
            info.layer <= HIDDEN)
            out[found++] = k;
    }
    return found == HIDDEN ? 0 : -1;
}

static void print_row(const char *when, const double *norms, const int *bias)
{
    printf("  %-8s", when);
    for (int l = 0; l < HIDDEN; l++)
        printf("  %9.4g", norms[bias[l]]);
    printf("  %9.3g\n", norms[bias[HIDDEN - 1]] / norms[bias[0]]);
}

static int run(const variant *v, const bp_dataset *train, int epochs, size_t samples,
               uint64_t seed, int threads)
{
    bp_net_config nc;
    bp_net_config_init(&nc);
    nc.sizes = sizes;
    nc.n_sizes = (int)(sizeof sizes / sizeof *sizes);
    nc.hidden = v->hidden;
    nc.output = BP_ACT_SIGMOID;
    nc.cost = BP_COST_CROSS_ENTROPY;
    nc.init = v->init;
    nc.seed = seed;
    nc.max_batch = 10;
    nc.threads = threads;
    bp_train_config tc;
    bp_train_config_init(&tc);
    tc.eta = 0.1f;
    tc.batch = 10;
    tc.seed = seed;
    tc.epochs = epochs;

    bp_net *net = NULL;
    bp_trainer *t = NULL;
    int bias[HIDDEN], rc = 1;
    double norms[MAX_TENSORS];
    if (bp_net_create(&net, &nc) != BP_OK)
        return fail("bp_net_create");
    if (hidden_biases(net, bias) != 0 || bp_net_tensor_count(net) > MAX_TENSORS) {
        fprintf(stderr, "bench_vanishing: the net's table is not the one expected\n");
        goto out;
    }
    if (bp_trainer_create(&t, net, train, &tc) != BP_OK) {
        fail("bp_trainer_create");
        goto out;
    }
    printf("\n%s: ||dC/db^l|| over the first %zu training images\n", v->name, samples);
    printf("  %-8s  %9s  %9s  %9s  %9s  %9s\n", "", "layer 1", "layer 2", "layer 3", "layer 4",
           "l4 / l1");
    if (bp_net_grad_norms(net, train, samples, norms, MAX_TENSORS) != BP_OK) {
        fail("bp_net_grad_norms");
        goto out;
    }
    print_row("init", norms, bias);
    for (int e = 1; e <= epochs; e++) {
        bp_epoch_report report;
        if (bp_trainer_epoch(t, &report) != BP_OK) {
            fail("bp_trainer_epoch");
            goto out;
        }
        if (bp_net_grad_norms(net, train, samples, norms, MAX_TENSORS) != BP_OK) {
            fail("bp_net_grad_norms");
            goto out;
        }
        char when[16];
        snprintf(when, sizeof when, "epoch %d", e);
        print_row(when, norms, bias);
    }
    rc = 0;
out:
    bp_trainer_free(t);
    bp_net_free(net);
    return rc;
}

int main(int argc, char **argv)
{
    int epochs = 3, threads = 0;
    long samples = 1000;
    unsigned long long seed = 1;
    for (int i = 1; i < argc; i++) {
        int ok = i + 1 < argc;
        if (ok && !strcmp(argv[i], "--epochs"))
            ok = (epochs = atoi(argv[++i])) >= 0 && epochs <= 1000;
        else if (ok && !strcmp(argv[i], "--samples"))
            ok = (samples = atol(argv[++i])) >= 1 && samples <= TRAIN;
        else if (ok && !strcmp(argv[i], "--seed"))
            seed = strtoull(argv[++i], NULL, 10);
        else if (ok && !strcmp(argv[i], "--threads"))
            ok = (threads = atoi(argv[++i])) >= 1;
        else
            ok = 0;
        if (!ok) {
            fprintf(stderr, "usage: bench_vanishing [--epochs 0..1000] [--samples 1..50000] "
                            "[--seed S] [--threads T]\n");
            return 2;
        }
    }
    char dir[4096], images[4200], labels[4200];
    if (mnist_dir(dir, sizeof dir) != 0) {
        fprintf(stderr, "bench_vanishing: the MNIST directory path is too long\n");
        return 1;
    }
    snprintf(images, sizeof images, "%s/train-images-idx3-ubyte", dir);
    snprintf(labels, sizeof labels, "%s/train-labels-idx1-ubyte", dir);
    bp_dataset *all = NULL, *train = NULL;
    if (bp_dataset_load_idx(&all, images, labels) != BP_OK) {
        fprintf(stderr, "bench_vanishing: %s (run scripts/fetch-mnist.sh or set "
                        "BACKPROP_MNIST_DIR)\n", bp_last_error());
        return 1;
    }
    if (bp_dataset_count(all) < TRAIN || bp_dataset_slice(all, 0, TRAIN, &train) != BP_OK) {
        fprintf(stderr, "bench_vanishing: '%s' holds %zu images, fewer than the %d this "
                        "measurement trains on\n", images, bp_dataset_count(all), TRAIN);
        bp_dataset_free(all);
        return 1;
    }
    char tdesc[16];
    snprintf(tdesc, sizeof tdesc, "%d", threads > 0 ? threads : bp_get_threads());
    bench_header(stdout, 0, tdesc);
    printf("# [784,30,30,30,30,10], sigmoid output, cross-entropy, eta 0.1, B 10, seed %llu, "
           "%d epochs on %d images\n", seed, epochs, TRAIN);
    int rc = 0;
    for (size_t i = 0; i < sizeof variants / sizeof *variants && rc == 0; i++)
        rc = run(&variants[i], train, epochs, (size_t)samples, seed, threads);
    bp_dataset_free(train);
    bp_dataset_free(all);
    return rc;
}
