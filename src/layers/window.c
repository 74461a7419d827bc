/* Sliding-window geometry and its setup checks, shared by conv2d and the pools. */
#include "window.h"

bool dd__spec_has(const dd_layer_spec *s, const char *name) {
  int i = dd_layer_key_find(name);
  return i >= 0 && (s->set >> i & 1u);
}

dd__window dd__window_of(const dd_layer *l, bool stride_defaults_to_kernel) {
  dd__window g = {.C = l->in.d[0], .H = l->in.d[1], .W = l->in.d[2], .k = l->spec.kernel, .pad = l->spec.padding};
  g.s = stride_defaults_to_kernel && !dd__spec_has(&l->spec, "stride") ? g.k : l->spec.stride;
  if (l->in.ndim == 3 && g.k > 0 && g.s > 0) {
    g.Ho = (g.H + 2 * g.pad - g.k) / g.s + 1;
    g.Wo = (g.W + 2 * g.pad - g.k) / g.s + 1;
  }
  return g;
}

int dd__window_check(const dd_layer *l, const dd__window *g, int64_t max_pad) {
  char in[64];
  dd_shape_str(l->in, in, sizeof in);
  if (l->in.ndim != 3)
    return dd__layer_error(l,
                           "needs a [C, H, W] input but gets %s; store x as N x C x H x W or declare the image shape, "
                           "e.g. model.input: [1, 28, 28]",
                           in);
  if (g->k <= 0)
    return dd__layer_error(l, "needs 'kernel' (window size), e.g. {type: %s, kernel: 3}", l->kind->name);
  if (g->s <= 0)
    return dd__layer_error(l, "stride must be at least 1");
  if (max_pad >= 0 && g->pad > max_pad)
    return dd__layer_error(l, "padding %lld is more than half the kernel %lld; use padding <= %lld", (long long)g->pad,
                           (long long)g->k, (long long)max_pad);
  if (g->k > g->H + 2 * g->pad || g->k > g->W + 2 * g->pad)
    return dd__layer_error(l,
                           "kernel %lld is larger than the input %s padded by %lld; use kernel <= %lld or more "
                           "padding",
                           (long long)g->k, in, (long long)g->pad,
                           (long long)((g->H < g->W ? g->H : g->W) + 2 * g->pad));
  if (g->C * g->H * g->W > 0x7fffffff)
    return dd__layer_error(l, "input %s exceeds 2^31 values per sample", in);
  return DD_OK;
}
