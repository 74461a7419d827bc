/* The per-head products of attention (attention.c): two GEMM-like kernels over register tiles. Compiled with
 * -ffp-contract=fast (src/CMakeLists.txt), alone: their multiply-adds become FMAs where the target has them,
 * as in OpenBLAS's GEMMs; the element-wise kernels elsewhere stay uncontracted. */

#include "attnprod.h"

/* Tiles of 16 accumulators with AVX-512's 32 vector registers, 8 elsewhere
 * (AVX's 16 registers hold 8 of these 16-lane vectors; SSE's only 4, so
 * there the tiles spill, which costs speed only) */
enum { TILE_ROWS = 4, AXPY_VECS = 2 };
#ifdef __AVX512F__
#define DOT_VECS 4 /* a macro: the dispatch below has its cases under #if */
#define AXPY_ROWS 8
#else
#define DOT_VECS 2
#define AXPY_ROWS 4
#endif

/* One stage of a 16 x 16 transpose: rows i and i + w (bit w of i clear)
 * swap the entries whose column has bit w set with the other row's entries
 * w columns before. The four stages (w = 8, 4, 2, 1) swap (i, c) with
 * (c, i): 64 two-register shuffles per 256 values, where a scalar transpose
 * makes 256 strided loads and stores. */
#define TRANSPOSE_STAGE(r, w, lo, hi)                                                                                  \
  for (int i = 0; i < DD_LANES; i++)                                                                                   \
    if (!(i & (w))) {                                                                                                  \
      const dd__vec a_ = r[i], b_ = r[i + (w)];                                                                        \
      r[i] = __builtin_shufflevector(a_, b_, lo);                                                                      \
      r[i + (w)] = __builtin_shufflevector(a_, b_, hi);                                                                \
    }
#define T8_LO 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23
#define T8_HI 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31
#define T4_LO 0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27
#define T4_HI 4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31
#define T2_LO 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29
#define T2_HI 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31
#define T1_LO 0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30
#define T1_HI 1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31

/* t[e np + j] = x[j ld + e] for j < n, zero for n <= j < np: whole 16 x 16
 * blocks through registers (rows past n read as zeros), then the channels
 * past the last whole block one by one */
DD_WIDE void dd__attn_pack_t(float *t, const float *x, int ld, int n, int np, int E) {
  const int E16 = E / DD_LANES * DD_LANES;
  for (int j0 = 0; j0 < np; j0 += DD_LANES)
    for (int e0 = 0; e0 < E16; e0 += DD_LANES) {
      dd__vec r[DD_LANES];
      for (int i = 0; i < DD_LANES; i++)
        r[i] = j0 + i < n ? dd__load(x + (int64_t)(j0 + i) * ld + e0) : (dd__vec){0};
      TRANSPOSE_STAGE(r, 8, T8_LO, T8_HI)
      TRANSPOSE_STAGE(r, 4, T4_LO, T4_HI)
      TRANSPOSE_STAGE(r, 2, T2_LO, T2_HI)
      TRANSPOSE_STAGE(r, 1, T1_LO, T1_HI)
      for (int i = 0; i < DD_LANES; i++)
        dd__store(t + (int64_t)(e0 + i) * np + j0, r[i]);
    }
  for (int e = E16; e < E; e++)
    for (int j = 0; j < np; j++)
      t[(int64_t)e * np + j] = j < n ? x[(int64_t)j * ld + e] : 0.0f;
}

static inline __attribute__((always_inline)) void dot_tile(float *C, int ldc, const float *A, int lda, const float *Bt,
                                                           int np, int E, float alpha, const int R, const int NB) {
  dd__vec acc[TILE_ROWS][DOT_VECS];
  for (int r = 0; r < R; r++)
    for (int k = 0; k < NB; k++)
      acc[r][k] = (dd__vec){0};
  for (int e = 0; e < E; e++) {
    dd__vec b[DOT_VECS];
    for (int k = 0; k < NB; k++)
      b[k] = dd__load(Bt + (int64_t)e * np + k * DD_LANES);
    for (int r = 0; r < R; r++) {
      const float a = A[(int64_t)r * lda + e];
      for (int k = 0; k < NB; k++)
        acc[r][k] += a * b[k];
    }
  }
  for (int r = 0; r < R; r++)
    for (int k = 0; k < NB; k++)
      dd__store(C + (int64_t)r * ldc + k * DD_LANES, acc[r][k] * alpha);
}

/* rows i < m of C, keys j < n (causal: j <= i), in blocks of 16 keys; C's row
 * stride ldc and Bt's np hold whole blocks */
DD_WIDE void dd__attn_dot_rows(float *C, int ldc, const float *A, int lda, const float *Bt, int np, int m, int n, int E,
                               float alpha, bool causal) {
  for (int i0 = 0; i0 < m;) {
    const int R = m - i0 >= TILE_ROWS ? TILE_ROWS : 1;
    const int jmax = causal ? (i0 + R < n ? i0 + R : n) : n;
    const int blocks = (jmax + DD_LANES - 1) / DD_LANES;
    float *c = C + (int64_t)i0 * ldc;
    const float *a = A + (int64_t)i0 * lda;
    for (int k0 = 0; k0 < blocks; k0 += DOT_VECS) {
      const int nb = blocks - k0 < DOT_VECS ? blocks - k0 : DOT_VECS, j0 = k0 * DD_LANES;
#define DOT_CASE(NB)                                                                                                   \
  case NB:                                                                                                             \
    if (R == TILE_ROWS)                                                                                                \
      dot_tile(c + j0, ldc, a, lda, Bt + j0, np, E, alpha, TILE_ROWS, NB);                                             \
    else                                                                                                               \
      dot_tile(c + j0, ldc, a, lda, Bt + j0, np, E, alpha, 1, NB);                                                     \
    break;
      switch (nb) {
        DOT_CASE(1)
        DOT_CASE(2)
#if DOT_VECS == 4
        DOT_CASE(3)
        DOT_CASE(4)
#endif
      }
#undef DOT_CASE
    }
    i0 += R;
  }
}

static inline __attribute__((always_inline)) void axpy_tile(float *C, int ldc, const float *A, int64_t ar, int64_t as,
                                                            const float *B, int ldb, int s0, int s1, float alpha,
                                                            const int R, const int NV) {
  dd__vec acc[AXPY_ROWS][AXPY_VECS];
  for (int r = 0; r < R; r++)
    for (int v = 0; v < NV; v++)
      acc[r][v] = (dd__vec){0};
  for (int s = s0; s < s1; s++) {
    dd__vec b[AXPY_VECS];
    for (int v = 0; v < NV; v++)
      b[v] = dd__load(B + (int64_t)s * ldb + v * DD_LANES);
    for (int r = 0; r < R; r++) {
      const float a = A[r * ar + s * as];
      for (int v = 0; v < NV; v++)
        acc[r][v] += a * b[v];
    }
  }
  for (int r = 0; r < R; r++)
    for (int v = 0; v < NV; v++)
      dd__store(C + (int64_t)r * ldc + v * DD_LANES, acc[r][v] * alpha);
}

/* rows r < m of C [m, E]: A(r, s) = A[r ar + s as], B rows of E at stride ldb */
DD_WIDE void dd__attn_axpy_rows(float *C, int ldc, const float *A, int64_t ar, int64_t as, const float *B, int ldb,
                                int m, int n, int E, float alpha, int range) {
  for (int r0 = 0; r0 < m;) {
    const int R = m - r0 >= AXPY_ROWS ? AXPY_ROWS : m - r0 >= AXPY_ROWS / 2 ? AXPY_ROWS / 2 : 1;
    const int s0 = range == DD_ATTN_UPPER ? r0 : 0;
    const int s1 = range == DD_ATTN_LOWER ? (r0 + R < n ? r0 + R : n) : n;
    float *c = C + (int64_t)r0 * ldc;
    const float *a = A + r0 * ar;
    int c0 = 0;
#define AXPY_TILE(NV)                                                                                                  \
  do {                                                                                                                 \
    if (R == AXPY_ROWS)                                                                                                \
      axpy_tile(c + c0, ldc, a, ar, as, B + c0, ldb, s0, s1, alpha, AXPY_ROWS, NV);                                    \
    else if (R == AXPY_ROWS / 2)                                                                                       \
      axpy_tile(c + c0, ldc, a, ar, as, B + c0, ldb, s0, s1, alpha, AXPY_ROWS / 2, NV);                                \
    else                                                                                                               \
      axpy_tile(c + c0, ldc, a, ar, as, B + c0, ldb, s0, s1, alpha, 1, NV);                                            \
  } while (0)
    for (; c0 + AXPY_VECS * DD_LANES <= E; c0 += AXPY_VECS * DD_LANES)
      AXPY_TILE(AXPY_VECS);
    for (; c0 + DD_LANES <= E; c0 += DD_LANES)
      AXPY_TILE(1);
#undef AXPY_TILE
    for (int r = 0; r < R; r++) /* channels past the last whole vector, in the same order */
      for (int cc = c0; cc < E; cc++) {
        float t = 0.0f;
        for (int s = s0; s < s1; s++)
          t += a[r * ar + s * as] * B[(int64_t)s * ldb + cc];
        c[(int64_t)r * ldc + cc] = t * alpha;
      }
    r0 += R;
  }
}
