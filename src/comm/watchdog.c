/* The watchdog: a thread per rank that notices a collective nobody finishes and names the rank holding it up. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "comm_impl.h"
#include "ddtrain/core.h"

/* Every period each rank's watchdog sends rank 0's a heartbeat (what its
 * main thread does, and for how long it has waited in a collective), and
 * rank 0's answers each rank, on a communicator of their own (MPI threads:
 * MULTIPLE). Rank 0 sees a rank that waited in a collective past the
 * deadline and names the ranks that are not in it: busy elsewhere (their
 * phase and step), or silent (a stopped or frozen process: its heartbeats
 * stopped). A rank that waits past the deadline and no longer hears rank 0
 * names rank 0. The detecting rank prints one line, calls the hook (the
 * metrics log), and aborts the job with DD_EXIT_STALL. */

enum { TAG_HB = 7401, TAG_ROOT = 7402 };

typedef struct hb {
  int32_t rank, pid;
  int64_t step, finished, coll_step;
  double coll_age; /* seconds in the collective; < 0: not in one */
  char phase[24], coll[32], host[64];
} hb;

struct dd__watchdog {
  dd_comm *c;
  MPI_Comm comm;
  double deadline, period;
  pthread_t th;
  bool started;
  atomic_bool stop;
  hb *table;            /* root: the latest heartbeat of each rank */
  double *seen;         /* root: when it arrived (local clock) */
  MPI_Request *to_rank; /* root: the answer in flight to each rank */
  char *ping;           /* root: one byte per rank */
  hb out;               /* non-root: the heartbeat in flight */
  MPI_Request out_req;
  double root_seen;
  double paused_at, paused_s; /* when this process ran again after not running for paused_s */
};

static dd_comm_stall_hook g_hook;
static void *g_hook_ctx;

void dd_comm_on_stall(dd_comm *c, dd_comm_stall_hook fn, void *ctx) {
  (void)c;
  g_hook = fn;
  g_hook_ctx = ctx;
}

void dd__watch_enter(dd_comm *c, const char *coll) {
  atomic_store_explicit(&c->act.coll_step, atomic_load_explicit(&c->act.step, memory_order_relaxed),
                        memory_order_relaxed);
  atomic_store_explicit(&c->act.coll_since, MPI_Wtime(), memory_order_relaxed);
  atomic_store_explicit(&c->act.coll, coll, memory_order_release);
}

void dd__watch_leave(dd_comm *c) {
  atomic_store_explicit(&c->act.coll, NULL, memory_order_release);
}

void dd_comm_phase(dd_comm *c, const char *phase, int64_t step) {
  atomic_store_explicit(&c->act.step, step, memory_order_relaxed);
  atomic_store_explicit(&c->act.phase, phase, memory_order_release);
}

void dd_comm_step_done(dd_comm *c, int64_t step) {
  atomic_store_explicit(&c->act.finished, step, memory_order_relaxed);
}

static void snapshot(const dd_comm *c, hb *h, double now) {
  memset(h, 0, sizeof *h);
  h->rank = c->rank;
  h->pid = (int32_t)getpid();
  h->step = atomic_load_explicit(&c->act.step, memory_order_relaxed);
  h->finished = atomic_load_explicit(&c->act.finished, memory_order_relaxed);
  const char *ph = atomic_load_explicit(&c->act.phase, memory_order_acquire);
  const char *co = atomic_load_explicit(&c->act.coll, memory_order_acquire);
  snprintf(h->phase, sizeof h->phase, "%s", ph ? ph : "setup");
  if (co) {
    snprintf(h->coll, sizeof h->coll, "%s", co);
    h->coll_step = atomic_load_explicit(&c->act.coll_step, memory_order_relaxed);
    h->coll_age = now - atomic_load_explicit(&c->act.coll_since, memory_order_relaxed);
  } else {
    h->coll_age = -1;
  }
  snprintf(h->host, sizeof h->host, "%.63s", c->host);
}

/* "0-2, 5" of the ranks whose flag is set */
static void ranges(const bool *in, int n, char *buf, size_t len) {
  size_t used = 0;
  buf[0] = '\0';
  for (int r = 0; r < n; r++) {
    if (!in[r])
      continue;
    int e = r;
    while (e + 1 < n && in[e + 1])
      e++;
    int w = e > r ? snprintf(buf + used, len - used, "%s%d-%d", used ? ", " : "", r, e)
                  : snprintf(buf + used, len - used, "%s%d", used ? ", " : "", r);
    if (w < 0 || (size_t)w >= len - used)
      break;
    used += (size_t)w;
    r = e;
  }
}

static void fail(dd__watchdog *w, const char *msg) {
  fprintf(stderr, "ddtrain: error: %s\n", msg);
  fflush(stderr);
  if (g_hook)
    g_hook(g_hook_ctx, msg);
  MPI_Abort(w->c->world, DD_EXIT_STALL);
}

/* rank 0: is someone stuck past the deadline, and who holds it up? */
static void judge(dd__watchdog *w, double now) {
  const int P = w->c->size;
  int stuck = -1;
  double longest = 0;
  for (int r = 0; r < P; r++) {
    const hb *h = &w->table[r];
    /* a silent rank's last heartbeat may have caught it in a collective it
     * has long left: only ranks that still report can be the waiting one */
    if (w->seen[r] <= 0 || h->coll_age < 0 || now - w->seen[r] >= w->deadline / 2)
      continue;
    double age = h->coll_age + (now - w->seen[r]);
    if (age > w->deadline && age > longest) {
      stuck = r;
      longest = age;
    }
  }
  if (stuck < 0)
    return;
  const hb *s = &w->table[stuck];
  bool waiting[4096] = {false};
  char msg[1800], part[400], list[256];
  size_t used = 0;
  int nhold = 0;
  const int lim = P < 4096 ? P : 4096;
  /* rank 0 itself did not run (stopped, frozen) until just now: the others' heartbeats it holds were sent
   * while it was stopped, so they look fresh, and rank 0 looks as if it had arrived: it is the one */
  const bool self_paused = w->paused_at > 0 && now - w->paused_at < w->deadline;
  for (int r = 0; r < lim; r++) {
    const hb *h = &w->table[r];
    const double silent = now - w->seen[r];
    if (r == 0 && self_paused) {
      nhold++;
      snprintf(
          part, sizeof part,
          "rank 0 on %s (pid %d) did not run for %.0f s (a stopped or frozen process: SIGSTOP, a debugger), now in %s "
          "of step %lld",
          h->host, h->pid, w->paused_s, h->coll_age >= 0 ? h->coll : h->phase, (long long)h->step);
      int wr = snprintf(msg + used, sizeof msg - used, "%s%s", used ? "; " : "", part);
      if (wr > 0 && (size_t)wr < sizeof msg - used)
        used += (size_t)wr;
      continue;
    }
    const bool there =
        w->seen[r] > 0 && h->coll_age >= 0 && strcmp(h->coll, s->coll) == 0 && h->coll_step == s->coll_step;
    if (there && silent < w->deadline / 2) {
      waiting[r] = true;
      continue;
    }
    nhold++;
    if (w->seen[r] <= 0)
      snprintf(part, sizeof part, "rank %d never reported (not started, or stopped before its first heartbeat)", r);
    else if (silent >= w->deadline / 2)
      snprintf(part, sizeof part,
               "rank %d on %s (pid %d) stopped responding %.0f s ago (a stopped or frozen process: SIGSTOP, a "
               "debugger, a dead node), last in %s of step %lld, last finished step %lld",
               r, h->host, h->pid, silent, h->coll_age >= 0 ? h->coll : h->phase, (long long)h->step,
               (long long)h->finished);
    else
      snprintf(part, sizeof part, "rank %d on %s (pid %d) is in %s of step %lld (last finished step %lld)", r, h->host,
               h->pid, h->coll_age >= 0 ? h->coll : h->phase, (long long)h->step, (long long)h->finished);
    int wr = snprintf(msg + used, sizeof msg - used, "%s%s", used ? "; " : "", part);
    if (wr > 0 && (size_t)wr < sizeof msg - used)
      used += (size_t)wr;
  }
  ranges(waiting, lim, list, sizeof list);
  if (nhold == 0)
    snprintf(msg, sizeof msg,
             "every rank waited %.0f s in the %s of step %lld and it does not complete: the network or MPI is stuck",
             longest, s->coll, (long long)s->coll_step);
  else if (list[0])
    snprintf(msg + used, sizeof msg - used, "; rank(s) %s waited %.0f s in the %s of step %lld", list, longest, s->coll,
             (long long)s->coll_step);
  else
    snprintf(msg + used, sizeof msg - used, "; the %s of step %lld has waited %.0f s", s->coll, (long long)s->coll_step,
             longest);
  char full[2000];
  snprintf(full, sizeof full,
           "watchdog: %s; no progress for longer than train.timeout = %.0f s, ending the job (exit code %d: requeue "
           "it, --resume auto continues from the last checkpoint)",
           msg, w->deadline, DD_EXIT_STALL);
  fail(w, full);
}

static void tick_root(dd__watchdog *w, double now) {
  snapshot(w->c, &w->table[0], now);
  w->seen[0] = now;
  int flag = 1;
  while (flag) {
    MPI_Status st;
    if (MPI_Iprobe(MPI_ANY_SOURCE, TAG_HB, w->comm, &flag, &st) != MPI_SUCCESS || !flag)
      break;
    hb h;
    if (MPI_Recv(&h, (int)sizeof h, MPI_BYTE, st.MPI_SOURCE, TAG_HB, w->comm, MPI_STATUS_IGNORE) != MPI_SUCCESS)
      break;
    if (st.MPI_SOURCE > 0 && st.MPI_SOURCE < w->c->size) {
      w->table[st.MPI_SOURCE] = h;
      w->seen[st.MPI_SOURCE] = now;
    }
  }
  for (int r = 1; r < w->c->size; r++) {
    int done = 1;
    if (w->to_rank[r] != MPI_REQUEST_NULL)
      MPI_Test(&w->to_rank[r], &done, MPI_STATUS_IGNORE);
    if (done)
      MPI_Isend(&w->ping[r], 1, MPI_BYTE, r, TAG_ROOT, w->comm, &w->to_rank[r]);
  }
  judge(w, now);
}

static void tick_rank(dd__watchdog *w, double now) {
  int done = 1;
  if (w->out_req != MPI_REQUEST_NULL)
    MPI_Test(&w->out_req, &done, MPI_STATUS_IGNORE);
  if (done) {
    snapshot(w->c, &w->out, now);
    MPI_Isend(&w->out, (int)sizeof w->out, MPI_BYTE, 0, TAG_HB, w->comm, &w->out_req);
  }
  int flag = 1;
  while (flag) {
    char b;
    if (MPI_Iprobe(0, TAG_ROOT, w->comm, &flag, MPI_STATUS_IGNORE) != MPI_SUCCESS || !flag)
      break;
    MPI_Recv(&b, 1, MPI_BYTE, 0, TAG_ROOT, w->comm, MPI_STATUS_IGNORE);
    w->root_seen = now;
  }
  const char *co = atomic_load_explicit(&w->c->act.coll, memory_order_acquire);
  double age = co ? now - atomic_load_explicit(&w->c->act.coll_since, memory_order_relaxed) : -1;
  if (age > w->deadline && now - w->root_seen > w->deadline / 2) {
    char msg[800];
    snprintf(msg, sizeof msg,
             "watchdog: rank 0 stopped responding %.0f s ago (a stopped or frozen process: SIGSTOP, a debugger, a "
             "dead node); rank %d on %s (pid %d) waited %.0f s in the %s of step %lld; no progress for longer than "
             "train.timeout = %.0f s, ending the job (exit code %d: requeue it, --resume auto continues from the last "
             "checkpoint)",
             now - w->root_seen, w->c->rank, w->c->host, (int)getpid(), age, co,
             (long long)atomic_load_explicit(&w->c->act.coll_step, memory_order_relaxed), w->deadline, DD_EXIT_STALL);
    fail(w, msg);
  }
}

static double cpu_seconds(void) {
  struct timespec ts;
  return clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) == 0 ? (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec : 0.0;
}

static void *run(void *arg) {
  dd__watchdog *w = arg;
  w->root_seen = MPI_Wtime();
  while (!atomic_load(&w->stop)) {
    /* sleep a period in slices, so stopping is quick */
    for (double t = 0; t < w->period && !atomic_load(&w->stop); t += 0.05) {
      struct timespec ts = {0, 50 * 1000 * 1000};
      const double t0 = MPI_Wtime(), c0 = cpu_seconds();
      nanosleep(&ts, NULL);
      /* a 50 ms sleep that took seconds, with (almost) no CPU time used by any thread meanwhile: the
       * whole process was stopped (SIGSTOP, a debugger) or frozen; not a slow MPI call */
      const double gap = MPI_Wtime() - t0;
      if (gap > w->deadline / 2 && cpu_seconds() - c0 < 0.1 * gap) {
        w->paused_at = MPI_Wtime();
        w->paused_s = gap;
      }
    }
    if (atomic_load(&w->stop))
      break;
    double now = MPI_Wtime();
    if (w->c->rank == 0)
      tick_root(w, now);
    else
      tick_rank(w, now);
  }
  return NULL;
}

int dd__watch_start(dd_comm *c, double deadline) {
  if (c->size == 1 || deadline <= 0 || c->wd)
    return DD_OK;
  int provided = 0;
  MPI_Query_thread(&provided);
  if (provided < MPI_THREAD_MULTIPLE)
    return DD_OK; /* the watchdog needs MPI calls from its own thread */
  dd__watchdog *w = dd_alloc(1, sizeof *w);
  if (!w)
    return DD_ENOMEM;
  w->c = c;
  w->deadline = deadline;
  w->period = deadline / 20 < 1.0 ? (deadline / 20 < 0.05 ? 0.05 : deadline / 20) : 1.0;
  w->out_req = MPI_REQUEST_NULL;
  atomic_init(&w->stop, false);
  int rc = MPI_Comm_dup(c->world, &w->comm) == MPI_SUCCESS ? DD_OK : DD_EMPI;
  if (rc == DD_OK && c->rank == 0) {
    w->table = dd_alloc((size_t)c->size, sizeof *w->table);
    w->seen = dd_alloc((size_t)c->size, sizeof *w->seen);
    w->to_rank = dd_alloc((size_t)c->size, sizeof *w->to_rank);
    w->ping = dd_alloc((size_t)c->size, 1);
    if (!w->table || !w->seen || !w->to_rank || !w->ping)
      rc = DD_ENOMEM;
    for (int r = 0; rc == DD_OK && r < c->size; r++)
      w->to_rank[r] = MPI_REQUEST_NULL;
  }
  if (rc == DD_OK) {
    int e = pthread_create(&w->th, NULL, run, w);
    if (e)
      rc = dd_error(DD_ENOMEM, "cannot start the watchdog thread: %s", strerror(e));
    else
      w->started = true;
  }
  c->wd = w;
  if (rc)
    dd__watch_stop(c);
  return rc;
}

void dd__watch_stop(dd_comm *c) {
  dd__watchdog *w = c->wd;
  if (!w)
    return;
  if (w->started) {
    atomic_store(&w->stop, true);
    pthread_join(w->th, NULL);
  }
  /* heartbeats in flight complete on their own (small, eager); nobody waits for them */
  if (w->out_req != MPI_REQUEST_NULL)
    MPI_Request_free(&w->out_req);
  for (int r = 1; w->to_rank && r < c->size; r++)
    if (w->to_rank[r] != MPI_REQUEST_NULL)
      MPI_Request_free(&w->to_rank[r]);
  if (w->comm != MPI_COMM_NULL && w->comm != 0)
    MPI_Comm_free(&w->comm);
  dd_free(w->table);
  dd_free(w->seen);
  dd_free(w->to_rank);
  dd_free(w->ping);
  dd_free(w);
  c->wd = NULL;
}

int dd_comm_set_timeout(dd_comm *c, double seconds) {
  /* collective: every rank stops and starts its watchdog with the same deadline */
  dd__watch_stop(c);
  int rc = dd__watch_start(c, seconds);
  return dd_comm_agree(c, rc);
}
