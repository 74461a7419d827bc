/* checkpoint: round trip of parameters, buffers and optimizer state on every
 * rank; newest-valid discovery; pruning; clear errors for wrong files. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "ddtrain/checkpoint.h"
#include "trainutil.h"

DD_TEST_GLOBALS;
static dd_comm *world;
static const char *scratch;

static dd_model *build(int units) {
  dd_layer_spec s[3];
  dd_layer_spec_defaults(&s[0], "dense");
  s[0].units = units;
  dd_layer_spec_defaults(&s[1], "tanh");
  dd_layer_spec_defaults(&s[2], "dense");
  s[2].units = 3;
  dd_model_spec spec = {.input = {1, {7}}, .nlayers = 3, .layers = s};
  dd_model *m = NULL;
  CHECK_OK(dd_model_build(&spec, 4, 0, &m));
  return m;
}

static dd_optim *make_optim(int64_t n) {
  dd_optim_spec os;
  dd_optim_spec_defaults(&os);
  os.momentum = 0.9;
  dd_optim *o = NULL;
  CHECK_OK(dd_optim_create(&os, n, &o));
  return o;
}

static void round_trip(void) {
  char dir[1024];
  snprintf(dir, sizeof dir, "%s/rt", scratch);
  tu_fresh_dir(world, dir);
  dd_model *m = build(5), *m2 = build(5);
  if (!m || !m2)
    return;
  dd_optim *o = make_optim(m->nparams), *o2 = make_optim(m2->nparams);
  if (!o || !o2)
    return;
  dd_model_init_params(m, 77);
  for (int64_t i = 0; i < m->nparams; i++)
    o->state[0][i] = (float)i * 0.25f - 3.0f;
  o->t = 17;
  dd_train_state st = {
      .step = 42, .epoch = 3, .batch = 5, .samples_seen = 999, .seed = 77, .nranks = 2, .batch_size = 8};
  char saved[1100];
  CHECK_OK(dd_checkpoint_save(world, dir, 3, m, o, &st, "model: {layers: [relu]}\n", saved, sizeof saved));
  CHECK_CONTAINS(saved, "ckpt-0000000042.h5");
  dd_train_state st2 = {0};
  CHECK_OK(dd_checkpoint_load(world, saved, m2, o2, &st2));
  CHECK(memcmp(m->params, m2->params, sizeof(float) * (size_t)m->nparams) == 0);
  CHECK(memcmp(o->state[0], o2->state[0], sizeof(float) * (size_t)m->nparams) == 0);
  CHECK_INT(o2->t, 17);
  CHECK_INT(st2.step, 42);
  CHECK_INT(st2.epoch, 3);
  CHECK_INT(st2.batch, 5);
  CHECK_INT(st2.samples_seen, 999);
  CHECK_INT(st2.batch_size, 8);
  CHECK_INT((int64_t)st2.seed, 77);
  char *text = NULL;
  dd_shape in;
  CHECK_OK(dd_checkpoint_config(world, saved, &text, &in));
  CHECK_CONTAINS(text, "layers");
  CHECK_INT(in.ndim, 1);
  CHECK_INT(in.d[0], 7);
  dd_free(text);
  /* no temporary files left behind */
  if (dd_comm_rank(world) == 0) {
    char tmp[1200];
    snprintf(tmp, sizeof tmp, "ls -a %s | grep -c tmp > /dev/null", dir);
    CHECK(system(tmp) != 0);
  }
  dd_optim_free(o);
  dd_optim_free(o2);
  dd_model_free(m);
  dd_model_free(m2);
}

/* conv + batch norm + dropout: 4-d weights, and the running statistics
 * (buffers) come back exactly; a conv of another width is refused by name */
static dd_model *build_cnn(int filters) {
  dd_layer_spec s[7];
  const char *types[] = {"conv2d", "batchnorm", "relu", "maxpool2d", "flatten", "dropout", "dense"};
  for (int i = 0; i < 7; i++)
    dd_layer_spec_defaults(&s[i], types[i]);
  s[0].filters = filters;
  s[0].kernel[0] = s[0].kernel[1] = 3;
  s[3].kernel[0] = s[3].kernel[1] = 2;
  s[6].units = 3;
  dd_model_spec spec = {.input = {3, {1, 6, 6}}, .nlayers = 7, .layers = s};
  dd_model *m = NULL;
  CHECK_OK(dd_model_build(&spec, 4, 0, &m));
  return m;
}

static void cnn_round_trip(void) {
  char dir[1024], saved[1100];
  snprintf(dir, sizeof dir, "%s/cnn", scratch);
  tu_fresh_dir(world, dir);
  dd_model *m = build_cnn(4), *m2 = build_cnn(4), *m8 = build_cnn(8);
  if (!m || !m2 || !m8)
    return;
  CHECK_INT(m->nbuffers, 8); /* running_mean, running_var of 4 channels */
  dd_model_init_params(m, 5);
  for (int64_t i = 0; i < m->nbuffers; i++)
    m->buffers[i] = 0.25f * (float)i + 0.5f;
  dd_train_state st = {.step = 7, .seed = 5, .batch_size = 4};
  CHECK_OK(dd_checkpoint_save(world, dir, 2, m, NULL, &st, "model: {layers: [relu]}\n", saved, sizeof saved));
  CHECK_OK(dd_checkpoint_load(world, saved, m2, NULL, NULL));
  CHECK(memcmp(m->params, m2->params, sizeof(float) * (size_t)m->nparams) == 0);
  CHECK(memcmp(m->buffers, m2->buffers, sizeof(float) * (size_t)m->nbuffers) == 0);
  CHECK(dd_model_checksum(m) == dd_model_checksum(m2));
  dd_error_clear();
  CHECK(dd_checkpoint_load(world, saved, m8, NULL, NULL) == DD_ECKPT);
  CHECK_CONTAINS(dd_error_message(), "/params/layer0/weight has shape 4x1x3x3 but the model expects 8x1x3x3");
  dd_error_clear();
  dd_model_free(m);
  dd_model_free(m2);
  dd_model_free(m8);
}

static void latest_and_pruning(void) {
  char dir[1024], found[1100];
  snprintf(dir, sizeof dir, "%s/prune", scratch);
  tu_fresh_dir(world, dir);
  dd_error_clear();
  CHECK(dd_checkpoint_latest(world, dir, found, sizeof found) == DD_ENOTFOUND);
  dd_error_clear();
  dd_model *m = build(4);
  if (!m)
    return;
  dd_model_init_params(m, 1);
  for (int step = 10; step <= 50; step += 10) {
    dd_train_state st = {.step = step, .batch_size = 8};
    CHECK_OK(dd_checkpoint_save(world, dir, 2, m, NULL, &st, "", NULL, 0));
  }
  CHECK_OK(dd_checkpoint_latest(world, dir, found, sizeof found));
  CHECK_CONTAINS(found, "ckpt-0000000050.h5");
  if (dd_comm_rank(world) == 0) {
    char p[1200];
    snprintf(p, sizeof p, "%s/ckpt-0000000030.h5", dir);
    CHECK(access(p, F_OK) != 0); /* pruned: keep 2 */
    snprintf(p, sizeof p, "%s/ckpt-0000000040.h5", dir);
    CHECK(access(p, F_OK) == 0);
    /* damage the newest: discovery must fall back to the previous one */
    snprintf(p, sizeof p, "%s/ckpt-0000000050.h5", dir);
    FILE *f = fopen(p, "w");
    fputs("garbage", f);
    fclose(f);
  }
  dd_comm_barrier(world);
  CHECK_OK(dd_checkpoint_latest(world, dir, found, sizeof found));
  CHECK_CONTAINS(found, "ckpt-0000000040.h5");
  dd_model_free(m);
}

static void wrong_files_are_clear_errors(void) {
  char dir[1024], saved[1100];
  snprintf(dir, sizeof dir, "%s/wrong", scratch);
  tu_fresh_dir(world, dir);
  dd_model *m5 = build(5), *m6 = build(6);
  if (!m5 || !m6)
    return;
  dd_train_state st = {.step = 1};
  CHECK_OK(dd_checkpoint_save(world, dir, 0, m5, NULL, &st, "", saved, sizeof saved));
  dd_error_clear();
  CHECK(dd_checkpoint_load(world, saved, m6, NULL, NULL) == DD_ECKPT);
  CHECK_CONTAINS(dd_error_message(), "/params/layer0/weight has shape 5x7 but the model expects 6x7");
  dd_error_clear();
  char p[1100];
  snprintf(p, sizeof p, "%s/none.h5", dir);
  CHECK(dd_checkpoint_load(world, p, m5, NULL, NULL) == DD_EIO);
  CHECK_CONTAINS(dd_error_message(), "No such file");
  dd_error_clear();
  /* an HDF5 file that is not a checkpoint (a dataset) */
  snprintf(p, sizeof p, "%s/data.h5", dir);
  dd_synth_spec s = {.samples = 5, .features = 7, .classes = 2, .seed = 1};
  CHECK_OK(tu_write_synth(world, p, &s));
  CHECK(dd_checkpoint_load(world, p, m5, NULL, NULL) == DD_ECKPT);
  CHECK_CONTAINS(dd_error_message(), "is not a ddtrain checkpoint");
  dd_error_clear();
  dd_model_free(m5);
  dd_model_free(m6);
}

int main(int argc, char **argv) {
  if (dd_comm_init(&argc, &argv, &world) || argc < 2)
    return 2;
  scratch = argv[1];
  RUN(round_trip);
  RUN(cnn_round_trip);
  RUN(latest_and_pruning);
  RUN(wrong_files_are_clear_errors);
  int f = tu_total_failures(world);
  dd_comm_finalize(world);
  return f ? 1 : 0;
}
