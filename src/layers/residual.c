/* Residual blocks: y = x + f(x). The config's {type: residual, layers:
 * [...]} becomes, in the flat layer list, `residual` (the block's start: its
 * input passes on unchanged), the inner layers f, and `residual_end` (adds
 * the start's input to f's output). Backward: the end hands dy to f and
 * keeps a copy; the start adds that copy to the gradient f returns, so the
 * block's input gets dy (1 + df/dx): a tensor with two consumers sums their
 * gradients. The model wires l->peer and l->skip (model.c). No copies on
 * the main path: the start's output is its input's buffer, and both ends'
 * backward work in the gradient's buffer (the end's copy for the start is
 * the one copy a block makes). */
#include <string.h>

#include "ddtrain/layers.h"

static int begin_setup(dd_layer *l) {
  l->out = l->in;
  return DD_OK;
}

static int begin_forward(dd_layer *l, const dd_pass *p, const float *x, float *y) {
  if (y != x)
    memcpy(y, x, sizeof(float) * (size_t)p->B * (size_t)l->in_size);
  return DD_OK;
}

static int begin_backward(dd_layer *l, const dd_pass *p, const float *x, const float *y, const float *dy, float *dx) {
  (void)x;
  (void)y;
  if (!dx)
    return DD_OK;
  const float *skip_dy = l->peer->ws; /* the end's copy of the block's output gradient */
  const int64_t n = (int64_t)p->B * l->in_size;
  for (int64_t i = 0; i < n; i++)
    dx[i] = dy[i] + skip_dy[i];
  return DD_OK;
}

static int end_setup(dd_layer *l) {
  l->out = l->in;
  l->ws_per_sample = l->in_size; /* dy, kept for the block's start */
  return DD_OK;
}

static int end_forward(dd_layer *l, const dd_pass *p, const float *x, float *y) {
  const int64_t n = (int64_t)p->B * l->in_size;
  for (int64_t i = 0; i < n; i++)
    y[i] = x[i] + l->skip[i];
  return DD_OK;
}

static int end_backward(dd_layer *l, const dd_pass *p, const float *x, const float *y, const float *dy, float *dx) {
  (void)x;
  (void)y;
  const size_t bytes = sizeof(float) * (size_t)p->B * (size_t)l->in_size;
  memcpy(l->ws, dy, bytes);
  if (dx && dx != dy)
    memcpy(dx, dy, bytes);
  return DD_OK;
}

const dd_layer_kind dd__layer_residual = {
    .name = "residual",
    .keys = "layers",
    .doc = "residual block {type: residual, layers: [...]}: y = x + layers(x); the layers must keep the shape",
    .setup = begin_setup,
    .forward = begin_forward,
    .backward = begin_backward,
    .output_is_input = true,
    .backward_in_place = true,
};

const dd_layer_kind dd__layer_residual_end = {
    .name = "residual_end",
    .keys = "",
    .doc = "(the end of a residual block, added by the config: not written by hand)",
    .setup = end_setup,
    .forward = end_forward,
    .backward = end_backward,
    .backward_in_place = true,
};
