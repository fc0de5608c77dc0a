/*
 * log.c - the per-epoch log (JSON Lines or CSV) and the JSON value writers the CLI's summary
 * shares with it.
 *
 * The log is not written atomically like the summary: it is meant to be followed (tail -f, a
 * plot refreshing) while a long run goes on, so each record goes to the file as its epoch
 * ends. It is still kept whole: a record is formatted in memory and written in one go, and if
 * the write fails part-way the file is cut back to the end of the record before, so what a
 * failed run leaves is every record it finished and nothing torn.
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

/* ---- JSON values ----------------------------------------------------------------------- */

/* The shortest %g that reads back as the float v; v finite. */
static void shortest_float(char *buf, size_t size, float v)
{
    for (int digits = 1; digits <= 9; digits++) {
        snprintf(buf, size, "%.*g", digits, (double)v);
        if (strtof(buf, NULL) == v)
            break;
    }
}

void json_float(FILE *f, float v)
{
    char buf[32];
    if (!isfinite(v)) {
        fputs("null", f);
        return;
    }
    shortest_float(buf, sizeof buf, v);
    fputs(buf, f);
}

/* The shortest %g that reads back as v; v finite. */
static void shortest_double(char *buf, size_t size, double v)
{
    for (int digits = 1; digits <= 17; digits++) {
        snprintf(buf, size, "%.*g", digits, v);
        if (strtod(buf, NULL) == v)
            break;
    }
}

void json_double(FILE *f, double v)
{
    char buf[40];
    if (!isfinite(v)) {
        fputs("null", f);
        return;
    }
    shortest_double(buf, sizeof buf, v);
    fputs(buf, f);
}

/* The length of the well-formed UTF-8 sequence at s, 0 if there is none (RFC 3629: no
 * overlong forms, no surrogates, nothing above U+10FFFF). A NUL ends every check early. */
static size_t utf8_length(const unsigned char *s)
{
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    if (c < 0xC2 || c > 0xF4 || (s[1] & 0xC0) != 0x80)
        return 0;
    if (c < 0xE0)
        return 2;
    if ((s[2] & 0xC0) != 0x80 || (c == 0xE0 && s[1] < 0xA0) || (c == 0xED && s[1] > 0x9F))
        return 0;
    if (c < 0xF0)
        return 3;
    if ((s[3] & 0xC0) != 0x80 || (c == 0xF0 && s[1] < 0x90) || (c == 0xF4 && s[1] > 0x8F))
        return 0;
    return 4;
}

int is_utf8(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        size_t n = utf8_length(p);
        if (n == 0)
            return 0;
        p += n;
    }
    return 1;
}

/* Strings are checked with is_utf8 before training, so a byte that is not UTF-8 cannot reach
 * here; if one did, U+FFFD keeps the file valid JSON. */
void json_string(FILE *f, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    fputc('"', f);
    while (*p) {
        size_t n = utf8_length(p);
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f)
            fprintf(f, "\\u%04x", *p);
        else if (n == 0)
            fputs("\\ufffd", f);
        else
            fwrite(p, 1, n, f);
        p += n ? n : 1;
    }
    fputc('"', f);
}

/* ---- the epoch log --------------------------------------------------------------------- */

struct epoch_log {
    int fd;
    log_format format;
    int with_norms;
    char *path;
    int n_names;
    char **names;      /* the tensors' names, copied: the log need not outlive the net */
    off_t length;      /* bytes of the whole records written so far */
};

log_format log_format_of(const char *path)
{
    size_t n = strlen(path);
    if (n > 6 && strcmp(path + n - 6, ".jsonl") == 0)
        return LOG_JSONL;
    if (n > 4 && strcmp(path + n - 4, ".csv") == 0)
        return LOG_CSV;
    return LOG_UNKNOWN;
}

static void free_log(epoch_log *log)
{
    if (!log)
        return;
    for (int k = 0; k < log->n_names; k++)
        free(log->names[k]);
    free(log->names);
    free(log->path);
    free(log);
}

void csv_text(FILE *f, const char *s)
{
    if (!strpbrk(s, ",\"\r\n")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

/* A number cell: the shortest round-trip decimal, and nan / inf / -inf as spreadsheets and
 * float() read them. */
static void csv_number(FILE *f, double v)
{
    char buf[40];
    if (isnan(v))
        fputs("nan", f);
    else if (isinf(v))
        fputs(v > 0 ? "inf" : "-inf", f);
    else {
        shortest_double(buf, sizeof buf, v);
        fputs(buf, f);
    }
}

void csv_float(FILE *f, float v)
{
    char buf[32];
    if (!isfinite(v)) {
        csv_number(f, v);
        return;
    }
    shortest_float(buf, sizeof buf, v);
    fputs(buf, f);
}

/* Write len bytes whole, or cut the file back to the last whole record and fail. */
static int write_record(epoch_log *log, const char *buf, size_t len, char *err, size_t err_size)
{
    size_t done = 0;
    while (done < len) {
        ssize_t w = write(log->fd, buf + done, len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int e = w < 0 ? errno : EIO;
            if (ftruncate(log->fd, log->length) == 0)
                (void)lseek(log->fd, log->length, SEEK_SET);
            snprintf(err, err_size, "--log: cannot write '%s': %s", log->path, strerror(e));
            return -1;
        }
        done += (size_t)w;
    }
    log->length += (off_t)len;
    return 0;
}

/* Format a record with fmt_fn into memory, then write it whole. */
static int emit(epoch_log *log, void (*fmt_fn)(FILE *, const epoch_log *, const void *),
                const void *arg, char *err, size_t err_size)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) {
        snprintf(err, err_size, "--log: '%s': %s", log->path, strerror(errno));
        return -1;
    }
    fmt_fn(f, log, arg);
    int failed = ferror(f);
    if (fclose(f) != 0 || failed) {
        free(buf);
        snprintf(err, err_size, "--log: '%s': cannot format a record: %s", log->path,
                 strerror(ENOMEM));
        return -1;
    }
    int rc = write_record(log, buf, len, err, err_size);
    free(buf);
    return rc;
}

static const char *const columns[] = {
    "epoch", "eta", "train_cost", "validation_cost", "validation_accuracy", "seconds",
    "samples_per_second",
};
enum { N_COLUMNS = sizeof columns / sizeof *columns };

static void format_header(FILE *f, const epoch_log *log, const void *unused)
{
    (void)unused;
    for (int c = 0; c < N_COLUMNS; c++)
        fprintf(f, "%s%s", c ? "," : "", columns[c]);
    for (int k = 0; log->with_norms && k < log->n_names; k++) {
        char cell[512];
        snprintf(cell, sizeof cell, "grad_norm:%s", log->names[k]);
        fputc(',', f);
        csv_text(f, cell);
    }
    fputc('\n', f);
}

/* A learning rate that is a float value (the configured one, or it halved) is written as the
 * float it is, so --eta 0.1 reads 0.1 rather than 0.10000000149011612. */
static int is_float_value(double v) { return isfinite(v) && (double)(float)v == v; }

static void format_jsonl(FILE *f, const epoch_log *log, const void *arg)
{
    const bp_epoch_report *r = arg;
    fprintf(f, "{\"epoch\": %d, \"eta\": ", r->epoch);
    if (is_float_value(r->eta))
        json_float(f, (float)r->eta);
    else
        json_double(f, r->eta);
    fputs(", \"train_cost\": ", f);
    json_double(f, r->train_cost);
    /* -1 is the report's "no validation set", which JSON says as null. */
    fputs(", \"validation_cost\": ", f);
    json_double(f, r->validation_cost >= 0 ? r->validation_cost : NAN);
    fputs(", \"validation_accuracy\": ", f);
    json_double(f, r->validation_accuracy >= 0 ? r->validation_accuracy : NAN);
    fputs(", \"seconds\": ", f);
    json_double(f, r->seconds);
    fputs(", \"samples_per_second\": ", f);
    json_double(f, r->samples_per_second);
    if (r->grad_norms && r->n_grad_norms > 0) {
        int n = r->n_grad_norms < log->n_names ? r->n_grad_norms : log->n_names;
        fputs(", \"grad_norms\": {", f);
        for (int k = 0; k < n; k++) {
            fputs(k ? ", " : "", f);
            json_string(f, log->names[k]);
            fputs(": ", f);
            json_double(f, r->grad_norms[k]);
        }
        fputc('}', f);
    }
    fputs("}\n", f);
}

static void format_csv(FILE *f, const epoch_log *log, const void *arg)
{
    const bp_epoch_report *r = arg;
    fprintf(f, "%d,", r->epoch);
    if (is_float_value(r->eta))
        json_float(f, (float)r->eta);
    else
        csv_number(f, r->eta);
    fputc(',', f);
    csv_number(f, r->train_cost);
    /* An empty cell is CSV's missing value: no validation set. */
    fputc(',', f);
    if (r->validation_cost >= 0)
        csv_number(f, r->validation_cost);
    fputc(',', f);
    if (r->validation_accuracy >= 0)
        csv_number(f, r->validation_accuracy);
    fputc(',', f);
    csv_number(f, r->seconds);
    fputc(',', f);
    csv_number(f, r->samples_per_second);
    /* The columns are fixed by the header; an epoch without norms leaves its cells empty. */
    for (int k = 0; log->with_norms && k < log->n_names; k++) {
        fputc(',', f);
        if (r->grad_norms && k < r->n_grad_norms)
            csv_number(f, r->grad_norms[k]);
    }
    fputc('\n', f);
}

epoch_log *epoch_log_open(const char *path, const bp_net *net, int with_norms, char *err,
                          size_t err_size)
{
    epoch_log *log = calloc(1, sizeof *log);
    int n = bp_net_tensor_count(net);
    if (!log || !(log->path = strdup(path)) ||
        (n > 0 && !(log->names = calloc((size_t)n, sizeof *log->names)))) {
        free_log(log);
        snprintf(err, err_size, "--log: '%s': %s", path, strerror(ENOMEM));
        return NULL;
    }
    log->fd = -1;
    log->format = log_format_of(path);
    log->with_norms = with_norms;
    for (int k = 0; k < n; k++) {
        bp_tensor_info info;
        if (bp_net_tensor(net, k, &info) != BP_OK || !(log->names[k] = strdup(info.name))) {
            free_log(log);
            snprintf(err, err_size, "--log: '%s': %s", path, strerror(ENOMEM));
            return NULL;
        }
        log->n_names = k + 1;
    }
    /* The path was checked before training (bp_file_check_replaceable); these flags keep a
     * link or a FIFO put there since from being written through or blocking the run. */
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK,
                  0666);
    struct stat st;
    if (fd < 0) {
        if (errno == ELOOP)
            snprintf(err, err_size, "--log: '%s' is a symbolic link: refusing to write "
                     "through it", path);
        else
            snprintf(err, err_size, "--log: cannot create '%s': %s", path, strerror(errno));
    } else if (fstat(fd, &st) != 0) {
        snprintf(err, err_size, "--log: '%s': %s", path, strerror(errno));
    } else if (!S_ISREG(st.st_mode)) {
        snprintf(err, err_size, "--log: '%s' is %s, not a regular file", path,
                 bp_file_kind(st.st_mode));
    } else {
        log->fd = fd;
    }
    if (log->fd < 0) {
        if (fd >= 0)
            close(fd);
        free_log(log);
        return NULL;
    }
    if (log->format == LOG_CSV && emit(log, format_header, NULL, err, err_size) != 0) {
        close(fd);
        free_log(log);
        return NULL;
    }
    return log;
}

int epoch_log_write(epoch_log *log, const bp_epoch_report *r, char *err, size_t err_size)
{
    return emit(log, log->format == LOG_CSV ? format_csv : format_jsonl, r, err, err_size);
}

int epoch_log_close(epoch_log *log, char *err, size_t err_size)
{
    if (!log)
        return 0;
    /* The records are already with the kernel; fsync is what makes the log outlast a crash
     * of the machine, as the summary does. */
    int rc = 0, e = 0;
    if (fsync(log->fd) != 0 && errno != EINVAL)
        rc = -1, e = errno;
    if (close(log->fd) != 0 && rc == 0)
        rc = -1, e = errno;
    if (rc != 0)
        snprintf(err, err_size, "--log: cannot write '%s': %s", log->path, strerror(e));
    free_log(log);
    return rc;
}
