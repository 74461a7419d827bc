/* Dense (fully connected) layer: y = x W^T + b, W is [out, in] as in PyTorch; per step on [T, D] inputs. */
#include <string.h>

#include "ddtrain/layers.h"
#include "ddtrain/tensor.h"

void dd_dense_forward(float *y, const float *x, const float *W, const float *b, int B, int D, int K) {
  if (b) {
    for (int i = 0; i < B; i++)
      memcpy(y + (int64_t)i * K, b, sizeof(float) * (size_t)K);
  }
  dd_tensor_gemm(false, true, B, K, D, 1.0f, x, D, W, D, b ? 1.0f : 0.0f, y, K);
}

void dd_dense_backward(float *dx, float *dW, float *db, const float *dy, const float *x, const float *W, int B, int D,
                       int K) {
  if (B <= 0) {
    return;
  }
  dd_tensor_gemm(true, false, K, D, B, 1.0f, dy, K, x, D, 1.0f, dW, D);
  if (db) {
    for (int i = 0; i < B; i++) {
      const float *row = dy + (int64_t)i * K;
      for (int k = 0; k < K; k++)
        db[k] += row[k];
    }
  }
  if (dx)
    dd_tensor_gemm(false, false, B, D, K, 1.0f, dy, K, W, D, 0.0f, dx, D);
}

/* Rows per sample: a sequence [T, D] is T rows (one output per step, like
 * torch.nn.Linear on the last dimension); anything else is flattened. */
static int64_t dense_rows(const dd_layer *l) {
  return l->in.ndim == 2 ? l->in.d[0] : 1;
}

/* tie: embedding. The weight is the embedding's table E [vocab, dim]: y = x E^T (+ b), GPT-2's lm_head.
 * The layer owns only its bias; E's gradient gets this layer's dE += dy^T x on top of the embedding's rows,
 * both accumulated into the embedding's view, which the gradient sync reduces with layer l->peer (after
 * its backward, the last to add). */
static int tied_setup(dd_layer *l, int64_t rows, int64_t D) {
  const dd_layer *e = l->peer;
  if (!e)
    return dd__layer_error(l, "tie: embedding needs an embedding layer before it (GPT-2's wte); put {type: embedding, "
                              "vocab: V, dim: D} first or remove tie");
  const int64_t V = e->spec.vocab, E = e->spec.dim;
  if (l->spec.units > 0 && l->spec.units != V)
    return dd__layer_error(l,
                           "units = %lld but the tied embedding (model.layers[%d]) has vocab %lld: a tied output "
                           "gives one logit per token id; set units: %lld or leave units out",
                           (long long)l->spec.units, e->index, (long long)V, (long long)V);
  if (D != E) {
    char s[64];
    return dd__layer_error(l,
                           "its input %s has %lld features per %s, the tied embedding (model.layers[%d]) has dim "
                           "%lld; x E^T needs them equal: end the model at %lld features (e.g. a dense of units: "
                           "%lld before it) or remove tie",
                           dd_shape_str(l->in, s, sizeof s), (long long)D,
                           rows > 1 || l->in.ndim == 2 ? "step" : "sample", e->index, (long long)E, (long long)E,
                           (long long)E);
  }
  if (l->spec.init != DD_INIT_AUTO)
    return dd__layer_error(l, "init does not apply with tie: embedding (the weight is the embedding's); set the "
                              "embedding's init instead");
  l->spec.units = V;
  return DD_OK;
}

static int dense_setup(dd_layer *l) {
  const bool tied = l->spec.tie == DD_TIE_EMBEDDING;
  const int64_t rows = dense_rows(l);
  int64_t D = l->in_size / rows;
  if (tied) {
    int rc = tied_setup(l, rows, D);
    if (rc)
      return rc;
  }
  if (l->spec.units <= 0)
    return dd__layer_error(l, "needs 'units' (number of outputs), e.g. {type: dense, units: 128}");
  int64_t K = l->spec.units;
  if (D > 0x7fffffff || K > 0x7fffffff || rows * l->max_batch > 0x7fffffff)
    return dd__layer_error(l, "%lld x %lld weights exceed the 2^31 BLAS limit", (long long)K, (long long)D);
  if (l->in.ndim == 2) {
    l->out.ndim = 2;
    l->out.d[0] = rows;
    l->out.d[1] = K;
  } else {
    l->out.ndim = 1;
    l->out.d[0] = K;
  }
  int64_t wd[2] = {K, D};
  l->flops = 2.0 * (double)K * (double)D * (double)rows;
  if (!tied) {
    dd_param *w = dd_layer_declare(l, false, "weight", 2, wd, l->spec.init, D, K);
    if (!w)
      return dd__layer_error(l, "too many tensors");
    w->weight_matrix = true;
  }
  if (l->spec.bias) {
    int64_t bd[1] = {K};
    if (!dd_layer_declare(l, false, "bias", 1, bd, DD_INIT_ZERO, D, K))
      return dd__layer_error(l, "too many tensors");
  }
  return DD_OK;
}

/* The weight's view: the layer's own, or the tied embedding's table. */
static const dd_param *dense_weight(const dd_layer *l) {
  return l->spec.tie == DD_TIE_EMBEDDING ? &l->peer->param[0] : &l->param[0];
}

static const dd_param *dense_bias(const dd_layer *l) {
  const int j = l->spec.tie == DD_TIE_EMBEDDING ? 0 : 1;
  return l->nparam > j ? &l->param[j] : NULL;
}

static int dense_forward(dd_layer *l, const dd_pass *p, const float *x, float *y) {
  const int64_t rows = dense_rows(l);
  const dd_param *b = dense_bias(l);
  dd_dense_forward(y, x, dense_weight(l)->data, b ? b->data : NULL, (int)(p->B * rows), (int)(l->in_size / rows),
                   (int)l->spec.units);
  return DD_OK;
}

static int dense_backward(dd_layer *l, const dd_pass *p, const float *x, const float *y, const float *dy, float *dx) {
  (void)y;
  const int64_t rows = dense_rows(l);
  const dd_param *w = dense_weight(l), *b = dense_bias(l);
  /* dW += dy^T x: with a tie this adds to the embedding's gradient, which its backward adds to after */
  dd_dense_backward(dx, w->grad, b ? b->grad : NULL, dy, x, w->data, (int)(p->B * rows), (int)(l->in_size / rows),
                    (int)l->spec.units);
  return DD_OK;
}

const dd_layer_kind dd__layer_dense = {
    .name = "dense",
    .keys = "units,init,bias,tie",
    .doc = "fully connected: y = x W^T + b; W [units, in], b [units]; on [T, D] per step -> [T, units]; tie: "
           "embedding uses the embedding's table as W (GPT-2's lm_head)",
    .setup = dense_setup,
    .forward = dense_forward,
    .backward = dense_backward,
};
