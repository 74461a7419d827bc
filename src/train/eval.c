/* `ddtrain eval` and `ddtrain predict` on a checkpoint. */
#include <math.h>
#include <stdio.h>
#include <string.h>

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

int dd_predict_run(dd_comm *c, const char *ckpt, const char *data, const char *xname, const char *out_path) {
  dd_config *cfg = NULL;
  dd_source *src = NULL;
  dd_model *m = NULL;
  int64_t *pos = NULL;
  float *mine = NULL, *all = NULL, *probs = NULL;
  int32_t *pred = NULL, *lengths = NULL;
  const int rank = dd_comm_rank(c);
  int rc = dd__model_from_checkpoint(c, ckpt, data, xname, NULL, false, &cfg, &src, &m);
  int64_t lo = 0, hi = 0, N = 0;
  if (rc == DD_OK) {
    N = dd_source_get_info(src)->n;
    dd_sampler_shard(N, dd_comm_size(c), rank, &lo, &hi);
    pos = dd_alloc((size_t)m->max_batch, sizeof *pos);
    mine = dd_alloc((size_t)((hi - lo) * m->out_size + 1), sizeof(float));
    if (rank == 0)
      all = dd_alloc((size_t)(N * m->out_size), sizeof(float));
    rc = pos && mine && (rank != 0 || all) ? DD_OK : DD_ENOMEM;
  }
  rc = dd_comm_agree(c, rc);
  if (rc == DD_OK) {
    dd_split s;
    dd_split_all(N, &s);
    dd_loss_sums sums = {0};
    rc = dd__evaluate(c, m, src, &s, NULL, pos, mine, &sums);
  }
  /* rank 0 marks the padding steps of sequences as "no prediction" */
  if (rc == DD_OK && rank == 0 && dd_source_get_info(src)->lengths && m->out_rows > 1) {
    lengths = dd_alloc((size_t)N, sizeof(int32_t));
    float *scratch = dd_alloc((size_t)dd_source_get_info(src)->xsize, sizeof(float));
    rc = lengths && scratch ? DD_OK : DD_ENOMEM;
    for (int64_t i = 0; rc == DD_OK && i < N; i++)
      rc = dd_source_read(src, &i, 1, scratch, NULL, lengths + i);
    dd_free(scratch);
  }
  rc = dd_comm_bcast_status(c, rc, 0);
  if (rc == DD_OK)
    rc = dd_comm_gather_f32(c, mine, (hi - lo) * m->out_size, all, 0);
  int wrc = DD_OK;
  if (rc == DD_OK && rank == 0) {
    const bool cls = cfg->loss == DD_LOSS_CROSS_ENTROPY;
    const int64_t K = m->classes, rows = N * m->out_rows;
    dd_array arr[3];
    int narr = 0;
    arr[narr] =
        (dd_array){.name = "/output", .type = DD_F32, .ndim = 1 + m->layers[m->nlayers - 1].out.ndim, .data = all};
    arr[narr].dims[0] = N;
    for (int i = 0; i < m->layers[m->nlayers - 1].out.ndim; i++)
      arr[narr].dims[i + 1] = m->layers[m->nlayers - 1].out.d[i];
    narr++;
    if (cls) {
      probs = dd_alloc((size_t)(rows * K), sizeof(float));
      pred = dd_alloc((size_t)rows, sizeof(int32_t));
      if (!probs || !pred) {
        wrc = DD_ENOMEM;
      } else {
        for (int64_t r = 0; r < rows; r++) {
          const float *z = all + r * K;
          float *p = probs + r * K;
          int32_t arg = 0;
          for (int64_t k = 1; k < K; k++)
            if (z[k] > z[arg])
              arg = (int32_t)k;
          double sum = 0.0;
          for (int64_t k = 0; k < K; k++)
            sum += exp((double)(z[k] - z[arg]));
          for (int64_t k = 0; k < K; k++)
            p[k] = (float)(exp((double)(z[k] - z[arg])) / sum);
          pred[r] = arg;
          /* padding steps of a sequence have no prediction */
          const int64_t T = m->out_rows;
          if (T > 1 && lengths && r % T >= lengths[r / T])
            pred[r] = -1;
        }
        arr[narr] = arr[0];
        arr[narr].name = "/probs";
        arr[narr].data = probs;
        narr++;
        arr[narr] = (dd_array){.name = "/pred", .type = DD_I32, .ndim = m->out_rows > 1 ? 2 : 1, .data = pred};
        arr[narr].dims[0] = N;
        arr[narr].dims[1] = m->out_rows;
        narr++;
      }
    }
    if (wrc == DD_OK) {
      dd_attr at[3] = {{"origin", "ddtrain predict", 0}, {"checkpoint", ckpt, 0}, {"data", data, 0}};
      wrc = dd_data_write(out_path, arr, narr, at, 3);
    }
  }
  if (rc == DD_OK)
    rc = dd_comm_bcast_status(c, wrc, 0);
  dd_free(probs);
  dd_free(pred);
  dd_free(all);
  dd_free(mine);
  dd_free(pos);
  dd_free(lengths);
  dd_model_free(m);
  dd_source_close(src);
  dd_config_free(cfg);
  return rc;
}
