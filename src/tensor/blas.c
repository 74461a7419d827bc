/* BLAS behind one door: sgemm, axpy, scal and thread control (OpenBLAS). */
#define _GNU_SOURCE /* MAP_ANONYMOUS, MAP_NORESERVE */
#include <cblas.h>
#include <stdio.h>
#include <sys/mman.h>

#include "ddtrain/core.h"
#include "ddtrain/tensor.h"

/* openblas_set_num_threads & co. come from OpenBLAS's cblas.h: a build
 * against another CBLAS fails at compile time rather than running slowly. */

void dd_tensor_gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                    const float *B, int ldb, float beta, float *C, int ldc) {
  if (M <= 0 || N <= 0)
    return;
  if (K <= 0) {
    /* BLAS leaves C untouched for K == 0 only when beta == 1 */
    for (int i = 0; i < M; i++)
      for (int j = 0; j < N; j++)
        C[(int64_t)i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[(int64_t)i * ldc + j];
    return;
  }
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, M, N, K, alpha,
              A, lda, B, ldb, beta, C, ldc);
}

double dd_tensor_gemm_peak(double seconds) {
  enum { N = 512 };
  float *a = dd_alloc((size_t)3 * N * N, sizeof(float));
  if (!a)
    return 0.0;
  for (int i = 0; i < 3 * N * N; i++)
    a[i] = (float)(i % 17) * 0.01f;
  dd_tensor_gemm(false, false, N, N, N, 1.0f, a, N, a + N * N, N, 0.0f, a + 2 * N * N, N); /* warm up */
  double best = 0.0, t_end = dd_now() + seconds;
  do { /* the best of short runs: a noisy neighbour lowers some of them */
    const double t = dd_now();
    dd_tensor_gemm(false, false, N, N, N, 1.0f, a, N, a + N * N, N, 0.0f, a + 2 * N * N, N);
    const double dt = dd_now() - t, f = 2.0 * N * N * N / (dt > 0 ? dt : 1e-9);
    best = f > best ? f : best;
  } while (dd_now() < t_end);
  dd_free(a);
  return best;
}

void dd_tensor_axpy(int64_t n, float alpha, const float *x, float *y) {
  for (int64_t i = 0; i < n; i++)
    y[i] += alpha * x[i];
}

void dd_tensor_scale(int64_t n, float alpha, float *x) {
  for (int64_t i = 0; i < n; i++)
    x[i] *= alpha;
}

void dd_tensor_set_threads(int n) {
  if (n > 0)
    openblas_set_num_threads(n);
}

int dd_tensor_threads(void) {
  return openblas_get_num_threads();
}

const char *dd_tensor_blas_info(void) {
  const char *c = openblas_get_config();
  return c ? c : "unknown BLAS";
}

/* OpenBLAS maps a 128 MiB work buffer (BUFFER_SIZE of its x86-64 builds) per
 * computing thread at the first BLAS call, and when the mapping fails it
 * retries forever. Whether the address space has room is known beforehand:
 * map that much (without touching it) and give it back. */
enum { BLAS_BUFFER_BYTES = 136 << 20 }; /* 128 MiB and its guard pages */

int dd_tensor_blas_memory_check(int threads, char *why, size_t n) {
  if (threads < 1)
    threads = openblas_get_num_threads();
  size_t bytes = (size_t)threads * BLAS_BUFFER_BYTES;
  void *p = mmap(NULL, bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    snprintf(
        why, n,
        "OpenBLAS needs %zu MiB of address space for the work buffers of %d BLAS thread(s) and this process cannot "
        "map them (an address-space limit, ulimit -v?): raise the limit or run fewer BLAS threads "
        "(train.threads, OPENBLAS_NUM_THREADS)",
        bytes >> 20, threads);
    return -1;
  }
  munmap(p, bytes);
  return 0;
}
