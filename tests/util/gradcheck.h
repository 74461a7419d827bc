/* Finite-difference gradient checks for layers and layer stacks.
 *
 * Builds a model from layer specs, draws parameters and inputs from a seed,
 * and compares the analytic gradients of L = sum(w * y) (w a fixed random
 * projection of the output) with Richardson-extrapolated central
 * differences, for every parameter tensor and the input: up to max_checks
 * single entries each (loose: catches indexing bugs) and three random
 * directions each (strict: catches a gradient off by a percent). Entries
 * sitting on a ReLU/max kink are detected and skipped. */
#ifndef DDTRAIN_TEST_GRADCHECK_H
#define DDTRAIN_TEST_GRADCHECK_H

#include <stdbool.h>

#include "ddtrain/model.h"

typedef struct dd_gc_opts {
  int B;      /* batch */
  bool train; /* train-mode pass (dropout, batch statistics) */
  uint64_t seed;
  double eps;             /* finite-difference step (default 1e-2) */
  double tol;             /* relative error allowed along random directions
                             (default 2e-3); single entries get 10x */
  int max_checks;         /* entries checked per tensor (default 24) */
  bool check_input;       /* also check d L / d x (default true unless tokens) */
  int token_vocab;        /* > 0: inputs are integer ids in [0, vocab) */
  const int32_t *lengths; /* [B] sequence lengths passed to the layers */
  double param_scale;     /* extra random perturbation of parameters (0 = init only) */
  const float *x;         /* [B * in_size] fixed input, or NULL: drawn from the seed */
  int *skipped;           /* if not NULL: receives the number of entries skipped at kinks */
} dd_gc_opts;

void dd_gc_defaults(dd_gc_opts *o);

/* Returns the number of failed entries (printed to stderr); *max_err gets
 * the worst relative error seen. */
int dd_gradcheck(const char *label, const dd_layer_spec *specs, int nlayers, dd_shape input, const dd_gc_opts *o,
                 double *max_err);

/* Test assertion (needs check.h): the stack passes dd_gradcheck, else a
 * failure at the caller's line with the count and the worst error. */
#define CHECK_GRADS(label, specs, nlayers, input, opts)                                                                \
  do {                                                                                                                 \
    double err_;                                                                                                       \
    int fails_ = dd_gradcheck((label), (specs), (nlayers), (input), (opts), &err_);                                    \
    if (fails_)                                                                                                        \
      DD_FAIL_AT("%s: %d gradient entries off (worst rel err %.3g)", (label), fails_, err_);                           \
  } while (0)

#endif
