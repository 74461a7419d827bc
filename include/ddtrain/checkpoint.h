/* ddtrain checkpoints: HDF5 files with every parameter, buffer and optimizer
 * state tensor under its natural shape, plus the training position, the
 * config text and a format version (layout in docs/checkpoint-format.md).
 *
 * Rank 0 does the file I/O (all replicas are identical) and the others wait
 * for its status, so a failed write or a bad file stops every rank with the
 * same message. Files are written to a temporary name, fsynced and renamed:
 * a crash never leaves a partial file under a checkpoint's name. */
#ifndef DDTRAIN_CHECKPOINT_H
#define DDTRAIN_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "ddtrain/comm.h"
#include "ddtrain/model.h"
#include "ddtrain/optim.h"

#define DD_CKPT_FORMAT "ddtrain-checkpoint"
/* 2: the sample order and hold-out are named (sampler attributes), and the
 * epoch in progress carries its partial statistics and sample digest */
#define DD_CKPT_VERSION 2

/* Where training stands. All randomness is counter-based on (seed, epoch,
 * step), so together with the tensors this is the complete state. */
enum { DD_OUTLIER_MAX = 1024 }; /* train.skip_window at most */

typedef struct dd_train_state {
  int64_t step;         /* optimizer steps taken */
  int64_t epoch;        /* epoch in progress (0-based) */
  int64_t batch;        /* next global batch within the epoch */
  int64_t samples_seen; /* training samples consumed */
  uint64_t seed;
  int64_t nranks;     /* ranks of the run that wrote it (informational) */
  int64_t batch_size; /* global batch size of that run */
  /* how samples are ordered: "global" or "chunks" (chunk rows, window), or
   * "legacy" for a version 1 checkpoint (Fisher-Yates orders and hold-out,
   * kept so that such a run resumes exactly) */
  char sampler[16];
  int64_t sampler_chunk, sampler_window;
  /* the epoch in progress so far, so a mid-epoch resume reports the whole
   * epoch: sums of the training loss, counted targets, correct ones, samples,
   * and the digest of the sample ids consumed (sum over samples of
   * hash(epoch, position, id) mod 2^64) */
  double ep_loss, ep_count, ep_correct, ep_samples;
  uint64_t ep_digest;
  /* train.skip_zscore: the last out_n (<= DD_OUTLIER_MAX) losses and gradient
   * norms of steps taken (a ring, next write at out_pos), the consecutive
   * skipped steps and all skipped so far */
  int64_t out_n, out_pos, skip_run, skipped;
  double out_loss[DD_OUTLIER_MAX], out_norm[DD_OUTLIER_MAX];
} dd_train_state;

/* Save to dir/ckpt-<step>.h5 and keep the newest `keep` files (keep <= 0:
 * keep all). The final path is written into path_out if given. */
int dd_checkpoint_save(dd_comm *c, const char *dir, int keep, const dd_model *m, const dd_optim *o,
                       const dd_train_state *st, const char *config_text, char *path_out, size_t path_n);
/* The same, also storing vocab[nvocab] (the code point of each token id of
 * a character model's training data) as /vocab when vocab is not NULL. */
int dd_checkpoint_save_with_vocab(dd_comm *c, const char *dir, int keep, const dd_model *m, const dd_optim *o,
                                  const dd_train_state *st, const char *config_text, const int32_t *vocab,
                                  int64_t nvocab, char *path_out, size_t path_n);

/* Load tensors (and optimizer state and training state, if o/st are not
 * NULL) into an already built model. Shapes must match the model. */
int dd_checkpoint_load(dd_comm *c, const char *path, dd_model *m, dd_optim *o, dd_train_state *st);

/* The config text and the model's per-sample input shape stored in a
 * checkpoint (to rebuild its model). *text is owned by the caller
 * (dd_free); input may be NULL. */
int dd_checkpoint_config(dd_comm *c, const char *path, char **text, dd_shape *input);

/* The vocabulary stored in a checkpoint (collective): *vocab [*n] owned by
 * the caller (dd_free); *vocab NULL and *n 0 if it has none. */
int dd_checkpoint_vocab(dd_comm *c, const char *path, int32_t **vocab, int64_t *n);

/* Newest checkpoint in dir that passes verification (format, training
 * state, every tensor's checksum and values) into path; a damaged newer one
 * is skipped with a warning on stderr naming it and the reason, and renamed
 * to <name>.skipped (out of the naming scheme, so that it neither counts for
 * checkpoint.keep nor outranks the run's new checkpoints; the caller holds
 * the directory's lock). Only names of the form ckpt-<step>.h5 count.
 * DD_ENOTFOUND if none. */
int dd_checkpoint_latest(dd_comm *c, const char *dir, char *path, size_t n);

/* Exclusive use of a checkpoint directory by one run (collective): rank 0
 * takes an advisory lock (flock) on dir/.ddtrain.lock and writes who holds
 * it (host, pid, Slurm job, start); a second run gets an error naming the
 * holder. The lock goes with the process (also when it is killed). *fd is
 * rank 0's descriptor (-1 elsewhere) for dd_checkpoint_unlock. */
int dd_checkpoint_lock(dd_comm *c, const char *dir, int *fd);
void dd_checkpoint_unlock(int fd);
/* The step in a checkpoint file name of the scheme (.../ckpt-<step>.h5), or -1. */
int64_t dd_checkpoint_step_of(const char *path);

#endif
