/* 2-D convolution as im2col + sgemm; weight [O, C, k, k] as torch.nn.Conv2d.
 *
 * Shape legend: B = samples, C = input channels, O = output channels (filters),
 * H x W input, Ho x Wo output, k = kernel, KK = C*k*k (one patch), P = Ho*Wo.
 * Samples are processed in chunks of G: the patches of a chunk form one
 * matrix col[KK, G*P] so each GEMM is as wide as G*P. The chunk's col is kept
 * in the workspace from forward to backward (no second im2col). */
#include <string.h>

#include "ddtrain/tensor.h"
#include "window.h"

typedef struct conv {
  dd__window g;
  int64_t O, KK, P; /* filters, patch length, output pixels */
  int64_t G;        /* samples per GEMM */
} conv;

/* Samples per chunk: GEMMs at least about `wide` columns, but the chunk's
 * col matrix small enough to stay in the L2 cache while it is used. */
static int64_t chunk_samples(int64_t P, int64_t KK, int max_batch) {
  const int64_t wide = 64, col_bytes = 1 << 20;
  int64_t G = (wide + P - 1) / P;
  while (G > 1 && G * P * KK * 4 > col_bytes)
    G--;
  return G < max_batch ? G : (max_batch > 0 ? max_batch : 1);
}

static conv conv_of(const dd_layer *l) {
  conv c = {.g = dd__window_of(l, false), .O = l->spec.filters};
  c.KK = c.g.C * c.g.k * c.g.k;
  c.P = c.g.Ho * c.g.Wo;
  c.G = chunk_samples(c.P, c.KK, l->max_batch);
  return c;
}

/* d[0..n) = s[0..n) and d[0..n) += s[0..n) for the short rows of im2col
 * and col2im: fixed 8-wide blocks compile to single vector moves, which
 * beats both memcpy calls and the vectoriser's generic loops at n = 8..32. */
static inline void copy_row(float *restrict d, const float *restrict s, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; j++)
      d[i + j] = s[i + j];
  for (; i < n; i++)
    d[i] = s[i];
}

static inline void add_row(float *restrict d, const float *restrict s, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; j++)
      d[i + j] += s[i + j];
  for (; i < n; i++)
    d[i] += s[i];
}

/* col[KK, g*P] from g samples x[g, C, H, W]: row (c, ki, kj), column
 * (sample, oh, ow) holds x[c, oh*s - pad + ki, ow*s - pad + kj] or 0. */
static void im2col(float *col, const float *x, int64_t nsamples, const conv *c) {
  const dd__window *w = &c->g;
  const int64_t N = nsamples * c->P, HW = w->H * w->W;
  for (int64_t ch = 0; ch < w->C; ch++)
    for (int64_t ki = 0; ki < w->k; ki++)
      for (int64_t kj = 0; kj < w->k; kj++) {
        float *row = col + ((ch * w->k + ki) * w->k + kj) * N;
        /* output columns whose input column is inside the image */
        int64_t lo = 0, hi = w->Wo;
        while (lo < w->Wo && lo * w->s - w->pad + kj < 0)
          lo++;
        while (hi > lo && (hi - 1) * w->s - w->pad + kj >= w->W)
          hi--;
        for (int64_t b = 0; b < nsamples; b++) {
          const float *src = x + b * w->C * HW + ch * HW;
          float *dst = row + b * c->P;
          for (int64_t oh = 0; oh < w->Ho; oh++, dst += w->Wo) {
            const int64_t ih = oh * w->s - w->pad + ki;
            if (ih < 0 || ih >= w->H) {
              memset(dst, 0, sizeof(float) * (size_t)w->Wo);
              continue;
            }
            const float *in = src + ih * w->W - w->pad + kj;
            for (int64_t ow = 0; ow < lo; ow++)
              dst[ow] = 0.0f;
            if (w->s == 1) {
              copy_row(dst + lo, in + lo, hi - lo);
            } else {
              for (int64_t ow = lo; ow < hi; ow++)
                dst[ow] = in[ow * w->s];
            }
            for (int64_t ow = hi; ow < w->Wo; ow++)
              dst[ow] = 0.0f;
          }
        }
      }
}

/* dx[g, C, H, W] = sum of the patch gradients dcol[KK, g*P] (the adjoint of im2col). */
static void col2im(float *dx, const float *dcol, int64_t nsamples, const conv *c) {
  const dd__window *w = &c->g;
  const int64_t N = nsamples * c->P, HW = w->H * w->W;
  memset(dx, 0, sizeof(float) * (size_t)(nsamples * w->C * HW));
  for (int64_t ch = 0; ch < w->C; ch++)
    for (int64_t ki = 0; ki < w->k; ki++)
      for (int64_t kj = 0; kj < w->k; kj++) {
        const float *row = dcol + ((ch * w->k + ki) * w->k + kj) * N;
        int64_t lo = 0, hi = w->Wo;
        while (lo < w->Wo && lo * w->s - w->pad + kj < 0)
          lo++;
        while (hi > lo && (hi - 1) * w->s - w->pad + kj >= w->W)
          hi--;
        for (int64_t b = 0; b < nsamples; b++) {
          float *dst = dx + b * w->C * HW + ch * HW;
          const float *src = row + b * c->P;
          for (int64_t oh = 0; oh < w->Ho; oh++, src += w->Wo) {
            const int64_t ih = oh * w->s - w->pad + ki;
            if (ih < 0 || ih >= w->H)
              continue;
            float *out = dst + ih * w->W - w->pad + kj;
            if (w->s == 1) {
              add_row(out + lo, src + lo, hi - lo);
            } else {
              for (int64_t ow = lo; ow < hi; ow++)
                out[ow * w->s] += src[ow];
            }
          }
        }
      }
}

/* sum of x[0..n) in 16 independent partial sums, so it vectorises */
static float sum16(const float *x, int64_t n) {
  float acc[16] = {0};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; j++)
      acc[j] += x[i + j];
  float s = 0.0f;
  for (; i < n; i++)
    s += x[i];
  for (int j = 0; j < 16; j++)
    s += acc[j];
  return s;
}

static int conv_setup(dd_layer *l) {
  if (l->spec.filters <= 0)
    return dd__layer_error(l, "needs 'filters' (output channels), e.g. {type: conv2d, filters: 16, kernel: 5}");
  dd__window g = dd__window_of(l, false);
  int rc = dd__window_check(l, &g, -1);
  if (rc)
    return rc;
  conv c = conv_of(l);
  if (c.O * c.KK > 0x7fffffff || c.KK * c.G * c.P > 0x7fffffff || c.O * c.G * c.P > 0x7fffffff)
    return dd__layer_error(l, "%lld filters of %lld values exceed the 2^31 BLAS limit", (long long)c.O,
                           (long long)c.KK);
  l->out.ndim = 3;
  l->out.d[0] = c.O;
  l->out.d[1] = g.Ho;
  l->out.d[2] = g.Wo;
  int64_t wd[4] = {c.O, g.C, g.k, g.k};
  if (!dd_layer_declare(l, false, "weight", 4, wd, l->spec.init, c.KK, c.O * g.k * g.k))
    return dd__layer_error(l, "too many tensors");
  if (l->spec.bias) {
    int64_t bd[1] = {c.O};
    if (!dd_layer_declare(l, false, "bias", 1, bd, DD_INIT_ZERO, c.KK, c.O * g.k * g.k))
      return dd__layer_error(l, "too many tensors");
  }
  /* per sample: its patches, kept for backward; fixed: one chunk of output
   * (or output gradient) in [O, G*P] order and one chunk of patch gradients */
  l->ws_per_sample = c.KK * c.P;
  l->ws_fixed = c.O * c.G * c.P + c.KK * c.G * c.P;
  return DD_OK;
}

static int conv_forward(dd_layer *l, const dd_pass *p, const float *x, float *y) {
  const conv c = conv_of(l);
  const float *W = l->param[0].data, *bias = l->nparam > 1 ? l->param[1].data : NULL;
  float *tmp = l->ws, *cols = l->ws + l->ws_fixed;
  for (int64_t b0 = 0; b0 < p->B; b0 += c.G) {
    const int64_t g = p->B - b0 < c.G ? p->B - b0 : c.G, N = g * c.P;
    float *col = cols + b0 * c.KK * c.P;
    im2col(col, x + b0 * l->in_size, g, &c);
    /* one sample: straight into y; more: [O, g*P] then to [g, O, P] */
    float *out = g == 1 ? y + b0 * l->out_size : tmp;
    dd_tensor_gemm(false, false, (int)c.O, (int)N, (int)c.KK, 1.0f, W, (int)c.KK, col, (int)N, 0.0f, out, (int)N);
    for (int64_t b = 0; b < g; b++)
      for (int64_t o = 0; o < c.O; o++) {
        float *dst = y + (b0 + b) * l->out_size + o * c.P;
        const float *src = out + o * N + b * c.P;
        const float add = bias ? bias[o] : 0.0f;
        if (g == 1) {
          if (bias)
            for (int64_t i = 0; i < c.P; i++)
              dst[i] += add;
        } else {
          for (int64_t i = 0; i < c.P; i++)
            dst[i] = src[i] + add;
        }
      }
  }
  return DD_OK;
}

static int conv_backward(dd_layer *l, const dd_pass *p, const float *x, const float *y, const float *dy, float *dx) {
  (void)x;
  (void)y;
  const conv c = conv_of(l);
  const float *W = l->param[0].data;
  float *dW = l->param[0].grad, *db = l->nparam > 1 ? l->param[1].grad : NULL;
  float *tmp = l->ws, *dcol = l->ws + c.O * c.G * c.P, *cols = l->ws + l->ws_fixed;
  for (int64_t b0 = 0; b0 < p->B; b0 += c.G) {
    const int64_t g = p->B - b0 < c.G ? p->B - b0 : c.G, N = g * c.P;
    const float *col = cols + b0 * c.KK * c.P;
    /* the chunk's output gradient as [O, g*P] */
    const float *dyc = dy + b0 * l->out_size;
    if (g > 1) {
      for (int64_t b = 0; b < g; b++)
        for (int64_t o = 0; o < c.O; o++)
          memcpy(tmp + o * N + b * c.P, dy + (b0 + b) * l->out_size + o * c.P, sizeof(float) * (size_t)c.P);
      dyc = tmp;
    }
    dd_tensor_gemm(false, true, (int)c.O, (int)c.KK, (int)N, 1.0f, dyc, (int)N, col, (int)N, 1.0f, dW, (int)c.KK);
    if (db)
      for (int64_t o = 0; o < c.O; o++)
        db[o] += sum16(dyc + o * N, N);
    if (dx) {
      dd_tensor_gemm(true, false, (int)c.KK, (int)N, (int)c.O, 1.0f, W, (int)c.KK, dyc, (int)N, 0.0f, dcol, (int)N);
      col2im(dx + b0 * l->in_size, dcol, g, &c);
    }
  }
  return DD_OK;
}

const dd_layer_kind dd__layer_conv2d = {
    .name = "conv2d",
    .keys = "filters,kernel,stride,padding,bias,init",
    .doc = "2-D convolution [C,H,W] -> [filters,Ho,Wo]; weight [filters, C, kernel, kernel], bias [filters]",
    .setup = conv_setup,
    .forward = conv_forward,
    .backward = conv_backward,
};
