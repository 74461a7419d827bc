/* cnn_step_cpu - CPU time per training step of the reference CNN, per layer, without data loading or MPI.
 *
 * Build (after cmake --build --preset release) and run from the repository root:
 *   L=build/release/src; cc -O3 -march=native -std=c17 -Iinclude jobs/bench/cnn_step_cpu.c -o build/cnn_step_cpu \
 *     $L/libdd_model.a $L/libdd_layers.a $L/libdd_tensor.a $L/libdd_core.a -lopenblas -lm
 *   OPENBLAS_NUM_THREADS=1 build/cnn_step_cpu [steps]
 * The model and step are those of jobs/bench/cnn.yaml (batch 64, forward, loss, backward, SGD update). The
 * figure is the best block of 10 steps in thread CPU time: on a shared machine it is what the code costs
 * when nothing else evicts its caches. Compare with jobs/bench/torch_step_cpu.py. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "ddtrain/model.h"

static double cpu(void) {
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static dd_layer_spec L(const char *type) {
  dd_layer_spec s;
  dd_layer_spec_defaults(&s, type);
  return s;
}

int main(int argc, char **argv) {
  enum { B = 64, NL = 8, BLOCK = 10 };
  const int steps = argc > 1 ? atoi(argv[1]) : 600;
  dd_layer_spec s[NL] = {L("conv2d"), L("relu"),      L("maxpool2d"), L("conv2d"),
                         L("relu"),   L("maxpool2d"), L("flatten"),   L("dense")};
  s[0].filters = 16, s[3].filters = 32;
  for (int i = 0; i < 2; i++) /* [height, width] */
    s[0].kernel[i] = 5, s[2].kernel[i] = 2, s[3].kernel[i] = 5, s[5].kernel[i] = 2;
  s[7].units = 10;
  dd_model_spec spec = {.input = {3, {1, 28, 28}}, .nlayers = NL, .layers = s};
  dd_model *m = NULL;
  if (dd_model_build(&spec, B, 0, &m)) {
    fprintf(stderr, "%s\n", dd_error_message());
    return 1;
  }
  dd_model_init_params(m, 1);
  dd_rng r;
  dd_rng_seed(&r, 1, 1);
  for (int i = 0; i < B * 784; i++)
    m->acts[0][i] = (float)dd_rng_normal(&r);
  int32_t y[B];
  for (int i = 0; i < B; i++)
    y[i] = i % 10;
  double tf[NL] = {0}, tb[NL] = {0}, best = 1e30, block = 0;
  dd_pass p = {.B = B, .B_global = B, .train = true};
  for (int it = 0; it < steps; it++) {
    double t0 = cpu();
    for (int i = 0; i < NL; i++) {
      double a = cpu();
      m->layers[i].kind->forward(&m->layers[i], &p, m->acts[i], m->acts[i + 1]);
      tf[i] += cpu() - a;
    }
    dd_loss_sums ls = {0};
    dd_model_loss(m, &p, y, true, &ls);
    for (int i = NL - 1, cur = 0; i >= 0; i--, cur ^= 1) {
      double a = cpu();
      m->layers[i].kind->backward(&m->layers[i], &p, m->acts[i], m->acts[i + 1], m->dbuf[cur],
                                  i > 0 ? m->dbuf[cur ^ 1] : NULL);
      tb[i] += cpu() - a;
    }
    for (int64_t k = 0; k < m->nparams; k++) { /* SGD step, and zero the gradients */
      m->params[k] -= 1e-4f * m->grads[k];
      m->grads[k] = 0.0f;
    }
    block += cpu() - t0;
    if ((it + 1) % BLOCK == 0) {
      best = block / BLOCK < best ? block / BLOCK : best;
      block = 0;
    }
  }
  for (int i = 0; i < NL; i++)
    printf("%d %-10s forward %7.1f us  backward %7.1f us (mean)\n", i, m->layers[i].kind->name, 1e6 * tf[i] / steps,
           1e6 * tb[i] / steps);
  printf("ddtrain best block: %.1f us CPU per step = %.0f samples/s\n", 1e6 * best, B / best);
  dd_model_free(m);
  return 0;
}
