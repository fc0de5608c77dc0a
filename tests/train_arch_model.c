/*
 * train_arch_model.c - a model file of any layer stack, trained briefly on real MNIST through
 * the public API, for the tests that take a conv net through other tools (test_onnx.py: ONNX
 * Runtime; test_torch.py: PyTorch) while `backprop train` has no --arch flag to make one.
 *
 *     train_arch_model MNIST_DIR ARCH OUT.safetensors [TRAIN_IMAGES]
 *
 * ARCH is the layer list after the 1 x 28 x 28 input ("conv:8x5x5,maxpool:2,dense:10:softmax");
 * the last layer must give 10 outputs. One epoch of SGD (eta 0.05, B 10, He initialisation,
 * log-likelihood when the output is softmax, else cross-entropy) on the first TRAIN_IMAGES
 * (10000) training images. The file's metadata is what `backprop train --save` writes for
 * MNIST (image rows and cols, input scale 1/255, the digit names), so `backprop predict` and
 * `backprop export` treat it as one of theirs. Prints {"test_accuracy": A} (the 10,000 test
 * images, the net before saving) on stdout. Exit 0, or 1 with the library's message.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backprop.h"

static int failed(const char *what)
{
    fprintf(stderr, "train_arch_model: %s: %s\n", what, bp_last_error());
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: train_arch_model MNIST_DIR ARCH OUT.safetensors "
                        "[TRAIN_IMAGES]\n");
        return 2;
    }
    const char *dir = argv[1], *arch = argv[2], *out = argv[3];
    long n_train = argc == 5 ? strtol(argv[4], NULL, 10) : 10000;
    if (n_train < 1 || n_train > 60000) {
        fprintf(stderr, "train_arch_model: TRAIN_IMAGES '%s' is not 1 to 60000\n", argv[4]);
        return 2;
    }
    char paths[4][4096];
    static const char *const files[4] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};
    for (int i = 0; i < 4; i++)
        snprintf(paths[i], sizeof paths[i], "%s/%s", dir, files[i]);

    bp_dataset *all = NULL, *test = NULL, *train = NULL;
    bp_net *net = NULL;
    int status = 1;
    if (bp_dataset_load_idx(&all, paths[0], paths[1]) != BP_OK) {
        status = failed(paths[0]);
        goto done;
    }
    if (bp_dataset_load_idx(&test, paths[2], paths[3]) != BP_OK) {
        status = failed(paths[2]);
        goto done;
    }
    if (bp_dataset_slice(all, 0, (size_t)n_train, &train) != BP_OK) {
        status = failed("the training images");
        goto done;
    }
    int rows, cols;
    bp_dataset_image_shape(all, &rows, &cols);
    const int sizes[] = {rows * cols};
    size_t len = strlen(arch);
    int softmax = len >= 8 && strcmp(arch + len - 8, ":softmax") == 0;
    bp_net_config cfg;
    bp_net_config_init(&cfg);
    cfg.sizes = sizes;
    cfg.n_sizes = 1;
    cfg.layers = arch;
    cfg.input_channels = 1;
    cfg.input_rows = rows;
    cfg.input_cols = cols;
    cfg.cost = softmax ? BP_COST_LOG_LIKELIHOOD : BP_COST_CROSS_ENTROPY;
    cfg.init = BP_INIT_HE;
    cfg.seed = 1;
    if (bp_net_create(&net, &cfg) != BP_OK) {
        status = failed(arch);
        goto done;
    }
    bp_train_config tc;
    bp_train_config_init(&tc);
    tc.epochs = 1;
    tc.batch = 10;
    tc.eta = 0.05f;
    float accuracy;
    if (bp_train(net, train, NULL, &tc, NULL) != BP_OK) {
        status = failed("training");
        goto done;
    }
    if (bp_evaluate(net, test, &accuracy, NULL) != BP_OK) {
        status = failed("evaluating");
        goto done;
    }
    bp_model_meta meta = {.input_rows = rows, .input_cols = cols,
                          .input_scale = 1.0f / 255.0f,
                          .class_names = "0,1,2,3,4,5,6,7,8,9"};
    if (bp_model_save(net, out, &meta) != BP_OK) {
        status = failed(out);
        goto done;
    }
    printf("{\"test_accuracy\": %.6f}\n", (double)accuracy);
    status = 0;
done:
    bp_net_free(net);
    bp_dataset_free(train);
    bp_dataset_free(test);
    bp_dataset_free(all);
    return status;
}
