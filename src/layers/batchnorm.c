/* Batch normalization over the GLOBAL batch: per channel of [C, H, W] or per feature of [D].
 *
 * Shape legend: C = channels (or features), S = H*W values per channel and
 * sample (1 for [D]), N = values per channel in the global (micro-)batch.
 * Train: y = gamma (x - mean) / sqrt(var + eps) + beta with mean and biased
 * var over N; each rank sums x and x^2 (double) over its samples and one
 * allreduce (dd_pass.allreduce) makes the sums global, so N ranks normalise
 * exactly as one rank would. Backward allreduces sum(dy) and sum(dy xhat)
 * the same way. Running stats follow PyTorch (momentum m: r = (1 - m) r + m
 * batch_stat; running_var holds the UNBIASED variance) and are computed from
 * the same global sums on every rank, so replicas stay identical. Eval uses
 * the running stats. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "ddtrain/layers.h"

typedef struct bn {
  int64_t C, S;
  float *mean, *rstd; /* [C] statistics of the last training forward */
  double *sums;       /* [1 + 2C]: N, then two per-channel sums */
} bn;

static bn bn_of(const dd_layer *l) {
  bn b = {.C = l->in.d[0], .S = l->in.ndim == 3 ? l->in.d[1] * l->in.d[2] : 1};
  b.mean = l->ws;
  b.rstd = l->ws + b.C;
  uintptr_t a = (uintptr_t)(l->ws + 2 * b.C);
  b.sums = (double *)((a + 7) & ~(uintptr_t)7);
  return b;
}

static int bn_setup(dd_layer *l) {
  if (l->in.ndim != 1 && l->in.ndim != 3) {
    char in[64];
    return dd__layer_error(l,
                           "normalises [D] features or [C, H, W] images but gets %s; for sequences use layernorm "
                           "or flatten first",
                           dd_shape_str(l->in, in, sizeof in));
  }
  l->out = l->in;
  const int64_t C = l->in.d[0], dims[1] = {C};
  if (!dd_layer_declare(l, false, "weight", 1, dims, DD_INIT_ONE, C, C) ||
      !dd_layer_declare(l, false, "bias", 1, dims, DD_INIT_ZERO, C, C) ||
      !dd_layer_declare(l, true, "running_mean", 1, dims, DD_INIT_ZERO, C, C) ||
      !dd_layer_declare(l, true, "running_var", 1, dims, DD_INIT_ONE, C, C))
    return dd__layer_error(l, "too many tensors");
  l->ws_fixed = 2 * C + 2 * (1 + 2 * C) + 2; /* floats, then doubles (aligned) */
  return DD_OK;
}

/* Per-channel sums over the pass's samples: s[c] += sum f, q[c] += sum g. */
static void channel_sums(const bn *b, int B, const float *u, const float *v, const float *mean, const float *rstd,
                         double *s, double *q) {
  memset(s, 0, sizeof(double) * (size_t)b->C);
  memset(q, 0, sizeof(double) * (size_t)b->C);
  for (int64_t n = 0; n < B; n++)
    for (int64_t c = 0; c < b->C; c++) {
      const float *pu = u + (n * b->C + c) * b->S;
      double su = 0.0, sq = 0.0;
      if (v) { /* backward: sum dy, sum dy * xhat */
        const float *pv = v + (n * b->C + c) * b->S;
        for (int64_t i = 0; i < b->S; i++) {
          su += pu[i];
          sq += (double)pu[i] * (double)((pv[i] - mean[c]) * rstd[c]);
        }
      } else { /* forward: sum x, sum x^2 */
        for (int64_t i = 0; i < b->S; i++) {
          su += pu[i];
          sq += (double)pu[i] * pu[i];
        }
      }
      s[c] += su;
      q[c] += sq;
    }
}

static void normalise(const bn *b, int B, float *y, const float *x, const float *mean, const float *rstd,
                      const float *gamma, const float *beta) {
  for (int64_t n = 0; n < B; n++)
    for (int64_t c = 0; c < b->C; c++) {
      const float *px = x + (n * b->C + c) * b->S;
      float *py = y + (n * b->C + c) * b->S;
      const float sc = gamma[c] * rstd[c], sh = beta[c] - mean[c] * sc;
      for (int64_t i = 0; i < b->S; i++)
        py[i] = px[i] * sc + sh;
    }
}

/* Eval statistics: the running mean and 1/sqrt(running_var + eps) into mean/rstd. */
static void running_stats(const dd_layer *l, const bn *b) {
  for (int64_t c = 0; c < b->C; c++) {
    b->mean[c] = l->buf[0].data[c];
    b->rstd[c] = (float)(1.0 / sqrt((double)l->buf[1].data[c] + l->spec.eps));
  }
}

static int bn_forward(dd_layer *l, const dd_pass *p, const float *x, float *y) {
  const bn b = bn_of(l);
  const float *gamma = l->param[0].data, *beta = l->param[1].data;
  if (!p->train) {
    running_stats(l, &b);
    normalise(&b, p->B, y, x, b.mean, b.rstd, gamma, beta);
    return DD_OK;
  }
  double *s = b.sums + 1, *q = b.sums + 1 + b.C;
  channel_sums(&b, p->B, x, NULL, NULL, NULL, s, q);
  b.sums[0] = (double)p->B * (double)b.S;
  if (p->allreduce) {
    int rc = p->allreduce(p->allreduce_ctx, b.sums, (int)(1 + 2 * b.C));
    if (rc)
      return rc;
  }
  const double N = b.sums[0];
  if (N <= 0) /* an empty micro-batch on every rank: nothing to normalise */
    return DD_OK;
  const double m = l->spec.momentum;
  float *rm = l->buf[0].data, *rv = l->buf[1].data;
  for (int64_t c = 0; c < b.C; c++) {
    const double mean = s[c] / N, var = fmax(q[c] / N - mean * mean, 0.0);
    b.mean[c] = (float)mean;
    b.rstd[c] = (float)(1.0 / sqrt(var + l->spec.eps));
    rm[c] = (float)((1.0 - m) * rm[c] + m * mean);
    if (N > 1) /* the unbiased variance is undefined for one value */
      rv[c] = (float)((1.0 - m) * rv[c] + m * var * N / (N - 1));
  }
  normalise(&b, p->B, y, x, b.mean, b.rstd, gamma, beta);
  return DD_OK;
}

static int bn_backward(dd_layer *l, const dd_pass *p, const float *x, const float *y, const float *dy, float *dx) {
  (void)y;
  const bn b = bn_of(l);
  const float *gamma = l->param[0].data;
  float *dgamma = l->param[0].grad, *dbeta = l->param[1].grad;
  if (!p->train)
    running_stats(l, &b);
  else if (b.sums[0] <= 0)
    return DD_OK; /* forward saw no values on any rank */
  double *s = b.sums + 1, *q = b.sums + 1 + b.C;
  channel_sums(&b, p->B, dy, x, b.mean, b.rstd, s, q);
  for (int64_t c = 0; c < b.C; c++) { /* this rank's share; the trainer sums the ranks */
    dbeta[c] += (float)s[c];
    dgamma[c] += (float)q[c];
  }
  if (!dx)
    return DD_OK;
  if (!p->train) { /* the statistics are constants */
    for (int64_t n = 0; n < p->B; n++)
      for (int64_t c = 0; c < b.C; c++) {
        const float sc = gamma[c] * b.rstd[c];
        const float *g = dy + (n * b.C + c) * b.S;
        float *d = dx + (n * b.C + c) * b.S;
        for (int64_t i = 0; i < b.S; i++)
          d[i] = g[i] * sc;
      }
    return DD_OK;
  }
  /* dx = gamma rstd (dy - mean(dy) - xhat mean(dy xhat)), means over the global batch */
  if (p->allreduce) {
    int rc = p->allreduce(p->allreduce_ctx, s, (int)(2 * b.C));
    if (rc)
      return rc;
  }
  const double N = b.sums[0];
  for (int64_t n = 0; n < p->B; n++)
    for (int64_t c = 0; c < b.C; c++) {
      const float sc = gamma[c] * b.rstd[c], mdy = (float)(s[c] / N), mdyx = (float)(q[c] / N);
      const float mu = b.mean[c], r = b.rstd[c];
      const float *g = dy + (n * b.C + c) * b.S, *px = x + (n * b.C + c) * b.S;
      float *d = dx + (n * b.C + c) * b.S;
      for (int64_t i = 0; i < b.S; i++)
        d[i] = sc * (g[i] - mdy - (px[i] - mu) * r * mdyx);
    }
  return DD_OK;
}

const dd_layer_kind dd__layer_batchnorm = {
    .name = "batchnorm",
    .keys = "eps,momentum",
    .doc = "batch normalization per channel of [C,H,W] or feature of [D], statistics over the global batch",
    .setup = bn_setup,
    .forward = bn_forward,
    .backward = bn_backward,
};
