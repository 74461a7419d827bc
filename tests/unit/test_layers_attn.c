/* Transformer layers: attention, gelu, positional, the transformer block and
 * the output tied to the embedding — finite-difference checks (causal and
 * full, lengths, dropout, no bias, stacks, blocks, ties), PyTorch reference
 * values for layouts, masks and formulas, padding, the dropout mask's
 * independence of the rank split, setup errors, the vectorised exp. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/layers/sequtil.h"
#include "attn_ref.h"
#include "check.h"
#include "ddtrain/config.h"
#include "ddtrain/model.h"
#include "gradcheck.h"
#include "specs.h"

DD_TEST_GLOBALS;

static dd_layer_spec attention(int heads, bool causal) {
  dd_layer_spec s = tu_spec("attention");
  s.heads = heads;
  s.causal = causal;
  return s;
}

static dd_layer_spec with_key(dd_layer_spec s, const char *key) {
  s.set |= (uint64_t)1 << dd_layer_key_find(key);
  return s;
}

static dd_model *build(const dd_layer_spec *s, int n, dd_shape in, int B) {
  dd_model_spec spec = {.input = in, .nlayers = n, .layers = (dd_layer_spec *)s, .loss = DD_LOSS_MSE};
  dd_model *m = NULL;
  if (dd_model_build(&spec, B, 0, &m) != 0)
    DD_FAIL_AT("build: %s", dd_error_message());
  return m;
}

/* the layer's tensor of that name, or a failure naming it */
static const dd_param *tensor(const dd_layer *l, const char *name) {
  for (int j = 0; j < l->nparam; j++)
    if (strcmp(l->param[j].name, name) == 0)
      return &l->param[j];
  DD_FAIL_AT("layer has no parameter %s", name);
  return NULL;
}

static void set_param(dd_layer *l, const char *name, const float *v, int64_t n) {
  const dd_param *t = tensor(l, name);
  if (!t)
    return;
  CHECK_INT(t->size, n);
  memcpy(t->data, v, sizeof(float) * (size_t)n);
}

static const float *grad_of(const dd_layer *l, const char *name) {
  const dd_param *t = tensor(l, name);
  return t ? t->grad : NULL;
}

static const float *param_of(const dd_layer *l, const char *name) {
  const dd_param *t = tensor(l, name);
  return t ? t->data : NULL;
}

/* dd__exp against exp in double: relative error, and the edges */
static void fast_exp_accuracy(void) {
  enum { N = 400001 };
  double worst = 0;
  for (int i = 0; i < N; i++) {
    const float x = -87.0f + 175.0f * (float)i / (float)(N - 1);
    worst = worst_of(worst, fabs((double)dd__exp(x) - exp((double)x)) / exp((double)x));
  }
  if (!(worst <= 2.4e-7)) /* 2 ulp */
    DD_FAIL_AT("fast exp max relative error %.3g > 2.4e-7", worst);
  CHECK(dd__exp(0.0f) == 1.0f);
  CHECK(dd__exp(-100.0f) == 0.0f);
  CHECK(isfinite(dd__exp(1000.0f)) && dd__exp(1000.0f) > 1e38f);
  CHECK(isnan(dd__exp(NAN)));
}

/* The row sums of layernorm and softmax (16 interleaved partial sums):
 * within the bound of recursive summation over n / 16 + 4 terms of the
 * double sum, for lengths around the lane count and the tail; max finds the
 * largest entry wherever it sits; NaN reaches sum and dot. */
/* the max as the softmax takes it: the row padded with -inf to whole blocks */
static float max_padded(const float *x, int n) {
  float p[1008]; /* n <= 1000 */
  for (int i = 0; i < 1008; i++)
    p[i] = i < n ? x[i] : -INFINITY;
  return dd__max_blocks(p, (n + DD_LANES - 1) / DD_LANES * DD_LANES);
}

static void lane_sums(void) {
  const int lens[] = {1, 2, 15, 16, 17, 31, 33, 64, 128, 1000};
  float x[1000] = {0}, y[1000] = {0};
  uint64_t st = 7;
  for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++) {
    const int n = lens[k];
    for (int i = 0; i < n; i++) {
      st = st * 6364136223846793005ULL + 1442695040888963407ULL;
      x[i] = (float)((double)(st >> 40) / (double)(1 << 24) - 0.5) * 10.0f;
      y[i] = (float)(i % 7) - 3.0f;
    }
    double s = 0, sa = 0, d = 0, da = 0, m = 0, q = 0;
    for (int i = 0; i < n; i++) {
      s += x[i];
      sa += fabs(x[i]);
      d += (double)x[i] * y[i];
      da += fabs((double)x[i] * y[i]);
      m += x[i];
    }
    m /= n;
    const float mf = (float)m;
    for (int i = 0; i < n; i++)
      q += ((double)x[i] - mf) * ((double)x[i] - mf);
    const double bound = (n / 16.0 + 5.0) * 6e-8;
    if (!(fabs(dd__sum(x, n) - s) <= bound * sa) || !(fabs(dd__dot(x, y, n) - d) <= bound * da + 1e-30) ||
        !(fabs(dd__sum_sqdev(x, mf, n) - q) <= 2.0 * bound * q))
      DD_FAIL_AT("lane sums of %d entries: sum %.9g vs %.9g, dot %.9g vs %.9g, sqdev %.9g vs %.9g", n,
                 (double)dd__sum(x, n), s, (double)dd__dot(x, y, n), d, (double)dd__sum_sqdev(x, mf, n), q);
    const int stride = n > 40 ? 37 : 1;
    for (int at = 0; at < n; at += stride) {
      const float keep = x[at];
      x[at] = 100.0f;
      CHECK(max_padded(x, n) == 100.0f);
      x[at] = -100.0f; /* the max is then one of the others, as a scalar loop finds it */
      float want = -INFINITY;
      for (int i = 0; i < n; i++)
        want = x[i] > want ? x[i] : want;
      CHECK(max_padded(x, n) == want);
      x[at] = NAN;
      CHECK(isnan(dd__sum(x, n)) && isnan(dd__dot(x, y, n)));
      x[at] = keep;
    }
  }
  const float neg[3] = {-5.0f, -7.0f, -6.0f};
  CHECK(max_padded(neg, 3) == -5.0f);
  /* the masked last block: lanes below k from a, the rest from b */
  float a16[DD_LANES], b16[DD_LANES], r16[DD_LANES];
  for (int i = 0; i < DD_LANES; i++) {
    a16[i] = (float)i;
    b16[i] = -1.0f - (float)i;
  }
  for (int k = 0; k <= DD_LANES; k++) {
    dd__store(r16, dd__select(dd__lanes_below(k), dd__load(a16), dd__load(b16)));
    for (int i = 0; i < DD_LANES; i++)
      CHECK(r16[i] == (i < k ? a16[i] : b16[i]));
  }
}

/* Attention forward against the same math in double, at two shapes:
 * 20 steps of 2 heads of 4 channels (rows of 17..20 visible keys, tails, and
 * of fewer than 16, padded to a lane block with -inf), and 70 steps of 2
 * heads of 53 channels with lengths 70, 61, 5 (the per-head kernels'
 * whole tiles, their row tails of 4 and 1, key blocks past the fourth, and
 * channel chunks of 32, 16 and a scalar tail of 5), there also with dropout
 * (the reference draws the mask by the documented scheme). The gradient checks
 * cannot see a softmax normalised over the wrong keys (its Jacobian has the
 * same form), nor a tile of scores never computed where they run only
 * small shapes, so the values are checked here, with weights of order
 * 1 / sqrt(D) (outputs of order 1). The bound: a float32 sum of n order-1
 * terms rounds by about sqrt(n) 6e-8, at worst n 6e-8; the longest chain is
 * D + E + T terms (projection, scores, weighted values), under 250, so
 * 2e-5 is above the worst case (1.5e-5) and 20x the typical error, while a
 * tile of scores left uncomputed or a softmax over the wrong keys errs by
 * 0.01 to 1. */
static double attention_max_error(int B, int T, int D, int H, const int32_t *len, bool causal, double drop) {
  const int E = D / H;
  dd_layer_spec s[] = {with_key(attention(H, causal), "p")};
  s[0].p = drop;
  dd_model *m = build(s, 1, (dd_shape){2, {T, D}}, B);
  if (!m)
    return INFINITY;
  const dd_layer *l = &m->layers[0];
  /* weights of order 1 / sqrt(D): q, k, v and the scores of order 1, so the
   * softmax is neither flat nor one-hot */
  for (int j = 0; j < l->nparam; j++)
    for (int64_t i = 0; i < l->param[j].size; i++)
      l->param[j].data[i] = (float)(((i * 29 + j) % 19) / 9.0 - 1.0) * 2.0f / sqrtf((float)D);
  const float *Wq = param_of(l, "qkv_weight"), *bq = param_of(l, "qkv_bias"), *Wp = param_of(l, "proj_weight"),
              *bp = param_of(l, "proj_bias");
  double *qkv = calloc((size_t)T * 3 * D, sizeof(double)), *o = calloc((size_t)T * D, sizeof(double)),
         *sc = calloc((size_t)T, sizeof(double));
  double worst = INFINITY;
  if (!Wq || !bq || !Wp || !bp || !qkv || !o || !sc)
    goto done;
  for (int i = 0; i < B * T * D; i++)
    m->acts[0][i] = (float)((i * 37) % 23) / 11.0f - 1.0f;
  dd_pass p = {.B = B, .B_global = 40, .lengths = len, .train = drop > 0, .seed = 99, .step = 3, .sample0 = 5};
  CHECK_OK(dd_model_forward(m, &p));
  worst = 0;
  for (int b = 0; b < B; b++) {
    const int L = len[b];
    /* the dropout layer's scheme (docs/layers.md): probability j of query i in head h of the sample at
     * global position sample0 + b is dropped iff u(hash(key, h T T + i T + j, "drop")) < p */
    const uint64_t key = dd_hash3(p.seed, (uint64_t)p.step, (uint64_t)(p.sample0 + b) ^ ((uint64_t)l->index << 48));
    const float *x = m->acts[0] + b * T * D, *y = m->acts[1] + b * T * D;
    for (int t = 0; t < T; t++)
      for (int c = 0; c < 3 * D; c++) {
        qkv[t * 3 * D + c] = bq[c];
        for (int d = 0; d < D; d++)
          qkv[t * 3 * D + c] += (double)x[t * D + d] * Wq[c * D + d];
      }
    memset(o, 0, sizeof(double) * (size_t)T * (size_t)D);
    for (int h = 0; h < H; h++)
      for (int i = 0; i < L; i++) {
        const int n = causal ? i + 1 : L;
        double mx = -1e300, sum = 0;
        for (int j = 0; j < n; j++) {
          sc[j] = 0;
          for (int e = 0; e < E; e++)
            sc[j] += qkv[i * 3 * D + h * E + e] * qkv[j * 3 * D + D + h * E + e];
          sc[j] /= sqrt((double)E);
          mx = sc[j] > mx ? sc[j] : mx;
        }
        for (int j = 0; j < n; j++)
          sum += (sc[j] = exp(sc[j] - mx));
        for (int j = 0; j < n; j++) {
          double w = sc[j] / sum;
          if (drop > 0)
            w = dd_hash_uniform(dd_hash3(key, (uint64_t)((h * T + i) * T + j), 0x64726f70)) >= drop ? w / (1 - drop)
                                                                                                    : 0.0;
          for (int e = 0; e < E; e++)
            o[i * D + h * E + e] += w * qkv[j * 3 * D + 2 * D + h * E + e];
        }
      }
    for (int t = 0; t < T; t++)
      for (int c = 0; c < D; c++) {
        double want = 0;
        if (t < L) {
          want = bp[c];
          for (int d = 0; d < D; d++)
            want += o[t * D + d] * Wp[c * D + d];
        }
        worst = worst_of(worst, fabs((double)y[t * D + c] - want));
      }
  }
done:
  free(qkv);
  free(o);
  free(sc);
  dd_model_free(m);
  return worst;
}

static void attention_values_long(void) {
  const int32_t len20[3] = {20, 17, 9}, len70[3] = {70, 61, 5};
  for (int causal = 0; causal < 2; causal++) {
    const double w20 = attention_max_error(3, 20, 8, 2, len20, causal, 0.0),
                 w70 = attention_max_error(3, 70, 106, 2, len70, causal, 0.0),
                 wd = attention_max_error(3, 70, 106, 2, len70, causal, 0.3);
    if (!(w20 <= 2e-5))
      DD_FAIL_AT("attention %s, 20 steps: max |y - double reference| = %.3g > 2e-5", causal ? "causal" : "full", w20);
    if (!(w70 <= 2e-5))
      DD_FAIL_AT("attention %s, 70 steps x 53 channels per head: max |y - double reference| = %.3g > 2e-5",
                 causal ? "causal" : "full", w70);
    /* with dropout the reference draws the mask itself: this pins the scheme (a mask drawn from another index
     * passes the gradient checks and the split invariance alike) */
    if (!(wd <= 2e-5))
      DD_FAIL_AT("attention %s, 70 steps, dropout 0.3: max |y - double reference| = %.3g > 2e-5",
                 causal ? "causal" : "full", wd);
    printf("  attention %s: max error %.3g (20 steps), %.3g (70 steps), %.3g (dropout)\n", causal ? "causal" : "full",
           w20, w70, wd);
  }
}

/* ---- finite differences ------------------------------------------------- */

static void attention_gradients(void) {
  dd_shape in = {2, {6, 8}};
  int32_t len[3] = {6, 4, 1};
  for (int causal = 0; causal < 2; causal++)
    for (int masked = 0; masked < 2; masked++) {
      dd_gc_opts o;
      dd_gc_defaults(&o);
      o.param_scale = 0.2; /* scores of order 1: the softmax is neither flat nor one-hot */
      o.lengths = masked ? len : NULL;
      char label[96];
      snprintf(label, sizeof label, "attention %s%s", causal ? "causal" : "full", masked ? " with lengths" : "");
      dd_layer_spec s[] = {attention(2, causal)};
      CHECK_GRADS(label, s, 1, in, &o);
    }
  /* 20 steps: rows of more than 16 visible keys, so the softmax's padding to
   * whole lane blocks (and its tail rows, 17..20 keys) is what runs */
  {
    dd_gc_opts o;
    dd_gc_defaults(&o);
    o.param_scale = 0.2;
    int32_t len20[3] = {20, 17, 9};
    o.lengths = len20;
    dd_shape in20 = {2, {20, 4}};
    for (int causal = 0; causal < 2; causal++) {
      dd_layer_spec s[] = {attention(2, causal)};
      CHECK_GRADS(causal ? "attention causal, 20 steps, lengths" : "attention full, 20 steps, lengths", s, 1, in20, &o);
    }
    /* 70 steps of 2 heads of 53 channels: every path of the per-head
     * kernels (whole tiles and row tails, key blocks past the fourth,
     * channel chunks of 32 and 16 and a scalar tail) in the backward too */
    int32_t len70[3] = {70, 61, 5};
    o.lengths = len70;
    dd_shape in70 = {2, {70, 106}};
    for (int causal = 0; causal < 2; causal++) {
      dd_layer_spec s[] = {attention(2, causal)};
      CHECK_GRADS(causal ? "attention causal, 70 steps, E = 53, lengths" : "attention full, 70 steps, E = 53, lengths",
                  s, 1, in70, &o);
    }
  }
  dd_gc_opts o;
  dd_gc_defaults(&o);
  o.param_scale = 0.2;
  dd_layer_spec nob[] = {attention(4, true)};
  nob[0].bias = false;
  CHECK_GRADS("attention 4 heads, no bias", nob, 1, in, &o);
  /* dropout: the mask is a function of (seed, step, sample, entry), fixed
   * while the checker moves parameters, so backward must match it exactly */
  o.train = true;
  o.lengths = len;
  dd_layer_spec dr[] = {with_key(attention(2, true), "p")};
  dr[0].p = 0.3;
  CHECK_GRADS("attention with dropout 0.3", dr, 1, in, &o);
  /* and at 70 steps of 53 channels per head, causal and not: the dropped
   * probabilities through every tile of the kernels */
  int32_t len70[3] = {70, 61, 5};
  o.lengths = len70;
  dd_shape in70 = {2, {70, 106}};
  for (int causal = 0; causal < 2; causal++) {
    dd_layer_spec d70[] = {with_key(attention(2, causal), "p")};
    d70[0].p = 0.3;
    CHECK_GRADS(causal ? "attention causal, 70 steps, dropout 0.3" : "attention full, 70 steps, dropout 0.3", d70, 1,
                in70, &o);
  }
}

static void gelu_positional_gradients(void) {
  dd_gc_opts o;
  dd_gc_defaults(&o);
  dd_shape v = {1, {9}}, seq = {2, {5, 4}};
  dd_layer_spec g[] = {tu_spec("gelu")};
  CHECK_GRADS("gelu", g, 1, v, &o);
  dd_layer_spec p[] = {tu_spec("positional")};
  CHECK_GRADS("positional", p, 1, seq, &o);
  int32_t len[3] = {5, 2, 3};
  o.lengths = len;
  CHECK_GRADS("positional with lengths", p, 1, seq, &o);
  p[0].context = 8;
  CHECK_GRADS("positional context 8 > T", p, 1, seq, &o);
}

/* Checker options for a stack on token ids in [0, 9) with lengths len. */
static dd_gc_opts token_opts(const int32_t *len) {
  dd_gc_opts o;
  dd_gc_defaults(&o);
  o.token_vocab = 9;
  o.param_scale = 0.2;
  o.lengths = len;
  return o;
}

/* A GPT-style stack (the block's pieces in a chain): token embedding,
 * positions, layernorm, attention, layernorm, MLP with GELU, head. */
static void transformer_stack(void) {
  int32_t len[3] = {5, 3, 2};
  dd_gc_opts o = token_opts(len);
  const dd_layer_spec e = tu_embedding(9, 8);
  dd_layer_spec s[] = {e,
                       tu_spec("positional"),
                       tu_spec("layernorm"),
                       attention(2, true),
                       tu_spec("layernorm"),
                       tu_dense(16),
                       tu_spec("gelu"),
                       tu_dense(9)};
  const dd_shape in = {1, {5}};
  CHECK_GRADS("embedding-positional-ln-attention-ln-dense-gelu-dense", s, 8, in, &o);
}

/* The layers of a config's model: list (YAML flow sequence). */
static dd_config *parse_layers(const char *list) {
  char text[1024];
  snprintf(text, sizeof text, "model:\n  layers: %s\n", list);
  dd_config *c = NULL;
  if (dd_config_parse(text, "run.yaml", 0, NULL, &c) != 0)
    DD_FAIL_AT("parse %s: %s", list, dd_error_message());
  return c;
}

static dd_layer_spec tied_output(void) {
  dd_layer_spec s = tu_spec("dense");
  s.tie = DD_TIE_EMBEDDING;
  return s;
}

/* The output tied to the embedding: the table's gradient is the sum of the
 * embedding's scattered rows and the output's dy^T x (both accumulate into
 * one view), with attention in between so every token's row gets both. */
static void tied_gradients(void) {
  int32_t len[3] = {5, 3, 2};
  dd_gc_opts o = token_opts(len);
  const dd_layer_spec e = tu_embedding(9, 8);
  dd_layer_spec s[] = {e, tu_spec("positional"), tu_spec("layernorm"), attention(2, true), tied_output()};
  const dd_shape in = {1, {5}};
  CHECK_GRADS("embedding-positional-ln-attention-dense tied", s, 5, in, &o);
  dd_layer_spec nob[] = {e, tu_spec("layernorm"), tied_output()};
  nob[2].bias = false;
  CHECK_GRADS("embedding-ln-dense tied, no bias", nob, 3, in, &o);
}

/* {type: transformer} as the config expands it, checked as a whole: two
 * blocks in a row (the second's residual sums feed the first's backward),
 * without and with dropout (train mode: the masks are fixed per step). */
static void block_gradients(void) {
  const char *lists[] = {"[{type: transformer, heads: 2}, {type: transformer, heads: 2, mlp: 2}]",
                         "[{type: transformer, heads: 2, dropout: 0.2}]"};
  for (int k = 0; k < 2; k++) {
    dd_config *c = parse_layers(lists[k]);
    if (!c)
      return;
    dd_gc_opts o;
    dd_gc_defaults(&o);
    o.param_scale = 0.2;
    o.train = k == 1;
    int32_t len[3] = {5, 3, 2};
    o.lengths = k == 1 ? len : NULL;
    CHECK_GRADS(lists[k], c->layers, c->nlayers, ((dd_shape){2, {5, 8}}), &o);
    dd_config_free(c);
  }
}

/* ---- PyTorch reference ----------------------------------------------------
 * Tolerance. The reference is exact (float64 from the float32 inputs), so
 * the bound covers ddtrain's float32 rounding, u = 2^-24 = 6e-8 per
 * operation. A K-term float32 dot product is off by at most K u sum|terms|
 * (Higham's gamma_K, first order). Here D = 8, T = 5, E = 4, every input
 * and weight |.| <= 0.8 * (0.5 for weights): the qkv entries are sums of 9
 * terms of |.| <= 0.32 (error <= 9 u 2.9 = 1.6e-6 absolute), the scores
 * 4-term products of them scaled by 1/2 (|s| <= 5.2, error <= 2e-6 from the
 * product plus what the qkv errors carry, 2 * 2.6 * 1.6e-6 = 8e-6), the
 * softmax moves by at most that (its Jacobian has norm <= 1/2 per entry
 * against a shift, plus 2 ulp of exp), P v (5 terms, |P| <= 1) and the
 * 9-term output projection add 9 u and carry the rest scaled by
 * sum|Wproj| <= 3.2: about 3e-5 absolute at worst for |y| < 1. The worst
 * case never happens with mixed signs; the test allows 3e-5 on outputs
 * (relative to max(1, |ref|)) and, for the gradients, which run the same
 * chain backwards through twice the products, 6e-5. Measured (Cooperlake
 * kernels): at most 2.4e-7 on outputs and 4.0e-7 on gradients, so the bound
 * has a margin of 75x for other kernel sets' summation orders, while a real
 * error (a swapped head, a mask off by one step, q and k exchanged) moves
 * entries by 1e-2 or more. */
#define TOL_Y 3e-5
#define TOL_G 6e-5

typedef struct att_ref {
  const char *name;
  bool causal, masked;
  const float *Wqkv, *bqkv, *Wp, *bp, *y, *dWqkv, *dbqkv, *dWp, *dbp, *dx;
} att_ref;

static void torch_attention(void) {
  const att_ref refs[] = {
      {"causal", true, false, ATT_causal_qkv_weight, ATT_causal_qkv_bias, ATT_causal_proj_weight, ATT_causal_proj_bias,
       ATT_causal_y, ATT_causal_dqkv_weight, ATT_causal_dqkv_bias, ATT_causal_dproj_weight, ATT_causal_dproj_bias,
       ATT_causal_dx},
      {"causal with lengths", true, true, ATT_causal_len_qkv_weight, ATT_causal_len_qkv_bias,
       ATT_causal_len_proj_weight, ATT_causal_len_proj_bias, ATT_causal_len_y, ATT_causal_len_dqkv_weight,
       ATT_causal_len_dqkv_bias, ATT_causal_len_dproj_weight, ATT_causal_len_dproj_bias, ATT_causal_len_dx},
      {"full with lengths", false, true, ATT_full_len_qkv_weight, ATT_full_len_qkv_bias, ATT_full_len_proj_weight,
       ATT_full_len_proj_bias, ATT_full_len_y, ATT_full_len_dqkv_weight, ATT_full_len_dqkv_bias,
       ATT_full_len_dproj_weight, ATT_full_len_dproj_bias, ATT_full_len_dx},
  };
  const int64_t D = ATT_D, n = ATT_B * ATT_T * ATT_D;
  for (int c = 0; c < 3; c++) {
    const att_ref *r = &refs[c];
    dd_test_name = r->name;
    dd_layer_spec s[] = {attention(ATT_H, r->causal)};
    dd_model *m = build(s, 1, (dd_shape){2, {ATT_T, ATT_D}}, ATT_B);
    if (!m)
      return;
    dd_layer *l = &m->layers[0];
    set_param(l, "qkv_weight", r->Wqkv, 3 * D * D);
    set_param(l, "qkv_bias", r->bqkv, 3 * D);
    set_param(l, "proj_weight", r->Wp, D * D);
    set_param(l, "proj_bias", r->bp, D);
    memcpy(m->acts[0], ATT_x, sizeof ATT_x);
    dd_pass p = {.B = ATT_B, .B_global = ATT_B, .lengths = r->masked ? ATT_LEN : NULL};
    CHECK_OK(dd_model_forward(m, &p));
    check_close("attention y", m->acts[1], r->y, n, TOL_Y);
    dd_model_zero_grad(m);
    float dx[ATT_B * ATT_T * ATT_D];
    CHECK_OK(l->kind->backward(l, &p, m->acts[0], m->acts[1], ATT_w, dx));
    check_close("d qkv_weight", grad_of(l, "qkv_weight"), r->dWqkv, 3 * D * D, TOL_G);
    check_close("d qkv_bias", grad_of(l, "qkv_bias"), r->dbqkv, 3 * D, TOL_G);
    check_close("d proj_weight", grad_of(l, "proj_weight"), r->dWp, D * D, TOL_G);
    check_close("d proj_bias", grad_of(l, "proj_bias"), r->dbp, D, TOL_G);
    check_close("d x", dx, r->dx, n, TOL_G);
    dd_model_free(m);
  }
  dd_test_name = "torch_attention";
}

/* GELU, no accumulation: y = x s(2u) carries the exp's 2 ulp, about six
 * roundings of u = 6e-8 in u, s and the product, and the rounding of u
 * amplified by |2u| in e = exp(-2u); where |2u| is large that error is
 * multiplied by s (x << 0) or by 1 - s (x >> 0), both tiny. So |error| <=
 * about 10 u max(1, |y|) = 6e-7 at worst; the derivative has three more
 * products. Allowed 6e-7 relative to max(1, |ref|) on both; measured 1.2e-7
 * (y) and 6e-8 (dx). */
static void torch_gelu(void) {
  float y[GELU_N], dx[GELU_N];
  dd_gelu_forward(y, GELU_x, GELU_N);
  check_close("gelu y", y, GELU_y, GELU_N, 6e-7);
  dd_gelu_backward(dx, GELU_x, GELU_w, GELU_N);
  check_close("gelu dx", dx, GELU_dx, GELU_N, 6e-7);
  /* the layer's path: y and g = dy/dx in one pass, then dx = dy g (one more rounding) */
  float g[GELU_N];
  dd_gelu_forward_grad(y, g, GELU_x, GELU_N);
  for (int i = 0; i < GELU_N; i++)
    dx[i] = GELU_w[i] * g[i];
  check_close("gelu y (forward_grad)", y, GELU_y, GELU_N, 6e-7);
  check_close("gelu dx (dy g)", dx, GELU_dx, GELU_N, 6e-7);
  float nan_in = NAN, out, gout;
  dd_gelu_forward(&out, &nan_in, 1);
  CHECK(isnan(out));
  dd_gelu_forward_grad(&out, &gout, &nan_in, 1);
  CHECK(isnan(out) && isnan(gout));
}

/* Positional: one float32 addition per entry (0.5 ulp), gradients are sums
 * of at most B = 3 terms: 2e-7 covers both. */
static void torch_positional(void) {
  dd_layer_spec s[] = {tu_spec("positional")};
  s[0].context = POS_C;
  dd_model *m = build(s, 1, (dd_shape){2, {ATT_T, ATT_D}}, ATT_B);
  if (!m)
    return;
  dd_layer *l = &m->layers[0];
  set_param(l, "weight", POS_weight, POS_C * ATT_D);
  memcpy(m->acts[0], POS_x, sizeof POS_x);
  dd_pass p = {.B = ATT_B, .B_global = ATT_B, .lengths = ATT_LEN};
  CHECK_OK(dd_model_forward(m, &p));
  check_close("positional y", m->acts[1], POS_y, ATT_B * ATT_T * ATT_D, 2e-7);
  dd_model_zero_grad(m);
  float dx[ATT_B * ATT_T * ATT_D];
  CHECK_OK(l->kind->backward(l, &p, m->acts[0], m->acts[1], POS_w, dx));
  check_close("positional d weight", l->param[0].grad, POS_dweight, POS_C * ATT_D, 2e-7);
  check_close("positional d x", dx, POS_dx, ATT_B * ATT_T * ATT_D, 2e-7);
  dd_model_free(m);
}

/* The block against GPT-2's (PyTorch modules, float64 from the same float32
 * values). Tolerance: each half is the attention case's chain (bounded by
 * TOL_Y / TOL_G above) behind a LayerNorm, whose output error is about D u
 * relative to its input's spread (mean and variance are 8-term sums; x has
 * spread >= 0.3, so a few 1e-7) and which carries the input's absolute
 * error scaled by weight / sigma <= 1.15 / 0.3 = 4. The MLP adds two dense
 * products of 8 and 32 terms with |w| <= 0.4 and |a| <= 3: (8 + 32) u x
 * 0.4 x 3 x 32 = 1e-4 at the very worst in absolute error; the residual
 * additions add u |y|. The bound allows 2e-4 on y (relative to
 * max(1, |ref|)) and 4e-4 on the parameter gradients, which pass through
 * the same chain backwards. Measured (Cooperlake kernels): at most 5.4e-7
 * on y and 3.7e-6 on the gradients (the LayerNorm bias's, a 15-term sum),
 * margins of 370x and 100x. A wrong wiring (the
 * residual not added, LayerNorm on the wrong branch, GELU exact instead of
 * tanh) moves y by 1e-3 or more. */
static void torch_block(void) {
  dd_config *c = parse_layers("[{type: transformer, heads: 2}]");
  if (!c)
    return;
  CHECK_INT(c->nlayers, 10);
  dd_model *m = build(c->layers, c->nlayers, (dd_shape){2, {ATT_T, ATT_D}}, ATT_B);
  dd_config_free(c);
  if (!m)
    return;
  const int np = (int)(sizeof BLK_PARAMS / sizeof BLK_PARAMS[0]);
  for (int i = 0; i < np; i++)
    set_param(&m->layers[BLK_PARAMS[i].layer], BLK_PARAMS[i].name, BLK_PARAMS[i].v, BLK_PARAMS[i].n);
  memcpy(m->acts[0], ATT_x, sizeof ATT_x);
  dd_pass p = {.B = ATT_B, .B_global = ATT_B};
  CHECK_OK(dd_model_forward(m, &p));
  check_close("block y", m->acts[m->nlayers], BLK_y, ATT_B * ATT_T * ATT_D, 2e-4);
  dd_model_zero_grad(m);
  memcpy(m->dbuf[0], ATT_w, sizeof ATT_w);
  CHECK_OK(dd_model_backward(m, &p));
  for (int i = 0; i < np; i++) {
    char what[64];
    snprintf(what, sizeof what, "block d layer%d/%s", BLK_PARAMS[i].layer, BLK_PARAMS[i].name);
    check_close(what, grad_of(&m->layers[BLK_PARAMS[i].layer], BLK_PARAMS[i].name), BLK_PARAMS[i].g, BLK_PARAMS[i].n,
                4e-4);
  }
  dd_model_free(m);
}

/* The tied output against GPT-2's wte / lm_head. Tolerance: the logits are
 * 8-term dot products of LayerNorm outputs (|.| <= 3) and table entries
 * (|.| <= 0.8): 8 u 8 x 3 x 0.8 = 1.2e-5 at worst, with the LayerNorm's
 * own few ulp of its output carried through 8 x 0.8; the table's gradient
 * sums 15 terms of the output's dy^T x and the scattered rows (at most 2
 * uses of a token here) of the LayerNorm's backward. Allowed 3e-5 on
 * logits and 6e-5 on gradients (relative to max(1, |ref|)), as the
 * attention case; measured (Cooperlake kernels) 2.1e-7 and 1.1e-6. A tie that dropped either half of the table's
 * gradient is off by O(1). */
static void torch_tied(void) {
  dd_layer_spec s[] = {tu_embedding(TIE_V, ATT_D), tu_spec("layernorm"), tied_output()};
  dd_model *m = build(s, 3, (dd_shape){1, {ATT_T}}, ATT_B);
  if (!m)
    return;
  CHECK_INT(m->layers[2].nparam, 1); /* the bias: the weight is the embedding's */
  set_param(&m->layers[0], "weight", TIE_wte, TIE_V * ATT_D);
  set_param(&m->layers[1], "weight", TIE_ln_weight, ATT_D);
  set_param(&m->layers[1], "bias", TIE_ln_bias, ATT_D);
  set_param(&m->layers[2], "bias", TIE_bias, TIE_V);
  memcpy(m->acts[0], TIE_ids, sizeof TIE_ids);
  dd_pass p = {.B = ATT_B, .B_global = ATT_B};
  CHECK_OK(dd_model_forward(m, &p));
  check_close("tied logits", m->acts[3], TIE_y, ATT_B * ATT_T * TIE_V, 3e-5);
  dd_model_zero_grad(m);
  memcpy(m->dbuf[0], TIE_w, sizeof TIE_w);
  CHECK_OK(dd_model_backward(m, &p));
  check_close("tied d wte", grad_of(&m->layers[0], "weight"), TIE_dwte, TIE_V * ATT_D, 6e-5);
  check_close("tied d ln weight", grad_of(&m->layers[1], "weight"), TIE_dln_weight, ATT_D, 6e-5);
  check_close("tied d ln bias", grad_of(&m->layers[1], "bias"), TIE_dln_bias, ATT_D, 6e-5);
  check_close("tied d bias", grad_of(&m->layers[2], "bias"), TIE_dbias, TIE_V, 6e-5);
  dd_model_free(m);
}

/* Padding cannot leak: inputs at padding steps change no output at a valid
 * step, padding outputs are zero, and padding inputs get no gradient. */
static void padding_is_inert(void) {
  const dd_shape in = {2, {6, 4}};
  int32_t len[2] = {3, 6};
  for (int causal = 0; causal < 2; causal++) {
    dd_layer_spec s[] = {attention(2, causal)};
    dd_model *m = build(s, 1, in, 2);
    if (!m)
      return;
    dd_model_init_params(m, 3);
    dd_pass p = {.B = 2, .B_global = 2, .lengths = len};
    float y0[2 * 6 * 4], dx[2 * 6 * 4];
    for (int i = 0; i < 48; i++)
      m->acts[0][i] = (float)sin(0.7 * i);
    CHECK_OK(dd_model_forward(m, &p));
    memcpy(y0, m->acts[1], sizeof y0);
    for (int i = 3 * 4; i < 6 * 4; i++) /* sample 0's padding */
      m->acts[0][i] = 1e3f;
    CHECK_OK(dd_model_forward(m, &p));
    CHECK(memcmp(y0, m->acts[1], sizeof y0) == 0);
    for (int i = 3 * 4; i < 6 * 4; i++)
      CHECK(m->acts[1][i] == 0.0f);
    for (int i = 0; i < 48; i++)
      m->dbuf[0][i] = 1.0f;
    dd_model_zero_grad(m);
    CHECK_OK(m->layers[0].kind->backward(&m->layers[0], &p, m->acts[0], m->acts[1], m->dbuf[0], dx));
    for (int i = 3 * 4; i < 6 * 4; i++)
      CHECK(dx[i] == 0.0f);
    CHECK(dx[0] != 0.0f && dx[47] != 0.0f);
    dd_model_free(m);
  }
}

/* Attention dropout follows the dropout layer's counter-based scheme: a
 * sample's mask depends on its position in the global batch, not on how
 * the batch is split (N ranks == 1 rank); evaluation is dropout-free. */
static void dropout_split_invariant(void) {
  const dd_shape in = {2, {5, 4}};
  dd_layer_spec s[] = {with_key(attention(2, true), "p")};
  s[0].p = 0.5;
  dd_model *m = build(s, 1, in, 4);
  if (!m)
    return;
  dd_model_init_params(m, 4);
  float x[4 * 20], whole[4 * 20], eval[4 * 20];
  for (int i = 0; i < 80; i++)
    x[i] = (float)cos(0.37 * i);
  memcpy(m->acts[0], x, sizeof x);
  dd_pass p = {.B = 4, .B_global = 4, .train = true, .seed = 9, .step = 2};
  CHECK_OK(dd_model_forward(m, &p));
  memcpy(whole, m->acts[1], sizeof whole);
  for (int half = 0; half < 2; half++) {
    memcpy(m->acts[0], x + half * 40, sizeof(float) * 40);
    dd_pass q = p;
    q.B = 2;
    q.sample0 = 2 * half;
    CHECK_OK(dd_model_forward(m, &q));
    CHECK(memcmp(whole + half * 40, m->acts[1], sizeof(float) * 40) == 0);
  }
  memcpy(m->acts[0], x, sizeof x);
  p.train = false;
  CHECK_OK(dd_model_forward(m, &p));
  memcpy(eval, m->acts[1], sizeof eval);
  CHECK(memcmp(eval, whole, sizeof eval) != 0);
  p.step = 3; /* another step draws another mask */
  p.train = true;
  CHECK_OK(dd_model_forward(m, &p));
  CHECK(memcmp(m->acts[1], whole, sizeof whole) != 0);
  dd_model_free(m);
}

static void setup_errors(void) {
  dd_model *m = NULL;
  dd_layer_spec a[] = {attention(3, true)};
  a[0].line = 7;
  dd_model_spec spec = {.input = {2, {4, 8}}, .nlayers = 1, .layers = a};
  CHECK(dd_model_build(&spec, 2, 0, &m) == DD_ECONFIG);
  CHECK_CONTAINS(dd_error_message(), "config line 7: model.layers[0] (attention): heads = 3 does not divide the 8");
  dd_error_clear();
  dd_layer_spec none[] = {attention(0, true)};
  spec.layers = none;
  CHECK(dd_model_build(&spec, 2, 0, &m) == DD_ECONFIG);
  CHECK_CONTAINS(dd_error_message(), "needs 'heads'");
  dd_error_clear();
  dd_layer_spec two[] = {attention(2, true)};
  dd_model_spec flat = {.input = {1, {8}}, .nlayers = 1, .layers = two};
  CHECK(dd_model_build(&flat, 2, 0, &m) == DD_ECONFIG);
  CHECK_CONTAINS(dd_error_message(), "needs a sequence [T, D]");
  dd_error_clear();
  dd_layer_spec p[] = {tu_spec("positional")};
  p[0].context = 3;
  spec.layers = p;
  CHECK(dd_model_build(&spec, 2, 0, &m) == DD_ECONFIG);
  CHECK_CONTAINS(dd_error_message(), "context = 3 is shorter than the input's 4 steps");
  dd_error_clear();
  /* parameter names, shapes and which of them are weight matrices (optim.decay: weights) */
  dd_layer_spec ok[] = {tu_spec("positional"), attention(2, true), tu_spec("gelu")};
  spec.layers = ok;
  spec.nlayers = 3;
  CHECK_OK(dd_model_build(&spec, 2, 0, &m));
  if (m) {
    const char *names[] = {"layer0/weight", "layer1/qkv_weight", "layer1/qkv_bias", "layer1/proj_weight",
                           "layer1/proj_bias"};
    const int64_t sizes[] = {4 * 8, 24 * 8, 24, 8 * 8, 8};
    const bool matrix[] = {false, true, false, true, false};
    CHECK_INT(m->ntensors, 5);
    for (int i = 0; i < 5 && i < m->ntensors; i++) {
      CHECK(strcmp(m->tensors[i].name, names[i]) == 0);
      CHECK_INT(m->tensors[i].param->size, sizes[i]);
      CHECK_INT(m->tensors[i].param->weight_matrix, matrix[i]);
    }
    dd_model_free(m);
  }
}

/* tie: embedding without a table to use, or one that does not fit; which
 * tensors exist, and that the tied table counts as a weight matrix. */
static void tie_errors(void) {
  dd_model *m = NULL;
  const dd_layer_spec e = tu_embedding(9, 8);
  dd_layer_spec none[] = {tu_spec("layernorm"), tied_output()};
  dd_model_spec spec = {.input = {2, {4, 8}}, .nlayers = 2, .layers = none};
  CHECK(dd_model_build(&spec, 2, 0, &m) == DD_ECONFIG);
  CHECK_CONTAINS(dd_error_message(), "tie: embedding needs an embedding layer before it");
  dd_error_clear();
  dd_layer_spec units[] = {e, tied_output()};
  units[1].units = 10;
  spec = (dd_model_spec){.input = {1, {4}}, .nlayers = 2, .layers = units};
  CHECK(dd_model_build(&spec, 2, 0, &m) == DD_ECONFIG);
  CHECK_CONTAINS(dd_error_message(), "units = 10 but the tied embedding (model.layers[0]) has vocab 9");
  dd_error_clear();
  dd_layer_spec dim[] = {e, tu_dense(6), tied_output()};
  spec.layers = dim;
  spec.nlayers = 3;
  CHECK(dd_model_build(&spec, 2, 0, &m) == DD_ECONFIG);
  CHECK_CONTAINS(dd_error_message(), "the tied embedding (model.layers[0]) has dim 8");
  dd_error_clear();
  dd_layer_spec init[] = {e, tied_output()};
  init[1].init = DD_INIT_XAVIER;
  spec.layers = init;
  spec.nlayers = 2;
  CHECK(dd_model_build(&spec, 2, 0, &m) == DD_ECONFIG);
  CHECK_CONTAINS(dd_error_message(), "init does not apply with tie: embedding");
  dd_error_clear();
  for (int tied = 0; tied < 2; tied++) {
    dd_layer_spec s[] = {e, tied ? tied_output() : tu_dense(9)};
    spec.layers = s;
    CHECK_OK(dd_model_build(&spec, 2, 0, &m));
    if (!m)
      continue;
    CHECK_INT(m->ntensors, tied ? 2 : 3);
    CHECK(strcmp(m->tensors[0].name, "layer0/weight") == 0);
    CHECK_INT(m->tensors[0].param->weight_matrix, tied); /* decayed under optim.decay: weights when tied */
    CHECK(strcmp(m->tensors[m->ntensors - 1].name, "layer1/bias") == 0);
    CHECK_INT(m->layers[1].spec.units, 9);
    char sum[2048];
    dd_model_summary(m, sum, sizeof sum);
    CHECK_INT(strstr(sum, "+ weight of layer 0 (tied)") != NULL, tied);
    dd_model_free(m);
  }
}

int main(void) {
  RUN(fast_exp_accuracy);
  RUN(lane_sums);
  RUN(attention_values_long);
  RUN(attention_gradients);
  RUN(gelu_positional_gradients);
  RUN(transformer_stack);
  RUN(tied_gradients);
  RUN(block_gradients);
  RUN(torch_attention);
  RUN(torch_gelu);
  RUN(torch_positional);
  RUN(torch_block);
  RUN(torch_tied);
  RUN(padding_is_inert);
  RUN(dropout_split_invariant);
  RUN(setup_errors);
  RUN(tie_errors);
  return dd_test_failures ? 1 : 0;
}
