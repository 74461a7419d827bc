/* The data-parallel training loop: setup, steps, validation, logging, checkpoints. */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ddtrain/tensor.h"
#include "session.h"
#include "trace.h"

/* Phases of a step (and of an epoch) timed on every rank. */
enum { PH_DATA, PH_FWD, PH_BWD, PH_SYNC, PH_OPT, PH_CKPT, PH_EVAL, PH_OTHER, DD__PH_N };
static const char *const ph_name[DD__PH_N] = {"data",      "forward",    "backward",   "sync",
                                              "optimizer", "checkpoint", "evaluation", "other"};
static const char *const ph_short[DD__PH_N] = {"data", "fwd", "bwd", "sync", "opt", "ckpt", "eval", "other"};
/* what the watchdog reports a rank busy in */
static const char *const ph_watch[DD__PH_N] = {"data wait", "forward",    "backward",   "gradient sync",
                                               "optimizer", "checkpoint", "evaluation", "training loop"};

typedef struct run {
  dd_comm *c;
  const dd_config *cfg;
  const dd_train_opts *o;
  int rank, P;
  FILE *out;     /* rank 0 human output, else NULL */
  FILE *metrics; /* rank 0 JSON Lines, else NULL */
  dd_source *train_src, *val_src;
  const dd_source_info *ti; /* the training source's */
  dd_split tr, va;
  dd_model *m;
  dd_optim *opt;
  dd_schedule sched; /* LR = f(step, epoch) */
  int accum;         /* micro-batches per rank per optimizer step */
  double lr;         /* LR of the last step */
  double grad_norm;  /* global gradient norm of the last step; NaN if not computed */
  dd_train_state st;
  int64_t *rows;
  dd_loader *loader;     /* this rank's micro-batches, prefetched */
  int lock_fd;           /* rank 0: the checkpoint directory's lock */
  int order_kind;        /* DD_ORDER_* of st.sampler */
  int64_t val_n;         /* data.val_fraction: the hold-out's size (split drawn after resuming) */
  uint64_t digest_local; /* this rank's share of the epoch's sample digest since digest_base */
  uint64_t digest_base;  /* all ranks' digest before this run joined the epoch */
  void *ybuf;
  int32_t *lenbuf; /* [micro batch] sequence lengths */
  int64_t steps_per_epoch;
  int threads;
  bool kernels_differ; /* ranks run different BLAS kernel sets (nodes with different CPUs) */
  double t0;
  /* gradient sync: buckets of the arena, last layers first */
  dd_sync *sync;
  int *bucket_at; /* [nlayers]: the last bucket final once layer i's backward is done, or -1 */
  int nbuckets;
  /* phase timers: seconds per phase since the last epoch / step record */
  double ph_epoch[DD__PH_N], ph_log[DD__PH_N], ph_t;
  int ph_cur;
  double sync_span, sync_busy; /* since the last epoch record */
  int64_t sync_bytes;
  double t_record;   /* when the last epoch record was written */
  double peak_flops; /* all ranks' sgemm peak, FLOP/s */
  /* train.trace_steps: steps [trace_a, trace_b) go to trace/ */
  int64_t trace_a, trace_b;
  dd__trace *trace; /* open while tracing */
  char trace_dir[DD_PATH_MAX + 16];
  double layer_t, step_t; /* tracing: when the current layer / step began */
  bool micro_last;        /* the micro-batch in progress is the step's last: it starts the buckets */
  int stop_signal;        /* the largest signal number any rank was stopped by */
  char metrics_path[DD_PATH_MAX + 32];
  char last_ckpt[1100];
} run;

/* ---- setup ------------------------------------------------------------- */

static int pick_threads(const dd_config *cfg, dd_comm *c) {
  if (cfg->threads > 0)
    return (int)cfg->threads;
  const char *s = getenv("SLURM_CPUS_PER_TASK");
  if (s && atoi(s) > 0)
    return atoi(s);
  s = getenv("OPENBLAS_NUM_THREADS");
  if (s && atoi(s) > 0)
    return atoi(s);
  cpu_set_t set;
  int allowed = 1;
  if (sched_getaffinity(0, sizeof set, &set) == 0)
    allowed = CPU_COUNT(&set);
  long online = sysconf(_SC_NPROCESSORS_ONLN);
  int per = (int)(online / dd_comm_local_size(c));
  if (allowed < per)
    per = allowed;
  return per > 0 ? per : 1;
}

static int open_metrics(run *r, bool append) {
  if (r->rank != 0)
    return DD_OK;
  char path[DD_PATH_MAX + 32];
  if (r->cfg->metrics[0])
    snprintf(path, sizeof path, "%s", r->cfg->metrics);
  else if (r->cfg->ckpt_dir[0])
    snprintf(path, sizeof path, "%s/metrics.jsonl", r->cfg->ckpt_dir);
  else
    return DD_OK;
  int rc = dd_mkdirs_for(path, "train.metrics");
  if (rc)
    return rc;
  r->metrics = fopen(path, append ? "a" : "w");
  if (!r->metrics)
    return dd_error(DD_EIO, "cannot open metrics log '%s' for writing (train.metrics); check the directory", path);
  snprintf(r->metrics_path, sizeof r->metrics_path, "%s", path);
  return DD_OK;
}

/* A metrics log that cannot be written is an error (a full disk, a quota),
 * decided on rank 0 and agreed: every rank stops alike. With close, the log
 * is closed (rank 0). */
static int metrics_ok(run *r, bool close) {
  int rc = DD_OK;
  if (r->metrics) {
    errno = 0;
    bool bad = fflush(r->metrics) != 0 || ferror(r->metrics);
    int e = errno;
    if (close) {
      bad = fclose(r->metrics) != 0 || bad;
      e = e ? e : errno;
      r->metrics = NULL;
    }
    if (bad)
      rc = dd_error(DD_EIO,
                    "cannot write the metrics log '%s': %s; free space on its file system or point train.metrics "
                    "elsewhere (the last checkpoint is intact)",
                    r->metrics_path, e ? strerror(e) : "write error");
  }
  return dd_comm_agree(r->c, rc);
}

/* JSON number or null */
static void jnum(FILE *f, const char *key, double v, bool last) {
  if (isfinite(v))
    fprintf(f, "\"%s\": %.9g%s", key, v, last ? "" : ", ");
  else
    fprintf(f, "\"%s\": null%s", key, last ? "" : ", ");
}

static void jstr(FILE *f, const char *key, const char *v) {
  fprintf(f, "\"%s\": \"", key);
  for (const char *p = v; *p; p++) {
    if (*p == '"' || *p == '\\')
      fprintf(f, "\\%c", *p);
    else if ((unsigned char)*p < 0x20)
      fprintf(f, "\\u%04x", *p);
    else
      fputc(*p, f);
  }
  fprintf(f, "\", ");
}

/* The rank moves on to phase ph: the time since the last switch goes to
 * the phase it leaves. */
static void phase_to(run *r, int ph) {
  const double now = dd_now();
  if (r->trace && now > r->ph_t)
    dd__trace_event(r->trace, ph_name[r->ph_cur], "phase", 0, r->ph_t, now, r->st.step, NULL);
  r->layer_t = now;
  r->ph_epoch[r->ph_cur] += now - r->ph_t;
  r->ph_log[r->ph_cur] += now - r->ph_t;
  r->ph_cur = ph;
  r->ph_t = now;
  dd_comm_phase(r->c, ph_watch[ph], r->st.step);
}

static int open_source(run *r, const char *path, const char *key, dd_source **out) {
  const dd_config *cfg = r->cfg;
  dd_source_spec spec = {.path = path,
                         .xname = cfg->x,
                         .yname = cfg->y,
                         .lengths = cfg->lengths,
                         .pad_id = cfg->pad_id,
                         /* data.shuffle chunks: a window's chunks stay decoded while its batches read them */
                         .cache_chunks = cfg->shuffle == DD_SHUFFLE_CHUNKS ? cfg->shuffle_window + 1 : 0,
                         .map = !isnan(cfg->scale) || !isnan(cfg->shift),
                         .scale = isnan(cfg->scale) ? 1.0 : cfg->scale,
                         .shift = isnan(cfg->shift) ? 0.0 : cfg->shift,
                         .key = key};
  return dd_source_open(r->c, &spec, out);
}

static int load_data(run *r) {
  const dd_config *cfg = r->cfg;
  if (!cfg->train[0])
    return dd_error(DD_ECONFIG,
                    "%s: data.train is missing; set it to the training HDF5 file (make one with 'ddtrain data synth')",
                    cfg->source);
  if (cfg->val[0] && cfg->val_fraction > 0)
    return dd_error(DD_ECONFIG, "%s: set either data.val or data.val_fraction, not both", cfg->source);
  int rc = open_source(r, cfg->train, "data.train", &r->train_src);
  if (rc)
    return rc;
  r->ti = dd_source_get_info(r->train_src);
  if (cfg->val[0]) {
    rc = open_source(r, cfg->val, "data.val", &r->val_src);
    if (rc)
      return rc;
    dd_split_all(r->ti->n, &r->tr);
    dd_split_all(dd_source_get_info(r->val_src)->n, &r->va);
  } else if (cfg->val_fraction > 0) {
    /* the rows are drawn from the run's seed once it is known (a resumed
     * run's comes from its checkpoint); the sizes are known now */
    const int64_t n = r->ti->n, nval = (int64_t)llround(cfg->val_fraction * (double)n);
    if (nval < 1 || nval >= n)
      return dd_error(DD_ECONFIG,
                      "data.val_fraction = %g of %lld samples leaves %lld for validation and %lld for training; both "
                      "need at least one",
                      cfg->val_fraction, (long long)n, (long long)nval, (long long)(n - nval));
    r->val_n = nval;
    r->tr.n = n - nval;
    r->va.n = nval;
  } else {
    dd_split_all(r->ti->n, &r->tr);
  }
  return DD_OK;
}

/* The watchdog's report also goes to the metrics log (rank 0 detects, it has the log). */
static void on_stall(void *ctx, const char *msg) {
  run *r = ctx;
  if (!r->metrics)
    return;
  fprintf(r->metrics, "{\"event\": \"stall\", \"step\": %lld, ", (long long)r->st.step);
  jstr(r->metrics, "message", msg);
  fprintf(r->metrics, "\"elapsed_s\": %.3f}\n", dd_now() - r->t0);
  fflush(r->metrics);
}

/* Buckets of the gradient arena, from its end (the last layer's gradients
 * are final first): whole layers, closed once they hold comm.bucket_mb;
 * the same in every mode. Collective. */
static int make_sync(run *r) {
  const dd_model *m = r->m;
  const dd_config *cfg = r->cfg;
  /* the same buckets in every mode: a run's sums do not depend on it */
  const int64_t cap = (int64_t)(cfg->bucket_mb * 1048576.0 / 4.0);
  int64_t *lo = dd_alloc((size_t)m->nlayers + 1, sizeof(int64_t)),
          *hi = dd_alloc((size_t)m->nlayers + 1, sizeof(int64_t));
  r->bucket_at = dd_alloc((size_t)m->nlayers + 1, sizeof(int));
  int rc = lo && hi && r->bucket_at ? DD_OK : DD_ENOMEM;
  int nb = 0;
  int64_t top = -1, bottom = -1; /* the open bucket [bottom, top) */
  for (int i = m->nlayers - 1; i >= 0 && rc == DD_OK; i--) {
    r->bucket_at[i] = -1;
    int64_t a, b;
    dd_model_layer_range(m, i, &a, &b);
    if (a == b)
      continue;
    if (top < 0)
      top = b;
    bottom = a;
    if (top - bottom >= cap || bottom == 0) {
      lo[nb] = bottom;
      hi[nb] = top;
      r->bucket_at[i] = nb++;
      top = -1;
    }
  }
  r->nbuckets = nb;
  /* auto: on one node shared memory sums faster than overlap saves, and
   * every core already computes (measured: docs/communication.md) */
  const int ov =
      cfg->overlap == DD_OVERLAP_AUTO ? (dd_comm_nodes(r->c) > 1 ? DD_OVERLAP_THREAD : DD_OVERLAP_OFF) : cfg->overlap;
  const int mode = r->P == 1 || ov == DD_OVERLAP_OFF ? DD_SYNC_OFF
                   : ov == DD_OVERLAP_POLL           ? DD_SYNC_POLL
                                                     : DD_SYNC_THREAD;
  dd_sync_spec spec = {.mode = mode,
                       .dtype = cfg->grad_dtype == DD_WIRE_BF16 ? DD_GRAD_BF16 : DD_GRAD_F32,
                       .buf = r->m->grads,
                       .nbuckets = nb,
                       .lo = lo,
                       .hi = hi};
  if (rc == DD_OK)
    rc = dd_sync_create(r->c, &spec, &r->sync);
  dd_free(lo);
  dd_free(hi);
  return dd_comm_agree(r->c, rc);
}

static int setup(run *r) {
  const dd_config *cfg = r->cfg;
  int trc = dd_comm_set_timeout(r->c, cfg->timeout);
  if (trc)
    return trc;
  r->threads = pick_threads(cfg, r->c);
  /* before the threads start: their buffers are mapped as they start */
  char why[400];
  if (dd_tensor_blas_memory_check(r->threads, why, sizeof why) != 0)
    trc = dd_error(DD_ENOMEM, "%s", why);
  if ((trc = dd_comm_agree(r->c, trc)) != DD_OK)
    return trc;
  dd_tensor_set_threads(r->threads);
  /* the job's peak for MFU: every rank measures at once, as they compute */
  double peak = cfg->peak_gflops > 0 ? cfg->peak_gflops * 1e9 : dd_tensor_gemm_peak(0.05);
  if ((trc = dd_comm_allreduce_f64(r->c, &peak, 1)) != DD_OK)
    return trc;
  r->peak_flops = peak;
  const char *kern = dd_tensor_kernel_current();
  bool same = true;
  int rc = dd_comm_same_u64(r->c, dd_fnv1a(kern, strlen(kern), DD_FNV_OFFSET), &same);
  r->kernels_differ = !same;
  if (rc == DD_OK)
    rc = load_data(r);
  if (rc)
    return rc;
  const int64_t B = cfg->batch_size;
  if (B < r->P)
    return dd_error(DD_ECONFIG,
                    "train.batch_size = %lld is smaller than the number of ranks (%d); every rank needs at least one "
                    "sample per step: raise train.batch_size or run fewer ranks",
                    (long long)B, r->P);
  r->steps_per_epoch = dd_sampler_batches(r->tr.n, B, cfg->drop_last);
  if (r->steps_per_epoch == 0)
    return dd_error(DD_ECONFIG,
                    "data.train has %lld training samples, fewer than train.batch_size = %lld with data.drop_last; "
                    "lower the batch size or set data.drop_last: false",
                    (long long)r->tr.n, (long long)B);
  const int64_t local_max = (B + r->P - 1) / r->P;
  int64_t accum = cfg->accum_steps;
  if (cfg->micro_batch > 0) {
    if (cfg->accum_steps != 1)
      return dd_error(DD_ECONFIG,
                      "train.micro_batch = %lld and train.accum_steps = %lld both split the step; set one of them "
                      "(micro_batch: N runs each rank's share in ceil(share / N) micro-batches)",
                      (long long)cfg->micro_batch, (long long)cfg->accum_steps);
    accum = (local_max + cfg->micro_batch - 1) / cfg->micro_batch;
    if (accum > 1000000) /* the limit of accum_steps */
      return dd_error(DD_ECONFIG,
                      "train.micro_batch = %lld makes %lld micro-batches of the %lld samples per rank of "
                      "train.batch_size = %lld, more than 1000000; raise train.micro_batch",
                      (long long)cfg->micro_batch, (long long)accum, (long long)local_max, (long long)B);
  }
  if (accum > local_max)
    return dd_error(DD_ECONFIG,
                    "train.accum_steps = %lld is more than the %lld sample(s) per rank of train.batch_size = %lld at "
                    "%d rank(s); every micro-batch needs a sample: lower train.accum_steps or raise train.batch_size",
                    (long long)cfg->accum_steps, (long long)local_max, (long long)B, r->P);
  r->accum = (int)accum;
  /* activations are sized for one micro-batch */
  const int64_t micro_max = (local_max + r->accum - 1) / r->accum;
  if (micro_max > 0x7fffffff)
    return dd_error(DD_ECONFIG, "train.batch_size per rank is too large");
  dd_model_spec spec = {.nlayers = cfg->nlayers, .layers = cfg->layers, .loss = cfg->loss};
  /* fail before allocating rather than in the OOM killer (DD_MEM_CHECK=0: off) */
  char mem_why[300];
  const char *mc = getenv("DD_MEM_CHECK");
  if (!(mc && strcmp(mc, "0") == 0)) {
    double budget = dd_mem_budget(dd_comm_local_size(r->c), mem_why, sizeof mem_why);
    if (isfinite(budget)) {
      spec.mem_budget = budget > 1.0 ? budget : 1.0;
      spec.mem_per_param = 4.0 * dd_optim_state_count(&cfg->optim);
      spec.mem_budget_why = mem_why;
    }
  }
  rc = dd__input_shape(cfg, r->ti, &spec.input);
  if (rc == DD_OK)
    rc = dd_model_build(&spec, (int)micro_max, 0, &r->m);
  /* the checks below are collective: every rank takes part whatever happened above */
  rc = dd_comm_agree(r->c, rc);
  if (rc == DD_OK)
    rc = dd__check_labels(r->c, r->m, r->train_src, "data.train");
  if (rc == DD_OK)
    rc = dd__check_tokens(r->c, r->m, r->train_src, "data.train");
  if (rc == DD_OK && r->val_src)
    rc = dd__check_tokens(r->c, r->m, r->val_src, "data.val");
  if (rc == DD_OK && r->val_src)
    rc = dd__check_input(r->m, dd_source_get_info(r->val_src), "data.val");
  if (rc == DD_OK && r->val_src)
    rc = dd__check_labels(r->c, r->m, r->val_src, "data.val");
  if (rc == DD_OK)
    rc = dd_optim_create(&cfg->optim, r->m->nparams, &r->opt);
  /* parameter groups: under optim.decay: weights, what is not a weight matrix does not decay */
  for (int i = 0; rc == DD_OK && cfg->optim.decay == DD_DECAY_WEIGHTS && i < r->m->ntensors; i++) {
    const dd_tensor_ref *t = &r->m->tensors[i];
    if (!t->is_buffer && !t->param->weight_matrix)
      rc = dd_optim_no_decay(r->opt, t->param->offset, t->param->size);
  }
  if (rc == DD_OK)
    rc = dd_schedule_init(&cfg->schedule, dd_optim_scaled_lr(&cfg->optim, B), cfg->epochs, r->steps_per_epoch,
                          &r->sched);
  if ((rc = dd_comm_agree(r->c, rc)) != DD_OK) /* make_sync is collective */
    return rc;
  r->lr = r->grad_norm = NAN;
  if (cfg->trace_steps[0]) {
    long long a = -1, b = -1;
    char extra;
    if (sscanf(cfg->trace_steps, "%lld:%lld%c", &a, &b, &extra) != 2 || a < 0 || b <= a)
      return dd_comm_agree(r->c, dd_error(DD_ECONFIG,
                                          "train.trace_steps = '%s': expected FIRST:END optimizer steps, END > FIRST "
                                          "(END excluded), e.g. 100:110",
                                          cfg->trace_steps));
    r->trace_a = a;
    r->trace_b = b;
    if (cfg->ckpt_dir[0]) {
      snprintf(r->trace_dir, sizeof r->trace_dir, "%s/trace", cfg->ckpt_dir);
    } else if (cfg->metrics[0] && strrchr(cfg->metrics, '/')) {
      snprintf(r->trace_dir, sizeof r->trace_dir, "%.*s/trace", (int)(strrchr(cfg->metrics, '/') - cfg->metrics),
               cfg->metrics);
    } else {
      snprintf(r->trace_dir, sizeof r->trace_dir, "trace");
    }
  }
  if ((rc = make_sync(r)) != DD_OK)
    return rc;
  r->rows = dd_alloc((size_t)micro_max, sizeof(int64_t));
  r->ybuf = dd_alloc((size_t)micro_max, dd_source_label_bytes(r->train_src));
  r->lenbuf = dd_alloc((size_t)micro_max, sizeof(int32_t));
  if (!r->rows || !r->ybuf || !r->lenbuf)
    return DD_ENOMEM;
  return DD_OK;
}

/* --resume PATH to an older checkpoint of the run's own directory would
 * branch it: the branch's checkpoints would sit beside (and be pruned with)
 * the newer ones of the original line. Refused, with the ways out. */
static int no_branch(run *r, const char *path) {
  char newest[1100];
  int rc = dd_checkpoint_latest(r->c, r->cfg->ckpt_dir, newest, sizeof newest);
  if (rc == DD_ENOTFOUND) {
    dd_error_clear();
    return DD_OK;
  }
  if (rc)
    return rc;
  struct stat a, b;
  const bool same = stat(path, &a) == 0 && stat(newest, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
  if (same || dd_checkpoint_step_of(newest) <= r->st.step)
    return DD_OK;
  return dd_error(DD_ECONFIG,
                  "--resume %s is older than the newest checkpoint of checkpoint.dir '%s' (%s); continuing from it "
                  "would branch the run inside that directory. Continue the run with --resume auto, or branch into "
                  "another directory: --resume %s checkpoint.dir=NEW_DIR",
                  path, r->cfg->ckpt_dir, newest, path);
}

/* The sample order this config asks for. */
static void set_sampler(run *r, dd_train_state *st) {
  const dd_config *cfg = r->cfg;
  memset(st->sampler, 0, sizeof st->sampler);
  if (cfg->shuffle == DD_SHUFFLE_CHUNKS) {
    snprintf(st->sampler, sizeof st->sampler, "chunks");
    /* the HDF5 chunks of the features; contiguous data: blocks of 1024 rows */
    st->sampler_chunk = r->ti->chunk_rows > 0 ? r->ti->chunk_rows : 1024;
    st->sampler_window = cfg->shuffle_window;
  } else {
    snprintf(st->sampler, sizeof st->sampler, "global");
    st->sampler_chunk = st->sampler_window = 0;
  }
}

/* After loading a checkpoint: a version 1 checkpoint keeps its run's
 * Fisher-Yates orders and hold-out to the end, so it resumes exactly; a
 * changed data.shuffle applies from the next epoch on. */
static int resume_sampler(run *r) {
  dd_train_state want = r->st;
  set_sampler(r, &want);
  if (strcmp(r->st.sampler, "legacy") == 0) {
    if (r->out)
      fprintf(r->out,
              "resume: note: a checkpoint of ddtrain 0.1: keeping its sample order and hold-out (Fisher-Yates, "
              "%lld samples in memory) so the run continues exactly\n",
              (long long)r->ti->n);
    return DD_OK;
  }
  const bool differ = strcmp(want.sampler, r->st.sampler) != 0 || want.sampler_chunk != r->st.sampler_chunk ||
                      want.sampler_window != r->st.sampler_window;
  if (differ && r->st.batch > 0)
    return dd_error(DD_ECONFIG,
                    "the checkpoint is in the middle of epoch %lld with data.shuffle %s (chunk %lld, window %lld); "
                    "resume with the same data.shuffle and data.shuffle_window until the epoch ends",
                    (long long)r->st.epoch + 1, r->st.sampler, (long long)r->st.sampler_chunk,
                    (long long)r->st.sampler_window);
  if (differ) {
    snprintf(r->st.sampler, sizeof r->st.sampler, "%s", want.sampler);
    r->st.sampler_chunk = want.sampler_chunk;
    r->st.sampler_window = want.sampler_window;
  }
  return DD_OK;
}

/* Parameters: rank 0's (fresh or from a checkpoint) everywhere, verified. */
static int init_state(run *r) {
  const dd_config *cfg = r->cfg;
  r->st.seed = (uint64_t)cfg->seed;
  r->st.nranks = r->P;
  r->st.batch_size = cfg->batch_size;
  set_sampler(r, &r->st);
  dd_model_init_params(r->m, (uint64_t)cfg->seed);
  int rc = dd_comm_bcast(r->c, r->m->params, r->m->nparams * 4, 0);
  if (rc == DD_OK)
    rc = dd_comm_bcast(r->c, r->m->buffers, r->m->nbuffers * 4, 0);
  if (rc)
    return rc;
  char path[1100] = "";
  const char *resume = r->o ? r->o->resume : NULL;
  /* one run per checkpoint directory, for the whole run */
  if (cfg->ckpt_dir[0] && (rc = dd_checkpoint_lock(r->c, cfg->ckpt_dir, &r->lock_fd)) != DD_OK)
    return rc;
  if (resume && strcmp(resume, "auto") == 0) {
    rc = cfg->ckpt_dir[0] ? dd_checkpoint_latest(r->c, cfg->ckpt_dir, path, sizeof path) : DD_ENOTFOUND;
    if (rc == DD_ENOTFOUND) {
      dd_error_clear();
      if (r->out)
        fprintf(r->out, "resume: no checkpoint in '%s' yet; starting from scratch\n", cfg->ckpt_dir);
      rc = DD_OK;
      path[0] = '\0';
    }
  } else if (resume) {
    snprintf(path, sizeof path, "%s", resume);
  } else if (cfg->ckpt_dir[0]) {
    /* a fresh run must not mix its checkpoints with an earlier run's */
    char found[1100];
    rc = dd_checkpoint_latest(r->c, cfg->ckpt_dir, found, sizeof found);
    if (rc == DD_OK)
      return dd_error(DD_ECONFIG,
                      "checkpoint.dir '%s' already holds checkpoints of an earlier run (%s); continue it with "
                      "--resume auto, or pick another checkpoint.dir, or remove them",
                      cfg->ckpt_dir, found);
    if (rc != DD_ENOTFOUND)
      return rc;
    dd_error_clear();
    rc = DD_OK;
  }
  if (rc)
    return rc;
  if (path[0]) {
    rc = dd_checkpoint_load(r->c, path, r->m, r->opt, &r->st);
    if (rc == DD_OK && strcmp(resume, "auto") != 0 && cfg->ckpt_dir[0])
      rc = no_branch(r, path);
    if (rc)
      return rc;
    if (r->st.seed != (uint64_t)cfg->seed && r->out)
      fprintf(r->out, "resume: note: checkpoint seed %llu differs from train.seed %lld; using the checkpoint's\n",
              (unsigned long long)r->st.seed, (long long)cfg->seed);
    if (r->st.batch_size != cfg->batch_size) {
      /* the position within the epoch is counted in old batches */
      if (r->out)
        fprintf(r->out, "resume: note: train.batch_size changed from %lld to %lld; restarting epoch %lld\n",
                (long long)r->st.batch_size, (long long)cfg->batch_size, (long long)r->st.epoch + 1);
      r->st.batch = 0;
      r->st.batch_size = cfg->batch_size;
    }
    if (r->st.batch >= r->steps_per_epoch) {
      r->st.epoch++;
      r->st.batch = 0;
    }
    if (r->st.batch == 0) /* the epoch starts afresh */
      r->st.ep_loss = r->st.ep_count = r->st.ep_correct = r->st.ep_samples = 0, r->st.ep_digest = 0;
    r->st.nranks = r->P;
    if (r->out)
      fprintf(r->out, "resume: %s (epoch %lld, batch %lld, step %lld)\n", path, (long long)r->st.epoch + 1,
              (long long)r->st.batch, (long long)r->st.step);
  }
  if (path[0]) {
    rc = resume_sampler(r);
    if (rc)
      return rc;
  }
  r->order_kind = strcmp(r->st.sampler, "legacy") == 0   ? DD_ORDER_LEGACY
                  : strcmp(r->st.sampler, "chunks") == 0 ? DD_ORDER_CHUNKS
                                                         : DD_ORDER_GLOBAL;
  if (r->val_n > 0) /* the hold-out of the run's seed (a resumed run's is the checkpoint's) */
    rc = dd_split_holdout(r->ti->n, cfg->val_fraction, r->st.seed, r->order_kind == DD_ORDER_LEGACY, &r->tr, &r->va);
  bool same = false;
  if (rc == DD_OK)
    rc = dd_comm_same_u64(r->c, dd_model_checksum(r->m), &same);
  if (rc == DD_OK && !same)
    rc = dd_error(DD_EMISMATCH, "parameters differ across ranks after the broadcast from rank 0; "
                                "this points at a broken MPI installation or mixed ddtrain builds");
  return rc;
}

/* "optim: adam lr 0.002 (0.001 x 512/256) betas [0.9, 0.999] ...; schedule: ..." */
static void print_optim(run *r) {
  const dd_optim_spec *o = &r->opt->spec;
  char sched[256];
  fprintf(r->out, "optim: %s lr %g", dd_optim_name(o->kind), r->sched.base_lr);
  if (o->ref_batch_size > 0)
    fprintf(r->out, " (%g x %lld/%lld)", o->lr, (long long)r->cfg->batch_size, (long long)o->ref_batch_size);
  if (o->momentum > 0)
    fprintf(r->out, " momentum %g%s", o->momentum, o->nesterov ? " (nesterov)" : "");
  if (!isnan(o->betas[0]))
    fprintf(r->out, " betas [%g, %g]%s", o->betas[0], o->betas[1], o->amsgrad ? " amsgrad" : "");
  if (!isnan(o->alpha))
    fprintf(r->out, " alpha %g%s", o->alpha, o->centered ? " centered" : "");
  if (o->lr_decay > 0)
    fprintf(r->out, " lr_decay %g", o->lr_decay);
  if (o->weight_decay > 0)
    fprintf(r->out, " weight_decay %g%s%s", o->weight_decay, o->decoupled_weight_decay ? " (decoupled)" : "",
            o->decay == DD_DECAY_WEIGHTS ? " on weight matrices" : "");
  if (o->clip_norm > 0)
    fprintf(r->out, " clip_norm %g", o->clip_norm);
  fprintf(r->out, "; schedule: %s\n", dd_schedule_describe(&r->sched, sched, sizeof sched));
}

/* "data/train.h5", or "data/a.h5 (+2 more files)" for several */
static const char *one_line(const char *paths, const dd_source_info *in, char *buf, size_t n) {
  const char *nl = strchr(paths, '\n');
  int len = nl ? (int)(nl - paths) : (int)strlen(paths);
  if (in->nfiles > 1)
    snprintf(buf, n, "%.*s (%d files)", len, paths, in->nfiles);
  else
    snprintf(buf, n, "%.*s", len, paths);
  return buf;
}

static void print_header(run *r) {
  if (!r->out)
    return;
  const dd_config *cfg = r->cfg;
  char shape[64], sum[4096];
  fprintf(r->out, "ddtrain %s: %d rank(s) on %d node(s), %d BLAS thread(s) per rank\n", DD_VERSION_STRING, r->P,
          dd_comm_nodes(r->c), r->threads);
  char kern[800];
  fprintf(r->out, "BLAS kernels%s: %s\n", r->kernels_differ ? " (rank 0; other ranks run other sets)" : "",
          dd_tensor_kernel_summary(kern, sizeof kern));
  char files[256], vfiles[256];
  one_line(cfg->train, r->ti, files, sizeof files);
  fprintf(r->out, "data: %s: %lld training samples of %s", files, (long long)r->tr.n,
          dd_shape_str(r->ti->xshape, shape, sizeof shape));
  if (strcmp(r->ti->xtype, "float32") != 0 || r->ti->scale != 1.0 || r->ti->shift != 0.0)
    fprintf(r->out, " (%s, read as x * %.6g + %.6g)", r->ti->xtype, r->ti->scale, r->ti->shift);
  if (r->ti->ykind == DD_LABELS_CLASS)
    fprintf(r->out, ", %lld classes", (long long)r->m->classes);
  if (r->val_src)
    fprintf(r->out, "; validation: %s (%lld samples)\n",
            one_line(cfg->val, dd_source_get_info(r->val_src), vfiles, sizeof vfiles), (long long)r->va.n);
  else if (r->va.n)
    fprintf(r->out, "; validation: %lld held out (data.val_fraction %g)\n", (long long)r->va.n, cfg->val_fraction);
  else
    fprintf(r->out, "; no validation data\n");
  fprintf(r->out, "reading: every rank streams its own samples (%s%s%s), prefetched; order %s",
          r->ti->chunk_rows ? "chunked" : "contiguous", r->ti->compressed ? ", compressed" : "",
          r->ti->nfiles > 1 ? ", several files" : "", r->st.sampler);
  if (strcmp(r->st.sampler, "chunks") == 0)
    fprintf(r->out, " (%lld rows x %lld chunks per window)", (long long)r->st.sampler_chunk,
            (long long)r->st.sampler_window);
  fprintf(r->out, "\n");
  if (r->ti->compressed && strcmp(r->st.sampler, "global") == 0)
    fprintf(r->out,
            "warning: %s is compressed in chunks of %lld rows and data.shuffle is global: each sample read "
            "decodes a whole chunk; data.shuffle: chunks reads each chunk once per epoch\n",
            r->ti->path, (long long)r->ti->chunk_rows);
  dd_model_summary(r->m, sum, sizeof sum);
  fprintf(r->out, "model (%s loss):\n%s", cfg->loss == DD_LOSS_MSE ? "mse" : "cross-entropy", sum);
  print_optim(r);
  fprintf(r->out, "global batch %lld (%lld-%lld per rank", (long long)cfg->batch_size,
          (long long)(cfg->batch_size / r->P), (long long)((cfg->batch_size + r->P - 1) / r->P));
  if (r->accum > 1)
    fprintf(r->out, " in %d micro-batches of up to %d", r->accum, r->m->max_batch);
  fprintf(r->out, "), %lld steps per epoch\n", (long long)r->steps_per_epoch);
  if (cfg->ckpt_dir[0])
    fprintf(r->out, "checkpoints: %s/ every %lld epoch(s)%s, keep %lld\n", cfg->ckpt_dir,
            (long long)cfg->ckpt_every_epochs, cfg->ckpt_every_steps ? " and by steps" : "", (long long)cfg->ckpt_keep);
  fflush(r->out);
}

static void metrics_start(run *r) {
  if (!r->metrics)
    return;
  FILE *f = r->metrics;
  fprintf(f, "{\"event\": \"start\", ");
  jstr(f, "version", DD_VERSION_STRING);
  jstr(f, "config", r->cfg->source);
  dd_blas_kernels k;
  dd_tensor_kernel_info(&k);
  fprintf(f, "\"blas\": {");
  jstr(f, "library", dd_tensor_blas_info());
  jstr(f, "kernels", k.name);
  jstr(f, "origin", k.origin);
  jstr(f, "openblas_choice", k.picked);
  jstr(f, "cpu", k.cpu);
  jstr(f, "cpu_best", k.cpu_best);
  jstr(f, "rejected", k.rejected);
  jstr(f, "reason", k.reason);
  fprintf(f, "\"verified\": %s, \"same_on_all_ranks\": %s}, ", k.verified ? "true" : "false",
          r->kernels_differ ? "false" : "true");
  fprintf(f,
          "\"ranks\": %d, \"nodes\": %d, \"threads_per_rank\": %d, \"parameters\": %lld, "
          "\"train_samples\": %lld, \"val_samples\": %lld, \"batch_size\": %lld, \"steps_per_epoch\": %lld, "
          "\"resumed_at_step\": %lld}\n",
          r->P, dd_comm_nodes(r->c), r->threads, (long long)r->m->nparams, (long long)r->tr.n, (long long)r->va.n,
          (long long)r->cfg->batch_size, (long long)r->steps_per_epoch, (long long)r->st.step);
  fflush(f);
}

static int save(run *r) {
  if (!r->cfg->ckpt_dir[0])
    return DD_OK;
  phase_to(r, PH_CKPT);
  r->st.nranks = r->P;
  if (r->st.batch > 0) { /* mid-epoch: the digest so far, of all ranks */
    uint64_t d = r->digest_local;
    int rc = dd_comm_allreduce_sum_u64(r->c, &d, 1);
    if (rc)
      return rc;
    r->st.ep_digest = r->digest_base + d;
  }
  int rc = dd_checkpoint_save_with_vocab(r->c, r->cfg->ckpt_dir, (int)r->cfg->ckpt_keep, r->m, r->opt, &r->st,
                                         r->cfg->text, r->ti->vocab, r->ti->nvocab, r->last_ckpt, sizeof r->last_ckpt);
  if (rc == DD_OK && r->metrics) {
    fprintf(r->metrics, "{\"event\": \"checkpoint\", \"step\": %lld, \"epoch\": %lld, ", (long long)r->st.step,
            (long long)r->st.epoch);
    jstr(r->metrics, "path", r->last_ckpt);
    fprintf(r->metrics, "\"elapsed_s\": %.3f}\n", dd_now() - r->t0);
    fflush(r->metrics);
  }
  phase_to(r, PH_OTHER);
  return rc;
}

/* The phases since the last record (acc: the epoch's or the log's), over
 * ranks: mean, max and who had the max. Collective. */
typedef struct phase_stats {
  double mean[DD__PH_N + 2], max[DD__PH_N + 2];
  int who[DD__PH_N + 2];
} phase_stats;

static int phase_stats_of(run *r, double *acc, double span, double busy, phase_stats *ps) {
  phase_to(r, r->ph_cur); /* book the time up to now */
  double v[DD__PH_N + 2];
  memcpy(v, acc, sizeof(double) * DD__PH_N);
  v[DD__PH_N] = span;
  v[DD__PH_N + 1] = busy;
  for (int i = 0; i < DD__PH_N; i++)
    acc[i] = 0;
  return dd_comm_stats_f64(r->c, v, DD__PH_N + 2, ps->mean, ps->max, ps->who);
}

static void jstat(FILE *f, const char *key, const phase_stats *ps, int i) {
  fprintf(f, "\"%s\": {", key);
  jnum(f, "mean_s", ps->mean[i], false);
  jnum(f, "max_s", ps->max[i], false);
  fprintf(f, "\"max_rank\": %d}", ps->who[i]);
}

static void jphases(FILE *f, const phase_stats *ps) {
  fprintf(f, "\"phases\": {");
  for (int i = 0; i < DD__PH_N; i++) {
    jstat(f, ph_name[i], ps, i);
    fprintf(f, "%s", i + 1 < DD__PH_N ? ", " : "}, ");
  }
}

/* ---- the step ---------------------------------------------------------- */

typedef struct epoch_stats {
  double loss, count, correct, samples, comm_s;
  double samples_timed; /* by this run (samples/s) */
  double data_s;        /* the steps waited for their data */
  double grad_norm_max; /* largest global gradient norm computed (every step when clipping) */
  int64_t skipped;      /* steps skipped as outliers (train.skip_zscore) */
} epoch_stats;

/* Backward has finished layer i: start the buckets that are now final. */
static void layer_event(run *r, int layer, const char *what) {
  const double now = dd_now();
  char name[96];
  snprintf(name, sizeof name, "%s %d %s", what, layer, r->m->layers[layer].kind->name);
  dd__trace_event(r->trace, name, "layer", 0, r->layer_t, now, r->st.step, NULL);
  r->layer_t = now;
}

static int on_grad_ready(void *ctx, int layer) {
  run *r = ctx;
  if (r->trace)
    layer_event(r, layer, "backward");
  if (!r->micro_last)
    return DD_OK;
  int rc = r->bucket_at[layer] >= 0 ? dd_sync_start(r->sync, r->bucket_at[layer]) : DD_OK;
  return rc == DD_OK ? dd_sync_poll(r->sync) : rc;
}

static void on_forward_done(void *ctx, int layer) {
  run *r = ctx;
  if (r->trace)
    layer_event(r, layer, "forward");
}

/* The pass of micro-batch j: only the step's last micro-batch starts
 * reducing gradients from inside backward (accumulation adds up first). */
static dd_pass micro_pass(run *r, int n, int64_t gsize, int64_t sample0, int j) {
  dd_pass p = {.B = n,
               .B_global = gsize,
               .sample0 = sample0, /* position in the global batch: masks do not depend on P or M */
               .train = true,
               .seed = r->st.seed,
               .step = r->st.step,
               .micro = j,
               .lengths = r->ti->lengths ? r->lenbuf : NULL,
               .allreduce = dd_comm_allreduce_cb,
               .allreduce_ctx = r->c};
  r->micro_last = j == r->accum - 1;
  if (r->micro_last || r->trace) {
    p.grad_ready = on_grad_ready;
    p.forward_done = r->trace ? on_forward_done : NULL;
    p.hook_ctx = r;
  }
  return p;
}

/* Forward and backward of micro-batch j of this rank's share [lo, hi) of a
 * global batch (gsize samples at gpos): gradients accumulate in m->grads,
 * loss sums into *sums. Every rank runs every micro-batch, even an empty
 * one, so layers that allreduce (batch norm) stay in step. *ran: forward
 * was entered (a rank whose data failed has not, see ghost_pass). */
static int micro_step(run *r, int64_t b, int64_t gsize, int j, epoch_stats *es, dd_loss_sums *sums, bool *ran) {
  dd_model *m = r->m;
  dd_micro *mb = NULL;
  *ran = false;
  phase_to(r, PH_DATA);
  int rc = dd_loader_next(r->loader, &mb, &es->data_s);
  if (rc)
    return rc;
  if (mb->epoch != r->st.epoch || mb->batch != b || mb->j != j || mb->gsize != gsize) {
    dd_loader_done(r->loader);
    return dd_error(DD_EINVAL,
                    "internal: the prefetched batch (epoch %lld, batch %lld.%d) is not the step's (%lld, "
                    "%lld.%d); please report this as a bug",
                    (long long)mb->epoch, (long long)mb->batch, mb->j, (long long)r->st.epoch, (long long)b, j);
  }
  const int n = mb->n;
  memcpy(m->acts[0], mb->x, sizeof(float) * (size_t)n * (size_t)r->ti->xsize);
  memcpy(r->ybuf, mb->y, dd_source_label_bytes(r->train_src) * (size_t)n);
  memcpy(r->lenbuf, mb->len, sizeof(int32_t) * (size_t)n);
  r->digest_local += mb->digest;
  const int64_t sample0 = mb->sample0;
  if (r->trace) {
    char a[64];
    snprintf(a, sizeof a, "\"samples\": %d, \"micro\": %d", n, j);
    dd__trace_event(r->trace, "read", "data", 2, mb->t_read[0], mb->t_read[1], r->st.step, a);
  }
  dd_loader_done(r->loader);
  dd_pass p = micro_pass(r, n, gsize, sample0, j);
  *ran = true;
  phase_to(r, PH_FWD);
  rc = dd_model_forward(m, &p);
  if (rc == DD_OK)
    rc = dd_model_loss(m, &p, r->ybuf, true, sums);
  const int64_t nout = (int64_t)n * m->out_size; /* the loss gradient, backward's input */
  if (rc == DD_OK && j == 0 && n > 0 && dd_fault("nan", r->rank, r->st.step))
    m->dbuf[0][0] = NAN; /* test only: one rank's gradient goes bad */
  if (rc == DD_OK && j == 0 && dd_fault("spike", r->rank, r->st.step)) {
    /* test only: a batch whose loss and gradients are 10^4 times the usual (backward is linear in its input) */
    for (int64_t i = 0; i < nout; i++)
      m->dbuf[0][i] *= 1e4f;
    sums->loss *= 1e4;
  }
  phase_to(r, PH_BWD);
  if (rc == DD_OK)
    rc = dd_model_backward(m, &p);
  return rc;
}

/* A rank whose micro-batch j failed before its forward pass still makes
 * the collectives the others make in it (batch norm's sums) with no
 * samples, so no rank waits alone; the step then fails on every rank. */
static void ghost_pass(run *r, int64_t gsize, int j) {
  dd_pass p = micro_pass(r, 0, gsize, 0, j);
  if (dd_model_forward(r->m, &p) == DD_OK)
    (void)dd_model_backward(r->m, &p);
}

/* The optimizer update from the allreduced gradient sums: average, clip by
 * the global norm (identical on every rank: same sums, same code), step with
 * the scheduled LR. */
/* z-score of x against the window's values (0 when they do not vary) */
static double zscore(const double *v, int64_t n, double x) {
  double mean = 0, var = 0;
  for (int64_t i = 0; i < n; i++)
    mean += v[i];
  mean /= (double)n;
  for (int64_t i = 0; i < n; i++)
    var += (v[i] - mean) * (v[i] - mean);
  double sd = sqrt(var / (double)n);
  return sd > 0 ? (x - mean) / sd : 0.0;
}

/* train.skip_zscore (llm.c's outlier detector): is this step's loss or
 * gradient norm an outlier against the window of the last steps taken? The
 * inputs are global, so every rank decides alike. A step taken enters the
 * window; a skipped one does not. */
static bool outlier(run *r, double loss, double norm, double *zl, double *zn) {
  dd_train_state *st = &r->st;
  const int64_t W = r->cfg->skip_window;
  *zl = *zn = NAN;
  bool skip = false;
  if (st->out_n > W || st->out_pos >= W) /* resumed with a smaller train.skip_window: start it afresh */
    st->out_n = st->out_pos = 0;
  if (st->out_n >= W) { /* judged only on a full window */
    *zl = zscore(st->out_loss, st->out_n, loss);
    *zn = zscore(st->out_norm, st->out_n, norm);
    skip = *zl > r->cfg->skip_zscore || *zn > r->cfg->skip_zscore;
  }
  if (!skip) {
    st->out_loss[st->out_pos] = loss;
    st->out_norm[st->out_pos] = norm;
    st->out_pos = (st->out_pos + 1) % W;
    if (st->out_n < W)
      st->out_n++;
  }
  return skip;
}

static int update(run *r, double count, bool want_norm, double loss, bool *skipped) {
  dd_model *m = r->m;
  const dd_optim_spec *o = &r->opt->spec;
  double scale = 1.0 / count;
  r->lr = dd_schedule_lr(&r->sched, r->st.step, r->st.epoch);
  r->grad_norm = NAN;
  *skipped = false;
  if (r->cfg->skip_zscore > 0)
    want_norm = true;
  if (o->clip_norm > 0 || want_norm) {
    r->grad_norm = dd_optim_grad_norm(m->grads, m->nparams, scale);
    if (!isfinite(r->grad_norm)) /* the same on every rank: all stop together */
      return dd_error(DD_ENUMERIC,
                      "the gradient norm became %s at step %lld (epoch %lld); lower optim.lr or check the data",
                      isnan(r->grad_norm) ? "NaN" : "infinite", (long long)r->st.step, (long long)r->st.epoch + 1);
    scale *= dd_optim_clip_factor(r->grad_norm, o->clip_norm);
  }
  double zl, zn;
  if (r->cfg->skip_zscore > 0 && outlier(r, loss / count, r->grad_norm, &zl, &zn)) {
    *skipped = true; /* no update: parameters and optimizer state (its step count too) stay */
    r->st.skip_run++;
    r->st.skipped++;
    if (r->out)
      fprintf(r->out,
              "%sstep %lld skipped as an outlier: loss %.6g (z-score %.1f), gradient norm %.6g (z-score %.1f)\n",
              r->o && r->o->progress ? "\n" : "", (long long)r->st.step, loss / count, zl, r->grad_norm, zn);
    if (r->metrics) {
      fprintf(r->metrics, "{\"event\": \"skip\", \"step\": %lld, ", (long long)r->st.step);
      jnum(r->metrics, "train_loss", loss / count, false);
      jnum(r->metrics, "grad_norm", r->grad_norm, false);
      jnum(r->metrics, "z_loss", zl, false);
      jnum(r->metrics, "z_grad_norm", zn, false);
      jnum(r->metrics, "elapsed_s", dd_now() - r->t0, true);
      fprintf(r->metrics, "}\n");
    }
    return DD_OK;
  }
  r->st.skip_run = 0;
  if (dd_optim_step(r->opt, m->params, m->grads, (float)scale, r->lr))
    /* the same gradients on every rank after the allreduce: all stop here together (nothing is saved) */
    return dd_error(DD_ENUMERIC,
                    "the gradient became NaN or infinite at step %lld (epoch %lld); lower optim.lr, check the data for "
                    "extreme values, or use gradient clipping",
                    (long long)r->st.step, (long long)r->st.epoch + 1);
  return DD_OK;
}

/* DD_FAULT (tests only): this rank fails here the way a real one can */
static void inject_faults(run *r) {
  const int64_t s = r->st.step;
  if (dd_fault("exit", r->rank, s)) {
    fprintf(stderr, "fault injection: rank %d exits at step %lld\n", r->rank, (long long)s);
    _exit(3);
  }
  if (dd_fault("segv", r->rank, s))
    raise(SIGSEGV);
  if (dd_fault("stop", r->rank, s))
    raise(SIGSTOP);
  if (dd_fault("hang", r->rank, s)) {
    dd_comm_phase(r->c, "forward", s);
    for (volatile int spin = 1; spin;)
      ;
  }
}

/* train.trace_steps: every rank opens its trace file at the window's first
 * step, a barrier aligning their time 0; after the last one (or at the
 * end, force) they close it and rank 0 merges them. Collective. */
static int trace_begin(run *r) {
  if (r->trace || r->st.step < r->trace_a || r->st.step >= r->trace_b)
    return DD_OK;
  int rc = dd_comm_agree(r->c, dd__trace_open(r->trace_dir, r->rank, dd_comm_host(r->c), &r->trace));
  if (rc == DD_OK)
    rc = dd_comm_barrier(r->c);
  dd__trace_align(r->trace);
  return rc;
}

static int trace_end(run *r, bool force) {
  if (!r->trace || (!force && r->st.step < r->trace_b))
    return DD_OK;
  phase_to(r, r->ph_cur); /* the phase in progress, up to now */
  int rc = dd__trace_close(r->trace);
  r->trace = NULL;
  rc = dd_comm_agree(r->c, rc);
  if (rc == DD_OK && r->rank == 0) {
    char out[DD_PATH_MAX + 32];
    snprintf(out, sizeof out, "%s/trace.json", r->trace_dir);
    int ranks = 0;
    int64_t events = 0;
    rc = dd_trace_merge(r->trace_dir, out, &ranks, &events);
    if (rc == DD_OK && r->out)
      fprintf(r->out, "%strace of steps %lld-%lld: %s (%lld events of %d rank(s)%s)\n",
              r->o && r->o->progress ? "\n" : "", (long long)r->trace_a, (long long)r->trace_b - 1, out,
              (long long)events, ranks,
              ranks < r->P ? "; the other ranks' files are not in this directory: copy them here and run 'ddtrain "
                             "trace merge'"
                           : "");
  }
  return dd_comm_bcast_status(r->c, rc, 0);
}

static int train_step(run *r, int64_t b, epoch_stats *es) {
  const dd_config *cfg = r->cfg;
  dd_model *m = r->m;
  const int64_t B = cfg->batch_size;
  const int64_t gsize = dd_sampler_batch_size(r->tr.n, B, b);
  r->step_t = dd_now();
  inject_faults(r);
  dd_model_zero_grad(m);
  dd_loss_sums sums = {0};
  int rc = DD_OK;
  for (int j = 0; j < r->accum; j++) {
    bool ran = false;
    if (rc == DD_OK)
      rc = micro_step(r, b, gsize, j, es, &sums, &ran);
    if (!ran)
      ghost_pass(r, gsize, j);
  }
  /* every rank reaches the sync, a failed one too, its failure in the control sums */
  phase_to(r, PH_SYNC);
  double ctl[DD__CTL_N] = {[DD__CTL_LOSS] = sums.loss,
                           [DD__CTL_COUNT] = sums.count,
                           [DD__CTL_CORRECT] = sums.correct,
                           [DD__CTL_STOP] = (r->o && r->o->stop && *r->o->stop) ? 1.0 : 0.0,
                           [DD__CTL_FAIL] = rc ? 1.0 : 0.0};
  dd_sync_stats ss = {0};
  int crc = dd_sync_finish(r->sync, ctl, DD__CTL_N, &ss);
  es->comm_s += ss.exposed_s;
  r->sync_span += ss.span_s;
  r->sync_busy += ss.busy_s;
  r->sync_bytes += ss.bytes;
  for (int k = 0; r->trace && k < r->nbuckets; k++) {
    double t0, t1;
    dd_sync_bucket_times(r->sync, k, &t0, &t1);
    char name[32], a[64];
    snprintf(name, sizeof name, "bucket %d", k);
    snprintf(a, sizeof a, "\"bytes\": %lld", (long long)dd_sync_bucket_bytes(r->sync, k));
    dd__trace_event(r->trace, name, "sync", 1, t0, t1, r->st.step, a);
  }
  if (crc)
    return crc;
  if (ctl[DD__CTL_FAIL] > 0)
    return dd_comm_agree(r->c, rc);
  const double loss = ctl[DD__CTL_LOSS], count = ctl[DD__CTL_COUNT];
  if (!isfinite(loss))
    return dd_error(DD_ENUMERIC,
                    "the training loss became %s at step %lld (epoch %lld); lower optim.lr, check the data for "
                    "extreme values, or use gradient clipping",
                    isnan(loss) ? "NaN" : "infinite", (long long)r->st.step, (long long)r->st.epoch + 1);
  bool skipped = false;
  if (count > 0) {
    /* the norm costs a pass over the gradients: every step when clipping,
     * else only for the steps that go into the metrics log */
    /* (decided alike on every rank: a non-finite norm stops all of them) */
    const bool logged = cfg->log_every > 0 && (r->st.step + 1) % cfg->log_every == 0;
    phase_to(r, PH_OPT);
    rc = update(r, count, logged, loss, &skipped);
    if (rc)
      return rc;
    es->skipped += skipped;
    if (!skipped && r->grad_norm > es->grad_norm_max)
      es->grad_norm_max = r->grad_norm;
  }
  phase_to(r, PH_OTHER);
  if (r->trace) {
    dd__trace_event(r->trace, "step", "step", 0, r->step_t, dd_now(), r->st.step, NULL);
    dd__trace_flush(r->trace);
  }
  dd_comm_step_done(r->c, r->st.step);
  r->st.step++;
  r->st.batch = b + 1;
  r->st.samples_seen += gsize;
  if (!skipped) { /* a skipped step's loss is not the epoch's */
    es->loss += loss;
    es->count += count;
    es->correct += ctl[DD__CTL_CORRECT];
  }
  es->samples += (double)gsize;
  es->samples_timed += (double)gsize;
  r->st.ep_loss = es->loss;
  r->st.ep_count = es->count;
  r->st.ep_correct = es->correct;
  r->st.ep_samples = es->samples;
  if (skipped && r->st.skip_run >= cfg->skip_max) {
    /* the loss or the gradients changed for good: stop, with the state before it */
    int src = save(r);
    return dd_error(DD_ENUMERIC,
                    "%lld consecutive steps (%lld-%lld) skipped as outliers (train.skip_zscore = %g over the last "
                    "%lld steps): training no longer behaves as before; lower optim.lr, check the data, or raise "
                    "train.skip_zscore; %s%s",
                    (long long)r->st.skip_run, (long long)(r->st.step - r->st.skip_run), (long long)r->st.step - 1,
                    cfg->skip_zscore, (long long)cfg->skip_window,
                    src == DD_OK && r->last_ckpt[0] ? "checkpoint saved: " : "no checkpoint saved",
                    src == DD_OK ? r->last_ckpt : "");
  }
  if (ctl[DD__CTL_STOP] > 0.0)
    return DD_EINTERRUPTED;
  return DD_OK;
}

static void progress(run *r, int64_t b, int64_t b0, const epoch_stats *es, double t_epoch, double *last_draw) {
  if (!r->out || !r->o || !r->o->progress)
    return;
  double now = dd_now();
  if (now - *last_draw < 0.2 && b + 1 < r->steps_per_epoch)
    return;
  *last_draw = now;
  /* at most 79 columns (an 80-column terminal does not wrap): step, loss, speed, the epoch's ETA */
  int width = 16, done = (int)((double)(b + 1) * width / (double)r->steps_per_epoch);
  char bar[64], eta[32];
  for (int i = 0; i < width; i++)
    bar[i] = i < done ? '=' : (i == done ? '>' : ' ');
  bar[width] = '\0';
  const double per_step = (now - t_epoch) / (double)(b + 1 - b0 > 0 ? b + 1 - b0 : 1);
  const long left = lround(per_step * (double)(r->steps_per_epoch - b - 1));
  snprintf(eta, sizeof eta, "%ld:%02ld", left / 60, left % 60);
  fprintf(r->out, "\r  epoch %lld [%s] %lld/%lld  loss %.4f  %.0f samples/s  ETA %s ", (long long)r->st.epoch + 1, bar,
          (long long)b + 1, (long long)r->steps_per_epoch, es->count > 0 ? es->loss / es->count : NAN,
          es->samples_timed / (now - t_epoch + 1e-9), eta);
  fflush(r->out);
}

static int run_epochs(run *r, dd_train_result *res) {
  const dd_config *cfg = r->cfg;
  int rc = DD_OK;
  if (cfg->max_steps > 0 && r->st.step >= cfg->max_steps) {
    if (r->out)
      fprintf(r->out, "already at train.max_steps = %lld (step %lld); nothing to do\n", (long long)cfg->max_steps,
              (long long)r->st.step);
    return DD_OK;
  }
  dd_loader_plan plan = {.src = r->train_src,
                         .split = &r->tr,
                         .order_kind = r->order_kind,
                         .seed = r->st.seed,
                         .chunk = r->st.sampler_chunk,
                         .window = r->st.sampler_window,
                         .B = cfg->batch_size,
                         .steps_per_epoch = r->steps_per_epoch,
                         .P = r->P,
                         .rank = r->rank,
                         .accum = r->accum,
                         .micro_max = r->m->max_batch,
                         .epoch = r->st.epoch,
                         .batch = r->st.batch,
                         .epochs = cfg->epochs,
                         .step0 = r->st.step};
  /* a step ahead (at least three micro-batches): reading overlaps compute */
  r->ph_t = r->t_record = dd_now();
  r->ph_cur = PH_OTHER;
  rc = dd_comm_agree(r->c, dd_loader_start(&plan, r->accum < 2 ? 3 : 2 * r->accum, &r->loader));
  if (rc)
    return rc;
  while (r->st.epoch < cfg->epochs) {
    const int64_t epoch = r->st.epoch;
    /* a mid-epoch resume continues the epoch's statistics and digest */
    epoch_stats es = {
        .loss = r->st.ep_loss, .count = r->st.ep_count, .correct = r->st.ep_correct, .samples = r->st.ep_samples};
    r->digest_base = r->st.ep_digest;
    r->digest_local = 0;
    double t_epoch = dd_now(), last_draw = 0.0;
    const int64_t step_first = r->st.step, step_first_b = r->st.batch;
    for (int64_t b = r->st.batch; b < r->steps_per_epoch; b++) {
      if ((rc = trace_begin(r)) != DD_OK)
        return rc;
      rc = train_step(r, b, &es);
      if (rc == DD_OK)
        rc = trace_end(r, false);
      if (rc == DD_EINTERRUPTED) {
        /* one exit code on every rank: the signal any of them got (the largest number) */
        int64_t sig = r->o && r->o->stop ? (int64_t)*r->o->stop : 0;
        if (dd_comm_allreduce_max_i64(r->c, &sig, 1) == DD_OK)
          r->stop_signal = (int)sig;
        int src = save(r);
        if (r->out)
          fprintf(r->out, "\nstopping at step %lld on request (signal); %s%s\n", (long long)r->st.step,
                  src == DD_OK && r->last_ckpt[0] ? "checkpoint saved: " : "no checkpoint saved",
                  src == DD_OK ? r->last_ckpt : "");
        if (r->metrics) {
          fprintf(r->metrics,
                  "{\"event\": \"stopped\", \"step\": %lld, \"epoch\": %lld, \"signal\": %d, \"elapsed_s\": %.3f}\n",
                  (long long)r->st.step, (long long)epoch, r->stop_signal, dd_now() - r->t0);
          fflush(r->metrics);
        }
        return src ? src : DD_EINTERRUPTED;
      }
      if (rc)
        return rc;
      if (cfg->log_every > 0 && r->st.step % cfg->log_every == 0) { /* the same step on every rank */
        phase_stats ps;
        if ((rc = phase_stats_of(r, r->ph_log, NAN, NAN, &ps)) != DD_OK)
          return rc;
        if (r->metrics) {
          FILE *f = r->metrics;
          fprintf(f, "{\"event\": \"step\", \"step\": %lld, \"epoch\": %lld, ", (long long)r->st.step,
                  (long long)epoch + 1);
          jnum(f, "train_loss", es.loss / (es.count > 0 ? es.count : 1), false);
          jnum(f, "lr", r->lr, false);
          jnum(f, "grad_norm", r->grad_norm, false);
          jphases(f, &ps);
          jnum(f, "elapsed_s", dd_now() - r->t0, true);
          fprintf(f, "}\n");
        }
      }
      progress(r, b, step_first_b, &es, t_epoch, &last_draw);
      if (cfg->max_steps > 0 && r->st.step >= cfg->max_steps) {
        if (r->out)
          fprintf(r->out, "%sreached train.max_steps = %lld in epoch %lld\n", r->o && r->o->progress ? "\n" : "",
                  (long long)cfg->max_steps, (long long)epoch + 1);
        if (r->st.batch >= r->steps_per_epoch) { /* ended exactly at an epoch boundary */
          r->st.epoch = epoch + 1;
          r->st.batch = 0;
        }
        return save(r);
      }
      if (cfg->ckpt_every_steps > 0 && r->st.step % cfg->ckpt_every_steps == 0 && (rc = save(r)) != DD_OK)
        return rc;
    }
    double t_train = dd_now() - t_epoch;
    /* validation */
    dd_loss_sums vs = {0};
    if (r->va.n > 0) {
      phase_to(r, PH_EVAL);
      rc = dd__evaluate(r->c, r->m, r->val_src ? r->val_src : r->train_src, &r->va, r->ybuf, r->rows, NULL, &vs);
      phase_to(r, PH_OTHER);
      if (rc)
        return rc;
    }
    uint64_t digest = r->digest_local; /* the epoch's, before the next one starts from 0 */
    rc = dd_comm_allreduce_sum_u64(r->c, &digest, 1);
    if (rc)
      return rc;
    digest += r->digest_base;
    r->st.epoch = epoch + 1;
    r->st.batch = 0;
    r->st.ep_loss = r->st.ep_count = r->st.ep_correct = r->st.ep_samples = 0;
    r->st.ep_digest = 0;
    r->digest_base = r->digest_local = 0;
    const bool cls = cfg->loss == DD_LOSS_CROSS_ENTROPY;
    double tl = es.count > 0 ? es.loss / es.count : NAN;
    double vl = vs.count > 0 ? vs.loss / vs.count : NAN;
    double va = cls && vs.count > 0 ? vs.correct / vs.count : NAN;
    double sps = es.samples_timed / (t_train > 0 ? t_train : 1e-9);
    phase_stats ps;
    const int64_t steps_run = r->st.step - step_first;
    rc = phase_stats_of(r, r->ph_epoch, r->sync_span / (double)(steps_run > 0 ? steps_run : 1),
                        r->sync_busy / (double)(steps_run > 0 ? steps_run : 1), &ps);
    if (rc)
      return rc;
    const double wall = dd_now() - r->t_record;
    const int64_t sync_bytes = r->sync_bytes;
    r->t_record = dd_now();
    r->sync_span = r->sync_busy = 0;
    r->sync_bytes = 0;
    if (r->out) {
      if (r->o && r->o->progress)
        fprintf(r->out, "\r%*s\r", 79, "");
      fprintf(r->out, "epoch %3lld/%lld  train_loss %.4f", (long long)epoch + 1, (long long)cfg->epochs, tl);
      if (cls)
        fprintf(r->out, "  train_acc %6.2f%%", es.count > 0 ? 100.0 * es.correct / es.count : 0.0);
      if (vs.count > 0) {
        fprintf(r->out, "  val_loss %.4f", vl);
        if (cls)
          fprintf(r->out, "  val_acc %6.2f%%", 100.0 * va);
      }
      fprintf(r->out, "  lr %.3g  %8.0f samples/s  data %.1f%%", r->lr, sps,
              100.0 * es.data_s / (t_train > 0 ? t_train : 1e-9));
      /* where the epoch went (mean over ranks): the phases that took 1% or more */
      for (int i = PH_FWD; i < PH_OTHER; i++)
        if (wall > 0 && ps.mean[i] >= 0.01 * wall)
          fprintf(r->out, " %s %.0f%%", ph_short[i], 100.0 * ps.mean[i] / wall);
      fprintf(r->out, "  %6.1f s\n", dd_now() - r->t0);
      fflush(r->out);
    }
    if (r->metrics) {
      FILE *f = r->metrics;
      fprintf(f, "{\"event\": \"epoch\", \"epoch\": %lld, \"step\": %lld, ", (long long)epoch + 1,
              (long long)r->st.step);
      jnum(f, "train_loss", tl, false);
      if (cls)
        jnum(f, "train_acc", es.count > 0 ? es.correct / es.count : NAN, false);
      jnum(f, "val_loss", vl, false);
      if (cls)
        jnum(f, "val_acc", va, false);
      jnum(f, "lr", r->lr, false); /* of the epoch's last step */
      if (cfg->optim.clip_norm > 0)
        jnum(f, "grad_norm_max", es.grad_norm_max, false);
      if (cfg->skip_zscore > 0)
        fprintf(f, "\"skipped_steps\": %lld, ", (long long)es.skipped);
      fprintf(f, "\"samples\": %.0f, \"samples_digest\": \"%016llx\", ", es.samples, (unsigned long long)digest);
      jnum(f, "samples_per_s", sps, false);
      jnum(f, "epoch_s", t_train, false);
      jnum(f, "allreduce_s", es.comm_s, false);
      jnum(f, "data_wait_s", es.data_s, false);
      jnum(f, "wall_s", wall, false);
      const double fps = dd_model_train_flops(r->m);
      jnum(f, "flops_per_sample", fps, false);
      jnum(f, "peak_flops", r->peak_flops, false);
      jnum(f, "mfu", r->peak_flops > 0 ? fps * sps / r->peak_flops : NAN, false);
      jphases(f, &ps);
      fprintf(f, "\"sync\": {");
      jstat(f, "span_per_step", &ps, DD__PH_N);
      fprintf(f, ", ");
      jstat(f, "busy_per_step", &ps, DD__PH_N + 1);
      fprintf(f, ", \"buckets\": %d, \"overlap\": \"%s\", \"dtype\": \"%s\", ", r->nbuckets,
              (const char *[]){"off", "thread", "poll"}[dd_sync_mode(r->sync)],
              r->cfg->grad_dtype == DD_WIRE_BF16 ? "bf16" : "f32");
      fprintf(f, "\"bytes\": %lld", (long long)sync_bytes);
      fprintf(f, "}, ");
      jnum(f, "elapsed_s", dd_now() - r->t0, true);
      fprintf(f, "}\n");
    }
    if ((rc = metrics_ok(r, false)) != DD_OK)
      return rc;
    if (res) {
      res->train_loss = tl;
      res->val_loss = vl;
      res->val_accuracy = va;
    }
    const bool last = r->st.epoch == cfg->epochs;
    const bool due = cfg->ckpt_every_epochs > 0 && r->st.epoch % cfg->ckpt_every_epochs == 0;
    if ((due || last) && (rc = save(r)) != DD_OK)
      return rc;
  }
  return DD_OK;
}

int dd_train_run(dd_comm *c, const dd_config *cfg, const dd_train_opts *o, dd_train_result *res) {
  run r;
  memset(&r, 0, sizeof r);
  r.c = c;
  r.cfg = cfg;
  r.o = o;
  r.rank = dd_comm_rank(c);
  r.P = dd_comm_size(c);
  r.out = r.rank == 0 && o ? o->out : NULL;
  r.t0 = dd_now();
  r.lock_fd = -1;
  if (res) {
    memset(res, 0, sizeof *res);
    res->train_loss = res->val_loss = res->val_accuracy = NAN;
    res->classification = cfg->loss == DD_LOSS_CROSS_ENTROPY;
  }
  int rc = dd_comm_agree(c, setup(&r));
  if (rc == DD_OK)
    rc = dd_comm_agree(c, init_state(&r));
  if (rc == DD_OK)
    rc = dd_comm_agree(c, open_metrics(&r, o && o->resume));
  if (rc == DD_OK) {
    dd_comm_on_stall(c, on_stall, &r);
    print_header(&r);
    metrics_start(&r);
    rc = run_epochs(&r, res);
  }
  if (rc == DD_OK)
    rc = trace_end(&r, true); /* the run ended inside the window */
  if (rc == DD_OK) {
    /* replicas must still be identical after training */
    bool same = false;
    rc = dd_comm_same_u64(c, dd_model_checksum(r.m), &same);
    if (rc == DD_OK && !same)
      rc = dd_error(DD_EMISMATCH, "parameters diverged across ranks during training; please report this as a bug");
  }
  if (rc == DD_OK && r.out) {
    fprintf(r.out, "done: %lld epoch(s), %lld steps in %.1f s", (long long)r.st.epoch, (long long)r.st.step,
            dd_now() - r.t0);
    if (r.last_ckpt[0])
      fprintf(r.out, "; checkpoint %s", r.last_ckpt);
    fprintf(r.out, "\n");
  }
  if (r.metrics && rc == DD_OK)
    fprintf(r.metrics, "{\"event\": \"done\", \"step\": %lld, \"epoch\": %lld, \"elapsed_s\": %.3f}\n",
            (long long)r.st.step, (long long)r.st.epoch, dd_now() - r.t0);
  if (rc == DD_OK) /* every rank is here: the check is agreed */
    rc = metrics_ok(&r, true);
  if (r.metrics)
    fclose(r.metrics);
  if (res) {
    res->stop_signal = r.stop_signal;
    res->steps = r.st.step;
    res->epochs = r.st.epoch;
    snprintf(res->last_checkpoint, sizeof res->last_checkpoint, "%s", r.last_ckpt);
  }
  dd_comm_on_stall(c, NULL, NULL);
  dd_loader_stop(r.loader);
  dd_checkpoint_unlock(r.lock_fd);
  dd_free(r.rows);
  dd_free(r.ybuf);
  dd_free(r.lenbuf);
  dd__trace_close(r.trace); /* a failed run: the file so far ('ddtrain trace merge') */
  dd_sync_free(r.sync);
  dd_free(r.bucket_at);
  dd_optim_free(r.opt);
  dd_model_free(r.m);
  dd_split_free(&r.tr);
  dd_split_free(&r.va);
  dd_source_close(r.train_src);
  dd_source_close(r.val_src);
  return rc;
}
