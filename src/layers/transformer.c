/* Transformer layers without a projection of their own: GELU (tanh approximation) and the learned positional embedding.
 */
#include <string.h>

#include "ddtrain/layers.h"
#include "sequtil.h"

/* sqrt(2 / pi) and GPT-2's cubic coefficient */
#define GELU_A 0.7978845608028654f
#define GELU_B 0.044715f

/* 0.5 x (1 + tanh(u)) = x sigmoid(2u) = x / (1 + exp(-2u)) */
DD_WIDE void dd_gelu_forward(float *y, const float *x, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    const float v = x[i], u = GELU_A * (v + GELU_B * v * v * v);
    y[i] = v * (1.0f / (1.0f + dd__exp(-2.0f * u)));
  }
}

/* d/dx x s(2u) = s + x s (1 - s) 2 u',  u' = sqrt(2/pi) (1 + 3 * 0.044715 x^2);
 * 1 - s as e s: no cancellation where s is near 1 */
#define GELU_GRAD(v, e, s) ((s) + (v) * (s) * ((e) * (s)) * 2.0f * (GELU_A * (1.0f + 3.0f * GELU_B * (v) * (v))))

DD_WIDE void dd_gelu_backward(float *dx, const float *x, const float *dy, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    const float v = x[i], u = GELU_A * (v + GELU_B * v * v * v);
    const float e = dd__exp(-2.0f * u), s = 1.0f / (1.0f + e);
    dx[i] = dy[i] * GELU_GRAD(v, e, s);
  }
}

/* Forward and the derivative together (they share exp and the reciprocal):
 * the layer keeps g for backward, dx = dy g, a pass that only streams memory
 * in place of one that computes the exp again. */
DD_WIDE void dd_gelu_forward_grad(float *restrict y, float *restrict g, const float *restrict x, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    const float v = x[i], u = GELU_A * (v + GELU_B * v * v * v);
    const float e = dd__exp(-2.0f * u), s = 1.0f / (1.0f + e);
    y[i] = v * s;
    g[i] = GELU_GRAD(v, e, s);
  }
}

/* Workspace: the derivative at each input, written by every forward for
 * the backward that follows it. */
static int gelu_setup(dd_layer *l) {
  l->out = l->in;
  l->ws_per_sample = l->in_size;
  return DD_OK;
}

static DD_WIDE int gelu_forward(dd_layer *l, const dd_pass *p, const float *x, float *y) {
  dd_gelu_forward_grad(y, l->ws, x, (int64_t)p->B * l->in_size);
  return DD_OK;
}

static DD_WIDE void times(float *restrict dx, const float *restrict dy, const float *restrict g, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    dx[i] = dy[i] * g[i];
}

static DD_WIDE int gelu_backward(dd_layer *l, const dd_pass *p, const float *x, const float *y, const float *dy,
                                 float *dx) {
  (void)x;
  (void)y;
  if (dx)
    times(dx, dy, l->ws, (int64_t)p->B * l->in_size);
  return DD_OK;
}

const dd_layer_kind dd__layer_gelu = {
    .name = "gelu",
    .keys = "",
    .doc = "0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) (GPT-2; F.gelu(approximate='tanh'))",
    .setup = gelu_setup,
    .forward = gelu_forward,
    .backward = gelu_backward,
};

/* ---- positional embedding ------------------------------------------------
 * y[t, d] = x[t, d] + W[t, d] for the valid steps t of each sequence, zero
 * vectors at padding steps (as the token embedding writes there), which get
 * no gradient. W is [context, D] (GPT-2's wpe, an nn.Embedding(context, D)
 * indexed by 0..T-1); rows t >= T are not used by this model's input. */

static int positional_setup(dd_layer *l) {
  if (l->in.ndim != 2) {
    char s[64];
    return dd__layer_error(l,
                           "needs a sequence [T, D] per sample (steps x features), got %s; put it after an "
                           "embedding, e.g. [{type: embedding, vocab: 96, dim: 128}, positional]",
                           dd_shape_str(l->in, s, sizeof s));
  }
  const int64_t T = l->in.d[0], D = l->in.d[1];
  const int64_t C = l->spec.context > 0 ? l->spec.context : T;
  if (C < T)
    return dd__layer_error(l, "context = %lld is shorter than the input's %lld steps; set context >= %lld or remove it",
                           (long long)C, (long long)T, (long long)T);
  if (C * D > 0x7fffffff)
    return dd__layer_error(l, "%lld x %lld positions exceed the 2^31 limit", (long long)C, (long long)D);
  l->out = l->in;
  const int64_t wd[2] = {C, D};
  if (!dd_layer_declare(l, false, "weight", 2, wd, l->spec.init == DD_INIT_AUTO ? DD_INIT_GPT2 : l->spec.init, D, C))
    return dd__layer_error(l, "too many tensors");
  return DD_OK;
}

static int positional_forward(dd_layer *l, const dd_pass *p, const float *x, float *y) {
  const int64_t T = l->in.d[0], D = l->in.d[1];
  const float *W = l->param[0].data;
  for (int b = 0; b < p->B; b++) {
    const int64_t n = dd__valid_steps(p, b, T);
    const float *xb = x + b * T * D;
    float *yb = y + b * T * D;
    for (int64_t i = 0; i < n * D; i++)
      yb[i] = xb[i] + W[i];
    memset(yb + n * D, 0, sizeof(float) * (size_t)((T - n) * D));
  }
  return DD_OK;
}

static int positional_backward(dd_layer *l, const dd_pass *p, const float *x, const float *y, const float *dy,
                               float *dx) {
  (void)x;
  (void)y;
  const int64_t T = l->in.d[0], D = l->in.d[1];
  float *dW = l->param[0].grad;
  for (int b = 0; b < p->B; b++) {
    const int64_t n = dd__valid_steps(p, b, T);
    const float *dyb = dy + b * T * D;
    for (int64_t i = 0; i < n * D; i++)
      dW[i] += dyb[i];
    if (dx) {
      float *dxb = dx + b * T * D;
      if (dxb != dyb)
        memcpy(dxb, dyb, sizeof(float) * (size_t)(n * D));
      memset(dxb + n * D, 0, sizeof(float) * (size_t)((T - n) * D));
    }
  }
  return DD_OK;
}

const dd_layer_kind dd__layer_positional = {
    .name = "positional",
    .keys = "context,init",
    .doc = "[T, D] + learned position vectors; weight [context (T), D] (GPT-2's wpe), init normal(0, 0.02)",
    .setup = positional_setup,
    .forward = positional_forward,
    .backward = positional_backward,
};

/* {type: transformer, ...} never reaches a model: the config expands it into
 * its two residual blocks (config.c, expand_block). Listed for --help and
 * for the config's key checks. */
static int block_setup(dd_layer *l) {
  return dd__layer_error(l, "a transformer block is expanded by the config; build the model from a config");
}

const dd_layer_kind dd__layer_transformer = {
    .name = "transformer",
    .keys = "heads,mlp,dropout,causal,bias",
    .doc = "pre-LayerNorm block: residual [layernorm, attention (heads)] and residual [layernorm, dense (mlp * D), "
           "gelu, dense (D)], dropout (0) after each and on the attention",
    .setup = block_setup,
};
