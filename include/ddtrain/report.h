/* ddtrain report: read runs' metrics.jsonl logs and write one HTML page of SVG plots (and each plot as .svg). */
#ifndef DDTRAIN_REPORT_H
#define DDTRAIN_REPORT_H

#include <stdio.h>

#define DD_REPORT_MAX_RUNS 10 /* distinct colours; more runs would be hard to tell apart */

typedef struct dd_report_opts {
  const char *const *runs; /* run directories (holding metrics.jsonl) or metrics files; 1..DD_REPORT_MAX_RUNS */
  int nruns;
  const char *out; /* the HTML file; NULL: report.html in the first run's directory */
  FILE *warn;      /* damaged lines are named here ("ddtrain: warning: FILE:LINE: ..."); NULL: silent */
} dd_report_opts;

typedef struct dd_report_result {
  char html[4096 + 64];   /* the page written */
  char svg[8][4096 + 64]; /* the plots written beside it */
  int nsvg;
  long long records; /* records read, over all runs */
  long long damaged; /* lines skipped as damaged */
} dd_report_result;

/* Read every run's log (a run still in progress: its incomplete last line is
 * ignored; a resumed run: the records its resume redid replace the earlier
 * ones) and write the page and the plots, each through a temporary file and
 * a rename (no half-written page). Needs no MPI; call on one rank. Returns 0,
 * or DD_ENOTFOUND / DD_EDATA / DD_EIO / DD_ENOMEM with the one-line message
 * (dd_error_message) naming the file and the fix. res is caller-owned. */
int dd_report_write(const dd_report_opts *o, dd_report_result *res);

#endif
