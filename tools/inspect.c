/*
 * inspect.c - `backprop inspect`: what a model file holds, read through the library: the
 * architecture, the parameters per layer and in all, the metadata, and the singular values of
 * every dense weight (how well conditioned each layer's map is). As text, or with --json as one
 * JSON object on standard output.
 */
#include "cli.h"
#include "log.h"
#include "options.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct inspect_options {
    model_args model;
    output_args output;
} inspect_options;

static void inspect_init(void *opts) { *(inspect_options *)opts = (inspect_options){0}; }

const command_line inspect_line = {
    .name = "inspect",
    .synopsis = "usage: backprop inspect --model FILE [--json] [--summary-json FILE]\n",
    .about = "What a model file holds: the architecture (the layers as train's spec strings, the\n"
             "input width, the cost), the parameters of each layer and in all, the metadata\n"
             "(input shape and scale, class names, the training configuration) and, for every\n"
             "dense weight, its largest and smallest singular values and their ratio, the\n"
             "condition number (LAPACK's sgesdd). --json and --summary-json give the same JSON\n"
             "object.\n",
    .notes = "exit status: 0 ok, 1 runtime failure (model file, memory, output), 2 bad command "
             "line\n",
    .size = sizeof(inspect_options),
    .init = inspect_init,
    .uses = {{&model_group, offsetof(inspect_options, model), 0},
             {&output_group, offsetof(inspect_options, output),
              1u << OUTPUT_JSON | 1u << OUTPUT_SUMMARY}},
};

void inspect_usage(FILE *f) { print_usage(f, &inspect_line); }

static void parse_inspect_args(int argc, char **argv, inspect_options *o)
{
    parse_command_line(&inspect_line, o, argc, argv);
    if (!o->model.model)
        usage_error("--model: which model? (backprop inspect --model FILE)");
}

/* What is printed, gathered first: the spectra are the slow part and may fail. */
typedef struct layer_info {
    const char *spec; /* points into specs */
    size_t parameters;
} layer_info;

typedef struct weight_info {
    bp_tensor_info t;
    bp_spectrum s;
} weight_info;

typedef struct model_info {
    const char *path;
    bp_net *net;
    bp_model_meta meta;
    char *specs;        /* bp_net_spec, cut at the commas between layers */
    layer_info *layers; /* bp_net_layers of them, or NULL when the spec does not split so */
    int n_layers;
    size_t parameters, buffers;
    weight_info *weights;
    int n_weights;
} model_info;

static void model_info_free(model_info *m)
{
    free(m->specs);
    free(m->layers);
    free(m->weights);
    bp_net_free(m->net);
}

static int gather(model_info *m)
{
    bp_net *net = m->net;
    m->n_layers = bp_net_layers(net);
    m->specs = strdup(bp_net_spec(net));
    m->layers = calloc((size_t)m->n_layers, sizeof *m->layers);
    int n_tensors = bp_net_tensor_count(net), n_buffers = bp_net_buffer_count(net);
    m->weights = calloc((size_t)(n_tensors > 0 ? n_tensors : 1), sizeof *m->weights);
    if (!m->specs || !m->layers || !m->weights) {
        print_error("%s", strerror(ENOMEM));
        return -1;
    }
    /* One spec string a layer position, as the tensor names count them; a spec that does not
     * cut into exactly that many is shown whole only. */
    int entries = 1;
    for (const char *p = m->specs; *p; p++)
        entries += *p == ',';
    if (entries == m->n_layers) {
        char *p = m->specs;
        for (int k = 0; k < m->n_layers; k++) {
            m->layers[k].spec = p;
            p += strcspn(p, ",");
            if (*p)
                *p++ = '\0';
        }
    }
    bp_status st;
    for (int i = 0; i < n_tensors; i++) {
        bp_tensor_info t;
        if ((st = bp_net_tensor(net, i, &t)) != BP_OK) {
            print_lib_error(st);
            return -1;
        }
        if (t.layer >= 1 && t.layer <= m->n_layers)
            m->layers[t.layer - 1].parameters += t.count;
        m->parameters += t.count;
        if (t.role != BP_ROLE_WEIGHT || t.ndim != 2)
            continue;
        weight_info *w = &m->weights[m->n_weights++];
        w->t = t;
        if ((st = bp_net_weight_spectrum(net, i, &w->s, NULL, 0)) != BP_OK) {
            print_lib_error(st);
            return -1;
        }
    }
    for (int i = 0; i < n_buffers; i++) {
        bp_tensor_info t;
        if ((st = bp_net_buffer(net, i, &t)) != BP_OK) {
            print_lib_error(st);
            return -1;
        }
        m->buffers += t.count;
    }
    return 0;
}

static void shape_text(const bp_tensor_info *t, char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int d = 0; d < t->ndim && used < size; d++) {
        int w = snprintf(buf + used, size - used, "%s%lld", d ? "x" : "", (long long)t->shape[d]);
        if (w < 0)
            break;
        used += (size_t)w;
    }
}

/* ---- text -------------------------------------------------------------------------------- */

static void print_text(const model_info *m)
{
    const bp_model_meta *meta = &m->meta;
    bp_net *net = m->net;
    int n_out = bp_net_size(net, bp_net_layers(net));
    printf("model %s\n", m->path);
    printf("architecture  %s\n", bp_net_spec(net));
    printf("input         %d", bp_net_size(net, 0));
    if (meta->input_rows > 0)
        printf(" (%dx%d images)", meta->input_rows, meta->input_cols);
    if (meta->input_scale > 0.0f)
        printf(", bytes scaled by %.9g", (double)meta->input_scale);
    printf("\noutputs       %d\n", n_out);
    printf("cost          %s\n", bp_cost_name(bp_net_cost(net)));
    printf("classes       %s\n", meta->class_names ? meta->class_names : "(not recorded)");

    printf("\n%-5s  %-32s  %12s\n", "layer", "spec", "parameters");
    for (int i = 0; i < m->n_layers; i++)
        printf("%5d  %-32s  %12zu\n", i, m->layers[i].spec ? m->layers[i].spec : "",
               m->layers[i].parameters);
    printf("%-5s  %-32s  %12zu\n", "total", "", m->parameters);
    if (m->buffers)
        printf("(and %zu floats of running statistics, not trained)\n", m->buffers);

    if (m->n_weights) {
        printf("\n%-20s  %-12s  %12s  %12s  %12s\n", "weight", "shape", "largest sv",
               "smallest sv", "condition");
        for (int i = 0; i < m->n_weights; i++) {
            const weight_info *w = &m->weights[i];
            char shape[64];
            shape_text(&w->t, shape, sizeof shape);
            printf("%-20s  %-12s  %12.6g  %12.6g  %12.6g\n", w->t.name, shape, w->s.largest,
                   w->s.smallest, w->s.condition);
        }
    }
    printf("\ntraining configuration%s\n", meta->training ? ":" : ": (not recorded)");
    if (meta->training)
        printf("%s\n", meta->training);
}

/* ---- JSON -------------------------------------------------------------------------------- */

static void json_names(FILE *f, const char *list)
{
    fputc('[', f);
    for (const char *p = list; *p;) {
        size_t len = strcspn(p, ",");
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)(len < sizeof name ? len : sizeof name - 1), p);
        if (p != list)
            fputs(", ", f);
        json_string(f, name);
        p += len + (p[len] == ',');
    }
    fputc(']', f);
}

static void json_shape(FILE *f, const bp_tensor_info *t)
{
    fputc('[', f);
    for (int d = 0; d < t->ndim; d++)
        fprintf(f, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
    fputc(']', f);
}

static void print_json(FILE *f, const model_info *m)
{
    const bp_model_meta *meta = &m->meta;
    bp_net *net = m->net;
    fputs("{\n  \"model\": ", f);
    json_string(f, m->path);
    fputs(",\n  \"spec\": ", f);
    json_string(f, bp_net_spec(net));
    fprintf(f, ",\n  \"input_width\": %d,\n  \"outputs\": %d,\n  \"cost\": ", bp_net_size(net, 0),
            bp_net_size(net, bp_net_layers(net)));
    json_string(f, bp_cost_name(bp_net_cost(net)));
    fputs(",\n  \"layers\": [", f);
    for (int i = 0; i < m->n_layers; i++) {
        fprintf(f, "%s\n    {\"index\": %d, \"spec\": ", i ? "," : "", i);
        if (m->layers[i].spec)
            json_string(f, m->layers[i].spec);
        else
            fputs("null", f);
        fprintf(f, ", \"parameters\": %zu, \"tensors\": [", m->layers[i].parameters);
        int first = 1;
        for (int k = 0; k < bp_net_tensor_count(net) + bp_net_buffer_count(net); k++) {
            bp_tensor_info t;
            int is_param = k < bp_net_tensor_count(net);
            if ((is_param ? bp_net_tensor(net, k, &t)
                          : bp_net_buffer(net, k - bp_net_tensor_count(net), &t)) != BP_OK ||
                t.layer != i + 1)
                continue;
            fputs(first ? "" : ", ", f);
            first = 0;
            fputs("{\"name\": ", f);
            json_string(f, t.name);
            fputs(", \"role\": ", f);
            json_string(f, bp_tensor_role_name(t.role));
            fputs(", \"shape\": ", f);
            json_shape(f, &t);
            fprintf(f, ", \"trained\": %s}", is_param ? "true" : "false");
        }
        fputs("]}", f);
    }
    fprintf(f, "\n  ],\n  \"parameters\": %zu,\n  \"buffers\": %zu,\n  \"metadata\": {\n",
            m->parameters, m->buffers);
    if (meta->input_rows > 0)
        fprintf(f, "    \"input_rows\": %d,\n    \"input_cols\": %d,\n", meta->input_rows,
                meta->input_cols);
    else
        fputs("    \"input_rows\": null,\n    \"input_cols\": null,\n", f);
    fputs("    \"input_scale\": ", f);
    if (meta->input_scale > 0.0f)
        json_float(f, meta->input_scale);
    else
        fputs("null", f);
    fputs(",\n    \"class_names\": ", f);
    if (meta->class_names)
        json_names(f, meta->class_names);
    else
        fputs("null", f);
    /* bp_model_load has parsed the text as a JSON object (cJSON), so it goes in as it is. */
    fprintf(f, ",\n    \"training\": %s\n  },\n  \"spectra\": [",
            meta->training ? meta->training : "null");
    for (int i = 0; i < m->n_weights; i++) {
        const weight_info *w = &m->weights[i];
        fputs(i ? ",\n    {\"tensor\": " : "\n    {\"tensor\": ", f);
        json_string(f, w->t.name);
        fputs(", \"shape\": ", f);
        json_shape(f, &w->t);
        fputs(", \"largest\": ", f);
        json_double(f, w->s.largest);
        fputs(", \"smallest\": ", f);
        json_double(f, w->s.smallest);
        fputs(", \"condition\": ", f); /* null when the smallest is 0: JSON has no infinity */
        json_double(f, w->s.condition);
        fputc('}', f);
    }
    fputs(m->n_weights ? "\n  ]\n}\n" : "]\n}\n", f);
}

static int write_inspect_json(FILE *f, const void *arg)
{
    print_json(f, arg);
    return 0;
}

int cmd_inspect(int argc, char **argv)
{
    inspect_options o;
    parse_inspect_args(argc, argv, &o);
    if ((o.output.json || o.output.summary) && !is_utf8(o.model.model)) {
        print_error("%s: the model file '%s' is not valid UTF-8, which a JSON string cannot "
                    "hold; rename it or reach it through a link with a UTF-8 name",
                    o.output.json ? "--json" : "--summary-json", o.model.model);
        return EXIT_USAGE;
    }
    if (o.output.summary && check_output_path("--summary-json", o.output.summary) != 0)
        return 1;
    model_info m = {.path = o.model.model};
    int rc = 1;
    /* One thread: the spectra are LAPACK calls on small matrices, and nothing else computes. */
    if (open_model(o.model.model, 1, 1, &m.net, &m.meta) != 0 || gather(&m) != 0)
        goto out;
    if (o.output.json)
        print_json(stdout, &m);
    else
        print_text(&m);
    if (stdout_failed() ||
        (o.output.summary &&
         write_output_file("--summary-json", o.output.summary, write_inspect_json, &m) != 0))
        goto out;
    rc = 0;
out:
    model_info_free(&m);
    return rc;
}
