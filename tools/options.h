/*
 * options.h - the command line described once. Every flag of every command is an entry of an
 * option table (its name, its value's name, its help), grouped by what it sets: the groups
 * several commands share (model, data, network, runtime, output) and each command's own. From
 * the tables come getopt_long's option array, the usage with each flag's default, and
 * `backprop help --options COMMAND`, so a flag cannot be taken without being documented, and a
 * flag two commands share is defined, parsed and described in one place.
 *
 * The defaults shown are read from the options struct a command starts from (its init, which
 * takes them from the library's bp_*_config_init), so the usage says what a run does.
 *
 * Numbers go through one strict parser, parse_number, with a number_spec per kind of value.
 */
#ifndef BP_TOOLS_OPTIONS_H
#define BP_TOOLS_OPTIONS_H

#include "cli.h"

/* ---- numbers ----------------------------------------------------------------------------- */

/* Whole numbers are decimal digits and nothing else (no sign, no blank, no hex); sizes are
 * that with an optional binary suffix (512M, 4G); decimal numbers are digits with an optional
 * fraction and exponent ("0.5", ".5", "3e-2"), a leading '-' taken only so that a negative
 * value is refused for what it is. */
typedef enum number_kind { NUMBER_WHOLE, NUMBER_SIZE, NUMBER_DECIMAL } number_kind;

typedef struct number_spec {
    number_kind kind;
    uint64_t min, max;      /* WHOLE and SIZE: the inclusive bounds */
    float low, high;        /* DECIMAL: the bounds, on the float the library gets; high may
                               be INFINITY. Values must be finite either way. */
    int low_open, high_open; /* DECIMAL: whether the bound itself is excluded */
    const char *example;    /* DECIMAL: what the syntax message offers ("0.5 or 3e-2") */
} number_spec;

/* The decimal numbers the flags take: > 0 (rates), >= 0 (strengths), [0, 1) (probabilities and
 * the decay rates of averages). */
extern const number_spec NUMBER_POSITIVE, NUMBER_NONNEGATIVE, NUMBER_UNIT_INTERVAL;

typedef struct number {
    uint64_t whole; /* WHOLE and SIZE */
    float decimal;  /* DECIMAL (a zero is always +0) */
} number;

enum { NUMBER_OK = 0, NUMBER_SYNTAX, NUMBER_RANGE };

/* text read by spec's rules: NUMBER_OK with *out set, NUMBER_SYNTAX for what is not such a
 * number, NUMBER_RANGE for one outside the bounds (or beyond what the type holds). */
int read_number(const char *text, const number_spec *spec, number *out);
/* What a value with that problem breaks, as the rest of a sentence that starts with the value:
 * "is not a whole number (decimal digits only)", "is out of range (1..64)", "must be in
 * [0, 1)". */
void number_rule(const number_spec *spec, int problem, char *buf, size_t size);
/* read_number for a flag: a usage error ("--eta: '0x1' is not a decimal number (like ...)")
 * when the value does not do. */
number parse_number(const char *flag, const char *text, const number_spec *spec);

/* ---- option tables ----------------------------------------------------------------------- */

/* One flag. The key is its group's own code for it, handed to the group's parser; a command
 * picks a group's flags by key. */
typedef struct opt_spec {
    const char *name;  /* the long name, without "--"; NULL ends a table */
    int key;           /* 0 .. 31 */
    const char *arg;   /* the value's name in the usage ("N", "FILE"); NULL: it takes none */
    const char *help;  /* the usage text, lines broken by '\n'; the default follows the first */
    int short_name;    /* a one-letter alias ('o'), or 0 */
    unsigned flags;    /* OPT_* below */
} opt_spec;

enum {
    /* Sets what a training run computes (train --resume refuses it: the checkpoint decides). */
    OPT_CHANGES_RUN = 1u << 0,
};

/* What the usage shows of one flag: the table's arg and help, which describe may replace with
 * text made from the library (its names, its limits), and the default. */
typedef struct opt_text {
    char arg[192], help[1024], dflt[128];
} opt_text;

typedef struct opt_group {
    const char *title; /* the usage's heading for its flags */
    const opt_spec *opts;
    /* value (NULL for a flag that takes none) into target, or a usage error naming flag, the
     * option's long name with its dashes. */
    void (*parse)(void *target, const opt_spec *o, const char *flag, const char *value);
    /* t for o, from a target holding its command's defaults; t starts with the table's arg
     * and help and no default. A flag left without one is shown [off] (no value) or [none]. */
    void (*describe)(const void *target, const opt_spec *o, opt_text *t);
} opt_group;

/* A group as a command takes it: where its target is in the command's options struct and
 * which of its flags (bits 1u << key; 0: all). */
typedef struct opt_use {
    const opt_group *group;
    size_t offset;
    unsigned keys;
} opt_use;

enum { MAX_OPT_USES = 8, MAX_OPTIONS = 64 };

typedef struct command_line {
    const char *name;     /* "train" */
    const char *synopsis; /* the usage's first lines, "usage: backprop train [options]\n" */
    const char *about;    /* what the command does, before the options ("" for nothing) */
    const char *notes;    /* after the options: rules, exit statuses */
    size_t size;          /* of the command's options struct */
    void (*init)(void *opts); /* the defaults, before any flag */
    opt_use uses[MAX_OPT_USES]; /* ended by a NULL group */
    int operands;         /* whether arguments that are not options are allowed */
    int stop_at_operand;  /* whether the flags end at the first operand (or "--") */
} command_line;

typedef struct parsed_args {
    int operand;  /* argv index of the first operand (argc when there is none) */
    const opt_spec *run_option; /* the first flag given marked OPT_CHANGES_RUN, or NULL */
} parsed_args;

/* Initialise opts (cl->init) and parse argv (argv[0] is the command's name) into it. Usage
 * errors exit with status 2, --help prints the usage and exits 0. */
parsed_args parse_command_line(const command_line *cl, void *opts, int argc, char **argv);

/* The usage: synopsis, about, every flag of every group with its default, --help, notes. */
void print_usage(FILE *f, const command_line *cl);
/* Every long option getopt_long accepts for cl, one a line: "--name", or "--name VALUE" when
 * it takes one. What the usage and docs/CLI.md must document (a test holds them to it). */
void print_option_names(FILE *f, const command_line *cl);

/* Each command's flags, for its usage and for `backprop help --options COMMAND`. */
extern const command_line train_line, eval_line, predict_line, inspect_line, bench_line,
    export_line, plot_line;

/* ---- the shared groups ------------------------------------------------------------------- */

/* --model FILE */
typedef struct model_args {
    const char *model;
} model_args;
enum { MODEL_MODEL };
extern const opt_group model_group;

/* --data, --set, --limit */
typedef struct data_args {
    const char *data; /* NULL: none given */
    data_set set;
    size_t limit;     /* SIZE_MAX: every sample */
    int set_given, limit_given;
    int data_required; /* for the usage: [required] rather than [none] */
} data_args;
enum { DATA_DATA, DATA_SET, DATA_LIMIT };
extern const opt_group data_group;
void data_args_init(data_args *d);

/* The network: --layers, --hidden-act, --output, --cost, --init, --dropout, --batchnorm,
 * --arch, --sequence. */
typedef struct net_args {
    bp_net_config cfg; /* sizes and max_batch are the command's to set */
    int sizes[BP_MAX_SIZES];
    const char *arch; /* --arch: the layers after the input as spec strings, or NULL */
    char *arch_owned; /* arch when apply_sequence rewrote it; net_args_release frees it */
    int sequence_cols; /* --sequence cols: the recurrent layers read images by columns */
    unsigned given;   /* bit NET_* set for each flag of the group on the command line */
} net_args;
enum { NET_LAYERS, NET_HIDDEN, NET_OUTPUT, NET_COST, NET_INIT, NET_DROPOUT, NET_BATCHNORM,
       NET_ARCH, NET_SEQUENCE };
extern const opt_group net_group;
/* The library's defaults, and Nielsen's chapter-1 sizes (the library has no default sizes). */
void net_args_init(net_args *n);
/* Applies --sequence to --arch: every lstm and gru token that names no reading order gets
 * the one --sequence gives (arch then points at arch_owned; untouched without --sequence). A
 * usage error when --arch has no recurrent layer, or names the other order for one. */
void apply_sequence(net_args *n);
void net_args_release(net_args *n);
/* "784,30,10" -> sizes: 2..BP_MAX_SIZES entries of 1..BP_MAX_WIDTH; the count. */
int parse_layers(const char *flag, const char *s, int sizes[BP_MAX_SIZES]);

/* Where and how the work runs: --threads, --backend, --max-memory. */
typedef struct runtime_args {
    int threads;         /* 0: the library's default, one per core */
    const char *backend; /* the library's own string */
    uint64_t max_memory; /* 0: the library's default, the memory available */
} runtime_args;
enum { RUNTIME_THREADS, RUNTIME_BACKEND, RUNTIME_MAX_MEMORY };
extern const opt_group runtime_group;
void runtime_args_init(runtime_args *r);

/* What a command writes: --summary-json, -o/--out, --json. */
typedef struct output_args {
    const char *summary, *out;
    int json;
    const char *out_default; /* for the usage: where the output goes without --out */
} output_args;
enum { OUTPUT_SUMMARY, OUTPUT_OUT, OUTPUT_JSON };
extern const opt_group output_group;

/* The library's choices, for a message or the usage: "sigmoid, tanh" with sep ", ". */
const char *act_name_i(int i);
const char *cost_name_i(int i);
const char *init_name_i(int i);
const char *backend_name_i(int i);

#endif
