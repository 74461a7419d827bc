/* Optimizer hyperparameters, state arenas and update rules (PyTorch semantics). */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "ddtrain/core.h"
#include "ddtrain/optim.h"

static const char *const names[DD_OPTIM_NKINDS] = {"sgd", "adam", "adamw", "rmsprop", "adagrad"};

/* ---- hyperparameters ----------------------------------------------------- */

#define NA NAN
#define OFF(f) offsetof(dd_optim_spec, f)

/* Defaults per kind (torch.optim's; SGD's lr, required in PyTorch, is
 * ddtrain's 0.01); NA = the key does not apply to that kind. */
typedef struct hyper {
  const char *key;
  size_t off;
  double def[DD_OPTIM_NKINDS]; /* sgd, adam, adamw, rmsprop, adagrad */
} hyper;

static const hyper hypers[] = {
    {"lr", OFF(lr), {0.01, 1e-3, 1e-3, 1e-2, 1e-2}},
    {"momentum", OFF(momentum), {0, NA, NA, 0, NA}},
    {"dampening", OFF(dampening), {0, NA, NA, NA, NA}},
    {"betas", OFF(betas[0]), {NA, 0.9, 0.9, NA, NA}},
    {"betas", OFF(betas[1]), {NA, 0.999, 0.999, NA, NA}},
    {"eps", OFF(eps), {NA, 1e-8, 1e-8, 1e-8, 1e-10}},
    {"alpha", OFF(alpha), {NA, NA, NA, 0.99, NA}},
    {"lr_decay", OFF(lr_decay), {NA, NA, NA, NA, 0}},
    {"initial_accumulator_value", OFF(initial_accumulator_value), {NA, NA, NA, NA, 0}},
    {"weight_decay", OFF(weight_decay), {0, 0, 0.01, 0, 0}},
};
#define NHYPERS ((int)(sizeof hypers / sizeof hypers[0]))

/* Boolean options and the kinds they apply to (bit per kind). */
typedef struct flag {
  const char *key;
  size_t off;
  unsigned kinds;
} flag;

#define K(k) (1u << (k))
static const flag flags[] = {
    {"nesterov", OFF(nesterov), K(DD_OPTIM_SGD)},
    {"amsgrad", OFF(amsgrad), K(DD_OPTIM_ADAM) | K(DD_OPTIM_ADAMW)},
    {"centered", OFF(centered), K(DD_OPTIM_RMSPROP)},
    {"decoupled_weight_decay", OFF(decoupled_weight_decay), ~0u},
};
#define NFLAGS ((int)(sizeof flags / sizeof flags[0]))

static double *hyper_at(dd_optim_spec *s, const hyper *h) {
  return (double *)((char *)s + h->off);
}

static bool *flag_at(dd_optim_spec *s, const flag *f) {
  return (bool *)((char *)s + f->off);
}

void dd_optim_spec_defaults(dd_optim_spec *s) {
  memset(s, 0, sizeof *s);
  s->kind = DD_OPTIM_SGD;
  for (int i = 0; i < NHYPERS; i++)
    *hyper_at(s, &hypers[i]) = NA;
}

const char *dd_optim_name(int kind) {
  return kind >= 0 && kind < DD_OPTIM_NKINDS ? names[kind] : "?";
}

int dd_optim_find(const char *name) {
  for (int i = 0; i < DD_OPTIM_NKINDS; i++)
    if (strcmp(names[i], name) == 0)
      return i;
  return -1;
}

static const char *const decay_names[DD_DECAY_NKINDS] = {"all", "weights"};

const char *dd_optim_decay_name(int decay) {
  return decay >= 0 && decay < DD_DECAY_NKINDS ? decay_names[decay] : "?";
}

int dd_optim_decay_find(const char *name) {
  for (int i = 0; i < DD_DECAY_NKINDS; i++)
    if (strcmp(decay_names[i], name) == 0)
      return i;
  return -1;
}

char *dd_optim_names(char *buf, int n) {
  int used = 0;
  buf[0] = '\0';
  for (int i = 0; i < DD_OPTIM_NKINDS && used < n; i++)
    used += snprintf(buf + used, (size_t)(n - used), "%s%s", i ? ", " : "", names[i]);
  return buf;
}

/* "lr, betas, eps, ..." : the keys a kind takes */
static void kind_keys(int kind, char *buf, int n) {
  int used = 0;
  buf[0] = '\0';
  for (int i = 0; i < NHYPERS && used < n; i++)
    if (!isnan(hypers[i].def[kind]) && (i == 0 || strcmp(hypers[i].key, hypers[i - 1].key) != 0))
      used += snprintf(buf + used, (size_t)(n - used), "%s%s", used ? ", " : "", hypers[i].key);
  for (int i = 0; i < NFLAGS && used < n; i++)
    if (flags[i].kinds & K(kind))
      used += snprintf(buf + used, (size_t)(n - used), ", %s", flags[i].key);
}

static int not_for_kind(int kind, const char *key) {
  char keys[256];
  kind_keys(kind, keys, sizeof keys);
  return dd_error(
      DD_ECONFIG,
      "optim.%s does not apply to optim.name %s; remove it (or set it to auto). %s takes %s, decay, clip_norm, "
      "ref_batch_size",
      key, names[kind], names[kind], keys);
}

static bool in(double x, double lo, double hi) {
  return x >= lo && x <= hi;
}

int dd_optim_resolve(dd_optim_spec *s) {
  const int kind = s->kind;
  if (kind < 0 || kind >= DD_OPTIM_NKINDS) {
    char all[128];
    return dd_error(DD_ECONFIG, "optim.name: unknown optimizer #%d; known: %s", kind, dd_optim_names(all, sizeof all));
  }
  for (int i = 0; i < NHYPERS; i++) {
    double *v = hyper_at(s, &hypers[i]), def = hypers[i].def[kind];
    if (isnan(def) && !isnan(*v))
      return not_for_kind(kind, hypers[i].key);
    if (isnan(*v))
      *v = def;
  }
  for (int i = 0; i < NFLAGS; i++)
    if (*flag_at(s, &flags[i]) && !(flags[i].kinds & K(kind)))
      return not_for_kind(kind, flags[i].key);
  if (kind == DD_OPTIM_ADAMW)
    s->decoupled_weight_decay = true; /* AdamW is Adam with decoupled decay */

  if (!(s->lr >= 0.0) || !isfinite(s->lr))
    return dd_error(DD_ECONFIG, "optim.lr = %g: the learning rate must be a finite number >= 0", s->lr);
  if (!isnan(s->momentum) && !(s->momentum >= 0.0 && s->momentum < 1.0))
    return dd_error(DD_ECONFIG, "optim.momentum = %g: must be in [0, 1)", s->momentum);
  if (!isnan(s->dampening) && !in(s->dampening, 0.0, 1.0))
    return dd_error(DD_ECONFIG, "optim.dampening = %g: must be in [0, 1]", s->dampening);
  if (s->nesterov && (s->momentum <= 0.0 || s->dampening != 0.0))
    return dd_error(DD_ECONFIG, "optim.nesterov needs optim.momentum > 0 and optim.dampening = 0 (as in PyTorch)");
  for (int i = 0; i < 2; i++)
    if (!isnan(s->betas[i]) && !(s->betas[i] >= 0.0 && s->betas[i] < 1.0))
      return dd_error(DD_ECONFIG, "optim.betas = [%g, %g]: each beta must be in [0, 1)", s->betas[0], s->betas[1]);
  if (!isnan(s->eps) && !(s->eps > 0.0 && isfinite(s->eps)))
    return dd_error(DD_ECONFIG, "optim.eps = %g: must be a finite number > 0", s->eps);
  if (!isnan(s->alpha) && !(s->alpha >= 0.0 && s->alpha < 1.0))
    return dd_error(DD_ECONFIG, "optim.alpha = %g: the RMSProp smoothing constant must be in [0, 1)", s->alpha);
  if (!isnan(s->lr_decay) && !(s->lr_decay >= 0.0 && isfinite(s->lr_decay)))
    return dd_error(DD_ECONFIG, "optim.lr_decay = %g: must be a finite number >= 0", s->lr_decay);
  if (!isnan(s->initial_accumulator_value) &&
      !(s->initial_accumulator_value >= 0.0 && isfinite(s->initial_accumulator_value)))
    return dd_error(DD_ECONFIG, "optim.initial_accumulator_value = %g: must be a finite number >= 0",
                    s->initial_accumulator_value);
  if (!(s->weight_decay >= 0.0) || !isfinite(s->weight_decay))
    return dd_error(DD_ECONFIG, "optim.weight_decay = %g: must be a finite number >= 0", s->weight_decay);
  if (!(s->clip_norm >= 0.0) || !isfinite(s->clip_norm))
    return dd_error(DD_ECONFIG, "optim.clip_norm = %g: must be a finite number > 0 (or 0 = no clipping)", s->clip_norm);
  if (s->decay < 0 || s->decay >= DD_DECAY_NKINDS)
    return dd_error(DD_ECONFIG, "optim.decay: unknown value #%d; use all or weights", s->decay);
  if (s->ref_batch_size < 0)
    return dd_error(DD_ECONFIG, "optim.ref_batch_size = %lld: must be > 0 (or 0 = no linear scaling)",
                    (long long)s->ref_batch_size);
  return DD_OK;
}

double dd_optim_scaled_lr(const dd_optim_spec *s, int64_t global_batch) {
  if (s->ref_batch_size <= 0)
    return s->lr;
  return s->lr * (double)global_batch / (double)s->ref_batch_size;
}

/* ---- state --------------------------------------------------------------- */

/* The state arenas of a resolved spec, by PyTorch's names (optimizer.state_dict()). */
static int state_names(const dd_optim_spec *spec, const char **out) {
  int n = 0;
  switch (spec->kind) {
  case DD_OPTIM_SGD:
    if (spec->momentum > 0.0)
      out[n++] = "momentum_buffer";
    break;
  case DD_OPTIM_ADAM:
  case DD_OPTIM_ADAMW:
    out[n++] = "exp_avg";
    out[n++] = "exp_avg_sq";
    if (spec->amsgrad)
      out[n++] = "max_exp_avg_sq";
    break;
  case DD_OPTIM_RMSPROP:
    out[n++] = "square_avg";
    if (spec->momentum > 0.0)
      out[n++] = "momentum_buffer";
    if (spec->centered)
      out[n++] = "grad_avg";
    break;
  case DD_OPTIM_ADAGRAD:
    out[n++] = "sum";
    break;
  }
  return n;
}

int dd_optim_state_count(const dd_optim_spec *s) {
  dd_optim_spec spec = *s;
  const char *kinds[DD_OPTIM_MAX_STATE];
  return dd_optim_resolve(&spec) == DD_OK ? state_names(&spec, kinds) : 0;
}

int dd_optim_create(const dd_optim_spec *s, int64_t n, dd_optim **out) {
  *out = NULL;
  dd_optim_spec spec = *s;
  int rc = dd_optim_resolve(&spec);
  if (rc)
    return rc;
  dd_optim *o = dd_alloc(1, sizeof *o);
  if (!o)
    return DD_ENOMEM;
  o->spec = spec;
  o->n = n;
  o->nstate = state_names(&spec, o->state_name);
  for (int i = 0; i < o->nstate; i++) {
    o->state[i] = dd_alloc((size_t)(n ? n : 1), sizeof(float));
    if (!o->state[i]) {
      dd_optim_free(o);
      return DD_ENOMEM;
    }
  }
  if (spec.kind == DD_OPTIM_ADAGRAD)
    for (int64_t i = 0; i < n; i++)
      o->state[0][i] = (float)spec.initial_accumulator_value;
  *out = o;
  return DD_OK;
}

void dd_optim_free(dd_optim *o) {
  if (!o)
    return;
  for (int i = 0; i < o->nstate; i++)
    dd_free(o->state[i]);
  dd_free(o->no_decay);
  dd_free(o);
}

int dd_optim_no_decay(dd_optim *o, int64_t offset, int64_t size) {
  if (offset < 0 || size < 0 || offset > o->n || size > o->n - offset)
    return dd_error(DD_EINVAL, "parameter group [%lld, +%lld) outside the %lld parameters", (long long)offset,
                    (long long)size, (long long)o->n);
  if (size == 0)
    return DD_OK;
  dd_optim_range *r = dd_alloc((size_t)o->nno_decay + 1, sizeof *r);
  if (!r)
    return DD_ENOMEM;
  /* insert in order, merging what overlaps or touches: a handful of ranges
   * per layer, built once */
  int n = 0, i = 0;
  int64_t lo = offset, hi = offset + size;
  for (; i < o->nno_decay && o->no_decay[i].offset + o->no_decay[i].size < lo; i++)
    r[n++] = o->no_decay[i];
  for (; i < o->nno_decay && o->no_decay[i].offset <= hi; i++) {
    const int64_t a = o->no_decay[i].offset, b = a + o->no_decay[i].size;
    lo = a < lo ? a : lo;
    hi = b > hi ? b : hi;
  }
  r[n++] = (dd_optim_range){lo, hi - lo};
  for (; i < o->nno_decay; i++)
    r[n++] = o->no_decay[i];
  dd_free(o->no_decay);
  o->no_decay = r;
  o->nno_decay = n;
  return DD_OK;
}

/* State arena `name` from entry off on, or NULL if the rule keeps none. */
static float *state(const dd_optim *o, const char *name, int64_t off) {
  for (int i = 0; i < o->nstate; i++)
    if (strcmp(o->state_name[i], name) == 0)
      return o->state[i] + off;
  return NULL;
}

/* ---- update rules ---------------------------------------------------------
 * Each rule is one pass over the arena with branch-free bodies (variants are
 * separate loops), so -O3 vectorises them; sqrtf vectorises because this
 * module is built with -fno-math-errno. Weight decay in every loop:
 *   p' = decay * p            decay = 1 - lr * wd if decoupled, else 1
 *   d  = scale * g + l2 * p'  l2    = wd if L2 (coupled), else 0
 * (a multiplication by 1.0f is exact, so the coupled case is PyTorch's). */

typedef struct wd {
  float decay, l2;
} wd;

/* One rule over the run [off, off + n) of the arena: p and g point at its
 * start, the state arenas are offset by off. */
typedef int (*rule_fn)(dd_optim *o, int64_t off, int64_t n, float *restrict p, const float *restrict g, float scale,
                       double lr, wd w);

/* 1 if x is NaN or infinite: integer bits, so the loops still vectorise (an
 * OR reduction needs no reassociation of floats) */
static inline uint32_t nonfinite(float x) {
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  return (u & 0x7f800000u) == 0x7f800000u;
}

static wd weight_decay(const dd_optim_spec *s, double lr) {
  if (s->decoupled_weight_decay)
    return (wd){(float)(1.0 - lr * s->weight_decay), 0.0f};
  return (wd){1.0f, (float)s->weight_decay};
}

static int sgd_step(dd_optim *o, int64_t off, int64_t n, float *restrict p, const float *restrict g, float scale,
                    double lr_d, wd w) {
  uint32_t bad = 0;
  const float lr = (float)lr_d;
  const float mu = (float)o->spec.momentum;
  const float damp = 1.0f - (float)o->spec.dampening;
  if (mu == 0.0f) {
    for (int64_t i = 0; i < n; i++) {
      float pi = w.decay * p[i];
      float d = g[i] * scale + w.l2 * pi;
      bad |= nonfinite(d);
      p[i] = pi - lr * d;
    }
    return bad != 0;
  }
  float *restrict buf = state(o, "momentum_buffer", off);
  if (o->t == 0) { /* PyTorch: buf = clone(d_p) on first use */
    for (int64_t i = 0; i < n; i++) {
      float pi = w.decay * p[i];
      float d = g[i] * scale + w.l2 * pi;
      bad |= nonfinite(d);
      buf[i] = d;
      p[i] = pi - lr * (o->spec.nesterov ? d + mu * d : d);
    }
    return bad != 0;
  }
  if (o->spec.nesterov) {
    for (int64_t i = 0; i < n; i++) {
      float pi = w.decay * p[i];
      float d = g[i] * scale + w.l2 * pi;
      bad |= nonfinite(d);
      float b = mu * buf[i] + damp * d;
      buf[i] = b;
      p[i] = pi - lr * (d + mu * b);
    }
  } else {
    for (int64_t i = 0; i < n; i++) {
      float pi = w.decay * p[i];
      float d = g[i] * scale + w.l2 * pi;
      bad |= nonfinite(d);
      float b = mu * buf[i] + damp * d;
      buf[i] = b;
      p[i] = pi - lr * b;
    }
  }
  return bad != 0;
}

/* Adam and AdamW (AdamW = decoupled weight decay, resolved into the spec). */
static int adam_step(dd_optim *o, int64_t off, int64_t n, float *restrict p, const float *restrict g, float scale,
                     double lr, wd w) {
  uint32_t bad = 0;
  const double t = (double)(o->t + 1);
  const double b1 = o->spec.betas[0], b2 = o->spec.betas[1];
  const float beta1 = (float)b1, beta2 = (float)b2, c1 = (float)(1.0 - b1), c2 = (float)(1.0 - b2);
  /* bias corrections in double, as PyTorch does on the Python side */
  const float step_size = (float)(lr / (1.0 - pow(b1, t)));
  const float bc2_sqrt = (float)sqrt(1.0 - pow(b2, t));
  const float eps = (float)o->spec.eps;
  float *restrict m = state(o, "exp_avg", off);
  float *restrict v = state(o, "exp_avg_sq", off);
  if (o->spec.amsgrad) {
    float *restrict vmax = state(o, "max_exp_avg_sq", off);
    for (int64_t i = 0; i < n; i++) {
      float pi = w.decay * p[i];
      float d = g[i] * scale + w.l2 * pi;
      bad |= nonfinite(d);
      float mi = beta1 * m[i] + c1 * d;
      float vi = beta2 * v[i] + c2 * d * d;
      float vm = vi > vmax[i] ? vi : vmax[i]; /* maxps; fmaxf would not vectorise */
      m[i] = mi;
      v[i] = vi;
      vmax[i] = vm;
      p[i] = pi - step_size * (mi / (sqrtf(vm) / bc2_sqrt + eps));
    }
  } else {
    for (int64_t i = 0; i < n; i++) {
      float pi = w.decay * p[i];
      float d = g[i] * scale + w.l2 * pi;
      bad |= nonfinite(d);
      float mi = beta1 * m[i] + c1 * d;
      float vi = beta2 * v[i] + c2 * d * d;
      m[i] = mi;
      v[i] = vi;
      p[i] = pi - step_size * (mi / (sqrtf(vi) / bc2_sqrt + eps));
    }
  }
  return bad != 0;
}

/* max(x, 0) as a compare-select that vectorises (fmaxf does not without
 * -ffinite-math-only) */
static inline float pos(float x) {
  return x > 0.0f ? x : 0.0f;
}

static int rmsprop_step(dd_optim *o, int64_t off, int64_t n, float *restrict p, const float *restrict g, float scale,
                        double lr_d, wd w) {
  uint32_t bad = 0;
  const float lr = (float)lr_d, eps = (float)o->spec.eps;
  const float alpha = (float)o->spec.alpha, c = (float)(1.0 - o->spec.alpha), mu = (float)o->spec.momentum;
  float *restrict sq = state(o, "square_avg", off);
  float *restrict buf = state(o, "momentum_buffer", off);
  float *restrict ga = state(o, "grad_avg", off);
  /* centered: sqrt(E[g^2] - E[g]^2), clamped at 0 against rounding (where
   * PyTorch would produce a NaN) */
  if (ga && buf) {
    for (int64_t i = 0; i < n; i++) {
      float pi = w.decay * p[i];
      float d = g[i] * scale + w.l2 * pi;
      bad |= nonfinite(d);
      float s = alpha * sq[i] + c * d * d;
      float a = alpha * ga[i] + c * d;
      float b = mu * buf[i] + d / (sqrtf(pos(s - a * a)) + eps);
      sq[i] = s;
      ga[i] = a;
      buf[i] = b;
      p[i] = pi - lr * b;
    }
  } else if (ga) {
    for (int64_t i = 0; i < n; i++) {
      float pi = w.decay * p[i];
      float d = g[i] * scale + w.l2 * pi;
      bad |= nonfinite(d);
      float s = alpha * sq[i] + c * d * d;
      float a = alpha * ga[i] + c * d;
      sq[i] = s;
      ga[i] = a;
      p[i] = pi - lr * (d / (sqrtf(pos(s - a * a)) + eps));
    }
  } else if (buf) {
    for (int64_t i = 0; i < n; i++) {
      float pi = w.decay * p[i];
      float d = g[i] * scale + w.l2 * pi;
      bad |= nonfinite(d);
      float s = alpha * sq[i] + c * d * d;
      float b = mu * buf[i] + d / (sqrtf(s) + eps);
      sq[i] = s;
      buf[i] = b;
      p[i] = pi - lr * b;
    }
  } else {
    for (int64_t i = 0; i < n; i++) {
      float pi = w.decay * p[i];
      float d = g[i] * scale + w.l2 * pi;
      bad |= nonfinite(d);
      float s = alpha * sq[i] + c * d * d;
      sq[i] = s;
      p[i] = pi - lr * (d / (sqrtf(s) + eps));
    }
  }
  return bad != 0;
}

static int adagrad_step(dd_optim *o, int64_t off, int64_t n, float *restrict p, const float *restrict g, float scale,
                        double lr, wd w) {
  uint32_t bad = 0;
  /* PyTorch: clr = lr / (1 + (step - 1) * lr_decay), step counted from 1 */
  const float clr = (float)(lr / (1.0 + (double)o->t * o->spec.lr_decay));
  const float eps = (float)o->spec.eps;
  float *restrict sum = state(o, "sum", off);
  for (int64_t i = 0; i < n; i++) {
    float pi = w.decay * p[i];
    float d = g[i] * scale + w.l2 * pi;
    bad |= nonfinite(d);
    float s = sum[i] + d * d;
    sum[i] = s;
    p[i] = pi - clr * (d / (sqrtf(s) + eps));
  }
  return bad != 0;
}

int dd_optim_step(dd_optim *o, float *params, const float *grads, float grad_scale, double lr) {
  rule_fn rule;
  switch (o->spec.kind) {
  case DD_OPTIM_SGD:
  default:
    rule = sgd_step;
    break;
  case DD_OPTIM_ADAM:
  case DD_OPTIM_ADAMW:
    rule = adam_step;
    break;
  case DD_OPTIM_RMSPROP:
    rule = rmsprop_step;
    break;
  case DD_OPTIM_ADAGRAD:
    rule = adagrad_step;
    break;
  }
  /* the groups in arena order: decaying runs between the no-decay ones.
   * Without groups this is one call over the whole arena, as before. A
   * no-decay run takes weight_decay 0: decay factor 1.0f and no L2 term,
   * exactly the arithmetic of a run with weight_decay 0. */
  const wd on = weight_decay(&o->spec, lr), off = {1.0f, 0.0f};
  int bad = 0;
  int64_t at = 0;
  for (int i = 0; i <= o->nno_decay; i++) {
    const int64_t end = i < o->nno_decay ? o->no_decay[i].offset : o->n;
    if (end > at)
      bad |= rule(o, at, end - at, params + at, grads + at, grad_scale, lr, on);
    if (i < o->nno_decay) {
      const dd_optim_range *r = &o->no_decay[i];
      bad |= rule(o, r->offset, r->size, params + r->offset, grads + r->offset, grad_scale, lr, off);
      at = r->offset + r->size;
    }
  }
  o->t++;
  return bad;
}

/* ---- clipping -------------------------------------------------------------- */

double dd_optim_grad_norm(const float *grads, int64_t n, double grad_scale) {
  /* eight independent double accumulators: vectorises without reassociating
   * (so without -ffast-math), and the order is fixed */
  double acc[8] = {0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; j++)
      acc[j] += (double)grads[i + j] * (double)grads[i + j];
  for (int j = 0; i < n; i++, j++)
    acc[j] += (double)grads[i] * (double)grads[i];
  double s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  return fabs(grad_scale) * sqrt(s);
}

double dd_optim_clip_factor(double norm, double max_norm) {
  if (!(max_norm > 0.0))
    return 1.0;
  double f = max_norm / (norm + 1e-6);
  return f < 1.0 ? f : 1.0;
}
