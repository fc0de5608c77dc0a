/*
 * test_conv.c - convolution, pooling and batch norm over channels (src/layers/conv.c, pool.c,
 * batchnorm.c) and the window kernels of both backends (src/kernels/window.c).
 *
 * The oracle is a model written here in double precision with direct nested loops (a
 * convolution as its definition reads, pools by scanning each window, batch norm from its
 * formula), sharing no code with the library. It reads the library's parameters through the
 * tensor table (PyTorch's layouts), so it checks those too. Gradients are checked against its
 * centred finite differences (h = 1e-5: the reference is good to ~1e-9); the library computes
 * in float, so norm-wise relative errors of a few 1e-6 are expected and 1e-4 is asserted, as
 * test_gradcheck.c does for dense nets.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backprop.h"
#include "kernels/backend.h"
#include "net/net.h"
#include "testutil.h"

static const double GRAD_REL_TOL = 1e-4;

enum { REF_MAX_LAYERS = 8 };
typedef enum { R_CONV, R_MAXPOOL, R_AVGPOOL, R_DENSE, R_BATCHNORM } ref_kind;

typedef struct {
    ref_kind kind;
    int k, kh, kw, stride, pad; /* conv: k filters; pools: kh = kw = window */
    bp_activation act;
    int c, h, w, oc, oh, ow;    /* input and output shapes */
    double *wt, *bt;            /* conv [k][c][kh][kw], dense [n_out][n_in], bn gamma, beta */
} ref_layer;

typedef struct {
    int n;
    ref_layer l[REF_MAX_LAYERS];
    bp_cost cost;
} ref_net;

static double act_of(bp_activation act, double z)
{
    switch (act) {
    case BP_ACT_SIGMOID: return 1.0 / (1.0 + exp(-z));
    case BP_ACT_TANH: return tanh(z);
    case BP_ACT_RELU: return z > 0 ? z : 0;
    default: return z;
    }
}

/* One layer over the whole batch: in is B x (c h w), out B x (oc oh ow), sample-major. */
static void ref_layer_forward(const ref_layer *r, int batch, const double *in, double *out)
{
    int n_in = r->c * r->h * r->w, n_out = r->oc * r->oh * r->ow;
    for (int s = 0; s < batch && r->kind != R_BATCHNORM; s++) {
        const double *x = in + (size_t)s * n_in;
        double *y = out + (size_t)s * n_out;
        if (r->kind == R_DENSE) {
            double zmax = -INFINITY;
            for (int i = 0; i < n_out; i++) {
                y[i] = r->bt[i];
                for (int j = 0; j < n_in; j++)
                    y[i] += r->wt[(size_t)i * n_in + j] * x[j];
                zmax = fmax(zmax, y[i]);
            }
            if (r->act == BP_ACT_SOFTMAX) {
                double sum = 0;
                for (int i = 0; i < n_out; i++)
                    sum += exp(y[i] - zmax);
                for (int i = 0; i < n_out; i++)
                    y[i] = exp(y[i] - zmax) / sum;
            } else {
                for (int i = 0; i < n_out; i++)
                    y[i] = act_of(r->act, y[i]);
            }
            continue;
        }
        for (int o = 0; o < r->oc; o++)
            for (int oy = 0; oy < r->oh; oy++)
                for (int ox = 0; ox < r->ow; ox++) {
                    double v = r->kind == R_CONV ? r->bt[o] : r->kind == R_MAXPOOL ? -INFINITY : 0;
                    int channels = r->kind == R_CONV ? r->c : 1;
                    for (int c = 0; c < channels; c++)
                        for (int ky = 0; ky < r->kh; ky++)
                            for (int kx = 0; kx < r->kw; kx++) {
                                int iy = oy * r->stride + ky - r->pad;
                                int ix = ox * r->stride + kx - r->pad;
                                if (iy < 0 || iy >= r->h || ix < 0 || ix >= r->w)
                                    continue;
                                int ci = r->kind == R_CONV ? c : o;
                                double xv = x[(ci * r->h + iy) * r->w + ix];
                                if (r->kind == R_CONV)
                                    v += r->wt[((o * r->c + c) * r->kh + ky) * r->kw + kx] * xv;
                                else if (r->kind == R_MAXPOOL)
                                    v = fmax(v, xv);
                                else
                                    v += xv / (r->kh * r->kw);
                            }
                    y[(o * r->oh + oy) * r->ow + ox] =
                        r->kind == R_CONV ? act_of(r->act, v) : v;
                }
    }
    if (r->kind != R_BATCHNORM)
        return;
    int plane = r->h * r->w;
    for (int c = 0; c < r->c; c++) {
        double sum = 0, sq = 0, m = (double)batch * plane;
        for (int s = 0; s < batch; s++)
            for (int p = 0; p < plane; p++)
                sum += in[(size_t)s * n_in + c * plane + p];
        double mean = sum / m;
        for (int s = 0; s < batch; s++)
            for (int p = 0; p < plane; p++) {
                double e = in[(size_t)s * n_in + c * plane + p] - mean;
                sq += e * e;
            }
        double inv = 1.0 / sqrt(sq / m + 1e-5);
        for (int s = 0; s < batch; s++)
            for (int p = 0; p < plane; p++) {
                size_t at = (size_t)s * n_in + c * plane + p;
                out[at] = act_of(r->act, r->wt[c] * (in[at] - mean) * inv + r->bt[c]);
            }
    }
}

static int ref_width(const ref_layer *r) { return r->oc * r->oh * r->ow; }

/* The outputs of the whole net for a batch (x column-major: sample s at x + s * width). */
static double *ref_forward(const ref_net *r, int batch, const double *x, int width)
{
    double *cur = malloc(sizeof(double) * (size_t)batch * width);
    memcpy(cur, x, sizeof(double) * (size_t)batch * width);
    for (int i = 0; i < r->n; i++) {
        double *next = malloc(sizeof(double) * (size_t)batch * ref_width(&r->l[i]));
        ref_layer_forward(&r->l[i], batch, cur, next);
        free(cur);
        cur = next;
    }
    return cur;
}

static double ref_cost(const ref_net *r, int batch, const double *x, int width, const float *y)
{
    double *a = ref_forward(r, batch, x, width);
    int n = ref_width(&r->l[r->n - 1]);
    double total = 0;
    for (int s = 0; s < batch; s++)
        for (int i = 0; i < n; i++) {
            double yi = y[s * n + i], ai = a[s * n + i];
            if (r->cost == BP_COST_QUADRATIC)
                total += 0.5 * (ai - yi) * (ai - yi);
            else if (r->cost == BP_COST_CROSS_ENTROPY)
                total -= yi * log(ai) + (1 - yi) * log(1 - ai);
            else
                total -= yi * log(ai);
        }
    free(a);
    return total / batch;
}

/* The reference of a library net: its shapes from the spec (parsed here again, independently
 * of the library's parser), its parameters through the tensor table. */
static ref_net *ref_of(bp_net *net, int c, int h, int w)
{
    ref_net *r = calloc(1, sizeof *r);
    r->cost = bp_net_cost(net);
    char spec[512];
    snprintf(spec, sizeof spec, "%s", bp_net_spec(net));
    for (char *tok = strtok(spec, ","); tok; tok = strtok(NULL, ",")) {
        ref_layer *l = &r->l[r->n++];
        char act[32] = "linear";
        *l = (ref_layer){.c = c, .h = h, .w = w, .stride = 1};
        if (sscanf(tok, "conv:%dx%dx%d:%31[a-z]:s%d:p%d", &l->k, &l->kh, &l->kw, act, &l->stride,
                   &l->pad) == 6) {
            l->kind = R_CONV;
            l->oc = l->k;
            l->oh = (h + 2 * l->pad - l->kh) / l->stride + 1;
            l->ow = (w + 2 * l->pad - l->kw) / l->stride + 1;
        } else if (sscanf(tok, "maxpool:%d:s%d", &l->kh, &l->stride) == 2 ||
                   sscanf(tok, "avgpool:%d:s%d", &l->kh, &l->stride) == 2) {
            l->kind = tok[0] == 'm' ? R_MAXPOOL : R_AVGPOOL;
            l->kw = l->kh;
            l->oc = c;
            l->oh = (h - l->kh) / l->stride + 1;
            l->ow = (w - l->kw) / l->stride + 1;
        } else if (sscanf(tok, "dense:%d:%31[a-z]", &l->k, act) == 2) {
            l->kind = R_DENSE;
            l->oc = l->k;
            l->oh = l->ow = 1;
        } else {
            ck_assert_msg(sscanf(tok, "batchnorm:%31[a-z]", act) == 1, "spec token '%s'", tok);
            l->kind = R_BATCHNORM;
            if (h * w == 1) { /* features: a channel each */
                l->c = c * h * w;
                l->h = l->w = 1;
            }
            l->oc = l->c, l->oh = l->h, l->ow = l->w;
        }
        ck_assert_int_eq(bp_activation_parse(act, &l->act), BP_OK);
        c = l->oc, h = l->oh, w = l->ow;
    }
    ck_assert_int_eq(r->n, bp_net_layers(net));
    float *params = bp_net_params(net, NULL);
    for (int t = 0; t < bp_net_tensor_count(net); t++) {
        bp_tensor_info info;
        ck_assert_int_eq(bp_net_tensor(net, t, &info), BP_OK);
        ref_layer *l = &r->l[info.layer - 1];
        double *v = malloc(sizeof(double) * info.count);
        for (size_t e = 0; e < info.count; e++)
            v[e] = params[bp_test_tensor_at(&info, e)];
        if (info.role == BP_ROLE_WEIGHT || info.role == BP_ROLE_SCALE)
            l->wt = v;
        else
            l->bt = v;
    }
    return r;
}

static void ref_free(ref_net *r)
{
    for (int i = 0; i < r->n; i++) {
        free(r->l[i].wt);
        free(r->l[i].bt);
    }
    free(r);
}

static bp_net *make_net(const char *layers, int c, int h, int w, bp_cost cost, int batch,
                        const char *backend, int threads)
{
    int sizes[1] = {c * h * w};
    bp_net_config nc;
    bp_net_config_init(&nc);
    nc.sizes = sizes;
    nc.n_sizes = 1;
    nc.layers = layers;
    nc.input_channels = c;
    nc.input_rows = h;
    nc.input_cols = w;
    nc.cost = cost;
    nc.init = BP_INIT_XAVIER;
    nc.seed = 77;
    nc.max_batch = batch;
    nc.backend = backend;
    nc.threads = threads;
    bp_net *net;
    ck_assert_msg(bp_net_create(&net, &nc) == BP_OK, "%s: %s", layers, bp_last_error());
    /* Biases away from 0, so a bias gradient that ignored them would show. */
    float *params = bp_net_params(net, NULL);
    for (int t = 0; t < bp_net_tensor_count(net); t++) {
        bp_tensor_info info;
        bp_net_tensor(net, t, &info);
        for (size_t e = 0; info.role == BP_ROLE_BIAS && e < info.count; e++)
            params[info.offset + e] = 0.1f * (float)((int)(e % 5) - 2);
    }
    return net;
}

static void fill_batch(float *x, float *y, int width, int outputs, int batch, uint64_t seed)
{
    bp_test_fill(x, (size_t)width * batch, -1.0f, 1.0f, &seed);
    memset(y, 0, sizeof(float) * (size_t)outputs * batch);
    for (int s = 0; s < batch; s++)
        y[s * outputs + (s * 7 + 3) % outputs] = 1.0f;
}

/* ||g_bp - g_fd|| / ||g_fd|| over every parameter of the net. */
static double gradient_error(bp_net *net, int c, int h, int w, int batch)
{
    int width = c * h * w, outputs = bp_net_size(net, bp_net_layers(net));
    float *x = malloc(sizeof(float) * (size_t)width * batch);
    float *y = malloc(sizeof(float) * (size_t)outputs * batch);
    double *xd = malloc(sizeof(double) * (size_t)width * batch);
    fill_batch(x, y, width, outputs, batch, 99);
    for (int i = 0; i < width * batch; i++)
        xd[i] = x[i];
    double cost;
    ck_assert_msg(bp_net_gradient(net, x, width, y, outputs, batch, &cost) == BP_OK, "%s",
                  bp_last_error());
    ref_net *r = ref_of(net, c, h, w);
    double ref = ref_cost(r, batch, xd, width, y);
    ck_assert_msg(fabs(ref - cost) <= 1e-4 * fmax(1.0, fabs(ref)), "cost %g, reference %g",
                  cost, ref);
    const float *grads = bp_net_grads(net, NULL);
    double err = 0, norm = 0, hstep = 1e-5;
    for (int t = 0; t < bp_net_tensor_count(net); t++) {
        bp_tensor_info info;
        bp_net_tensor(net, t, &info);
        ref_layer *l = &r->l[info.layer - 1];
        double *v = info.role == BP_ROLE_WEIGHT || info.role == BP_ROLE_SCALE ? l->wt : l->bt;
        for (size_t e = 0; e < info.count; e++) {
            double keep = v[e];
            v[e] = keep + hstep;
            double up = ref_cost(r, batch, xd, width, y);
            v[e] = keep - hstep;
            double down = ref_cost(r, batch, xd, width, y);
            v[e] = keep;
            double fd = (up - down) / (2 * hstep), bp = grads[bp_test_tensor_at(&info, e)];
            err += (bp - fd) * (bp - fd);
            norm += fd * fd;
        }
    }
    ref_free(r);
    free(x);
    free(y);
    free(xd);
    ck_assert(norm > 0);
    return sqrt(err / norm);
}

static void check_gradient(const char *layers, int c, int h, int w, bp_cost cost, int batch,
                           const char *backend, int threads)
{
    bp_net *net = make_net(layers, c, h, w, cost, batch, backend, threads);
    double err = gradient_error(net, c, h, w, batch);
    ck_assert_msg(err < GRAD_REL_TOL, "%s on %s, %d thread(s): relative gradient error %g",
                  layers, backend, threads, err);
    bp_net_free(net);
}

/* Two convolutions (so the upper one's BP2 is checked through the lower one's gradient), with
 * stride, padding, several channels and a max pool between; inputs are random, so no window
 * has a tie. */
static const char *const CONV_MAX = "conv:3x3x3:tanh:p1,maxpool:2,conv:4x3x2:sigmoid:s2:p1,"
                                    "dense:5:softmax";
/* Overlapping average pools (stride 1 < window 2) after a strided convolution. */
static const char *const CONV_AVG = "conv:2x3x3:sigmoid:s2,avgpool:2:s1,conv:3x2x2:tanh,"
                                    "dense:3:sigmoid";
/* Per-channel batch norm after a linear convolution, and per-feature after a dense layer. */
static const char *const CONV_BN = "conv:3x3x3:linear:p1,batchnorm:tanh,maxpool:2,"
                                   "dense:6:linear,batchnorm:sigmoid,dense:4:softmax";

START_TEST(test_gradient_conv_maxpool)
{
    check_gradient(CONV_MAX, 2, 8, 8, BP_COST_LOG_LIKELIHOOD, 5, "blas", 1);
    check_gradient(CONV_MAX, 2, 8, 8, BP_COST_LOG_LIKELIHOOD, 5, "naive", 1);
}
END_TEST

START_TEST(test_gradient_conv_avgpool)
{
    check_gradient(CONV_AVG, 1, 9, 9, BP_COST_CROSS_ENTROPY, 5, "blas", 1);
    check_gradient(CONV_AVG, 1, 9, 9, BP_COST_CROSS_ENTROPY, 5, "naive", 1);
}
END_TEST

START_TEST(test_gradient_batchnorm_channels)
{
    check_gradient(CONV_BN, 2, 6, 6, BP_COST_LOG_LIKELIHOOD, 6, "blas", 1);
    check_gradient(CONV_BN, 2, 6, 6, BP_COST_LOG_LIKELIHOOD, 6, "naive", 1);
}
END_TEST

/* B = 48: the net splits a step across 2 (24 + 24) and 3 (16 x 3) threads, and the batch
 * statistics and BP4's parts must come out as on one. */
START_TEST(test_gradient_threads)
{
    for (int threads = 2; threads <= 3; threads++) {
        check_gradient(CONV_MAX, 2, 8, 8, BP_COST_LOG_LIKELIHOOD, 48, "blas", threads);
        check_gradient(CONV_BN, 2, 6, 6, BP_COST_LOG_LIKELIHOOD, 48, "blas", threads);
    }
}
END_TEST

/* The convolution alone (the output layer, linear or not) against the definition, on an
 * image that is not square, with stride, padding and kernels that are not square. */
START_TEST(test_forward_direct)
{
    static const char *const specs[] = {
        "conv:4x3x2:linear:s2:p1", "conv:5x3x3:sigmoid", "conv:2x1x1:relu:s3",
        "conv:3x4x4:tanh:s1:p3",
    };
    enum { C = 3, H = 9, W = 8, B = 4 };
    for (int be = 0; be < 2; be++)
        for (size_t i = 0; i < sizeof specs / sizeof *specs; i++) {
            bp_net *net = make_net(specs[i], C, H, W, BP_COST_QUADRATIC, B,
                                   be ? "naive" : "blas", 1);
            float x[C * H * W * B];
            double xd[C * H * W * B];
            uint64_t seed = 5 + i;
            bp_test_fill(x, C * H * W * B, -2.0f, 2.0f, &seed);
            for (int k = 0; k < C * H * W * B; k++)
                xd[k] = x[k];
            int n = bp_net_size(net, 1);
            float *out = malloc(sizeof(float) * (size_t)n * B);
            ck_assert_int_eq(bp_net_forward(net, x, C * H * W, B, out, n), BP_OK);
            ref_net *r = ref_of(net, C, H, W);
            ck_assert_int_eq(ref_width(&r->l[0]), n);
            double *ref = ref_forward(r, B, xd, C * H * W);
            double worst = 0;
            for (int k = 0; k < n * B; k++)
                worst = fmax(worst, fabs(out[k] - ref[k]));
            ck_assert_msg(worst < 1e-5, "%s on %s: outputs differ by up to %g", specs[i],
                          be ? "naive" : "blas", worst);
            free(ref);
            ref_free(r);
            free(out);
            bp_net_free(net);
        }
}
END_TEST

/* The fast window kernels against the reference ones on odd shapes: im2col, col2im and the
 * pools give the same bits (backend.h says so). */
START_TEST(test_window_kernels_agree)
{
    static const bp_window shapes[] = {
        {2, 7, 5, 3, 2, 1, 1, 0, 0}, {1, 9, 9, 3, 3, 2, 2, 0, 0}, {3, 6, 11, 1, 4, 3, 0, 0, 0},
        {2, 8, 8, 2, 2, 2, 0, 0, 0}, {2, 7, 7, 3, 3, 2, 0, 0, 0}, {2, 9, 13, 3, 5, 1, 0, 0, 0},
        {1, 12, 12, 5, 5, 1, 0, 0, 0}, {3, 20, 27, 5, 5, 1, 0, 0, 0},
    };
    enum { COLS = 3 };
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        bp_window g = shapes[i];
        g.oh = (g.h + 2 * g.pad - g.kh) / g.stride + 1;
        g.ow = (g.w + 2 * g.pad - g.kw) / g.stride + 1;
        int image = g.c * g.h * g.w, plane = g.oh * g.ow, taps = g.c * g.kh * g.kw;
        int ldx = COLS * plane + 3, outs = g.c * plane;
        float *in = malloc(sizeof(float) * (size_t)image * COLS);
        float *a = malloc(sizeof(float) * (size_t)ldx * taps);
        float *b = malloc(sizeof(float) * (size_t)ldx * taps);
        float *ia = malloc(sizeof(float) * (size_t)image * COLS);
        float *ib = malloc(sizeof(float) * (size_t)image * COLS);
        uint64_t seed = 11 + i;
        bp_test_fill(in, (size_t)image * COLS, -1.0f, 1.0f, &seed);
        memset(a, 0, sizeof(float) * (size_t)ldx * taps);
        memset(b, 0, sizeof(float) * (size_t)ldx * taps);
        bp_backend_naive.im2col(&g, COLS, in, image, a, ldx);
        bp_backend_blas.im2col(&g, COLS, in, image, b, ldx);
        ck_assert_msg(memcmp(a, b, sizeof(float) * (size_t)ldx * taps) == 0, "im2col %zu", i);
        bp_backend_naive.col2im(&g, COLS, a, ldx, ia, image);
        bp_backend_blas.col2im(&g, COLS, a, ldx, ib, image);
        ck_assert_msg(memcmp(ia, ib, sizeof(float) * (size_t)image * COLS) == 0, "col2im %zu",
                      i);
        if (g.pad == 0) {
            float *oa = malloc(sizeof(float) * (size_t)outs * COLS * 4);
            float *ob = oa + outs * COLS, *ga = ob + outs * COLS, *gb = ga + outs * COLS;
            bp_backend_naive.maxpool_fwd(&g, COLS, in, image, oa, outs, ga, outs);
            bp_backend_blas.maxpool_fwd(&g, COLS, in, image, ob, outs, gb, outs);
            ck_assert(memcmp(oa, ob, sizeof(float) * (size_t)outs * COLS) == 0);
            ck_assert(memcmp(ga, gb, sizeof(float) * (size_t)outs * COLS) == 0);
            /* each output is its window's maximum, at the index recorded */
            for (int k = 0; k < outs * COLS; k++)
                ck_assert(in[(k / outs) * image + (int)ga[k]] == oa[k]);
            bp_backend_naive.avgpool_fwd(&g, COLS, in, image, oa, outs);
            bp_backend_blas.avgpool_fwd(&g, COLS, in, image, ob, outs);
            ck_assert(memcmp(oa, ob, sizeof(float) * (size_t)outs * COLS) == 0);
            free(oa);
        }
        free(in), free(a), free(b), free(ia), free(ib);
    }
}
END_TEST

/* The same small CNN on the two backends from the same seed: outputs and gradients. */
START_TEST(test_blas_matches_naive)
{
    static const char *const stack = "conv:6x5x5:relu:p2,maxpool:2,conv:8x3x3:sigmoid,"
                                     "avgpool:2,dense:20:tanh,dense:10:softmax";
    enum { C = 1, H = 16, W = 16, B = 20, OUT = 10 };
    bp_net *nets[2];
    float *grads[2], *outs[2];
    size_t n_params;
    float *x = malloc(sizeof(float) * C * H * W * B), y[OUT * B];
    fill_batch(x, y, C * H * W, OUT, B, 4);
    for (int i = 0; i < 2; i++) {
        nets[i] = make_net(stack, C, H, W, BP_COST_LOG_LIKELIHOOD, B, i ? "naive" : "blas", 1);
        outs[i] = malloc(sizeof(float) * OUT * B);
        ck_assert_int_eq(bp_net_forward(nets[i], x, C * H * W, B, outs[i], OUT), BP_OK);
        ck_assert_int_eq(bp_net_gradient(nets[i], x, C * H * W, y, OUT, B, NULL), BP_OK);
        grads[i] = bp_net_grads(nets[i], &n_params);
    }
    double out_err = bp_test_nmse(outs[0], outs[1], OUT * B);
    double grad_err = bp_test_nmse(grads[0], grads[1], n_params);
    ck_assert_msg(out_err < 1e-11, "outputs: NMSE %g", out_err);
    ck_assert_msg(grad_err < 1e-10, "gradients: NMSE %g", grad_err);
    for (int i = 0; i < 2; i++) {
        free(outs[i]);
        bp_net_free(nets[i]);
    }
    free(x);
}
END_TEST

/* A step on 2 and 3 threads against 1: the split changes GEMM shapes and the order of the
 * batch-norm sums, so the last bits may move (net.h promises determinism for one thread
 * count), no more; and a thread count repeats itself exactly. */
START_TEST(test_threads_step)
{
    enum { C = 1, H = 12, W = 12, B = 48, OUT = 4 };
    static const char *const stack = "conv:5x3x3:relu:p1,batchnorm:relu,maxpool:2,"
                                     "conv:6x3x3:tanh:s2,dense:4:softmax";
    float *x = malloc(sizeof(float) * C * H * W * B), y[OUT * B];
    fill_batch(x, y, C * H * W, OUT, B, 8);
    float *one = NULL;
    size_t n;
    for (int threads = 1; threads <= 3; threads++) {
        float *again = NULL;
        for (int rep = 0; rep < 2; rep++) {
            bp_net *net = make_net(stack, C, H, W, BP_COST_LOG_LIKELIHOOD, B, "blas", threads);
            for (int step = 0; step < 3; step++)
                ck_assert_int_eq(bp_net_sgd_step(net, x, C * H * W, y, OUT, B, 0.1f, NULL),
                                 BP_OK);
            float *p = bp_net_params(net, &n);
            float *copy = malloc(sizeof(float) * n);
            memcpy(copy, p, sizeof(float) * n);
            bp_net_free(net);
            if (rep == 0) {
                again = copy;
                continue;
            }
            ck_assert_msg(memcmp(again, copy, sizeof(float) * n) == 0,
                          "%d threads: two runs differ", threads);
            free(copy);
        }
        if (threads == 1) {
            one = again;
            continue;
        }
        double err = bp_test_nmse(again, one, n);
        ck_assert_msg(err < 1e-12, "%d threads against 1: NMSE %g", threads, err);
        free(again);
    }
    free(one);
    free(x);
}
END_TEST

/* Shapes through the stack, the spec spelled out, the tensors in PyTorch's shapes. */
START_TEST(test_plan_and_tensors)
{
    bp_net *net = make_net("conv:20x5x5:sigmoid,maxpool:2,conv:40x5x5,maxpool:2,"
                           "dense:100:relu,dense:10:softmax", 1, 28, 28,
                           BP_COST_LOG_LIKELIHOOD, 10, "blas", 1);
    ck_assert_str_eq(bp_net_spec(net), "conv:20x5x5:sigmoid:s1:p0,maxpool:2:s2,"
                     "conv:40x5x5:relu:s1:p0,maxpool:2:s2,dense:100:relu,dense:10:softmax");
    static const int sizes[] = {784, 20 * 24 * 24, 20 * 12 * 12, 40 * 8 * 8, 40 * 4 * 4, 100,
                                10};
    for (int i = 0; i <= 6; i++)
        ck_assert_int_eq(bp_net_size(net, i), sizes[i]);
    int c, h, w;
    bp_net_input_shape(net, &c, &h, &w);
    ck_assert(c == 1 && h == 28 && w == 28);
    bp_tensor_info t;
    ck_assert_int_eq(bp_net_tensor(net, 2, &t), BP_OK);
    ck_assert_str_eq(t.name, "layers.2.weight");
    ck_assert(t.ndim == 4 && t.shape[0] == 40 && t.shape[1] == 20 && t.shape[2] == 5 &&
              t.shape[3] == 5 && t.count == 20000);
    ck_assert_int_eq(bp_net_tensor(net, 4, &t), BP_OK);
    ck_assert_str_eq(t.name, "layers.4.weight");
    ck_assert(t.shape[0] == 100 && t.shape[1] == 640);
    ck_assert_ptr_null(bp_net_weights(net, 1, NULL, NULL, NULL)); /* not a dense matrix */
    ck_assert_ptr_nonnull(bp_net_weights(net, 5, NULL, NULL, NULL));
    bp_net_free(net);
}
END_TEST

/* Every malformed token is refused by bp_net_create with a message that names it. */
START_TEST(test_bad_specs)
{
    static const struct {
        const char *layers, *says;
    } cases[] = {
        {"conv:0x5x5,dense:2:softmax", "'0x5x5' has a zero count"},
        {"conv:20x5,dense:2:softmax", "'20x5' is not KxHxW"},
        {"conv:20x5x5x5,dense:2:softmax", "'20x5x5x5' is not KxHxW"},
        {"conv:ax5x5,dense:2:softmax", "'ax5x5' is not KxHxW"},
        {"conv:20x5x5:purple,dense:2:softmax", "'purple' is not an activation"},
        {"conv:20x5x5:s0,dense:2:softmax", "'s0' is not a stride"},
        {"conv:20x5x5:p,dense:2:softmax", "'p' is not an activation"},
        {"conv:20x5x5:s2:s3,dense:2:softmax", "'s3' repeats"},
        {"conv:20x5x5:softmax,dense:2:softmax", "softmax normalises a whole output column"},
        {"conv:2x5x5:p5,dense:2:softmax", "padding 5 is not below the 5 x 5 window"},
        {"conv:2x13x13,dense:2:softmax", "a 13 x 13 window (padding 0) is larger than its 12 x "
                                         "12 input"},
        {"maxpool:0,dense:2:softmax", "maxpool: '0' does not start with a window size"},
        {"maxpool:13,dense:2:softmax", "a 13 x 13 window (padding 0) is larger than its 12 x 12"},
        {"avgpool:2:x2,dense:2:softmax", "avgpool: 'x2' is not a stride"},
        {"avgpool:2:s0,dense:2:softmax", "avgpool: 's0' is not a stride"},
        {"conv:2x3x3,maxpool:2", "maxpool cannot be the output layer"},
        {"dense:4:sigmoid,conv:1x2x2,dense:2:softmax", "larger than its 1 x 1 input"},
    };
    int sizes[1] = {144};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        bp_net_config nc;
        bp_net_config_init(&nc);
        nc.sizes = sizes;
        nc.n_sizes = 1;
        nc.layers = cases[i].layers;
        nc.input_channels = 1;
        nc.input_rows = nc.input_cols = 12;
        nc.cost = BP_COST_LOG_LIKELIHOOD;
        bp_net *net = NULL;
        ck_assert_int_eq(bp_net_create(&net, &nc), BP_EINVAL);
        ck_assert_ptr_null(net);
        ck_assert_msg(strstr(bp_last_error(), cases[i].says) != NULL, "%s: '%s' lacks '%s'",
                      cases[i].layers, bp_last_error(), cases[i].says);
    }
    /* the input shape must be whole and agree with the width */
    bp_net_config nc;
    bp_net_config_init(&nc);
    nc.sizes = sizes;
    nc.n_sizes = 1;
    nc.layers = "conv:2x3x3,dense:2:sigmoid";
    nc.input_channels = 2;
    nc.input_rows = nc.input_cols = 12;
    bp_net *net = NULL;
    ck_assert_int_eq(bp_net_create(&net, &nc), BP_EINVAL);
    ck_assert_ptr_nonnull(strstr(bp_last_error(), "input shape 2 x 12 x 12"));
    nc.input_channels = 0;
    ck_assert_int_eq(bp_net_create(&net, &nc), BP_EINVAL);
    /* no shape: a flat column, 1 x 1 window at most */
    nc.input_rows = nc.input_cols = 0;
    ck_assert_int_eq(bp_net_create(&net, &nc), BP_EINVAL);
    ck_assert_ptr_nonnull(strstr(bp_last_error(), "larger than its 1 x 1 input"));
}
END_TEST

/* A conv net saved and loaded is the same net: spec, input shape and outputs to the bit. */
START_TEST(test_model_round_trip)
{
    enum { C = 2, H = 10, W = 9, B = 3 };
    bp_net *net = make_net("conv:4x3x3:tanh:s2:p1,batchnorm:relu,avgpool:2:s1,"
                           "dense:3:softmax", C, H, W, BP_COST_LOG_LIKELIHOOD, B, "blas", 1);
    float x[C * H * W * B], y[3 * B], a[3 * B], b[3 * B];
    fill_batch(x, y, C * H * W, 3, B, 21);
    for (int s = 0; s < 3; s++) /* moves the running statistics away from their start */
        ck_assert_int_eq(bp_net_sgd_step(net, x, C * H * W, y, 3, B, 0.5f, NULL), BP_OK);
    ck_assert_int_eq(bp_net_forward(net, x, C * H * W, B, a, 3), BP_OK);
    char path[] = "/tmp/test_conv_XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_msg(bp_model_save(net, path, NULL) == BP_OK, "%s", bp_last_error());
    bp_net *back;
    ck_assert_msg(bp_model_load(&back, path, NULL, NULL) == BP_OK, "%s", bp_last_error());
    ck_assert_str_eq(bp_net_spec(back), bp_net_spec(net));
    int c, h, w;
    bp_net_input_shape(back, &c, &h, &w);
    ck_assert(c == C && h == H && w == W);
    ck_assert_int_eq(bp_net_forward(back, x, C * H * W, B, b, 3), BP_OK);
    ck_assert(memcmp(a, b, sizeof a) == 0);
    remove(path);
    bp_net_free(back);
    bp_net_free(net);
}
END_TEST

/* A conv net's run through a checkpoint is the straight run: trained 2 epochs and 3
 * mini-batches, saved, loaded (the input shape from the file) and trained on to 3 epochs, its
 * parameters and running statistics are those of 3 epochs straight, to the bit (one thread). */
START_TEST(test_checkpoint_resume)
{
    enum { C = 1, H = 8, W = 8, N = 120, B = 10 };
    static const char *const stack = "conv:3x3x3:relu:p1,batchnorm:relu,maxpool:2,"
                                     "dense:3:softmax";
    float *x = malloc(sizeof(float) * C * H * W * N);
    int labels[N];
    uint64_t seed = 17;
    bp_test_fill(x, (size_t)C * H * W * N, 0.0f, 1.0f, &seed);
    for (int i = 0; i < N; i++)
        labels[i] = i % 3;
    bp_dataset *ds;
    ck_assert_int_eq(bp_dataset_from_floats(&ds, x, labels, N, C * H * W, 3), BP_OK);
    bp_train_config tc;
    bp_train_config_init(&tc);
    tc.epochs = 3;
    tc.batch = B;
    tc.eta = 0.2f;
    tc.seed = 4;
    bp_net *straight = make_net(stack, C, H, W, BP_COST_LOG_LIKELIHOOD, B, "blas", 1);
    bp_trainer *ts;
    ck_assert_int_eq(bp_trainer_create(&ts, straight, ds, &tc), BP_OK);
    ck_assert_int_eq(bp_trainer_run(ts, NULL, 3, NULL, NULL, NULL), BP_OK);

    bp_net *first = make_net(stack, C, H, W, BP_COST_LOG_LIKELIHOOD, B, "blas", 1);
    bp_trainer *t1;
    ck_assert_int_eq(bp_trainer_create(&t1, first, ds, &tc), BP_OK);
    ck_assert_int_eq(bp_trainer_run(t1, NULL, 2, NULL, NULL, NULL), BP_OK);
    int finished;
    ck_assert_int_eq(bp_trainer_batches(t1, 3, &finished, NULL), BP_OK);
    char path[] = "/tmp/test_conv_ckpt_XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_msg(bp_checkpoint_save(t1, path, NULL) == BP_OK, "%s", bp_last_error());
    bp_trainer_free(t1);
    bp_net_free(first);

    bp_net *net;
    bp_trainer *t2;
    ck_assert_msg(bp_checkpoint_load(path, ds, NULL, &net, &t2, NULL) == BP_OK, "%s",
                  bp_last_error());
    ck_assert_str_eq(bp_net_spec(net), bp_net_spec(straight));
    ck_assert_int_eq(bp_trainer_run(t2, NULL, 3, NULL, NULL, NULL), BP_OK);
    size_t n, ns;
    const float *a = bp_net_params(straight, &n), *b = bp_net_params(net, NULL);
    const float *sa = bp_net_state(straight, &ns), *sb = bp_net_state(net, NULL);
    ck_assert(memcmp(a, b, sizeof(float) * n) == 0);
    ck_assert(memcmp(sa, sb, sizeof(float) * ns) == 0);
    remove(path);
    bp_trainer_free(t2);
    bp_net_free(net);
    bp_trainer_free(ts);
    bp_net_free(straight);
    bp_dataset_free(ds);
    free(x);
}
END_TEST

/* Learning: which of two bar orientations (a horizontal or a vertical bar of 4 pixels at a
 * random place of an 8 x 8 image, with noise) an image shows. Shared 3 x 3 filters find it
 * wherever it is. */
START_TEST(test_learns_bars)
{
    enum { N = 1200, D = 64, TEST = 400 };
    float *x = calloc((size_t)N * D, sizeof(float));
    int labels[N];
    uint64_t seed = 3;
    for (int s = 0; s < N; s++) {
        float noise[D], pick[3];
        bp_test_fill(noise, D, 0.0f, 0.3f, &seed);
        bp_test_fill(pick, 3, 0.0f, 1.0f, &seed);
        int vertical = pick[0] < 0.5f;
        int r = (int)(pick[1] * (vertical ? 5 : 8)), c = (int)(pick[2] * (vertical ? 8 : 5));
        for (int i = 0; i < D; i++)
            x[(size_t)s * D + i] = noise[i];
        for (int k = 0; k < 4; k++)
            x[(size_t)s * D + (vertical ? (r + k) * 8 + c : r * 8 + c + k)] = 1.0f;
        labels[s] = vertical;
    }
    bp_dataset *train, *test;
    ck_assert_int_eq(bp_dataset_from_floats(&train, x, labels, N - TEST, D, 2), BP_OK);
    ck_assert_int_eq(bp_dataset_from_floats(&test, x + (size_t)(N - TEST) * D,
                                            labels + N - TEST, TEST, D, 2), BP_OK);
    for (int be = 0; be < 2; be++) {
        bp_net *net = make_net("conv:4x3x3,maxpool:2,dense:2:softmax", 1, 8, 8,
                               BP_COST_LOG_LIKELIHOOD, 10, be ? "naive" : "blas", 1);
        float before, after;
        ck_assert_int_eq(bp_evaluate(net, test, &before, NULL), BP_OK);
        bp_train_config tc;
        bp_train_config_init(&tc);
        tc.epochs = 10;
        tc.batch = 10;
        tc.eta = 0.3f;
        ck_assert_msg(bp_train(net, train, NULL, &tc, NULL) == BP_OK, "%s", bp_last_error());
        ck_assert_int_eq(bp_evaluate(net, test, &after, NULL), BP_OK);
        ck_assert_msg(after > 0.95f, "%s: accuracy %.3f after training (%.3f before)",
                      be ? "naive" : "blas", after, before);
        bp_net_free(net);
    }
    bp_dataset_free(train);
    bp_dataset_free(test);
    free(x);
}
END_TEST

static Suite *conv_suite(void)
{
    Suite *s = suite_create("conv");
    TCase *tc = tcase_create("conv");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_gradient_conv_maxpool);
    tcase_add_test(tc, test_gradient_conv_avgpool);
    tcase_add_test(tc, test_gradient_batchnorm_channels);
    tcase_add_test(tc, test_gradient_threads);
    tcase_add_test(tc, test_forward_direct);
    tcase_add_test(tc, test_window_kernels_agree);
    tcase_add_test(tc, test_blas_matches_naive);
    tcase_add_test(tc, test_threads_step);
    tcase_add_test(tc, test_plan_and_tensors);
    tcase_add_test(tc, test_bad_specs);
    tcase_add_test(tc, test_model_round_trip);
    tcase_add_test(tc, test_checkpoint_resume);
    tcase_add_test(tc, test_learns_bars);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return bp_test_main(conv_suite()); }
