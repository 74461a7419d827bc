/* core: status table, error messages, allocation, RNG, permutations. */
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "ddtrain/core.h"

DD_TEST_GLOBALS;

static void status_table(void) {
  CHECK(strcmp(dd_strerror(DD_OK), "success") == 0);
  CHECK(strcmp(dd_strerror(DD_EDATA), "bad dataset") == 0);
  CHECK(strcmp(dd_status_name(DD_ECONFIG), "DD_ECONFIG") == 0);
  CHECK(strcmp(dd_strerror(-9999), "unknown error") == 0);
}

static void first_message_wins(void) {
  dd_error_clear();
  CHECK_INT(dd_error(DD_EIO, "inner %d", 1), DD_EIO);
  dd_error(DD_EDATA, "outer");
  CHECK(strcmp(dd_error_message(), "inner 1") == 0);
  dd_error_clear();
  CHECK(strcmp(dd_error_message(), "") == 0);
  dd_error(DD_EIO, "two\nlines");
  CHECK(strchr(dd_error_message(), '\n') == NULL); /* messages stay on one line */
  dd_error_clear();
}

static void alloc_checks(void) {
  float *p = dd_alloc(1000, sizeof(float));
  CHECK(p != NULL);
  CHECK_INT((uintptr_t)p % DD_ALIGN, 0);
  int zero = 1;
  for (int i = 0; i < 1000; i++)
    zero &= p[i] == 0.0f;
  CHECK(zero);
  dd_free(p);
  dd_free(NULL);
  dd_error_clear();
  CHECK(dd_alloc(SIZE_MAX / 2, 4) == NULL); /* overflow is refused, not wrapped */
  CHECK_CONTAINS(dd_error_message(), "overflows");
  dd_error_clear();
}

static void rng_determinism(void) {
  dd_rng a, b, c;
  dd_rng_seed(&a, 42, 1);
  dd_rng_seed(&b, 42, 1);
  dd_rng_seed(&c, 42, 2);
  int same = 1, differ = 0;
  for (int i = 0; i < 100; i++) {
    uint64_t x = dd_rng_u64(&a), y = dd_rng_u64(&b), z = dd_rng_u64(&c);
    same &= x == y;
    differ += x != z;
  }
  CHECK(same);
  CHECK(differ > 95);
  /* moments of uniform and normal */
  dd_rng_seed(&a, 7, 0);
  double su = 0, sn = 0, sn2 = 0;
  int n = 200000;
  for (int i = 0; i < n; i++) {
    float u = dd_rng_uniform(&a);
    CHECK(u >= 0.0f && u < 1.0f);
    su += u;
    double g = dd_rng_normal(&a);
    sn += g;
    sn2 += g * g;
  }
  CHECK_NEAR(su / n, 0.5, 0.01);
  CHECK_NEAR(sn / n, 0.0, 0.01);
  CHECK_NEAR(sn2 / n, 1.0, 0.02);
  /* below(): every residue reachable, none out of range */
  int hits[7] = {0};
  for (int i = 0; i < 7000; i++) {
    uint64_t v = dd_rng_below(&a, 7);
    CHECK(v < 7);
    hits[v < 7 ? v : 0]++;
  }
  for (int i = 0; i < 7; i++)
    CHECK(hits[i] > 800);
}

static void hashes(void) {
  CHECK(dd_hash3(1, 2, 3) == dd_hash3(1, 2, 3));
  CHECK(dd_hash3(1, 2, 3) != dd_hash3(1, 2, 4));
  CHECK(dd_hash3(1, 2, 3) != dd_hash3(2, 1, 3));
  float u = dd_hash_uniform(dd_hash3(5, 6, 7));
  CHECK(u >= 0.0f && u < 1.0f);
  const char s[] = "abc";
  CHECK(dd_fnv1a(s, 3, DD_FNV_OFFSET) == 0xe71fa2190541574bULL); /* FNV-1a 64 of "abc" */
}

static void permutation(void) {
  enum { N = 1000 };
  int64_t p[N];
  dd_rng r;
  dd_rng_seed(&r, 3, 0);
  dd_permutation(p, N, &r);
  int seen[N] = {0}, moved = 0;
  for (int i = 0; i < N; i++) {
    CHECK(p[i] >= 0 && p[i] < N);
    if (p[i] >= 0 && p[i] < N)
      seen[p[i]]++;
    moved += p[i] != i;
  }
  for (int i = 0; i < N; i++)
    CHECK_INT(seen[i], 1);
  CHECK(moved > 900);
}

int main(void) {
  RUN(status_table);
  RUN(first_message_wins);
  RUN(alloc_checks);
  RUN(rng_determinism);
  RUN(hashes);
  RUN(permutation);
  return dd_test_failures ? 1 : 0;
}
