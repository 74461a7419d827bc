/* The report's model of one run: its metrics.jsonl read into steps, epochs, phases and events. */
#ifndef DDTRAIN_REPORT_LOG_H
#define DDTRAIN_REPORT_LOG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "json.h"

enum { DD__MAX_PHASES = 16 };

typedef struct dd__phase {
  double mean_s, max_s; /* NAN when not logged */
  int max_rank;         /* -1 when not logged */
} dd__phase;

typedef struct dd__step {
  double step, epoch, train_loss, lr, grad_norm, t; /* t: seconds of training so far, over every resume */
} dd__step;

typedef struct dd__epoch {
  double epoch, step, train_loss, train_acc, val_loss, val_acc, lr, samples_per_s, epoch_s, allreduce_s, data_wait_s,
      mfu, sync_bytes, t;
  dd__phase ph[DD__MAX_PHASES]; /* indexed as dd__run.phase */
  bool has_phases;
} dd__epoch;

typedef enum dd__event_kind {
  DD__EV_START,
  DD__EV_CHECKPOINT,
  DD__EV_SKIP,
  DD__EV_STOPPED,
  DD__EV_STALL,
  DD__EV_DONE,
  DD__EV_KINDS
} dd__event_kind;

typedef struct dd__event {
  dd__event_kind kind;
  double step, t;
  char *text; /* what to say about it (a path, a message); owned */
} dd__event;

typedef struct dd__run {
  char label[1024]; /* the directory as given */
  char file[4096];  /* its metrics.jsonl */
  dd_json *start;   /* the first start record (owned), NULL if none */
  int resumes;      /* start records after the first */
  dd__step *steps;
  size_t nsteps, capsteps;
  dd__epoch *epochs;
  size_t nepochs, capepochs;
  dd__event *events;
  size_t nevents, capevents;
  char *phase[DD__MAX_PHASES]; /* phase names in order of first appearance (owned) */
  int nphases;
  bool phases_dropped; /* more than DD__MAX_PHASES names */
  long long lines, records, damaged;
  bool partial_tail; /* the last line had no newline and did not parse: a record being written */
  double t_offset, t_last;
} dd__run;

/* Read path (a run directory or a metrics file) into r (zeroed by the
 * caller; free with dd__run_free even on failure). Damaged lines are
 * skipped and named on warn. 0, or DD_ENOTFOUND / DD_EIO / DD_EDATA with
 * the message. */
int dd__run_read(const char *path, dd__run *r, FILE *warn);
void dd__run_free(dd__run *r);

#endif
