/* data: collective loading of real HDF5 files, identical on every rank, and
 * bad files failing on every rank with the same one-line message. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "ddtrain/data.h"
#include "trainutil.h"

DD_TEST_GLOBALS;
static dd_comm *world;
static const char *scratch;

static void path(char *buf, const char *name) {
  snprintf(buf, 1024, "%s/%s", scratch, name);
}

/* rank 0 writes arrays; everyone waits */
static void write_file(const char *p, const dd_array *a, int n) {
  int rc = dd_comm_rank(world) == 0 ? dd_data_write(p, a, n, NULL, 0) : DD_OK;
  CHECK_OK(dd_comm_bcast_status(world, rc, 0));
}

/* load must fail identically on all ranks, message containing needle */
/* Opening the source and reading every row (on every rank) fails with the
 * needle, the same message everywhere: checks at open and checks per row. */
static void expect_load_error(const char *p, const char *x, const char *y, const char *needle) {
  dd_source *src = NULL;
  dd_error_clear();
  dd_source_spec spec = {.path = p, .xname = x, .yname = y, .pad_id = -1, .key = "data.train"};
  int rc = dd_source_open(world, &spec, &src);
  if (rc == DD_OK) {
    const dd_source_info *in = dd_source_get_info(src);
    float *xb = dd_alloc((size_t)in->xsize, sizeof(float));
    int32_t yb[64] = {0};
    for (int64_t i = 0; rc == DD_OK && i < in->n; i++)
      rc = dd_source_read(src, &i, 1, xb, in->ysize <= 64 ? yb : NULL, NULL);
    dd_free(xb);
    rc = dd_comm_agree(world, rc);
    dd_source_close(src);
  }
  CHECK(rc != DD_OK);
  CHECK_CONTAINS(dd_error_message(), needle);
  bool same = false;
  dd_comm_same_u64(world, dd_fnv1a(dd_error_message(), strlen(dd_error_message()), DD_FNV_OFFSET), &same);
  CHECK(same); /* every rank reports the same message */
  dd_error_clear();
}

static void loads_identically(void) {
  char p[1024];
  path(p, "ok.h5");
  dd_synth_spec s = {.samples = 300, .features = 12, .classes = 4, .noise = 0.3, .seed = 3};
  CHECK_OK(tu_write_synth(world, p, &s));
  dd_dataset *ds = NULL;
  CHECK_OK(dd_data_load(world, p, "/x", "/y", "data.train", &ds));
  if (!ds)
    return;
  CHECK_INT(ds->n, 300);
  CHECK_INT(ds->xsize, 12);
  CHECK_INT(ds->ykind, DD_LABELS_CLASS);
  CHECK_INT(ds->nclasses, 4);
  uint64_t h = dd_fnv1a(ds->x, sizeof(float) * 300 * 12, DD_FNV_OFFSET);
  h = dd_fnv1a(ds->yc, sizeof(int32_t) * 300, h);
  bool same = false;
  CHECK_OK(dd_comm_same_u64(world, h, &same));
  CHECK(same);
  /* features only */
  dd_dataset *fx = NULL;
  CHECK_OK(dd_data_load(world, p, "/x", NULL, "data", &fx));
  CHECK(fx && fx->ykind == 0 && fx->yc == NULL && fx->n == 300);
  dd_data_free(fx);
  /* holdout split: disjoint, complete, deterministic, file order within each; both kinds */
  for (int legacy = 0; legacy < 2; legacy++) {
    dd_split tr, va, tr2, va2;
    CHECK_OK(dd_split_holdout(ds->n, 0.2, 9, legacy, &tr, &va));
    CHECK_OK(dd_split_holdout(ds->n, 0.2, 9, legacy, &tr2, &va2));
    CHECK_INT(va.n, 60);
    CHECK_INT(tr.n + va.n, 300);
    int seen[300] = {0}, ordered = 1, same_rows = 0;
    for (int64_t i = 0; i < tr.n; i++) {
      seen[dd_split_row(&tr, i)]++;
      ordered &= i == 0 || dd_split_row(&tr, i) > dd_split_row(&tr, i - 1);
    }
    for (int64_t i = 0; i < va.n; i++) {
      seen[dd_split_row(&va, i)]++;
      ordered &= i == 0 || dd_split_row(&va, i) > dd_split_row(&va, i - 1);
      same_rows += dd_split_row(&va, i) == dd_split_row(&va2, i);
    }
    int ok = 1;
    for (int i = 0; i < 300; i++)
      ok &= seen[i] == 1;
    CHECK(ok);
    CHECK(ordered);
    CHECK_INT(same_rows, va.n);
    /* another seed, another hold-out */
    dd_split tr3, va3;
    CHECK_OK(dd_split_holdout(ds->n, 0.2, 10, legacy, &tr3, &va3));
    int same3 = 0;
    for (int64_t i = 0; i < va.n; i++)
      same3 += dd_split_row(&va, i) == dd_split_row(&va3, i);
    CHECK(same3 < 30);
    int64_t row0 = dd_split_row(&va, 0), row5 = dd_split_row(&va, 5);
    dd_split_free(&va);
    dd_split_free(&tr);
    dd_split_free(&va2);
    dd_split_free(&tr2);
    dd_split_free(&va3);
    dd_split_free(&tr3);
    if (legacy)
      break;
    /* a source reads the right rows, in the order asked */
    dd_source *src = NULL;
    dd_source_spec spec = {.path = p, .xname = "/x", .yname = "/y", .key = "data.train"};
    CHECK_OK(dd_source_open(world, &spec, &src));
    int64_t rows[2] = {row5, row0};
    float xb[24];
    int32_t yb[2];
    CHECK_OK(dd_source_read(src, rows, 2, xb, yb, NULL));
    CHECK(memcmp(xb, ds->x + rows[0] * 12, 12 * sizeof(float)) == 0);
    CHECK(memcmp(xb + 12, ds->x + rows[1] * 12, 12 * sizeof(float)) == 0);
    CHECK_INT(yb[0], ds->yc[rows[0]]);
    CHECK_INT(yb[1], ds->yc[rows[1]]);
    dd_source_close(src);
  }
  dd_data_free(ds);
}

static void converts_types(void) {
  /* float64 features and int8-range labels stored as int32 of another name */
  char p[1024];
  path(p, "types.h5");
  float x[6] = {1, 2, 3, 4, 5, 6};
  int32_t y[3] = {0, 1, 1};
  dd_array a[2] = {{"/features", DD_F32, 2, {3, 2}, x, 0, 0}, {"/labels", DD_I32, 1, {3}, y, 0, 0}};
  write_file(p, a, 2);
  dd_dataset *ds = NULL;
  CHECK_OK(dd_data_load(world, p, "/features", "/labels", "data.train", &ds));
  CHECK(ds && ds->x[5] == 6.0f && ds->yc[2] == 1);
  dd_data_free(ds);
  /* float labels -> regression targets */
  float t[6] = {0.5f, 1, 2, 3, 4, 5};
  dd_array b[2] = {{"/x", DD_F32, 2, {3, 2}, x, 0, 0}, {"/y", DD_F32, 2, {3, 2}, t, 0, 0}};
  path(p, "reg.h5");
  write_file(p, b, 2);
  CHECK_OK(dd_data_load(world, p, "/x", "/y", "data.train", &ds));
  CHECK(ds && ds->ykind == DD_LABELS_FLOAT && ds->ysize == 2 && ds->yf[0] == 0.5f);
  dd_data_free(ds);
}

/* Rows of at most 64 bytes (labels, lengths, narrow features) are read through
 * a direct-mapped cache of 1 KiB blocks, at most 8 MiB a column: rows across
 * block boundaries, the last partial block, and blocks that evict each other
 * (2.2M 4-byte rows are 8.6 MiB, more than the cache holds) read back exact. */
static void small_rows_read_exactly(void) {
  char p[1024];
  path(p, "small-rows.h5");
  enum { N = 2200000, M = 5000 };
  float *x = dd_alloc(N, sizeof *x);
  int32_t *y = dd_alloc(N, sizeof *y);
  unsigned char *xu = dd_alloc(M * 3, 1), *yu = dd_alloc(M, 1);
  if (!x || !y || !xu || !yu)
    goto out;
  for (int64_t i = 0; i < N; i++) {
    x[i] = (float)i;
    y[i] = (int32_t)(i * 7919 % 1000);
  }
  for (int64_t i = 0; i < M; i++) {
    for (int k = 0; k < 3; k++)
      xu[i * 3 + k] = (unsigned char)(i + k);
    yu[i] = (unsigned char)(i * 31 % 200);
  }
  dd_array a[2] = {{"/x", DD_F32, 2, {N, 1}, x, 0, 0}, {"/y", DD_I32, 1, {N}, y, 0, 0}};
  write_file(p, a, 2);
  dd_source *src = NULL;
  dd_source_spec spec = {.path = p, .xname = "/x", .yname = "/y", .pad_id = -1, .key = "data.train"};
  CHECK_OK(dd_source_open(world, &spec, &src));
  if (src) {
    /* 8 MiB / 1 KiB = 8192 blocks of 256 rows: row r and r + 8192 * 256 share a slot */
    const int64_t far = 8192 * 256;
    int64_t rows[64];
    int n = 0;
    const int64_t picks[] = {0, 255, 256, 257, 511, 512, N - 1, N - 2, N - 184, N - 185, 1023, 1024};
    for (size_t k = 0; k < sizeof picks / sizeof *picks; k++)
      rows[n++] = picks[k];
    for (int64_t r = 3; n < 44 && r + far < N; r += 997) {
      rows[n++] = r;
      rows[n++] = r + far;
      rows[n++] = r;
    }
    for (uint64_t h = 12345; n < 64;) {
      h = h * 6364136223846793005u + 1442695040888963407u;
      rows[n++] = (int64_t)((h >> 11) % N);
    }
    float xb[64];
    int32_t yb[64];
    int bad = 0;
    for (int round = 0; round < 2; round++) { /* cold, then cached */
      CHECK_OK(dd_source_read(src, rows, n, xb, yb, NULL));
      for (int i = 0; i < n; i++)
        bad += !(xb[i] == (float)rows[i]) || yb[i] != y[rows[i]];
    }
    CHECK_INT(bad, 0);
    dd_source_close(src);
  }
  /* 3-byte uint8 rows (341 a block) and 1-byte labels */
  dd_array b[2] = {{"/x", DD_U8, 2, {M, 3}, xu, 0, 0}, {"/y", DD_U8, 1, {M}, yu, 0, 0}};
  path(p, "small-u8.h5");
  write_file(p, b, 2);
  spec.path = p;
  src = NULL;
  CHECK_OK(dd_source_open(world, &spec, &src));
  if (src) {
    float xb[3];
    int32_t yb[1];
    int bad = 0;
    for (int64_t i = M - 1; i >= 0; i -= 1 + i % 5) {
      CHECK_OK(dd_source_read(src, &i, 1, xb, yb, NULL));
      for (int k = 0; k < 3; k++)
        bad += !(xb[k] == (float)(unsigned char)(i + k));
      bad += yb[0] != yu[i];
    }
    CHECK_INT(bad, 0);
    dd_source_close(src);
  }
out:
  dd_free(x);
  dd_free(y);
  dd_free(xu);
  dd_free(yu);
}

static void bad_files_fail_everywhere(void) {
  char p[1024];
  path(p, "missing.h5");
  expect_load_error(p, "/x", "/y", "No such file");
  path(p, "not-hdf5.h5");
  if (dd_comm_rank(world) == 0) {
    FILE *f = fopen(p, "w");
    fputs("a,b\n1,2\n", f);
    fclose(f);
  }
  dd_comm_barrier(world);
  expect_load_error(p, "/x", "/y", "is not an HDF5 file");
  path(p, "ok.h5");
  expect_load_error(p, "/features", "/y", "has no dataset '/features'");
  expect_load_error(p, "/features", "/y", "it has: /x, /y");
  float x[6] = {1, 2, 3, 4, 5, 6};
  int32_t y2[2] = {0, 1}, yneg[3] = {0, -3, 1};
  dd_array mism[2] = {{"/x", DD_F32, 2, {3, 2}, x, 0, 0}, {"/y", DD_I32, 1, {2}, y2, 0, 0}};
  path(p, "mismatch.h5");
  write_file(p, mism, 2);
  expect_load_error(p, "/x", "/y", "has 3 samples but /y has 2");
  dd_array neg[2] = {{"/x", DD_F32, 2, {3, 2}, x, 0, 0}, {"/y", DD_I32, 1, {3}, yneg, 0, 0}};
  path(p, "neg.h5");
  write_file(p, neg, 2);
  expect_load_error(p, "/x", "/y", "/y[1] = -3 is negative");
  float xn[6] = {1, 2, 3, 0, 5, 6};
  xn[3] = NAN;
  int32_t y3[3] = {0, 1, 0};
  dd_array nan_[2] = {{"/x", DD_F32, 2, {3, 2}, xn, 0, 0}, {"/y", DD_I32, 1, {3}, y3, 0, 0}};
  path(p, "nan.h5");
  write_file(p, nan_, 2);
  expect_load_error(p, "/x", "/y", "/x[1] feature 1 is NaN");
  /* -inf in the last feature of the last row (the check is one pass over the row, then the search) */
  float xi[6] = {1, 2, 3, 4, 5, 0};
  xi[5] = -INFINITY;
  dd_array inf_[2] = {{"/x", DD_F32, 2, {3, 2}, xi, 0, 0}, {"/y", DD_I32, 1, {3}, y3, 0, 0}};
  path(p, "inf.h5");
  write_file(p, inf_, 2);
  expect_load_error(p, "/x", "/y", "/x[2] feature 1 is infinite");
}

int main(int argc, char **argv) {
  if (dd_comm_init(&argc, &argv, &world) || argc < 2)
    return 2;
  scratch = argv[1];
  RUN(loads_identically);
  RUN(converts_types);
  RUN(small_rows_read_exactly);
  RUN(bad_files_fail_everywhere);
  int f = tu_total_failures(world);
  dd_comm_finalize(world);
  return f ? 1 : 0;
}
