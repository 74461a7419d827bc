/* ddtrain tensor kernels: the only module that talks to BLAS (cblas.h).
 *
 * All matrices are row-major float32. Shapes use the BLAS names:
 * C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C[M,N]. */
#ifndef DDTRAIN_TENSOR_H
#define DDTRAIN_TENSOR_H

#include <stdbool.h>
#include <stdint.h>

/* Row-major sgemm; trans_a/trans_b select op() = transpose. lda/ldb/ldc are
 * the row strides of A, B and C as stored. */
void dd_tensor_gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                    const float *B, int ldb, float beta, float *C, int ldc);

/* y[n] += alpha * x[n] */
void dd_tensor_axpy(int64_t n, float alpha, const float *x, float *y);
/* x[n] *= alpha */
void dd_tensor_scale(int64_t n, float alpha, float *x);

/* BLAS threads for this process (OpenBLAS). n <= 0 leaves the library
 * default (OPENBLAS_NUM_THREADS or all cores). */
void dd_tensor_set_threads(int n);
int dd_tensor_threads(void);
/* "OpenBLAS 0.3.21 ... " for --version and benchmark logs; never NULL. */
const char *dd_tensor_blas_info(void);

#endif
