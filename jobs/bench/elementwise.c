/* elementwise.c - CPU time of the GPT example's element-wise passes, without data loading or MPI.
 *
 * Built with the tests (target bench_elementwise, build/release/bench_elementwise); run from the repository root:
 *   OPENBLAS_NUM_THREADS=1 build/release/bench_elementwise [rows [reps]]
 * Defaults: rows = 2048 (32 sequences of 64 steps). GELU over [rows, 512] (the MLP's hidden activations) and,
 * for comparison, over 8192 values that stay in L1: the layer's path (forward with the derivative, then
 * dx = dy g) against the two kernels that recompute the exp in backward; LayerNorm over [rows, 128] forward
 * and backward. Each figure is the best of reps passes in thread CPU time, per element or per pass. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "ddtrain/layers.h"

static double cpu(void) {
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static float *filled(int64_t n, float lo, float step, int period) {
  float *x = malloc(sizeof(float) * (size_t)n);
  for (int64_t i = 0; x && i < n; i++)
    x[i] = lo + step * (float)(i % period);
  return x;
}

/* best time of reps runs of the GELU layer's two passes (fused = 1) or of the two kernels (fused = 0) */
static void gelu(int64_t n, int reps) {
  float *x = filled(n, -3.0f, 0.006f, 1000), *dy = filled(n, -0.5f, 0.1f, 11), *y = filled(n, 0, 0, 1),
        *g = filled(n, 0, 0, 1), *dx = filled(n, 0, 0, 1);
  if (!x || !dy || !y || !g || !dx) {
    fprintf(stderr, "out of memory\n");
    exit(1);
  }
  double best[2][2] = {{1e9, 1e9}, {1e9, 1e9}};
  for (int r = 0; r < reps; r++) {
    double t = cpu();
    dd_gelu_forward(y, x, n);
    double t1 = cpu();
    dd_gelu_backward(dx, x, dy, n);
    double t2 = cpu();
    best[0][0] = t1 - t < best[0][0] ? t1 - t : best[0][0];
    best[0][1] = t2 - t1 < best[0][1] ? t2 - t1 : best[0][1];
    t = cpu();
    dd_gelu_forward_grad(y, g, x, n);
    t1 = cpu();
    for (int64_t i = 0; i < n; i++) /* the layer's backward (transformer.c) */
      dx[i] = dy[i] * g[i];
    t2 = cpu();
    best[1][0] = t1 - t < best[1][0] ? t1 - t : best[1][0];
    best[1][1] = t2 - t1 < best[1][1] ? t2 - t1 : best[1][1];
  }
  printf("gelu %9lld values: two kernels fwd %.3f + bwd %.3f ns/value; layer (forward_grad, dy g) fwd %.3f + bwd "
         "%.3f ns/value\n",
         (long long)n, best[0][0] / (double)n * 1e9, best[0][1] / (double)n * 1e9, best[1][0] / (double)n * 1e9,
         best[1][1] / (double)n * 1e9);
  free(x), free(dy), free(y), free(g), free(dx);
}

static void layernorm(int64_t R, int D, int reps) {
  const int64_t n = R * D;
  float *x = filled(n, 0.0f, 0.01f, 97), *dy = filled(n, -0.6f, 0.1f, 13), *y = filled(n, 0, 0, 1),
        *dx = filled(n, 0, 0, 1), *m = filled(R, 0, 0, 1), *s = filled(R, 0, 0, 1), *w = filled(D, 1.0f, 0.01f, D),
        *b = filled(D, 0.1f, 0, 1), *dw = filled(D, 0, 0, 1), *db = filled(D, 0, 0, 1);
  if (!x || !dy || !y || !dx || !m || !s || !w || !b || !dw || !db) {
    fprintf(stderr, "out of memory\n");
    exit(1);
  }
  double bf = 1e9, bb = 1e9;
  for (int r = 0; r < reps; r++) {
    double t = cpu();
    dd_layernorm_forward(y, m, s, x, w, b, R, D, 1e-5f);
    double t1 = cpu();
    dd_layernorm_backward(dx, dw, db, dy, x, m, s, w, R, D);
    double t2 = cpu();
    bf = t1 - t < bf ? t1 - t : bf;
    bb = t2 - t1 < bb ? t2 - t1 : bb;
  }
  printf("layernorm [%lld, %d]: forward %.1f us, backward %.1f us\n", (long long)R, D, bf * 1e6, bb * 1e6);
  free(x), free(dy), free(y), free(dx), free(m), free(s), free(w), free(b), free(dw), free(db);
}

int main(int argc, char **argv) {
  const int64_t rows = argc > 1 ? atoll(argv[1]) : 2048;
  const int reps = argc > 2 ? atoi(argv[2]) : 100;
  if (rows <= 0 || reps <= 0) {
    fprintf(stderr, "usage: bench_elementwise [rows > 0 [reps > 0]]\n");
    return 2;
  }
  gelu(8192, reps * 10);
  gelu(rows * 512, reps);
  layernorm(rows, 128, reps);
  return 0;
}
