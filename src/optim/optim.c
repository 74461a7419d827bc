/* Optimizer state arenas and update rules (PyTorch semantics). */
#include <math.h>
#include <string.h>

#include "ddtrain/core.h"
#include "ddtrain/optim.h"

static const char *const names[] = {"sgd"};
#define NKINDS ((int)(sizeof names / sizeof names[0]))

void dd_optim_spec_defaults(dd_optim_spec *s) {
  memset(s, 0, sizeof *s);
  s->kind = DD_OPTIM_SGD;
  s->lr = 0.01;
}

const char *dd_optim_name(int kind) {
  return kind >= 0 && kind < NKINDS ? names[kind] : "?";
}

int dd_optim_find(const char *name) {
  for (int i = 0; i < NKINDS; i++)
    if (strcmp(names[i], name) == 0)
      return i;
  return -1;
}

int dd_optim_validate(const dd_optim_spec *s) {
  if (!(s->lr >= 0.0) || !isfinite(s->lr))
    return dd_error(DD_ECONFIG, "optim.lr = %g: the learning rate must be a finite number >= 0", s->lr);
  if (!(s->momentum >= 0.0 && s->momentum < 1.0))
    return dd_error(DD_ECONFIG, "optim.momentum = %g: must be in [0, 1)", s->momentum);
  if (!(s->dampening >= 0.0 && s->dampening <= 1.0))
    return dd_error(DD_ECONFIG, "optim.dampening = %g: must be in [0, 1]", s->dampening);
  if (s->nesterov && (s->momentum <= 0.0 || s->dampening != 0.0))
    return dd_error(DD_ECONFIG, "optim.nesterov needs optim.momentum > 0 and optim.dampening = 0 (as in PyTorch)");
  if (!(s->weight_decay >= 0.0) || !isfinite(s->weight_decay))
    return dd_error(DD_ECONFIG, "optim.weight_decay = %g: must be a finite number >= 0", s->weight_decay);
  return DD_OK;
}

int dd_optim_create(const dd_optim_spec *s, int64_t n, dd_optim **out) {
  *out = NULL;
  int rc = dd_optim_validate(s);
  if (rc)
    return rc;
  dd_optim *o = dd_alloc(1, sizeof *o);
  if (!o)
    return DD_ENOMEM;
  o->spec = *s;
  o->n = n;
  if (s->kind == DD_OPTIM_SGD && s->momentum > 0.0)
    o->state_name[o->nstate++] = "momentum_buffer";
  for (int i = 0; i < o->nstate; i++) {
    o->state[i] = dd_alloc((size_t)(n ? n : 1), sizeof(float));
    if (!o->state[i]) {
      dd_optim_free(o);
      return DD_ENOMEM;
    }
  }
  *out = o;
  return DD_OK;
}

void dd_optim_free(dd_optim *o) {
  if (!o)
    return;
  for (int i = 0; i < o->nstate; i++)
    dd_free(o->state[i]);
  dd_free(o);
}

static void sgd_step(dd_optim *o, float *restrict p, const float *restrict g, float scale, float lr) {
  const int64_t n = o->n;
  const float wd = (float)o->spec.weight_decay;
  const float mu = (float)o->spec.momentum;
  const float damp = 1.0f - (float)o->spec.dampening;
  if (mu == 0.0f) {
    for (int64_t i = 0; i < n; i++) {
      float d = g[i] * scale + wd * p[i];
      p[i] -= lr * d;
    }
    return;
  }
  float *restrict buf = o->state[0];
  const bool first = o->t == 0; /* PyTorch: buf = clone(d_p) on first use */
  const bool nesterov = o->spec.nesterov;
  for (int64_t i = 0; i < n; i++) {
    float d = g[i] * scale + wd * p[i];
    float b = first ? d : mu * buf[i] + damp * d;
    buf[i] = b;
    p[i] -= lr * (nesterov ? d + mu * b : b);
  }
}

void dd_optim_step(dd_optim *o, float *params, const float *grads, float grad_scale, double lr) {
  switch (o->spec.kind) {
  case DD_OPTIM_SGD:
  default:
    sgd_step(o, params, grads, grad_scale, (float)lr);
    break;
  }
  o->t++;
}
