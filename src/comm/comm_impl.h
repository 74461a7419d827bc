/* Internal: the communicator and its watchdog (comm.c, watchdog.c). */
#ifndef DDTRAIN_COMM_IMPL_H
#define DDTRAIN_COMM_IMPL_H

#include <mpi.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "ddtrain/comm.h"

/* What this rank's main thread is doing, for the watchdog thread: written
 * with atomics by the main thread, read by the watchdog. Strings are static
 * literals (only the pointer is stored). */
typedef struct dd__activity {
  _Atomic(const char *) phase; /* "forward", "backward", "checkpoint", ... */
  atomic_llong step;           /* the step the phase belongs to */
  atomic_llong finished;       /* last step finished */
  _Atomic(const char *) coll;  /* the collective the rank waits in, or NULL */
  atomic_llong coll_step;
  _Atomic double coll_since; /* MPI_Wtime() when it entered */
} dd__activity;

typedef struct dd__watchdog dd__watchdog;

struct dd_comm {
  MPI_Comm world;
  MPI_Comm node;
  int rank, size, local_rank, local_size, nodes;
  int started_mpi;
  char host[MPI_MAX_PROCESSOR_NAME];
  dd__activity act;
  dd__watchdog *wd; /* NULL: none (one rank, a self communicator, or turned off) */
};

/* An MPI failure as DD_EMPI with file:line and MPI's own message. */
int dd__mpi_fail(int rc, const char *what, const char *file, int line);

void dd__watch_enter(dd_comm *c, const char *coll);
void dd__watch_leave(dd_comm *c);
/* Start/stop the watchdog thread of c (collective); deadline <= 0: none. */
int dd__watch_start(dd_comm *c, double deadline);
void dd__watch_stop(dd_comm *c);

#endif
