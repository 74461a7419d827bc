/* Gradient sync: buckets of the gradient arena summed across ranks while
 * backward goes on (a communication thread, or non-blocking collectives
 * polled between layers), then the step's small control sums.
 *
 * Every rank starts the same buckets in the same order, each reduced by
 * itself on a communicator of the sync's own, so the result of a bucket
 * depends only on the bucket's layout and the rank count: a run at a fixed
 * rank count and configuration is bitwise reproducible. bf16 buckets go as
 * an all-to-all of bf16 slices that each rank sums in float32 in rank order
 * and an all-gather of the rounded sums: the same bits on every rank. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>

#include "comm_impl.h"
#include "ddtrain/core.h"

#define PIECE_MAX (1 << 27) /* elements per MPI call: far below INT_MAX bytes */

typedef struct piece {
  int64_t lo, n; /* floats of the arena */
  /* bf16: n padded to a multiple of P, slices of n_pad / P */
  int64_t n_pad, off16; /* offset into the bf16 buffers */
  MPI_Request req;
  double t_beg, t_end; /* this step: dd_now() when it was started (taken by the thread) and seen done */
  int stage;           /* poll: 0 not started, 1 first collective in flight, 2 second (bf16), 3 done */
} piece;

struct dd_sync {
  dd_comm *c;
  MPI_Comm comm, comm2; /* comm2: bf16's all-gathers when polled (started in piece order, as the all-to-alls on comm) */
  int mode, dtype, P, rank;
  float *buf;
  int nbuckets, npieces;
  int *first; /* [nbuckets + 1]: pieces of bucket b are first[b] .. first[b+1]-1 */
  piece *pc;
  uint16_t *send16, *recv16; /* bf16: [total padded] each */
  int64_t bytes_step;        /* payload bytes handed to MPI per step */
  /* the step in progress */
  int started_b; /* buckets started */
  double t_first, t_last;
  /* the communication thread */
  pthread_t th;
  bool th_up;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int th_started, th_next, th_done; /* pieces: released to the thread, taken, finished */
  bool th_quit;
  int th_status;
  char th_msg[1024];
  double th_busy; /* seconds the thread spent in MPI this step */
};

static uint16_t to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x7fffffu)) /* NaN stays NaN */
    return (uint16_t)((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest even */
  return (uint16_t)(u >> 16);
}

static float from_bf16(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static void pack16(dd_sync *s, const piece *p) {
  uint16_t *o = s->send16 + p->off16;
  const float *x = s->buf + p->lo;
  for (int64_t i = 0; i < p->n; i++)
    o[i] = to_bf16(x[i]);
  for (int64_t i = p->n; i < p->n_pad; i++)
    o[i] = 0;
}

/* this rank's slice: the P ranks' bf16 values summed in float32 in rank
 * order, rounded once, into send16 (the all-gather's input) */
static void sum16(dd_sync *s, const piece *p) {
  const int64_t k = p->n_pad / s->P;
  const uint16_t *in = s->recv16 + p->off16;
  uint16_t *o = s->send16 + p->off16;
  for (int64_t i = 0; i < k; i++) {
    float acc = 0.0f;
    for (int q = 0; q < s->P; q++)
      acc += from_bf16(in[(int64_t)q * k + i]);
    o[i] = to_bf16(acc);
  }
}

static void unpack16(dd_sync *s, const piece *p) {
  const uint16_t *in = s->recv16 + p->off16;
  float *x = s->buf + p->lo;
  for (int64_t i = 0; i < p->n; i++)
    x[i] = from_bf16(in[i]);
}

/* ---- polled ---- */

static int poll_start(dd_sync *s, piece *p) {
  int e;
  if (s->dtype == DD_GRAD_F32) {
    e = MPI_Iallreduce(MPI_IN_PLACE, s->buf + p->lo, (int)p->n, MPI_FLOAT, MPI_SUM, s->comm, &p->req);
  } else {
    const int k = (int)(p->n_pad / s->P);
    pack16(s, p);
    e = MPI_Ialltoall(s->send16 + p->off16, k, MPI_UINT16_T, s->recv16 + p->off16, k, MPI_UINT16_T, s->comm, &p->req);
  }
  p->stage = 1;
  p->t_beg = dd_now();
  return e == MPI_SUCCESS ? DD_OK : dd__mpi_fail(e, "MPI_Iallreduce/Ialltoall (gradient bucket)", __FILE__, __LINE__);
}

/* advance p by one stage if its request finished (or wait for it) */
static int poll_advance(dd_sync *s, piece *p, bool wait) {
  if (p->stage == 0 || p->stage == 3)
    return DD_OK;
  int done = 0, e;
  if (wait) {
    e = MPI_Wait(&p->req, MPI_STATUS_IGNORE);
    done = 1;
  } else {
    e = MPI_Test(&p->req, &done, MPI_STATUS_IGNORE);
  }
  if (e != MPI_SUCCESS)
    return dd__mpi_fail(e, "MPI_Wait/Test (gradient bucket)", __FILE__, __LINE__);
  if (!done)
    return DD_OK;
  p->t_end = s->t_last = dd_now();
  if (s->dtype == DD_GRAD_F32 || p->stage == 2) {
    if (s->dtype != DD_GRAD_F32)
      unpack16(s, p);
    p->stage = 3;
    return DD_OK;
  }
  const int k = (int)(p->n_pad / s->P);
  sum16(s, p);
  e = MPI_Iallgather(s->send16 + p->off16, k, MPI_UINT16_T, s->recv16 + p->off16, k, MPI_UINT16_T, s->comm2, &p->req);
  p->stage = 2;
  return e == MPI_SUCCESS ? DD_OK : dd__mpi_fail(e, "MPI_Iallgather (bf16 gradient bucket)", __FILE__, __LINE__);
}

/* The communication thread: each bucket's non-blocking reduction, tested
 * every few microseconds until done, so that it moves while the main
 * thread computes (Open MPI has no progress thread of its own) without
 * spinning a core away from it: a blocking MPI call polls flat out, and
 * with ranks on every core that costs the compute more than it hides. */
static void *sync_thread(void *arg) {
  dd_sync *s = arg;
  prctl(PR_SET_TIMERSLACK, 1000UL); /* 1 us: short sleeps stay short */
  const struct timespec nap = {0, 20000};
  pthread_mutex_lock(&s->mu);
  for (;;) {
    while (!s->th_quit && s->th_next >= s->th_started)
      pthread_cond_wait(&s->cv, &s->mu);
    if (s->th_quit)
      break;
    piece *p = &s->pc[s->th_next++];
    const bool failed = s->th_status != DD_OK;
    pthread_mutex_unlock(&s->mu);
    const double t = dd_now();
    /* after an MPI error the communicator is unusable: the step fails */
    int rc = failed ? DD_OK : poll_start(s, p);
    while (!failed && rc == DD_OK && p->stage != 3) {
      rc = poll_advance(s, p, false);
      if (rc == DD_OK && p->stage != 3)
        nanosleep(&nap, NULL);
    }
    p->stage = 0;
    const double t1 = dd_now();
    pthread_mutex_lock(&s->mu);
    s->th_busy += t1 - t;
    p->t_beg = t;
    p->t_end = s->t_last = t1;
    if (rc != DD_OK && s->th_status == DD_OK) {
      s->th_status = rc;
      snprintf(s->th_msg, sizeof s->th_msg, "%s", dd_error_message());
    }
    dd_error_clear();
    s->th_done++;
    pthread_cond_broadcast(&s->cv);
  }
  pthread_mutex_unlock(&s->mu);
  return NULL;
}

/* ---- the interface ---- */

int dd_sync_create(dd_comm *c, const dd_sync_spec *spec, dd_sync **out) {
  *out = NULL;
  dd_sync *s = dd_alloc(1, sizeof *s);
  if (!s)
    return DD_ENOMEM;
  s->c = c;
  s->comm = s->comm2 = MPI_COMM_NULL;
  s->mode = spec->mode;
  s->dtype = spec->dtype;
  s->P = c->size;
  s->rank = c->rank;
  s->buf = spec->buf;
  s->nbuckets = spec->nbuckets;
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
  *out = s;
  int np = 0;
  for (int b = 0; b < spec->nbuckets; b++)
    np += (int)((spec->hi[b] - spec->lo[b] + PIECE_MAX - 1) / PIECE_MAX);
  s->first = dd_alloc((size_t)spec->nbuckets + 1, sizeof *s->first);
  s->pc = dd_alloc(np > 0 ? (size_t)np : 1, sizeof *s->pc);
  if (!s->first || !s->pc)
    return DD_ENOMEM;
  int64_t off16 = 0;
  for (int b = 0; b < spec->nbuckets; b++) {
    s->first[b] = s->npieces;
    for (int64_t lo = spec->lo[b]; lo < spec->hi[b]; lo += PIECE_MAX) {
      piece *p = &s->pc[s->npieces++];
      p->lo = lo;
      p->n = spec->hi[b] - lo < PIECE_MAX ? spec->hi[b] - lo : PIECE_MAX;
      p->n_pad = (p->n + s->P - 1) / s->P * s->P;
      p->off16 = off16;
      p->req = MPI_REQUEST_NULL;
      off16 += p->n_pad;
      if (s->P > 1) /* one rank sends nothing */
        s->bytes_step += s->dtype == DD_GRAD_F32 ? 4 * p->n : 2 * p->n_pad;
    }
  }
  s->first[spec->nbuckets] = s->npieces;
  if (s->dtype != DD_GRAD_F32) {
    s->send16 = dd_alloc(off16 > 0 ? (size_t)off16 : 1, sizeof(uint16_t));
    s->recv16 = dd_alloc(off16 > 0 ? (size_t)off16 : 1, sizeof(uint16_t));
    if (!s->send16 || !s->recv16)
      return DD_ENOMEM;
  }
  int e = MPI_Comm_dup(c->world, &s->comm);
  if (e == MPI_SUCCESS)
    e = MPI_Comm_set_errhandler(s->comm, MPI_ERRORS_RETURN);
  if (e == MPI_SUCCESS)
    e = MPI_Comm_dup(c->world, &s->comm2);
  if (e == MPI_SUCCESS)
    e = MPI_Comm_set_errhandler(s->comm2, MPI_ERRORS_RETURN);
  if (e != MPI_SUCCESS)
    return dd__mpi_fail(e, "MPI_Comm_dup (gradient sync)", __FILE__, __LINE__);
  if (s->mode == DD_SYNC_THREAD) {
    int provided = 0;
    MPI_Query_thread(&provided);
    if (provided < MPI_THREAD_MULTIPLE)
      s->mode = DD_SYNC_POLL; /* MPI was started by someone else without threads */
    else if (pthread_create(&s->th, NULL, sync_thread, s) != 0)
      return dd_error(DD_ENOMEM, "cannot start the gradient sync thread");
    else
      s->th_up = true;
  }
  return DD_OK;
}

int dd_sync_mode(const dd_sync *s) {
  return s->mode;
}

void dd_sync_bucket_times(const dd_sync *s, int b, double *t0, double *t1) {
  *t0 = *t1 = 0;
  for (int i = s->first[b]; i < s->first[b + 1]; i++) {
    if (i == s->first[b] || s->pc[i].t_beg < *t0)
      *t0 = s->pc[i].t_beg;
    if (s->pc[i].t_end > *t1)
      *t1 = s->pc[i].t_end;
  }
}

int64_t dd_sync_bucket_bytes(const dd_sync *s, int b) {
  int64_t n = 0;
  for (int i = s->first[b]; i < s->first[b + 1]; i++)
    n += s->dtype == DD_GRAD_F32 ? 4 * s->pc[i].n : 2 * s->pc[i].n_pad;
  return n;
}
int64_t dd_sync_bytes_per_step(const dd_sync *s) {
  return s->bytes_step;
}

int dd_sync_start(dd_sync *s, int bucket) {
  if (s->mode == DD_SYNC_OFF || bucket < s->started_b)
    return DD_OK;
  int rc = DD_OK;
  const double now = dd_now();
  for (; s->started_b <= bucket && rc == DD_OK; s->started_b++) {
    if (s->started_b == 0)
      s->t_first = s->t_last = now;
    const int b = s->started_b;
    if (s->mode == DD_SYNC_THREAD) {
      pthread_mutex_lock(&s->mu);
      s->th_started = s->first[b + 1];
      pthread_cond_broadcast(&s->cv);
      pthread_mutex_unlock(&s->mu);
    } else {
      for (int i = s->first[b]; i < s->first[b + 1] && rc == DD_OK; i++)
        rc = poll_start(s, &s->pc[i]);
    }
  }
  return rc;
}

int dd_sync_poll(dd_sync *s) {
  if (s->mode != DD_SYNC_POLL)
    return DD_OK;
  int rc = DD_OK;
  for (int i = 0; i < s->first[s->started_b] && rc == DD_OK; i++) {
    rc = poll_advance(s, &s->pc[i], false);
    if (s->pc[i].stage == 1) /* bf16: the all-gathers start in piece order on every rank */
      break;
  }
  return rc;
}

int dd_sync_finish(dd_sync *s, double *ctl, int nctl, dd_sync_stats *st) {
  const double t0 = dd_now();
  int rc = DD_OK;
  if (s->mode == DD_SYNC_OFF) {
    s->t_first = t0;
    /* the same buckets and the same (non-blocking) collectives as the other
     * modes, each waited for at once: the sums, and so a run's bits, do not
     * depend on the mode, which auto picks by the job's layout */
    dd__watch_enter(s->c, "allreduce (gradients)");
    for (int i = 0; i < s->npieces && rc == DD_OK; i++) {
      rc = poll_start(s, &s->pc[i]);
      while (rc == DD_OK && s->pc[i].stage != 3)
        rc = poll_advance(s, &s->pc[i], true);
      s->pc[i].stage = 0;
    }
    dd__watch_leave(s->c);
    s->t_last = dd_now();
  } else {
    rc = dd_sync_start(s, s->nbuckets - 1); /* whatever backward did not start (a rank that failed in it) */
    dd__watch_enter(s->c, "gradient sync");
    if (s->mode == DD_SYNC_THREAD) {
      pthread_mutex_lock(&s->mu);
      while (s->th_done < s->npieces)
        pthread_cond_wait(&s->cv, &s->mu);
      if (s->th_status != DD_OK && rc == DD_OK)
        rc = dd_error(s->th_status, "%s", s->th_msg);
      s->th_status = DD_OK;
      s->th_started = s->th_next = s->th_done = 0;
      if (st)
        st->busy_s = s->th_busy;
      s->th_busy = 0;
      pthread_mutex_unlock(&s->mu);
    } else {
      for (int i = 0; i < s->npieces; i++) {
        int prc = DD_OK;
        while (prc == DD_OK && s->pc[i].stage != 3 && s->pc[i].stage != 0)
          prc = poll_advance(s, &s->pc[i], true);
        s->pc[i].stage = 0;
        if (rc == DD_OK)
          rc = prc;
      }
    }
    dd__watch_leave(s->c);
  }
  s->started_b = 0;
  const double t_grads = dd_now();
  if (st) {
    st->span_s = (s->t_last > s->t_first ? s->t_last : t_grads) - s->t_first;
    if (s->mode != DD_SYNC_THREAD)
      st->busy_s = s->mode == DD_SYNC_OFF ? st->span_s : t_grads - t0;
    st->bytes = s->bytes_step;
  }
  if (ctl && nctl > 0 && rc == DD_OK) {
    dd__watch_enter(s->c, "allreduce (step sums)");
    int e = MPI_Allreduce(MPI_IN_PLACE, ctl, nctl, MPI_DOUBLE, MPI_SUM, s->c->world);
    dd__watch_leave(s->c);
    if (e != MPI_SUCCESS)
      rc = dd__mpi_fail(e, "MPI_Allreduce (step sums)", __FILE__, __LINE__);
  }
  if (st)
    st->exposed_s = dd_now() - t0;
  return rc;
}

void dd_sync_free(dd_sync *s) {
  if (!s)
    return;
  if (s->th_up) {
    pthread_mutex_lock(&s->mu);
    s->th_quit = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->th, NULL);
  }
  for (int i = 0; i < s->npieces; i++)
    if (s->pc[i].req != MPI_REQUEST_NULL)
      MPI_Request_free(&s->pc[i].req);
  if (s->comm != MPI_COMM_NULL)
    MPI_Comm_free(&s->comm);
  if (s->comm2 != MPI_COMM_NULL)
    MPI_Comm_free(&s->comm2);
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->cv);
  free(s->first);
  free(s->pc);
  free(s->send16);
  free(s->recv16);
  free(s);
}
