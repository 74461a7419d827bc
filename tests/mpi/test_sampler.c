/* sampler: per-rank shards of every global batch are disjoint, cover the
 * epoch exactly once, are reproducible for a seed and differ between epochs. */
#include <string.h>

#include "check.h"
#include "ddtrain/data.h"
#include "trainutil.h"

DD_TEST_GLOBALS;
static dd_comm *world;

/* every rank marks the positions it would train on; the sum over ranks must
 * be exactly one visit per sample (minus the dropped tail with drop_last) */
static void coverage(int64_t n, int64_t B, bool drop_last, int64_t epoch) {
  int P = dd_comm_size(world), r = dd_comm_rank(world);
  int64_t *perm = dd_alloc((size_t)n, sizeof(int64_t));
  double *visits = dd_alloc((size_t)n, sizeof(double));
  dd_sampler_permutation(perm, n, 11, epoch);
  int64_t nb = dd_sampler_batches(n, B, drop_last), total = 0;
  for (int64_t b = 0; b < nb; b++) {
    int64_t g = dd_sampler_batch_size(n, B, b), lo, hi;
    CHECK(g >= 1 && g <= B);
    total += g;
    dd_sampler_shard(g, P, r, &lo, &hi);
    CHECK(hi - lo >= g / P && hi - lo <= g / P + 1); /* balanced within one sample */
    for (int64_t i = lo; i < hi; i++)
      visits[perm[b * B + i]] += 1.0;
  }
  CHECK_INT(total, drop_last ? n / B * B : n);
  dd_comm_allreduce_f64(world, visits, n);
  int64_t once = 0, never = 0, more = 0;
  for (int64_t i = 0; i < n; i++) {
    once += visits[i] == 1.0;
    never += visits[i] == 0.0;
    more += visits[i] > 1.0;
  }
  CHECK_INT(more, 0);
  CHECK_INT(once, drop_last ? n / B * B : n);
  CHECK_INT(never, drop_last ? n % B : 0);
  dd_free(perm);
  dd_free(visits);
}

static void shards_cover_each_epoch(void) {
  coverage(1000, 64, false, 0);
  coverage(1000, 64, true, 1);
  coverage(37, 5, false, 2); /* last global batch smaller than 4 ranks */
  coverage(7, 7, false, 3);  /* one batch */
  coverage(10, 3, true, 4);
}

static void reproducible_and_epoch_dependent(void) {
  enum { N = 500 };
  int64_t a[N], b[N], c[N];
  dd_sampler_permutation(a, N, 5, 3);
  dd_sampler_permutation(b, N, 5, 3);
  dd_sampler_permutation(c, N, 5, 4);
  CHECK(memcmp(a, b, sizeof a) == 0);
  int same = 0;
  for (int i = 0; i < N; i++)
    same += a[i] == c[i];
  CHECK(same < 20);
  /* every rank computed the same permutation */
  bool all_same = false;
  CHECK_OK(dd_comm_same_u64(world, dd_fnv1a(a, sizeof a, DD_FNV_OFFSET), &all_same));
  CHECK(all_same);
}

static void shard_boundaries(void) {
  int64_t lo, hi;
  dd_sampler_shard(10, 4, 0, &lo, &hi);
  CHECK(lo == 0 && hi == 3);
  dd_sampler_shard(10, 4, 3, &lo, &hi);
  CHECK(lo == 8 && hi == 10);
  dd_sampler_shard(2, 4, 3, &lo, &hi);
  CHECK_INT(hi - lo, 0);
  CHECK_INT(dd_sampler_batches(10, 3, false), 4);
  CHECK_INT(dd_sampler_batches(10, 3, true), 3);
  CHECK_INT(dd_sampler_batch_size(10, 3, 3), 1);
}

int main(int argc, char **argv) {
  if (dd_comm_init(&argc, &argv, &world))
    return 2;
  RUN(shards_cover_each_epoch);
  RUN(reproducible_and_epoch_dependent);
  RUN(shard_boundaries);
  int f = tu_total_failures(world);
  dd_comm_finalize(world);
  return f ? 1 : 0;
}
