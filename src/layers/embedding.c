/* Embedding layer: token ids [T] -> vectors [T, dim]; W is [vocab, dim] as torch.nn.Embedding. */
#include <string.h>

#include "ddtrain/layers.h"
#include "sequtil.h"

/* Largest vocabulary whose ids are exact in the float32 activation buffer. */
#define VOCAB_MAX (1 << 24)

int64_t dd_embedding_forward(float *y, const float *ids, const float *W, int64_t N, int vocab, int dim) {
  for (int64_t n = 0; n < N; n++) {
    const float v = ids[n];
    if (!(v >= 0.0f && v < (float)vocab) || v != (float)(int64_t)v)
      return n;
    memcpy(y + n * dim, W + (int64_t)v * dim, sizeof(float) * (size_t)dim);
  }
  return -1;
}

void dd_embedding_backward(float *dW, const float *dy, const float *ids, int64_t N, int vocab, int dim) {
  for (int64_t n = 0; n < N; n++) {
    const float v = ids[n];
    if (!(v >= 0.0f && v < (float)vocab))
      continue;
    float *row = dW + (int64_t)v * dim;
    const float *d = dy + n * dim;
    for (int k = 0; k < dim; k++)
      row[k] += d[k];
  }
}

static int embedding_setup(dd_layer *l) {
  const int64_t V = l->spec.vocab, E = l->spec.dim;
  if (V <= 0 || E <= 0)
    return dd__layer_error(l, "needs 'vocab' (number of token ids) and 'dim' (vector size), e.g. {type: embedding, "
                              "vocab: 10000, dim: 64}");
  if (V > VOCAB_MAX)
    return dd__layer_error(l, "vocab = %lld is above 2^24, the largest id float32 data holds exactly", (long long)V);
  if (l->in.ndim != 1) {
    char s[64];
    return dd__layer_error(l,
                           "needs token ids [T] per sample (data x [N, T]), got input %s; put it first, on integer "
                           "sequence data",
                           dd_shape_str(l->in, s, sizeof s));
  }
  if (V * E > 0x7fffffff)
    return dd__layer_error(l, "%lld x %lld weights exceed the 2^31 limit", (long long)V, (long long)E);
  l->out.ndim = 2;
  l->out.d[0] = l->in.d[0];
  l->out.d[1] = E;
  int64_t wd[2] = {V, E};
  if (!dd_layer_declare(l, false, "weight", 2, wd, l->spec.init == DD_INIT_AUTO ? DD_INIT_NORMAL : l->spec.init, E, V))
    return dd__layer_error(l, "too many tensors");
  return DD_OK;
}

static int embedding_forward(dd_layer *l, const dd_pass *p, const float *x, float *y) {
  const int64_t T = l->in.d[0];
  const int E = (int)l->spec.dim, V = (int)l->spec.vocab;
  for (int b = 0; b < p->B; b++) {
    const int64_t n = dd__valid_steps(p, b, T);
    const float *ids = x + b * T;
    float *yb = y + b * T * E;
    int64_t bad = dd_embedding_forward(yb, ids, l->param[0].data, n, V, E);
    if (bad >= 0)
      return dd_error(DD_EDATA,
                      "model.layers[%d] (embedding): token id %g (sample %lld of the batch, step %lld) is not an "
                      "integer in [0, %d); raise model.layers.%d.vocab or fix the data",
                      l->index, (double)ids[bad], (long long)(p->sample0 + b), (long long)bad, V, l->index);
    /* padding steps: zero vectors (the recurrent layers ignore them anyway) */
    memset(yb + n * E, 0, sizeof(float) * (size_t)((T - n) * E));
  }
  return DD_OK;
}

static int embedding_backward(dd_layer *l, const dd_pass *p, const float *x, const float *y, const float *dy,
                              float *dx) {
  (void)y;
  const int64_t T = l->in.d[0];
  const int E = (int)l->spec.dim, V = (int)l->spec.vocab;
  for (int b = 0; b < p->B; b++)
    dd_embedding_backward(l->param[0].grad, dy + b * T * E, x + b * T, dd__valid_steps(p, b, T), V, E);
  /* token ids are not differentiable */
  if (dx)
    memset(dx, 0, sizeof(float) * (size_t)(p->B * T));
  return DD_OK;
}

const dd_layer_kind dd__layer_embedding = {
    .name = "embedding",
    .keys = "vocab,dim,init",
    .doc = "token ids [T] -> [T, dim]; weight [vocab, dim] (nn.Embedding), init normal(0, 1)",
    .setup = embedding_setup,
    .forward = embedding_forward,
    .backward = embedding_backward,
};
