/* ddtrain comm: everything ranks say to each other (the only mpi.h user
 * besides I/O). Every call is collective over the job unless noted; MPI
 * failures come back as DD_EMPI with file:line and MPI's own message. */
#ifndef DDTRAIN_COMM_H
#define DDTRAIN_COMM_H

#include <stdbool.h>
#include <stdint.h>

typedef struct dd_comm dd_comm;

/* Exit code of a job the watchdog ended (EX_TEMPFAIL): a stuck or stopped
 * rank, or MPI not starting; the Slurm scripts requeue it. */
#define DD_EXIT_STALL 75

/* Initialise MPI (if not yet) with errors returned, not fatal. *out owned by
 * the caller; dd_comm_finalize frees it and finalises MPI if we started it. */
int dd_comm_init(int *argc, char ***argv, dd_comm **out);
void dd_comm_finalize(dd_comm *c);
/* A one-rank communicator of this process alone (MPI must be initialised):
 * runs the single-rank reference of a distributed computation in the same
 * program. Free with dd_comm_finalize (MPI stays up). Not collective. */
int dd_comm_self(dd_comm **out);

int dd_comm_rank(const dd_comm *c);
int dd_comm_size(const dd_comm *c);
/* Ranks on this node and this rank's index among them (not collective). */
int dd_comm_local_size(const dd_comm *c);
int dd_comm_local_rank(const dd_comm *c);
/* Number of nodes (distinct hosts) in the job. */
int dd_comm_nodes(const dd_comm *c);
/* This host's name (not collective). */
const char *dd_comm_host(const dd_comm *c);

/* In-place sums across ranks. */
int dd_comm_allreduce_f32(dd_comm *c, float *buf, int64_t n);
int dd_comm_allreduce_f64(dd_comm *c, double *buf, int64_t n);
/* dd_pass.allreduce adapter: ctx is a dd_comm*. */
int dd_comm_allreduce_cb(void *ctx, double *buf, int n);
/* In-place max across ranks. */
int dd_comm_allreduce_max_i64(dd_comm *c, int64_t *buf, int n);
/* In-place sum modulo 2^64 (digests). */
int dd_comm_allreduce_sum_u64(dd_comm *c, uint64_t *buf, int n);

/* Per-element statistics over ranks of v[0..n): mean, max and the lowest
 * rank holding the max (e.g. phase timings: who is the straggler). */
int dd_comm_stats_f64(dd_comm *c, const double *v, int n, double *mean, double *max, int *argmax);

/* Gather float rows: rank r contributes count floats; root receives all of
 * them in rank order into recv (ignored elsewhere). */
int dd_comm_gather_f32(dd_comm *c, const float *send, int64_t count, float *recv, int root);

/* Broadcast bytes from root (any size; chunked below MPI's int limit). */
int dd_comm_bcast(dd_comm *c, void *buf, int64_t bytes, int root);

/* Ranks decide together. Every rank passes its own status; if any is
 * non-zero, every rank returns the status and the one-line message of the
 * lowest failing rank (adopted into dd_error_message), so rank 0 can print
 * it and all ranks exit with the same code instead of hanging. */
int dd_comm_agree(dd_comm *c, int status);
/* Like dd_comm_agree when only `root` can have failed (it read a file the
 * others wait for): root's status and message go to everyone. */
int dd_comm_bcast_status(dd_comm *c, int status, int root);

/* True on every rank iff all ranks passed the same value. */
int dd_comm_same_u64(dd_comm *c, uint64_t v, bool *same);

int dd_comm_barrier(dd_comm *c);
/* ---- the watchdog (src/comm/watchdog.c) ----
 * With more than one rank, a thread per rank exchanges heartbeats with rank
 * 0's; when a rank has waited in a collective longer than the timeout, the
 * ranks that are not in it are named (host, pid, phase, step; or "stopped
 * responding"), the message goes to stderr and the stall hook, and the job
 * ends with DD_EXIT_STALL. Default timeout: DD_TIMEOUT seconds from the
 * environment, else 300; dd_comm_init starts it. */

/* Collective: a new deadline (seconds; <= 0 turns the watchdog off). */
int dd_comm_set_timeout(dd_comm *c, double seconds);
/* What the main thread does now (a static string) in which step: the
 * watchdog's report of a rank that holds the others up. Not collective. */
void dd_comm_phase(dd_comm *c, const char *phase, int64_t step);
void dd_comm_step_done(dd_comm *c, int64_t step);
/* Called with the one-line report on the rank that detects a stall, from the
 * watchdog thread, just before the job is aborted (e.g. to log it). */
typedef void (*dd_comm_stall_hook)(void *ctx, const char *msg);
void dd_comm_on_stall(dd_comm *c, dd_comm_stall_hook fn, void *ctx);

/* ---- gradient sync (src/comm/sync.c) ----
 * Buckets, contiguous ranges [lo[b], hi[b]) of a float array (the gradient
 * arena), are summed across ranks in place, each started as soon as its
 * values are final, in bucket order (the same on every rank), while the
 * caller goes on computing; dd_sync_finish waits for them all and then sums
 * a small double vector (the step's loss sums and flags) on every rank.
 * Every rank must call start/finish for the same buckets in the same order;
 * a rank that failed mid-step still calls dd_sync_finish (it starts what is
 * left) with its failure in the control sums, so no rank waits alone. */
enum {
  DD_SYNC_OFF,    /* one blocking reduction after backward, on the main thread */
  DD_SYNC_THREAD, /* a communication thread makes blocking calls, bucket after bucket */
  DD_SYNC_POLL,   /* non-blocking collectives, progressed between layers (dd_sync_poll) */
};
enum { DD_GRAD_F32, DD_GRAD_BF16 }; /* what goes over the wire; the arena stays float32 */

typedef struct dd_sync_spec {
  int mode, dtype;
  float *buf; /* the array the buckets index, borrowed */
  int nbuckets;
  const int64_t *lo, *hi; /* [nbuckets], copied */
} dd_sync_spec;

typedef struct dd_sync_stats {
  double exposed_s; /* dd_sync_finish's own time: what the step waited beyond its compute */
  double span_s;    /* first bucket started to last one done */
  double busy_s;    /* time in MPI calls for the buckets (the thread's, or the main thread's) */
  int64_t bytes;    /* payload handed to MPI per step */
} dd_sync_stats;

typedef struct dd_sync dd_sync;

/* Collective (duplicates the communicator). *out owned by the caller
 * (dd_sync_free, also after a failure). */
int dd_sync_create(dd_comm *c, const dd_sync_spec *spec, dd_sync **out);
void dd_sync_free(dd_sync *s);
/* The mode in effect (THREAD becomes POLL when MPI has no thread support). */
int dd_sync_mode(const dd_sync *s);
int64_t dd_sync_bytes_per_step(const dd_sync *s);
/* After dd_sync_finish: when bucket b's reduction ran this step (dd_now()
 * seconds; started to seen done) and the bytes it handed to MPI. */
void dd_sync_bucket_times(const dd_sync *s, int b, double *t0, double *t1);
int64_t dd_sync_bucket_bytes(const dd_sync *s, int b);
/* Buckets 0..bucket are final: start those not started. */
int dd_sync_start(dd_sync *s, int bucket);
/* POLL: let the started reductions progress (cheap; call between layers). */
int dd_sync_poll(dd_sync *s);
/* Wait for every bucket (starting any not started), then sum ctl[0..nctl)
 * across ranks. st (optional) gets the step's timings. */
int dd_sync_finish(dd_sync *s, double *ctl, int nctl, dd_sync_stats *st);

/* Last resort when ranks cannot agree (e.g. a rank is stuck). */
void dd_comm_abort(dd_comm *c, int code);

#endif
