/* Internal HDF5 helpers shared by the data module's files. */
#ifndef DDTRAIN_DATA_H5UTIL_H
#define DDTRAIN_DATA_H5UTIL_H

#include <hdf5.h>
#include <stdbool.h>

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
/* Whether HDF5 converts values of type t safely: integers of 1, 2, 4 or 8
 * bytes whose precision and offset fit them, IEEE float32/float64, strings.
 * HDF5 1.10 reads outside its buffers converting a crafted 0-byte integer
 * type: every dataset or attribute read with a conversion checks this. */
bool dd__h5_type_ok(hid_t t);
/* Open attribute name of obj if it holds 1..max_points values of a type
 * dd__h5_type_ok accepts (*points: how many, if not NULL), else -1 with the
 * HDF5 error stack cleared: a crafted array where one value is expected
 * would be read past the caller's variable. */
hid_t dd__h5_attr_open(hid_t obj, const char *name, int64_t max_points, int64_t *points);
/* Write / read a string attribute on an object (the reads: one value, -1 if
 * it is missing or not one value of its kind). */
int dd__h5_attr_str(hid_t obj, const char *name, const char *value);
int dd__h5_attr_i64(hid_t obj, const char *name, int64_t value);
int dd__h5_read_attr_str(hid_t obj, const char *name, char *buf, size_t n);
int dd__h5_read_attr_i64(hid_t obj, const char *name, int64_t *value);
int dd__h5_attr_f64(hid_t obj, const char *name, double value);
int dd__h5_read_attr_f64(hid_t obj, const char *name, double *value);
/* A 1-D float64 attribute of n values (n >= 1); reading needs exactly n. */
int dd__h5_attr_f64v(hid_t obj, const char *name, const double *v, int64_t n);
int dd__h5_read_attr_f64v(hid_t obj, const char *name, double *v, int64_t n);
/* "1x16x1048577" into buf (the shape as HDF5 stores it, for messages). */
char *dd__h5_shape_str(int ndim, const hsize_t *dims, char *buf, size_t n);
/* Elements and bytes (esize each) of a dataset of that shape, overflow-checked:
 * a dimension past INT64_MAX or a product past 2^63 is a one-line DD_EDATA
 * error naming path, name, role and the shape. */
int dd__h5_size(const char *path, const char *name, const char *role, int ndim, const hsize_t *dims, int64_t esize,
                int64_t *elems, int64_t *bytes);
/* Whether the open dataset can hold the `bytes` its shape claims: what the
 * file stores of it (at most the file's size) times 1100 (gzip compresses at
 * most 1032:1), plus 64 MiB of fill values. A 2 KB file whose never-written
 * chunks claim terabytes is a DD_EDATA error naming the shape and the sizes
 * instead of being read (or counted) for ever. A compact dataset must hold
 * exactly its bytes. */
int dd__h5_check_stored(hid_t dset, const char *path, const char *name, const char *role, int ndim, const hsize_t *dims,
                        int64_t bytes);
/* True if the dataset's data lives outside its file (external raw files, or
 * a virtual dataset mapping other HDF5 files): a file must not make ddtrain
 * read paths it names. */
bool dd__h5_stored_elsewhere(hid_t dset);
/* Read the 1-D integer dataset `name` of an open file into *out ([*n],
 * owned by the caller). DD_ENOTFOUND (no message) if it does not exist;
 * other failures name path, name and role. */
int dd__h5_read_i32_vector(hid_t f, const char *path, const char *name, const char *role, int64_t *n, int32_t **out);

#endif
