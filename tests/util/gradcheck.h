/* Finite-difference gradient checks for layers and layer stacks.
 *
 * Builds a model from layer specs, draws parameters and inputs from a seed,
 * and compares the analytic gradients of L = sum(w * y) (w a fixed random
 * projection of the output) with Richardson-extrapolated central
 * differences, for every parameter tensor and the input: up to max_checks
 * single entries each (catches indexing bugs and a single entry off by a
 * percent) and three random directions each (catches a gradient off in many
 * entries at once). Each is judged by |analytic - numeric| <= tol *
 * |analytic| + a floor of three times the rounding noise of L over the
 * step (gradcheck.c derives it), so entries whose true gradient is zero
 * pass on every BLAS kernel set and wrong ones still fail. Entries sitting
 * on a ReLU/max kink are detected and skipped. */
#ifndef DDTRAIN_TEST_GRADCHECK_H
#define DDTRAIN_TEST_GRADCHECK_H

#include <stdbool.h>

#include "ddtrain/model.h"

typedef struct dd_gc_opts {
  int B;      /* batch */
  bool train; /* train-mode pass (dropout, batch statistics) */
  uint64_t seed;
  double eps;             /* finite-difference step (default 1e-2) */
  double tol;             /* relative error allowed, entries and directions
                             (default 2e-3), beside the noise floor */
  int max_checks;         /* entries checked per tensor (default 24) */
  bool check_input;       /* also check d L / d x (default true unless tokens) */
  int token_vocab;        /* > 0: inputs are integer ids in [0, vocab) */
  const int32_t *lengths; /* [B] sequence lengths passed to the layers */
  double param_scale;     /* extra random perturbation of parameters (0 = init only) */
  const float *x;         /* [B * in_size] fixed input, or NULL: drawn from the seed */
  int *skipped;           /* if not NULL: receives the number of entries skipped at kinks */
  /* if not NULL: called on the analytic gradients ([nparams], model layout)
   * and d L / d x ([B * in_size]) before they are compared, to prove that
   * the checker catches a wrong gradient */
  void (*tamper)(const dd_model *m, float *grads, float *dx, void *ctx);
  void *tamper_ctx;
} dd_gc_opts;

void dd_gc_defaults(dd_gc_opts *o);

/* The checker's error measure: |a - n| / (tol * scale + floor), at most 1 to
 * pass; NaN when any input is NaN or infinite. */
double dd_gc_err(double a, double n, double tol, double scale, double floor);

/* Returns the number of failed entries (printed to stderr); *max_err gets
 * the worst error as a fraction of the error allowed (above 1 fails; NaN
 * when a NaN or an infinity was compared). */
int dd_gradcheck(const char *label, const dd_layer_spec *specs, int nlayers, dd_shape input, const dd_gc_opts *o,
                 double *max_err);

/* Test assertion (needs check.h): the stack passes dd_gradcheck, else a
 * failure at the caller's line with the count and the worst error. */
#define CHECK_GRADS(label, specs, nlayers, input, opts)                                                                \
  do {                                                                                                                 \
    double err_;                                                                                                       \
    int fails_ = dd_gradcheck((label), (specs), (nlayers), (input), (opts), &err_);                                    \
    if (fails_)                                                                                                        \
      DD_FAIL_AT("%s: %d gradient entries off (worst error %.3g of allowed)", (label), fails_, err_);                  \
  } while (0)

#endif
