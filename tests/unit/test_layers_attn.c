/* Transformer layers: attention, gelu, positional — finite-difference checks
 * (causal and full, lengths, dropout, no bias, stacks), PyTorch reference
 * values for layouts, masks and formulas, padding, the dropout mask's
 * independence of the rank split, setup errors, the vectorised exp. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "../../src/layers/sequtil.h"
#include "attn_ref.h"
#include "check.h"
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

static void set_param(dd_layer *l, const char *name, const float *v, int64_t n) {
  for (int j = 0; j < l->nparam; j++)
    if (strcmp(l->param[j].name, name) == 0) {
      CHECK_INT(l->param[j].size, n);
      memcpy(l->param[j].data, v, sizeof(float) * (size_t)n);
      return;
    }
  DD_FAIL_AT("layer has no parameter %s", name);
}

static const float *grad_of(const dd_layer *l, const char *name) {
  for (int j = 0; j < l->nparam; j++)
    if (strcmp(l->param[j].name, name) == 0)
      return l->param[j].grad;
  DD_FAIL_AT("layer has no parameter %s", name);
  return NULL;
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

/* A GPT-style stack (the block's pieces in a chain): token embedding,
 * positions, layernorm, attention, layernorm, MLP with GELU, head. */
static void transformer_stack(void) {
  dd_gc_opts o;
  dd_gc_defaults(&o);
  o.token_vocab = 9;
  o.param_scale = 0.2;
  int32_t len[3] = {5, 3, 2};
  o.lengths = len;
  dd_layer_spec e = tu_spec("embedding");
  e.vocab = 9;
  e.dim = 8;
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
  float nan_in = NAN, out;
  dd_gelu_forward(&out, &nan_in, 1);
  CHECK(isnan(out));
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

int main(void) {
  RUN(fast_exp_accuracy);
  RUN(attention_gradients);
  RUN(gelu_positional_gradients);
  RUN(transformer_stack);
  RUN(torch_attention);
  RUN(torch_gelu);
  RUN(torch_positional);
  RUN(padding_is_inert);
  RUN(dropout_split_invariant);
  RUN(setup_errors);
  return dd_test_failures ? 1 : 0;
}
