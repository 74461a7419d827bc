/* The test suite's own judges: the comparators count NaN and infinities as
 * failures, and the gradient checker catches a wrong gradient. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

#include "check.h"
#include "gradcheck.h"
#include "specs.h"
#include "trainutil.h"

DD_TEST_GLOBALS;

/* Run stmt with stderr silenced and count the failures it records (taking
 * them back off the counter); the expected failures' messages would only
 * confuse a reader of the log. */
static int quiet_failures_begin(int *saved_fd) {
  fflush(stderr);
  *saved_fd = dup(2);
  FILE *null = fopen("/dev/null", "w");
  if (null) {
    dup2(fileno(null), 2);
    fclose(null);
  }
  return dd_test_failures;
}

static int quiet_failures_end(int saved_fd, int before) {
  fflush(stderr);
  if (saved_fd >= 0) {
    dup2(saved_fd, 2);
    close(saved_fd);
  }
  int counted = dd_test_failures - before;
  dd_test_failures = before;
  return counted;
}

#define EXPECT_FAILURES(n, stmt)                                                                                       \
  do {                                                                                                                 \
    int fd_, before_ = quiet_failures_begin(&fd_);                                                                     \
    stmt;                                                                                                              \
    int counted_ = quiet_failures_end(fd_, before_);                                                                   \
    if (counted_ != (n))                                                                                               \
      DD_FAIL_AT("%s recorded %d failure(s), expected %d", #stmt, counted_, (n));                                      \
  } while (0)

enum { N = 8 };

/* want, and got = want except where the caller spoils it */
static void fill(float *want, float *got) {
  for (int i = 0; i < N; i++)
    want[i] = got[i] = 0.5f * (float)i - 1.0f;
}

static void check_close_sees_nan_and_inf(void) {
  float want[N], got[N];
  fill(want, got);
  EXPECT_FAILURES(0, check_close("same", got, want, N, 1e-6));
  for (int i = 1; i < N; i++) /* NaN everywhere but entry 0: fmax-style tracking would pass this */
    got[i] = NAN;
  EXPECT_FAILURES(1, check_close("nan but one", got, want, N, 1e-6));
  fill(want, got);
  got[3] = INFINITY;
  EXPECT_FAILURES(1, check_close("inf", got, want, N, 1e-6));
  fill(want, got);
  want[5] = -INFINITY; /* a broken reference is a failure too */
  EXPECT_FAILURES(1, check_close("inf reference", got, want, N, 1e-6));
  fill(want, got);
  got[2] += 1e-3f;
  EXPECT_FAILURES(1, check_close("off", got, want, N, 1e-4));
}

static void check_near_sees_nan_and_inf(void) {
  EXPECT_FAILURES(0, CHECK_NEAR(1.0, 1.0 + 1e-9, 1e-6));
  EXPECT_FAILURES(1, CHECK_NEAR(NAN, 1.0, 1e-6));
  EXPECT_FAILURES(1, CHECK_NEAR(1.0, NAN, 1e-6));
  EXPECT_FAILURES(1, CHECK_NEAR(INFINITY, 1.0, 1e-6)); /* its tolerance would scale to infinity */
  EXPECT_FAILURES(1, CHECK_NEAR(INFINITY, INFINITY, 1e-6));
}

static void worst_of_keeps_nan(void) {
  double w = 0;
  const double e[] = {1e-7, NAN, 3e-7, 2e-7};
  for (int i = 0; i < 4; i++)
    w = worst_of(w, e[i]);
  CHECK(isnan(w)); /* fmax would give 3e-7 */
  w = worst_of(worst_of(0, 1e-7), INFINITY);
  CHECK(!(w <= 1e-6));
  CHECK(worst_of(worst_of(0, 1e-7), 3e-7) == 3e-7);
}

static void rel_diff_sees_nan_and_inf(void) {
  float want[N], got[N];
  fill(want, got);
  double d = tu_rel_diff(got, want, N);
  CHECK(d == 0.0);
  for (int i = 1; i < N; i++)
    got[i] = NAN;
  d = tu_rel_diff(got, want, N);
  if (d <= 1e-5) /* how the MPI tests judge it: !(d <= tol) */
    DD_FAIL_AT("NaN everywhere but one entry: rel diff %g passes", d);
  fill(want, got);
  got[N - 1] = INFINITY;
  d = tu_rel_diff(got, want, N);
  if (d <= 1e-5)
    DD_FAIL_AT("an infinity: rel diff %g passes", d);
  fill(want, got);
  want[0] = NAN;
  d = tu_rel_diff(got, want, N);
  if (d <= 1e-5)
    DD_FAIL_AT("a NaN reference: rel diff %g passes", d);
}

static void gradcheck_measure_sees_nan_and_inf(void) {
  CHECK(dd_gc_err(1.0, 1.001, 2e-3, 1.0, 0.0) <= 1);
  CHECK(!(dd_gc_err(1.0, 1.01, 2e-3, 1.0, 0.0) <= 1));
  CHECK(dd_gc_err(0.0, 1e-5, 2e-3, 0.0, 1e-4) <= 1); /* a true zero within the noise floor */
  CHECK(!(dd_gc_err(0.0, 1e-3, 2e-3, 0.0, 1e-4) <= 1));
  CHECK(!(dd_gc_err(NAN, 1.0, 2e-3, 1.0, 1e-4) <= 1));
  CHECK(!(dd_gc_err(1.0, NAN, 2e-3, 1.0, 1e-4) <= 1));
  CHECK(!(dd_gc_err(INFINITY, INFINITY, 2e-3, INFINITY, 1e-4) <= 1));
  CHECK(!(dd_gc_err(1.0, INFINITY, 2e-3, 1.0, 1e-4) <= 1));
  CHECK(!(dd_gc_err(1.0, 1.0, 2e-3, 1.0, INFINITY) <= 1)); /* an infinite floor would pass anything */
  CHECK(!(dd_gc_err(1.0, 1.0, 2e-3, 1.0, NAN) <= 1));
}

/* ---- the gradient checker catches wrong gradients ------------------------ */

typedef enum { SPOIL_NONE, SPOIL_ONE_ENTRY, SPOIL_ROW, SPOIL_TENSOR, SPOIL_ZERO_TRUTH, SPOIL_NAN, SPOIL_INF_DX } spoil;

typedef struct tamper_spec {
  spoil how;
  const char *tensor; /* name in the model */
  double amount;
} tamper_spec;

static dd_param *find_param(const dd_model *m, const char *name) {
  for (int t = 0; t < m->ntensors; t++)
    if (strcmp(m->tensors[t].name, name) == 0)
      return m->tensors[t].param;
  return NULL;
}

static void tamper(const dd_model *m, float *grads, float *dx, void *ctx) {
  const tamper_spec *ts = ctx;
  if (ts->how == SPOIL_NONE)
    return;
  if (ts->how == SPOIL_INF_DX) {
    dx[1] = INFINITY;
    return;
  }
  dd_param *p = find_param(m, ts->tensor);
  if (!p) {
    DD_FAIL_AT("no tensor %s", ts->tensor);
    return;
  }
  float *g = grads + p->offset;
  int64_t big = 0; /* the largest entry: its error is not hidden under the noise floor */
  for (int64_t i = 0; i < p->size; i++)
    if (fabsf(g[i]) > fabsf(g[big]))
      big = i;
  switch (ts->how) {
  case SPOIL_ONE_ENTRY:
    g[big] *= (float)ts->amount;
    break;
  case SPOIL_ROW: /* weight [out, in]: output unit 1's row */
    for (int64_t j = 0; j < p->dims[1]; j++)
      g[p->dims[1] + j] = 0;
    break;
  case SPOIL_TENSOR:
    for (int64_t i = 0; i < p->size; i++)
      g[i] *= (float)ts->amount;
    break;
  case SPOIL_ZERO_TRUTH: /* a gradient that should be 0 (bias before batch norm) gets ts->amount */
    for (int64_t i = 0; i < p->size; i++)
      g[i] = (float)ts->amount;
    break;
  case SPOIL_NAN:
    g[p->size - 1] = NAN;
    break;
  default:
    break;
  }
}

/* Fails of dd_gradcheck for a stack with the analytic gradient spoiled. */
static int spoiled_fails(const dd_layer_spec *s, int n, dd_shape in, const dd_gc_opts *base, tamper_spec ts,
                         double *worst) {
  dd_gc_opts o = *base;
  o.tamper = tamper;
  o.tamper_ctx = &ts;
  int fd, before = quiet_failures_begin(&fd); /* the checker prints what it caught */
  int fails = dd_gradcheck("spoiled", s, n, in, &o, worst);
  quiet_failures_end(fd, before);
  return fails;
}

#define EXPECT_CAUGHT(what, s, n, in, o, ts)                                                                           \
  do {                                                                                                                 \
    double w_;                                                                                                         \
    int f_ = spoiled_fails((s), (n), (in), (o), (ts), &w_);                                                            \
    if (f_ == 0)                                                                                                       \
      DD_FAIL_AT("%s: not caught (worst error %.3g of allowed)", (what), w_);                                          \
  } while (0)

/* A dense-tanh-dense stack: 20 and 12 weights, every entry checked. */
static void catches_small_errors(void) {
  dd_gc_opts o;
  dd_gc_defaults(&o);
  dd_shape in = {1, {5}};
  dd_layer_spec s[] = {tu_dense(4), tu_spec("tanh"), tu_dense(3)};
  double worst;
  int fails = spoiled_fails(s, 3, in, &o, (tamper_spec){SPOIL_NONE, NULL, 0}, &worst);
  CHECK_INT(fails, 0);
  CHECK(worst <= 1);
  EXPECT_CAUGHT("one weight entry off by 1%", s, 3, in, &o, ((tamper_spec){SPOIL_ONE_ENTRY, "layer0/weight", 1.01}));
  EXPECT_CAUGHT("one bias entry off by 1%", s, 3, in, &o, ((tamper_spec){SPOIL_ONE_ENTRY, "layer2/bias", 0.99}));
  EXPECT_CAUGHT("a weight tensor off by 1%", s, 3, in, &o, ((tamper_spec){SPOIL_TENSOR, "layer2/weight", 1.01}));
  EXPECT_CAUGHT("a sign flip", s, 3, in, &o, ((tamper_spec){SPOIL_TENSOR, "layer0/bias", -1}));
  EXPECT_CAUGHT("a NaN entry", s, 3, in, &o, ((tamper_spec){SPOIL_NAN, "layer0/weight", 0}));
  EXPECT_CAUGHT("an infinite d x", s, 3, in, &o, ((tamper_spec){SPOIL_INF_DX, NULL, 0}));
  o.tamper = tamper;
  tamper_spec nan = {SPOIL_NAN, "layer2/weight", 0};
  o.tamper_ctx = &nan;
  int fd, before = quiet_failures_begin(&fd);
  dd_gradcheck("nan", s, 3, in, &o, &worst);
  quiet_failures_end(fd, before);
  CHECK(isnan(worst)); /* the worst error reported is the NaN, not the largest finite one */
}

/* 40 -> 30 weights: 1200 entries, 24 of them sampled; a zeroed row is
 * found by the directional checks. */
static void catches_a_zeroed_row(void) {
  dd_gc_opts o;
  dd_gc_defaults(&o);
  dd_shape in = {1, {40}};
  dd_layer_spec s[] = {tu_dense(30), tu_spec("tanh"), tu_dense(3)};
  double worst;
  CHECK_INT(spoiled_fails(s, 3, in, &o, (tamper_spec){SPOIL_NONE, NULL, 0}, &worst), 0);
  EXPECT_CAUGHT("a zeroed weight row", s, 3, in, &o, ((tamper_spec){SPOIL_ROW, "layer0/weight", 0}));
}

/* The bias of a dense layer before batch norm has gradient exactly 0 (batch
 * norm removes any shift): the noise floor lets its numeric value (rounding
 * noise, up to 1e-4 here) pass, but not an analytic value of 1e-2. */
static void catches_a_nonzero_true_zero(void) {
  dd_gc_opts o;
  dd_gc_defaults(&o);
  o.B = 6;
  o.param_scale = 0.3;
  o.train = true;
  dd_shape in = {1, {5}};
  dd_layer_spec s[] = {tu_dense(4), tu_spec("batchnorm"), tu_spec("tanh"), tu_dense(3)};
  double worst;
  CHECK_INT(spoiled_fails(s, 4, in, &o, (tamper_spec){SPOIL_NONE, NULL, 0}, &worst), 0);
  /* the model's largest gradient entries are about 6 (layer0/weight); a
   * bias gradient of 4e-4 is caught already */
  EXPECT_CAUGHT("bias before batch norm at 1e-2", s, 4, in, &o, ((tamper_spec){SPOIL_ZERO_TRUTH, "layer0/bias", 1e-2}));
}

int main(void) {
  RUN(check_close_sees_nan_and_inf);
  RUN(check_near_sees_nan_and_inf);
  RUN(worst_of_keeps_nan);
  RUN(rel_diff_sees_nan_and_inf);
  RUN(gradcheck_measure_sees_nan_and_inf);
  RUN(catches_small_errors);
  RUN(catches_a_zeroed_row);
  RUN(catches_a_nonzero_true_zero);
  return dd_test_failures ? 1 : 0;
}
