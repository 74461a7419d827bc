/* The config schema: sections, keys, defaults, checks and messages. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ddtrain/config.h"
#include "tree.h"

enum { F_I64, F_F64, F_BOOL, F_STR, F_LOSS, F_OPTIM, F_SHAPE, F_LAYERS, F_PATHS, F_SHUFFLE, F_OVERLAP, F_WIRE };
/* optimizer and schedule keys (optim.h, schedule.h): F_AUTO is a number or
 * "auto" (NaN: the optimizer's default) */
enum { F_AUTO = 100, F_BETAS, F_SCHED, F_UNIT, F_MILESTONES, F_DECAY };

typedef struct field {
  const char *key;
  int type;
  size_t off;  /* into dd_config */
  size_t size; /* strings: buffer size */
  double min, max;
  const char *def; /* default, parsed like user input ("" = none) */
  const char *help;
} field;

typedef struct section {
  const char *name;
  const field *fields;
  int nfields;
} section;

#define OFF(f) offsetof(dd_config, f)
#define OPT(f) (offsetof(dd_config, optim) + offsetof(dd_optim_spec, f))
#define SCH(f) (offsetof(dd_config, schedule) + offsetof(dd_schedule_spec, f))
#define STR(f) OFF(f), sizeof(((dd_config *)0)->f)

static const field model_fields[] = {
    {"input", F_SHAPE, OFF(input), 0, 1, 1e9, "",
     "per-sample input shape, e.g. [1, 28, 28]; default: the data's shape"},
    {"layers", F_LAYERS, 0, 0, 0, 0, "",
     "list of layers, e.g. [{type: dense, units: 128}, relu, {type: dense, units: 10}]"},
    {"loss", F_LOSS, OFF(loss), 0, 0, 0, "cross_entropy",
     "cross_entropy (integer class labels) or mse (float targets)"},
};
static const field data_fields[] = {
    {"train", F_PATHS, STR(train), 0, 0, "",
     "HDF5 file with the training data (required); or a list of files / glob patterns, e.g. data/train-*.h5"},
    {"val", F_PATHS, STR(val), 0, 0, "", "HDF5 file(s) with validation data (optional), as data.train"},
    {"x", F_STR, STR(x), 0, 0, "/x", "features dataset in the files, [N, ...]"},
    {"y", F_STR, STR(y), 0, 0, "/y", "labels dataset: [N] or [N, T] integer class ids, or [N] / [N, K] float targets"},
    {"val_fraction", F_F64, OFF(val_fraction), 0, 0, 0.9, "0",
     "hold out this fraction of data.train for validation (when data.val is not set)"},
    {"drop_last", F_BOOL, OFF(drop_last), 0, 0, 0, "false", "skip the last partial global batch of each epoch"},
    {"lengths", F_STR, STR(lengths), 0, 0, "",
     "sequences: integer dataset [N] of valid steps per sequence, e.g. /lengths (padding masked out)"},
    {"pad_id", F_I64, OFF(pad_id), 0, -1, 2147483647, "-1",
     "sequences: token id that pads; a sequence ends after its last other token (-1 = no padding)"},
    {"scale", F_AUTO, OFF(scale), 0, -1e30, 1e30, "auto",
     "features are read as x * scale + shift; auto (both keys unset): the features dataset's 'scale' and 'shift' "
     "attributes, else 1 and 0; setting either key ignores both attributes"},
    {"shift", F_AUTO, OFF(shift), 0, -1e30, 1e30, "auto", "see data.scale"},
    {"shuffle", F_SHUFFLE, OFF(shuffle), 0, 0, 0, "global",
     "sample order each epoch: global (exact shuffle) or chunks (shuffled chunks, rows shuffled within windows of "
     "data.shuffle_window chunks: for chunked/compressed files)"},
    {"shuffle_window", F_I64, OFF(shuffle_window), 0, 1, 1e9, "16",
     "data.shuffle chunks: chunks per window (the reader caches window + 1 decoded chunks per chunked dataset and "
     "file)"},
};
/* "auto" = the optimizer's PyTorch default; keys of other optimizers are errors (optim.c) */
static const field optim_fields[] = {
    {"name", F_OPTIM, OPT(kind), 0, 0, 0, "sgd", "optimizer: sgd, adam, adamw, rmsprop, adagrad (docs/optimizers.md)"},
    {"lr", F_AUTO, OPT(lr), 0, 0, 1e6, "auto",
     "base learning rate; auto: 0.01 sgd, rmsprop, adagrad; 0.001 adam, adamw"},
    {"momentum", F_AUTO, OPT(momentum), 0, 0, 1, "auto", "sgd, rmsprop: momentum factor in [0, 1); auto: 0"},
    {"dampening", F_AUTO, OPT(dampening), 0, 0, 1, "auto", "sgd: dampening of the momentum; auto: 0"},
    {"nesterov", F_BOOL, OPT(nesterov), 0, 0, 0, "false", "sgd: Nesterov momentum"},
    {"betas", F_BETAS, OPT(betas), 0, 0, 1, "auto", "adam, adamw: [beta1, beta2], each in [0, 1); auto: [0.9, 0.999]"},
    {"eps", F_AUTO, OPT(eps), 0, 0, 1, "auto",
     "adam, adamw, rmsprop, adagrad: denominator term; auto: 1e-8 (adagrad 1e-10)"},
    {"amsgrad", F_BOOL, OPT(amsgrad), 0, 0, 0, "false", "adam, adamw: AMSGrad (running max of the second moment)"},
    {"alpha", F_AUTO, OPT(alpha), 0, 0, 1, "auto", "rmsprop: smoothing constant in [0, 1); auto: 0.99"},
    {"centered", F_BOOL, OPT(centered), 0, 0, 0, "false",
     "rmsprop: divide by the estimated variance, not the 2nd moment"},
    {"lr_decay", F_AUTO, OPT(lr_decay), 0, 0, 1e6, "auto", "adagrad: step t uses lr / (1 + (t - 1) lr_decay); auto: 0"},
    {"initial_accumulator_value", F_AUTO, OPT(initial_accumulator_value), 0, 0, 1e6, "auto",
     "adagrad: initial sum of squared gradients; auto: 0"},
    {"weight_decay", F_AUTO, OPT(weight_decay), 0, 0, 1e6, "auto",
     "weight decay (L2 added to the gradient unless decoupled); auto: 0.01 adamw, else 0"},
    {"decoupled_weight_decay", F_BOOL, OPT(decoupled_weight_decay), 0, 0, 0, "false",
     "decay as p <- p (1 - lr weight_decay) before the update (AdamW style; always on for adamw)"},
    {"decay", F_DECAY, OPT(decay), 0, 0, 0, "all",
     "which parameters weight_decay applies to: all, or weights (weight matrices of dense, conv2d, recurrent and "
     "attention layers; not biases, norms or embeddings, as GPT recipes do)"},
    {"clip_norm", F_F64, OPT(clip_norm), 0, 0, 1e12, "0",
     "clip the global L2 norm of the averaged gradient to this, after the allreduce (0 = off)"},
    {"ref_batch_size", F_I64, OPT(ref_batch_size), 0, 0, 1e12, "0",
     "linear scaling rule: optim.lr is for this global batch and is scaled by batch_size / ref (0 = off)"},
};
/* Keys left out ("" default) are unset: resolved per schedule (schedule.c). */
static const field schedule_fields[] = {
    {"name", F_SCHED, SCH(kind), 0, 0, 0, "constant",
     "LR schedule: constant, step, multistep, exponential, cosine, polynomial, onecycle"},
    {"unit", F_UNIT, SCH(unit), 0, 0, 0, "",
     "what the schedule's times count: steps or epochs (required unless constant)"},
    {"step_size", F_I64, SCH(step_size), 0, 1, 1e15, "", "step: multiply the LR by gamma every step_size units"},
    {"gamma", F_F64, SCH(gamma), 0, 0, 1e6, "", "step, multistep (default 0.1), exponential (required): decay factor"},
    {"milestones", F_MILESTONES, 0, 0, 0, 0, "", "multistep: increasing times of the decays, e.g. [30, 60, 80]"},
    {"t_max", F_I64, SCH(t_max), 0, 1, 1e15, "", "cosine: units to reach eta_min (default: the run's length)"},
    {"eta_min", F_F64, SCH(eta_min), 0, 0, 1e6, "", "cosine: the floor LR (default 0)"},
    {"total", F_I64, SCH(total), 0, 1, 1e15, "", "polynomial, onecycle: length in units (default: the run's length)"},
    {"power", F_F64, SCH(power), 0, 0, 1e6, "", "polynomial: lr (1 - t / total)^power (default 1)"},
    {"pct_start", F_F64, SCH(pct_start), 0, 0, 1, "", "onecycle: fraction of total spent rising (default 0.3)"},
    {"div_factor", F_F64, SCH(div_factor), 0, 0, 1e12, "", "onecycle: start at lr / div_factor (default 25)"},
    {"final_div_factor", F_F64, SCH(final_div_factor), 0, 0, 1e12, "",
     "onecycle: end at lr / div_factor / final_div_factor (default 1e4)"},
    {"warmup_steps", F_I64, SCH(warmup_steps), 0, 0, 1e15, "0", "linear warmup over this many optimizer steps"},
    {"warmup_epochs", F_F64, SCH(warmup_epochs), 0, 0, 1e9, "0",
     "linear warmup over this many epochs (applied per step; use one of the two)"},
    {"warmup_start_factor", F_F64, SCH(warmup_start_factor), 0, 0, 1, "",
     "warmup starts at this fraction of the LR, rising linearly to 1 (default 1/3, as LinearLR)"},
};
static const field train_fields[] = {
    {"batch_size", F_I64, OFF(batch_size), 0, 1, 1e12, "32", "GLOBAL batch size, split across all ranks"},
    {"epochs", F_I64, OFF(epochs), 0, 0, 1e9, "10", "passes over the training data"},
    {"seed", F_I64, OFF(seed), 0, 0, 9.2e18, "42", "seed for initialisation, shuffling and dropout"},
    {"max_steps", F_I64, OFF(max_steps), 0, 0, 1e15, "0",
     "stop (with a checkpoint) after this many optimizer steps in total (0 = no limit)"},
    {"threads", F_I64, OFF(threads), 0, 0, 4096, "0",
     "BLAS threads per rank; 0 = SLURM_CPUS_PER_TASK, OPENBLAS_NUM_THREADS or cores / ranks per node"},
    {"accum_steps", F_I64, OFF(accum_steps), 0, 1, 1e6, "1",
     "gradient accumulation: micro-batches per rank per step, still one allreduce per step"},
    {"micro_batch", F_I64, OFF(micro_batch), 0, 0, 1e12, "0",
     "the most samples a rank runs through forward and backward at once: its share of a step in ceil(share / "
     "micro_batch) micro-batches, as accum_steps (0 = off); small micro-batches keep activations in cache "
     "(docs/optimizers.md)"},
    {"log_every", F_I64, OFF(log_every), 0, 0, 1e12, "50",
     "write a step record to the metrics log every N steps (0 = epochs only)"},
    {"metrics", F_STR, STR(metrics), 0, 0, "", "JSON Lines metrics log; default <checkpoint.dir>/metrics.jsonl"},
    {"timeout", F_F64, OFF(timeout), 0, 0, 1e9, "300",
     "watchdog: end the job (exit code 75) when ranks wait longer than this many seconds for one that does not "
     "arrive, naming it (0 = off)"},
    {"trace_steps", F_STR, STR(trace_steps), 0, 0, "",
     "write a Chrome trace (chrome://tracing, Perfetto) of the steps FIRST:END (END excluded), e.g. 100:110: "
     "<checkpoint.dir>/trace/trace.json (docs/observability.md)"},
    {"peak_gflops", F_F64, OFF(peak_gflops), 0, 0, 1e9, "0",
     "one rank's peak in GFLOP/s, against which model FLOPs utilisation (mfu) is reported; 0 = measured at the "
     "start (the best of 50 ms of sgemm on every rank at once)"},
    {"skip_zscore", F_F64, OFF(skip_zscore), 0, 0, 1e6, "0",
     "skip the update of a step whose loss or gradient norm lies more than this many standard deviations above "
     "the mean of the last train.skip_window steps (e.g. 5; 0 = off)"},
    {"skip_window", F_I64, OFF(skip_window), 0, 8, 1024, "128", "train.skip_zscore: steps in the window"},
    {"skip_max", F_I64, OFF(skip_max), 0, 1, 1e9, "10",
     "train.skip_zscore: stop (with a checkpoint) after this many consecutive skipped steps"},
};
static const field comm_fields[] = {
    {"overlap", F_OVERLAP, OFF(overlap), 0, 0, 0, "auto",
     "gradient sync overlapped with backward: thread (a communication thread reduces each bucket as soon as "
     "backward has finished it), poll (non-blocking reductions progressed between layers), off (one reduction "
     "after backward); auto: thread when the job spans several nodes, else off (docs/communication.md)"},
    {"bucket_mb", F_F64, OFF(bucket_mb), 0, 0.0001, 1e6, "1",
     "gradient bucket size in MiB: layers' gradients, last layer first, are reduced in buckets of about this size"},
    {"grad_dtype", F_WIRE, OFF(grad_dtype), 0, 0, 0, "f32",
     "what gradients are sent as: f32, or bf16 (half the bytes, summed in float32; docs/communication.md)"},
};
static const field ckpt_fields[] = {
    {"dir", F_STR, STR(ckpt_dir), 0, 0, "checkpoints", "checkpoint directory (\"\" = no checkpoints)"},
    {"every_epochs", F_I64, OFF(ckpt_every_epochs), 0, 0, 1e9, "1", "save every N epochs (0 = only at the end)"},
    {"every_steps", F_I64, OFF(ckpt_every_steps), 0, 0, 1e12, "0", "also save every N optimizer steps (0 = off)"},
    {"keep", F_I64, OFF(ckpt_keep), 0, 0, 1e6, "3", "keep the newest N checkpoints (0 = all)"},
};

#define SEC(n, f)                                                                                                      \
  { n, f, (int)(sizeof f / sizeof f[0]) }
static const section sections[] = {
    SEC("model", model_fields),       SEC("data", data_fields),   SEC("optim", optim_fields),
    SEC("schedule", schedule_fields), SEC("train", train_fields), SEC("comm", comm_fields),
    SEC("checkpoint", ckpt_fields),
};
#define NSECTIONS ((int)(sizeof sections / sizeof sections[0]))

/* ---- helpers ------------------------------------------------------------ */

static int edit_distance(const char *a, const char *b) {
  int la = (int)strlen(a), lb = (int)strlen(b);
  if (la > 40 || lb > 40)
    return 99;
  int d[41][41];
  for (int i = 0; i <= la; i++)
    d[i][0] = i;
  for (int j = 0; j <= lb; j++)
    d[0][j] = j;
  for (int i = 1; i <= la; i++)
    for (int j = 1; j <= lb; j++) {
      int c = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
      int del = d[i - 1][j] + 1, ins = d[i][j - 1] + 1;
      d[i][j] = c < del ? (c < ins ? c : ins) : (del < ins ? del : ins);
    }
  return d[la][lb];
}

/* " (did you mean 'x'?)" for the closest of names[], or "". */
static const char *suggest(const char *key, const char *const *names, int n, char *buf, int len) {
  int best = 99, bi = -1;
  for (int i = 0; i < n; i++) {
    int dist = edit_distance(key, names[i]);
    if (dist < best) {
      best = dist;
      bi = i;
    }
  }
  int limit = (int)strlen(key) / 3 + 1;
  if (bi >= 0 && best <= (limit < 3 ? limit : 3))
    snprintf(buf, (size_t)len, " (did you mean '%s'?)", names[bi]);
  else
    buf[0] = '\0';
  return buf;
}

static void join_names(const char *const *names, int n, char *buf, int len) {
  int used = 0;
  buf[0] = '\0';
  for (int i = 0; i < n && used < len; i++)
    used += snprintf(buf + used, (size_t)(len - used), "%s%s", i ? ", " : "", names[i]);
}

static int parse_i64(const char *s, int64_t *v) {
  if (!s || !*s)
    return -1;
  char *end;
  errno = 0;
  long long x = strtoll(s, &end, 10);
  if (*end == '\0' && errno == 0) {
    *v = x;
    return 0;
  }
  /* accept integral floats such as 6e4 */
  double d = strtod(s, &end);
  if (*end == '\0' && isfinite(d) && d == floor(d) && fabs(d) < 9.2e18) {
    *v = (int64_t)d;
    return 0;
  }
  return -1;
}

static int parse_f64(const char *s, double *v) {
  if (!s || !*s)
    return -1;
  char *end;
  errno = 0;
  *v = strtod(s, &end);
  return *end == '\0' && errno == 0 && isfinite(*v) ? 0 : -1;
}

static int parse_bool(const char *s, bool *v) {
  static const char *const t[] = {"true", "yes", "on", "1", "True", "TRUE"};
  static const char *const f[] = {"false", "no", "off", "0", "False", "FALSE"};
  for (int i = 0; i < 6; i++) {
    if (strcmp(s, t[i]) == 0) {
      *v = true;
      return 0;
    }
    if (strcmp(s, f[i]) == 0) {
      *v = false;
      return 0;
    }
  }
  return -1;
}

static const char *const loss_names[] = {"cross_entropy", "mse"};
static const char *const init_names[] = {"auto", "he", "xavier", "zero", "one", "uniform", "normal", "gpt2"};

/* Parse a shape: a YAML list of positive ints, or "1x28x28". */
static int parse_shape(const dd_cnode *n, dd_shape *s, char *err, int errlen) {
  memset(s, 0, sizeof *s);
  if (n->type == DD_CN_SEQ) {
    if (n->nkids < 1 || n->nkids > DD_SHAPE_MAX) {
      snprintf(err, (size_t)errlen, "expected 1 to %d dimensions, got %d", DD_SHAPE_MAX, n->nkids);
      return -1;
    }
    for (int i = 0; i < n->nkids; i++) {
      int64_t v;
      if (n->kids[i]->type != DD_CN_SCALAR || parse_i64(n->kids[i]->value, &v) || v < 1) {
        snprintf(err, (size_t)errlen, "dimension %d must be a positive integer", i);
        return -1;
      }
      s->d[s->ndim++] = v;
    }
    return 0;
  }
  if (n->type == DD_CN_SCALAR && n->value[0]) {
    char buf[128];
    snprintf(buf, sizeof buf, "%s", n->value);
    char *save = NULL;
    for (char *t = strtok_r(buf, "x, ", &save); t; t = strtok_r(NULL, "x, ", &save)) {
      int64_t v;
      if (s->ndim == DD_SHAPE_MAX || parse_i64(t, &v) || v < 1) {
        snprintf(err, (size_t)errlen, "expected a list of positive integers such as [1, 28, 28]");
        return -1;
      }
      s->d[s->ndim++] = v;
    }
    return s->ndim ? 0 : -1;
  }
  snprintf(err, (size_t)errlen, "expected a list of positive integers such as [1, 28, 28]");
  return -1;
}

static int bad_value(const dd_cnode *n, const char *key, const char *what) {
  char w[600];
  dd__cn_where(n, w, sizeof w);
  if (n && n->type == DD_CN_SCALAR)
    return dd_error(DD_ECONFIG, "%s%s: expected %s, got '%s'", w, key, what, n->value);
  return dd_error(DD_ECONFIG, "%s%s: expected %s, got a %s", w, key, what,
                  n && n->type == DD_CN_SEQ ? "list" : "section");
}

/* ---- layers ------------------------------------------------------------- */

static bool kind_accepts(const dd_layer_kind *k, const char *key) {
  size_t n = strlen(key);
  for (const char *p = k->keys; p && *p;) {
    const char *c = strchr(p, ',');
    size_t len = c ? (size_t)(c - p) : strlen(p);
    if (len == n && strncmp(p, key, n) == 0)
      return true;
    p = c ? c + 1 : p + len;
  }
  return false;
}

static int set_layer_key(dd_layer_spec *s, int ki, const dd_cnode *v, const char *label) {
  const dd_layer_key *k = &dd_layer_keys[ki];
  char *dst = (char *)s + k->offset;
  char what[128];
  if (v->type != DD_CN_SCALAR && k->type != DD_KEY_SHAPE && k->type != DD_KEY_PAIR)
    return bad_value(v, label, "a single value");
  switch (k->type) {
  case DD_KEY_PAIR: { /* one integer for height and width, or [height, width] as PyTorch's (h, w) */
    int64_t x[2];
    const bool list = v->type == DD_CN_SEQ;
    if (v->type == DD_CN_MAP || (list && v->nkids != 2)) {
      char w[600], got[32] = "a section";
      dd__cn_where(v, w, sizeof w);
      if (list)
        snprintf(got, sizeof got, "a list of %d", v->nkids);
      return dd_error(
          DD_ECONFIG,
          "%s%s: expected one integer or a list [height, width] of two, got %s; write e.g. %s: 3 or %s: [1, 3]", w,
          label, got, k->name, k->name);
    }
    for (int i = 0; i < 2; i++) {
      const dd_cnode *e = list ? v->kids[i] : v;
      char elabel[128];
      snprintf(elabel, sizeof elabel, "%s%s", label, list ? (i ? "[1] (width)" : "[0] (height)") : "");
      snprintf(what, sizeof what, "an integer in [%.0f, %.0f]%s", k->min, k->max,
               list ? "" : " or a list [height, width]");
      if (e->type != DD_CN_SCALAR || parse_i64(e->value, &x[i]) || x[i] < k->min || x[i] > k->max)
        return bad_value(e, elabel, what);
    }
    memcpy(dst, x, sizeof x);
    break;
  }
  case DD_KEY_INT: {
    int64_t x;
    snprintf(what, sizeof what, "an integer in [%.0f, %.0f]", k->min, k->max);
    if (parse_i64(v->value, &x) || x < k->min || x > k->max)
      return bad_value(v, label, what);
    memcpy(dst, &x, sizeof x);
    break;
  }
  case DD_KEY_FLOAT: {
    double x;
    snprintf(what, sizeof what, "a number in [%g, %g]", k->min, k->max);
    if (parse_f64(v->value, &x) || x < k->min || x > k->max)
      return bad_value(v, label, what);
    memcpy(dst, &x, sizeof x);
    break;
  }
  case DD_KEY_BOOL: {
    bool x;
    if (parse_bool(v->value, &x))
      return bad_value(v, label, "true or false");
    memcpy(dst, &x, sizeof x);
    break;
  }
  case DD_KEY_INIT: {
    int found = -1;
    for (int i = 0; i < (int)(sizeof init_names / sizeof init_names[0]); i++)
      if (strcmp(v->value, init_names[i]) == 0)
        found = i;
    if (found < 0)
      return bad_value(v, label, "one of auto, he, xavier, zero, one, uniform, normal, gpt2");
    static const int map[] = {DD_INIT_AUTO,          DD_INIT_HE,     DD_INIT_XAVIER, DD_INIT_ZERO, DD_INIT_ONE,
                              DD_INIT_UNIFORM_FANIN, DD_INIT_NORMAL, DD_INIT_GPT2};
    s->init = map[found];
    break;
  }
  case DD_KEY_TIE: {
    bool off;
    if (strcmp(v->value, "embedding") == 0)
      s->tie = DD_TIE_EMBEDDING;
    else if (strcmp(v->value, "none") == 0 || (parse_bool(v->value, &off) == 0 && !off))
      s->tie = DD_TIE_NONE;
    else
      return bad_value(v, label, "embedding (the weight is the embedding's table, as GPT-2's lm_head) or none");
    break;
  }
  case DD_KEY_SHAPE: {
    dd_shape sh;
    char err[128];
    if (parse_shape(v, &sh, err, sizeof err))
      return bad_value(v, label, "a list of positive integers such as [32, 7, 7]");
    for (int i = 0; i < sh.ndim; i++)
      s->shape[i] = sh.d[i];
    s->shape_ndim = sh.ndim;
    break;
  }
  }
  s->set |= (uint64_t)1 << ki;
  return DD_OK;
}

static int parse_layer(const dd_cnode *n, const char *at, dd_layer_spec *s) {
  char w[600], label[96];
  const dd_cnode *tn = n;
  if (n->type == DD_CN_MAP) {
    tn = dd__cn_get(n, "type");
    if (!tn) {
      dd__cn_where(n, w, sizeof w);
      return dd_error(DD_ECONFIG, "%s%s has no 'type'; write e.g. {type: dense, units: 10}", w, at);
    }
  }
  if (tn->type != DD_CN_SCALAR) {
    snprintf(label, sizeof label, "%.80s.type", at);
    return bad_value(tn, label, "a layer type name");
  }
  const dd_layer_kind *kind = dd_layer_kind_find(tn->value);
  if (!kind) {
    char names[512], sug[96];
    const char *list[64];
    int nk = 0;
    for (int i = 0; dd_layer_kinds[i] && nk < 64; i++)
      list[nk++] = dd_layer_kinds[i]->name;
    dd__cn_where(tn, w, sizeof w);
    return dd_error(DD_ECONFIG, "%s%s: unknown layer type '%s'%s; known types: %s", w, at, tn->value,
                    suggest(tn->value, list, nk, sug, sizeof sug), dd_layer_kind_names(names, sizeof names));
  }
  dd_layer_spec_defaults(s, kind->name);
  s->line = n->line;
  for (int i = 0; n->type == DD_CN_MAP && i < n->nkids; i++) {
    const dd_cnode *kv = n->kids[i];
    if (strcmp(kv->key, "type") == 0)
      continue;
    int ki = dd_layer_key_find(kv->key);
    if (ki < 0 || !kind_accepts(kind, kv->key)) {
      dd__cn_where(kv, w, sizeof w);
      const char *list[32];
      int nk = 0;
      char keys[256], sug[96];
      snprintf(keys, sizeof keys, "%s", kind->keys);
      char *save = NULL;
      for (char *t = strtok_r(keys, ",", &save); t && nk < 32; t = strtok_r(NULL, ",", &save))
        list[nk++] = t;
      char joined[256];
      join_names(list, nk, joined, sizeof joined);
      return dd_error(DD_ECONFIG, "%s%s (%s): unknown key '%s'%s; %s takes %s", w, at, kind->name, kv->key,
                      suggest(kv->key, list, nk, sug, sizeof sug), kind->name, nk ? joined : "no keys");
    }
    snprintf(label, sizeof label, "%.64s.%.24s", at, kv->key);
    int rc = set_layer_key(s, ki, kv, label);
    if (rc)
      return rc;
  }
  return DD_OK;
}

/* A residual block's inner list, or NULL if n is not a residual block. */
static const dd_cnode *residual_list(const dd_cnode *n) {
  const dd_cnode *t = n->type == DD_CN_MAP ? dd__cn_get(n, "type") : n;
  if (!t || t->type != DD_CN_SCALAR || strcmp(t->value, "residual") != 0)
    return NULL;
  const dd_cnode *l = n->type == DD_CN_MAP ? dd__cn_get(n, "layers") : NULL;
  return l ? l : n; /* n itself: no list, reported by flatten */
}

/* Is n a transformer block ({type: transformer, ...})? */
static bool is_block(const dd_cnode *n) {
  const dd_cnode *t = n->type == DD_CN_MAP ? dd__cn_get(n, "type") : n;
  return t && t->type == DD_CN_SCALAR && strcmp(t->value, "transformer") == 0;
}

/* A transformer block's flat layers at most: two residual blocks, attention
 * and MLP, with dropout after each. */
#define BLOCK_LAYERS 12

/* Layers in the flat list for the entries of seq (a residual block counts
 * its start, its layers and its end); -1 past the nesting limit. */
static int count_layers(const dd_cnode *seq, int depth) {
  if (depth > 16)
    return -1;
  int n = 0;
  for (int i = 0; i < seq->nkids; i++) {
    const dd_cnode *inner = residual_list(seq->kids[i]);
    int k = inner && inner != seq->kids[i] && inner->type == DD_CN_SEQ ? count_layers(inner, depth + 1) : 0;
    if (k < 0)
      return -1;
    n += inner ? 2 + k : is_block(seq->kids[i]) ? BLOCK_LAYERS : 1;
  }
  return n;
}

/* {type: transformer, heads, mlp, dropout, causal, bias} as the pre-LayerNorm
 * block it stands for, at c->layers[*pos..]:
 *   residual [layernorm, attention (heads, causal, bias, p = dropout), dropout]
 *   residual [layernorm, dense (mlp * D), gelu, dense (D), dropout]
 * (the dropouts only when dropout > 0: GPT-2's attn_pdrop and resid_pdrop).
 * D is not known before the model is built: the two dense layers carry
 * units_mult / units_from, which dd_model_build resolves. */
static int expand_block(dd_config *c, const dd_cnode *n, const char *label, int *pos) {
  dd_layer_spec b;
  int rc = parse_layer(n, label, &b);
  if (rc)
    return rc;
  if (b.heads <= 0) {
    char w[600];
    dd__cn_where(n, w, sizeof w);
    return dd_error(DD_ECONFIG, "%s%s (transformer): needs 'heads', e.g. {type: transformer, heads: 4, mlp: 4}", w,
                    label);
  }
  const bool drop = (b.set & ((uint64_t)1 << dd_layer_key_find("dropout"))) && b.p > 0;
  const uint64_t p_bit = (uint64_t)1 << dd_layer_key_find("p");
  dd_layer_spec *L = c->layers;
  int k = *pos;
#define ADD(t) (dd_layer_spec_defaults(&L[k], t), L[k].line = b.line, L[k].expanded = true, k++)
  for (int half = 0; half < 2; half++) {
    const int start = ADD("residual");
    ADD("layernorm");
    if (half == 0) {
      const int a = ADD("attention");
      L[a].heads = b.heads;
      L[a].causal = b.causal;
      L[a].bias = b.bias;
      L[a].p = drop ? b.p : 0;
      if (drop) /* attention dropout is on only where p is given (attention.c) */
        L[a].set |= p_bit;
    } else {
      const int up = ADD("dense");
      ADD("gelu");
      const int down = ADD("dense");
      L[up].units_mult = b.mlp;
      L[down].units_mult = 1;
      L[up].units_from = L[down].units_from = start;
      L[up].bias = L[down].bias = b.bias;
    }
    if (drop) {
      const int d = ADD("dropout");
      L[d].p = b.p;
      L[d].set |= p_bit;
    }
    const int end = ADD("residual_end");
    L[start].pair = end;
    L[end].pair = start;
  }
#undef ADD
  *pos = k;
  return DD_OK;
}

/* The entries of seq into c->layers from *pos on; `at` names seq in messages. */
static int flatten_layers(dd_config *c, const dd_cnode *seq, const char *at, int *pos) {
  char w[600], label[200];
  for (int i = 0; i < seq->nkids; i++) {
    const dd_cnode *n = seq->kids[i];
    snprintf(label, sizeof label, "%.180s[%d]", at, i);
    const dd_cnode *inner = residual_list(n);
    const dd_cnode *t = n->type == DD_CN_MAP ? dd__cn_get(n, "type") : n;
    if (t && t->type == DD_CN_SCALAR && strcmp(t->value, "residual_end") == 0) {
      dd__cn_where(t, w, sizeof w);
      return dd_error(DD_ECONFIG,
                      "%s%s: residual_end is not written by hand; write a block as {type: residual, "
                      "layers: [...]}",
                      w, label);
    }
    if (is_block(n)) {
      int rc = expand_block(c, n, label, pos);
      if (rc)
        return rc;
      continue;
    }
    if (!inner) {
      int rc = parse_layer(n, label, &c->layers[(*pos)++]);
      if (rc)
        return rc;
      continue;
    }
    dd__cn_where(n, w, sizeof w);
    if (inner == n || inner->type != DD_CN_SEQ || inner->nkids == 0)
      return dd_error(DD_ECONFIG,
                      "%s%s: a residual block needs a non-empty list of layers, e.g. {type: residual, "
                      "layers: [{type: dense, units: 64}, relu]}",
                      w, label);
    for (int k = 0; k < n->nkids; k++)
      if (strcmp(n->kids[k]->key, "type") != 0 && strcmp(n->kids[k]->key, "layers") != 0)
        return dd_error(DD_ECONFIG, "%s%s (residual): unknown key '%s'; residual takes layers", w, label,
                        n->kids[k]->key);
    const int begin = (*pos)++;
    dd_layer_spec_defaults(&c->layers[begin], "residual");
    c->layers[begin].line = n->line;
    char sub[200];
    snprintf(sub, sizeof sub, "%.180s.layers", label);
    int rc = flatten_layers(c, inner, sub, pos);
    if (rc)
      return rc;
    const int end = (*pos)++;
    dd_layer_spec_defaults(&c->layers[end], "residual_end");
    c->layers[end].line = n->line;
    c->layers[begin].pair = end;
    c->layers[end].pair = begin;
  }
  return DD_OK;
}

static int parse_layers(dd_config *c, const dd_cnode *n) {
  if (n->type != DD_CN_SEQ || n->nkids == 0)
    return bad_value(n, "model.layers", "a non-empty list of layers");
  const int total = count_layers(n, 0);
  if (total < 0)
    return bad_value(n, "model.layers", "residual blocks nested at most 16 deep");
  c->layers = dd_alloc((size_t)total, sizeof *c->layers);
  if (!c->layers)
    return DD_ENOMEM;
  int pos = 0;
  int rc = flatten_layers(c, n, "model.layers", &pos);
  c->nlayers = pos; /* a transformer block without dropout takes fewer than counted */
  return rc;
}

/* ---- optimizer and schedule fields -------------------------------------- */

static int set_optim_field(dd_config *c, const field *f, const dd_cnode *v, const char *label) {
  char what[400];
  char *dst = (char *)c + f->off;
  const bool is_auto = v->type == DD_CN_SCALAR && (strcmp(v->value, "auto") == 0 || v->value[0] == '\0');
  switch (f->type) {
  case F_AUTO: {
    double x = NAN;
    snprintf(what, sizeof what, "a number in [%g, %g] or auto", f->min, f->max);
    if (v->type != DD_CN_SCALAR || (!is_auto && (parse_f64(v->value, &x) || x < f->min || x > f->max)))
      return bad_value(v, label, what);
    memcpy(dst, &x, sizeof x);
    return DD_OK;
  }
  case F_BETAS: {
    double b[2] = {NAN, NAN};
    if (!is_auto) {
      if (v->type != DD_CN_SEQ || v->nkids != 2)
        return bad_value(v, label, "[beta1, beta2] such as [0.9, 0.999], or auto");
      for (int i = 0; i < 2; i++)
        if (v->kids[i]->type != DD_CN_SCALAR || parse_f64(v->kids[i]->value, &b[i]) || b[i] < 0.0 || b[i] >= 1.0)
          return bad_value(v->kids[i], label, "betas each in [0, 1), such as [0.9, 0.999]");
    }
    memcpy(dst, b, sizeof b);
    return DD_OK;
  }
  case F_SCHED:
  case F_UNIT: {
    const bool sched = f->type == F_SCHED;
    int k = v->type == DD_CN_SCALAR ? (sched ? dd_schedule_find(v->value) : dd_schedule_unit_find(v->value)) : -1;
    if (k < 0) {
      char list[200] = "steps or epochs", sug[96] = "";
      if (sched && v->type == DD_CN_SCALAR) {
        const char *all[DD_SCHED_NKINDS];
        for (int i = 0; i < DD_SCHED_NKINDS; i++)
          all[i] = dd_schedule_name(i);
        suggest(v->value, all, DD_SCHED_NKINDS, sug, sizeof sug);
      }
      snprintf(what, sizeof what, "%s%s%s", sched ? "one of " : "", sched ? dd_schedule_names(list, sizeof list) : list,
               sug);
      return bad_value(v, label, what);
    }
    *(int *)dst = k;
    return DD_OK;
  }
  case F_DECAY: {
    int k = v->type == DD_CN_SCALAR ? dd_optim_decay_find(v->value) : -1;
    if (k < 0)
      return bad_value(v, label, "all or weights");
    *(int *)dst = k;
    return DD_OK;
  }
  case F_MILESTONES: {
    dd_schedule_spec *s = &c->schedule;
    if (v->type != DD_CN_SEQ || v->nkids < 1 || v->nkids > DD_SCHED_MAX_MILESTONES) {
      snprintf(what, sizeof what, "a list of 1 to %d increasing positive integers such as [30, 60, 80]",
               DD_SCHED_MAX_MILESTONES);
      return bad_value(v, label, what);
    }
    for (int i = 0; i < v->nkids; i++) {
      int64_t x;
      if (v->kids[i]->type != DD_CN_SCALAR || parse_i64(v->kids[i]->value, &x) || x < 1 ||
          (i > 0 && x <= s->milestones[i - 1]))
        return bad_value(v->kids[i], label, "increasing positive integers such as [30, 60, 80]");
      s->milestones[i] = x;
    }
    s->nmilestones = v->nkids;
    return DD_OK;
  }
  }
  return dd_error(DD_EINVAL, "%s: unknown field type %d", label, f->type);
}

/* ---- fields ------------------------------------------------------------- */

static int set_field(dd_config *c, const section *sec, const field *f, const dd_cnode *v) {
  char label[128], what[300];
  snprintf(label, sizeof label, "%s.%s", sec->name, f->key);
  char *dst = (char *)c + f->off;
  if (f->type == F_LAYERS)
    return parse_layers(c, v);
  if (f->type == F_SHAPE) {
    char err[128];
    if (parse_shape(v, (dd_shape *)dst, err, sizeof err))
      return bad_value(v, label, "a list of positive integers such as [1, 28, 28]");
    const int64_t size = dd_shape_size(*(dd_shape *)dst);
    if (size < 0 || size > DD_TENSOR_MAX) {
      char w[600], sh[96];
      dd__cn_where(v, w, sizeof w);
      return dd_error(DD_ECONFIG, "%s%s: %s holds %s values per sample; ddtrain's kernels index at most 2^31 - 1", w,
                      label, dd_shape_str(*(dd_shape *)dst, sh, sizeof sh), size < 0 ? "more than 2^63" : "too many");
    }
    return DD_OK;
  }
  if (f->type >= F_AUTO)
    return set_optim_field(c, f, v, label);
  if (f->type == F_PATHS && v->type == DD_CN_SEQ) { /* several files: one per line */
    size_t used = 0;
    for (int i = 0; i < v->nkids; i++) {
      const dd_cnode *k = v->kids[i];
      if (k->type != DD_CN_SCALAR || !k->value[0] || strchr(k->value, '\n'))
        return bad_value(k, label, "a list of file paths or glob patterns");
      size_t n = strlen(k->value);
      if (used + n + 2 > f->size) {
        snprintf(what, sizeof what, "a list of at most %zu characters in all", f->size - 1);
        return bad_value(v, label, what);
      }
      if (used)
        dst[used++] = '\n';
      memcpy(dst + used, k->value, n + 1);
      used += n;
    }
    if (!used)
      return bad_value(v, label, "at least one file");
    return DD_OK;
  }
  if (v->type != DD_CN_SCALAR)
    return bad_value(v, label, "a single value");
  const char *s = v->value;
  switch (f->type) {
  case F_I64: {
    int64_t x;
    snprintf(what, sizeof what, "an integer >= %.0f", f->min);
    if (f->max < 1e11)
      snprintf(what, sizeof what, "an integer in [%.0f, %.0f]", f->min, f->max);
    if (parse_i64(s, &x) || (double)x < f->min || (double)x > f->max)
      return bad_value(v, label, what);
    memcpy(dst, &x, sizeof x);
    break;
  }
  case F_F64: {
    double x;
    snprintf(what, sizeof what, "a number in [%g, %g]", f->min, f->max);
    if (parse_f64(s, &x) || x < f->min || x > f->max)
      return bad_value(v, label, what);
    memcpy(dst, &x, sizeof x);
    break;
  }
  case F_BOOL: {
    bool x;
    if (parse_bool(s, &x))
      return bad_value(v, label, "true or false");
    memcpy(dst, &x, sizeof x);
    break;
  }
  case F_SHUFFLE:
  case F_OVERLAP:
  case F_WIRE: {
    /* one of a few words: value i + 1 of the field's list */
    static const char *const words[][4] = {[F_SHUFFLE] = {"global", "chunks", NULL, NULL},
                                           [F_OVERLAP] = {"thread", "poll", "off", "auto"},
                                           [F_WIRE] = {"f32", "bf16", NULL, NULL}};
    static const char *const expect[] = {
        [F_SHUFFLE] = "global or chunks", [F_OVERLAP] = "auto, thread, poll or off", [F_WIRE] = "f32 or bf16"};
    int k = 0;
    while (k < 4 && words[f->type][k] && strcmp(s, words[f->type][k]) != 0)
      k++;
    if (k == 4 || !words[f->type][k])
      return bad_value(v, label, expect[f->type]);
    *(int *)dst = k + 1;
    break;
  }
  case F_PATHS:
  case F_STR:
    if (strlen(s) >= f->size) {
      snprintf(what, sizeof what, "at most %zu characters", f->size - 1);
      return bad_value(v, label, what);
    }
    memcpy(dst, s, strlen(s) + 1);
    break;
  case F_LOSS: {
    int found = -1;
    for (int i = 0; i < 2; i++)
      if (strcmp(s, loss_names[i]) == 0)
        found = i;
    if (found < 0)
      return bad_value(v, label, "cross_entropy or mse");
    *(int *)dst = found == 0 ? DD_LOSS_CROSS_ENTROPY : DD_LOSS_MSE;
    break;
  }
  case F_OPTIM: {
    int k = dd_optim_find(s);
    if (k < 0) {
      char list[256], sug[96];
      const char *all[DD_OPTIM_NKINDS];
      for (int i = 0; i < DD_OPTIM_NKINDS; i++)
        all[i] = dd_optim_name(i);
      snprintf(what, sizeof what, "one of %s%s", dd_optim_names(list, sizeof list),
               suggest(s, all, DD_OPTIM_NKINDS, sug, sizeof sug));
      return bad_value(v, label, what);
    }
    *(int *)dst = k;
    break;
  }
  }
  return DD_OK;
}

static int apply_defaults(dd_config *c) {
  for (int si = 0; si < NSECTIONS; si++)
    for (int fi = 0; fi < sections[si].nfields; fi++) {
      const field *f = &sections[si].fields[fi];
      if (!f->def[0] && f->type != F_STR)
        continue;
      dd_cnode n = {.type = DD_CN_SCALAR, .value = (char *)f->def, .origin = "default"};
      int rc = set_field(c, &sections[si], f, &n);
      if (rc)
        return rc;
    }
  return DD_OK;
}

static int bind(dd_config *c, const dd_cnode *root) {
  char w[600], sug[96];
  const char *secnames[NSECTIONS];
  for (int i = 0; i < NSECTIONS; i++)
    secnames[i] = sections[i].name;
  if (root->type != DD_CN_MAP)
    return bad_value(root, "config", "sections (model, data, optim, train, checkpoint)");
  for (int i = 0; i < root->nkids; i++) {
    const dd_cnode *sn = root->kids[i];
    const section *sec = NULL;
    for (int s = 0; s < NSECTIONS; s++)
      if (strcmp(sn->key, sections[s].name) == 0)
        sec = &sections[s];
    if (!sec) {
      char all[128];
      join_names(secnames, NSECTIONS, all, sizeof all);
      dd__cn_where(sn, w, sizeof w);
      return dd_error(DD_ECONFIG, "%sunknown section '%s'%s; sections are %s", w, sn->key,
                      suggest(sn->key, secnames, NSECTIONS, sug, sizeof sug), all);
    }
    if (sn->type != DD_CN_MAP) {
      if (sn->type == DD_CN_SCALAR && sn->value[0] == '\0')
        continue; /* "optim:" with nothing under it */
      return bad_value(sn, sec->name, "a section of key: value lines");
    }
    for (int j = 0; j < sn->nkids; j++) {
      const dd_cnode *kv = sn->kids[j];
      const field *f = NULL;
      const char *names[32];
      for (int k = 0; k < sec->nfields; k++) {
        names[k] = sec->fields[k].key;
        if (strcmp(kv->key, sec->fields[k].key) == 0)
          f = &sec->fields[k];
      }
      if (!f) {
        char all[400];
        join_names(names, sec->nfields, all, sizeof all);
        dd__cn_where(kv, w, sizeof w);
        return dd_error(DD_ECONFIG, "%sunknown key '%s.%s'%s; keys in %s: %s", w, sec->name, kv->key,
                        suggest(kv->key, names, sec->nfields, sug, sizeof sug), sec->name, all);
      }
      int rc = set_field(c, sec, f, kv);
      if (rc)
        return rc;
    }
  }
  return DD_OK;
}

void dd_config_free(dd_config *c) {
  if (!c)
    return;
  dd_free(c->layers);
  dd_free(c->text);
  dd_free(c);
}

int dd_config_parse(const char *text, const char *origin, int noverrides, char *const *overrides, dd_config **out) {
  *out = NULL;
  dd_cnode *root = NULL;
  int rc = dd__cn_parse(text, origin, 0, &root);
  for (int i = 0; rc == DD_OK && i < noverrides; i++)
    rc = dd__cn_override(root, overrides[i]);
  dd_config *c = NULL;
  if (rc == DD_OK) {
    c = dd_alloc(1, sizeof *c);
    rc = c ? DD_OK : DD_ENOMEM;
  }
  if (rc == DD_OK) {
    snprintf(c->source, sizeof c->source, "%s", origin);
    dd_optim_spec_defaults(&c->optim);
    dd_schedule_spec_defaults(&c->schedule);
    rc = apply_defaults(c);
  }
  if (rc == DD_OK)
    rc = bind(c, root);
  if (rc == DD_OK && c->nlayers == 0)
    rc = dd_error(DD_ECONFIG, "%s: model.layers is missing; list the layers, e.g. layers: [{type: dense, units: 10}]",
                  origin);
  if (rc == DD_OK)
    rc = dd_optim_resolve(&c->optim);
  if (rc == DD_OK)
    rc = dd_schedule_resolve(&c->schedule);
  if (rc == DD_OK)
    rc = dd__cn_emit(root, &c->text);
  dd__cn_free(root);
  if (rc) {
    dd_config_free(c);
    return rc;
  }
  *out = c;
  return DD_OK;
}

int dd_config_load(const char *path, int noverrides, char *const *overrides, dd_config **out) {
  *out = NULL;
  FILE *f = fopen(path, "rb");
  if (!f)
    return dd_error(DD_EIO, "cannot open config '%s': %s", path, strerror(errno));
  char *buf = NULL;
  size_t n = 0, cap = 0;
  int rc = DD_OK;
  for (;;) {
    if (n + 4096 + 1 > cap) {
      size_t nc = cap ? cap * 2 : 16384;
      char *nb = dd_alloc(nc, 1);
      if (!nb) {
        rc = DD_ENOMEM;
        break;
      }
      if (buf)
        memcpy(nb, buf, n);
      dd_free(buf);
      buf = nb;
      cap = nc;
    }
    size_t got = fread(buf + n, 1, 4096, f);
    n += got;
    if (got < 4096)
      break;
    if (n > (1 << 24)) {
      rc = dd_error(DD_ECONFIG, "config '%s' is larger than 16 MiB; is it really a config file?", path);
      break;
    }
  }
  if (rc == DD_OK && ferror(f))
    rc = dd_error(DD_EIO, "cannot read config '%s': %s", path, strerror(errno));
  fclose(f);
  if (rc == DD_OK) {
    buf[n] = '\0';
    if (strlen(buf) != n)
      rc = dd_error(DD_ECONFIG, "config '%s' contains NUL bytes; it must be a YAML text file", path);
  }
  if (rc == DD_OK)
    rc = dd_config_parse(buf, path, noverrides, overrides, out);
  dd_free(buf);
  return rc;
}

const char *dd_config_reference(void) {
  static char buf[24000];
  if (buf[0])
    return buf;
  int used = 0;
  for (int s = 0; s < NSECTIONS; s++) {
    used += snprintf(buf + used, sizeof buf - (size_t)used, "%s:\n", sections[s].name);
    int width = 14; /* the section's longest key */
    for (int i = 0; i < sections[s].nfields; i++)
      if ((int)strlen(sections[s].fields[i].key) > width)
        width = (int)strlen(sections[s].fields[i].key);
    for (int i = 0; i < sections[s].nfields; i++) {
      const field *f = &sections[s].fields[i];
      char def[64];
      snprintf(def, sizeof def, "%s", f->def[0] ? f->def : (f->type == F_STR ? "\"\"" : "-"));
      used += snprintf(buf + used, sizeof buf - (size_t)used, "  %-*s %-14s %s\n", width, f->key, def, f->help);
    }
  }
  used += snprintf(buf + used, sizeof buf - (size_t)used, "layers (model.layers entries):\n");
  for (int i = 0; dd_layer_kinds[i]; i++)
    used += snprintf(buf + used, sizeof buf - (size_t)used, "  %-14s keys: %-28s %s\n", dd_layer_kinds[i]->name,
                     dd_layer_kinds[i]->keys[0] ? dd_layer_kinds[i]->keys : "-", dd_layer_kinds[i]->doc);
  return buf;
}
