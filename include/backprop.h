/*
 * backprop.h - the whole public API of libbackprop.
 *
 * Train a [784,30,10] sigmoid network on MNIST the way Nielsen's chapter 1 does:
 *
 *     bp_dataset *all, *test, *train, *valid;
 *     bp_dataset_load_idx(&all, "train-images-idx3-ubyte", "train-labels-idx1-ubyte");
 *     bp_dataset_load_idx(&test, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte");
 *     bp_dataset_slice(all, 0, 50000, &train);
 *     bp_dataset_slice(all, 50000, 10000, &valid);
 *
 *     int sizes[] = {784, 30, 10};
 *     bp_net_config nc;
 *     bp_net_config_init(&nc);
 *     nc.sizes = sizes; nc.n_sizes = 3;
 *     nc.cost = BP_COST_QUADRATIC;
 *     bp_net *net;
 *     if (bp_net_create(&net, &nc) != BP_OK) fprintf(stderr, "%s\n", bp_last_error());
 *
 *     bp_train_config tc;
 *     bp_train_config_init(&tc);
 *     tc.epochs = 30; tc.batch = 10; tc.eta = 3.0f;
 *     bp_train(net, train, valid, &tc, NULL);
 *     float acc;
 *     bp_evaluate(net, test, &acc, NULL);
 *
 *     bp_net_free(net); bp_dataset_free(train); ...
 *
 * Conventions
 * - Every fallible call returns bp_status; BP_OK is 0. On failure bp_last_error() returns a
 *   message (per thread) that names what was wrong. The library never prints, exits or aborts.
 * - Matrices are column-major, BLAS style: element (i, j) is data[i + j * ld]. A mini-batch holds
 *   one sample per column.
 * - Whoever creates a handle frees it; pointers a getter returns are views into the handle and
 *   live as long as it does.
 *
 * Threads
 * - Distinct nets on distinct threads are safe: each net (with its trainer, its buffers and its
 *   own team of threads) trains, evaluates and saves independently of the others, with the
 *   results it would have alone (tests/test_concurrent.c). One net, trainer or file writer
 *   belongs to one thread at a time, read-only-looking calls included (bp_net_forward and
 *   bp_evaluate write the net's buffers); it may move to another thread between calls.
 * - A bp_dataset is never written after it is made: any number of threads and nets may read
 *   one at once, and views of it may be made and freed on any thread (the last one frees it).
 * - bp_last_error() is per thread. bp_set_threads and bp_set_memory_limit are process-wide and
 *   may be called from any thread: the thread count applies to nets made afterwards (never to
 *   one that exists), the limit to plans made afterwards (a new net, a bp_net_reserve). The
 *   allocation counters (bp_alloc_stats_get) count every thread's allocations.
 * - cJSON's allocation hooks are process-wide and the application's (the library never sets
 *   them): if it sets them, it does so before any thread reads or writes a model file.
 * - OpenBLAS has one thread pool and one thread count per process. A step of at least 16
 *   columns per thread runs on the net's own team, every GEMM single-threaded, and leaves the
 *   pool alone. A smaller step, and every step of a net with threads = 1, runs on the calling
 *   thread, and before each GEMM the library sets OpenBLAS's process-wide count for its shape
 *   (up to the net's thread count, 1 for such a net): nets doing this on several threads at
 *   once set that count for each other, so a GEMM may run on another net's count, which can
 *   change its speed and possibly its last bits. Every GEMM stays single-threaded, and each
 *   net's results its own, when every net in the process uses threads = 1 or batches of at
 *   least 16 columns per thread and no thread calls bp_set_threads meanwhile. bp_set_threads
 *   also sets OpenBLAS's count, overriding OPENBLAS_NUM_THREADS, which only sizes the pool
 *   OpenBLAS starts with.
 */
#ifndef BACKPROP_H
#define BACKPROP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(BP_BUILDING_LIBRARY) && defined(__GNUC__)
#define BP_API __attribute__((visibility("default")))
#else
#define BP_API
#endif

/* BP_VERSION_MAJOR, _MINOR, _PATCH and BP_VERSION_STRING ("0.2.0"): the version of these
 * headers, generated from the project's version (meson.build) at build time. */
#include "backprop_version.h"

/* ---- status ---------------------------------------------------------------------------- */

typedef enum bp_status {
    BP_OK = 0,
    BP_ENOMEM,     /* an allocation failed */
    BP_EINVAL,     /* a bad argument: a wrong dimension, an unknown name, a NULL */
    BP_EIO,        /* a file could not be opened, read or written */
    BP_EFORMAT,    /* a file's contents are not what its format promises */
    BP_EDIVERGED,  /* training produced a non-finite cost, output or parameter */
    BP_ENOTSUP,    /* a valid request this build cannot serve */
    BP_ESTOPPED,   /* not a failure: the caller's batch callback stopped training, which can
                      go on from where it stopped (bp_batch_callback) */
    BP_STATUS_COUNT
} bp_status;

/* A static string naming the status ("invalid argument"); never NULL. */
BP_API const char *bp_status_str(bp_status status);
/* The calling thread's message for its last failed call; "" if none. Valid until the next
 * failing call on the same thread. */
BP_API const char *bp_last_error(void);

/* The version of the library running, "MAJOR.MINOR.PATCH": BP_VERSION_STRING as it was when
 * the library was built, which a program built against other headers may find different. */
BP_API const char *bp_version(void);

/* ---- process-wide settings ------------------------------------------------------------- */

/* The default thread count of nets created afterwards (bp_net_config.threads overrides it per
 * net), and the ceiling for OpenBLAS calls made outside a net's step. n <= 0 means one per
 * online core (the default). */
BP_API bp_status bp_set_threads(int n);
BP_API int bp_get_threads(void);

/* The kernels OpenBLAS runs: its core name ("SkylakeX", "Haswell", "Zen", "Prescott", ...). */
BP_API const char *bp_blas_core(void);
/* The OPENBLAS_CORETYPE that fits this CPU when OpenBLAS has fallen back to kernels narrower
 * than the CPU allows (an OpenBLAS older than the CPU: 0.3.21 runs its SSE3 Prescott kernels
 * on AVX-512 Xeons of family 6 model 207), else NULL. OpenBLAS reads the variable only when it
 * loads, so a program acts on this by setting it and re-executing itself (the CLI does) or by
 * telling its user. */
BP_API const char *bp_blas_core_fitting(void);

/* The most memory one network's plan may take (parameters, gradients and batch buffers); a net
 * or a reserve that would need more fails with BP_ENOMEM and a message stating the bytes
 * needed, before anything is allocated. 0 (the default) means the memory available when the
 * plan is made: the kernel's MemAvailable, or less when a cgroup memory.max leaves less. */
BP_API bp_status bp_set_memory_limit(uint64_t bytes);
BP_API uint64_t bp_get_memory_limit(void);

/* Seconds on a monotonic clock (CLOCK_MONOTONIC) from an arbitrary origin: the clock the
 * library times epochs with, for a caller's own timings to be comparable. */
BP_API double bp_clock_seconds(void);

/* Counters of the library's own heap allocations (every buffer it makes goes through one
 * allocator). Tests use them to prove that a training step allocates nothing. */
typedef struct bp_alloc_stats {
    uint64_t allocations; /* calls that obtained memory */
    uint64_t frees;
    uint64_t bytes_live;
} bp_alloc_stats;
BP_API void bp_alloc_stats_get(bp_alloc_stats *out);

/* ---- networks -------------------------------------------------------------------------- */

typedef enum bp_activation {
    BP_ACT_SIGMOID = 0, /* 1 / (1 + e^-z) */
    BP_ACT_TANH,        /* tanh z */
    BP_ACT_RELU,        /* max(0, z) */
    BP_ACT_LINEAR,      /* z */
    BP_ACT_SOFTMAX,     /* e^z_j / sum_k e^z_k over a column; output layer only */
    BP_ACT_COUNT
} bp_activation;

typedef enum bp_cost {
    BP_COST_QUADRATIC = 0,  /* 1/2 ||a - y||^2 */
    BP_COST_CROSS_ENTROPY,  /* -sum_j [y_j ln a_j + (1 - y_j) ln(1 - a_j)]; outputs in (0,1) */
    BP_COST_LOG_LIKELIHOOD, /* -ln a_y; outputs in (0,1) */
    BP_COST_COUNT
} bp_cost;

typedef enum bp_init {
    BP_INIT_GAUSSIAN = 0, /* W ~ N(0, 1/n_in), b ~ N(0, 1): Nielsen ch. 3 */
    BP_INIT_LARGE,        /* W ~ N(0, 1), b ~ N(0, 1): Nielsen ch. 1 */
    BP_INIT_XAVIER,       /* W ~ U(+-sqrt(6 / (n_in + n_out))), b = 0: Glorot & Bengio */
    BP_INIT_HE,           /* W ~ N(0, 2/n_in), b = 0: He et al. */
    BP_INIT_ORTHOGONAL,   /* W = Q of the QR of a Gaussian matrix (LAPACK), b = 0 */
    BP_INIT_COUNT
} bp_init;

/* Parse and name the enums above ("sigmoid", "cross-entropy", "orthogonal", ...).
 * The parsers return BP_EINVAL for an unknown name. */
BP_API bp_status bp_activation_parse(const char *name, bp_activation *out);
BP_API bp_status bp_cost_parse(const char *name, bp_cost *out);
BP_API bp_status bp_init_parse(const char *name, bp_init *out);
BP_API const char *bp_activation_name(bp_activation a);
BP_API const char *bp_cost_name(bp_cost c);
BP_API const char *bp_init_name(bp_init i);

/* The arithmetic backends: "blas" (OpenBLAS sgemm) and "naive" (plain loops, the reference).
 * Both are always built; the network code path is the same for both. */
BP_API int bp_backend_count(void);
BP_API const char *bp_backend_name(int index);

typedef struct bp_net bp_net;

/* The most bp_net_create accepts: layer sizes (input included, so BP_MAX_SIZES - 1 weight
 * layers), neurons in one layer, and columns of a batch (max_batch, bp_net_reserve, a step).
 * They only keep a typo from turning into a huge allocation; a front end can check against them
 * before it calls. */
#define BP_MAX_SIZES 64
#define BP_MAX_WIDTH (1 << 20)
#define BP_MAX_BATCH (1 << 20)

typedef struct bp_net_config {
    const int *sizes;          /* neurons per layer, input first: {784, 30, 10} */
    int n_sizes;               /* at least 2 */
    bp_activation hidden;      /* default sigmoid; softmax is refused here */
    bp_activation output;      /* default sigmoid */
    bp_cost cost;              /* default cross-entropy */
    bp_init init;              /* default gaussian */
    uint64_t seed;             /* default 1; drives initialisation */
    int max_batch;             /* buffers are planned for this many columns; default 64.
                                  Training with a larger batch replans once, before the first
                                  step. */
    const char *backend;       /* "blas" (default) or "naive" */
    const char *layers;        /* instead of sizes[1..] and the activations: the layers as spec
                                  strings, comma-separated ("dense:30:sigmoid,dense:10:softmax";
                                  a dense layer's activation defaults to sigmoid), sizes then
                                  holding just the input width (n_sizes 1). Kinds: dense:N[:ACT],
                                  dropout:P, batchnorm[:ACT] (per channel after a conv),
                                  conv:KxHxW[:ACT][:sS][:pP] (K filters of H x W, ACT relu,
                                  stride 1, padding 0), maxpool:N[:sS] and avgpool:N[:sS]
                                  (N x N windows, stride N). NULL by default. */
    int threads;               /* threads a training step of this net uses: 0 (default) takes
                                  bp_get_threads() as it is when the net is created */
    float dropout;             /* with sizes: a dropout layer of this drop probability after
                                  every hidden layer ("dropout:P"); 0 (default) for none */
    int batchnorm;             /* with sizes: non-zero puts batch normalisation after every
                                  hidden layer's linear part, the activation after it
                                  ("dense:N:linear,batchnorm:ACT"); 0 by default */
    int input_channels;        /* the shape of an input column, channel-major: channels planes
                                  of input_rows x input_cols, their product sizes[0]; a conv
                                  or pooling layer needs it ("conv:20x5x5"), a dense layer sees
                                  the column flat. All three 0 (default): a flat column of
                                  sizes[0] (1 x 1 x sizes[0]). */
    int input_rows, input_cols;
} bp_net_config;

BP_API void bp_net_config_init(bp_net_config *cfg);

/* Build a network: one aligned arena for all parameters, one with the same layout for all
 * gradients, and activation and delta buffers for cfg->max_batch columns. Checks every size and
 * pairing once, here (cross-entropy and log-likelihood need outputs in (0,1): sigmoid or
 * softmax). The caller frees *out with bp_net_free. */
BP_API bp_status bp_net_create(bp_net **out, const bp_net_config *cfg);
/* Also starts the net's team of threads (when it has more than one): the threads are part of
 * the plan, so no training step ever makes them. */
BP_API void bp_net_free(bp_net *net);

/* Switch the arithmetic backend by name; the parameters are untouched. */
BP_API bp_status bp_net_set_backend(bp_net *net, const char *name);
BP_API const char *bp_net_backend(const bp_net *net);

/* The threads this net's steps use, and a new count (n <= 0: bp_get_threads()), which remakes
 * the net's team now rather than inside a later step. If the threads cannot be started,
 * bp_net_create and bp_net_set_threads fail (BP_ENOMEM) and a net keeps its old team. */
BP_API bp_status bp_net_set_threads(bp_net *net, int n);
BP_API int bp_net_threads(const bp_net *net);

/* Make the buffers hold at least max_batch columns (allocates only if they are smaller). */
BP_API bp_status bp_net_reserve(bp_net *net, int max_batch);

BP_API int bp_net_layers(const bp_net *net);        /* weight layers: n_sizes - 1 */
BP_API int bp_net_size(const bp_net *net, int i);   /* neurons in layer i, 0 = input */
/* The getters accept NULL (and out-of-range indices) and then return 0, NULL or *_COUNT. */
BP_API bp_cost bp_net_cost(const bp_net *net);      /* BP_COST_COUNT for a NULL net */

/* The parameter and gradient arenas: n floats each, the same layout, 64-byte aligned. Writing
 * the parameters through this view is allowed (that is how an optimiser or a loader works). */
BP_API float *bp_net_params(bp_net *net, size_t *n);
BP_API float *bp_net_grads(bp_net *net, size_t *n);

/* Views of layer l's weights (n_l x n_(l-1), leading dimension *ld) and biases (n_l),
 * l = 1 .. layers, inside the arenas above. Weights are a dense layer's alone (NULL and 0s
 * for other kinds: the tensor table describes every layout); biases a dense or conv layer's. */
BP_API float *bp_net_weights(bp_net *net, int l, int *rows, int *cols, int *ld);
BP_API float *bp_net_biases(bp_net *net, int l);
BP_API float *bp_net_weight_grads(bp_net *net, int l);
BP_API float *bp_net_bias_grads(bp_net *net, int l);

/* The tensor table: every parameter tensor of the net and where it lives in the arenas. Code
 * that treats tensors differently (L2 decay on weights only, per-layer gradient norms, model
 * files, the MPI all-reduce) walks this table instead of knowing layer kinds.
 *
 * Order: by offset, which is layer by layer; the tensors never overlap, and the floats between
 * them are the arenas' zero padding (each tensor starts on a 64-byte line), part of no tensor.
 *
 * Names: "layers.<p>.<kind>", p the 0-based position of the layer in the stack (so layer
 * l = p + 1 of bp_net_weights) and kind the layer's own name for the tensor (dense: "weight",
 * "bias"). These are the state_dict keys of a PyTorch module that keeps its layers in an
 * nn.ModuleList named `layers`; an nn.Sequential also counts its activations and is not a
 * match. Positions, not parameter-holding layers, are counted, so a layer without parameters
 * will leave a gap in p, as it does in PyTorch. Names are unique and stable for a given stack.
 *
 * Data: float32 in the host's byte order (little-endian on every target built today). The
 * element at index (i_0, ..., i_{ndim-1}) is arena[offset + i_0 * stride[0] + ... +
 * i_{ndim-1} * stride[ndim-1]], in the parameter arena (bp_net_params) and, at the same offset,
 * the gradient arena (bp_net_grads). Shapes are listed in PyTorch's order (dense weight
 * {n_out, n_in}, bias {n_out}); storage is column-major and compact (weight stride {1, n_out},
 * so the matrix's ld = stride[1] = n_out; bias stride {1}), so a tensor is exactly the count
 * floats from offset.
 *
 * For model files: PyTorch's nn.Linear.weight has the same shape {n_out, n_in} but is stored
 * row-major (strides {n_in, 1}). The bytes here are its transpose: read as row-major they are
 * an [n_in, n_out] array. A file whose weight PyTorch is to load as [n_out, n_in] (safetensors,
 * ONNX initialisers) must have it transposed on the way out and back on the way in; writing
 * the bytes as they are is right only under the shape [n_in, n_out]. One-dimensional tensors
 * (biases) are the same in both orders. */
#define BP_TENSOR_MAX_DIMS 4

typedef enum bp_tensor_role {
    BP_ROLE_WEIGHT = 0, /* multiplies the input; L2 decay applies to these */
    BP_ROLE_BIAS,       /* added to the output */
    BP_ROLE_SCALE,      /* batch norm's gamma (PyTorch's BatchNorm1d.weight); never decayed */
    BP_ROLE_SHIFT,      /* batch norm's beta (BatchNorm1d.bias); never decayed */
    BP_ROLE_RUNNING_MEAN, /* batch norm's running mean: a buffer (bp_net_buffer), not trained */
    BP_ROLE_RUNNING_VAR,  /* batch norm's running (unbiased) variance: a buffer */
    BP_ROLE_COUNT       /* later kinds append roles */
} bp_tensor_role;

typedef struct bp_tensor_info {
    const char *name;       /* "layers.0.weight"; owned by the net, lives as long as it */
    int layer;              /* 1-based, as for bp_net_weights */
    bp_tensor_role role;
    int ndim;               /* 1 .. BP_TENSOR_MAX_DIMS; shape and stride beyond it are 0 */
    int64_t shape[BP_TENSOR_MAX_DIMS];
    int64_t stride[BP_TENSOR_MAX_DIMS]; /* in elements */
    size_t offset;          /* floats from the start of the parameter (and gradient) arena */
    size_t count;           /* elements: the product of shape, no padding */
} bp_tensor_info;

/* Tensors in the net (0 for NULL). The table is built by bp_net_create and never changes;
 * none of these calls allocates. */
BP_API int bp_net_tensor_count(const bp_net *net);
/* Copy entry index (0 .. count-1) into *out. BP_EINVAL for a NULL argument or an index out of
 * range, with *out (if not NULL) zeroed. */
BP_API bp_status bp_net_tensor(const bp_net *net, int index, bp_tensor_info *out);
/* The index of the tensor named `name`, or -1 (also for a NULL net or name). */
BP_API int bp_net_tensor_find(const bp_net *net, const char *name);
/* "weight", "bias", "scale", "shift", "running_mean", "running_var"; "unknown" for a value
 * out of range. */
BP_API const char *bp_tensor_role_name(bp_tensor_role role);

/* The buffer table: the net's non-trained state (batch norm's running averages), described as
 * the tensor table describes parameters, with offsets into the state arena (bp_net_state)
 * instead of the parameter arena. Names follow the same pattern and PyTorch's buffers
 * ("layers.<p>.running_mean", "layers.<p>.running_var"); roles BP_ROLE_RUNNING_MEAN and
 * BP_ROLE_RUNNING_VAR. Scratch a layer keeps in its state between the passes of one step is
 * not listed. Empty for nets without such layers. */
BP_API int bp_net_buffer_count(const bp_net *net);
BP_API bp_status bp_net_buffer(const bp_net *net, int index, bp_tensor_info *out);
/* The state arena: n floats (0 and NULL when the net has none). Writing through it is allowed
 * (a loader does). */
BP_API float *bp_net_state(bp_net *net, size_t *n);

/* The layer stack as the spec string bp_net_config.layers takes ("dense:30:sigmoid,
 * dense:10:sigmoid"), input width not included: a net made from sizes gets the string its
 * sizes stand for. Owned by the net. */
BP_API const char *bp_net_spec(const bp_net *net);
/* The shape of an input column as the net was made with it (bp_net_config.input_channels,
 * _rows, _cols), all 0 for a flat one; any pointer may be NULL. */
BP_API void bp_net_input_shape(const bp_net *net, int *channels, int *rows, int *cols);

/* Forward pass of `batch` samples (columns of x, n_0 x batch, leading dimension ldx).
 * Writes the outputs to out (n_L x batch, leading dimension ldout) unless out is NULL.
 * batch may exceed the planned size: the call then reserves first (and may allocate). */
BP_API bp_status bp_net_forward(bp_net *net, const float *x, int ldx, int batch, float *out,
                                int ldout);

/* Forward and backward pass (BP1-BP4) of one mini-batch against targets y (n_L x batch,
 * leading dimension ldy). OVERWRITES the gradient arena with the gradient of the mean cost
 * C = (1/batch) sum_x C_x, and stores that mean cost in *cost unless cost is NULL.
 * BP_EDIVERGED when that cost is not finite (also for bp_net_sgd_step, whose update has then
 * been applied). */
BP_API bp_status bp_net_gradient(bp_net *net, const float *x, int ldx, const float *y, int ldy,
                                 int batch, double *cost);

/* Backpropagation from a gradient the caller computed, for costs the library does not know (a
 * GAN's discriminator loss, a recurrent net's loss over time): dc_da holds, column x, the
 * per-sample dC_x/dA^L of the outputs (n_L x batch, leading dimension ldg) that a forward pass
 * of x gives. Runs that forward pass, then BP1 from dc_da through the output activation, and
 * BP2-BP4; OVERWRITES the gradient arena with the gradient of the mean C = (1/batch) sum_x C_x,
 * as bp_net_gradient does. When dc_dx is not NULL it receives, column x, the per-sample dC_x/dX
 * (n_0 x batch, leading dimension lddx): what a generator feeding this net takes as its own
 * dc_da. batch must not exceed the planned size; nothing is allocated. */
BP_API bp_status bp_net_backward(bp_net *net, const float *x, int ldx, const float *dc_da,
                                 int ldg, int batch, float *dc_dx, int lddx);

/* One step of mini-batch SGD: params -= eta * (mean gradient), the gradient being that of
 * bp_net_gradient. The update is fused into the weight-gradient GEMM, so the gradient arena is
 * NOT written (its contents are unspecified afterwards). *cost is the batch's mean cost before
 * the step. batch must not exceed the planned size: the step never allocates. (OpenBLAS itself
 * may: 0.3.21's SkylakeX small-matrix sgemm kernels malloc and free a packing buffer on every
 * call, e.g. at batch 10; that is outside the library's control and its allocation counters.)
 *
 * Subnormals: this step, bp_net_gradient and every forward pass run with subnormal floats
 * flushed to zero (x86-64 MXCSR FTZ and DAZ, AArch64 FPCR.FZ) on each of the net's threads, so
 * values below FLT_MIN (1.18e-38) become 0 inside them; the caller's floating-point modes
 * (rounding, exception masks, its own FTZ/DAZ) are as they were when they return. Saturated
 * sigmoids would otherwise make such values, and x86 computes on them ~100x slower. Training
 * cannot tell: a change below 2^-126 is under half an ulp of any parameter of magnitude 2^-102
 * or more, and results stay bit-reproducible for a given thread count. OpenBLAS's own worker
 * threads (a step on the calling thread with more than one BLAS thread) keep their own
 * setting. docs/ARCHITECTURE.md ("Subnormals") has the details. */
BP_API bp_status bp_net_sgd_step(bp_net *net, const float *x, int ldx, const float *y, int ldy,
                                 int batch, float eta, double *cost);

/* ---- data sets ------------------------------------------------------------------------- */

typedef struct bp_dataset bp_dataset;

/* Read an IDX image file (magic 0x00000803) and its label file (0x00000801), raw or gzip;
 * the same as bp_dataset_load_idx_ex(out, images_path, labels_path, NULL). The label file is
 * read first, and the image header must agree with its count before any of the image payload
 * is read. Every header field is checked before the payload is allocated: against a raw file's
 * exact length (a short file and trailing bytes are errors), against the most a .gz file's
 * size can decompress to (deflate expands at most 1032-fold), and against sane limits. A gzip
 * file may hold several members (`gzip -c a b`), read as one stream; bytes after the last
 * member are an error. Only regular files are read: a FIFO, a device or a directory is refused
 * without blocking. A bad file gives BP_EFORMAT (or BP_EIO) and a message naming the file and
 * the field. Pixels stay bytes in memory and are scaled to [0,1] as batches are gathered. On
 * failure *out is NULL. The caller frees the set with bp_dataset_free. */
BP_API bp_status bp_dataset_load_idx(bp_dataset **out, const char *images_path,
                                     const char *labels_path);

/* The header of an IDX file, read without reading its payload (cheap, also for .gz). */
typedef struct bp_idx_info {
    uint32_t magic;   /* 0x00000803 images, 0x00000801 labels */
    size_t count;     /* images or labels */
    int rows, cols;   /* image files; 0 for label files */
} bp_idx_info;
/* Fill *out from path's header, validated as bp_dataset_load_idx validates it: the magic, every
 * field against the limits, a raw file's exact length, a .gz file's compressed size (only the
 * header is inflated, so a truncated or corrupt payload is not noticed here). BP_EIO or
 * BP_EFORMAT with a message naming the file; on failure *out is all zero. */
BP_API bp_status bp_idx_info_read(const char *path, bp_idx_info *out);

/* What a caller expects of the files, checked from the headers before any payload is read or
 * allocated; a zero field means "anything". A mismatch is BP_EFORMAT naming the file. */
typedef struct bp_idx_expect {
    int rows, cols;   /* exact image shape, e.g. the training set's when loading the test set */
    int dim;          /* rows * cols, e.g. the network's input width */
} bp_idx_expect;
/* bp_dataset_load_idx, with the image header also held to *expect (NULL: no expectations). A
 * negative field, or rows * cols != dim with all three set, is BP_EINVAL. */
BP_API bp_status bp_dataset_load_idx_ex(bp_dataset **out, const char *images_path,
                                        const char *labels_path, const bp_idx_expect *expect);

/* A data set from caller memory: n samples of dim floats (column-major, one sample a column,
 * ld = dim) with integer labels in [0, classes). Both arrays are copied. Every value of x must
 * be finite: a NaN or an infinity is BP_EINVAL naming it ("x[3] of sample 17 is nan"). */
BP_API bp_status bp_dataset_from_floats(bp_dataset **out, const float *x, const int *labels,
                                        size_t n, int dim, int classes);

/* A view of count samples starting at first; shares the storage (which lives until its last
 * view is freed). */
BP_API bp_status bp_dataset_slice(const bp_dataset *src, size_t first, size_t count,
                                  bp_dataset **out);
BP_API void bp_dataset_free(bp_dataset *ds);

BP_API size_t bp_dataset_count(const bp_dataset *ds);
BP_API int bp_dataset_dim(const bp_dataset *ds);     /* inputs per sample: 784 for MNIST */
/* The image shape, rows * cols = dim: 28 x 28 for MNIST; dim x 1 for bp_dataset_from_floats;
 * a slice's is its parent's. ds NULL gives 0 x 0; either output may be NULL. */
BP_API void bp_dataset_image_shape(const bp_dataset *ds, int *rows, int *cols);
/* Classes: 1 + the largest label of a loaded file, the count given to bp_dataset_from_floats,
 * and for a slice its parent's (so a slice lacking a digit keeps the full output width). */
BP_API int bp_dataset_classes(const bp_dataset *ds);
BP_API int bp_dataset_label(const bp_dataset *ds, size_t i);

/* Gather samples idx[0..batch) as float columns into x (dim x batch, ld = dim) and, if y is
 * not NULL, their one-hot targets into y (n_out x batch, ld = n_out). idx NULL means the
 * samples first .. first+batch-1 with first = 0. */
BP_API bp_status bp_dataset_gather(const bp_dataset *ds, const size_t *idx, int batch, float *x,
                                   float *y, int n_out);

/* ---- data expansion -------------------------------------------------------------------- */

/* A view of src five times as long (Nielsen ch. 6): sample 5 i + k is src's sample i as is
 * (k = 0) or moved one pixel up, down, left or right (k = 1..4) in its rows x cols image, the
 * row or column that comes in being 0. Nothing is stored: the shift is made as a batch is
 * gathered, and labels are the sample's. Shares src's storage, like a slice; slices of the
 * view are of its expanded samples. An already expanded src is BP_EINVAL. */
BP_API bp_status bp_dataset_expand_shifts(const bp_dataset *src, bp_dataset **out);

/* ---- training -------------------------------------------------------------------------- */

/* The optimisers (Nielsen ch. 1 and 3; Kingma & Ba for Adam; Loshchilov & Hutter for AdamW). G is
 * the gradient of the mini-batch's mean cost (scaled first when clip_norm clips it), plus
 * lambda/n W (L2) and l1/n sign(W) (L1) on the weights; t the step number from 1.
 *   sgd       W <- W - eta G (fused into BP4 when there is no L1 and no clipping)
 *   momentum  v <- mu v - eta G;  W <- W + v                      (Nielsen ch. 3)
 *   nesterov  v <- mu v - eta G;  W <- W + mu v - eta G           (Sutskever et al., 2013)
 *   adam      m <- b1 m + (1-b1) G;  v <- b2 v + (1-b2) G^2;
 *             W <- W - eta (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)
 *   adamw     adam, with the weights' step W <- (1 - eta weight_decay) W - eta m_hat / (...):
 *             the decay is of W before the step and outside G and the moments (as in the
 *             paper and torch.optim.AdamW); biases, scales and shifts are not decayed
 *   rmsprop   v <- b2 v + (1-b2) G^2;  W <- W - eta G / (sqrt(v) + eps)
 * State (v, m) lives in one arena laid out like the parameters, updated by one vectorised
 * loop per step split across the net's threads. */
typedef enum bp_optimizer_kind {
    BP_OPT_SGD = 0,
    BP_OPT_MOMENTUM,
    BP_OPT_NESTEROV,
    BP_OPT_ADAM,
    BP_OPT_ADAMW,
    BP_OPT_RMSPROP,
    BP_OPT_COUNT
} bp_optimizer_kind;
/* "sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop"; BP_EINVAL for another name. */
BP_API bp_status bp_optimizer_parse(const char *name, bp_optimizer_kind *out);
BP_API const char *bp_optimizer_name(bp_optimizer_kind k); /* "unknown" out of range */

/* Learning-rate schedules, applied between epochs:
 *   const     eta stays eta0
 *   halve:N   eta halves whenever validation accuracy has not improved for N epochs (the
 *             count starting again after each halving), and training stops once eta has
 *             dropped to eta0 / 128, seven halvings (Nielsen ch. 3's "terminates when the
 *             learning rate has dropped to 1/128 of its original value"); needs a
 *             validation set
 *   step:E:F  eta is multiplied by F after every E epochs
 *   cosine    eta_e = eta0 (1 + cos(pi (e - 1) / E)) / 2 for epoch e of E (bp_train's epochs);
 *             epochs after E, if a caller runs them, keep epoch E's rate (the formula's 0
 *             at E + 1 would stop learning)
 * Improvement means a strictly greater accuracy than the best so far. */
typedef enum bp_schedule_kind {
    BP_SCHEDULE_CONST = 0,
    BP_SCHEDULE_HALVE,
    BP_SCHEDULE_STEP,
    BP_SCHEDULE_COSINE,
    BP_SCHEDULE_COUNT
} bp_schedule_kind;
typedef struct bp_schedule {
    bp_schedule_kind kind;
    int epochs;    /* halve: N (patience); step: E */
    float factor;  /* step: F, positive and finite */
} bp_schedule;
/* "const", "halve:10", "step:5:0.5", "cosine" -> *out; BP_EINVAL with the reason otherwise. */
BP_API bp_status bp_schedule_parse(const char *text, bp_schedule *out);

typedef struct bp_epoch_report {
    int epoch;                 /* 1-based */
    double eta;                /* the learning rate this epoch trained with */
    double train_cost;         /* mean mini-batch cost over the epoch (before each update),
                                  plus the regularisation term of the weights at the epoch's
                                  end: (lambda / 2n) sum w^2 + (l1 / n) sum |w| (Nielsen's
                                  total cost; biases are not regularised) */
    double validation_accuracy;/* in [0,1]; -1 when there is no validation set */
    double validation_cost;    /* mean unregularised cost on the validation set; -1 without */
    double seconds;            /* wall time of the epoch's training steps */
    double samples_per_second;
    /* Learning-speed diagnostics (Nielsen ch. 5), when bp_train_config.norm_samples > 0: for
     * every tensor of the table (bp_net_tensor, same index), the Euclidean norm of the gradient
     * of the mean cost over the first norm_samples training samples, taken with the parameters
     * at the epoch's end (bp_net_grad_norms). NULL and 0 otherwise. A view into the trainer,
     * valid until its next call. */
    const double *grad_norms;
    int n_grad_norms;
} bp_epoch_report;

/* Called after every epoch; return non-zero to stop training early. */
typedef int (*bp_epoch_callback)(const bp_epoch_report *report, void *user);

/* Where training is inside an epoch, after a mini-batch. */
typedef struct bp_batch_report {
    int epoch;             /* 1-based: the epoch the mini-batch belongs to */
    size_t samples_done;   /* samples of this epoch trained, this mini-batch included */
    size_t samples;        /* samples in an epoch: the training set's size */
    long batches_done;     /* mini-batches of this epoch trained, this one included */
    double mean_cost;      /* mean cost of those samples, each before its update (the
                              regularisation term is added only at the epoch's end) */
    double seconds;        /* wall time of this epoch's training steps so far; an epoch
                              resumed from a checkpoint counts from the resume */
    size_t samples_timed;  /* the samples trained in `seconds`: their ratio is the speed */
} bp_batch_report;

/* A mini-batch callback, for progress displays and for stopping between mini-batches (a
 * Ctrl-C handler sets a flag, the callback returns it). The trainer calls it on the calling
 * thread after every mini-batch, the epoch's last included; what it costs per mini-batch is one
 * indirect call and one clock read, nothing when none is set. It must not call the trainer's
 * functions (its state is between two updates, not yet one a checkpoint can hold).
 * Non-zero stops the trainer before the next mini-batch. In the middle of an epoch that is a
 * pause: bp_trainer_epoch, bp_trainer_batches, bp_trainer_run and bp_train return
 * BP_ESTOPPED ("stopped by the batch callback at epoch 3, sample 12340 of 50000") with the
 * trainer where it stopped and the net as trained so far (bp_trainer_run restores no best
 * epoch then), so the trainer, or a checkpoint of it, goes on from there bit for bit. After an
 * epoch's last mini-batch, the epoch ends as usual (bp_trainer_epoch returns BP_OK with its
 * report) and bp_trainer_run stops after its evaluation, bp_trainer_observe and on_epoch,
 * returning BP_ESTOPPED with the trainer at that epoch's end, unless that epoch ended the run
 * anyway (then the run ends as it would have, BP_OK). */
typedef int (*bp_batch_callback)(const bp_batch_report *report, void *user);

typedef struct bp_train_config {
    int epochs;         /* default 30 */
    int batch;          /* default 10 */
    float eta;          /* default 3.0; the initial rate when a schedule changes it */
    uint64_t seed;      /* default 1; drives the per-epoch shuffle and the dropout masks */
    float lambda;       /* L2 on the weights, Nielsen's network2: W <- (1 - eta lambda / n) W
                           - (eta / B) sum dC_x/dW, n the training-set size; default 0 */
    float l1;           /* L1 on the weights: W <- W - (eta l1 / n) sign(W) - ..., sign(0) = 0;
                           default 0. Biases, scales and shifts are never regularised. */
    bp_optimizer_kind optimizer; /* default BP_OPT_SGD */
    float momentum;     /* mu of momentum and nesterov; default 0.9 */
    float beta1, beta2; /* adam, adamw (both) and rmsprop (beta2); defaults 0.9, 0.999 */
    float eps;          /* adam, adamw, rmsprop; default 1e-8 */
    float weight_decay; /* adamw's decoupled decay of the weights; default 0 (BP_EINVAL when
                           set for another optimizer, which would ignore it) */
    float clip_norm;    /* when > 0, the mean-cost gradient g (before L2 and L1 enter G) is
                           scaled by clip_norm / ||g|| whenever its global norm (over every
                           tensor) exceeds clip_norm; default 0 (off). SGD then does not fuse. */
    bp_schedule schedule;       /* default const */
    int early_stop;     /* bp_train: stop when validation accuracy has not improved for this
                           many epochs and restore the parameters of the best epoch (Nielsen's
                           no-improvement-in-N); 0 (default) never stops early. Under
                           halve:N each halving restarts the count (the net gets a fresh
                           patience at its new rate), so early_stop >= N leaves the ending to
                           the schedule and only keeps and restores the best epoch */
    int norm_samples;   /* per-epoch gradient norms over this many training samples (the
                           report's grad_norms); default 0 (off) */
    bp_epoch_callback on_epoch; /* may be NULL */
    void *user;                 /* handed to on_epoch and on_batch */
    bp_batch_callback on_batch; /* bp_train: after every mini-batch; may be NULL (default) */
} bp_train_config;

BP_API void bp_train_config_init(bp_train_config *cfg);

typedef struct bp_train_result {
    int epochs;                 /* epochs completed */
    double train_seconds;       /* wall time spent in training steps (by this call, a
                                   stopped epoch's part included) */
    double samples_per_second;  /* samples those steps trained, per second */
    double validation_accuracy; /* after the last epoch; -1 without a validation set */
    double best_validation_accuracy; /* the best epoch's; -1 without a validation set */
    int best_epoch;             /* 1-based; 0 without a validation set */
    int stopped_early;          /* early_stop or the halve schedule ended the run before
                                   cfg->epochs */
    double final_eta;           /* the learning rate after the last epoch's schedule step */
} bp_train_result;

/* Mini-batch training over `train` (shuffled each epoch by the library's seeded RNG) with the
 * configured optimiser and schedule, evaluating on `validation` (may be NULL) after each epoch.
 * Fails with BP_EDIVERGED, keeping the epoch count
 * reached, when a mini-batch's cost is not finite (a NaN output reaches the cost; it is never
 * clamped) or, checked after every epoch, a parameter is NaN or infinite; the message names the
 * epoch and, when parameters are lost, the layer. Saturation is not divergence: a net whose
 * sigmoids are pinned at 0 or 1 has a finite (large) cost and trains on. result may be NULL.
 * With early_stop (which, like the halve schedule, needs a validation set: BP_EINVAL without
 * one), the net ends holding the parameters of its best validation epoch, whether the run
 * stopped early or used all its epochs.
 * Its steps and evaluations flush subnormals to zero, as bp_net_sgd_step says; the caller's
 * floating-point modes are left as they were. */
BP_API bp_status bp_train(bp_net *net, const bp_dataset *train, const bp_dataset *validation,
                          const bp_train_config *cfg, bp_train_result *result);

/* A trainer: one run of mini-batch SGD over a training set, as a handle that owns everything
 * the run needs to go on (the optimiser and its state, the epoch, the position inside it, the
 * sample order, the shuffle's generator), so it can stop anywhere between mini-batches and be
 * resumed, in this process or, through bp_trainer_state, in another. bp_train is a loop over
 * bp_trainer_epoch. Uses everything in cfg but the callbacks (epochs only as the length the
 * cosine schedule anneals over; bp_train runs them).
 * The trainer keeps net and train (both must outlive it) and reserves the net's buffers. */
typedef struct bp_trainer bp_trainer;
BP_API bp_status bp_trainer_create(bp_trainer **out, bp_net *net, const bp_dataset *train,
                                   const bp_train_config *cfg);
BP_API void bp_trainer_free(bp_trainer *t);
BP_API int bp_trainer_epochs_done(const bp_trainer *t);
/* Call on_batch (NULL: nothing) after each mini-batch this trainer trains from now on, with
 * user (bp_batch_callback says what it may do). A trainer starts with none: bp_trainer_create
 * ignores cfg->on_batch as it ignores on_epoch, and bp_checkpoint_load makes one without. */
BP_API bp_status bp_trainer_set_batch_callback(bp_trainer *t, bp_batch_callback on_batch,
                                               void *user);

/* Train the rest of the current epoch (all of it if it has not begun: that shuffles first) and
 * fill *report (may be NULL; validation_accuracy is -1: evaluating is the caller's). A
 * non-finite cost or parameter stops it with BP_EDIVERGED, as for bp_train. */
BP_API bp_status bp_trainer_epoch(bp_trainer *t, bp_epoch_report *report);
/* At most max_batches mini-batches of the current epoch; *epoch_finished (may be NULL) says
 * whether that completed it, and then *report is filled as by bp_trainer_epoch. */
BP_API bp_status bp_trainer_batches(bp_trainer *t, long max_batches, int *epoch_finished,
                                    bp_epoch_report *report);

/* What bp_train does with a trainer: epochs until the trainer has completed `epochs` in all
 * (those done before, by a trainer resumed from a checkpoint, count), each followed by the
 * evaluation on validation (may be NULL), bp_trainer_observe and on_epoch (may be NULL;
 * non-zero stops), until the schedule or early stopping ends the run; then, with early
 * stopping, the best epoch's net is restored. result (may be NULL) counts all the trainer's
 * epochs and this call's seconds. */
BP_API bp_status bp_trainer_run(bp_trainer *t, const bp_dataset *validation, int epochs,
                                bp_epoch_callback on_epoch, void *user,
                                bp_train_result *result);

/* The end of an epoch, after the caller has evaluated: hand the trainer the validation accuracy
 * (-1 without a validation set) so the schedule and early stopping can act. It keeps the best
 * epoch (a copy of its parameters when early_stop is set), moves eta for the next epoch and
 * sets *stop (may be NULL) when early_stop or the halve schedule ends the run. bp_train calls it
 * after every epoch; a caller driving the trainer itself does the same. BP_EINVAL, changing
 * nothing, if no epoch has finished since the last call, for an accuracy neither in [0, 1]
 * nor -1, and for -1 when early_stop or the halve schedule needs an accuracy. */
BP_API bp_status bp_trainer_observe(bp_trainer *t, double validation_accuracy, int *stop);
/* The learning rate the next mini-batch trains with. */
BP_API double bp_trainer_eta(const bp_trainer *t);
/* The best epoch so far (1-based; 0 before any accuracy was observed) and its accuracy (-1
 * then); either output may be NULL. */
BP_API int bp_trainer_best(const bp_trainer *t, double *accuracy);
/* Copy the best epoch's parameters (kept when early_stop is set) into the net. BP_EINVAL when
 * none were kept. */
BP_API bp_status bp_trainer_restore_best(bp_trainer *t);

/* The trainer's state as plain data. Together with the net's parameters it is everything a
 * resumed run needs: set it on a trainer made with the same configuration over the same set
 * (and a net holding the same parameters), and the run continues bit for bit as if it had
 * never stopped (with the same thread count). order is a view into the trainer, valid until
 * its next call; set_state copies it and checks it is a permutation of the set. */
typedef struct bp_trainer_state {
    int epoch;                    /* epochs completed */
    size_t position;              /* samples of the current epoch trained (0: not begun) */
    double epoch_cost;            /* summed cost of those samples */
    uint64_t rng[4];              /* the shuffle's xoshiro256** state */
    uint64_t steps;               /* optimiser steps taken: Adam's t, the dropout masks' key */
    size_t n;                     /* training samples: the length of order */
    const size_t *order;          /* the current epoch's sample order */
    const float *optimizer_state; /* the optimiser's state arena; NULL for plain SGD */
    size_t optimizer_state_count; /* its floats; 0 for plain SGD */
    /* The schedule and early stopping: */
    double eta;                   /* the current learning rate */
    double best_accuracy;         /* -1 before any */
    int best_epoch;               /* 0 before any */
    int since_best;               /* observations without improvement since the best */
    int observed;                 /* epochs completed at the last bp_trainer_observe (the
                                     count of calls when it follows every epoch) */
    const float *best_params;     /* the best epoch's parameter arena (bp_net_params' n
                                     floats) followed by the net's running statistics (batch
                                     norm's; none for other kinds), NULL unless early_stop
                                     kept one */
    size_t best_count;            /* floats in best_params; 0 when it is NULL */
} bp_trainer_state;
BP_API bp_status bp_trainer_get_state(const bp_trainer *t, bp_trainer_state *out);
/* The configuration the trainer was made with (on_epoch, on_batch and user cleared), and its
 * net. */
BP_API bp_status bp_trainer_config(const bp_trainer *t, bp_train_config *out);
BP_API bp_net *bp_trainer_net(const bp_trainer *t);
BP_API bp_status bp_trainer_set_state(bp_trainer *t, const bp_trainer_state *state);

/* ---- data-parallel training ------------------------------------------------------------ */

/* The collective operations of `size` processes ("ranks") training one model, each with a
 * trainer over the same net configuration and the same training set: the transport is the
 * caller's (the backprop tool binds it to MPI, tools/mpi.c; a program may bind its own), the
 * library only says what to sum when. Each function returns 0 on success; any other value
 * fails the trainer's call with BP_EIO. A failing transport must fail on every rank (or end
 * the processes, as MPI's default error handler does): a rank that goes on alone would wait
 * for the others in the next call for ever. */
/* data[0..count) of every rank summed, in place, the same sum on every rank. */
typedef int (*bp_sum_floats_fn)(void *user, float *data, size_t count);
typedef int (*bp_sum_doubles_fn)(void *user, double *data, size_t count);
/* root's data[0..count) copied to every rank. */
typedef int (*bp_broadcast_floats_fn)(void *user, float *data, size_t count, int root);
/* The sum of sum_floats, started and not waited for: data is the transport's until
 * finish_sums, which waits for every sum started since the last. */
typedef int (*bp_start_sum_floats_fn)(void *user, float *data, size_t count);
typedef int (*bp_finish_sums_fn)(void *user);
typedef struct bp_collective {
    int rank, size; /* 0 <= rank < size */
    void *user;     /* the functions' first argument */
    bp_sum_floats_fn sum_floats;
    bp_sum_doubles_fn sum_doubles;
    bp_broadcast_floats_fn broadcast_floats;
    /* Optional (both or neither): with them a step starts each layer's gradient sum as soon
     * as BP4 has produced it, top layer first, so the sums travel while the layers below
     * are still computing, as PyTorch's DistributedDataParallel does with its buckets; when
     * the net's step runs on one thread (a team's layers finish together: then the layers'
     * sums start after BP4). The sums are the same as sum_floats's; only their timing
     * differs. Whether that pays depends on the transport and the net: bench/mpi.sh
     * measures it. */
    bp_start_sum_floats_fn start_sum_floats;
    bp_finish_sums_fn finish_sums;
} bp_collective;

/* Make t one of c->size ranks training one model (c is copied; NULL makes it train alone
 * again). Every rank must call it at the same point, with the same trainer state: rank 0's
 * parameters, running statistics and optimiser state are broadcast, so all start alike.
 * From then on each mini-batch of cfg.batch samples of the epoch's order (the same order on
 * every rank: same seed) is split into `size` contiguous shares; each rank backpropagates its
 * own share into the gradient arena, scaled by its share of the batch, the arenas are summed
 * (so the fused SGD-in-BP4 path is off), and every rank applies the same optimiser step to the
 * same summed gradient. Randomness drawn in a step is keyed by the column's place in the
 * whole mini-batch, so a run does not depend on `size` but through the order of the
 * floating-point sums (and through batch norm, whose batch statistics are each rank's own, as
 * in PyTorch's DistributedDataParallel; its running statistics are averaged over the ranks
 * after every epoch). Costs, the epoch's cost and validation in bp_trainer_run are summed
 * over the ranks, each evaluating a contiguous share of the set. A batch callback's stop
 * takes effect on every rank together, one mini-batch after the rank that asked first (the
 * ranks learn of it with the next batch's sums), or at the epoch's end. The state
 * (bp_trainer_get_state) is the same on every rank and does not depend on `size`: a
 * checkpoint written by P ranks resumes on Q. BP_EINVAL for a rank or size out of range or a
 * missing function. */
BP_API bp_status bp_trainer_set_collective(bp_trainer *t, const bp_collective *c);
/* After each epoch the ranks compare their parameters and optimiser state (a hash against
 * rank 0's); where they differ, because the transport's sums were not the same bits on every
 * rank, rank 0's are broadcast again. The count of such epochs (0 with a transport that sums
 * alike everywhere, which MPI implementations do). */
BP_API long bp_trainer_resyncs(const bp_trainer *t);
/* bp_evaluate of t's net on ds, shared over the trainer's ranks (each evaluates a contiguous
 * share; the counts and costs are summed); bp_evaluate itself without a collective. */
BP_API bp_status bp_trainer_evaluate(bp_trainer *t, const bp_dataset *ds, float *accuracy,
                                     double *cost);

/* ---- diagnostics ----------------------------------------------------------------------- */

/* Nielsen's chapter 5 measure of how fast each layer learns: the gradient of the mean cost over
 * the first `samples` samples of ds (all of them if fewer) with the parameters as they are,
 * and norms[k] = its Euclidean norm on tensor k of the table (n_norms must be at least
 * bp_net_tensor_count). The gradient is of the training-mode net (batch statistics, no
 * dropout); running statistics are not updated and the parameters are not changed. Uses the
 * gradient arena as scratch (its contents are unspecified afterwards) and works in chunks of
 * the planned batch, so it allocates only a small accumulator. */
BP_API bp_status bp_net_grad_norms(bp_net *net, const bp_dataset *ds, size_t samples,
                                   double *norms, int n_norms);

/* The singular values of a two-dimensional tensor of the table (a dense weight), computed by
 * LAPACK's sgesdd: the largest, the smallest (of min(rows, cols)) and their ratio, the
 * condition number (infinity when the smallest is 0). values, when not NULL, receives all
 * min(rows, cols) of them in descending order (n_values at least that). Allocates a copy of the
 * tensor and LAPACK's workspace. */
typedef struct bp_spectrum {
    double largest, smallest, condition;
    int count; /* min(rows, cols) */
} bp_spectrum;
BP_API bp_status bp_net_weight_spectrum(const bp_net *net, int tensor, bp_spectrum *out,
                                        float *values, int n_values);

/* Fraction of samples whose largest output is the label, and the mean cost (either may be
 * NULL). Allocates only if the net's buffers are smaller than its evaluation batch. */
BP_API bp_status bp_evaluate(bp_net *net, const bp_dataset *ds, float *accuracy, double *cost);

/* ---- model files ----------------------------------------------------------------------- */

/* A model file is a safetensors file (docs/FORMAT.md): an 8-byte little-endian header length,
 * a JSON header naming each tensor's dtype, shape and byte range, then the tensors' bytes. The
 * tensors are the net's parameters and buffers under their table names, laid out as PyTorch
 * lays out the equivalent module's state_dict (a dense weight [out, in] row-major), so
 * safetensors.torch.load_file + load_state_dict opens it (examples/load_in_torch.py). The
 * header's __metadata__ holds the format name and version, the architecture (bp_net_spec and
 * the input width), the cost, the fields below, the library version and CRC-32s of the
 * metadata and of every tensor's bytes. */
typedef struct bp_model_meta {
    int input_rows, input_cols; /* the image shape the net was trained on (rows * cols = the
                                   input width); 0 x 0 when unknown */
    float input_scale;          /* inputs are bytes times this (1/255 for IDX images); 0 when
                                   unknown */
    const char *class_names;    /* comma-separated names of the outputs, or NULL */
    const char *training;       /* the training configuration as a JSON object, or NULL: kept
                                   as text, for people and tools (the library only checks that
                                   it is a JSON object) */
} bp_model_meta;

/* Write the net and *meta (may be NULL) to path, atomically (bp_file_write_atomic's rules: the
 * old file or the new one, never a part). Non-finite parameters are refused (BP_EDIVERGED)
 * before anything is written. BP_EIO naming path when it cannot be written. */
BP_API bp_status bp_model_save(const bp_net *net, const char *path, const bp_model_meta *meta);

/* Read a model file strictly and make the net it describes, with cfg's threads, backend and
 * max_batch (cfg may be NULL: the defaults). Every defect is BP_EFORMAT with a message naming
 * the file and the field: a header length beyond the cap or the file, JSON that does not
 * parse, duplicate keys, an unknown dtype, a shape whose size overflows or disagrees with its
 * byte range, ranges that overlap or leave gaps, bytes after the last tensor, a CRC that does
 * not match, a tensor the architecture lacks or misses, a non-finite parameter, an unknown
 * major version of the format. *meta, when not NULL, receives the metadata; its strings live
 * as long as the net. */
BP_API bp_status bp_model_load(bp_net **out, const char *path, const bp_net_config *cfg,
                               bp_model_meta *meta);

/* A checkpoint: the trainer's net as a model file holds it (bp_model_load reads a checkpoint as
 * that model), plus the trainer's configuration and whole state: the optimiser's state arena,
 * the sample order and the shuffle's generator, the epoch, the position inside it and the
 * step count, the schedule's and early stopping's progress and the best epoch's copy
 * (docs/FORMAT.md, "Checkpoints"). Written atomically, like a model. */
BP_API bp_status bp_checkpoint_save(const bp_trainer *t, const char *path,
                                    const bp_model_meta *meta);

/* Read a checkpoint, make its net (with net_cfg's threads, backend and max_batch; NULL: the
 * defaults) and a trainer over `train` in the saved state, so that bp_trainer_epoch (or
 * bp_trainer_run) goes on where the saved trainer stopped: bit for bit on the thread count it
 * was saved with, and on any other the same run but for the last bits. train must be the set the
 * run trained on (its size is checked against the saved order). *trainer_out keeps *net_out
 * and train; the caller frees the trainer, then the net. bp_trainer_config tells what the run
 * was configured with. Defects are BP_EFORMAT naming the file and the field. */
BP_API bp_status bp_checkpoint_load(const char *path, const bp_dataset *train,
                                    const bp_net_config *net_cfg, bp_net **net_out,
                                    bp_trainer **trainer_out, bp_model_meta *meta);

/* ---- ONNX export ----------------------------------------------------------------------- */

/* Write the net as an ONNX model (docs/FORMAT.md, "ONNX export"): IR version 8, operator set
 * 13; input "input" and output "output", float [N, width] with N symbolic; per layer a Gemm
 * and its activation (dense), BatchNormalization with the running statistics (batchnorm), an
 * Identity (dropout); the tensors as initialisers under their table names, in the model file's
 * (PyTorch's) layout. The graph takes the inputs bp_net_forward takes: already scaled, the
 * scale is not in the graph but in the model's metadata_props with the architecture, the image
 * shape and the class names of *meta (may be NULL). Written atomically, as bp_model_save
 * writes. BP_EDIVERGED for a non-finite parameter, BP_EINVAL for metadata that does not fit the
 * net, BP_EIO when path cannot be written, and BP_ENOTSUP from a library built without ONNX
 * support (protobuf-c and libonnx-dev's onnx.proto; meson option onnx) or for a layer kind
 * the export does not know, each with a message saying so. */
BP_API bp_status bp_net_export_onnx(const bp_net *net, const char *path,
                                    const bp_model_meta *meta);

/* ---- files ----------------------------------------------------------------------------- */

/* Replacing a file atomically: a reader of `path` sees the old contents or the new ones, never
 * a part, and after a crash the file holds one or the other. Every file the library writes goes
 * through here.
 *
 * The data goes to a temporary file in path's directory (".NAME.tmp-" and 12 random letters),
 * created with O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC so nothing planted there can be written
 * through; it is written whole, fsync'ed, renamed over path, and the directory is fsync'ed.
 * A replaced file's permission bits are kept. If path exists it must be a regular file: a
 * device (/dev/null), a FIFO, a directory or a symbolic link is refused with BP_EIO and a
 * message saying which it is, and left as it was. Write errors (ENOSPC, EFBIG, EIO) are BP_EIO
 * with a message naming path and the system's reason. No call leaves the temporary file behind
 * when it fails.
 *
 * The library installs no signal handlers: a process killed between bp_file_writer_open and the
 * end of the commit leaves the temporary file. A caller that must not leave one blocks (or
 * catches) its termination signals around that span; the one-shot bp_file_write_atomic keeps it
 * as short as the write itself. */
typedef struct bp_file_writer bp_file_writer;

/* Write n bytes of data to path atomically, as described above. */
BP_API bp_status bp_file_write_atomic(const char *path, const void *data, size_t n);

/* The same in steps, for output made piece by piece: open creates the temporary file; write
 * appends to it (after a failure it has already removed the temporary file, and every later
 * call fails the same way); commit syncs and renames it over path and frees the writer, whether
 * it succeeds or not; abort removes the temporary file and frees the writer, leaving path as it
 * was (NULL is allowed). Exactly one of commit and abort ends every writer that open made. */
BP_API bp_status bp_file_writer_open(bp_file_writer **out, const char *path);
BP_API bp_status bp_file_writer_write(bp_file_writer *w, const void *data, size_t n);
BP_API bp_status bp_file_writer_commit(bp_file_writer *w);
BP_API void bp_file_writer_abort(bp_file_writer *w);

/* Check, before long work whose result goes to path, that it could be written now: path's
 * directory exists and accepts a new file (a probe is created with the same flags, written and
 * removed), and path is absent or a regular file that this process may replace. BP_OK, or
 * BP_EIO / BP_EINVAL with the reason. Nothing at path is touched. */
BP_API bp_status bp_file_check_replaceable(const char *path);

/* What kind of file a stat() st_mode describes ("a regular file", "a directory", "a FIFO",
 * "a symbolic link", "a character device", ...), for messages that refuse one: the library's
 * file code and its callers then say it the same way. A static string. */
BP_API const char *bp_file_kind(unsigned int st_mode);

#ifdef __cplusplus
}
#endif

#endif /* BACKPROP_H */
