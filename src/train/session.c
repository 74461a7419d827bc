/* Shared by train/eval/predict: shape and label checks, parallel evaluation. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ddtrain/comm.h"
#include "session.h"

int dd__input_shape(const dd_config *cfg, const dd_source_info *ds, dd_shape *s) {
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

int dd__check_input(const dd_model *m, const dd_source_info *ds, const char *role) {
  if (ds->xsize != m->in_size) {
    char a[64], b[64];
    return dd_error(DD_EDATA, "%s '%s':%s has %s = %lld features per sample, the model expects %s = %lld", role,
                    ds->path, ds->xname, dd_shape_str(ds->xshape, a, sizeof a), (long long)ds->xsize,
                    dd_shape_str(m->input, b, sizeof b), (long long)m->in_size);
  }
  return DD_OK;
}

int dd__check_labels(dd_comm *c, const dd_model *m, dd_source *src, const char *role) {
  const dd_source_info *ds = dd_source_get_info(src);
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
      int64_t row, value;
      int rc = dd_source_find_label(c, src, m->classes, &row, &value);
      if (rc)
        return rc;
      return dd_error(DD_EDATA,
                      "%s '%s':%s[%lld] = %lld is out of range for the model's %lld output classes; "
                      "set the last layer's units to at least %lld (model.layers.%d.units) or fix the labels",
                      role, ds->path, ds->yname, (long long)row, (long long)value, (long long)m->classes,
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
  return DD_OK;
}

int dd__check_tokens(dd_comm *c, const dd_model *m, dd_source *src, const char *role) {
  const dd_layer *l = &m->layers[0];
  if (strcmp(l->kind->name, "embedding") != 0)
    return DD_OK;
  return dd_source_check_tokens(c, src, l->spec.vocab, role);
}

int dd__evaluate(dd_comm *c, dd_model *m, dd_source *src, const dd_split *s, void *ybuf, int64_t *rows, float *out,
                 dd_loss_sums *sums) {
  int64_t lo, hi;
  dd_sampler_shard(s->n, dd_comm_size(c), dd_comm_rank(c), &lo, &hi);
  dd_loss_sums local = {0};
  const bool has_y = ybuf != NULL;
  const bool has_len = dd_source_get_info(src)->lengths;
  /* sequence lengths: once per evaluation, not per batch */
  int32_t *len = has_len ? dd_alloc((size_t)m->max_batch, sizeof(int32_t)) : NULL;
  int rc = has_len && !len ? DD_ENOMEM : DD_OK;
  for (int64_t start = lo; rc == DD_OK && start < hi; start += m->max_batch) {
    int n = (int)(hi - start < m->max_batch ? hi - start : m->max_batch);
    for (int i = 0; i < n; i++)
      rows[i] = dd_split_row(s, start + i);
    rc = dd_source_read(src, rows, n, m->acts[0], has_y ? ybuf : NULL, len);
    if (rc == DD_OK && dd_fault("evalread", dd_comm_rank(c), 0)) /* test only: one rank's read fails */
      rc = dd_error(DD_EIO, "reading validation samples on rank %d failed: Input/output error (injected)",
                    dd_comm_rank(c));
    dd_pass p = {.B = n, .B_global = s->n, .sample0 = start, .train = false, .lengths = len};
    if (rc == DD_OK)
      rc = dd_model_forward(m, &p);
    if (rc == DD_OK && has_y)
      dd_model_loss(m, &p, ybuf, false, &local);
    if (rc == DD_OK && out)
      memcpy(out + (start - lo) * m->out_size, m->acts[m->nlayers], sizeof(float) * (size_t)((int64_t)n * m->out_size));
  }
  dd_free(len);
  /* every rank reaches the allreduce, a failed one too: no rank waits alone */
  double v[4] = {local.loss, local.count, local.correct, rc ? 1.0 : 0.0};
  int crc = dd_comm_allreduce_f64(c, v, 4);
  if (crc)
    return crc;
  if (v[3] > 0)
    return dd_comm_agree(c, rc);
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
                              bool need_labels, dd_config **cfg, dd_source **src, dd_model **m) {
  *src = NULL;
  int rc = dd_model_from_checkpoint(c, ckpt, 256, cfg, m);
  if (rc)
    return rc;
  dd_source_spec spec = {.path = data,
                         .xname = xname ? xname : (*cfg)->x,
                         .yname = need_labels ? (yname ? yname : (*cfg)->y) : NULL,
                         .lengths = (*cfg)->lengths,
                         .pad_id = (*cfg)->pad_id,
                         .map = !isnan((*cfg)->scale) || !isnan((*cfg)->shift),
                         .scale = isnan((*cfg)->scale) ? 1.0 : (*cfg)->scale,
                         .shift = isnan((*cfg)->shift) ? 0.0 : (*cfg)->shift,
                         .key = "the data argument"};
  rc = dd_source_open(c, &spec, src);
  if (rc == DD_OK)
    rc = dd__check_input(*m, dd_source_get_info(*src), "data");
  if (rc == DD_OK)
    rc = dd__check_tokens(c, *m, *src, "data");
  if (rc == DD_OK && dd_source_get_info(*src)->ykind)
    rc = dd__check_labels(c, *m, *src, "data");
  return rc;
}
