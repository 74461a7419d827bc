/* data: seeded bijections and epoch orders are permutations, reproducible, epoch-dependent and well mixed. */
#include <math.h>
#include <string.h>

#include "check.h"
#include "ddtrain/core.h"
#include "ddtrain/data.h"

DD_TEST_GLOBALS;

/* every value of [0, n) exactly once */
static bool is_permutation(const int64_t *v, int64_t n) {
  unsigned char *seen = dd_alloc((size_t)(n > 0 ? n : 1), 1);
  bool ok = seen != NULL;
  for (int64_t i = 0; ok && i < n; i++) {
    ok = v[i] >= 0 && v[i] < n && !seen[v[i]];
    if (ok)
      seen[v[i]] = 1;
  }
  dd_free(seen);
  return ok;
}

static void bijections(void) {
  const uint64_t sizes[] = {1, 2, 3, 5, 7, 8, 9, 100, 255, 256, 257, 1000, 4097, 65537};
  for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
    uint64_t n = sizes[s];
    dd_bij b;
    dd_bij_init(&b, n, 0x1234 + s);
    int64_t *v = dd_alloc(n, sizeof(int64_t));
    int bad_inv = 0;
    for (uint64_t i = 0; i < n; i++) {
      v[i] = (int64_t)dd_bij_at(&b, i);
      bad_inv += dd_bij_inv(&b, (uint64_t)v[i]) != i;
    }
    if (!is_permutation(v, (int64_t)n))
      DD_FAIL_AT("bijection of [0, %llu) is not a permutation", (unsigned long long)n);
    CHECK_INT(bad_inv, 0);
    dd_free(v);
  }
  /* large n: spot checks of the inverse, values in range */
  dd_bij b;
  dd_bij_init(&b, 100000000007ULL, 99);
  int bad = 0;
  for (uint64_t i = 0; i < 100000; i++) {
    uint64_t x = i * 1000003ULL % 100000000007ULL, y = dd_bij_at(&b, x);
    bad += y >= 100000000007ULL || dd_bij_inv(&b, y) != x;
  }
  CHECK_INT(bad, 0);
}

/* position-vs-row correlation near 0 and few fixed neighbours: the order is mixed */
static void check_mixed(const char *what, const int64_t *v, int64_t n) {
  double sx = 0, sy = 0, sxy = 0, sxx = 0, syy = 0;
  int64_t adjacent = 0;
  for (int64_t i = 0; i < n; i++) {
    double x = (double)i, y = (double)v[i];
    sx += x;
    sy += y;
    sxy += x * y;
    sxx += x * x;
    syy += y * y;
    adjacent += i > 0 && (v[i] == v[i - 1] + 1 || v[i] == v[i - 1] - 1);
  }
  double cov = sxy / (double)n - sx * sy / ((double)n * (double)n);
  double corr = cov / sqrt((sxx / (double)n - sx * sx / ((double)n * (double)n)) *
                           (syy / (double)n - sy * sy / ((double)n * (double)n)));
  /* a random permutation: |corr| ~ 1/sqrt(n), about 2 adjacent pairs */
  if (!(fabs(corr) <= 5.0 / sqrt((double)n)))
    DD_FAIL_AT("%s: position/row correlation %.4f", what, corr);
  if (!(adjacent <= 12))
    DD_FAIL_AT("%s: %lld neighbours kept next to each other", what, (long long)adjacent);
}

static void orders(int kind, int64_t n, int64_t chunk, int64_t window) {
  dd_order a, b, c;
  CHECK_OK(dd_order_init(&a, kind, n, 5, 3, chunk, window));
  CHECK_OK(dd_order_init(&b, kind, n, 5, 3, chunk, window));
  CHECK_OK(dd_order_init(&c, kind, n, 5, 4, chunk, window));
  int64_t *va = dd_alloc((size_t)n, sizeof(int64_t)), *vc = dd_alloc((size_t)n, sizeof(int64_t));
  int64_t same_b = 0, same_c = 0;
  for (int64_t p = 0; p < n; p++) {
    va[p] = dd_order_row(&a, p);
    vc[p] = dd_order_row(&c, p);
    same_b += dd_order_row(&b, p) == va[p];
    same_c += vc[p] == va[p];
  }
  char what[96];
  snprintf(what, sizeof what, "order kind %d n %lld chunk %lld window %lld", kind, (long long)n, (long long)chunk,
           (long long)window);
  if (!is_permutation(va, n) || !is_permutation(vc, n))
    DD_FAIL_AT("%s: not every sample exactly once", what);
  CHECK_INT(same_b, n);       /* reproducible */
  CHECK(same_c < n / 20 + 3); /* another epoch, another order */
  if (kind != DD_ORDER_CHUNKS && n >= 1000)
    check_mixed(what, va, n);
  if (kind == DD_ORDER_CHUNKS) {
    /* the positions of each window read exactly its W chunks (only the
     * window with the short last chunk is shorter) */
    int64_t worst = 0, W = a.window;
    for (int64_t w = 0; w < a.nwin; w++) {
      int64_t shift = a.short_slot >= 0 && w > a.short_slot / W ? chunk - a.last : 0;
      int64_t s0 = w * W * chunk - shift, s1 = (w + 1) * W * chunk - shift;
      if (a.short_slot >= 0 && w == a.short_slot / W)
        s1 -= chunk - a.last;
      if (s1 > n)
        s1 = n;
      int64_t distinct = 0;
      unsigned char *seen = dd_alloc((size_t)a.nchunks, 1);
      for (int64_t p = s0; p < s1; p++) {
        distinct += !seen[va[p] / chunk];
        seen[va[p] / chunk] = 1;
      }
      dd_free(seen);
      worst = distinct > worst ? distinct : worst;
    }
    if (!(worst <= W))
      DD_FAIL_AT("%s: a window's positions read %lld chunks", what, (long long)worst);
  }
  dd_free(va);
  dd_free(vc);
  dd_order_free(&a);
  dd_order_free(&b);
  dd_order_free(&c);
}

static void global_orders(void) {
  const int64_t ns[] = {1, 2, 3, 10, 997, 1024, 1025, 20000};
  for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++)
    orders(DD_ORDER_GLOBAL, ns[i], 0, 0);
}

static void chunk_orders(void) {
  orders(DD_ORDER_CHUNKS, 1000, 100, 4);  /* whole chunks */
  orders(DD_ORDER_CHUNKS, 1001, 100, 4);  /* a 1-row last chunk */
  orders(DD_ORDER_CHUNKS, 1099, 100, 4);  /* a 99-row last chunk */
  orders(DD_ORDER_CHUNKS, 1099, 100, 1);  /* windows of one chunk */
  orders(DD_ORDER_CHUNKS, 1099, 100, 64); /* one window: a global shuffle */
  orders(DD_ORDER_CHUNKS, 57, 1, 8);      /* chunks of one row */
  orders(DD_ORDER_CHUNKS, 5, 100, 4);     /* one partial chunk */
  orders(DD_ORDER_CHUNKS, 20000, 333, 7);
  dd_order o;
  CHECK(dd_order_init(&o, DD_ORDER_CHUNKS, 10, 1, 0, 0, 4) != 0);
  dd_error_clear();
}

static void legacy_order(void) {
  /* the permutation of ddtrain 0.1's checkpoints, position by position */
  enum { N = 300 };
  int64_t perm[N];
  dd_sampler_permutation(perm, N, 7, 2);
  dd_order o;
  CHECK_OK(dd_order_init(&o, DD_ORDER_LEGACY, N, 7, 2, 0, 0));
  int same = 0;
  for (int p = 0; p < N; p++)
    same += dd_order_row(&o, p) == perm[p];
  CHECK_INT(same, N);
  dd_order_free(&o);
  orders(DD_ORDER_LEGACY, 1000, 0, 0);
}

int main(void) {
  RUN(bijections);
  RUN(global_orders);
  RUN(chunk_orders);
  RUN(legacy_order);
  return dd_test_failures ? 1 : 0;
}
