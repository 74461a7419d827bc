/* Internal to attention.c: the per-head products (attnprod.c). */
#ifndef DDTRAIN_LAYERS_ATTNPROD_H
#define DDTRAIN_LAYERS_ATTNPROD_H

#include <stdbool.h>
#include <stdint.h>

#include "sequtil.h"

/* The per-head products, written here rather than as OpenBLAS calls: at the
 * example's shapes (64 x 64 x 32) a call costs as much as its arithmetic,
 * there are 24 of them per sample and layer, and a GEMM computes the masked
 * triangle too. Two kernels, each a register tile of 16-lane vectors (one
 * AVX-512 register, two AVX ones) in the vector form of sequtil.h. Every sum
 * runs over its index in increasing order, the same for every tiling and
 * vector width; its multiply-adds are FMAs where the build's target has
 * them (as OpenBLAS's GEMM kernels are), so like the GEMMs the last bits
 * differ between CPUs with and without FMA.
 *
 *   dot_rows:  C[i, j] = alpha sum_e A[i, e] Bt[e, j]  (S = q k^T, dP = dO v^T)
 *              with the keys packed transposed, Bt [E, np]; causal rows
 *              stop at the 16-key block holding key i
 *   axpy_rows: C[r, c] = alpha sum_s A(r, s) B[s, c]   (O = P v, dq = dS k,
 *              and with A transposed dv = P^T dO, dk = dS^T q)
 *              over all s < n, or only s <= r (lower) or s >= r (upper); a
 *              tile of rows sums over the union of its rows' ranges, which
 *              adds exact zeros: the masked entries of P and dS are 0 */
enum { DD_ATTN_ALL, DD_ATTN_LOWER, DD_ATTN_UPPER };

static inline int64_t dd__lane_pad(int64_t n) {
  return (n + DD_LANES - 1) / DD_LANES * DD_LANES;
}

/* t[e np + j] = x[j ld + e] for j < n, zero for n <= j < np (np a multiple of 16) */
DD_WIDE void dd__attn_pack_t(float *t, const float *x, int ld, int n, int np, int E);

/* rows i < m of C, keys j < n (causal: j <= i), in blocks of 16 keys; C's row
 * stride ldc and Bt's np hold whole blocks */
DD_WIDE void dd__attn_dot_rows(float *C, int ldc, const float *A, int lda, const float *Bt, int np, int m, int n, int E,
                               float alpha, bool causal);

/* rows r < m of C [m, E] (row stride ldc): A(r, s) = A[r ar + s as], B rows
 * of E at stride ldb, s < n within the range (DD_ATTN_ALL / _LOWER / _UPPER) */
DD_WIDE void dd__attn_axpy_rows(float *C, int ldc, const float *A, int64_t ar, int64_t as, const float *B, int ldb,
                                int m, int n, int E, float alpha, int range);

#endif
