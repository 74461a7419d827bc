/* attn_step_cpu - CPU time of one attention layer's forward + backward, without data loading or MPI.
 *
 * Built with the tests (target bench_attn, build/release/bench_attn; it picks the BLAS kernels as ddtrain
 * does); run from the repository root:
 *   OPENBLAS_NUM_THREADS=1 build/release/bench_attn [B T D heads [reps]]
 * Defaults: B = 32, T = 64, D = 128, heads = 4 (the GPT example's shapes), causal, no dropout. The figure
 * is the best block of 10 forward+backward passes in thread CPU time (what the code costs when nothing else
 * evicts its caches), with the model FLOPs of the GEMMs (the causal mask counted as full T x T, as
 * PyTorch computes it) and their rate. Compare with jobs/bench/torch_attn_cpu.py. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "ddtrain/cli.h"
#include "ddtrain/model.h"
#include "ddtrain/tensor.h"

static double cpu(void) {
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv) {
  dd_cli_select_blas_kernels(argv); /* the kernel set ddtrain itself runs (docs/blas-kernels.md) */
  enum { BLOCK = 10 };
  const int B = argc > 1 ? atoi(argv[1]) : 32, T = argc > 2 ? atoi(argv[2]) : 64, D = argc > 3 ? atoi(argv[3]) : 128,
            H = argc > 4 ? atoi(argv[4]) : 4, reps = argc > 5 ? atoi(argv[5]) : 200;
  dd_layer_spec s;
  dd_layer_spec_defaults(&s, "attention");
  s.heads = H;
  dd_model_spec spec = {.input = {2, {T, D}}, .nlayers = 1, .layers = &s, .loss = DD_LOSS_MSE};
  dd_model *m = NULL;
  if (dd_model_build(&spec, B, 0, &m)) {
    fprintf(stderr, "%s\n", dd_error_message());
    return 1;
  }
  dd_model_init_params(m, 1);
  dd_rng r;
  dd_rng_seed(&r, 1, 1);
  for (int64_t i = 0; i < (int64_t)B * T * D; i++) {
    m->acts[0][i] = (float)dd_rng_normal(&r);
    m->dbuf[0][i] = (float)dd_rng_normal(&r);
  }
  dd_layer *l = &m->layers[0];
  dd_pass p = {.B = B, .B_global = B, .train = true};
  float *dx = dd_alloc((size_t)B * (size_t)T * (size_t)D, sizeof(float));
  double best = 1e30;
  for (int rep = 0; rep < reps / BLOCK; rep++) {
    double t0 = cpu();
    for (int k = 0; k < BLOCK; k++) {
      if (l->kind->forward(l, &p, m->acts[0], m->acts[1]) ||
          l->kind->backward(l, &p, m->acts[0], m->acts[1], m->dbuf[0], dx)) {
        fprintf(stderr, "%s\n", dd_error_message());
        return 1;
      }
    }
    double t = (cpu() - t0) / BLOCK;
    best = t < best ? t : best;
  }
  /* forward: qkv 2 BT D 3D, scores 2 B T T D, P v 2 B T T D, proj 2 BT D D; backward twice that */
  const double bt = (double)B * T, fwd = 2 * bt * D * 3 * D + 4 * bt * T * D + 2 * bt * D * D;
  char k[600];
  printf("BLAS kernels: %s\n", dd_tensor_kernel_summary(k, sizeof k));
  printf("attention B=%d T=%d D=%d heads=%d: %.3f ms per forward+backward (best of %d blocks of %d), %.2f GFLOP, "
         "%.1f GFLOP/s\n",
         B, T, D, H, best * 1e3, reps / BLOCK, BLOCK, 3 * fwd * 1e-9, 3 * fwd / best * 1e-9);
  dd_free(dx);
  dd_model_free(m);
  return 0;
}
