/* HDF5 plumbing for data and checkpoint: quiet errors, messages, atomic commit. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ddtrain/core.h"
#include "h5util.h"

void dd__h5_quiet(void) {
  static int done;
  if (!done) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    done = 1;
  }
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

int dd__h5_read_attr_str(hid_t obj, const char *name, char *buf, size_t n) {
  buf[0] = '\0';
  if (H5Aexists(obj, name) <= 0)
    return -1;
  hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
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
  return rc;
}

int dd__h5_read_attr_i64(hid_t obj, const char *name, int64_t *value) {
  if (H5Aexists(obj, name) <= 0)
    return -1;
  hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
  if (a < 0)
    return -1;
  int rc = H5Aread(a, H5T_NATIVE_INT64, value) < 0 ? -1 : 0;
  H5Aclose(a);
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
  if (H5Aexists(obj, name) <= 0)
    return -1;
  hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
  if (a < 0)
    return -1;
  int rc = H5Aread(a, H5T_NATIVE_DOUBLE, value) < 0 ? -1 : 0;
  H5Aclose(a);
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
  const int nd = H5Sget_simple_extent_ndims(sp);
  hsize_t dim = 0;
  if (nd == 1)
    H5Sget_simple_extent_dims(sp, &dim, NULL);
  H5Tclose(t);
  H5Sclose(sp);
  int rc = DD_OK;
  if (cls != H5T_INTEGER || nd != 1)
    rc = dd_error(DD_EDATA, "'%s':%s (%s) must be a 1-D integer dataset; it has %d dimension(s) of %s", path, name,
                  role, nd, dd__h5_class_name(cls));
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
