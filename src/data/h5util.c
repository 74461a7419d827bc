/* HDF5 plumbing for data and checkpoint: quiet errors, messages, atomic commit. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ddtrain/core.h"
#include "ddtrain/data.h"
#include "h5util.h"

void dd__h5_quiet(void) {
  static int done;
  if (!done) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    done = 1;
  }
}

int64_t dd_data_open_objects(void) {
  ssize_t n = H5Fget_obj_count((hid_t)H5F_OBJ_ALL, H5F_OBJ_ALL);
  return n < 0 ? 0 : (int64_t)n;
}

enum { H5_DESC_MAX = 160 }; /* HDF5's own text in our one-line message, at most */

/* HDF5's innermost message, on one line: whitespace runs become one space,
 * and a long one is cut at a word boundary with "..." (never mid-word). */
static herr_t innermost(unsigned n, const H5E_error2_t *e, void *data) {
  if (n != 0 || !e->desc)
    return 0;
  char *out = data;
  size_t used = 0, last_space = 0;
  bool cut = false;
  for (const char *p = e->desc; *p; p++) {
    bool ws = *p == ' ' || *p == '\t' || *p == '\n' || *p == '\r';
    if (ws && (used == 0 || out[used - 1] == ' '))
      continue;
    if (used >= H5_DESC_MAX) {
      cut = true;
      break;
    }
    if (ws)
      last_space = used;
    out[used++] = ws ? ' ' : *p;
  }
  if (cut && last_space > 0)
    used = last_space;
  while (used > 0 && out[used - 1] == ' ')
    used--;
  out[used] = '\0';
  if (cut)
    strcat(out, " ...");
  return 0;
}

int dd__h5_fail(const char *what, const char *path, const char *file, int line) {
  char desc[H5_DESC_MAX + 8] = "";
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, innermost, desc);
  H5Eclear2(H5E_DEFAULT);
  const char *base = strrchr(file, '/'); /* the source file, not the build machine's path */
  return dd_error(DD_EHDF5, "%s: %s failed%s%s (%s:%d)", path, what, desc[0] ? ": " : "", desc, base ? base + 1 : file,
                  line);
}

int dd__h5_check_readable(const char *path, const char *key) {
  dd__h5_quiet();
  struct stat st;
  if (!path || !*path)
    return dd_error(DD_EINVAL, "%s is empty; give the path of an HDF5 file", key);
  if (stat(path, &st) != 0)
    return dd_error(DD_EIO, "cannot open '%s' (%s): %s; check the path", path, key, strerror(errno));
  if (S_ISDIR(st.st_mode))
    return dd_error(DD_EIO, "'%s' (%s) is a directory; give the path of an HDF5 file", path, key);
  /* a FIFO, socket or device would block or never end: only regular files are data */
  if (!S_ISREG(st.st_mode))
    return dd_error(DD_EIO, "'%s' (%s) is not a regular file (a pipe, socket or device); give the path of an HDF5 file",
                    path, key);
  if (access(path, R_OK) != 0)
    return dd_error(DD_EIO, "cannot read '%s' (%s): %s; check its permissions", path, key, strerror(errno));
  htri_t is = H5Fis_hdf5(path);
  if (is <= 0)
    return dd_error(DD_EDATA,
                    "'%s' (%s) is not an HDF5 file; convert CSV or MNIST IDX "
                    "files with 'ddtrain data import'",
                    path, key);
  return DD_OK;
}

int dd__h5_open_read(const char *path, const char *key, hid_t *f) {
  int rc = dd__h5_check_readable(path, key);
  if (rc)
    return rc;
  *f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  return *f < 0 ? DD_H5_FAIL("H5Fopen", path) : DD_OK;
}

static herr_t list_one(hid_t g, const char *name, const dd_h5l_info *info, void *data) {
  (void)info;
  char *buf = ((char **)data)[0];
  int n = *(int *)((char **)data)[1];
  dd_h5o_info oi;
  if (dd_h5o_info_by_name(g, name, &oi, H5O_INFO_BASIC) < 0 || oi.type != H5O_TYPE_DATASET)
    return 0;
  size_t used = strlen(buf);
  snprintf(buf + used, (size_t)n - used, "%s/%s", used ? ", " : "", name);
  return 0;
}

void dd__h5_list_datasets(hid_t file, char *buf, int n) {
  buf[0] = '\0';
  void *data[2] = {buf, &n};
  dd_h5l_iterate(file, list_one, data);
  if (!buf[0])
    snprintf(buf, (size_t)n, "(none)");
}

const char *dd__h5_class_name(H5T_class_t c) {
  switch (c) {
  case H5T_INTEGER:
    return "integer";
  case H5T_FLOAT:
    return "float";
  case H5T_STRING:
    return "string";
  case H5T_COMPOUND:
    return "compound";
  case H5T_ENUM:
    return "enum";
  case H5T_ARRAY:
    return "array";
  case H5T_BITFIELD:
    return "bitfield";
  case H5T_OPAQUE:
    return "opaque";
  case H5T_REFERENCE:
    return "reference";
  case H5T_VLEN:
    return "variable-length";
  default:
    return "unknown";
  }
}

static int fsync_path(const char *path, int flags) {
  int fd = open(path, flags);
  if (fd < 0)
    return -1;
  int rc = fsync(fd);
  close(fd);
  return rc;
}

int dd__h5_commit(const char *tmp, const char *path) {
  if (fsync_path(tmp, O_RDONLY) != 0)
    return dd_error(DD_EIO, "fsync of '%s' failed: %s", tmp, strerror(errno));
  if (rename(tmp, path) != 0) {
    int e = errno;
    unlink(tmp);
    return dd_error(DD_EIO, "cannot rename '%s' to '%s': %s", tmp, path, strerror(e));
  }
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", path);
  /* best effort: some filesystems refuse fsync on directories */
  fsync_path(dirname(dir), O_RDONLY | O_DIRECTORY);
  return DD_OK;
}

int dd__h5_attr_str(hid_t obj, const char *name, const char *value) {
  int rc = -1;
  hid_t t = H5Tcopy(H5T_C_S1), s = -1, a = -1;
  if (t < 0)
    return -1;
  if (H5Tset_size(t, strlen(value) + 1) < 0 || H5Tset_strpad(t, H5T_STR_NULLTERM) < 0)
    goto out;
  s = H5Screate(H5S_SCALAR);
  if (s < 0)
    goto out;
  a = H5Acreate2(obj, name, t, s, H5P_DEFAULT, H5P_DEFAULT);
  if (a < 0)
    goto out;
  rc = H5Awrite(a, t, value) < 0 ? -1 : 0;
out:
  if (a >= 0)
    H5Aclose(a);
  if (s >= 0)
    H5Sclose(s);
  H5Tclose(t);
  return rc;
}

int dd__h5_attr_i64(hid_t obj, const char *name, int64_t value) {
  hid_t s = H5Screate(H5S_SCALAR);
  if (s < 0)
    return -1;
  hid_t a = H5Acreate2(obj, name, H5T_STD_I64LE, s, H5P_DEFAULT, H5P_DEFAULT);
  int rc = -1;
  if (a >= 0) {
    rc = H5Awrite(a, H5T_NATIVE_INT64, &value) < 0 ? -1 : 0;
    H5Aclose(a);
  }
  H5Sclose(s);
  return rc;
}

bool dd__h5_type_ok(hid_t t) {
  switch (H5Tget_class(t)) {
  case H5T_INTEGER: {
    /* a crafted 0-byte integer type, or precision and offset past its size, make HDF5 1.10's
     * conversions read outside their buffers (H5T__bit_copy) */
    const size_t size = H5Tget_size(t), prec = H5Tget_precision(t);
    const int off = H5Tget_offset(t);
    const H5T_order_t o = H5Tget_order(t);
    return (size == 1 || size == 2 || size == 4 || size == 8) && prec >= 1 && off >= 0 &&
           (size_t)off + prec <= 8 * size && (o == H5T_ORDER_LE || o == H5T_ORDER_BE);
  }
  case H5T_FLOAT:
    return H5Tequal(t, H5T_IEEE_F32LE) > 0 || H5Tequal(t, H5T_IEEE_F32BE) > 0 || H5Tequal(t, H5T_IEEE_F64LE) > 0 ||
           H5Tequal(t, H5T_IEEE_F64BE) > 0;
  case H5T_STRING:
    return H5Tis_variable_str(t) > 0 || H5Tget_size(t) >= 1;
  default:
    return false;
  }
}

hid_t dd__h5_attr_open(hid_t obj, const char *name, int64_t max_points, int64_t *points) {
  if (H5Aexists(obj, name) <= 0) {
    H5Eclear2(H5E_DEFAULT);
    return -1;
  }
  hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
  if (a < 0) {
    H5Eclear2(H5E_DEFAULT);
    return -1;
  }
  hid_t sp = H5Aget_space(a), t = H5Aget_type(a);
  const hssize_t n = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
  const bool ok = n >= 1 && n <= max_points && t >= 0 && dd__h5_type_ok(t);
  if (sp >= 0)
    H5Sclose(sp);
  if (t >= 0)
    H5Tclose(t);
  H5Eclear2(H5E_DEFAULT);
  if (!ok) {
    H5Aclose(a);
    return -1;
  }
  if (points)
    *points = (int64_t)n;
  return a;
}

int dd__h5_read_attr_str(hid_t obj, const char *name, char *buf, size_t n) {
  buf[0] = '\0';
  hid_t a = dd__h5_attr_open(obj, name, 1, NULL);
  if (a < 0)
    return -1;
  int rc = -1;
  hid_t ft = H5Aget_type(a);
  if (ft >= 0 && H5Tget_class(ft) == H5T_STRING) {
    if (H5Tis_variable_str(ft) > 0) {
      char *v = NULL;
      hid_t mt = H5Tcopy(H5T_C_S1);
      H5Tset_size(mt, H5T_VARIABLE);
      if (H5Aread(a, mt, &v) >= 0 && v) {
        snprintf(buf, n, "%s", v);
        H5free_memory(v);
        rc = 0;
      }
      H5Tclose(mt);
    } else {
      size_t sz = H5Tget_size(ft);
      char *tmp = dd_alloc(sz + 1, 1);
      if (tmp) {
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, sz);
        if (H5Aread(a, mt, tmp) >= 0) {
          tmp[sz] = '\0';
          snprintf(buf, n, "%s", tmp);
          rc = 0;
        }
        H5Tclose(mt);
        dd_free(tmp);
      }
    }
  }
  if (ft >= 0)
    H5Tclose(ft);
  H5Aclose(a);
  H5Eclear2(H5E_DEFAULT);
  return rc;
}

int dd__h5_read_attr_i64(hid_t obj, const char *name, int64_t *value) {
  hid_t a = dd__h5_attr_open(obj, name, 1, NULL);
  if (a < 0)
    return -1;
  int rc = H5Aread(a, H5T_NATIVE_INT64, value) < 0 ? -1 : 0;
  H5Aclose(a);
  H5Eclear2(H5E_DEFAULT);
  return rc;
}

int dd__h5_attr_f64(hid_t obj, const char *name, double value) {
  hid_t s = H5Screate(H5S_SCALAR);
  if (s < 0)
    return -1;
  hid_t a = H5Acreate2(obj, name, H5T_IEEE_F64LE, s, H5P_DEFAULT, H5P_DEFAULT);
  int rc = -1;
  if (a >= 0) {
    rc = H5Awrite(a, H5T_NATIVE_DOUBLE, &value) < 0 ? -1 : 0;
    H5Aclose(a);
  }
  H5Sclose(s);
  return rc;
}

int dd__h5_read_attr_f64(hid_t obj, const char *name, double *value) {
  hid_t a = dd__h5_attr_open(obj, name, 1, NULL);
  if (a < 0)
    return -1;
  int rc = H5Aread(a, H5T_NATIVE_DOUBLE, value) < 0 ? -1 : 0;
  H5Aclose(a);
  H5Eclear2(H5E_DEFAULT);
  return rc;
}

int dd__h5_attr_f64v(hid_t obj, const char *name, const double *v, int64_t n) {
  hsize_t dim = (hsize_t)n;
  hid_t s = H5Screate_simple(1, &dim, NULL);
  if (s < 0)
    return -1;
  hid_t a = H5Acreate2(obj, name, H5T_IEEE_F64LE, s, H5P_DEFAULT, H5P_DEFAULT);
  int rc = -1;
  if (a >= 0) {
    rc = H5Awrite(a, H5T_NATIVE_DOUBLE, v) < 0 ? -1 : 0;
    H5Aclose(a);
  }
  H5Sclose(s);
  return rc;
}

int dd__h5_read_attr_f64v(hid_t obj, const char *name, double *v, int64_t n) {
  if (H5Aexists(obj, name) <= 0)
    return -1;
  hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
  if (a < 0)
    return -1;
  hid_t s = H5Aget_space(a);
  int rc = -1;
  if (s >= 0 && H5Sget_simple_extent_ndims(s) == 1 && H5Sget_simple_extent_npoints(s) == (hssize_t)n)
    rc = H5Aread(a, H5T_NATIVE_DOUBLE, v) < 0 ? -1 : 0;
  if (s >= 0)
    H5Sclose(s);
  H5Aclose(a);
  return rc;
}

char *dd__h5_shape_str(int ndim, const hsize_t *dims, char *buf, size_t n) {
  size_t used = 0;
  buf[0] = '\0';
  for (int i = 0; i < ndim && used < n; i++) {
    int w = snprintf(buf + used, n - used, "%s%llu", i ? "x" : "", (unsigned long long)dims[i]);
    if (w < 0)
      break;
    used += (size_t)w;
  }
  if (ndim == 0)
    snprintf(buf, n, "scalar");
  return buf;
}

int dd__h5_size(const char *path, const char *name, const char *role, int ndim, const hsize_t *dims, int64_t esize,
                int64_t *elems, int64_t *bytes) {
  int64_t e = 1, b = 0;
  bool over = false;
  for (int i = 0; i < ndim && !over; i++)
    over = dims[i] > (hsize_t)INT64_MAX || dd_mul_overflows(e, (int64_t)dims[i], &e);
  if (over || dd_mul_overflows(e, esize, &b)) {
    char shape[200];
    return dd_error(DD_EDATA,
                    "'%s':%s (%s) has shape %s, whose size overflows 64 bits; the file is damaged or was not "
                    "written as a dataset",
                    path, name, role, dd__h5_shape_str(ndim, dims, shape, sizeof shape));
  }
  *elems = e;
  *bytes = b;
  return DD_OK;
}

int dd__h5_check_stored(hid_t dset, const char *path, const char *name, const char *role, int ndim, const hsize_t *dims,
                        int64_t bytes) {
  struct stat st;
  int64_t file = stat(path, &st) == 0 ? (int64_t)st.st_size : 0;
  int64_t stored = (int64_t)H5Dget_storage_size(dset);
  hid_t dcpl = H5Dget_create_plist(dset);
  const bool compact = dcpl >= 0 && H5Pget_layout(dcpl) == H5D_COMPACT;
  if (dcpl >= 0)
    H5Pclose(dcpl);
  H5Eclear2(H5E_DEFAULT);
  /* compact: the data is in the object header, exactly; HDF5 1.10 reads the shape's worth from
   * whatever the header holds (a NULL buffer for 0 bytes: SEGV in H5D__compact_readvv) */
  if (compact && stored != bytes) {
    char shape[200];
    return dd_error(DD_EDATA,
                    "'%s':%s (%s) is a compact dataset of shape %s (%lld bytes) whose header holds %lld bytes of it; "
                    "the file is damaged",
                    path, name, role, dd__h5_shape_str(ndim, dims, shape, sizeof shape), (long long)bytes,
                    (long long)stored);
  }
  if (stored < 0 || stored > file)
    stored = file;
  const int64_t fill = (int64_t)64 << 20;
  if (stored > (INT64_MAX - fill) / 1100 || bytes <= stored * 1100 + fill)
    return DD_OK;
  char shape[200];
  return dd_error(DD_EDATA,
                  "'%s':%s (%s) has shape %s (%.3g bytes) but the file stores %lld bytes of it: its chunks were never "
                  "written; the file is damaged or unfinished",
                  path, name, role, dd__h5_shape_str(ndim, dims, shape, sizeof shape), (double)bytes,
                  (long long)stored);
}

bool dd__h5_stored_elsewhere(hid_t dset) {
  hid_t dcpl = H5Dget_create_plist(dset);
  if (dcpl < 0) {
    H5Eclear2(H5E_DEFAULT);
    return true;
  }
  const bool elsewhere = H5Pget_external_count(dcpl) != 0 || H5Pget_layout(dcpl) == H5D_VIRTUAL;
  H5Pclose(dcpl);
  H5Eclear2(H5E_DEFAULT);
  return elsewhere;
}

int dd__h5_read_i32_vector(hid_t f, const char *path, const char *name, const char *role, int64_t *n, int32_t **out) {
  *out = NULL;
  *n = 0;
  if (H5Lexists(f, name, H5P_DEFAULT) <= 0)
    return DD_ENOTFOUND;
  hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
  if (ds < 0)
    return DD_H5_FAIL("H5Dopen", path);
  hid_t t = H5Dget_type(ds), sp = H5Dget_space(ds);
  const H5T_class_t cls = H5Tget_class(t);
  const bool type_ok = dd__h5_type_ok(t);
  const int nd = H5Sget_simple_extent_ndims(sp);
  hsize_t dim = 0;
  if (nd == 1)
    H5Sget_simple_extent_dims(sp, &dim, NULL);
  H5Tclose(t);
  H5Sclose(sp);
  int rc = DD_OK;
  if (cls != H5T_INTEGER || nd != 1 || !type_ok)
    rc = dd_error(DD_EDATA, "'%s':%s (%s) must be a 1-D integer dataset; it has %d dimension(s) of %s", path, name,
                  role, nd, dd__h5_class_name(cls));
  int64_t elems = 0, bytes = 0;
  if (rc == DD_OK && dd__h5_stored_elsewhere(ds))
    rc = dd_error(DD_EDATA, "'%s':%s (%s) keeps its data outside the file; repack it into the file with h5repack", path,
                  name, role);
  if (rc == DD_OK)
    rc = dd__h5_size(path, name, role, 1, &dim, sizeof(int32_t), &elems, &bytes);
  if (rc == DD_OK)
    rc = dd__h5_check_stored(ds, path, name, role, 1, &dim, bytes);
  if (rc == DD_OK) {
    *out = dd_alloc(dim ? (size_t)dim : 1, sizeof(int32_t));
    if (!*out)
      rc = DD_ENOMEM;
    else if (dim && H5Dread(ds, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, *out) < 0)
      rc = DD_H5_FAIL(name, path);
  }
  H5Dclose(ds);
  if (rc) {
    dd_free(*out);
    *out = NULL;
    return rc;
  }
  *n = (int64_t)dim;
  return DD_OK;
}
