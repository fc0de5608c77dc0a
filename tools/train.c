/*
 * train.c - `backprop train`: the network and training flags, progress lines and the optional
 * per-epoch log, the run summary and the saved model. Everything numeric happens in libbackprop
 * through the public header only.
 */
#include "cli.h"
#include "ranks.h"
#include "log.h"
#include "progress.h"
#include "options.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    LOG_NORM_SAMPLES = 1000, /* --norm-samples with --log: Nielsen's ch. 5 measures over 1000 */
};

static const char *optimizer_name_i(int i) { return bp_optimizer_name((bp_optimizer_kind)i); }

static bp_optimizer_kind parse_optimizer(const char *flag, const char *s)
{
    bp_optimizer_kind k;
    char names[256];
    if (bp_optimizer_parse(s, &k) != BP_OK) {
        list_names(names, sizeof names, ", ", BP_OPT_COUNT, -1, optimizer_name_i);
        usage_error("%s: unknown optimizer '%s' (known: %s)", flag, s, names);
    }
    return k;
}

/* The library's parser, so the CLI and the API accept the same texts; its message says why. */
static bp_schedule parse_schedule(const char *flag, const char *s)
{
    bp_schedule sc;
    if (bp_schedule_parse(s, &sc) != BP_OK)
        usage_error("%s: %s", flag, bp_last_error());
    return sc;
}

/* "halve:10", "step:5:0.5": the schedule as --schedule takes it, F in its shortest exact form. */
static void schedule_text(const bp_schedule *sc, char *buf, size_t size)
{
    switch (sc->kind) {
    case BP_SCHEDULE_HALVE: snprintf(buf, size, "halve:%d", sc->epochs); return;
    case BP_SCHEDULE_STEP:
        for (int digits = 1; digits <= 9; digits++) {
            snprintf(buf, size, "step:%d:%.*g", sc->epochs, digits, (double)sc->factor);
            if (strtof(strrchr(buf, ':') + 1, NULL) == sc->factor)
                break;
        }
        return;
    case BP_SCHEDULE_COSINE: snprintf(buf, size, "cosine"); return;
    default: snprintf(buf, size, "const"); return;
    }
}

/* ---- options ----------------------------------------------------------------------------- */

/* The flags that only some optimisers read: given for another one, they would do nothing. */
enum { OPTIM_MOMENTUM, OPTIM_BETA1, OPTIM_BETA2, OPTIM_EPS, OPTIM_WEIGHT_DECAY, OPTIM_FLAGS };

/* The library's two configurations, starting from its defaults, and what only the CLI has. */
typedef struct options {
    data_args data;
    net_args net;        /* cfg.sizes and cfg.max_batch are set once the data is known */
    runtime_args runtime;
    output_args output;  /* --summary-json */
    bp_train_config train;
    const char *optim_flag[OPTIM_FLAGS]; /* the optimiser flags given, by OPTIM_* index */
    const char *log;     /* --log FILE: .jsonl or .csv */
    const char *save;    /* --save FILE: the model file */
    int norm_samples_given;
    const char *checkpoint; /* --checkpoint FILE */
    int checkpoint_every;   /* --checkpoint-every N epochs [1] */
    const char *resume;     /* --resume FILE */
    int rollback;           /* --on-diverge rollback */
    progress_mode progress; /* --progress */
    int quiet;              /* --quiet */
    int expand;             /* --expand */
    int epochs_given;
} options;

enum { MAX_ROLLBACKS = 3 };

/* train's own flags: how it trains, and the files of a run. */
enum {
    TRAIN_EPOCHS, TRAIN_BATCH, TRAIN_ETA, TRAIN_LAMBDA, TRAIN_L1, TRAIN_OPTIMIZER,
    TRAIN_MOMENTUM, TRAIN_BETA1, TRAIN_BETA2, TRAIN_EPS, TRAIN_WEIGHT_DECAY, TRAIN_CLIP_NORM,
    TRAIN_SCHEDULE, TRAIN_EARLY_STOP, TRAIN_SEED, TRAIN_EXPAND,
};
enum {
    RUN_SAVE, RUN_CHECKPOINT, RUN_CHECKPOINT_EVERY, RUN_RESUME, RUN_ON_DIVERGE, RUN_LOG,
    RUN_NORM_SAMPLES, RUN_PROGRESS, RUN_QUIET,
};

static const opt_spec training_opts[] = {
    {"epochs", TRAIN_EPOCHS, "N", "passes over the training images (with --resume: in all)", 0,
     0},
    {"batch", TRAIN_BATCH, "B", "", 0, OPT_CHANGES_RUN},
    {"eta", TRAIN_ETA, "X",
     "learning rate, > 0\n"
     "Nielsen ch. 1 uses 3.0 with the quadratic cost, ch. 3\n"
     "uses 0.5 with cross-entropy", 0, OPT_CHANGES_RUN},
    {"lambda", TRAIN_LAMBDA, "X", "L2 on the weights, Nielsen's (1 - eta lambda/n) W\n"
                                  "ch. 3 uses 5.0", 0, OPT_CHANGES_RUN},
    {"l1", TRAIN_L1, "X", "L1 on the weights, - (eta l1/n) sign(W)", 0, OPT_CHANGES_RUN},
    {"optimizer", TRAIN_OPTIMIZER, "", "the update rule", 0, OPT_CHANGES_RUN},
    {"momentum", TRAIN_MOMENTUM, "MU", "momentum, nesterov: v <- MU v - eta G; in [0, 1)", 0,
     OPT_CHANGES_RUN},
    {"beta1", TRAIN_BETA1, "B1", "adam, adamw: decay of the mean of G; in [0, 1)", 0,
     OPT_CHANGES_RUN},
    {"beta2", TRAIN_BETA2, "B2", "adam, adamw, rmsprop: decay of the mean of G^2", 0,
     OPT_CHANGES_RUN},
    {"eps", TRAIN_EPS, "E", "adam, adamw, rmsprop: added to sqrt(v); > 0", 0, OPT_CHANGES_RUN},
    {"weight-decay", TRAIN_WEIGHT_DECAY, "X", "adamw: W <- (1 - eta X) W, weights only", 0,
     OPT_CHANGES_RUN},
    {"clip-norm", TRAIN_CLIP_NORM, "X", "scale the gradient down to norm X when longer; 0: off",
     0, OPT_CHANGES_RUN},
    {"schedule", TRAIN_SCHEDULE, "const|halve:N|step:E:F|cosine",
     "eta between epochs: halved after N epochs without a\n"
     "better validation accuracy, ending the run at eta/128;\n"
     "times F every E epochs; cosine down to 0 over --epochs", 0, OPT_CHANGES_RUN},
    {"early-stop", TRAIN_EARLY_STOP, "N",
     "stop after N epochs without a better validation\n"
     "accuracy and keep the best epoch's net; 0: never", 0, OPT_CHANGES_RUN},
    {"seed", TRAIN_SEED, "S", "drives initialisation and shuffling", 0, OPT_CHANGES_RUN},
    /* Not OPT_CHANGES_RUN: a resumed run needs it again to have its training set, which the
     * checkpoint holds to its size. */
    {"expand", TRAIN_EXPAND, NULL,
     "train on each image and its copies moved one pixel up,\n"
     "down, left and right (5x the training set, Nielsen ch. 6),\n"
     "made as batches are gathered; validation and test as they are", 0, 0},
    {0},
};

static const opt_spec run_opts[] = {
    {"save", RUN_SAVE, "FILE",
     "the trained net as a model file (safetensors)\n"
     "with the data's image shape, input scale, class names and\n"
     "this configuration; with --early-stop the best epoch's\n"
     "net; checked before training like --summary-json", 0, 0},
    {"checkpoint", RUN_CHECKPOINT, "FILE",
     "the whole run, every --checkpoint-every epochs\n"
     "(the model, the optimiser's state, the sample order, the\n"
     "generator, the schedule), atomically; it is also a model\n"
     "file for eval and predict", 0, 0},
    {"checkpoint-every", RUN_CHECKPOINT_EVERY, "N", "epochs between checkpoints, with --checkpoint",
     0, 0},
    {"resume", RUN_RESUME, "FILE",
     "continue the run FILE holds, to --epochs in all\n"
     "the net and the training settings come from FILE, so\n"
     "flags that set them are refused; --data must be the run's\n"
     "data. On one thread the result is the uninterrupted run's,\n"
     "bit for bit", 0, 0},
    {"on-diverge", RUN_ON_DIVERGE, "stop|rollback", "", 0, 0},
    {"log", RUN_LOG, "FILE.jsonl|FILE.csv",
     "one record per epoch, written as it ends\n"
     "(epoch, eta, costs, validation accuracy, seconds,\n"
     "samples/s, each tensor's gradient norm); checked before\n"
     "training like --summary-json", 0, 0},
    {"norm-samples", RUN_NORM_SAMPLES, "N",
     "the training samples the --log norms are over\n"
     "(the mean cost's gradient over the first N); 0 leaves\n"
     "them out; with norms the log opens with epoch 0, the net\n"
     "as initialised", 0, OPT_CHANGES_RUN},
    {"progress", RUN_PROGRESS, "auto|always|never",
     "a live bar inside each epoch on standard output: samples\n"
     "done, samples/s, the time left in the epoch and the run,\n"
     "redrawn up to 10 times a second and wiped for the epoch's\n"
     "line; auto: only when standard output is a terminal", 0, 0},
    {"quiet", RUN_QUIET, NULL,
     "no epoch lines and no bar (unless --progress always): the\n"
     "first lines and the results only", 0, 0},
    {0},
};

static void training_parse(void *target, const opt_spec *spec, const char *flag,
                           const char *value)
{
    options *o = target;
    bp_train_config *tc = &o->train;
    /* Static names: the flag's text is the parser's and does not outlive the call. */
    static const char *const optim_names[OPTIM_FLAGS] = {
        "--momentum", "--beta1", "--beta2", "--eps", "--weight-decay"};
    switch (spec->key) {
    case TRAIN_EPOCHS:
        tc->epochs = (int)parse_uint(flag, value, 1, INT_MAX);
        o->epochs_given = 1;
        break;
    case TRAIN_BATCH: tc->batch = (int)parse_uint(flag, value, 1, BP_MAX_BATCH); break;
    case TRAIN_ETA: tc->eta = parse_number(flag, value, &NUMBER_POSITIVE).decimal; break;
    case TRAIN_LAMBDA: tc->lambda = parse_number(flag, value, &NUMBER_NONNEGATIVE).decimal; break;
    case TRAIN_L1: tc->l1 = parse_number(flag, value, &NUMBER_NONNEGATIVE).decimal; break;
    case TRAIN_OPTIMIZER: tc->optimizer = parse_optimizer(flag, value); break;
    case TRAIN_MOMENTUM: tc->momentum = parse_fraction(flag, value); break;
    case TRAIN_BETA1: tc->beta1 = parse_fraction(flag, value); break;
    case TRAIN_BETA2: tc->beta2 = parse_fraction(flag, value); break;
    case TRAIN_EPS: tc->eps = parse_number(flag, value, &NUMBER_POSITIVE).decimal; break;
    case TRAIN_WEIGHT_DECAY:
        tc->weight_decay = parse_number(flag, value, &NUMBER_NONNEGATIVE).decimal;
        break;
    case TRAIN_CLIP_NORM:
        tc->clip_norm = parse_number(flag, value, &NUMBER_NONNEGATIVE).decimal;
        break;
    case TRAIN_SCHEDULE: tc->schedule = parse_schedule(flag, value); break;
    case TRAIN_EARLY_STOP: tc->early_stop = (int)parse_uint(flag, value, 0, INT_MAX); break;
    case TRAIN_SEED: o->net.cfg.seed = tc->seed = parse_uint(flag, value, 0, UINT64_MAX); break;
    case TRAIN_EXPAND: o->expand = 1; break;
    }
    if (spec->key >= TRAIN_MOMENTUM && spec->key <= TRAIN_WEIGHT_DECAY)
        o->optim_flag[spec->key - TRAIN_MOMENTUM] = optim_names[spec->key - TRAIN_MOMENTUM];
}

/* The defaults are the library's (bp_train_config_init), as options_init set them. */
static void training_describe(const void *target, const opt_spec *spec, opt_text *t)
{
    const options *o = target;
    const bp_train_config *tc = &o->train;
    double value = 0;
    switch (spec->key) {
    case TRAIN_EPOCHS: value = tc->epochs; break;
    case TRAIN_BATCH:
        snprintf(t->help, sizeof t->help, "mini-batch size, 1..%d", BP_MAX_BATCH);
        value = tc->batch;
        break;
    case TRAIN_ETA: value = tc->eta; break;
    case TRAIN_LAMBDA: value = tc->lambda; break;
    case TRAIN_L1: value = tc->l1; break;
    case TRAIN_OPTIMIZER:
        list_names(t->arg, sizeof t->arg, "|", BP_OPT_COUNT, -1, optimizer_name_i);
        snprintf(t->dflt, sizeof t->dflt, "%s", bp_optimizer_name(tc->optimizer));
        return;
    case TRAIN_MOMENTUM: value = tc->momentum; break;
    case TRAIN_BETA1: value = tc->beta1; break;
    case TRAIN_BETA2: value = tc->beta2; break;
    case TRAIN_EPS: value = tc->eps; break;
    case TRAIN_WEIGHT_DECAY: value = tc->weight_decay; break;
    case TRAIN_CLIP_NORM: value = tc->clip_norm; break;
    case TRAIN_SCHEDULE: schedule_text(&tc->schedule, t->dflt, sizeof t->dflt); return;
    case TRAIN_EARLY_STOP: value = tc->early_stop; break;
    case TRAIN_SEED:
        snprintf(t->dflt, sizeof t->dflt, "%llu", (unsigned long long)tc->seed);
        return;
    case TRAIN_EXPAND: snprintf(t->dflt, sizeof t->dflt, "%s", o->expand ? "on" : "off"); return;
    }
    snprintf(t->dflt, sizeof t->dflt, "%g", value);
}

static void run_parse(void *target, const opt_spec *spec, const char *flag, const char *value)
{
    options *o = target;
    switch (spec->key) {
    case RUN_SAVE: o->save = parse_path(flag, value); break;
    case RUN_CHECKPOINT: o->checkpoint = parse_path(flag, value); break;
    case RUN_CHECKPOINT_EVERY:
        o->checkpoint_every = (int)parse_uint(flag, value, 1, INT_MAX);
        break;
    case RUN_RESUME: o->resume = parse_path(flag, value); break;
    case RUN_ON_DIVERGE:
        if (strcmp(value, "stop") != 0 && strcmp(value, "rollback") != 0)
            usage_error("%s: '%s' is not stop or rollback", flag, value);
        o->rollback = strcmp(value, "rollback") == 0;
        break;
    case RUN_LOG:
        if (log_format_of(value) == LOG_UNKNOWN)
            usage_error("%s: '%s' must end in .jsonl (JSON Lines) or .csv: the extension "
                        "chooses the format", flag, value);
        o->log = value;
        break;
    case RUN_NORM_SAMPLES:
        o->train.norm_samples = (int)parse_uint(flag, value, 0, INT_MAX);
        o->norm_samples_given = 1;
        break;
    case RUN_PROGRESS:
        if (progress_mode_parse(value, &o->progress) != 0)
            usage_error("%s: '%s' is not auto, always or never", flag, value);
        break;
    case RUN_QUIET: o->quiet = 1; break;
    }
}

static void run_describe(const void *target, const opt_spec *spec, opt_text *t)
{
    const options *o = target;
    switch (spec->key) {
    case RUN_CHECKPOINT_EVERY:
        snprintf(t->dflt, sizeof t->dflt, "%d", o->checkpoint_every);
        break;
    case RUN_ON_DIVERGE:
        snprintf(t->help, sizeof t->help,
                 "when training diverges, stop with an error, or go back\n"
                 "to the last good epoch with half the rate and go on (at\n"
                 "most %d times, each printed)", MAX_ROLLBACKS);
        snprintf(t->dflt, sizeof t->dflt, "%s", o->rollback ? "rollback" : "stop");
        break;
    case RUN_NORM_SAMPLES:
        snprintf(t->dflt, sizeof t->dflt, "%d with --log", LOG_NORM_SAMPLES);
        break;
    case RUN_PROGRESS:
        snprintf(t->dflt, sizeof t->dflt, "%s", progress_mode_name(o->progress));
        break;
    }
}

static const opt_group training_group = {"training", training_opts, training_parse,
                                         training_describe};
static const opt_group run_group = {"the run's files", run_opts, run_parse, run_describe};

static void options_init(void *opts)
{
    options *o = opts;
    *o = (options){.checkpoint_every = 1};
    data_args_init(&o->data);
    o->data.data = "mnist";
    net_args_init(&o->net);
    runtime_args_init(&o->runtime);
    bp_train_config_init(&o->train);
    /* One --seed drives initialisation and shuffling alike, so the default is one number too:
     * the net's. */
    o->train.seed = o->net.cfg.seed;
}

const command_line train_line = {
    .name = "train",
    .synopsis = "usage: backprop train [options]\n",
    .about =
        "Train a fully connected network, or with --arch a convolutional or recurrent one, with\n"
        "mini-batch SGD on MNIST-style IDX data.\n"
        "When OpenBLAS does not know the CPU and falls back to narrower kernels than it has,\n"
        "train restarts itself once with OPENBLAS_CORETYPE set to the fitting ones (unless\n"
        "OPENBLAS_CORETYPE is already set) and names both in its first line.\n"
        "The training file is split: the last 1/6 of its images validate each epoch\n"
        "(50,000 / 10,000 for MNIST, as in Nielsen); the t10k files give the final test figure.\n",
    .notes =
        "Integers are decimal digits only (no sign, no spaces); --eta is a decimal number such\n"
        "as 0.5 or 3e-2. A long option may be shortened to any unique prefix (--epo 5).\n"
        "\n"
        "signals: the first SIGINT (Ctrl-C) or SIGTERM ends training after the current\n"
        "mini-batch; with --checkpoint the run as it stopped is written there (--resume goes\n"
        "on from it, mid-epoch), a line says where it stopped, the test accuracy, the summary\n"
        "and the model are still produced, and the exit status is 130 (SIGINT) or 143\n"
        "(SIGTERM). A second one, or SIGHUP, ends the process at once. Either way every file\n"
        "is whole: the old one or the new one, with no temporary file left behind.\n"
        "\n"
        "exit status: 0 ok, 1 runtime failure (data, memory, files, output), 2 bad command "
        "line,\n"
        "130 or 143 training stopped by SIGINT or SIGTERM (its results still written)\n",
    .size = sizeof(options),
    .init = options_init,
    .uses = {{&data_group, offsetof(options, data), 1u << DATA_DATA},
             {&net_group, offsetof(options, net), 0},
             {&training_group, 0, 0},
             {&runtime_group, offsetof(options, runtime), 0},
             {&output_group, offsetof(options, output), 1u << OUTPUT_SUMMARY},
             {&run_group, 0, 0}},
};

void train_usage(FILE *f) { print_usage(f, &train_line); }

/* A hyper-parameter of another optimiser than the one chosen would be silently ignored. */
static void check_optimizer_flags(const options *o)
{
    bp_optimizer_kind k = o->train.optimizer;
    int velocity = k == BP_OPT_MOMENTUM || k == BP_OPT_NESTEROV;
    int adam = k == BP_OPT_ADAM || k == BP_OPT_ADAMW;
    const int reads[OPTIM_FLAGS] = {
        [OPTIM_MOMENTUM] = velocity,
        [OPTIM_BETA1] = adam,
        [OPTIM_BETA2] = adam || k == BP_OPT_RMSPROP,
        [OPTIM_EPS] = adam || k == BP_OPT_RMSPROP,
        [OPTIM_WEIGHT_DECAY] = k == BP_OPT_ADAMW,
    };
    static const char *const who[OPTIM_FLAGS] = {
        [OPTIM_MOMENTUM] = "momentum and nesterov",
        [OPTIM_BETA1] = "adam and adamw",
        [OPTIM_BETA2] = "adam, adamw and rmsprop",
        [OPTIM_EPS] = "adam, adamw and rmsprop",
        [OPTIM_WEIGHT_DECAY] = "adamw (L2 for any optimizer is --lambda)",
    };
    for (int i = 0; i < OPTIM_FLAGS; i++)
        if (o->optim_flag[i] && !reads[i])
            usage_error("%s: only %s use%s it, not --optimizer %s", o->optim_flag[i], who[i],
                        i == OPTIM_WEIGHT_DECAY ? "s" : "", bp_optimizer_name(k));
}

/* Two output flags naming one file would have one write over the other. */
static void check_output_names(const options *o)
{
    const char *summary = o->output.summary;
    if (o->log && summary && strcmp(o->log, summary) == 0)
        usage_error("--log and --summary-json name the same file '%s'", o->log);
    const char *outputs[] = {summary, o->log, o->save};
    for (int i = 0; i < 3 && o->checkpoint; i++)
        if (outputs[i] && strcmp(outputs[i], o->checkpoint) == 0)
            usage_error("--checkpoint and another output flag name the same file '%s'",
                        o->checkpoint);
    if (o->save && ((summary && strcmp(o->save, summary) == 0) ||
                    (o->log && strcmp(o->save, o->log) == 0)))
        usage_error("--save and %s name the same file '%s'",
                    summary && strcmp(o->save, summary) == 0 ? "--summary-json" : "--log",
                    o->save);
}

static void parse_train_args(int argc, char **argv, options *o)
{
    parsed_args p = parse_command_line(&train_line, o, argc, argv);
    o->net.cfg.backend = o->runtime.backend;
    check_optimizer_flags(o);
    apply_sequence(&o->net);
    /* --arch names every layer itself: a flag that shapes --layers' net would be ignored. */
    if (o->net.arch) {
        static const struct {
            int key;
            const char *flag;
        } dense_only[] = {{NET_LAYERS, "--layers"}, {NET_HIDDEN, "--hidden-act"},
                          {NET_OUTPUT, "--output"}, {NET_DROPOUT, "--dropout"},
                          {NET_BATCHNORM, "--batchnorm"}};
        for (size_t i = 0; i < sizeof dense_only / sizeof dense_only[0]; i++)
            if (o->net.given & (1u << dense_only[i].key))
                usage_error("--arch and %s: --arch names every layer and its activation; give "
                            "one or the other", dense_only[i].flag);
    }
    /* Both act behind hidden layers only: without one they would do nothing, silently. */
    const bp_net_config *nc = &o->net.cfg;
    if (nc->n_sizes < 3 && (nc->batchnorm || nc->dropout > 0.0f))
        usage_error("%s: the net has no hidden layer (--layers has %d sizes)",
                    nc->batchnorm ? "--batchnorm" : "--dropout", nc->n_sizes);
    /* The norms cost a forward and backward pass over their samples every epoch, and only the
     * log shows them. */
    if (o->norm_samples_given && !o->log)
        usage_error("--norm-samples: the gradient norms go to the --log file; give --log FILE "
                    "too");
    if (o->log && !o->norm_samples_given)
        o->train.norm_samples = LOG_NORM_SAMPLES;
    /* A resumed run takes its network and training from its checkpoint: such a flag would
     * silently not apply. */
    if (o->resume && p.run_option)
        usage_error("--resume: --%s would change the resumed run, whose network and training "
                    "settings come from the checkpoint (only --epochs, --data, --threads, "
                    "--backend, --max-memory and the output flags apply)", p.run_option->name);
    if (o->checkpoint_every != 1 && !o->checkpoint)
        usage_error("--checkpoint-every: the checkpoints go to the --checkpoint file; give "
                    "--checkpoint FILE too");
    check_output_names(o);
}

/* ---- signals ----------------------------------------------------------------------------- */

/* The first SIGINT or SIGTERM of a run; the training loop looks at it after every mini-batch
 * (after_batch) and every epoch (print_epoch). Atomic, not just volatile: the signal may be
 * handled on any of the process's threads (the net's team, OpenBLAS's pool), and a lock-free
 * atomic is both safe in a handler and a well-defined read on the training thread. */
static atomic_int stop_signal;
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "a signal handler may only use lock-free atomics");

static void on_stop(int sig) { stop_signal = sig; }

static void install_stop_handlers(void)
{
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    /* One-shot: a second signal ends the process the ordinary way. */
    sa.sa_flags = SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    static const int sigs[2] = {SIGINT, SIGTERM};
    for (int i = 0; i < 2; i++) {
        /* An ignored signal stays ignored: that is how a shell keeps Ctrl-C away from a
         * background job, and how nohup works. */
        if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler == SIG_IGN)
            continue;
        sigaction(sigs[i], &sa, NULL);
    }
}

/* ---- progress ---------------------------------------------------------------------------- */

typedef struct progress {
    int epochs, classes;
    int warned_chance, output_failed, log_failed;
    epoch_log *log;  /* NULL without --log */
    bp_net *net;
    const bp_dataset *valid;
    float *x, *out; /* room for PROBE_SAMPLES inputs and outputs */
    int show_eta;   /* a schedule moves eta: the epoch line says what it was */
    /* --checkpoint: the trainer, where and how often, and the model metadata to record. */
    bp_trainer *trainer;
    const char *checkpoint;
    int checkpoint_every, checkpoint_failed;
    const bp_model_meta *meta;
    /* --on-diverge rollback: the state after the last good epoch. */
    struct snapshot *snapshot;
    progress_bar bar;   /* --progress; bar.out NULL when none is drawn */
    int stopped_by_signal; /* print_epoch ended the run for a stop signal */
    int quiet;          /* --quiet: no epoch lines */
} progress;

/* After every mini-batch: a stop signal ends training there; otherwise the bar moves on. */
static int after_batch(const bp_batch_report *r, void *user)
{
    progress *p = user;
    if (stop_signal)
        return 1;
    progress_bar_update(&p->bar, r);
    return 0;
}

/* ---- rollback ------------------------------------------------------------------------------ */

/* Everything a trainer and its net need to be put back as they were after an epoch: copies of
 * the parameter and state arenas and of the trainer's state (its arrays included). */
typedef struct snapshot {
    int valid;
    float *params, *net_state, *optimizer_state, *best;
    size_t *order;
    size_t n_params, n_state;
    bp_trainer_state state;
} snapshot;

static void snapshot_free(snapshot *s)
{
    free(s->params);
    free(s->net_state);
    free(s->optimizer_state);
    free(s->best);
    free(s->order);
    memset(s, 0, sizeof *s);
}

/* 0, or -1 when there is no memory for it (then there is nothing to roll back to). */
static int snapshot_take(snapshot *s, bp_trainer *t)
{
    bp_net *net = bp_trainer_net(t);
    bp_trainer_state st;
    if (bp_trainer_get_state(t, &st) != BP_OK)
        return -1;
    size_t np, ns;
    const float *params = bp_net_params(net, &np), *state = bp_net_state(net, &ns);
    if (!s->params) {
        s->params = malloc(sizeof(float) * (np ? np : 1));
        s->net_state = malloc(sizeof(float) * (ns ? ns : 1));
        s->optimizer_state = malloc(sizeof(float) * (st.optimizer_state_count + 1));
        s->best = malloc(sizeof(float) * (np + ns + 1));
        s->order = malloc(sizeof(size_t) * (st.n + 1));
        if (!s->params || !s->net_state || !s->optimizer_state || !s->best || !s->order) {
            snapshot_free(s);
            return -1;
        }
    }
    memcpy(s->params, params, sizeof(float) * np);
    if (ns)
        memcpy(s->net_state, state, sizeof(float) * ns);
    memcpy(s->order, st.order, sizeof(size_t) * st.n);
    if (st.optimizer_state_count)
        memcpy(s->optimizer_state, st.optimizer_state,
               sizeof(float) * st.optimizer_state_count);
    if (st.best_params)
        memcpy(s->best, st.best_params, sizeof(float) * st.best_count);
    s->state = st;
    s->state.order = s->order;
    s->state.optimizer_state = st.optimizer_state_count ? s->optimizer_state : NULL;
    s->state.best_params = st.best_params ? s->best : NULL;
    s->n_params = np;
    s->n_state = ns;
    s->valid = 1;
    return 0;
}

/* Put the trainer and its net back as they were, the learning rate halved. */
static bp_status snapshot_restore(const snapshot *s, bp_trainer *t)
{
    bp_net *net = bp_trainer_net(t);
    memcpy(bp_net_params(net, NULL), s->params, sizeof(float) * s->n_params);
    if (s->n_state)
        memcpy(bp_net_state(net, NULL), s->net_state, sizeof(float) * s->n_state);
    bp_trainer_state st = s->state;
    st.eta /= 2.0;
    return bp_trainer_set_state(t, &st);
}

enum { PROBE_SAMPLES = 64 };
/* Measured on the test's data: saturated nets spread their outputs by 5e-6 at most, nets that
 * are only slow to learn by 4e-2 and more. */
#define SATURATED_SPREAD 1e-4f
/* A sigmoid or softmax output within this of 0 or 1 has no gradient left to learn from. */
#define PINNED 1e-6f

/* Whether the net looks saturated on the first validation samples: it gives (nearly) the same
 * outputs for all of them, or nine in ten of its outputs are pinned at 0 or 1 (what an --eta of
 * 1e30 does to MNIST: 16-19% accuracy, every sigmoid stuck). A net that is merely slow to learn
 * does neither. */
static int looks_saturated(progress *p)
{
    size_t n = bp_dataset_count(p->valid);
    int k = n < PROBE_SAMPLES ? (int)n : PROBE_SAMPLES;
    int dim = bp_dataset_dim(p->valid), n_out = bp_net_size(p->net, bp_net_layers(p->net));
    if (k < 2 || bp_dataset_gather(p->valid, NULL, k, p->x, NULL, n_out) != BP_OK ||
        bp_net_forward(p->net, p->x, dim, k, p->out, n_out) != BP_OK)
        return 0;
    float spread = 0;
    size_t pinned = 0, total = (size_t)k * (size_t)n_out;
    for (int j = 0; j < k; j++)
        for (int i = 0; i < n_out; i++) {
            float a = p->out[(size_t)j * n_out + i], d = fabsf(a - p->out[i]);
            if (!(d <= spread))
                spread = d;
            pinned += fabsf(a) <= PINNED || fabsf(a - 1.0f) <= PINNED;
        }
    return spread <= SATURATED_SPREAD || pinned * 10 >= total * 9;
}

/* The run as it is now to --checkpoint, no signal ending the process in the middle. */
static int write_checkpoint(progress *p)
{
    critical c;
    critical_begin(&c);
    bp_status st = bp_checkpoint_save(p->trainer, p->checkpoint, p->meta);
    critical_end(&c);
    if (st != BP_OK) {
        print_error("--checkpoint: %s", bp_last_error());
        p->checkpoint_failed = 1;
        return -1;
    }
    return 0;
}

static void print_epoch_line(const progress *p, const bp_epoch_report *r)
{
    printf("epoch %d/%d  ", r->epoch, p->epochs);
    if (r->validation_accuracy >= 0)
        printf("validation %.2f%%  ", 100.0 * r->validation_accuracy);
    else
        printf("validation -  ");
    if (p->show_eta)
        printf("eta %g  ", r->eta);
    printf("cost %.4f  %.0f samples/s  %.2f s\n", r->train_cost, r->samples_per_second,
           r->seconds);
}

static int epoch_end(const bp_epoch_report *r, progress *p)
{
    progress_bar_clear(&p->bar);
    if (!p->quiet)
        print_epoch_line(p, r);
    progress_bar_epoch_end(&p->bar);
    /* Progress is for people watching a pipe or a log: push each line out as it happens. */
    if (stdout_failed()) {
        p->output_failed = 1;
        return 1;
    }
    /* A log with a hole in it would be worse than a run that stops and says why: the records
     * written so far stay, the run ends with status 1. */
    if (p->log) {
        char why[PATH_BUF + 256];
        /* The accuracy passes through float in the library: snapped back to count/n, as the
         * summary has it (0.9425, not 0.9424999952316284). */
        bp_epoch_report rec = *r;
        if (rec.validation_accuracy >= 0 && p->valid) {
            double n = (double)bp_dataset_count(p->valid);
            rec.validation_accuracy = (double)llround(rec.validation_accuracy * n) / n;
        }
        if (epoch_log_write(p->log, &rec, why, sizeof why) != 0) {
            print_error("%s", why);
            p->log_failed = 1;
            return 1;
        }
    }
    /* A net driven into saturation (an --eta far too large) is stuck near chance. Its numbers
     * are finite, so that is no error, but the figures that follow are meaningless and the
     * user should know why: once is enough. */
    if (!p->warned_chance && p->classes > 1 && r->validation_accuracy >= 0 &&
        r->validation_accuracy <= 2.0 / p->classes && looks_saturated(p)) {
        p->warned_chance = 1;
        fprintf(stderr, "backprop: warning: validation accuracy %.2f%% is near chance level for "
                "%d %s and the outputs are saturated; try a smaller --eta\n",
                100.0 * r->validation_accuracy, p->classes, plural(p->classes, "class",
                                                                   "classes"));
    }
    /* Read once: the run stops here exactly when this epoch's checkpoint is written for it
     * (whatever --checkpoint-every says); a later signal stops the next mini-batch. */
    int stopping = stop_signal != 0;
    if (p->checkpoint && (r->epoch % p->checkpoint_every == 0 || stopping) &&
        write_checkpoint(p) != 0)
        return 1;
    if (p->snapshot && snapshot_take(p->snapshot, p->trainer) != 0)
        fprintf(stderr, "backprop: warning: no memory to keep epoch %d for --on-diverge "
                "rollback\n", r->epoch);
    p->stopped_by_signal = stopping;
    return stopping;
}

/* After every epoch. Over MPI a signal may have reached some ranks only, and the files are
 * rank 0's: every rank stops, for a signal any rank has seen or a failure rank 0 had, after
 * the same epoch, two sums each (before anything that can fail, and after). */
static int print_epoch(const bp_epoch_report *r, void *user)
{
    progress *p = user;
    if (ranks_size() == 1)
        return epoch_end(r, p);
    stop_signal = ranks_max(stop_signal);
    return ranks_max(epoch_end(r, p) != 0);
}

/* A stop signal ended training: inside an epoch (the run returned BP_ESTOPPED) the checkpoint
 * of where it stopped, which print_epoch wrote at an epoch's end, and the best epoch's net
 * back for the test figure and --save, as a whole run ends; then the line saying where it
 * stopped. 0, or -1 with the reason printed. */
static int report_interruption(progress *p, int mid_epoch, int early_stop)
{
    bp_trainer_state st;
    bp_trainer_get_state(p->trainer, &st);
    if (mid_epoch && p->checkpoint && write_checkpoint(p) != 0)
        return -1;
    bp_status restored = BP_OK;
    if (mid_epoch && early_stop > 0 && bp_trainer_best(p->trainer, NULL) > 0)
        restored = bp_trainer_restore_best(p->trainer);
    if (restored != BP_OK) {
        print_lib_error(restored);
        return -1;
    }
    const char *name = stop_signal == SIGTERM ? "SIGTERM" : "SIGINT";
    if (mid_epoch)
        printf("interrupted by %s: stopped in epoch %d after %zu of %zu samples", name,
               st.epoch + 1, st.position, st.n);
    else
        printf("interrupted by %s: stopped after epoch %d", name, st.epoch);
    if (p->checkpoint)
        printf("; the run is in %s (--resume goes on from there)", p->checkpoint);
    putchar('\n');
    return 0;
}

/* ---- the summary JSON -------------------------------------------------------------------- */

typedef struct summary {
    double test_accuracy, validation_accuracy, train_seconds, samples_per_second;
    int epochs, threads;
    double best_validation_accuracy, final_eta; /* best: -1 without a validation set */
    int best_epoch, stopped_early;
    const char *interrupted; /* the signal that stopped training, or NULL */
    const char *data_dir;
} summary;

/* The run's configuration as a JSON object, its members indented by `in` plus two spaces:
 * the summary's "config" and the model file's training record are this one text, so they
 * cannot drift apart. */
static void write_config_json(FILE *f, const options *o, int threads, const char *dir,
                              const char *in)
{
    fprintf(f, "{\n%s  \"data\": ", in);
    json_string(f, dir);
    fprintf(f, ",\n%s  \"layers\": [", in);
    for (int i = 0; i < o->net.cfg.n_sizes; i++)
        fprintf(f, "%s%d", i ? ", " : "", o->net.sizes[i]);
    fputs("]", f);
    if (o->net.arch) {
        fprintf(f, ",\n%s  \"arch\": ", in);
        json_string(f, o->net.arch);
    }
    const struct {
        const char *key, *value;
    } names[] = {{"hidden_act", bp_activation_name(o->net.cfg.hidden)},
                 {"output", bp_activation_name(o->net.cfg.output)},
                 {"cost", bp_cost_name(o->net.cfg.cost)},
                 {"init", bp_init_name(o->net.cfg.init)}};
    /* --arch's spec holds each layer's activation: hidden_act and output would misstate it. */
    for (size_t i = o->net.arch ? 2 : 0; i < sizeof names / sizeof names[0]; i++) {
        fprintf(f, ",\n%s  \"%s\": ", in, names[i].key);
        json_string(f, names[i].value);
    }
    fprintf(f, ",\n%s  \"epochs\": %d,\n%s  \"batch\": %d,\n%s  \"eta\": ", in,
            o->train.epochs, in, o->train.batch, in);
    json_float(f, o->train.eta);
    fprintf(f, ",\n%s  \"lambda\": ", in);
    json_float(f, o->train.lambda);
    fprintf(f, ",\n%s  \"l1\": ", in);
    json_float(f, o->train.l1);
    fprintf(f, ",\n%s  \"optimizer\": ", in);
    json_string(f, bp_optimizer_name(o->train.optimizer));
    const struct {
        const char *key;
        float value;
    } hyper[] = {{"momentum", o->train.momentum}, {"beta1", o->train.beta1},
                 {"beta2", o->train.beta2},       {"eps", o->train.eps},
                 {"weight_decay", o->train.weight_decay}, {"clip_norm", o->train.clip_norm}};
    for (size_t i = 0; i < sizeof hyper / sizeof hyper[0]; i++) {
        fprintf(f, ",\n%s  \"%s\": ", in, hyper[i].key);
        json_float(f, hyper[i].value);
    }
    char schedule[64];
    schedule_text(&o->train.schedule, schedule, sizeof schedule);
    fprintf(f, ",\n%s  \"schedule\": ", in);
    json_string(f, schedule);
    fprintf(f, ",\n%s  \"early_stop\": %d", in, o->train.early_stop);
    fprintf(f, ",\n%s  \"expand\": %s", in, o->expand ? "true" : "false");
    fprintf(f, ",\n%s  \"dropout\": ", in);
    json_float(f, o->net.cfg.dropout);
    fprintf(f, ",\n%s  \"batchnorm\": %s", in, o->net.cfg.batchnorm ? "true" : "false");
    /* A seed can exceed 2^53, where JSON readers lose digits: keep it exact as a string. */
    fprintf(f, ",\n%s  \"seed\": \"%llu\",\n%s  \"threads\": %d,\n%s  \"backend\": ", in,
            (unsigned long long)o->net.cfg.seed, in, threads, in);
    json_string(f, o->net.cfg.backend);
    fprintf(f, "\n%s}", in);
}

typedef struct summary_job {
    const options *o;
    const summary *s;
} summary_job;

static int write_summary_json(FILE *f, const void *arg)
{
    const summary_job *job = arg;
    const summary *s = job->s;
    fputs("{\n  \"test_accuracy\": ", f);
    json_double(f, s->test_accuracy);
    fputs(",\n  \"validation_accuracy\": ", f);
    if (s->validation_accuracy >= 0)
        json_double(f, s->validation_accuracy);
    else
        fputs("null", f);
    fputs(",\n  \"best_validation_accuracy\": ", f);
    if (s->best_validation_accuracy >= 0)
        json_double(f, s->best_validation_accuracy);
    else
        fputs("null", f);
    fprintf(f, ",\n  \"best_epoch\": %d,\n  \"stopped_early\": %s,\n  \"final_eta\": ",
            s->best_epoch, s->stopped_early ? "true" : "false");
    json_float(f, (float)s->final_eta); /* the rate as the float the steps used */
    fputs(",\n  \"interrupted\": ", f);
    if (s->interrupted)
        json_string(f, s->interrupted);
    else
        fputs("null", f);
    fprintf(f, ",\n  \"epochs\": %d,\n  \"train_seconds\": ", s->epochs);
    json_double(f, s->train_seconds);
    fputs(",\n  \"samples_per_second\": ", f);
    json_double(f, s->samples_per_second);
    /* The processes the run took (mpirun's ranks) and rank 0's seconds in their sums: a
     * throughput means nothing without them. Not in config: a checkpoint resumes on any. */
    fprintf(f, ",\n  \"ranks\": %d,\n  \"communication_seconds\": ", ranks_size());
    json_double(f, ranks_seconds());
    fputs(",\n  \"config\": ", f);
    write_config_json(f, job->o, s->threads, s->data_dir, "  ");
    fputs("\n}\n", f);
    return 0;
}

/* The trained net with what a later eval or predict needs to feed it as it was trained: the
 * image shape, the bytes' scale, the class names of a known data set (only when the outputs
 * are exactly its classes: the names are the outputs') and the configuration. */
/* The model file's metadata for this run: the data's image shape and scaling, its class names
 * when the outputs are exactly those classes, and the configuration as JSON (*training, which
 * the caller frees). 0, or -1 with the reason printed (flag names the output). */
static int model_meta(const options *o, int n_out, const bp_idx_info *images, int threads,
                      const char *dir, const char *flag, bp_model_meta *meta, char **training)
{
    size_t len = 0;
    *training = NULL;
    FILE *f = open_memstream(training, &len);
    if (!f) {
        print_error("%s: %s", flag, strerror(errno));
        return -1;
    }
    write_config_json(f, o, threads, dir, "");
    int failed = ferror(f);
    if (fclose(f) != 0 || failed) {
        print_error("%s: cannot format the configuration in memory: %s", flag,
                    strerror(ENOMEM));
        free(*training);
        *training = NULL;
        return -1;
    }
    const char *names = data_class_names(o->data.data);
    int n_names = 0;
    for (const char *p = names; p && *p; p++)
        n_names += *p == ',';
    *meta = (bp_model_meta){
        .input_rows = images->rows,
        .input_cols = images->cols,
        .input_scale = 1.0f / 255.0f, /* what bp_dataset_gather multiplies IDX bytes by */
        .class_names = names && n_names + 1 == n_out ? names : NULL,
        .training = *training,
    };
    return 0;
}

static int save_model(const options *o, const bp_net *net, const bp_model_meta *meta)
{
    critical c;
    critical_begin(&c);
    bp_status st = bp_model_save(net, o->save, meta);
    if (st != BP_OK)
        print_error("--save: %s", bp_last_error());
    critical_end(&c);
    return st == BP_OK ? 0 : -1;
}

/* The options a resumed run's net stands for, read back from its spec ("dense:30:linear,
 * batchnorm:sigmoid,dropout:0.5,dense:10:sigmoid"), so the header line and the recorded
 * configuration describe the net actually trained. */
static void options_from_net(options *o, const bp_net *net)
{
    const char *spec = bp_net_spec(net);
    o->net.cfg.n_sizes = 1;
    o->net.sizes[0] = bp_net_size(net, 0);
    o->net.cfg.batchnorm = 0;
    o->net.cfg.dropout = 0.0f;
    /* Image layers have no --layers form: such a net is described by its spec, as --arch. */
    o->net.arch = NULL;
    if (spec && (strstr(spec, "conv:") || strstr(spec, "pool:"))) {
        o->net.arch = spec;
        o->net.cfg.cost = bp_net_cost(net);
        return;
    }
    for (const char *p = spec; p && *p;) {
        size_t len = strcspn(p, ",");
        char tok[64];
        snprintf(tok, sizeof tok, "%.*s", (int)(len < sizeof tok ? len : sizeof tok - 1), p);
        char *act = strrchr(tok, ':');
        if (strncmp(tok, "dense:", 6) == 0 && o->net.cfg.n_sizes < BP_MAX_SIZES) {
            o->net.sizes[o->net.cfg.n_sizes++] = atoi(tok + 6);
            if (act)
                bp_activation_parse(act + 1, &o->net.cfg.output);
            if (o->net.cfg.output != BP_ACT_LINEAR || !o->net.cfg.batchnorm)
                o->net.cfg.hidden = o->net.cfg.n_sizes == 2 ? o->net.cfg.output : o->net.cfg.hidden;
        } else if (strncmp(tok, "batchnorm", 9) == 0) {
            o->net.cfg.batchnorm = 1;
            if (act)
                bp_activation_parse(act + 1, &o->net.cfg.hidden);
        } else if (strncmp(tok, "dropout:", 8) == 0) {
            o->net.cfg.dropout = strtof(tok + 8, NULL);
        }
        p += len + (p[len] == ',');
    }
    o->net.cfg.cost = bp_net_cost(net);
}

/* ---- train ------------------------------------------------------------------------------- */

/* The log's epoch 0: the net as initialised, before any step (Nielsen's ch. 5 table of how
 * fast each layer learns is taken there): the gradient norms and the validation figures. It has
 * no training cost and no speed (null in JSON Lines, nan in CSV). */
static int log_initial_net(epoch_log *log, bp_net *net, const data *d,
                           const bp_train_config *tc)
{
    int count = bp_net_tensor_count(net);
    double *norms = calloc((size_t)count, sizeof *norms);
    if (!norms) {
        print_error("--log: %s", strerror(ENOMEM));
        return -1;
    }
    bp_epoch_report r = {.epoch = 0, .eta = tc->eta, .train_cost = NAN,
                         .validation_accuracy = -1.0, .validation_cost = -1.0,
                         .samples_per_second = NAN, .grad_norms = norms, .n_grad_norms = count};
    float accuracy;
    bp_status st = bp_net_grad_norms(net, d->train, (size_t)tc->norm_samples, norms, count);
    if (st == BP_OK && d->valid &&
        (st = bp_evaluate(net, d->valid, &accuracy, &r.validation_cost)) == BP_OK) {
        double n = (double)bp_dataset_count(d->valid);
        r.validation_accuracy = (double)llround(accuracy * n) / n;
    }
    char why[PATH_BUF + 256];
    int rc = 0;
    if (st != BP_OK) {
        print_lib_error(st);
        rc = -1;
    } else if (epoch_log_write(log, &r, why, sizeof why) != 0) {
        print_error("%s", why);
        rc = -1;
    }
    free(norms);
    return rc;
}

/* The run's first line: what trains, on what, with which kernels. 0, or -1 when stdout fails. */
static int print_header(const options *o, const bp_net *net, const bp_trainer *resumed)
{
    printf("backprop %s  layers ", bp_version());
    for (int i = 0; i < o->net.cfg.n_sizes; i++)
        printf("%s%d", i ? "," : "", o->net.sizes[i]);
    /* --arch's spec names each layer's activation, so hidden and output would misstate it. */
    if (o->net.arch) {
        int channels, rows, cols;
        bp_net_input_shape(net, &channels, &rows, &cols);
        printf("  input %dx%dx%d  arch %s", channels, rows, cols, bp_net_spec(net));
    } else {
        printf("  hidden %s  output %s", bp_activation_name(o->net.cfg.hidden),
               bp_activation_name(o->net.cfg.output));
    }
    printf("  cost %s  init %s  eta %g  batch %d  epochs %d  backend %s"
           "  threads %d  seed %llu  openblas %s",
           bp_cost_name(o->net.cfg.cost), bp_init_name(o->net.cfg.init), (double)o->train.eta,
           o->train.batch, o->train.epochs, bp_net_backend(net), bp_net_threads(net),
           (unsigned long long)o->net.cfg.seed, bp_blas_core());
    const char *fallback = getenv(FALLBACK_VAR);
    if (fallback && *fallback)
        printf(" (OpenBLAS chose %s for this CPU)", fallback);
    if (ranks_size() > 1)
        printf("  ranks %d (%s)", ranks_size(), ranks_transport());
    if (resumed)
        printf("  resumed from %s at epoch %d", o->resume, bp_trainer_epochs_done(resumed));
    putchar('\n');
    return stdout_failed() ? -1 : 0;
}

/* --resume: the net and the trainer from the checkpoint, and the options they stand for (the
 * saved configuration, --epochs excepted when given). 0, or -1 with the reason printed. */
static int resume_run(options *o, const data *d, int dim, const char *dir, bp_net **net,
                      bp_trainer **trainer)
{
    bp_net_config nc;
    bp_net_config_init(&nc);
    nc.backend = o->net.cfg.backend;
    if (bp_checkpoint_load(o->resume, d->train, &nc, net, trainer, NULL) != BP_OK) {
        print_error("--resume: %s", bp_last_error());
        return -1;
    }
    if (bp_net_size(*net, 0) != dim) {
        print_error("--resume: the checkpoint's net has %d inputs but '%s' has %d per sample",
                    bp_net_size(*net, 0), dir, dim);
        return -1;
    }
    int epochs = o->train.epochs;
    bp_trainer_config(*trainer, &o->train);
    if (o->epochs_given)
        o->train.epochs = epochs;
    options_from_net(o, *net);
    o->net.cfg.seed = o->train.seed;
    return 0;
}

/* One run, from the flags to the last file: what the steps of cmd_train hand on to each other.
 * Each step returns 0, or the exit status it failed with (its reason printed). */
typedef struct train_run {
    options o;
    double t_start;
    data_dir dd;
    char path[DATA_FILES][PATH_BUF];
    bp_idx_info train_info, test_info;
    int dim, classes, n_out;
    data d;
    bp_net *net;
    bp_trainer *trainer;
    snapshot snap;
    epoch_log *log;
    char *training_json;
    bp_model_meta meta;
    float *probe_x, *probe_out; /* room for looks_saturated */
    progress prog;
    bp_train_result res;
    int interrupted; /* the signal that stopped training, 0 if none did */
    size_t correct, n_test;
} train_run;

/* Everything that can be refused before any data is read: the process settings, the data
 * directory, the output paths. */
static int check_before_work(train_run *r)
{
    const options *o = &r->o;
    bp_status st;
    if ((o->runtime.threads > 0 && (st = bp_set_threads(o->runtime.threads)) != BP_OK) ||
        (st = bp_set_memory_limit(o->runtime.max_memory)) != BP_OK) {
        print_lib_error(st);
        return 1;
    }
    if (resolve_data_dir(o->data.data, &r->dd) != 0)
        return 1;
    /* JSON strings are Unicode: a path of other bytes cannot be recorded faithfully, and a
     * summary that misnames its data is worse than none. Refused now, before any work. */
    if (o->output.summary && !is_utf8(r->dd.path)) {
        print_error("--summary-json: the data directory '%s' is not valid UTF-8, which a JSON "
                    "string cannot hold; rename it or reach it through a link with a UTF-8 "
                    "name", r->dd.path);
        return EXIT_USAGE;
    }
    const char *flags[] = {"--summary-json", "--log", "--save", "--checkpoint"};
    const char *paths[] = {o->output.summary, o->log, o->save, o->checkpoint};
    for (int i = 0; i < 4; i++)
        if (paths[i] && check_output_path(flags[i], paths[i]) != 0)
            return 1;
    return find_data(o->data.data, &r->dd, DATA_ALL_FILES, r->path) != 0 ? 1 : 0;
}

/* The image files' headers: they cost a few bytes each, and what they say decides whether the
 * payload (50 MB of gunzip for MNIST) is worth reading and how big the net's plan is. */
static int read_headers(train_run *r)
{
    bp_status st;
    if ((st = bp_idx_info_read(r->path[TRAIN_IMAGES], &r->train_info)) != BP_OK ||
        (st = bp_idx_info_read(r->path[TEST_IMAGES], &r->test_info)) != BP_OK) {
        print_lib_error(st);
        return 1;
    }
    const bp_idx_info *train = &r->train_info, *test = &r->test_info;
    /* Equal pixel counts are not enough: 784x1 images are not 28x28 ones. */
    if (test->rows != train->rows || test->cols != train->cols) {
        print_error("'%s' holds %dx%d images but '%s' holds %dx%d: the test images must have "
                    "the training images' shape", r->path[TRAIN_IMAGES], train->rows,
                    train->cols, r->path[TEST_IMAGES], test->rows, test->cols);
        return 1;
    }
    r->dim = train->rows * train->cols;
    const int *sizes = r->o.net.sizes;
    /* A wrong --layers for this data set is the user's to fix: status 2, like any bad flag. */
    if (!r->o.resume && !r->o.net.arch && sizes[0] != r->dim) {
        print_error("--layers: the input layer has %d %s but '%s' has %d %s per sample (%dx%d "
                    "images; try --layers %d,...)", sizes[0], plural(sizes[0], "neuron",
                    "neurons"), r->dd.path, r->dim, plural(r->dim, "input", "inputs"),
                    train->rows, train->cols, r->dim);
        return EXIT_USAGE;
    }
    return 0;
}

/* The net of a new run, before the data is loaded: the library's pairing and memory checks
 * cost nothing and should not wait for the payload. A resumed run's comes with its data. */
static int build_net(train_run *r)
{
    options *o = &r->o;
    /* Planned for the larger of a mini-batch and what training can use of it: a batch beyond
     * the training set trains as one batch of the whole set (as load_data splits it). */
    size_t n_train = (r->train_info.count - r->train_info.count / 6) * (o->expand ? 5 : 1);
    int max_batch = (size_t)o->train.batch < n_train ? o->train.batch : (int)n_train;
    o->net.cfg.sizes = o->net.sizes;
    o->net.cfg.max_batch = max_batch > 0 ? max_batch : 1;
    if (o->resume)
        return 0;
    if (o->net.arch) {
        /* The images are one plane each: the IDX header's rows and columns are the shape. */
        o->net.sizes[0] = r->dim;
        o->net.cfg.n_sizes = 1;
        o->net.cfg.layers = o->net.arch;
        o->net.cfg.input_channels = 1;
        o->net.cfg.input_rows = r->train_info.rows;
        o->net.cfg.input_cols = r->train_info.cols;
    }
    bp_status st = bp_net_create(&r->net, &o->net.cfg);
    if (st == BP_OK && o->net.arch)
        o->net.arch = bp_net_spec(r->net); /* the spec as the model file records it */
    if (st != BP_OK) {
        if (o->net.arch && st == BP_EINVAL)
            print_error("--arch: %s", bp_last_error());
        else
            print_lib_error(st);
        /* The whole configuration comes from the command line, so a configuration the library
         * refuses is the user's to fix; running out of memory is not. */
        return st == BP_EINVAL ? EXIT_USAGE : 1;
    }
    return print_header(o, r->net, NULL) != 0 ? 1 : 0;
}

/* Both files, held to the shape the headers gave should they have changed since; a resumed
 * run's net and settings, from its checkpoint, which needs the training set (the run's,
 * checked by its size) to make the trainer; the classes against the output layer. */
static int load_run_data(train_run *r)
{
    options *o = &r->o;
    data *d = &r->d;
    const bp_idx_expect shape = {.rows = r->train_info.rows, .cols = r->train_info.cols};
    if (load_data(r->path, DATA_ALL_FILES, &shape, d) != 0 ||
        check_labels(o->data.data, d, r->path) != 0)
        return 1;
    if (o->expand) {
        bp_dataset *expanded;
        bp_status st = bp_dataset_expand_shifts(d->train, &expanded);
        if (st != BP_OK) {
            print_lib_error(st);
            return 1;
        }
        bp_dataset_free(d->train);
        d->train = expanded;
    }
    if (o->resume && (resume_run(o, d, r->dim, r->dd.path, &r->net, &r->trainer) != 0 ||
                      print_header(o, r->net, r->trainer) != 0))
        return 1;
    int classes = bp_dataset_classes(d->train), test_classes = bp_dataset_classes(d->test);
    r->classes = test_classes > classes ? test_classes : classes;
    r->n_out = bp_net_size(r->net, bp_net_layers(r->net));
    if (r->n_out < r->classes) {
        print_error("%s: the output layer has %d %s but '%s' has %d classes",
                    o->net.arch ? "--arch" : "--layers", r->n_out,
                    plural(r->n_out, "neuron", "neurons"), r->dd.path, r->classes);
        return EXIT_USAGE;
    }
    printf("data %s: %zu train, %zu validation, %zu test, %d %s, %d %s\n", r->dd.path,
           bp_dataset_count(d->train), d->valid ? bp_dataset_count(d->valid) : (size_t)0,
           bp_dataset_count(d->test), r->dim, plural(r->dim, "input", "inputs"), r->classes,
           plural(r->classes, "class", "classes"));
    return stdout_failed() ? 1 : 0;
}

/* What the epochs report to: the saturation probe's buffers, the log (created or emptied only
 * now, when training is about to start: a run that fails on its data leaves an old log as it
 * was), the model metadata for --save and --checkpoint, the trainer, the rollback snapshot. */
static int prepare_training(train_run *r)
{
    const options *o = &r->o;
    const data *d = &r->d;
    char why[PATH_BUF + 256];
    /* The library refuses these without a validation set too, but as a runtime failure; the
     * fix is on the command line, and training has not started. */
    if (!d->valid && (o->train.early_stop > 0 || o->train.schedule.kind == BP_SCHEDULE_HALVE)) {
        print_error("%s: needs a validation set, and '%s' has too few training images to "
                    "split one off", o->train.early_stop > 0 ? "--early-stop" : "--schedule",
                    r->dd.path);
        return EXIT_USAGE;
    }
    if (d->valid && (!(r->probe_x = malloc(sizeof(float) * PROBE_SAMPLES * (size_t)r->dim)) ||
                     !(r->probe_out = malloc(sizeof(float) * PROBE_SAMPLES * (size_t)r->n_out)))) {
        print_error("%s", strerror(ENOMEM));
        return 1;
    }
    if (o->log &&
        !(r->log = epoch_log_open(o->log, r->net, o->train.norm_samples > 0, why, sizeof why))) {
        print_error("%s", why);
        return 1;
    }
    if (!o->resume && r->log && o->train.norm_samples > 0 &&
        log_initial_net(r->log, r->net, d, &o->train) != 0)
        return 1;
    if ((o->save || o->checkpoint) &&
        model_meta(o, r->n_out, &r->train_info, bp_net_threads(r->net), r->dd.path,
                   o->save ? "--save" : "--checkpoint", &r->meta, &r->training_json) != 0)
        return 1;
    bp_status st;
    if (!r->trainer &&
        (st = bp_trainer_create(&r->trainer, r->net, d->train, &o->train)) != BP_OK) {
        print_lib_error(st);
        return 1;
    }
    r->prog = (progress){.epochs = o->train.epochs, .classes = r->classes, .net = r->net,
                         .valid = d->valid,
                         .show_eta = o->train.schedule.kind != BP_SCHEDULE_CONST,
                         .x = r->probe_x, .out = r->probe_out, .log = r->log,
                         .trainer = r->trainer, .checkpoint = o->checkpoint,
                         .checkpoint_every = o->checkpoint_every, .meta = &r->meta,
                         .quiet = o->quiet};
    if (o->rollback) {
        r->prog.snapshot = &r->snap;
        if (snapshot_take(&r->snap, r->trainer) != 0) {
            print_error("--on-diverge rollback: %s", strerror(ENOMEM));
            return 1;
        }
    }
    return 0;
}

/* The epochs. A diverged run rolls back to its last good epoch with half the rate, at most
 * MAX_ROLLBACKS times; the last good checkpoint, written only after good epochs, stays. Then
 * what ended the run is said. */
static int run_epochs(train_run *r)
{
    const options *o = &r->o;
    progress *prog = &r->prog;
    snapshot *snap = &r->snap;
    bp_train_result *res = &r->res;
    char why[PATH_BUF + 256];
    bp_status st;
    install_stop_handlers();
    progress_bar_start(&prog->bar, progress_wanted(o->progress, stdout, o->quiet) ? stdout : NULL,
                       o->train.epochs);
    bp_trainer_set_batch_callback(r->trainer, after_batch, prog);
    for (int rollbacks = 0;; rollbacks++) {
        st = bp_trainer_run(r->trainer, r->d.valid, o->train.epochs, print_epoch, prog, res);
        if (st != BP_EDIVERGED || !o->rollback || rollbacks == MAX_ROLLBACKS || !snap->valid)
            break;
        printf("rollback %d of %d: %s; back to epoch %d with eta %g\n", rollbacks + 1,
               MAX_ROLLBACKS, bp_last_error(), snap->state.epoch, snap->state.eta / 2.0);
        if ((st = snapshot_restore(snap, r->trainer)) != BP_OK)
            break;
        snap->state.eta /= 2.0; /* the rate a further rollback halves again */
    }
    progress_bar_clear(&prog->bar);
    /* Every rank stopped after the same mini-batch; the signal's name is any rank's. */
    if (ranks_size() > 1)
        stop_signal = ranks_max(stop_signal);
    r->interrupted = st == BP_ESTOPPED || prog->stopped_by_signal ? stop_signal : 0;
    if (st != BP_OK && st != BP_ESTOPPED) {
        print_lib_error(st);
        return 1;
    }
    if (prog->output_failed || prog->log_failed || prog->checkpoint_failed)
        return 1;
    int log_closed = epoch_log_close(r->log, why, sizeof why);
    r->log = NULL;
    if (log_closed != 0) {
        print_error("%s", why);
        return 1;
    }
    int early_stop = o->train.early_stop;
    if (res->stopped_early)
        printf("stopped after epoch %d: %s\n", res->epochs,
               early_stop > 0 && res->epochs - res->best_epoch >= early_stop
                   ? "no better validation accuracy for --early-stop epochs"
                   : "the rate dropped to 1/128 of --eta (--schedule halve)");
    if (early_stop > 0 && res->best_epoch > 0)
        printf("kept the best epoch's net: epoch %d, validation %.2f%%\n", res->best_epoch,
               100.0 * res->best_validation_accuracy);
    if (r->interrupted && report_interruption(prog, st == BP_ESTOPPED, early_stop) != 0)
        return 1;
    return 0;
}

/* The test set's figure, once, on the net that training ended with. */
static int report_test(train_run *r)
{
    float test_acc;
    bp_status st = bp_trainer_evaluate(r->trainer, r->d.test, &test_acc, NULL);
    if (st != BP_OK) {
        print_lib_error(st);
        return 1;
    }
    r->n_test = bp_dataset_count(r->d.test);
    /* bp_evaluate reports a fraction; the count is recovered exactly while n < 2^24. */
    r->correct = (size_t)llround((double)test_acc * (double)r->n_test);
    printf("test accuracy %.2f%% (%zu/%zu)\n", 100.0 * test_acc, r->correct, r->n_test);
    printf("training %.2f s  %.0f samples/s  (wall %.2f s)\n", r->res.train_seconds,
           r->res.samples_per_second, bp_clock_seconds() - r->t_start);
    long resyncs = bp_trainer_resyncs(r->trainer);
    if (resyncs > 0 && ranks_rank() == 0)
        fprintf(stderr, "backprop: warning: after %ld epoch%s the ranks' parameters differed "
                "(MPI's sums were not the same bits on every rank) and were made rank 0's "
                "again\n", resyncs, resyncs == 1 ? "" : "s");
    /* Rank 0's: the gradient sums, the evaluations' and the stop votes', waits included. */
    if (ranks_size() > 1)
        printf("communication %.2f s  %.1f%% of training (rank 0 of %d)\n", ranks_seconds(),
               r->res.train_seconds > 0 ? 100.0 * ranks_seconds() / r->res.train_seconds : 0.0,
               ranks_size());
    return stdout_failed() ? 1 : 0;
}

/* A validation accuracy as count/n: the library's pass through float, so the file says
 * 0.9542 rather than 0.95419999957084656 (negative: none, kept). */
static double snap_accuracy(double accuracy, const bp_dataset *valid)
{
    if (!valid || accuracy < 0)
        return accuracy;
    double n = (double)bp_dataset_count(valid);
    return (double)llround(accuracy * n) / n;
}

/* --save and --summary-json, after the run. */
static int write_run_files(train_run *r)
{
    const options *o = &r->o;
    const bp_train_result *res = &r->res;
    if (o->save) {
        if (save_model(o, r->net, &r->meta) != 0)
            return 1;
        /* bp_train has put the best epoch's parameters back: that is the net saved. */
        if (o->train.early_stop > 0 && res->best_epoch > 0)
            printf("saved the best epoch's net (epoch %d) to %s\n", res->best_epoch, o->save);
        else
            printf("saved the net to %s\n", o->save);
        if (stdout_failed())
            return 1;
    }
    if (!o->output.summary)
        return 0;
    summary s = {
        .test_accuracy = (double)r->correct / (double)r->n_test,
        .validation_accuracy = snap_accuracy(res->validation_accuracy, r->d.valid),
        .train_seconds = res->train_seconds,
        .samples_per_second = res->samples_per_second,
        .epochs = res->epochs,
        .best_validation_accuracy = snap_accuracy(res->best_validation_accuracy, r->d.valid),
        .final_eta = res->final_eta,
        .best_epoch = res->best_epoch,
        .stopped_early = res->stopped_early,
        .interrupted = r->interrupted == SIGTERM ? "SIGTERM" : r->interrupted ? "SIGINT" : NULL,
        .threads = bp_net_threads(r->net),
        .data_dir = r->dd.path,
    };
    summary_job job = {.o = o, .s = &s};
    return write_output_file("--summary-json", o->output.summary, write_summary_json, &job) != 0;
}

static void train_run_free(train_run *r)
{
    char why[PATH_BUF + 256];
    /* On a failed run the log keeps the epochs it has; a second error about it would add
     * nothing. */
    epoch_log_close(r->log, why, sizeof why);
    bp_trainer_free(r->trainer);
    snapshot_free(&r->snap);
    free(r->training_json);
    free(r->probe_x);
    free(r->probe_out);
    bp_net_free(r->net);
    data_free(&r->d);
    net_args_release(&r->o.net);
}

/* Under mpirun: rank 0 alone prints, logs and writes files (the others' output goes nowhere
 * and their messages reach rank 0 through ranks_agree), and each rank takes its share of the
 * machine's cores unless --threads says otherwise. */
static int join_ranks(options *o)
{
    if (ranks_start() != 0)
        return 1;
    if (ranks_size() == 1)
        return 0;
    if (o->runtime.threads == 0) {
        int share = bp_get_threads() / ranks_local(); /* the library's "one per core" */
        o->runtime.threads = share > 0 ? share : 1;
    }
    if (ranks_rank() != 0) {
        silence_errors(1);
        /* Not a reason to fail alone, which would leave the other ranks waiting: at worst
         * this rank's lines appear too. */
        if (!freopen("/dev/null", "w", stdout))
            clearerr(stdout);
        o->output.summary = o->log = o->save = o->checkpoint = NULL;
    }
    return 0;
}

/* The trainer as one of the ranks: rank 0's net and optimiser state to all. */
static int share_training(train_run *r)
{
    const bp_collective *c = ranks_collective();
    bp_status st = c ? bp_trainer_set_collective(r->trainer, c) : BP_OK;
    if (st != BP_OK) {
        print_lib_error(st);
        return 1;
    }
    return 0;
}

int cmd_train(int argc, char **argv)
{
    train_run run = {0}, *r = &run;
    silence_errors(ranks_launch_rank() > 0);
    parse_train_args(argc, argv, &r->o);
    if (join_ranks(&r->o) != 0)
        return 1;
    r->t_start = bp_clock_seconds();
    int rc;
    /* Over MPI the ranks agree after the work each does alone (a rank that failed to read its
     * data must not leave the others waiting in a sum) and after training (rank 0's files may
     * have failed); the steps and evaluations in between are sums every rank takes. */
    if ((rc = check_before_work(r)) == 0 && (rc = read_headers(r)) == 0 &&
        (rc = build_net(r)) == 0 && (rc = load_run_data(r)) == 0)
        rc = prepare_training(r);
    if ((rc = ranks_agree(rc)) == 0 && (rc = share_training(r)) == 0)
        rc = ranks_agree(run_epochs(r));
    if (rc == 0 && (rc = report_test(r)) == 0 && (rc = write_run_files(r)) == 0)
        rc = r->interrupted ? 128 + r->interrupted : 0;
    rc = ranks_agree(rc);
    train_run_free(r);
    return rc;
}
