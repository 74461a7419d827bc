/* Pooling over [C, H, W]: max and average over kh x kw windows, global average.
 *
 * As torch.nn.MaxPool2d / AvgPool2d with ceil_mode=False: stride defaults to
 * the kernel, padding is at most half the kernel in each dimension; max
 * pooling pads with -inf and takes the first maximum of a window, average
 * pooling counts the padding (count_include_pad=True, divisor kh*kw). */
#include <float.h>
#include <string.h>

#include "window.h"

static int pool_setup(dd_layer *l) {
  dd__window g = dd__window_of(l, true);
  int rc = dd__window_check(l, &g, true);
  if (rc)
    return rc;
  l->out.ndim = 3;
  l->out.d[0] = g.C;
  l->out.d[1] = g.Ho;
  l->out.d[2] = g.Wo;
  return DD_OK;
}

/* Rows [ih0, ih1) and columns [iw0, iw1) of output (oh, ow)'s window inside the image. */
typedef struct span {
  int64_t ih0, ih1, iw0, iw1;
} span;

static span window_span(const dd__window *g, int64_t oh, int64_t ow) {
  span s = {oh * g->sh - g->ph, oh * g->sh - g->ph + g->kh, ow * g->sw - g->pw, ow * g->sw - g->pw + g->kw};
  s.ih0 = s.ih0 < 0 ? 0 : s.ih0;
  s.iw0 = s.iw0 < 0 ? 0 : s.iw0;
  s.ih1 = s.ih1 > g->H ? g->H : s.ih1;
  s.iw1 = s.iw1 > g->W ? g->W : s.iw1;
  return s;
}

/* ---- max: the argmax of every output (index into the sample's input) is
 * kept in the workspace for backward */

static int maxpool_setup(dd_layer *l) {
  int rc = pool_setup(l);
  l->ws_per_sample = dd_shape_size(l->out); /* int32 argmax per output */
  return rc;
}

static bool is_2x2(const dd__window *g) {
  return g->kh == 2 && g->kw == 2 && g->sh == 2 && g->sw == 2 && g->ph == 0 && g->pw == 0;
}

/* 2 x 2 windows, stride 2, no padding: branch-free (the comparisons of
 * random values defeat branch prediction), first maximum in row-major
 * order as in the general loop. */
static void maxpool_2x2(float *out, int32_t *arg, const float *in, const dd__window *g, int32_t base) {
  const int64_t W = g->W;
  for (int64_t oh = 0; oh < g->Ho; oh++) {
    const float *r0 = in + 2 * oh * W, *r1 = r0 + W;
    float *o = out + oh * g->Wo;
    int32_t *a = arg + oh * g->Wo;
    const int32_t i0 = base + (int32_t)(2 * oh * W);
    for (int64_t ow = 0; ow < g->Wo; ow++) {
      const float v00 = r0[2 * ow], v01 = r0[2 * ow + 1], v10 = r1[2 * ow], v11 = r1[2 * ow + 1];
      /* selects by masks: compilers keep this free of branches */
      const float m0 = v01 > v00 ? v01 : v00, m1 = v11 > v10 ? v11 : v10;
      const int32_t j0 = (int32_t)(2 * ow) + (v01 > v00), j1 = (int32_t)(W + 2 * ow) + (v11 > v10);
      const int32_t down = -(int32_t)(m1 > m0);
      o[ow] = m1 > m0 ? m1 : m0;
      a[ow] = i0 + (j0 ^ ((j0 ^ j1) & down));
    }
  }
}

static int maxpool_forward(dd_layer *l, const dd_pass *p, const float *x, float *y) {
  const dd__window g = dd__window_of(l, true);
  int32_t *arg = (int32_t *)l->ws;
  const int64_t HW = g.H * g.W, n = (int64_t)p->B * g.C;
  for (int64_t bc = 0; bc < n; bc++) {
    const float *in = x + bc * HW;
    float *out = y + bc * g.Ho * g.Wo;
    int32_t *a = arg + bc * g.Ho * g.Wo;
    const int32_t base = (int32_t)((bc % g.C) * HW);
    if (is_2x2(&g)) {
      maxpool_2x2(out, a, in, &g, base);
      continue;
    }
    for (int64_t oh = 0; oh < g.Ho; oh++)
      for (int64_t ow = 0; ow < g.Wo; ow++) {
        const span s = window_span(&g, oh, ow);
        int64_t best = s.ih0 * g.W + s.iw0;
        for (int64_t ih = s.ih0; ih < s.ih1; ih++)
          for (int64_t iw = s.iw0; iw < s.iw1; iw++)
            if (in[ih * g.W + iw] > in[best])
              best = ih * g.W + iw;
        out[oh * g.Wo + ow] = in[best];
        a[oh * g.Wo + ow] = base + (int32_t)best;
      }
  }
  return DD_OK;
}

static int maxpool_backward(dd_layer *l, const dd_pass *p, const float *x, const float *y, const float *dy, float *dx) {
  (void)x;
  (void)y;
  if (!dx)
    return DD_OK;
  const int32_t *arg = (const int32_t *)l->ws;
  const dd__window win = dd__window_of(l, true);
  if (is_2x2(&win) && win.H % 2 == 0 && win.W % 2 == 0) {
    /* the windows tile the input: write every dx once instead of zeroing first */
    const int64_t n = (int64_t)p->B * win.C, HW = win.H * win.W;
    for (int64_t bc = 0; bc < n; bc++) {
      float *d = dx + bc * HW;
      const float *gy = dy + bc * win.Ho * win.Wo;
      const int32_t *a = arg + bc * win.Ho * win.Wo, base = (int32_t)((bc % win.C) * HW);
      for (int64_t oh = 0; oh < win.Ho; oh++)
        for (int64_t ow = 0; ow < win.Wo; ow++) {
          /* zero the window, then store the gradient at its maximum (no branches) */
          float *r0 = d + 2 * oh * win.W + 2 * ow, *r1 = r0 + win.W;
          r0[0] = r0[1] = r1[0] = r1[1] = 0.0f;
          d[a[oh * win.Wo + ow] - base] = gy[oh * win.Wo + ow];
        }
    }
    return DD_OK;
  }
  memset(dx, 0, sizeof(float) * (size_t)((int64_t)p->B * l->in_size));
  for (int64_t b = 0; b < p->B; b++) {
    float *d = dx + b * l->in_size;
    const float *g = dy + b * l->out_size;
    const int32_t *a = arg + b * l->out_size;
    for (int64_t i = 0; i < l->out_size; i++)
      d[a[i]] += g[i];
  }
  return DD_OK;
}

/* ---- average */

static int avgpool_forward(dd_layer *l, const dd_pass *p, const float *x, float *y) {
  const dd__window g = dd__window_of(l, true);
  const int64_t HW = g.H * g.W, n = (int64_t)p->B * g.C;
  const float inv = 1.0f / (float)(g.kh * g.kw);
  for (int64_t bc = 0; bc < n; bc++) {
    const float *in = x + bc * HW;
    float *out = y + bc * g.Ho * g.Wo;
    for (int64_t oh = 0; oh < g.Ho; oh++)
      for (int64_t ow = 0; ow < g.Wo; ow++) {
        const span s = window_span(&g, oh, ow);
        float sum = 0.0f;
        for (int64_t ih = s.ih0; ih < s.ih1; ih++)
          for (int64_t iw = s.iw0; iw < s.iw1; iw++)
            sum += in[ih * g.W + iw];
        out[oh * g.Wo + ow] = sum * inv;
      }
  }
  return DD_OK;
}

static int avgpool_backward(dd_layer *l, const dd_pass *p, const float *x, const float *y, const float *dy, float *dx) {
  (void)x;
  (void)y;
  if (!dx)
    return DD_OK;
  const dd__window g = dd__window_of(l, true);
  const int64_t HW = g.H * g.W, n = (int64_t)p->B * g.C;
  const float inv = 1.0f / (float)(g.kh * g.kw);
  memset(dx, 0, sizeof(float) * (size_t)((int64_t)p->B * l->in_size));
  for (int64_t bc = 0; bc < n; bc++) {
    float *d = dx + bc * HW;
    const float *gy = dy + bc * g.Ho * g.Wo;
    for (int64_t oh = 0; oh < g.Ho; oh++)
      for (int64_t ow = 0; ow < g.Wo; ow++) {
        const span s = window_span(&g, oh, ow);
        const float v = gy[oh * g.Wo + ow] * inv;
        for (int64_t ih = s.ih0; ih < s.ih1; ih++)
          for (int64_t iw = s.iw0; iw < s.iw1; iw++)
            d[ih * g.W + iw] += v;
      }
  }
  return DD_OK;
}

/* ---- global average: [C, H, W] -> [C] */

static int gap_setup(dd_layer *l) {
  if (l->in.ndim != 3) {
    char in[64];
    return dd__layer_error(l, "needs a [C, H, W] input but gets %s; use it after conv2d or pooling layers",
                           dd_shape_str(l->in, in, sizeof in));
  }
  l->out.ndim = 1;
  l->out.d[0] = l->in.d[0];
  return DD_OK;
}

static int gap_forward(dd_layer *l, const dd_pass *p, const float *x, float *y) {
  const int64_t n = (int64_t)p->B * l->out_size, HW = l->in_size / l->out_size;
  for (int64_t i = 0; i < n; i++) {
    double s = 0.0;
    for (int64_t j = 0; j < HW; j++)
      s += x[i * HW + j];
    y[i] = (float)(s / (double)HW);
  }
  return DD_OK;
}

static int gap_backward(dd_layer *l, const dd_pass *p, const float *x, const float *y, const float *dy, float *dx) {
  (void)x;
  (void)y;
  if (!dx)
    return DD_OK;
  const int64_t n = (int64_t)p->B * l->out_size, HW = l->in_size / l->out_size;
  const float inv = 1.0f / (float)HW;
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < HW; j++)
      dx[i * HW + j] = dy[i] * inv;
  return DD_OK;
}

const dd_layer_kind dd__layer_maxpool2d = {
    .name = "maxpool2d",
    .keys = "kernel,stride,padding",
    .doc = "max over kh x kw windows of [C,H,W]; stride defaults to kernel; kernel/stride/padding: n or [h, w]",
    .setup = maxpool_setup,
    .forward = maxpool_forward,
    .backward = maxpool_backward,
};

const dd_layer_kind dd__layer_avgpool2d = {
    .name = "avgpool2d",
    .keys = "kernel,stride,padding",
    .doc = "mean over kh x kw windows of [C,H,W] (padding counted); stride defaults to kernel; kernel/stride/padding: "
           "n or [h, w]",
    .setup = pool_setup,
    .forward = avgpool_forward,
    .backward = avgpool_backward,
};

const dd_layer_kind dd__layer_global_avgpool = {
    .name = "global_avgpool",
    .keys = "",
    .doc = "mean over H x W: [C,H,W] -> [C]",
    .setup = gap_setup,
    .forward = gap_forward,
    .backward = gap_backward,
};
