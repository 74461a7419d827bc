/* The trace: Chrome trace events (chrome://tracing, Perfetto) of a window of
 * steps, one JSON object per line in a file per rank, flushed every step (a
 * crash loses at most the step it was in), merged into one trace.json. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trace.h"

struct dd__trace {
  FILE *f;
  char path[DD_PATH_MAX + 64];
  double base; /* dd_now() at ts 0 */
  int rank;
  int64_t bytes, cap;
  bool full;
};

static const char *const tid_name[] = {"main", "gradient sync", "data reader"};

int dd__trace_open(const char *dir, int rank, const char *host, dd__trace **out) {
  *out = NULL;
  char probe[DD_PATH_MAX + 64];
  snprintf(probe, sizeof probe, "%s/x", dir);
  int rc = dd_mkdirs_for(probe, "train.trace_steps");
  if (rc)
    return rc;
  dd__trace *t = dd_alloc(1, sizeof *t);
  if (!t)
    return DD_ENOMEM;
  snprintf(t->path, sizeof t->path, "%s/trace-rank%05d.jsonl", dir, rank);
  t->f = fopen(t->path, "w");
  if (!t->f) {
    rc = dd_error(DD_EIO, "cannot write the trace file '%s': %s; check the directory or unset train.trace_steps",
                  t->path, strerror(errno));
    dd_free(t);
    return rc;
  }
  t->rank = rank;
  t->cap = DD__TRACE_CAP;
  t->base = dd_now();
  fprintf(
      t->f,
      "{\"name\": \"process_name\", \"ph\": \"M\", \"pid\": %d, \"tid\": 0, \"args\": {\"name\": \"rank %d (%s)\"}}\n",
      rank, rank, host);
  fprintf(
      t->f,
      "{\"name\": \"process_sort_index\", \"ph\": \"M\", \"pid\": %d, \"tid\": 0, \"args\": {\"sort_index\": %d}}\n",
      rank, rank);
  for (int i = 0; i < 3; i++)
    fprintf(t->f,
            "{\"name\": \"thread_name\", \"ph\": \"M\", \"pid\": %d, \"tid\": %d, \"args\": {\"name\": \"%s\"}}\n",
            rank, i, tid_name[i]);
  *out = t;
  return DD_OK;
}

void dd__trace_align(dd__trace *t) {
  if (t)
    t->base = dd_now();
}

void dd__trace_event(dd__trace *t, const char *name, const char *cat, int tid, double t0, double t1, int64_t step,
                     const char *args) {
  if (!t || t->full)
    return;
  if (t0 < t->base) /* a phase that began before the window */
    t0 = t->base;
  int n = fprintf(t->f,
                  "{\"name\": \"%s\", \"cat\": \"%s\", \"ph\": \"X\", \"pid\": %d, \"tid\": %d, \"ts\": %.3f, \"dur\": "
                  "%.3f, \"args\": {\"step\": %lld%s%s}}\n",
                  name, cat, t->rank, tid, (t0 - t->base) * 1e6, (t1 > t0 ? t1 - t0 : 0) * 1e6, (long long)step,
                  args ? ", " : "", args ? args : "");
  t->bytes += n > 0 ? n : 0;
  if (t->bytes > t->cap) { /* bounded: the rest of the window is left out, and the trace says so */
    fprintf(t->f,
            "{\"name\": \"trace full (%lld MiB): later events left out\", \"ph\": \"i\", \"s\": \"p\", \"pid\": %d, "
            "\"tid\": 0, \"ts\": %.3f}\n",
            (long long)(t->cap >> 20), t->rank, (t1 - t->base) * 1e6);
    t->full = true;
  }
}

void dd__trace_flush(dd__trace *t) {
  if (t)
    fflush(t->f);
}

int dd__trace_close(dd__trace *t) {
  if (!t)
    return DD_OK;
  int bad = ferror(t->f) != 0;
  bad = fclose(t->f) != 0 || bad;
  int rc = bad ? dd_error(DD_EIO, "cannot write the trace file '%s' (disk full?)", t->path) : DD_OK;
  dd_free(t);
  return rc;
}

/* ---- merging ---- */

static int by_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

int dd_trace_merge(const char *dir, const char *out, int *ranks, int64_t *events) {
  *ranks = 0;
  *events = 0;
  DIR *d = opendir(dir);
  if (!d)
    return dd_error(DD_ENOTFOUND, "cannot open the trace directory '%s': %s", dir, strerror(errno));
  char **names = NULL;
  int n = 0, cap = 0, rc = DD_OK;
  for (struct dirent *e; (e = readdir(d)) != NULL && rc == DD_OK;) {
    int r;
    char tail[8];
    if (sscanf(e->d_name, "trace-rank%d.json%7s", &r, tail) != 2 || strcmp(tail, "l") != 0)
      continue;
    if (n == cap) {
      cap = cap ? 2 * cap : 16;
      char **nn = realloc(names, (size_t)cap * sizeof *names);
      if (!nn) {
        rc = DD_ENOMEM;
        break;
      }
      names = nn;
    }
    names[n] = strdup(e->d_name);
    if (!names[n++])
      rc = DD_ENOMEM;
  }
  closedir(d);
  if (rc == DD_OK && n == 0)
    rc = dd_error(DD_ENOTFOUND,
                  "'%s' holds no per-rank trace files (trace-rankNNNNN.jsonl); was train.trace_steps set?", dir);
  FILE *o = NULL;
  char tmp[DD_PATH_MAX + 16];
  if (rc == DD_OK) {
    qsort(names, (size_t)n, sizeof *names, by_name);
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    o = fopen(tmp, "w");
    if (!o)
      rc = dd_error(DD_EIO, "cannot write '%s': %s", tmp, strerror(errno));
  }
  if (rc == DD_OK) {
    fprintf(o, "{\"displayTimeUnit\": \"ms\", \"traceEvents\": [\n");
    char *line = NULL;
    size_t lcap = 0;
    bool first = true;
    for (int i = 0; i < n; i++) {
      char path[DD_PATH_MAX + 300];
      snprintf(path, sizeof path, "%s/%s", dir, names[i]);
      FILE *f = fopen(path, "r");
      if (!f)
        continue;
      ssize_t len;
      while ((len = getline(&line, &lcap, f)) > 0) {
        /* a line cut short by a crash is left out: the events before it are whole */
        if (line[len - 1] != '\n' || len < 3 || line[0] != '{' || line[len - 2] != '}')
          continue;
        line[len - 1] = '\0';
        fprintf(o, "%s%s", first ? "" : ",\n", line);
        first = false;
        (*events)++;
      }
      fclose(f);
      (*ranks)++;
    }
    free(line);
    fprintf(o, "\n]}\n");
    int bad = ferror(o) != 0;
    bad = fclose(o) != 0 || bad;
    if (bad)
      rc = dd_error(DD_EIO, "cannot write '%s' (disk full?)", tmp);
    else if (rename(tmp, out) != 0)
      rc = dd_error(DD_EIO, "cannot rename '%s' to '%s': %s", tmp, out, strerror(errno));
    if (rc)
      remove(tmp);
  }
  for (int i = 0; i < n; i++)
    free(names[i]);
  free(names);
  return rc;
}
