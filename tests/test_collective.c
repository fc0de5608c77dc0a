/*
 * test_collective.c - data-parallel training (bp_collective, bp_trainer_set_collective,
 * bp_trainer_evaluate) without MPI: P ranks are P threads of this process, each with its own
 * net (same configuration and seed, one thread), its own view of the same data set and its
 * own trainer, joined by an in-process transport: a barrier and a shared buffer, the sums
 * taken by rank 0 in rank order (rank 0 + rank 1 + ..., in float for floats and in double
 * for doubles), so every rank gets the same bits.
 *
 * What it shows: P = 2 and 3 ranks train what one trainer alone trains (SGD, Adam, dropout,
 * batches not divisible by P, batches smaller than P) to 1e-5, with every rank's parameters
 * and state bit-identical; the shared evaluation is bp_evaluate's; one rank's stop is every
 * rank's, one mini-batch later; rank 0's net, running statistics and optimiser state are
 * broadcast; bad collectives and failing transports are refused; batch norm's running
 * statistics are averaged over the ranks after an epoch.
 *
 * The transport also checks that every rank makes the same call (kind, count, root) each time,
 * and a rank that leaves while others wait breaks it, so a protocol error fails a test instead
 * of hanging it.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backprop.h"
#include "testutil.h"

enum { N = 300, DIM = 12, CLASSES = 5, HIDDEN = 20, VALID = 157, MAXP = 4, STEPS = 100 };

/* Relative agreement with the lone trainer: max |a - b| / max |b| over the parameters. */
#define TOLERANCE 1e-5

/* ---- an in-process transport ------------------------------------------------------------ */

typedef enum op_kind { OP_FLOATS = 1, OP_DOUBLES, OP_BROADCAST, OP_KINDS } op_kind;

typedef struct world {
    int size;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int arrived;
    unsigned long generation;
    int departed; /* ranks whose thread has ended */
    int broken;   /* a rank left while others were (or would be) waiting: every call fails */
    /* What each rank brought to the current call. */
    op_kind kind[MAXP];
    void *data[MAXP];
    size_t count[MAXP];
    int root[MAXP];
    /* The result, written by rank 0 between the first and second barrier of a call. */
    void *result;
    size_t result_bytes;
    int mismatch;               /* calls whose kind, count or root differed between ranks */
    long calls[MAXP][OP_KINDS]; /* calls made, per rank and kind (each rank writes its row) */
    long fail_at[OP_KINDS];     /* the call number of a kind that fails on every rank; 0 never */
    int skew_rank;              /* > 0: this rank's float sums come back one ulp off in their
                                   first element, a transport that does not sum alike */
} world;

enum { MAX_PENDING = 64 };

typedef struct endpoint {
    world *w;
    int rank;
    /* The overlapped sums (start_sum_floats) of the current step, summed in order by
     * finish_sums; the ranges of the first step, as offsets into the gradient arena. */
    float *pending[MAX_PENDING];
    size_t pending_count[MAX_PENDING];
    int n_pending;
    const float *grads;
    size_t first_lo[MAX_PENDING], first_hi[MAX_PENDING];
    int n_first, finished_steps;
} endpoint;

static void world_init(world *w, int size)
{
    memset(w, 0, sizeof *w);
    w->size = size;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
}

static void world_destroy(world *w)
{
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w->result);
}

/* 0 once every rank has arrived; -1 when the world is broken. */
static int world_barrier(world *w)
{
    pthread_mutex_lock(&w->mu);
    if (w->departed)
        w->broken = 1;
    if (w->broken) {
        pthread_cond_broadcast(&w->cv);
        pthread_mutex_unlock(&w->mu);
        return -1;
    }
    unsigned long gen = w->generation;
    if (++w->arrived == w->size) {
        w->arrived = 0;
        w->generation++;
        pthread_cond_broadcast(&w->cv);
    } else {
        while (gen == w->generation && !w->broken)
            pthread_cond_wait(&w->cv, &w->mu);
    }
    int ok = gen != w->generation;
    pthread_mutex_unlock(&w->mu);
    return ok ? 0 : -1;
}

/* A rank's thread ends: anyone waiting for it would wait for ever. */
static void world_leave(world *w)
{
    pthread_mutex_lock(&w->mu);
    w->departed++;
    if (w->arrived > 0)
        w->broken = 1;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static int collective(endpoint *e, op_kind kind, void *data, size_t count, int root)
{
    world *w = e->w;
    int r = e->rank, p = w->size;
    long call = ++w->calls[r][kind];
    w->kind[r] = kind;
    w->data[r] = data;
    w->count[r] = count;
    w->root[r] = root;
    if (world_barrier(w))
        return -1;
    int agree = 1;
    for (int q = 0; q < p; q++)
        agree &= w->kind[q] == kind && w->count[q] == count && w->root[q] == root;
    size_t elem = kind == OP_DOUBLES ? sizeof(double) : sizeof(float);
    if (r == 0) {
        if (!agree) {
            w->mismatch++;
        } else {
            if (w->result_bytes < count * elem) {
                free(w->result);
                w->result = malloc(count * elem);
                w->result_bytes = w->result ? count * elem : 0;
            }
            if (w->result && kind == OP_FLOATS) {
                float *out = w->result;
                for (size_t i = 0; i < count; i++) {
                    float acc = ((const float *)w->data[0])[i];
                    for (int q = 1; q < p; q++)
                        acc += ((const float *)w->data[q])[i];
                    out[i] = acc;
                }
            } else if (w->result && kind == OP_DOUBLES) {
                double *out = w->result;
                for (size_t i = 0; i < count; i++) {
                    double acc = ((const double *)w->data[0])[i];
                    for (int q = 1; q < p; q++)
                        acc += ((const double *)w->data[q])[i];
                    out[i] = acc;
                }
            } else if (w->result && count) {
                memcpy(w->result, w->data[root], count * elem);
            }
        }
    }
    if (world_barrier(w))
        return -1;
    int ok = agree && (w->result || count == 0) && call != w->fail_at[kind];
    if (ok && count)
        memcpy(data, w->result, count * elem);
    if (ok && kind == OP_FLOATS && count > 1 && w->skew_rank && r == w->skew_rank)
        ((float *)data)[0] = nextafterf(((float *)data)[0], INFINITY);
    if (world_barrier(w)) /* nobody starts the next call while another still copies */
        return -1;
    return ok ? 0 : 1;
}

static int sum_floats(void *user, float *data, size_t count)
{
    return collective(user, OP_FLOATS, data, count, 0);
}

static int sum_doubles(void *user, double *data, size_t count)
{
    return collective(user, OP_DOUBLES, data, count, 0);
}

static int broadcast_floats(void *user, float *data, size_t count, int root)
{
    return collective(user, OP_BROADCAST, data, count, root);
}

/* Overlap, as a transport without progress would do it: nothing moves until finish_sums,
 * which sums the started ranges in their order (so the ranks must start the same ranges in
 * the same order, which collective() checks call by call). */
static int start_sum_floats(void *user, float *data, size_t count)
{
    endpoint *e = user;
    if (e->n_pending == MAX_PENDING)
        return -1;
    e->pending[e->n_pending] = data;
    e->pending_count[e->n_pending++] = count;
    return 0;
}

static int finish_sums(void *user)
{
    endpoint *e = user;
    int rc = 0;
    for (int i = 0; i < e->n_pending && rc == 0; i++) {
        if (e->finished_steps == 0 && e->n_first < MAX_PENDING) {
            e->first_lo[e->n_first] = (size_t)(e->pending[i] - e->grads);
            e->first_hi[e->n_first++] = (size_t)(e->pending[i] - e->grads) + e->pending_count[i];
        }
        rc = collective(e, OP_FLOATS, e->pending[i], e->pending_count[i], 0);
    }
    e->n_pending = 0;
    e->finished_steps++;
    return rc;
}

/* ---- data and nets --------------------------------------------------------------------- */

static bp_dataset *make_set(size_t n, uint64_t seed)
{
    float *x = malloc(sizeof(float) * n * DIM);
    int *labels = malloc(sizeof(int) * n);
    bp_test_fill(x, n * DIM, 0, 1, &seed);
    for (size_t i = 0; i < n; i++)
        labels[i] = (int)(x[i * DIM] * 4.99f);
    bp_dataset *ds;
    ck_assert_int_eq(bp_dataset_from_floats(&ds, x, labels, n, DIM, CLASSES), BP_OK);
    free(x);
    free(labels);
    return ds;
}

/* One run's configuration, the same on every rank. */
typedef struct run_spec {
    const bp_dataset *data;
    float dropout;
    int batchnorm;
    bp_optimizer_kind optimizer;
    float eta;
    int batch;
    uint64_t net_seed;
    const char *backend; /* NULL: the default (blas) */
    float clip_norm, lambda;
    const char *checkpoint; /* when set, every rank's net and trainer are loaded from it */
    const char *save;       /* when set, rank 0 saves a checkpoint there after its steps */
    int overlap;            /* the collective has start_sum_floats and finish_sums */
    int threads;            /* each net's threads (0: 1) */
} run_spec;

static run_spec spec_of(const bp_dataset *data, bp_optimizer_kind opt, int batch)
{
    return (run_spec){.data = data, .optimizer = opt, .eta = opt == BP_OPT_SGD ? 0.5f : 0.01f,
                      .batch = batch, .net_seed = 4};
}

static bp_status make_net(const run_spec *s, uint64_t seed, bp_net **out)
{
    const int sizes[] = {DIM, HIDDEN, CLASSES};
    bp_net_config cfg;
    bp_net_config_init(&cfg);
    cfg.sizes = sizes;
    cfg.n_sizes = 3;
    cfg.max_batch = s->batch;
    cfg.threads = s->threads ? s->threads : 1;
    cfg.seed = seed;
    cfg.dropout = s->dropout;
    cfg.batchnorm = s->batchnorm;
    cfg.backend = s->backend;
    return bp_net_create(out, &cfg);
}

/* ---- ranks as threads ------------------------------------------------------------------ */

enum { MAX_CALLS = 8, MSG = 256 };

typedef struct rank_job rank_job;
struct rank_job {
    int rank, size; /* size 0: the trainer trains alone (no collective) */
    endpoint ep;
    const run_spec *spec;
    uint64_t net_seed;            /* the net's seed on this rank (spec->net_seed by default) */
    void (*before)(rank_job *);   /* after the trainer is made, before set_collective */
    void (*body)(rank_job *);     /* the rank's work once set up (NULL: train `steps`) */
    long steps;
    long stop_at;                 /* the batch callback's call that says stop; 0 never */
    const bp_dataset *valid;
    /* What the rank made (freed by free_jobs on the main thread). */
    bp_dataset *view;
    bp_net *net;
    bp_trainer *t;
    bp_status setup; /* the setup's status: set_collective's when it fails */
    char setup_msg[MSG];
    /* What the body saw: its calls' statuses, each with bp_last_error() when it failed. */
    int n_calls;
    bp_status status[MAX_CALLS];
    char msg[MAX_CALLS][MSG];
    int n_epochs;
    double epoch_cost[16]; /* the reports of the epochs the body finished */
    /* Whatever a body keeps for the main thread to check. */
    long cb_calls, cb_at_stop;
    int finished, epochs_done;
    size_t position;
    uint64_t steps_done;
    float acc[2];
    double cost[2];
    float *saved[3];
    size_t n_saved;
};

static void note(rank_job *j, bp_status st)
{
    if (j->n_calls < MAX_CALLS) {
        j->status[j->n_calls] = st;
        snprintf(j->msg[j->n_calls], MSG, "%s", st == BP_OK ? "" : bp_last_error());
    }
    j->n_calls++;
}

static float *copy_floats(const float *x, size_t n)
{
    float *c = malloc(sizeof(float) * (n ? n : 1));
    if (n)
        memcpy(c, x, sizeof(float) * n);
    return c;
}

/* Mini-batches by bp_trainer_batches until the trainer has taken `steps` optimiser steps. */
static bp_status train_steps(rank_job *j, long steps)
{
    bp_trainer_state s;
    bp_status st = bp_trainer_get_state(j->t, &s);
    uint64_t goal = s.steps + (uint64_t)steps;
    while (st == BP_OK && s.steps < goal) {
        int finished = 0;
        bp_epoch_report r;
        st = bp_trainer_batches(j->t, (long)(goal - s.steps), &finished, &r);
        if (st == BP_OK && finished && j->n_epochs < 16)
            j->epoch_cost[j->n_epochs++] = r.train_cost;
        if (st == BP_OK)
            st = bp_trainer_get_state(j->t, &s);
    }
    return st;
}

static bp_status setup(rank_job *j)
{
    const run_spec *s = j->spec;
    bp_status st = bp_dataset_slice(s->data, 0, bp_dataset_count(s->data), &j->view);
    if (st != BP_OK)
        return st;
    if (s->checkpoint) {
        bp_net_config nc;
        bp_net_config_init(&nc);
        nc.threads = 1;
        nc.backend = s->backend;
        st = bp_checkpoint_load(s->checkpoint, j->view, &nc, &j->net, &j->t, NULL);
    } else if ((st = make_net(s, j->net_seed ? j->net_seed : s->net_seed, &j->net)) == BP_OK) {
        bp_train_config tc;
        bp_train_config_init(&tc);
        tc.batch = s->batch;
        tc.eta = s->eta;
        tc.seed = 77;
        tc.optimizer = s->optimizer;
        tc.clip_norm = s->clip_norm;
        tc.lambda = s->lambda;
        st = bp_trainer_create(&j->t, j->net, j->view, &tc);
    }
    if (st != BP_OK)
        return st;
    if (j->before)
        j->before(j);
    if (j->size > 0) {
        bp_collective c = {.rank = j->rank, .size = j->size, .user = &j->ep,
                           .sum_floats = sum_floats, .sum_doubles = sum_doubles,
                           .broadcast_floats = broadcast_floats};
        if (s->overlap) {
            c.start_sum_floats = start_sum_floats;
            c.finish_sums = finish_sums;
            j->ep.grads = bp_net_grads(j->net, NULL);
        }
        st = bp_trainer_set_collective(j->t, &c);
    }
    return st;
}

static void *rank_main(void *arg)
{
    rank_job *j = arg;
    j->setup = setup(j);
    if (j->setup != BP_OK)
        snprintf(j->setup_msg, MSG, "%s", bp_last_error());
    else if (j->body)
        j->body(j);
    else
        note(j, train_steps(j, j->steps));
    if (j->setup == BP_OK && j->spec->save && j->rank == 0)
        note(j, bp_checkpoint_save(j->t, j->spec->save, NULL));
    if (j->ep.w)
        world_leave(j->ep.w);
    return NULL;
}

/* p jobs of one run: `collective` 0 trains each alone (p must be 1 then). */
static void init_jobs(rank_job *jobs, int p, int collective, const run_spec *spec)
{
    memset(jobs, 0, sizeof *jobs * (size_t)p);
    for (int r = 0; r < p; r++) {
        jobs[r].rank = r;
        jobs[r].size = collective ? p : 0;
        jobs[r].spec = spec;
        jobs[r].steps = STEPS;
    }
}

/* Run the jobs' threads to their end. A world of p ranks joins them when w is not NULL; the
 * transport must end as it began: every call the same on every rank, nobody left waiting. */
static void launch(world *w, rank_job *jobs, int p)
{
    pthread_t th[MAXP];
    for (int r = 0; r < p; r++) {
        jobs[r].ep = (endpoint){.w = w, .rank = r};
        ck_assert_int_eq(pthread_create(&th[r], NULL, rank_main, &jobs[r]), 0);
    }
    for (int r = 0; r < p; r++)
        pthread_join(th[r], NULL);
    if (w) {
        ck_assert_msg(w->mismatch == 0, "%d collective calls differed between the ranks",
                      w->mismatch);
        ck_assert_msg(!w->broken, "a rank left while others waited in a collective call");
        for (int k = 1; k < OP_KINDS; k++)
            for (int r = 1; r < p; r++)
                ck_assert_int_eq(w->calls[r][k], w->calls[0][k]);
    }
}

/* A run of p ranks (p = 0: one trainer alone, no collective), each doing `body` (NULL: train
 * STEPS), the jobs prepared by the caller's `prepare` (may be NULL). */
static void run(rank_job *jobs, int p, const run_spec *spec, void (*body)(rank_job *),
                void (*prepare)(rank_job *, void *), void *arg, long fail_at[OP_KINDS])
{
    int ranks = p ? p : 1;
    init_jobs(jobs, ranks, p != 0, spec);
    for (int r = 0; r < ranks; r++)
        jobs[r].body = body;
    if (prepare)
        for (int r = 0; r < ranks; r++)
            prepare(&jobs[r], arg);
    if (!p) {
        launch(NULL, jobs, 1);
        return;
    }
    world w;
    world_init(&w, p);
    if (fail_at)
        memcpy(w.fail_at, fail_at, sizeof w.fail_at);
    launch(&w, jobs, p);
    world_destroy(&w);
}

static void free_jobs(rank_job *jobs, int p)
{
    for (int r = 0; r < (p ? p : 1); r++) {
        bp_trainer_free(jobs[r].t);
        bp_net_free(jobs[r].net);
        bp_dataset_free(jobs[r].view);
        for (int k = 0; k < 3; k++)
            free(jobs[r].saved[k]);
    }
}

static void assert_ok(const rank_job *jobs, int p)
{
    for (int r = 0; r < (p ? p : 1); r++) {
        ck_assert_msg(jobs[r].setup == BP_OK, "rank %d of %d: setup: %s", r, p,
                      jobs[r].setup_msg);
        for (int k = 0; k < jobs[r].n_calls && k < MAX_CALLS; k++)
            ck_assert_msg(jobs[r].status[k] == BP_OK, "rank %d of %d: call %d: %s (%s)", r, p,
                          k, bp_status_str(jobs[r].status[k]), jobs[r].msg[k]);
    }
}

/* ---- comparisons ----------------------------------------------------------------------- */

static double max_rel(const float *a, const float *ref, size_t n)
{
    double diff = 0.0, mag = 0.0;
    for (size_t i = 0; i < n; i++) {
        diff = fmax(diff, fabs((double)a[i] - (double)ref[i]));
        mag = fmax(mag, fabs((double)ref[i]));
    }
    return mag > 0.0 ? diff / mag : diff;
}

static double rel(double a, double ref)
{
    return ref != 0.0 ? fabs(a - ref) / fabs(ref) : fabs(a);
}

/* Two trainers in the same place of the same run, bit for bit (the epoch cost too when
 * exact_cost, as between the ranks of one run). */
static void assert_same_trainer(bp_trainer *a, bp_trainer *b, int exact_cost, const char *what)
{
    bp_trainer_state sa, sb;
    ck_assert_int_eq(bp_trainer_get_state(a, &sa), BP_OK);
    ck_assert_int_eq(bp_trainer_get_state(b, &sb), BP_OK);
    ck_assert_msg(sa.epoch == sb.epoch && sa.position == sb.position && sa.steps == sb.steps,
                  "%s: epoch %d position %zu steps %llu vs epoch %d position %zu steps %llu",
                  what, sa.epoch, sa.position, (unsigned long long)sa.steps, sb.epoch,
                  sb.position, (unsigned long long)sb.steps);
    ck_assert_uint_eq(sa.n, sb.n);
    ck_assert_msg(memcmp(sa.rng, sb.rng, sizeof sa.rng) == 0, "%s: shuffle generators differ",
                  what);
    ck_assert_msg(memcmp(sa.order, sb.order, sizeof(size_t) * sa.n) == 0,
                  "%s: sample orders differ", what);
    ck_assert_msg(sa.eta == sb.eta, "%s: eta %g vs %g", what, sa.eta, sb.eta);
    ck_assert_uint_eq(sa.optimizer_state_count, sb.optimizer_state_count);
    if (exact_cost) {
        ck_assert_msg(sa.epoch_cost == sb.epoch_cost, "%s: epoch cost %.17g vs %.17g", what,
                      sa.epoch_cost, sb.epoch_cost);
        if (sa.optimizer_state_count)
            ck_assert_msg(memcmp(sa.optimizer_state, sb.optimizer_state,
                                 sizeof(float) * sa.optimizer_state_count) == 0,
                          "%s: optimiser states differ", what);
    }
}

/* Every rank of the run holds the same parameters, running statistics and trainer state, to
 * the bit. */
static void assert_ranks_identical(rank_job *jobs, int p, const char *what)
{
    size_t n, ns;
    const float *p0 = bp_net_params(jobs[0].net, &n);
    const float *s0 = bp_net_state(jobs[0].net, &ns);
    for (int r = 1; r < p; r++) {
        size_t nr, nsr;
        const float *pr = bp_net_params(jobs[r].net, &nr);
        const float *sr = bp_net_state(jobs[r].net, &nsr);
        ck_assert_uint_eq(nr, n);
        ck_assert_uint_eq(nsr, ns);
        ck_assert_msg(memcmp(pr, p0, sizeof(float) * n) == 0,
                      "%s, P = %d: rank %d's parameters differ from rank 0's (max rel %.3g)",
                      what, p, r, max_rel(pr, p0, n));
        if (ns)
            ck_assert_msg(memcmp(sr, s0, sizeof(float) * ns) == 0,
                          "%s, P = %d: rank %d's running statistics differ from rank 0's",
                          what, p, r);
        assert_same_trainer(jobs[r].t, jobs[0].t, 1, what);
        ck_assert_int_eq(jobs[r].n_epochs, jobs[0].n_epochs);
        for (int e = 0; e < jobs[0].n_epochs; e++)
            ck_assert_msg(jobs[r].epoch_cost[e] == jobs[0].epoch_cost[e],
                          "%s, P = %d: rank %d's epoch %d cost %.17g, rank 0's %.17g", what, p,
                          r, e + 1, jobs[r].epoch_cost[e], jobs[0].epoch_cost[e]);
    }
}

/* Rank 0 of a run of p ranks against the lone trainer `ref`: the same place in the same run
 * (order, generator, steps exact), the parameters and costs within TOLERANCE. Returns the
 * parameters' max relative difference. */
static double assert_matches_alone(rank_job *jobs, int p, rank_job *ref, const char *what)
{
    size_t n;
    const float *a = bp_net_params(jobs[0].net, &n), *b = bp_net_params(ref->net, NULL);
    double d = max_rel(a, b, n);
    ck_assert_msg(d <= TOLERANCE, "%s, P = %d: parameters %.3g relative from the lone trainer's",
                  what, p, d);
    assert_same_trainer(jobs[0].t, ref->t, 0, what);
    bp_trainer_state sa, sb;
    bp_trainer_get_state(jobs[0].t, &sa);
    bp_trainer_get_state(ref->t, &sb);
    double dc = rel(sa.epoch_cost, sb.epoch_cost);
    ck_assert_int_eq(jobs[0].n_epochs, ref->n_epochs);
    for (int e = 0; e < ref->n_epochs; e++)
        dc = fmax(dc, rel(jobs[0].epoch_cost[e], ref->epoch_cost[e]));
    ck_assert_msg(dc <= TOLERANCE, "%s, P = %d: costs %.3g relative from the lone trainer's",
                  what, p, dc);
    if (sa.optimizer_state_count) {
        double ds = max_rel(sa.optimizer_state, sb.optimizer_state, sa.optimizer_state_count);
        fprintf(stderr, "# %s, P = %d: optimiser state max rel diff %.3g\n", what, p, ds);
    }
    fprintf(stderr, "# %s, P = %d: parameters max rel diff %.3g, costs max rel diff %.3g "
            "(%d epochs + %zu samples)\n", what, p, d, dc, ref->n_epochs, sb.position);
    return d;
}

/* ---- 1, 2: the ranks train what one trainer trains ------------------------------------- */

/* STEPS optimiser steps alone, then with a collective of 1, 2 and 3 ranks: every run's ranks
 * identical, each run within TOLERANCE of the lone one. */
static void check_equivalence(const run_spec *spec, const char *what)
{
    rank_job ref[1], jobs[MAXP];
    run(ref, 0, spec, NULL, NULL, NULL, NULL);
    assert_ok(ref, 0);
    bp_trainer_state s;
    bp_trainer_get_state(ref->t, &s);
    ck_assert_uint_eq(s.steps, STEPS);
    /* The run learns: the parameters moved from where they began. */
    bp_net *init;
    ck_assert_int_eq(make_net(spec, spec->net_seed, &init), BP_OK);
    size_t n;
    const float *trained = bp_net_params(ref->net, &n);
    ck_assert(max_rel(trained, bp_net_params(init, NULL), n) > 1e-3);
    bp_net_free(init);
    for (int p = 1; p <= 3; p++) {
        run(jobs, p, spec, NULL, NULL, NULL, NULL);
        assert_ok(jobs, p);
        assert_ranks_identical(jobs, p, what);
        assert_matches_alone(jobs, p, ref, what);
        free_jobs(jobs, p);
    }
    free_jobs(ref, 0);
}

START_TEST(test_sgd_matches_one_trainer)
{
    bp_dataset *ds = make_set(N, 19);
    run_spec spec = spec_of(ds, BP_OPT_SGD, 12); /* 6 + 6, 4 + 4 + 4; 25 batches an epoch */
    check_equivalence(&spec, "sgd, batch 12");
    spec.batch = 7; /* 4 + 3, 3 + 2 + 2 (2 + 2 + 2 for the epoch's last batch of 6) */
    check_equivalence(&spec, "sgd, batch 7");
    /* The global gradient norm clips the summed gradient; L2 decays as alone. */
    spec = spec_of(ds, BP_OPT_MOMENTUM, 7);
    spec.eta = 0.1f;
    spec.clip_norm = 0.5f;
    spec.lambda = 1.0f;
    check_equivalence(&spec, "momentum, clip 0.5, lambda 1, batch 7");
    bp_dataset_free(ds);
}
END_TEST

START_TEST(test_adam_matches_one_trainer)
{
    bp_dataset *ds = make_set(N, 19);
    run_spec spec = spec_of(ds, BP_OPT_ADAM, 12);
    check_equivalence(&spec, "adam, batch 12");
    spec.batch = 7;
    check_equivalence(&spec, "adam, batch 7");
    bp_dataset_free(ds);
}
END_TEST

/* The masks are keyed by the column's place in the whole mini-batch: a rank's share draws the
 * masks the lone trainer draws for those columns, or the runs would part at the first step. */
START_TEST(test_dropout_matches_one_trainer)
{
    bp_dataset *ds = make_set(N, 19);
    run_spec spec = spec_of(ds, BP_OPT_SGD, 12);
    spec.dropout = 0.3f;
    check_equivalence(&spec, "dropout 0.3, sgd, batch 12");
    spec.batch = 7;
    spec.optimizer = BP_OPT_ADAM;
    spec.eta = 0.01f;
    check_equivalence(&spec, "dropout 0.3, adam, batch 7");
    bp_dataset_free(ds);
}
END_TEST

/* Overlapped sums start per layer, top down, and add the same floats as the one call: the
 * ranks' parameters are the one call's to the bit, whether a rank's step ran on one thread
 * (each layer's sum started as its BP4 ends) or on a team of two (after BP4), and with a
 * batch of 63 on 2 ranks, 32 columns take the team and 31 do not, so the two ranks take
 * different paths to the same sequence of sums. */
START_TEST(test_overlapped_sums_are_the_sums)
{
    bp_dataset *ds = make_set(N, 19);
    static const struct {
        bp_optimizer_kind opt;
        int batch, threads, p;
        float dropout;
    } cases[] = {
        {BP_OPT_SGD, 7, 1, 3, 0.0f},
        {BP_OPT_ADAM, 12, 1, 2, 0.3f},
        {BP_OPT_SGD, 63, 2, 2, 0.0f},
        {BP_OPT_ADAM, 64, 2, 3, 0.0f},
    };
    rank_job one[MAXP], over[MAXP];
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        run_spec spec = spec_of(ds, cases[k].opt, cases[k].batch);
        spec.threads = cases[k].threads;
        spec.dropout = cases[k].dropout;
        int p = cases[k].p;
        run(one, p, &spec, NULL, NULL, NULL, NULL);
        assert_ok(one, p);
        spec.overlap = 1;
        run(over, p, &spec, NULL, NULL, NULL, NULL);
        assert_ok(over, p);
        for (int r = 0; r < p; r++) {
            size_t n, m;
            const float *a = bp_net_params(one[r].net, &n), *b = bp_net_params(over[r].net, &m);
            ck_assert_uint_eq(n, m);
            ck_assert_msg(memcmp(a, b, n * sizeof *a) == 0, "case %zu, rank %d: overlapped "
                          "sums trained other parameters", k, r);
        }
        /* The first step's ranges: the layers' blocks from the top one down, covering the
         * arena once. */
        const endpoint *e = &over[0].ep;
        size_t n_params;
        bp_net_params(over[0].net, &n_params);
        ck_assert_int_eq(e->n_first, 2); /* two dense layers */
        ck_assert_uint_eq(e->first_hi[0], n_params);
        for (int i = 1; i < e->n_first; i++)
            ck_assert_uint_eq(e->first_hi[i], e->first_lo[i - 1]);
        ck_assert_uint_eq(e->first_lo[e->n_first - 1], 0);
        fprintf(stderr, "# overlap, case %zu (batch %d on %d ranks, %d thread%s): %d sums a "
                "step, parameters identical to one call's\n", k, cases[k].batch, p,
                cases[k].threads, cases[k].threads == 1 ? "" : "s", e->n_first);
        free_jobs(one, p);
        free_jobs(over, p);
    }
    bp_dataset_free(ds);
}
END_TEST

/* A transport whose sums differ by one ulp on one rank: the ranks' parameters part, the
 * epoch's check finds it and makes them rank 0's again, and counts it on every rank. With a
 * transport that sums alike, nothing is counted. */
START_TEST(test_drifting_ranks_are_resynchronised)
{
    bp_dataset *ds = make_set(N, 19);
    run_spec spec = spec_of(ds, BP_OPT_ADAM, 12);
    for (int skew = 0; skew <= 1; skew++) {
        rank_job jobs[MAXP];
        init_jobs(jobs, 2, 1, &spec);
        for (int r = 0; r < 2; r++)
            jobs[r].steps = 2 * N / 12; /* two epochs */
        world w;
        world_init(&w, 2);
        w.skew_rank = skew;
        launch(&w, jobs, 2);
        world_destroy(&w);
        assert_ok(jobs, 2);
        size_t n;
        const float *a = bp_net_params(jobs[0].net, &n), *b = bp_net_params(jobs[1].net, NULL);
        ck_assert_msg(memcmp(a, b, n * sizeof *a) == 0, "skew %d: the ranks' parameters differ "
                      "after the epochs' checks", skew);
        for (int r = 0; r < 2; r++)
            ck_assert_int_eq(bp_trainer_resyncs(jobs[r].t), skew ? 2 : 0);
        free_jobs(jobs, 2);
    }
    ck_assert_int_eq(bp_trainer_resyncs(NULL), 0);
    bp_dataset_free(ds);
}
END_TEST

/* A mini-batch smaller than the ranks: with batch 2 of 3 ranks, rank 0's share is empty and
 * it adds zeros. With batch 1 of 2, one rank works each step. */
START_TEST(test_fewer_samples_than_ranks)
{
    bp_dataset *ds = make_set(N, 19);
    rank_job ref[1], jobs[MAXP];
    const struct {
        int batch, p;
        bp_optimizer_kind opt;
        float dropout;
    } cases[] = {{2, 3, BP_OPT_SGD, 0.0f}, {2, 3, BP_OPT_ADAM, 0.0f}, {2, 3, BP_OPT_SGD, 0.3f},
                 {1, 2, BP_OPT_SGD, 0.3f}, {3, 4, BP_OPT_ADAM, 0.0f}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        run_spec spec = spec_of(ds, cases[c].opt, cases[c].batch);
        spec.dropout = cases[c].dropout;
        char what[96];
        snprintf(what, sizeof what, "%s%s, batch %d of %d ranks", bp_optimizer_name(spec.optimizer),
                 spec.dropout > 0.0f ? " with dropout" : "", spec.batch, cases[c].p);
        run(ref, 0, &spec, NULL, NULL, NULL, NULL);
        assert_ok(ref, 0);
        run(jobs, cases[c].p, &spec, NULL, NULL, NULL, NULL);
        assert_ok(jobs, cases[c].p);
        assert_ranks_identical(jobs, cases[c].p, what);
        assert_matches_alone(jobs, cases[c].p, ref, what);
        free_jobs(jobs, cases[c].p);
        free_jobs(ref, 0);
    }
    bp_dataset_free(ds);
}
END_TEST

/* ---- 3: evaluation --------------------------------------------------------------------- */

static const bp_dataset *eval_tiny; /* 2 samples: fewer than 3 ranks */

/* Evaluate before training and after an epoch: [0] on the validation set, [1] on eval_tiny. */
static void body_evaluate(rank_job *j)
{
    note(j, bp_trainer_evaluate(j->t, j->valid, &j->acc[0], &j->cost[0]));
    note(j, train_steps(j, 25));
    note(j, bp_trainer_evaluate(j->t, j->valid, &j->acc[1], &j->cost[1]));
    float acc;
    double cost;
    note(j, bp_trainer_evaluate(j->t, eval_tiny, &acc, &cost));
    j->saved[0] = malloc(sizeof(double) * 2);
    memcpy(j->saved[0], &(double[]){acc, cost}, sizeof(double) * 2);
}

static void prepare_evaluate(rank_job *j, void *arg)
{
    j->valid = arg;
}

/* The counts are integers, so the accuracy is exact. The costs are summed in another order, and
 * with the blas backend a column's outputs may differ in their last bits with its place in
 * the GEMM (the shares' chunks are not the whole set's: 26 of 157 x 5 outputs differ between
 * one forward pass of 157 columns and passes of 78 and 79), so the costs agree to 1e-9 with
 * the naive backend, whose outputs do not depend on the chunk, and to 1e-6 with blas. */
static void check_evaluate(const char *backend, double tolerance)
{
    bp_dataset *ds = make_set(N, 19), *valid = make_set(VALID, 23), *tiny = make_set(2, 29);
    eval_tiny = tiny;
    run_spec spec = spec_of(ds, BP_OPT_SGD, 12);
    spec.backend = backend;
    bp_net *fresh;
    ck_assert_int_eq(make_net(&spec, spec.net_seed, &fresh), BP_OK);
    float acc0;
    double cost0;
    ck_assert_int_eq(bp_evaluate(fresh, valid, &acc0, &cost0), BP_OK);
    rank_job jobs[MAXP];
    for (int p = 1; p <= 3; p++) {
        run(jobs, p, &spec, body_evaluate, prepare_evaluate, valid, NULL);
        assert_ok(jobs, p);
        assert_ranks_identical(jobs, p, "evaluation");
        /* The trained net, as bp_evaluate sees it on one thread. */
        float acc1, acc_tiny;
        double cost1, cost_tiny;
        ck_assert_int_eq(bp_evaluate(jobs[0].net, valid, &acc1, &cost1), BP_OK);
        ck_assert_int_eq(bp_evaluate(jobs[0].net, tiny, &acc_tiny, &cost_tiny), BP_OK);
        ck_assert(cost1 != cost0); /* training changed what is evaluated */
        double worst = 0.0;
        for (int r = 0; r < p; r++) {
            const double *t = (const double *)jobs[r].saved[0];
            ck_assert_msg(jobs[r].acc[0] == acc0 && jobs[r].acc[1] == acc1,
                          "%s, P = %d, rank %d: accuracy %.9g and %.9g, bp_evaluate's %.9g and "
                          "%.9g", backend, p, r, jobs[r].acc[0], jobs[r].acc[1], acc0, acc1);
            ck_assert_msg((float)t[0] == acc_tiny, "%s, P = %d, rank %d: 2 samples: accuracy "
                          "%g, bp_evaluate's %g", backend, p, r, t[0], acc_tiny);
            worst = fmax(worst, rel(jobs[r].cost[0], cost0));
            worst = fmax(worst, rel(jobs[r].cost[1], cost1));
            worst = fmax(worst, rel(t[1], cost_tiny));
            /* Every rank has the same sums. */
            ck_assert(jobs[r].cost[0] == jobs[0].cost[0] && jobs[r].cost[1] == jobs[0].cost[1]);
            ck_assert(t[1] == ((const double *)jobs[0].saved[0])[1]);
        }
        ck_assert_msg(worst <= tolerance, "%s, P = %d: evaluation cost %.3g relative from "
                      "bp_evaluate's", backend, p, worst);
        fprintf(stderr, "# evaluation (%s), P = %d: accuracy %.6f then %.6f (exact), cost max "
                "rel diff %.3g\n", backend, p, acc0, acc1, worst);
        free_jobs(jobs, p);
    }
    /* Without a collective it is bp_evaluate itself. */
    run(jobs, 0, &spec, body_evaluate, prepare_evaluate, valid, NULL);
    assert_ok(jobs, 0);
    float acc1;
    double cost1;
    ck_assert_int_eq(bp_evaluate(jobs[0].net, valid, &acc1, &cost1), BP_OK);
    ck_assert(jobs[0].acc[0] == acc0 && jobs[0].cost[0] == cost0);
    ck_assert(jobs[0].acc[1] == acc1 && jobs[0].cost[1] == cost1);
    ck_assert_int_eq(bp_trainer_evaluate(jobs[0].t, NULL, &acc1, NULL), BP_EINVAL);
    ck_assert_int_eq(bp_trainer_evaluate(NULL, valid, &acc1, NULL), BP_EINVAL);
    free_jobs(jobs, 0);
    bp_net_free(fresh);
    bp_dataset_free(tiny);
    bp_dataset_free(valid);
    bp_dataset_free(ds);
}

START_TEST(test_evaluate_is_bp_evaluate)
{
    check_evaluate("naive", 1e-9);
    check_evaluate("blas", 1e-6);
}
END_TEST

/* ---- 4: the stop vote ------------------------------------------------------------------ */

static int on_batch(const bp_batch_report *r, void *user)
{
    (void)r;
    rank_job *j = user;
    j->cb_calls++;
    return j->stop_at && j->cb_calls == j->stop_at;
}

static void keep_place(rank_job *j)
{
    bp_trainer_state s;
    bp_trainer_get_state(j->t, &s);
    j->position = s.position;
    j->steps_done = s.steps;
    j->epochs_done = s.epoch;
    j->cb_at_stop = j->cb_calls;
}

/* Up to 10 mini-batches; then, the stop having passed, the rest of the epoch. */
static void body_stop_batches(rank_job *j)
{
    bp_trainer_set_batch_callback(j->t, on_batch, j);
    note(j, bp_trainer_batches(j->t, 10, &j->finished, NULL));
    keep_place(j);
    bp_epoch_report r;
    bp_status st = bp_trainer_epoch(j->t, &r);
    note(j, st);
    if (st == BP_OK)
        j->epoch_cost[j->n_epochs++] = r.train_cost;
}

/* The epoch; then, the stop having passed, the epoch again from where it stopped. */
static void body_stop_epoch(rank_job *j)
{
    bp_trainer_set_batch_callback(j->t, on_batch, j);
    bp_epoch_report r;
    note(j, bp_trainer_epoch(j->t, &r));
    keep_place(j);
    bp_status st = bp_trainer_epoch(j->t, &r);
    note(j, st);
    if (st == BP_OK)
        j->epoch_cost[j->n_epochs++] = r.train_cost;
}

/* bp_trainer_run over 3 epochs with validation (the shared evaluation after each epoch). */
static void body_stop_run(rank_job *j)
{
    bp_trainer_set_batch_callback(j->t, on_batch, j);
    bp_train_result res;
    note(j, bp_trainer_run(j->t, j->valid, 3, NULL, NULL, &res));
    keep_place(j);
    j->acc[0] = (float)res.validation_accuracy;
}

typedef struct stop_plan {
    void (*body)(rank_job *);
    long stop_at[MAXP]; /* per rank */
    const bp_dataset *valid;
} stop_plan;

static void prepare_stop(rank_job *j, void *arg)
{
    const stop_plan *plan = arg;
    j->stop_at = plan->stop_at[j->rank];
    j->valid = plan->valid;
}

static void expect_stopped(rank_job *jobs, int p, size_t position, const char *what)
{
    for (int r = 0; r < p; r++) {
        ck_assert_msg(jobs[r].setup == BP_OK, "%s", jobs[r].setup_msg);
        ck_assert_msg(jobs[r].status[0] == BP_ESTOPPED, "%s, P = %d, rank %d: %s (%s)", what,
                      p, r, bp_status_str(jobs[r].status[0]), jobs[r].msg[0]);
        ck_assert_ptr_nonnull(strstr(jobs[r].msg[0], "stopped by the batch callback"));
        ck_assert_msg(jobs[r].position == position, "%s, P = %d, rank %d: stopped at sample "
                      "%zu, not %zu", what, p, r, jobs[r].position, position);
        ck_assert_int_eq(jobs[r].position, jobs[0].position);
        ck_assert_uint_eq(jobs[r].steps_done, jobs[0].steps_done);
        ck_assert_int_eq(jobs[r].finished, 0);
    }
}

START_TEST(test_one_rank_stops_all)
{
    bp_dataset *ds = make_set(N, 19);
    run_spec spec = spec_of(ds, BP_OPT_ADAM, 12);
    rank_job ref[1], jobs[MAXP];
    /* The epoch straight through, alone: where the paused runs must end. */
    init_jobs(ref, 1, 0, &spec);
    ref->steps = 25;
    launch(NULL, ref, 1);
    assert_ok(ref, 0);
    for (int p = 2; p <= 3; p++) {
        for (int how = 0; how < 2; how++) {
            stop_plan plan = {.body = how ? body_stop_epoch : body_stop_batches};
            plan.stop_at[1] = 3; /* rank 1 alone, after its 3rd mini-batch */
            const char *what = how ? "stop in bp_trainer_epoch" : "stop in bp_trainer_batches";
            run(jobs, p, &spec, plan.body, prepare_stop, &plan, NULL);
            /* One mini-batch after: the 4th, on every rank. */
            expect_stopped(jobs, p, 4 * 12, what);
            ck_assert_uint_eq(jobs[0].steps_done, 4);
            /* The callback ran after every one of the 4, the one the stop came with too. */
            for (int r = 0; r < p; r++)
                ck_assert_int_eq(jobs[r].cb_at_stop, 4);
            fprintf(stderr, "# %s, P = %d: stopped at sample %zu (step %llu); batch callback "
                    "calls before the stop: rank 0 %ld, rank 1 %ld\n", what, p,
                    jobs[0].position, (unsigned long long)jobs[0].steps_done,
                    jobs[0].cb_at_stop, jobs[1].cb_at_stop);
            for (int r = 0; r < p; r++)
                ck_assert_msg(jobs[r].status[1] == BP_OK, "%s: going on, rank %d: %s", what, r,
                              jobs[r].msg[1]);
            /* Going on from the stop ends the epoch the lone trainer ends. */
            assert_ranks_identical(jobs, p, what);
            assert_matches_alone(jobs, p, ref, what);
            free_jobs(jobs, p);
        }
        /* Two ranks asking at different mini-batches: the first one's stop counts. */
        stop_plan plan = {.body = body_stop_batches};
        plan.stop_at[0] = 5;
        plan.stop_at[p - 1] = 2;
        run(jobs, p, &spec, plan.body, prepare_stop, &plan, NULL);
        expect_stopped(jobs, p, 3 * 12, "two votes");
        assert_ranks_identical(jobs, p, "two votes");
        free_jobs(jobs, p);
    }
    free_jobs(ref, 0);
    bp_dataset_free(ds);
}
END_TEST

/* A stop asked at an epoch's last mini-batch, or at the one before (its vote then travels with
 * the last): the epoch ends on every rank, and bp_trainer_run returns BP_ESTOPPED after it. */
START_TEST(test_stop_at_the_end_of_an_epoch)
{
    bp_dataset *ds = make_set(N, 19), *valid = make_set(VALID, 23);
    run_spec spec = spec_of(ds, BP_OPT_SGD, 12);
    rank_job jobs[MAXP];
    for (int p = 2; p <= 3; p++) {
        for (long at = 24; at <= 25; at++) {
            stop_plan plan = {.body = body_stop_run, .valid = valid};
            plan.stop_at[1] = at;
            run(jobs, p, &spec, plan.body, prepare_stop, &plan, NULL);
            for (int r = 0; r < p; r++) {
                ck_assert_msg(jobs[r].status[0] == BP_ESTOPPED, "P = %d, stop at %ld, rank %d: "
                              "%s (%s)", p, at, r, bp_status_str(jobs[r].status[0]),
                              jobs[r].msg[0]);
                ck_assert_int_eq(jobs[r].epochs_done, 1);
                ck_assert_uint_eq(jobs[r].position, 0);
                ck_assert_uint_eq(jobs[r].steps_done, 25);
                ck_assert(jobs[r].acc[0] == jobs[0].acc[0] && jobs[r].acc[0] >= 0.0f);
            }
            assert_ranks_identical(jobs, p, "stop at the epoch's end");
            free_jobs(jobs, p);
        }
    }
    bp_dataset_free(valid);
    bp_dataset_free(ds);
}
END_TEST

/* ---- 5: rank 0's net is everyone's ----------------------------------------------------- */

/* Rank 1 starts elsewhere: other parameters (its net's seed), other running statistics and
 * another optimiser state. A copy of each goes to saved[] for the main thread. */
static void make_rank1_differ(rank_job *j)
{
    size_t n, ns;
    float *state = bp_net_state(j->net, &ns);
    if (j->rank == 1) {
        for (size_t i = 0; i < ns; i++)
            state[i] = 0.5f + 0.001f * (float)i;
        bp_trainer_state s;
        bp_trainer_get_state(j->t, &s);
        float *opt = malloc(sizeof(float) * s.optimizer_state_count);
        for (size_t i = 0; i < s.optimizer_state_count; i++)
            opt[i] = 0.25f;
        s.optimizer_state = opt;
        note(j, bp_trainer_set_state(j->t, &s));
        free(opt);
    }
    const float *params = bp_net_params(j->net, &n);
    j->saved[0] = copy_floats(params, n);
    j->saved[1] = copy_floats(state, ns);
    j->n_saved = n;
}

static void prepare_broadcast(rank_job *j, void *arg)
{
    j->before = make_rank1_differ;
    if (j->rank == 1)
        j->net_seed = 99;
    j->steps = 5;
    (void)arg;
}

START_TEST(test_set_collective_broadcasts_rank_0)
{
    bp_dataset *ds = make_set(N, 19);
    run_spec spec = spec_of(ds, BP_OPT_ADAM, 12), bn = spec;
    bn.batchnorm = 1;
    rank_job jobs[MAXP], ref[1];
    /* Rank 0's start, trained alone for the 5 steps the ranks take. */
    init_jobs(ref, 1, 0, &spec);
    ref->steps = 5;
    launch(NULL, ref, 1);
    assert_ok(ref, 0);
    for (int p = 2; p <= 3; p++) {
        /* The broadcast itself, nothing trained after it, for a net with running statistics
         * and Adam's state. */
        init_jobs(jobs, p, 1, &bn);
        for (int r = 0; r < p; r++) {
            prepare_broadcast(&jobs[r], NULL);
            jobs[r].body = keep_place;
        }
        world w;
        world_init(&w, p);
        launch(&w, jobs, p);
        long calls[OP_KINDS];
        memcpy(calls, w.calls[0], sizeof calls);
        world_destroy(&w);
        assert_ok(jobs, p);
        size_t n = jobs[0].n_saved, ns;
        bp_net_state(jobs[0].net, &ns);
        ck_assert_uint_gt(ns, 0);
        /* Rank 1 did start elsewhere. */
        ck_assert_msg(memcmp(jobs[1].saved[0], jobs[0].saved[0], sizeof(float) * n) != 0,
                      "rank 1 was meant to start from other parameters");
        ck_assert(memcmp(jobs[1].saved[1], jobs[0].saved[1], sizeof(float) * ns) != 0);
        for (int r = 0; r < p; r++) {
            ck_assert_msg(memcmp(bp_net_params(jobs[r].net, NULL), jobs[0].saved[0],
                                 sizeof(float) * n) == 0,
                          "P = %d: rank %d's parameters are not rank 0's", p, r);
            ck_assert_msg(memcmp(bp_net_state(jobs[r].net, NULL), jobs[0].saved[1],
                                 sizeof(float) * ns) == 0,
                          "P = %d: rank %d's running statistics are not rank 0's", p, r);
            bp_trainer_state s;
            bp_trainer_get_state(jobs[r].t, &s);
            ck_assert_uint_gt(s.optimizer_state_count, 0);
            for (size_t i = 0; i < s.optimizer_state_count; i++)
                ck_assert_msg(s.optimizer_state[i] == 0.0f, "P = %d: rank %d's optimiser "
                              "state[%zu] is %g, not rank 0's 0", p, r, i, s.optimizer_state[i]);
        }
        assert_ranks_identical(jobs, p, "after the broadcast");
        ck_assert_int_eq(calls[OP_BROADCAST], 3); /* parameters, statistics, Adam's m and v */
        ck_assert_int_eq(calls[OP_FLOATS] + calls[OP_DOUBLES], 0);
        free_jobs(jobs, p);

        /* Then trained: the ranks train what rank 0's start trains alone. */
        run(jobs, p, &spec, NULL, prepare_broadcast, NULL, NULL);
        assert_ok(jobs, p);
        ck_assert(memcmp(jobs[1].saved[0], jobs[0].saved[0], sizeof(float) * jobs[0].n_saved));
        assert_ranks_identical(jobs, p, "broadcast, then 5 steps");
        assert_matches_alone(jobs, p, ref, "broadcast, then 5 steps");
        free_jobs(jobs, p);
    }
    free_jobs(ref, 0);
    bp_dataset_free(ds);
}
END_TEST

/* ---- 6: errors ------------------------------------------------------------------------- */

static int calls_made;
static int count_floats(void *u, float *d, size_t n)
{
    (void)u, (void)d, (void)n;
    return ++calls_made, 0;
}
static int count_doubles(void *u, double *d, size_t n)
{
    (void)u, (void)d, (void)n;
    return ++calls_made, 0;
}
static int count_broadcast(void *u, float *d, size_t n, int root)
{
    (void)u, (void)d, (void)n, (void)root;
    return ++calls_made, 0;
}

START_TEST(test_bad_collectives_are_refused)
{
    bp_dataset *ds = make_set(N, 19);
    run_spec spec = spec_of(ds, BP_OPT_SGD, 12);
    bp_net *net;
    ck_assert_int_eq(make_net(&spec, 4, &net), BP_OK);
    bp_train_config tc;
    bp_train_config_init(&tc);
    tc.batch = 12;
    bp_trainer *t;
    ck_assert_int_eq(bp_trainer_create(&t, net, ds, &tc), BP_OK);
    const bp_collective good = {.rank = 0, .size = 2, .sum_floats = count_floats,
                                .sum_doubles = count_doubles,
                                .broadcast_floats = count_broadcast};
    const struct {
        int rank, size;
        int missing; /* 1 sum_floats, 2 sum_doubles, 3 broadcast_floats */
        const char *text;
    } bad[] = {
        {2, 2, 0, "rank 2 of 2 ranks"},  {-1, 2, 0, "rank -1 of 2 ranks"},
        {0, 0, 0, "rank 0 of 0 ranks"},  {0, -3, 0, "rank 0 of -3 ranks"},
        {5, 3, 0, "rank 5 of 3 ranks"},  {0, 2, 1, "the sum_floats function is NULL"},
        {1, 2, 2, "the sum_doubles function is NULL"},
        {0, 1, 3, "the broadcast_floats function is NULL"},
    };
    calls_made = 0;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        bp_collective c = good;
        c.rank = bad[i].rank;
        c.size = bad[i].size;
        if (bad[i].missing == 1)
            c.sum_floats = NULL;
        if (bad[i].missing == 2)
            c.sum_doubles = NULL;
        if (bad[i].missing == 3)
            c.broadcast_floats = NULL;
        ck_assert_int_eq(bp_trainer_set_collective(t, &c), BP_EINVAL);
        ck_assert_msg(strstr(bp_last_error(), bad[i].text) != NULL, "case %zu: '%s' lacks '%s'",
                      i, bp_last_error(), bad[i].text);
        ck_assert_ptr_nonnull(strstr(bp_last_error(), "bp_trainer_set_collective"));
    }
    ck_assert_int_eq(bp_trainer_set_collective(NULL, &good), BP_EINVAL);
    ck_assert_ptr_nonnull(strstr(bp_last_error(), "trainer is NULL"));
    /* Nothing refused took: the trainer still trains alone, calling no collective. */
    ck_assert_int_eq(bp_trainer_batches(t, 3, NULL, NULL), BP_OK);
    float acc;
    ck_assert_int_eq(bp_trainer_evaluate(t, ds, &acc, NULL), BP_OK);
    ck_assert_int_eq(calls_made, 0);
    /* A collective of one rank, then none again (NULL): alone, nothing is called. */
    bp_collective one = good;
    one.size = 1;
    ck_assert_int_eq(bp_trainer_set_collective(t, &one), BP_OK);
    ck_assert_int_eq(calls_made, 1); /* the broadcast of the parameters; SGD has no state */
    ck_assert_int_eq(bp_trainer_batches(t, 1, NULL, NULL), BP_OK);
    ck_assert_int_eq(calls_made, 3); /* the gradients and the costs */
    ck_assert_int_eq(bp_trainer_set_collective(t, NULL), BP_OK);
    ck_assert_int_eq(bp_trainer_batches(t, 1, NULL, NULL), BP_OK);
    ck_assert_int_eq(calls_made, 3);
    bp_trainer_free(t);
    bp_net_free(net);
    bp_dataset_free(ds);
}
END_TEST

static void body_epoch(rank_job *j)
{
    bp_epoch_report r;
    note(j, bp_trainer_epoch(j->t, &r));
    keep_place(j);
}

static void body_evaluate_only(rank_job *j)
{
    float acc;
    double cost;
    note(j, bp_trainer_evaluate(j->t, j->spec->data, &acc, &cost));
}

/* A transport that fails (on every rank at once) fails the call with BP_EIO naming what. */
START_TEST(test_failing_transport_is_eio)
{
    bp_dataset *ds = make_set(N, 19);
    run_spec spec = spec_of(ds, BP_OPT_SGD, 12);
    run_spec bn = spec;
    bn.batchnorm = 1;
    const struct {
        op_kind kind;
        long at;
        const run_spec *spec;
        void (*body)(rank_job *);
        const char *text;
        size_t position; /* where the trainer is after the failure; -1: not checked */
    } cases[] = {
        /* set_collective's broadcast */
        {OP_BROADCAST, 1, &spec, NULL, "broadcast of rank 0's parameters", 0},
        {OP_BROADCAST, 2, &bn, NULL, "broadcast of rank 0's parameters", 0},
        /* the 3rd mini-batch's gradients, then its costs */
        {OP_FLOATS, 3, &spec, body_epoch, "sum of the gradients", 24},
        {OP_DOUBLES, 3, &spec, body_epoch, "sum of the costs", 24},
        /* the stop votes of the epoch's end, after its 25 mini-batches */
        {OP_DOUBLES, 26, &spec, body_epoch, "sum of the stop votes", (size_t)-1},
        /* batch norm's running statistics at the epoch's end */
        {OP_FLOATS, 26, &bn, body_epoch, "sum of the running statistics", (size_t)-1},
        {OP_DOUBLES, 1, &spec, body_evaluate_only, "sum of the evaluation", (size_t)-1},
    };
    rank_job jobs[MAXP];
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        for (int p = 2; p <= 3; p++) {
            long fail_at[OP_KINDS] = {0};
            fail_at[cases[c].kind] = cases[c].at;
            run(jobs, p, cases[c].spec, cases[c].body, NULL, NULL, fail_at);
            for (int r = 0; r < p; r++) {
                bp_status st = cases[c].body ? jobs[r].status[0] : jobs[r].setup;
                const char *msg = cases[c].body ? jobs[r].msg[0] : jobs[r].setup_msg;
                if (cases[c].body)
                    ck_assert_msg(jobs[r].setup == BP_OK, "%s", jobs[r].setup_msg);
                ck_assert_msg(st == BP_EIO, "case %zu, P = %d, rank %d: %s (%s), not BP_EIO", c,
                              p, r, bp_status_str(st), msg);
                ck_assert_msg(strstr(msg, cases[c].text) != NULL, "case %zu: '%s' lacks '%s'",
                              c, msg, cases[c].text);
                ck_assert_ptr_nonnull(strstr(msg, "failed"));
                if (cases[c].position != (size_t)-1 && cases[c].body)
                    ck_assert_uint_eq(jobs[r].position, cases[c].position);
            }
            free_jobs(jobs, p);
        }
    }
    bp_dataset_free(ds);
}
END_TEST

/* ---- 7: batch norm --------------------------------------------------------------------- */

/* saved[0]: the running statistics after the 5th mini-batch (each rank's own then);
 * saved[1]: after the epoch's last mini-batch, before the epoch's end averages them. */
static int keep_statistics(const bp_batch_report *r, void *user)
{
    rank_job *j = user;
    size_t ns;
    const float *s = bp_net_state(j->net, &ns);
    if (r->batches_done == 5 && !j->saved[0])
        j->saved[0] = copy_floats(s, ns);
    if (r->samples_done == r->samples && !j->saved[1])
        j->saved[1] = copy_floats(s, ns);
    j->n_saved = ns;
    return 0;
}

/* An epoch (saved[2]: the statistics at its end), then 30 more steps. */
static void body_batchnorm(rank_job *j)
{
    bp_trainer_set_batch_callback(j->t, keep_statistics, j);
    bp_epoch_report r;
    bp_status st = bp_trainer_epoch(j->t, &r);
    note(j, st);
    if (st == BP_OK)
        j->epoch_cost[j->n_epochs++] = r.train_cost;
    size_t ns;
    const float *state = bp_net_state(j->net, &ns);
    j->saved[2] = copy_floats(state, ns);
    bp_trainer_set_batch_callback(j->t, NULL, NULL);
    note(j, train_steps(j, 30));
}

START_TEST(test_batchnorm_statistics_are_averaged)
{
    bp_dataset *ds = make_set(N, 19);
    rank_job jobs[MAXP];
    const int batches[] = {12, 7};
    for (int b = 0; b < 2; b++) {
        run_spec spec = spec_of(ds, BP_OPT_SGD, batches[b]);
        spec.batchnorm = 1;
        spec.eta = 0.1f;
        for (int p = 2; p <= 3; p++) {
            /* At an epoch's end every rank holds the same net, statistics included. */
            run(jobs, p, &spec, body_epoch, NULL, NULL, NULL);
            assert_ok(jobs, p);
            ck_assert_int_eq(jobs[0].epochs_done, 1);
            assert_ranks_identical(jobs, p, "batch norm, one epoch");
            free_jobs(jobs, p);

            run(jobs, p, &spec, body_batchnorm, NULL, NULL, NULL);
            assert_ok(jobs, p);
            size_t n, ns = jobs[0].n_saved;
            const float *p0 = bp_net_params(jobs[0].net, &n);
            for (int r = 0; r < p; r++) {
                ck_assert(jobs[r].saved[0] && jobs[r].saved[1] && jobs[r].saved[2]);
                ck_assert_msg(memcmp(bp_net_params(jobs[r].net, NULL), p0,
                                     sizeof(float) * n) == 0,
                              "batch %d, P = %d: rank %d's parameters differ", spec.batch, p, r);
                assert_same_trainer(jobs[r].t, jobs[0].t, 1, "batch norm");
            }
            /* Before the epoch's end each rank's statistics are its own batches'. */
            ck_assert_msg(memcmp(jobs[1].saved[0], jobs[0].saved[0], sizeof(float) * ns) != 0,
                          "ranks 0 and 1 have the same running statistics mid-epoch");
            ck_assert(memcmp(jobs[1].saved[1], jobs[0].saved[1], sizeof(float) * ns) != 0);
            /* The epoch's end made every rank's their mean: summed in the transport's (rank)
             * order, times 1/P. */
            float *mean = malloc(sizeof(float) * ns);
            for (size_t i = 0; i < ns; i++) {
                float acc = jobs[0].saved[1][i];
                for (int r = 1; r < p; r++)
                    acc += jobs[r].saved[1][i];
                mean[i] = acc * (1.0f / (float)p);
            }
            for (int r = 0; r < p; r++)
                ck_assert_msg(memcmp(jobs[r].saved[2], mean, sizeof(float) * ns) == 0,
                              "batch %d, P = %d: rank %d's statistics after the epoch are not "
                              "the ranks' mean (max rel %.3g)", spec.batch, p, r,
                              max_rel(jobs[r].saved[2], mean, ns));
            /* They are statistics that moved: the running means left 0, the variances 1. */
            int buffers = bp_net_buffer_count(jobs[0].net), moved = 0;
            ck_assert_int_gt(buffers, 0);
            for (int k = 0; k < buffers; k++) {
                bp_tensor_info info;
                ck_assert_int_eq(bp_net_buffer(jobs[0].net, k, &info), BP_OK);
                float start = info.role == BP_ROLE_RUNNING_VAR ? 1.0f : 0.0f;
                for (size_t i = 0; i < info.count; i++)
                    moved += jobs[0].saved[2][info.offset + i] != start;
            }
            ck_assert_int_gt(moved, 0);
            free(mean);
            free_jobs(jobs, p);
        }
    }
    bp_dataset_free(ds);
}
END_TEST

/* ---- the state does not depend on the rank count --------------------------------------- */

static void prepare_steps(rank_job *j, void *arg) { j->steps = *(const long *)arg; }

/* A checkpoint written by rank 0 of P ranks after 30 steps, resumed by Q ranks (Q = 0: alone)
 * for the other 70, ends where the lone trainer's 100 steps end (within TOLERANCE, with the
 * same order, generator and step count). */
START_TEST(test_checkpoint_moves_between_rank_counts)
{
    char dir[] = "/tmp/bp-coll-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof path, "%s/run.ckpt", dir);
    bp_dataset *ds = make_set(N, 19);
    run_spec spec = spec_of(ds, BP_OPT_ADAM, 12);
    spec.dropout = 0.3f;
    rank_job ref[1], jobs[MAXP];
    run(ref, 0, &spec, NULL, NULL, NULL, NULL);
    assert_ok(ref, 0);
    const int moves[][2] = {{2, 3}, {3, 0}, {0, 2}, {2, 2}};
    for (size_t m = 0; m < sizeof moves / sizeof moves[0]; m++) {
        int from = moves[m][0], to = moves[m][1];
        run_spec first = spec, second = spec;
        first.save = path;
        second.checkpoint = path;
        long steps = 30;
        run(jobs, from, &first, NULL, prepare_steps, &steps, NULL);
        assert_ok(jobs, from);
        free_jobs(jobs, from);
        steps = STEPS - 30;
        run(jobs, to, &second, NULL, prepare_steps, &steps, NULL);
        assert_ok(jobs, to);
        char what[64];
        snprintf(what, sizeof what, "checkpoint of %d ranks resumed on %d", from ? from : 1,
                 to ? to : 1);
        if (to)
            assert_ranks_identical(jobs, to, what);
        /* The epochs before the checkpoint are not this run's reports: compare the state. */
        ref->n_epochs = jobs[0].n_epochs = 0;
        assert_matches_alone(jobs, to ? to : 1, ref, what);
        free_jobs(jobs, to);
    }
    free_jobs(ref, 0);
    unlink(path);
    rmdir(dir);
    bp_dataset_free(ds);
}
END_TEST

static Suite *collective_suite(void)
{
    Suite *s = suite_create("collective");
    TCase *tc = tcase_create("collective");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_sgd_matches_one_trainer);
    tcase_add_test(tc, test_adam_matches_one_trainer);
    tcase_add_test(tc, test_dropout_matches_one_trainer);
    tcase_add_test(tc, test_fewer_samples_than_ranks);
    tcase_add_test(tc, test_overlapped_sums_are_the_sums);
    tcase_add_test(tc, test_drifting_ranks_are_resynchronised);
    tcase_add_test(tc, test_evaluate_is_bp_evaluate);
    tcase_add_test(tc, test_one_rank_stops_all);
    tcase_add_test(tc, test_stop_at_the_end_of_an_epoch);
    tcase_add_test(tc, test_set_collective_broadcasts_rank_0);
    tcase_add_test(tc, test_bad_collectives_are_refused);
    tcase_add_test(tc, test_failing_transport_is_eio);
    tcase_add_test(tc, test_batchnorm_statistics_are_averaged);
    tcase_add_test(tc, test_checkpoint_moves_between_rank_counts);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return bp_test_main(collective_suite()); }
