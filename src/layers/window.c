/* Sliding-window geometry and its setup checks, shared by conv2d and the pools. */
#include <stdio.h>

#include "window.h"

bool dd__spec_has(const dd_layer_spec *s, const char *name) {
  int i = dd_layer_key_find(name);
  return i >= 0 && (s->set >> i & 1u);
}

dd__window dd__window_of(const dd_layer *l, bool stride_defaults_to_kernel) {
  const dd_layer_spec *s = &l->spec;
  dd__window g = {.C = l->in.d[0],
                  .H = l->in.d[1],
                  .W = l->in.d[2],
                  .kh = s->kernel[0],
                  .kw = s->kernel[1],
                  .sh = s->stride[0],
                  .sw = s->stride[1],
                  .ph = s->padding[0],
                  .pw = s->padding[1]};
  if (stride_defaults_to_kernel && !dd__spec_has(s, "stride")) {
    g.sh = g.kh;
    g.sw = g.kw;
  }
  if (l->in.ndim == 3 && g.kh > 0 && g.kw > 0 && g.sh > 0 && g.sw > 0) {
    g.Ho = (g.H + 2 * g.ph - g.kh) / g.sh + 1;
    g.Wo = (g.W + 2 * g.pw - g.kw) / g.sw + 1;
  }
  return g;
}

/* "3" when both dimensions agree, else "[2, 3]" (as the user can write it) */
static const char *pair_str(int64_t h, int64_t w, char *buf, size_t n) {
  if (h == w)
    snprintf(buf, n, "%lld", (long long)h);
  else
    snprintf(buf, n, "[%lld, %lld]", (long long)h, (long long)w);
  return buf;
}

int dd__window_check(const dd_layer *l, const dd__window *g, bool pad_at_most_half) {
  char in[64], k[48], p[48];
  dd_shape_str(l->in, in, sizeof in);
  if (l->in.ndim != 3)
    return dd__layer_error(l,
                           "needs a [C, H, W] input but gets %s; store x as N x C x H x W or declare the image shape, "
                           "e.g. model.input: [1, 28, 28]",
                           in);
  if (g->kh <= 0 || g->kw <= 0)
    return dd__layer_error(l, "needs 'kernel' (window size), e.g. {type: %s, kernel: 3} or kernel: [1, 3]",
                           l->kind->name);
  if (g->sh <= 0 || g->sw <= 0)
    return dd__layer_error(l, "stride must be at least 1");
  pair_str(g->kh, g->kw, k, sizeof k);
  pair_str(g->ph, g->pw, p, sizeof p);
  const bool square = g->kh == g->kw && g->ph == g->pw;
  /* per dimension: 0 height, 1 width */
  const int64_t kern[2] = {g->kh, g->kw}, pad[2] = {g->ph, g->pw}, size[2] = {g->H, g->W};
  static const char *const dim[2] = {"height", "width"};
  for (int d = 0; pad_at_most_half && d < 2; d++)
    if (pad[d] > kern[d] / 2) {
      if (square)
        return dd__layer_error(l, "padding %s is more than half the kernel %s; use padding <= %lld", p, k,
                               (long long)(kern[d] / 2));
      return dd__layer_error(l, "padding %s is more than half the kernel %s in %s; use a %s padding <= %lld", p, k,
                             dim[d], dim[d], (long long)(kern[d] / 2));
    }
  for (int d = 0; d < 2; d++)
    if (kern[d] > size[d] + 2 * pad[d]) {
      if (square)
        return dd__layer_error(l,
                               "kernel %s is larger than the input %s padded by %s; use kernel <= %lld or more "
                               "padding",
                               k, in, p, (long long)((g->H < g->W ? g->H : g->W) + 2 * g->ph));
      return dd__layer_error(l,
                             "kernel %s is larger than the input %s padded by %s in %s; use a kernel %s <= %lld or "
                             "more padding",
                             k, in, p, dim[d], dim[d], (long long)(size[d] + 2 * pad[d]));
    }
  if (g->C * g->H * g->W > 0x7fffffff)
    return dd__layer_error(l, "input %s exceeds 2^31 values per sample", in);
  return DD_OK;
}
