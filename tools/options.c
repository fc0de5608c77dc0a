/*
 * options.c - the one number parser, the option tables turned into getopt_long's array and
 * into the usage, and the groups of flags several commands share (options.h says why).
 */
#include "options.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- numbers ----------------------------------------------------------------------------- */

const number_spec NUMBER_POSITIVE = {.kind = NUMBER_DECIMAL, .low = 0.0f, .low_open = 1,
                                     .high = INFINITY, .example = "0.5 or 3e-2"};
const number_spec NUMBER_NONNEGATIVE = {.kind = NUMBER_DECIMAL, .low = 0.0f, .high = INFINITY,
                                        .example = "5.0 or 1e-4"};
const number_spec NUMBER_UNIT_INTERVAL = {.kind = NUMBER_DECIMAL, .low = 0.0f, .high = 1.0f,
                                          .high_open = 1, .example = "0.5"};

/* Decimal digits, no more: 0, NUMBER_SYNTAX, or NUMBER_RANGE above UINT64_MAX. strtoull alone
 * would take a sign, leading blanks and negate "-1" into 2^64-1. */
static int read_digits(const char *s, uint64_t *out)
{
    if (!isdigit((unsigned char)s[0]))
        return NUMBER_SYNTAX;
    uint64_t v = 0;
    int overflow = 0;
    for (; *s; s++) {
        if (!isdigit((unsigned char)*s))
            return NUMBER_SYNTAX;
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            overflow = 1;
        else
            v = v * 10 + d;
    }
    *out = v;
    return overflow ? NUMBER_RANGE : NUMBER_OK;
}

/* Digits and one of k, M, G, T (binary multiples) or none. */
static int read_size(const char *s, uint64_t *out)
{
    static const char suffixes[] = "kMGT";
    size_t len = strlen(s);
    const char *unit = len > 1 ? strchr(suffixes, s[len - 1]) : NULL;
    char digits[32];
    if (len == 0 || len >= sizeof digits || (!unit && !isdigit((unsigned char)s[len - 1])))
        return NUMBER_SYNTAX;
    memcpy(digits, s, len + 1);
    if (unit)
        digits[len - 1] = '\0';
    uint64_t v = 0;
    int r = read_digits(digits, &v);
    int shift = unit ? 10 * (int)(unit - suffixes + 1) : 0;
    if (r == NUMBER_OK && shift && v > UINT64_MAX >> shift)
        r = NUMBER_RANGE;
    *out = r == NUMBER_OK ? v << shift : 0;
    return r;
}

int is_decimal(const char *s)
{
    const char *p = s + (*s == '-');
    size_t int_digits = strspn(p, "0123456789");
    p += int_digits;
    size_t frac_digits = 0;
    if (*p == '.') {
        p++;
        frac_digits = strspn(p, "0123456789");
        p += frac_digits;
    }
    if (int_digits + frac_digits == 0)
        return 0;
    if (*p == 'e' || *p == 'E') {
        p++;
        p += *p == '+' || *p == '-';
        size_t exp_digits = strspn(p, "0123456789");
        if (exp_digits == 0)
            return 0;
        p += exp_digits;
    }
    return *p == '\0';
}

/* The bounds hold for the float the library gets: 0.999999999 rounds to 1 and 1e-60 to 0, so
 * neither passes [0, 1) or > 0 by looking like it would. */
static int read_decimal(const char *s, const number_spec *spec, float *out)
{
    if (!is_decimal(s))
        return NUMBER_SYNTAX;
    float v = strtof(s, NULL);
    if (v == 0.0f)
        v = 0.0f; /* "-0" is zero, and a summary should not say -0 */
    *out = v;
    if (!isfinite(v))
        return NUMBER_RANGE;
    if (spec->low_open ? !(v > spec->low) : !(v >= spec->low))
        return NUMBER_RANGE;
    if (spec->high_open ? !(v < spec->high) : !(v <= spec->high))
        return NUMBER_RANGE;
    return NUMBER_OK;
}

int read_number(const char *text, const number_spec *spec, number *out)
{
    number v = {0};
    int r;
    switch (spec->kind) {
    case NUMBER_DECIMAL: r = read_decimal(text, spec, &v.decimal); break;
    case NUMBER_SIZE: r = read_size(text, &v.whole); break;
    default: r = read_digits(text, &v.whole); break;
    }
    if (r == NUMBER_OK && spec->kind != NUMBER_DECIMAL &&
        (v.whole < spec->min || v.whole > spec->max))
        r = NUMBER_RANGE;
    if (r == NUMBER_OK)
        *out = v;
    return r;
}

/* 1 -> "1 byte", 2^64-1 -> "16 EiB": a size bound as people read it. */
static void size_text(uint64_t v, char *buf, size_t size)
{
    static const char units[] = "KMGTPE";
    if (v < 1024) {
        snprintf(buf, size, "%llu %s", (unsigned long long)v, plural((long)v, "byte", "bytes"));
        return;
    }
    int k = 0;
    double x = (double)v;
    while (x >= 1024.0 && k < 6) {
        x /= 1024.0;
        k++;
    }
    snprintf(buf, size, "%.3g %ciB", x, units[k - 1]);
}

void number_rule(const number_spec *spec, int problem, char *buf, size_t size)
{
    if (problem == NUMBER_SYNTAX) {
        if (spec->kind == NUMBER_WHOLE)
            snprintf(buf, size, "is not a whole number (decimal digits only)");
        else if (spec->kind == NUMBER_SIZE)
            snprintf(buf, size, "is not a size (decimal digits, optionally k, M, G or T)");
        else
            snprintf(buf, size, "is not a decimal number (like %s)", spec->example);
        return;
    }
    if (spec->kind == NUMBER_WHOLE) {
        snprintf(buf, size, "is out of range (%llu..%llu)", (unsigned long long)spec->min,
                 (unsigned long long)spec->max);
    } else if (spec->kind == NUMBER_SIZE) {
        char lo[32], hi[32];
        size_text(spec->min, lo, sizeof lo);
        size_text(spec->max, hi, sizeof hi);
        snprintf(buf, size, "is out of range (%s .. %s)", lo, hi);
    } else if (isfinite(spec->high)) {
        snprintf(buf, size, "must be in %c%g, %g%c", spec->low_open ? '(' : '[',
                 (double)spec->low, (double)spec->high, spec->high_open ? ')' : ']');
    } else {
        snprintf(buf, size, "must be a finite number %s %g", spec->low_open ? ">" : ">=",
                 (double)spec->low);
    }
}

number parse_number(const char *flag, const char *text, const number_spec *spec)
{
    number v;
    int r = read_number(text, spec, &v);
    if (r == NUMBER_OK)
        return v;
    char rule[160];
    number_rule(spec, r, rule, sizeof rule);
    /* A value that is no number at all is quoted: it may be empty or hold blanks. */
    if (r == NUMBER_SYNTAX)
        usage_error("%s: '%s' %s", flag, text, rule);
    usage_error("%s: %s %s", flag, text, rule);
}

/* ---- tables -> getopt_long --------------------------------------------------------------- */

/* A command's flags in one array, in usage order, and getopt_long's view of them. */
typedef struct flat_options {
    int n;
    const opt_spec *spec[MAX_OPTIONS];
    int use[MAX_OPTIONS]; /* index into the command's uses */
    struct option table[MAX_OPTIONS + 2];
    char shorts[2 * MAX_OPTIONS + 4];
} flat_options;

static int takes(const opt_use *u, const opt_spec *o)
{
    return u->keys == 0 || (u->keys & 1u << o->key) != 0;
}

/* getopt_long returns 256 + the index for a long option, the letter for a short one. */
static void flatten(const command_line *cl, flat_options *f)
{
    memset(f, 0, sizeof *f);
    size_t s = 0;
    if (cl->stop_at_operand)
        f->shorts[s++] = '+';
    f->shorts[s++] = ':'; /* a missing value returns ':' rather than '?' */
    f->shorts[s++] = 'h';
    for (int u = 0; u < MAX_OPT_USES && cl->uses[u].group; u++)
        for (const opt_spec *o = cl->uses[u].group->opts; o->name; o++) {
            if (!takes(&cl->uses[u], o))
                continue;
            if (f->n == MAX_OPTIONS) /* a programming error the tests would see at once */
                abort();
            f->spec[f->n] = o;
            f->use[f->n] = u;
            f->table[f->n] = (struct option){o->name, o->arg ? required_argument : no_argument,
                                             NULL, 256 + f->n};
            if (o->short_name) {
                f->shorts[s++] = (char)o->short_name;
                if (o->arg)
                    f->shorts[s++] = ':';
            }
            f->n++;
        }
    f->table[f->n] = (struct option){"help", no_argument, NULL, 'h'};
}

_Noreturn static void usage_exit(const command_line *cl)
{
    print_usage(stdout, cl);
    exit(fflush(stdout) == 0 && !ferror(stdout) ? 0 : 1);
}

parsed_args parse_command_line(const command_line *cl, void *opts, int argc, char **argv)
{
    static flat_options f;
    flatten(cl, &f);
    cl->init(opts);
    parsed_args res = {0};
    /* Our own messages instead of getopt's: one line, then the usage, then status 2. */
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, f.shorts, f.table, NULL)) != -1) {
        const char *word = argv[optind - 1];
        int i = c >= 256 && c < 256 + f.n ? c - 256 : -1;
        for (int k = 0; i < 0 && k < f.n && c > 0 && c < 256 && c != 'h'; k++)
            if (f.spec[k]->short_name == c)
                i = k;
        if (c == 'h')
            usage_exit(cl);
        if (c == ':')
            usage_error("%s needs a value", word);
        if (i < 0)
            bad_option(f.table, word, optopt);
        const opt_spec *o = f.spec[i];
        const opt_use *u = &cl->uses[f.use[i]];
        char flag[64];
        snprintf(flag, sizeof flag, "--%s", o->name);
        if ((o->flags & OPT_CHANGES_RUN) && !res.run_option)
            res.run_option = o;
        u->group->parse((char *)opts + u->offset, o, flag, o->arg ? optarg : NULL);
    }
    if (!cl->operands && optind < argc)
        usage_error("unexpected argument '%s'", argv[optind]);
    res.operand = optind;
    return res;
}

void print_option_names(FILE *f, const command_line *cl)
{
    static flat_options flat;
    flatten(cl, &flat);
    for (const struct option *o = flat.table; o->name; o++)
        fprintf(f, "--%s%s\n", o->name, o->has_arg == required_argument ? " VALUE" : "");
}

/* ---- the usage --------------------------------------------------------------------------- */

enum { HELP_COLUMN = 29, HELP_WIDTH = 64 };

/* One line of help from the help column, broken at blanks to fit HELP_WIDTH, each further
 * piece indented two more than the line. Returns the end of the line in text. */
static const char *print_help_line(FILE *f, const char *text)
{
    size_t len = strcspn(text, "\n"), lead = strspn(text, " "), hang = lead + 2, indent = 0;
    while (len > 0) {
        size_t room = HELP_WIDTH > indent ? HELP_WIDTH - indent : 1, cut = len;
        if (len > room) {
            cut = room;
            while (cut > lead + 1 && text[cut] != ' ')
                cut--;
            if (cut <= lead + 1) /* one word longer than the room: as it is */
                cut = strcspn(text, " \n") < len ? strcspn(text + lead, " ") + lead : len;
        }
        fprintf(f, "%*s%.*s\n", (int)(HELP_COLUMN + indent), "", (int)cut, text);
        text += cut;
        len -= cut;
        size_t blanks = strspn(text, " ");
        blanks = blanks < len ? blanks : len;
        text += blanks;
        len -= blanks;
        indent = hang;
        lead = 0;
    }
    return text + len;
}

/* "  --eta X                    learning rate, > 0 [0.5]": the flag, its help from column 29
 * (from the next line when the flag is wider), the default after the help's first line. */
static void print_option(FILE *f, const opt_spec *o, const opt_text *t)
{
    char left[256];
    const char *gap = t->arg[0] ? " " : "";
    int w = o->short_name
                ? snprintf(left, sizeof left, "  -%c, --%s%s%s", o->short_name, o->name, gap,
                           t->arg)
                : snprintf(left, sizeof left, "  --%s%s%s", o->name, gap, t->arg);
    const char *help = t->help;
    size_t first = strcspn(help, "\n");
    char dflt[sizeof t->dflt + 3] = "";
    if (t->dflt[0])
        snprintf(dflt, sizeof dflt, "[%s]", t->dflt);
    if (w < HELP_COLUMN - 1) {
        fprintf(f, "%-*s%.*s%s%s\n", HELP_COLUMN, left, (int)first, help,
                first && dflt[0] ? " " : "", dflt);
    } else {
        fprintf(f, "%s%s%s\n", left, dflt[0] ? " " : "", dflt);
        if (first)
            fprintf(f, "%*s%.*s\n", HELP_COLUMN, "", (int)first, help);
    }
    for (const char *p = help + first; *p == '\n';)
        p = print_help_line(f, p + 1);
}

void print_usage(FILE *f, const command_line *cl)
{
    void *defaults = calloc(1, cl->size);
    if (defaults)
        cl->init(defaults);
    fputs(cl->synopsis, f);
    if (cl->about[0])
        fprintf(f, "\n%s", cl->about);
    fprintf(f, "\noptions of %s (defaults in brackets):\n", cl->name);
    for (int u = 0; u < MAX_OPT_USES && cl->uses[u].group; u++) {
        const opt_use *use = &cl->uses[u];
        fprintf(f, " %s:\n", use->group->title);
        for (const opt_spec *o = use->group->opts; o->name; o++) {
            if (!takes(use, o))
                continue;
            opt_text t;
            snprintf(t.arg, sizeof t.arg, "%s", o->arg ? o->arg : "");
            snprintf(t.help, sizeof t.help, "%s", o->help);
            t.dflt[0] = '\0';
            if (defaults && use->group->describe)
                use->group->describe((const char *)defaults + use->offset, o, &t);
            if (!t.dflt[0])
                snprintf(t.dflt, sizeof t.dflt, "%s", o->arg ? "none" : "off");
            print_option(f, o, &t);
        }
    }
    fprintf(f, "  %-*sthis text\n", HELP_COLUMN - 2, "--help");
    if (cl->notes[0])
        fprintf(f, "\n%s", cl->notes);
    free(defaults);
}

/* ---- names ------------------------------------------------------------------------------- */

const char *act_name_i(int i) { return bp_activation_name((bp_activation)i); }
const char *cost_name_i(int i) { return bp_cost_name((bp_cost)i); }
const char *init_name_i(int i) { return bp_init_name((bp_init)i); }
const char *backend_name_i(int i) { return bp_backend_name(i); }

/* ---- model ------------------------------------------------------------------------------- */

static const opt_spec model_opts[] = {
    {"model", MODEL_MODEL, "FILE", "the model file, from train --save or --checkpoint", 0, 0},
    {0},
};

static void model_parse(void *target, const opt_spec *o, const char *flag, const char *value)
{
    (void)o;
    ((model_args *)target)->model = parse_path(flag, value);
}

static void model_describe(const void *target, const opt_spec *o, opt_text *t)
{
    (void)o;
    const model_args *m = target;
    snprintf(t->dflt, sizeof t->dflt, "%s", m->model ? m->model : "required");
}

const opt_group model_group = {"model", model_opts, model_parse, model_describe};

/* ---- data -------------------------------------------------------------------------------- */

static const opt_spec data_opts[] = {
    {"data", DATA_DATA, "mnist|fashion|DIR",
     "the data set\n"
     "mnist: $BACKPROP_MNIST_DIR, else\n"
     "  ${BACKPROP_DATA_DIR:-$HOME/.cache/backprop}/mnist\n"
     "fashion: $BACKPROP_FASHION_DIR, else /usr/share/datasets/fashion-mnist\n"
     "DIR: train-images-idx3-ubyte, train-labels-idx1-ubyte,\n"
     "  t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte, raw or .gz", 0, 0},
    {"set", DATA_SET, "test|validation|train",
     "which images\n"
     "test: the t10k files; validation and train: the last 1/6\n"
     "and the rest of the training file, as train splits it\n"
     "(MNIST: images 50,000..59,999 and 0..49,999)", 0, 0},
    {"limit", DATA_LIMIT, "N", "only the first N samples of the set, 1..2^64-1", 0, 0},
    {0},
};

void data_args_init(data_args *d) { *d = (data_args){.set = SET_TEST, .limit = SIZE_MAX}; }

static void data_parse(void *target, const opt_spec *o, const char *flag, const char *value)
{
    data_args *d = target;
    switch (o->key) {
    case DATA_DATA:
        if (value[0] == '\0')
            usage_error("%s: empty value", flag);
        d->data = value;
        break;
    case DATA_SET:
        d->set = parse_set(flag, value);
        d->set_given = 1;
        break;
    case DATA_LIMIT:
        d->limit = (size_t)parse_uint(flag, value, 1, SIZE_MAX);
        d->limit_given = 1;
        break;
    }
}

static void data_describe(const void *target, const opt_spec *o, opt_text *t)
{
    const data_args *d = target;
    const char *v = NULL;
    switch (o->key) {
    case DATA_DATA: v = d->data ? d->data : d->data_required ? "required" : "none"; break;
    case DATA_SET: v = set_name(d->set); break;
    case DATA_LIMIT: v = d->limit == SIZE_MAX ? "all" : NULL; break;
    }
    if (v)
        snprintf(t->dflt, sizeof t->dflt, "%s", v);
    else
        snprintf(t->dflt, sizeof t->dflt, "%zu", d->limit);
}

const opt_group data_group = {"data", data_opts, data_parse, data_describe};

/* ---- network ----------------------------------------------------------------------------- */

/* Nielsen's chapter-1 net. The library has no default sizes, so this one is the CLI's own. */
static const int default_layers[] = {784, 30, 10};

void net_args_init(net_args *n)
{
    memset(n, 0, sizeof *n);
    bp_net_config_init(&n->cfg);
    memcpy(n->sizes, default_layers, sizeof default_layers);
    n->cfg.n_sizes = (int)(sizeof default_layers / sizeof default_layers[0]);
}

int parse_layers(const char *flag, const char *s, int sizes[BP_MAX_SIZES])
{
    static const number_spec width = {.kind = NUMBER_WHOLE, .min = 1, .max = BP_MAX_WIDTH};
    int n = 0;
    const char *p = s;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == 0)
            usage_error("%s: empty entry %d in '%s'", flag, n + 1, s);
        if (n == BP_MAX_SIZES)
            usage_error("%s: more than %d layers in '%s'", flag, BP_MAX_SIZES, s);
        char item[32], rule[160];
        if (len >= sizeof item)
            usage_error("%s: entry %d of '%s' is not a whole number", flag, n + 1, s);
        memcpy(item, p, len);
        item[len] = '\0';
        number v;
        int r = read_number(item, &width, &v);
        number_rule(&width, r, rule, sizeof rule);
        if (r == NUMBER_SYNTAX)
            usage_error("%s: entry %d ('%s') %s", flag, n + 1, item, rule);
        if (r == NUMBER_RANGE)
            usage_error("%s: entry %d (%s) %s", flag, n + 1, item, rule);
        sizes[n++] = (int)v.whole;
        if (!comma)
            break;
        p = comma + 1;
    }
    if (n < 2)
        usage_error("%s: need at least an input and an output layer, got '%s'", flag, s);
    return n;
}

static bp_activation parse_activation(const char *flag, const char *s, int hidden)
{
    bp_activation a;
    char names[256];
    if (bp_activation_parse(s, &a) != BP_OK) {
        list_names(names, sizeof names, ", ", BP_ACT_COUNT, hidden ? (int)BP_ACT_SOFTMAX : -1,
                   act_name_i);
        usage_error("%s: unknown activation '%s' (known: %s)", flag, s, names);
    }
    /* Softmax normalises over a whole column, which only means something at the output. */
    if (hidden && a == BP_ACT_SOFTMAX)
        usage_error("%s: softmax is only allowed as --output", flag);
    return a;
}

static bp_cost parse_cost(const char *flag, const char *s)
{
    bp_cost c;
    char names[256];
    if (bp_cost_parse(s, &c) != BP_OK) {
        list_names(names, sizeof names, ", ", BP_COST_COUNT, -1, cost_name_i);
        usage_error("%s: unknown cost '%s' (known: %s)", flag, s, names);
    }
    return c;
}

static bp_init parse_init(const char *flag, const char *s)
{
    bp_init i;
    char names[256];
    if (bp_init_parse(s, &i) != BP_OK) {
        list_names(names, sizeof names, ", ", BP_INIT_COUNT, -1, init_name_i);
        usage_error("%s: unknown initialisation '%s' (known: %s)", flag, s, names);
    }
    return i;
}

static const opt_spec net_opts[] = {
    {"layers", NET_LAYERS, "N0,N1,...,NL", "", 0, OPT_CHANGES_RUN},
    {"hidden-act", NET_HIDDEN, "", "the hidden layers' activation", 0, OPT_CHANGES_RUN},
    {"output", NET_OUTPUT, "", "the output layer's activation", 0, OPT_CHANGES_RUN},
    {"cost", NET_COST, "", "the cost function", 0, OPT_CHANGES_RUN},
    {"init", NET_INIT, "", "the weights' initialisation", 0, OPT_CHANGES_RUN},
    {"dropout", NET_DROPOUT, "P",
     "drop hidden units in training, P in [0, 1)\n"
     "each with probability P, the kept ones scaled by 1/(1-P)", 0, OPT_CHANGES_RUN},
    {"batchnorm", NET_BATCHNORM, NULL,
     "batch normalisation in the hidden layers\n"
     "between each one's linear part and its activation: batch\n"
     "statistics in training, running averages when evaluating", 0, OPT_CHANGES_RUN},
    {"arch", NET_ARCH, "LIST",
     "the layers after the input, instead of --layers\n"
     "comma separated, the input shape taken from the data:\n"
     "conv:KxHxW[:ACT][:sS][:pP] (ACT relu, stride 1, padding 0),\n"
     "maxpool:N[:sS], avgpool:N[:sS] (stride N), dense:N[:ACT]\n"
     "(ACT sigmoid; the last one's is the output's), dropout:P,\n"
     "batchnorm[:ACT], lstm:H[:rows|cols], gru:H[:rows|cols]\n"
     "(H hidden units; the last step's h goes on)", 0, OPT_CHANGES_RUN},
    {"sequence", NET_SEQUENCE, "rows|cols",
     "how --arch's lstm and gru layers read an image\n"
     "rows: a step per row (MNIST: 28 steps of 28 pixels);\n"
     "cols: a step per column", 0, OPT_CHANGES_RUN},
    {0},
};

static void net_parse(void *target, const opt_spec *o, const char *flag, const char *value)
{
    net_args *n = target;
    n->given |= 1u << o->key;
    switch (o->key) {
    case NET_ARCH: n->arch = value; break;
    case NET_LAYERS: n->cfg.n_sizes = parse_layers(flag, value, n->sizes); break;
    case NET_HIDDEN: n->cfg.hidden = parse_activation(flag, value, 1); break;
    case NET_OUTPUT: n->cfg.output = parse_activation(flag, value, 0); break;
    case NET_COST: n->cfg.cost = parse_cost(flag, value); break;
    case NET_INIT: n->cfg.init = parse_init(flag, value); break;
    case NET_DROPOUT:
        n->cfg.dropout = parse_number(flag, value, &NUMBER_UNIT_INTERVAL).decimal;
        break;
    case NET_BATCHNORM: n->cfg.batchnorm = 1; break;
    case NET_SEQUENCE:
        if (strcmp(value, "rows") != 0 && strcmp(value, "cols") != 0)
            usage_error("%s: '%s' is not rows or cols", flag, value);
        n->sequence_cols = value[0] == 'c';
        break;
    }
}

void apply_sequence(net_args *n)
{
    if (!(n->given & (1u << NET_SEQUENCE)))
        return;
    if (!n->arch)
        usage_error("--sequence: it says how --arch's lstm and gru layers read an image; give "
                    "--arch with one");
    const char *order = n->sequence_cols ? "cols" : "rows";
    size_t len = strlen(n->arch);
    /* Each token grows by at most ":rows", and a token is at least one character and a
     * comma. */
    char *out = malloc(len + 5 * (len / 2 + 1) + 1);
    if (!out)
        usage_error("--sequence: out of memory");
    n->arch_owned = out;
    int recurrent = 0;
    size_t used = 0;
    for (const char *t = n->arch; *t;) {
        size_t tlen = strcspn(t, ",");
        int is_recurrent = (tlen > 5 && !strncmp(t, "lstm:", 5)) ||
                           (tlen > 4 && !strncmp(t, "gru:", 4));
        memcpy(out + used, t, tlen);
        used += tlen;
        if (is_recurrent) {
            recurrent = 1;
            const char *args = (const char *)memchr(t, ':', tlen) + 1;
            const char *second = memchr(args, ':', tlen - (size_t)(args - t));
            if (!second) {
                used += (size_t)sprintf(out + used, ":%s", order);
            } else if ((size_t)(t + tlen - second - 1) != 4 || strncmp(second + 1, order, 4)) {
                usage_error("--sequence %s and --arch's '%.*s': the layer names its own order; "
                            "give one", order, (int)tlen, t);
            }
        }
        t += tlen;
        if (*t == ',')
            out[used++] = *t++;
    }
    out[used] = '\0';
    if (!recurrent)
        usage_error("--sequence: --arch '%s' has no lstm or gru layer to read the image as a "
                    "sequence", n->arch);
    n->arch = out;
}

void net_args_release(net_args *n)
{
    free(n->arch_owned);
    n->arch_owned = NULL;
}

/* The names and limits come from the library as it is linked, so the text cannot fall behind
 * it: the _COUNT enums and name functions for the choices, BP_MAX_* for the limits. */
static void net_describe(const void *target, const opt_spec *o, opt_text *t)
{
    const net_args *n = target;
    const char *v = NULL;
    switch (o->key) {
    case NET_LAYERS: {
        snprintf(t->help, sizeof t->help,
                 "neurons per layer, 2..%d layers\nof 1..%d neurons, input first", BP_MAX_SIZES,
                 BP_MAX_WIDTH);
        size_t used = 0;
        for (int i = 0; i < n->cfg.n_sizes && used < sizeof t->dflt; i++)
            used += (size_t)snprintf(t->dflt + used, sizeof t->dflt - used, "%s%d", i ? "," : "",
                                     n->sizes[i]);
        return;
    }
    case NET_HIDDEN:
        list_names(t->arg, sizeof t->arg, "|", BP_ACT_COUNT, BP_ACT_SOFTMAX, act_name_i);
        v = bp_activation_name(n->cfg.hidden);
        break;
    case NET_OUTPUT:
        list_names(t->arg, sizeof t->arg, "|", BP_ACT_COUNT, -1, act_name_i);
        v = bp_activation_name(n->cfg.output);
        break;
    case NET_COST:
        list_names(t->arg, sizeof t->arg, "|", BP_COST_COUNT, -1, cost_name_i);
        v = bp_cost_name(n->cfg.cost);
        break;
    case NET_INIT:
        list_names(t->arg, sizeof t->arg, "|", BP_INIT_COUNT, -1, init_name_i);
        v = bp_init_name(n->cfg.init);
        break;
    case NET_DROPOUT:
        snprintf(t->dflt, sizeof t->dflt, "%g", (double)n->cfg.dropout);
        return;
    case NET_BATCHNORM: v = n->cfg.batchnorm ? "on" : "off"; break;
    case NET_ARCH: v = n->arch ? n->arch : "none (--layers)"; break;
    case NET_SEQUENCE: v = n->sequence_cols ? "cols" : "rows"; break;
    }
    snprintf(t->dflt, sizeof t->dflt, "%s", v);
}

const opt_group net_group = {"network", net_opts, net_parse, net_describe};

/* ---- runtime ----------------------------------------------------------------------------- */

static const opt_spec runtime_opts[] = {
    {"threads", RUNTIME_THREADS, "T", "", 0, 0},
    {"backend", RUNTIME_BACKEND, "", "the kernels\n"
                                     "blas: OpenBLAS; naive: plain loops, the reference", 0, 0},
    {"max-memory", RUNTIME_MAX_MEMORY, "N[k|M|G|T]",
     "the most bytes a net's plan may need\n"
     "(a larger net is refused when it is planned)", 0, 0},
    {0},
};

void runtime_args_init(runtime_args *r)
{
    bp_net_config nc;
    bp_net_config_init(&nc);
    *r = (runtime_args){.backend = nc.backend};
}

/* Returns the library's own string, so a net config never points into argv by accident. */
static const char *parse_backend(const char *flag, const char *s)
{
    for (int i = 0; i < bp_backend_count(); i++)
        if (strcmp(s, bp_backend_name(i)) == 0)
            return bp_backend_name(i);
    char names[256];
    list_names(names, sizeof names, ", ", bp_backend_count(), -1, backend_name_i);
    usage_error("%s: unknown backend '%s' (known: %s)", flag, s, names);
}

static void runtime_parse(void *target, const opt_spec *o, const char *flag, const char *value)
{
    runtime_args *r = target;
    switch (o->key) {
    case RUNTIME_THREADS: r->threads = (int)parse_uint(flag, value, 1, MAX_THREADS); break;
    case RUNTIME_BACKEND: r->backend = parse_backend(flag, value); break;
    case RUNTIME_MAX_MEMORY: r->max_memory = parse_bytes(flag, value); break;
    }
}

static void runtime_describe(const void *target, const opt_spec *o, opt_text *t)
{
    const runtime_args *r = target;
    switch (o->key) {
    case RUNTIME_THREADS:
        snprintf(t->help, sizeof t->help, "threads of the work, 1..%d", MAX_THREADS);
        if (r->threads > 0)
            snprintf(t->dflt, sizeof t->dflt, "%d", r->threads);
        else
            snprintf(t->dflt, sizeof t->dflt, "one per core");
        break;
    case RUNTIME_BACKEND:
        list_names(t->arg, sizeof t->arg, "|", bp_backend_count(), -1, backend_name_i);
        snprintf(t->dflt, sizeof t->dflt, "%s", r->backend);
        break;
    case RUNTIME_MAX_MEMORY:
        if (r->max_memory)
            snprintf(t->dflt, sizeof t->dflt, "%llu", (unsigned long long)r->max_memory);
        else
            snprintf(t->dflt, sizeof t->dflt, "the memory available");
        break;
    }
}

const opt_group runtime_group = {"runtime", runtime_opts, runtime_parse, runtime_describe};

/* ---- output ------------------------------------------------------------------------------ */

static const opt_spec output_opts[] = {
    {"summary-json", OUTPUT_SUMMARY, "FILE",
     "the results as JSON, replacing FILE whole\n"
     "(checked before the work; FILE may not be a device, a\n"
     "FIFO, a directory or a symbolic link)", 0, 0},
    {"out", OUTPUT_OUT, "FILE", "the output, replacing FILE whole\n"
                                "(checked before the work)", 'o', 0},
    {"json", OUTPUT_JSON, NULL, "JSON on standard output instead of the text", 0, 0},
    {0},
};

static void output_parse(void *target, const opt_spec *o, const char *flag, const char *value)
{
    output_args *out = target;
    switch (o->key) {
    case OUTPUT_SUMMARY: out->summary = parse_path(flag, value); break;
    case OUTPUT_OUT: out->out = parse_path(flag, value); break;
    case OUTPUT_JSON: out->json = 1; break;
    }
}

static void output_describe(const void *target, const opt_spec *o, opt_text *t)
{
    const output_args *out = target;
    if (o->key == OUTPUT_OUT && out->out_default)
        snprintf(t->dflt, sizeof t->dflt, "%s", out->out_default);
}

const opt_group output_group = {"output", output_opts, output_parse, output_describe};
