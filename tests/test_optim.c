/*
 * test_optim.c - the optimiser table. SGD's fused form (folded into BP4 through the gradient
 * target) and its unfused form (an update over ranges of the arena) land on the same
 * parameters, however the arena is split into ranges. Every stateful rule's step equals values
 * worked out by hand on a 2x2 problem (four parameters) over three steps; AdamW decays weights
 * and not biases; clipping scales the gradient only when its norm exceeds the threshold; the
 * update split across 1, 2 and 3 threads gives the same bits; unknown names and bad
 * hyper-parameters are refused; momentum and Adam learn faster than SGD at the same rate.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backprop.h"
#include "optim/optim.h"
#include "testutil.h"

START_TEST(test_sgd_fused_and_ranged_agree)
{
    const int sizes[] = {13, 9, 7, 4};
    bp_net_config cfg;
    bp_net_config_init(&cfg);
    cfg.sizes = sizes;
    cfg.n_sizes = 4;
    cfg.max_batch = 6;
    cfg.threads = 1;
    bp_net *fused, *ranged;
    ck_assert_int_eq(bp_net_create(&fused, &cfg), BP_OK);
    ck_assert_int_eq(bp_net_create(&ranged, &cfg), BP_OK);
    float x[13 * 6], y[4 * 6] = {0};
    uint64_t seed = 41;
    bp_test_fill(x, 13 * 6, -1, 1, &seed);
    for (int s = 0; s < 6; s++)
        y[s * 4 + (s * 3) % 4] = 1;
    bp_optimizer sgd;
    bp_optimizer_init(&sgd, &bp_sgd_ops, 0.3f);
    bp_grad_target target;
    ck_assert_int_eq(sgd.ops->fuse(&sgd, &target), 1);
    ck_assert_int_eq(target.into, BP_TARGET_PARAMS);
    ck_assert_float_eq(target.alpha, -0.3f);
    ck_assert_int_eq(sgd.ops->state_per_param, 0);

    size_t n;
    float *p = bp_net_params(ranged, &n);
    const float *g = bp_net_grads(ranged, NULL);
    for (int step = 0; step < 3; step++) {
        ck_assert_int_eq(bp_net_sgd_step(fused, x, 13, y, 4, 6, 0.3f, NULL), BP_OK);
        ck_assert_int_eq(bp_net_gradient(ranged, x, 13, y, 4, 6, NULL), BP_OK);
        /* Three uneven ranges, in an order that is not the arena's. */
        size_t cut1 = n / 3, cut2 = n - 5;
        sgd.ops->step(&sgd, p, g, NULL, n, cut2, n);
        sgd.ops->step(&sgd, p, g, NULL, n, 0, cut1);
        sgd.ops->step(&sgd, p, g, NULL, n, cut1, cut2);
    }
    const float *pf = bp_net_params(fused, NULL);
    double worst = 0;
    for (size_t i = 0; i < n; i++)
        worst = fmax(worst, fabs(pf[i] - p[i]) / fmax(1e-3, fabs(p[i])));
    /* Only where the update is rounded differs (inside the GEMM or after it). */
    ck_assert_msg(worst < 1e-5, "fused and ranged SGD differ by %g", worst);
    bp_net_free(fused);
    bp_net_free(ranged);
}
END_TEST

/* ---- each rule against hand arithmetic ------------------------------------------------ */

/* The 2x2 problem: four parameters W0 and the gradients of three steps. */
static const float W0[4] = {1.0f, -1.0f, 2.0f, 0.5f};
static const float G[3][4] = {
    {1.0f, -2.0f, 0.5f, 0.0f},
    {0.5f, 1.0f, -1.0f, 2.0f},
    {-1.0f, 0.5f, 0.25f, -2.0f},
};

/* Run `steps` steps of opt over the four parameters (state zeroed first), each over two ranges
 * [0, 1) and [1, 4) so the range arithmetic is exercised too, and compare with want[step]. */
static void check_steps(bp_optimizer *opt, int steps, const float want[][4], const char *what)
{
    float w[4], state[8] = {0};
    memcpy(w, W0, sizeof w);
    ck_assert_int_le(opt->ops->state_per_param, 2);
    bp_grad_target target;
    ck_assert_int_eq(opt->ops->fuse(opt, &target), 0); /* every stateful rule needs G stored */
    for (int s = 0; s < steps; s++) {
        bp_optimizer_begin_step(opt, (uint64_t)s + 1);
        opt->ops->step(opt, w, G[s], state, 4, 1, 4);
        opt->ops->step(opt, w, G[s], state, 4, 0, 1);
        for (int i = 0; i < 4; i++)
            ck_assert_msg(fabsf(w[i] - want[s][i]) <= 2e-6f * fmaxf(1.0f, fabsf(want[s][i])),
                          "%s step %d, w[%d] = %.9g, want %.9g", what, s + 1, i, w[i],
                          want[s][i]);
    }
}

START_TEST(test_momentum_by_hand)
{
    /* mu 0.5, eta 0.1. v1 = -0.1 G1 = (-0.1, 0.2, -0.05, 0); W1 = W0 + v1.
     * v2 = 0.5 v1 - 0.1 G2 = (-0.05 - 0.05, 0.1 - 0.1, -0.025 + 0.1, 0 - 0.2)
     *    = (-0.1, 0, 0.075, -0.2); W2 = W1 + v2.
     * v3 = 0.5 v2 - 0.1 G3 = (-0.05 + 0.1, 0 - 0.05, 0.0375 - 0.025, -0.1 + 0.2)
     *    = (0.05, -0.05, 0.0125, 0.1); W3 = W2 + v3. */
    static const float want[3][4] = {
        {0.9f, -0.8f, 1.95f, 0.5f},
        {0.8f, -0.8f, 2.025f, 0.3f},
        {0.85f, -0.85f, 2.0375f, 0.4f},
    };
    bp_optimizer opt;
    bp_optimizer_init(&opt, &bp_momentum_ops, 0.1f);
    opt.mu = 0.5f;
    ck_assert_int_eq(opt.ops->state_per_param, 1);
    check_steps(&opt, 3, want, "momentum");
}
END_TEST

START_TEST(test_nesterov_by_hand)
{
    /* mu 0.5, eta 0.1, the same velocities as momentum; W <- W + mu v - eta G:
     * W1 = W0 + 0.5 v1 + v1 = W0 + 1.5 (-0.1, 0.2, -0.05, 0) = (0.85, -0.7, 1.925, 0.5)
     * W2 = W1 + 0.5 (-0.1, 0, 0.075, -0.2) - 0.1 (0.5, 1, -1, 2)
     *    = W1 + (-0.1, -0.1, 0.1375, -0.3) = (0.75, -0.8, 2.0625, 0.2)
     * W3 = W2 + 0.5 (0.05, -0.05, 0.0125, 0.1) - 0.1 (-1, 0.5, 0.25, -2)
     *    = W2 + (0.125, -0.075, -0.01875, 0.25) = (0.875, -0.875, 2.04375, 0.45) */
    static const float want[3][4] = {
        {0.85f, -0.7f, 1.925f, 0.5f},
        {0.75f, -0.8f, 2.0625f, 0.2f},
        {0.875f, -0.875f, 2.04375f, 0.45f},
    };
    bp_optimizer opt;
    bp_optimizer_init(&opt, &bp_nesterov_ops, 0.1f);
    opt.mu = 0.5f;
    check_steps(&opt, 3, want, "nesterov");
}
END_TEST

START_TEST(test_adam_by_hand)
{
    /* b1 0.9, b2 0.999, eps 1e-8, eta 0.1.
     * t = 1: m = 0.1 G1, v = 0.001 G1^2; the corrections 1/(1 - 0.9) and 1/(1 - 0.999) make
     *   m_hat = G1, v_hat = G1^2, so each weight moves by eta sign(G1): (0.9, -0.9, 1.9, 0.5)
     *   (without them the first step would be 0.1 * 0.1 / sqrt(0.001) = 0.316 eta).
     * t = 2: c1 = 1/(1 - 0.81) = 1/0.19, c2 = 1/(1 - 0.998001) = 1/0.001999.
     *   w[0]: m = 0.9 * 0.1 + 0.1 * 0.5 = 0.14, v = 0.999 * 0.001 + 0.001 * 0.25 = 0.001249;
     *     m_hat = 0.736842, sqrt(v_hat) = sqrt(0.624812) = 0.790451;
     *     w = 0.9 - 0.1 * 0.736842 / 0.790451 = 0.9 - 0.093218 = 0.806782.
     *   w[1]: m = 0.9 * -0.2 + 0.1 = -0.08, v = 0.999 * 0.004 + 0.001 = 0.004996;
     *     m_hat = -0.421053, sqrt(v_hat) = sqrt(2.49925) = 1.580902;
     *     w = -0.9 + 0.026634 = -0.873366.
     *   w[3]: m = 0.2, v = 0.004; m_hat = 1.052632, sqrt(v_hat) = sqrt(2.001001) = 1.414567;
     *     w = 0.5 - 0.074414 = 0.425586.  (w[2] likewise: 1.936610.)
     * t = 3 the same way with c1 = 1/0.271, c2 = 1/0.002997001. */
    static const float want[3][4] = {
        {0.9f, -0.9f, 1.9f, 0.5f},
        {0.806782038f, -0.873366297f, 1.93661035f, 0.425586318f},
        {0.795703731f, -0.86722741f, 1.95027942f, 0.430104542f},
    };
    bp_optimizer opt;
    bp_optimizer_init(&opt, &bp_adam_ops, 0.1f);
    ck_assert_int_eq(opt.ops->state_per_param, 2);
    check_steps(&opt, 3, want, "adam");
    /* The moments after one step: m = 0.1 G1 in block 0, v = 0.001 G1^2 in block 1. */
    float w[4], state[8] = {0};
    memcpy(w, W0, sizeof w);
    bp_optimizer_begin_step(&opt, 1);
    opt.ops->step(&opt, w, G[0], state, 4, 0, 4);
    ck_assert_float_eq_tol(state[1], -0.2f, 1e-7f);
    ck_assert_float_eq_tol(state[4 + 1], 0.004f, 1e-7f); /* (1 - 0.999f) is 0.00099998713 */
    ck_assert_float_eq(state[3], 0.0f);
}
END_TEST

START_TEST(test_adamw_by_hand)
{
    /* adam's numbers with weight_decay 0.5, eta 0.1: W <- (1 - 0.05) W - eta m_hat / ...,
     * the decay of W before the step. t = 1: 0.95 * (1, -1, 2, 0.5) - 0.1 sign(G1)
     *   = (0.85, -0.85, 1.8, 0.475).
     * t = 2: w[0] = 0.95 * 0.85 - 0.093218 = 0.714282 (adam's step, since G and the moments do
     *   not see the decay); w[3] = 0.95 * 0.475 - 0.074414 = 0.376836. */
    static const float want[3][4] = {
        {0.85f, -0.85f, 1.8f, 0.475f},
        {0.714282038f, -0.780866297f, 1.74661035f, 0.376836318f},
        {0.667489629f, -0.735684096f, 1.6729489f, 0.362512726f},
    };
    bp_optimizer opt;
    bp_optimizer_init(&opt, &bp_adamw_ops, 0.1f);
    opt.weight_decay = 0.5f;
    check_steps(&opt, 3, want, "adamw");
}
END_TEST

START_TEST(test_rmsprop_by_hand)
{
    /* b2 0.9, eps 1e-8, eta 0.01, no bias correction.
     * t = 1: v = 0.1 G1^2 = (0.1, 0.4, 0.025, 0); the step is 0.01 G1 / sqrt(0.1 G1^2)
     *   = 0.01 / sqrt(0.1) sign(G1) = 0.0316228 sign(G1): (0.968377, -0.968377, 1.968377, 0.5).
     * t = 2: v = 0.9 v + 0.1 G2^2 = (0.115, 0.46, 0.1225, 0.4);
     *   w[0] = 0.968377 - 0.01 * 0.5 / sqrt(0.115) = 0.968377 - 0.014744 = 0.953633;
     *   w[3] = 0.5 - 0.01 * 2 / sqrt(0.4) = 0.5 - 0.031623 = 0.468377.
     * t = 3: v = (0.2035, 0.439, 0.1165, 0.76); w[3] = 0.468377 + 0.02 / sqrt(0.76)
     *   = 0.468377 + 0.022942 = 0.491319. */
    static const float want[3][4] = {
        {0.968377224f, -0.968377224f, 1.96837723f, 0.5f},
        {0.953633029f, -0.983121419f, 1.99694865f, 0.468377224f},
        {0.975800584f, -0.990667783f, 1.98962417f, 0.491318797f},
    };
    bp_optimizer opt;
    bp_optimizer_init(&opt, &bp_rmsprop_ops, 0.01f);
    opt.beta2 = 0.9f;
    ck_assert_int_eq(opt.ops->state_per_param, 1);
    check_steps(&opt, 3, want, "rmsprop");
}
END_TEST

/* L2 and L1 enter G (on what the trainer hands in as weights), sign(0) = 0, and the plain path
 * ignores nothing: decay 0.5, l1 0.25, g = 0, w = (0, 1, -1, 2):
 *   G = 0.5 w + 0.25 sign(w) = (0, 0.75, -0.75, 1.25).
 * momentum (mu 0.5, eta 0.1): v = -0.1 G, W1 = (0, 0.925, -0.925, 1.875).
 * adam (t = 1): W1 = W - 0.1 sign(G) = (0, 0.9, -0.9, 1.9), the zero weight untouched. */
START_TEST(test_regularisation_enters_g)
{
    const float w0[4] = {0.0f, 1.0f, -1.0f, 2.0f}, g[4] = {0};
    const bp_optimizer_ops *ops[2] = {&bp_momentum_ops, &bp_adam_ops};
    const float want[2][4] = {{0.0f, 0.925f, -0.925f, 1.875f}, {0.0f, 0.9f, -0.9f, 1.9f}};
    for (int k = 0; k < 2; k++) {
        bp_optimizer opt;
        bp_optimizer_init(&opt, ops[k], 0.1f);
        opt.mu = 0.5f;
        opt.decay = 0.5f;
        opt.l1 = 0.25f;
        float w[4], state[8] = {0};
        memcpy(w, w0, sizeof w);
        bp_optimizer_begin_step(&opt, 1);
        opt.ops->step(&opt, w, g, state, 4, 0, 4);
        for (int i = 0; i < 4; i++)
            ck_assert_msg(fabsf(w[i] - want[k][i]) < 1e-6f, "%s w[%d] = %.9g, want %.9g",
                          ops[k]->name, i, w[i], want[k][i]);
    }
}
END_TEST

/* ---- through the trainer: roles, clipping, threads ------------------------------------ */

enum { N = 40, DIM = 6, CLASSES = 3 };

static bp_dataset *make_set(void)
{
    static float x[N * DIM];
    int labels[N];
    uint64_t seed = 23;
    bp_test_fill(x, N * DIM, -1, 1, &seed);
    for (int i = 0; i < N; i++)
        labels[i] = i % CLASSES;
    bp_dataset *ds;
    ck_assert_int_eq(bp_dataset_from_floats(&ds, x, labels, N, DIM, CLASSES), BP_OK);
    return ds;
}

static bp_net *make_net(void)
{
    const int sizes[] = {DIM, 5, CLASSES};
    bp_net_config cfg;
    bp_net_config_init(&cfg);
    cfg.sizes = sizes;
    cfg.n_sizes = 3;
    cfg.max_batch = N;
    cfg.threads = 1;
    bp_net *net;
    ck_assert_int_eq(bp_net_create(&net, &cfg), BP_OK);
    return net;
}

/* One full-batch step of the trainer from cfg (batch N: the shuffle changes only the order of
 * the sum), against want(role, w, g) applied to bp_net_gradient's gradient at the same start. */
typedef double (*rule_fn)(bp_tensor_role role, double w, double g, double norm);
static double last_norm; /* ||g|| of the last check_trainer_step */

static void check_trainer_step(const bp_train_config *tc, rule_fn want_of, const char *what)
{
    bp_dataset *ds = make_set();
    bp_net *net = make_net();
    size_t n;
    float *p = bp_net_params(net, &n);
    float *before = malloc(n * sizeof *p);
    memcpy(before, p, n * sizeof *p);
    float x[N * DIM], y[N * CLASSES];
    ck_assert_int_eq(bp_dataset_gather(ds, NULL, N, x, y, CLASSES), BP_OK);
    ck_assert_int_eq(bp_net_gradient(net, x, DIM, y, CLASSES, N, NULL), BP_OK);
    const float *g = bp_net_grads(net, NULL);
    double squares = 0;
    for (int k = 0; k < bp_net_tensor_count(net); k++) {
        bp_tensor_info t;
        bp_net_tensor(net, k, &t);
        for (size_t i = t.offset; i < t.offset + t.count; i++)
            squares += (double)g[i] * g[i];
    }
    double norm = sqrt(squares);
    last_norm = norm;
    float *want = malloc(n * sizeof *p);
    memcpy(want, before, n * sizeof *p);
    for (int k = 0; k < bp_net_tensor_count(net); k++) {
        bp_tensor_info t;
        bp_net_tensor(net, k, &t);
        for (size_t i = t.offset; i < t.offset + t.count; i++)
            want[i] = (float)want_of(t.role, before[i], g[i], norm);
    }
    bp_train_config cfg = *tc;
    cfg.batch = N;
    bp_trainer *tr;
    ck_assert_int_eq(bp_trainer_create(&tr, net, ds, &cfg), BP_OK);
    ck_assert_int_eq(bp_trainer_epoch(tr, NULL), BP_OK);
    double worst = 0;
    for (size_t i = 0; i < n; i++)
        worst = fmax(worst, fabs(p[i] - want[i]) / fmax(1e-3, fabs(want[i])));
    ck_assert_msg(worst < 1e-5, "%s: the step differs from the formula by %g", what, worst);
    bp_trainer_state st;
    ck_assert_int_eq(bp_trainer_get_state(tr, &st), BP_OK);
    ck_assert_uint_eq(st.steps, 1);
    bp_trainer_free(tr);
    free(before), free(want);
    bp_net_free(net);
    bp_dataset_free(ds);
}

enum { ETA_TENTHS = 3 };
#define ETA (ETA_TENTHS / 10.0)
static double clip_threshold; /* the clip_norm the current case set, for the rules below */

/* adamw at t = 1: m_hat = g, v_hat = g^2, so W <- (1 - eta wd) W - eta g / (|g| + eps) with
 * the decay (wd 2) on weights only. */
static double adamw_rule(bp_tensor_role role, double w, double g, double norm)
{
    (void)norm;
    double keep = role == BP_ROLE_WEIGHT ? 1.0 - ETA * 2.0 : 1.0;
    return keep * w - ETA * g / (fabs(g) + 1e-8);
}

/* SGD with clipping: g scaled by clip / ||g|| when ||g|| > clip, for every role. */
static double clipped_sgd_rule(bp_tensor_role role, double w, double g, double norm)
{
    (void)role;
    double scale = norm > clip_threshold ? clip_threshold / norm : 1.0;
    return w - ETA * scale * g;
}

START_TEST(test_adamw_decays_weights_not_biases)
{
    bp_train_config tc;
    bp_train_config_init(&tc);
    tc.eta = (float)ETA;
    tc.optimizer = BP_OPT_ADAMW;
    tc.weight_decay = 2.0f;
    check_trainer_step(&tc, adamw_rule, "adamw");
}
END_TEST

/* Thresholds far on either side of the gradient's norm: above it the step is plain SGD's, below
 * it the parameters move by clip / ||g|| of that step. */
START_TEST(test_clipping_above_and_below_the_norm)
{
    bp_train_config tc;
    bp_train_config_init(&tc);
    tc.eta = (float)ETA;
    const double thresholds[] = {1e3, 1e-3};
    for (int c = 0; c < 2; c++) {
        clip_threshold = thresholds[c];
        tc.clip_norm = (float)thresholds[c];
        check_trainer_step(&tc, clipped_sgd_rule, c ? "clip below the norm" : "clip above");
    }
    /* The thresholds did bracket the norm, so one case clipped and the other did not. */
    ck_assert_msg(last_norm > 1e-2 && last_norm < 1e2, "the gradient's norm is %g", last_norm);
}
END_TEST

/* The update split across the net's team lands on the same bits as one thread. Batch 8 keeps
 * the step itself on the calling thread (the team takes a batch only at 16 columns a member),
 * so only the update differs in how it is run; the arena (52,618 floats) is large enough to be
 * split for 3 members. */
START_TEST(test_update_split_across_threads_is_identical)
{
    enum { IN = 400, HID = 128, OUT = 10, SAMPLES = 64, B = 8 };
    static float x[IN * SAMPLES];
    int labels[SAMPLES];
    uint64_t seed = 5;
    bp_test_fill(x, IN * SAMPLES, 0, 1, &seed);
    for (int i = 0; i < SAMPLES; i++)
        labels[i] = i % OUT;
    bp_dataset *ds;
    ck_assert_int_eq(bp_dataset_from_floats(&ds, x, labels, SAMPLES, IN, OUT), BP_OK);
    const bp_optimizer_kind kinds[] = {BP_OPT_ADAM, BP_OPT_MOMENTUM, BP_OPT_NESTEROV,
                                       BP_OPT_ADAMW, BP_OPT_RMSPROP};
    for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++) {
        float *first = NULL;
        size_t n = 0;
        for (int threads = 1; threads <= 3; threads++) {
            const int sizes[] = {IN, HID, OUT};
            bp_net_config nc;
            bp_net_config_init(&nc);
            nc.sizes = sizes;
            nc.n_sizes = 3;
            nc.max_batch = B;
            nc.threads = threads;
            bp_net *net;
            ck_assert_int_eq(bp_net_create(&net, &nc), BP_OK);
            bp_train_config tc;
            bp_train_config_init(&tc);
            tc.batch = B;
            tc.eta = 0.01f;
            tc.optimizer = kinds[k];
            tc.lambda = 1.0f;
            tc.clip_norm = 0.5f;
            if (kinds[k] == BP_OPT_ADAMW)
                tc.weight_decay = 0.1f;
            bp_trainer *t;
            ck_assert_int_eq(bp_trainer_create(&t, net, ds, &tc), BP_OK);
            ck_assert_int_eq(bp_trainer_epoch(t, NULL), BP_OK);
            const float *p = bp_net_params(net, &n);
            if (!first) {
                first = malloc(n * sizeof *first);
                memcpy(first, p, n * sizeof *first);
            } else {
                size_t differ = 0;
                for (size_t i = 0; i < n; i++)
                    differ += memcmp(&p[i], &first[i], sizeof *p) != 0;
                ck_assert_msg(differ == 0, "%s on %d threads: %zu of %zu parameters differ "
                              "from one thread's", bp_optimizer_name(kinds[k]), threads,
                              differ, n);
            }
            bp_trainer_free(t);
            bp_net_free(net);
        }
        ck_assert_uint_ge(n, 3 * (1 << 14));
        free(first);
    }
    bp_dataset_free(ds);
}
END_TEST

/* ---- names and refusals ---------------------------------------------------------------- */

START_TEST(test_names_round_trip_and_unknown_refused)
{
    const char *names[] = {"sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop"};
    ck_assert_int_eq(sizeof names / sizeof *names, BP_OPT_COUNT);
    for (int k = 0; k < BP_OPT_COUNT; k++) {
        bp_optimizer_kind kind = BP_OPT_COUNT;
        ck_assert_int_eq(bp_optimizer_parse(names[k], &kind), BP_OK);
        ck_assert_int_eq(kind, k);
        ck_assert_str_eq(bp_optimizer_name(kind), names[k]);
        ck_assert_str_eq(bp_optimizer_ops_of(kind)->name, names[k]);
    }
    const char *bad[] = {"adagrad", "Adam", "adam ", "", "sgd,adam"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        bp_optimizer_kind kind = BP_OPT_ADAM;
        ck_assert_int_eq(bp_optimizer_parse(bad[i], &kind), BP_EINVAL);
        ck_assert_int_eq(kind, BP_OPT_ADAM); /* untouched */
        ck_assert_ptr_nonnull(strstr(bp_last_error(), "unknown optimizer"));
    }
    bp_optimizer_kind kind;
    ck_assert_int_eq(bp_optimizer_parse(NULL, &kind), BP_EINVAL);
    ck_assert_int_eq(bp_optimizer_parse("sgd", NULL), BP_EINVAL);
    ck_assert_str_eq(bp_optimizer_name(BP_OPT_COUNT), "unknown");
    ck_assert_str_eq(bp_optimizer_name((bp_optimizer_kind)-1), "unknown");
    ck_assert_ptr_null(bp_optimizer_ops_of(BP_OPT_COUNT));
}
END_TEST

START_TEST(test_defaults)
{
    bp_train_config tc;
    bp_train_config_init(&tc);
    ck_assert_int_eq(tc.optimizer, BP_OPT_SGD);
    ck_assert_float_eq(tc.momentum, 0.9f);
    ck_assert_float_eq(tc.beta1, 0.9f);
    ck_assert_float_eq(tc.beta2, 0.999f);
    ck_assert_float_eq(tc.eps, 1e-8f);
    ck_assert_float_eq(tc.weight_decay, 0.0f);
    ck_assert_float_eq(tc.clip_norm, 0.0f);
    ck_assert_int_eq(tc.schedule.kind, BP_SCHEDULE_CONST);
    ck_assert_int_eq(tc.early_stop, 0);
    ck_assert_int_eq(tc.norm_samples, 0);
}
END_TEST

/* Each bad value is refused by bp_trainer_create with a message naming the field. */
START_TEST(test_bad_hyper_parameters_refused)
{
    bp_dataset *ds = make_set();
    bp_net *net = make_net();
    bp_train_config tc;
    bp_trainer *t;
#define REFUSED(field, stmt)                                                                       \
    do {                                                                                           \
        bp_train_config_init(&tc);                                                                 \
        stmt;                                                                                      \
        ck_assert_int_eq(bp_trainer_create(&t, net, ds, &tc), BP_EINVAL);                          \
        ck_assert_ptr_null(t);                                                                     \
        ck_assert_msg(strstr(bp_last_error(), field), "'%s' does not name %s", bp_last_error(),   \
                      field);                                                                      \
    } while (0)
    REFUSED("momentum", tc.momentum = 1.0f);
    REFUSED("momentum", tc.momentum = -0.1f);
    REFUSED("momentum", tc.momentum = NAN);
    REFUSED("beta1", tc.beta1 = 1.0f);
    REFUSED("beta2", tc.beta2 = -0.5f);
    REFUSED("beta2", tc.beta2 = INFINITY);
    REFUSED("eps", tc.eps = 0.0f);
    REFUSED("eps", tc.eps = -1e-8f);
    REFUSED("weight_decay", (tc.optimizer = BP_OPT_ADAMW, tc.weight_decay = -1.0f));
    REFUSED("weight_decay", (tc.optimizer = BP_OPT_ADAM, tc.weight_decay = 0.01f));
    REFUSED("clip_norm", tc.clip_norm = -1.0f);
    REFUSED("clip_norm", tc.clip_norm = NAN);
    REFUSED("optimizer", tc.optimizer = BP_OPT_COUNT);
    REFUSED("early_stop", tc.early_stop = -1);
    REFUSED("norm_samples", tc.norm_samples = -5);
    REFUSED("halve", (tc.schedule = (bp_schedule){BP_SCHEDULE_HALVE, 0, 0.0f}));
    REFUSED("step", (tc.schedule = (bp_schedule){BP_SCHEDULE_STEP, 2, 0.0f}));
    REFUSED("step", (tc.schedule = (bp_schedule){BP_SCHEDULE_STEP, 0, 0.5f}));
    REFUSED("schedule", (tc.schedule = (bp_schedule){BP_SCHEDULE_COUNT, 1, 1.0f}));
    REFUSED("cosine", (tc.schedule.kind = BP_SCHEDULE_COSINE, tc.epochs = 0));
#undef REFUSED
    /* The edges that are allowed. */
    bp_train_config_init(&tc);
    tc.momentum = 0.0f;
    tc.beta1 = 0.0f;
    tc.optimizer = BP_OPT_ADAMW;
    tc.weight_decay = 0.0f;
    ck_assert_int_eq(bp_trainer_create(&t, net, ds, &tc), BP_OK);
    bp_trainer_free(t);
    /* Halving and early stopping need a validation set. */
    bp_train_config_init(&tc);
    tc.epochs = 1;
    tc.early_stop = 2;
    ck_assert_int_eq(bp_train(net, ds, NULL, &tc, NULL), BP_EINVAL);
    ck_assert_ptr_nonnull(strstr(bp_last_error(), "early_stop"));
    ck_assert_ptr_nonnull(strstr(bp_last_error(), "validation"));
    tc.early_stop = 0;
    tc.schedule = (bp_schedule){BP_SCHEDULE_HALVE, 3, 0.0f};
    ck_assert_int_eq(bp_train(net, ds, NULL, &tc, NULL), BP_EINVAL);
    ck_assert_ptr_nonnull(strstr(bp_last_error(), "halve"));
    bp_net_free(net);
    bp_dataset_free(ds);
}
END_TEST

/* ---- learning -------------------------------------------------------------------------- */

/* Four Gaussian blobs in 8 dimensions, well apart: separable. At eta 0.02 plain SGD has barely
 * begun after 4 epochs; momentum (an effective rate of eta / (1 - mu) = 10 eta) and Adam (steps
 * of about eta per weight whatever the gradient's scale) must be far ahead. */
START_TEST(test_momentum_and_adam_learn_faster_than_sgd)
{
    enum { S = 400, D = 8, K = 4 };
    static float x[S * D];
    int labels[S];
    uint64_t seed = 99;
    bp_test_fill(x, S * D, -0.5f, 0.5f, &seed);
    for (int i = 0; i < S; i++) {
        labels[i] = i % K;
        x[i * D + labels[i]] += 2.0f; /* the blob's centre: 2 along axis k */
    }
    bp_dataset *ds;
    ck_assert_int_eq(bp_dataset_from_floats(&ds, x, labels, S, D, K), BP_OK);
    const bp_optimizer_kind kinds[] = {BP_OPT_SGD, BP_OPT_MOMENTUM, BP_OPT_ADAM};
    double cost[3];
    float acc[3];
    for (int k = 0; k < 3; k++) {
        const int sizes[] = {D, 16, K};
        bp_net_config nc;
        bp_net_config_init(&nc);
        nc.sizes = sizes;
        nc.n_sizes = 3;
        nc.threads = 1;
        bp_net *net;
        ck_assert_int_eq(bp_net_create(&net, &nc), BP_OK);
        bp_train_config tc;
        bp_train_config_init(&tc);
        tc.epochs = 4;
        tc.batch = 10;
        tc.eta = 0.02f;
        tc.optimizer = kinds[k];
        ck_assert_int_eq(bp_train(net, ds, NULL, &tc, NULL), BP_OK);
        ck_assert_int_eq(bp_evaluate(net, ds, &acc[k], &cost[k]), BP_OK);
        bp_net_free(net);
    }
    ck_assert_msg(cost[1] < 0.7 * cost[0] && cost[2] < 0.7 * cost[0],
                  "costs after 4 epochs: sgd %g, momentum %g, adam %g", cost[0], cost[1],
                  cost[2]);
    ck_assert_msg(acc[1] >= 0.95f && acc[2] >= 0.95f, "accuracies: sgd %g, momentum %g, "
                  "adam %g", acc[0], acc[1], acc[2]);
    bp_dataset_free(ds);
}
END_TEST

static Suite *optim_suite(void)
{
    Suite *s = suite_create("optim");
    TCase *tc = tcase_create("sgd");
    tcase_add_test(tc, test_sgd_fused_and_ranged_agree);
    suite_add_tcase(s, tc);
    TCase *hand = tcase_create("by hand");
    tcase_add_test(hand, test_momentum_by_hand);
    tcase_add_test(hand, test_nesterov_by_hand);
    tcase_add_test(hand, test_adam_by_hand);
    tcase_add_test(hand, test_adamw_by_hand);
    tcase_add_test(hand, test_rmsprop_by_hand);
    tcase_add_test(hand, test_regularisation_enters_g);
    suite_add_tcase(s, hand);
    TCase *trainer = tcase_create("trainer");
    tcase_set_timeout(trainer, 60);
    tcase_add_test(trainer, test_adamw_decays_weights_not_biases);
    tcase_add_test(trainer, test_clipping_above_and_below_the_norm);
    tcase_add_test(trainer, test_update_split_across_threads_is_identical);
    tcase_add_test(trainer, test_names_round_trip_and_unknown_refused);
    tcase_add_test(trainer, test_defaults);
    tcase_add_test(trainer, test_bad_hyper_parameters_refused);
    tcase_add_test(trainer, test_momentum_and_adam_learn_faster_than_sgd);
    suite_add_tcase(s, trainer);
    return s;
}

int main(void) { return bp_test_main(optim_suite()); }
