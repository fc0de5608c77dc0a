/*
 * ops.c - every kernel call of one training step, alone: for each layer of a net, each batch
 * size B, each thread count and each backend table, the three GEMMs, the elementwise kernels
 * and the parameter update, first checked against the naive table, then timed.
 *
 * The calls, for a dense layer with W n_out x n_in (see src/layers/dense.c):
 *   fwd       Z = W A_in                  sgemm NN, m = n_out, n = B,     k = n_in
 *   bp4       dW = D A_in^T / B           sgemm NT, m = n_out, n = n_in,  k = B
 *   bp2       D_in = W^T D                sgemm TN, m = n_in,  n = B,     k = n_out (not layer 1)
 *   bias_act  A = act(Z + b 1^T)          rows = n_out, cols = B, in place
 *   act_bwd   D = D .* act'(Z)            rows = n_out, cols = B, in place (not after softmax)
 *   rowsum    db = D 1 / B                rows = n_out, cols = B
 *   axpy      params -= eta grads         the whole parameter arena (layer 0, B 0: once)
 *
 * Then the layers of a convolutional net, Nielsen's two-stage network3 on 1 x 28 x 28 inputs
 * (conv:20x5x5, maxpool:2, conv:40x5x5, maxpool:2; src/layers/conv.c, pool.c), through the
 * layer's own ops so each row is the whole lowering (im2col or col2im and the GEMMs of every
 * column of the batch), at the batch sizes of the list up to 128:
 *   conv_fwd / conv_bp2 / conv_bp4       m = P B, n = K, k = R (P positions, R = C kh kw taps),
 *                                        GFLOPS = 2mnk as for the dense GEMMs
 *   maxpool_fwd / maxpool_bp2 / avgpool_fwd / avgpool_bp2   m = outputs, n = B, GB/s
 *
 * Output: the header line (bench_header), the sgemm roofline per thread count, then one line
 * per op / shape / threads / backend, and the roofline again at the end: a table, or with
 * --json one JSON object per line (op, [act,] layer, m, n, k, B, threads, backend, median_s,
 * best_s, gflops or gbps, speedup, reps, inner), so a regression check can diff a run against
 * a stored baseline. GEMMs report GFLOPS = 2mnk / median; elementwise kernels report
 * GB/s = (bytes read + bytes written) / median; `speedup` is the naive median over this one.
 * Any table whose result disagrees with the naive one is reported as FAIL, not timed, and
 * makes the program exit 1.
 *
 * Threads: each thread count T is set with bp_set_threads(T), which is a ceiling: the blas table
 * picks 1 or T per GEMM shape (kernels/threads.c), so its rows at T = 2 time that choice, as a
 * training step would, rather than OpenBLAS forced onto two threads.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backprop.h"
#include "common.h"
#include "core/core.h"
#include "kernels/backend.h"
#include "net/net.h"

enum { MAX_SIZES = 16, MAX_LIST = 16 };

/* ---- agreement bounds ----------------------------------------------------------------------
 *
 * NMSE = sum (got - ref)^2 / sum ref^2. Sums of k float terms with random signs carry a relative
 * rounding error near sqrt(k) 2^-24, so a GEMM (k <= 1024 here), a row sum or an axpy summed in
 * another order than the naive loop lands near k * 3.6e-15 <= 4e-12; 1e-9 leaves two orders of
 * margin (the bound tests/test_kernels.c uses), while a transpose, stride or alpha bug gives an
 * NMSE near 1, and even one wrong column in a hundred gives ~1e-2.
 * bias_act may use a vectorised exp: a few ulp of error stays near 1e-13, but we also accept
 * a cheaper approximation with a relative RMS error up to ~3e-4 (NMSE 1e-7), still far below
 * anything that changes training and far above what a missing bias or a wrong activation gives.
 * The output is filled with NaN before each out-of-place call, so a kernel that reads C when
 * beta == 0 (or leaves elements unwritten) gives NaN, which no bound accepts. */
static const double NMSE_SUMS = 1e-9;
static const double NMSE_ACT = 1e-7;

/* ---- options and timing policy -------------------------------------------------------------- */

typedef struct options {
    int sizes[MAX_SIZES], n_sizes;
    bp_activation hidden, output;
    int batches[MAX_LIST], n_batches;
    int threads[MAX_LIST], n_threads;
    int reps, json, quick;
} options;

/* How long to look at each case. `sample_s` is the least time one timed sample should take:
 * a sample is `inner` back-to-back calls, because a call on a 10 x 1 matrix lasts a few ns and
 * the clock itself costs ~20 ns. `budget_s` caps one case: beyond it reps shrink (down to one),
 * which is what keeps the naive triple loop, seconds per call at B = 1024, affordable. */
typedef struct policy {
    int reps, warmup;
    double sample_s, budget_s;
} policy;

/* ---- the cases ------------------------------------------------------------------------------ */

typedef enum op_kind {
    OP_FWD,
    OP_BP2,
    OP_BP4,
    OP_BIAS_ACT,
    OP_ACT_BWD,
    OP_ROWSUM,
    OP_AXPY,
    OP_CONV_FWD,
    OP_CONV_BP2,
    OP_CONV_BP4,
    OP_POOL_FWD,
    OP_POOL_BP2
} op_kind;

static const char *const op_names[] = {
    [OP_FWD] = "fwd",
    [OP_BP2] = "bp2",
    [OP_BP4] = "bp4",
    [OP_BIAS_ACT] = "bias_act",
    [OP_ACT_BWD] = "act_bwd",
    [OP_ROWSUM] = "rowsum",
    [OP_AXPY] = "axpy",
    [OP_CONV_FWD] = "conv_fwd",
    [OP_CONV_BP2] = "conv_bp2",
    [OP_CONV_BP4] = "conv_bp4",
    [OP_POOL_FWD] = "pool_fwd",
    [OP_POOL_BP2] = "pool_bp2",
};

static int is_gemm(op_kind k)
{
    return k == OP_FWD || k == OP_BP2 || k == OP_BP4 || k == OP_CONV_FWD || k == OP_CONV_BP2 ||
           k == OP_CONV_BP4;
}

/* One call with its operands. GEMMs: C is m x n, the inner dimension k, every ld = rows (the
 * net's own layout). Elementwise: m rows, n columns, k = 0. axpy: m floats, n = 1. */
typedef struct op_case {
    op_kind kind;
    int layer, batch; /* layer 1-based; 0 (and batch 0) for the whole-arena axpy */
    int m, n, k;
    bp_activation act;  /* bias_act, act_bwd */
    float alpha;        /* bp4 and rowsum 1/B, axpy -eta */
    const float *x, *y; /* read-only operands, in the order the kernel takes them */
    const float *init;  /* starting contents of an in-place operand, else NULL */
    size_t out_len;     /* floats the call writes */
    const bp_layer *lyr; /* conv and pool ops: the planned layer, x its input, y its deltas */
} op_case;

/* The call itself, writing into `out` (which holds a copy of init for the in-place ops). */
static void op_call(const bp_backend *be, const op_case *c, float *out)
{
    switch (c->kind) {
    case OP_FWD: /* W (m x k) A_in (k x n) */
        be->sgemm(BP_NOTRANS, BP_NOTRANS, c->m, c->n, c->k, 1.0f, c->x, c->m, c->y, c->k, 0.0f,
                  out, c->m);
        break;
    case OP_BP4: /* D (m x k) A_in^T, A_in n x k */
        be->sgemm(BP_NOTRANS, BP_TRANS, c->m, c->n, c->k, c->alpha, c->x, c->m, c->y, c->n, 0.0f,
                  out, c->m);
        break;
    case OP_BP2: /* W^T D, W k x m, D k x n */
        be->sgemm(BP_TRANS, BP_NOTRANS, c->m, c->n, c->k, 1.0f, c->x, c->k, c->y, c->k, 0.0f,
                  out, c->m);
        break;
    case OP_BIAS_ACT:
        be->bias_act(c->act, c->m, c->n, c->x, out, c->m);
        break;
    case OP_ACT_BWD:
        be->act_bwd_hadamard(c->act, c->m, c->n, c->x, c->m, out, c->m);
        break;
    case OP_ROWSUM:
        be->rowsum(c->m, c->n, c->alpha, c->x, c->m, out);
        break;
    case OP_AXPY:
        be->axpy((size_t)c->m, c->alpha, c->x, out);
        break;
    case OP_CONV_FWD:
    case OP_POOL_FWD:
    case OP_CONV_BP2:
    case OP_POOL_BP2:
    case OP_CONV_BP4: {
        const bp_layer *l = c->lyr;
        bp_pass pass = {.mode = BP_PASS_TRAIN, .batch = c->batch};
        static const bp_grad_target grads = {BP_TARGET_GRADS, 1.0f, 0.0f};
        if (c->kind == OP_CONV_FWD || c->kind == OP_POOL_FWD)
            l->ops->forward(l, be, &pass, c->batch, c->x, l->n_in, out, l->n_out);
        else if (c->kind == OP_CONV_BP4) {
            l->ops->backward_params(l, be, c->batch, c->x, l->n_in, c->y, l->n_out, &grads, 0,
                                    1);
            memcpy(out, l->gw, sizeof(float) * c->out_len);
        } else {
            l->ops->backward_data(l, be, &pass, c->batch, c->x, l->n_in, NULL, l->n_out, c->y,
                                  l->n_out, out, l->n_in);
        }
        break;
    }
    }
}

static double op_flops(const op_case *c) { return 2.0 * c->m * c->n * c->k; }

/* Bytes each elementwise call must move at least once: its operands read, its result written. */
static double op_bytes(const op_case *c)
{
    double mn = (double)c->m * c->n, f = sizeof(float);
    switch (c->kind) {
    case OP_BIAS_ACT: return f * (2 * mn + c->m); /* Z read and written, b read */
    case OP_ACT_BWD: return f * 3 * mn;           /* A and D read, D written */
    case OP_ROWSUM: return f * (mn + c->m);       /* D read, db written */
    case OP_AXPY: return f * 3 * mn;              /* x and y read, y written */
    case OP_POOL_FWD: /* the input read, the outputs (and argmax) written */
    case OP_POOL_BP2: /* the deltas (and argmax) read, the input's deltas written */
        return f * ((double)c->lyr->n_in * c->batch + mn);
    default: return 0;
    }
}

/* ---- buffers and data ----------------------------------------------------------------------- */

static float *falloc(size_t n)
{
    size_t bytes = (n * sizeof(float) + 63) & ~(size_t)63;
    float *p = aligned_alloc(64, bytes ? bytes : 64);
    if (!p) {
        fprintf(stderr, "bench_ops: out of memory for %zu floats\n", n);
        exit(2);
    }
    return p;
}

static void fill_uniform(bp_rng *rng, float *p, size_t n, double lo, double hi)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (float)(lo + (hi - lo) * bp_rng_uniform(rng));
}

/* One layer's operands, sized for the largest batch; a smaller B uses a column prefix, as the
 * library does. Values are in the ranges training sees (A_in in [0,1], W ~ 1/sqrt(n_in)). */
typedef struct layer_data {
    int n_in, n_out;
    bp_activation act;
    float *w, *bias, *a_in, *z, *a, *d;
    float *ref, *out; /* the naive result, and the result or work buffer of the table timed */
} layer_data;

static void layer_data_init(layer_data *ld, int n_in, int n_out, bp_activation act, int max_b,
                            bp_rng *rng)
{
    size_t big = (size_t)n_out * n_in;
    if ((size_t)n_in * max_b > big)
        big = (size_t)n_in * max_b;
    if ((size_t)n_out * max_b > big)
        big = (size_t)n_out * max_b;
    ld->n_in = n_in;
    ld->n_out = n_out;
    ld->act = act;
    ld->w = falloc((size_t)n_out * n_in);
    ld->bias = falloc((size_t)n_out);
    ld->a_in = falloc((size_t)n_in * max_b);
    ld->z = falloc((size_t)n_out * max_b);
    ld->a = falloc((size_t)n_out * max_b);
    ld->d = falloc((size_t)n_out * max_b);
    ld->ref = falloc(big);
    ld->out = falloc(big);
    double s = 1.0 / sqrt((double)n_in);
    fill_uniform(rng, ld->w, (size_t)n_out * n_in, -s, s);
    fill_uniform(rng, ld->bias, (size_t)n_out, -0.5, 0.5);
    fill_uniform(rng, ld->a_in, (size_t)n_in * max_b, 0.0, 1.0);
    fill_uniform(rng, ld->z, (size_t)n_out * max_b, -3.0, 3.0);
    fill_uniform(rng, ld->d, (size_t)n_out * max_b, -1.0, 1.0);
    /* A = act(Z + b), so act_bwd sees the activations a forward pass would have left. */
    memcpy(ld->a, ld->z, sizeof(float) * (size_t)n_out * max_b);
    bp_bias_act_ref(act, n_out, max_b, ld->bias, ld->a, n_out);
}

static void layer_data_free(layer_data *ld)
{
    float *bufs[] = {ld->w, ld->bias, ld->a_in, ld->z, ld->a, ld->d, ld->ref, ld->out};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        free(bufs[i]);
}

/* The call `kind` of layer `ld` at batch B; returns 0 if the step does not make it. */
static int make_case(op_case *c, op_kind kind, int layer, const layer_data *ld, int batch)
{
    memset(c, 0, sizeof *c);
    c->kind = kind;
    c->layer = layer;
    c->batch = batch;
    c->act = ld->act;
    c->alpha = 1.0f / (float)batch;
    switch (kind) {
    case OP_FWD:
        c->m = ld->n_out, c->n = batch, c->k = ld->n_in, c->x = ld->w, c->y = ld->a_in;
        break;
    case OP_BP4:
        c->m = ld->n_out, c->n = ld->n_in, c->k = batch, c->x = ld->d, c->y = ld->a_in;
        break;
    case OP_BP2:
        if (layer == 1) /* nothing consumes a delta for the input */
            return 0;
        c->m = ld->n_in, c->n = batch, c->k = ld->n_out, c->x = ld->w, c->y = ld->d;
        break;
    case OP_BIAS_ACT:
        c->m = ld->n_out, c->n = batch, c->x = ld->bias, c->init = ld->z;
        break;
    case OP_ACT_BWD:
        /* Softmax pairs with the log-likelihood cost, whose output delta is A - Y directly. */
        if (ld->act == BP_ACT_SOFTMAX)
            return 0;
        c->m = ld->n_out, c->n = batch, c->x = ld->a, c->init = ld->d;
        break;
    case OP_ROWSUM:
        c->m = ld->n_out, c->n = batch, c->x = ld->d;
        break;
    case OP_AXPY:
        return 0; /* built from the arena, see main */
    default:
        return 0; /* the conv and pool ops: run_window_ops */
    }
    c->out_len = (size_t)c->m * (size_t)c->n;
    if (kind == OP_ROWSUM)
        c->out_len = (size_t)c->m;
    return 1;
}

/* ---- checking ------------------------------------------------------------------------------- */

/* Put the call's starting state in `out`: the in-place operand, or NaN where it only writes. */
static void prepare_out(const op_case *c, float *out)
{
    if (c->init)
        memcpy(out, c->init, sizeof(float) * c->out_len);
    else
        for (size_t i = 0; i < c->out_len; i++)
            out[i] = NAN;
}

static double nmse(const float *got, const float *ref, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double e = (double)got[i] - ref[i];
        num += e * e;
        den += (double)ref[i] * ref[i];
    }
    return den > 0 ? num / den : num; /* an all-zero reference: the absolute squared error */
}

static double nmse_bound(const op_case *c)
{
    int approx = c->kind == OP_BIAS_ACT && c->act != BP_ACT_RELU && c->act != BP_ACT_LINEAR;
    return approx ? NMSE_ACT : NMSE_SUMS;
}

/* ---- timing --------------------------------------------------------------------------------- */

typedef struct timed {
    const bp_backend *be;
    const op_case *c;
    float *out;
    int inner;
} timed;

static void timed_run(void *arg)
{
    const timed *t = arg;
    for (int i = 0; i < t->inner; i++)
        op_call(t->be, t->c, t->out);
}

typedef struct measure {
    double median, best; /* seconds per call */
    int reps, inner;
} measure;

/* Time one case; `t_call` is one call's time as seen while checking it (a cold call, so an
 * upper estimate). The in-place ops run again and again on their own output, which is harmless
 * for bias_act (sigmoid, tanh and softmax outputs stay in range; relu and linear drift by b per
 * call, far from overflow) and for axpy (y moves by |eta x| per call), but act_bwd multiplies D
 * by act' < 1 each call (sigmoid' <= 1/4), so D would sink into subnormals within ~60 calls,
 * costing ~100 cycles an element on x86, a slowdown no training step sees. So act_bwd is timed
 * on D = 0: the same loads, multiplies and stores, on values that stay put (it was checked on
 * real D). */
static measure time_case(const bp_backend *be, const op_case *c, float *work, double t_call,
                         const policy *p)
{
    if (c->kind == OP_ACT_BWD)
        memset(work, 0, sizeof(float) * c->out_len);
    else
        prepare_out(c, work);
    timed t = {.be = be, .c = c, .out = work, .inner = 1};

    /* Grow `inner` until one sample lasts sample_s; a slow call needs no growing. */
    double t_sample = t_call;
    while (t_sample < p->sample_s && t.inner < (1 << 24)) {
        double f = t_sample > 0 ? 1.5 * p->sample_s / t_sample : 16;
        f = f < 2 ? 2 : f > 16 ? 16 : f; /* at most 16x a step: a fast outlier cannot overshoot */
        t.inner = (int)(t.inner * f);
        double t0 = bench_now();
        timed_run(&t);
        t_sample = bench_now() - t0;
    }

    int reps = p->reps;
    if (t_sample * reps > p->budget_s) {
        reps = (int)(p->budget_s / t_sample);
        reps = reps < 1 ? 1 : reps - (reps % 2 == 0); /* odd, so the median is a sample */
    }
    /* Warm-up refills caches the checking evicted and wakes OpenBLAS's threads; a call long
     * enough to blow the budget was warmed by the check itself. */
    int warmup = t_sample * (reps + p->warmup) <= p->budget_s ? p->warmup : 0;
    bench_stats s = bench_time(timed_run, &t, warmup, reps);
    measure m = {s.median / t.inner, s.best / t.inner, s.reps, t.inner};
    return m;
}

/* ---- output --------------------------------------------------------------------------------- */

static int has_act(const op_case *c)
{
    return c->kind == OP_BIAS_ACT || c->kind == OP_ACT_BWD || c->kind == OP_POOL_FWD ||
           c->kind == OP_POOL_BP2 || c->kind == OP_CONV_FWD;
}

/* The act column: the activation, or for pooling its kind. */
static const char *act_label(const op_case *c)
{
    if (c->kind == OP_POOL_FWD || c->kind == OP_POOL_BP2)
        return c->lyr->ops->name;
    return has_act(c) ? bp_activation_name(c->act) : "-";
}

static void print_columns(void)
{
    printf("%-8s %-7s %5s %7s %5s %5s %5s %3s %-6s %12s %12s %9s %-6s %8s %5s %7s\n", "op", "act",
           "layer", "m", "n", "k", "B", "thr", "table", "median_us", "best_us", "rate", "unit",
           "speedup", "reps", "inner");
}

static void report(const options *o, const op_case *c, const char *backend, int threads,
                   const measure *m, double speedup)
{
    int gemm = is_gemm(c->kind);
    double rate = gemm ? op_flops(c) / m->median * 1e-9 : op_bytes(c) / m->median * 1e-9;
    if (o->json) {
        printf("{\"op\": \"%s\", ", op_names[c->kind]);
        if (has_act(c))
            printf("\"act\": \"%s\", ", act_label(c));
        printf("\"layer\": %d, \"m\": %d, \"n\": %d, \"k\": %d, \"B\": %d, \"threads\": %d, "
               "\"backend\": \"%s\", \"median_s\": %.4e, \"best_s\": %.4e, \"%s\": %.4g, "
               "\"speedup\": %.4g, \"reps\": %d, \"inner\": %d}\n",
               c->layer, c->m, c->n, c->k, c->batch, threads, backend, m->median, m->best,
               gemm ? "gflops" : "gbps", rate, speedup, m->reps, m->inner);
    } else {
        printf("%-8s %-7s %5d %7d %5d %5d %5d %3d %-6s %12.3f %12.3f %9.2f %-6s %8.2f %5d %7d\n",
               op_names[c->kind], act_label(c), c->layer, c->m,
               c->n, c->k, c->batch, threads, backend, m->median * 1e6, m->best * 1e6, rate,
               gemm ? "GFLOPS" : "GB/s", speedup, m->reps, m->inner);
    }
}

/* ---- one case on every table ---------------------------------------------------------------- */

/* Compute the naive reference once (its time estimates the naive call), then for each thread
 * count: check every other table against it, time every table, report. Returns the number of
 * tables that failed the check. */
static int run_case(const options *o, const policy *p, const op_case *c, float *ref, float *out)
{
    const bp_backend *naive = bp_backend_find("naive");
    prepare_out(c, ref);
    double t0 = bench_now();
    op_call(naive, c, ref);
    double t_naive = bench_now() - t0;
    int failures = 0;

    for (int ti = 0; ti < o->n_threads; ti++) {
        int threads = o->threads[ti];
        bp_set_threads(threads);
        measure base = time_case(naive, c, out, t_naive, p);
        report(o, c, "naive", threads, &base, 1.0);
        for (int bi = 0; bi < bp_backend_count(); bi++) {
            const bp_backend *be = bp_backend_find(bp_backend_name(bi));
            if (be == naive)
                continue;
            prepare_out(c, out);
            t0 = bench_now();
            op_call(be, c, out);
            double t_call = bench_now() - t0;
            double e = nmse(out, ref, c->out_len), bound = nmse_bound(c);
            if (!(e <= bound)) { /* also catches NaN */
                fflush(stdout);
                fprintf(stderr,
                        "FAIL %s%s%s layer %d m %d n %d k %d B %d threads %d table %s: "
                        "nmse %.3g against naive, bound %.0e; not timed\n",
                        op_names[c->kind], has_act(c) ? " " : "",
                        has_act(c) ? act_label(c) : "", c->layer, c->m, c->n, c->k,
                        c->batch, threads, be->name, e, bound);
                failures++;
                continue;
            }
            measure m = time_case(be, c, out, t_call, p);
            report(o, c, be->name, threads, &m, base.median / m.median);
        }
        fflush(stdout);
    }
    return failures;
}

/* The update over the whole parameter arena, sized as the dense layers lay it out. */
static int run_axpy(const options *o, const policy *p, bp_rng *rng)
{
    size_t n = 0;
    for (int l = 0; l + 1 < o->n_sizes; l++)
        n += bp_round_floats((size_t)o->sizes[l] * o->sizes[l + 1]) +
             bp_round_floats((size_t)o->sizes[l + 1]);
    float *params = falloc(n), *grads = falloc(n), *ref = falloc(n), *out = falloc(n);
    fill_uniform(rng, params, n, -1.0, 1.0);
    fill_uniform(rng, grads, n, -1.0, 1.0);
    op_case c = {.kind = OP_AXPY, .m = (int)n, .n = 1, .alpha = -0.1f, .x = grads,
                 .init = params, .out_len = n};
    int failures = run_case(o, p, &c, ref, out);
    free(params);
    free(grads);
    free(ref);
    free(out);
    return failures;
}

/* The convolution and pooling rows: a net of network3's layers planned for the largest batch
 * (up to 128: the naive lowering takes seconds a call beyond), its layers called directly on
 * random inputs and deltas, each backend's result checked against naive's. Layer 4 is dense,
 * there only to end the stack. */
static int run_window_ops(const options *o, const policy *p, bp_rng *rng)
{
    int max_b = 0;
    for (int i = 0; i < o->n_batches; i++)
        if (o->batches[i] <= 128 && o->batches[i] > max_b)
            max_b = o->batches[i];
    if (max_b == 0)
        return 0;
    int sizes[1] = {784};
    bp_net_config nc;
    bp_net_config_init(&nc);
    nc.sizes = sizes;
    nc.n_sizes = 1;
    nc.layers = "conv:20x5x5:relu,maxpool:2,conv:40x5x5:relu,maxpool:2,dense:10:softmax";
    nc.input_channels = 1;
    nc.input_rows = nc.input_cols = 28;
    nc.cost = BP_COST_LOG_LIKELIHOOD;
    nc.init = BP_INIT_HE;
    nc.max_batch = max_b;
    nc.threads = 1;
    bp_net *net;
    if (bp_net_create(&net, &nc) != BP_OK) {
        fprintf(stderr, "bench_ops: %s\n", bp_last_error());
        return 1;
    }
    size_t big = 0;
    for (int l = 0; l < 4; l++) {
        const bp_layer *lyr = &net->layers[l];
        size_t n = (size_t)(lyr->n_in > lyr->n_out ? lyr->n_in : lyr->n_out) * max_b;
        big = n > big ? n : big;
        big = lyr->n_params > big ? lyr->n_params : big;
    }
    float *in = falloc(big), *d = falloc(big), *ref = falloc(big), *out = falloc(big);
    int failures = 0;
    static const op_kind kinds[] = {OP_CONV_FWD, OP_CONV_BP4, OP_CONV_BP2};
    for (int bi = 0; bi < o->n_batches; bi++) {
        int batch = o->batches[bi];
        if (batch > max_b)
            continue;
        for (int l = 0; l < 4; l++) {
            const bp_layer *lyr = &net->layers[l];
            int conv = lyr->ops == &bp_conv_ops;
            fill_uniform(rng, in, (size_t)lyr->n_in * batch, 0.0, 1.0);
            fill_uniform(rng, d, (size_t)lyr->n_out * batch, -1.0, 1.0);
            /* The forward pass first: BP4 reads the im2col it keeps, BP2 of a max pool the
             * argmax. Every table's forward leaves the same bits there. */
            bp_pass pass = {.mode = BP_PASS_TRAIN, .batch = batch};
            lyr->ops->forward(lyr, &bp_backend_naive, &pass, batch, in, lyr->n_in, out,
                              lyr->n_out);
            for (size_t ki = 0; ki < 3; ki++) {
                op_kind kind = conv ? kinds[ki] : ki == 0 ? OP_POOL_FWD : OP_POOL_BP2;
                if (!conv && ki == 2)
                    continue;
                if (kind == OP_CONV_BP2 && l == 0)
                    continue; /* nothing consumes a delta for the input */
                size_t plane = (size_t)lyr->win.oh * lyr->win.ow;
                op_case c = {.kind = kind, .layer = l + 1, .batch = batch, .lyr = lyr,
                             .act = lyr->act, .x = in, .y = d};
                if (conv) {
                    c.m = (int)(plane * batch);
                    c.n = lyr->out.c;
                    c.k = lyr->win.c * lyr->win.kh * lyr->win.kw;
                } else {
                    c.m = lyr->n_out;
                    c.n = batch;
                }
                c.out_len = kind == OP_CONV_BP4 ? lyr->n_params
                            : kind == OP_CONV_BP2 || kind == OP_POOL_BP2
                                ? (size_t)lyr->n_in * batch
                                : (size_t)lyr->n_out * batch;
                failures += run_case(o, p, &c, ref, out);
            }
        }
    }
    free(in), free(d), free(ref), free(out);
    bp_net_free(net);
    return failures;
}

/* The 2048^3 sgemm roofline for each thread count, printed, puts the GEMM GFLOPS in proportion.
 * It also tells whether the thread comparison means anything: on a shared machine another
 * process can hold a core, and then 2 threads run no faster than 1 while a GEMM split between
 * them waits for the descheduled half (we saw 2 threads 1.1-1.9x slower than 1 that way). It is
 * measured at the start and at the end of the run, since the load can change in between. */
static void rooflines(const options *o, const char *when)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    bp_set_threads(1);
    double roof1 = bench_roofline_gflops();
    for (int t = 0; t < o->n_threads; t++) {
        int threads = o->threads[t];
        bp_set_threads(threads);
        double roof = threads == 1 ? roof1 : bench_roofline_gflops();
        if (o->json)
            printf("{\"roofline_gflops\": %.4g, \"threads\": %d, \"when\": \"%s\"}\n", roof,
                   threads, when);
        else
            printf("# sgemm roofline (2048^3), %d thread%s, %s: %.1f GFLOPS\n", threads,
                   threads == 1 ? "" : "s", when, roof);
        long usable = cores > 0 && cores < threads ? cores : threads;
        if (usable > 1 && roof < 0.75 * (double)usable * roof1)
            fprintf(stderr,
                    "bench_ops: warning (%s): %d threads reach %.2fx the 1-thread roofline, not "
                    "~%ldx: the cores are busy with something else, so thread comparisons "
                    "mislead\n",
                    when, threads, roof / roof1, usable);
    }
    fflush(stdout);
}

/* ---- arguments ------------------------------------------------------------------------------ */

static void usage(FILE *f)
{
    fprintf(f, "usage: bench_ops [--layers 784,100,10] [--hidden sigmoid] [--output softmax]\n"
               "                 [--batch 1,10,32,128,1024] [--threads 1,2] [--reps N]\n"
               "                 [--json] [--quick]\n");
}

static int parse_args(int argc, char **argv, options *o)
{
    static const int sizes[] = {784, 100, 10}, batches[] = {1, 10, 32, 128, 1024};
    static const int threads[] = {1, 2};
    *o = (options){.n_sizes = 3, .n_batches = 5, .n_threads = 2, .hidden = BP_ACT_SIGMOID,
                   .output = BP_ACT_SOFTMAX};
    memcpy(o->sizes, sizes, sizeof sizes);
    memcpy(o->batches, batches, sizeof batches);
    memcpy(o->threads, threads, sizeof threads);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int ok = 1;
        if (!strcmp(a, "--json"))
            o->json = 1;
        else if (!strcmp(a, "--quick"))
            o->quick = 1;
        else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            exit(0);
        } else if (!v)
            ok = 0;
        else if (!strcmp(a, "--layers"))
            ok = (o->n_sizes = bench_parse_list(v, o->sizes, MAX_SIZES, 1)) >= 2, i++;
        else if (!strcmp(a, "--batch"))
            ok = (o->n_batches = bench_parse_list(v, o->batches, MAX_LIST, 1)) > 0, i++;
        else if (!strcmp(a, "--threads"))
            ok = (o->n_threads = bench_parse_list(v, o->threads, MAX_LIST, 1)) > 0, i++;
        else if (!strcmp(a, "--reps"))
            ok = bench_parse_list(v, &o->reps, 1, 1) == 1, i++;
        else if (!strcmp(a, "--hidden"))
            ok = bp_activation_parse(v, &o->hidden) == BP_OK && o->hidden != BP_ACT_SOFTMAX, i++;
        else if (!strcmp(a, "--output"))
            ok = bp_activation_parse(v, &o->output) == BP_OK, i++;
        else
            ok = 0;
        if (!ok) {
            fprintf(stderr, "bench_ops: bad argument %s%s%s\n", a, v ? " " : "", v ? v : "");
            usage(stderr);
            return 0;
        }
    }
    return 1;
}

int main(int argc, char **argv)
{
    options o;
    if (!parse_args(argc, argv, &o))
        return 2;
    if (!bp_backend_find("naive")) {
        fprintf(stderr, "bench_ops: no naive table to check against\n");
        return 2;
    }
    /* --quick is for CI: enough to catch a wrong or grossly slow kernel, in seconds. */
    policy p = o.quick ? (policy){.reps = 3, .warmup = 1, .sample_s = 2e-5, .budget_s = 0.05}
                       : (policy){.reps = 21, .warmup = 2, .sample_s = 2e-4, .budget_s = 1.0};
    if (o.reps)
        p.reps = o.reps;

    char tdesc[128];
    bench_join_ints(tdesc, sizeof tdesc, o.threads, o.n_threads);
    bench_header(stdout, o.json, tdesc);
    if (o.json)
        printf("\n");
    rooflines(&o, "start");
    if (!o.json) {
        printf("# per call: median and best of reps, each rep timing `inner` calls; speedup = "
               "naive median / this median\n");
        print_columns();
    }

    bp_rng rng;
    bp_rng_seed(&rng, 20240601);
    int max_b = 0;
    for (int i = 0; i < o.n_batches; i++)
        max_b = o.batches[i] > max_b ? o.batches[i] : max_b;
    int n_layers = o.n_sizes - 1;
    layer_data *layers = calloc((size_t)n_layers, sizeof *layers);
    for (int l = 0; l < n_layers; l++)
        layer_data_init(&layers[l], o.sizes[l], o.sizes[l + 1],
                        l + 1 == n_layers ? o.output : o.hidden, max_b, &rng);

    int failures = run_axpy(&o, &p, &rng);
    static const op_kind kinds[] = {OP_FWD, OP_BP4, OP_BP2, OP_BIAS_ACT, OP_ACT_BWD, OP_ROWSUM};
    for (int bi = 0; bi < o.n_batches; bi++)
        for (int l = 0; l < n_layers; l++)
            for (size_t ki = 0; ki < sizeof kinds / sizeof kinds[0]; ki++) {
                op_case c;
                if (make_case(&c, kinds[ki], l + 1, &layers[l], o.batches[bi]))
                    failures += run_case(&o, &p, &c, layers[l].ref, layers[l].out);
            }

    failures += run_window_ops(&o, &p, &rng);

    rooflines(&o, "end");
    for (int l = 0; l < n_layers; l++)
        layer_data_free(&layers[l]);
    free(layers);
    if (failures) {
        fprintf(stderr, "FAIL: %d kernel result%s disagreed with naive\n", failures,
                failures == 1 ? "" : "s");
        return 1;
    }
    return 0;
}
