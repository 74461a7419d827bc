/* The distributed invariant: N ranks with global batch B take the same steps
 * as one rank with B. Each case trains on the world communicator and, on
 * rank 0, on a one-rank communicator, then compares the final parameters:
 * relative error <= tol (bitwise at one rank). Add cases to the table. */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "trainutil.h"

DD_TEST_GLOBALS;
static dd_comm *world;
static const char *scratch;

typedef struct eq_case {
  const char *name;
  const char *yaml; /* data.train and checkpoint.dir are filled in */
  dd_synth_spec data;
  int steps;
  double tol;
  const char *ref_ov; /* override for the one-rank reference only (NULL = none) */
} eq_case;

static const eq_case cases[] = {
    {"mlp-ce",
     "model: {layers: [{type: dense, units: 16}, relu, {type: dense, units: 16}, tanh, {type: dense, units: 5}]}\n"
     "optim: {name: sgd, lr: 0.1, momentum: 0.9, weight_decay: 0.0001}\n"
     "train: {batch_size: 12, epochs: 3, seed: 5}\n",
     {.samples = 50, .features = 8, .classes = 5, .noise = 0.3, .seed = 1},
     0,
     1e-5,
     NULL},
    {"mlp-mse-uneven",
     "model: {layers: [{type: dense, units: 10}, sigmoid, {type: dense, units: 3}], loss: mse}\n"
     "optim: {name: sgd, lr: 0.05, momentum: 0.5, nesterov: true}\n"
     "train: {batch_size: 7, epochs: 2, seed: 9}\n",
     {.regression = true, .samples = 45, .features = 6, .classes = 3, .noise = 0.1, .seed = 2},
     0,
     1e-5,
     NULL},
    {"mlp-drop-last",
     "model: {layers: [{type: dense, units: 8}, relu, {type: dense, units: 3}]}\n"
     "data: {drop_last: true, val_fraction: 0.2}\n"
     "optim: {name: sgd, lr: 0.2}\n"
     "train: {batch_size: 9, epochs: 2, seed: 3}\n",
     {.samples = 61, .features = 5, .classes = 3, .noise = 0.5, .seed = 3},
     0,
     1e-5,
     NULL},
    /* gradient accumulation: N ranks x 3 micro-batches == 1 rank, 1 batch */
    {"mlp-accum3-vs-1",
     "model: {layers: [{type: dense, units: 16}, relu, {type: dense, units: 5}]}\n"
     "optim: {name: sgd, lr: 0.1, momentum: 0.9}\n"
     "train: {batch_size: 12, epochs: 2, seed: 5, accum_steps: 3}\n",
     {.samples = 50, .features = 8, .classes = 5, .noise = 0.3, .seed = 1},
     0,
     1e-5,
     "train.accum_steps=1"},
    /* uneven shares and a short last batch: some ranks get empty micro-batches */
    {"mlp-accum3-uneven",
     "model: {layers: [{type: dense, units: 10}, tanh, {type: dense, units: 4}]}\n"
     "optim: {name: sgd, lr: 0.05, momentum: 0.5}\n"
     "train: {batch_size: 10, epochs: 2, seed: 8, accum_steps: 3}\n",
     {.samples = 47, .features = 6, .classes = 4, .noise = 0.3, .seed = 6},
     0,
     1e-5,
     "train.accum_steps=1"},
    /* train.micro_batch: 2 samples at a time on every rank (12 / N per rank in ceil(12 / N / 2) micro-batches) */
    {"mlp-micro2-vs-whole",
     "model: {layers: [{type: dense, units: 16}, relu, {type: dense, units: 5}]}\n"
     "optim: {name: sgd, lr: 0.1, momentum: 0.9}\n"
     "train: {batch_size: 12, epochs: 2, seed: 5, micro_batch: 2}\n",
     {.samples = 50, .features = 8, .classes = 5, .noise = 0.3, .seed = 1},
     0,
     1e-5,
     "train.micro_batch=0"},
    {"mlp-accum1-vs-4",
     "model: {layers: [{type: dense, units: 12}, relu, {type: dense, units: 3}]}\n"
     "optim: {name: sgd, lr: 0.1}\n"
     "train: {batch_size: 16, epochs: 2, seed: 2}\n",
     {.samples = 40, .features = 5, .classes = 3, .noise = 0.3, .seed = 7},
     0,
     1e-5,
     "train.accum_steps=4"},
    /* Adam, warmup + cosine, clipping that bites, accumulation */
    {"mlp-adam-clip-sched",
     "model: {layers: [{type: dense, units: 16}, relu, {type: dense, units: 4}]}\n"
     "optim: {name: adam, lr: 0.01, clip_norm: 0.5, ref_batch_size: 8}\n"
     "schedule: {name: cosine, unit: steps, warmup_steps: 5, eta_min: 0.001}\n"
     "train: {batch_size: 16, epochs: 2, seed: 4, accum_steps: 2}\n",
     {.samples = 60, .features = 6, .classes = 4, .noise = 0.4, .seed = 5},
     0,
     1e-5,
     NULL},
    /* CNN with batch norm (global-batch statistics, running stats compared
     * too) and dropout (masks by global position); 50 = 4 x 12 + 2: in the
     * last batch some ranks have no sample but still join the allreduces */
    {"cnn-bn-dropout",
     "model: {layers: [{type: conv2d, filters: 4, kernel: 3, padding: 1, bias: false}, batchnorm, relu,\n"
     "  {type: maxpool2d, kernel: 2}, {type: conv2d, filters: 6, kernel: 3}, {type: batchnorm, momentum: 0.3},\n"
     "  relu, flatten, {type: dropout, p: 0.3}, {type: dense, units: 4}]}\n"
     "optim: {name: sgd, lr: 0.05, momentum: 0.9}\n"
     "train: {batch_size: 12, epochs: 2, seed: 7}\n",
     {.samples = 50, .classes = 4, .noise = 0.3, .seed = 3, .image = {3, {1, 8, 8}}},
     0,
     1e-5,
     NULL},
    /* non-square kernels, strides and paddings ([height, width]) in conv2d and both pools */
    {"cnn-nonsquare",
     "model: {layers: [{type: conv2d, filters: 4, kernel: [2, 3], stride: [1, 2], padding: [1, 0]}, relu,\n"
     "  {type: maxpool2d, kernel: [3, 2], stride: [2, 1], padding: [1, 0]}, {type: avgpool2d, kernel: [1, 3]},\n"
     "  flatten, {type: dense, units: 4}]}\n"
     "optim: {name: sgd, lr: 0.05, momentum: 0.9}\n"
     "train: {batch_size: 12, epochs: 2, seed: 9}\n",
     {.samples = 50, .classes = 4, .noise = 0.3, .seed = 5, .image = {3, {1, 8, 9}}},
     0,
     1e-5,
     NULL},
    /* flat [N, D] data with a declared image shape; uneven shares (10 over 4
     * ranks: 3, 3, 2, 2), average pooling, global average pooling, batch
     * norm over features, Adam. No bias right before a batch norm: its
     * gradient is 0 up to rounding, and Adam would turn that noise into
     * steps that differ with the rank count. */
    {"cnn-declared-input-uneven",
     "model:\n"
     "  input: [2, 6, 6]\n"
     "  layers: [{type: conv2d, filters: 5, kernel: 3, stride: 1, padding: 1, bias: false}, batchnorm, tanh,\n"
     "    {type: avgpool2d, kernel: 2}, {type: conv2d, filters: 6, kernel: 2}, relu, global_avgpool,\n"
     "    {type: dense, units: 8, bias: false}, batchnorm, {type: dropout, p: 0.2}, relu, {type: dense, units: 3}]\n"
     "optim: {name: adam, lr: 0.01}\n"
     "train: {batch_size: 10, epochs: 2, seed: 12}\n",
     {.samples = 47, .features = 72, .classes = 3, .noise = 0.3, .seed = 4},
     0,
     1e-5,
     NULL},
    /* sequences: a per-step LSTM model on variable-length data (lengths
     * dataset), uneven shares; a many-to-one GRU -> RNN classifier with a pad id */
    {"lstm-per-step-lengths",
     "model: {layers: [{type: embedding, vocab: 20, dim: 6}, {type: lstm, hidden: 8, sequences: true}, "
     "{type: dense, units: 3}]}\n"
     "data: {lengths: /lengths}\n"
     "optim: {name: sgd, lr: 0.1, momentum: 0.9}\n"
     "train: {batch_size: 11, epochs: 2, seed: 5}\n",
     {.samples = 50, .seq_len = 7, .vocab = 20, .classes = 3, .min_len = 2, .per_step = true, .seed = 1},
     0,
     1e-5,
     NULL},
    {"gru-rnn-many-to-one-pad",
     "model: {layers: [{type: embedding, vocab: 16, dim: 5}, {type: gru, hidden: 6, sequences: true}, layernorm, "
     "{type: rnn, hidden: 5}, {type: dense, units: 2}]}\n"
     "data: {pad_id: 0}\n"
     "optim: {name: adam, lr: 0.01}\n"
     "train: {batch_size: 10, epochs: 2, seed: 6, accum_steps: 2}\n",
     {.samples = 45, .seq_len = 9, .vocab = 16, .classes = 2, .min_len = 3, .seed = 2},
     0,
     1e-5,
     NULL},
    /* transformer layers on variable-length data: positions, causal attention
     * with attention dropout (counter-based masks), GELU MLP; decoupled decay
     * on the weight matrices only. SGD, not Adam: the key block of qkv_bias
     * has a true gradient of 0 (it adds a constant to each row of scores),
     * and Adam would turn its rounding noise, which differs with the rank
     * count, into steps of lr * noise / eps (1e-4 apart after 8 steps, while
     * every other entry agrees to 6e-8) */
    {"attention-per-step-lengths",
     "model: {layers: [{type: embedding, vocab: 20, dim: 8}, positional, layernorm, {type: attention, heads: 2, "
     "p: 0.2}, layernorm, {type: dense, units: 16}, gelu, {type: dense, units: 3}]}\n"
     "data: {lengths: /lengths}\n"
     "optim: {name: sgd, lr: 0.1, momentum: 0.9, weight_decay: 0.1, decoupled_weight_decay: true, decay: "
     "weights}\n"
     "train: {batch_size: 11, epochs: 2, seed: 7}\n",
     {.samples = 50, .seq_len = 7, .vocab = 20, .classes = 3, .min_len = 2, .per_step = true, .seed = 3},
     0,
     1e-5,
     NULL},
    /* a small GPT: two {type: transformer} blocks (residual sums, dropout
     * in the attention and after each half) and the output tied to the
     * token embedding (the table's gradient sums two uses before the
     * allreduce); AdamW with decay on the weight matrices, the tied table
     * among them. Without biases in the blocks, as in the case above */
    {"gpt-tied",
     "model: {layers: [{type: embedding, vocab: 20, dim: 8, init: gpt2}, positional, {type: transformer, heads: 2, "
     "dropout: 0.1, bias: false}, {type: transformer, heads: 2, mlp: 2, bias: false}, layernorm, {type: dense, "
     "tie: embedding}]}\n"
     "data: {lengths: /lengths}\n"
     "optim: {name: adamw, lr: 0.01, weight_decay: 0.1, decay: weights, clip_norm: 1.0}\n"
     "train: {batch_size: 11, epochs: 2, seed: 8}\n",
     {.samples = 50, .seq_len = 7, .vocab = 20, .classes = 6, .min_len = 2, .per_step = true, .seed = 4},
     0,
     1e-5,
     NULL},
};

static void run_case(const eq_case *k) {
  char data[1024], dir[1024], ref[1024], ov_data[1100], ov_dir[1100], ov_ref[1100], ov_steps[64];
  int P = dd_comm_size(world);
  snprintf(data, sizeof data, "%s/%s.h5", scratch, k->name);
  snprintf(dir, sizeof dir, "%s/%s-np%d", scratch, k->name, P);
  snprintf(ref, sizeof ref, "%s/%s-ref", scratch, k->name);
  CHECK_OK(tu_write_synth(world, data, &k->data));
  tu_fresh_dir(world, dir);
  tu_fresh_dir(world, ref);
  snprintf(ov_data, sizeof ov_data, "data.train=%s", data);
  snprintf(ov_dir, sizeof ov_dir, "checkpoint.dir=%s", dir);
  snprintf(ov_ref, sizeof ov_ref, "checkpoint.dir=%s", ref);
  snprintf(ov_steps, sizeof ov_steps, "train.max_steps=%d", k->steps);
  char *ov[] = {ov_data, ov_dir, ov_steps};
  dd_train_result res;
  CHECK_OK(tu_train(world, k->yaml, 3, ov, NULL, &res));
  float *mine = NULL, *theirs = NULL;
  int64_t n = 0, n2 = 0;
  CHECK_OK(tu_params(world, res.last_checkpoint, &mine, &n));
  if (dd_comm_rank(world) == 0) {
    dd_comm *self = NULL;
    CHECK_OK(dd_comm_self(&self));
    char ref_ov[256];
    snprintf(ref_ov, sizeof ref_ov, "%s", k->ref_ov ? k->ref_ov : "");
    char *ovr[] = {ov_data, ov_ref, ov_steps, ref_ov};
    dd_train_result rr;
    CHECK_OK(tu_train(self, k->yaml, k->ref_ov ? 4 : 3, ovr, NULL, &rr));
    CHECK_INT(rr.steps, res.steps);
    CHECK_OK(tu_params(self, rr.last_checkpoint, &theirs, &n2));
    CHECK_INT(n, n2);
    if (mine && theirs && n == n2) {
      double d = tu_rel_diff(mine, theirs, n);
      printf("  %-16s %d rank(s) vs 1 rank after %lld steps: max rel diff %.3g\n", k->name, P, (long long)res.steps, d);
      if (P == 1 && !k->ref_ov) /* same computation: same bits */
        CHECK(memcmp(mine, theirs, sizeof(float) * (size_t)n) == 0);
      if (!(d <= k->tol))
        DD_FAIL_AT("%s: %d ranks differ from 1 rank by %.3g (tol %g)", k->name, P, d, k->tol);
    }
    dd_comm_finalize(self);
  }
  dd_free(mine);
  dd_free(theirs);
  dd_comm_barrier(world);
}

static void n_ranks_equal_one_rank(void) {
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    run_case(&cases[i]);
}

int main(int argc, char **argv) {
  if (dd_comm_init(&argc, &argv, &world) || argc < 2)
    return 2;
  scratch = argv[1];
  RUN(n_ranks_equal_one_rank);
  int f = tu_total_failures(world);
  dd_comm_finalize(world);
  return f ? 1 : 0;
}
