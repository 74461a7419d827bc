/* config: parsing, overrides, defaults, and the one-line errors with lines. */
#include <string.h>

#include "check.h"
#include "ddtrain/config.h"

DD_TEST_GLOBALS;

static const char *good = "# comment\n"
                          "model:\n"
                          "  layers:\n"
                          "    - {type: dense, units: 64}\n"
                          "    - relu\n"
                          "    - type: dense\n"
                          "      units: 10\n"
                          "      bias: false\n"
                          "data:\n"
                          "  train: a.h5\n"
                          "  val_fraction: 0.2\n"
                          "optim: {name: sgd, lr: 0.1, momentum: 0.9}\n"
                          "train:\n"
                          "  batch_size: 6e4\n"
                          "  epochs: 3\n";

/* parse and expect failure whose message contains every needle */
static void expect_error(const char *text, int nov, char *const *ov, const char *n1, const char *n2) {
  dd_config *c = NULL;
  dd_error_clear();
  int rc = dd_config_parse(text, "run.yaml", nov, ov, &c);
  if (rc == 0) {
    DD_FAIL_AT("expected an error containing '%s'", n1);
    dd_config_free(c);
    return;
  }
  CHECK_CONTAINS(dd_error_message(), n1);
  if (n2)
    CHECK_CONTAINS(dd_error_message(), n2);
  dd_error_clear();
}

static void parses_good_config(void) {
  dd_config *c = NULL;
  CHECK_OK(dd_config_parse(good, "run.yaml", 0, NULL, &c));
  if (!c)
    return;
  CHECK_INT(c->nlayers, 3);
  CHECK(strcmp(c->layers[0].type, "dense") == 0);
  CHECK_INT(c->layers[0].units, 64);
  CHECK(c->layers[0].bias);
  CHECK(strcmp(c->layers[1].type, "relu") == 0);
  CHECK(!c->layers[2].bias);
  CHECK_INT(c->layers[2].line, 6);
  CHECK(strcmp(c->train, "a.h5") == 0);
  CHECK_NEAR(c->val_fraction, 0.2, 1e-12);
  CHECK_NEAR(c->optim.lr, 0.1, 1e-12);
  CHECK_NEAR(c->optim.momentum, 0.9, 1e-12);
  CHECK_INT(c->batch_size, 60000);
  CHECK_INT(c->epochs, 3);
  /* defaults */
  CHECK(strcmp(c->x, "/x") == 0 && strcmp(c->y, "/y") == 0);
  CHECK_INT(c->seed, 42);
  CHECK(strcmp(c->ckpt_dir, "checkpoints") == 0);
  CHECK_INT(c->loss, DD_LOSS_CROSS_ENTROPY);
  dd_config_free(c);
}

static void overrides_apply(void) {
  char *ov[] = {"optim.lr=0.5",    "model.layers.0.units=32", "train.seed=7",
                "checkpoint.dir=", "model.input=[1,8,8]",     "model.layers.1={type: tanh}"};
  dd_config *c = NULL;
  CHECK_OK(dd_config_parse(good, "run.yaml", 6, ov, &c));
  if (!c)
    return;
  CHECK_NEAR(c->optim.lr, 0.5, 1e-12);
  CHECK_INT(c->layers[0].units, 32);
  CHECK_INT(c->seed, 7);
  CHECK(c->ckpt_dir[0] == '\0');
  CHECK_INT(c->input.ndim, 3);
  CHECK_INT(c->input.d[2], 8);
  CHECK(strcmp(c->layers[1].type, "tanh") == 0);
  /* the effective config text carries the overrides and parses back the same */
  CHECK_CONTAINS(c->text, "0.5");
  dd_config *d = NULL;
  CHECK_OK(dd_config_parse(c->text, "effective", 0, NULL, &d));
  if (d) {
    CHECK_INT(d->layers[0].units, 32);
    CHECK_NEAR(d->optim.lr, 0.5, 1e-12);
    CHECK_INT(d->nlayers, 3);
    CHECK(strcmp(d->layers[1].type, "tanh") == 0);
    dd_config_free(d);
  }
  dd_config_free(c);
}

static void errors_name_key_and_line(void) {
  expect_error("model:\n  layers: [relu]\noptim:\n  lerning_rate: 0.1\n", 0, NULL,
               "run.yaml:4:", "unknown key 'optim.lerning_rate'");
  expect_error("model:\n  layers: [relu]\noptim:\n  lrr: 0.1\n", 0, NULL, "did you mean 'lr'", NULL);
  expect_error("model:\n  layers: [relu]\ntrian:\n  epochs: 1\n", 0, NULL, "run.yaml:3: unknown section 'trian'",
               "did you mean 'train'");
  expect_error("model:\n  layers: [relu]\ntrain:\n  batch_size: abc\n", 0, NULL, "run.yaml:4: train.batch_size",
               "got 'abc'");
  expect_error("model:\n  layers: [relu]\ntrain:\n  batch_size: 0\n", 0, NULL, "train.batch_size", "got '0'");
  expect_error("model:\n  layers: [relu]\noptim:\n  momentum: 1.5\n", 0, NULL, "optim.momentum", "1.5");
  expect_error("model:\n  layers:\n    - relu\n    - {type: dense, unit: 3}\n", 0, NULL,
               "run.yaml:4:", "unknown key 'unit' (did you mean 'units'?)");
  expect_error("model:\n  layers:\n    - {type: relu, units: 3}\n", 0, NULL, "relu takes no keys", NULL);
  expect_error("model:\n  layers:\n    - {type: dens, units: 3}\n", 0, NULL, "unknown layer type 'dens'",
               "did you mean 'dense'");
  expect_error("model:\n  layers:\n    - {units: 3}\n", 0, NULL, "has no 'type'", NULL);
  expect_error("model:\n  layers: [relu\n", 0, NULL, "YAML syntax error", "run.yaml:");
  expect_error("model:\n  layers: [relu]\nmodel:\n  loss: mse\n", 0, NULL, "duplicate key 'model'", NULL);
  expect_error("data:\n  train: a.h5\n", 0, NULL, "model.layers is missing", NULL);
  expect_error("model:\n  layers: [relu]\n  loss: hinge\n", 0, NULL, "model.loss", "cross_entropy or mse");
  expect_error("model:\n  layers: [relu]\noptim:\n  name: adamm\n", 0, NULL, "optim.name", "one of sgd");
  char *bad_index[] = {"model.layers.5.units=3"};
  expect_error(good, 1, bad_index, "command line 'model.layers.5.units=3'", "not an index");
  char *bad_key[] = {"optim.lrr=3"};
  expect_error(good, 1, bad_key, "command line 'optim.lrr=3'", "did you mean 'lr'");
  char *bad_val[] = {"train.epochs=-1"};
  expect_error(good, 1, bad_val, "command line 'train.epochs=-1'", "train.epochs");
  char *no_eq[] = {"optim.lr"};
  (void)no_eq; /* "optim.lr" without '=' is not an override: the CLI treats it as a path */
  char *nesterov[] = {"optim.nesterov=true", "optim.momentum=0"};
  expect_error(good, 2, nesterov, "optim.nesterov needs optim.momentum > 0", NULL);
}

/* kernel, stride, padding: one integer for both dimensions or [height, width]
 * (PyTorch's (h, w) tuples), in the file and on the command line */
static void window_keys_take_pairs(void) {
  const char *t = "model:\n"
                  "  layers:\n"
                  "    - {type: conv2d, filters: 8, kernel: [1, 3], stride: [1, 2], padding: [0, 1]}\n"
                  "    - {type: maxpool2d, kernel: 2}\n"
                  "    - type: avgpool2d\n"
                  "      kernel: [3, 2]\n"
                  "      padding:\n"
                  "        - 1\n"
                  "        - 0\n";
  dd_config *c = NULL;
  CHECK_OK(dd_config_parse(t, "run.yaml", 0, NULL, &c));
  if (!c)
    return;
  const dd_layer_spec *l = c->layers;
  CHECK(l[0].kernel[0] == 1 && l[0].kernel[1] == 3);
  CHECK(l[0].stride[0] == 1 && l[0].stride[1] == 2);
  CHECK(l[0].padding[0] == 0 && l[0].padding[1] == 1);
  CHECK(l[1].kernel[0] == 2 && l[1].kernel[1] == 2);      /* an integer: both */
  CHECK(l[1].stride[0] == 1 && l[1].stride[1] == 1);      /* default */
  CHECK(!(l[1].set >> dd_layer_key_find("stride") & 1u)); /* not given: pools use the kernel */
  CHECK(l[2].kernel[0] == 3 && l[2].kernel[1] == 2 && l[2].padding[0] == 1 && l[2].padding[1] == 0);
  dd_config_free(c);
  char *ov[] = {"model.layers.1.kernel=[2,3]", "model.layers.0.stride=2", "model.layers.1.padding=[1, 0]"};
  CHECK_OK(dd_config_parse(t, "run.yaml", 3, ov, &c));
  if (!c)
    return;
  l = c->layers;
  CHECK(l[1].kernel[0] == 2 && l[1].kernel[1] == 3 && l[1].padding[0] == 1 && l[1].padding[1] == 0);
  CHECK(l[0].stride[0] == 2 && l[0].stride[1] == 2);
  /* the effective config text keeps the lists */
  dd_config *d = NULL;
  CHECK_OK(dd_config_parse(c->text, "effective", 0, NULL, &d));
  if (d) {
    CHECK(d->layers[1].kernel[0] == 2 && d->layers[1].kernel[1] == 3);
    CHECK(d->layers[0].kernel[0] == 1 && d->layers[0].kernel[1] == 3);
    dd_config_free(d);
  }
  dd_config_free(c);
  const char *m = "model:\n  layers:\n    - {type: conv2d, filters: 2, kernel: 3}\n";
  char *three[] = {"model.layers.0.kernel=[1,2,3]"};
  expect_error(m, 1, three,
               "command line 'model.layers.0.kernel=[1,2,3]': model.layers[0].kernel: expected one integer or a list "
               "[height, width] of two, got a list of 3; write e.g. kernel: 3 or kernel: [1, 3]",
               NULL);
  expect_error(
      "model:\n  layers:\n    - {type: conv2d, filters: 2, kernel: [3]}\n", 0, NULL,
      "run.yaml:3: model.layers[0].kernel: expected one integer or a list [height, width] of two, got a list of 1",
      NULL);
  expect_error("model:\n  layers:\n    - {type: maxpool2d, kernel: {h: 2}}\n", 0, NULL,
               "model.layers[0].kernel: expected one integer or a list [height, width] of two, got a section", NULL);
  expect_error("model:\n  layers:\n    - {type: conv2d, filters: 2, kernel: [3, 1.5]}\n", 0, NULL,
               "run.yaml:3: model.layers[0].kernel[1] (width): expected an integer in [1, 1000000], got '1.5'", NULL);
  expect_error("model:\n  layers:\n    - {type: conv2d, filters: 2, kernel: [0, 3]}\n", 0, NULL,
               "model.layers[0].kernel[0] (height): expected an integer in [1, 1000000], got '0'", NULL);
  expect_error("model:\n  layers:\n    - {type: avgpool2d, kernel: 2, stride: [2, 0]}\n", 0, NULL,
               "model.layers[0].stride[1] (width): expected an integer in [1, 1000000], got '0'", NULL);
  expect_error("model:\n  layers:\n    - {type: conv2d, filters: 2, kernel: 3, padding: [-1, 0]}\n", 0, NULL,
               "model.layers[0].padding[0] (height): expected an integer in [0, 1000000], got '-1'", NULL);
  expect_error("model:\n  layers:\n    - {type: conv2d, filters: 2, kernel: [3, [1]]}\n", 0, NULL,
               "model.layers[0].kernel[1] (width): expected an integer in [1, 1000000], got a list", NULL);
  char *neg[] = {"model.layers.0.padding=-1"};
  expect_error(m, 1, neg,
               "model.layers[0].padding: expected an integer in [0, 1000000] or a list [height, width], got '-1'",
               NULL);
}

/* optimizer and schedule keys: one-line errors naming the key */
static void optim_errors_name_the_key(void) {
  const char *m = "model:\n  layers: [relu]\n";
  char text[512];
#define OPTIM_ERROR(yaml, n1, n2)                                                                                      \
  do {                                                                                                                 \
    snprintf(text, sizeof text, "%s%s\n", m, yaml);                                                                    \
    expect_error(text, 0, NULL, n1, n2);                                                                               \
  } while (0)
  OPTIM_ERROR("optim: {name: adamx}", "optim.name", "did you mean 'adam'");
  OPTIM_ERROR("optim: {name: lbfgs}", "optim.name", "one of sgd, adam, adamw, rmsprop, adagrad");
  OPTIM_ERROR("optim: {lr: -0.1}", "run.yaml:3: optim.lr", "got '-0.1'");
  OPTIM_ERROR("optim: {name: adam, betas: [0.9, 1.0]}", "optim.betas", "[0, 1)");
  OPTIM_ERROR("optim: {name: adam, betas: 0.9}", "optim.betas", "[beta1, beta2]");
  OPTIM_ERROR("optim: {name: adam, eps: 0}", "optim.eps = 0", "> 0");
  OPTIM_ERROR("optim: {name: adam, eps: -1e-8}", "optim.eps", NULL);
  OPTIM_ERROR("optim: {name: rmsprop, alpha: 1}", "optim.alpha = 1", "[0, 1)");
  OPTIM_ERROR("optim: {name: adagrad, lr_decay: -1}", "optim.lr_decay", NULL);
  OPTIM_ERROR("optim: {weight_decay: -0.1}", "optim.weight_decay", NULL);
  OPTIM_ERROR("optim: {clip_norm: -1}", "optim.clip_norm", NULL);
  OPTIM_ERROR("optim: {ref_batch_size: -256}", "optim.ref_batch_size", NULL);
  OPTIM_ERROR("optim: {name: adam, momentum: 0.9}", "optim.momentum does not apply to optim.name adam",
              "adam takes lr, betas, eps");
  OPTIM_ERROR("optim: {name: sgd, betas: [0.9, 0.99]}", "optim.betas does not apply to optim.name sgd", NULL);
  OPTIM_ERROR("optim: {name: adam, nesterov: true}", "optim.nesterov does not apply", NULL);
  OPTIM_ERROR("train: {accum_steps: 0}", "train.accum_steps", "got '0'");
  OPTIM_ERROR("train: {micro_batch: -4}", "train.micro_batch", "got '-4'");
#undef OPTIM_ERROR
  /* a key of the old optimizer can be reset to auto when switching on the command line */
  char *ov[] = {"optim.name=adam", "optim.momentum=auto", "optim.nesterov=false"};
  dd_config *c = NULL;
  CHECK_OK(dd_config_parse(good, "run.yaml", 3, ov, &c));
  if (c) {
    CHECK_INT(c->optim.kind, DD_OPTIM_ADAM);
    CHECK_NEAR(c->optim.lr, 0.1, 1e-15);
    CHECK_NEAR(c->optim.betas[0], 0.9, 1e-15);
    CHECK(isnan(c->optim.momentum));
  }
  dd_config_free(c);
  char *ov2[] = {"optim.betas=[0.5,0.75]",    "optim.name=adamw",     "optim.momentum=",     "schedule.name=multistep",
                 "schedule.milestones=[3,8]", "schedule.unit=epochs", "train.accum_steps=4", "train.micro_batch=6"};
  CHECK_OK(dd_config_parse(good, "run.yaml", 8, ov2, &c));
  if (c) {
    CHECK_NEAR(c->optim.betas[1], 0.75, 1e-15);
    CHECK_NEAR(c->optim.weight_decay, 0.01, 1e-15);
    CHECK_INT(c->schedule.nmilestones, 2);
    CHECK_INT(c->schedule.milestones[1], 8);
    CHECK_INT(c->accum_steps, 4);
    CHECK_INT(c->micro_batch, 6);
  }
  dd_config_free(c);
}

/* {type: residual, layers: [...]} flattens into start, layers, end, with
 * the ends paired; nested blocks too; the errors name the entry */
static void residual_blocks_flatten(void) {
  const char *text = "model:\n"
                     "  layers:\n"
                     "    - {type: dense, units: 8}\n"
                     "    - {type: residual, layers: [relu, {type: residual, layers: [{type: dense, units: 8}]}]}\n"
                     "    - {type: dense, units: 2}\n"
                     "data: {train: a.h5}\n";
  dd_config *c = NULL;
  CHECK_OK(dd_config_parse(text, "run.yaml", 0, NULL, &c));
  const char *want[] = {"dense", "residual", "relu", "residual", "dense", "residual_end", "residual_end", "dense"};
  const int pair[] = {0, 6, 0, 5, 0, 3, 1, 0};
  CHECK(c->nlayers == 8);
  for (int i = 0; i < c->nlayers && i < 8; i++) {
    CHECK(strcmp(c->layers[i].type, want[i]) == 0);
    CHECK(strncmp(want[i], "residual", 8) != 0 || c->layers[i].pair == pair[i]);
  }
  CHECK(c->layers[4].units == 8);
  dd_config_free(c);
  expect_error("model: {layers: [{type: residual}]}\ndata: {train: a.h5}\n", 0, NULL, "model.layers[0]",
               "needs a non-empty list of layers");
  expect_error("model: {layers: [{type: residual, layers: [relu], units: 3}]}\ndata: {train: a.h5}\n", 0, NULL,
               "unknown key 'units'", "residual takes layers");
  expect_error("model: {layers: [relu, residual_end]}\ndata: {train: a.h5}\n", 0, NULL, "model.layers[1]",
               "not written by hand");
  expect_error("model: {layers: [{type: residual, layers: [{type: dense, unit: 3}]}]}\ndata: {train: a.h5}\n", 0, NULL,
               "model.layers[0].layers[0] (dense)", "unknown key 'unit'");
}

/* {type: transformer, ...} expands into the pre-LayerNorm block's two
 * residual blocks (dropouts only when dropout > 0); its keys and errors. */
static void transformer_blocks_expand(void) {
  dd_config *c = NULL;
  CHECK_OK(dd_config_parse("model:\n  layers:\n    - {type: embedding, vocab: 9, dim: 8}\n"
                           "    - {type: transformer, heads: 2, mlp: 3, bias: false}\n"
                           "    - {type: transformer, heads: 4, dropout: 0.1, causal: false}\n"
                           "    - {type: dense, tie: embedding}\ndata: {train: a.h5}\n",
                           "run.yaml", 0, NULL, &c));
  if (!c)
    return;
  const char *want[] = {"embedding", "residual",  "layernorm", "attention",    "residual_end", "residual",
                        "layernorm", "dense",     "gelu",      "dense",        "residual_end", "residual",
                        "layernorm", "attention", "dropout",   "residual_end", "residual",     "layernorm",
                        "dense",     "gelu",      "dense",     "dropout",      "residual_end", "dense"};
  const int n = (int)(sizeof want / sizeof want[0]);
  CHECK_INT(c->nlayers, n);
  for (int i = 0; i < n && i < c->nlayers; i++)
    if (strcmp(c->layers[i].type, want[i]) != 0)
      DD_FAIL_AT("layer %d is %s, want %s", i, c->layers[i].type, want[i]);
  if (c->nlayers == n) {
    const dd_layer_spec *L = c->layers;
    CHECK(L[1].pair == 4 && L[4].pair == 1 && L[5].pair == 10 && L[10].pair == 5 && L[16].pair == 22);
    CHECK(L[3].heads == 2 && L[3].causal && !L[3].bias && L[3].p == 0);
    CHECK(L[13].heads == 4 && !L[13].causal && L[13].p == 0.1 && L[14].p == 0.1 && L[21].p == 0.1);
    const uint64_t p_bit = (uint64_t)1 << dd_layer_key_find("p"); /* attention dropout only where p is set */
    CHECK((L[13].set & p_bit) && !(L[3].set & p_bit));
    CHECK(L[7].units_mult == 3 && L[7].units_from == 5 && L[9].units_mult == 1 && !L[7].bias && L[19].bias);
    CHECK(L[7].expanded && L[7].line == 4 && L[13].line == 5 && !L[23].expanded);
    CHECK_INT(L[23].tie, DD_TIE_EMBEDDING);
  }
  dd_config_free(c);
  expect_error("model: {layers: [{type: transformer}]}\ndata: {train: a.h5}\n", 0, NULL,
               "model.layers[0] (transformer): needs 'heads'", NULL);
  expect_error("model: {layers: [{type: transformer, heads: 2, units: 3}]}\ndata: {train: a.h5}\n", 0, NULL,
               "unknown key 'units'", "transformer takes heads, mlp, dropout");
  expect_error("model: {layers: [{type: dense, units: 3, tie: wte}]}\ndata: {train: a.h5}\n", 0, NULL,
               "model.layers[0].tie: expected embedding", "got 'wte'");
}

static void reference_lists_keys(void) {
  const char *ref = dd_config_reference();
  CHECK_CONTAINS(ref, "batch_size");
  CHECK_CONTAINS(ref, "val_fraction");
  CHECK_CONTAINS(ref, "dense");
  CHECK_CONTAINS(ref, "schedule:");
  CHECK_CONTAINS(ref, "warmup_epochs");
  CHECK_CONTAINS(ref, "clip_norm");
  CHECK_CONTAINS(ref, "accum_steps");
}

int main(void) {
  RUN(parses_good_config);
  RUN(residual_blocks_flatten);
  RUN(transformer_blocks_expand);
  RUN(overrides_apply);
  RUN(errors_name_key_and_line);
  RUN(window_keys_take_pairs);
  RUN(optim_errors_name_the_key);
  RUN(reference_lists_keys);
  return dd_test_failures ? 1 : 0;
}
