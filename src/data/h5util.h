/* Internal HDF5 helpers shared by the data module's files. */
#ifndef DDTRAIN_DATA_H5UTIL_H
#define DDTRAIN_DATA_H5UTIL_H

#include <hdf5.h>

/* Object-info API names differ between HDF5 1.10 (Debian 12) and 1.12+. */
#if H5_VERSION_GE(1, 12, 0)
typedef H5O_info2_t dd_h5o_info;
typedef H5L_info2_t dd_h5l_info;
#define dd_h5o_info_by_name(g, n, i, f) H5Oget_info_by_name3(g, n, i, f, H5P_DEFAULT)
#define dd_h5o_info(o, i, f) H5Oget_info3(o, i, f)
#define dd_h5o_visit(o, cb, d, f) H5Ovisit3(o, H5_INDEX_NAME, H5_ITER_INC, cb, d, f)
#define dd_h5l_iterate(g, cb, d) H5Literate2(g, H5_INDEX_NAME, H5_ITER_INC, NULL, cb, d)
#else
typedef H5O_info_t dd_h5o_info;
typedef H5L_info_t dd_h5l_info;
#define dd_h5o_info_by_name(g, n, i, f) H5Oget_info_by_name2(g, n, i, f, H5P_DEFAULT)
#define dd_h5o_info(o, i, f) H5Oget_info2(o, i, f)
#define dd_h5o_visit(o, cb, d, f) H5Ovisit2(o, H5_INDEX_NAME, H5_ITER_INC, cb, d, f)
#define dd_h5l_iterate(g, cb, d) H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, NULL, cb, d)
#endif

/* Silence HDF5's automatic error stack printing (once per process). */
void dd__h5_quiet(void);
/* DD_EHDF5 with file:line, what was being done, and HDF5's innermost
 * message. */
int dd__h5_fail(const char *what, const char *path, const char *file, int line);
#define DD_H5_FAIL(what, path) dd__h5_fail(what, path, __FILE__, __LINE__)
/* Check that path exists, is readable and is HDF5; key names the config key
 * or option it came from. Returns a status with a one-line message. */
int dd__h5_check_readable(const char *path, const char *key);
/* dd__h5_check_readable, then open path read-only into *f (the caller closes it). */
int dd__h5_open_read(const char *path, const char *key, hid_t *f);
/* Comma-separated list of the datasets at the root of an open file. */
void dd__h5_list_datasets(hid_t file, char *buf, int n);
/* Type class name ("integer", "float", "string", ...). */
const char *dd__h5_class_name(H5T_class_t c);
/* Atomic file replace: write to `tmp`, then dd__h5_commit fsyncs and
 * renames it to `path` (and fsyncs the directory). */
int dd__h5_commit(const char *tmp, const char *path);
/* Write / read a string attribute on an object. */
int dd__h5_attr_str(hid_t obj, const char *name, const char *value);
int dd__h5_attr_i64(hid_t obj, const char *name, int64_t value);
int dd__h5_read_attr_str(hid_t obj, const char *name, char *buf, size_t n);
int dd__h5_read_attr_i64(hid_t obj, const char *name, int64_t *value);
int dd__h5_attr_f64(hid_t obj, const char *name, double value);
int dd__h5_read_attr_f64(hid_t obj, const char *name, double *value);
/* A 1-D float64 attribute of n values (n >= 1); reading needs exactly n. */
int dd__h5_attr_f64v(hid_t obj, const char *name, const double *v, int64_t n);
int dd__h5_read_attr_f64v(hid_t obj, const char *name, double *v, int64_t n);
/* Read the 1-D integer dataset `name` of an open file into *out ([*n],
 * owned by the caller). DD_ENOTFOUND (no message) if it does not exist;
 * other failures name path, name and role. */
int dd__h5_read_i32_vector(hid_t f, const char *path, const char *name, const char *role, int64_t *n, int32_t **out);

#endif
