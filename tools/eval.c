/*
 * eval.c - `backprop eval`: a saved model judged on one set of a data set (the test files, or
 * the training file's validation or training part, split as train splits it): accuracy, mean
 * cost and the confusion matrix, printed as a table and optionally written as JSON.
 */
#include "cli.h"
#include "log.h"
#include "options.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Above this many outputs a matrix of counts is megabytes and no table anyone reads: the
 * figures are still given, the matrix is not. */
enum { CONFUSION_MAX = 1024, TABLE_MAX = 64 };

typedef struct eval_options {
    model_args model;
    data_args data;
    output_args output;
    runtime_args runtime;
} eval_options;

static void eval_init(void *opts)
{
    eval_options *o = opts;
    *o = (eval_options){0};
    data_args_init(&o->data);
    o->data.data_required = 1;
    runtime_args_init(&o->runtime);
}

const command_line eval_line = {
    .name = "eval",
    .synopsis = "usage: backprop eval --model FILE --data mnist|fashion|DIR [options]\n",
    .about = "Judge a model saved by train --save on one set of a data set: its accuracy, its\n"
             "mean cost (the model's own cost function, unregularised) and the confusion matrix\n"
             "(rows: the true class, columns: the predicted one, the largest output).\n"
             "--summary-json writes model, data, set, count, correct, accuracy, cost and\n"
             "confusion.\n",
    .notes = "The images must have the shape the model was trained on and no label may exceed\n"
             "its outputs.\n"
             "exit status: 0 ok, 1 runtime failure (model, data, memory, files, output; a model\n"
             "and data that do not fit each other), 2 bad command line\n",
    .size = sizeof(eval_options),
    .init = eval_init,
    .uses = {{&model_group, offsetof(eval_options, model), 0},
             {&data_group, offsetof(eval_options, data), 1u << DATA_DATA | 1u << DATA_SET},
             {&output_group, offsetof(eval_options, output), 1u << OUTPUT_SUMMARY},
             {&runtime_group, offsetof(eval_options, runtime), 1u << RUNTIME_THREADS}},
};

void eval_usage(FILE *f) { print_usage(f, &eval_line); }

static void parse_eval_args(int argc, char **argv, eval_options *o)
{
    parse_command_line(&eval_line, o, argc, argv);
    if (!o->model.model)
        usage_error("--model: which model? (backprop eval --model FILE --data ...)");
    if (!o->data.data)
        usage_error("--data: which data? (mnist, fashion or a directory)");
}

typedef struct tally {
    const bp_dataset *ds;
    int n_out;
    size_t correct;
    size_t *confusion; /* n_out x n_out, row = the true class; NULL above CONFUSION_MAX */
} tally;

static int count_outputs(void *user, size_t first, int batch, const float *out, int n_out)
{
    tally *t = user;
    for (int j = 0; j < batch; j++) {
        int truth = bp_dataset_label(t->ds, first + (size_t)j);
        int guess = argmax(out + (size_t)j * n_out, n_out);
        t->correct += guess == truth;
        if (t->confusion)
            t->confusion[(size_t)truth * n_out + guess]++;
    }
    return 0;
}

static int digits_of(size_t v)
{
    int d = 1;
    while (v >= 10) {
        v /= 10;
        d++;
    }
    return d;
}

/* The names only when they say more than the column numbers do (MNIST's are the digits). */
static void print_class_legend(const char *names)
{
    if (!names)
        return;
    int k = 0, differs = 0;
    for (const char *p = names; *p; k++) {
        size_t len = strcspn(p, ",");
        char index[16];
        snprintf(index, sizeof index, "%d", k);
        differs |= len != strlen(index) || strncmp(p, index, len) != 0;
        p += len + (p[len] == ',');
    }
    if (!differs)
        return;
    fputs("classes:", stdout);
    k = 0;
    for (const char *p = names; *p; k++) {
        size_t len = strcspn(p, ",");
        printf("%s %d %.*s", k ? "," : "", k, (int)len, p);
        p += len + (p[len] == ',');
    }
    putchar('\n');
}

static void print_confusion(const tally *t)
{
    int k = t->n_out;
    size_t largest = 0;
    for (size_t i = 0; i < (size_t)k * k; i++)
        if (t->confusion[i] > largest)
            largest = t->confusion[i];
    int w = digits_of(largest);
    if (digits_of((size_t)k - 1) > w)
        w = digits_of((size_t)k - 1);
    printf("confusion matrix (rows: true class, columns: predicted class)\n%9s", "true\\pred");
    for (int j = 0; j < k; j++)
        printf("  %*d", w, j);
    putchar('\n');
    for (int i = 0; i < k; i++) {
        printf("%9d", i);
        for (int j = 0; j < k; j++)
            printf("  %*zu", w, t->confusion[(size_t)i * k + j]);
        putchar('\n');
    }
}

typedef struct eval_result {
    const eval_options *o;
    const char *data_dir;
    const tally *t;
    size_t count;
    double cost;
} eval_result;

static int write_eval_json(FILE *f, const void *arg)
{
    const eval_result *r = arg;
    fputs("{\n  \"model\": ", f);
    json_string(f, r->o->model.model);
    fputs(",\n  \"data\": ", f);
    json_string(f, r->data_dir);
    fputs(",\n  \"set\": ", f);
    json_string(f, set_name(r->o->data.set));
    fprintf(f, ",\n  \"count\": %zu,\n  \"correct\": %zu,\n  \"accuracy\": ", r->count,
            r->t->correct);
    json_double(f, (double)r->t->correct / (double)r->count);
    fputs(",\n  \"cost\": ", f);
    json_double(f, r->cost);
    fputs(",\n  \"confusion\": ", f);
    if (!r->t->confusion) {
        fputs("null\n}\n", f);
        return 0;
    }
    int k = r->t->n_out;
    fputs("[", f);
    for (int i = 0; i < k; i++) {
        fputs(i ? ",\n    [" : "\n    [", f);
        for (int j = 0; j < k; j++)
            fprintf(f, "%s%zu", j ? ", " : "", r->t->confusion[(size_t)i * k + j]);
        fputs("]", f);
    }
    fputs("\n  ]\n}\n", f);
    return 0;
}

int cmd_eval(int argc, char **argv)
{
    eval_options o;
    parse_eval_args(argc, argv, &o);

    bp_status st;
    data_dir dd;
    if (o.runtime.threads > 0 && (st = bp_set_threads(o.runtime.threads)) != BP_OK) {
        print_lib_error(st);
        return 1;
    }
    if (resolve_data_dir(o.data.data, &dd) != 0)
        return 1;
    /* JSON strings are Unicode: a summary that misnames its model or data is worse than none. */
    if (o.output.summary && (!is_utf8(o.model.model) || !is_utf8(dd.path))) {
        print_error("--summary-json: the %s '%s' is not valid UTF-8, which a JSON string cannot "
                    "hold; rename it or reach it through a link with a UTF-8 name",
                    is_utf8(o.model.model) ? "data directory" : "model file",
                    is_utf8(o.model.model) ? dd.path : o.model.model);
        return EXIT_USAGE;
    }
    if (o.output.summary && check_output_path("--summary-json", o.output.summary) != 0)
        return 1;

    int rc = 1;
    bp_net *net = NULL;
    bp_model_meta meta;
    data d = {0};
    tally t = {0};
    const bp_dataset *ds;
    if (open_model(o.model.model, 0, FORWARD_CHUNK, &net, &meta) != 0 ||
        load_set_for_model(o.data.data, &dd, o.data.set, net, &meta, o.model.model, &d, &ds) != 0)
        goto out;

    t.ds = ds;
    t.n_out = bp_net_size(net, bp_net_layers(net));
    if (t.n_out <= CONFUSION_MAX &&
        !(t.confusion = calloc((size_t)t.n_out * (size_t)t.n_out, sizeof *t.confusion))) {
        print_error("%s", strerror(ENOMEM));
        goto out;
    }
    double cost;
    /* In bp_evaluate's chunks, so the count is the one train printed for this net. */
    if (forward_set(net, ds, SIZE_MAX, FORWARD_CHUNK, count_outputs, &t) != 0)
        goto out;
    if ((st = bp_evaluate(net, ds, NULL, &cost)) != BP_OK) {
        print_lib_error(st);
        goto out;
    }
    size_t n = bp_dataset_count(ds);
    printf("model %s  layers %s  inputs %d  cost %s\n", o.model.model, bp_net_spec(net),
           bp_net_size(net, 0), bp_cost_name(bp_net_cost(net)));
    printf("data %s: %s set, %zu %s\n", dd.path, set_name(o.data.set), n,
           plural((long)n, "sample", "samples"));
    printf("accuracy %.2f%% (%zu/%zu)  cost %.4f\n", 100.0 * (double)t.correct / (double)n,
           t.correct, n, cost);
    if (t.confusion && t.n_out <= TABLE_MAX) {
        print_confusion(&t);
        print_class_legend(meta.class_names);
    } else {
        printf("confusion matrix: %d x %d, %s\n", t.n_out, t.n_out,
               t.confusion ? "too wide to print (--summary-json has it)"
                           : "not counted for so many outputs");
    }
    if (stdout_failed())
        goto out;
    if (o.output.summary) {
        eval_result r = {.o = &o, .data_dir = dd.path, .t = &t, .count = n, .cost = cost};
        if (write_output_file("--summary-json", o.output.summary, write_eval_json, &r) != 0)
            goto out;
    }
    rc = 0;

out:
    free(t.confusion);
    data_free(&d);
    bp_net_free(net);
    return rc;
}
