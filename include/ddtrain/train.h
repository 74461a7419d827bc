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
  int stop_signal; /* DD_EINTERRUPTED: the signal that stopped the run (the largest number any rank got) */
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

/* Sample text from a character-level model (`ddtrain generate`): the model
 * must read token ids [T] through an embedding and output one row of
 * classes per step, and the checkpoint must carry the vocabulary of its
 * training data (`data text` files have one). Starting from the prompt, it
 * feeds the last (up to T) characters, samples the next one from
 * softmax(logits / temperature) at the last step (temperature 0: the most
 * likely one) and repeats `length` times. Rank 0 writes the prompt and
 * the sampled text (UTF-8) to out as it goes. */
typedef struct dd_generate_opts {
  const char *prompt; /* UTF-8, at least one character of the vocabulary */
  int64_t length;     /* characters to sample */
  double temperature; /* >= 0 */
  uint64_t seed;      /* sampling stream */
} dd_generate_opts;
int dd_generate_run(dd_comm *c, const char *ckpt, const dd_generate_opts *o, FILE *out);

/* Rebuild the model stored in a checkpoint (from its config and input
 * shape) for batches of up to max_batch samples and load its parameters.
 * *cfg and *m are owned by the caller (dd_config_free, dd_model_free). */
int dd_model_from_checkpoint(dd_comm *c, const char *ckpt, int max_batch, dd_config **cfg, dd_model **m);

/* Merge the per-rank trace files of DIR (trace-rankNNNNN.jsonl, written
 * with train.trace_steps) into OUT, one Chrome trace (JSON object format);
 * lines cut short by a crash are left out. *ranks, *events: what it holds. */
int dd_trace_merge(const char *dir, const char *out, int *ranks, int64_t *events);

#endif
