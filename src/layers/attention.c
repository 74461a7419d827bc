/* Multi-head (causal) self-attention on [T, D] with a fused QKV projection, as GPT-2's attention /
 * nn.MultiheadAttention. */
#include <string.h>

#include "ddtrain/layers.h"
#include "ddtrain/tensor.h"
#include "sequtil.h"
#include "window.h"

/* Shape legend: B = batch, T = steps, D = channels, H = heads, E = D / H
 * channels per head, L = valid steps of a sequence (T without lengths).
 *
 * Parameters (PyTorch's layout):
 *   qkv_weight [3D, D], qkv_bias [3D]  q, k, v stacked in that order
 *                        (nn.MultiheadAttention.in_proj_weight / in_proj_bias;
 *                        GPT-2's c_attn, whose Conv1D weight is the transpose)
 *   proj_weight [D, D], proj_bias [D]  (out_proj; GPT-2's c_proj)
 * Head h owns channels [h E, (h + 1) E) of each of q, k and v.
 *
 *   qkv = x Wqkv^T + bqkv;  for each head: S = q k^T / sqrt(E), causal (and
 *   padding) mask, P = softmax(S) over the keys, P' = dropout(P), O = P' v;
 *   y = [O_0 .. O_{H-1}] Wproj^T + bproj
 *
 * Masks: query i sees keys j <= i (causal) and j < L (padding). Steps i >= L
 * of a sequence with lengths are padding: their outputs are zero vectors and
 * they get no gradient (as the recurrent layers), so what they hold never
 * reaches a valid step. Every valid query sees at least key 0, so no row of
 * the softmax is empty.
 *
 * Workspace per sample, kept from forward to backward:
 *   qkv  [T, 3D]     the projection (q, k, v of step t in row t)
 *   att  [T, D]      head outputs side by side (the output projection's input)
 *   P    [H, T, T]   softmax probabilities (rows < L, columns < L used)
 *   Pd   [H, T, T]   after dropout (only with p > 0)
 *   dqkv [T, 3D]     backward: gradient of qkv
 *   datt [T, D]      backward: gradient of att
 * and, fixed, dS [H, T, T]: one sample's score gradients. Every product is a
 * GEMM through the tensor module: the two projections over all B*T rows at
 * once, and per sample one batch of H GEMMs for each of q k^T, P v (forward),
 * dO v^T, P^T dO, dS k, dS^T q (backward). */

typedef struct attn {
  int B, T, D, H, E;
  bool causal, dropout;
  float p, scale;
  const float *Wqkv, *bqkv, *Wproj, *bproj;
  float *dWqkv, *dbqkv, *dWproj, *dbproj;
  float *qkv, *att, *P, *Pd, *dqkv, *datt, *dS;
} attn;

static int64_t per_sample(int64_t T, int64_t D, int64_t H, bool dropout) {
  return 8 * T * D + (dropout ? 2 : 1) * H * T * T;
}

static dd_param *find(dd_layer *l, const char *name) {
  for (int j = 0; j < l->nparam; j++)
    if (strcmp(l->param[j].name, name) == 0)
      return &l->param[j];
  return NULL;
}

static attn layout(dd_layer *l, const dd_pass *p) {
  attn a;
  a.B = p->B;
  a.T = (int)l->in.d[0];
  a.D = (int)l->in.d[1];
  a.H = (int)l->spec.heads;
  a.E = a.D / a.H;
  a.causal = l->spec.causal;
  a.p = (float)l->spec.p;
  a.dropout = p->train && a.p > 0.0f;
  a.scale = 1.0f / sqrtf((float)a.E);
  dd_param *wq = find(l, "qkv_weight"), *bq = find(l, "qkv_bias"), *wp = find(l, "proj_weight"),
           *bp = find(l, "proj_bias");
  a.Wqkv = wq->data;
  a.dWqkv = wq->grad;
  a.Wproj = wp->data;
  a.dWproj = wp->grad;
  a.bqkv = bq ? bq->data : NULL;
  a.dbqkv = bq ? bq->grad : NULL;
  a.bproj = bp ? bp->data : NULL;
  a.dbproj = bp ? bp->grad : NULL;
  /* regions sized for max_batch, laid out for this pass's B */
  const int64_t T = a.T, D = a.D, H = a.H, B = l->max_batch;
  float *w = l->ws;
  a.dS = w;
  w += H * T * T;
  a.qkv = w;
  w += B * 3 * T * D;
  a.att = w;
  w += B * T * D;
  a.P = w;
  w += B * H * T * T;
  a.Pd = l->spec.p > 0.0 ? w : NULL;
  w += l->spec.p > 0.0 ? B * H * T * T : 0;
  a.dqkv = w;
  w += B * 3 * T * D;
  a.datt = w;
  return a;
}

static int attention_setup(dd_layer *l) {
  char s[64];
  if (l->in.ndim != 2)
    return dd__layer_error(l,
                           "needs a sequence [T, D] per sample (steps x channels), got %s; put it after an "
                           "embedding (and positional)",
                           dd_shape_str(l->in, s, sizeof s));
  const int64_t T = l->in.d[0], D = l->in.d[1], H = l->spec.heads;
  if (H <= 0)
    return dd__layer_error(l,
                           "needs 'heads' (number of attention heads, dividing %lld), e.g. {type: attention, "
                           "heads: 4}",
                           (long long)D);
  if (D % H != 0)
    return dd__layer_error(l, "heads = %lld does not divide the %lld channels of its input %s; use a divisor of %lld",
                           (long long)H, (long long)D, dd_shape_str(l->in, s, sizeof s), (long long)D);
  if (!dd__spec_has(&l->spec, "p"))
    l->spec.p = 0.0; /* the shared default (0.5) is dropout's; attention dropout is off unless asked for */
  const int64_t B = l->max_batch;
  if (3 * D * D > 0x7fffffff || B * T * 3 * D > 0x7fffffff || H * T * T > 0x7fffffff)
    return dd__layer_error(l, "%lld steps of %lld channels with batch %d exceed the 2^31 BLAS limit", (long long)T,
                           (long long)D, l->max_batch);
  l->out = l->in;
  /* the two projections and the per-head q k^T and P v (the causal half counted whole, as computed) */
  l->flops = 2.0 * (double)T * (double)D * (double)(3 * D) + 4.0 * (double)T * (double)T * (double)D +
             2.0 * (double)T * (double)D * (double)D;
  const int wi = l->spec.init == DD_INIT_AUTO ? DD_INIT_GPT2 : l->spec.init;
  const int64_t wq[2] = {3 * D, D}, bq[1] = {3 * D}, wp[2] = {D, D}, bp[1] = {D};
  dd_param *w = dd_layer_declare(l, false, "qkv_weight", 2, wq, wi, D, 3 * D);
  if (!w)
    return dd__layer_error(l, "too many tensors");
  w->weight_matrix = true;
  if (l->spec.bias && !dd_layer_declare(l, false, "qkv_bias", 1, bq, DD_INIT_ZERO, D, 3 * D))
    return dd__layer_error(l, "too many tensors");
  if (!(w = dd_layer_declare(l, false, "proj_weight", 2, wp, wi, D, D)))
    return dd__layer_error(l, "too many tensors");
  w->weight_matrix = true;
  if (l->spec.bias && !dd_layer_declare(l, false, "proj_bias", 1, bp, DD_INIT_ZERO, D, D))
    return dd__layer_error(l, "too many tensors");
  l->ws_per_sample = per_sample(T, D, H, l->spec.p > 0.0);
  l->ws_fixed = H * T * T;
  return DD_OK;
}

/* Row i of one head's scores: softmax over its n visible keys, zeros for the
 * masked keys up to L. The row is padded to a whole number of lane blocks
 * (where the row stride T has room) with -inf, which exp turns into 0: the
 * loops then have no scalar tails, and for a finite row the max and the lane
 * sums are those over the n keys alone (a 0 added to a partial sum changes
 * nothing). The masked keys are written 0 after the scaling, so a NaN row
 * (a NaN score) leaves them 0 as well. */
static DD_WIDE void softmax_row(float *row, int n, int L, int T) {
  int nn = (n + DD_LANES - 1) / DD_LANES * DD_LANES;
  nn = nn <= T ? nn : n;
  for (int j = n; j < nn; j++)
    row[j] = -INFINITY;
  const float m = dd__max(row, nn);
  for (int j = 0; j < nn; j++)
    row[j] = dd__exp(row[j] - m);
  const float inv = 1.0f / dd__sum(row, nn);
  for (int j = 0; j < nn; j++)
    row[j] *= inv;
  for (int j = n; j < L; j++)
    row[j] = 0.0f;
}

/* every head's rows of one sample, out of line so that the row loops get
 * 512-bit vectors (DD_WIDE) */
static DD_WIDE __attribute__((noinline)) void softmax_rows(float *P, int H, int L, int T, bool causal) {
  for (int h = 0; h < H; h++)
    for (int i = 0; i < L; i++)
      softmax_row(P + (int64_t)h * T * T + (int64_t)i * T, causal ? i + 1 : L, L, T);
}

static int attention_forward(dd_layer *l, const dd_pass *p, const float *x, float *y) {
  attn a = layout(l, p);
  const int T = a.T, D = a.D, H = a.H, E = a.E, D3 = 3 * a.D;
  const int64_t TT = (int64_t)T * T;
  dd_dense_forward(a.qkv, x, a.Wqkv, a.bqkv, a.B * T, D, D3);
  const float keep_scale = a.dropout ? 1.0f / (1.0f - a.p) : 1.0f;
  for (int b = 0; b < a.B; b++) {
    const int L = (int)dd__valid_steps(p, b, T);
    const float *q = a.qkv + (int64_t)b * T * D3, *k = q + D, *v = q + 2 * D;
    float *P = a.P + b * H * TT, *att = a.att + (int64_t)b * T * D;
    memset(att + (int64_t)L * D, 0, sizeof(float) * (size_t)(T - L) * (size_t)D);
    if (L == 0)
      continue;
    dd_tensor_gemm_batch(false, true, L, L, E, a.scale, q, D3, E, k, D3, E, 0.0f, P, T, TT, H);
    softmax_rows(P, H, L, T, a.causal);
    const float *Puse = P;
    if (a.dropout) {
      /* the dropout layer's scheme: value e of the sample at global position
       * j in step t is dropped iff u(hash(seed, t, j, layer, e)) < p */
      const uint64_t key =
          dd_hash3(p->seed, (uint64_t)p->step, (uint64_t)(p->sample0 + b) ^ ((uint64_t)l->index << 48));
      float *Pd = a.Pd + b * H * TT;
      for (int h = 0; h < H; h++)
        for (int i = 0; i < L; i++) {
          const int64_t r = h * TT + (int64_t)i * T;
          for (int j = 0; j < L; j++) {
            const bool kept = dd_hash_uniform(dd_hash3(key, (uint64_t)(r + j), 0x64726f70 /* "drop" */)) >= a.p;
            Pd[r + j] = kept ? P[r + j] * keep_scale : 0.0f;
          }
        }
      Puse = Pd;
    }
    dd_tensor_gemm_batch(false, false, L, E, L, 1.0f, Puse, T, TT, v, D3, E, 0.0f, att, D, E, H);
  }
  dd_dense_forward(y, a.att, a.Wproj, a.bproj, a.B * T, D, D);
  for (int b = 0; p->lengths && b < a.B; b++) {
    const int64_t L = dd__valid_steps(p, b, T);
    memset(y + ((int64_t)b * T + L) * D, 0, sizeof(float) * (size_t)((T - L) * D));
  }
  return DD_OK;
}

static int attention_backward(dd_layer *l, const dd_pass *p, const float *x, const float *y, const float *dy,
                              float *dx) {
  (void)y;
  attn a = layout(l, p);
  const int T = a.T, D = a.D, H = a.H, E = a.E, D3 = 3 * a.D;
  const int64_t TT = (int64_t)T * T;
  /* output projection; att is zero at padding steps, so only the bias needs the mask */
  dd_dense_backward(a.datt, a.dWproj, NULL, dy, a.att, a.Wproj, a.B * T, D, D);
  for (int b = 0; a.dbproj && b < a.B; b++) {
    const int64_t L = dd__valid_steps(p, b, T);
    for (int64_t i = 0; i < L; i++) {
      const float *row = dy + ((int64_t)b * T + i) * D;
      for (int c = 0; c < D; c++)
        a.dbproj[c] += row[c];
    }
  }
  const float drop_scale = a.dropout ? 1.0f / (1.0f - a.p) : 1.0f;
  for (int b = 0; b < a.B; b++) {
    const int L = (int)dd__valid_steps(p, b, T);
    const float *q = a.qkv + (int64_t)b * T * D3, *k = q + D, *v = q + 2 * D;
    const float *P = a.P + b * H * TT, *Pd = a.dropout ? a.Pd + b * H * TT : NULL;
    const float *dO = a.datt + (int64_t)b * T * D;
    float *dq = a.dqkv + (int64_t)b * T * D3, *dk = dq + D, *dv = dq + 2 * D;
    memset(dq + (int64_t)L * D3, 0, sizeof(float) * (size_t)(T - L) * (size_t)D3);
    if (L == 0)
      continue;
    /* dP' = dO v^T, dv = P'^T dO */
    dd_tensor_gemm_batch(false, true, L, L, E, 1.0f, dO, D, E, v, D3, E, 0.0f, a.dS, T, TT, H);
    dd_tensor_gemm_batch(true, false, L, E, L, 1.0f, Pd ? Pd : P, T, TT, dO, D, E, 0.0f, dv, D3, E, H);
    /* through dropout (a kept entry has Pd != 0 unless P is 0, where dS is 0
     * anyway) and the softmax: dS = P (dP - sum_j P dP) */
    for (int h = 0; h < H; h++)
      for (int i = 0; i < L; i++) {
        const int64_t r = h * TT + (int64_t)i * T;
        const int n = a.causal ? i + 1 : L;
        float *ds = a.dS + r;
        const float *pr = P + r;
        if (Pd)
          for (int j = 0; j < n; j++)
            ds[j] = Pd[r + j] != 0.0f ? ds[j] * drop_scale : 0.0f;
        const float dot = dd__dot(pr, ds, n);
        for (int j = 0; j < n; j++)
          ds[j] = pr[j] * (ds[j] - dot);
        for (int j = n; j < L; j++)
          ds[j] = 0.0f;
      }
    /* S = scale q k^T: dq = scale dS k, dk = scale dS^T q */
    dd_tensor_gemm_batch(false, false, L, E, L, a.scale, a.dS, T, TT, k, D3, E, 0.0f, dq, D3, E, H);
    dd_tensor_gemm_batch(true, false, L, E, L, a.scale, a.dS, T, TT, q, D3, E, 0.0f, dk, D3, E, H);
  }
  dd_dense_backward(dx, a.dWqkv, a.dbqkv, a.dqkv, x, a.Wqkv, a.B * T, D, D3);
  return DD_OK;
}

const dd_layer_kind dd__layer_attention = {
    .name = "attention",
    .keys = "heads,causal,p,bias,init",
    .doc = "multi-head self-attention on [T, D] (causal unless causal: false; p: attention dropout); "
           "qkv_weight [3D, D], qkv_bias [3D], proj_weight [D, D], proj_bias [D]",
    .setup = attention_setup,
    .forward = attention_forward,
    .backward = attention_backward,
};
