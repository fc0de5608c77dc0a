/*
 * adding.c - a recurrent net trained on the caller's own time series: the adding problem
 * (Hochreiter & Schmidhuber, 1997). Each sequence is STEPS steps of two features, a value
 * drawn from U(0, 1) and a marker that is 1 at two random steps (one in each half) and 0
 * elsewhere; the target is the sum of the two marked values. A net that only averages its
 * input cannot do better than guessing 1, whose mean squared error is the variance of the sum,
 * 1/6; one that solves the task has to remember a value across up to STEPS - 1 steps.
 *
 *     cc adding.c $(pkg-config --cflags --libs backprop) -o adding && ./adding [lstm|gru]
 *
 * The sequences live in this program's memory, a sample a column of STEPS x 2 floats (step
 * after step, each step's features together), which is how a net made with input_channels 1,
 * input_rows STEPS and input_cols 2 reads them. The target is a real number, not a class, so
 * the program drives the steps itself: bp_net_sgd_step with the quadratic cost and a linear
 * output, no data set or trainer needed. Exits 0 when the held-out error is below a tenth of
 * the guess's.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <backprop.h>

enum { STEPS = 20, FEATURES = 2, HIDDEN = 32, BATCH = 32, TRAIN_STEPS = 4000, TEST = 2000 };
/* Plain SGD's rates: at the LSTM's 0.5 the GRU's gradient grows without bound within a few
 * hundred steps (its new gate sees W_hn h unsquashed by a cell), at 0.2 it learns. */
#define LSTM_ETA 0.5f
#define GRU_ETA 0.2f
#define GUESS_MSE (1.0 / 6.0) /* predicting 1, the mean of the sum */

/* splitmix64: the program's own deterministic generator, independent of the library's. */
static uint64_t next_u64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static float uniform(uint64_t *s) { return (float)(next_u64(s) >> 40) / (float)(1u << 24); }

/* n sequences into x (a column of STEPS * FEATURES floats each) and their sums into y. */
static void make_sequences(float *x, float *y, int n, uint64_t *seed)
{
    for (int s = 0; s < n; s++) {
        float *col = x + (size_t)s * STEPS * FEATURES;
        int first = (int)(next_u64(seed) % (STEPS / 2));
        int second = STEPS / 2 + (int)(next_u64(seed) % (STEPS / 2));
        y[s] = 0.0f;
        for (int t = 0; t < STEPS; t++) {
            col[t * FEATURES] = uniform(seed);
            col[t * FEATURES + 1] = t == first || t == second;
            if (t == first || t == second)
                y[s] += col[t * FEATURES];
        }
    }
}

static int fail(const char *what, bp_status st)
{
    fprintf(stderr, "adding: %s: %s (%s)\n", what, bp_last_error(), bp_status_str(st));
    return 1;
}

int main(int argc, char **argv)
{
    const char *kind = argc > 1 ? argv[1] : "lstm";
    if (strcmp(kind, "lstm") != 0 && strcmp(kind, "gru") != 0) {
        fprintf(stderr, "usage: adding [lstm|gru]\n");
        return 2;
    }
    char layers[64];
    snprintf(layers, sizeof layers, "%s:%d,dense:1:linear", kind, HIDDEN);
    int sizes[1] = {STEPS * FEATURES};
    bp_net_config nc;
    bp_net_config_init(&nc);
    nc.sizes = sizes;
    nc.n_sizes = 1;
    nc.layers = layers;
    nc.input_channels = 1; /* a sequence: STEPS rows of FEATURES */
    nc.input_rows = STEPS;
    nc.input_cols = FEATURES;
    nc.cost = BP_COST_QUADRATIC;
    nc.init = BP_INIT_XAVIER;
    nc.max_batch = TEST;
    nc.seed = 1;
    nc.threads = 1;
    bp_net *net;
    bp_status st = bp_net_create(&net, &nc);
    if (st != BP_OK)
        return fail("bp_net_create", st);

    float *x = malloc(sizeof(float) * STEPS * FEATURES * TEST);
    float *y = malloc(sizeof(float) * TEST), *out = malloc(sizeof(float) * TEST);
    if (!x || !y || !out) {
        fprintf(stderr, "adding: out of memory\n");
        return 1;
    }
    float eta = kind[0] == 'g' ? GRU_ETA : LSTM_ETA;
    uint64_t seed = 2024;
    double window = 0.0;
    for (int step = 1; step <= TRAIN_STEPS; step++) {
        make_sequences(x, y, BATCH, &seed); /* a fresh batch every step: no overfitting */
        double cost;
        st = bp_net_sgd_step(net, x, STEPS * FEATURES, y, 1, BATCH, eta, &cost);
        if (st != BP_OK)
            return fail("bp_net_sgd_step", st);
        window += 2.0 * cost; /* the quadratic cost is half the squared error */
        if (step % 500 == 0) {
            printf("step %4d  training mse %.4f\n", step, window / 500);
            window = 0.0;
        }
    }

    make_sequences(x, y, TEST, &seed);
    st = bp_net_forward(net, x, STEPS * FEATURES, TEST, out, 1);
    if (st != BP_OK)
        return fail("bp_net_forward", st);
    double mse = 0.0;
    for (int s = 0; s < TEST; s++)
        mse += ((double)out[s] - y[s]) * ((double)out[s] - y[s]);
    mse /= TEST;
    printf("%s:%d on %d held-out sequences of %d steps: mse %.4f (guessing 1: %.4f)\n", kind,
           HIDDEN, TEST, STEPS, mse, GUESS_MSE);
    free(x);
    free(y);
    free(out);
    bp_net_free(net);
    if (mse >= GUESS_MSE / 10) {
        fprintf(stderr, "adding: the net did not learn the task (mse %.4f)\n", mse);
        return 1;
    }
    return 0;
}
