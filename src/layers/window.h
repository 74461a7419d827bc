/* Internal: geometry of sliding-window layers (conv2d, pooling) over [C, H, W]. */
#ifndef DDTRAIN_LAYERS_WINDOW_H
#define DDTRAIN_LAYERS_WINDOW_H

#include "ddtrain/layers.h"

/* A k x k window moved by `s` over an input padded by `pad` on every side:
 * output Ho x Wo with Ho = (H + 2 pad - k) / s + 1 (floor, as PyTorch). */
typedef struct dd__window {
  int64_t C, H, W;   /* input */
  int64_t k, s, pad; /* kernel, stride, padding */
  int64_t Ho, Wo;    /* output */
} dd__window;

/* Geometry of layer l from its spec (kernel, stride, padding) and input
 * shape; no checks (setup made them). Stride defaults to `stride_default`
 * when the spec does not set it (pools: the kernel). */
dd__window dd__window_of(const dd_layer *l, bool stride_defaults_to_kernel);

/* Setup checks: input [C, H, W], kernel within the padded input, padding
 * at most `max_pad` (< 0: no limit). Errors name the layer and the fix. */
int dd__window_check(const dd_layer *l, const dd__window *g, int64_t max_pad);

/* True when key `name` was written in the layer's config. */
bool dd__spec_has(const dd_layer_spec *s, const char *name);

#endif
