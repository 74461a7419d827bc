/* layers: kernels against naive loops, finite-difference checks of every
 * layer and loss. */
#include <string.h>

#include "check.h"
#include "ddtrain/layers.h"
#include "gradcheck.h"
#include "specs.h"

DD_TEST_GLOBALS;

static dd_layer_spec dense(int units, bool bias) {
  dd_layer_spec s = tu_dense(units);
  s.bias = bias;
  return s;
}

static void dense_forward_matches_naive(void) {
  enum { B = 4, D = 7, K = 5 };
  float x[B * D], W[K * D], b[K], y[B * K];
  dd_rng r;
  dd_rng_seed(&r, 2, 0);
  for (int i = 0; i < B * D; i++)
    x[i] = (float)dd_rng_normal(&r);
  for (int i = 0; i < K * D; i++)
    W[i] = (float)dd_rng_normal(&r);
  for (int i = 0; i < K; i++)
    b[i] = (float)dd_rng_normal(&r);
  dd_dense_forward(y, x, W, b, B, D, K);
  for (int i = 0; i < B; i++)
    for (int k = 0; k < K; k++) {
      double s = b[k];
      for (int d = 0; d < D; d++)
        s += (double)x[i * D + d] * W[k * D + d];
      CHECK_NEAR(y[i * K + k], s, 1e-5);
    }
}

static void dense_gradients(void) {
  dd_gc_opts o;
  dd_gc_defaults(&o);
  dd_shape in = {1, {6}};
  dd_layer_spec s1[] = {dense(4, true)};
  CHECK_GRADS("dense", s1, 1, in, &o);
  dd_layer_spec s2[] = {dense(3, false)};
  CHECK_GRADS("dense without bias", s2, 1, in, &o);
}

static void activation_gradients(void) {
  dd_gc_opts o;
  dd_gc_defaults(&o);
  dd_shape in = {1, {10}};
  const char *kinds[] = {"relu", "tanh", "sigmoid"};
  for (int i = 0; i < 3; i++) {
    dd_layer_spec s[] = {tu_spec(kinds[i])};
    CHECK_GRADS(kinds[i], s, 1, in, &o);
  }
  dd_shape img = {3, {2, 3, 3}};
  dd_layer_spec f[] = {tu_spec("flatten"), dense(4, true)};
  CHECK_GRADS("flatten+dense", f, 2, img, &o);
}

static void mlp_stack_gradients(void) {
  dd_gc_opts o;
  dd_gc_defaults(&o);
  o.B = 5;
  dd_shape in = {1, {8}};
  /* Smooth activations: the chain rule across layers is what is tested
   * here. ReLU is checked on its own, on inputs away from its kink: inside
   * a stack, a pre-activation within the finite-difference step of 0 makes
   * float32 differences unreliable at the 0.2% level we demand. */
  dd_layer_spec s[] = {dense(16, true), tu_spec("tanh"), dense(12, true), tu_spec("sigmoid"),
                       dense(6, true),  tu_spec("tanh"), dense(3, true)};
  CHECK_GRADS("mlp", s, 7, in, &o);
}

/* Residual blocks (the model graph of issue 15): y = x + f(x), nested, and
 * one at the very start (its input gradient is the model's). */
static dd_layer_spec res(const char *type, int pair) {
  dd_layer_spec s = tu_spec(type);
  s.pair = pair;
  return s;
}

static void residual_gradients(void) {
  dd_gc_opts o;
  dd_gc_defaults(&o);
  o.B = 4;
  dd_shape in = {1, {6}};
  /* 0 dense, [1 2 3 4], [5 6 [7 8 9] 10], 11 dense */
  dd_layer_spec s[] = {dense(6, true),         res("residual", 4),     dense(6, true),         tu_spec("tanh"),
                       res("residual_end", 1), res("residual", 10),    dense(6, true),         res("residual", 9),
                       tu_spec("sigmoid"),     res("residual_end", 7), res("residual_end", 5), dense(3, true)};
  CHECK_GRADS("residual blocks, nested", s, 12, in, &o);
  dd_layer_spec first[] = {res("residual", 3), dense(6, true), tu_spec("tanh"), res("residual_end", 0), dense(2, true)};
  CHECK_GRADS("a residual block first", first, 5, in, &o);
  /* the block adds its input: with f's weights zero the block is the identity */
  dd_model *m = NULL;
  dd_model_spec ms = {.input = in, .nlayers = 5, .layers = first, .loss = DD_LOSS_MSE};
  CHECK_OK(dd_model_build(&ms, 2, 0, &m));
  dd_model_init_params(m, 3);
  for (int64_t i = 0; i < m->layers[1].param[0].size; i++)
    m->layers[1].param[0].data[i] = 0.0f;
  for (int i = 0; i < 12; i++)
    m->acts[0][i] = (float)i - 5.5f;
  dd_pass p = {.B = 2};
  CHECK_OK(dd_model_forward(m, &p));
  for (int i = 0; i < 12; i++) /* tanh(bias 0) = 0 */
    CHECK(m->acts[4][i] == m->acts[0][i]);
  /* the block's start is a view of its input, the rest own their outputs
   * (the nested blocks above run the in-place backward of both ends) */
  CHECK(m->acts[1] == m->acts[0] && m->acts[2] != m->acts[1] && m->acts[4] != m->acts[3]);
  dd_model_free(m);
  /* a block that changes the shape is refused, naming the block */
  dd_layer_spec bad[] = {res("residual", 2), dense(5, true), res("residual_end", 0)};
  dd_model_spec mb = {.input = in, .nlayers = 3, .layers = bad, .loss = DD_LOSS_MSE};
  m = NULL;
  dd_error_clear();
  CHECK(dd_model_build(&mb, 2, 0, &m) == DD_ECONFIG && m == NULL);
  CHECK(strstr(dd_error_message(), "residual block of layers 1-1 turns its input 6 into 5") != NULL);
}

static void activation_values(void) {
  float x[4] = {-2.0f, -0.0f, 0.5f, 80.0f}, y[4];
  dd_relu_forward(y, x, 4);
  CHECK(y[0] == 0.0f && y[2] == 0.5f && y[3] == 80.0f);
  /* NaN propagates, forward and backward, as torch.relu does: a NaN weight cannot turn into zeros */
  float xn[3] = {NAN, -1.0f, 2.0f}, yn[3], dy[3] = {1.0f, 1.0f, 1.0f}, dx[3];
  dd_relu_forward(yn, xn, 3);
  CHECK(isnan(yn[0]) && yn[1] == 0.0f && yn[2] == 2.0f);
  dd_relu_backward(dx, yn, dy, 3);
  CHECK(isnan(dx[0]) && dx[1] == 0.0f && dx[2] == 1.0f);
  dd_sigmoid_forward(y, x, 4);
  CHECK_NEAR(y[2], 1.0 / (1.0 + exp(-0.5)), 1e-6);
  CHECK(y[3] == 1.0f && isfinite(y[3]));
  float big[1] = {-200.0f};
  dd_sigmoid_forward(y, big, 1);
  CHECK(y[0] >= 0.0f && y[0] < 1e-30f); /* no overflow to NaN */
  dd_tanh_forward(y, x, 4);
  CHECK_NEAR(y[0], tanh(-2.0), 1e-6);
}

/* d(sum of losses)/dlogits against central differences */
static void cross_entropy_gradient(void) {
  enum { R = 4, K = 5 };
  float z[R * K], dz[R * K];
  int32_t y[R] = {0, 4, -1, 2}; /* row 2 is masked */
  dd_rng r;
  dd_rng_seed(&r, 5, 0);
  for (int i = 0; i < R * K; i++)
    z[i] = (float)(3.0 * dd_rng_normal(&r));
  dd_loss_sums s = {0};
  dd_cross_entropy(dz, &s, z, y, R, K);
  CHECK_INT((int)s.count, 3);
  for (int k = 0; k < K; k++)
    CHECK(dz[2 * K + k] == 0.0f);
  double naive = 0;
  for (int i = 0; i < R; i++) {
    if (y[i] < 0)
      continue;
    double m = -1e30, sum = 0;
    for (int k = 0; k < K; k++)
      m = fmax(m, z[i * K + k]);
    for (int k = 0; k < K; k++)
      sum += exp(z[i * K + k] - m);
    naive += m + log(sum) - z[i * K + y[i]];
  }
  CHECK_NEAR(s.loss, naive, 1e-6);
  for (int i = 0; i < R * K; i++) {
    float keep = z[i];
    double h = 1e-2;
    dd_loss_sums a = {0}, b = {0};
    z[i] = (float)(keep + h);
    dd_cross_entropy(NULL, &a, z, y, R, K);
    z[i] = (float)(keep - h);
    dd_cross_entropy(NULL, &b, z, y, R, K);
    z[i] = keep;
    CHECK_NEAR(dz[i], (a.loss - b.loss) / (2 * h), 2e-3);
  }
  /* extreme logits stay finite */
  float zz[2] = {1000.0f, -1000.0f}, dd[2];
  int32_t yy[1] = {1};
  dd_loss_sums e = {0};
  dd_cross_entropy(dd, &e, zz, yy, 1, 2);
  CHECK(isfinite(e.loss) && e.loss > 1999.0);
  CHECK(isfinite(dd[0]) && isfinite(dd[1]));
}

static void mse_gradient(void) {
  enum { R = 3, K = 2 };
  float p[R * K] = {0.5f, -1.0f, 2.0f, 0.0f, 3.0f, 1.0f}, t[R * K] = {1, 1, 1, 1, 1, 1}, dp[R * K];
  dd_loss_sums s = {0};
  dd_mse(dp, &s, p, t, R, K);
  CHECK_INT((int)s.count, R * K);
  CHECK_NEAR(s.loss, 0.25 + 4 + 1 + 1 + 4 + 0, 1e-6);
  for (int i = 0; i < R * K; i++) {
    float keep = p[i];
    dd_loss_sums a = {0}, b = {0};
    p[i] = keep + 1e-2f;
    dd_mse(NULL, &a, p, t, R, K);
    p[i] = keep - 1e-2f;
    dd_mse(NULL, &b, p, t, R, K);
    p[i] = keep;
    CHECK_NEAR(dp[i], (a.loss - b.loss) / ((double)(keep + 1e-2f) - (double)(keep - 1e-2f)), 1e-3);
  }
}

static void registry_and_keys(void) {
  CHECK(dd_layer_kind_find("dense") != NULL);
  CHECK(dd_layer_kind_find("nope") == NULL);
  CHECK(dd_layer_key_find("units") >= 0);
  char names[256];
  CHECK_CONTAINS(dd_layer_kind_names(names, sizeof names), "dense");
  dd_layer_spec s;
  dd_layer_spec_defaults(&s, "dense");
  CHECK(s.bias && s.units == 0 && s.stride[0] == 1 && s.stride[1] == 1);
}

int main(void) {
  RUN(dense_forward_matches_naive);
  RUN(dense_gradients);
  RUN(activation_gradients);
  RUN(mlp_stack_gradients);
  RUN(residual_gradients);
  RUN(activation_values);
  RUN(cross_entropy_gradient);
  RUN(mse_gradient);
  RUN(registry_and_keys);
  return dd_test_failures ? 1 : 0;
}
