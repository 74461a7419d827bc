/* Recurrent layers: Elman RNN (tanh), LSTM and GRU with full backprop through time, in PyTorch's layout. */
#include <string.h>

#include "ddtrain/layers.h"
#include "ddtrain/tensor.h"
#include "sequtil.h"

/* Shape legend: B = batch, T = steps, D = input features, H = hidden size,
 * G = gates (rnn 1; lstm 4: i, f, g, o; gru 3: r, z, n), GH = G * H.
 *
 * Parameters exactly as torch.nn.RNN / LSTM / GRU with one unidirectional
 * layer: weight_ih [GH, D], weight_hh [GH, H], bias_ih [GH], bias_hh [GH],
 * gate blocks stacked in the order above.
 *   rnn:  h' = tanh(W_ih x + b_ih + W_hh h + b_hh)
 *   lstm: i, f, g, o = sig, sig, tanh, sig(W_ih x + b_ih + W_hh h + b_hh)
 *         c' = f c + i g;  h' = o tanh(c')
 *   gru:  r, z = sig(W_i{r,z} x + b_i{r,z} + W_h{r,z} h + b_h{r,z})
 *         n = tanh(W_in x + b_in + r (W_hn h + b_hn));  h' = (1 - z) n + z h
 * Initial states are zero.
 *
 * Workspace, time-major so that one step of the whole batch is a contiguous
 * [B, .] matrix and all steps together one [T*B, .] matrix:
 *   xt    [T, B, D]    the input, transposed from [B, T, D] (dx in backward)
 *   gates [T, B, GH]   input projection, then the gate activations;
 *                      backward: gradients of the gate pre-activations
 *   hs    [T+1, B, H]  hidden states, hs[0] = 0 (hs[t] = h_{t-1} of step t)
 *   cs    [T+1, B, H]  lstm: cell states
 *   tc    [T, B, H]    lstm: tanh(c_t); gru: W_hn h_{t-1} + b_hn
 *   aux   [T, B, GH]   gru: W_hh h_{t-1}, then the recurrent-side gradients
 *                      (they differ from the input side in the n block)
 *   dh    [B, H]       backward: d L / d h carried to the previous step
 *   dc    [B, H]       backward (lstm): d L / d c carried likewise
 * and, fixed, bias [GH] = b_ih + b_hh (gru: b_hn stays apart).
 * So the input projection of all steps is one GEMM, each step's recurrent
 * projection one GEMM for all gates, and backward has one GEMM per step
 * (d h_{t-1}) plus one each for dW_ih, dW_hh and dx over all steps. */

enum { CELL_RNN, CELL_LSTM, CELL_GRU };

typedef struct rec {
  int cell, B, T, D, H, G, GH;
  bool sequences;
  float *xt, *gates, *hs, *cs, *tc, *aux, *dh, *dc, *bias;
} rec;

static int cell_of(const dd_layer *l) {
  const char *n = l->kind->name;
  return strcmp(n, "lstm") == 0 ? CELL_LSTM : (strcmp(n, "gru") == 0 ? CELL_GRU : CELL_RNN);
}

static int gates_of(int cell) {
  return cell == CELL_LSTM ? 4 : (cell == CELL_GRU ? 3 : 1);
}

/* Floats per sample of each region, in layout order. */
static void region_sizes(int cell, int64_t T, int64_t D, int64_t H, int64_t sz[8]) {
  const int64_t GH = gates_of(cell) * H;
  sz[0] = T * D;                               /* xt */
  sz[1] = T * GH;                              /* gates */
  sz[2] = (T + 1) * H;                         /* hs */
  sz[3] = cell == CELL_LSTM ? (T + 1) * H : 0; /* cs */
  sz[4] = cell != CELL_RNN ? T * H : 0;        /* tc */
  sz[5] = cell == CELL_GRU ? T * GH : 0;       /* aux */
  sz[6] = H;                                   /* dh */
  sz[7] = cell == CELL_LSTM ? H : 0;           /* dc */
}

static void layout(dd_layer *l, int B, rec *r) {
  r->cell = cell_of(l);
  r->B = B;
  r->T = (int)l->in.d[0];
  r->D = l->in.ndim == 2 ? (int)l->in.d[1] : 1;
  r->H = (int)l->spec.hidden;
  r->G = gates_of(r->cell);
  r->GH = r->G * r->H;
  r->sequences = l->spec.sequences;
  int64_t sz[8];
  region_sizes(r->cell, r->T, r->D, r->H, sz);
  float **dst[8] = {&r->xt, &r->gates, &r->hs, &r->cs, &r->tc, &r->aux, &r->dh, &r->dc};
  r->bias = l->ws;
  float *p = l->ws + r->GH;
  for (int i = 0; i < 8; i++) {
    *dst[i] = sz[i] ? p : NULL;
    p += (int64_t)B * sz[i];
  }
}

static int rec_setup(dd_layer *l) {
  const int cell = cell_of(l);
  const int64_t H = l->spec.hidden;
  if (H <= 0)
    return dd__layer_error(l, "needs 'hidden' (state size), e.g. {type: %s, hidden: 128}", l->kind->name);
  if (l->in.ndim != 1 && l->in.ndim != 2) {
    char s[64];
    return dd__layer_error(l,
                           "needs a sequence [T, D] per sample (steps x features), got %s; put an embedding before it "
                           "for token ids",
                           dd_shape_str(l->in, s, sizeof s));
  }
  const int64_t T = l->in.d[0], D = l->in.ndim == 2 ? l->in.d[1] : 1, GH = gates_of(cell) * H;
  if (GH * (D > H ? D : H) > 0x7fffffff || T * l->max_batch * (GH > D ? GH : D) > 0x7fffffff)
    return dd__layer_error(l, "hidden %lld, %lld steps of %lld features and batch %d exceed the 2^31 BLAS limit",
                           (long long)H, (long long)T, (long long)D, l->max_batch);
  if (l->spec.sequences) {
    l->out.ndim = 2;
    l->out.d[0] = T;
    l->out.d[1] = H;
  } else {
    l->out.ndim = 1;
    l->out.d[0] = H;
  }
  /* PyTorch: every tensor uniform(-1/sqrt(H), 1/sqrt(H)); `init` overrides the weights' */
  const int wi = l->spec.init == DD_INIT_AUTO ? DD_INIT_UNIFORM_FANIN : l->spec.init;
  const int64_t wih[2] = {GH, D}, whh[2] = {GH, H}, b[1] = {GH};
  l->flops = 2.0 * (double)GH * (double)(D + H) * (double)T;
  if (!dd_layer_declare(l, false, "weight_ih", 2, wih, wi, wi == DD_INIT_UNIFORM_FANIN ? H : D, GH) ||
      !dd_layer_declare(l, false, "weight_hh", 2, whh, wi, H, GH) ||
      !dd_layer_declare(l, false, "bias_ih", 1, b, DD_INIT_UNIFORM_FANIN, H, GH) ||
      !dd_layer_declare(l, false, "bias_hh", 1, b, DD_INIT_UNIFORM_FANIN, H, GH))
    return dd__layer_error(l, "too many tensors");
  l->param[0].weight_matrix = l->param[1].weight_matrix = true;
  int64_t sz[8];
  region_sizes(cell, T, D, H, sz);
  l->ws_per_sample = 0;
  for (int i = 0; i < 8; i++)
    l->ws_per_sample += sz[i];
  l->ws_fixed = GH;
  return DD_OK;
}

/* ---- cells: one row (one sample, one step) of H units ------------------- */

static void rnn_fwd(float *restrict h, const float *restrict g, const float *restrict bias, int H) {
  for (int j = 0; j < H; j++)
    h[j] = dd__tanh(g[j] + bias[j]);
}

/* dh in: d L / d h_t; out: the part of d L / d h_{t-1} not through W_hh (none) */
static void rnn_bwd(float *restrict dg, float *restrict dh, const float *restrict dy, const float *restrict h, int H) {
  for (int j = 0; j < H; j++) {
    const float d = dh[j] + (dy ? dy[j] : 0.0f);
    dg[j] = d * (1.0f - h[j] * h[j]);
    dh[j] = 0.0f;
  }
}

static void lstm_fwd(float *restrict gi, float *restrict gf, float *restrict gg, float *restrict go, float *restrict c,
                     float *restrict tc, float *restrict h, const float *restrict cp, const float *restrict bias,
                     int H) {
  for (int j = 0; j < H; j++) {
    const float i = dd__sigmoid(gi[j] + bias[j]);
    const float f = dd__sigmoid(gf[j] + bias[H + j]);
    const float g = dd__tanh(gg[j] + bias[2 * H + j]);
    const float o = dd__sigmoid(go[j] + bias[3 * H + j]);
    const float cv = f * cp[j] + i * g;
    const float t = dd__tanh(cv);
    gi[j] = i;
    gf[j] = f;
    gg[j] = g;
    go[j] = o;
    c[j] = cv;
    tc[j] = t;
    h[j] = o * t;
  }
}

static void lstm_bwd(float *restrict gi, float *restrict gf, float *restrict gg, float *restrict go, float *restrict dh,
                     float *restrict dc, const float *restrict dy, const float *restrict tc, const float *restrict cp,
                     int H) {
  for (int j = 0; j < H; j++) {
    const float d = dh[j] + (dy ? dy[j] : 0.0f);
    const float i = gi[j], f = gf[j], g = gg[j], o = go[j], t = tc[j];
    const float dcv = dc[j] + d * o * (1.0f - t * t);
    gi[j] = dcv * g * i * (1.0f - i);
    gf[j] = dcv * cp[j] * f * (1.0f - f);
    gg[j] = dcv * i * (1.0f - g * g);
    go[j] = d * t * o * (1.0f - o);
    dc[j] = dcv * f;
    dh[j] = 0.0f;
  }
}

/* wh: W_hh h_{t-1} [3H] (no bias); hn out: W_hn h_{t-1} + b_hn */
static void gru_fwd(float *restrict gr, float *restrict gz, float *restrict gn, float *restrict hn, float *restrict h,
                    const float *restrict wh, const float *restrict hp, const float *restrict bias,
                    const float *restrict bhn, int H) {
  for (int j = 0; j < H; j++) {
    const float r = dd__sigmoid(gr[j] + bias[j] + wh[j]);
    const float z = dd__sigmoid(gz[j] + bias[H + j] + wh[H + j]);
    const float a = wh[2 * H + j] + bhn[j];
    const float n = dd__tanh(gn[j] + bias[2 * H + j] + r * a);
    gr[j] = r;
    gz[j] = z;
    gn[j] = n;
    hn[j] = a;
    h[j] = (1.0f - z) * n + z * hp[j];
  }
}

/* input side -> gr, gz, gn (in place of r, z, n); recurrent side -> ar, az, an */
static void gru_bwd(float *restrict gr, float *restrict gz, float *restrict gn, float *restrict ar, float *restrict az,
                    float *restrict an, float *restrict dh, const float *restrict dy, const float *restrict hn,
                    const float *restrict hp, int H) {
  for (int j = 0; j < H; j++) {
    const float d = dh[j] + (dy ? dy[j] : 0.0f);
    const float r = gr[j], z = gz[j], n = gn[j];
    const float dn = d * (1.0f - z) * (1.0f - n * n);
    const float dr = dn * hn[j] * r * (1.0f - r);
    const float dz = d * (hp[j] - n) * z * (1.0f - z);
    gr[j] = ar[j] = dr;
    gz[j] = az[j] = dz;
    gn[j] = dn;
    an[j] = dn * r;
    dh[j] = d * z;
  }
}

/* ---- forward / backward ------------------------------------------------- */

static int rec_forward(dd_layer *l, const dd_pass *p, const float *x, float *y) {
  if (p->B <= 0)
    return DD_OK;
  rec r;
  layout(l, p->B, &r);
  const int B = r.B, T = r.T, D = r.D, H = r.H, GH = r.GH;
  const float *Wih = l->param[0].data, *Whh = l->param[1].data, *bih = l->param[2].data, *bhh = l->param[3].data;
  for (int k = 0; k < GH; k++)
    r.bias[k] = bih[k] + (r.cell != CELL_GRU || k < 2 * H ? bhh[k] : 0.0f);
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++)
      memcpy(r.xt + ((int64_t)t * B + b) * D, x + ((int64_t)b * T + t) * D, sizeof(float) * (size_t)D);
  dd_tensor_gemm(false, true, T * B, GH, D, 1.0f, r.xt, D, Wih, D, 0.0f, r.gates, GH);
  memset(r.hs, 0, sizeof(float) * (size_t)B * (size_t)H);
  if (r.cs)
    memset(r.cs, 0, sizeof(float) * (size_t)B * (size_t)H);
  for (int t = 0; t < T; t++) {
    float *g = r.gates + (int64_t)t * B * GH;
    const float *hp = r.hs + (int64_t)t * B * H;
    float *h = r.hs + (int64_t)(t + 1) * B * H;
    float *rec_t = r.aux ? r.aux + (int64_t)t * B * GH : NULL;
    if (t > 0) /* h_{-1} = 0: no recurrent term at the first step */
      dd_tensor_gemm(false, true, B, GH, H, 1.0f, hp, H, Whh, H, r.cell == CELL_GRU ? 0.0f : 1.0f,
                     r.cell == CELL_GRU ? rec_t : g, GH);
    else if (rec_t)
      memset(rec_t, 0, sizeof(float) * (size_t)B * (size_t)GH);
    for (int b = 0; b < B; b++) {
      const int len = (int)dd__valid_steps(p, b, T);
      float *gb = g + (int64_t)b * GH, *hb = h + (int64_t)b * H;
      const float *hpb = hp + (int64_t)b * H;
      float *cb = r.cs ? r.cs + ((int64_t)(t + 1) * B + b) * H : NULL;
      float *tcb = r.tc ? r.tc + ((int64_t)t * B + b) * H : NULL;
      if (t >= len) { /* padding: the state stays */
        memcpy(hb, hpb, sizeof(float) * (size_t)H);
        if (cb)
          memcpy(cb, cb - (int64_t)B * H, sizeof(float) * (size_t)H);
      } else if (r.cell == CELL_LSTM) {
        lstm_fwd(gb, gb + H, gb + 2 * H, gb + 3 * H, cb, tcb, hb, cb - (int64_t)B * H, r.bias, H);
      } else if (r.cell == CELL_GRU) {
        gru_fwd(gb, gb + H, gb + 2 * H, tcb, hb, rec_t + (int64_t)b * GH, hpb, r.bias, bhh + 2 * H, H);
      } else {
        rnn_fwd(hb, gb, r.bias, H);
      }
      if (r.sequences) {
        float *yb = y + ((int64_t)b * T + t) * H;
        if (t < len)
          memcpy(yb, hb, sizeof(float) * (size_t)H);
        else
          memset(yb, 0, sizeof(float) * (size_t)H);
      }
    }
  }
  if (!r.sequences) /* the state after the last valid step (carried through padding) */
    memcpy(y, r.hs + (int64_t)T * B * H, sizeof(float) * (size_t)B * (size_t)H);
  return DD_OK;
}

/* col[k] += sum over rows of A[rows, K] */
static void add_colsum(float *col, const float *A, int64_t rows, int K) {
  for (int64_t i = 0; i < rows; i++) {
    const float *a = A + i * K;
    for (int k = 0; k < K; k++)
      col[k] += a[k];
  }
}

static int rec_backward(dd_layer *l, const dd_pass *p, const float *x, const float *y, const float *dy, float *dx) {
  (void)x;
  (void)y;
  if (p->B <= 0)
    return DD_OK;
  rec r;
  layout(l, p->B, &r);
  const int B = r.B, T = r.T, D = r.D, H = r.H, GH = r.GH;
  const float *Wih = l->param[0].data, *Whh = l->param[1].data;
  float *dWih = l->param[0].grad, *dWhh = l->param[1].grad, *dbih = l->param[2].grad, *dbhh = l->param[3].grad;
  /* gradients of the recurrent-side pre-activations: the gate gradients
   * themselves except for the GRU's n block */
  float *drec = r.cell == CELL_GRU ? r.aux : r.gates;
  memset(r.dh, 0, sizeof(float) * (size_t)B * (size_t)H);
  if (r.dc)
    memset(r.dc, 0, sizeof(float) * (size_t)B * (size_t)H);
  for (int t = T - 1; t >= 0; t--) {
    float *g = r.gates + (int64_t)t * B * GH;
    const float *hp = r.hs + (int64_t)t * B * H, *h = hp + (int64_t)B * H;
    for (int b = 0; b < B; b++) {
      const int len = (int)dd__valid_steps(p, b, T);
      float *gb = g + (int64_t)b * GH, *dhb = r.dh + (int64_t)b * H;
      const float *dyb = NULL;
      if (r.sequences && t < len)
        dyb = dy + ((int64_t)b * T + t) * H;
      else if (!r.sequences && t == T - 1)
        dyb = dy + (int64_t)b * H;
      if (t >= len) { /* padding: no gate gradients; d h (and d c) pass through */
        if (dyb)
          for (int j = 0; j < H; j++)
            dhb[j] += dyb[j];
        memset(gb, 0, sizeof(float) * (size_t)GH);
        if (r.aux)
          memset(r.aux + ((int64_t)t * B + b) * GH, 0, sizeof(float) * (size_t)GH);
        continue;
      }
      if (r.cell == CELL_LSTM) {
        lstm_bwd(gb, gb + H, gb + 2 * H, gb + 3 * H, dhb, r.dc + (int64_t)b * H, dyb, r.tc + ((int64_t)t * B + b) * H,
                 r.cs + ((int64_t)t * B + b) * H, H);
      } else if (r.cell == CELL_GRU) {
        float *ab = r.aux + ((int64_t)t * B + b) * GH;
        gru_bwd(gb, gb + H, gb + 2 * H, ab, ab + H, ab + 2 * H, dhb, dyb, r.tc + ((int64_t)t * B + b) * H,
                hp + (int64_t)b * H, H);
      } else {
        rnn_bwd(gb, dhb, dyb, h + (int64_t)b * H, H);
      }
    }
    if (t > 0) /* d h_{t-1} += d pre_t W_hh */
      dd_tensor_gemm(false, false, B, H, GH, 1.0f, drec + (int64_t)t * B * GH, GH, Whh, H, 1.0f, r.dh, H);
  }
  const int TB = T * B;
  dd_tensor_gemm(true, false, GH, D, TB, 1.0f, r.gates, GH, r.xt, D, 1.0f, dWih, D);
  if (T > 1) /* step 0 saw h_{-1} = 0 */
    dd_tensor_gemm(true, false, GH, H, TB - B, 1.0f, drec + (int64_t)B * GH, GH, r.hs + (int64_t)B * H, H, 1.0f, dWhh,
                   H);
  add_colsum(dbih, r.gates, TB, GH);
  add_colsum(dbhh, drec, TB, GH);
  if (dx) {
    dd_tensor_gemm(false, false, TB, D, GH, 1.0f, r.gates, GH, Wih, D, 0.0f, r.xt, D);
    for (int b = 0; b < B; b++)
      for (int t = 0; t < T; t++)
        memcpy(dx + ((int64_t)b * T + t) * D, r.xt + ((int64_t)t * B + b) * D, sizeof(float) * (size_t)D);
  }
  return DD_OK;
}

void dd_fast_tanh(float *y, const float *x, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    y[i] = dd__tanh(x[i]);
}

void dd_fast_sigmoid(float *y, const float *x, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    y[i] = dd__sigmoid(x[i]);
}

#define RECURRENT(kname, text)                                                                                         \
  const dd_layer_kind dd__layer_##kname = {                                                                            \
      .name = #kname,                                                                                                  \
      .keys = "hidden,sequences,init",                                                                                 \
      .doc = text,                                                                                                     \
      .setup = rec_setup,                                                                                              \
      .forward = rec_forward,                                                                                          \
      .backward = rec_backward,                                                                                        \
  };

RECURRENT(rnn, "Elman RNN, tanh: [T, D] -> [T, hidden] (sequences: true) or the last valid step [hidden]")
RECURRENT(lstm, "LSTM, gates i f g o as nn.LSTM: [T, D] -> [T, hidden] (sequences: true) or [hidden]")
RECURRENT(gru, "GRU, gates r z n as nn.GRU: [T, D] -> [T, hidden] (sequences: true) or [hidden]")
