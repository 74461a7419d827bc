/* Deterministic randomness: xoshiro256**, splitmix64 hashing, permutations. */
#include <math.h>
#include <time.h>

#include "ddtrain/core.h"

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

void dd_rng_seed(dd_rng *r, uint64_t seed, uint64_t stream) {
  uint64_t x = dd_hash3(seed, stream, 0x6464747261696eULL /* "ddtrain" */);
  for (int i = 0; i < 4; i++)
    r->s[i] = splitmix64(&x);
}

uint64_t dd_rng_u64(dd_rng *r) {
  uint64_t *s = r->s;
  uint64_t result = rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

uint64_t dd_rng_below(dd_rng *r, uint64_t n) {
  /* Lemire's method would be faster; rejection keeps it obviously unbiased */
  uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t x;
  do {
    x = dd_rng_u64(r);
  } while (x >= limit);
  return x % n;
}

float dd_rng_uniform(dd_rng *r) {
  return (float)(dd_rng_u64(r) >> 40) * (1.0f / 16777216.0f);
}

double dd_rng_normal(dd_rng *r) {
  /* u1 in (0, 1] so log() is finite */
  double u1 = ((double)(dd_rng_u64(r) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
  double u2 = (double)(dd_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

uint64_t dd_hash3(uint64_t a, uint64_t b, uint64_t c) {
  uint64_t x = a;
  uint64_t h = splitmix64(&x);
  x = h ^ b;
  h = splitmix64(&x);
  x = h ^ c;
  return splitmix64(&x);
}

float dd_hash_uniform(uint64_t h) {
  return (float)(h >> 40) * (1.0f / 16777216.0f);
}

uint64_t dd_fnv1a(const void *data, size_t bytes, uint64_t h) {
  const unsigned char *p = data;
  for (size_t i = 0; i < bytes; i++) {
    h ^= p[i];
    h *= 0x100000001b3ULL;
  }
  return h;
}

void dd_permutation(int64_t *perm, int64_t n, dd_rng *r) {
  for (int64_t i = 0; i < n; i++)
    perm[i] = i;
  for (int64_t i = n - 1; i > 0; i--) {
    int64_t j = (int64_t)dd_rng_below(r, (uint64_t)i + 1);
    int64_t t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
}

double dd_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
