/*
 * predict.c - `backprop predict`: a saved model's outputs, as CSV, for the samples of a data
 * set (index, label, predicted class, the output vector) or for binary PGM images (file,
 * predicted class, the output vector), to standard output or, replaced atomically, a file.
 */
#include "cli.h"
#include "log.h"
#include "options.h"

#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct predict_options {
    model_args model;
    data_args data;
    output_args output;
    runtime_args runtime;
    char **images;
    int n_images;
} predict_options;

static void predict_init(void *opts)
{
    predict_options *o = opts;
    *o = (predict_options){0};
    data_args_init(&o->data);
    runtime_args_init(&o->runtime);
    o->output.out_default = "standard output";
}

const command_line predict_line = {
    .name = "predict",
    .synopsis = "usage: backprop predict --model FILE --data mnist|fashion|DIR [options]\n"
                "       backprop predict --model FILE [options] IMAGE.pgm ...\n",
    .about =
        "A model's outputs as CSV. For a data set (--data): one row per sample with the header\n"
        "index,label,predicted,out0,...,outK-1 (index within the set, its label, the largest\n"
        "output's index, the K outputs). For images: file,predicted,out0,...,outK-1, one row\n"
        "per image. An image is a binary PGM (P5) with maxval 255 and the model's input shape\n"
        "(its training images', 28x28 for MNIST); its bytes are scaled by the model's input\n"
        "scale (1/255 when the model records none), as the data set's are. --set and --limit\n"
        "apply to --data only. --summary-json writes model, data, set, images, count, and for\n"
        "--data the correct count and accuracy.\n",
    .notes =
        "Numbers are written as the shortest decimals that read back as the same floats.\n"
        "Each sample goes through the net alone, so its outputs are the same bits whichever\n"
        "set, --limit or image file it comes from (eval's and train's batches of 256 can\n"
        "round the last bits differently).\n"
        "exit status: 0 ok, 1 runtime failure (model, data or image files, memory, output; a\n"
        "model and data or an image that do not fit each other), 2 bad command line\n",
    .size = sizeof(predict_options),
    .init = predict_init,
    .uses = {{&model_group, offsetof(predict_options, model), 0},
             {&data_group, offsetof(predict_options, data), 0},
             {&output_group, offsetof(predict_options, output),
              1u << OUTPUT_OUT | 1u << OUTPUT_SUMMARY},
             {&runtime_group, offsetof(predict_options, runtime), 1u << RUNTIME_THREADS}},
    .operands = 1,
};

void predict_usage(FILE *f) { print_usage(f, &predict_line); }

static void parse_predict_args(int argc, char **argv, predict_options *o)
{
    /* getopt_long moves the image names after the flags, keeping their order. */
    parsed_args p = parse_command_line(&predict_line, o, argc, argv);
    o->images = argv + p.operand;
    o->n_images = argc - p.operand;
    const char *model = o->model.model, *out = o->output.out, *summary = o->output.summary;
    if (!model)
        usage_error("--model: which model? (backprop predict --model FILE ...)");
    if (o->data.data && o->n_images > 0)
        usage_error("--data and images ('%s'): one or the other", o->images[0]);
    if (!o->data.data && o->n_images == 0)
        usage_error("nothing to predict: give --data D or IMAGE.pgm files");
    if (!o->data.data && (o->data.set_given || o->data.limit_given))
        usage_error("%s: only with --data (images are predicted as named)",
                    o->data.set_given ? "--set" : "--limit");
    if (out && strcmp(out, model) == 0)
        usage_error("--out and --model name the same file '%s'", out);
    if (out && summary && strcmp(out, summary) == 0)
        usage_error("--out and --summary-json name the same file '%s'", out);
}

/* ---- PGM --------------------------------------------------------------------------------- */

/* A PGM image as read: rows x cols bytes, row-major (as an IDX image's). */
typedef struct pgm {
    int rows, cols;
    unsigned char *pixels;
} pgm;

/* Netpbm's header whitespace, and its comments: '#' to the end of the line. Returns the first
 * character after them. */
static int skip_space(FILE *f)
{
    int ch = getc(f);
    for (;;) {
        if (ch == '#') {
            while ((ch = getc(f)) != EOF && ch != '\n' && ch != '\r')
                ;
        } else if (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' ||
                   ch == '\f') {
            ch = getc(f);
        } else {
            return ch;
        }
    }
}

/* A header number: whitespace first (at least one character of it), then decimal digits, no
 * sign, at most max. 0, or -1 with why set (": ..." to follow the file's name). */
static int read_field(FILE *f, const char *what, long max, long *out, char *why, size_t size)
{
    int ch = getc(f);
    if (!(ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f' ||
          ch == '#')) {
        snprintf(why, size, ": no whitespace before the %s", what);
        return -1;
    }
    ungetc(ch, f);
    ch = skip_space(f);
    if (!isdigit(ch)) {
        if (ch == EOF)
            snprintf(why, size, ": the header ends before the %s", what);
        else
            snprintf(why, size, ": the %s is not a decimal number (found '%c')", what,
                     isprint(ch) ? ch : '?');
        return -1;
    }
    long v = 0;
    for (; isdigit(ch); ch = getc(f)) {
        if (v > (max - (ch - '0')) / 10) {
            snprintf(why, size, ": the %s is above %ld", what, max);
            return -1;
        }
        v = v * 10 + (ch - '0');
    }
    if (ch != EOF)
        ungetc(ch, f);
    *out = v;
    return 0;
}

static const char *netpbm_kind(int kind)
{
    switch (kind) {
    case '1': return "a plain (ASCII) PBM, P1";
    case '2': return "a plain (ASCII) PGM, P2";
    case '3': return "a plain (ASCII) PPM, P3";
    case '4': return "a binary PBM (bitmap), P4";
    case '6': return "a binary PPM (colour), P6";
    case '7': return "a PAM, P7";
    default: return NULL;
    }
}

/* Read path as one binary PGM: "P5", whitespace, width, height, maxval (each after
 * whitespace, comments allowed), one whitespace character, then height rows of width bytes and
 * nothing after them. Anything else is refused: a PGM that is not P5 or has another maxval
 * would need another decoding or scale than the model's, and guessing would predict from
 * wrong inputs. 0, or -1 (said, naming the file). */
static int read_pgm(const char *path, pgm *img)
{
    char why[PATH_BUF + 256];
    *img = (pgm){0};
    if (describe_node(path, 0, why, sizeof why) != 0) {
        print_error("'%s'%s", path, why);
        return -1;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        print_error("cannot open '%s': %s", path, strerror(errno));
        return -1;
    }
    int rc = -1;
    int m0 = getc(f), m1 = getc(f);
    long width = 0, height = 0, maxval = 0;
    why[0] = '\0';
    if (m0 != 'P' || m1 != '5') {
        const char *kind = m0 == 'P' ? netpbm_kind(m1) : NULL;
        if (kind)
            snprintf(why, sizeof why, " is %s; only binary PGM (P5) images are read", kind);
        else
            snprintf(why, sizeof why, " is not a binary PGM image (it does not start with P5)");
        goto done;
    }
    if (read_field(f, "width", BP_MAX_WIDTH, &width, why, sizeof why) != 0 ||
        read_field(f, "height", BP_MAX_WIDTH, &height, why, sizeof why) != 0 ||
        read_field(f, "maxval", 65535, &maxval, why, sizeof why) != 0)
        goto done;
    if (width == 0 || height == 0) {
        snprintf(why, sizeof why, " is a %ldx%ld image: no pixels", width, height);
        goto done;
    }
    if (width * height > BP_MAX_WIDTH) {
        snprintf(why, sizeof why, " is %ldx%ld, more pixels than any net's input (%d)", width,
                 height, BP_MAX_WIDTH);
        goto done;
    }
    if (maxval != 255) {
        snprintf(why, sizeof why, " has maxval %ld; only maxval 255 (one byte a pixel, scaled as "
                 "IDX images are) is read", maxval);
        goto done;
    }
    int ch = getc(f);
    if (!(ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f')) {
        snprintf(why, sizeof why, "%s", ch == EOF ? ": the header ends before the pixels"
                                                  : ": no whitespace after the maxval");
        goto done;
    }
    size_t n = (size_t)(width * height);
    img->pixels = malloc(n);
    if (!img->pixels) {
        snprintf(why, sizeof why, ": %s", strerror(ENOMEM));
        goto done;
    }
    size_t got = fread(img->pixels, 1, n, f);
    if (got < n) {
        if (ferror(f))
            snprintf(why, sizeof why, ": %s", strerror(errno ? errno : EIO));
        else
            snprintf(why, sizeof why, " is truncated: %zu of its %ldx%ld = %zu pixel bytes", got,
                     width, height, n);
        goto done;
    }
    if (getc(f) != EOF) {
        snprintf(why, sizeof why, " has bytes after its %ldx%ld pixels (only one image a file "
                 "is read)", width, height);
        goto done;
    }
    img->rows = (int)height;
    img->cols = (int)width;
    rc = 0;
done:
    if (rc != 0) {
        if (!why[0] && ferror(f))
            snprintf(why, sizeof why, ": %s", strerror(errno ? errno : EIO));
        print_error("'%s'%s", path, why);
        free(img->pixels);
        img->pixels = NULL;
    }
    fclose(f);
    return rc;
}

/* ---- output ------------------------------------------------------------------------------ */

static void write_outputs(FILE *f, const float *out, int n_out)
{
    for (int i = 0; i < n_out; i++) {
        fputc(',', f);
        csv_float(f, out[i]);
    }
    fputc('\n', f);
}

static void write_header(FILE *f, const char *first, int n_out)
{
    fputs(first, f);
    for (int i = 0; i < n_out; i++)
        fprintf(f, ",out%d", i);
    fputc('\n', f);
}

/* Standard output is checked as it goes (a closed pipe ends the work); a file in memory once,
 * by write_output_file. */
static int output_failed(FILE *f) { return f == stdout ? stdout_failed() : 0; }

/* What the summary reports of the rows written. */
typedef struct tally {
    size_t rows, correct;
} tally;

typedef struct set_job {
    bp_net *net;
    const bp_dataset *ds;
    size_t limit;
    FILE *f;
    tally *t;
} set_job;

static int write_rows(void *user, size_t first, int batch, const float *out, int n_out)
{
    set_job *job = user;
    for (int j = 0; j < batch; j++) {
        const float *o = out + (size_t)j * n_out;
        int label = bp_dataset_label(job->ds, first + (size_t)j), guess = argmax(o, n_out);
        fprintf(job->f, "%zu,%d,%d", first + (size_t)j, label, guess);
        write_outputs(job->f, o, n_out);
        job->t->rows++;
        job->t->correct += guess == label;
    }
    return output_failed(job->f);
}

/* One sample a pass: its outputs depend on it and the model alone, not on the samples around
 * it, --limit or --set (see forward_set), and an image file gives the same ones. */
static int write_set_csv(FILE *f, const void *arg)
{
    set_job job = *(const set_job *)arg;
    job.f = f;
    *job.t = (tally){0};
    write_header(f, "index,label,predicted", bp_net_size(job.net, bp_net_layers(job.net)));
    return forward_set(job.net, job.ds, job.limit, 1, write_rows, &job);
}

typedef struct image_job {
    bp_net *net;
    char *const *names;
    const float *x; /* the images as columns */
    int n;
    tally *t;
} image_job;

static int write_images_csv(FILE *f, const void *arg)
{
    const image_job *job = arg;
    int dim = bp_net_size(job->net, 0), n_out = bp_net_size(job->net, bp_net_layers(job->net));
    float *out = malloc(sizeof(float) * (size_t)n_out);
    if (!out) {
        print_error("%s", strerror(ENOMEM));
        return -1;
    }
    write_header(f, "file,predicted", n_out);
    int rc = 0;
    /* One image a pass, as write_set_csv goes: an image's outputs are then those of the same
     * image in a data set, bit for bit. */
    for (int i = 0; rc == 0 && i < job->n; i++) {
        bp_status st = bp_net_forward(job->net, job->x + (size_t)i * dim, dim, 1, out, n_out);
        if (st != BP_OK) {
            print_lib_error(st);
            rc = -1;
            break;
        }
        csv_text(f, job->names[i]);
        fprintf(f, ",%d", argmax(out, n_out));
        write_outputs(f, out, n_out);
        job->t->rows++;
        rc = output_failed(f);
    }
    free(out);
    return rc;
}

/* Every image read and held to the model's input before any row is written: a bad file in the
 * list fails the command before it has said anything it would have to take back. */
static int load_images(const predict_options *o, const bp_net *net, const bp_model_meta *meta,
                       float **x_out)
{
    int dim = bp_net_size(net, 0);
    /* The library's own scale for IDX bytes when the model does not say (bp_dataset_gather). */
    float scale = meta->input_scale > 0.0f ? meta->input_scale : 1.0f / 255.0f;
    float *x = malloc(sizeof(float) * (size_t)dim * (size_t)o->n_images);
    if (!x) {
        print_error("%s", strerror(ENOMEM));
        return -1;
    }
    for (int i = 0; i < o->n_images; i++) {
        pgm img;
        if (read_pgm(o->images[i], &img) != 0) {
            free(x);
            return -1;
        }
        int fits = meta->input_rows > 0
                       ? img.rows == meta->input_rows && img.cols == meta->input_cols
                       : (long)img.rows * img.cols == dim;
        if (!fits) {
            if (meta->input_rows > 0)
                print_error("'%s' is %dx%d (width x height) but the model '%s' takes %dx%d "
                            "images, its training images' shape", o->images[i], img.cols,
                            img.rows, o->model.model, meta->input_cols, meta->input_rows);
            else
                print_error("'%s' has %d pixels (%dx%d) but the model '%s' takes %d inputs",
                            o->images[i], img.rows * img.cols, img.cols, img.rows, o->model.model,
                            dim);
            free(img.pixels);
            free(x);
            return -1;
        }
        float *col = x + (size_t)i * dim;
        for (int k = 0; k < dim; k++)
            col[k] = (float)img.pixels[k] * scale;
        free(img.pixels);
    }
    *x_out = x;
    return 0;
}

typedef struct predict_summary {
    const predict_options *o;
    const char *data_dir; /* NULL for images */
    const tally *t;
} predict_summary;

static int write_predict_json(FILE *f, const void *arg)
{
    const predict_summary *s = arg;
    const predict_options *o = s->o;
    fputs("{\n  \"model\": ", f);
    json_string(f, o->model.model);
    fputs(",\n  \"data\": ", f);
    if (s->data_dir)
        json_string(f, s->data_dir);
    else
        fputs("null", f);
    fputs(",\n  \"set\": ", f);
    if (s->data_dir)
        json_string(f, set_name(o->data.set));
    else
        fputs("null", f);
    fputs(",\n  \"images\": ", f);
    if (s->data_dir) {
        fputs("null", f);
    } else {
        fputc('[', f);
        for (int i = 0; i < o->n_images; i++) {
            fputs(i ? ", " : "", f);
            json_string(f, o->images[i]);
        }
        fputc(']', f);
    }
    fprintf(f, ",\n  \"count\": %zu,\n  \"correct\": ", s->t->rows);
    if (s->data_dir)
        fprintf(f, "%zu,\n  \"accuracy\": ", s->t->correct);
    else
        fputs("null,\n  \"accuracy\": ", f);
    if (s->data_dir && s->t->rows)
        json_double(f, (double)s->t->correct / (double)s->t->rows);
    else
        fputs("null", f);
    fputs(",\n  \"out\": ", f);
    if (o->output.out)
        json_string(f, o->output.out);
    else
        fputs("null", f);
    fputs("\n}\n", f);
    return 0;
}

/* The names a summary records, all of which a JSON string must be able to hold. */
static const char *not_utf8(const predict_options *o, const char *dir)
{
    if (!is_utf8(o->model.model))
        return o->model.model;
    if (dir && !is_utf8(dir))
        return dir;
    if (o->output.out && !is_utf8(o->output.out))
        return o->output.out;
    for (int i = 0; i < o->n_images; i++)
        if (!is_utf8(o->images[i]))
            return o->images[i];
    return NULL;
}

int cmd_predict(int argc, char **argv)
{
    predict_options o;
    parse_predict_args(argc, argv, &o);

    bp_status st;
    data_dir dd;
    if (o.runtime.threads > 0 && (st = bp_set_threads(o.runtime.threads)) != BP_OK) {
        print_lib_error(st);
        return 1;
    }
    if (o.data.data && resolve_data_dir(o.data.data, &dd) != 0)
        return 1;
    const char *bad = o.output.summary ? not_utf8(&o, o.data.data ? dd.path : NULL) : NULL;
    if (bad) {
        print_error("--summary-json: '%s' is not valid UTF-8, which a JSON string cannot hold; "
                    "rename it or reach it through a link with a UTF-8 name", bad);
        return EXIT_USAGE;
    }
    if (o.output.out && check_output_path("--out", o.output.out) != 0)
        return 1;
    if (o.output.summary && check_output_path("--summary-json", o.output.summary) != 0)
        return 1;

    int rc = 1;
    bp_net *net = NULL;
    bp_model_meta meta;
    data d = {0};
    float *x = NULL;
    tally t = {0};
    if (open_model(o.model.model, 0, 1, &net, &meta) != 0)
        goto out;
    int failed;
    if (o.data.data) {
        set_job job = {.net = net, .limit = o.data.limit, .f = stdout, .t = &t};
        if (load_set_for_model(o.data.data, &dd, o.data.set, net, &meta, o.model.model, &d,
                               &job.ds) != 0)
            goto out;
        failed = o.output.out ? write_output_file("--out", o.output.out, write_set_csv, &job)
                       : write_set_csv(stdout, &job);
    } else {
        if (load_images(&o, net, &meta, &x) != 0)
            goto out;
        image_job job = {.net = net, .names = o.images, .x = x, .n = o.n_images, .t = &t};
        failed = o.output.out ? write_output_file("--out", o.output.out, write_images_csv, &job)
                       : write_images_csv(stdout, &job);
    }
    if (failed || stdout_failed())
        goto out;
    predict_summary s = {.o = &o, .data_dir = o.data.data ? dd.path : NULL, .t = &t};
    if (o.output.summary &&
        write_output_file("--summary-json", o.output.summary, write_predict_json, &s) != 0)
        goto out;
    rc = 0;

out:
    free(x);
    data_free(&d);
    bp_net_free(net);
    return rc;
}
