/*
 * seeds.c - writes the fuzz targets' seed corpus: scripts/fuzz.sh runs it before fuzzing.
 * Usage: seeds DIR, making DIR/safetensors and DIR/idx.
 *
 * Valid files give the fuzzer the structure it would take long to find (a header with CRCs
 * that match, a gzip stream), and a few defective ones start it next to each check. The
 * safetensors seeds come from the library's own writer, so they follow the format as the code
 * has it; the IDX ones are written byte by byte here.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "backprop.h"
#include "io/safetensors.h"

static char dir[4096];

static void fail(const char *what)
{
    fprintf(stderr, "seeds: %s: %s\n", what, bp_last_error()[0] ? bp_last_error() :
            strerror(errno));
    exit(1);
}

static const char *in_dir(const char *sub, const char *name)
{
    static char path[4200];
    snprintf(path, sizeof path, "%s/%s/%s", dir, sub, name);
    return path;
}

static void put(const char *sub, const char *name, const void *data, size_t n)
{
    if (bp_file_write_atomic(in_dir(sub, name), data, n) != BP_OK)
        fail(name);
}

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        fail(path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)len + 16);
    if (!b || fread(b, 1, (size_t)len, f) != (size_t)len)
        fail(path);
    fclose(f);
    *n = (size_t)len;
    return b;
}

static void safetensors_seeds(void)
{
    int64_t steps[2] = {3, 1 << 20};
    float w[12], bias[4] = {0.5f, -0.5f, 1, 0};
    for (int i = 0; i < 12; i++)
        w[i] = (float)i / 7.0f - 0.8f;
    const bp_st_tensor model[] = {
        {.name = "layers.0.weight", .dtype = BP_ST_F32, .ndim = 2, .shape = {4, 3}, .data = w,
         .bytes = sizeof w},
        {.name = "layers.0.bias", .dtype = BP_ST_F32, .ndim = 1, .shape = {4}, .data = bias,
         .bytes = sizeof bias},
    };
    const bp_st_meta model_meta[] = {{"format", "backprop.model"}, {"format_version", "1.0"},
                                     {"architecture", "dense:4:softmax"}, {"input_width", "3"}};
    const bp_st_tensor mixed[] = {
        {.name = "f", .dtype = BP_ST_F32, .ndim = 1, .shape = {3}, .data = w, .bytes = 12},
        {.name = "trainer.order", .dtype = BP_ST_I64, .ndim = 1, .shape = {2}, .data = steps,
         .bytes = sizeof steps},
        {.name = "empty", .dtype = BP_ST_F32, .ndim = 2, .shape = {0, 9}},
        {.name = "scalar", .dtype = BP_ST_F32, .ndim = 0, .data = bias, .bytes = 4},
    };
    const bp_st_meta mixed_meta[] = {{"text", "é \"quoted\"\n\\ \x01 ✓"}, {"", "empty key"}};
    struct {
        const char *name;
        const bp_st_tensor *t;
        int n;
        const bp_st_meta *m;
        int n_meta;
    } files[] = {
        {"model.safetensors", model, 2, model_meta, 4},
        {"mixed.safetensors", mixed, 4, mixed_meta, 2},
        {"empty.safetensors", NULL, 0, NULL, 0},
    };
    for (size_t i = 0; i < sizeof files / sizeof *files; i++)
        if (bp_st_write(in_dir("safetensors", files[i].name), files[i].t, files[i].n,
                        files[i].m, files[i].n_meta) != BP_OK)
            fail(files[i].name);

    /* Defects next to the checks: cut short, a data byte changed, bytes after the end, a
     * header length past the file. */
    size_t n;
    unsigned char *b = slurp(in_dir("safetensors", "mixed.safetensors"), &n);
    put("safetensors", "truncated.safetensors", b, n - 5);
    b[n - 1] ^= 0x40;
    put("safetensors", "bad-crc.safetensors", b, n);
    b[n - 1] ^= 0x40;
    memcpy(b + n, "xyz", 3);
    put("safetensors", "trailing.safetensors", b, n + 3);
    b[0] ^= 0x10;
    put("safetensors", "bad-length.safetensors", b, n);
    free(b);
    /* Hand-made headers: a duplicate key, a number that is not a plain integer, overlapping
     * ranges; each with the data its offsets promise. */
    static const size_t data_len[] = {4, 4, 12};
    static const char *const heads[] = {
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
        "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
        "\"b\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[4,12]}}",
    };
    for (size_t i = 0; i < sizeof heads / sizeof *heads; i++) {
        size_t h = strlen(heads[i]);
        unsigned char buf[512] = {0};
        for (int k = 0; k < 8; k++)
            buf[k] = (unsigned char)((uint64_t)h >> (8 * k));
        memcpy(buf + 8, heads[i], h);
        char name[32];
        snprintf(name, sizeof name, "hand-%zu.safetensors", i);
        put("safetensors", name, buf, 8 + h + data_len[i]);
    }
}

static void be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static void put_gz(const char *name, const void *data, size_t n)
{
    gzFile g = gzopen(in_dir("idx", name), "wb9");
    if (!g || gzwrite(g, data, (unsigned)n) != (int)n || gzclose(g) != Z_OK)
        fail(name);
}

static void idx_seeds(void)
{
    unsigned char images[16 + 3 * 2 * 2], labels[8 + 3];
    be32(images, 0x00000803);
    be32(images + 4, 3);
    be32(images + 8, 2);
    be32(images + 12, 2);
    for (int i = 0; i < 12; i++)
        images[16 + i] = (unsigned char)(i * 21);
    be32(labels, 0x00000801);
    be32(labels + 4, 3);
    labels[8] = 7;
    labels[9] = 0;
    labels[10] = 9;
    put("idx", "images-idx3-ubyte", images, sizeof images);
    put("idx", "labels-idx1-ubyte", labels, sizeof labels);
    put("idx", "images-short", images, sizeof images - 1);
    put_gz("images-idx3-ubyte.gz", images, sizeof images);
    put_gz("labels-idx1-ubyte.gz", labels, sizeof labels);
    /* The label file as two gzip members back to back (valid: gzip -d reads them as one),
     * and one member with garbage after it (not). */
    put_gz("part1.gz", labels, 5);
    put_gz("part2.gz", labels + 5, sizeof labels - 5);
    size_t n1, n2;
    unsigned char *p1 = slurp(in_dir("idx", "part1.gz"), &n1);
    unsigned char *p2 = slurp(in_dir("idx", "part2.gz"), &n2);
    unsigned char *two = malloc(n1 + n2);
    if (!two)
        fail("memory");
    memcpy(two, p1, n1);
    memcpy(two + n1, p2, n2);
    put("idx", "labels-two-members.gz", two, n1 + n2);
    remove(in_dir("idx", "part1.gz"));
    remove(in_dir("idx", "part2.gz"));
    size_t n;
    unsigned char *b = slurp(in_dir("idx", "labels-idx1-ubyte.gz"), &n);
    memcpy(b + n, "junk", 4);
    put("idx", "labels-trailing.gz", b, n + 4);
    free(two);
    free(p1);
    free(p2);
    free(b);
}

/* Real model files: a dense net, one with batch norm and dropout, both with metadata. */
static void model_seeds(void)
{
    static const char *const specs[] = {"dense:3:tanh,dense:2:softmax",
                                        "dense:4:linear,batchnorm:relu,dropout:0.5,dense:2"};
    static const bp_cost costs[] = {BP_COST_LOG_LIKELIHOOD, BP_COST_CROSS_ENTROPY};
    for (int i = 0; i < 2; i++) {
        int width = 5;
        bp_net_config cfg;
        bp_net_config_init(&cfg);
        cfg.sizes = &width;
        cfg.n_sizes = 1;
        cfg.layers = specs[i];
        cfg.cost = costs[i];
        cfg.threads = 1;
        bp_net *net;
        if (bp_net_create(&net, &cfg) != BP_OK)
            fail("a seed net");
        const bp_model_meta meta = {.input_rows = 1, .input_cols = 5, .input_scale = 0.5f,
                                    .class_names = "no,yes", .training = "{\"eta\": 0.5}"};
        char name[32];
        snprintf(name, sizeof name, "model-%d.safetensors", i);
        if (bp_model_save(net, in_dir("model", name), &meta) != BP_OK)
            fail("a seed model");
        bp_net_free(net);
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: seeds DIR\n");
        return 2;
    }
    snprintf(dir, sizeof dir, "%s", argv[1]);
    char sub[4200];
    snprintf(sub, sizeof sub, "%s/safetensors", dir);
    if (mkdir(sub, 0755) != 0 && errno != EEXIST)
        fail(sub);
    snprintf(sub, sizeof sub, "%s/idx", dir);
    if (mkdir(sub, 0755) != 0 && errno != EEXIST)
        fail(sub);
    snprintf(sub, sizeof sub, "%s/model", dir);
    if (mkdir(sub, 0755) != 0 && errno != EEXIST)
        fail(sub);
    safetensors_seeds();
    idx_seeds();
    model_seeds();
    return 0;
}
