/* optim: SGD update rules against values worked out by hand. */
#include "check.h"
#include "ddtrain/core.h"
#include "ddtrain/optim.h"

DD_TEST_GLOBALS;

/* Run `steps` updates on one parameter with gradient sequence g[]. */
static double run_sgd(dd_optim_spec s, double p0, const double *g, int steps, double scale) {
  dd_optim *o = NULL;
  CHECK_OK(dd_optim_create(&s, 1, &o));
  if (!o)
    return NAN;
  float p = (float)p0;
  for (int t = 0; t < steps; t++) {
    float gr = (float)g[t];
    dd_optim_step(o, &p, &gr, (float)scale, s.lr);
  }
  CHECK_INT(o->t, steps);
  dd_optim_free(o);
  return p;
}

static void plain_sgd(void) {
  dd_optim_spec s;
  dd_optim_spec_defaults(&s);
  s.lr = 0.1;
  double g[3] = {1.0, -2.0, 0.5};
  /* p = 1 - 0.1 * (1 - 2 + 0.5) = 1.05 */
  CHECK_NEAR(run_sgd(s, 1.0, g, 3, 1.0), 1.05, 1e-6);
  /* grad_scale divides summed gradients: scale 0.5 halves every step */
  CHECK_NEAR(run_sgd(s, 1.0, g, 3, 0.5), 1.025, 1e-6);
}

static void weight_decay(void) {
  dd_optim_spec s;
  dd_optim_spec_defaults(&s);
  s.lr = 0.1;
  s.weight_decay = 0.5;
  double g[2] = {0.0, 0.0};
  /* p <- p - lr * wd * p = 0.95 p, twice: 2 * 0.9025 */
  CHECK_NEAR(run_sgd(s, 2.0, g, 2, 1.0), 1.805, 1e-6);
}

static void momentum_pytorch_semantics(void) {
  dd_optim_spec s;
  dd_optim_spec_defaults(&s);
  s.lr = 0.1;
  s.momentum = 0.9;
  double g[3] = {1.0, 1.0, 1.0};
  /* PyTorch: buf1 = g = 1; buf2 = 0.9 + 1 = 1.9; buf3 = 1.71 + 1 = 2.71
   * p = 0 - 0.1 * (1 + 1.9 + 2.71) = -0.561 */
  CHECK_NEAR(run_sgd(s, 0.0, g, 3, 1.0), -0.561, 1e-6);
  s.dampening = 0.5;
  /* buf1 = 1 (no dampening on the first step); buf2 = 0.9 + 0.5 = 1.4; buf3 = 1.26 + 0.5 = 1.76
   * p = -0.1 * (1 + 1.4 + 1.76) = -0.416 */
  CHECK_NEAR(run_sgd(s, 0.0, g, 3, 1.0), -0.416, 1e-6);
}

static void nesterov(void) {
  dd_optim_spec s;
  dd_optim_spec_defaults(&s);
  s.lr = 0.1;
  s.momentum = 0.9;
  s.nesterov = true;
  double g[2] = {1.0, 1.0};
  /* step 1: buf = 1, d = 1 + 0.9 * 1 = 1.9; step 2: buf = 1.9, d = 1 + 0.9 * 1.9 = 2.71
   * p = -0.1 * (1.9 + 2.71) = -0.461 */
  CHECK_NEAR(run_sgd(s, 0.0, g, 2, 1.0), -0.461, 1e-6);
}

static void validation_errors(void) {
  dd_optim_spec s;
  dd_optim_spec_defaults(&s);
  dd_optim *o = NULL;
  s.lr = -1;
  dd_error_clear();
  CHECK(dd_optim_create(&s, 1, &o) == DD_ECONFIG);
  CHECK_CONTAINS(dd_error_message(), "optim.lr");
  dd_optim_spec_defaults(&s);
  s.momentum = 1.0;
  dd_error_clear();
  CHECK(dd_optim_create(&s, 1, &o) == DD_ECONFIG);
  CHECK_CONTAINS(dd_error_message(), "optim.momentum");
  dd_error_clear();
  CHECK_INT(dd_optim_find("sgd"), DD_OPTIM_SGD);
  CHECK_INT(dd_optim_find("nope"), -1);
}

static void state_shapes(void) {
  dd_optim_spec s;
  dd_optim_spec_defaults(&s);
  dd_optim *o = NULL;
  CHECK_OK(dd_optim_create(&s, 10, &o));
  CHECK_INT(o ? o->nstate : -1, 0); /* plain SGD keeps no state */
  dd_optim_free(o);
  s.momentum = 0.5;
  CHECK_OK(dd_optim_create(&s, 10, &o));
  CHECK_INT(o ? o->nstate : -1, 1);
  dd_optim_free(o);
  dd_optim_free(NULL);
}

int main(void) {
  RUN(plain_sgd);
  RUN(weight_decay);
  RUN(momentum_pytorch_semantics);
  RUN(nesterov);
  RUN(validation_errors);
  RUN(state_shapes);
  return dd_test_failures ? 1 : 0;
}
