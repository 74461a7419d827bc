/* Fuzz target: a dataset file as training and evaluation meet it: `data inspect`, the streaming
 * reader (open with its collective checks, then a few rows), the in-memory loader and the
 * vocabulary reader, on the bytes written to a scratch file. Which datasets the reader is asked for
 * (features and labels, features only, with data.lengths, with data.pad_id) follows the input's size,
 * so every variant meets every kind of file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ddtrain/core.h"
#include "ddtrain/data.h"
#include "fuzz.h"

static char g_path[600];
static FILE *g_null;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  dd_fuzz_init();
  snprintf(g_path, sizeof g_path, "%s/data.h5", dd_fuzz_dir());
  g_null = fopen("/dev/null", "w");
  return 0;
}

/* the rows a trainer would read first: the first, the last, one in the middle */
static int read_rows(dd_source *s) {
  const dd_source_info *in = dd_source_get_info(s);
  if (in->xsize > (1 << 20) || in->ysize > (1 << 20))
    return DD_OK; /* a legal sample this large costs more than an input is worth */
  int64_t rows[3] = {0, in->n - 1, in->n / 2};
  float *x = dd_alloc(3 * (size_t)in->xsize, sizeof(float));
  void *y = dd_alloc(3, dd_source_label_bytes(s) + 4);
  int32_t len[3];
  int rc = x && y ? dd_source_read(s, rows, 3, x, y, len) : DD_ENOMEM;
  dd_free(x);
  dd_free(y);
  return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  dd_fuzz_feature = 0;
  if (dd_fuzz_write(g_path, data, size))
    return 0;
  dd_comm *c = dd_fuzz_comm();
  int rc = dd_data_inspect(g_path, g_null);
  dd_fuzz_step(rc);

  const int variant = (int)(size % 4);
  dd_source_spec spec = {.path = g_path,
                         .xname = "/x",
                         .yname = variant == 1 ? NULL : "/y",
                         .lengths = variant == 2 ? "/lengths" : NULL,
                         .pad_id = variant == 3 ? 0 : -1,
                         .key = "data.train",
                         .cache_chunks = 2};
  dd_source *src = NULL;
  rc = dd_source_open(c, &spec, &src);
  dd_fuzz_step(rc);
  if (rc == DD_OK) {
    rc = read_rows(src);
    dd_fuzz_step(rc);
    const dd_source_info *in = dd_source_get_info(src);
    if (in->tokens && in->xsize <= (1 << 16)) {
      rc = dd_source_check_tokens(c, src, 64, "data.train");
      dd_fuzz_step(rc);
    }
    if (in->ykind == DD_LABELS_CLASS) {
      int64_t row, value;
      rc = dd_source_find_label(c, src, 2, &row, &value);
      dd_fuzz_step(rc);
    }
  }
  dd_source_close(src);

  if (size <= (64 << 10)) { /* the in-memory loader reads everything: small files only */
    dd_dataset *ds = NULL;
    rc = dd_data_load(c, g_path, "/x", variant == 1 ? NULL : "/y", "data.train", &ds);
    dd_fuzz_step(rc);
    dd_data_free(ds);
  }
  int32_t *vocab = NULL;
  int64_t nvocab = 0;
  rc = dd_data_read_vocab(g_path, &vocab, &nvocab);
  dd_fuzz_step(rc);
  dd_free(vocab);
  dd_fuzz_done();
  return 0;
}
