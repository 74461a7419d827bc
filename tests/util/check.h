/* Test assertions that print both compared values (and keep going). */
#ifndef DDTRAIN_TEST_CHECK_H
#define DDTRAIN_TEST_CHECK_H

#include <math.h>
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

/* |a - b| <= tol * max(1, |a|, |b|) */
#define CHECK_NEAR(a, b, tol)                                                                                          \
  do {                                                                                                                 \
    double a_ = (double)(a), b_ = (double)(b);                                                                         \
    double s_ = fmax(1.0, fmax(fabs(a_), fabs(b_)));                                                                   \
    if (!(fabs(a_ - b_) <= (tol)*s_))                                                                                  \
      DD_FAIL_AT("%s ~ %s: %.9g vs %.9g (tol %g)", #a, #b, a_, b_, (double)(tol));                                     \
  } while (0)

#define CHECK_CONTAINS(hay, needle)                                                                                    \
  do {                                                                                                                 \
    const char *h_ = (hay), *n_ = (needle);                                                                            \
    if (!h_ || !strstr(h_, n_))                                                                                        \
      DD_FAIL_AT("'%s' does not contain '%s'", h_ ? h_ : "(null)", n_);                                                \
  } while (0)

/* got[0..n) against reference values want[0..n) (e.g. from PyTorch):
 * |got - want| <= tol * max(1, |want|); a failure names the worst entry. */
static inline void check_close(const char *what, const float *got, const float *want, int64_t n, double tol) {
  double worst = 0;
  int64_t at = 0;
  for (int64_t i = 0; i < n; i++) {
    double e = fabs((double)got[i] - want[i]) / fmax(1.0, fabs((double)want[i]));
    if (e > worst) {
      worst = e;
      at = i;
    }
  }
  if (!(worst <= tol))
    DD_FAIL_AT("%s[%lld]: %.9g, reference %.9g (tol %g)", what, (long long)at, (double)got[at], (double)want[at], tol);
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
