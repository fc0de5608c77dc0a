/*
 * checkpoint.c - a training run in one file: the model file of the trainer's net (io/model.c,
 * so bp_model_load and the CLI's eval read a checkpoint as the model it holds) plus the
 * trainer's configuration and state, enough for the resumed run to go on bit for bit.
 *
 * The trainer's part travels as extra tensors named "trainer.*" (the sample order and the
 * shuffle's generator as I64, the optimiser's state arena and the best epoch's copy as F32, raw:
 * they are only ever read back by this file) and metadata keys "trainer.*" (counters as decimal
 * text, doubles with 17 significant digits so they read back exactly, the configuration as a
 * JSON object). The key "checkpoint" names the version of this part; docs/FORMAT.md has it all.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "io/model.h"
#include "io/safetensors.h"

#define CHECKPOINT_VERSION "1.0"
#define CHECKPOINT_MAJOR 1

/* ---- the configuration as JSON ---------------------------------------------------------- */

static char *config_json(const bp_train_config *c)
{
    cJSON *o = cJSON_CreateObject();
    char seed[24];
    snprintf(seed, sizeof seed, "%" PRIu64, c->seed); /* beyond 2^53: a double would round it */
    /* Floats go through double exactly, and cJSON prints a double so that it reads back. */
    int ok = o && cJSON_AddNumberToObject(o, "epochs", c->epochs) &&
             cJSON_AddNumberToObject(o, "batch", c->batch) &&
             cJSON_AddNumberToObject(o, "eta", c->eta) &&
             cJSON_AddStringToObject(o, "seed", seed) &&
             cJSON_AddNumberToObject(o, "lambda", c->lambda) &&
             cJSON_AddNumberToObject(o, "l1", c->l1) &&
             cJSON_AddStringToObject(o, "optimizer", bp_optimizer_name(c->optimizer)) &&
             cJSON_AddNumberToObject(o, "momentum", c->momentum) &&
             cJSON_AddNumberToObject(o, "beta1", c->beta1) &&
             cJSON_AddNumberToObject(o, "beta2", c->beta2) &&
             cJSON_AddNumberToObject(o, "eps", c->eps) &&
             cJSON_AddNumberToObject(o, "weight_decay", c->weight_decay) &&
             cJSON_AddNumberToObject(o, "clip_norm", c->clip_norm) &&
             cJSON_AddNumberToObject(o, "schedule_kind", c->schedule.kind) &&
             cJSON_AddNumberToObject(o, "schedule_epochs", c->schedule.epochs) &&
             cJSON_AddNumberToObject(o, "schedule_factor", c->schedule.factor) &&
             cJSON_AddNumberToObject(o, "early_stop", c->early_stop) &&
             cJSON_AddNumberToObject(o, "norm_samples", c->norm_samples);
    char *text = ok ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return text;
}

/* A member that must be a finite number. */
static int get_number(const cJSON *o, const char *key, double *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return 0;
    *out = v->valuedouble;
    return 1;
}

static int get_int(const cJSON *o, const char *key, int *out)
{
    double d;
    if (!get_number(o, key, &d) || d != floor(d) || d < -2147483648.0 || d > 2147483647.0)
        return 0;
    *out = (int)d;
    return 1;
}

/* cJSON prints a double with 15 significant digits when they read back as nearly the same
 * double: more than the 9 a float needs, so the nearest float is the one that was saved. */
static int get_float(const cJSON *o, const char *key, float *out)
{
    double d;
    if (!get_number(o, key, &d) || fabs(d) > 3.4028234663852886e38)
        return 0;
    *out = (float)d;
    return 1;
}

static bp_status parse_config(const char *path, const char *text, bp_train_config *c)
{
    bp_train_config_init(c);
    cJSON *o = cJSON_Parse(text);
    const cJSON *seed = o ? cJSON_GetObjectItemCaseSensitive(o, "seed") : NULL;
    const cJSON *opt = o ? cJSON_GetObjectItemCaseSensitive(o, "optimizer") : NULL;
    int kind = 0;
    char *end = NULL;
    int ok = cJSON_IsObject(o) && get_int(o, "epochs", &c->epochs) &&
             get_int(o, "batch", &c->batch) && get_float(o, "eta", &c->eta) &&
             get_float(o, "lambda", &c->lambda) && get_float(o, "l1", &c->l1) &&
             get_float(o, "momentum", &c->momentum) && get_float(o, "beta1", &c->beta1) &&
             get_float(o, "beta2", &c->beta2) && get_float(o, "eps", &c->eps) &&
             get_float(o, "weight_decay", &c->weight_decay) &&
             get_float(o, "clip_norm", &c->clip_norm) && get_int(o, "schedule_kind", &kind) &&
             get_int(o, "schedule_epochs", &c->schedule.epochs) &&
             get_float(o, "schedule_factor", &c->schedule.factor) &&
             get_int(o, "early_stop", &c->early_stop) &&
             get_int(o, "norm_samples", &c->norm_samples) && cJSON_IsString(seed) &&
             cJSON_IsString(opt) && kind >= 0 && kind < BP_SCHEDULE_COUNT &&
             bp_optimizer_parse(opt->valuestring, &c->optimizer) == BP_OK;
    if (ok) {
        errno = 0;
        unsigned long long s = strtoull(seed->valuestring, &end, 10);
        ok = end != seed->valuestring && *end == '\0' && errno == 0 &&
             seed->valuestring[0] != '-';
        c->seed = s;
    }
    c->schedule.kind = (bp_schedule_kind)kind;
    cJSON_Delete(o);
    /* The values themselves are checked by bp_trainer_create, which gets them next. */
    return ok ? BP_OK
              : bp_fail(BP_EFORMAT, "checkpoint '%s': trainer.config is not the configuration "
                        "a checkpoint records", path);
}

/* ---- saving ------------------------------------------------------------------------------ */

bp_status bp_checkpoint_save(const bp_trainer *t, const char *path, const bp_model_meta *meta)
{
    if (!t || !path)
        return bp_fail(BP_EINVAL, "bp_checkpoint_save: %s is NULL", t ? "path" : "trainer");
    bp_trainer_state s;
    bp_train_config cfg;
    bp_status st = bp_trainer_get_state(t, &s);
    if (st == BP_OK)
        st = bp_trainer_config(t, &cfg);
    if (st != BP_OK)
        return st;
    int64_t *order = bp_alloc(sizeof(int64_t) * (s.n ? s.n : 1));
    char *config = config_json(&cfg);
    if (!order || !config) {
        bp_free(order);
        cJSON_free(config);
        return bp_fail(BP_ENOMEM, "checkpoint '%s': no memory for the trainer's state", path);
    }
    for (size_t i = 0; i < s.n; i++)
        order[i] = (int64_t)s.order[i];
    int64_t rng[4];
    memcpy(rng, s.rng, sizeof rng); /* the generator's bits, as I64 */

    bp_st_tensor extra[4];
    int n_extra = 0;
    extra[n_extra++] = (bp_st_tensor){.name = "trainer.order", .dtype = BP_ST_I64, .ndim = 1,
                                      .shape = {(int64_t)s.n}, .data = order,
                                      .bytes = s.n * sizeof(int64_t)};
    extra[n_extra++] = (bp_st_tensor){.name = "trainer.rng", .dtype = BP_ST_I64, .ndim = 1,
                                      .shape = {4}, .data = rng, .bytes = sizeof rng};
    if (s.optimizer_state_count)
        extra[n_extra++] = (bp_st_tensor){
            .name = "trainer.optimizer_state", .dtype = BP_ST_F32, .ndim = 1,
            .shape = {(int64_t)s.optimizer_state_count}, .data = s.optimizer_state,
            .bytes = s.optimizer_state_count * sizeof(float)};
    if (s.best_params)
        extra[n_extra++] = (bp_st_tensor){.name = "trainer.best", .dtype = BP_ST_F32, .ndim = 1,
                                          .shape = {(int64_t)s.best_count},
                                          .data = s.best_params,
                                          .bytes = s.best_count * sizeof(float)};

    char v[9][32];
    snprintf(v[0], sizeof v[0], "%d", s.epoch);
    snprintf(v[1], sizeof v[1], "%zu", s.position);
    snprintf(v[2], sizeof v[2], "%.17g", s.epoch_cost);
    snprintf(v[3], sizeof v[3], "%" PRIu64, s.steps);
    snprintf(v[4], sizeof v[4], "%.17g", s.eta);
    snprintf(v[5], sizeof v[5], "%.17g", s.best_accuracy);
    snprintf(v[6], sizeof v[6], "%d", s.best_epoch);
    snprintf(v[7], sizeof v[7], "%d", s.since_best);
    snprintf(v[8], sizeof v[8], "%d", s.observed);
    const bp_st_meta keys[] = {
        {"checkpoint", CHECKPOINT_VERSION},
        {"trainer.config", config},
        {"trainer.epoch", v[0]},
        {"trainer.position", v[1]},
        {"trainer.epoch_cost", v[2]},
        {"trainer.steps", v[3]},
        {"trainer.eta", v[4]},
        {"trainer.best_accuracy", v[5]},
        {"trainer.best_epoch", v[6]},
        {"trainer.since_best", v[7]},
        {"trainer.observed", v[8]},
    };
    st = bp_model_write(bp_trainer_net(t), path, meta, extra, n_extra, keys,
                        (int)(sizeof keys / sizeof *keys));
    bp_free(order);
    cJSON_free(config);
    return st;
}

/* ---- loading ----------------------------------------------------------------------------- */

static const char *need_key(const bp_st_file *f, const char *key, bp_status *st)
{
    const char *v = bp_st_meta_get(f, key);
    if (!v && *st == BP_OK)
        *st = bp_fail(BP_EFORMAT, "checkpoint '%s': metadata key '%s' is missing",
                      bp_st_name(f), key);
    return v;
}

/* A whole decimal in [lo, hi], or a double that reads back exactly ("%.17g"). */
static void read_long(const bp_st_file *f, const char *key, long long lo, long long hi,
                      long long *out, bp_status *st)
{
    const char *v = need_key(f, key, st);
    if (!v)
        return;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (end == v || *end != '\0' || errno != 0 || x < lo || x > hi) {
        if (*st == BP_OK)
            *st = bp_fail(BP_EFORMAT, "checkpoint '%s': %s '%s' is not a whole number from "
                          "%lld to %lld", bp_st_name(f), key, v, lo, hi);
        return;
    }
    *out = x;
}

static void read_double(const bp_st_file *f, const char *key, double *out, bp_status *st)
{
    const char *v = need_key(f, key, st);
    if (!v)
        return;
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (end == v || *end != '\0' || errno == ERANGE || !isfinite(x)) {
        if (*st == BP_OK)
            *st = bp_fail(BP_EFORMAT, "checkpoint '%s': %s '%s' is not a finite number",
                          bp_st_name(f), key, v);
        return;
    }
    *out = x;
}

static const bp_st_tensor *need_tensor(const bp_st_file *f, const char *name, bp_st_dtype dtype,
                                       size_t count, bp_status *st)
{
    const bp_st_tensor *t = bp_st_find(f, name);
    if (*st != BP_OK)
        return NULL;
    if (!t || t->dtype != dtype || t->ndim != 1 || (size_t)t->shape[0] != count) {
        *st = bp_fail(BP_EFORMAT, "checkpoint '%s': tensor '%s' %s (want %s [%zu])",
                      bp_st_name(f), name, t ? "has the wrong dtype or shape" : "is missing",
                      dtype == BP_ST_I64 ? "I64" : "F32", count);
        return NULL;
    }
    return t;
}

bp_status bp_checkpoint_load(const char *path, const bp_dataset *train,
                             const bp_net_config *net_cfg, bp_net **net_out,
                             bp_trainer **trainer_out, bp_model_meta *meta)
{
    if (net_out)
        *net_out = NULL;
    if (trainer_out)
        *trainer_out = NULL;
    if (meta)
        memset(meta, 0, sizeof *meta);
    if (!path || !train || !net_out || !trainer_out)
        return bp_fail(BP_EINVAL, "bp_checkpoint_load: path, training set or an output is "
                       "NULL");
    bp_st_file *f;
    bp_status st = bp_st_read(&f, path);
    if (st != BP_OK)
        return st;
    const char *version = bp_st_meta_get(f, "checkpoint");
    if (!version || strtol(version, NULL, 10) != CHECKPOINT_MAJOR || version[0] == '\0' ||
        strchr(version, '.') == NULL)
        st = bp_fail(BP_EFORMAT, "checkpoint '%s': %s", path,
                     version ? "its checkpoint version is not 1.x"
                             : "it is a model file, not a checkpoint (no 'checkpoint' key)");
    bp_net *net = NULL;
    bp_trainer *t = NULL;
    bp_train_config cfg;
    if (st == BP_OK)
        st = bp_model_read(f, net_cfg, meta, &net);
    if (st == BP_OK)
        st = parse_config(path, need_key(f, "trainer.config", &st) ? bp_st_meta_get(f,
                          "trainer.config") : "", &cfg);
    if (st == BP_OK && (st = bp_trainer_create(&t, net, train, &cfg)) != BP_OK)
        st = bp_fail_context(st, "checkpoint '%s'", path);

    /* The saved run's training set, by its size: the order is a permutation of it. */
    const bp_st_tensor *saved_order = bp_st_find(f, "trainer.order");
    if (st == BP_OK && saved_order && saved_order->ndim == 1 &&
        (size_t)saved_order->shape[0] != bp_dataset_count(train))
        st = bp_fail(BP_EINVAL, "checkpoint '%s': the run trained on %lld samples, the "
                     "training set given has %zu", path, (long long)saved_order->shape[0],
                     bp_dataset_count(train));
    bp_trainer_state s = {0};
    long long epoch = 0, position = 0, steps = 0, best_epoch = 0, since = 0, observed = 0;
    if (st == BP_OK)
        bp_trainer_get_state(t, &s); /* the counts this trainer expects */
    size_t n = s.n, opt_count = s.optimizer_state_count;
    read_long(f, "trainer.epoch", 0, INT32_MAX, &epoch, &st);
    read_long(f, "trainer.position", 0, INT64_MAX, &position, &st);
    read_long(f, "trainer.steps", 0, INT64_MAX, &steps, &st);
    read_long(f, "trainer.best_epoch", 0, INT32_MAX, &best_epoch, &st);
    read_long(f, "trainer.since_best", 0, INT32_MAX, &since, &st);
    read_long(f, "trainer.observed", 0, INT32_MAX, &observed, &st);
    read_double(f, "trainer.epoch_cost", &s.epoch_cost, &st);
    read_double(f, "trainer.eta", &s.eta, &st);
    read_double(f, "trainer.best_accuracy", &s.best_accuracy, &st);
    const bp_st_tensor *order = need_tensor(f, "trainer.order", BP_ST_I64, n, &st);
    const bp_st_tensor *rng = need_tensor(f, "trainer.rng", BP_ST_I64, 4, &st);
    const bp_st_tensor *opt =
        opt_count ? need_tensor(f, "trainer.optimizer_state", BP_ST_F32, opt_count, &st) : NULL;
    const bp_st_tensor *best = bp_st_find(f, "trainer.best");
    size_t *order_copy = NULL;
    if (st == BP_OK && !(order_copy = bp_alloc(sizeof(size_t) * (n ? n : 1))))
        st = bp_fail(BP_ENOMEM, "checkpoint '%s': no memory for a sample order of %zu", path,
                     n);
    if (st == BP_OK) {
        for (size_t i = 0; i < n; i++) {
            int64_t v;
            memcpy(&v, (const char *)order->data + i * sizeof v, sizeof v);
            /* set_state checks it is a permutation; a negative value becomes out of range. */
            order_copy[i] = v < 0 ? SIZE_MAX : (size_t)v;
        }
        s.epoch = (int)epoch;
        s.position = (size_t)position;
        s.steps = (uint64_t)steps;
        s.best_epoch = (int)best_epoch;
        s.since_best = (int)since;
        s.observed = (int)observed;
        s.order = order_copy;
        memcpy(s.rng, rng->data, sizeof s.rng);
        s.optimizer_state = opt ? opt->data : NULL;
        s.best_params = best && best->dtype == BP_ST_F32 && best->ndim == 1 ? best->data : NULL;
        s.best_count = s.best_params ? (size_t)best->shape[0] : 0;
        if (best && !s.best_params)
            st = bp_fail(BP_EFORMAT, "checkpoint '%s': tensor 'trainer.best' is not F32 [n]",
                         path);
    }
    if (st == BP_OK && (st = bp_trainer_set_state(t, &s)) != BP_OK)
        st = bp_fail_context(st, "checkpoint '%s'", path);
    bp_free(order_copy);
    bp_st_free(f);
    if (st != BP_OK) {
        bp_trainer_free(t);
        bp_net_free(net);
        if (meta)
            memset(meta, 0, sizeof *meta);
        return st;
    }
    *net_out = net;
    *trainer_out = t;
    return BP_OK;
}
