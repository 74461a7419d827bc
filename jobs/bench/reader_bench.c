/* reader_bench: rows per second of ddtrain's streaming reader alone (one rank, from the page cache).
 *
 *   bench_reader FILE [ORDER] [BATCH] [SECONDS]
 *
 * ORDER: global (uniformly random rows, data.shuffle: global) or chunks (data.shuffle: chunks,
 * windows of 16 chunks of the file's chunk rows); BATCH rows per read call (default 128, a
 * training step's share), for about SECONDS (default 3). Prints one JSON line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ddtrain/comm.h"
#include "ddtrain/core.h"
#include "ddtrain/data.h"

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: bench_reader FILE [global|chunks] [BATCH] [SECONDS]\n");
    return 2;
  }
  const char *order = argc > 2 ? argv[2] : "global";
  const int batch = argc > 3 ? atoi(argv[3]) : 128;
  const double seconds = argc > 4 ? atof(argv[4]) : 3.0;
  dd_comm *c = NULL;
  if (dd_comm_init(&argc, &argv, &c))
    return 1;
  dd_source *s = NULL;
  const bool chunks = strcmp(order, "chunks") == 0;
  dd_source_spec spec = {
      .path = argv[1], .xname = "/x", .yname = "/y", .pad_id = -1, .key = "bench", .cache_chunks = chunks ? 17 : 0};
  if (dd_source_open(c, &spec, &s)) {
    fprintf(stderr, "bench_reader: %s\n", dd_error_message());
    return 1;
  }
  const dd_source_info *in = dd_source_get_info(s);
  dd_order o;
  int64_t chunk = in->chunk_rows > 0 ? in->chunk_rows : 1024;
  if (dd_order_init(&o, chunks ? DD_ORDER_CHUNKS : DD_ORDER_GLOBAL, in->n, 1, 0, chunk, 16))
    return 1;
  float *x = dd_alloc((size_t)batch * (size_t)in->xsize, sizeof(float));
  int32_t *y = dd_alloc((size_t)batch * (size_t)(in->ysize > 0 ? in->ysize : 1), sizeof(int32_t));
  int64_t *rows = dd_alloc((size_t)batch, sizeof(int64_t));
  int64_t done = 0, pos = 0;
  double t0 = dd_now(), t = t0;
  while (t - t0 < seconds) {
    for (int i = 0; i < batch; i++, pos++)
      rows[i] = dd_order_row(&o, pos % in->n);
    if (dd_source_read(s, rows, batch, x, y, NULL)) {
      fprintf(stderr, "bench_reader: %s\n", dd_error_message());
      return 1;
    }
    done += batch;
    t = dd_now();
  }
  printf("{\"file\": \"%s\", \"type\": \"%s\", \"chunk_rows\": %lld, \"compressed\": %s, \"order\": \"%s\", "
         "\"batch\": %d, \"rows\": %lld, \"seconds\": %.3f, \"rows_per_s\": %.0f}\n",
         argv[1], in->xtype, (long long)in->chunk_rows, in->compressed ? "true" : "false", order, batch,
         (long long)done, t - t0, (double)done / (t - t0));
  dd_free(x);
  dd_free(y);
  dd_free(rows);
  dd_order_free(&o);
  dd_source_close(s);
  dd_comm_finalize(c);
  return 0;
}
