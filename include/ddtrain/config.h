/* ddtrain config: a YAML run description (libyaml) with key=value overrides,
 * checked against a schema. Every error names the key and where it came
 * from ("run.yaml:12: ..." or "command line 'optim.lr=x': ..."). */
#ifndef DDTRAIN_CONFIG_H
#define DDTRAIN_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "ddtrain/layers.h"
#include "ddtrain/optim.h"
#include "ddtrain/schedule.h"

#define DD_PATH_MAX 1024

enum { DD_SHUFFLE_GLOBAL = 1, DD_SHUFFLE_CHUNKS = 2 };
enum { DD_OVERLAP_THREAD = 1, DD_OVERLAP_POLL = 2, DD_OVERLAP_OFF = 3, DD_OVERLAP_AUTO = 4 }; /* comm.overlap */
enum { DD_WIRE_F32 = 1, DD_WIRE_BF16 = 2 };                                                   /* comm.grad_dtype */

typedef struct dd_config {
  char source[DD_PATH_MAX]; /* config file, or "checkpoint" */
  /* model */
  dd_shape input; /* declared per-sample input shape; ndim 0 = from data */
  int nlayers;
  dd_layer_spec *layers; /* [nlayers] owned */
  int loss;              /* DD_LOSS_* */
  /* data */
  char train[4 * DD_PATH_MAX]; /* a path, or several (glob patterns allowed), one per line */
  char val[4 * DD_PATH_MAX];
  char x[256], y[256];
  double val_fraction;
  bool drop_last;
  char lengths[256];   /* sequence lengths dataset ("" = none) */
  int64_t pad_id;      /* token id that pads sequences (-1 = none) */
  double scale, shift; /* features x * scale + shift; NaN = the file's attributes */
  int shuffle;         /* DD_SHUFFLE_* */
  int64_t shuffle_window;
  /* optim */
  dd_optim_spec optim;
  dd_schedule_spec schedule;
  /* train */
  int64_t batch_size, epochs, max_steps, seed, threads, log_every;
  int64_t accum_steps;  /* micro-batches per rank per optimizer step */
  int64_t micro_batch;  /* > 0: the most samples per rank in one forward/backward (sets accum_steps) */
  double timeout;       /* watchdog deadline in seconds (0 = off) */
  double peak_gflops;   /* one rank's peak for MFU (0 = measure) */
  char trace_steps[64]; /* "FIRST:END" steps to trace, "" = none */
  double skip_zscore;   /* skip a step whose loss or gradient norm z-score exceeds this (0 = off) */
  int64_t skip_window, skip_max;
  char metrics[DD_PATH_MAX];
  /* comm */
  int overlap;      /* DD_OVERLAP_* */
  double bucket_mb; /* gradient bucket size, MiB */
  int grad_dtype;   /* DD_WIRE_* */
  /* checkpoint */
  char ckpt_dir[DD_PATH_MAX];
  int64_t ckpt_every_epochs, ckpt_every_steps, ckpt_keep;
  /* the effective config (file + overrides) as YAML, stored in checkpoints */
  char *text;
} dd_config;

/* Parse a YAML file, apply overrides ("section.key=value", list items by
 * index: "model.layers.0.units=256") and check everything. *out owned by the
 * caller (dd_config_free). */
int dd_config_load(const char *path, int noverrides, char *const *overrides, dd_config **out);
/* Same from text in memory; origin is used in messages. */
int dd_config_parse(const char *text, const char *origin, int noverrides, char *const *overrides, dd_config **out);
void dd_config_free(dd_config *c);

/* Reference of all keys with defaults and one-line help (for --help and
 * the docs). */
const char *dd_config_reference(void);

#endif
