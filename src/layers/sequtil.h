/* Internal to the sequence layers: valid steps of a sequence, branch-free tanh/sigmoid/exp that vectorise, and
 * sums in a fixed order that vectorise. */
#ifndef DDTRAIN_LAYERS_SEQUTIL_H
#define DDTRAIN_LAYERS_SEQUTIL_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "ddtrain/layers.h"

/* Valid steps of sample b of the pass: its length clamped to [0, T], or T
 * without lengths. */
static inline int64_t dd__valid_steps(const dd_pass *p, int b, int64_t T) {
  if (!p->lengths)
    return T;
  const int64_t n = p->lengths[b];
  return n < 0 ? 0 : (n > T ? T : n);
}

/* Element-wise loops whose cost is arithmetic (exp, polynomials), not
 * memory: GCC's -march=native keeps 256-bit vectors on AVX-512 CPUs unless
 * told otherwise; these loops run 1.3-1.4x faster at 512 bits (GELU in L1
 * on a Xeon family 6 model 167, docs/benchmarks.md#gpt). Only a preference: on a
 * CPU without AVX-512 (or a build without -march=native) nothing changes. */
#if defined(__GNUC__) && !defined(__clang__) && (defined(__x86_64__) || defined(__i386__))
#define DD_WIDE __attribute__((target("prefer-vector-width=512")))
#else
#define DD_WIDE
#endif

/* Sums over a row in DD_LANES interleaved partial sums, added pairwise at
 * the end: one fixed order on every CPU and rank (C does not reassociate
 * float additions, so a single running sum is a serial chain of adds;
 * this is what vectorises). The partial sums are a GCC vector (one AVX-512
 * register, two AVX ones, ...): written as arrays, GCC 12 turns these loops
 * into shuffles. */
enum { DD_LANES = 16 };
typedef float dd__vec __attribute__((vector_size(DD_LANES * sizeof(float))));

static inline dd__vec dd__load(const float *x) {
  dd__vec v;
  memcpy(&v, x, sizeof v);
  return v;
}

static inline void dd__store(float *x, dd__vec v) {
  memcpy(x, &v, sizeof v);
}

/* the lanes of v, the tail x[0..k) added to the first k (k < DD_LANES), summed pairwise
 * (lane j += lane j + w for w = 8, 4, 2, 1: shuffles, no trip through memory) */
static inline float dd__lanes_total(dd__vec v, const float *tail, int64_t k) {
  if (k > 0) {
    float t[DD_LANES] = {0};
    memcpy(t, tail, sizeof(float) * (size_t)k);
    v += dd__load(t);
  }
  v += __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7);
  v += __builtin_shufflevector(v, v, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3);
  v += __builtin_shufflevector(v, v, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1);
  v += __builtin_shufflevector(v, v, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0);
  return v[0];
}

/* sum x[i] */
static inline float dd__sum(const float *x, int64_t n) {
  dd__vec a = {0};
  int64_t i = 0;
  for (; i + DD_LANES <= n; i += DD_LANES)
    a += dd__load(x + i);
  return dd__lanes_total(a, x + i, n - i);
}

/* sum x[i] y[i] */
static inline float dd__dot(const float *x, const float *y, int64_t n) {
  dd__vec a = {0};
  int64_t i = 0;
  for (; i + DD_LANES <= n; i += DD_LANES)
    a += dd__load(x + i) * dd__load(y + i);
  float t[DD_LANES];
  for (int64_t j = 0; i + j < n; j++)
    t[j] = x[i + j] * y[i + j];
  return dd__lanes_total(a, t, n - i);
}

/* sum (x[i] - m)^2 */
static inline float dd__sum_sqdev(const float *x, float m, int64_t n) {
  dd__vec a = {0};
  int64_t i = 0;
  for (; i + DD_LANES <= n; i += DD_LANES) {
    const dd__vec d = dd__load(x + i) - m;
    a += d * d;
  }
  float t[DD_LANES];
  for (int64_t j = 0; i + j < n; j++)
    t[j] = (x[i + j] - m) * (x[i + j] - m);
  return dd__lanes_total(a, t, n - i);
}

typedef int32_t dd__ivec __attribute__((vector_size(DD_LANES * sizeof(int32_t))));

/* a where mask (all ones), else b, lane by lane */
static inline dd__vec dd__select(dd__ivec mask, dd__vec a, dd__vec b) {
  return (dd__vec)(((dd__ivec)a & mask) | ((dd__ivec)b & ~mask));
}

/* the larger of a and b in each lane (b where either is NaN: a NaN may be
 * skipped, and reaches the softmax's result through the exp that follows) */
static inline dd__vec dd__vmax(dd__vec a, dd__vec b) {
  return dd__select(a > b, a, b);
}

/* the lanes below k (all ones there, zeros from k on) */
static inline dd__ivec dd__lanes_below(int k) {
  const dd__ivec iota = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
  return iota < k;
}

/* max x[i] over whole lane blocks, n a positive multiple of DD_LANES, in
 * vectors throughout: attention's softmax pads its short rows with -inf to
 * such blocks, where a scalar tail and reduction would cost as much as the
 * row */
static inline float dd__max_blocks(const float *x, int64_t n) {
  dd__vec m = dd__load(x);
  for (int64_t i = DD_LANES; i < n; i += DD_LANES)
    m = dd__vmax(dd__load(x + i), m);
  m = dd__vmax(m, __builtin_shufflevector(m, m, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7));
  m = dd__vmax(m, __builtin_shufflevector(m, m, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3));
  m = dd__vmax(m, __builtin_shufflevector(m, m, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1));
  m = dd__vmax(m, __builtin_shufflevector(m, m, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0));
  return m[0];
}

/* tanh as x p(x^2) / q(x^2) on [-8, 8] (the rational approximation Eigen
 * and TensorFlow use; |error| <= 3.5e-7 against double tanh), x itself for
 * |x| < 4e-4. Selects instead of branches, so loops over it vectorise; NaN
 * propagates. */
static inline float dd__tanh(float x) {
  const float c = 7.99881172180175781f;
  float xc = x > c ? c : x;
  xc = xc < -c ? -c : xc;
  const float x2 = xc * xc;
  float p = -2.76076847742355e-16f;
  p = p * x2 + 2.00018790482477e-13f;
  p = p * x2 - 8.60467152213735e-11f;
  p = p * x2 + 5.12229709037114e-08f;
  p = p * x2 + 1.48572235717979e-05f;
  p = p * x2 + 6.37261928875436e-04f;
  p = p * x2 + 4.89352455891786e-03f;
  float q = 1.19825839466702e-06f;
  q = q * x2 + 1.18534705686654e-04f;
  q = q * x2 + 2.26843463243900e-03f;
  q = q * x2 + 4.89352518554385e-03f;
  const float r = xc * p / q;
  return fabsf(x) < 0.0004f ? x : r;
}

/* sigmoid(x) = (1 + tanh(x / 2)) / 2: absolute error <= 2e-7. */
static inline float dd__sigmoid(float x) {
  return 0.5f + 0.5f * dd__tanh(0.5f * x);
}

/* exp(x) as 2^n exp(r), n = round(x / ln 2), |r| <= ln(2) / 2, with
 * Cephes' expf polynomial for exp(r) (relative error below 2 ulp, tested):
 * selects and integer bit operations only, so loops over it vectorise
 * (softmax, GELU). Saturates at exp(88) = 1.65e38 above, gives 0 below
 * x = -87 (no subnormals); NaN propagates. */
static inline float dd__exp(float x) {
  const float hi = 88.0f, lo = -87.0f, shifter = 0x1.8p23f; /* 1.5 * 2^23: rounds to an integer */
  float xc = x > hi ? hi : x;
  xc = xc < lo ? lo : xc;
  const float j = xc * 1.44269504088896341f + shifter; /* n in the low mantissa bits */
  const float n = j - shifter;
  const float r = (xc - n * 0.693359375f) - n * -2.12194440e-4f; /* ln 2 in two parts */
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float e = p * r * r + r + 1.0f;
  uint32_t jb;
  memcpy(&jb, &j, sizeof jb);
  const uint32_t sb = (jb - 0x4b400000u + 127u) << 23; /* the bits of 2^n */
  float s;
  memcpy(&s, &sb, sizeof s);
  return x < lo ? 0.0f : e * s;
}

#endif
