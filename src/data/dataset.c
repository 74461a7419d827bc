/* In-memory datasets: load on rank 0 + broadcast, splits, gather, sampler. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ddtrain/data.h"
#include "h5util.h"

/* What rank 0 tells the others before the arrays follow. */
typedef struct load_header {
  int64_t n;
  dd_shape xshape, yshape;
  int ykind;
  int64_t nclasses;
  bool tokens;
  int64_t nvocab;
} load_header;

void dd_data_free(dd_dataset *ds) {
  if (!ds)
    return;
  dd_free(ds->x);
  dd_free(ds->xu8);
  dd_free(ds->yc);
  dd_free(ds->yf);
  dd_free(ds->class_names);
  dd_free(ds->lengths);
  dd_free(ds->vocab);
  dd_free(ds);
}

/* Open name in file and check it is a numeric array with N first. */
static int open_array(hid_t f, const dd_dataset *ds, const char *name, const char *role, const char *key, hid_t *dset,
                      H5T_class_t *cls, int *ndim, hsize_t *dims) {
  *dset = -1;
  if (H5Lexists(f, name, H5P_DEFAULT) <= 0) {
    char have[512];
    dd__h5_list_datasets(f, have, sizeof have);
    return dd_error(DD_EDATA,
                    "'%s' has no dataset '%s' (%s); it has: %s; set %s to "
                    "the right name",
                    ds->path, name, role, have, key);
  }
  *dset = H5Dopen2(f, name, H5P_DEFAULT);
  if (*dset < 0)
    return DD_H5_FAIL("H5Dopen", ds->path);
  hid_t t = H5Dget_type(*dset);
  *cls = H5Tget_class(t);
  const bool type_ok = dd__h5_type_ok(t);
  H5Tclose(t);
  if (*cls != H5T_INTEGER && *cls != H5T_FLOAT)
    return dd_error(DD_EDATA,
                    "'%s':%s (%s) has %s elements; it must be numeric "
                    "(float32 preferred, other numeric types are converted)",
                    ds->path, name, role, dd__h5_class_name(*cls));
  if (!type_ok)
    return dd_error(DD_EDATA,
                    "'%s':%s (%s) has a %s type of an odd size or layout; store 1, 2, 4 or 8-byte integers or IEEE "
                    "float32/float64",
                    ds->path, name, role, dd__h5_class_name(*cls));
  hid_t sp = H5Dget_space(*dset);
  *ndim = H5Sget_simple_extent_ndims(sp);
  if (*ndim >= 1 && *ndim <= DD_SHAPE_MAX + 1)
    H5Sget_simple_extent_dims(sp, dims, NULL);
  H5Sclose(sp);
  if (*ndim < 1 || *ndim > DD_SHAPE_MAX + 1)
    return dd_error(DD_EDATA,
                    "'%s':%s (%s) has %d dimensions; expected 1 to %d with "
                    "samples first",
                    ds->path, name, role, *ndim, DD_SHAPE_MAX + 1);
  return DD_OK;
}

static int read_on_root(dd_dataset *ds, const char *key, load_header *h) {
  hid_t f = -1;
  int rc = dd__h5_open_read(ds->path, key, &f);
  if (rc)
    return rc;
  hid_t dx = -1, dy = -1;
  H5T_class_t cx, cy;
  int nx, ny;
  hsize_t xd[DD_SHAPE_MAX + 1], yd[DD_SHAPE_MAX + 1];
  const bool want_y = ds->yname[0] != '\0';
  rc = open_array(f, ds, ds->xname, "features", "data.x", &dx, &cx, &nx, xd);
  if (!rc && want_y)
    rc = open_array(f, ds, ds->yname, "labels", "data.y", &dy, &cy, &ny, yd);
  if (rc)
    goto out;
  if (want_y && yd[0] != xd[0]) {
    rc = dd_error(DD_EDATA,
                  "'%s': %s has %llu samples but %s has %llu; features and "
                  "labels must have the same first dimension",
                  ds->path, ds->xname, (unsigned long long)xd[0], ds->yname, (unsigned long long)yd[0]);
    goto out;
  }
  if (xd[0] == 0) {
    rc = dd_error(DD_EDATA, "'%s':%s has no samples", ds->path, ds->xname);
    goto out;
  }
  if (want_y && ny > 2) {
    rc = dd_error(DD_EDATA,
                  "'%s':%s has %d dimensions; labels must be [N] or [N, T] "
                  "integer class ids, or [N] / [N, K] float targets",
                  ds->path, ds->yname, ny);
    goto out;
  }
  /* the shapes are the file's word: every product is checked, and a file cannot claim more than it stores
   * (a 2 KB file of never-written chunks may say 1x16x1048577x1099510579201, whose sample size wraps to 16) */
  int64_t xelems, xbytes, yelems = 0, ybytes = 0;
  rc = dd__h5_size(ds->path, ds->xname, "features", nx, xd, sizeof(float), &xelems, &xbytes);
  if (!rc && want_y)
    rc = dd__h5_size(ds->path, ds->yname, "labels", ny, yd, sizeof(int32_t), &yelems, &ybytes);
  if (!rc && (dd__h5_stored_elsewhere(dx) || (want_y && dd__h5_stored_elsewhere(dy))))
    rc = dd_error(DD_EDATA, "'%s': %s or %s keeps its data outside the file; repack it into the file with h5repack",
                  ds->path, ds->xname, want_y ? ds->yname : "");
  if (!rc)
    rc = dd__h5_check_stored(dx, ds->path, ds->xname, "features", nx, xd, xbytes);
  if (!rc && want_y)
    rc = dd__h5_check_stored(dy, ds->path, ds->yname, "labels", ny, yd, ybytes);
  if (rc)
    goto out;
  ds->n = (int64_t)xd[0];
  ds->xshape.ndim = nx > 1 ? nx - 1 : 1;
  ds->xshape.d[0] = 1;
  for (int i = 1; i < nx; i++)
    ds->xshape.d[i - 1] = (int64_t)xd[i];
  ds->xsize = xelems / ds->n;
  if (want_y) {
    ds->ykind = cy == H5T_INTEGER ? DD_LABELS_CLASS : DD_LABELS_FLOAT;
    ds->yshape.ndim = ny - 1;
    if (ny == 2)
      ds->yshape.d[0] = (int64_t)yd[1];
    ds->ysize = yelems / ds->n;
  }
  if (ds->xsize <= 0 || (want_y && ds->ysize <= 0)) {
    rc = dd_error(DD_EDATA, "'%s': %s or %s has a zero-sized dimension", ds->path, ds->xname, ds->yname);
    goto out;
  }
  rc = DD_ENOMEM;
  ds->x = dd_alloc((size_t)(ds->n * ds->xsize), sizeof(float));
  if (!ds->x)
    goto out;
  if (ds->ykind == DD_LABELS_CLASS)
    ds->yc = dd_alloc((size_t)(ds->n * ds->ysize), sizeof(int32_t));
  else if (ds->ykind == DD_LABELS_FLOAT)
    ds->yf = dd_alloc((size_t)(ds->n * ds->ysize), sizeof(float));
  if (want_y && !ds->yc && !ds->yf)
    goto out;
  if (H5Dread(dx, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, ds->x) < 0) {
    rc = DD_H5_FAIL("reading the features", ds->path);
    goto out;
  }
  if (want_y && H5Dread(dy, ds->yc ? H5T_NATIVE_INT32 : H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                        ds->yc ? (void *)ds->yc : (void *)ds->yf) < 0) {
    rc = DD_H5_FAIL("reading the labels", ds->path);
    goto out;
  }
  /* validate values: finite features, sane labels */
  int64_t total = ds->n * ds->xsize;
  for (int64_t i = 0; i < total; i++)
    if (!isfinite(ds->x[i])) {
      rc = dd_error(DD_EDATA,
                    "'%s':%s[%lld] feature %lld is %s; remove or impute "
                    "non-finite values",
                    ds->path, ds->xname, (long long)(i / ds->xsize), (long long)(i % ds->xsize),
                    isnan(ds->x[i]) ? "NaN" : "infinite");
      goto out;
    }
  int64_t ny_total = ds->n * ds->ysize;
  if (ds->yc) {
    int64_t maxc = -1;
    for (int64_t i = 0; i < ny_total; i++) {
      /* -1 marks padding in per-step labels; anything else below 0 is bad */
      if (ds->yc[i] < -1 || (ds->yc[i] == -1 && ds->ysize == 1)) {
        rc = dd_error(DD_EDATA,
                      "'%s':%s[%lld] = %d is negative; class ids must be 0..K-1"
                      "%s",
                      ds->path, ds->yname, (long long)(i / ds->ysize), ds->yc[i],
                      ds->ysize > 1 ? " (-1 marks padding steps)" : "");
        goto out;
      }
      if (ds->yc[i] > maxc)
        maxc = ds->yc[i];
    }
    ds->nclasses = maxc + 1;
  } else {
    for (int64_t i = 0; i < ny_total; i++)
      if (!isfinite(ds->yf[i])) {
        rc = dd_error(DD_EDATA, "'%s':%s[%lld] is not finite; clean the targets", ds->path, ds->yname,
                      (long long)(i / ds->ysize));
        goto out;
      }
  }
  /* the vocabulary of a `data text` file (code point of every token id) */
  ds->tokens = cx == H5T_INTEGER;
  rc = dd__h5_read_i32_vector(f, ds->path, "/vocab", "vocabulary", &ds->nvocab, &ds->vocab);
  if (rc == DD_ENOTFOUND)
    rc = DD_OK;
  if (rc)
    goto out;
  h->tokens = ds->tokens;
  h->nvocab = ds->nvocab;
  h->n = ds->n;
  h->xshape = ds->xshape;
  h->yshape = ds->yshape;
  h->ykind = ds->ykind;
  h->nclasses = ds->nclasses;
  rc = DD_OK;
out:
  if (dx >= 0)
    H5Dclose(dx);
  if (dy >= 0)
    H5Dclose(dy);
  H5Fclose(f);
  return rc;
}

int dd_data_load(dd_comm *c, const char *path, const char *xname, const char *yname, const char *key,
                 dd_dataset **out) {
  *out = NULL;
  dd_dataset *ds = dd_alloc(1, sizeof *ds);
  int rc = ds ? DD_OK : DD_ENOMEM;
  if (ds) {
    snprintf(ds->path, sizeof ds->path, "%s", path ? path : "");
    snprintf(ds->xname, sizeof ds->xname, "%s", xname);
    snprintf(ds->yname, sizeof ds->yname, "%s", yname ? yname : "");
  }
  load_header h;
  memset(&h, 0, sizeof h);
  const int root = 0;
  if (dd_comm_rank(c) == root && ds)
    rc = read_on_root(ds, key, &h);
  rc = dd_comm_bcast_status(c, rc, root);
  if (rc == DD_OK)
    rc = dd_comm_bcast(c, &h, sizeof h, root);
  if (rc == DD_OK) {
    int mine = DD_OK;
    if (!ds) {
      mine = DD_ENOMEM;
    } else if (dd_comm_rank(c) != root) {
      ds->n = h.n;
      ds->xshape = h.xshape;
      ds->xsize = dd_shape_size(h.xshape);
      ds->yshape = h.yshape;
      ds->ysize = dd_shape_size(h.yshape);
      ds->ykind = h.ykind;
      ds->nclasses = h.nclasses;
      ds->tokens = h.tokens;
      ds->nvocab = h.nvocab;
      if (ds->nvocab)
        ds->vocab = dd_alloc((size_t)ds->nvocab, sizeof(int32_t));
      ds->x = dd_alloc((size_t)(ds->n * ds->xsize), sizeof(float));
      if (ds->ykind == DD_LABELS_CLASS)
        ds->yc = dd_alloc((size_t)(ds->n * ds->ysize), sizeof(int32_t));
      else if (ds->ykind == DD_LABELS_FLOAT)
        ds->yf = dd_alloc((size_t)(ds->n * ds->ysize), sizeof(float));
      mine = ds->x && (!ds->ykind || ds->yc || ds->yf) && (!ds->nvocab || ds->vocab) ? DD_OK : DD_ENOMEM;
    }
    rc = dd_comm_agree(c, mine);
  }
  if (rc == DD_OK)
    rc = dd_comm_bcast(c, ds->x, ds->n * ds->xsize * (int64_t)sizeof(float), root);
  if (rc == DD_OK && ds->ykind)
    rc = dd_comm_bcast(c, ds->yc ? (void *)ds->yc : (void *)ds->yf, ds->n * ds->ysize * 4, root);
  if (rc == DD_OK && ds->nvocab)
    rc = dd_comm_bcast(c, ds->vocab, ds->nvocab * 4, root);
  if (rc) {
    dd_data_free(ds);
    return rc;
  }
  *out = ds;
  return DD_OK;
}

void dd_sampler_permutation(int64_t *perm, int64_t n, uint64_t seed, int64_t epoch) {
  dd_rng r;
  dd_rng_seed(&r, seed, 0x65706f6368000000ULL ^ (uint64_t)epoch /* "epoch" */);
  dd_permutation(perm, n, &r);
}

int64_t dd_sampler_batches(int64_t n, int64_t B, bool drop_last) {
  return drop_last ? n / B : (n + B - 1) / B;
}

int64_t dd_sampler_batch_size(int64_t n, int64_t B, int64_t b) {
  int64_t start = b * B;
  return n - start < B ? n - start : B;
}

void dd_sampler_shard(int64_t gsize, int P, int r, int64_t *lo, int64_t *hi) {
  int64_t base = gsize / P, extra = gsize % P;
  *lo = r * base + (r < extra ? r : extra);
  *hi = *lo + base + (r < extra ? 1 : 0);
}
