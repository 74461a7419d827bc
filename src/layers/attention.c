/* Multi-head (causal) self-attention on [T, D] with a fused QKV projection, as GPT-2's attention /
 * nn.MultiheadAttention. */
#include <string.h>

#include "attnprod.h"
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
 * Workspace per sample, kept from forward to backward (Tp = T rounded up to
 * a whole number of 16-lane blocks, the row stride of the scores):
 *   qkv  [T, 3D]     the projection (q, k, v of step t in row t)
 *   att  [T, D]      head outputs side by side (the output projection's input)
 *   P    [H, T, Tp]  softmax probabilities (rows < L; columns < L, zeros to the block's end)
 *   Pd   [H, T, Tp]  after dropout (only with p > 0)
 *   dqkv [T, 3D]     backward: gradient of qkv
 *   datt [T, D]      backward: gradient of att
 * and, fixed, dS [T, Tp] (one head's score gradients) and [E, Tp] (one
 * head's keys or values, transposed). The two projections are GEMMs over all
 * B*T rows at once through the tensor module; the per-head products are the
 * kernels below, one head at a time (its scores stay in cache from the
 * product through the softmax to the next product). */

typedef struct attn {
  int B, T, D, H, E;
  bool causal, dropout;
  float p, scale;
  const float *Wqkv, *bqkv, *Wproj, *bproj;
  float *dWqkv, *dbqkv, *dWproj, *dbproj;
  int64_t Tp; /* row stride of P, Pd and dS */
  float *qkv, *att, *P, *Pd, *dqkv, *datt, *dS, *packed;
} attn;

static int64_t per_sample(int64_t T, int64_t D, int64_t H, bool dropout) {
  return 8 * T * D + (dropout ? 2 : 1) * H * T * dd__lane_pad(T);
}

static int64_t fixed(int64_t T, int64_t E) {
  return (T + E) * dd__lane_pad(T);
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
  const int64_t T = a.T, D = a.D, H = a.H, B = l->max_batch, Tp = dd__lane_pad(a.T);
  a.Tp = Tp;
  float *w = l->ws;
  a.dS = w;
  w += T * Tp;
  a.packed = w;
  w += a.E * Tp;
  a.qkv = w;
  w += B * 3 * T * D;
  a.att = w;
  w += B * T * D;
  a.P = w;
  w += B * H * T * Tp;
  a.Pd = l->spec.p > 0.0 ? w : NULL;
  w += l->spec.p > 0.0 ? B * H * T * Tp : 0;
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
  if (3 * D * D > 0x7fffffff || B * T * 3 * D > 0x7fffffff)
    return dd__layer_error(l, "%lld steps of %lld channels with batch %d exceed the 2^31 BLAS limit", (long long)T,
                           (long long)D, l->max_batch);
  if (H * T * dd__lane_pad(T) > 0x7fffffff)
    return dd__layer_error(l, "%lld heads of %lld x %lld scores exceed 2^31 values per sample", (long long)H,
                           (long long)T, (long long)T);
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
  l->ws_fixed = fixed(T, D / H);
  return DD_OK;
}

/* Row i of one head's scores: softmax over its n visible keys, zeros for the
 * masked keys up to L. In whole 16-lane blocks (the stride Tp holds them),
 * without a branch on the keys: the last block's masked lanes are set to
 * -inf, which exp turns into 0, so for a finite row the max and the lane
 * sums are those over the n keys alone (a 0 added to a partial sum changes
 * nothing); after the scaling they are set to 0 (a NaN row, from a NaN
 * score, leaves them 0 too), and whole blocks of zeros follow up to L. The
 * rows are short (64 keys in the example), so branches that change from row
 * to row would cost more than the arithmetic. */
static DD_WIDE void softmax_row(float *row, int n, int L) {
  const int nn = (int)dd__lane_pad(n), last = nn - DD_LANES;
  const dd__ivec live = dd__lanes_below(n - last);
  dd__store(row + last, dd__select(live, dd__load(row + last), (dd__vec){0} - INFINITY));
  const float m = dd__max_blocks(row, nn);
  dd__vec sum = {0}; /* the sum as dd__sum's */
  for (int k = 0; k < nn; k += DD_LANES) {
    for (int j = k; j < k + DD_LANES; j++)
      row[j] = dd__exp(row[j] - m);
    sum += dd__load(row + k);
  }
  const float inv = 1.0f / dd__lanes_total(sum, row, 0);
  for (int k = 0; k < nn; k += DD_LANES)
    dd__store(row + k, dd__load(row + k) * inv);
  dd__store(row + last, dd__select(live, dd__load(row + last), (dd__vec){0}));
  for (int k = nn; k < L; k += DD_LANES)
    dd__store(row + k, (dd__vec){0});
}

/* the L rows of one head, out of line so that the row loops get 512-bit
 * vectors (DD_WIDE) */
static DD_WIDE __attribute__((noinline)) void softmax_rows(float *P, int64_t Tp, int L, bool causal) {
  for (int i = 0; i < L; i++)
    softmax_row(P + i * Tp, causal ? i + 1 : L, L);
}

/* Through dropout (a kept entry has Pd != 0 unless P is 0, where dS is 0
 * anyway) and the softmax, row by row: dS = P (dP - sum_j P dP), zero at the
 * masked keys up to L. In whole blocks as the forward: the last block's
 * masked lanes of dP (products with future keys, or stale) are set to 0
 * first, where P is 0, so they add exact zeros to the sum (the order of
 * dd__dot's). */
static DD_WIDE __attribute__((noinline)) void softmax_backward_rows(float *dS, const float *P, const float *Pd,
                                                                    int64_t Tp, int L, bool causal, float drop_scale) {
  for (int i = 0; i < L; i++) {
    const int n = causal ? i + 1 : L, nn = (int)dd__lane_pad(n), last = nn - DD_LANES;
    float *ds = dS + i * Tp;
    const float *pr = P + i * Tp;
    const dd__ivec live = dd__lanes_below(n - last);
    dd__store(ds + last, dd__select(live, dd__load(ds + last), (dd__vec){0}));
    if (Pd) {
      const float *pd = Pd + i * Tp;
      for (int k = 0; k < nn; k += DD_LANES)
        dd__store(ds + k, dd__select(dd__load(pd + k) != 0.0f, dd__load(ds + k) * drop_scale, (dd__vec){0}));
    }
    dd__vec acc = {0};
    for (int k = 0; k < nn; k += DD_LANES)
      acc += dd__load(pr + k) * dd__load(ds + k);
    const float dot = dd__lanes_total(acc, ds, 0);
    for (int k = 0; k < nn; k += DD_LANES)
      dd__store(ds + k, dd__load(pr + k) * (dd__load(ds + k) - dot));
    /* exact zeros at the masked lanes again (P 0 there, but dot may be NaN) */
    dd__store(ds + last, dd__select(live, dd__load(ds + last), (dd__vec){0}));
    for (int k = nn; k < L; k += DD_LANES)
      dd__store(ds + k, (dd__vec){0});
  }
}

static int attention_forward(dd_layer *l, const dd_pass *p, const float *x, float *y) {
  attn a = layout(l, p);
  const int T = a.T, D = a.D, H = a.H, E = a.E, D3 = 3 * a.D;
  const int64_t Tp = a.Tp, HP = H * T * Tp;
  dd_dense_forward(a.qkv, x, a.Wqkv, a.bqkv, a.B * T, D, D3);
  const float keep_scale = a.dropout ? 1.0f / (1.0f - a.p) : 1.0f;
  for (int b = 0; b < a.B; b++) {
    const int L = (int)dd__valid_steps(p, b, T), Lp = (int)dd__lane_pad(L);
    float *att = a.att + (int64_t)b * T * D;
    memset(att + (int64_t)L * D, 0, sizeof(float) * (size_t)(T - L) * (size_t)D);
    if (L == 0)
      continue;
    /* the dropout layer's scheme: value e of the sample at global position
     * j in step t is dropped iff u(hash(seed, t, j, layer, e)) < p, e the
     * index of the probability in [H, T, T] */
    const uint64_t key =
        a.dropout ? dd_hash3(p->seed, (uint64_t)p->step, (uint64_t)(p->sample0 + b) ^ ((uint64_t)l->index << 48)) : 0;
    for (int h = 0; h < H; h++) {
      const float *q = a.qkv + (int64_t)b * T * D3 + h * E, *k = q + D, *v = q + 2 * D;
      float *P = a.P + b * HP + h * T * Tp;
      dd__attn_pack_t(a.packed, k, D3, L, Lp, E);
      dd__attn_dot_rows(P, (int)Tp, q, D3, a.packed, Lp, L, L, E, a.scale, a.causal);
      softmax_rows(P, Tp, L, a.causal);
      const float *Puse = P;
      if (a.dropout) {
        float *Pd = a.Pd + b * HP + h * T * Tp;
        for (int i = 0; i < L; i++) {
          const int64_t r = ((int64_t)h * T + i) * T;
          for (int j = 0; j < L; j++) {
            const bool kept = dd_hash_uniform(dd_hash3(key, (uint64_t)(r + j), 0x64726f70 /* "drop" */)) >= a.p;
            Pd[i * Tp + j] = kept ? P[i * Tp + j] * keep_scale : 0.0f;
          }
          for (int j = L; j < Lp; j++) /* the block's tail, which the backward loads */
            Pd[i * Tp + j] = 0.0f;
        }
        Puse = Pd;
      }
      dd__attn_axpy_rows(att + h * E, D, Puse, Tp, 1, v, D3, L, L, E, 1.0f, a.causal ? DD_ATTN_LOWER : DD_ATTN_ALL);
    }
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
  const int64_t Tp = a.Tp, HP = H * T * Tp;
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
  const int lower = a.causal ? DD_ATTN_LOWER : DD_ATTN_ALL, upper = a.causal ? DD_ATTN_UPPER : DD_ATTN_ALL;
  for (int b = 0; b < a.B; b++) {
    const int L = (int)dd__valid_steps(p, b, T), Lp = (int)dd__lane_pad(L);
    float *dqkv = a.dqkv + (int64_t)b * T * D3;
    memset(dqkv + (int64_t)L * D3, 0, sizeof(float) * (size_t)(T - L) * (size_t)D3);
    if (L == 0)
      continue;
    for (int h = 0; h < H; h++) {
      const float *q = a.qkv + (int64_t)b * T * D3 + h * E, *k = q + D, *v = q + 2 * D;
      const float *P = a.P + b * HP + h * T * Tp, *Pd = a.dropout ? a.Pd + b * HP + h * T * Tp : NULL;
      const float *dO = a.datt + (int64_t)b * T * D + h * E;
      float *dq = dqkv + h * E, *dk = dq + D, *dv = dq + 2 * D;
      /* dP' = dO v^T, dv = P'^T dO */
      dd__attn_pack_t(a.packed, v, D3, L, Lp, E);
      dd__attn_dot_rows(a.dS, (int)Tp, dO, D, a.packed, Lp, L, L, E, 1.0f, a.causal);
      dd__attn_axpy_rows(dv, D3, Pd ? Pd : P, 1, Tp, dO, D, L, L, E, 1.0f, upper);
      softmax_backward_rows(a.dS, P, Pd, Tp, L, a.causal, drop_scale);
      /* S = scale q k^T: dq = scale dS k, dk = scale dS^T q */
      dd__attn_axpy_rows(dq, D3, a.dS, Tp, 1, k, D3, L, L, E, a.scale, lower);
      dd__attn_axpy_rows(dk, D3, a.dS, 1, Tp, q, D3, L, L, E, a.scale, upper);
    }
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
