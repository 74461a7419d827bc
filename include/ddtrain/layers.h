/* ddtrain layers: forward/backward pairs over views into the model's arenas.
 *
 * Shape legend: B = samples in the (local) batch, D = features, K = outputs,
 * C/H/W = channels/height/width, T = time steps. Activations are row-major,
 * one sample after another: x[B, in_size], y[B, out_size].
 *
 * Layers never own parameters or activations: the model hands each layer
 * views into one parameter arena, one gradient arena (same layout) and a
 * workspace sized once for the largest batch. Backward ACCUMULATES into the
 * gradient views (so micro-batches add up); the model zeroes them per step.
 * Gradients are of the SUM of per-sample losses; the trainer divides by the
 * global count after the allreduce. Nothing here knows about MPI: layers
 * that need cross-rank sums (batch norm) call dd_pass.allreduce. */
#ifndef DDTRAIN_LAYERS_H
#define DDTRAIN_LAYERS_H

#include <stdbool.h>
#include <stdint.h>

#include "ddtrain/core.h"

#define DD_SHAPE_MAX 4
#define DD_LAYER_MAX_PARAMS 8
#define DD_NAME_MAX 32
/* Values per sample of a layer's input or output, and per parameter tensor:
 * the kernels index them with int (checked when a model is built). */
#define DD_TENSOR_MAX 0x7fffffffLL

/* Per-sample shape (no batch dimension): [D], [C, H, W], [T], [T, D]. */
typedef struct dd_shape {
  int ndim;
  int64_t d[DD_SHAPE_MAX];
} dd_shape;

/* Values in a shape: the product of its dimensions, or -1 if a dimension is
 * negative or the product overflows int64 (shapes come from files). */
int64_t dd_shape_size(dd_shape s);
/* "1x28x28" into buf; returns buf. */
char *dd_shape_str(dd_shape s, char *buf, int n);

/* Parameter initialisers. */
enum {
  DD_INIT_AUTO = 0, /* He before ReLU, Xavier otherwise (decided by model) */
  DD_INIT_HE,       /* normal, std = sqrt(2 / fan_in) */
  DD_INIT_XAVIER,   /* uniform, limit = sqrt(6 / (fan_in + fan_out)) */
  DD_INIT_ZERO,
  DD_INIT_ONE,
  DD_INIT_UNIFORM_FANIN, /* uniform, limit = 1 / sqrt(fan_in) (PyTorch RNN) */
  DD_INIT_NORMAL,        /* normal, std = 1 (PyTorch nn.Embedding) */
  DD_INIT_GPT2,          /* normal, std = 0.02 (GPT-2's weights and embeddings) */
};

/* Configuration of one layer as written by the user. Fields a layer kind
 * does not accept keep their defaults; `set` has bit i set when key i of
 * dd_layer_keys was given. */
typedef struct dd_layer_spec {
  char type[DD_NAME_MAX];
  int line;                                 /* config line, 0 if unknown: used in error messages */
  uint64_t set;                             /* bit per dd_layer_keys entry */
  int64_t units;                            /* dense: output features */
  int init;                                 /* DD_INIT_* */
  bool bias;                                /* dense/conv: learn a bias (default true) */
  int64_t filters;                          /* conv: output channels */
  int64_t kernel[2], stride[2], padding[2]; /* conv/pool: [height, width] */
  double p;                                 /* dropout probability */
  double eps, momentum;
  int64_t hidden, vocab, dim;
  bool sequences;              /* recurrent: output every step (true) or the last one */
  int64_t heads;               /* attention: number of heads (divides D) */
  bool causal;                 /* attention: step t attends to steps <= t only (default true) */
  int64_t context;             /* positional: positions in the table (default: the input's T) */
  int64_t shape[DD_SHAPE_MAX]; /* reshape target */
  int shape_ndim;
  int pair;    /* residual / residual_end: the flat index of the block's other end */
  int tie;     /* dense: DD_TIE_* (tie: embedding uses the embedding's table as its weight) */
  int64_t mlp; /* transformer block: the MLP's hidden width as a multiple of D (default 4) */
  /* Set by the config's transformer expansion, not from YAML: units = units_mult
   * times the last dimension of layer units_from's input (the block's width). */
  int64_t units_mult;
  int units_from;
  bool expanded; /* written as part of a transformer block */
} dd_layer_spec;

/* dense's tie: key */
enum { DD_TIE_NONE = 0, DD_TIE_EMBEDDING = 1 };

/* Keys a layer may carry in the config, with their type and field. The
 * config parser walks this table; each kind lists the subset it accepts. */
/* DD_KEY_PAIR: an integer for both of two int64 fields, or a list [h, w]. */
/* DD_KEY_TIE: none | embedding (dense's tie). */
enum { DD_KEY_INT, DD_KEY_FLOAT, DD_KEY_BOOL, DD_KEY_INIT, DD_KEY_SHAPE, DD_KEY_PAIR, DD_KEY_TIE };
typedef struct dd_layer_key {
  const char *name;
  int type;
  size_t offset; /* into dd_layer_spec */
  double min, max;
} dd_layer_key;
extern const dd_layer_key dd_layer_keys[];
extern const int dd_layer_nkeys;
/* Index of a key in dd_layer_keys, or -1. */
int dd_layer_key_find(const char *name);
/* Fill a spec with defaults for `type` (type copied, truncated). */
void dd_layer_spec_defaults(dd_layer_spec *s, const char *type);

/* One tensor of a layer: a view into an arena. */
typedef struct dd_param {
  char name[DD_NAME_MAX]; /* "weight", "bias", "running_mean", ... */
  int ndim;
  int64_t dims[DD_SHAPE_MAX];
  int64_t size;   /* elements */
  int64_t offset; /* into the arena, in floats */
  int init;       /* DD_INIT_* */
  int64_t fan_in, fan_out;
  float *data; /* view into the parameter (or buffer) arena */
  float *grad; /* view into the gradient arena; NULL for buffers */
  /* A weight that multiplies the layer's input (dense, conv2d, recurrent and
   * attention weights; not biases, norms or embedding tables): what
   * optim.decay: weights limits weight decay to. Set by the layer's setup. */
  bool weight_matrix;
} dd_param;

/* What one pass (forward + backward of a batch) needs to know. */
typedef struct dd_pass {
  int B;                  /* local samples in this pass */
  int64_t B_global;       /* samples in the global batch across all ranks */
  int64_t sample0;        /* position of this rank's first sample in the global batch */
  bool train;             /* dropout on, batch statistics in batch norm */
  uint64_t seed;          /* run seed: dropout masks are hash(seed, step, sample) */
  int64_t step;           /* optimizer step (dropout mask stream) */
  int64_t micro;          /* micro-batch index within the step */
  const int32_t *lengths; /* [B] valid steps per sequence, or NULL (all T) */
  /* Sum buf[0..n) over all ranks in place; NULL = single process. */
  int (*allreduce)(void *ctx, double *buf, int n);
  void *allreduce_ctx;
  /* Backward only, NULL = none: called by dd_model_backward after layer i's
   * backward returned, so the gradients of layers i..nlayers-1 are final for
   * this pass (gradient buckets can start reducing while earlier layers
   * compute). A non-zero return ends the backward pass with that status. */
  int (*grad_ready)(void *ctx, int layer);
  /* Forward only, NULL = none: called after layer i's forward (tracing). */
  void (*forward_done)(void *ctx, int layer);
  void *hook_ctx; /* of grad_ready and forward_done */
} dd_pass;

typedef struct dd_layer dd_layer;

typedef struct dd_layer_kind {
  const char *name; /* as written in the config: "dense" */
  const char *keys; /* accepted config keys, comma separated */
  const char *doc;  /* one line for --help and docs */
  /* Validate l->spec against l->in, set l->out, declare parameters
   * (l->param[], l->nparam), buffers and workspace sizes. Errors name the
   * layer via dd__layer_error. */
  int (*setup)(dd_layer *l);
  /* x[B, in_size] -> y[B, out_size]. */
  int (*forward)(dd_layer *l, const dd_pass *p, const float *x, float *y);
  /* Given x, y and dy[B, out_size]: accumulate parameter gradients and, if
   * dx != NULL, write dx[B, in_size] (overwrite, not accumulate). */
  int (*backward)(dd_layer *l, const dd_pass *p, const float *x, const float *y, const float *dy, float *dx);
  /* y is x unchanged: the model gives the layer's output its input's
   * buffer (forward is still called, with y == x, and must allow it). */
  bool output_is_input;
  /* backward allows dx == dy: the model passes the gradient on in the same
   * buffer (it must also allow dx != dy, e.g. into a caller's dx0). */
  bool backward_in_place;
} dd_layer_kind;

struct dd_layer {
  const dd_layer_kind *kind;
  dd_layer_spec spec;
  int index; /* position in the model */
  dd_shape in, out;
  int64_t in_size, out_size; /* per-sample element counts */
  int nparam;
  dd_param param[DD_LAYER_MAX_PARAMS];
  int nbuf; /* non-trainable state saved in checkpoints (running stats) */
  dd_param buf[DD_LAYER_MAX_PARAMS];
  int64_t ws_per_sample; /* floats of scratch per sample, kept fwd -> bwd */
  int64_t ws_fixed;      /* floats of scratch independent of the batch */
  float *ws;             /* view: ws_fixed + max_batch * ws_per_sample */
  int max_batch;
  bool in_place_ok; /* forward may run with x == y (elementwise layers) */
  /* forward FLOPs per sample of the layer's matrix products (2 per
   * multiply-add), set by setup; elementwise work is not counted (0) */
  double flops;
  /* residual blocks (residual.c), wired by the model: the other end of the
   * block, and for the end the block's input (the start's acts). A dense with
   * tie: embedding: the embedding layer whose weight it uses (set before its
   * setup; it owns no arena region for that matrix). */
  struct dd_layer *peer;
  const float *skip;
};

/* Kind lookup by config name; NULL if unknown. */
const dd_layer_kind *dd_layer_kind_find(const char *name);
/* NULL-terminated list of all kinds (for help and error messages). */
extern const dd_layer_kind *const dd_layer_kinds[];
/* Comma-separated names of all kinds into buf. */
char *dd_layer_kind_names(char *buf, int n);

/* Declare a parameter (or buffer if is_buffer) tensor during setup. */
dd_param *dd_layer_declare(dd_layer *l, bool is_buffer, const char *name, int ndim, const int64_t *dims, int init,
                           int64_t fan_in, int64_t fan_out);

/* Error about layer l: "config line 12: layer 3 (dense): <msg>". */
int dd__layer_error(const dd_layer *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- plain kernels (llm.c style: outputs first, then inputs, then sizes) */

/* y[B,K] = x[B,D] W^T[D,K] + b[K]; W is [K, D] (PyTorch nn.Linear layout). */
void dd_dense_forward(float *y, const float *x, const float *W, const float *b, int B, int D, int K);
/* dW[K,D] += dy^T x; db[K] += sum_b dy; dx[B,D] = dy W (if dx). */
void dd_dense_backward(float *dx, float *dW, float *db, const float *dy, const float *x, const float *W, int B, int D,
                       int K);

/* Elementwise activations over n values; backward uses the forward output y
 * (ReLU: y > 0; tanh: 1 - y^2; sigmoid: y (1 - y)). */
void dd_relu_forward(float *y, const float *x, int64_t n);
void dd_relu_backward(float *dx, const float *y, const float *dy, int64_t n);
void dd_tanh_forward(float *y, const float *x, int64_t n);
void dd_tanh_backward(float *dx, const float *y, const float *dy, int64_t n);
void dd_sigmoid_forward(float *y, const float *x, int64_t n);
void dd_sigmoid_backward(float *dx, const float *y, const float *dy, int64_t n);

/* GELU, tanh approximation (GPT-2; torch.nn.functional.gelu(x,
 * approximate='tanh')): y = 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715
 * x^3), computed as x sigmoid(2u), the same function without the
 * cancellation in 1 + tanh(u) for negative x. Backward takes the input x;
 * forward_grad also writes g = dy/dx (the layer's backward is dx = dy g). */
void dd_gelu_forward(float *y, const float *x, int64_t n);
void dd_gelu_backward(float *dx, const float *x, const float *dy, int64_t n);
void dd_gelu_forward_grad(float *restrict y, float *restrict g, const float *restrict x, int64_t n);

/* ---- sequence layers (embedding, layernorm, rnn/lstm/gru) -------------
 * Sequence activations are [B, T, D] row-major, like PyTorch's batch_first.
 * Steps t >= lengths[b] (dd_pass.lengths) are padding: recurrent layers do
 * not update their state there, write zero outputs and pass no gradient. */

/* y[N, dim] = W[ids[n]] for N token ids (floats holding integers); W is
 * [vocab, dim] (nn.Embedding.weight). Returns the index of the first id
 * outside [0, vocab), or -1 if all are valid (nothing written past it). */
int64_t dd_embedding_forward(float *y, const float *ids, const float *W, int64_t N, int vocab, int dim);
/* dW[ids[n]] += dy[n] for the N ids (valid ones only). */
void dd_embedding_backward(float *dW, const float *dy, const float *ids, int64_t N, int vocab, int dim);

/* Layer normalisation over the last dimension D of R rows x[R, D]:
 * y = (x - mean) * rstd * w + b with the biased variance (nn.LayerNorm(D)).
 * mean[R] and rstd[R] are kept for backward. */
void dd_layernorm_forward(float *y, float *mean, float *rstd, const float *x, const float *w, const float *b, int64_t R,
                          int D, float eps);
/* dw[D] += sum dy * xhat; db[D] += sum dy; dx[R, D] = d L / d x (if dx). */
void dd_layernorm_backward(float *dx, float *dw, float *db, const float *dy, const float *x, const float *mean,
                           const float *rstd, const float *w, int64_t R, int D);

/* Branch-free float tanh and sigmoid that the compiler vectorises (a
 * rational approximation, max abs error ~1e-7 against tanhf; checked in
 * tests/unit/test_layers_seq.c). Recurrent cells use these. */
void dd_fast_tanh(float *y, const float *x, int64_t n);
void dd_fast_sigmoid(float *y, const float *x, int64_t n);

/* ---- losses ---------------------------------------------------------- */

enum { DD_LOSS_CROSS_ENTROPY = 0, DD_LOSS_MSE = 1 };

/* Sums over the samples (or valid time steps) of one pass. */
typedef struct dd_loss_sums {
  double loss;    /* sum of per-item losses */
  double count;   /* items the loss is averaged over */
  double correct; /* classification: argmax == label */
} dd_loss_sums;

/* Softmax cross-entropy on integer labels. logits[R, K], labels[R] where
 * R = rows (samples, or samples * steps); rows with label < 0 are masked
 * out (no loss, zero gradient). If dlogits != NULL it receives
 * d(sum of losses)/dlogits. Sums are ADDED to *s. */
void dd_cross_entropy(float *dlogits, dd_loss_sums *s, const float *logits, const int32_t *labels, int64_t R, int K);
/* Mean squared error: per item (R * K scalars) loss (pred - t)^2, as
 * PyTorch's MSELoss; dpred = 2 (pred - t). Sums ADDED to *s; count += R*K. */
void dd_mse(float *dpred, dd_loss_sums *s, const float *pred, const float *targets, int64_t R, int K);

#endif
