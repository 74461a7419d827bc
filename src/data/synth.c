/* `data synth`: learnable synthetic classification and regression sets. */
#include <math.h>
#include <string.h>

#include "ddtrain/data.h"
#include "sequence.h"

#define LATENT 16 /* classes live on a low-dimensional manifold */
#define PROTOS 3  /* clusters per class: not linearly separable */
#define HIDDEN 32 /* regression teacher width */

static int alloc_ds(const dd_synth_spec *s, dd_dataset **out) {
  dd_dataset *ds = dd_alloc(1, sizeof *ds);
  if (!ds)
    return DD_ENOMEM;
  ds->n = s->samples;
  if (s->image.ndim == 3) {
    ds->xshape = s->image;
  } else {
    ds->xshape.ndim = 1;
    ds->xshape.d[0] = s->features;
  }
  ds->xsize = dd_shape_size(ds->xshape);
  ds->x = dd_alloc((size_t)(ds->n * ds->xsize), sizeof(float));
  if (s->regression) {
    ds->ykind = DD_LABELS_FLOAT;
    ds->yshape.ndim = 1;
    ds->yshape.d[0] = s->classes;
    ds->ysize = s->classes;
    ds->yf = dd_alloc((size_t)(ds->n * ds->ysize), sizeof(float));
  } else {
    ds->ykind = DD_LABELS_CLASS;
    ds->ysize = 1;
    ds->nclasses = s->classes;
    ds->yc = dd_alloc((size_t)ds->n, sizeof(int32_t));
  }
  *out = ds;
  if (!ds->x || (!ds->yc && !ds->yf))
    return DD_ENOMEM;
  return DD_OK;
}

/* Classification: class k has PROTOS prototypes in a LATENT-dim space; a
 * sample is a prototype plus Gaussian jitter, lifted to D features by a
 * fixed random projection and tanh, plus feature noise. */
static void synth_classes(const dd_synth_spec *s, dd_dataset *ds, float *proj, float *protos) {
  const int64_t D = ds->xsize, K = s->classes;
  dd_rng r;
  dd_rng_seed(&r, s->seed, 1);
  for (int64_t i = 0; i < D * LATENT; i++)
    proj[i] = (float)dd_rng_normal(&r);
  for (int64_t i = 0; i < K * PROTOS * LATENT; i++)
    protos[i] = (float)(1.6 * dd_rng_normal(&r));
  const float lift = 1.5f / sqrtf((float)LATENT);
  for (int64_t n = 0; n < ds->n; n++) {
    int32_t k = (int32_t)dd_rng_below(&r, (uint64_t)K);
    int64_t m = (int64_t)dd_rng_below(&r, PROTOS);
    float z[LATENT];
    for (int j = 0; j < LATENT; j++)
      z[j] = protos[(k * PROTOS + m) * LATENT + j] + (float)dd_rng_normal(&r);
    float *x = ds->x + n * D;
    for (int64_t d = 0; d < D; d++) {
      float a = 0.0f;
      for (int j = 0; j < LATENT; j++)
        a += proj[d * LATENT + j] * z[j];
      x[d] = tanhf(lift * a) + (float)(s->noise * dd_rng_normal(&r));
    }
    ds->yc[n] = k;
  }
}

/* Images (classification with --image CxHxW): class k has PROTOS
 * prototypes of STROKES line segments each (random endpoints in the middle
 * of the canvas, a random colour per channel). A sample is a prototype drawn
 * with jittered endpoints, shifted by up to H/8 and W/8 pixels, at a random
 * intensity, plus pixel noise of standard deviation noise / 5; values stay
 * in about [0, 1] like imported IDX images. */
#define STROKES 3
static float seg_dist2(float y, float x, const float *e) {
  const float dy = e[2] - e[0], dx = e[3] - e[1], len2 = dy * dy + dx * dx;
  float t = len2 > 0 ? ((y - e[0]) * dy + (x - e[1]) * dx) / len2 : 0.0f;
  t = t < 0 ? 0 : (t > 1 ? 1 : t);
  const float py = e[0] + t * dy - y, px = e[1] + t * dx - x;
  return py * py + px * px;
}

static void synth_images(const dd_synth_spec *s, dd_dataset *ds, float *protos) {
  const int64_t C = s->image.d[0], H = s->image.d[1], W = s->image.d[2], K = s->classes;
  const int64_t per = STROKES * (4 + C); /* floats per prototype: endpoints, colour */
  dd_rng r;
  dd_rng_seed(&r, s->seed, 3);
  for (int64_t p = 0; p < K * PROTOS; p++)
    for (int j = 0; j < STROKES; j++) {
      float *e = protos + p * per + j * (4 + C);
      for (int q = 0; q < 4; q++) /* (y0, x0, y1, x1) in the middle 70% */
        e[q] = (0.15f + 0.7f * dd_rng_uniform(&r)) * (float)((q % 2 ? W : H) - 1);
      for (int64_t c = 0; c < C; c++)
        e[4 + c] = C == 1 ? 1.0f : 0.3f + 0.7f * dd_rng_uniform(&r);
    }
  const float width = fmaxf(0.5f, (float)(H < W ? H : W) / 28.0f); /* stroke sigma, pixels */
  const float jitter = width, inv2w2 = 1.0f / (2.0f * width * width);
  const int64_t shy = H / 8, shx = W / 8;
  for (int64_t n = 0; n < ds->n; n++) {
    const int32_t k = (int32_t)dd_rng_below(&r, (uint64_t)K);
    const float *proto = protos + (k * PROTOS + (int64_t)dd_rng_below(&r, PROTOS)) * per;
    const float dy = (float)((int64_t)dd_rng_below(&r, (uint64_t)(2 * shy + 1)) - shy);
    const float dx = (float)((int64_t)dd_rng_below(&r, (uint64_t)(2 * shx + 1)) - shx);
    const float gain = 0.7f + 0.3f * dd_rng_uniform(&r);
    float seg[STROKES][4];
    for (int j = 0; j < STROKES; j++)
      for (int q = 0; q < 4; q++)
        seg[j][q] = proto[j * (4 + C) + q] + (q % 2 ? dx : dy) + jitter * (float)dd_rng_normal(&r);
    float *x = ds->x + n * ds->xsize;
    for (int64_t i = 0; i < H; i++)
      for (int64_t jx = 0; jx < W; jx++) {
        float ink[STROKES];
        for (int j = 0; j < STROKES; j++) { /* exp(-9/2) ~ 0.01 beyond 3 sigma: skip those */
          const float *e = seg[j], m = 3.0f * width, y = (float)i, xx = (float)jx;
          const bool near = y >= fminf(e[0], e[2]) - m && y <= fmaxf(e[0], e[2]) + m && xx >= fminf(e[1], e[3]) - m &&
                            xx <= fmaxf(e[1], e[3]) + m;
          ink[j] = near ? expf(-seg_dist2(y, xx, e) * inv2w2) : 0.0f;
        }
        for (int64_t c = 0; c < C; c++) {
          float v = 0.0f;
          for (int j = 0; j < STROKES; j++)
            v = fmaxf(v, ink[j] * proto[j * (4 + C) + 4 + c]);
          x[(c * H + i) * W + jx] = gain * v + (float)(0.2 * s->noise * dd_rng_normal(&r));
        }
      }
    ds->yc[n] = k;
  }
}

/* Regression: targets from a random one-hidden-layer tanh teacher. */
static void synth_regression(const dd_synth_spec *s, dd_dataset *ds, float *w1, float *w2) {
  const int64_t D = ds->xsize, K = s->classes;
  dd_rng r;
  dd_rng_seed(&r, s->seed, 2);
  for (int64_t i = 0; i < HIDDEN * D; i++)
    w1[i] = (float)(dd_rng_normal(&r) / sqrt((double)D));
  for (int64_t i = 0; i < K * HIDDEN; i++)
    w2[i] = (float)(dd_rng_normal(&r) / sqrt((double)HIDDEN));
  for (int64_t n = 0; n < ds->n; n++) {
    float *x = ds->x + n * D;
    for (int64_t d = 0; d < D; d++)
      x[d] = (float)dd_rng_normal(&r);
    float h[HIDDEN];
    for (int j = 0; j < HIDDEN; j++) {
      float a = 0.0f;
      for (int64_t d = 0; d < D; d++)
        a += w1[j * D + d] * x[d];
      h[j] = tanhf(2.0f * a);
    }
    for (int64_t k = 0; k < K; k++) {
      float a = 0.0f;
      for (int j = 0; j < HIDDEN; j++)
        a += w2[k * HIDDEN + j] * h[j];
      ds->yf[n * K + k] = a + (float)(s->noise * dd_rng_normal(&r));
    }
  }
}

int dd_data_synth(const dd_synth_spec *s, dd_dataset **out) {
  *out = NULL;
  if (s->samples < 1)
    return dd_error(DD_EINVAL, "--samples must be at least 1, got %lld", (long long)s->samples);
  if (s->image.ndim != 3 && s->seq_len <= 0 && s->features < 1)
    return dd_error(DD_EINVAL, "--features must be at least 1, got %lld", (long long)s->features);
  if (s->classes < (s->regression ? 1 : 2))
    return dd_error(DD_EINVAL, "%s must be at least %d, got %lld", s->regression ? "--outputs" : "--classes",
                    s->regression ? 1 : 2, (long long)s->classes);
  if (s->classes > 100000)
    return dd_error(DD_EINVAL, "--classes %lld is too many (at most 100000)", (long long)s->classes);
  if (!(s->noise >= 0.0))
    return dd_error(DD_EINVAL, "--noise must be >= 0, got %g", s->noise);
  if (s->seq_len > 0 && !s->regression)
    return dd__data_synth_seq(s, out);
  if (s->seq_len > 0)
    return dd_error(DD_EINVAL, "--seq-len makes classification sequences; drop --regression");
  if (s->uint8 && s->image.ndim != 3)
    return dd_error(DD_EINVAL, "--uint8 stores images as bytes; it needs --image CxHxW");
  dd_dataset *ds = NULL;
  int rc = alloc_ds(s, &ds);
  float *a = NULL, *b = NULL;
  if (rc == DD_OK) {
    int64_t D = ds->xsize, K = s->classes;
    a = dd_alloc((size_t)(D * (LATENT > HIDDEN ? LATENT : HIDDEN)), sizeof(float));
    int64_t per = LATENT > HIDDEN ? LATENT : HIDDEN;
    if (s->image.ndim == 3 && STROKES * (4 + s->image.d[0]) > per)
      per = STROKES * (4 + s->image.d[0]);
    b = dd_alloc((size_t)(K * PROTOS * per), sizeof(float));
    rc = a && b ? DD_OK : DD_ENOMEM;
  }
  if (rc == DD_OK) {
    if (s->regression)
      synth_regression(s, ds, a, b);
    else if (s->image.ndim == 3)
      synth_images(s, ds, b);
    else
      synth_classes(s, ds, a, b);
  }
  dd_free(a);
  dd_free(b);
  if (rc == DD_OK && s->uint8) { /* the images are in about [0, 1]: 8 bits of it */
    ds->xu8 = dd_alloc((size_t)(ds->n * ds->xsize), 1);
    rc = ds->xu8 ? DD_OK : DD_ENOMEM;
    for (int64_t i = 0; rc == DD_OK && i < ds->n * ds->xsize; i++) {
      double v = round((double)ds->x[i] * 255.0);
      ds->xu8[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
    }
    ds->xscale = 1.0 / 255.0;
    dd_free(ds->x);
    ds->x = NULL;
  }
  if (rc) {
    dd_data_free(ds);
    return rc;
  }
  *out = ds;
  return DD_OK;
}
