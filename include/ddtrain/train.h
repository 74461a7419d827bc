/* ddtrain train: the data-parallel training loop, evaluation and prediction.
 *
 * Every rank runs the same loop: each global batch of the epoch's
 * permutation is split into contiguous per-rank shares, each rank
 * backpropagates the SUM of its samples' losses, one allreduce sums the
 * gradients (with the loss/count/accuracy sums and a stop flag riding
 * along), and every rank divides by the global count and applies the same
 * optimizer step. So N ranks take the step one rank would with the same
 * global batch, and replicas stay identical (checked by checksums). */
#ifndef DDTRAIN_TRAIN_H
#define DDTRAIN_TRAIN_H

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>

#include "ddtrain/comm.h"
#include "ddtrain/config.h"
#include "ddtrain/model.h"

typedef struct dd_train_opts {
  const char *resume; /* NULL, "auto" (newest in checkpoint.dir) or a path */
  FILE *out;          /* human-readable progress on rank 0 (NULL = quiet) */
  bool progress;      /* redraw an in-epoch progress line (a terminal) */
  /* set (by a signal handler) to stop at the next step boundary with a
   * checkpoint; may be NULL */
  volatile sig_atomic_t *stop;
  const char *config_path; /* printed in the run header */
} dd_train_opts;

/* Summary of a finished (or stopped) run, same on every rank. */
typedef struct dd_train_result {
  int64_t steps, epochs;
  double train_loss, val_loss, val_accuracy; /* last epoch; NaN if none */
  bool classification;
  char last_checkpoint[1100];
} dd_train_result;

/* Train as the config says. Returns DD_EINTERRUPTED if *stop was raised
 * (after saving a checkpoint). res may be NULL. */
int dd_train_run(dd_comm *c, const dd_config *cfg, const dd_train_opts *o, dd_train_result *res);

typedef struct dd_eval_result {
  int64_t n;       /* samples */
  double loss;     /* mean per item, as in training */
  double accuracy; /* classification only, else NaN */
  bool classification;
} dd_eval_result;

/* Loss (and accuracy) of a checkpoint's model on a dataset file. */
int dd_eval_run(dd_comm *c, const char *ckpt, const char *data, const char *xname, const char *yname,
                dd_eval_result *res);

/* Write the model's outputs on data (labels optional) to out_path:
 * /output [N, ...] raw outputs, and for classifiers /probs (softmax) and
 * /pred (argmax class ids). */
int dd_predict_run(dd_comm *c, const char *ckpt, const char *data, const char *xname, const char *out_path);

/* Rebuild the model stored in a checkpoint (from its config and input
 * shape) for batches of up to max_batch samples and load its parameters.
 * *cfg and *m are owned by the caller (dd_config_free, dd_model_free). */
int dd_model_from_checkpoint(dd_comm *c, const char *ckpt, int max_batch,
                             dd_config **cfg, dd_model **m);

#endif
