/* Test assertions that print both compared values (and keep going). */
#ifndef DDTRAIN_TEST_CHECK_H
#define DDTRAIN_TEST_CHECK_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

extern int dd_test_failures;
extern const char *dd_test_name;

#define DD_FAIL_AT(fmt, ...)                                                                                           \
  do {                                                                                                                 \
    fprintf(stderr, "FAIL %s:%d [%s]: " fmt "\n", __FILE__, __LINE__, dd_test_name ? dd_test_name : "", __VA_ARGS__);  \
    dd_test_failures++;                                                                                                \
  } while (0)

#define CHECK(cond)                                                                                                    \
  do {                                                                                                                 \
    if (!(cond))                                                                                                       \
      DD_FAIL_AT("%s", #cond);                                                                                         \
  } while (0)

#define CHECK_INT(a, b)                                                                                                \
  do {                                                                                                                 \
    long long a_ = (long long)(a), b_ = (long long)(b);                                                                \
    if (a_ != b_)                                                                                                      \
      DD_FAIL_AT("%s == %s: %lld != %lld", #a, #b, a_, b_);                                                            \
  } while (0)

#define CHECK_OK(expr)                                                                                                 \
  do {                                                                                                                 \
    int rc_ = (expr);                                                                                                  \
    if (rc_ != 0)                                                                                                      \
      DD_FAIL_AT("%s returned %d (%s): %s", #expr, rc_, dd_strerror(rc_), dd_error_message());                         \
  } while (0)

/* |a - b| <= tol * max(1, |a|, |b|), both finite (an infinity would scale
 * its own tolerance to infinity) */
#define CHECK_NEAR(a, b, tol)                                                                                          \
  do {                                                                                                                 \
    double a_ = (double)(a), b_ = (double)(b);                                                                         \
    double s_ = fmax(1.0, fmax(fabs(a_), fabs(b_)));                                                                   \
    if (!isfinite(a_) || !isfinite(b_) || !(fabs(a_ - b_) <= (tol)*s_))                                                \
      DD_FAIL_AT("%s ~ %s: %.9g vs %.9g (tol %g)", #a, #b, a_, b_, (double)(tol));                                     \
  } while (0)

#define CHECK_CONTAINS(hay, needle)                                                                                    \
  do {                                                                                                                 \
    const char *h_ = (hay), *n_ = (needle);                                                                            \
    if (!h_ || !strstr(h_, n_))                                                                                        \
      DD_FAIL_AT("'%s' does not contain '%s'", h_ ? h_ : "(null)", n_);                                                \
  } while (0)

/* The worst of a series of errors, for worst = worst_of(worst, e) in place
 * of fmax(worst, e) (which drops a NaN): a NaN, once seen, is the worst and
 * stays, so a final !(worst <= tol) fails on it. */
static inline double worst_of(double worst, double e) {
  if (isnan(worst))
    return worst;
  return e <= worst ? worst : e;
}

/* got[0..n) against reference values want[0..n) (e.g. from PyTorch):
 * |got - want| <= tol * max(1, |want|) for every entry, NaN and infinities
 * failing; a failure names the first bad entry, the worst finite one and
 * how many are bad. */
static inline void check_close(const char *what, const float *got, const float *want, int64_t n, double tol) {
  double worst = 0;
  int64_t at = -1, first = -1, bad = 0;
  for (int64_t i = 0; i < n; i++) {
    double e = fabs((double)got[i] - want[i]) / fmax(1.0, fabs((double)want[i]));
    bool ok = isfinite(got[i]) && isfinite(want[i]) && e <= tol;
    if (!ok && bad++ == 0)
      first = i;
    if (isfinite(e) && (at < 0 || e > worst)) {
      worst = e;
      at = i;
    }
  }
  if (bad)
    DD_FAIL_AT("%s: %lld of %lld entries off (tol %g); first [%lld]: %.9g, reference %.9g; worst finite %.3g at [%lld]",
               what, (long long)bad, (long long)n, tol, (long long)first, (double)got[first], (double)want[first],
               worst, (long long)at);
}

/* Define the globals once per test program. */
#define DD_TEST_GLOBALS                                                                                                \
  int dd_test_failures;                                                                                                \
  const char *dd_test_name

#define RUN(fn)                                                                                                        \
  do {                                                                                                                 \
    dd_test_name = #fn;                                                                                                \
    int before_ = dd_test_failures;                                                                                    \
    fn();                                                                                                              \
    printf("%s %s\n", dd_test_failures == before_ ? "ok  " : "FAIL", #fn);                                             \
  } while (0)

#endif
