/* Layer normalisation over the last dimension of each sample ([D], or every step of [T, D]), as torch.nn.LayerNorm(D).
 */
#include <math.h>

#include "ddtrain/layers.h"
#include "sequtil.h"

DD_WIDE void dd_layernorm_forward(float *y, float *mean, float *rstd, const float *x, const float *w, const float *b,
                                  int64_t R, int D, float eps) {
  for (int64_t r = 0; r < R; r++) {
    const float *xr = x + r * D;
    float *yr = y + r * D;
    /* two passes: the mean first, so the variance does not cancel */
    const float m = dd__sum(xr, D) / (float)D;
    const float v = dd__sum_sqdev(xr, m, D) / (float)D;
    const float s = 1.0f / sqrtf(v + eps);
    for (int i = 0; i < D; i++)
      yr[i] = (xr[i] - m) * s * w[i] + b[i];
    mean[r] = m;
    rstd[r] = s;
  }
}

DD_WIDE void dd_layernorm_backward(float *dx, float *dw, float *db, const float *dy, const float *x, const float *mean,
                                   const float *rstd, const float *w, int64_t R, int D) {
  for (int64_t r = 0; r < R; r++) {
    const float *xr = x + r * D, *dyr = dy + r * D;
    const float m = mean[r], s = rstd[r];
    /* dx = s (dn - mean(dn) - xhat mean(dn xhat)), dn = dy w */
    for (int i = 0; i < D; i++) {
      dw[i] += dyr[i] * ((xr[i] - m) * s);
      db[i] += dyr[i];
    }
    if (!dx)
      continue;
    dd__vec a = {0}, c = {0};
    int i = 0;
    for (; i + DD_LANES <= D; i += DD_LANES) {
      const dd__vec xh = (dd__load(xr + i) - m) * s, dn = dd__load(dyr + i) * dd__load(w + i);
      a += dn;
      c += dn * xh;
    }
    float ta[DD_LANES], tc[DD_LANES];
    for (int j = 0; i + j < D; j++) {
      const float xh = (xr[i + j] - m) * s;
      ta[j] = dyr[i + j] * w[i + j];
      tc[j] = ta[j] * xh;
    }
    const float mdn = dd__lanes_total(a, ta, D - i) / (float)D, mdnx = dd__lanes_total(c, tc, D - i) / (float)D;
    float *dxr = dx + r * D;
    for (i = 0; i < D; i++) {
      const float xh = (xr[i] - m) * s;
      dxr[i] = s * (dyr[i] * w[i] - mdn - xh * mdnx);
    }
  }
}

static int layernorm_setup(dd_layer *l) {
  const int64_t D = l->in.d[l->in.ndim - 1];
  if (D > 0x7fffffff)
    return dd__layer_error(l, "last dimension %lld is too large", (long long)D);
  l->out = l->in;
  int64_t d[1] = {D};
  if (!dd_layer_declare(l, false, "weight", 1, d, DD_INIT_ONE, D, D) ||
      !dd_layer_declare(l, false, "bias", 1, d, DD_INIT_ZERO, D, D))
    return dd__layer_error(l, "too many tensors");
  l->ws_per_sample = 2 * (l->in_size / D); /* mean and rstd of every row */
  return DD_OK;
}

static DD_WIDE int layernorm_forward(dd_layer *l, const dd_pass *p, const float *x, float *y) {
  const int D = (int)l->in.d[l->in.ndim - 1];
  const int64_t R = (int64_t)p->B * (l->in_size / D);
  dd_layernorm_forward(y, l->ws, l->ws + R, x, l->param[0].data, l->param[1].data, R, D, (float)l->spec.eps);
  return DD_OK;
}

static DD_WIDE int layernorm_backward(dd_layer *l, const dd_pass *p, const float *x, const float *y, const float *dy,
                                      float *dx) {
  (void)y;
  const int D = (int)l->in.d[l->in.ndim - 1];
  const int64_t R = (int64_t)p->B * (l->in_size / D);
  dd_layernorm_backward(dx, l->param[0].grad, l->param[1].grad, dy, x, l->ws, l->ws + R, l->param[0].data, R, D);
  return DD_OK;
}

const dd_layer_kind dd__layer_layernorm = {
    .name = "layernorm",
    .keys = "eps",
    .doc = "normalise the last dimension (per step of [T, D]); weight, bias [D] (nn.LayerNorm)",
    .setup = layernorm_setup,
    .forward = layernorm_forward,
    .backward = layernorm_backward,
};
