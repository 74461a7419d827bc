/* Internal: geometry of sliding-window layers (conv2d, pooling) over [C, H, W]. */
#ifndef DDTRAIN_LAYERS_WINDOW_H
#define DDTRAIN_LAYERS_WINDOW_H

#include "ddtrain/layers.h"

/* A kh x kw window moved by sh rows and sw columns over an input padded by
 * ph rows above and below and pw columns left and right: output Ho x Wo
 * with Ho = (H + 2 ph - kh) / sh + 1, Wo = (W + 2 pw - kw) / sw + 1 (floor,
 * as PyTorch). */
typedef struct dd__window {
  int64_t C, H, W; /* input */
  int64_t kh, kw;  /* kernel */
  int64_t sh, sw;  /* stride */
  int64_t ph, pw;  /* padding */
  int64_t Ho, Wo;  /* output */
} dd__window;

/* Geometry of layer l from its spec (kernel, stride, padding) and input
 * shape; no checks (setup made them). With `stride_defaults_to_kernel`
 * (pools) the stride is the kernel when the spec does not set it. */
dd__window dd__window_of(const dd_layer *l, bool stride_defaults_to_kernel);

/* Setup checks: input [C, H, W], kernel within the padded input, and with
 * `pad_at_most_half` (pools) padding at most half the kernel in each
 * dimension. Errors name the layer and the fix. */
int dd__window_check(const dd_layer *l, const dd__window *g, bool pad_at_most_half);

/* True when key `name` was written in the layer's config. */
bool dd__spec_has(const dd_layer_spec *s, const char *name);

#endif
