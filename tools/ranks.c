/*
 * ranks.c - one training run over the ranks of an MPI job (ranks.h), or this process alone.
 *
 * The library knows nothing of MPI: it sums and broadcasts through a bp_collective, and this
 * file binds one to MPI_COMM_WORLD (a duplicate of it, so no message of ours can meet one of
 * a library the program also links). Sums are MPI_Allreduce with MPI_SUM: Open MPI's
 * algorithms give every rank the same bits (each combines the same pairs, and a + b == b + a
 * in IEEE arithmetic), which the trainer needs, since every rank then takes the same step.
 * Counts past INT_MAX go in pieces. Errors stay MPI_ERRORS_ARE_FATAL: a failing transport,
 * or a rank that died, ends the whole job with Open MPI's message rather than leaving the
 * others waiting in their next sum.
 */
#include "ranks.h"
#include "cli.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ranks_launch_rank(void)
{
    const char *names[] = {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"};
    for (int i = 0; i < 3; i++) {
        const char *v = getenv(names[i]);
        if (v && *v)
            return atoi(v);
    }
    return 0;
}

#if BP_HAVE_MPI

#include <mpi.h>

static struct {
    int active, rank, size, local;
    MPI_Comm comm;
    bp_collective coll;
    char transport[MPI_MAX_LIBRARY_VERSION_STRING + 8];
    double seconds; /* spent in the collective's calls: the training's communication */
} job = {0, 0, 1, 1, MPI_COMM_NULL, {0}, "none", 0.0};

/* Pieces of at most INT_MAX elements, MPI's count type. */
static int sum_in_pieces(void *values, size_t count, MPI_Datatype type, size_t size)
{
    double t0 = MPI_Wtime();
    for (size_t done = 0; done < count;) {
        size_t n = count - done < (size_t)INT_MAX ? count - done : (size_t)INT_MAX;
        if (MPI_Allreduce(MPI_IN_PLACE, (char *)values + done * size, (int)n, type, MPI_SUM,
                          job.comm) != MPI_SUCCESS)
            return -1;
        done += n;
    }
    job.seconds += MPI_Wtime() - t0;
    return 0;
}

static int sum_floats(void *user, float *values, size_t count)
{
    (void)user;
    return sum_in_pieces(values, count, MPI_FLOAT, sizeof *values);
}

static int sum_doubles(void *user, double *values, size_t count)
{
    (void)user;
    return sum_in_pieces(values, count, MPI_DOUBLE, sizeof *values);
}

/* The sums a step has started, each an MPI_Iallreduce (a net has at most a few dozen layers
 * with parameters; a count past INT_MAX takes more than one). */
enum { MAX_STARTED = 256 };
static MPI_Request started[MAX_STARTED];
static int n_started;

/* Open MPI moves a non-blocking collective on only inside MPI calls (it has no progress
 * thread by default): testing the sums already started, at each new start, lets their next
 * rounds go out while the layers below compute. */
static int start_sum_floats(void *user, float *values, size_t count)
{
    (void)user;
    double t0 = MPI_Wtime();
    for (size_t done = 0; done < count;) {
        size_t n = count - done < (size_t)INT_MAX ? count - done : (size_t)INT_MAX;
        if (n_started == MAX_STARTED ||
            MPI_Iallreduce(MPI_IN_PLACE, values + done, (int)n, MPI_FLOAT, MPI_SUM, job.comm,
                           &started[n_started]) != MPI_SUCCESS)
            return -1;
        n_started++;
        done += n;
    }
    int flag;
    MPI_Testall(n_started, started, &flag, MPI_STATUSES_IGNORE);
    job.seconds += MPI_Wtime() - t0;
    return 0;
}

static int finish_sums(void *user)
{
    (void)user;
    double t0 = MPI_Wtime();
    int rc = MPI_Waitall(n_started, started, MPI_STATUSES_IGNORE);
    n_started = 0;
    job.seconds += MPI_Wtime() - t0;
    return rc == MPI_SUCCESS ? 0 : -1;
}

static int broadcast_floats(void *user, float *values, size_t count, int root)
{
    (void)user;
    for (size_t done = 0; done < count;) {
        size_t n = count - done < (size_t)INT_MAX ? count - done : (size_t)INT_MAX;
        if (MPI_Bcast(values + done, (int)n, MPI_FLOAT, root, job.comm) != MPI_SUCCESS)
            return -1;
        done += n;
    }
    return 0;
}

/* mpirun (Open MPI's, and PMIx launchers generally) tells its processes who they are in the
 * environment; a process started any other way trains alone and never touches MPI, whose
 * singleton start is slow and may want a daemon. */
static int started_by_mpirun(void)
{
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK");
}

int ranks_start(void)
{
    if (job.active || !started_by_mpirun())
        return 0;
    if (MPI_Init(NULL, NULL) != MPI_SUCCESS) {
        print_error("MPI_Init failed: this process was started by mpirun but cannot join "
                    "its job");
        return 1;
    }
    atexit(ranks_finish);
    MPI_Comm_dup(MPI_COMM_WORLD, &job.comm);
    MPI_Comm_rank(job.comm, &job.rank);
    MPI_Comm_size(job.comm, &job.size);
    MPI_Comm here;
    MPI_Comm_split_type(job.comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &here);
    MPI_Comm_size(here, &job.local);
    MPI_Comm_free(&here);
    job.coll = (bp_collective){.rank = job.rank, .size = job.size, .sum_floats = sum_floats,
                               .sum_doubles = sum_doubles, .broadcast_floats = broadcast_floats};
    const char *overlap = getenv("BACKPROP_MPI_OVERLAP");
    if (overlap && strcmp(overlap, "1") == 0) {
        job.coll.start_sum_floats = start_sum_floats;
        job.coll.finish_sums = finish_sums;
    }
    job.active = 1;
    return 0;
}

double ranks_seconds(void) { return job.seconds; }

int ranks_rank(void) { return job.rank; }
int ranks_size(void) { return job.size; }
int ranks_local(void) { return job.local; }

const bp_collective *ranks_collective(void) { return job.active && job.size > 1 ? &job.coll : NULL; }

int ranks_agree(int status)
{
    if (!job.active || job.size == 1)
        return status;
    int first = status ? job.rank : job.size;
    MPI_Allreduce(MPI_IN_PLACE, &first, 1, MPI_INT, MPI_MIN, job.comm);
    if (first == job.size)
        return 0;
    int theirs = status;
    MPI_Bcast(&theirs, 1, MPI_INT, first, job.comm);
    char text[1024];
    snprintf(text, sizeof text, "%s", last_error_text());
    MPI_Bcast(text, (int)sizeof text, MPI_CHAR, first, job.comm);
    /* A status without a message (a stop signal's 128 + n) has nothing to say. */
    if (job.rank == 0 && first != 0 && text[0])
        fprintf(stderr, "backprop: rank %d of %d: %s\n", first, job.size, text);
    return theirs;
}

int ranks_max(int value)
{
    if (job.active && job.size > 1)
        MPI_Allreduce(MPI_IN_PLACE, &value, 1, MPI_INT, MPI_MAX, job.comm);
    return value;
}

void ranks_finish(void)
{
    int initialised = 0, finalised = 0;
    MPI_Initialized(&initialised);
    MPI_Finalized(&finalised);
    if (!initialised || finalised)
        return;
    fflush(stdout);
    if (job.comm != MPI_COMM_NULL)
        MPI_Comm_free(&job.comm);
    MPI_Finalize();
}

/* MPI_Get_library_version is one of the calls allowed before MPI_Init. */
const char *ranks_transport(void)
{
    if (!job.transport[0] || !strcmp(job.transport, "none")) {
        char version[MPI_MAX_LIBRARY_VERSION_STRING];
        int len;
        MPI_Get_library_version(version, &len);
        version[strcspn(version, ",\n")] = '\0'; /* "Open MPI v4.1.4" */
        snprintf(job.transport, sizeof job.transport, "MPI (%s)", version);
    }
    return job.transport;
}

#else /* !BP_HAVE_MPI */

int ranks_start(void)
{
    /* A build without MPI started by mpirun would train the same model P times over. */
    if (getenv("OMPI_COMM_WORLD_SIZE") && strcmp(getenv("OMPI_COMM_WORLD_SIZE"), "1") != 0) {
        print_error("started by mpirun, but this backprop was built without MPI: install "
                    "libopenmpi-dev and reconfigure with -Dmpi=enabled");
        return 1;
    }
    return 0;
}

int ranks_rank(void) { return 0; }
int ranks_size(void) { return 1; }
int ranks_local(void) { return 1; }
const bp_collective *ranks_collective(void) { return NULL; }
int ranks_agree(int status) { return status; }
int ranks_max(int value) { return value; }
double ranks_seconds(void) { return 0.0; }
void ranks_finish(void) {}
const char *ranks_transport(void) { return "none"; }

#endif
