/* Reading a run's metrics.jsonl for the report: line by line, damaged lines skipped, resumes stitched. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "ddtrain/core.h"
#include "log.h"

enum { MAX_WARNINGS = 10 };

/* grow *p (n elements in use, *cap allocated) to room for one more */
static int grow(void **p, size_t n, size_t *cap, size_t size) {
  if (n < *cap)
    return DD_OK;
  size_t nc = *cap ? 2 * *cap : 64;
  void *q = dd_alloc(nc, size);
  if (!q)
    return DD_ENOMEM;
  if (*p)
    memcpy(q, *p, n * size);
  dd_free(*p);
  *p = q;
  *cap = nc;
  return DD_OK;
}

static void warn_line(dd__run *r, FILE *warn, long long line, const char *why) {
  r->damaged++;
  if (!warn)
    return;
  if (r->damaged <= MAX_WARNINGS)
    fprintf(warn, "ddtrain: warning: %s:%lld: %s; line skipped\n", r->file, line, why);
  else if (r->damaged == MAX_WARNINGS + 1)
    fprintf(warn, "ddtrain: warning: %s: more damaged lines; the report counts them\n", r->file);
}

static int phase_index(dd__run *r, const char *name) {
  for (int i = 0; i < r->nphases; i++)
    if (strcmp(r->phase[i], name) == 0)
      return i;
  if (r->nphases == DD__MAX_PHASES) {
    r->phases_dropped = true;
    return -1;
  }
  if (!(r->phase[r->nphases] = dd_strdup(name)))
    return -2;
  return r->nphases++;
}

static int read_phases(dd__run *r, const dd_json *rec, dd__epoch *e) {
  for (int i = 0; i < DD__MAX_PHASES; i++)
    e->ph[i] = (dd__phase){NAN, NAN, -1};
  const dd_json *ph = dd__json_get(rec, "phases");
  if (!ph || ph->type != DD_JSON_OBJECT)
    return DD_OK;
  for (const dd_json *m = ph->child; m; m = m->next) {
    if (m->type != DD_JSON_OBJECT)
      continue;
    int k = phase_index(r, m->key);
    if (k == -2)
      return DD_ENOMEM;
    if (k < 0)
      continue;
    double rank = dd__json_num(m, "max_rank");
    e->ph[k] = (dd__phase){dd__json_num(m, "mean_s"), dd__json_num(m, "max_s"),
                           isfinite(rank) && rank >= 0 && rank < 1e9 ? (int)rank : -1};
    e->has_phases = true;
  }
  return DD_OK;
}

static int add_event(dd__run *r, dd__event_kind kind, double step, double t, const char *text) {
  if (grow((void **)&r->events, r->nevents, &r->capevents, sizeof *r->events))
    return DD_ENOMEM;
  char *s = dd_strdup(text ? text : "");
  if (!s)
    return DD_ENOMEM;
  r->events[r->nevents++] = (dd__event){kind, step, t, s};
  return DD_OK;
}

/* A resume redoes the steps after its checkpoint: those records are replaced by the new ones. */
static void drop_after(dd__run *r, double step) {
  while (r->nsteps > 0 && r->steps[r->nsteps - 1].step > step)
    r->nsteps--;
  while (r->nepochs > 0 && r->epochs[r->nepochs - 1].step > step)
    r->nepochs--;
}

static int take(dd__run *r, dd_json *rec, long long line, FILE *warn, bool *owned) {
  const char *ev = dd__json_str(rec, "event");
  if (!ev) {
    warn_line(r, warn, line, "not a metrics record (no \"event\" string)");
    return DD_OK;
  }
  double step = dd__json_num(rec, "step"), el = dd__json_num(rec, "elapsed_s");
  /* the curves need these numbers */
  if (strcmp(ev, "step") == 0 && !isfinite(step)) {
    warn_line(r, warn, line, "a step record without its step number");
    return DD_OK;
  }
  if (strcmp(ev, "epoch") == 0 && !(isfinite(step) && isfinite(dd__json_num(rec, "epoch")))) {
    warn_line(r, warn, line, "an epoch record without its epoch and step numbers");
    return DD_OK;
  }
  r->records++;
  if (strcmp(ev, "start") == 0) {
    /* elapsed_s starts again from 0 in a resumed run: its time goes on from the last record's */
    r->t_offset = r->t_last;
    double at = dd__json_num(rec, "resumed_at_step");
    char text[160];
    if (!r->start) {
      r->start = rec;
      *owned = true;
      snprintf(text, sizeof text, "start at step %.0f", isfinite(at) ? at : 0.0);
    } else {
      r->resumes++;
      drop_after(r, isfinite(at) ? at : 0.0);
      snprintf(text, sizeof text, "resumed at step %.0f on %.0f rank(s)", isfinite(at) ? at : 0.0,
               dd__json_num(rec, "ranks"));
    }
    return add_event(r, DD__EV_START, isfinite(at) ? at : 0.0, r->t_offset, text);
  }
  double t = isfinite(el) ? r->t_offset + el : r->t_last;
  if (isfinite(el))
    r->t_last = t;
  if (strcmp(ev, "step") == 0) {
    if (grow((void **)&r->steps, r->nsteps, &r->capsteps, sizeof *r->steps))
      return DD_ENOMEM;
    r->steps[r->nsteps++] = (dd__step){step,
                                       dd__json_num(rec, "epoch"),
                                       dd__json_num(rec, "train_loss"),
                                       dd__json_num(rec, "lr"),
                                       dd__json_num(rec, "grad_norm"),
                                       t};
  } else if (strcmp(ev, "epoch") == 0) {
    if (grow((void **)&r->epochs, r->nepochs, &r->capepochs, sizeof *r->epochs))
      return DD_ENOMEM;
    dd__epoch *e = &r->epochs[r->nepochs];
    *e = (dd__epoch){.epoch = dd__json_num(rec, "epoch"),
                     .step = step,
                     .train_loss = dd__json_num(rec, "train_loss"),
                     .train_acc = dd__json_num(rec, "train_acc"),
                     .val_loss = dd__json_num(rec, "val_loss"),
                     .val_acc = dd__json_num(rec, "val_acc"),
                     .lr = dd__json_num(rec, "lr"),
                     .samples_per_s = dd__json_num(rec, "samples_per_s"),
                     .epoch_s = dd__json_num(rec, "epoch_s"),
                     .allreduce_s = dd__json_num(rec, "allreduce_s"),
                     .data_wait_s = dd__json_num(rec, "data_wait_s"),
                     .mfu = dd__json_num(rec, "mfu"),
                     .sync_bytes = isfinite(dd__json_num(rec, "sync_bytes"))
                                       ? dd__json_num(rec, "sync_bytes")
                                       : dd__json_num(dd__json_get(rec, "sync"), "bytes"),
                     .t = t};
    if (read_phases(r, rec, e))
      return DD_ENOMEM;
    r->nepochs++;
  } else if (strcmp(ev, "checkpoint") == 0) {
    return add_event(r, DD__EV_CHECKPOINT, step, t, dd__json_str(rec, "path"));
  } else if (strcmp(ev, "skip") == 0) {
    char text[200];
    snprintf(text, sizeof text, "step skipped as an outlier: loss %.4g (z %.3g), gradient norm %.4g (z %.3g)",
             dd__json_num(rec, "train_loss"), dd__json_num(rec, "z_loss"), dd__json_num(rec, "grad_norm"),
             dd__json_num(rec, "z_grad_norm"));
    return add_event(r, DD__EV_SKIP, step, t, text);
  } else if (strcmp(ev, "stopped") == 0) {
    char text[80];
    snprintf(text, sizeof text, "stopped by signal %.0f", dd__json_num(rec, "signal"));
    return add_event(r, DD__EV_STOPPED, step, t, text);
  } else if (strcmp(ev, "stall") == 0) {
    return add_event(r, DD__EV_STALL, step, t, dd__json_str(rec, "message"));
  } else if (strcmp(ev, "done") == 0) {
    return add_event(r, DD__EV_DONE, step, t, "done");
  }
  /* other events (newer ddtrain versions) are not drawn */
  return DD_OK;
}

static int take_line(dd__run *r, const char *s, size_t n, long long line, bool last_unterminated, FILE *warn) {
  size_t k = 0;
  while (k < n && (s[k] == ' ' || s[k] == '\t' || s[k] == '\r'))
    k++;
  if (k == n)
    return DD_OK; /* blank */
  if (memchr(s, '\0', n)) {
    /* a crash can leave a run of zero bytes where the file system had not written the data yet */
    if (last_unterminated)
      r->partial_tail = true;
    else
      warn_line(r, warn, line, "zero bytes in the line (written during a crash?)");
    return DD_OK;
  }
  dd_json *rec = NULL;
  char why[160];
  int rc = dd__json_parse(s, n, &rec, why, sizeof why);
  if (rc == DD_ENOMEM)
    return rc;
  if (rc) {
    if (last_unterminated)
      r->partial_tail = true; /* being written: not damage */
    else
      warn_line(r, warn, line, why);
    return DD_OK;
  }
  if (rec->type != DD_JSON_OBJECT) {
    warn_line(r, warn, line, "not a JSON object");
    dd__json_free(rec);
    return DD_OK;
  }
  bool owned = false;
  rc = take(r, rec, line, warn, &owned);
  if (!owned)
    dd__json_free(rec);
  return rc;
}

static int read_file(dd__run *r, FILE *f, FILE *warn) {
  size_t cap = 1 << 16, len = 0;
  char *buf = dd_alloc(cap, 1);
  if (!buf)
    return DD_ENOMEM;
  int rc = DD_OK;
  bool eof = false;
  while (rc == DD_OK) {
    /* buf[0 .. len) holds the unread bytes: take every complete line */
    size_t pos = 0;
    for (;;) {
      char *nl = memchr(buf + pos, '\n', len - pos);
      if (!nl)
        break;
      rc = take_line(r, buf + pos, (size_t)(nl - (buf + pos)), ++r->lines, false, warn);
      pos = (size_t)(nl - buf) + 1;
      if (rc)
        break;
    }
    if (rc)
      break;
    memmove(buf, buf + pos, len - pos);
    len -= pos;
    if (eof) {
      if (len > 0)
        rc = take_line(r, buf, len, ++r->lines, true, warn);
      break;
    }
    if (len == cap) { /* one line longer than the buffer */
      char *nb = dd_alloc(2 * cap, 1);
      if (!nb) {
        rc = DD_ENOMEM;
        break;
      }
      memcpy(nb, buf, len);
      dd_free(buf);
      buf = nb;
      cap *= 2;
    }
    size_t got = fread(buf + len, 1, cap - len, f);
    len += got;
    if (got == 0) {
      if (ferror(f))
        rc = dd_error(DD_EIO, "cannot read %s: %s", r->file, strerror(errno));
      eof = true;
    }
  }
  dd_free(buf);
  return rc;
}

int dd__run_read(const char *path, dd__run *r, FILE *warn) {
  snprintf(r->label, sizeof r->label, "%s", path);
  size_t n = strlen(r->label);
  while (n > 1 && r->label[n - 1] == '/')
    r->label[--n] = '\0';
  struct stat st;
  if (stat(path, &st) != 0)
    return dd_error(DD_ENOTFOUND,
                    "run directory '%s' does not exist; give the directory a run logs to (its checkpoint.dir, holding "
                    "metrics.jsonl) or a metrics.jsonl file",
                    path);
  if (S_ISDIR(st.st_mode)) {
    snprintf(r->file, sizeof r->file, "%s/metrics.jsonl", r->label);
    if (stat(r->file, &st) != 0)
      return dd_error(DD_ENOTFOUND,
                      "'%s' has no metrics.jsonl; give a run's checkpoint.dir, or the file train.metrics names if "
                      "the run logged elsewhere",
                      path);
  } else {
    snprintf(r->file, sizeof r->file, "%s", path);
  }
  if (!S_ISREG(st.st_mode))
    return dd_error(DD_EDATA, "%s is not a regular file; give a metrics.jsonl written by ddtrain train", r->file);
  FILE *f = fopen(r->file, "rb");
  if (!f)
    return dd_error(DD_EIO, "cannot open %s: %s; check its permissions", r->file, strerror(errno));
  int rc = read_file(r, f, warn);
  fclose(f);
  if (rc == DD_ENOMEM)
    return dd_error(DD_ENOMEM, "out of memory reading %s", r->file);
  if (rc)
    return rc;
  if (r->records == 0 && r->damaged == 0)
    return dd_error(DD_EDATA,
                    "%s is empty%s: the run has not logged anything yet; run the report again once its start record "
                    "is written",
                    r->file, r->partial_tail ? " but for a record being written" : "");
  if (r->records == 0)
    return dd_error(DD_EDATA,
                    "%s has no readable record (%lld damaged line(s), named above); is it a metrics.jsonl written by "
                    "ddtrain train?",
                    r->file, r->damaged);
  return DD_OK;
}

void dd__run_free(dd__run *r) {
  if (!r)
    return;
  dd__json_free(r->start);
  for (size_t i = 0; i < r->nevents; i++)
    dd_free(r->events[i].text);
  dd_free(r->events);
  dd_free(r->steps);
  dd_free(r->epochs);
  for (int i = 0; i < r->nphases; i++)
    dd_free(r->phase[i]);
  *r = (dd__run){0};
}
