/* Gradient clipping by global norm, after the allreduce: every rank computes
 * the same norm (bit for bit) and takes the same clipped step, the norm is
 * that of the averaged gradient, and the trainer's step has the clipped
 * length and logs the norm. Also: the cross-rank equality check reports a
 * mismatch on every rank. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ddtrain/config.h"
#include "ddtrain/optim.h"
#include "trainutil.h"

DD_TEST_GLOBALS;
static dd_comm *world;
static const char *scratch;

/* rank q's local gradient sum for entry i */
static float local_grad(int q, int i) {
  return (dd_hash_uniform(dd_hash3(7, (uint64_t)q, (uint64_t)i)) - 0.5f) * (float)(q + 1);
}

static uint64_t bits(double x) {
  uint64_t u;
  memcpy(&u, &x, sizeof u);
  return u;
}

/* The cross-rank checksum comparison the trainer runs after the broadcast (and at
 * the end) must report a mismatch on every rank when any one rank differs. */
static void same_u64_detects_a_differing_rank(void) {
  const int P = dd_comm_size(world), rank = dd_comm_rank(world);
  bool same = false;
  CHECK_OK(dd_comm_same_u64(world, 0x0123456789abcdefull, &same));
  CHECK(same);
  for (int odd = 0; odd < P; odd++) {
    same = true;
    CHECK_OK(dd_comm_same_u64(world, 0x0123456789abcdefull ^ (rank == odd ? 1ull << (odd % 64) : 0), &same));
    CHECK(same == (P == 1));
  }
}

static void same_norm_and_step_on_all_ranks(void) {
  enum { N = 1003 };
  const int P = dd_comm_size(world), rank = dd_comm_rank(world);
  float g[N], p[N];
  for (int i = 0; i < N; i++)
    g[i] = local_grad(rank, i);
  CHECK_OK(dd_comm_allreduce_f32(world, g, N));
  const double scale = 1.0 / (3.0 * P); /* 1 / global count */
  const double norm = dd_optim_grad_norm(g, N, scale);
  bool same = false;
  CHECK_OK(dd_comm_same_u64(world, bits(norm), &same));
  CHECK(same);
  /* the exact norm of the averaged gradient (float allreduce rounding aside) */
  double ss = 0;
  for (int i = 0; i < N; i++) {
    double s = 0;
    for (int q = 0; q < P; q++)
      s += local_grad(q, i);
    ss += s * s;
  }
  CHECK_NEAR(norm, scale * sqrt(ss), 1e-6 * norm);
  /* clip to a tenth: SGD with lr 1 from zero moves by exactly the clipped gradient */
  const double f = dd_optim_clip_factor(norm, 0.1 * norm);
  CHECK_NEAR(f, 0.1, 1e-6);
  dd_optim_spec s;
  dd_optim_spec_defaults(&s);
  s.lr = 1.0;
  dd_optim *o = NULL;
  CHECK_OK(dd_optim_create(&s, N, &o));
  memset(p, 0, sizeof p);
  if (o)
    dd_optim_step(o, p, g, (float)(scale * f), 1.0);
  dd_optim_free(o);
  CHECK_OK(dd_comm_same_u64(world, dd_fnv1a(p, sizeof p, DD_FNV_OFFSET), &same));
  CHECK(same);
  CHECK_NEAR(dd_optim_grad_norm(p, N, 1.0), 0.1 * norm, 1e-5 * norm);
}

/* Train one step of SGD with lr 1 and return ||p1 - p0|| and the logged norm. */
static void one_step(const char *name, double clip, double *moved, double *logged) {
  char data[1024], dir[1100], ov_data[1200], ov_dir[1200], ov_clip[64], metrics[1200];
  snprintf(data, sizeof data, "%s/clip.h5", scratch);
  snprintf(dir, sizeof dir, "%s/%s", scratch, name);
  dd_synth_spec d = {.samples = 40, .features = 7, .classes = 3, .noise = 0.5, .seed = 3};
  CHECK_OK(tu_write_synth(world, data, &d));
  tu_fresh_dir(world, dir);
  snprintf(ov_data, sizeof ov_data, "data.train=%s", data);
  snprintf(ov_dir, sizeof ov_dir, "checkpoint.dir=%s", dir);
  snprintf(ov_clip, sizeof ov_clip, "optim.clip_norm=%g", clip);
  char *ov[] = {ov_data, ov_dir, ov_clip};
  const char *yaml = "model: {layers: [{type: dense, units: 9}, tanh, {type: dense, units: 3}]}\n"
                     "optim: {name: sgd, lr: 1.0}\n"
                     "train: {batch_size: 8, epochs: 1, seed: 11, max_steps: 1, log_every: 1}\n";
  dd_train_result res;
  *moved = *logged = NAN;
  CHECK_OK(tu_train(world, yaml, 3, ov, NULL, &res));
  float *p1 = NULL;
  int64_t n = 0;
  CHECK_OK(tu_params(world, res.last_checkpoint, &p1, &n));
  dd_config *cfg = NULL;
  dd_model *m = NULL;
  CHECK_OK(dd_model_from_checkpoint(world, res.last_checkpoint, 1, &cfg, &m));
  if (m && p1) {
    dd_model_init_params(m, (uint64_t)cfg->seed); /* p0 */
    double ss = 0;
    for (int64_t i = 0; i < m->nparams; i++)
      ss += ((double)p1[i] - m->params[i]) * ((double)p1[i] - m->params[i]);
    *moved = sqrt(ss);
  }
  if (dd_comm_rank(world) == 0) {
    snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", dir);
    FILE *f = fopen(metrics, "r");
    char line[2048];
    while (f && fgets(line, sizeof line, f)) {
      const char *k = strstr(line, "\"grad_norm\": ");
      if (strstr(line, "\"event\": \"step\"") && k)
        *logged = atof(k + strlen("\"grad_norm\": "));
    }
    if (f)
      fclose(f);
  }
  dd_comm_bcast(world, logged, sizeof *logged, 0);
  dd_free(p1);
  dd_model_free(m);
  dd_config_free(cfg);
}

static void trainer_clips_the_step(void) {
  double moved, logged, moved_c, logged_c;
  one_step("noclip", 0.0, &moved, &logged);
  /* without clipping the step of SGD(lr 1) is the averaged gradient: its
   * length is the logged norm */
  CHECK_NEAR(moved, logged, 1e-5 * logged);
  CHECK(logged > 0.05);
  one_step("clip", 0.05, &moved_c, &logged_c);
  CHECK(logged_c == logged); /* the norm before clipping */
  CHECK_NEAR(moved_c, 0.05, 1e-5);
  if (dd_comm_rank(world) == 0)
    printf("  grad norm %.6g, step %.6g unclipped, %.6g clipped to 0.05\n", logged, moved, moved_c);
}

int main(int argc, char **argv) {
  if (dd_comm_init(&argc, &argv, &world) || argc < 2)
    return 2;
  scratch = argv[1];
  RUN(same_u64_detects_a_differing_rank);
  RUN(same_norm_and_step_on_all_ranks);
  RUN(trainer_clips_the_step);
  int f = tu_total_failures(world);
  dd_comm_finalize(world);
  return f ? 1 : 0;
}
