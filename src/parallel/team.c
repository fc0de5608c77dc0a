/* team.c - the fork-join team (see team.h). */
#include <pthread.h>
#include <stdatomic.h>

#include "core/core.h"
#include "core/fpenv.h"
#include "kernels/threads.h"
#include "parallel/team.h"

/* How long a waiting member spins before it sleeps: about 50 us on current x86 (a pause is
 * 10-140 cycles). Between the phases of a training step the wait is far shorter than this, so
 * members never sleep mid-epoch; after training they sleep and cost nothing. */
enum { SPIN_LIMIT = 4096 };

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* A counter that members wait on until it moves past a value they saw: spin, then sleep on the
 * team's condition variable. The waker bumps the counter before looking for sleepers and a
 * sleeper registers before re-reading the counter; both are sequentially consistent, so one of
 * them always sees the other (no lost wake-up). */
typedef struct event {
    atomic_uint count;
    atomic_int sleepers;
} event;

struct bp_team {
    int size;
    pthread_t *threads;
    pthread_mutex_t lock;
    pthread_cond_t cond;

    event start;      /* bumped by bp_team_run for each job, and once more to stop */
    event finish;     /* bumped by the last member to finish a job */
    atomic_int running;
    event barrier;    /* bumped by the last member to reach a barrier */
    atomic_int arrived;

    bp_team_fn fn;
    void *arg;
    int stop;
};

typedef struct member_start {
    bp_team *team;
    int member;
} member_start;

static void event_wait(bp_team *team, event *ev, unsigned seen)
{
    for (int i = 0; i < SPIN_LIMIT; i++) {
        if (atomic_load(&ev->count) != seen)
            return;
        cpu_relax();
    }
    pthread_mutex_lock(&team->lock);
    atomic_fetch_add(&ev->sleepers, 1);
    while (atomic_load(&ev->count) == seen)
        pthread_cond_wait(&team->cond, &team->lock);
    atomic_fetch_sub(&ev->sleepers, 1);
    pthread_mutex_unlock(&team->lock);
}

static void event_signal(bp_team *team, event *ev)
{
    atomic_fetch_add(&ev->count, 1);
    if (atomic_load(&ev->sleepers) > 0) {
        pthread_mutex_lock(&team->lock);
        pthread_cond_broadcast(&team->cond);
        pthread_mutex_unlock(&team->lock);
    }
}

static void member_done(bp_team *team)
{
    if (atomic_fetch_sub(&team->running, 1) == 1)
        event_signal(team, &team->finish);
}

static void *member_main(void *p)
{
    member_start *ms = p;
    bp_team *team = ms->team;
    int member = ms->member;
    bp_free(ms);
    /* Each member's GEMMs are single-threaded: the team is the parallelism. */
    bp_blas_set_thread_budget(1);
    unsigned seen = 0;
    for (;;) {
        event_wait(team, &team->start, seen);
        seen = atomic_load(&team->start.count);
        if (team->stop)
            return NULL;
        /* Every job is part of a step or a forward pass, which flush subnormals on the caller's
         * thread (core/fpenv.h): a member must compute its columns the same way, or its share
         * of a saturated batch runs slower and its results differ. Set per job and restored
         * after, like the caller's, rather than once for the thread's life: the environment a
         * member inherited at pthread_create (the creator's) then stays what it was, the rule
         * has no exception to argue, and the two register writes are lost in a job that takes
         * microseconds at the least. */
        bp_fpenv fpenv = bp_fpenv_flush();
        team->fn(team->arg, member, team->size);
        bp_fpenv_restore(fpenv);
        member_done(team);
    }
}

static void team_stop(bp_team *team, int started)
{
    team->stop = 1;
    event_signal(team, &team->start);
    for (int i = 0; i < started; i++)
        pthread_join(team->threads[i], NULL);
}

bp_status bp_team_create(bp_team **out, int size)
{
    *out = NULL;
    if (size < 1 || size > BP_TEAM_MAX)
        return bp_fail(BP_EINVAL, "a thread team has 1 to %d members, not %d", BP_TEAM_MAX, size);
    bp_team *team = bp_calloc(1, sizeof *team);
    if (!team)
        return bp_fail(BP_ENOMEM, "no memory for a thread team");
    team->size = size;
    team->threads = size > 1 ? bp_calloc((size_t)size - 1, sizeof(pthread_t)) : NULL;
    if (size > 1 && !team->threads) {
        bp_free(team);
        return bp_fail(BP_ENOMEM, "no memory for a thread team");
    }
    pthread_mutex_init(&team->lock, NULL);
    pthread_cond_init(&team->cond, NULL);
    for (int i = 1; i < size; i++) {
        member_start *ms = bp_alloc(sizeof *ms);
        int err = ms ? 0 : 1;
        if (ms) {
            *ms = (member_start){team, i};
            err = pthread_create(&team->threads[i - 1], NULL, member_main, ms);
            if (err)
                bp_free(ms);
        }
        if (err) {
            team_stop(team, i - 1);
            pthread_cond_destroy(&team->cond);
            pthread_mutex_destroy(&team->lock);
            bp_free(team->threads);
            bp_free(team);
            return bp_fail(BP_ENOMEM, "could not start thread %d of a team of %d", i, size);
        }
    }
    *out = team;
    return BP_OK;
}

void bp_team_free(bp_team *team)
{
    if (!team)
        return;
    team_stop(team, team->size - 1);
    pthread_cond_destroy(&team->cond);
    pthread_mutex_destroy(&team->lock);
    bp_free(team->threads);
    bp_free(team);
}

int bp_team_size(const bp_team *team) { return team->size; }

void bp_team_run(bp_team *team, bp_team_fn fn, void *arg)
{
    if (team->size == 1) {
        fn(arg, 0, 1);
        return;
    }
    int budget = bp_blas_set_thread_budget(1);
    bp_blas_use_threads(1);
    team->fn = fn;
    team->arg = arg;
    atomic_store(&team->running, team->size);
    unsigned finished = atomic_load(&team->finish.count);
    event_signal(team, &team->start);
    fn(arg, 0, team->size);
    member_done(team);
    event_wait(team, &team->finish, finished);
    bp_blas_set_thread_budget(budget);
}

void bp_team_barrier(bp_team *team)
{
    if (team->size == 1)
        return;
    unsigned gen = atomic_load(&team->barrier.count);
    if (atomic_fetch_add(&team->arrived, 1) == team->size - 1) {
        atomic_store(&team->arrived, 0);
        event_signal(team, &team->barrier);
    } else {
        event_wait(team, &team->barrier, gen);
    }
}
