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

static int dense_setup(dd_layer *l) {
  if (l->spec.units <= 0)
    return dd__layer_error(l, "needs 'units' (number of outputs), e.g. {type: dense, units: 128}");
  const int64_t rows = dense_rows(l);
  int64_t D = l->in_size / rows, K = l->spec.units;
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
  dd_param *w = dd_layer_declare(l, false, "weight", 2, wd, l->spec.init, D, K);
  if (!w)
    return dd__layer_error(l, "too many tensors");
  w->weight_matrix = true;
  if (l->spec.bias) {
    int64_t bd[1] = {K};
    if (!dd_layer_declare(l, false, "bias", 1, bd, DD_INIT_ZERO, D, K))
      return dd__layer_error(l, "too many tensors");
  }
  return DD_OK;
}

static int dense_forward(dd_layer *l, const dd_pass *p, const float *x, float *y) {
  const int64_t rows = dense_rows(l);
  dd_dense_forward(y, x, l->param[0].data, l->nparam > 1 ? l->param[1].data : NULL, (int)(p->B * rows),
                   (int)(l->in_size / rows), (int)l->spec.units);
  return DD_OK;
}

static int dense_backward(dd_layer *l, const dd_pass *p, const float *x, const float *y, const float *dy, float *dx) {
  (void)y;
  const int64_t rows = dense_rows(l);
  dd_dense_backward(dx, l->param[0].grad, l->nparam > 1 ? l->param[1].grad : NULL, dy, x, l->param[0].data,
                    (int)(p->B * rows), (int)(l->in_size / rows), (int)l->spec.units);
  return DD_OK;
}

const dd_layer_kind dd__layer_dense = {
    .name = "dense",
    .keys = "units,init,bias",
    .doc = "fully connected: y = x W^T + b; W [units, in], b [units]; on [T, D] per step -> [T, units]",
    .setup = dense_setup,
    .forward = dense_forward,
    .backward = dense_backward,
};
