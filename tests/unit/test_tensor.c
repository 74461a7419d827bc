/* tensor: sgemm in every transpose combination against naive loops. */
#include "check.h"
#include "ddtrain/core.h"
#include "ddtrain/tensor.h"

DD_TEST_GLOBALS;

static void naive(bool ta, bool tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
                  float beta, float *C, int ldc) {
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) {
      double s = 0;
      for (int k = 0; k < K; k++) {
        double a = ta ? A[k * lda + i] : A[i * lda + k];
        double b = tb ? B[j * ldb + k] : B[k * ldb + j];
        s += a * b;
      }
      C[i * ldc + j] = (float)(alpha * s + (beta == 0.0f ? 0.0 : beta * C[i * ldc + j]));
    }
}

static void gemm_all_transposes(void) {
  dd_rng r;
  dd_rng_seed(&r, 1, 0);
  const int shapes[][3] = {{1, 1, 1}, {3, 5, 7}, {17, 9, 33}, {64, 65, 31}, {5, 128, 1}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
    for (int t = 0; t < 4; t++) {
      bool ta = t & 1, tb = t & 2;
      int lda = (ta ? M : K) + 2, ldb = (tb ? K : N) + 1, ldc = N + 3; /* padded strides */
      float *A = dd_alloc((size_t)(lda * (ta ? K : M)), 4), *B = dd_alloc((size_t)(ldb * (tb ? N : K)), 4);
      float *C = dd_alloc((size_t)(ldc * M), 4), *R = dd_alloc((size_t)(ldc * M), 4);
      for (int i = 0; i < lda * (ta ? K : M); i++)
        A[i] = (float)dd_rng_normal(&r);
      for (int i = 0; i < ldb * (tb ? N : K); i++)
        B[i] = (float)dd_rng_normal(&r);
      for (int i = 0; i < ldc * M; i++)
        C[i] = R[i] = (float)dd_rng_normal(&r);
      float beta = (t % 2) ? 1.0f : 0.5f;
      dd_tensor_gemm(ta, tb, M, N, K, 0.75f, A, lda, B, ldb, beta, C, ldc);
      naive(ta, tb, M, N, K, 0.75f, A, lda, B, ldb, beta, R, ldc);
      double worst = 0;
      for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++)
          worst = worst_of(worst, fabs(C[i * ldc + j] - R[i * ldc + j]) / (1 + fabs(R[i * ldc + j])));
      if (!(worst <= 1e-4))
        DD_FAIL_AT("gemm %dx%dx%d ta=%d tb=%d: max rel diff %g", M, N, K, ta, tb, worst);
      dd_free(A);
      dd_free(B);
      dd_free(C);
      dd_free(R);
    }
  }
}

static void gemm_empty_k(void) {
  float C[4] = {1, 2, 3, 4};
  dd_tensor_gemm(false, false, 2, 2, 0, 1.0f, NULL, 1, NULL, 2, 0.0f, C, 2);
  CHECK(C[0] == 0.0f && C[3] == 0.0f); /* beta = 0 clears even without a product */
  float D[2] = {1, 2};
  dd_tensor_gemm(false, false, 1, 2, 0, 1.0f, NULL, 1, NULL, 2, 2.0f, D, 2);
  CHECK(D[0] == 2.0f && D[1] == 4.0f);
}

static void vector_ops(void) {
  float x[5] = {1, 2, 3, 4, 5}, y[5] = {1, 1, 1, 1, 1};
  dd_tensor_axpy(5, 2.0f, x, y);
  CHECK(y[0] == 3.0f && y[4] == 11.0f);
  dd_tensor_scale(5, 0.5f, y);
  CHECK(y[0] == 1.5f && y[4] == 5.5f);
  dd_tensor_set_threads(1);
  CHECK_INT(dd_tensor_threads(), 1);
  CHECK_CONTAINS(dd_tensor_blas_info(), "OpenBLAS");
}

int main(void) {
  RUN(gemm_all_transposes);
  RUN(gemm_empty_k);
  RUN(vector_ops);
  return dd_test_failures ? 1 : 0;
}
