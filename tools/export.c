/*
 * export.c - `backprop export`: a model file as an ONNX model, for runtimes that do not know
 * backprop (ONNX Runtime, OpenVINO, TensorRT ...). The library writes it (bp_net_export_onnx);
 * this command opens the model, checks the output path before the work and reports.
 */
#include "cli.h"
#include "options.h"

#include <stddef.h>
#include <stdio.h>

typedef struct export_options {
    model_args model;
    const char *onnx;
} export_options;

enum { EXPORT_ONNX };

static const opt_spec export_opts[] = {
    {"onnx", EXPORT_ONNX, "FILE", "the ONNX model to write, replacing FILE whole\n"
     "(checked before the work)", 0, 0},
    {0},
};

static void export_parse(void *target, const opt_spec *spec, const char *flag,
                         const char *value)
{
    (void)spec;
    ((export_options *)target)->onnx = parse_path(flag, value);
}

static void export_describe(const void *target, const opt_spec *spec, opt_text *t)
{
    (void)spec;
    const export_options *o = target;
    snprintf(t->dflt, sizeof t->dflt, "%s", o->onnx ? o->onnx : "required");
}

static const opt_group export_group = {"export", export_opts, export_parse, export_describe};

static void export_init(void *opts) { *(export_options *)opts = (export_options){0}; }

const command_line export_line = {
    .name = "export",
    .synopsis = "usage: backprop export --model FILE --onnx OUT.onnx\n",
    .about = "Write a model saved by train --save as an ONNX model (IR version 8, operator set\n"
             "13) for other runtimes: input \"input\" and output \"output\", float [N, width]\n"
             "with the batch N free; a Gemm and its activation per dense layer, a Conv and\n"
             "its activation per conv layer, MaxPool or AveragePool per pooling layer (with a\n"
             "Reshape to [N, C, H, W] before the first of these and a Flatten after the\n"
             "last), BatchNormalization with the running statistics per batchnorm layer, an\n"
             "Identity per dropout layer; the parameters under the model file's names. The\n"
             "graph takes the inputs already scaled (pixel bytes times input_scale, 1/255 for\n"
             "IDX images): the scale, the image shape, the class names and the architecture\n"
             "are in the model's metadata_props. docs/FORMAT.md (\"ONNX export\") describes the graph.\n",
    .notes = "A build without ONNX support (protobuf-c and libonnx-dev's onnx.proto, meson\n"
             "option onnx) has the command but refuses the export, saying what to install.\n"
             "exit status: 0 ok, 1 runtime failure (model file, memory, output file, no ONNX\n"
             "support), 2 bad command line\n",
    .size = sizeof(export_options),
    .init = export_init,
    .uses = {{&model_group, offsetof(export_options, model), 0}, {&export_group, 0, 0}},
};

void export_usage(FILE *f) { print_usage(f, &export_line); }

static void parse_export_args(int argc, char **argv, export_options *o)
{
    parse_command_line(&export_line, o, argc, argv);
    if (!o->model.model)
        usage_error("--model: which model? (backprop export --model FILE --onnx OUT.onnx)");
    if (!o->onnx)
        usage_error("--onnx: where to? (backprop export --model FILE --onnx OUT.onnx)");
}

int cmd_export(int argc, char **argv)
{
    export_options o;
    parse_export_args(argc, argv, &o);
    if (check_output_path("--onnx", o.onnx) != 0)
        return 1;
    bp_net *net;
    bp_model_meta meta;
    /* No pass runs: one thread, buffers for one column. */
    if (open_model(o.model.model, 1, 1, &net, &meta) != 0)
        return 1;
    critical c;
    critical_begin(&c); /* the temporary file exists only inside the library's write */
    bp_status st = bp_net_export_onnx(net, o.onnx, &meta);
    critical_end(&c);
    if (st != BP_OK) {
        print_error("--onnx: %s", bp_last_error());
        bp_net_free(net);
        return 1;
    }
    printf("%s: ONNX model of %s (%s), input [N, %d], output [N, %d]\n", o.onnx, o.model.model,
           bp_net_spec(net), bp_net_size(net, 0), bp_net_size(net, bp_net_layers(net)));
    bp_net_free(net);
    return 0;
}
