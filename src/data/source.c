/* Streaming datasets: every rank opens the files read-only and reads just the rows it asks for; the splits. */
#define _GNU_SOURCE /* O_CLOEXEC */
#include <fcntl.h>
#include <glob.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "column.h"
#include "ddtrain/data.h"

typedef struct src_file {
  char path[1024];
  int fd;
  int64_t n, first; /* samples, global id of the first */
  dd__col x, y, len;
  bool has_y, has_len;
  struct stat st; /* at open: a change during the run is an error */
} src_file;

struct dd_source {
  dd_source_info info;
  src_file *files;
  int nfiles;
  double scale, shift;        /* features: x * scale + shift */
  int64_t pad_id;             /* >= 0: lengths from trailing padding */
  bool float_x;               /* stored as floats: checked for NaN/Inf per read */
  int32_t *vocab;             /* owned */
  unsigned char *xrow, *yrow; /* one row's stored bytes */
  pthread_mutex_t lock;       /* one reader at a time (prefetch thread, validation) */
  double checked_at;          /* last check that the files are unchanged */
  char key[64];               /* the config key it came from */
  int64_t reads;
};

/* ---- a truncated mapped file raises SIGBUS in the reading thread ---- */

static _Thread_local sigjmp_buf *t_guard;
static struct sigaction g_old_bus;

static void on_bus(int sig, siginfo_t *si, void *uc) {
  if (t_guard)
    siglongjmp(*t_guard, 1);
  /* not ours: what would have happened without us */
  sigaction(SIGBUS, &g_old_bus, NULL);
  (void)si;
  (void)uc;
  raise(sig);
}

static void bus_init(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_bus;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGBUS, &sa, &g_old_bus);
}

static void install_bus_handler(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, bus_init);
}

/* ---- opening ---- */

static bool has_glob(const char *s) {
  return strpbrk(s, "*?[") != NULL;
}

/* The files of a dataset: one path, a newline-separated list, or glob
 * patterns (sorted), in that order; samples are numbered across them. */
static int expand_paths(const char *spec, const char *key, char ***out, int *n) {
  *out = NULL;
  *n = 0;
  int cap = 0, rc = DD_OK;
  char **v = NULL;
  char *copy = dd_strdup(spec ? spec : "");
  if (!copy)
    return DD_ENOMEM;
  for (char *save = NULL, *tok = strtok_r(copy, "\n", &save); tok && rc == DD_OK; tok = strtok_r(NULL, "\n", &save)) {
    glob_t g;
    memset(&g, 0, sizeof g);
    const char *one[1] = {tok};
    const char *const *names = one;
    size_t count = 1;
    if (has_glob(tok)) {
      int grc = glob(tok, GLOB_ERR, NULL, &g);
      if (grc == GLOB_NOMATCH || (grc == 0 && g.gl_pathc == 0)) {
        rc = dd_error(DD_EIO, "%s: no file matches '%s'; check the pattern and the directory", key, tok);
        globfree(&g);
        break;
      }
      if (grc != 0) {
        rc = dd_error(DD_EIO, "%s: cannot list the files of '%s'; check the directory's permissions", key, tok);
        globfree(&g);
        break;
      }
      names = (const char *const *)g.gl_pathv; /* glob sorts them */
      count = g.gl_pathc;
    }
    for (size_t i = 0; i < count && rc == DD_OK; i++) {
      if (*n == cap) {
        cap = cap ? 2 * cap : 8;
        char **nv = dd_alloc((size_t)cap, sizeof *nv);
        if (!nv) {
          rc = DD_ENOMEM;
          break;
        }
        if (v)
          memcpy(nv, v, sizeof *v * (size_t)*n);
        dd_free(v);
        v = nv;
      }
      if (!(v[*n] = dd_strdup(names[i])))
        rc = DD_ENOMEM;
      else
        (*n)++;
    }
    if (has_glob(tok))
      globfree(&g);
  }
  dd_free(copy);
  if (rc == DD_OK && *n == 0)
    rc = dd_error(DD_EINVAL, "%s is empty; give the path of an HDF5 file", key);
  if (rc) {
    for (int i = 0; i < *n; i++)
      dd_free(v[i]);
    dd_free(v);
    *n = 0;
    return rc;
  }
  *out = v;
  return DD_OK;
}

/* The number attribute name of dataset dset: DD_OK; DD_ENOTFOUND if it has none or a text one (as
 * ever: not a map); DD_EDATA (with a message) if numbers other than one finite value (an array was
 * read past the variable). */
static int read_attr_f64(hid_t f, const char *path, const char *dset, const char *name, double *v) {
  hid_t d = H5Dopen2(f, dset, H5P_DEFAULT);
  if (d < 0) {
    H5Eclear2(H5E_DEFAULT);
    return DD_ENOTFOUND;
  }
  int rc = DD_ENOTFOUND;
  if (H5Aexists(d, name) > 0) {
    hid_t a = H5Aopen(d, name, H5P_DEFAULT), t = a >= 0 ? H5Aget_type(a) : -1;
    const H5T_class_t cls = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
    if (t >= 0)
      H5Tclose(t);
    if (a >= 0)
      H5Aclose(a);
    if (cls == H5T_INTEGER || cls == H5T_FLOAT)
      rc = dd__h5_read_attr_f64(d, name, v) == 0 && isfinite(*v)
               ? DD_OK
               : dd_error(DD_EDATA,
                          "'%s':%s has a '%s' attribute that is not one finite number; fix it, or set data.%s to "
                          "override it",
                          path, dset, name, name);
  }
  H5Eclear2(H5E_DEFAULT);
  H5Dclose(d);
  return rc;
}

static int open_file(dd_source *s, const dd_source_spec *spec, src_file *sf, bool first_file) {
  hid_t f = -1;
  int rc = dd__h5_open_read(sf->path, spec->key, &f);
  if (rc)
    return rc;
  sf->fd = open(sf->path, O_RDONLY | O_CLOEXEC);
  if (sf->fd < 0 || fstat(sf->fd, &sf->st) != 0) {
    H5Fclose(f);
    return dd_error(DD_EIO, "cannot open '%s' (%s) for reading; check its permissions", sf->path, spec->key);
  }
  rc = dd__col_open(f, sf->fd, sf->path, spec->xname, "features", "data.x", spec->cache_chunks, &sf->x);
  sf->has_y = spec->yname && spec->yname[0];
  if (rc == DD_OK && sf->has_y)
    rc = dd__col_open(f, sf->fd, sf->path, spec->yname, "labels", "data.y", spec->cache_chunks, &sf->y);
  sf->has_len = spec->lengths && spec->lengths[0];
  if (rc == DD_OK && sf->has_len) {
    rc = dd__col_open(f, sf->fd, sf->path, spec->lengths, "sequence lengths, data.lengths", "data.lengths",
                      spec->cache_chunks, &sf->len);
    if (rc == DD_OK && (sf->len.cls != 'i' || sf->len.ndim != 1))
      rc = dd_error(DD_EDATA, "'%s':%s (data.lengths) must be a 1-D integer dataset of one length per sequence",
                    sf->path, spec->lengths);
  }
  if (rc == DD_OK && first_file) {
    double v = 1.0;
    int a = spec->map ? DD_ENOTFOUND : read_attr_f64(f, sf->path, spec->xname, "scale", &v);
    s->scale = a == DD_OK ? v : 1.0;
    int b = a == DD_EDATA || spec->map ? DD_ENOTFOUND : read_attr_f64(f, sf->path, spec->xname, "shift", &v);
    s->shift = b == DD_OK ? v : 0.0;
    rc = a == DD_EDATA || b == DD_EDATA ? DD_EDATA : DD_OK;
    if (rc == DD_OK)
      rc = dd__h5_read_i32_vector(f, sf->path, "/vocab", "vocabulary", &s->info.nvocab, &s->vocab);
    if (rc == DD_ENOTFOUND)
      rc = DD_OK;
  }
  H5Fclose(f);
  if (rc == DD_OK) {
    sf->n = sf->x.nrows;
    if (sf->has_y && sf->y.nrows != sf->n)
      rc = dd_error(DD_EDATA,
                    "'%s': %s has %lld samples but %s has %lld; features and "
                    "labels must have the same first dimension",
                    sf->path, spec->xname, (long long)sf->n, spec->yname, (long long)sf->y.nrows);
    else if (sf->has_len && sf->len.nrows != sf->n)
      rc = dd_error(DD_EDATA, "'%s':%s has %lld lengths but %s has %lld sequences; it needs one length per sequence",
                    sf->path, spec->lengths, (long long)sf->len.nrows, spec->xname, (long long)sf->n);
    else if (sf->n == 0)
      rc = dd_error(DD_EDATA, "'%s':%s has no samples", sf->path, spec->xname);
    else if (sf->x.ndim > DD_SHAPE_MAX + 1)
      rc = dd_error(DD_EDATA, "'%s':%s (features) has %d dimensions; expected 1 to %d with samples first", sf->path,
                    spec->xname, sf->x.ndim, DD_SHAPE_MAX + 1);
    else if (sf->has_y && sf->y.ndim > 2)
      rc = dd_error(DD_EDATA,
                    "'%s':%s has %d dimensions; labels must be [N] or [N, T] "
                    "integer class ids, or [N] / [N, K] float targets",
                    sf->path, spec->yname, sf->y.ndim);
    else if (sf->x.row_elems == 0 || (sf->has_y && sf->y.row_elems == 0))
      rc = dd_error(DD_EDATA, "'%s': %s or %s has a zero-sized dimension", sf->path, spec->xname,
                    sf->has_y ? spec->yname : "");
  }
  return rc;
}

static void shape_of(const dd__col *c, dd_shape *s) {
  memset(s, 0, sizeof *s);
  s->ndim = c->ndim > 1 ? c->ndim - 1 : 1;
  s->d[0] = 1;
  for (int i = 1; i < c->ndim; i++)
    s->d[i - 1] = c->dims[i];
}

/* Files of one dataset must agree on what a sample is. */
static int check_alike(const dd_source *s, const dd_source_spec *spec) {
  const src_file *a = &s->files[0];
  for (int i = 1; i < s->nfiles; i++) {
    const src_file *b = &s->files[i];
    char sa[64], sb[64];
    dd_shape xa, xb;
    shape_of(&a->x, &xa);
    shape_of(&b->x, &xb);
    if (a->x.row_elems != b->x.row_elems || xa.ndim != xb.ndim || memcmp(xa.d, xb.d, sizeof xa.d) != 0)
      return dd_error(DD_EDATA,
                      "%s: '%s':%s holds %s per sample but '%s' holds %s; every file of a dataset needs the same "
                      "sample shape",
                      spec->key, b->path, spec->xname, dd_shape_str(xb, sb, sizeof sb), a->path,
                      dd_shape_str(xa, sa, sizeof sa));
    if (a->x.cls != b->x.cls || a->x.esize != b->x.esize || a->x.is_signed != b->x.is_signed)
      return dd_error(DD_EDATA, "%s: '%s':%s is %s but '%s' holds %s; every file of a dataset needs the same type",
                      spec->key, b->path, spec->xname, dd__col_type_name(&b->x), a->path, dd__col_type_name(&a->x));
    if (a->has_y && (a->y.cls != b->y.cls || a->y.row_elems != b->y.row_elems))
      return dd_error(DD_EDATA,
                      "%s: the labels '%s':%s (%s, %lld per sample) differ from '%s' (%s, %lld per sample); every "
                      "file of a dataset needs the same label type and shape",
                      spec->key, b->path, spec->yname, dd__col_type_name(&b->y), (long long)b->y.row_elems, a->path,
                      dd__col_type_name(&a->y), (long long)a->y.row_elems);
  }
  return DD_OK;
}

/* What must be the same on every rank: the file list, sizes, layout and a
 * sample of the bytes (the first and last rows). */
static uint64_t file_digest(src_file *sf) {
  uint64_t h = dd_fnv1a(sf->path, strlen(sf->path), DD_FNV_OFFSET);
  int64_t meta[6] = {(int64_t)sf->st.st_size, sf->n, sf->x.row_elems, sf->x.esize, sf->x.layout, sf->x.offset};
  h = dd_fnv1a(meta, sizeof meta, h);
  size_t rb = (size_t)(sf->x.row_elems * sf->x.esize);
  unsigned char *row = dd_alloc(rb, 1);
  if (row && dd__col_row(&sf->x, 0, row) == DD_OK)
    h = dd_fnv1a(row, rb, h);
  if (row && dd__col_row(&sf->x, sf->n - 1, row) == DD_OK)
    h = dd_fnv1a(row, rb, h);
  dd_error_clear();
  dd_free(row);
  return h;
}

static int same_on_all_ranks(dd_comm *c, dd_source *s, const char *key) {
  uint64_t all = (uint64_t)s->nfiles;
  uint64_t *d = dd_alloc((size_t)s->nfiles, sizeof *d);
  int rc = d ? DD_OK : DD_ENOMEM;
  for (int i = 0; d && i < s->nfiles; i++) {
    d[i] = file_digest(&s->files[i]);
    all = dd_hash3(all, d[i], (uint64_t)i);
  }
  rc = dd_comm_agree(c, rc);
  bool same = true;
  if (rc == DD_OK)
    rc = dd_comm_same_u64(c, all, &same);
  for (int i = 0; rc == DD_OK && !same && i < s->nfiles; i++) {
    bool one = true;
    rc = dd_comm_same_u64(c, d[i], &one);
    if (rc == DD_OK && !one)
      rc = dd_error(DD_EMISMATCH,
                    "%s: '%s' is not the same file on every rank (its size, layout or content differ); every rank "
                    "must read the same data: put it on a file system they all share",
                    key, s->files[i].path);
  }
  if (rc == DD_OK && !same)
    rc = dd_error(DD_EMISMATCH, "%s: the ranks see different file lists; give every rank the same paths", key);
  dd_free(d);
  return rc;
}

/* ---- reading ---- */

static src_file *file_of(dd_source *s, int64_t row, int64_t *local) {
  int lo = 0, hi = s->nfiles - 1;
  while (lo < hi) {
    int mid = (lo + hi + 1) / 2;
    if (s->files[mid].first <= row)
      lo = mid;
    else
      hi = mid - 1;
  }
  *local = row - s->files[lo].first;
  return &s->files[lo];
}

/* Files rewritten, truncated or replaced in place while a run reads them
 * would give wrong samples (or SIGBUS through the map): checked every second. */
static int check_unchanged(dd_source *s) {
  double now = dd_now();
  if (now - s->checked_at < 1.0)
    return DD_OK;
  s->checked_at = now;
  for (int i = 0; i < s->nfiles; i++) {
    const src_file *f = &s->files[i];
    struct stat st;
    if (fstat(f->fd, &st) != 0 || st.st_size != f->st.st_size || st.st_mtim.tv_sec != f->st.st_mtim.tv_sec ||
        st.st_mtim.tv_nsec != f->st.st_mtim.tv_nsec)
      return dd_error(DD_EDATA,
                      "'%s' (%s) changed while training read it (size %lld -> %lld bytes); a dataset must not be "
                      "rewritten during a run: write a new file and point %s at it",
                      f->path, s->key, (long long)f->st.st_size, (long long)st.st_size, s->key);
  }
  return DD_OK;
}

static int32_t length_of(const dd_source *s, const float *x) {
  int64_t T = s->info.xshape.d[0], n = T;
  const int64_t per = s->info.xsize / T;
  while (n > 0 && x[(n - 1) * per] == (float)s->pad_id)
    n--;
  return (int32_t)n;
}

/* No NaN or infinity among x[0..n): an exponent of all ones. One pass
 * without an early exit, which the compiler vectorises. */
static bool all_finite(const float *x, int64_t n) {
  uint32_t bad = 0;
  for (int64_t i = 0; i < n; i++) {
    uint32_t u;
    memcpy(&u, x + i, 4);
    bad |= (u & 0x7f800000u) == 0x7f800000u;
  }
  return bad == 0;
}

static int read_one(dd_source *s, int64_t row, float *x, void *y, int32_t *len) {
  int64_t r;
  src_file *f = file_of(s, row, &r);
  const dd_source_info *in = &s->info;
  /* float32 with no map: straight into the batch, no staging copy */
  const bool direct = f->x.cls == 'f' && f->x.esize == 4 && s->scale == 1.0 && s->shift == 0.0;
  int rc = dd__col_row(&f->x, r, direct ? (void *)x : s->xrow);
  if (rc)
    return rc;
  if (!direct)
    dd__col_to_f32(&f->x, s->xrow, in->xsize, s->scale, s->shift, x);
  if (s->float_x && !all_finite(x, in->xsize))
    for (int64_t i = 0; i < in->xsize; i++)
      if (!isfinite(x[i]))
        return dd_error(DD_EDATA, "'%s':%s[%lld] feature %lld is %s; remove or impute non-finite values", f->path,
                        in->xname, (long long)r, (long long)i, isnan(x[i]) ? "NaN" : "infinite");
  int32_t n = (int32_t)(in->xshape.ndim >= 1 ? in->xshape.d[0] : 1);
  if (f->has_len) {
    rc = dd__col_row(&f->len, r, s->yrow);
    if (rc)
      return rc;
    n = (int32_t)dd__col_value(&f->len, s->yrow, 0);
  } else if (s->pad_id >= 0) {
    n = length_of(s, x);
  }
  if (len && in->lengths)
    len[0] = n;
  if (y && f->has_y) {
    rc = dd__col_row(&f->y, r, s->yrow);
    if (rc)
      return rc;
    if (in->ykind == DD_LABELS_CLASS) {
      int32_t *yc = y;
      for (int64_t t = 0; t < in->ysize; t++)
        yc[t] = (int32_t)dd__col_value(&f->y, s->yrow, t); /* range checked at open */
      if (in->lengths && in->ysize == in->xshape.d[0])
        for (int64_t t = n; t < in->ysize; t++)
          yc[t] = -1; /* padding steps are out of the loss */
    } else {
      dd__col_to_f32(&f->y, s->yrow, in->ysize, 1.0, 0.0, y);
    }
  }
  return DD_OK;
}

int dd_source_read(dd_source *s, const int64_t *rows, int n, float *x, void *y, int32_t *len) {
  pthread_mutex_lock(&s->lock);
  int rc = check_unchanged(s);
  sigjmp_buf jb;
  sigjmp_buf *volatile prev = t_guard;
  const char *volatile reading = s->info.path; /* the file a SIGBUS comes from */
  const size_t yb = dd_source_label_bytes(s);
  if (rc == DD_OK && sigsetjmp(jb, 0) == 0) {
    t_guard = &jb;
    for (int i = 0; rc == DD_OK && i < n; i++) {
      if (rows[i] < 0 || rows[i] >= s->info.n) {
        rc = dd_error(DD_EINVAL, "%s: sample %lld is outside [0, %lld)", s->info.path, (long long)rows[i],
                      (long long)s->info.n);
        break;
      }
      int64_t local;
      reading = file_of(s, rows[i], &local)->path;
      rc = read_one(s, rows[i], x + (int64_t)i * s->info.xsize, y ? (char *)y + (size_t)i * yb : NULL,
                    len ? len + i : NULL);
    }
  } else if (rc == DD_OK) {
    rc = dd_error(DD_EDATA,
                  "'%s' became shorter while training read it (SIGBUS reading its data); a dataset must not be "
                  "rewritten during a run",
                  reading);
  }
  t_guard = prev;
  s->reads += n;
  pthread_mutex_unlock(&s->lock);
  return rc;
}

/* ---- collective scans at open: each rank checks 1/P of the rows ---- */

typedef struct scan {
  int64_t bad;  /* first bad global row (INT64_MAX: none) */
  int64_t maxv; /* largest class id */
  int64_t minv; /* smallest */
} scan;

/* Rank r scans rows [lo, hi) of a column across the files with fn; every
 * rank learns the first bad row (min over ranks) and the label range. */
typedef int64_t (*scan_fn)(dd_source *s, src_file *f, int64_t r, const unsigned char *row, scan *sc);

static int scan_rows(dd_comm *c, dd_source *s, dd__col *(*col)(src_file *), scan_fn fn, scan *out) {
  int64_t lo, hi;
  dd_sampler_shard(s->info.n, dd_comm_size(c), dd_comm_rank(c), &lo, &hi);
  scan sc = {.bad = INT64_MAX, .maxv = INT64_MIN, .minv = INT64_MAX};
  int rc = DD_OK;
  unsigned char *buf = NULL;
  size_t cap = 0;
  for (int64_t row = lo; rc == DD_OK && row < hi && sc.bad == INT64_MAX;) {
    int64_t r;
    src_file *f = file_of(s, row, &r);
    dd__col *cl = col(f);
    const size_t rb = (size_t)(cl->row_elems * cl->esize);
    int64_t n = (int64_t)((1 << 20) / (rb ? rb : 1)) + 1;
    if (n > f->n - r)
      n = f->n - r;
    if (n > hi - row)
      n = hi - row;
    if (rb * (size_t)n > cap) {
      dd_free(buf);
      cap = rb * (size_t)n;
      if (!(buf = dd_alloc(cap, 1))) {
        rc = DD_ENOMEM;
        break;
      }
    }
    rc = dd__col_rows(cl, r, n, buf);
    for (int64_t i = 0; rc == DD_OK && i < n; i++)
      if (fn(s, f, r + i, buf + (size_t)i * rb, &sc) >= 0) {
        sc.bad = row + i;
        break;
      }
    row += n;
  }
  dd_free(buf);
  for (int i = 0; i < s->nfiles; i++)
    dd__col_release(&s->files[i].x);
  rc = dd_comm_agree(c, rc);
  if (rc)
    return rc;
  int64_t v[3] = {-sc.bad, sc.maxv, -sc.minv};
  rc = dd_comm_allreduce_max_i64(c, v, 3);
  out->bad = -v[0];
  out->maxv = v[1];
  out->minv = -v[2];
  return rc;
}

static dd__col *col_y(src_file *f) {
  return &f->y;
}
static dd__col *col_len(src_file *f) {
  return &f->len;
}
static dd__col *col_x(src_file *f) {
  return &f->x;
}

static int64_t scan_class(dd_source *s, src_file *f, int64_t r, const unsigned char *row, scan *sc) {
  (void)r;
  const int64_t ys = s->info.ysize;
  for (int64_t t = 0; t < ys; t++) {
    double v = dd__col_value(&f->y, row, t);
    /* -1 marks padding in per-step labels; anything else below 0 is bad */
    if (v < -1 || (v == -1 && ys == 1) || v > 2147483647.0)
      return t;
    int64_t iv = (int64_t)v;
    if (iv > sc->maxv)
      sc->maxv = iv;
    if (iv < sc->minv)
      sc->minv = iv;
  }
  return -1;
}

static int64_t scan_target(dd_source *s, src_file *f, int64_t r, const unsigned char *row, scan *sc) {
  (void)r;
  (void)sc;
  for (int64_t t = 0; t < s->info.ysize; t++)
    if (!isfinite(dd__col_value(&f->y, row, t)))
      return t;
  return -1;
}

static int64_t scan_length(dd_source *s, src_file *f, int64_t r, const unsigned char *row, scan *sc) {
  (void)r;
  (void)sc;
  double v = dd__col_value(&f->len, row, 0);
  return v < 1 || v > (double)s->info.xshape.d[0] ? 0 : -1;
}

static int64_t scan_padding(dd_source *s, src_file *f, int64_t r, const unsigned char *row, scan *sc) {
  (void)r;
  (void)sc;
  const int64_t T = s->info.xshape.d[0], per = s->info.xsize / T;
  for (int64_t t = 0; t < T; t++)
    if (dd__col_value(&f->x, row, t * per) * s->scale + s->shift != (double)s->pad_id)
      return -1;
  return 0;
}

/* the bad row's own value, read again (any rank can read any row) */
static double value_at(dd_source *s, dd__col *(*col)(src_file *), int64_t row, int64_t at, int64_t *local) {
  src_file *f = file_of(s, row, local);
  dd__col *cl = col(f);
  unsigned char *buf = dd_alloc((size_t)(cl->row_elems * cl->esize), 1);
  double v = NAN;
  if (buf && dd__col_row(cl, *local, buf) == DD_OK)
    v = dd__col_value(cl, buf, at);
  dd_free(buf);
  return v;
}

static int scan_at_open(dd_comm *c, dd_source *s, const dd_source_spec *spec) {
  dd_source_info *in = &s->info;
  scan sc;
  int64_t r;
  int rc;
  if (in->ykind == DD_LABELS_CLASS) {
    rc = scan_rows(c, s, col_y, scan_class, &sc);
    if (rc)
      return rc;
    if (sc.bad != INT64_MAX) {
      /* which label of the row: look again */
      src_file *f = file_of(s, sc.bad, &r);
      unsigned char *buf = dd_alloc((size_t)(f->y.row_elems * f->y.esize), 1);
      double v = 0;
      if (buf && dd__col_row(&f->y, r, buf) == DD_OK) {
        scan one = {0};
        int64_t t = scan_class(s, f, r, buf, &one);
        v = dd__col_value(&f->y, buf, t < 0 ? 0 : t);
      }
      dd_free(buf);
      if (v > 2147483647.0)
        return dd_error(DD_EDATA, "'%s':%s[%lld] = %.0f is larger than any class id ddtrain takes (2^31 - 1)", f->path,
                        spec->yname, (long long)r, v);
      return dd_error(DD_EDATA, "'%s':%s[%lld] = %.0f is negative; class ids must be 0..K-1%s", f->path, spec->yname,
                      (long long)r, v, in->ysize > 1 ? " (-1 marks padding steps)" : "");
    }
    in->nclasses = sc.maxv + 1;
  } else if (in->ykind == DD_LABELS_FLOAT) {
    rc = scan_rows(c, s, col_y, scan_target, &sc);
    if (rc)
      return rc;
    if (sc.bad != INT64_MAX) {
      const char *path = file_of(s, sc.bad, &r)->path;
      return dd_error(DD_EDATA, "'%s':%s[%lld] is not finite; clean the targets", path, spec->yname, (long long)r);
    }
  }
  const int64_t T = in->xshape.d[0];
  if (s->files[0].has_len) {
    rc = scan_rows(c, s, col_len, scan_length, &sc);
    if (rc)
      return rc;
    if (sc.bad != INT64_MAX) {
      double v = value_at(s, col_len, sc.bad, 0, &r);
      const char *path = file_of(s, sc.bad, &r)->path;
      return dd_error(DD_EDATA,
                      "%s '%s':%s[%lld] = %.0f is not a length in 1..%lld (the sequences of %s have %lld steps); fix "
                      "the lengths",
                      spec->key, path, spec->lengths, (long long)r, v, (long long)T, spec->xname, (long long)T);
    }
  } else if (s->pad_id >= 0) {
    rc = scan_rows(c, s, col_x, scan_padding, &sc);
    if (rc)
      return rc;
    if (sc.bad != INT64_MAX) {
      const char *path = file_of(s, sc.bad, &r)->path;
      return dd_error(DD_EDATA,
                      "%s '%s':%s[%lld] holds only padding (data.pad_id = %lld); remove empty sequences or set "
                      "data.pad_id to the id that pads",
                      spec->key, path, spec->xname, (long long)r, (long long)s->pad_id);
    }
  }
  return DD_OK;
}

int dd_source_open(dd_comm *c, const dd_source_spec *spec, dd_source **out) {
  *out = NULL;
  install_bus_handler();
  dd_source *s = dd_alloc(1, sizeof *s);
  char **paths = NULL;
  int npaths = 0;
  int rc = s ? expand_paths(spec->path, spec->key, &paths, &npaths) : DD_ENOMEM;
  if (s) {
    pthread_mutex_init(&s->lock, NULL);
    s->pad_id = spec->pad_id;
    s->checked_at = dd_now();
    snprintf(s->key, sizeof s->key, "%s", spec->key);
  }
  if (rc == DD_OK) {
    s->files = dd_alloc((size_t)npaths, sizeof *s->files);
    rc = s->files ? DD_OK : DD_ENOMEM;
  }
  for (int i = 0; rc == DD_OK && i < npaths; i++) {
    src_file *f = &s->files[i];
    f->fd = -1;
    snprintf(f->path, sizeof f->path, "%s", paths[i]);
    s->nfiles = i + 1;
    rc = open_file(s, spec, f, i == 0);
    if (rc == DD_OK)
      f->first = i ? s->files[i - 1].first + s->files[i - 1].n : 0;
  }
  for (int i = 0; i < npaths; i++)
    dd_free(paths[i]);
  dd_free(paths);
  if (rc == DD_OK)
    rc = check_alike(s, spec);
  if (rc == DD_OK && spec->lengths && spec->lengths[0] && spec->pad_id >= 0)
    rc = dd_error(DD_ECONFIG, "set either data.lengths or data.pad_id, not both");
  /* every rank opened its own view; they must agree before comparing */
  rc = dd_comm_agree(c, rc);
  if (rc == DD_OK)
    rc = same_on_all_ranks(c, s, spec->key);
  if (rc == DD_OK) {
    dd_source_info *in = &s->info;
    const src_file *f0 = &s->files[0];
    snprintf(in->path, sizeof in->path, "%s", f0->path);
    snprintf(in->xname, sizeof in->xname, "%s", spec->xname);
    snprintf(in->yname, sizeof in->yname, "%s", f0->has_y ? spec->yname : "");
    in->n = s->files[s->nfiles - 1].first + s->files[s->nfiles - 1].n;
    shape_of(&f0->x, &in->xshape);
    in->xsize = f0->x.row_elems;
    in->tokens = f0->x.cls == 'i';
    s->float_x = f0->x.cls == 'f';
    if (spec->map) {
      s->scale = spec->scale;
      s->shift = spec->shift;
    }
    in->scale = s->scale;
    in->shift = s->shift;
    snprintf(in->xtype, sizeof in->xtype, "%s", dd__col_type_name(&f0->x));
    in->nfiles = s->nfiles;
    in->chunk_rows = f0->x.layout == DD__COL_CHUNKED ? f0->x.cdims[0] : 0;
    in->compressed = f0->x.nfilters > 0;
    if (f0->has_y) {
      in->ykind = f0->y.cls == 'i' ? DD_LABELS_CLASS : DD_LABELS_FLOAT;
      in->yshape.ndim = f0->y.ndim - 1;
      if (f0->y.ndim == 2)
        in->yshape.d[0] = f0->y.dims[1];
      in->ysize = f0->y.row_elems;
    }
    in->vocab = s->vocab;
    const bool by_name = f0->has_len;
    char shape[64];
    if ((by_name || s->pad_id >= 0) && (in->xshape.ndim > 2 || (!by_name && in->xshape.ndim != 1)))
      rc =
          dd_error(DD_EDATA, "%s '%s':%s holds %s per sample; %s needs sequences: %s", spec->key, in->path, spec->xname,
                   dd_shape_str(in->xshape, shape, sizeof shape), by_name ? "data.lengths" : "data.pad_id",
                   by_name ? "token ids [N, T] or features [N, T, D]" : "token ids [N, T]");
    in->lengths = by_name || s->pad_id >= 0;
    size_t xb = (size_t)(f0->x.row_elems * f0->x.esize), yb = 64;
    if (f0->has_y && (size_t)(f0->y.row_elems * f0->y.esize) > yb)
      yb = (size_t)(f0->y.row_elems * f0->y.esize);
    s->xrow = dd_alloc(xb, 1);
    s->yrow = dd_alloc(yb, 1);
    if (rc == DD_OK && (!s->xrow || !s->yrow))
      rc = DD_ENOMEM;
  }
  rc = dd_comm_agree(c, rc);
  if (rc == DD_OK)
    rc = scan_at_open(c, s, spec);
  if (rc) {
    dd_source_close(s);
    return rc;
  }
  *out = s;
  return DD_OK;
}

void dd_source_close(dd_source *s) {
  if (!s)
    return;
  for (int i = 0; s->files && i < s->nfiles; i++) {
    dd__col_close(&s->files[i].x);
    dd__col_close(&s->files[i].y);
    dd__col_close(&s->files[i].len);
    if (s->files[i].fd >= 0)
      close(s->files[i].fd);
  }
  dd_free(s->files);
  dd_free(s->vocab);
  dd_free(s->xrow);
  dd_free(s->yrow);
  pthread_mutex_destroy(&s->lock);
  dd_free(s);
}

const dd_source_info *dd_source_get_info(const dd_source *s) {
  return &s->info;
}

size_t dd_source_label_bytes(const dd_source *s) {
  return 4 * (size_t)s->info.ysize;
}

static int64_t scan_at_least(dd_source *s, src_file *f, int64_t r, const unsigned char *row, scan *sc) {
  (void)r;
  for (int64_t t = 0; t < s->info.ysize; t++)
    if (dd__col_value(&f->y, row, t) >= (double)sc->minv)
      return t;
  return -1;
}

int dd_source_find_label(dd_comm *c, dd_source *s, int64_t atleast, int64_t *row, int64_t *value) {
  *row = -1;
  *value = 0;
  if (s->info.ykind != DD_LABELS_CLASS)
    return DD_OK;
  /* scan_rows passes its own state: the threshold travels in minv */
  int64_t lo, hi;
  dd_sampler_shard(s->info.n, dd_comm_size(c), dd_comm_rank(c), &lo, &hi);
  int64_t best = INT64_MAX;
  int rc = DD_OK;
  unsigned char *buf = dd_alloc((size_t)(s->info.ysize * 8), 1);
  rc = buf ? DD_OK : DD_ENOMEM;
  scan sc = {.minv = atleast};
  for (int64_t g = lo; rc == DD_OK && g < hi; g++) {
    int64_t r;
    src_file *f = file_of(s, g, &r);
    rc = dd__col_row(&f->y, r, buf);
    if (rc == DD_OK && scan_at_least(s, f, r, buf, &sc) >= 0) {
      best = g;
      break;
    }
  }
  dd_free(buf);
  rc = dd_comm_agree(c, rc);
  int64_t v = -best;
  if (rc == DD_OK)
    rc = dd_comm_allreduce_max_i64(c, &v, 1);
  if (rc || -v == INT64_MAX)
    return rc;
  int64_t r;
  src_file *f = file_of(s, -v, &r);
  unsigned char *yb = dd_alloc((size_t)(s->info.ysize * 8), 1);
  if (yb && dd__col_row(&f->y, r, yb) == DD_OK) {
    int64_t t = scan_at_least(s, f, r, yb, &sc);
    *value = (int64_t)dd__col_value(&f->y, yb, t < 0 ? 0 : t);
  }
  dd_free(yb);
  *row = r;
  return DD_OK;
}

int dd_source_check_tokens(dd_comm *c, dd_source *s, int64_t V, const char *role) {
  const dd_source_info *in = &s->info;
  const int64_t T = in->xsize;
  int64_t lo, hi;
  dd_sampler_shard(in->n, dd_comm_size(c), dd_comm_rank(c), &lo, &hi);
  float *x = dd_alloc((size_t)T, sizeof(float));
  int rc = x ? DD_OK : DD_ENOMEM;
  /* first non-integer (kind 0) or out-of-range (kind 1) step, largest id */
  int64_t bad_row = INT64_MAX, bad_step = 0, kind = 0, maxid = -1;
  double bad_val = 0;
  for (int64_t g = lo; rc == DD_OK && g < hi; g++) {
    int32_t len = (int32_t)T;
    rc = dd_source_read(s, &g, 1, x, NULL, in->lengths ? &len : NULL);
    for (int64_t t = 0; rc == DD_OK && t < len; t++) {
      const float v = x[t];
      if (!(v >= 0.0f) || v != floorf(v)) {
        if (bad_row == INT64_MAX || kind == 1) {
          bad_row = g, bad_step = t, kind = 0, bad_val = v;
        }
        g = hi;
        break;
      }
      if (v >= (float)V && bad_row == INT64_MAX)
        bad_row = g, bad_step = t, kind = 1, bad_val = v;
      if (v > (float)maxid)
        maxid = v < 9e18f ? (int64_t)v : INT64_MAX;
    }
  }
  dd_free(x);
  for (int i = 0; i < s->nfiles; i++)
    dd__col_release(&s->files[i].x);
  rc = dd_comm_agree(c, rc);
  if (rc)
    return rc;
  /* non-integers first (a clearer problem), then the first row out of range */
  int64_t v[3] = {kind == 0 && bad_row != INT64_MAX ? -bad_row : INT64_MIN, kind == 1 ? -bad_row : INT64_MIN, maxid};
  rc = dd_comm_allreduce_max_i64(c, v, 3);
  if (rc)
    return rc;
  const bool nonint = v[0] != INT64_MIN, range = v[1] != INT64_MIN;
  if (!nonint && !range)
    return DD_OK;
  const int64_t row = nonint ? -v[0] : -v[1];
  /* the rank that found it knows the step and value; the others look again */
  if (row != bad_row) {
    float *xr = dd_alloc((size_t)T, sizeof(float));
    int32_t len = (int32_t)T;
    if (xr && dd_source_read(s, &row, 1, xr, NULL, in->lengths ? &len : NULL) == DD_OK)
      for (int64_t t = 0; t < len; t++)
        if ((nonint && (!(xr[t] >= 0.0f) || xr[t] != floorf(xr[t]))) || (!nonint && xr[t] >= (float)V)) {
          bad_step = t;
          bad_val = xr[t];
          break;
        }
    dd_free(xr);
  }
  int64_t r;
  const char *path = file_of(s, row, &r)->path;
  char sh[64];
  if (nonint)
    return dd_error(DD_EDATA,
                    "%s '%s':%s[%lld] step %lld holds %g, not a token id; the first layer (embedding) needs integer "
                    "ids in [0, %lld): store x %s as integers",
                    role, path, in->xname, (long long)r, (long long)bad_step, bad_val, (long long)V,
                    dd_shape_str(in->xshape, sh, sizeof sh));
  return dd_error(DD_EDATA,
                  "%s '%s':%s[%lld] step %lld holds token id %.0f, outside [0, %lld) of the embedding; raise "
                  "model.layers.0.vocab to at least %lld (the largest id in the data + 1) or fix the data",
                  role, path, in->xname, (long long)r, (long long)bad_step, bad_val, (long long)V,
                  (long long)(v[2] < INT64_MAX ? v[2] + 1 : v[2])); /* an id of 9e18 and more counts as INT64_MAX */
}

/* ---- splits: positions of a split -> rows of the source ---- */

void dd_split_all(int64_t n, dd_split *s) {
  memset(s, 0, sizeof *s);
  s->n = n;
}

/* 0.1's hold-out: a Fisher-Yates permutation's first nval rows */
static int holdout_legacy(int64_t n, int64_t nval, uint64_t seed, dd_split *train, dd_split *val) {
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
  }
  dd_free(perm);
  dd_free(is_val);
  return rc;
}

enum { BLOCK_WORDS = 8 }; /* 512-bit blocks: one count each for select */

int dd_split_holdout(int64_t n, double frac, uint64_t seed, bool legacy, dd_split *train, dd_split *val) {
  memset(train, 0, sizeof *train);
  memset(val, 0, sizeof *val);
  int64_t nval = (int64_t)llround(frac * (double)n);
  if (nval < 1 || nval >= n)
    return dd_error(DD_ECONFIG,
                    "data.val_fraction = %g of %lld samples leaves %lld for "
                    "validation and %lld for training; both need at least one",
                    frac, (long long)n, (long long)nval, (long long)(n - nval));
  train->n = n - nval;
  val->n = nval;
  int rc;
  if (legacy) {
    rc = holdout_legacy(n, nval, seed, train, val);
  } else {
    /* the validation rows are a seeded bijection's first nval values, kept
     * as a bitmap: N/8 bytes (12.5 MB at 100M samples) plus a count per 512
     * rows, and both splits keep file order (chunk locality) */
    const int64_t words = (n + 63) / 64, blocks = (words + BLOCK_WORDS - 1) / BLOCK_WORDS;
    train->bits = dd_alloc((size_t)words, sizeof(uint64_t));
    train->cum = dd_alloc((size_t)blocks + 1, sizeof(int64_t));
    rc = train->bits && train->cum ? DD_OK : DD_ENOMEM;
    if (rc == DD_OK) {
      dd_bij b;
      dd_bij_init(&b, (uint64_t)n, dd_hash3(seed, 0x73706c6974ULL /* "split" */, 2));
      for (int64_t i = 0; i < nval; i++) {
        uint64_t r = dd_bij_at(&b, (uint64_t)i);
        train->bits[r / 64] |= 1ULL << (r % 64);
      }
      for (int64_t k = 0; k < blocks; k++) {
        int64_t ones = 0;
        for (int64_t w = k * BLOCK_WORDS; w < words && w < (k + 1) * BLOCK_WORDS; w++)
          ones += __builtin_popcountll(train->bits[w]);
        train->cum[k + 1] = train->cum[k] + ones;
      }
      train->nbits = n;
      train->owns = true;
      val->bits = train->bits;
      val->cum = train->cum;
      val->nbits = n;
      val->ones = true;
    }
  }
  if (rc) {
    dd_split_free(train);
    dd_split_free(val);
  }
  return rc;
}

/* the k-th set (ones) or clear bit of the split's bitmap */
static int64_t select_bit(const dd_split *s, int64_t k) {
  const int64_t words = (s->nbits + 63) / 64, blocks = (words + BLOCK_WORDS - 1) / BLOCK_WORDS;
  int64_t lo = 0, hi = blocks - 1; /* the last block whose count before it is <= k */
  while (lo < hi) {
    int64_t mid = (lo + hi + 1) / 2;
    int64_t before = s->ones ? s->cum[mid] : mid * BLOCK_WORDS * 64 - s->cum[mid];
    if (before <= k)
      lo = mid;
    else
      hi = mid - 1;
  }
  k -= s->ones ? s->cum[lo] : lo * BLOCK_WORDS * 64 - s->cum[lo];
  for (int64_t w = lo * BLOCK_WORDS; w < words; w++) {
    uint64_t v = s->ones ? s->bits[w] : ~s->bits[w];
    int c = __builtin_popcountll(v);
    if (k < c) {
      for (; k > 0; k--)
        v &= v - 1;
      return w * 64 + __builtin_ctzll(v);
    }
    k -= c;
  }
  return -1; /* not reached for k < n */
}

int64_t dd_split_row(const dd_split *s, int64_t pos) {
  if (s->rows)
    return s->rows[pos];
  if (s->bits)
    return select_bit(s, pos);
  return pos;
}

void dd_split_free(dd_split *s) {
  if (!s)
    return;
  dd_free(s->rows);
  if (s->owns) {
    dd_free(s->bits);
    dd_free(s->cum);
  }
  memset(s, 0, sizeof *s);
}
