/*
 * train_save_load.c - train a net, save it as a model file, load it back, and check that the
 * loaded net is the same net: identical outputs, bit for bit, and the same accuracy.
 *
 *     cc train_save_load.c $(pkg-config --cflags --libs backprop) -o train_save_load
 *     BACKPROP_MNIST_DIR=~/.cache/backprop/mnist ./train_save_load [MODEL_PATH]
 *
 * With BACKPROP_MNIST_DIR set it trains Nielsen's [784,30,10] on the first 10,000 MNIST training
 * images for one epoch and tests on the 10,000 test images; without it, on a synthetic task
 * made here (is a point of the unit square inside a circle around its centre). The model goes to
 * MODEL_PATH, or to a file in $TMPDIR (else /tmp) that is removed afterwards. Exits 0 only if
 * every step worked and the reloaded net agrees with the trained one.
 */
#define _POSIX_C_SOURCE 200809L /* mkdtemp */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <backprop.h>

/* Report a failed call with the library's message, and give the status back. */
static bp_status failed(const char *what, bp_status st)
{
    fprintf(stderr, "train_save_load: %s: %s: %s\n", what, bp_status_str(st), bp_last_error());
    return st;
}

/* The images and labels of one MNIST set, as the files are named in BACKPROP_MNIST_DIR. */
static bp_status load_mnist(const char *dir, const char *set, bp_dataset **out)
{
    char images[4096], labels[4096];
    snprintf(images, sizeof images, "%s/%s-images-idx3-ubyte", dir, set);
    snprintf(labels, sizeof labels, "%s/%s-labels-idx1-ubyte", dir, set);
    bp_status st = bp_dataset_load_idx(out, images, labels);
    return st == BP_OK ? st : failed("loading MNIST", st);
}

/* n points (x, y) of the unit square, labelled 1 inside the circle of radius 0.35 around its
 * centre (about 38% of them). */
static bp_status make_synthetic(size_t n, unsigned seed, bp_dataset **out)
{
    float *x = malloc(2 * n * sizeof *x);
    int *labels = malloc(n * sizeof *labels);
    if (!x || !labels) {
        free(x);
        free(labels);
        fprintf(stderr, "train_save_load: out of memory\n");
        return BP_ENOMEM;
    }
    srand(seed);
    for (size_t i = 0; i < n; i++) {
        float px = (float)rand() / (float)RAND_MAX, py = (float)rand() / (float)RAND_MAX;
        x[2 * i] = px;
        x[2 * i + 1] = py;
        float dx = px - 0.5f, dy = py - 0.5f;
        labels[i] = dx * dx + dy * dy < 0.35f * 0.35f;
    }
    bp_status st = bp_dataset_from_floats(out, x, labels, n, 2, 2);
    free(x);
    free(labels);
    return st == BP_OK ? st : failed("bp_dataset_from_floats", st);
}

/* The outputs of `count` samples of ds through net: n_out x count floats, caller frees. */
static float *outputs(bp_net *net, const bp_dataset *ds, int count)
{
    int dim = bp_dataset_dim(ds), n_out = bp_net_size(net, bp_net_layers(net));
    float *x = malloc((size_t)dim * (size_t)count * sizeof *x);
    float *out = malloc((size_t)n_out * (size_t)count * sizeof *out);
    bp_status st = BP_ENOMEM;
    if (x && out && (st = bp_dataset_gather(ds, NULL, count, x, NULL, 0)) == BP_OK)
        st = bp_net_forward(net, x, dim, count, out, n_out);
    free(x);
    if (st != BP_OK) {
        failed("forward pass", st);
        free(out);
        return NULL;
    }
    return out;
}

int main(int argc, char **argv)
{
    printf("backprop %s (headers %s)\n", bp_version(), BP_VERSION_STRING);
    const char *mnist = getenv("BACKPROP_MNIST_DIR");
    int use_mnist = mnist && *mnist;

    bp_dataset *all = NULL, *train = NULL, *test = NULL;
    bp_status st;
    if (use_mnist) {
        st = load_mnist(mnist, "train", &all);
        if (st == BP_OK)
            st = load_mnist(mnist, "t10k", &test);
        if (st == BP_OK && (st = bp_dataset_slice(all, 0, 10000, &train)) != BP_OK)
            failed("bp_dataset_slice", st);
    } else {
        st = make_synthetic(4000, 1, &train);
        if (st == BP_OK)
            st = make_synthetic(1000, 2, &test);
    }
    if (st != BP_OK)
        return EXIT_FAILURE;

    int sizes_mnist[] = {784, 30, 10}, sizes_synthetic[] = {2, 16, 2};
    bp_net_config nc;
    bp_net_config_init(&nc);
    nc.sizes = use_mnist ? sizes_mnist : sizes_synthetic;
    nc.n_sizes = 3;
    nc.cost = BP_COST_CROSS_ENTROPY;
    bp_net *net = NULL, *loaded = NULL;
    if ((st = bp_net_create(&net, &nc)) != BP_OK)
        return failed("bp_net_create", st), EXIT_FAILURE;

    bp_train_config tc;
    bp_train_config_init(&tc);
    tc.epochs = use_mnist ? 1 : 30;
    tc.batch = 10;
    tc.eta = use_mnist ? 0.5f : 1.0f;
    float acc = 0.0f, acc_loaded = -1.0f;
    int ok = 0;
    char path[4096], dir[4000] = "";
    float *a = NULL, *b = NULL;
    if ((st = bp_train(net, train, NULL, &tc, NULL)) != BP_OK ||
        (st = bp_evaluate(net, test, &acc, NULL)) != BP_OK) {
        failed("training", st);
        goto done;
    }
    printf("trained on %s: test accuracy %.4f\n", use_mnist ? "MNIST" : "the synthetic task",
           (double)acc);

    if (argc > 1) {
        snprintf(path, sizeof path, "%s", argv[1]);
    } else {
        const char *tmp = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/train_save_load-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(dir)) {
            perror("train_save_load: mkdtemp");
            dir[0] = '\0';
            goto done;
        }
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
    }
    bp_model_meta meta = {0};
    if (use_mnist) {
        meta.input_rows = meta.input_cols = 28;
        meta.input_scale = 1.0f / 255.0f;
    }
    if ((st = bp_model_save(net, path, &meta)) != BP_OK) {
        failed("bp_model_save", st);
        goto done;
    }
    if ((st = bp_model_load(&loaded, path, NULL, NULL)) != BP_OK) {
        failed("bp_model_load", st);
        goto done;
    }
    printf("saved and reloaded %s\n", path);

    int count = (int)bp_dataset_count(test);
    int n_out = bp_net_size(net, bp_net_layers(net));
    a = outputs(net, test, count);
    b = outputs(loaded, test, count);
    if (!a || !b)
        goto done;
    if (strcmp(bp_net_spec(net), bp_net_spec(loaded)) != 0) {
        fprintf(stderr, "train_save_load: reloaded layers '%s', trained '%s'\n",
                bp_net_spec(loaded), bp_net_spec(net));
        goto done;
    }
    if (memcmp(a, b, (size_t)n_out * (size_t)count * sizeof *a) != 0) {
        fprintf(stderr, "train_save_load: the reloaded net's outputs differ\n");
        goto done;
    }
    if ((st = bp_evaluate(loaded, test, &acc_loaded, NULL)) != BP_OK) {
        failed("bp_evaluate of the reloaded net", st);
        goto done;
    }
    if (acc_loaded != acc) {
        fprintf(stderr, "train_save_load: reloaded accuracy %.4f, trained %.4f\n",
                (double)acc_loaded, (double)acc);
        goto done;
    }
    /* A net that learnt nothing would pass the comparisons too; chance is 0.1 or 0.5. */
    if (acc < (use_mnist ? 0.8f : 0.85f)) {
        fprintf(stderr, "train_save_load: accuracy %.4f: the net did not learn\n", (double)acc);
        goto done;
    }
    printf("reloaded net: identical outputs on %d samples, test accuracy %.4f\n", count,
           (double)acc_loaded);
    ok = 1;

done:
    free(a);
    free(b);
    if (dir[0]) {
        unlink(path);
        rmdir(dir);
    }
    bp_net_free(loaded);
    bp_net_free(net);
    bp_dataset_free(train);
    bp_dataset_free(test);
    bp_dataset_free(all);
    return ok ? EXIT_SUCCESS : EXIT_FAILURE;
}
