/* Sequence layers: embedding, rnn, lstm, gru, layernorm — finite-difference
 * checks (BPTT over several steps, length masks), PyTorch reference values
 * for the parameter layout, masking semantics, per-step cross-entropy. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "ddtrain/model.h"
#include "gradcheck.h"
#include "seq_ref.h"
#include "specs.h"

DD_TEST_GLOBALS;

static dd_layer_spec recurrent(const char *type, int hidden, bool sequences) {
  dd_layer_spec s = tu_spec(type);
  s.hidden = hidden;
  s.sequences = sequences;
  return s;
}

static void fast_math_accuracy(void) {
  enum { N = 200001 };
  static float x[N], y[N], s[N];
  for (int i = 0; i < N; i++)
    x[i] = -20.0f + 40.0f * (float)i / (float)(N - 1);
  dd_fast_tanh(y, x, N);
  dd_fast_sigmoid(s, x, N);
  double et = 0, es = 0;
  for (int i = 0; i < N; i++) {
    et = worst_of(et, fabs((double)y[i] - tanh((double)x[i])));
    es = worst_of(es, fabs((double)s[i] - 1.0 / (1.0 + exp(-(double)x[i]))));
  }
  if (!(et <= 5e-7))
    DD_FAIL_AT("fast tanh max abs error %.3g > 5e-7", et);
  if (!(es <= 3e-7))
    DD_FAIL_AT("fast sigmoid max abs error %.3g > 3e-7", es);
  float odd[3] = {NAN, 1e-6f, -1e30f}, r[3];
  dd_fast_tanh(r, odd, 3);
  CHECK(isnan(r[0]));
  CHECK(r[1] == 1e-6f); /* tanh(x) = x at float resolution */
  CHECK(r[2] < -0.9999f && r[2] >= -1.0f);
}

static void embedding_gradients(void) {
  dd_gc_opts o;
  dd_gc_defaults(&o);
  o.token_vocab = 7;
  dd_shape in = {1, {5}};
  /* the embedding alone is linear in W: check its parameter gradient, then
   * with lengths (padding steps get none) */
  dd_layer_spec s1[] = {tu_embedding(7, 4)};
  CHECK_GRADS("embedding", s1, 1, in, &o);
  int32_t len[3] = {5, 2, 4};
  o.lengths = len;
  CHECK_GRADS("embedding with lengths", s1, 1, in, &o);
}

static void embedding_values(void) {
  float W[3 * 2] = {1, 2, 3, 4, 5, 6}, ids[4] = {2, 0, 1, 2}, y[8];
  CHECK_INT(dd_embedding_forward(y, ids, W, 4, 3, 2), -1);
  CHECK(y[0] == 5 && y[1] == 6 && y[2] == 1 && y[3] == 2 && y[4] == 3 && y[7] == 6);
  float bad[3] = {1, 3, 0}, frac[2] = {0, 1.5f}, neg[1] = {-1};
  CHECK_INT(dd_embedding_forward(y, bad, W, 3, 3, 2), 1);
  CHECK_INT(dd_embedding_forward(y, frac, W, 2, 3, 2), 1);
  CHECK_INT(dd_embedding_forward(y, neg, W, 1, 3, 2), 0);
  float dW[6] = {0}, dy[8] = {1, 1, 2, 2, 3, 3, 4, 4};
  dd_embedding_backward(dW, dy, ids, 4, 3, 2);
  CHECK(dW[0] == 2 && dW[2] == 3 && dW[4] == 5 && dW[5] == 5); /* id 2 seen twice: 1 + 4 */
}

/* rnn, lstm, gru in both modes, over 6 steps, with and without lengths */
static void recurrent_gradients(void) {
  const char *kinds[] = {"rnn", "lstm", "gru"};
  dd_shape in = {2, {6, 3}};
  int32_t len[3] = {6, 4, 1};
  for (int k = 0; k < 3; k++)
    for (int seq = 0; seq < 2; seq++)
      for (int masked = 0; masked < 2; masked++) {
        dd_gc_opts o;
        dd_gc_defaults(&o);
        o.param_scale = 0.3; /* away from the symmetric init: gates do more than pass through */
        o.lengths = masked ? len : NULL;
        char label[96];
        snprintf(label, sizeof label, "%s %s%s", kinds[k], seq ? "sequences" : "last step",
                 masked ? " with lengths" : "");
        dd_layer_spec s[] = {recurrent(kinds[k], 5, seq)};
        CHECK_GRADS(label, s, 1, in, &o);
      }
}

static void layernorm_gradients(void) {
  dd_gc_opts o;
  dd_gc_defaults(&o);
  o.param_scale = 0.5; /* weight != 1, bias != 0 */
  dd_layer_spec s[] = {tu_spec("layernorm")};
  dd_shape v = {1, {7}}, seq = {2, {4, 6}};
  CHECK_GRADS("layernorm [D]", s, 1, v, &o);
  CHECK_GRADS("layernorm [T, D]", s, 1, seq, &o);
  dd_shape wide = {2, {2, 37}}; /* two whole blocks of 16 lanes and a tail of 5 */
  CHECK_GRADS("layernorm [T, 37]", s, 1, wide, &o);
  dd_layer_spec s2[] = {tu_dense(6), tu_spec("layernorm"), tu_spec("tanh"), tu_dense(3)};
  CHECK_GRADS("dense-layernorm-tanh-dense", s2, 4, v, &o);
}

static void sequence_stacks(void) {
  dd_gc_opts o;
  dd_gc_defaults(&o);
  o.token_vocab = 9;
  o.param_scale = 0.2;
  int32_t len[3] = {5, 3, 2};
  o.lengths = len;
  dd_shape in = {1, {5}};
  dd_layer_spec lm[] = {tu_embedding(9, 4), recurrent("lstm", 6, true), tu_dense(5)};
  CHECK_GRADS("embedding-lstm-dense per step", lm, 3, in, &o);
  dd_layer_spec cls[] = {tu_embedding(9, 4), recurrent("gru", 5, true), tu_spec("layernorm"),
                         recurrent("rnn", 4, false), tu_dense(3)};
  CHECK_GRADS("embedding-gru-layernorm-rnn-dense", cls, 5, in, &o);
  dd_gc_opts f;
  dd_gc_defaults(&f);
  f.lengths = len;
  dd_shape feat = {2, {5, 2}};
  dd_layer_spec stack[] = {recurrent("lstm", 4, true), recurrent("lstm", 3, false), tu_dense(2)};
  CHECK_GRADS("lstm-lstm-dense", stack, 3, feat, &f);
}

/* ---- PyTorch reference: layout, gate order, formulas, packed sequences */

static dd_model *build(const dd_layer_spec *s, int n, dd_shape in, int B, int loss) {
  dd_model_spec spec = {.input = in, .nlayers = n, .layers = (dd_layer_spec *)s, .loss = loss};
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

typedef struct torch_ref {
  const char *kind;
  int G;
  const float *w_ih, *w_hh, *b_ih, *b_hh, *seq, *last, *dw_ih, *dw_hh, *db_ih, *db_hh, *dx;
} torch_ref;

static void torch_layout(void) {
  const torch_ref refs[] = {
      {"rnn", 1, RNN_weight_ih, RNN_weight_hh, RNN_bias_ih, RNN_bias_hh, RNN_seq, RNN_last, RNN_dweight_ih,
       RNN_dweight_hh, RNN_dbias_ih, RNN_dbias_hh, RNN_dx},
      {"lstm", 4, LSTM_weight_ih, LSTM_weight_hh, LSTM_bias_ih, LSTM_bias_hh, LSTM_seq, LSTM_last, LSTM_dweight_ih,
       LSTM_dweight_hh, LSTM_dbias_ih, LSTM_dbias_hh, LSTM_dx},
      {"gru", 3, GRU_weight_ih, GRU_weight_hh, GRU_bias_ih, GRU_bias_hh, GRU_seq, GRU_last, GRU_dweight_ih,
       GRU_dweight_hh, GRU_dbias_ih, GRU_dbias_hh, GRU_dx},
  };
  const dd_shape in = {2, {REF_T, REF_D}};
  const int64_t GH = REF_H, nx = REF_B * REF_T * REF_D;
  for (int k = 0; k < 3; k++) {
    const torch_ref *r = &refs[k];
    dd_test_name = r->kind;
    float grads[2][512] = {{0}}, dx[2][REF_B * REF_T * REF_D];
    /* the two outputs PyTorch gives: every step (sequences) and h_n (last valid step) */
    for (int seq = 0; seq < 2; seq++) {
      dd_layer_spec s[] = {recurrent(r->kind, REF_H, seq == 0)};
      dd_model *m = build(s, 1, in, REF_B, DD_LOSS_MSE);
      if (!m)
        return;
      dd_layer *l = &m->layers[0];
      const int64_t g = r->G * GH;
      set_param(l, "weight_ih", r->w_ih, g * REF_D);
      set_param(l, "weight_hh", r->w_hh, g * REF_H);
      set_param(l, "bias_ih", r->b_ih, g);
      set_param(l, "bias_hh", r->b_hh, g);
      CHECK_INT(m->nparams, g * (REF_D + REF_H + 2));
      memcpy(m->acts[0], REF_x, sizeof REF_x);
      dd_pass p = {.B = REF_B, .B_global = REF_B, .lengths = REF_LEN};
      CHECK_OK(dd_model_forward(m, &p));
      char what[64];
      snprintf(what, sizeof what, "%s %s", r->kind, seq == 0 ? "output" : "h_n");
      check_close(what, m->acts[1], seq == 0 ? r->seq : r->last, seq == 0 ? REF_B * REF_T * REF_H : REF_B * REF_H,
                  2e-6);
      dd_model_zero_grad(m);
      memcpy(m->dbuf[0], seq == 0 ? REF_wseq : REF_wlast, seq == 0 ? sizeof REF_wseq : sizeof REF_wlast);
      CHECK_OK(l->kind->backward(l, &p, m->acts[0], m->acts[1], m->dbuf[0], dx[seq]));
      memcpy(grads[seq], m->grads, sizeof(float) * (size_t)m->nparams);
      dd_model_free(m);
    }
    const int64_t g = r->G * GH, n[4] = {g * REF_D, g * REF_H, g, g};
    const float *want[4] = {r->dw_ih, r->dw_hh, r->db_ih, r->db_hh};
    const char *names[4] = {"d weight_ih", "d weight_hh", "d bias_ih", "d bias_hh"};
    int64_t off = 0;
    for (int t = 0; t < 4; t++) {
      float sum[512];
      for (int64_t i = 0; i < n[t]; i++)
        sum[i] = grads[0][off + i] + grads[1][off + i];
      check_close(names[t], sum, want[t], n[t], 1e-5);
      off += n[t];
    }
    float dxs[REF_B * REF_T * REF_D];
    for (int64_t i = 0; i < nx; i++)
      dxs[i] = dx[0][i] + dx[1][i];
    check_close("d x", dxs, r->dx, nx, 1e-5);
  }
  dd_test_name = "torch_layout";
}

static void torch_layernorm(void) {
  dd_layer_spec s[] = {tu_spec("layernorm")};
  dd_model *m = build(s, 1, (dd_shape){2, {REF_T, REF_D}}, REF_B, DD_LOSS_MSE);
  if (!m)
    return;
  dd_layer *l = &m->layers[0];
  set_param(l, "weight", LN_weight, REF_D);
  set_param(l, "bias", LN_bias, REF_D);
  memcpy(m->acts[0], LN_x, sizeof LN_x);
  dd_pass p = {.B = REF_B, .B_global = REF_B};
  CHECK_OK(dd_model_forward(m, &p));
  check_close("layernorm y", m->acts[1], LN_y, REF_B * REF_T * REF_D, 2e-6);
  dd_model_zero_grad(m);
  float dx[REF_B * REF_T * REF_D];
  CHECK_OK(l->kind->backward(l, &p, m->acts[0], m->acts[1], LN_w, dx));
  check_close("layernorm d weight", l->param[0].grad, LN_dweight, REF_D, 1e-5);
  check_close("layernorm d bias", l->param[1].grad, LN_dbias, REF_D, 1e-5);
  check_close("layernorm d x", dx, LN_dx, REF_B * REF_T * REF_D, 1e-5);
  dd_model_free(m);
}

/* Padding cannot leak: changing the inputs at padded steps changes no
 * output at a valid step, and they get no gradient. */
static void padding_is_inert(void) {
  const char *kinds[] = {"rnn", "lstm", "gru"};
  const dd_shape in = {2, {6, 2}};
  int32_t len[2] = {3, 6};
  for (int k = 0; k < 3; k++)
    for (int seq = 0; seq < 2; seq++) {
      dd_layer_spec s[] = {recurrent(kinds[k], 4, seq)};
      dd_model *m = build(s, 1, in, 2, DD_LOSS_MSE);
      if (!m)
        return;
      dd_model_init_params(m, 3);
      dd_pass p = {.B = 2, .B_global = 2, .lengths = len};
      float y0[2 * 6 * 4], dx[2 * 6 * 2];
      for (int i = 0; i < 24; i++)
        m->acts[0][i] = (float)sin(0.7 * i);
      CHECK_OK(dd_model_forward(m, &p));
      memcpy(y0, m->acts[1], sizeof(float) * (size_t)(2 * m->out_size));
      for (int t = 3; t < 6; t++) /* sample 0's padding */
        for (int d = 0; d < 2; d++)
          m->acts[0][t * 2 + d] = 1e3f;
      CHECK_OK(dd_model_forward(m, &p));
      CHECK(memcmp(y0, m->acts[1], sizeof(float) * (size_t)(2 * m->out_size)) == 0);
      if (seq)
        for (int i = 3 * 4; i < 6 * 4; i++)
          CHECK(m->acts[1][i] == 0.0f);
      for (int64_t i = 0; i < 2 * m->out_size; i++)
        m->dbuf[0][i] = 1.0f;
      CHECK_OK(m->layers[0].kind->backward(&m->layers[0], &p, m->acts[0], m->acts[1], m->dbuf[0], dx));
      for (int i = 3 * 2; i < 6 * 2; i++)
        CHECK(dx[i] == 0.0f);
      CHECK(dx[0] != 0.0f && dx[2 * 6 * 2 - 1] != 0.0f);
      dd_model_free(m);
    }
}

/* Softmax cross-entropy over [T, K] outputs: one row per step, padded
 * steps (label -1) out of the loss, the count and the gradient. */
static void per_step_cross_entropy(void) {
  dd_layer_spec s[] = {tu_embedding(6, 3), recurrent("lstm", 4, true), tu_dense(6)};
  dd_model *m = build(s, 3, (dd_shape){1, {4}}, 2, DD_LOSS_CROSS_ENTROPY);
  if (!m)
    return;
  CHECK_INT(m->out_rows, 4);
  CHECK_INT(m->classes, 6);
  dd_model_init_params(m, 5);
  float ids[8] = {1, 2, 1, 0, 5, 4, 3, 3}; /* id 3 only in padding */
  int32_t len[2] = {4, 2}, labels[8] = {2, 3, 0, 1, 4, -1, -1, -1};
  memcpy(m->acts[0], ids, sizeof ids);
  dd_pass p = {.B = 2, .B_global = 2, .lengths = len};
  CHECK_OK(dd_model_forward(m, &p));
  dd_loss_sums sums = {0};
  CHECK_OK(dd_model_loss(m, &p, labels, true, &sums));
  CHECK_INT((int)sums.count, 5);
  CHECK(sums.loss > 0 && sums.correct <= 5);
  for (int r = 5; r < 8; r++)
    for (int k = 0; k < 6; k++)
      CHECK(m->dbuf[0][r * 6 + k] == 0.0f);
  CHECK_OK(dd_model_backward(m, &p));
  /* an id that only occurs in padding gets no gradient */
  dd_param *E = &m->layers[0].param[0];
  for (int k = 0; k < 3; k++)
    CHECK(E->grad[3 * 3 + k] == 0.0f);
  bool some = false;
  for (int k = 0; k < 3; k++)
    some |= E->grad[5 * 3 + k] != 0.0f;
  CHECK(some);
  dd_model_free(m);
}

static void setup_errors(void) {
  dd_layer_spec s[] = {recurrent("lstm", 0, true)};
  dd_model_spec spec = {.input = {2, {4, 3}}, .nlayers = 1, .layers = s};
  dd_model *m = NULL;
  CHECK(dd_model_build(&spec, 2, 0, &m) == DD_ECONFIG);
  CHECK_CONTAINS(dd_error_message(), "needs 'hidden'");
  dd_error_clear();
  dd_layer_spec e[] = {tu_embedding(10, 4)};
  dd_model_spec img = {.input = {3, {1, 4, 4}}, .nlayers = 1, .layers = e};
  CHECK(dd_model_build(&img, 2, 0, &m) == DD_ECONFIG);
  CHECK_CONTAINS(dd_error_message(), "needs token ids [T] per sample");
  dd_error_clear();
  dd_layer_spec big[] = {tu_embedding(1 << 25, 1)};
  dd_model_spec t = {.input = {1, {4}}, .nlayers = 1, .layers = big};
  CHECK(dd_model_build(&t, 2, 0, &m) == DD_ECONFIG);
  CHECK_CONTAINS(dd_error_message(), "above 2^24");
  dd_error_clear();
  /* an id out of range at run time is an error, not a wild read */
  dd_layer_spec ok[] = {tu_embedding(4, 2)};
  dd_model_spec o = {.input = {1, {3}}, .nlayers = 1, .layers = ok};
  CHECK_OK(dd_model_build(&o, 1, 0, &m));
  if (m) {
    m->acts[0][0] = 1;
    m->acts[0][1] = 4;
    m->acts[0][2] = 0;
    dd_pass p = {.B = 1, .B_global = 1};
    CHECK(dd_model_forward(m, &p) == DD_EDATA);
    CHECK_CONTAINS(dd_error_message(), "token id 4");
    dd_error_clear();
    dd_model_free(m);
  }
  CHECK(dd_layer_kind_find("lstm") && dd_layer_kind_find("gru") && dd_layer_kind_find("rnn") &&
        dd_layer_kind_find("embedding") && dd_layer_kind_find("layernorm"));
}

int main(void) {
  RUN(fast_math_accuracy);
  RUN(embedding_values);
  RUN(embedding_gradients);
  RUN(recurrent_gradients);
  RUN(layernorm_gradients);
  RUN(sequence_stacks);
  RUN(torch_layout);
  RUN(torch_layernorm);
  RUN(padding_is_inert);
  RUN(per_step_cross_entropy);
  RUN(setup_errors);
  return dd_test_failures ? 1 : 0;
}
