/* Internal: the per-rank trace files of train.trace_steps (trace.c). */
#ifndef DDTRAIN_TRAIN_TRACE_H
#define DDTRAIN_TRAIN_TRACE_H

#include <stdint.h>

#include "ddtrain/train.h"

/* Bytes of events per rank, at most: the window's later events are left out. */
#define DD__TRACE_CAP ((int64_t)64 << 20)

typedef struct dd__trace dd__trace;

/* DIR/trace-rankNNNNN.jsonl, truncated, with the process and thread names. */
int dd__trace_open(const char *dir, int rank, const char *host, dd__trace **out);
/* Time 0 of the events is now (called by every rank right after a barrier). */
void dd__trace_align(dd__trace *t);
/* A complete event [t0, t1] (dd_now() seconds) on thread tid (0 main, 1
 * gradient sync, 2 data reader); args: more "key": value pairs or NULL.
 * NULL t: nothing. */
void dd__trace_event(dd__trace *t, const char *name, const char *cat, int tid, double t0, double t1, int64_t step,
                     const char *args);
void dd__trace_flush(dd__trace *t);
int dd__trace_close(dd__trace *t);

#endif
