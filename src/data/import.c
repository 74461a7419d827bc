/* `data import`: CSV tables and MNIST-style IDX files into the dataset layout. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "ddtrain/data.h"

/* ---- CSV --------------------------------------------------------------- */

typedef struct csv_row {
  char *line;     /* owned copy, fields point into it */
  int64_t lineno; /* in the file, for messages */
  int nf;
  char **f;
} csv_row;

/* Split a line at delim in place; handles "quoted, fields". Returns the
 * number of fields or -1 on memory failure. */
static int split_fields(char *line, char delim, char ***fields, int *cap) {
  int n = 0;
  char *p = line;
  for (;;) {
    if (n == *cap) {
      int nc = *cap ? *cap * 2 : 16;
      char **nf = dd_alloc((size_t)nc, sizeof *nf);
      if (!nf)
        return -1;
      if (*fields)
        memcpy(nf, *fields, sizeof *nf * (size_t)n);
      dd_free(*fields);
      *fields = nf;
      *cap = nc;
    }
    while (*p == ' ' || *p == '\t')
      p++;
    if (*p == '"') {
      char *start = ++p, *w = p;
      while (*p && !(*p == '"' && p[1] != '"')) {
        if (*p == '"')
          p++;
        *w++ = *p++;
      }
      if (*p == '"')
        p++;
      while (*p && *p != delim)
        p++;
      char *end = p;
      (*fields)[n++] = start;
      if (*w)
        *w = '\0';
      if (!*end)
        break;
      *end = '\0';
      p = end + 1;
      continue;
    }
    (*fields)[n++] = p;
    char *d = strchr(p, delim);
    char *end = d ? d : p + strlen(p);
    char *t = end;
    while (t > p && (t[-1] == ' ' || t[-1] == '\t' || t[-1] == '\r' || t[-1] == '\n'))
      t--;
    if (!d) {
      *t = '\0';
      break;
    }
    *t = '\0';
    p = d + 1;
  }
  return n;
}

static bool parse_double(const char *s, double *v) {
  if (!*s)
    return false;
  char *end;
  errno = 0;
  *v = strtod(s, &end);
  return end != s && *end == '\0' && errno != ERANGE;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

int dd_data_import_csv(const char *csv, const char *label, bool regression, dd_dataset **out) {
  *out = NULL;
  FILE *fp = fopen(csv, "r");
  if (!fp)
    return dd_error(DD_EIO, "cannot open '%s': %s", csv, strerror(errno));
  int rc = DD_OK;
  char *line = NULL;
  size_t lcap = 0;
  ssize_t len;
  int64_t lineno = 0, nrows = 0, rowcap = 0;
  csv_row *rows = NULL;
  char delim = ',';
  while ((len = getline(&line, &lcap, fp)) >= 0) {
    lineno++;
    char *s = line;
    while (*s == ' ' || *s == '\t')
      s++;
    if (*s == '\n' || *s == '\r' || *s == '\0' || *s == '#')
      continue;
    if (nrows == 0 && !strchr(s, ',') && (strchr(s, ';') || strchr(s, '\t')))
      delim = strchr(s, ';') ? ';' : '\t';
    if (nrows == rowcap) {
      int64_t nc = rowcap ? rowcap * 2 : 1024;
      csv_row *nr = dd_alloc((size_t)nc, sizeof *nr);
      if (!nr) {
        rc = DD_ENOMEM;
        break;
      }
      if (rows)
        memcpy(nr, rows, sizeof *nr * (size_t)nrows);
      dd_free(rows);
      rows = nr;
      rowcap = nc;
    }
    csv_row *r = &rows[nrows];
    r->lineno = lineno;
    r->line = dd_strdup(s);
    int cap = 0;
    r->f = NULL;
    r->nf = r->line ? split_fields(r->line, delim, &r->f, &cap) : -1;
    if (r->nf < 0) {
      rc = DD_ENOMEM;
      break;
    }
    nrows++;
    if (nrows > 1 && r->nf != rows[0].nf) {
      rc = dd_error(DD_EDATA, "%s:%lld has %d fields but the first row has %d; every row needs the same columns", csv,
                    (long long)lineno, r->nf, rows[0].nf);
      break;
    }
  }
  free(line);
  fclose(fp);
  dd_dataset *ds = NULL;
  char **names = NULL;
  int64_t nnames = 0;
  if (rc == DD_OK && nrows == 0)
    rc = dd_error(DD_EDATA, "'%s' has no data rows", csv);
  if (rc == DD_OK && rows[0].nf < 2)
    rc = dd_error(
        DD_EDATA,
        "'%s' has %d column(s); it needs a label column and at least one feature column (delimiter ',', ';' or tab)",
        csv, rows[0].nf);
  int ncol = rc == DD_OK ? rows[0].nf : 0;
  /* header: first row with any non-numeric field */
  bool header = false;
  for (int j = 0; rc == DD_OK && j < ncol; j++) {
    double v;
    if (!parse_double(rows[0].f[j], &v))
      header = true;
  }
  int lab = ncol - 1;
  if (rc == DD_OK && label && *label) {
    char *end;
    long v = strtol(label, &end, 10);
    if (*end == '\0') {
      lab = (int)(v < 0 ? ncol + v : v);
      if (lab < 0 || lab >= ncol)
        rc = dd_error(DD_EINVAL, "--label %s is out of range: '%s' has %d columns (0..%d)", label, csv, ncol, ncol - 1);
    } else {
      lab = -1;
      for (int j = 0; header && j < ncol; j++)
        if (strcmp(rows[0].f[j], label) == 0)
          lab = j;
      if (lab < 0)
        rc = dd_error(DD_EINVAL, "--label '%s' is not a column of '%s'%s", label, csv,
                      header ? "; check the header row" : " (it has no header row; give a column index)");
    }
  }
  int64_t first = header ? 1 : 0, n = nrows - first;
  if (rc == DD_OK && n <= 0)
    rc = dd_error(DD_EDATA, "'%s' has a header but no data rows", csv);
  if (rc == DD_OK) {
    ds = dd_alloc(1, sizeof *ds);
    rc = ds ? DD_OK : DD_ENOMEM;
  }
  if (rc == DD_OK) {
    ds->n = n;
    ds->xshape.ndim = 1;
    ds->xshape.d[0] = ncol - 1;
    ds->xsize = ncol - 1;
    ds->ysize = 1;
    ds->x = dd_alloc((size_t)(n * ds->xsize), sizeof(float));
    if (regression) {
      ds->ykind = DD_LABELS_FLOAT;
      ds->yshape.ndim = 1;
      ds->yshape.d[0] = 1;
      ds->yf = dd_alloc((size_t)n, sizeof(float));
    } else {
      ds->ykind = DD_LABELS_CLASS;
      ds->yc = dd_alloc((size_t)n, sizeof(int32_t));
    }
    rc = ds->x && (ds->yc || ds->yf) ? DD_OK : DD_ENOMEM;
  }
  /* labels: all integers -> ids; otherwise names mapped in sorted order */
  bool numeric_labels = true;
  for (int64_t i = 0; rc == DD_OK && !regression && i < n; i++) {
    double v;
    const char *s = rows[first + i].f[lab];
    if (!parse_double(s, &v) || v != (double)(long long)v)
      numeric_labels = false;
  }
  if (rc == DD_OK && !regression && !numeric_labels) {
    names = dd_alloc((size_t)n, sizeof *names);
    rc = names ? DD_OK : DD_ENOMEM;
    for (int64_t i = 0; rc == DD_OK && i < n; i++)
      names[i] = rows[first + i].f[lab];
    if (rc == DD_OK) {
      qsort(names, (size_t)n, sizeof *names, cmp_str);
      for (int64_t i = 0; i < n; i++)
        if (i == 0 || strcmp(names[i], names[nnames - 1]) != 0)
          names[nnames++] = names[i];
    }
  }
  for (int64_t i = 0; rc == DD_OK && i < n; i++) {
    char **f = rows[first + i].f;
    int64_t line_no = rows[first + i].lineno;
    float *x = ds->x + i * ds->xsize;
    int k = 0;
    for (int j = 0; j < ncol && rc == DD_OK; j++) {
      double v = 0.0;
      if (j == lab) {
        if (regression) {
          if (!parse_double(f[j], &v))
            rc = dd_error(DD_EDATA, "%s:%lld: target '%s' is not a number", csv, (long long)line_no, f[j]);
          else
            ds->yf[i] = (float)v;
        } else if (numeric_labels) {
          parse_double(f[j], &v);
          if (v < 0 || v > 2147483647.0)
            rc = dd_error(DD_EDATA, "%s:%lld: label %s is negative or too large; class ids must be 0..K-1", csv,
                          (long long)line_no, f[j]);
          else
            ds->yc[i] = (int32_t)v;
        } else {
          char **hit = bsearch(&f[j], names, (size_t)nnames, sizeof *names, cmp_str);
          ds->yc[i] = (int32_t)(hit - names);
        }
        continue;
      }
      if (!parse_double(f[j], &v))
        rc = dd_error(DD_EDATA, "%s:%lld: column %d%s%s%s: '%s' is not a number; features must be numeric", csv,
                      (long long)line_no, j, header ? " ('" : "", header ? rows[0].f[j] : "", header ? "')" : "", f[j]);
      x[k++] = (float)v;
    }
  }
  if (rc == DD_OK && !regression) {
    int32_t mx = 0;
    for (int64_t i = 0; i < n; i++)
      mx = ds->yc[i] > mx ? ds->yc[i] : mx;
    ds->nclasses = (int64_t)mx + 1;
    if (names) {
      size_t total = 1;
      for (int64_t i = 0; i < nnames; i++)
        total += strlen(names[i]) + 1;
      ds->class_names = dd_alloc(total, 1);
      if (!ds->class_names)
        rc = DD_ENOMEM;
      for (int64_t i = 0; rc == DD_OK && i < nnames; i++) {
        strcat(ds->class_names, names[i]);
        if (i + 1 < nnames)
          strcat(ds->class_names, "\n");
      }
    }
  }
  dd_free(names);
  for (int64_t i = 0; i < nrows; i++) {
    dd_free(rows[i].line);
    dd_free(rows[i].f);
  }
  dd_free(rows);
  if (rc) {
    dd_data_free(ds);
    return rc;
  }
  *out = ds;
  return DD_OK;
}

/* ---- IDX (MNIST) ------------------------------------------------------- */

/* Read an IDX file of unsigned bytes (gzip or plain): dims and data. */
static int read_idx(const char *path, int want_ndim, int *ndim, int64_t *dims, unsigned char **data) {
  *data = NULL;
  gzFile g = gzopen(path, "rb");
  if (!g)
    return dd_error(DD_EIO, "cannot open '%s': %s", path, strerror(errno));
  unsigned char h[4];
  int rc = DD_OK;
  if (gzread(g, h, 4) != 4 || h[0] != 0 || h[1] != 0)
    rc = dd_error(DD_EDATA, "'%s' is not an IDX file (bad magic number)", path);
  else if (h[2] != 0x08)
    rc = dd_error(DD_EDATA, "'%s' holds IDX type 0x%02x; only unsigned bytes (0x08, as MNIST) are supported", path,
                  h[2]);
  else if (h[3] != want_ndim)
    rc = dd_error(DD_EDATA, "'%s' has %d dimensions; expected %d (%s)", path, h[3], want_ndim,
                  want_ndim == 1 ? "labels" : "images N x H x W");
  int64_t total = 1;
  bool over = false;
  char shape[64] = "";
  for (int i = 0; rc == DD_OK && i < want_ndim; i++) {
    unsigned char b[4];
    if (gzread(g, b, 4) != 4) {
      rc = dd_error(DD_EDATA, "'%s' is truncated in its header", path);
      break;
    }
    dims[i] = ((int64_t)b[0] << 24) | ((int64_t)b[1] << 16) | ((int64_t)b[2] << 8) | b[3];
    size_t used = strlen(shape);
    snprintf(shape + used, sizeof shape - used, "%s%lld", i ? "x" : "", (long long)dims[i]);
    over = over || dd_mul_overflows(total, dims[i], &total);
  }
  *ndim = want_ndim;
  /* the header's word only: three 32-bit dimensions multiply past 2^63, and a 16-byte file may claim
   * terabytes, so the data is read in growing steps and the header checked against what is there */
  if (rc == DD_OK && over)
    rc = dd_error(DD_EDATA, "'%s' claims %s bytes in its header, whose size overflows 64 bits; it is not an IDX file",
                  path, shape);
  int64_t cap = 0;
  for (int64_t off = 0; rc == DD_OK && off < total;) {
    if (off == cap) {
      int64_t ncap = cap ? 2 * cap : (int64_t)1 << 20;
      ncap = ncap < total ? ncap : total;
      unsigned char *nd = dd_alloc((size_t)ncap, 1);
      if (!nd) {
        rc = DD_ENOMEM;
        break;
      }
      if (*data)
        memcpy(nd, *data, (size_t)off);
      dd_free(*data);
      *data = nd;
      cap = ncap;
    }
    unsigned chunk = (unsigned)(cap - off > (1 << 30) ? (1 << 30) : cap - off);
    int got = gzread(g, *data + off, chunk);
    if (got <= 0)
      rc = dd_error(DD_EDATA, "'%s' is truncated: its header (%s) says %lld data bytes, the file holds %lld", path,
                    shape, (long long)total, (long long)off);
    off += got > 0 ? got : 0;
  }
  if (rc == DD_OK && !*data && !(*data = dd_alloc(1, 1)))
    rc = DD_ENOMEM;
  gzclose(g);
  if (rc) {
    dd_free(*data);
    *data = NULL;
  }
  return rc;
}

int dd_data_import_idx(const char *images, const char *labels, dd_dataset **out) {
  *out = NULL;
  int ni, nl;
  int64_t di[3] = {0}, dl[1] = {0};
  unsigned char *pix = NULL, *lab = NULL;
  int rc = read_idx(images, 3, &ni, di, &pix);
  if (rc == DD_OK)
    rc = read_idx(labels, 1, &nl, dl, &lab);
  int64_t pixels = 0;
  if (rc == DD_OK && (dd_mul_overflows(di[1], di[2], &pixels) || di[0] == 0 || pixels == 0))
    rc = dd_error(DD_EDATA, "'%s' holds %lld images of %lldx%lld pixels; it needs at least one non-empty image", images,
                  (long long)di[0], (long long)di[1], (long long)di[2]);
  if (rc == DD_OK && di[0] != dl[0])
    rc = dd_error(DD_EDATA, "'%s' has %lld images but '%s' has %lld labels", images, (long long)di[0], labels,
                  (long long)dl[0]);
  dd_dataset *ds = NULL;
  if (rc == DD_OK) {
    ds = dd_alloc(1, sizeof *ds);
    rc = ds ? DD_OK : DD_ENOMEM;
  }
  if (rc == DD_OK) {
    ds->n = di[0];
    ds->xshape = (dd_shape){3, {1, di[1], di[2], 0}};
    ds->xsize = pixels;
    ds->ykind = DD_LABELS_CLASS;
    ds->ysize = 1;
    ds->yc = dd_alloc((size_t)ds->n, sizeof(int32_t));
    rc = ds->yc ? DD_OK : DD_ENOMEM;
  }
  if (rc == DD_OK) {
    /* the pixels stay bytes (4x smaller than float32); training reads them as pixel / 255 */
    ds->xu8 = pix;
    pix = NULL;
    ds->xscale = 1.0 / 255.0;
    int32_t mx = 0;
    for (int64_t i = 0; i < ds->n; i++) {
      ds->yc[i] = lab[i];
      mx = lab[i] > mx ? lab[i] : mx;
    }
    ds->nclasses = mx + 1;
  }
  dd_free(pix);
  dd_free(lab);
  if (rc) {
    dd_data_free(ds);
    return rc;
  }
  *out = ds;
  return DD_OK;
}
