/*
 * test_recurrent.c - the recurrent layers (src/layers/lstm.c, gru.c, sequence.c) and their
 * cell kernels (src/kernels/recurrent.c), trained by backpropagation through time.
 *
 * The oracle is an LSTM and a GRU written here in double precision from the equations
 * (PyTorch's gate orders and forms, h_0 = c_0 = 0), reading the sequence by rows or by cols,
 * followed by a dense softmax layer and the log-likelihood cost, sharing no code with the
 * library; it reads the library's parameters through the tensor table (nn.LSTM's weight_ih
 * [4H, F], weight_hh [4H, H] and one bias [4H]; nn.GRU's [3H, F], [3H, H], bias_ih and
 * bias_hh [3H]). BPTT's gradients are checked against its centred finite differences,
 * norm-wise, at the 1e-4 that test_conv.c and test_gradcheck.c assert for float computations
 * against a double reference.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backprop.h"
#include "kernels/backend.h"
#include "testutil.h"

static const double GRAD_REL_TOL = 1e-4;

typedef enum { LSTM, GRU } kind;
static const char *const kind_names[] = {"lstm", "gru"};
static const int kind_gates[] = {4, 3};

/* What a case runs: the layer kind and whether it reads its input by cols. */
typedef struct {
    kind k;
    int by_cols;
} variant;

typedef struct {
    variant v;
    int steps, features, hidden, classes;
    /* row-major: [G H][F], [G H][H], [G H], [G H] (gru's bias_hh), [K][H], [K] */
    double *wx, *wh, *b, *bh, *wd, *bd;
} ref_net;

static double sigmoid(double z) { return 1.0 / (1.0 + exp(-z)); }

/* Feature f of step t of one sequence: step-major by rows; by cols the image is features x
 * steps and a step is one of its columns. */
static double ref_input(const ref_net *r, const double *x, int t, int f)
{
    return r->v.by_cols ? x[f * r->steps + t] : x[t * r->features + f];
}

/* W x_t + b over the gate rows q, for the weights w (rows of `cols`) and bias b. */
static void ref_affine(int rows, int cols, const double *w, const double *b, const double *v,
                       double *out)
{
    for (int q = 0; q < rows; q++) {
        double s = b ? b[q] : 0.0;
        for (int k = 0; k < cols; k++)
            s += w[q * cols + k] * v[k];
        out[q] = s;
    }
}

/* The last hidden state of one sequence x. */
static void ref_recurrent(const ref_net *r, const double *x, double *h_out)
{
    int H = r->hidden, F = r->features, G = kind_gates[r->v.k] * H;
    double *h = calloc((size_t)H, sizeof(double)), *c = calloc((size_t)H, sizeof(double));
    double *zx = malloc(sizeof(double) * G), *zh = malloc(sizeof(double) * G);
    double *xt = malloc(sizeof(double) * F);
    for (int t = 0; t < r->steps; t++) {
        for (int f = 0; f < F; f++)
            xt[f] = ref_input(r, x, t, f);
        ref_affine(G, F, r->wx, r->b, xt, zx);
        ref_affine(G, H, r->wh, r->v.k == GRU ? r->bh : NULL, h, zh);
        for (int k = 0; k < H; k++) {
            if (r->v.k == LSTM) {
                double i = sigmoid(zx[k] + zh[k]), f = sigmoid(zx[H + k] + zh[H + k]);
                double g = tanh(zx[2 * H + k] + zh[2 * H + k]);
                double o = sigmoid(zx[3 * H + k] + zh[3 * H + k]);
                c[k] = f * c[k] + i * g;
                h[k] = o * tanh(c[k]);
            } else {
                double rg = sigmoid(zx[k] + zh[k]), z = sigmoid(zx[H + k] + zh[H + k]);
                double n = tanh(zx[2 * H + k] + rg * zh[2 * H + k]);
                c[k] = (1 - z) * n + z * h[k]; /* h_t, kept apart until every unit has it */
            }
        }
        if (r->v.k == GRU)
            memcpy(h, c, sizeof(double) * (size_t)H);
    }
    memcpy(h_out, h, sizeof(double) * (size_t)H);
    free(h);
    free(c);
    free(zx);
    free(zh);
    free(xt);
}

/* The softmax outputs of one sequence. */
static void ref_outputs(const ref_net *r, const double *x, double *a)
{
    double h[64];
    ref_recurrent(r, x, h);
    double max = -INFINITY;
    for (int k = 0; k < r->classes; k++) {
        double v = r->bd[k];
        for (int j = 0; j < r->hidden; j++)
            v += r->wd[k * r->hidden + j] * h[j];
        a[k] = v;
        max = fmax(max, v);
    }
    double sum = 0;
    for (int k = 0; k < r->classes; k++)
        sum += (a[k] = exp(a[k] - max));
    for (int k = 0; k < r->classes; k++)
        a[k] /= sum;
}

/* The mean log-likelihood cost over the batch (samples sample-major in x). */
static double ref_cost(const ref_net *r, const double *x, const int *labels, int batch)
{
    double total = 0, a[16];
    for (int s = 0; s < batch; s++) {
        ref_outputs(r, x + (size_t)s * r->steps * r->features, a);
        total -= log(a[labels[s]]);
    }
    return total / batch;
}

/* The reference's array for tensor t of the net (kind:H,dense:K:softmax). */
static double *ref_tensor(ref_net *r, const bp_tensor_info *t)
{
    if (t->layer == 1) {
        const char *name = t->name + strlen("layers.0.");
        return !strcmp(name, "weight_ih")   ? r->wx
               : !strcmp(name, "weight_hh") ? r->wh
               : !strcmp(name, "bias_hh")   ? r->bh
                                            : r->b; /* lstm's bias, gru's bias_ih */
    }
    return t->role == BP_ROLE_WEIGHT ? r->wd : r->bd;
}

static ref_net *ref_of(bp_net *net, variant v, int steps, int features, int hidden,
                       int classes)
{
    ref_net *r = calloc(1, sizeof *r);
    *r = (ref_net){.v = v, .steps = steps, .features = features, .hidden = hidden,
                   .classes = classes};
    int g = kind_gates[v.k] * hidden;
    r->wx = malloc(sizeof(double) * g * features);
    r->wh = malloc(sizeof(double) * g * hidden);
    r->b = malloc(sizeof(double) * g);
    r->bh = calloc((size_t)g, sizeof(double));
    r->wd = malloc(sizeof(double) * classes * hidden);
    r->bd = malloc(sizeof(double) * classes);
    const float *params = bp_net_params(net, NULL);
    int tensors = bp_net_tensor_count(net);
    ck_assert_int_eq(tensors, v.k == LSTM ? 5 : 6);
    for (int t = 0; t < tensors; t++) {
        bp_tensor_info info;
        bp_net_tensor(net, t, &info);
        double *d = ref_tensor(r, &info);
        for (size_t e = 0; e < info.count; e++)
            d[e] = params[bp_test_tensor_at(&info, e)];
    }
    return r;
}

static void ref_free(ref_net *r)
{
    free(r->wx);
    free(r->wh);
    free(r->b);
    free(r->bh);
    free(r->wd);
    free(r->bd);
    free(r);
}

static bp_net *make_net(variant v, int steps, int features, int hidden, int classes,
                        int batch, const char *backend, int threads)
{
    char layers[64];
    snprintf(layers, sizeof layers, "%s:%d%s,dense:%d:softmax", kind_names[v.k], hidden,
             v.by_cols ? ":cols" : "", classes);
    int sizes[1] = {steps * features};
    bp_net_config nc;
    bp_net_config_init(&nc);
    nc.sizes = sizes;
    nc.n_sizes = 1;
    nc.layers = layers;
    nc.input_channels = 1;
    nc.input_rows = v.by_cols ? features : steps;
    nc.input_cols = v.by_cols ? steps : features;
    nc.cost = BP_COST_LOG_LIKELIHOOD;
    nc.init = BP_INIT_XAVIER;
    nc.seed = 5;
    nc.max_batch = batch;
    nc.backend = backend;
    nc.threads = threads;
    bp_net *net;
    ck_assert_msg(bp_net_create(&net, &nc) == BP_OK, "%s: %s", layers, bp_last_error());
    /* Every parameter away from its initial pattern (the forget gate's biases all 1, the
     * others 0), so a term the backward pass dropped would show. */
    size_t n;
    float *params = bp_net_params(net, &n);
    uint64_t seed = 31;
    float *noise = malloc(sizeof(float) * n);
    bp_test_fill(noise, n, -0.3f, 0.3f, &seed);
    for (size_t i = 0; i < n; i++)
        params[i] += noise[i];
    free(noise);
    /* ... and the padding between tensors back to 0, as the arena keeps it. */
    float *keep = calloc(n, sizeof(float));
    for (int t = 0; t < bp_net_tensor_count(net); t++) {
        bp_tensor_info info;
        bp_net_tensor(net, t, &info);
        for (size_t e = 0; e < info.count; e++)
            keep[bp_test_tensor_at(&info, e)] = params[bp_test_tensor_at(&info, e)];
    }
    memcpy(params, keep, sizeof(float) * n);
    free(keep);
    return net;
}

/* Inputs in [-1, 1) (column-major: a sequence a column) and the labels. */
static void fill_batch(float *x, int *labels, double *xd, int width, int classes, int batch)
{
    uint64_t seed = 77;
    bp_test_fill(x, (size_t)width * batch, -1.0f, 1.0f, &seed);
    for (int i = 0; i < width * batch; i++)
        xd[i] = x[i];
    for (int s = 0; s < batch; s++)
        labels[s] = (s * 5 + 2) % classes;
}

static double gradient_error(variant v, int steps, int features, int hidden, int classes,
                             int batch, const char *backend, int threads)
{
    bp_net *net = make_net(v, steps, features, hidden, classes, batch, backend, threads);
    int width = steps * features;
    float *x = malloc(sizeof(float) * (size_t)width * batch);
    float *y = calloc((size_t)classes * batch, sizeof(float));
    double *xd = malloc(sizeof(double) * (size_t)width * batch);
    int *labels = malloc(sizeof(int) * (size_t)batch);
    fill_batch(x, labels, xd, width, classes, batch);
    for (int s = 0; s < batch; s++)
        y[s * classes + labels[s]] = 1.0f;
    double cost;
    ck_assert_msg(bp_net_gradient(net, x, width, y, classes, batch, &cost) == BP_OK, "%s",
                  bp_last_error());
    ref_net *r = ref_of(net, v, steps, features, hidden, classes);
    double ref = ref_cost(r, xd, labels, batch);
    ck_assert_msg(fabs(ref - cost) <= 1e-4 * fmax(1.0, fabs(ref)), "cost %g, reference %g",
                  cost, ref);
    const float *grads = bp_net_grads(net, NULL);
    double err = 0, norm = 0, hstep = 1e-5;
    for (int t = 0; t < bp_net_tensor_count(net); t++) {
        bp_tensor_info info;
        bp_net_tensor(net, t, &info);
        double *p = ref_tensor(r, &info);
        for (size_t e = 0; e < info.count; e++) {
            double keep = p[e];
            p[e] = keep + hstep;
            double up = ref_cost(r, xd, labels, batch);
            p[e] = keep - hstep;
            double down = ref_cost(r, xd, labels, batch);
            p[e] = keep;
            double fd = (up - down) / (2 * hstep), bp = grads[bp_test_tensor_at(&info, e)];
            err += (bp - fd) * (bp - fd);
            norm += fd * fd;
        }
    }
    ref_free(r);
    free(x);
    free(y);
    free(xd);
    free(labels);
    bp_net_free(net);
    ck_assert(norm > 0);
    return sqrt(err / norm);
}

static const variant variants[] = {{LSTM, 0}, {GRU, 0}, {LSTM, 1}, {GRU, 1}};
enum { VARIANTS = sizeof variants / sizeof *variants };

static const char *variant_name(variant v)
{
    static const char *const names[2][2] = {{"lstm", "lstm:cols"}, {"gru", "gru:cols"}};
    return names[v.k][v.by_cols];
}

/* BPTT over 1 to 5 steps, several batch sizes, both backends, each kind by rows and by
 * cols. */
START_TEST(test_gradient_through_time)
{
    static const struct { int steps, features, hidden, batch; } cases[] = {
        {3, 2, 3, 1}, {4, 3, 5, 3}, {5, 2, 4, 7}, {1, 4, 3, 2}, {5, 1, 2, 4},
    };
    variant v = variants[_i];
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++)
        for (int be = 0; be < 2; be++) {
            const char *backend = be ? "blas" : "naive";
            double e = gradient_error(v, cases[c].steps, cases[c].features, cases[c].hidden,
                                      3, cases[c].batch, backend, 1);
            ck_assert_msg(e < GRAD_REL_TOL, "%s: T %d, F %d, H %d, B %d, %s: relative error %g",
                          variant_name(v), cases[c].steps, cases[c].features, cases[c].hidden,
                          cases[c].batch, backend, e);
        }
}
END_TEST

/* A batch large enough for the team to split it (forward and BPTT by columns, BP4 by gate
 * rows). */
START_TEST(test_gradient_threads)
{
    variant v = variants[_i];
    double e = gradient_error(v, 4, 3, 20, 3, 40, "blas", 2);
    ck_assert_msg(e < GRAD_REL_TOL, "%s, 2 threads: relative error %g", variant_name(v), e);
}
END_TEST

/* dC_x/dX through bp_net_backward against finite differences of C_x = u . a(x) over the
 * inputs, per sample: the input gradient of BPTT, W_x^T dZ over every step. */
START_TEST(test_input_gradient)
{
    enum { T = 4, F = 3, HID = 4, K = 3, B = 3 };
    variant v = variants[_i];
    bp_net *net = make_net(v, T, F, HID, K, B, "blas", 1);
    float x[T * F * B], u[K * B], dx[T * F * B];
    double xd[T * F * B];
    int labels[B];
    fill_batch(x, labels, xd, T * F, K, B);
    uint64_t seed = 3;
    bp_test_fill(u, K * B, -1.0f, 1.0f, &seed);
    ck_assert_msg(bp_net_backward(net, x, T * F, u, K, B, dx, T * F) == BP_OK, "%s",
                  bp_last_error());
    ref_net *r = ref_of(net, v, T, F, HID, K);
    double err = 0, norm = 0, hstep = 1e-5, a[K];
    for (int s = 0; s < B; s++)
        for (int i = 0; i < T * F; i++) {
            double *p = xd + s * T * F + i, keep = *p, up = 0, down = 0;
            *p = keep + hstep;
            ref_outputs(r, xd + s * T * F, a);
            for (int k = 0; k < K; k++)
                up += u[s * K + k] * a[k];
            *p = keep - hstep;
            ref_outputs(r, xd + s * T * F, a);
            for (int k = 0; k < K; k++)
                down += u[s * K + k] * a[k];
            *p = keep;
            double fd = (up - down) / (2 * hstep), bp = dx[s * T * F + i];
            err += (bp - fd) * (bp - fd);
            norm += fd * fd;
        }
    ck_assert(norm > 0);
    ck_assert_msg(sqrt(err / norm) < GRAD_REL_TOL, "%s: dC/dX relative error %g",
                  variant_name(v), sqrt(err / norm));
    ref_free(r);
    bp_net_free(net);
}
END_TEST

/* The LSTM's fast cell against the reference one: the same equations, vexp.h's activations within a
 * few ulp of libm's. */
START_TEST(test_cell_kernels_agree)
{
    enum { H = 37, COLS = 5, LDG = 4 * H + 3, LDS = H + 2 };
    float ga[LDG * COLS], gb[LDG * COLS], cp[LDS * COLS];
    float s[2][3][LDS * COLS];
    uint64_t seed = 9;
    bp_test_fill(ga, LDG * COLS, -4.0f, 4.0f, &seed);
    bp_test_fill(cp, LDS * COLS, -2.0f, 2.0f, &seed);
    float bias[4 * H];
    bp_test_fill(bias, 4 * H, -1.0f, 1.0f, &seed);
    memcpy(gb, ga, sizeof ga);
    bp_backend_naive.lstm_fwd(H, COLS, bias, ga, LDG, cp, s[0][0], s[0][1], LDS, s[0][2], LDS);
    bp_backend_blas.lstm_fwd(H, COLS, bias, gb, LDG, cp, s[1][0], s[1][1], LDS, s[1][2], LDS);
    for (int j = 0; j < COLS; j++) {
        for (int k = 0; k < 4 * H; k++)
            ck_assert_msg(fabsf(ga[j * LDG + k] - gb[j * LDG + k]) <= 1e-6f, "gate %d", k);
        for (int v = 0; v < 3; v++)
            for (int k = 0; k < H; k++)
                ck_assert_msg(fabsf(s[0][v][j * LDS + k] - s[1][v][j * LDS + k]) <= 1e-5f,
                              "state %d, unit %d", v, k);
    }
    /* c = f c_prev + i g and h = o tanh c, from the gates the kernel left */
    for (int j = 0; j < COLS; j++)
        for (int k = 0; k < H; k++) {
            const float *z = ga + j * LDG;
            double c = (double)z[H + k] * cp[j * LDS + k] + (double)z[k] * z[2 * H + k];
            ck_assert(fabs(c - s[0][0][j * LDS + k]) <= 1e-6 * fmax(1.0, fabs(c)));
            ck_assert(fabs(z[3 * H + k] * tanh(c) - s[0][2][j * LDS + k]) <= 1e-6);
        }
}
END_TEST

/* The GRU's fast cell against the reference one, and both against its equations. */
START_TEST(test_gru_cell_kernels_agree)
{
    enum { H = 29, COLS = 4, LDG = 7 * H + 5, LDO = H + 3 };
    float ga[LDG * COLS], gb[LDG * COLS], bx[3 * H], bh[3 * H], out[2][LDO * COLS];
    uint64_t seed = 10;
    bp_test_fill(ga, LDG * COLS, -3.0f, 3.0f, &seed);
    bp_test_fill(bx, 3 * H, -1.0f, 1.0f, &seed);
    bp_test_fill(bh, 3 * H, -1.0f, 1.0f, &seed);
    float before[LDG * COLS];
    memcpy(before, ga, sizeof ga);
    memcpy(gb, ga, sizeof ga);
    bp_backend_naive.gru_fwd(H, COLS, bx, bh, ga, LDG, out[0], LDO);
    bp_backend_blas.gru_fwd(H, COLS, bx, bh, gb, LDG, out[1], LDO);
    for (int j = 0; j < COLS; j++)
        for (int k = 0; k < H; k++) {
            const float *x = before + j * LDG, *hz = x + 3 * H, *hp = x + 6 * H;
            double r = sigmoid((double)x[k] + bx[k] + hz[k] + bh[k]);
            double z = sigmoid((double)x[H + k] + bx[H + k] + hz[H + k] + bh[H + k]);
            double hn = (double)hz[2 * H + k] + bh[2 * H + k];
            double n = tanh((double)x[2 * H + k] + bx[2 * H + k] + r * hn);
            double h = (1 - z) * n + z * hp[k];
            for (int v = 0; v < 2; v++) {
                const float *g = (v ? gb : ga) + j * LDG;
                ck_assert_msg(fabs(g[k] - r) <= 1e-6 && fabs(g[H + k] - z) <= 1e-6 &&
                                  fabs(g[2 * H + k] - n) <= 1e-6 &&
                                  fabs(g[5 * H + k] - hn) <= 1e-6,
                              "%s: gates of unit %d", v ? "fast" : "ref", k);
                ck_assert_msg(fabs(out[v][j * LDO + k] - h) <= 1e-6, "%s: h of unit %d",
                              v ? "fast" : "ref", k);
            }
        }
}
END_TEST

/* blas and naive give the same gradients within float rounding on one net. */
START_TEST(test_blas_matches_naive)
{
    enum { T = 5, F = 4, HID = 8, K = 3, B = 6 };
    variant v = variants[_i];
    bp_net *nets[2] = {make_net(v, T, F, HID, K, B, "naive", 1),
                       make_net(v, T, F, HID, K, B, "blas", 1)};
    float x[T * F * B], y[K * B] = {0};
    double xd[T * F * B];
    int labels[B];
    fill_batch(x, labels, xd, T * F, K, B);
    for (int s = 0; s < B; s++)
        y[s * K + labels[s]] = 1.0f;
    size_t n;
    const float *g[2];
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(bp_net_gradient(nets[i], x, T * F, y, K, B, NULL), BP_OK);
        g[i] = bp_net_grads(nets[i], &n);
    }
    ck_assert_msg(bp_test_nmse(g[1], g[0], n) < 1e-10, "%s: nmse %g", variant_name(v),
                  bp_test_nmse(g[1], g[0], n));
    bp_net_free(nets[0]);
    bp_net_free(nets[1]);
}
END_TEST

/* The plans: tensors and their shapes, the initial biases, the spec back, and what the
 * layers refuse. */
START_TEST(test_plan)
{
    bp_net *net = make_net((variant){LSTM, 0}, 28, 28, 16, 10, 4, "blas", 1);
    bp_tensor_info info;
    bp_net_tensor(net, 0, &info);
    ck_assert_str_eq(info.name, "layers.0.weight_ih");
    ck_assert_int_eq(info.shape[0], 64);
    ck_assert_int_eq(info.shape[1], 28);
    bp_net_tensor(net, 1, &info);
    ck_assert_str_eq(info.name, "layers.0.weight_hh");
    ck_assert_int_eq(info.shape[1], 16);
    ck_assert_str_eq(bp_net_spec(net), "lstm:16,dense:10:softmax");
    bp_net_free(net);
    /* By cols a 1 x 6 x 9 image is 9 steps of 6 features. */
    net = make_net((variant){GRU, 1}, 9, 6, 5, 3, 4, "blas", 1);
    static const char *const gru_names[] = {"weight_ih", "weight_hh", "bias_ih", "bias_hh"};
    static const int gru_shapes[][2] = {{15, 6}, {15, 5}, {15, 0}, {15, 0}};
    for (int t = 0; t < 4; t++) {
        bp_net_tensor(net, t, &info);
        ck_assert_str_eq(info.name + strlen("layers.0."), gru_names[t]);
        ck_assert_int_eq(info.shape[0], gru_shapes[t][0]);
        if (gru_shapes[t][1])
            ck_assert_int_eq(info.shape[1], gru_shapes[t][1]);
    }
    ck_assert_str_eq(bp_net_spec(net), "gru:5:cols,dense:3:softmax");
    bp_net_free(net);

    int sizes[1] = {12};
    bp_net_config nc;
    bp_net_config_init(&nc);
    nc.sizes = sizes;
    nc.n_sizes = 1;
    nc.layers = "lstm:4,dense:2:softmax";
    nc.input_channels = 1;
    nc.input_rows = 3;
    nc.input_cols = 4;
    nc.init = BP_INIT_GAUSSIAN;
    ck_assert_int_eq(bp_net_create(&net, &nc), BP_OK);
    const float *b = bp_net_biases(net, 1);
    for (int i = 0; i < 16; i++)
        ck_assert_msg(b[i] == (i >= 4 && i < 8 ? 1.0f : 0.0f), "bias %d = %g", i, b[i]);
    bp_net_free(net);
    nc.layers = "gru:4:rows,dense:2:softmax";
    ck_assert_int_eq(bp_net_create(&net, &nc), BP_OK);
    ck_assert_str_eq(bp_net_spec(net), "gru:4,dense:2:softmax");
    const float *params = bp_net_params(net, NULL);
    for (int t = 2; t < 4; t++) {
        bp_net_tensor(net, t, &info);
        for (size_t e = 0; e < info.count; e++)
            ck_assert(params[bp_test_tensor_at(&info, e)] == 0.0f);
    }
    bp_net_free(net);
    static const char *const bad[][2] = {
        {"lstm:0,dense:2", "hidden units"},
        {"lstm:x,dense:2", "hidden units"},
        {"gru:4:relu,dense:2", "read by 'rows' (the default) or 'cols'"},
        {"gru:4:cols:x,dense:2", "read by 'rows' (the default) or 'cols'"},
        {"gru:349526,dense:2", "hidden units"},
        {"dense:5,lstm:4,dense:2", "a sequence is 1 x steps x features"},
        {"dense:5,gru:4,dense:2", "a sequence is 1 x steps x features"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        nc.layers = bad[i][0];
        ck_assert_int_eq(bp_net_create(&net, &nc), BP_EINVAL);
        ck_assert_msg(strstr(bp_last_error(), bad[i][1]), "%s: %s", bad[i][0], bp_last_error());
    }
}
END_TEST

/* A task that needs memory across steps: the sign of the first step's value, the rest noise,
 * decided at the last of 6 steps. Learned from 2,000 sequences in a few epochs. */
START_TEST(test_learns_first_sign)
{
    enum { T = 6, N = 2000, TEST = 500, B = 20 };
    variant v = variants[_i];
    float *x = malloc(sizeof(float) * T * (N + TEST));
    int *labels = malloc(sizeof(int) * (N + TEST));
    uint64_t seed = 12;
    bp_test_fill(x, (size_t)T * (N + TEST), -1.0f, 1.0f, &seed);
    for (int s = 0; s < N + TEST; s++)
        labels[s] = x[s * T] > 0;
    bp_net *net = make_net(v, T, 1, 8, 2, B, "blas", 1);
    float y[2 * B];
    for (int epoch = 0; epoch < 10; epoch++)
        for (int s0 = 0; s0 < N; s0 += B) {
            memset(y, 0, sizeof y);
            for (int s = 0; s < B; s++)
                y[s * 2 + labels[s0 + s]] = 1.0f;
            ck_assert_int_eq(bp_net_sgd_step(net, x + (size_t)s0 * T, T, y, 2, B, 0.5f, NULL),
                             BP_OK);
        }
    int right = 0;
    float out[2 * TEST];
    ck_assert_int_eq(bp_net_reserve(net, TEST), BP_OK);
    ck_assert_int_eq(bp_net_forward(net, x + (size_t)N * T, T, TEST, out, 2), BP_OK);
    for (int s = 0; s < TEST; s++)
        right += (out[s * 2 + 1] > out[s * 2]) == labels[N + s];
    ck_assert_msg(right >= TEST * 95 / 100, "%s: %d of %d held-out sequences right",
                  variant_name(v), right, TEST);
    free(x);
    free(labels);
    bp_net_free(net);
}
END_TEST

/* A trained recurrent net saves and loads to the same outputs, bit for bit, with its input
 * shape and its reading order (their ONNX export is test_onnx.c's). */
START_TEST(test_model_round_trip)
{
    enum { T = 4, F = 3, HID = 5, K = 3, B = 4 };
    variant v = variants[_i];
    bp_net *net = make_net(v, T, F, HID, K, B, "blas", 1);
    float x[T * F * B], y[K * B] = {0}, a[K * B], b[K * B];
    double xd[T * F * B];
    int labels[B];
    fill_batch(x, labels, xd, T * F, K, B);
    for (int s = 0; s < B; s++)
        y[s * K + labels[s]] = 1.0f;
    for (int s = 0; s < 3; s++)
        ck_assert_int_eq(bp_net_sgd_step(net, x, T * F, y, K, B, 0.5f, NULL), BP_OK);
    ck_assert_int_eq(bp_net_forward(net, x, T * F, B, a, K), BP_OK);
    char path[] = "/tmp/test_recurrent_XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_msg(bp_model_save(net, path, NULL) == BP_OK, "%s", bp_last_error());
    bp_net *back;
    ck_assert_msg(bp_model_load(&back, path, NULL, NULL) == BP_OK, "%s", bp_last_error());
    ck_assert_str_eq(bp_net_spec(back), bp_net_spec(net));
    int c, h, w;
    bp_net_input_shape(back, &c, &h, &w);
    ck_assert(c == 1 && h == (v.by_cols ? F : T) && w == (v.by_cols ? T : F));
    ck_assert_int_eq(bp_net_forward(back, x, T * F, B, b, K), BP_OK);
    ck_assert(memcmp(a, b, sizeof a) == 0);
    remove(path);
    bp_net_free(back);
    bp_net_free(net);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("recurrent");
    TCase *tc = tcase_create("recurrent");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_gradient_through_time, 0, VARIANTS);
    tcase_add_loop_test(tc, test_gradient_threads, 0, VARIANTS);
    tcase_add_loop_test(tc, test_input_gradient, 0, VARIANTS);
    tcase_add_test(tc, test_cell_kernels_agree);
    tcase_add_test(tc, test_gru_cell_kernels_agree);
    tcase_add_loop_test(tc, test_blas_matches_naive, 0, VARIANTS);
    tcase_add_test(tc, test_plan);
    tcase_add_loop_test(tc, test_learns_first_sign, 0, VARIANTS);
    tcase_add_loop_test(tc, test_model_round_trip, 0, VARIANTS);
    suite_add_tcase(s, tc);
    return bp_test_main(s);
}
