/* Resume exactness: a run interrupted mid-epoch and resumed from its
 * checkpoint ends bitwise identical to an uninterrupted run at the same rank
 * count, and within float tolerance when resumed at a different rank count (P -> 1 and 1 -> P)
 * (same samples in the same global batches). Add configs to the table. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ddtrain/checkpoint.h"
#include "trainutil.h"

DD_TEST_GLOBALS;
static dd_comm *world;
static const char *scratch;

typedef struct rs_case {
  const char *name;
  const char *yaml;
  dd_synth_spec data;
  int stop_at; /* optimizer step of the interruption (mid-epoch) */
} rs_case;

static const rs_case cases[] = {
    {"sgd-momentum",
     "model: {layers: [{type: dense, units: 16}, relu, {type: dense, units: 4}]}\n"
     "data: {val_fraction: 0.1}\n"
     "optim: {name: sgd, lr: 0.1, momentum: 0.9, weight_decay: 0.001}\n"
     "train: {batch_size: 10, epochs: 3, seed: 21}\n"
     "checkpoint: {every_steps: 2, keep: 2}\n",
     {.samples = 83, .features = 6, .classes = 4, .noise = 0.4, .seed = 4},
     11},
    /* one case per optimizer: every state arena and the step counter (Adam's
     * bias correction, Adagrad's lr_decay) must come back exactly; warmup +
     * cosine and clipping make the schedule position and the norm matter */
    {"sgd-nesterov-cosine-clip",
     "model: {layers: [{type: dense, units: 12}, tanh, {type: dense, units: 4}]}\n"
     "data: {val_fraction: 0.1}\n"
     "optim: {name: sgd, lr: 0.2, momentum: 0.9, nesterov: true, weight_decay: 0.01, clip_norm: 0.5}\n"
     "schedule: {name: cosine, unit: steps, warmup_steps: 6, eta_min: 0.01}\n"
     "train: {batch_size: 10, epochs: 3, seed: 22}\n"
     "checkpoint: {every_steps: 2, keep: 2}\n",
     {.samples = 83, .features = 6, .classes = 4, .noise = 0.4, .seed = 5},
     11},
    {"adam-amsgrad-cosine-clip",
     "model: {layers: [{type: dense, units: 16}, relu, {type: dense, units: 4}]}\n"
     "data: {val_fraction: 0.1}\n"
     "optim: {name: adam, lr: 0.01, amsgrad: true, weight_decay: 0.001, clip_norm: 1.0}\n"
     "schedule: {name: cosine, unit: steps, warmup_steps: 5}\n"
     "train: {batch_size: 10, epochs: 3, seed: 23}\n"
     "checkpoint: {every_steps: 2, keep: 2}\n",
     {.samples = 83, .features = 6, .classes = 4, .noise = 0.4, .seed = 6},
     11},
    {"adamw-epochs-cosine-accum",
     "model: {layers: [{type: dense, units: 16}, relu, {type: dense, units: 4}]}\n"
     "data: {val_fraction: 0.1}\n"
     "optim: {name: adamw, lr: 0.005, clip_norm: 2.0, ref_batch_size: 5}\n"
     "schedule: {name: cosine, unit: epochs, warmup_epochs: 1, eta_min: 0.0001}\n"
     "train: {batch_size: 12, epochs: 3, seed: 24, accum_steps: 3}\n"
     "checkpoint: {every_steps: 2, keep: 2}\n",
     {.samples = 83, .features = 6, .classes = 4, .noise = 0.4, .seed = 7},
     9},
    {"rmsprop-centered-onecycle",
     "model: {layers: [{type: dense, units: 16}, relu, {type: dense, units: 4}]}\n"
     "data: {val_fraction: 0.1}\n"
     "optim: {name: rmsprop, lr: 0.01, momentum: 0.5, centered: true, clip_norm: 1.0}\n"
     "schedule: {name: onecycle, unit: steps, warmup_steps: 3}\n"
     "train: {batch_size: 10, epochs: 3, seed: 25}\n"
     "checkpoint: {every_steps: 2, keep: 2}\n",
     {.samples = 83, .features = 6, .classes = 4, .noise = 0.4, .seed = 8},
     13},
    {"adagrad-multistep-decoupled",
     "model: {layers: [{type: dense, units: 16}, relu, {type: dense, units: 4}]}\n"
     "data: {val_fraction: 0.1}\n"
     "optim: {name: adagrad, lr: 0.05, lr_decay: 0.01, initial_accumulator_value: 0.1, weight_decay: 0.01, "
     "decoupled_weight_decay: true, clip_norm: 1.0}\n"
     "schedule: {name: multistep, unit: steps, milestones: [8, 14], gamma: 0.5, warmup_steps: 4}\n"
     "train: {batch_size: 10, epochs: 3, seed: 26}\n"
     "checkpoint: {every_steps: 2, keep: 2}\n",
     {.samples = 83, .features = 6, .classes = 4, .noise = 0.4, .seed = 9},
     11},
    /* batch norm running statistics (buffers) and validation in eval mode
     * with them; dropout masks of the resumed steps */
    {"cnn-bn-dropout",
     "model: {layers: [{type: conv2d, filters: 4, kernel: 3, padding: 1, bias: false}, batchnorm, relu,\n"
     "  {type: maxpool2d, kernel: 2}, flatten, {type: dropout, p: 0.3}, {type: dense, units: 4}]}\n"
     "data: {val_fraction: 0.1}\n"
     "optim: {name: sgd, lr: 0.05, momentum: 0.9}\n"
     "train: {batch_size: 10, epochs: 3, seed: 27}\n"
     "checkpoint: {every_steps: 2, keep: 2}\n",
     {.samples = 83, .classes = 4, .noise = 0.4, .seed = 10, .image = {3, {1, 6, 6}}},
     11},
    /* a per-step LSTM on variable-length sequences */
    {"lstm-per-step-adam",
     "model: {layers: [{type: embedding, vocab: 24, dim: 6}, {type: lstm, hidden: 10, sequences: true}, "
     "{type: dense, units: 3}]}\n"
     "data: {val_fraction: 0.1, lengths: /lengths}\n"
     "optim: {name: adam, lr: 0.01, clip_norm: 1.0}\n"
     "train: {batch_size: 10, epochs: 3, seed: 27}\n"
     "checkpoint: {every_steps: 2, keep: 2}\n",
     {.samples = 83, .seq_len = 8, .vocab = 24, .classes = 3, .min_len = 2, .per_step = true, .seed = 10},
     11},
    /* transformer layers with attention dropout; AdamW with decay on the
     * weight matrices only (the checkpoint records optim.decay). No biases:
     * the key bias's gradient is rounding noise that Adam amplifies
     * differently at another rank count (test_equivalence.c) */
    {"attention-adamw-decay-weights",
     "model: {layers: [{type: embedding, vocab: 24, dim: 8}, positional, {type: attention, heads: 2, p: 0.1, "
     "bias: false}, "
     "gelu, {type: dense, units: 3}]}\n"
     "data: {val_fraction: 0.1, lengths: /lengths}\n"
     "optim: {name: adamw, lr: 0.01, weight_decay: 0.1, decay: weights, clip_norm: 1.0}\n"
     "schedule: {name: cosine, unit: steps, warmup_steps: 4}\n"
     "train: {batch_size: 10, epochs: 3, seed: 28}\n"
     "checkpoint: {every_steps: 2, keep: 2}\n",
     {.samples = 83, .seq_len = 8, .vocab = 24, .classes = 3, .min_len = 2, .per_step = true, .seed = 11},
     11},
    /* a small GPT: {type: transformer} blocks with dropout and the output
     * tied to the embedding (the checkpoint's tied attribute; the table's
     * Adam moments are the embedding's) */
    {"gpt-tied",
     "model: {layers: [{type: embedding, vocab: 24, dim: 8, init: gpt2}, positional, {type: transformer, heads: 2, "
     "dropout: 0.1, bias: false}, layernorm, {type: dense, tie: embedding}]}\n"
     "data: {val_fraction: 0.1, lengths: /lengths}\n"
     "optim: {name: adamw, lr: 0.01, weight_decay: 0.1, decay: weights, clip_norm: 1.0}\n"
     "schedule: {name: cosine, unit: steps, warmup_steps: 4}\n"
     "train: {batch_size: 10, epochs: 3, seed: 29}\n"
     "checkpoint: {every_steps: 2, keep: 2}\n",
     {.samples = 83, .seq_len = 8, .vocab = 24, .classes = 6, .min_len = 2, .per_step = true, .seed = 12},
     11},
};

static void set(char *buf, size_t n, const char *key, const char *dir, const char *sub) {
  snprintf(buf, n, "%s=%s/%s", key, dir, sub);
}

static void run_case(const rs_case *k) {
  int P = dd_comm_size(world), rank = dd_comm_rank(world);
  char base[1024], data[1100], full[1100], part[1100], other[1100];
  snprintf(base, sizeof base, "%s/%s", scratch, k->name);
  tu_fresh_dir(world, base);
  snprintf(data, sizeof data, "%s/data.h5", base);
  CHECK_OK(tu_write_synth(world, data, &k->data));
  char ov_data[1200], ov_full[1200], ov_part[1200], ov_other[1200], ov_stop[64];
  snprintf(ov_data, sizeof ov_data, "data.train=%s", data);
  set(ov_full, sizeof ov_full, "checkpoint.dir", base, "full");
  set(ov_part, sizeof ov_part, "checkpoint.dir", base, "part");
  set(ov_other, sizeof ov_other, "checkpoint.dir", base, "other");
  snprintf(full, sizeof full, "%s/full", base);
  snprintf(part, sizeof part, "%s/part", base);
  snprintf(other, sizeof other, "%s/other", base);
  snprintf(ov_stop, sizeof ov_stop, "train.max_steps=%d", k->stop_at);

  /* A: uninterrupted */
  dd_train_result a, b, c;
  char *ova[] = {ov_data, ov_full};
  CHECK_OK(tu_train(world, k->yaml, 2, ova, NULL, &a));
  /* B: stopped mid-epoch, C: resumed from B's newest checkpoint */
  char *ovb[] = {ov_data, ov_part, ov_stop};
  CHECK_OK(tu_train(world, k->yaml, 3, ovb, NULL, &b));
  CHECK_INT(b.steps, k->stop_at);
  if (rank == 0) { /* keep the checkpoint at the stop for the other rank count (C prunes it) */
    char cmd[4000];
    snprintf(cmd, sizeof cmd, "mkdir -p %s && cp %s/ckpt-%010d.h5 %s/", other, part, k->stop_at, other);
    CHECK(system(cmd) == 0);
  }
  dd_comm_barrier(world);
  char *ovc[] = {ov_data, ov_part};
  CHECK_OK(tu_train(world, k->yaml, 2, ovc, "auto", &c));
  CHECK_INT(c.steps, a.steps);
  CHECK_INT(c.epochs, a.epochs);
  float *pa = NULL, *pc = NULL;
  int64_t na = 0, nc = 0;
  CHECK_OK(tu_params(world, a.last_checkpoint, &pa, &na));
  CHECK_OK(tu_params(world, c.last_checkpoint, &pc, &nc));
  CHECK_INT(na, nc);
  if (pa && pc && na == nc) {
    bool same = memcmp(pa, pc, sizeof(float) * (size_t)na) == 0;
    if (!same)
      DD_FAIL_AT("%s: resumed run differs from the uninterrupted one at %d ranks (max rel diff %.3g); must be "
                 "bitwise equal",
                 k->name, P, tu_rel_diff(pc, pa, na));
  }
  /* same validation too, bit for bit */
  CHECK(a.val_loss == c.val_loss || (isnan(a.val_loss) && isnan(c.val_loss)));

  /* D: the interrupted run resumed at a different rank count (1 rank on
   * rank 0, from the copy of B's checkpoint at the stop) */
  if (rank == 0 && P > 1) {
    dd_comm *self = NULL;
    CHECK_OK(dd_comm_self(&self));
    dd_train_result d;
    char *ovd[] = {ov_data, ov_other};
    CHECK_OK(tu_train(self, k->yaml, 2, ovd, "auto", &d));
    CHECK_INT(d.steps, a.steps);
    CHECK(d.steps > k->stop_at);
    float *pd = NULL;
    int64_t nd = 0;
    CHECK_OK(tu_params(self, d.last_checkpoint, &pd, &nd));
    if (pd && pa && nd == na) {
      double diff = tu_rel_diff(pd, pa, na);
      printf("  %-14s resumed at 1 rank vs uninterrupted at %d: max rel diff %.3g\n", k->name, P, diff);
      if (!(diff <= 1e-5))
        DD_FAIL_AT("%s: resume at 1 rank differs by %.3g", k->name, diff);
    }
    dd_free(pd);
    dd_comm_finalize(self);
  }

  /* E: the other direction, scaling up: stopped on 1 rank (rank 0 alone),
   * resumed on all P ranks */
  if (P > 1) {
    char up[1100], ov_up[1200];
    snprintf(up, sizeof up, "%s/up", base);
    set(ov_up, sizeof ov_up, "checkpoint.dir", base, "up");
    if (rank == 0) {
      dd_comm *self = NULL;
      CHECK_OK(dd_comm_self(&self));
      dd_train_result e1;
      char *ove[] = {ov_data, ov_up, ov_stop};
      CHECK_OK(tu_train(self, k->yaml, 3, ove, NULL, &e1));
      CHECK_INT(e1.steps, k->stop_at);
      dd_comm_finalize(self);
    }
    dd_comm_barrier(world);
    dd_train_result e;
    char *ove[] = {ov_data, ov_up};
    CHECK_OK(tu_train(world, k->yaml, 2, ove, "auto", &e));
    CHECK_INT(e.steps, a.steps);
    float *pe = NULL;
    int64_t ne = 0;
    CHECK_OK(tu_params(world, e.last_checkpoint, &pe, &ne));
    if (pe && pa && ne == na) {
      double diff = tu_rel_diff(pe, pa, na);
      if (rank == 0)
        printf("  %-14s stopped at 1 rank, resumed at %d vs uninterrupted at %d: max rel diff %.3g\n", k->name, P, P,
               diff);
      if (!(diff <= 1e-5))
        DD_FAIL_AT("%s: stopped at 1 rank and resumed at %d differs by %.3g", k->name, P, diff);
    }
    dd_free(pe);
  }
  dd_free(pa);
  dd_free(pc);
  dd_comm_barrier(world);
}

static void resumed_equals_uninterrupted(void) {
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    run_case(&cases[i]);
}

/* A character LSTM trained on a `data text` file: its checkpoint carries
 * the vocabulary, rebuilds the same model and evaluates to the validation
 * loss the run reported. */
static void lstm_text_checkpoint_round_trip(void) {
  char base[1024], txt[1100], data[1100], ov_data[1200], ov_val[1200], ov_dir[1200];
  snprintf(base, sizeof base, "%s/text", scratch);
  tu_fresh_dir(world, base);
  snprintf(txt, sizeof txt, "%s/corpus.txt", base);
  snprintf(data, sizeof data, "%s/text.h5", base);
  int rc = DD_OK;
  int64_t nvocab = 0;
  int32_t vocab[64];
  if (dd_comm_rank(world) == 0) {
    FILE *f = fopen(txt, "w");
    for (int i = 0; f && i < 300; i++) /* é: a two-byte character */
      fprintf(f, "%s", i % 3 ? "the cat sat on the mat. " : "caf\u00e9 au lait!\n");
    if (f)
      fclose(f);
    dd_dataset *ds = NULL;
    rc = dd_data_text(txt, 16, 5, NULL, 0, &ds);
    if (rc == DD_OK) {
      nvocab = ds->nvocab;
      memcpy(vocab, ds->vocab, sizeof(int32_t) * (size_t)(nvocab < 64 ? nvocab : 64));
      rc = dd_data_save(ds, data, "test");
    }
    dd_data_free(ds);
  }
  CHECK_OK(dd_comm_bcast_status(world, rc, 0));
  dd_comm_bcast(world, &nvocab, sizeof nvocab, 0);
  dd_comm_bcast(world, vocab, sizeof vocab, 0);
  CHECK(nvocab > 10 && nvocab < 64);
  const char *yaml = "model: {layers: [{type: embedding, vocab: 30, dim: 8}, {type: lstm, hidden: 16, sequences: "
                     "true}, {type: dense, units: 30}]}\n"
                     "optim: {name: adam, lr: 0.01}\n"
                     "train: {batch_size: 16, epochs: 2, seed: 3}\n";
  snprintf(ov_data, sizeof ov_data, "data.train=%s", data);
  snprintf(ov_val, sizeof ov_val, "data.val=%s", data);
  snprintf(ov_dir, sizeof ov_dir, "checkpoint.dir=%s/run", base);
  char *ov[] = {ov_data, ov_val, ov_dir};
  dd_train_result res;
  CHECK_OK(tu_train(world, yaml, 3, ov, NULL, &res));
  int32_t *v = NULL;
  int64_t n = 0;
  CHECK_OK(dd_checkpoint_vocab(world, res.last_checkpoint, &v, &n));
  CHECK_INT(n, nvocab);
  if (v && n == nvocab)
    CHECK(memcmp(v, vocab, sizeof(int32_t) * (size_t)n) == 0);
  CHECK(n > 0 && v && v[n - 1] == 0xe9); /* the largest code point, last */
  dd_free(v);
  dd_eval_result ev;
  CHECK_OK(dd_eval_run(world, res.last_checkpoint, data, NULL, NULL, &ev));
  CHECK_NEAR(ev.loss, res.val_loss, 1e-6);
  CHECK(res.val_loss < log(nvocab)); /* it learnt something */
}

static void fresh_run_refuses_old_checkpoints(void) {
  /* the run directory of the first case holds checkpoints: a fresh run must
   * refuse to mix with them, and say how to continue */
  char dir[1100], ov_dir[1200], ov_data[1200];
  snprintf(dir, sizeof dir, "%s/%s/full", scratch, cases[0].name);
  snprintf(ov_dir, sizeof ov_dir, "checkpoint.dir=%s", dir);
  snprintf(ov_data, sizeof ov_data, "data.train=%s/%s/data.h5", scratch, cases[0].name);
  char *ov[] = {ov_data, ov_dir};
  dd_error_clear();
  CHECK(tu_train(world, cases[0].yaml, 2, ov, NULL, NULL) == DD_ECONFIG);
  CHECK_CONTAINS(dd_error_message(), "--resume auto");
  dd_error_clear();
  /* resuming a finished run does nothing and succeeds */
  dd_train_result r;
  CHECK_OK(tu_train(world, cases[0].yaml, 2, ov, "auto", &r));
}

int main(int argc, char **argv) {
  if (dd_comm_init(&argc, &argv, &world) || argc < 2)
    return 2;
  scratch = argv[1];
  RUN(resumed_equals_uninterrupted);
  RUN(lstm_text_checkpoint_round_trip);
  RUN(fresh_run_refuses_old_checkpoints);
  int f = tu_total_failures(world);
  dd_comm_finalize(world);
  return f ? 1 : 0;
}
