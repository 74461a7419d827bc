/* Writing HDF5 datasets atomically, and `data inspect`. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ddtrain/data.h"
#include "h5util.h"

#define DATASET_FORMAT "ddtrain-dataset"
#define DATASET_VERSION 1

int dd_data_write(const char *path, const dd_array *arrays, int narrays, const dd_attr *attrs, int nattrs) {
  dd__h5_quiet();
  int mk = dd_mkdirs_for(path, "output file");
  if (mk)
    return mk;
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
  hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (f < 0)
    return dd_error(DD_EIO, "cannot create '%s': check that the directory exists and is writable", path);
  int rc = DD_OK;
  for (int i = 0; i < narrays && rc == DD_OK; i++) {
    const dd_array *a = &arrays[i];
    hsize_t dims[DD_SHAPE_MAX + 1];
    for (int d = 0; d < a->ndim; d++)
      dims[d] = (hsize_t)a->dims[d];
    hid_t sp = H5Screate_simple(a->ndim, dims, NULL);
    hid_t ft = a->type == DD_I32 ? H5T_STD_I32LE : a->type == DD_U8 ? H5T_STD_U8LE : H5T_IEEE_F32LE;
    hid_t mt = a->type == DD_I32 ? H5T_NATIVE_INT32 : a->type == DD_U8 ? H5T_NATIVE_UINT8 : H5T_NATIVE_FLOAT;
    hid_t ds = sp < 0 ? -1 : H5Dcreate2(f, a->name, ft, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (ds < 0 || H5Dwrite(ds, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, a->data) < 0)
      rc = DD_H5_FAIL(a->name, path);
    /* compact features: the reader maps them back with x * scale + shift */
    if (rc == DD_OK && a->scale != 0.0 &&
        (dd__h5_attr_f64(ds, "scale", a->scale) < 0 || dd__h5_attr_f64(ds, "shift", a->shift) < 0))
      rc = DD_H5_FAIL("writing the scale attribute", path);
    if (ds >= 0)
      H5Dclose(ds);
    if (sp >= 0)
      H5Sclose(sp);
  }
  if (rc == DD_OK &&
      (dd__h5_attr_str(f, "format", DATASET_FORMAT) < 0 || dd__h5_attr_i64(f, "format_version", DATASET_VERSION) < 0))
    rc = DD_H5_FAIL("writing attributes", path);
  for (int i = 0; i < nattrs && rc == DD_OK; i++) {
    int e = attrs[i].text ? dd__h5_attr_str(f, attrs[i].name, attrs[i].text)
                          : dd__h5_attr_i64(f, attrs[i].name, attrs[i].value);
    if (e < 0)
      rc = DD_H5_FAIL(attrs[i].name, path);
  }
  if (H5Fclose(f) < 0 && rc == DD_OK)
    rc = DD_H5_FAIL("H5Fclose", path);
  if (rc == DD_OK)
    rc = dd__h5_commit(tmp, path);
  else
    unlink(tmp);
  return rc;
}

/* ---- incremental writer: datasets created at full size, filled by rows ---- */

struct dd_writer {
  char path[4096], tmp[4200];
  hid_t f;
  int n;
  hid_t dsets[8];
  int types[8];
};

static hid_t file_type(int t) {
  return t == DD_I32 ? H5T_STD_I32LE : t == DD_U8 ? H5T_STD_U8LE : H5T_IEEE_F32LE;
}
static hid_t mem_type(int t) {
  return t == DD_I32 ? H5T_NATIVE_INT32 : t == DD_U8 ? H5T_NATIVE_UINT8 : H5T_NATIVE_FLOAT;
}

int dd_writer_create(const char *path, const dd_array *arrays, int narrays, const dd_attr *attrs, int nattrs,
                     dd_writer **out) {
  *out = NULL;
  dd__h5_quiet();
  if (narrays > 8)
    return dd_error(DD_EINVAL, "dd_writer: at most 8 datasets");
  int rc = dd_mkdirs_for(path, "output file");
  if (rc)
    return rc;
  dd_writer *w = dd_alloc(1, sizeof *w);
  if (!w)
    return DD_ENOMEM;
  snprintf(w->path, sizeof w->path, "%s", path);
  snprintf(w->tmp, sizeof w->tmp, "%s.tmp.%d", path, (int)getpid());
  w->f = H5Fcreate(w->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (w->f < 0) {
    dd_free(w);
    return dd_error(DD_EIO, "cannot create '%s': check that the directory exists and is writable", path);
  }
  for (int i = 0; i < narrays && rc == DD_OK; i++) {
    const dd_array *a = &arrays[i];
    hsize_t dims[DD_SHAPE_MAX + 1];
    for (int d = 0; d < a->ndim; d++)
      dims[d] = (hsize_t)a->dims[d];
    hid_t sp = H5Screate_simple(a->ndim, dims, NULL);
    w->dsets[i] =
        sp < 0 ? -1 : H5Dcreate2(w->f, a->name, file_type(a->type), sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    w->types[i] = a->type;
    w->n = i + 1;
    if (w->dsets[i] < 0)
      rc = DD_H5_FAIL(a->name, path);
    if (sp >= 0)
      H5Sclose(sp);
  }
  if (rc == DD_OK && (dd__h5_attr_str(w->f, "format", DATASET_FORMAT) < 0 ||
                      dd__h5_attr_i64(w->f, "format_version", DATASET_VERSION) < 0))
    rc = DD_H5_FAIL("writing attributes", path);
  for (int i = 0; i < nattrs && rc == DD_OK; i++) {
    int e = attrs[i].text ? dd__h5_attr_str(w->f, attrs[i].name, attrs[i].text)
                          : dd__h5_attr_i64(w->f, attrs[i].name, attrs[i].value);
    if (e < 0)
      rc = DD_H5_FAIL(attrs[i].name, path);
  }
  if (rc) {
    dd_writer_abort(w);
    return rc;
  }
  *out = w;
  return DD_OK;
}

int dd_writer_rows(dd_writer *w, int i, int64_t row0, int64_t nrows, const void *data) {
  if (nrows <= 0)
    return DD_OK;
  hid_t fsp = H5Dget_space(w->dsets[i]);
  int nd = H5Sget_simple_extent_ndims(fsp);
  hsize_t dims[DD_SHAPE_MAX + 1], start[DD_SHAPE_MAX + 1] = {0}, count[DD_SHAPE_MAX + 1];
  H5Sget_simple_extent_dims(fsp, dims, NULL);
  start[0] = (hsize_t)row0;
  count[0] = (hsize_t)nrows;
  for (int d = 1; d < nd; d++)
    count[d] = dims[d];
  hid_t msp = H5Screate_simple(nd, count, NULL);
  int rc = H5Sselect_hyperslab(fsp, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
                   H5Dwrite(w->dsets[i], mem_type(w->types[i]), msp, fsp, H5P_DEFAULT, data) < 0
               ? DD_H5_FAIL("writing rows", w->path)
               : DD_OK;
  H5Sclose(msp);
  H5Sclose(fsp);
  return rc;
}

static int writer_close(dd_writer *w) {
  int rc = DD_OK;
  for (int i = 0; i < w->n; i++)
    if (w->dsets[i] >= 0)
      H5Dclose(w->dsets[i]);
  if (H5Fclose(w->f) < 0)
    rc = DD_H5_FAIL("H5Fclose", w->path);
  return rc;
}

int dd_writer_commit(dd_writer *w) {
  int rc = writer_close(w);
  if (rc == DD_OK)
    rc = dd__h5_commit(w->tmp, w->path);
  else
    unlink(w->tmp);
  dd_free(w);
  return rc;
}

void dd_writer_abort(dd_writer *w) {
  if (!w)
    return;
  writer_close(w);
  unlink(w->tmp);
  dd_free(w);
}

int dd_data_save(const dd_dataset *ds, const char *path, const char *origin) {
  dd_array a[4];
  memset(a, 0, sizeof a);
  int na = 2;
  a[0].name = "/x";
  a[0].type = DD_F32;
  a[0].ndim = 1 + ds->xshape.ndim;
  a[0].dims[0] = ds->n;
  for (int i = 0; i < ds->xshape.ndim; i++)
    a[0].dims[i + 1] = ds->xshape.d[i];
  a[0].data = ds->x;
  if (ds->xu8) { /* 8-bit features (images) with their map to floats */
    a[0].type = DD_U8;
    a[0].data = ds->xu8;
    a[0].scale = ds->xscale;
    a[0].shift = ds->xshift;
  }
  int32_t *ids = NULL;
  if (ds->tokens) { /* token ids go back to the file as integers */
    ids = dd_alloc((size_t)(ds->n * ds->xsize), sizeof(int32_t));
    if (!ids)
      return DD_ENOMEM;
    for (int64_t i = 0; i < ds->n * ds->xsize; i++)
      ids[i] = (int32_t)ds->x[i];
    a[0].type = DD_I32;
    a[0].data = ids;
  }
  a[1].name = "/y";
  a[1].type = ds->ykind == DD_LABELS_CLASS ? DD_I32 : DD_F32;
  a[1].ndim = 1 + ds->yshape.ndim;
  a[1].dims[0] = ds->n;
  for (int i = 0; i < ds->yshape.ndim; i++)
    a[1].dims[i + 1] = ds->yshape.d[i];
  a[1].data = ds->yc ? (const void *)ds->yc : (const void *)ds->yf;
  if (ds->lengths)
    a[na++] = (dd_array){.name = "/lengths", .type = DD_I32, .ndim = 1, .dims = {ds->n}, .data = ds->lengths};
  if (ds->vocab)
    a[na++] = (dd_array){.name = "/vocab", .type = DD_I32, .ndim = 1, .dims = {ds->nvocab}, .data = ds->vocab};
  dd_attr at[3];
  int nat = 0;
  at[nat++] = (dd_attr){"origin", origin ? origin : "ddtrain", 0};
  if (ds->ykind == DD_LABELS_CLASS)
    at[nat++] = (dd_attr){"num_classes", NULL, ds->nclasses};
  if (ds->class_names)
    at[nat++] = (dd_attr){"class_names", ds->class_names, 0};
  int rc = dd_data_write(path, a, na, at, nat);
  dd_free(ids);
  return rc;
}

/* ---- inspect ----------------------------------------------------------- */

typedef struct inspect_ctx {
  FILE *out;
  const char *path;
  int count;
} inspect_ctx;

static void type_name(hid_t t, char *buf, size_t n) {
  H5T_class_t c = H5Tget_class(t);
  size_t sz = H5Tget_size(t);
  if (c == H5T_INTEGER)
    snprintf(buf, n, "%sint%zu", H5Tget_sign(t) == H5T_SGN_NONE ? "u" : "", 8 * sz);
  else if (c == H5T_FLOAT)
    snprintf(buf, n, "float%zu", 8 * sz);
  else
    snprintf(buf, n, "%s", dd__h5_class_name(c));
}

static void print_attrs(FILE *out, hid_t obj, const char *indent) {
  dd_h5o_info oi;
  if (dd_h5o_info(obj, &oi, H5O_INFO_NUM_ATTRS) < 0)
    return;
  /* every attribute message decodes (a look-up by a name no attribute has reads them all), before
   * HDF5 builds its table of them: HDF5 1.10 crashes releasing a table it failed to build */
  if (oi.num_attrs > 0 && H5Aexists(obj, "\001ddtrain: no such attribute") < 0) {
    H5Eclear2(H5E_DEFAULT);
    fprintf(out, "%s(%llu attributes not read: their header messages are damaged)\n", indent,
            (unsigned long long)oi.num_attrs);
    return;
  }
  for (hsize_t i = 0; i < oi.num_attrs; i++) {
    char name[128], sval[160];
    if (H5Aget_name_by_idx(obj, ".", H5_INDEX_NAME, H5_ITER_INC, i, name, sizeof name, H5P_DEFAULT) < 0)
      continue;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0)
      continue;
    hid_t t = H5Aget_type(a);
    H5T_class_t c = H5Tget_class(t);
    H5Tclose(t);
    H5Aclose(a);
    int64_t iv;
    double dv;
    if (c == H5T_STRING && dd__h5_read_attr_str(obj, name, sval, sizeof sval) == 0) {
      char *nl = strchr(sval, '\n');
      if (nl)
        strcpy(nl, " ...");
      fprintf(out, "%s@%s = \"%s\"\n", indent, name, sval);
    } else if (c == H5T_INTEGER && dd__h5_read_attr_i64(obj, name, &iv) == 0) {
      fprintf(out, "%s@%s = %lld\n", indent, name, (long long)iv);
    } else if (c == H5T_FLOAT && dd__h5_read_attr_f64(obj, name, &dv) == 0) {
      fprintf(out, "%s@%s = %.9g\n", indent, name, dv);
    }
  }
  H5Eclear2(H5E_DEFAULT);
}

/* How a dataset is stored: layout, chunks and filters (what the streaming reader meets). */
static void print_storage(FILE *out, hid_t ds, int nd) {
  hid_t dcpl = H5Dget_create_plist(ds);
  if (dcpl < 0)
    return;
  H5D_layout_t l = H5Pget_layout(dcpl);
  if (l == H5D_CHUNKED && nd > 0 && nd <= 32) {
    hsize_t cd[32];
    H5Pget_chunk(dcpl, nd, cd);
    fprintf(out, "      storage: chunked");
    for (int i = 0; i < nd; i++)
      fprintf(out, "%s%llu", i ? " x " : " ", (unsigned long long)cd[i]);
    int nf = H5Pget_nfilters(dcpl);
    for (int i = 0; i < nf; i++) {
      unsigned flags, cdv[8];
      size_t ncd = 8;
      char fname[64] = "";
      H5Z_filter_t id = H5Pget_filter2(dcpl, (unsigned)i, &flags, &ncd, cdv, sizeof fname, fname, NULL);
      if (id == H5Z_FILTER_DEFLATE)
        fprintf(out, ", gzip %u", ncd > 0 ? cdv[0] : 0);
      else if (id == H5Z_FILTER_SHUFFLE)
        fprintf(out, ", shuffle");
      else if (id == H5Z_FILTER_FLETCHER32)
        fprintf(out, ", fletcher32");
      else
        fprintf(out, ", filter %d (%s: ddtrain cannot read it)", (int)id, fname[0] ? fname : "?");
    }
    fprintf(out, "\n");
  } else {
    fprintf(out, "      storage: %s\n", l == H5D_CONTIGUOUS ? "contiguous" : l == H5D_COMPACT ? "compact" : "other");
  }
  H5Pclose(dcpl);
}

/* Statistics over the values, read a slab of rows at a time (any size of file). */
static void describe_values(FILE *out, hid_t ds, H5T_class_t c, int nd, const hsize_t *dims, hsize_t total,
                            bool labels) {
  if (total == 0 || nd < 1)
    return;
  hsize_t row = total / dims[0], rows = ((hsize_t)1 << 20) / (row ? row : 1) + 1;
  if (rows > dims[0])
    rows = dims[0];
  double *v = dd_alloc((size_t)(rows * row), sizeof(double));
  if (!v)
    return;
  hid_t fsp = H5Dget_space(ds);
  int64_t *counts = dd_alloc(1002, sizeof(int64_t)); /* ids -1..1000 */
  double lo = INFINITY, hi = -INFINITY, sum = 0.0, sq = 0.0;
  hsize_t bad = 0, seen = 0;
  bool ok = counts != NULL;
  for (hsize_t r0 = 0; ok && r0 < dims[0]; r0 += rows) {
    hsize_t start[32] = {r0}, count[32];
    count[0] = r0 + rows <= dims[0] ? rows : dims[0] - r0;
    for (int d = 1; d < nd; d++)
      count[d] = dims[d];
    hsize_t n = count[0] * row;
    hid_t msp = H5Screate_simple(1, &n, NULL);
    ok = H5Sselect_hyperslab(fsp, H5S_SELECT_SET, start, NULL, count, NULL) >= 0 &&
         H5Dread(ds, H5T_NATIVE_DOUBLE, msp, fsp, H5P_DEFAULT, v) >= 0;
    H5Sclose(msp);
    for (hsize_t i = 0; ok && i < n; i++) {
      if (!isfinite(v[i])) {
        bad++;
        continue;
      }
      lo = v[i] < lo ? v[i] : lo;
      hi = v[i] > hi ? v[i] : hi;
      sum += v[i];
      sq += v[i] * v[i];
      seen++;
      if (c == H5T_INTEGER && v[i] >= -1 && v[i] <= 1000)
        counts[(int64_t)v[i] + 1]++;
    }
  }
  H5Sclose(fsp);
  H5Eclear2(H5E_DEFAULT);
  if (ok && c == H5T_INTEGER && seen) {
    const int64_t ilo = (int64_t)lo, ihi = (int64_t)hi;
    fprintf(out, "      values %lld..%lld\n", (long long)ilo, (long long)ihi);
    if (labels && ilo >= -1 && ihi < 1000) {
      fprintf(out, "      label counts:");
      int shown = 0;
      for (int64_t k = ilo; k <= ihi; k++) {
        if (shown++ == 40) {
          fprintf(out, " ...");
          break;
        }
        fprintf(out, " %lld:%lld", (long long)k, (long long)counts[k + 1]);
      }
      fprintf(out, "\n");
    }
  } else if (ok && c == H5T_FLOAT) {
    double n = (double)seen, mean = n > 0 ? sum / n : 0.0;
    fprintf(out, "      min %.6g  max %.6g  mean %.6g  std %.6g", lo, hi, mean,
            n > 0 ? sqrt(fmax(sq / n - mean * mean, 0.0)) : 0.0);
    if (bad)
      fprintf(out, "  NON-FINITE: %llu", (unsigned long long)bad);
    fprintf(out, "\n");
  }
  dd_free(counts);
  dd_free(v);
}

/* A `data text` vocabulary: the characters of the token ids, in id order. */
static void print_vocab(FILE *out, hid_t ds, hsize_t total) {
  if (total == 0 || total > ((hsize_t)1 << 24))
    return;
  int32_t *v = dd_alloc((size_t)total, sizeof(int32_t));
  if (v && H5Dread(ds, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0) {
    fprintf(out, "      vocabulary (%llu characters, id: character):", (unsigned long long)total);
    for (hsize_t i = 0; i < total; i++) {
      char c[16];
      dd_char_label(v[i], c, sizeof c);
      if (i % 16 == 0)
        fprintf(out, "\n       ");
      fprintf(out, " %llu:%s", (unsigned long long)i, c);
    }
    fprintf(out, "\n");
  }
  dd_free(v);
}

static herr_t visit(hid_t obj, const char *name, const dd_h5o_info *info, void *data) {
  inspect_ctx *ctx = data;
  if (info->type != H5O_TYPE_DATASET)
    return 0;
  hid_t ds = H5Dopen2(obj, name, H5P_DEFAULT);
  if (ds < 0)
    return 0;
  hid_t t = H5Dget_type(ds), sp = H5Dget_space(ds);
  int nd = H5Sget_simple_extent_ndims(sp);
  hsize_t dims[32];
  char shape[256] = "", tn[32];
  hsize_t total = 1;
  /* the values are read only if the shape's size is countable and the file stores that much */
  const char *unread = NULL;
  if (nd > 0 && nd <= 32) {
    H5Sget_simple_extent_dims(sp, dims, NULL);
    int used = 0;
    for (int i = 0; i < nd && used < (int)sizeof shape; i++)
      used +=
          snprintf(shape + used, sizeof shape - (size_t)used, "%s%llu", i ? " x " : "", (unsigned long long)dims[i]);
    int64_t elems = 0, bytes = 0;
    dd_error_clear();
    if (dd__h5_stored_elsewhere(ds))
      unread = "the data is kept outside the file (external or virtual storage)";
    else if ((H5Tget_class(t) == H5T_INTEGER || H5Tget_class(t) == H5T_FLOAT) && !dd__h5_type_ok(t))
      unread = "its number type has an odd size or layout (not 1, 2, 4 or 8-byte integers, IEEE float32/float64)";
    else if (dd__h5_size(ctx->path, name, "data inspect", nd, dims, (int64_t)H5Tget_size(t), &elems, &bytes) ||
             dd__h5_check_stored(ds, ctx->path, name, "data inspect", nd, dims, bytes))
      unread = dd_error_message();
    total = (hsize_t)elems;
  } else {
    snprintf(shape, sizeof shape, "scalar");
  }
  type_name(t, tn, sizeof tn);
  fprintf(ctx->out, "  /%-28s %-24s %s\n", name, shape, tn);
  print_storage(ctx->out, ds, nd);
  if (unread) {
    fprintf(ctx->out, "      values not read: %s\n", unread);
    dd_error_clear();
    total = 0;
  }
  double scale = 1.0, shift = 0.0;
  bool has_scale = dd__h5_read_attr_f64(ds, "scale", &scale) == 0,
       has_shift = dd__h5_read_attr_f64(ds, "shift", &shift) == 0;
  H5Eclear2(H5E_DEFAULT);
  if (has_scale || has_shift)
    fprintf(ctx->out, "      read for training as x * %.9g + %.9g (its scale/shift attributes)\n", scale, shift);
  if (strcmp(name, "vocab") == 0 && nd == 1 && H5Tget_class(t) == H5T_INTEGER)
    print_vocab(ctx->out, ds, total);
  else if (H5Tget_class(t) == H5T_INTEGER || H5Tget_class(t) == H5T_FLOAT)
    describe_values(ctx->out, ds, H5Tget_class(t), nd, dims, total, nd <= 2 && !has_scale && !has_shift);
  print_attrs(ctx->out, ds, "      ");
  H5Tclose(t);
  H5Sclose(sp);
  H5Dclose(ds);
  ctx->count++;
  return 0;
}

int dd_data_inspect(const char *path, FILE *out) {
  hid_t f = -1;
  int rc = dd__h5_open_read(path, "the file argument", &f);
  if (rc)
    return rc;
  fprintf(out, "%s\n", path);
  print_attrs(out, f, "  ");
  inspect_ctx ctx = {out, path, 0};
  if (dd_h5o_visit(f, visit, &ctx, H5O_INFO_BASIC) < 0)
    rc = DD_H5_FAIL("walking the file", path);
  if (ctx.count == 0)
    fprintf(out, "  (no datasets)\n");
  H5Fclose(f);
  return rc;
}
