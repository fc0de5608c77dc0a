/*
 * plot_log.c - `backprop plot`'s reading of training logs: the JSON Lines and CSV files that
 * `backprop train --log` writes (tools/log.c), parsed with cJSON; which fields the --metric
 * names stand for; the points of a curve. Every complaint names the file and the line.
 */
#include "cli.h"
#include "log.h"
#include "plot.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- records ------------------------------------------------------------------------- */

/* Epochs beyond this are not a count of passes over a data set but a corrupt field. */
#define MAX_EPOCH 100000000.0

static int add_record(plot_run *run, cJSON *obj, long line, size_t *cap)
{
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(obj, "epoch");
    const char *why = NULL;
    if (!e)
        why = "no \"epoch\" in the record";
    else if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble > MAX_EPOCH ||
             e->valuedouble != floor(e->valuedouble))
        why = "\"epoch\" is not a whole number >= 0";
    if (why) {
        print_error("%s:%ld: %s", run->path, line, why);
        cJSON_Delete(obj);
        return -1;
    }
    if ((size_t)run->n_records == *cap) {
        size_t n = *cap ? 2 * *cap : 64;
        plot_record *r = n < INT32_MAX ? realloc(run->records, n * sizeof *r) : NULL;
        if (!r) {
            print_error("%s: %s", run->path, strerror(ENOMEM));
            cJSON_Delete(obj);
            return -1;
        }
        run->records = r;
        *cap = n;
    }
    run->records[run->n_records++] = (plot_record){obj, line, (long)e->valuedouble};
    return 0;
}

/* The line without its end (\n, \r\n) and trailing blanks; 0 when nothing is left. */
static size_t trimmed_length(const char *line, size_t len)
{
    while (len > 0 && strchr(" \t\r\n", line[len - 1]))
        len--;
    return len;
}

static int load_jsonl(FILE *f, plot_run *run)
{
    char *line = NULL;
    size_t line_cap = 0, cap = 0;
    ssize_t got;
    int rc = 0;
    for (long lineno = 1; rc == 0 && (got = getline(&line, &line_cap, f)) != -1; lineno++) {
        size_t len = trimmed_length(line, (size_t)got);
        if (len == 0)
            continue; /* blank lines, as at the end of a file written by hand */
        const char *end = NULL;
        cJSON *obj = cJSON_ParseWithLengthOpts(line, len, &end, 0);
        if (!obj) {
            long column = end ? (long)(end - line) + 1 : 1;
            print_error("%s:%ld: not JSON (column %ld)", run->path, lineno, column);
            rc = -1;
        } else if ((size_t)(end - line) < len || !cJSON_IsObject(obj)) {
            print_error("%s:%ld: %s", run->path, lineno,
                        cJSON_IsObject(obj) ? "more than one JSON value on the line"
                                            : "not a JSON object");
            cJSON_Delete(obj);
            rc = -1;
        } else {
            rc = add_record(run, obj, lineno, &cap);
        }
    }
    free(line);
    return rc;
}

/* Cut a CSV line (RFC 4180 cells, quotes doubled inside quoted ones) into cells in place.
 * The count, or -1 with *why set. */
static int split_csv(char *s, char **cells, int max, const char **why)
{
    int n = 0;
    char *p = s;
    for (;;) {
        if (n == max) {
            *why = "more cells than the header has";
            return -1;
        }
        char *out = p;
        cells[n++] = out;
        if (*p == '"') {
            for (p++;; p++) {
                if (!*p) {
                    *why = "a quoted cell that does not end";
                    return -1;
                }
                if (*p == '"' && p[1] != '"')
                    break;
                *out++ = *p;
                p += *p == '"';
            }
            p++;
            if (*p && *p != ',') {
                *why = "text after a closing quote";
                return -1;
            }
        } else {
            while (*p && *p != ',')
                *out++ = *p++;
        }
        char next = *p;
        *out = '\0';
        if (next != ',')
            return n;
        p++;
    }
}

/* A CSV cell as the JSON value the JSON Lines log has for it: empty (no validation set),
 * nan and infinities are null; NULL for a cell that is no number. */
static cJSON *csv_value(const char *cell)
{
    if (!*cell || strcmp(cell, "nan") == 0 || strcmp(cell, "inf") == 0 ||
        strcmp(cell, "-inf") == 0)
        return cJSON_CreateNull();
    if (!is_decimal(cell))
        return NULL;
    return cJSON_CreateNumber(strtod(cell, NULL));
}

static const char norm_prefix[] = "grad_norm:";

/* One row as a record: fields by the header's names, grad_norm:NAME under "grad_norms". */
static cJSON *csv_record(char **header, char **cells, int n, const char *path, long line)
{
    cJSON *obj = cJSON_CreateObject(), *norms = NULL;
    for (int c = 0; obj && c < n; c++) {
        cJSON *v = csv_value(cells[c]);
        if (!v) {
            print_error("%s:%ld: %s: '%s' is not a number", path, line, header[c], cells[c]);
            cJSON_Delete(obj);
            return NULL;
        }
        const char *name = header[c];
        cJSON *into = obj;
        if (strncmp(name, norm_prefix, sizeof norm_prefix - 1) == 0) {
            if (!norms && !cJSON_AddItemToObject(obj, "grad_norms", norms = cJSON_CreateObject()))
                norms = NULL;
            into = norms;
            name += sizeof norm_prefix - 1;
        }
        if (!into || !cJSON_AddItemToObject(into, name, v)) {
            cJSON_Delete(v);
            cJSON_Delete(obj);
            obj = NULL;
        }
    }
    if (!obj)
        print_error("%s: %s", path, strerror(ENOMEM));
    return obj;
}

static int load_csv_rows(FILE *f, plot_run *run, char **header, int n_cols, char **cells)
{
    char *line = NULL;
    size_t line_cap = 0, cap = 0;
    ssize_t got;
    int rc = 0;
    for (long lineno = 2; rc == 0 && (got = getline(&line, &line_cap, f)) != -1; lineno++) {
        size_t len = trimmed_length(line, (size_t)got);
        if (len == 0)
            continue;
        line[len] = '\0';
        const char *why = NULL;
        int n = split_csv(line, cells, n_cols, &why);
        if (n >= 0 && n != n_cols)
            why = "fewer cells than the header has";
        if (why) {
            print_error("%s:%ld: %s (%d columns)", run->path, lineno, why, n_cols);
            rc = -1;
            break;
        }
        cJSON *obj = csv_record(header, cells, n_cols, run->path, lineno);
        rc = obj ? add_record(run, obj, lineno, &cap) : -1;
    }
    free(line);
    return rc;
}

static int load_csv(FILE *f, plot_run *run)
{
    char *head = NULL;
    size_t cap = 0;
    ssize_t got = getline(&head, &cap, f);
    size_t len = got > 0 ? trimmed_length(head, (size_t)got) : 0;
    if (len == 0) {
        print_error("%s:1: no header line (a CSV log starts with its column names)", run->path);
        free(head);
        return -1;
    }
    head[len] = '\0';
    int max = 1;
    for (const char *p = head; *p; p++)
        max += *p == ',';
    char **header = calloc((size_t)max, sizeof *header);
    char **cells = calloc((size_t)max, sizeof *cells);
    const char *why = NULL;
    int n = -1, rc = -1;
    if (!header || !cells)
        print_error("%s: %s", run->path, strerror(ENOMEM));
    else if ((n = split_csv(head, header, max, &why)) < 0)
        print_error("%s:1: %s", run->path, why);
    else
        rc = load_csv_rows(f, run, header, n, cells);
    free(cells);
    free(header);
    free(head);
    return rc;
}

static int by_epoch_then_line(const void *a, const void *b)
{
    const plot_record *x = a, *y = b;
    if (x->epoch != y->epoch)
        return x->epoch < y->epoch ? -1 : 1;
    return (x->line > y->line) - (x->line < y->line);
}

/* A run rolled back (train --on-diverge rollback) logs an epoch again; the later record is
 * the one the run went on from. */
static void keep_last_of_each_epoch(plot_run *run)
{
    qsort(run->records, (size_t)run->n_records, sizeof *run->records, by_epoch_then_line);
    int kept = 0;
    for (int i = 0; i < run->n_records; i++) {
        if (i + 1 < run->n_records && run->records[i + 1].epoch == run->records[i].epoch) {
            cJSON_Delete(run->records[i].obj);
            continue;
        }
        run->records[kept++] = run->records[i];
    }
    run->n_records = kept;
}

/* The file's name without its folders: what a legend calls the run. Bytes that are not UTF-8
 * (cairo's text takes nothing else) become '?'. */
void plot_file_label(const char *path, char *label, size_t size)
{
    const char *slash = strrchr(path, '/');
    snprintf(label, size, "%s", slash && slash[1] ? slash + 1 : path);
    if (!is_utf8(label))
        for (char *p = label; *p; p++)
            if ((unsigned char)*p >= 0x80)
                *p = '?';
}

int plot_run_load(const char *path, plot_run *run)
{
    *run = (plot_run){.path = path};
    plot_file_label(path, run->label, sizeof run->label);
    char why[PATH_BUF + 256];
    if (describe_node(path, 0, why, sizeof why) != 0) {
        print_error("'%s'%s", path, why);
        return -1;
    }
    FILE *f = fopen(path, "r");
    if (!f) {
        print_error("cannot open '%s': %s", path, strerror(errno));
        return -1;
    }
    int rc = log_format_of(path) == LOG_CSV ? load_csv(f, run) : load_jsonl(f, run);
    if (rc == 0 && ferror(f)) {
        print_error("cannot read '%s': %s", path, strerror(errno));
        rc = -1;
    }
    fclose(f);
    if (rc == 0 && run->n_records == 0) {
        print_error("%s: no epochs in the log (an empty file?)", path);
        rc = -1;
    }
    if (rc != 0) {
        plot_run_free(run);
        return -1;
    }
    keep_last_of_each_epoch(run);
    return 0;
}

void plot_run_free(plot_run *run)
{
    for (int i = 0; i < run->n_records; i++)
        cJSON_Delete(run->records[i].obj);
    free(run->records);
    run->records = NULL;
    run->n_records = 0;
}

/* ---- metrics ---------------------------------------------------------------------------- */

typedef struct field_metric {
    const char *name, *title;
    const char *keys[PLOT_MAX_SERIES]; /* the second, when there is one, is validation's */
} field_metric;

static const field_metric field_metrics[] = {
    {"cost", "cost", {"train_cost", "validation_cost"}},
    {"accuracy", "validation accuracy", {"validation_accuracy", NULL}},
    {"train_cost", "training cost", {"train_cost", NULL}},
    {"validation_cost", "validation cost", {"validation_cost", NULL}},
    {"validation_accuracy", "validation accuracy", {"validation_accuracy", NULL}},
    {"eta", "learning rate (eta)", {"eta", NULL}},
    {"seconds", "seconds per epoch", {"seconds", NULL}},
    {"samples_per_second", "samples per second", {"samples_per_second", NULL}},
};
enum { N_FIELD_METRICS = sizeof field_metrics / sizeof *field_metrics };

static const field_metric *find_field_metric(const char *name)
{
    for (int i = 0; i < N_FIELD_METRICS; i++)
        if (strcmp(name, field_metrics[i].name) == 0)
            return &field_metrics[i];
    return NULL;
}

/* The "grad_norms" object of a run's first record that has one, or NULL. */
static const cJSON *first_norms(const plot_run *run)
{
    for (int i = 0; i < run->n_records; i++) {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(run->records[i].obj, "grad_norms");
        if (cJSON_IsObject(n))
            return n;
    }
    return NULL;
}

static int any_run_has_norm(const plot_run *runs, int n_runs, const char *tensor)
{
    for (int r = 0; r < n_runs; r++) {
        const cJSON *norms = first_norms(&runs[r]);
        if (norms && cJSON_GetObjectItemCaseSensitive(norms, tensor))
            return 1;
    }
    return 0;
}

_Noreturn static void unknown_metric(const char *name, const plot_run *runs, int n_runs)
{
    char fields[512] = "", tensors[1024] = "";
    size_t used = 0;
    for (int i = 0; i < N_FIELD_METRICS && used < sizeof fields; i++)
        used += (size_t)snprintf(fields + used, sizeof fields - used, "%s%s", i ? ", " : "",
                                 field_metrics[i].name);
    const cJSON *norms = NULL;
    for (int r = 0; r < n_runs && !norms; r++)
        norms = first_norms(&runs[r]);
    used = 0;
    for (const cJSON *t = norms ? norms->child : NULL; t && used < sizeof tensors; t = t->next)
        used += (size_t)snprintf(tensors + used, sizeof tensors - used, "%s%s",
                                 used ? ", " : "", t->string);
    usage_error("--metric: unknown metric '%s' (one of %s, or a tensor's name for its gradient "
                "norm: %s)", name, fields,
                norms ? tensors : "none in these logs, which were written without norms");
}

static void norm_panel(const char *tensor, plot_panel *p)
{
    *p = (plot_panel){.n_series = 1};
    snprintf(p->title, sizeof p->title, "gradient norm of %s", tensor);
    snprintf(p->series[0].key, sizeof p->series[0].key, "%s", tensor);
    p->series[0].is_norm = 1;
}

int plot_panels(const plot_options *o, const plot_run *runs, int n_runs,
                plot_panel panels[PLOT_MAX_PANELS])
{
    static const char *const defaults[] = {"cost", "accuracy"};
    int n = o->n_metrics ? o->n_metrics : 2;
    for (int i = 0; i < n; i++) {
        const char *name = o->n_metrics ? o->metrics[i] : defaults[i];
        const field_metric *m = find_field_metric(name);
        if (!m) {
            const char *tensor = name;
            if (strncmp(tensor, norm_prefix, sizeof norm_prefix - 1) == 0)
                tensor += sizeof norm_prefix - 1;
            if (!any_run_has_norm(runs, n_runs, tensor))
                unknown_metric(name, runs, n_runs);
            norm_panel(tensor, &panels[i]);
            continue;
        }
        plot_panel *p = &panels[i];
        *p = (plot_panel){.n_series = m->keys[1] ? 2 : 1};
        snprintf(p->title, sizeof p->title, "%s", m->title);
        for (int s = 0; s < p->n_series; s++) {
            snprintf(p->series[s].key, sizeof p->series[s].key, "%s", m->keys[s]);
            p->series[s].dashed = s == 1;
            p->series[s].role = p->n_series == 1 ? NULL : s == 0 ? "training" : "validation";
        }
    }
    return n;
}

/* ---- points ----------------------------------------------------------------------------- */

static const cJSON *series_value(const plot_record *r, const plot_series *s)
{
    const cJSON *in = s->is_norm ? cJSON_GetObjectItemCaseSensitive(r->obj, "grad_norms")
                                 : r->obj;
    return cJSON_GetObjectItemCaseSensitive(in, s->key);
}

int plot_points_get(const plot_run *run, const plot_series *s, plot_points *p)
{
    *p = (plot_points){0};
    size_t n = (size_t)run->n_records;
    p->x = malloc(n * sizeof *p->x);
    p->y = malloc(n * sizeof *p->y);
    if (!p->x || !p->y) {
        print_error("%s: %s", run->path, strerror(ENOMEM));
        plot_points_free(p);
        return -1;
    }
    int numbers = 0;
    for (int i = 0; i < run->n_records; i++) {
        const plot_record *r = &run->records[i];
        const cJSON *v = series_value(r, s);
        if (!v || !(cJSON_IsNumber(v) || cJSON_IsNull(v))) {
            print_error("%s:%ld: %s%s%s", run->path, r->line,
                        v ? "not a number: " : s->is_norm ? "no gradient norm of " : "no field ",
                        s->key, !v && s->is_norm ? " (was it trained with --norm-samples?)" : "");
            plot_points_free(p);
            return -1;
        }
        p->x[i] = (double)r->epoch;
        p->y[i] = cJSON_IsNumber(v) && isfinite(v->valuedouble) ? v->valuedouble : NAN;
        numbers += !isnan(p->y[i]);
    }
    p->n = run->n_records;
    if (numbers == 0) {
        print_error("%s: %s is null in every record: nothing to draw", run->path, s->key);
        plot_points_free(p);
        return -1;
    }
    return 0;
}

void plot_points_free(plot_points *p)
{
    free(p->x);
    free(p->y);
    *p = (plot_points){0};
}
