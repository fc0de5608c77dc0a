/*
 * ranks.h - the processes of one `backprop train` run: this process alone, or, in a build
 * with MPI (meson option mpi) started by mpirun, the ranks of the MPI job, which train one
 * model together (bp_trainer_set_collective). Everything else in the tool asks here rather
 * than calling MPI, so a build without MPI is the same tool with one rank.
 */
#ifndef BACKPROP_TOOLS_RANKS_H
#define BACKPROP_TOOLS_RANKS_H

#include "backprop.h"

/* Join the MPI job when the process was started by mpirun (its environment says so); a no-op
 * otherwise and without MPI. 0, or 1 with the reason printed. */
int ranks_start(void);
/* The rank mpirun gave this process in its environment (0 when none), known before MPI
 * starts: the ranks after the first keep quiet from the first message on. */
int ranks_launch_rank(void);
/* This process's rank, the ranks in all and those on this machine (1, 1, 1 alone). */
int ranks_rank(void);
int ranks_size(void);
int ranks_local(void);
/* The transport the trainer sums over; NULL alone. */
const bp_collective *ranks_collective(void);
/* Every rank's status to one: 0 when all are 0, else the status of the lowest rank that
 * failed, on every rank, and rank 0 prints that rank's message (its last print_error) when it
 * is not rank 0's own. Every rank must call it at the same point. */
int ranks_agree(int status);
/* Seconds this rank spent in the collective's sums (waiting for the others included): the
 * communication share of its training time. */
double ranks_seconds(void);
/* The largest of every rank's value, on every rank (the value alone). */
int ranks_max(int value);
/* Leave the MPI job (registered with atexit by ranks_start too, for the exits of usage
 * errors, which every rank meets alike). */
void ranks_finish(void);
/* "MPI (Open MPI v4.1.4)" in a build with MPI, else "none": what --version and the header
 * line say. */
const char *ranks_transport(void);

#endif
