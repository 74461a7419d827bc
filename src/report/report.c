/* ddtrain report: the HTML page and its SVG plots (curves, phases, ranks, timeline) from the runs' logs. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ddtrain/core.h"
#include "ddtrain/report.h"
#include "log.h"

/* Plot geometry (pixels): every plot is W wide; a panel's plotting area sits inside these margins. */
enum { W = 900, ML = 78, MR = 24, PLOT_H = 250, MB = 46, MAX_POINTS = 2000 };

static const char *const run_colour[DD_REPORT_MAX_RUNS] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                                           "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

typedef struct pt {
  double x, y;
} pt;

/* ---- text ---- */

/* HTML/XML text and attribute values */
static void esc(FILE *o, const char *s) {
  for (; s && *s; s++) {
    switch (*s) {
    case '&':
      fputs("&amp;", o);
      break;
    case '<':
      fputs("&lt;", o);
      break;
    case '>':
      fputs("&gt;", o);
      break;
    case '"':
      fputs("&quot;", o);
      break;
    case '\'':
      fputs("&#39;", o);
      break;
    default:
      fputc(*s, o);
    }
  }
}

/* a number for a tick label or a table: short, no exponent below a million */
static const char *num(double v, char *b, size_t n) {
  if (!isfinite(v))
    snprintf(b, n, "–");
  else if (fabs(v) >= 1e6)
    snprintf(b, n, "%.3gM", v / 1e6);
  else if (fabs(v) >= 1e4)
    snprintf(b, n, "%.0f", v);
  else
    snprintf(b, n, "%.4g", v);
  return b;
}

/* ---- axes ---- */

typedef struct axis {
  double lo, hi;
  bool log;
} axis;

typedef struct frame {
  double x0, y0, w, h; /* the plotting area */
  axis x, y;
} frame;

static double nice_step(double range, bool integer) {
  double raw = range / 5.0, p = pow(10.0, floor(log10(raw))), f = raw / p;
  double s = (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
  return integer && s < 1 ? 1 : s;
}

/* the range [lo, hi] of the data (lo > hi: none) made round; log scale for positive data spanning 30x */
static void axis_fit(axis *a, double lo, double hi, bool allow_log, bool from_zero, bool integer) {
  a->log = false;
  if (!(lo <= hi)) {
    lo = 0;
    hi = 1;
  }
  if (allow_log && lo > 0 && hi / lo >= 30) {
    a->log = true;
    a->lo = pow(10.0, floor(log10(lo)));
    a->hi = pow(10.0, ceil(log10(hi)));
    return;
  }
  if (from_zero && lo > 0)
    lo = 0;
  if (hi - lo < 1e-12 * fmax(fabs(lo), 1e-300)) {
    double d = lo != 0 ? fabs(lo) * 0.1 : 1;
    lo -= d;
    hi += d;
    if (from_zero && lo < 0 && hi > 0 && lo + d >= 0)
      lo = 0;
  }
  double s = nice_step(hi - lo, integer);
  a->lo = floor(lo / s) * s;
  a->hi = ceil(hi / s) * s;
  if (a->hi <= a->lo)
    a->hi = a->lo + s;
}

static double frac(const axis *a, double v) {
  if (a->log)
    return v > 0 ? (log10(v) - log10(a->lo)) / (log10(a->hi) - log10(a->lo)) : -1;
  return (v - a->lo) / (a->hi - a->lo);
}

static double px(const frame *f, double v) {
  return f->x0 + frac(&f->x, v) * f->w;
}

static double py(const frame *f, double v) {
  return f->y0 + f->h - frac(&f->y, v) * f->h;
}

/* tick values of an axis into t (at most n); returns how many */
static int ticks(const axis *a, bool integer, double *t, int n) {
  int k = 0;
  if (a->log) {
    int decades = (int)lround(log10(a->hi / a->lo));
    for (double d = a->lo; d <= a->hi * 1.0001 && k < n; d *= 10) {
      t[k++] = d;
      for (int m = 2; decades <= 2 && m <= 5 && k < n; m += 3) /* 2x and 5x when there are few decades */
        if (m * d < a->hi)
          t[k++] = m * d;
    }
    return k;
  }
  double s = nice_step(a->hi - a->lo, integer);
  for (double v = ceil(a->lo / s - 1e-9) * s; v <= a->hi + s * 1e-6 && k < n; v += s)
    t[k++] = fabs(v) < s * 1e-9 ? 0 : v;
  return k;
}

static void draw_frame(FILE *o, const frame *f, const char *xlabel, const char *ylabel, bool xint) {
  double t[40];
  char b[32];
  int n = ticks(&f->y, false, t, 40);
  fprintf(o, "<g class=\"axes\" font-size=\"11\" fill=\"#444\">\n");
  for (int i = 0; i < n; i++) {
    double y = py(f, t[i]);
    fprintf(o, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>", f->x0, y, f->x0 + f->w, y);
    fprintf(o, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n", f->x0 - 6, y + 4, num(t[i], b, sizeof b));
  }
  n = xlabel ? ticks(&f->x, xint, t, 40) : 0; /* no x label: categories, named by the caller */
  for (int i = 0; i < n; i++) {
    double x = px(f, t[i]);
    fprintf(o, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#888\"/>", x, f->y0 + f->h, x,
            f->y0 + f->h + 4);
    fprintf(o, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n", x, f->y0 + f->h + 16,
            num(t[i], b, sizeof b));
  }
  fprintf(o, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#888\"/>\n", f->x0,
          f->y0, f->w, f->h);
  if (xlabel) {
    fprintf(o, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">", f->x0 + f->w / 2, f->y0 + f->h + 34);
    esc(o, xlabel);
    fprintf(o, "</text>\n");
  }
  fprintf(o, "<text transform=\"translate(%.1f %.1f) rotate(-90)\" text-anchor=\"middle\">", f->x0 - 58,
          f->y0 + f->h / 2);
  esc(o, ylabel);
  fprintf(o, "%s</text>\n</g>\n", f->y.log ? " (log scale)" : "");
}

/* ---- legends ---- */

typedef struct legend_item {
  const char *label, *colour, *dash;
  double opacity, width;
  int shape; /* 0 line, 1 box, 2+ a timeline marker kind + 2 */
} legend_item;

static void marker(FILE *o, int kind, double x, double y);

/* lay the items out in rows from y; returns the height used */
static double legend_height(const legend_item *it, int n) {
  double x = ML, rows = n > 0 ? 1 : 0;
  for (int i = 0; i < n; i++) {
    double w = 46 + 7.0 * (double)strlen(it[i].label);
    if (x + w > W - MR && x > ML) {
      rows++;
      x = ML;
    }
    x += w;
  }
  return rows * 18;
}

static void legend(FILE *o, const legend_item *it, int n, double y) {
  double x = ML;
  fprintf(o, "<g class=\"legend\" font-size=\"12\">\n");
  for (int i = 0; i < n; i++) {
    double w = 46 + 7.0 * (double)strlen(it[i].label);
    if (x + w > W - MR && x > ML) {
      y += 18;
      x = ML;
    }
    fprintf(o, "<g class=\"legend-item\">");
    if (it[i].shape == 0)
      fprintf(o,
              "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"%.1f\" "
              "stroke-opacity=\"%.2f\"%s%s%s/>",
              x, y - 4, x + 24, y - 4, it[i].colour, it[i].width > 0 ? it[i].width : 2, it[i].opacity,
              it[i].dash ? " stroke-dasharray=\"" : "", it[i].dash ? it[i].dash : "", it[i].dash ? "\"" : "");
    else if (it[i].shape == 1)
      fprintf(o, "<rect x=\"%.1f\" y=\"%.1f\" width=\"20\" height=\"10\" fill=\"%s\" fill-opacity=\"%.2f\"/>", x + 2,
              y - 9, it[i].colour, it[i].opacity);
    else
      marker(o, it[i].shape - 2, x + 12, y - 4);
    fprintf(o, "<text x=\"%.1f\" y=\"%.1f\">", x + 30, y);
    esc(o, it[i].label);
    fprintf(o, "</text></g>\n");
    x += w;
  }
  fprintf(o, "</g>\n");
}

/* ---- an SVG document ---- */

static void svg_open(FILE *o, const char *id, double h, const char *title) {
  fprintf(o,
          "<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"%s\" class=\"plot\" width=\"%d\" height=\"%.0f\" "
          "viewBox=\"0 0 %d %.0f\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\" font-size=\"12\">\n",
          id, W, h, W, h);
  fprintf(o, "<title>");
  esc(o, title);
  fprintf(o, "</title>\n<rect width=\"%d\" height=\"%.0f\" fill=\"#fff\"/>\n", W, h);
  fprintf(o, "<text class=\"plot-title\" x=\"%d\" y=\"20\" font-size=\"15\" font-weight=\"bold\">", ML);
  esc(o, title);
  fprintf(o, "</text>\n");
}

static void no_data(FILE *o, const frame *f, const char *msg) {
  fprintf(o, "<text class=\"no-data\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" fill=\"#888\">", f->x0 + f->w / 2,
          f->y0 + f->h / 2);
  esc(o, msg);
  fprintf(o, "</text>\n");
}

/* ---- line plots ---- */

typedef struct line {
  const char *series; /* data-series */
  const char *label;  /* legend and tooltip text */
  int run;
  pt *p;
  size_t n;
  const char *colour, *dash;
  double width, opacity;
  bool dots;
} line;

static void draw_line(FILE *o, const frame *f, const line *l, const char *run_label, const char *xname) {
  if (l->n == 0)
    return;
  size_t stride = l->n > MAX_POINTS ? (l->n + MAX_POINTS - 1) / MAX_POINTS : 1;
  fprintf(o, "<path class=\"series\" data-series=\"%s\" data-run=\"", l->series);
  esc(o, run_label);
  fprintf(o, "\" fill=\"none\" stroke=\"%s\" stroke-width=\"%.1f\" stroke-opacity=\"%.2f\" stroke-linejoin=\"round\"",
          l->colour, l->width, l->opacity);
  if (l->dash)
    fprintf(o, " stroke-dasharray=\"%s\"", l->dash);
  fprintf(o, " d=\"");
  bool pen = false;
  for (size_t i = 0; i < l->n; i++) {
    if (i % stride != 0 && i != l->n - 1)
      continue;
    double y = l->p[i].y;
    if (!isfinite(y) || !isfinite(l->p[i].x) || (f->y.log && y <= 0)) {
      pen = false;
      continue;
    }
    fprintf(o, "%c%.1f %.1f ", pen ? 'L' : 'M', px(f, l->p[i].x), py(f, y));
    pen = true;
  }
  fprintf(o, "\"/>\n");
  if (!l->dots)
    return;
  char bx[32], by[32];
  fprintf(o, "<g class=\"points\" data-series=\"%s\" fill=\"%s\">\n", l->series, l->colour);
  for (size_t i = 0; i < l->n; i++) {
    double y = l->p[i].y;
    if (!isfinite(y) || (f->y.log && y <= 0))
      continue;
    fprintf(o, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\"><title>", px(f, l->p[i].x), py(f, y));
    esc(o, run_label);
    fprintf(o, ": %s %s, %s %s</title></circle>\n", xname, num(l->p[i].x, bx, sizeof bx), l->label,
            num(y, by, sizeof by));
  }
  fprintf(o, "</g>\n");
}

static void plot_lines(FILE *o, const char *id, const char *title, const char *xlabel, const char *ylabel,
                       const line *ls, int nl, const legend_item *lg, int nlg, const dd__run *runs, bool allow_log,
                       bool yzero, bool xint, const char *empty) {
  double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
  size_t total = 0;
  for (int i = 0; i < nl; i++)
    for (size_t k = 0; k < ls[i].n; k++) {
      if (!isfinite(ls[i].p[k].y) || !isfinite(ls[i].p[k].x))
        continue;
      xlo = fmin(xlo, ls[i].p[k].x);
      xhi = fmax(xhi, ls[i].p[k].x);
      ylo = fmin(ylo, ls[i].p[k].y);
      yhi = fmax(yhi, ls[i].p[k].y);
      total++;
    }
  double lh = legend_height(lg, nlg);
  frame f = {.x0 = ML, .y0 = 34 + lh, .w = W - ML - MR, .h = PLOT_H};
  axis_fit(&f.x, xlo, xhi, false, xint, xint);
  axis_fit(&f.y, ylo, yhi, allow_log, yzero, false);
  svg_open(o, id, f.y0 + f.h + MB, title);
  legend(o, lg, nlg, 40);
  draw_frame(o, &f, xlabel, ylabel, xint);
  if (total == 0)
    no_data(o, &f, empty);
  for (int i = 0; i < nl; i++)
    draw_line(o, &f, &ls[i], runs[ls[i].run].label, xint ? "epoch" : "step");
  fprintf(o, "</svg>\n");
}

/* ---- the series of the curves ---- */

typedef enum which { S_STEP_LOSS, S_TRAIN_LOSS, S_VAL_LOSS, S_TRAIN_ACC, S_VAL_ACC, S_LR, S_SPS, S_COUNT } which;

typedef struct series_style {
  const char *name, *label, *colour, *dash;
  double width, opacity;
  bool dots;
} series_style;

static const series_style styles[S_COUNT] = {
    [S_STEP_LOSS] = {"train_loss_step", "train loss (logged steps)", "#8fbbe0", NULL, 1.2, 0.8, false},
    [S_TRAIN_LOSS] = {"train_loss", "train loss (epoch)", "#1f77b4", NULL, 2, 1, true},
    [S_VAL_LOSS] = {"val_loss", "validation loss (epoch)", "#ff7f0e", "6 4", 2, 1, true},
    [S_TRAIN_ACC] = {"train_acc", "train accuracy", "#1f77b4", NULL, 2, 1, true},
    [S_VAL_ACC] = {"val_acc", "validation accuracy", "#ff7f0e", "6 4", 2, 1, true},
    [S_LR] = {"lr", "learning rate", "#2ca02c", NULL, 2, 1, false},
    [S_SPS] = {"samples_per_s", "samples/s", "#9467bd", NULL, 2, 1, true},
};

/* the points of series w of run r (caller frees); the learning rate from the epochs when no step logged one */
static int collect(const dd__run *r, which w, pt **out, size_t *n) {
  size_t cap = r->nsteps + r->nepochs + 1;
  pt *p = dd_alloc(cap, sizeof *p);
  if (!p)
    return DD_ENOMEM;
  size_t k = 0;
  if (w == S_STEP_LOSS || w == S_LR)
    for (size_t i = 0; i < r->nsteps; i++) {
      double y = w == S_LR ? r->steps[i].lr : r->steps[i].train_loss;
      if (isfinite(y))
        p[k++] = (pt){r->steps[i].step, y};
    }
  if (w != S_STEP_LOSS && !(w == S_LR && k > 0))
    for (size_t i = 0; i < r->nepochs; i++) {
      const dd__epoch *e = &r->epochs[i];
      double x = w == S_TRAIN_LOSS || w == S_VAL_LOSS || w == S_LR ? e->step : e->epoch;
      double y = w == S_TRAIN_LOSS  ? e->train_loss
                 : w == S_VAL_LOSS  ? e->val_loss
                 : w == S_TRAIN_ACC ? 100 * e->train_acc
                 : w == S_VAL_ACC   ? 100 * e->val_acc
                 : w == S_LR        ? e->lr
                                    : e->samples_per_s;
      if (isfinite(y))
        p[k++] = (pt){x, y};
    }
  *out = p;
  *n = k;
  return DD_OK;
}

/* one plot of series ws[0..nw) of every run: colours by series for one run, by run for several */
static int curves(FILE *o, const dd__run *runs, int nruns, const char *id, const char *title, const which *ws, int nw,
                  const char *xlabel, const char *ylabel, bool allow_log, bool yzero, bool xint, const char *empty) {
  line ls[DD_REPORT_MAX_RUNS * S_COUNT];
  legend_item lg[DD_REPORT_MAX_RUNS + S_COUNT];
  int nl = 0, nlg = 0, rc = DD_OK;
  for (int r = 0; r < nruns && rc == DD_OK; r++)
    for (int s = 0; s < nw && rc == DD_OK; s++) {
      const series_style *st = &styles[ws[s]];
      line *l = &ls[nl];
      *l = (line){.series = st->name,
                  .label = st->label,
                  .run = r,
                  .colour = nruns == 1 ? st->colour : run_colour[r],
                  .dash = st->dash,
                  .width = st->width,
                  .opacity = nruns > 1 && ws[s] == S_STEP_LOSS ? 0.45 : st->opacity,
                  .dots = st->dots};
      rc = collect(&runs[r], ws[s], &l->p, &l->n);
      if (rc == DD_OK)
        nl++;
    }
  if (nruns > 1)
    for (int r = 0; r < nruns; r++)
      lg[nlg++] = (legend_item){runs[r].label, run_colour[r], NULL, 1, 3, 1};
  for (int s = 0; s < nw && nw > 1; s++) {
    const series_style *st = &styles[ws[s]];
    lg[nlg++] = (legend_item){st->label, nruns == 1 ? st->colour : "#555",
                              st->dash,  nruns > 1 && ws[s] == S_STEP_LOSS ? 0.45 : st->opacity,
                              st->width, 0};
  }
  if (rc == DD_OK)
    plot_lines(o, id, title, xlabel, ylabel, ls, nl, lg, nlg, runs, allow_log, yzero, xint, empty);
  for (int i = 0; i < nl; i++)
    dd_free(ls[i].p);
  return rc;
}

/* ---- phases ---- */

static const char *phase_colour(const char *name) {
  static const struct {
    const char *name, *colour;
  } known[] = {{"data", "#8c564b"},         {"forward", "#1f77b4"},     {"backward", "#ff7f0e"},
               {"sync", "#d62728"},         {"optimizer", "#2ca02c"},   {"checkpoint", "#7f7f7f"},
               {"evaluation", "#9467bd"},   {"data_wait_s", "#8c564b"}, {"allreduce_s", "#d62728"},
               {"compute_other", "#aec7e8"}};
  static const char *const other[] = {"#e377c2", "#bcbd22", "#17becf", "#c5b0d5", "#ffbb78", "#98df8a"};
  for (size_t i = 0; i < sizeof known / sizeof *known; i++)
    if (strcmp(known[i].name, name) == 0)
      return known[i].colour;
  unsigned h = 0;
  for (const char *p = name; *p; p++)
    h = h * 31 + (unsigned char)*p;
  return other[h % (sizeof other / sizeof *other)];
}

static const char *const fallback_names[3] = {"data_wait_s", "allreduce_s", "compute_other"};
static const char *const fallback_labels[3] = {"waiting for data", "allreduce", "the rest (forward, backward, ...)"};

static bool run_has_phases(const dd__run *r) {
  for (size_t i = 0; i < r->nepochs; i++)
    if (r->epochs[i].has_phases)
      return true;
  return false;
}

/* epoch e's segments: the phases' means, or (no phase timers) what the older fields give */
static int segments(const dd__run *r, const dd__epoch *e, const char **names, double *v) {
  if (run_has_phases(r)) {
    for (int k = 0; k < r->nphases; k++) {
      names[k] = r->phase[k];
      v[k] = isfinite(e->ph[k].mean_s) && e->ph[k].mean_s > 0 ? e->ph[k].mean_s : 0;
    }
    return r->nphases;
  }
  double d = isfinite(e->data_wait_s) ? e->data_wait_s : 0, a = isfinite(e->allreduce_s) ? e->allreduce_s : 0;
  double rest = isfinite(e->epoch_s) ? e->epoch_s - d - a : 0;
  names[0] = fallback_names[0], names[1] = fallback_names[1], names[2] = fallback_names[2];
  v[0] = d, v[1] = a, v[2] = rest > 0 ? rest : 0;
  return 3;
}

static void panel_title(FILE *o, double y, int r, const char *label, const char *note) {
  fprintf(o,
          "<g class=\"panel-title\"><rect x=\"%d\" y=\"%.1f\" width=\"12\" height=\"12\" fill=\"%s\"/><text x=\"%d\" "
          "y=\"%.1f\" font-weight=\"bold\">",
          ML, y - 11, run_colour[r], ML + 18, y);
  esc(o, label);
  fprintf(o, "</text><text x=\"%d\" y=\"%.1f\" fill=\"#666\">", ML + 18, y + 15);
  esc(o, note);
  fprintf(o, "</text></g>\n");
}

enum { PANEL_H = 190, PANEL_TOP = 40 };

static void plot_phases(FILE *o, const dd__run *runs, int nruns) {
  /* the legend: every phase name of every run, once */
  legend_item lg[DD__MAX_PHASES * DD_REPORT_MAX_RUNS + 3];
  int nlg = 0;
  for (int r = 0; r < nruns; r++) {
    const char *names[DD__MAX_PHASES];
    double v[DD__MAX_PHASES];
    dd__epoch none = {0};
    int n = segments(&runs[r], runs[r].nepochs ? &runs[r].epochs[0] : &none, names, v);
    for (int k = 0; k < n; k++) {
      bool seen = false;
      for (int j = 0; j < nlg; j++)
        seen = seen || strcmp(lg[j].label, names[k]) == 0 ||
               (k < 3 && !run_has_phases(&runs[r]) && strcmp(lg[j].label, fallback_labels[k]) == 0);
      if (!seen)
        lg[nlg++] = (legend_item){
            run_has_phases(&runs[r]) ? names[k] : fallback_labels[k], phase_colour(names[k]), NULL, 1, 0, 1};
    }
  }
  double lh = legend_height(lg, nlg), top = PANEL_TOP + lh;
  svg_open(o, "plot-phases", top + nruns * (PANEL_H + MB + 34), "Time per epoch by phase");
  legend(o, lg, nlg, 40);
  for (int r = 0; r < nruns; r++) {
    const dd__run *run = &runs[r];
    const bool ph = run_has_phases(run);
    double y0 = top + r * (PANEL_H + MB + 34);
    panel_title(o, y0 + 12, r, run->label,
                ph ? "seconds per epoch, mean over ranks, stacked by phase"
                   : "no per-phase timers in this log: epoch_s split into data_wait_s, allreduce_s and the rest");
    frame f = {.x0 = ML, .y0 = y0 + 30, .w = W - ML - MR, .h = PANEL_H};
    double hi = 0, elo = INFINITY, ehi = -INFINITY;
    const char *names[DD__MAX_PHASES];
    double v[DD__MAX_PHASES];
    for (size_t i = 0; i < run->nepochs; i++) {
      elo = fmin(elo, run->epochs[i].epoch);
      ehi = fmax(ehi, run->epochs[i].epoch);
      int n = segments(run, &run->epochs[i], names, v);
      double s = 0;
      for (int k = 0; k < n; k++)
        s += v[k];
      hi = fmax(hi, s);
    }
    axis_fit(&f.y, 0, hi > 0 ? hi : 1, false, true, false);
    f.x = elo <= ehi ? (axis){elo - 0.5, ehi + 0.5, false} : (axis){0.5, 1.5, false};
    fprintf(o, "<g class=\"run\" data-run=\"");
    esc(o, run->label);
    fprintf(o, "\">\n");
    draw_frame(o, &f, "epoch", "seconds", true);
    if (run->nepochs == 0)
      no_data(o, &f, "no epoch finished yet");
    double bw = fmax(1, fmin(40, 0.7 * f.w / (f.x.hi - f.x.lo)));
    for (size_t i = 0; i < run->nepochs; i++) {
      const dd__epoch *e = &run->epochs[i];
      int n = segments(run, e, names, v);
      double x = px(&f, e->epoch) - bw / 2, base = 0;
      char b[32];
      for (int k = 0; k < n; k++) {
        if (!(v[k] > 0))
          continue;
        double ya = py(&f, base + v[k]), yb = py(&f, base);
        fprintf(o,
                "<rect class=\"bar\" data-series=\"%s\" data-epoch=\"%.0f\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" "
                "height=\"%.1f\" fill=\"%s\"><title>epoch %.0f: %s %s s",
                names[k], e->epoch, x, ya, bw, yb - ya, phase_colour(names[k]), e->epoch, names[k],
                num(v[k], b, sizeof b));
        if (ph && isfinite(e->ph[k].max_s))
          fprintf(o, " (max %.4g s on rank %d)", e->ph[k].max_s, e->ph[k].max_rank);
        fprintf(o, "</title></rect>\n");
        base += v[k];
      }
    }
    fprintf(o, "</g>\n");
  }
  fprintf(o, "</svg>\n");
}

/* the rank that had the max of phase k most often (ties: the later epoch's), and in how many epochs */
static int straggler(const dd__run *r, int k, int *count, int *of) {
  int best = -1, bestn = 0, n = 0;
  for (size_t i = 0; i < r->nepochs; i++) {
    int rank = r->epochs[i].ph[k].max_rank;
    if (rank < 0)
      continue;
    n++;
    int c = 0;
    for (size_t j = 0; j < r->nepochs; j++)
      c += r->epochs[j].ph[k].max_rank == rank;
    if (c >= bestn) {
      best = rank;
      bestn = c;
    }
  }
  *count = bestn;
  *of = n;
  return best;
}

static void plot_ranks(FILE *o, const dd__run *runs, int nruns) {
  legend_item lg[2] = {{"mean over ranks", "#555", NULL, 0.4, 0, 1},
                       {"max over ranks (the slowest rank)", "#555", NULL, 1, 0, 1}};
  double top = PANEL_TOP + legend_height(lg, 2);
  svg_open(o, "plot-ranks", top + nruns * (PANEL_H + MB + 34),
           "Phases per rank: mean and max over ranks, summed over epochs");
  legend(o, lg, 2, 40);
  for (int r = 0; r < nruns; r++) {
    const dd__run *run = &runs[r];
    double y0 = top + r * (PANEL_H + MB + 34);
    bool ph = run_has_phases(run);
    panel_title(o, y0 + 12, r, run->label,
                ph ? "bars: seconds over all epochs; label: the rank most often slowest, and max / mean"
                   : "no per-rank phase timings in this log (written by ddtrain versions with phase timers)");
    frame f = {.x0 = ML, .y0 = y0 + 30, .w = W - ML - MR, .h = PANEL_H};
    double mean[DD__MAX_PHASES] = {0}, max[DD__MAX_PHASES] = {0}, hi = 0;
    for (int k = 0; k < run->nphases; k++) {
      for (size_t i = 0; i < run->nepochs; i++) {
        const dd__phase *p = &run->epochs[i].ph[k];
        mean[k] += isfinite(p->mean_s) ? p->mean_s : 0;
        max[k] += isfinite(p->max_s) ? p->max_s : 0;
      }
      hi = fmax(hi, fmax(mean[k], max[k]));
    }
    axis_fit(&f.y, 0, hi > 0 ? hi : 1, false, true, false);
    f.x = (axis){0, 1, false};
    fprintf(o, "<g class=\"run\" data-run=\"");
    esc(o, run->label);
    fprintf(o, "\">\n");
    draw_frame(o, &f, NULL, "seconds", false); /* the phases are categories, named under their bars */
    if (!ph) {
      no_data(o, &f, "no phase timings");
      fprintf(o, "</g>\n");
      continue;
    }
    double slot = f.w / (double)(run->nphases ? run->nphases : 1), bw = fmin(36, slot * 0.35);
    for (int k = 0; k < run->nphases; k++) {
      double cx = f.x0 + slot * ((double)k + 0.5);
      int cnt = 0, of = 0, rank = straggler(run, k, &cnt, &of);
      const char *c = phase_colour(run->phase[k]);
      double ym = py(&f, mean[k]), yx = py(&f, max[k]), yb = py(&f, 0);
      fprintf(o,
              "<rect class=\"bar\" data-series=\"%s\" data-stat=\"mean\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" "
              "height=\"%.1f\" fill=\"%s\" fill-opacity=\"0.4\"><title>%s: mean over ranks %.4g s</title></rect>\n",
              run->phase[k], cx - bw, ym, bw, yb - ym, c, run->phase[k], mean[k]);
      fprintf(o,
              "<rect class=\"bar\" data-series=\"%s\" data-stat=\"max\" data-rank=\"%d\" x=\"%.1f\" y=\"%.1f\" "
              "width=\"%.1f\" height=\"%.1f\" fill=\"%s\"><title>%s: max over ranks %.4g s, rank %d slowest in %d of "
              "%d epochs</title></rect>\n",
              run->phase[k], rank, cx, yx, bw, yb - yx, c, run->phase[k], max[k], rank, cnt, of);
      if (rank >= 0 && max[k] > 0)
        fprintf(o,
                "<text class=\"straggler\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"11\">rank %d "
                "×%.2f</text>\n",
                cx + bw / 2, yx - 4, rank, mean[k] > 0 ? max[k] / mean[k] : 1.0);
      fprintf(o, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"11\">", cx, f.y0 + f.h + 16);
      esc(o, run->phase[k]);
      fprintf(o, "</text>\n");
    }
    fprintf(o, "</g>\n");
  }
  fprintf(o, "</svg>\n");
}

/* ---- timeline ---- */

static const struct {
  const char *name, *label, *colour;
} kinds[DD__EV_KINDS] = {
    [DD__EV_START] = {"start", "start / resume", "#2ca02c"},
    [DD__EV_CHECKPOINT] = {"checkpoint", "checkpoint", "#1f77b4"},
    [DD__EV_SKIP] = {"skip", "skipped step", "#9467bd"},
    [DD__EV_STOPPED] = {"stopped", "stopped (signal)", "#d62728"},
    [DD__EV_STALL] = {"stall", "stall (watchdog)", "#ff7f0e"},
    [DD__EV_DONE] = {"done", "done", "#333333"},
};

static void marker(FILE *o, int kind, double x, double y) {
  const char *c = kinds[kind].colour;
  switch (kind) {
  case DD__EV_START:
    fprintf(o, "<path d=\"M%.1f %.1fl10 6l-10 6z\" fill=\"%s\"/>", x - 4, y - 6, c);
    break;
  case DD__EV_CHECKPOINT:
    fprintf(o, "<path d=\"M%.1f %.1fl6 6l-6 6l-6 -6z\" fill=\"%s\"/>", x, y - 6, c);
    break;
  case DD__EV_SKIP:
    fprintf(o, "<path d=\"M%.1f %.1fl10 10m0 -10l-10 10\" stroke=\"%s\" stroke-width=\"2\"/>", x - 5, y - 5, c);
    break;
  case DD__EV_STOPPED:
    fprintf(o, "<rect x=\"%.1f\" y=\"%.1f\" width=\"10\" height=\"10\" fill=\"%s\"/>", x - 5, y - 5, c);
    break;
  case DD__EV_STALL:
    fprintf(o, "<path d=\"M%.1f %.1fl6 11h-12z\" fill=\"%s\"/>", x, y - 6, c);
    break;
  default:
    fprintf(o, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"5\" fill=\"%s\"/>", x, y, c);
  }
}

static void plot_timeline(FILE *o, const dd__run *runs, int nruns) {
  legend_item lg[DD__EV_KINDS + 1];
  for (int k = 0; k < DD__EV_KINDS; k++)
    lg[k] = (legend_item){kinds[k].label, kinds[k].colour, NULL, 1, 0, k + 2};
  lg[DD__EV_KINDS] = (legend_item){"epoch end", "#999", NULL, 1, 1, 0};
  double lh = legend_height(lg, DD__EV_KINDS + 1), lane = 44;
  frame f = {.x0 = ML + 120, .y0 = 34 + lh, .w = W - ML - 120 - MR, .h = lane * nruns};
  double hi = 0;
  for (int r = 0; r < nruns; r++)
    hi = fmax(hi, runs[r].t_last);
  axis_fit(&f.x, 0, hi > 0 ? hi : 1, false, true, false);
  f.y = (axis){0, (double)nruns, false};
  svg_open(o, "plot-timeline", f.y0 + f.h + MB, "Timeline: checkpoints, stops, stalls and skips");
  legend(o, lg, DD__EV_KINDS + 1, 40);
  /* x axis only: the lanes are runs */
  double t[40];
  char b[32];
  int n = ticks(&f.x, false, t, 40);
  fprintf(o, "<g class=\"axes\" font-size=\"11\" fill=\"#444\">\n");
  for (int i = 0; i < n; i++) {
    double x = px(&f, t[i]);
    fprintf(o, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/>", x, f.y0, x, f.y0 + f.h);
    fprintf(o, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n", x, f.y0 + f.h + 16,
            num(t[i], b, sizeof b));
  }
  fprintf(o,
          "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#888\"/><text x=\"%.1f\" "
          "y=\"%.1f\" text-anchor=\"middle\">seconds of training (resumes continue the clock)</text>\n</g>\n",
          f.x0, f.y0, f.w, f.h, f.x0 + f.w / 2, f.y0 + f.h + 34);
  for (int r = 0; r < nruns; r++) {
    const dd__run *run = &runs[r];
    double y = f.y0 + lane * (r + 0.5);
    fprintf(o, "<g class=\"run\" data-run=\"");
    esc(o, run->label);
    fprintf(o, "\">\n<text x=\"%d\" y=\"%.1f\" fill=\"%s\" font-weight=\"bold\">", ML - 60, y + 4, run_colour[r]);
    char lab[32];
    size_t ln = strlen(run->label), from = ln > 22 ? ln - 21 : 0;
    while (from < ln && ((unsigned char)run->label[from] & 0xC0) == 0x80)
      from++; /* not inside a UTF-8 character */
    /* the lane's name: the end of the path, which tells runs apart */
    snprintf(lab, sizeof lab, "%s%.21s", from > 0 ? "…" : "", run->label + from);
    esc(o, lab);
    fprintf(o, "</text>\n<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"/>\n",
            px(&f, 0), y, px(&f, run->t_last), y, run_colour[r]);
    for (size_t i = 0; i < run->nepochs; i++)
      fprintf(o,
              "<line class=\"epoch-tick\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#999\"><title>epoch "
              "%.0f ended at %.3g s</title></line>\n",
              px(&f, run->epochs[i].t), y - 12, px(&f, run->epochs[i].t), y + 12, run->epochs[i].epoch,
              run->epochs[i].t);
    for (size_t i = 0; i < run->nevents; i++) {
      const dd__event *e = &run->events[i];
      char st[32];
      if (isfinite(e->step))
        snprintf(st, sizeof st, "%.0f", e->step);
      else
        snprintf(st, sizeof st, "?");
      fprintf(o, "<g class=\"marker\" data-kind=\"%s\" data-step=\"%s\"><title>%s at step %s, %.3g s: ",
              kinds[e->kind].name, st, kinds[e->kind].name, st, e->t);
      esc(o, e->text);
      fprintf(o, "</title>");
      marker(o, e->kind, px(&f, e->t), y);
      fprintf(o, "</g>\n");
    }
    fprintf(o, "</g>\n");
  }
  fprintf(o, "</svg>\n");
}

/* ---- the page ---- */

static const char *status_of(const dd__run *r) {
  for (size_t i = r->nevents; i-- > 0;) {
    switch (r->events[i].kind) {
    case DD__EV_DONE:
      return "finished";
    case DD__EV_STOPPED:
      return "stopped by a signal";
    case DD__EV_STALL:
      return "stalled (the watchdog ended it)";
    case DD__EV_START:
      return "in progress, or ended without a record";
    default:
      break;
    }
  }
  return "in progress, or ended without a record";
}

/* a table cell: INT 12345, G3/G4 3 or 4 significant digits, PCT1/PCT2 a percentage, SEC seconds */
typedef enum cell { INT, G3, G4, PCT1, PCT2, SEC } cell;

static void td_num(FILE *o, double v, cell c) {
  if (!isfinite(v))
    fputs("<td>–</td>", o);
  else if (c == INT)
    fprintf(o, "<td>%.0f</td>", v);
  else if (c == G3)
    fprintf(o, "<td>%.3g</td>", v);
  else if (c == G4)
    fprintf(o, "<td>%.4g</td>", v);
  else if (c == PCT1)
    fprintf(o, "<td>%.1f%%</td>", v);
  else if (c == PCT2)
    fprintf(o, "<td>%.2f%%</td>", v);
  else
    fprintf(o, "<td>%.1f s</td>", v);
}

static void summary(FILE *o, const dd__run *runs, int nruns) {
  fputs("<section id=\"summary\"><h2>Runs</h2>\n<table><tr><th>run</th><th>status</th><th>ranks</th><th>epochs</th>"
        "<th>step</th><th>train loss</th><th>val loss</th><th>val acc</th><th>samples/s</th><th>MFU</th>"
        "<th>training time</th><th>resumes</th><th>log</th></tr>\n",
        o);
  for (int r = 0; r < nruns; r++) {
    const dd__run *run = &runs[r];
    const dd__epoch *e = run->nepochs ? &run->epochs[run->nepochs - 1] : NULL;
    double last_step = e ? e->step : NAN;
    if (run->nsteps && !(run->steps[run->nsteps - 1].step <= last_step))
      last_step = run->steps[run->nsteps - 1].step;
    fprintf(o, "<tr class=\"run-row\" data-run=\"");
    esc(o, run->label);
    fprintf(o, "\"><td><span class=\"swatch\" style=\"background:%s\"></span>", run_colour[r]);
    esc(o, run->label);
    fprintf(o, "</td><td>%s</td>", status_of(run));
    td_num(o, dd__json_num(run->start, "ranks"), INT);
    td_num(o, e ? e->epoch : NAN, INT);
    td_num(o, last_step, INT);
    td_num(o, e ? e->train_loss : NAN, G4);
    td_num(o, e ? e->val_loss : NAN, G4);
    td_num(o, e ? 100 * e->val_acc : NAN, PCT2);
    td_num(o, e ? e->samples_per_s : NAN, INT);
    td_num(o, e ? 100 * e->mfu : NAN, PCT1);
    td_num(o, run->t_last, SEC);
    fprintf(o, "<td>%d</td><td>%lld records", run->resumes, run->records);
    if (run->damaged)
      fprintf(o, ", <b>%lld damaged line(s) skipped</b>", run->damaged);
    if (run->partial_tail)
      fputs(", last line still being written (ignored)", o);
    fputs("</td></tr>\n", o);
  }
  fputs("</table></section>\n", o);
}

static void epoch_table(FILE *o, const dd__run *r) {
  enum { MAX_ROWS = 500 };
  bool ph = run_has_phases(r);
  fputs("<div class=\"wide\"><table class=\"epochs\"><tr><th>epoch</th><th>step</th><th>train loss</th><th>train "
        "acc</th><th>val "
        "loss</th><th>val acc</th><th>lr</th><th>samples/s</th><th>epoch s</th><th>allreduce s</th><th>data wait "
        "s</th><th>sync bytes</th><th>MFU</th>",
        o);
  for (int k = 0; ph && k < r->nphases; k++) {
    fputs("<th>", o);
    esc(o, r->phase[k]);
    fputs(" mean / max (rank)</th>", o);
  }
  fputs("</tr>\n", o);
  size_t from = r->nepochs > MAX_ROWS ? r->nepochs - MAX_ROWS : 0;
  if (from)
    fprintf(o, "<tr><td colspan=\"13\">the first %zu epochs left out</td></tr>\n", from);
  for (size_t i = from; i < r->nepochs; i++) {
    const dd__epoch *e = &r->epochs[i];
    fputs("<tr>", o);
    td_num(o, e->epoch, INT);
    td_num(o, e->step, INT);
    td_num(o, e->train_loss, G4);
    td_num(o, 100 * e->train_acc, PCT2);
    td_num(o, e->val_loss, G4);
    td_num(o, 100 * e->val_acc, PCT2);
    td_num(o, e->lr, G3);
    td_num(o, e->samples_per_s, INT);
    td_num(o, e->epoch_s, G3);
    td_num(o, e->allreduce_s, G3);
    td_num(o, e->data_wait_s, G3);
    td_num(o, e->sync_bytes, G4);
    td_num(o, 100 * e->mfu, PCT1);
    for (int k = 0; ph && k < r->nphases; k++) {
      const dd__phase *p = &e->ph[k];
      bool slow = isfinite(p->mean_s) && p->mean_s > 0 && p->max_s > 1.2 * p->mean_s;
      if (isfinite(p->mean_s))
        fprintf(o, "<td%s>%.3g / %.3g (%d)</td>", slow ? " class=\"slow\"" : "", p->mean_s, p->max_s, p->max_rank);
      else
        fputs("<td>–</td>", o);
    }
    fputs("</tr>\n", o);
  }
  fputs("</table></div>\n", o);
}

static void events_table(FILE *o, const dd__run *r) {
  fputs("<table class=\"events\"><tr><th>event</th><th>step</th><th>time</th><th>what</th></tr>\n", o);
  for (size_t i = 0; i < r->nevents; i++) {
    const dd__event *e = &r->events[i];
    fprintf(o, "<tr class=\"event\" data-kind=\"%s\"><td>%s</td><td>%.0f</td><td>%.3g s</td><td>", kinds[e->kind].name,
            kinds[e->kind].label, e->step, e->t);
    esc(o, e->text);
    fputs("</td></tr>\n", o);
  }
  fputs("</table>\n", o);
}

static void json_value(FILE *o, const dd_json *v) {
  char b[64];
  switch (v->type) {
  case DD_JSON_NULL:
    fputs("null", o);
    break;
  case DD_JSON_BOOL:
    fputs(v->b ? "true" : "false", o);
    break;
  case DD_JSON_NUMBER:
    snprintf(b, sizeof b, "%.10g", v->num);
    fputs(b, o);
    break;
  case DD_JSON_STRING:
    esc(o, v->str);
    break;
  default:
    fputs(v->type == DD_JSON_ARRAY ? "[" : "{", o);
    for (const dd_json *m = v->child; m; m = m->next) {
      if (m->key) {
        esc(o, m->key);
        fputs(": ", o);
      }
      json_value(o, m);
      if (m->next)
        fputs(", ", o);
    }
    fputs(v->type == DD_JSON_ARRAY ? "]" : "}", o);
  }
}

/* the start record as key/value rows, nested objects as prefix.key */
static void start_rows(FILE *o, const dd_json *v, const char *prefix) {
  for (const dd_json *m = v->child; m; m = m->next) {
    if (!m->key || (!prefix[0] && strcmp(m->key, "event") == 0))
      continue;
    if (m->type == DD_JSON_OBJECT) {
      char p[256];
      snprintf(p, sizeof p, "%s%s.", prefix, m->key);
      start_rows(o, m, p);
      continue;
    }
    fputs("<tr><th>", o);
    esc(o, prefix);
    esc(o, m->key);
    fputs("</th><td>", o);
    json_value(o, m);
    fputs("</td></tr>\n", o);
  }
}

/* The config file the start record names, as it is now: relative paths are the training's working
 * directory's, unknown here, so try this one, then the run directory's parent and grandparent
 * (a checkpoint.dir of runs/NAME under the checkout the config path is relative to). */
static void config_text(FILE *o, const dd__run *r) {
  const char *cfg = dd__json_str(r->start, "config");
  if (!cfg || !cfg[0])
    return;
  char cand[3][4096 + 1100];
  int nc = 0;
  snprintf(cand[nc++], sizeof cand[0], "%s", cfg);
  if (cfg[0] != '/') {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", r->file);
    char *slash = strrchr(dir, '/');
    if (slash) {
      *slash = '\0';
      snprintf(cand[nc++], sizeof cand[0], "%s/../%s", dir, cfg);
      snprintf(cand[nc++], sizeof cand[0], "%s/../../%s", dir, cfg);
    } else {
      snprintf(cand[nc++], sizeof cand[0], "../%s", cfg);
      snprintf(cand[nc++], sizeof cand[0], "../../%s", cfg);
    }
  }
  for (int i = 0; i < nc; i++) {
    struct stat st;
    if (stat(cand[i], &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > (1 << 20))
      continue;
    FILE *f = fopen(cand[i], "rb");
    if (!f)
      continue;
    fputs("<p class=\"note\">The config file as it is now, read from <code>", o);
    esc(o, cand[i]);
    fputs("</code> (command-line overrides of the run are not in it):</p>\n<pre class=\"config-text\">", o);
    char buf[4096];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf - 1, f)) > 0) {
      buf[got] = '\0';
      for (size_t k = 0; k < got; k++) /* a NUL would end esc's string early */
        if (buf[k] == '\0')
          buf[k] = '?';
      esc(o, buf);
    }
    fclose(f);
    fputs("</pre>\n", o);
    return;
  }
  fputs("<p class=\"note\">The config file <code>", o);
  esc(o, cfg);
  fputs("</code> is not readable from here (a path relative to where the run started).</p>\n", o);
}

static void config_section(FILE *o, const dd__run *runs, int nruns) {
  fputs("<section id=\"config\"><h2>Configuration</h2>\n", o);
  for (int r = 0; r < nruns; r++) {
    const dd__run *run = &runs[r];
    fputs("<div class=\"run-config\" data-run=\"", o);
    esc(o, run->label);
    fputs("\"><h3>", o);
    esc(o, run->label);
    fputs("</h3>\n", o);
    if (!run->start) {
      fputs("<p class=\"note\">no start record in this log</p></div>\n", o);
      continue;
    }
    fputs("<table class=\"start\">\n", o);
    start_rows(o, run->start, "");
    fputs("</table>\n", o);
    if (run->resumes)
      fprintf(o, "<p class=\"note\">resumed %d time(s); each resume's start record is in the events table</p>\n",
              run->resumes);
    config_text(o, run);
    fputs("</div>\n", o);
  }
  fputs("</section>\n", o);
}

static const char *const css =
    "body{font-family:'DejaVu Sans',Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1000px}"
    "h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd}h3{font-size:15px}"
    "table{border-collapse:collapse;font-size:12px;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 6px;"
    "text-align:left;vertical-align:top}th{background:#f4f4f4}td.slow{background:#fde0dc}"
    ".swatch{display:inline-block;width:10px;height:10px;margin-right:6px}"
    "pre{background:#f7f7f7;padding:8px;font-size:12px;overflow:auto}.note{color:#555;font-size:13px}"
    "svg.plot{display:block;margin:8px 0}.wide{overflow-x:auto}";

/* ---- files ---- */

typedef struct out_file {
  char path[4096 + 64], tmp[4096 + 128];
} out_file;

static int open_tmp(out_file *of, const char *path, FILE **f) {
  snprintf(of->path, sizeof of->path, "%s", path);
  snprintf(of->tmp, sizeof of->tmp, "%s.tmp.%ld", path, (long)getpid());
  *f = fopen(of->tmp, "w+");
  if (!*f)
    return dd_error(DD_EIO,
                    "cannot write '%s': %s; check the directory and its permissions, or choose another file "
                    "with --out",
                    path, strerror(errno));
  return DD_OK;
}

/* the plot just written to f goes into the page too */
static int copy_into(FILE *f, FILE *page, const out_file *of) {
  if (fflush(f) != 0 || ferror(f))
    return dd_error(DD_EIO, "cannot write '%s': %s; free space on its file system", of->path, strerror(errno));
  rewind(f);
  char buf[1 << 14];
  size_t got;
  while ((got = fread(buf, 1, sizeof buf, f)) > 0)
    fwrite(buf, 1, got, page);
  return ferror(f) ? dd_error(DD_EIO, "cannot read back '%s': %s", of->tmp, strerror(errno)) : DD_OK;
}

static int write_page(const dd__run *runs, int nruns, const char *html, dd_report_result *res) {
  enum { NPLOTS = 7 };
  static const char *const plot_names[NPLOTS] = {"loss", "accuracy", "lr", "throughput", "phases", "ranks", "timeline"};
  out_file files[NPLOTS + 1];
  int nfiles = 0, rc = DD_OK;
  /* the plots' files: <stem>-<plot>.svg beside the page */
  char stem[4096];
  snprintf(stem, sizeof stem, "%s", html);
  size_t sl = strlen(stem);
  if (sl > 5 && strcmp(stem + sl - 5, ".html") == 0)
    stem[sl - 5] = '\0';
  else if (sl > 4 && strcmp(stem + sl - 4, ".htm") == 0)
    stem[sl - 4] = '\0';
  FILE *page = NULL;
  rc = open_tmp(&files[nfiles], html, &page);
  if (rc)
    return rc;
  nfiles++;
  fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>ddtrain report: ", page);
  for (int r = 0; r < nruns; r++) {
    esc(page, runs[r].label);
    fputs(r + 1 < nruns ? ", " : "", page);
  }
  fprintf(page, "</title>\n<style>%s</style></head>\n<body>\n<h1>ddtrain report</h1>\n", css);
  fprintf(page, "<p class=\"note\">Written by <code>ddtrain report</code> %s from ", DD_VERSION_STRING);
  for (int r = 0; r < nruns; r++) {
    fputs("<code>", page);
    esc(page, runs[r].file);
    fputs(r + 1 < nruns ? "</code>, " : "</code>", page);
  }
  fputs(". Every plot is also an SVG file beside this page. Hover a point or bar for its value.</p>\n", page);
  summary(page, runs, nruns);
  static const which loss[] = {S_STEP_LOSS, S_TRAIN_LOSS, S_VAL_LOSS}, acc[] = {S_TRAIN_ACC, S_VAL_ACC}, lr[] = {S_LR},
                     sps[] = {S_SPS};
  for (int p = 0; p < NPLOTS && rc == DD_OK; p++) {
    char path[4096 + 64];
    snprintf(path, sizeof path, "%s-%s.svg", stem, plot_names[p]);
    FILE *f = NULL;
    if ((rc = open_tmp(&files[nfiles], path, &f)) != DD_OK)
      break;
    nfiles++;
    if (p == 0) {
      fputs("<section id=\"curves\"><h2>Curves</h2>\n", page);
      rc = curves(f, runs, nruns, "plot-loss", "Loss", loss, 3, "step", "loss", true, false, false,
                  "no loss logged yet");
    } else if (p == 1) {
      rc = curves(f, runs, nruns, "plot-accuracy", "Accuracy", acc, 2, "epoch", "accuracy (%)", false, false, true,
                  "no accuracy logged (a regression loss, or no epoch yet)");
    } else if (p == 2) {
      rc = curves(f, runs, nruns, "plot-lr", "Learning rate", lr, 1, "step", "learning rate", false, true, false,
                  "no learning rate logged yet");
    } else if (p == 3) {
      rc = curves(f, runs, nruns, "plot-throughput", "Throughput (training samples per second, per epoch)", sps, 1,
                  "epoch", "samples/s", false, true, true,
                  "no epoch finished yet"); /* from 0: a drop reads as its share */
    } else if (p == 4) {
      fputs("</section>\n<section id=\"phases\"><h2>Where the time goes</h2>\n", page);
      plot_phases(f, runs, nruns);
    } else if (p == 5) {
      plot_ranks(f, runs, nruns);
    } else {
      fputs("<h3>Per epoch</h3><p class=\"note\">Phase cells are mean / max over ranks in seconds (the rank with the "
            "max); red where the slowest rank took over 1.2x the mean.</p>\n",
            page);
      for (int r = 0; r < nruns; r++) {
        fputs("<h3>", page);
        esc(page, runs[r].label);
        fputs("</h3>\n", page);
        epoch_table(page, &runs[r]);
      }
      fputs("</section>\n<section id=\"events\"><h2>Checkpoints, stops, stalls and skips</h2>\n", page);
      plot_timeline(f, runs, nruns);
    }
    if (rc == DD_OK)
      rc = copy_into(f, page, &files[nfiles - 1]);
    if (fclose(f) != 0 && rc == DD_OK)
      rc = dd_error(DD_EIO, "cannot write '%s': %s; free space on its file system", path, strerror(errno));
  }
  if (rc == DD_OK) {
    for (int r = 0; r < nruns; r++) {
      fputs("<h3>", page);
      esc(page, runs[r].label);
      fputs("</h3>\n", page);
      events_table(page, &runs[r]);
    }
    fputs("</section>\n", page);
    config_section(page, runs, nruns);
    fputs("</body></html>\n", page);
    if (fflush(page) != 0 || ferror(page))
      rc = dd_error(DD_EIO, "cannot write '%s': %s; free space on its file system", html, strerror(errno));
  }
  if (fclose(page) != 0 && rc == DD_OK)
    rc = dd_error(DD_EIO, "cannot write '%s': %s; free space on its file system", html, strerror(errno));
  for (int i = 0; i < nfiles; i++) {
    if (rc == DD_OK && rename(files[i].tmp, files[i].path) != 0)
      rc = dd_error(DD_EIO, "cannot rename '%s' to '%s': %s", files[i].tmp, files[i].path, strerror(errno));
    if (rc != DD_OK)
      remove(files[i].tmp);
  }
  if (rc == DD_OK) {
    snprintf(res->html, sizeof res->html, "%s", html);
    res->nsvg = 0;
    for (int i = 1; i < nfiles && res->nsvg < (int)(sizeof res->svg / sizeof res->svg[0]); i++)
      snprintf(res->svg[res->nsvg++], sizeof res->svg[0], "%s", files[i].path);
  }
  return rc;
}

int dd_report_write(const dd_report_opts *o, dd_report_result *res) {
  *res = (dd_report_result){0};
  if (o->nruns < 1 || o->nruns > DD_REPORT_MAX_RUNS)
    return dd_error(DD_EINVAL, "report needs 1 to %d run directories, got %d", DD_REPORT_MAX_RUNS, o->nruns);
  dd__run *runs = dd_alloc((size_t)o->nruns, sizeof *runs);
  if (!runs)
    return DD_ENOMEM;
  int rc = DD_OK;
  for (int r = 0; r < o->nruns && rc == DD_OK; r++) {
    rc = dd__run_read(o->runs[r], &runs[r], o->warn);
    res->records += runs[r].records;
    res->damaged += runs[r].damaged;
  }
  char html[4096];
  struct stat st;
  if (rc == DD_OK && o->out && stat(o->out, &st) == 0 && S_ISDIR(st.st_mode))
    rc = dd_error(DD_EINVAL, "--out %s is a directory; give the page's file name, e.g. --out %s/report.html", o->out,
                  o->out);
  if (o->out)
    snprintf(html, sizeof html, "%s", o->out);
  else if (rc == DD_OK) {
    /* beside the first run's log */
    snprintf(html, sizeof html, "%s", runs[0].file);
    char *slash = strrchr(html, '/');
    if (slash)
      snprintf(slash + 1, sizeof html - (size_t)(slash + 1 - html), "report.html");
    else
      snprintf(html, sizeof html, "report.html");
  }
  if (rc == DD_OK)
    rc = write_page(runs, o->nruns, html, res);
  for (int r = 0; r < o->nruns; r++)
    dd__run_free(&runs[r]);
  dd_free(runs);
  return rc;
}
