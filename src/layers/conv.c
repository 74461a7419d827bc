/* 2-D convolution as im2col + sgemm; weight [O, C, kh, kw] as torch.nn.Conv2d.
 *
 * Shape legend: B = samples, C = input channels, O = output channels (filters),
 * H x W input, Ho x Wo output, kh x kw kernel, KK = C*kh*kw (one patch),
 * P = Ho*Wo.
 * Samples are processed in chunks of G (1 unless P is tiny): the patches of
 * a chunk form one matrix col[KK, G*P], so each GEMM is G*P wide. Forward
 * keeps every chunk's col for backward while all of them fit in KEEP_BYTES
 * (measured 5-10% faster on the reference CNN than building them twice);
 * beyond that backward builds each chunk's col again, so the workspace does
 * not grow with KK*P per sample for large images. */
#include <string.h>

#include "ddtrain/tensor.h"
#include "window.h"

#define KEEP_BYTES (64 << 20)

typedef struct conv {
  dd__window g;
  int64_t O, KK, P; /* filters, patch length, output pixels */
  int64_t G;        /* samples per GEMM */
  bool keep;        /* forward's patches kept for backward */
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
  c.KK = c.g.C * c.g.kh * c.g.kw;
  c.P = c.g.Ho * c.g.Wo;
  c.G = chunk_samples(c.P, c.KK, l->max_batch);
  c.keep = c.KK * c.P * l->max_batch * 4 <= KEEP_BYTES;
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

/* Outputs o in [lo, hi) along one axis whose input o*s - pad + kk lies in [0, n). */
static void valid_range(int64_t outs, int64_t n, int64_t s, int64_t pad, int64_t kk, int64_t *lo, int64_t *hi) {
  const int64_t a = pad - kk, b = n - 1 + pad - kk;
  *lo = a > 0 ? (a + s - 1) / s : 0;
  *hi = b < 0 ? 0 : b / s + 1;
  *hi = *hi > outs ? outs : *hi;
  *lo = *lo > *hi ? *hi : *lo;
}

/* col[KK, g*P] from g samples x[g, C, H, W]: row (c, ki, kj), column
 * (sample, oh, ow) holds x[c, oh*sh - ph + ki, ow*sw - pw + kj] or 0. */
static void im2col(float *col, const float *x, int64_t nsamples, const conv *c) {
  const dd__window *w = &c->g;
  const int64_t N = nsamples * c->P, HW = w->H * w->W, Wo = w->Wo, sh = w->sh, s = w->sw;
  for (int64_t b = 0; b < nsamples; b++)
    for (int64_t ch = 0; ch < w->C; ch++) {
      const float *src = x + (b * w->C + ch) * HW;
      for (int64_t ki = 0; ki < w->kh; ki++) {
        int64_t h0, h1;
        valid_range(w->Ho, w->H, sh, w->ph, ki, &h0, &h1);
        for (int64_t kj = 0; kj < w->kw; kj++) {
          int64_t w0, w1;
          valid_range(Wo, w->W, s, w->pw, kj, &w0, &w1);
          float *dst = col + ((ch * w->kh + ki) * w->kw + kj) * N + b * c->P;
          if (h0 > 0) /* rows in the padding (tested: memset calls of 0 bytes cost) */
            memset(dst, 0, sizeof(float) * (size_t)(h0 * Wo));
          if (h1 < w->Ho)
            memset(dst + h1 * Wo, 0, sizeof(float) * (size_t)((w->Ho - h1) * Wo));
          if (s == 1 && w0 == 0 && w1 == Wo) { /* the common case, kept lean */
            const float *in = src + (h0 * sh - w->ph + ki) * w->W + kj - w->pw;
            for (int64_t oh = h0; oh < h1; oh++, in += sh * w->W)
              copy_row(dst + oh * Wo, in, Wo);
            continue;
          }
          for (int64_t oh = h0; oh < h1; oh++) {
            /* input row of this output row, at the first valid column */
            const float *in = src + (oh * sh - w->ph + ki) * w->W + (w0 * s - w->pw + kj);
            float *d = dst + oh * Wo;
            if (s == 1) {
              copy_row(d + w0, in, w1 - w0);
            } else {
              for (int64_t ow = w0; ow < w1; ow++)
                d[ow] = in[(ow - w0) * s];
            }
            for (int64_t ow = 0; ow < w0; ow++)
              d[ow] = 0.0f;
            for (int64_t ow = w1; ow < Wo; ow++)
              d[ow] = 0.0f;
          }
        }
      }
    }
}

/* dx[g, C, H, W] = sum of the patch gradients dcol[KK, g*P] (the adjoint of im2col). */
static void col2im(float *dx, const float *dcol, int64_t nsamples, const conv *c) {
  const dd__window *w = &c->g;
  const int64_t N = nsamples * c->P, HW = w->H * w->W, Wo = w->Wo, sh = w->sh, s = w->sw;
  memset(dx, 0, sizeof(float) * (size_t)(nsamples * w->C * HW));
  for (int64_t b = 0; b < nsamples; b++)
    for (int64_t ch = 0; ch < w->C; ch++) {
      float *dst = dx + (b * w->C + ch) * HW;
      for (int64_t ki = 0; ki < w->kh; ki++) {
        int64_t h0, h1;
        valid_range(w->Ho, w->H, sh, w->ph, ki, &h0, &h1);
        for (int64_t kj = 0; kj < w->kw; kj++) {
          int64_t w0, w1;
          valid_range(Wo, w->W, s, w->pw, kj, &w0, &w1);
          const float *src = dcol + ((ch * w->kh + ki) * w->kw + kj) * N + b * c->P;
          if (s == 1 && w0 == 0 && w1 == Wo) {
            float *out = dst + (h0 * sh - w->ph + ki) * w->W + kj - w->pw;
            for (int64_t oh = h0; oh < h1; oh++, out += sh * w->W)
              add_row(out, src + oh * Wo, Wo);
            continue;
          }
          for (int64_t oh = h0; oh < h1; oh++) {
            float *out = dst + (oh * sh - w->ph + ki) * w->W + (w0 * s - w->pw + kj);
            const float *g = src + oh * Wo + w0;
            if (s == 1) {
              add_row(out, g, w1 - w0);
            } else {
              for (int64_t ow = 0; ow < w1 - w0; ow++)
                out[ow * s] += g[ow];
            }
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
  int rc = dd__window_check(l, &g, false);
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
  int64_t wd[4] = {c.O, g.C, g.kh, g.kw};
  l->flops = 2.0 * (double)c.O * (double)c.KK * (double)g.Ho * (double)g.Wo;
  dd_param *w = dd_layer_declare(l, false, "weight", 4, wd, l->spec.init, c.KK, c.O * g.kh * g.kw);
  if (!w)
    return dd__layer_error(l, "too many tensors");
  w->weight_matrix = true;
  if (l->spec.bias) {
    int64_t bd[1] = {c.O};
    if (!dd_layer_declare(l, false, "bias", 1, bd, DD_INIT_ZERO, c.KK, c.O * g.kh * g.kw))
      return dd__layer_error(l, "too many tensors");
  }
  /* one chunk of patches, of patch gradients, and of output (gradient) in
   * [O, G*P] order */
  l->ws_fixed = 2 * c.KK * c.G * c.P + c.O * c.G * c.P;
  l->ws_per_sample = c.keep ? c.KK * c.P : 0;
  return DD_OK;
}

static int conv_forward(dd_layer *l, const dd_pass *p, const float *x, float *y) {
  const conv c = conv_of(l);
  const float *W = l->param[0].data, *bias = l->nparam > 1 ? l->param[1].data : NULL;
  float *tmp = l->ws + 2 * c.KK * c.G * c.P;
  for (int64_t b0 = 0; b0 < p->B; b0 += c.G) {
    const int64_t g = p->B - b0 < c.G ? p->B - b0 : c.G, N = g * c.P;
    float *col = c.keep ? l->ws + l->ws_fixed + b0 * c.KK * c.P : l->ws;
    im2col(col, x + b0 * l->in_size, g, &c);
    if (g == 1) { /* straight into y, on top of the bias (beta = 1: no extra pass) */
      float *out = y + b0 * l->out_size;
      for (int64_t o = 0; o < c.O; o++)
        for (int64_t i = 0; i < c.P; i++)
          out[o * c.P + i] = bias ? bias[o] : 0.0f;
      dd_tensor_gemm(false, false, (int)c.O, (int)N, (int)c.KK, 1.0f, W, (int)c.KK, col, (int)N, 1.0f, out, (int)N);
      continue;
    }
    /* several samples: [O, g*P], then to [g, O, P] */
    dd_tensor_gemm(false, false, (int)c.O, (int)N, (int)c.KK, 1.0f, W, (int)c.KK, col, (int)N, 0.0f, tmp, (int)N);
    for (int64_t b = 0; b < g; b++)
      for (int64_t o = 0; o < c.O; o++) {
        float *dst = y + (b0 + b) * l->out_size + o * c.P;
        const float *src = tmp + o * N + b * c.P, add = bias ? bias[o] : 0.0f;
        for (int64_t i = 0; i < c.P; i++)
          dst[i] = src[i] + add;
      }
  }
  return DD_OK;
}

static int conv_backward(dd_layer *l, const dd_pass *p, const float *x, const float *y, const float *dy, float *dx) {
  (void)y;
  const conv c = conv_of(l);
  const float *W = l->param[0].data;
  float *dW = l->param[0].grad, *db = l->nparam > 1 ? l->param[1].grad : NULL;
  float *dcol = l->ws + c.KK * c.G * c.P, *tmp = l->ws + 2 * c.KK * c.G * c.P;
  for (int64_t b0 = 0; b0 < p->B; b0 += c.G) {
    const int64_t g = p->B - b0 < c.G ? p->B - b0 : c.G, N = g * c.P;
    float *col = l->ws;
    if (c.keep)
      col = l->ws + l->ws_fixed + b0 * c.KK * c.P;
    else
      im2col(col, x + b0 * l->in_size, g, &c);
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
    .doc = "2-D convolution [C,H,W] -> [filters,Ho,Wo]; weight [filters, C, kh, kw], bias [filters]; "
           "kernel/stride/padding: n or [h, w]",
    .setup = conv_setup,
    .forward = conv_forward,
    .backward = conv_backward,
};
