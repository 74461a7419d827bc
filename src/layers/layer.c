/* Layer registry, config keys, shapes and the shared setup helpers. */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "ddtrain/layers.h"

extern const dd_layer_kind dd__layer_dense, dd__layer_relu, dd__layer_tanh, dd__layer_sigmoid, dd__layer_flatten;
/* image layers */
extern const dd_layer_kind dd__layer_conv2d, dd__layer_maxpool2d, dd__layer_avgpool2d, dd__layer_global_avgpool,
    dd__layer_dropout, dd__layer_batchnorm;
/* sequence layers */
extern const dd_layer_kind dd__layer_embedding, dd__layer_rnn, dd__layer_lstm, dd__layer_gru, dd__layer_layernorm;
/* graph */
extern const dd_layer_kind dd__layer_residual, dd__layer_residual_end;
/* transformer layers */
extern const dd_layer_kind dd__layer_gelu, dd__layer_positional, dd__layer_attention, dd__layer_transformer;

const dd_layer_kind *const dd_layer_kinds[] = {
    &dd__layer_dense,
    &dd__layer_relu,
    &dd__layer_tanh,
    &dd__layer_sigmoid,
    &dd__layer_flatten,
    /* image layers */
    &dd__layer_conv2d,
    &dd__layer_maxpool2d,
    &dd__layer_avgpool2d,
    &dd__layer_global_avgpool,
    &dd__layer_dropout,
    &dd__layer_batchnorm,
    /* sequence layers */
    &dd__layer_embedding,
    &dd__layer_rnn,
    &dd__layer_lstm,
    &dd__layer_gru,
    &dd__layer_layernorm,
    /* graph */
    &dd__layer_residual,
    &dd__layer_residual_end,
    /* transformer layers */
    &dd__layer_gelu,
    &dd__layer_positional,
    &dd__layer_attention,
    &dd__layer_transformer,
    NULL,
};

#define KEY(n, t, f, lo, hi)                                                                                           \
  { n, t, offsetof(dd_layer_spec, f), lo, hi }
const dd_layer_key dd_layer_keys[] = {
    KEY("units", DD_KEY_INT, units, 1, 1e9),
    KEY("init", DD_KEY_INIT, init, 0, 0),
    KEY("bias", DD_KEY_BOOL, bias, 0, 1),
    KEY("filters", DD_KEY_INT, filters, 1, 1e9),
    KEY("kernel", DD_KEY_PAIR, kernel, 1, 1e6),
    KEY("stride", DD_KEY_PAIR, stride, 1, 1e6),
    KEY("padding", DD_KEY_PAIR, padding, 0, 1e6),
    KEY("p", DD_KEY_FLOAT, p, 0, 0.999999),
    KEY("eps", DD_KEY_FLOAT, eps, 1e-12, 1),
    KEY("momentum", DD_KEY_FLOAT, momentum, 0, 1),
    KEY("hidden", DD_KEY_INT, hidden, 1, 1e9),
    KEY("vocab", DD_KEY_INT, vocab, 1, 1e9),
    KEY("dim", DD_KEY_INT, dim, 1, 1e9),
    KEY("sequences", DD_KEY_BOOL, sequences, 0, 1),
    KEY("shape", DD_KEY_SHAPE, shape, 1, 1e9),
    KEY("heads", DD_KEY_INT, heads, 1, 1e6),
    KEY("causal", DD_KEY_BOOL, causal, 0, 1),
    KEY("context", DD_KEY_INT, context, 1, 1e9),
    KEY("tie", DD_KEY_TIE, tie, 0, 1),
    KEY("mlp", DD_KEY_INT, mlp, 1, 1e6),
    KEY("dropout", DD_KEY_FLOAT, p, 0, 0.999999),
};
#undef KEY
const int dd_layer_nkeys = (int)(sizeof dd_layer_keys / sizeof dd_layer_keys[0]);

int dd_layer_key_find(const char *name) {
  for (int i = 0; i < dd_layer_nkeys; i++)
    if (strcmp(dd_layer_keys[i].name, name) == 0)
      return i;
  return -1;
}

void dd_layer_spec_defaults(dd_layer_spec *s, const char *type) {
  memset(s, 0, sizeof *s);
  snprintf(s->type, sizeof s->type, "%s", type ? type : "");
  s->init = DD_INIT_AUTO;
  s->bias = true;
  s->stride[0] = s->stride[1] = 1;
  s->p = 0.5;
  s->eps = 1e-5;
  s->momentum = 0.1;
  s->causal = true;
  s->mlp = 4;
  s->units_from = -1;
}

const dd_layer_kind *dd_layer_kind_find(const char *name) {
  for (int i = 0; dd_layer_kinds[i]; i++)
    if (strcmp(dd_layer_kinds[i]->name, name) == 0)
      return dd_layer_kinds[i];
  return NULL;
}

char *dd_layer_kind_names(char *buf, int n) {
  int used = 0;
  buf[0] = '\0';
  for (int i = 0; dd_layer_kinds[i] && used < n; i++)
    used += snprintf(buf + used, (size_t)(n - used), "%s%s", i ? ", " : "", dd_layer_kinds[i]->name);
  return buf;
}

int64_t dd_shape_size(dd_shape s) {
  int64_t n = 1;
  for (int i = 0; i < s.ndim; i++)
    if (dd_mul_overflows(n, s.d[i], &n))
      return -1; /* a negative dimension, or more values than int64 counts */
  return n;
}

char *dd_shape_str(dd_shape s, char *buf, int n) {
  int used = 0;
  buf[0] = '\0';
  for (int i = 0; i < s.ndim && used < n; i++)
    used += snprintf(buf + used, (size_t)(n - used), "%s%lld", i ? "x" : "", (long long)s.d[i]);
  return buf;
}

dd_param *dd_layer_declare(dd_layer *l, bool is_buffer, const char *name, int ndim, const int64_t *dims, int init,
                           int64_t fan_in, int64_t fan_out) {
  int *count = is_buffer ? &l->nbuf : &l->nparam;
  if (*count >= DD_LAYER_MAX_PARAMS)
    return NULL;
  dd_param *p = is_buffer ? &l->buf[*count] : &l->param[*count];
  (*count)++;
  memset(p, 0, sizeof *p);
  snprintf(p->name, sizeof p->name, "%s", name);
  p->ndim = ndim;
  p->size = 1;
  for (int i = 0; i < ndim; i++) {
    p->dims[i] = dims[i];
    if (p->size >= 0 && dd_mul_overflows(p->size, dims[i], &p->size))
      p->size = -1; /* too large: dd_model_build refuses it */
  }
  p->init = init;
  p->fan_in = fan_in;
  p->fan_out = fan_out;
  return p;
}

int dd__layer_error(const dd_layer *l, const char *fmt, ...) {
  char detail[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(detail, sizeof detail, fmt, ap);
  va_end(ap);
  if (l->spec.line > 0 && l->spec.expanded) /* the user wrote {type: transformer} on that line */
    return dd_error(DD_ECONFIG, "config line %d: model layer %d (%s, part of the transformer block there): %s",
                    l->spec.line, l->index, l->kind ? l->kind->name : "?", detail);
  if (l->spec.line > 0)
    return dd_error(DD_ECONFIG, "config line %d: model.layers[%d] (%s): %s", l->spec.line, l->index,
                    l->kind ? l->kind->name : "?", detail);
  return dd_error(DD_ECONFIG, "model.layers[%d] (%s): %s", l->index, l->kind ? l->kind->name : "?", detail);
}
