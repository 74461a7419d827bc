/* Shared by train/eval/predict: shape and label checks, parallel evaluation. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ddtrain/comm.h"
#include "session.h"

size_t dd__label_bytes(const dd_dataset *ds) {
  return 4 * (size_t)ds->ysize;
}

int dd__input_shape(const dd_config *cfg, const dd_dataset *ds, dd_shape *s) {
  if (cfg->input.ndim == 0) {
    *s = ds->xshape;
    return DD_OK;
  }
  if (dd_shape_size(cfg->input) != ds->xsize) {
    char a[64], b[64];
    return dd_error(DD_EDATA,
                    "model.input %s has %lld values per sample but '%s':%s has %lld (%s); fix model.input or the data",
                    dd_shape_str(cfg->input, a, sizeof a), (long long)dd_shape_size(cfg->input), ds->path, ds->xname,
                    (long long)ds->xsize, dd_shape_str(ds->xshape, b, sizeof b));
  }
  *s = cfg->input;
  return DD_OK;
}

int dd__check_input(const dd_model *m, const dd_config *cfg, const dd_dataset *ds, const char *role) {
  (void)cfg;
  if (ds->xsize != m->in_size) {
    char a[64], b[64];
    return dd_error(DD_EDATA, "%s '%s':%s has %s = %lld features per sample, the model expects %s = %lld", role,
                    ds->path, ds->xname, dd_shape_str(ds->xshape, a, sizeof a), (long long)ds->xsize,
                    dd_shape_str(m->input, b, sizeof b), (long long)m->in_size);
  }
  return DD_OK;
}

int dd__check_labels(const dd_model *m, const dd_config *cfg, const dd_dataset *ds, const char *role) {
  const int last = m->nlayers - 1;
  if (m->loss == DD_LOSS_CROSS_ENTROPY) {
    if (ds->ykind != DD_LABELS_CLASS)
      return dd_error(DD_EDATA,
                      "model.loss cross_entropy needs integer class ids but %s '%s':%s holds floats; "
                      "use model.loss: mse for regression targets or store the labels as integers",
                      role, ds->path, ds->yname);
    if (ds->ysize != m->out_rows)
      return dd_error(DD_EDATA,
                      "%s '%s':%s has %lld label(s) per sample but the model outputs %lld row(s) of %lld classes%s",
                      role, ds->path, ds->yname, (long long)ds->ysize, (long long)m->out_rows, (long long)m->classes,
                      ds->ysize == 1 && m->out_rows > 1
                          ? " (a dense layer acts per row on a 2-D [T, D] input: add {type: flatten} before it to "
                            "classify the whole sample)"
                          : "");
    if (ds->nclasses > m->classes) {
      int64_t total = ds->n * ds->ysize;
      for (int64_t i = 0; i < total; i++)
        if (ds->yc[i] >= m->classes)
          return dd_error(DD_EDATA,
                          "%s '%s':%s[%lld] = %d is out of range for the model's %lld output classes; "
                          "set the last layer's units to at least %lld (model.layers.%d.units) or fix the labels",
                          role, ds->path, ds->yname, (long long)(i / ds->ysize), ds->yc[i], (long long)m->classes,
                          (long long)ds->nclasses, last);
    }
  } else {
    if (ds->ykind != DD_LABELS_FLOAT)
      return dd_error(DD_EDATA,
                      "model.loss mse needs float targets but %s '%s':%s holds integer class ids; "
                      "use model.loss: cross_entropy for classification",
                      role, ds->path, ds->yname);
    if (ds->ysize != m->out_size)
      return dd_error(DD_EDATA,
                      "%s '%s':%s has %lld target value(s) per sample but the model outputs %lld; "
                      "set the last layer's units to %lld (model.layers.%d.units)",
                      role, ds->path, ds->yname, (long long)ds->ysize, (long long)m->out_size, (long long)ds->ysize,
                      last);
  }
  (void)cfg;
  return DD_OK;
}

int dd__check_tokens(const dd_model *m, const dd_dataset *ds, const char *role) {
  const dd_layer *l = &m->layers[0];
  if (strcmp(l->kind->name, "embedding") != 0)
    return DD_OK;
  const int64_t V = l->spec.vocab, T = ds->xsize;
  int64_t bad = -1, maxid = -1;
  for (int64_t i = 0; i < ds->n; i++) {
    const int64_t len = ds->lengths ? ds->lengths[i] : T;
    for (int64_t t = 0; t < len; t++) {
      const float v = ds->x[i * T + t];
      if (!(v >= 0.0f) || v != floorf(v)) {
        char sh[64];
        return dd_error(DD_EDATA,
                        "%s '%s':%s[%lld] step %lld holds %g, not a token id; the first layer (embedding) needs "
                        "integer ids in [0, %lld): store x %s as integers",
                        role, ds->path, ds->xname, (long long)i, (long long)t, (double)v, (long long)V,
                        dd_shape_str(ds->xshape, sh, sizeof sh));
      }
      if (v >= (float)V && bad < 0)
        bad = i * T + t;
      if (v > (float)maxid)
        maxid = v < 9e18f ? (int64_t)v : INT64_MAX;
    }
  }
  if (bad >= 0)
    return dd_error(DD_EDATA,
                    "%s '%s':%s[%lld] step %lld holds token id %.0f, outside [0, %lld) of the embedding; raise "
                    "model.layers.0.vocab to at least %lld (the largest id in the data + 1) or fix the data",
                    role, ds->path, ds->xname, (long long)(bad / T), (long long)(bad % T), (double)ds->x[bad],
                    (long long)V, (long long)maxid + 1);
  return DD_OK;
}

int dd__evaluate(dd_comm *c, dd_model *m, const dd_split *s, void *ybuf, int64_t *pos, float *out, dd_loss_sums *sums) {
  int64_t lo, hi;
  dd_sampler_shard(s->n, dd_comm_size(c), dd_comm_rank(c), &lo, &hi);
  dd_loss_sums local = {0};
  const bool has_y = ybuf != NULL;
  /* sequence lengths: once per evaluation, not per batch */
  int32_t *len = s->ds->lengths ? dd_alloc((size_t)m->max_batch, sizeof(int32_t)) : NULL;
  if (s->ds->lengths && !len)
    return DD_ENOMEM;
  for (int64_t start = lo; start < hi; start += m->max_batch) {
    int n = (int)(hi - start < m->max_batch ? hi - start : m->max_batch);
    for (int i = 0; i < n; i++)
      pos[i] = start + i;
    dd_data_gather(s, pos, n, m->acts[0], has_y ? ybuf : NULL);
    dd_pass p = {
        .B = n, .B_global = s->n, .sample0 = start, .train = false, .lengths = dd_data_gather_lengths(s, pos, n, len)};
    int rc = dd_model_forward(m, &p);
    if (rc) {
      dd_free(len);
      return rc;
    }
    if (has_y)
      dd_model_loss(m, &p, ybuf, false, &local);
    if (out)
      memcpy(out + (start - lo) * m->out_size, m->acts[m->nlayers], sizeof(float) * (size_t)((int64_t)n * m->out_size));
  }
  dd_free(len);
  double v[3] = {local.loss, local.count, local.correct};
  int rc = dd_comm_allreduce_f64(c, v, 3);
  if (rc)
    return rc;
  sums->loss += v[0];
  sums->count += v[1];
  sums->correct += v[2];
  return DD_OK;
}

int dd_model_from_checkpoint(dd_comm *c, const char *ckpt, int max_batch, dd_config **cfg, dd_model **m) {
  *cfg = NULL;
  *m = NULL;
  char *text = NULL;
  dd_shape input;
  int rc = dd_checkpoint_config(c, ckpt, &text, &input);
  if (rc == DD_OK) {
    char origin[1200];
    snprintf(origin, sizeof origin, "config stored in %s", ckpt);
    rc = dd_config_parse(text, origin, 0, NULL, cfg);
  }
  dd_free(text);
  if (rc)
    return rc;
  dd_model_spec spec = {.input = input, .nlayers = (*cfg)->nlayers, .layers = (*cfg)->layers, .loss = (*cfg)->loss};
  rc = dd_model_build(&spec, max_batch, 0, m);
  if (rc == DD_OK)
    rc = dd_checkpoint_load(c, ckpt, *m, NULL, NULL);
  return rc;
}

int dd__model_from_checkpoint(dd_comm *c, const char *ckpt, const char *data, const char *xname, const char *yname,
                              bool need_labels, dd_config **cfg, dd_dataset **ds, dd_model **m) {
  *ds = NULL;
  int rc = dd_model_from_checkpoint(c, ckpt, 256, cfg, m);
  if (rc)
    return rc;
  const char *xn = xname ? xname : (*cfg)->x;
  const char *yn = yname ? yname : (*cfg)->y;
  rc = dd_data_load(c, data, xn, need_labels ? yn : NULL, "the data argument", ds);
  if (rc == DD_OK)
    rc = dd_data_set_lengths(c, *ds, (*cfg)->lengths, (*cfg)->pad_id, "data");
  if (rc == DD_OK)
    rc = dd__check_input(*m, *cfg, *ds, "data");
  if (rc == DD_OK)
    rc = dd__check_tokens(*m, *ds, "data");
  if (rc == DD_OK && (*ds)->ykind)
    rc = dd__check_labels(*m, *cfg, *ds, "data");
  return rc;
}
