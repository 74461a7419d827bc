/* MPI wrapper: init, sums, broadcasts and collective agreement on failures. */
#include <errno.h>
#include <mpi.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "comm_impl.h"
#include "ddtrain/core.h"

#define CHUNK (1 << 28) /* elements per MPI call: well below INT_MAX bytes */

int dd__mpi_fail(int rc, const char *what, const char *file, int line) {
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS)
    snprintf(msg, sizeof msg, "error code %d", rc);
  return dd_error(DD_EMPI, "%s:%d: %s failed: %s", file, line, what, msg);
}
/* A collective: the watchdog knows this rank waits in it. */
#define COLL_TRY(name, call)                                                                                           \
  do {                                                                                                                 \
    dd__watch_enter(c, name);                                                                                          \
    int coll_rc_ = (call);                                                                                             \
    dd__watch_leave(c);                                                                                                \
    if (coll_rc_ != MPI_SUCCESS)                                                                                       \
      return dd__mpi_fail(coll_rc_, #call, __FILE__, __LINE__);                                                        \
  } while (0)
#define MPI_TRY(call)                                                                                                  \
  do {                                                                                                                 \
    int mpi_rc_ = (call);                                                                                              \
    if (mpi_rc_ != MPI_SUCCESS)                                                                                        \
      return dd__mpi_fail(mpi_rc_, #call, __FILE__, __LINE__);                                                         \
  } while (0)

static int wrap(MPI_Comm base, int started, dd_comm **out) {
  dd_comm *c = dd_alloc(1, sizeof *c);
  if (!c)
    return DD_ENOMEM;
  c->started_mpi = started;
  c->world = c->node = MPI_COMM_NULL;
  *out = c;
  MPI_TRY(MPI_Comm_dup(base, &c->world));
  MPI_TRY(MPI_Comm_set_errhandler(c->world, MPI_ERRORS_RETURN));
  MPI_TRY(MPI_Comm_rank(c->world, &c->rank));
  MPI_TRY(MPI_Comm_size(c->world, &c->size));
  MPI_TRY(MPI_Comm_split_type(c->world, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL, &c->node));
  MPI_TRY(MPI_Comm_rank(c->node, &c->local_rank));
  MPI_TRY(MPI_Comm_size(c->node, &c->local_size));
  int leader = c->local_rank == 0;
  MPI_TRY(MPI_Allreduce(&leader, &c->nodes, 1, MPI_INT, MPI_SUM, c->world));
  int len = 0;
  MPI_Get_processor_name(c->host, &len);
  return DD_OK;
}

/* MPI_Init that never returns (a rank the launcher did not start, a network
 * that does not connect) is ended after the start-up deadline, with a line
 * that says so, instead of hanging the job. */
static struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool done;
  double seconds;
} g_start = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0};

static void *startup_timer(void *arg) {
  (void)arg;
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += (time_t)g_start.seconds;
  pthread_mutex_lock(&g_start.mu);
  int e = 0;
  while (!g_start.done && e != ETIMEDOUT)
    e = pthread_cond_timedwait(&g_start.cv, &g_start.mu, &until);
  bool late = !g_start.done;
  pthread_mutex_unlock(&g_start.mu);
  if (late) {
    char host[256] = "?";
    gethostname(host, sizeof host - 1);
    fprintf(stderr,
            "ddtrain: error: MPI did not start within %.0f s on %s (pid %d): a rank that never started, or ranks that "
            "cannot reach each other (check the launcher, the hostfile and the network interfaces); DD_STARTUP_TIMEOUT "
            "sets this deadline\n",
            g_start.seconds, host, (int)getpid());
    fflush(stderr);
    _exit(DD_EXIT_STALL);
  }
  return NULL;
}

static double env_seconds(const char *name, double dflt) {
  const char *v = getenv(name);
  char *end;
  double d = v ? strtod(v, &end) : dflt;
  return v && (*end || end == v) ? dflt : d;
}

int dd_comm_init(int *argc, char ***argv, dd_comm **out) {
  *out = NULL;
  int inited = 0, provided = 0;
  MPI_Initialized(&inited);
  if (!inited) {
    pthread_t timer;
    g_start.seconds = env_seconds("DD_STARTUP_TIMEOUT", 300);
    g_start.done = false;
    bool timed = g_start.seconds > 0 && pthread_create(&timer, NULL, startup_timer, NULL) == 0;
    /* MULTIPLE: the watchdog thread talks while the main thread waits in a collective */
    int e = MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided);
    if (timed) {
      pthread_mutex_lock(&g_start.mu);
      g_start.done = true;
      pthread_cond_signal(&g_start.cv);
      pthread_mutex_unlock(&g_start.mu);
      pthread_join(timer, NULL);
    }
    if (e != MPI_SUCCESS)
      return dd_error(DD_EMPI, "MPI_Init failed; run under mpirun/srun or check the MPI installation");
  }
  int rc = wrap(MPI_COMM_WORLD, !inited, out);
  if (rc == DD_OK)
    rc = dd__watch_start(*out, env_seconds("DD_TIMEOUT", 300));
  if (rc) {
    dd_comm_finalize(*out);
    *out = NULL;
  }
  return rc;
}

int dd_comm_self(dd_comm **out) {
  *out = NULL;
  int rc = wrap(MPI_COMM_SELF, 0, out);
  if (rc) {
    dd_comm_finalize(*out);
    *out = NULL;
  }
  return rc;
}

void dd_comm_finalize(dd_comm *c) {
  if (!c)
    return;
  dd__watch_stop(c);
  if (c->node != MPI_COMM_NULL)
    MPI_Comm_free(&c->node);
  if (c->world != MPI_COMM_NULL)
    MPI_Comm_free(&c->world);
  if (c->started_mpi)
    MPI_Finalize();
  dd_free(c);
}

int dd_comm_rank(const dd_comm *c) {
  return c->rank;
}
int dd_comm_size(const dd_comm *c) {
  return c->size;
}
int dd_comm_local_size(const dd_comm *c) {
  return c->local_size;
}
int dd_comm_local_rank(const dd_comm *c) {
  return c->local_rank;
}
int dd_comm_nodes(const dd_comm *c) {
  return c->nodes;
}
const char *dd_comm_host(const dd_comm *c) {
  return c->host;
}

int dd_comm_allreduce_f32(dd_comm *c, float *buf, int64_t n) {
  if (c->size == 1)
    return DD_OK;
  for (int64_t off = 0; off < n; off += CHUNK) {
    int cnt = (int)(n - off < CHUNK ? n - off : CHUNK);
    COLL_TRY("allreduce", MPI_Allreduce(MPI_IN_PLACE, buf + off, cnt, MPI_FLOAT, MPI_SUM, c->world));
  }
  return DD_OK;
}

int dd_comm_allreduce_f64(dd_comm *c, double *buf, int64_t n) {
  if (c->size == 1)
    return DD_OK;
  for (int64_t off = 0; off < n; off += CHUNK) {
    int cnt = (int)(n - off < CHUNK ? n - off : CHUNK);
    COLL_TRY("allreduce", MPI_Allreduce(MPI_IN_PLACE, buf + off, cnt, MPI_DOUBLE, MPI_SUM, c->world));
  }
  return DD_OK;
}

int dd_comm_allreduce_cb(void *ctx, double *buf, int n) {
  return dd_comm_allreduce_f64(ctx, buf, n);
}

int dd_comm_allreduce_max_i64(dd_comm *c, int64_t *buf, int n) {
  if (c->size == 1)
    return DD_OK;
  COLL_TRY("allreduce", MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_INT64_T, MPI_MAX, c->world));
  return DD_OK;
}

int dd_comm_allreduce_sum_u64(dd_comm *c, uint64_t *buf, int n) {
  if (c->size == 1)
    return DD_OK;
  COLL_TRY("allreduce", MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_UINT64_T, MPI_SUM, c->world));
  return DD_OK;
}

int dd_comm_stats_f64(dd_comm *c, const double *v, int n, double *mean, double *max, int *argmax) {
  struct {
    double v;
    int rank;
  } *loc = dd_alloc((size_t)(n > 0 ? n : 1), 2 * sizeof *loc);
  if (!loc)
    return DD_ENOMEM;
  for (int i = 0; i < n; i++) {
    mean[i] = v[i];
    loc[i].v = v[i];
    loc[i].rank = c->rank;
  }
  dd__watch_enter(c, "allreduce");
  int e = MPI_Allreduce(MPI_IN_PLACE, mean, n, MPI_DOUBLE, MPI_SUM, c->world);
  if (e == MPI_SUCCESS)
    e = MPI_Allreduce(loc, loc + n, n, MPI_DOUBLE_INT, MPI_MAXLOC, c->world);
  dd__watch_leave(c);
  for (int i = 0; e == MPI_SUCCESS && i < n; i++) {
    mean[i] /= c->size;
    max[i] = loc[n + i].v;
    argmax[i] = loc[n + i].rank;
  }
  dd_free(loc);
  return e == MPI_SUCCESS ? DD_OK : dd__mpi_fail(e, "MPI_Allreduce (statistics)", __FILE__, __LINE__);
}

int dd_comm_gather_f32(dd_comm *c, const float *send, int64_t count, float *recv, int root) {
  if (c->size == 1) {
    if (count > 0 && recv != send)
      memcpy(recv, send, sizeof(float) * (size_t)count);
    return DD_OK;
  }
  if (count > 0x7fffffff)
    return dd_error(DD_EINVAL, "gather of %lld floats from one rank exceeds MPI's int count; use more ranks",
                    (long long)count);
  int mine = (int)count, *counts = NULL, *displs = NULL;
  if (c->rank == root) {
    counts = dd_alloc((size_t)c->size, sizeof(int));
    displs = dd_alloc((size_t)c->size, sizeof(int));
    if (!counts || !displs) {
      dd_free(counts);
      dd_free(displs);
      return DD_ENOMEM;
    }
  }
  dd__watch_enter(c, "gather");
  int rc = MPI_Gather(&mine, 1, MPI_INT, counts, 1, MPI_INT, root, c->world);
  if (rc == MPI_SUCCESS && c->rank == root) {
    int64_t off = 0;
    for (int i = 0; i < c->size; i++) {
      displs[i] = (int)off;
      off += counts[i];
    }
    if (off > 0x7fffffff)
      rc = MPI_ERR_COUNT;
  }
  if (rc == MPI_SUCCESS)
    rc = MPI_Gatherv(send, mine, MPI_FLOAT, recv, counts, displs, MPI_FLOAT, root, c->world);
  dd__watch_leave(c);
  dd_free(counts);
  dd_free(displs);
  if (rc != MPI_SUCCESS)
    return dd__mpi_fail(rc, "MPI_Gatherv", __FILE__, __LINE__);
  return DD_OK;
}

int dd_comm_bcast(dd_comm *c, void *buf, int64_t bytes, int root) {
  if (c->size == 1)
    return DD_OK;
  char *p = buf;
  for (int64_t off = 0; off < bytes; off += CHUNK) {
    int cnt = (int)(bytes - off < CHUNK ? bytes - off : CHUNK);
    COLL_TRY("broadcast", MPI_Bcast(p + off, cnt, MPI_BYTE, root, c->world));
  }
  return DD_OK;
}

/* The failing rank's status and message travel in one buffer. */
typedef struct {
  int status;
  char msg[1020];
} status_msg;

static int share_status(dd_comm *c, int status, int root) {
  status_msg sm;
  memset(&sm, 0, sizeof sm);
  if (c->rank == root) {
    sm.status = status;
    snprintf(sm.msg, sizeof sm.msg, "%s", dd_error_message());
  }
  COLL_TRY("broadcast", MPI_Bcast(&sm, (int)sizeof sm, MPI_BYTE, root, c->world));
  if (c->rank != root) {
    char tagged[sizeof sm.msg + 32];
    if (sm.msg[0])
      snprintf(tagged, sizeof tagged, "%s", sm.msg);
    else
      snprintf(tagged, sizeof tagged, "rank %d failed: %s", root, dd_strerror(sm.status));
    dd_error_set_message(tagged);
  }
  return sm.status;
}

int dd_comm_agree(dd_comm *c, int status) {
  if (c->size == 1)
    return status;
  struct {
    int ok;
    int rank;
  } in = {status == DD_OK, c->rank}, res;
  COLL_TRY("allreduce", MPI_Allreduce(&in, &res, 1, MPI_2INT, MPI_MINLOC, c->world));
  if (res.ok)
    return DD_OK;
  return share_status(c, status, res.rank);
}

int dd_comm_bcast_status(dd_comm *c, int status, int root) {
  if (c->size == 1)
    return status;
  return share_status(c, status, root);
}

int dd_comm_same_u64(dd_comm *c, uint64_t v, bool *same) {
  *same = true;
  if (c->size == 1)
    return DD_OK;
  uint64_t mm[2] = {v, ~v}, res[2];
  COLL_TRY("allreduce", MPI_Allreduce(mm, res, 2, MPI_UINT64_T, MPI_MAX, c->world));
  /* max(v) == v and max(~v) == ~v on every rank <=> all equal */
  int mine = res[0] == v && res[1] == ~v, all = 0;
  COLL_TRY("allreduce", MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_LAND, c->world));
  *same = all != 0;
  return DD_OK;
}

int dd_comm_barrier(dd_comm *c) {
  COLL_TRY("barrier", MPI_Barrier(c->world));
  return DD_OK;
}

void dd_comm_abort(dd_comm *c, int code) {
  MPI_Abort(c ? c->world : MPI_COMM_WORLD, code);
}
