/* The test suite's own judges: the comparators count NaN and infinities as
 * failures. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

#include "check.h"
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

int main(void) {
  RUN(check_close_sees_nan_and_inf);
  RUN(check_near_sees_nan_and_inf);
  RUN(worst_of_keeps_nan);
  RUN(rel_diff_sees_nan_and_inf);
  return dd_test_failures ? 1 : 0;
}
