/* ddtrain tensor kernels: the only module that talks to BLAS (cblas.h).
 *
 * All matrices are row-major float32. Shapes use the BLAS names:
 * C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C[M,N]. */
#ifndef DDTRAIN_TENSOR_H
#define DDTRAIN_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Row-major sgemm; trans_a/trans_b select op() = transpose. lda/ldb/ldc are
 * the row strides of A, B and C as stored. */
void dd_tensor_gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                    const float *B, int ldb, float beta, float *C, int ldc);

/* Measured sgemm FLOP/s at the current thread count: the best 512^3
 * product over about `seconds` (the peak against which MFU is reported). */
double dd_tensor_gemm_peak(double seconds);

/* y[n] += alpha * x[n] */
void dd_tensor_axpy(int64_t n, float alpha, const float *x, float *y);
/* x[n] *= alpha */
void dd_tensor_scale(int64_t n, float alpha, float *x);

/* BLAS threads for this process (OpenBLAS). n <= 0 leaves the library
 * default (OPENBLAS_NUM_THREADS or all cores). */
void dd_tensor_set_threads(int n);
int dd_tensor_threads(void);
/* Can OpenBLAS map the work buffers of `threads` BLAS threads (<= 0: its
 * current count)? It retries forever when it cannot, so ask first. 0 if so,
 * else -1 with the reason and the numbers in why. */
int dd_tensor_blas_memory_check(int threads, char *why, size_t n);

/* "OpenBLAS 0.3.21 ... " for --version and benchmark logs; never NULL. */
const char *dd_tensor_blas_info(void);

/* ---- BLAS kernel sets (src/tensor/kernels.c) ----
 * OpenBLAS's DYNAMIC_ARCH builds carry one kernel set per processor family
 * and pick one when the library loads, from the CPU model; a CPU newer than
 * the library gets its generic SSE3 "Prescott" set. ddtrain reads the CPU's
 * features itself and, if OpenBLAS picked a weaker set than the CPU runs,
 * has the program re-executed with OPENBLAS_CORETYPE naming the best one
 * (docs/blas-kernels.md). */

/* Kernel-set levels: the widest instructions a set uses. */
enum { DD_KL_SSE = 1, DD_KL_AVX, DD_KL_AVX2, DD_KL_AVX512, DD_KL_AVX512_BF16 };

/* What the processor and the OS offer (x86 CPUID and XCR0; all false elsewhere). */
typedef struct dd_cpu {
  char vendor[13]; /* "GenuineIntel", "AuthenticAMD", ... or "unknown" */
  int family, model;
  bool avx, avx2, fma, avx512f, avx512bw, avx512vl, avx512dq, avx512cd, avx512bf16;
  bool os_avx, os_avx512; /* the OS saves the YMM / ZMM and opmask registers */
} dd_cpu;

void dd_tensor_cpu_detect(dd_cpu *c);
/* The highest DD_KL_* level the CPU and its OS can run. */
int dd_tensor_cpu_level(const dd_cpu *c);
/* Level of an OpenBLAS kernel-set name (case-insensitive), -1 if unknown. */
int dd_tensor_kernel_level(const char *name);
/* "AVX2+FMA", ... for messages; never NULL. */
const char *dd_tensor_kernel_level_name(int level);

/* The decision, as a pure function: the kernel set to run instead of
 * `picked` (OpenBLAS's own choice), or NULL to keep it. Only a set of a
 * higher level than `picked` that the CPU supports, that is in `available`
 * and not in `rejected` (both comma-separated names) qualifies; the
 * strongest wins. A `picked` name we do not know is always kept. */
const char *dd_tensor_kernel_choose(const dd_cpu *c, const char *picked, const char *available, const char *rejected);

/* The kernel set OpenBLAS runs in this process ("Haswell"); never NULL. */
const char *dd_tensor_kernel_current(void);
/* The kernel sets of the linked OpenBLAS, comma-separated into buf ("" if
 * it is not a DYNAMIC_ARCH build, where OPENBLAS_CORETYPE does nothing). */
void dd_tensor_kernels_available(char *buf, size_t n);

/* Check the kernels in use: the CPU supports their instructions, and sgemm
 * in every transpose combination, with beta 0 and 1, on small shapes, the
 * reference models' shapes and shapes past the cache blocking, equals the
 * exact result (integer data; no tolerance). An illegal instruction or a
 * crash inside the kernels counts as a failure. Returns 0, or non-zero
 * with the first wrong entry described in why. About 10 ms. */
int dd_tensor_kernel_selfcheck(char *why, size_t nwhy);

/* Process start-up (the CLI calls it first thing, before MPI): decide the
 * kernel set from the CPU, OpenBLAS's pick and the environment
 * (OPENBLAS_CORETYPE set by the user is kept; DD_BLAS_AUTO=0 turns the
 * choice off). Returns 1 when the program must now re-execute itself
 * (execv of the same binary and arguments) to load the chosen set; the
 * environment is already updated. In the re-executed process the choice is
 * self-checked; a set that fails is rejected and the next one tried, so the
 * whole sequence ends, at worst, with OpenBLAS's own choice. */
int dd_tensor_kernel_select(void);
/* The re-execution did not happen (why: the system's message). */
void dd_tensor_kernel_exec_failed(const char *why);

typedef struct dd_blas_kernels {
  char name[32];      /* kernel set in use */
  char origin[16];    /* "default" (OpenBLAS's), "auto" (ddtrain's), "user" (OPENBLAS_CORETYPE), "off" */
  char picked[32];    /* what OpenBLAS picked by itself */
  char rejected[160]; /* sets that failed the self-check, comma-separated */
  char reason[400];   /* why the first of them failed, or why no re-execution happened */
  bool verified;      /* the self-check ran and passed in this process */
  int cpu_level;      /* DD_KL_* of this CPU */
  char cpu_best[32];  /* the kernel set of that level */
  char cpu[48];       /* "GenuineIntel family 6 model 207" */
} dd_blas_kernels;

void dd_tensor_kernel_info(dd_blas_kernels *k);
/* One line for headers and --version: "Cooperlake, chosen by ddtrain (...)". */
const char *dd_tensor_kernel_summary(char *buf, size_t n);

#endif
