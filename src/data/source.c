/* Reading a dataset for training and evaluation: the source seam (rows in, batches out) and the splits. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ddtrain/data.h"

struct dd_source {
  dd_source_info info;
  dd_dataset *ds; /* this backend: the whole dataset on every rank */
  int64_t vocab;  /* token ids must be < vocab (0: not checked) */
};

int dd_source_open(dd_comm *c, const dd_source_spec *spec, dd_source **out) {
  *out = NULL;
  dd_source *s = dd_alloc(1, sizeof *s);
  int rc = dd_comm_agree(c, s ? DD_OK : DD_ENOMEM);
  if (rc) {
    dd_free(s);
    return rc;
  }
  rc = dd_data_load(c, spec->path, spec->xname, spec->yname, spec->key, &s->ds);
  if (rc == DD_OK)
    rc = dd_data_set_lengths(c, s->ds, spec->lengths, spec->pad_id, spec->key);
  if (rc) {
    dd_source_close(s);
    return rc;
  }
  const dd_dataset *ds = s->ds;
  dd_source_info *i = &s->info;
  snprintf(i->path, sizeof i->path, "%s", ds->path);
  snprintf(i->xname, sizeof i->xname, "%s", ds->xname);
  snprintf(i->yname, sizeof i->yname, "%s", ds->yname);
  i->n = ds->n;
  i->xshape = ds->xshape;
  i->xsize = ds->xsize;
  i->ykind = ds->ykind;
  i->yshape = ds->yshape;
  i->ysize = ds->ysize;
  i->nclasses = ds->nclasses;
  i->tokens = ds->tokens;
  i->lengths = ds->lengths != NULL;
  i->vocab = ds->vocab;
  i->nvocab = ds->nvocab;
  *out = s;
  return DD_OK;
}

void dd_source_close(dd_source *s) {
  if (!s)
    return;
  dd_data_free(s->ds);
  dd_free(s);
}

const dd_source_info *dd_source_get_info(const dd_source *s) {
  return &s->info;
}

size_t dd_source_label_bytes(const dd_source *s) {
  return 4 * (size_t)s->info.ysize;
}

int dd_source_read(dd_source *s, const int64_t *rows, int n, float *x, void *y, int32_t *len) {
  const dd_dataset *ds = s->ds;
  const size_t xb = sizeof(float) * (size_t)ds->xsize, yb = 4 * (size_t)ds->ysize;
  const char *ysrc = ds->yc ? (const char *)ds->yc : (const char *)ds->yf;
  for (int i = 0; i < n; i++) {
    const int64_t row = rows[i];
    memcpy(x + (int64_t)i * ds->xsize, ds->x + row * ds->xsize, xb);
    if (y && ysrc)
      memcpy((char *)y + (size_t)i * yb, ysrc + (size_t)row * yb, yb);
    if (len && ds->lengths)
      len[i] = ds->lengths[row];
  }
  return DD_OK;
}

int dd_source_find_label(dd_comm *c, dd_source *s, int64_t atleast, int64_t *row, int64_t *value) {
  (void)c;
  const dd_dataset *ds = s->ds;
  *row = -1;
  *value = 0;
  if (!ds->yc)
    return DD_OK;
  for (int64_t i = 0; i < ds->n * ds->ysize; i++)
    if (ds->yc[i] >= atleast) {
      *row = i / ds->ysize;
      *value = ds->yc[i];
      break;
    }
  return DD_OK;
}

int dd_source_check_tokens(dd_comm *c, dd_source *s, int64_t V, const char *role) {
  (void)c;
  const dd_dataset *ds = s->ds;
  const int64_t T = ds->xsize;
  int64_t bad = -1, maxid = -1;
  s->vocab = V;
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

/* ---- splits: positions of a split -> rows of the source ---- */

void dd_split_all(int64_t n, dd_split *s) {
  memset(s, 0, sizeof *s);
  s->n = n;
}

int dd_split_holdout(int64_t n, double frac, uint64_t seed, dd_split *train, dd_split *val) {
  memset(train, 0, sizeof *train);
  memset(val, 0, sizeof *val);
  int64_t nval = (int64_t)llround(frac * (double)n);
  if (nval < 1 || nval >= n)
    return dd_error(DD_ECONFIG,
                    "data.val_fraction = %g of %lld samples leaves %lld for "
                    "validation and %lld for training; both need at least one",
                    frac, (long long)n, (long long)nval, (long long)(n - nval));
  int64_t *perm = dd_alloc((size_t)n, sizeof(int64_t));
  unsigned char *is_val = dd_alloc((size_t)n, 1);
  train->rows = dd_alloc((size_t)(n - nval), sizeof(int64_t));
  val->rows = dd_alloc((size_t)nval, sizeof(int64_t));
  int rc = perm && is_val && train->rows && val->rows ? DD_OK : DD_ENOMEM;
  if (rc == DD_OK) {
    dd_rng r;
    dd_rng_seed(&r, seed, 0x73706c6974ULL /* "split" */);
    dd_permutation(perm, n, &r);
    for (int64_t i = 0; i < nval; i++)
      is_val[perm[i]] = 1;
    int64_t a = 0, b = 0;
    for (int64_t i = 0; i < n; i++) {
      if (is_val[i])
        val->rows[b++] = i;
      else
        train->rows[a++] = i;
    }
    train->n = a;
    val->n = b;
  } else {
    dd_split_free(train);
    dd_split_free(val);
  }
  dd_free(perm);
  dd_free(is_val);
  return rc;
}

int64_t dd_split_row(const dd_split *s, int64_t pos) {
  return s->rows ? s->rows[pos] : pos;
}

void dd_split_free(dd_split *s) {
  if (!s)
    return;
  dd_free(s->rows);
  s->rows = NULL;
  s->n = 0;
}
