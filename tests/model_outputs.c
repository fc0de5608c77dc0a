/*
 * model_outputs.c - the library's side of the PyTorch comparison (tests/test_torch.py):
 *
 *   model_outputs train MNIST_DIR MODEL     train a small net on real MNIST and save it,
 *                                           printing its accuracy on the test set
 *   model_outputs predict MODEL IMAGES FIRST COUNT OUT.csv
 *                                           the loaded model's outputs for images
 *                                           FIRST .. FIRST+COUNT-1, one CSV line each
 *
 * The CSV is examples/load_in_torch.py's: index,predicted,outputs to 9 significant digits (so
 * each float32 comes back exactly). The net of `train` uses every layer kind a model file maps
 * (dense, batch norm, dropout) and several activations, so the comparison covers each mapping.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backprop.h"

static int fail(const char *what)
{
    fprintf(stderr, "model_outputs: %s: %s\n", what, bp_last_error());
    return 1;
}

static int train(const char *dir, const char *model)
{
    char images[1024], labels[1024];
    snprintf(images, sizeof images, "%s/train-images-idx3-ubyte", dir);
    snprintf(labels, sizeof labels, "%s/train-labels-idx1-ubyte", dir);
    bp_dataset *all, *part;
    if (bp_dataset_load_idx(&all, images, labels) != BP_OK)
        return fail(images);
    if (bp_dataset_slice(all, 0, 10000, &part) != BP_OK)
        return fail("slice");
    int sizes[1] = {784};
    bp_net_config nc;
    bp_net_config_init(&nc);
    nc.sizes = sizes;
    nc.n_sizes = 1;
    nc.layers = "dense:64:linear,batchnorm:relu,dropout:0.2,dense:32:tanh,dense:10:softmax";
    nc.cost = BP_COST_LOG_LIKELIHOOD;
    nc.init = BP_INIT_HE;
    bp_net *net;
    if (bp_net_create(&net, &nc) != BP_OK)
        return fail("net");
    bp_train_config tc;
    bp_train_config_init(&tc);
    tc.epochs = 2;
    tc.batch = 32;
    tc.eta = 0.05f;
    if (bp_train(net, part, NULL, &tc, NULL) != BP_OK)
        return fail("train");
    /* The trained net's own figure, before any file: what the loaded model must reproduce. */
    bp_dataset *test;
    snprintf(images, sizeof images, "%s/t10k-images-idx3-ubyte", dir);
    snprintf(labels, sizeof labels, "%s/t10k-labels-idx1-ubyte", dir);
    float accuracy;
    if (bp_dataset_load_idx(&test, images, labels) != BP_OK)
        return fail(images);
    if (bp_evaluate(net, test, &accuracy, NULL) != BP_OK)
        return fail("evaluate");
    printf("test_accuracy %.4f\n", (double)accuracy);
    bp_dataset_free(test);
    bp_model_meta meta = {.input_rows = 28, .input_cols = 28, .input_scale = 1.0f / 255.0f,
                          .class_names = "0,1,2,3,4,5,6,7,8,9",
                          .training = "{\"epochs\": 2, \"batch\": 32, \"eta\": 0.05, "
                                      "\"samples\": 10000}"};
    if (bp_model_save(net, model, &meta) != BP_OK)
        return fail(model);
    bp_net_free(net);
    bp_dataset_free(part);
    bp_dataset_free(all);
    return 0;
}

static int predict(const char *model, const char *images, long first, long count,
                   const char *out_path)
{
    bp_net *net;
    bp_model_meta meta;
    if (bp_model_load(&net, model, NULL, &meta) != BP_OK)
        return fail(model);
    bp_dataset *all;
    /* Only the images matter; the labels file sits beside them. */
    char labels[1024];
    snprintf(labels, sizeof labels, "%s", images);
    char *at = strstr(labels, "images-idx3");
    if (!at)
        return fprintf(stderr, "model_outputs: %s is not named *images-idx3*\n", images), 1;
    memcpy(at, "labels-idx1", 11);
    if (bp_dataset_load_idx(&all, images, labels) != BP_OK)
        return fail(images);
    int width = bp_net_size(net, 0), n_out = bp_net_size(net, bp_net_layers(net));
    if (bp_dataset_dim(all) != width || first < 0 || count < 1 ||
        (size_t)(first + count) > bp_dataset_count(all))
        return fprintf(stderr, "model_outputs: bad range or width\n"), 1;
    size_t *idx = malloc(sizeof(size_t) * (size_t)count);
    float *x = malloc(sizeof(float) * (size_t)width * (size_t)count);
    float *y = malloc(sizeof(float) * (size_t)n_out * (size_t)count);
    for (long i = 0; i < count; i++)
        idx[i] = (size_t)(first + i);
    if (bp_dataset_gather(all, idx, (int)count, x, NULL, 0) != BP_OK)
        return fail("gather");
    if (bp_net_forward(net, x, width, (int)count, y, n_out) != BP_OK)
        return fail("forward");
    FILE *out = fopen(out_path, "w");
    if (!out)
        return perror(out_path), 1;
    for (long i = 0; i < count; i++) {
        const float *o = y + (size_t)i * n_out;
        int best = 0;
        for (int k = 1; k < n_out; k++)
            best = o[k] > o[best] ? k : best;
        fprintf(out, "%ld,%d", first + i, best);
        for (int k = 0; k < n_out; k++)
            fprintf(out, ",%.9g", (double)o[k]);
        fputc('\n', out);
    }
    if (fclose(out) != 0)
        return perror(out_path), 1;
    free(idx);
    free(x);
    free(y);
    bp_dataset_free(all);
    bp_net_free(net);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "train") == 0)
        return train(argv[2], argv[3]);
    if (argc == 7 && strcmp(argv[1], "predict") == 0)
        return predict(argv[2], argv[3], atol(argv[4]), atol(argv[5]), argv[6]);
    fprintf(stderr, "usage: model_outputs train MNIST_DIR MODEL\n"
                    "       model_outputs predict MODEL IMAGES FIRST COUNT OUT.csv\n");
    return 2;
}
