/* MPI test helpers: real datasets, real training runs, parameter comparison. */
#ifndef DDTRAIN_TEST_TRAINUTIL_H
#define DDTRAIN_TEST_TRAINUTIL_H

#include "ddtrain/comm.h"
#include "ddtrain/data.h"
#include "ddtrain/train.h"

/* Remove a directory tree and recreate it empty (rank 0; others wait). */
void tu_fresh_dir(dd_comm *c, const char *path);
/* Write a synthetic dataset (rank 0; status shared). */
int tu_write_synth(dd_comm *c, const char *path, const dd_synth_spec *s);
/* Parse YAML + overrides and train on c (quiet). resume: NULL/auto/path. */
int tu_train(dd_comm *c, const char *yaml, int nov, char *const *ov, const char *resume, dd_train_result *res);
/* Parameters (and buffers appended) of a checkpoint; caller frees *p. */
int tu_params(dd_comm *c, const char *ckpt, float **p, int64_t *n);
/* max_i |a_i - b_i| / max_i |b_i|; NaN if any entry of a or b is NaN or
 * infinite, so `!(d <= tol)` fails on it */
double tu_rel_diff(const float *a, const float *b, int64_t n);
/* Sum of failures over all ranks (collective); prints a summary on rank 0. */
int tu_total_failures(dd_comm *c);

#endif
