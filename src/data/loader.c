/* Prefetch: a background thread reads the next micro-batches of this rank while the current step computes. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ddtrain/data.h"

struct dd_loader {
  dd_loader_plan p;
  int depth;
  dd_micro *slots;    /* ring of depth */
  int64_t head, tail; /* produced, consumed (counts) */
  bool stop, failed;
  pthread_mutex_t mu;
  pthread_cond_t can_put, can_get;
  pthread_t thread;
  bool started;
};

/* The plan's micro-batches in order: (epoch, batch, j) from the start on. */
static void *run(void *arg) {
  dd_loader *l = arg;
  const dd_loader_plan *p = &l->p;
  dd_order order;
  memset(&order, 0, sizeof order);
  int64_t epoch = -1;
  int64_t e = p->epoch, b = p->batch;
  int j = 0;
  for (;;) {
    if (e >= p->epochs)
      break;
    pthread_mutex_lock(&l->mu);
    while (!l->stop && l->head - l->tail >= l->depth)
      pthread_cond_wait(&l->can_put, &l->mu);
    bool stop = l->stop;
    pthread_mutex_unlock(&l->mu);
    if (stop)
      break;
    dd_micro *mb = &l->slots[l->head % l->depth];
    mb->status = DD_OK;
    mb->msg[0] = '\0';
    if (epoch != e) {
      dd_order_free(&order);
      mb->status = dd_order_init(&order, p->order_kind, p->split->n, p->seed, e, p->chunk, p->window);
      epoch = e;
    }
    const int64_t gsize = dd_sampler_batch_size(p->split->n, p->B, b);
    int64_t lo, hi, mlo, mhi;
    dd_sampler_shard(gsize, p->P, p->rank, &lo, &hi);
    dd_sampler_shard(hi - lo, p->accum, j, &mlo, &mhi);
    mb->epoch = e;
    mb->batch = b;
    mb->j = j;
    mb->gsize = gsize;
    mb->sample0 = lo + mlo;
    mb->n = (int)(mhi - mlo);
    mb->digest = 0;
    for (int i = 0; mb->status == DD_OK && i < mb->n; i++) {
      const int64_t pos = b * p->B + lo + mlo + i; /* position in the epoch */
      mb->rows[i] = dd_split_row(p->split, dd_order_row(&order, pos));
      mb->digest += dd_hash3((uint64_t)e, (uint64_t)pos, (uint64_t)mb->rows[i]);
    }
    const int64_t step = p->step0 + (e - p->epoch) * p->steps_per_epoch + (b - p->batch);
    if (mb->status == DD_OK && j == 0 && dd_fault("read", p->rank, step))
      mb->status = dd_error(DD_EIO, "reading the samples of step %lld on rank %d failed: Input/output error (injected)",
                            (long long)step, p->rank);
    if (mb->status == DD_OK && j > 0 && j == p->accum - 1 && dd_fault("readlast", p->rank, step))
      mb->status =
          dd_error(DD_EIO, "reading the last micro-batch of step %lld on rank %d failed: Input/output error (injected)",
                   (long long)step, p->rank);
    if (mb->status == DD_OK && j == 0 && dd_fault("slowio", p->rank, step))
      sleep(3600); /* a file system that stops answering */
    mb->t_read[0] = dd_now();
    if (mb->status == DD_OK)
      mb->status = dd_source_read(p->src, mb->rows, mb->n, mb->x, mb->y, mb->len);
    mb->t_read[1] = dd_now();
    if (mb->status) { /* hand the message to the consumer's thread */
      snprintf(mb->msg, sizeof mb->msg, "%s", dd_error_message());
      dd_error_clear();
    }
    pthread_mutex_lock(&l->mu);
    l->head++;
    if (mb->status)
      l->failed = true;
    pthread_cond_signal(&l->can_get);
    pthread_mutex_unlock(&l->mu);
    if (mb->status)
      break;
    if (++j == p->accum) {
      j = 0;
      if (++b == p->steps_per_epoch) {
        b = 0;
        e++;
      }
    }
  }
  dd_order_free(&order);
  pthread_mutex_lock(&l->mu);
  l->stop = true;
  pthread_cond_broadcast(&l->can_get);
  pthread_mutex_unlock(&l->mu);
  return NULL;
}

int dd_loader_start(const dd_loader_plan *p, int depth, dd_loader **out) {
  *out = NULL;
  dd_loader *l = dd_alloc(1, sizeof *l);
  if (!l)
    return DD_ENOMEM;
  l->p = *p;
  l->depth = depth < 1 ? 1 : depth;
  l->slots = dd_alloc((size_t)l->depth, sizeof *l->slots);
  const dd_source_info *in = dd_source_get_info(p->src);
  int rc = l->slots ? DD_OK : DD_ENOMEM;
  for (int i = 0; rc == DD_OK && i < l->depth; i++) {
    dd_micro *m = &l->slots[i];
    m->x = dd_alloc((size_t)p->micro_max * (size_t)in->xsize, sizeof(float));
    m->y = dd_alloc((size_t)p->micro_max, dd_source_label_bytes(p->src) ? dd_source_label_bytes(p->src) : 4);
    m->len = dd_alloc((size_t)p->micro_max, sizeof(int32_t));
    m->rows = dd_alloc((size_t)p->micro_max, sizeof(int64_t));
    if (!m->x || !m->y || !m->len || !m->rows)
      rc = DD_ENOMEM;
  }
  pthread_mutex_init(&l->mu, NULL);
  pthread_cond_init(&l->can_put, NULL);
  pthread_cond_init(&l->can_get, NULL);
  if (rc == DD_OK) {
    /* signals are the main thread's (stop requests): the reader blocks them. Not the ones its
     * own faults raise: a blocked SIGBUS (a mapped file truncated under it) kills the process
     * instead of reaching the handler that turns it into an error (source.c). */
    sigset_t all, old;
    sigfillset(&all);
    sigdelset(&all, SIGBUS);
    sigdelset(&all, SIGSEGV);
    sigdelset(&all, SIGFPE);
    sigdelset(&all, SIGILL);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int e = pthread_create(&l->thread, NULL, run, l);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (e)
      rc = dd_error(DD_ENOMEM, "cannot start the data prefetch thread: %s", strerror(e));
    else
      l->started = true;
  }
  if (rc) {
    dd_loader_stop(l);
    return rc;
  }
  *out = l;
  return DD_OK;
}

int dd_loader_next(dd_loader *l, dd_micro **mb, double *waited) {
  double t = dd_now();
  pthread_mutex_lock(&l->mu);
  while (l->head == l->tail && !l->stop)
    pthread_cond_wait(&l->can_get, &l->mu);
  int rc = DD_OK;
  if (l->head == l->tail) {
    rc = dd_error(DD_EINVAL, "the data prefetch thread ended before the plan did");
  } else {
    *mb = &l->slots[l->tail % l->depth];
    if ((*mb)->status) {
      dd_error_set_message((*mb)->msg);
      rc = (*mb)->status;
    }
  }
  pthread_mutex_unlock(&l->mu);
  if (waited)
    *waited += dd_now() - t;
  return rc;
}

void dd_loader_done(dd_loader *l) {
  pthread_mutex_lock(&l->mu);
  l->tail++;
  pthread_cond_signal(&l->can_put);
  pthread_mutex_unlock(&l->mu);
}

void dd_loader_stop(dd_loader *l) {
  if (!l)
    return;
  if (l->started) {
    pthread_mutex_lock(&l->mu);
    l->stop = true;
    pthread_cond_broadcast(&l->can_put);
    pthread_mutex_unlock(&l->mu);
    pthread_join(l->thread, NULL);
  }
  for (int i = 0; l->slots && i < l->depth; i++) {
    dd_free(l->slots[i].x);
    dd_free(l->slots[i].y);
    dd_free(l->slots[i].len);
    dd_free(l->slots[i].rows);
  }
  dd_free(l->slots);
  pthread_mutex_destroy(&l->mu);
  pthread_cond_destroy(&l->can_put);
  pthread_cond_destroy(&l->can_get);
  dd_free(l);
}
