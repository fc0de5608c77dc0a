/* common.c - timing, the report header and the sgemm roofline for the benchmark programs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>

#include "commit.h"
#include "common.h"

double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

void bench_sort(double *v, int n) { qsort(v, (size_t)n, sizeof *v, cmp_double); }

bench_stats bench_time(void (*fn)(void *), void *arg, int warmup, int reps)
{
    for (int i = 0; i < warmup; i++)
        fn(arg);
    double *t = malloc(sizeof(double) * (size_t)reps);
    for (int i = 0; i < reps; i++) {
        double t0 = bench_now();
        fn(arg);
        t[i] = bench_now() - t0;
    }
    qsort(t, (size_t)reps, sizeof *t, cmp_double);
    bench_stats s = {.median = t[reps / 2], .best = t[0], .reps = reps};
    free(t);
    return s;
}

const char *bench_cpu_name(void)
{
    static char name[256] = "unknown";
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return name;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) == 0) {
            char *colon = strchr(line, ':');
            if (colon) {
                colon += colon[1] == ' ' ? 2 : 1;
                colon[strcspn(colon, "\n")] = 0;
                snprintf(name, sizeof name, "%s", colon);
            }
            break;
        }
    }
    fclose(f);
    return name;
}

/* The OpenBLAS version is the second word of its config string ("OpenBLAS 0.3.21 DYNAMIC_ARCH
 * ..."). */
static void openblas_version(char *out, size_t size)
{
    const char *cfg = openblas_get_config();
    const char *sp = cfg ? strchr(cfg, ' ') : NULL;
    snprintf(out, size, "%.*s", sp ? (int)strcspn(sp + 1, " ") : 7, sp ? sp + 1 : "unknown");
}

void bench_header(FILE *out, int json, const char *threads_desc)
{
    char version[64];
    openblas_version(version, sizeof version);
    if (json)
        fprintf(out,
                "{\"cpu\": \"%s\", \"openblas\": \"%s\", \"openblas_core\": \"%s\", "
                "\"threads\": \"%s\", \"commit\": \"%s\"}",
                bench_cpu_name(), version, openblas_get_corename(), threads_desc, BP_COMMIT);
    else
        fprintf(out, "# cpu %s | openblas %s core %s | threads %s | commit %s\n",
                bench_cpu_name(), version, openblas_get_corename(), threads_desc, BP_COMMIT);
}

int bench_parse_list(const char *s, int *out, int max, int lo)
{
    int n = 0;
    while (*s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < lo || v > (1 << 20) || n == max || (*end && *end != ','))
            return 0;
        out[n++] = (int)v;
        s = *end ? end + 1 : end;
    }
    return n;
}

void bench_join_ints(char *buf, size_t size, const int *v, int n)
{
    buf[0] = 0;
    for (int i = 0; i < n; i++)
        snprintf(buf + strlen(buf), size - strlen(buf), "%s%d", i ? "," : "", v[i]);
}

static float *roof_a, *roof_b, *roof_c;
enum { ROOF_N = 2048 };

static void roof_gemm(void *arg)
{
    (void)arg;
    cblas_sgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, ROOF_N, ROOF_N, ROOF_N, 1.0f, roof_a,
                ROOF_N, roof_b, ROOF_N, 0.0f, roof_c, ROOF_N);
}

static void roof_alloc(void)
{
    size_t n = (size_t)ROOF_N * ROOF_N;
    if (!roof_a) {
        roof_a = aligned_alloc(64, n * sizeof(float));
        roof_b = aligned_alloc(64, n * sizeof(float));
        roof_c = aligned_alloc(64, n * sizeof(float));
        for (size_t i = 0; i < n; i++)
            roof_a[i] = roof_b[i] = (float)((i * 7) % 13) / 13.0f - 0.5f;
    }
}

double bench_roofline_gflops(void)
{
    roof_alloc();
    bench_stats s = bench_time(roof_gemm, NULL, 1, 5);
    return bench_roofline_flops() / s.best * 1e-9;
}

double bench_roofline_flops(void) { return 2.0 * ROOF_N * ROOF_N * ROOF_N; }

/* Columns [part/parts, (part+1)/parts) of the product as one sgemm. */
static void roof_part(void *arg, int part, int parts)
{
    (void)arg;
    /* Whole 64-column blocks per part, so no part ends on a ragged kernel edge. */
    int blocks = ROOF_N / 64, b0 = blocks * part / parts, b1 = blocks * (part + 1) / parts;
    if (b1 <= b0)
        return;
    size_t at = (size_t)b0 * 64 * ROOF_N;
    cblas_sgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, ROOF_N, (b1 - b0) * 64, ROOF_N, 1.0f,
                roof_a, ROOF_N, roof_b + at, ROOF_N, 0.0f, roof_c + at, ROOF_N);
}

double bench_roofline_seconds(bp_team *team)
{
    roof_alloc();
    double t0 = bench_now();
    if (team)
        bp_team_run(team, roof_part, NULL);
    else
        roof_part(NULL, 0, 1);
    return bench_now() - t0;
}

/* The MNIST training set, or 60,000 random images of its shape. */
bp_dataset *bench_load_training_set(const char **source)
{
    const char *dir = getenv("BACKPROP_MNIST_DIR");
    char images[4200], labels[4200], base[4096];
    if (!dir) {
        const char *root = getenv("BACKPROP_DATA_DIR");
        const char *home = getenv("HOME");
        if (root)
            snprintf(base, sizeof base, "%s/mnist", root);
        else
            snprintf(base, sizeof base, "%s/.cache/backprop/mnist", home ? home : ".");
        dir = base;
    }
    snprintf(images, sizeof images, "%s/train-images-idx3-ubyte", dir);
    snprintf(labels, sizeof labels, "%s/train-labels-idx1-ubyte", dir);
    bp_dataset *ds = NULL;
    if (bp_dataset_load_idx(&ds, images, labels) == BP_OK) {
        *source = "mnist";
        return ds;
    }
    *source = "synthetic";
    float *x = malloc(sizeof(float) * 784 * (size_t)BENCH_SET);
    int *y = malloc(sizeof(int) * BENCH_SET);
    unsigned s = 12345;
    for (size_t i = 0; i < 784 * (size_t)BENCH_SET; i++) {
        s = s * 1103515245u + 12345u;
        x[i] = (float)((s >> 16) & 255) / 255.0f;
    }
    for (int i = 0; i < BENCH_SET; i++)
        y[i] = i % 10;
    bp_status st = bp_dataset_from_floats(&ds, x, y, BENCH_SET, 784, 10);
    free(x);
    free(y);
    return st == BP_OK ? ds : NULL;
}
