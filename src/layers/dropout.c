/* Inverted dropout with counter-based masks that do not depend on the rank split.
 *
 * In training, element e of the sample at position j of the global batch of
 * optimizer step t is kept iff u(seed, t, j, layer, e) >= p, with u a
 * stateless hash (dd_hash3): the same sample gets the same mask on any
 * number of ranks and micro-batches, and a resumed run (same step counter)
 * draws the same masks. Kept values are scaled by 1/(1-p); evaluation is the
 * identity. */
#include <string.h>

#include "ddtrain/layers.h"

static int dropout_setup(dd_layer *l) {
  l->out = l->in;
  l->ws_per_sample = l->in_size; /* the mask as 0 or 1/(1-p), for backward */
  return DD_OK;
}

static int dropout_forward(dd_layer *l, const dd_pass *p, const float *x, float *y) {
  const int64_t n = (int64_t)p->B * l->in_size;
  const double prob = l->spec.p;
  if (!p->train || prob <= 0.0) {
    if (y != x)
      memcpy(y, x, sizeof(float) * (size_t)n);
    return DD_OK;
  }
  const float scale = (float)(1.0 / (1.0 - prob));
  const float keep_from = (float)prob; /* uniform in [0, 1) at 24 bits */
  float *mask = l->ws;
  for (int64_t b = 0; b < p->B; b++) {
    const uint64_t j = (uint64_t)(p->sample0 + b);
    const uint64_t key = dd_hash3(p->seed, (uint64_t)p->step, j ^ ((uint64_t)l->index << 48));
    float *m = mask + b * l->in_size;
    for (int64_t e = 0; e < l->in_size; e++)
      m[e] = dd_hash_uniform(dd_hash3(key, (uint64_t)e, 0x64726f70 /* "drop" */)) >= keep_from ? scale : 0.0f;
  }
  for (int64_t i = 0; i < n; i++)
    y[i] = x[i] * mask[i];
  return DD_OK;
}

static int dropout_backward(dd_layer *l, const dd_pass *p, const float *x, const float *y, const float *dy, float *dx) {
  (void)x;
  (void)y;
  if (!dx)
    return DD_OK;
  const int64_t n = (int64_t)p->B * l->in_size;
  if (!p->train || l->spec.p <= 0.0) {
    if (dx != dy)
      memcpy(dx, dy, sizeof(float) * (size_t)n);
    return DD_OK;
  }
  for (int64_t i = 0; i < n; i++)
    dx[i] = dy[i] * l->ws[i];
  return DD_OK;
}

const dd_layer_kind dd__layer_dropout = {
    .name = "dropout",
    .keys = "p",
    .doc = "inverted dropout: zero each value with probability p in training, scale the rest by 1/(1-p)",
    .setup = dropout_setup,
    .forward = dropout_forward,
    .backward = dropout_backward,
};
