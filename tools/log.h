/*
 * log.h - the CLI's machine-readable output: the per-epoch log of `backprop train --log FILE`
 * (JSON Lines or CSV, by FILE's extension) and the JSON and CSV writers it shares with the
 * summary and the other commands' output.
 * Nothing here prints to the terminal: failures come back as a message for the caller to show.
 */
#ifndef BP_TOOLS_LOG_H
#define BP_TOOLS_LOG_H

#include <stddef.h>
#include <stdio.h>

#include "backprop.h"

/* ---- JSON values ----------------------------------------------------------------------- */

/* The shortest decimal that reads back as the same number, or null for NaN and infinity
 * (which JSON lacks). A float is rounded as a float: --eta 0.1 is written 0.1, not the
 * 0.100000001490116 its double is. */
void json_float(FILE *f, float v);
void json_double(FILE *f, double v);
/* A JSON string: quotes, backslashes and control characters escaped, UTF-8 kept, any byte
 * that is not UTF-8 written as U+FFFD so the output stays valid. */
void json_string(FILE *f, const char *s);
/* Whether s is well-formed UTF-8 (RFC 3629), as a JSON string must be. */
int is_utf8(const char *s);

/* ---- CSV cells --------------------------------------------------------------------------- */

/* A text cell as RFC 4180 has it: quoted, with quotes doubled, only when it needs to be. */
void csv_text(FILE *f, const char *s);
/* A float cell: the shortest decimal that reads back as v (as json_float), nan, inf or -inf. */
void csv_float(FILE *f, float v);

/* ---- the epoch log --------------------------------------------------------------------- */

typedef enum log_format { LOG_JSONL = 0, LOG_CSV, LOG_UNKNOWN } log_format;

/* The format a log path's extension names: ".jsonl" or ".csv"; LOG_UNKNOWN for any other. */
log_format log_format_of(const char *path);

typedef struct epoch_log epoch_log;

/* Create (or truncate) path for the log: only a regular file, never through a symbolic link.
 * The CSV header is written at once, with a grad_norm:NAME column per tensor of the net when
 * with_norms is set. NULL, with the reason in err, on failure. */
epoch_log *epoch_log_open(const char *path, const bp_net *net, int with_norms, char *err,
                          size_t err_size);

/* Append the record of one epoch and hand it to the kernel before returning, so the file can
 * be followed while the run goes on. A record is written whole or not at all: after a failed
 * write the file is cut back to the records before it. 0, or -1 with the reason in err. */
int epoch_log_write(epoch_log *log, const bp_epoch_report *r, char *err, size_t err_size);

/* Close the file and free the log (NULL is allowed). 0, or -1 with the reason in err. */
int epoch_log_close(epoch_log *log, char *err, size_t err_size);

#endif
