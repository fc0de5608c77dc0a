/*
 * test_mnist.c - accuracy on real MNIST (the slow suite). The data come from
 * scripts/fetch-mnist.sh (pinned SHA-256); the test command runs it first.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

#include "backprop.h"
#include "testutil.h"

static void mnist_path(char *out, size_t size, const char *file)
{
    const char *dir = getenv("BACKPROP_MNIST_DIR");
    const char *base = getenv("BACKPROP_DATA_DIR");
    const char *home = getenv("HOME");
    if (dir)
        snprintf(out, size, "%s/%s", dir, file);
    else if (base)
        snprintf(out, size, "%s/mnist/%s", base, file);
    else
        snprintf(out, size, "%s/.cache/backprop/mnist/%s", home ? home : ".", file);
}

static bp_dataset *load(const char *images, const char *labels)
{
    char ip[4096], lp[4096];
    mnist_path(ip, sizeof ip, images);
    mnist_path(lp, sizeof lp, labels);
    bp_dataset *ds = NULL;
    bp_status st = bp_dataset_load_idx(&ds, ip, lp);
    ck_assert_msg(st == BP_OK, "MNIST not loadable (%s): %s; run scripts/fetch-mnist.sh",
                  bp_status_str(st), bp_last_error());
    return ds;
}

/* [784,100,10] with the cross-entropy cost, 2 epochs of SGD at B = 10: at least 96% on the
 * 10,000 test images, having trained on the first 50,000 training images only. */
START_TEST(test_mnist_two_epochs_96)
{
    bp_dataset *all = load("train-images-idx3-ubyte", "train-labels-idx1-ubyte");
    bp_dataset *test = load("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte");
    ck_assert_uint_eq(bp_dataset_count(all), 60000);
    ck_assert_uint_eq(bp_dataset_count(test), 10000);
    bp_dataset *train, *valid;
    ck_assert_int_eq(bp_dataset_slice(all, 0, 50000, &train), BP_OK);
    ck_assert_int_eq(bp_dataset_slice(all, 50000, 10000, &valid), BP_OK);

    const int sizes[] = {784, 100, 10};
    bp_net_config cfg;
    bp_net_config_init(&cfg);
    cfg.sizes = sizes;
    cfg.n_sizes = 3;
    cfg.hidden = BP_ACT_SIGMOID;
    cfg.output = BP_ACT_SIGMOID;
    cfg.cost = BP_COST_CROSS_ENTROPY;
    cfg.seed = 1;
    bp_net *net;
    ck_assert_int_eq(bp_net_create(&net, &cfg), BP_OK);
    bp_train_config tc;
    bp_train_config_init(&tc);
    tc.epochs = 2;
    tc.batch = 10;
    tc.eta = 0.5f;
    bp_train_result res;
    ck_assert_msg(bp_train(net, train, valid, &tc, &res) == BP_OK, "%s", bp_last_error());
    float acc;
    ck_assert_int_eq(bp_evaluate(net, test, &acc, NULL), BP_OK);
    printf("# MNIST [784,100,10] cross-entropy, 2 epochs: validation %.4f, test %.4f, %.0f "
           "samples/s\n", res.validation_accuracy, acc, res.samples_per_second);
    ck_assert_msg(acc >= 0.96f, "test accuracy %.4f < 0.96", acc);
    /* Peak memory of the whole process (data as bytes, net, buffers, OpenBLAS): under 100 MB.
     * Sanitizer builds keep shadow memory and quarantines, so the figure means nothing there. */
#if !defined(__SANITIZE_ADDRESS__)
    struct rusage ru;
    ck_assert_int_eq(getrusage(RUSAGE_SELF, &ru), 0);
    printf("# peak resident memory %.1f MB\n", ru.ru_maxrss / 1024.0);
    ck_assert_msg(ru.ru_maxrss < 100 * 1024, "peak memory %ld kB >= 100 MB", ru.ru_maxrss);
#endif
    bp_net_free(net);
    bp_dataset_free(train);
    bp_dataset_free(valid);
    bp_dataset_free(all);
    bp_dataset_free(test);
}
END_TEST

/* Nielsen ch. 6's local receptive fields and pooling, small: conv:8x5x5 (ReLU), maxpool:2,
 * dense:10:softmax, one epoch of SGD at B = 10 on the first 10,000 training images, on both
 * backends' layer code (blas here; the fast suite holds blas to naive). At least 90% on the
 * 10,000 test images. */
START_TEST(test_mnist_conv_one_epoch_90)
{
    bp_dataset *all = load("train-images-idx3-ubyte", "train-labels-idx1-ubyte");
    bp_dataset *test = load("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte");
    bp_dataset *train;
    ck_assert_int_eq(bp_dataset_slice(all, 0, 10000, &train), BP_OK);
    int rows, cols;
    bp_dataset_image_shape(all, &rows, &cols);
    const int sizes[] = {rows * cols};
    bp_net_config cfg;
    bp_net_config_init(&cfg);
    cfg.sizes = sizes;
    cfg.n_sizes = 1;
    cfg.layers = "conv:8x5x5,maxpool:2,dense:10:softmax";
    cfg.input_channels = 1;
    cfg.input_rows = rows;
    cfg.input_cols = cols;
    cfg.cost = BP_COST_LOG_LIKELIHOOD;
    cfg.init = BP_INIT_HE;
    cfg.seed = 1;
    bp_net *net;
    ck_assert_msg(bp_net_create(&net, &cfg) == BP_OK, "%s", bp_last_error());
    bp_train_config tc;
    bp_train_config_init(&tc);
    tc.epochs = 1;
    tc.batch = 10;
    tc.eta = 0.1f;
    bp_train_result res;
    ck_assert_msg(bp_train(net, train, NULL, &tc, &res) == BP_OK, "%s", bp_last_error());
    float acc;
    ck_assert_int_eq(bp_evaluate(net, test, &acc, NULL), BP_OK);
    printf("# MNIST %s, 1 epoch on 10,000: test %.4f, %.1f s\n", cfg.layers, acc,
           res.train_seconds);
    ck_assert_msg(acc > 0.90f, "test accuracy %.4f <= 0.90", acc);
    bp_net_free(net);
    bp_dataset_free(train);
    bp_dataset_free(all);
    bp_dataset_free(test);
}
END_TEST

static Suite *mnist_suite(void)
{
    Suite *s = suite_create("mnist");
    TCase *tc = tcase_create("mnist");
    tcase_set_timeout(tc, 900);
    tcase_add_test(tc, test_mnist_two_epochs_96);
    tcase_add_test(tc, test_mnist_conv_one_epoch_90);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return bp_test_main(mnist_suite()); }
