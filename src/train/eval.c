/* `ddtrain eval` and `ddtrain predict` on a checkpoint. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "session.h"

int dd_eval_run(dd_comm *c, const char *ckpt, const char *data, const char *xname, const char *yname,
                dd_eval_result *res) {
  memset(res, 0, sizeof *res);
  dd_config *cfg = NULL;
  dd_source *src = NULL;
  dd_model *m = NULL;
  void *ybuf = NULL;
  int64_t *rows = NULL;
  int rc = dd__model_from_checkpoint(c, ckpt, data, xname, yname, true, &cfg, &src, &m);
  if (rc == DD_OK) {
    ybuf = dd_alloc((size_t)m->max_batch, dd_source_label_bytes(src));
    rows = dd_alloc((size_t)m->max_batch, sizeof *rows);
    rc = ybuf && rows ? DD_OK : DD_ENOMEM;
  }
  rc = dd_comm_agree(c, rc);
  dd_loss_sums s = {0};
  if (rc == DD_OK) {
    dd_split all;
    dd_split_all(dd_source_get_info(src)->n, &all);
    rc = dd__evaluate(c, m, src, &all, ybuf, rows, NULL, &s);
  }
  if (rc == DD_OK) {
    res->n = dd_source_get_info(src)->n;
    res->classification = cfg->loss == DD_LOSS_CROSS_ENTROPY;
    res->loss = s.count > 0 ? s.loss / s.count : NAN;
    res->accuracy = res->classification && s.count > 0 ? s.correct / s.count : NAN;
  }
  dd_free(ybuf);
  dd_free(rows);
  dd_model_free(m);
  dd_source_close(src);
  dd_config_free(cfg);
  return rc;
}

/* An output that is one of the inputs would replace it (the rename at the end). */
static int same_file(const char *a, const char *b) {
  struct stat sa, sb;
  return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* Softmax and argmax of K logits per row; rows past a sequence's length get no prediction (-1). */
static void classify(const float *z, int64_t rows, int64_t K, int64_t T, const int32_t *lengths, float *probs,
                     int32_t *pred) {
  for (int64_t r = 0; r < rows; r++) {
    const float *zr = z + r * K;
    float *p = probs + r * K;
    int32_t arg = 0;
    for (int64_t k = 1; k < K; k++)
      if (zr[k] > zr[arg])
        arg = (int32_t)k;
    double sum = 0.0;
    for (int64_t k = 0; k < K; k++)
      sum += exp((double)(zr[k] - zr[arg]));
    for (int64_t k = 0; k < K; k++)
      p[k] = (float)(exp((double)(zr[k] - zr[arg])) / sum);
    pred[r] = arg;
    if (T > 1 && lengths && r % T >= lengths[r / T])
      pred[r] = -1;
  }
}

/* Predictions in rounds of P x the model's batch: each rank runs its share of
 * the round, rank 0 gathers the round (in row order) and writes it; memory is
 * a round's outputs, whatever the dataset's size. */
int dd_predict_run(dd_comm *c, const char *ckpt, const char *data, const char *xname, const char *out_path) {
  dd_config *cfg = NULL;
  dd_source *src = NULL;
  dd_model *m = NULL;
  dd_writer *w = NULL;
  int64_t *rows = NULL;
  float *round = NULL, *probs = NULL, *xs = NULL;
  int32_t *pred = NULL, *lengths = NULL;
  const int rank = dd_comm_rank(c), P = dd_comm_size(c);
  int rc = DD_OK;
  if (same_file(out_path, data) || same_file(out_path, ckpt))
    rc = dd_error(DD_EINVAL,
                  "--out '%s' is the %s itself; writing predictions there would replace it: pick another file",
                  out_path, same_file(out_path, data) ? "dataset" : "checkpoint");
  rc = dd_comm_agree(c, rc);
  if (rc == DD_OK)
    rc = dd__model_from_checkpoint(c, ckpt, data, xname, NULL, false, &cfg, &src, &m);
  int64_t N = 0, R = 0;
  bool cls = false;
  const dd_layer *last = NULL;
  if (rc == DD_OK) {
    N = dd_source_get_info(src)->n;
    R = (int64_t)P * m->max_batch;
    cls = cfg->loss == DD_LOSS_CROSS_ENTROPY;
    last = &m->layers[m->nlayers - 1];
    rows = dd_alloc((size_t)m->max_batch, sizeof *rows);
    if (rank == 0) {
      round = dd_alloc((size_t)(R * m->out_size), sizeof(float));
      if (cls) {
        probs = dd_alloc((size_t)(R * m->out_size), sizeof(float));
        pred = dd_alloc((size_t)(R * m->out_rows), sizeof(int32_t));
      }
      if (dd_source_get_info(src)->lengths) {
        lengths = dd_alloc((size_t)R, sizeof(int32_t));
        xs = dd_alloc((size_t)dd_source_get_info(src)->xsize, sizeof(float));
      }
    }
    rc = rows && (rank != 0 ||
                  (round && (!cls || (probs && pred)) && (!dd_source_get_info(src)->lengths || (lengths && xs))))
             ? DD_OK
             : DD_ENOMEM;
  }
  rc = dd_comm_agree(c, rc);
  if (rc == DD_OK && rank == 0) {
    dd_array arr[3];
    memset(arr, 0, sizeof arr);
    int narr = 0;
    arr[narr] = (dd_array){.name = "/output", .type = DD_F32, .ndim = 1 + last->out.ndim};
    arr[narr].dims[0] = N;
    for (int i = 0; i < last->out.ndim; i++)
      arr[narr].dims[i + 1] = last->out.d[i];
    narr++;
    if (cls) {
      arr[narr] = arr[0];
      arr[narr++].name = "/probs";
      arr[narr] = (dd_array){.name = "/pred", .type = DD_I32, .ndim = m->out_rows > 1 ? 2 : 1};
      arr[narr].dims[0] = N;
      arr[narr++].dims[1] = m->out_rows;
    }
    dd_attr at[3] = {{"origin", "ddtrain predict", 0}, {"checkpoint", ckpt, 0}, {"data", data, 0}};
    rc = dd_writer_create(out_path, arr, narr, at, 3, &w);
  }
  rc = dd_comm_bcast_status(c, rc, 0);
  for (int64_t r0 = 0; rc == DD_OK && r0 < N; r0 += R) {
    const int64_t rn = N - r0 < R ? N - r0 : R;
    int64_t lo, hi;
    dd_sampler_shard(rn, P, rank, &lo, &hi);
    const int n = (int)(hi - lo);
    for (int i = 0; i < n; i++)
      rows[i] = r0 + lo + i;
    int lrc = dd_source_read(src, rows, n, m->acts[0], NULL, NULL);
    dd_pass p = {.B = n, .B_global = N, .sample0 = r0 + lo, .train = false};
    if (lrc == DD_OK && n > 0)
      lrc = dd_model_forward(m, &p);
    rc = dd_comm_agree(c, lrc);
    if (rc == DD_OK)
      rc = dd_comm_gather_f32(c, m->acts[m->nlayers], (int64_t)n * m->out_size, round, 0);
    int wrc = DD_OK;
    if (rc == DD_OK && rank == 0) {
      for (int64_t i = 0; lengths && wrc == DD_OK && i < rn; i++) {
        int64_t row = r0 + i;
        wrc = dd_source_read(src, &row, 1, xs, NULL, lengths + i);
      }
      if (wrc == DD_OK)
        wrc = dd_writer_rows(w, 0, r0, rn, round);
      if (wrc == DD_OK && cls) {
        classify(round, rn * m->out_rows, m->classes, m->out_rows, lengths, probs, pred);
        wrc = dd_writer_rows(w, 1, r0, rn, probs);
        if (wrc == DD_OK)
          wrc = dd_writer_rows(w, 2, r0, rn, pred);
      }
    }
    if (rc == DD_OK)
      rc = dd_comm_bcast_status(c, wrc, 0);
  }
  if (rank == 0 && w) {
    if (rc == DD_OK)
      rc = dd_writer_commit(w);
    else
      dd_writer_abort(w);
  }
  rc = dd_comm_bcast_status(c, rc, 0);
  dd_free(rows);
  dd_free(round);
  dd_free(probs);
  dd_free(pred);
  dd_free(lengths);
  dd_free(xs);
  dd_model_free(m);
  dd_source_close(src);
  dd_config_free(cfg);
  return rc;
}
