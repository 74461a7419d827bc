/* Elementwise activations (ReLU, tanh, sigmoid) and flatten. */
#include <math.h>
#include <string.h>

#include "ddtrain/layers.h"

/* NaN stays NaN (as in PyTorch): a NaN weight must not vanish into zeros and survive training */
void dd_relu_forward(float *y, const float *x, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    y[i] = x[i] > 0.0f || x[i] != x[i] ? x[i] : 0.0f;
}

void dd_relu_backward(float *dx, const float *y, const float *dy, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    dx[i] = y[i] > 0.0f ? dy[i] : y[i] != y[i] ? y[i] : 0.0f;
}

void dd_tanh_forward(float *y, const float *x, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    y[i] = tanhf(x[i]);
}

void dd_tanh_backward(float *dx, const float *y, const float *dy, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    dx[i] = dy[i] * (1.0f - y[i] * y[i]);
}

void dd_sigmoid_forward(float *y, const float *x, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    /* split by sign so exp() never overflows */
    if (x[i] >= 0.0f) {
      y[i] = 1.0f / (1.0f + expf(-x[i]));
    } else {
      float e = expf(x[i]);
      y[i] = e / (1.0f + e);
    }
  }
}

void dd_sigmoid_backward(float *dx, const float *y, const float *dy, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    dx[i] = dy[i] * y[i] * (1.0f - y[i]);
}

static int same_shape_setup(dd_layer *l) {
  l->out = l->in;
  return DD_OK;
}

#define ACTIVATION(kname, fwd, bwd, text)                                                                              \
  static int kname##_forward(dd_layer *l, const dd_pass *p, const float *x, float *y) {                                \
    fwd(y, x, (int64_t)p->B * l->in_size);                                                                             \
    return DD_OK;                                                                                                      \
  }                                                                                                                    \
  static int kname##_backward(dd_layer *l, const dd_pass *p, const float *x, const float *y, const float *dy,          \
                              float *dx) {                                                                             \
    (void)x;                                                                                                           \
    if (dx)                                                                                                            \
      bwd(dx, y, dy, (int64_t)p->B * l->in_size);                                                                      \
    return DD_OK;                                                                                                      \
  }                                                                                                                    \
  const dd_layer_kind dd__layer_##kname = {                                                                            \
      .name = #kname,                                                                                                  \
      .keys = "",                                                                                                      \
      .doc = text,                                                                                                     \
      .setup = same_shape_setup,                                                                                       \
      .forward = kname##_forward,                                                                                      \
      .backward = kname##_backward,                                                                                    \
  };

ACTIVATION(relu, dd_relu_forward, dd_relu_backward, "max(x, 0)")
ACTIVATION(tanh, dd_tanh_forward, dd_tanh_backward, "tanh(x)")
ACTIVATION(sigmoid, dd_sigmoid_forward, dd_sigmoid_backward, "1 / (1 + exp(-x))")

static int flatten_setup(dd_layer *l) {
  l->out.ndim = 1;
  l->out.d[0] = l->in_size;
  return DD_OK;
}

static int flatten_forward(dd_layer *l, const dd_pass *p, const float *x, float *y) {
  if (y != x)
    memcpy(y, x, sizeof(float) * (size_t)((int64_t)p->B * l->in_size));
  return DD_OK;
}

static int flatten_backward(dd_layer *l, const dd_pass *p, const float *x, const float *y, const float *dy, float *dx) {
  (void)x;
  (void)y;
  if (dx && dx != dy)
    memcpy(dx, dy, sizeof(float) * (size_t)((int64_t)p->B * l->in_size));
  return DD_OK;
}

const dd_layer_kind dd__layer_flatten = {
    .name = "flatten",
    .keys = "",
    .doc = "reshape [C, H, W] (or any shape) to [C*H*W]",
    .setup = flatten_setup,
    .forward = flatten_forward,
    .backward = flatten_backward,
};
