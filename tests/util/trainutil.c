/* MPI test helpers over the real library. */
#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "ddtrain/config.h"
#include "trainutil.h"

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(p);
}

void tu_fresh_dir(dd_comm *c, const char *path) {
  if (dd_comm_rank(c) == 0) {
    nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    mkdir(path, 0777);
  }
  dd_comm_barrier(c);
}

int tu_write_synth(dd_comm *c, const char *path, const dd_synth_spec *s) {
  int rc = DD_OK;
  if (dd_comm_rank(c) == 0) {
    dd_dataset *ds = NULL;
    rc = dd_data_synth(s, &ds);
    if (rc == DD_OK)
      rc = dd_data_save(ds, path, "test");
    dd_data_free(ds);
  }
  return dd_comm_bcast_status(c, rc, 0);
}

int tu_train(dd_comm *c, const char *yaml, int nov, char *const *ov, const char *resume, dd_train_result *res) {
  dd_config *cfg = NULL;
  int rc = dd_config_parse(yaml, "test.yaml", nov, ov, &cfg);
  if (rc == DD_OK) {
    dd_train_opts o = {.resume = resume};
    rc = dd_train_run(c, cfg, &o, res);
  }
  dd_config_free(cfg);
  return rc;
}

int tu_params(dd_comm *c, const char *ckpt, float **p, int64_t *n) {
  dd_config *cfg = NULL;
  dd_model *m = NULL;
  *p = NULL;
  int rc = dd_model_from_checkpoint(c, ckpt, 1, &cfg, &m);
  if (rc == DD_OK) {
    *n = m->nparams + m->nbuffers;
    *p = dd_alloc((size_t)*n, sizeof(float));
    memcpy(*p, m->params, sizeof(float) * (size_t)m->nparams);
    memcpy(*p + m->nparams, m->buffers, sizeof(float) * (size_t)m->nbuffers);
  }
  dd_model_free(m);
  dd_config_free(cfg);
  return rc;
}

double tu_rel_diff(const float *a, const float *b, int64_t n) {
  double d = 0, s = 0;
  for (int64_t i = 0; i < n; i++) {
    if (!isfinite(a[i]) || !isfinite(b[i])) /* fmax would skip a NaN and keep going */
      return NAN;
    d = fmax(d, fabs((double)a[i] - b[i]));
    s = fmax(s, fabs((double)b[i]));
  }
  return s > 0 ? d / s : d;
}

int tu_total_failures(dd_comm *c) {
  double f = dd_test_failures;
  dd_comm_allreduce_f64(c, &f, 1);
  if (dd_comm_rank(c) == 0)
    printf("%s: %d failure(s) over %d rank(s)\n", f ? "FAILED" : "PASSED", (int)f, dd_comm_size(c));
  return (int)f;
}
