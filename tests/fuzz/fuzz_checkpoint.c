/* Fuzz target: a checkpoint file as eval, predict and --resume meet it: the verification of
 * --resume auto (format, training state, every tensor's checksum and values), the model rebuilt
 * from its stored config and input shape, its tensors, optimizer state and training position
 * loaded, the vocabulary, and one forward pass of the model it describes. */
#include <stdio.h>
#include <string.h>

#include "ddtrain/checkpoint.h"
#include "ddtrain/config.h"
#include "ddtrain/core.h"
#include "ddtrain/model.h"
#include "ddtrain/optim.h"
#include "ddtrain/train.h"
#include "fuzz.h"

static char g_dir[600], g_path[700];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  dd_fuzz_init();
  snprintf(g_dir, sizeof g_dir, "%s/ck", dd_fuzz_dir());
  if (dd_mkdirs(g_dir, "fuzz"))
    return -1;
  snprintf(g_path, sizeof g_path, "%s/ckpt-0000000001.h5", g_dir);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  dd_fuzz_feature = 0;
  if (dd_fuzz_write(g_path, data, size))
    return 0;
  dd_comm *c = dd_fuzz_comm();
  char found[800];
  int rc = dd_checkpoint_latest(c, g_dir, found, sizeof found); /* warns on stderr when it skips the file */
  dd_fuzz_step(rc);

  dd_config *cfg = NULL;
  dd_model *m = NULL;
  rc = dd_model_from_checkpoint(c, g_path, 2, &cfg, &m);
  dd_fuzz_step(rc);
  if (rc == DD_OK) {
    dd_optim *o = NULL;
    dd_train_state st;
    memset(&st, 0, sizeof st);
    rc = dd_optim_create(&cfg->optim, m->nparams, &o);
    if (rc == DD_OK)
      rc = dd_checkpoint_load(c, g_path, m, o, &st);
    dd_fuzz_step(rc);
    dd_optim_free(o);
    if (m->in_size <= (1 << 16) && m->nparams <= (1 << 20)) {
      /* what eval and predict do next: a forward pass over the shapes the file gave */
      memset(m->acts[0], 0, sizeof(float) * (size_t)m->in_size);
      dd_pass p = {.B = 1, .B_global = 1, .train = false};
      rc = dd_model_forward(m, &p);
      dd_fuzz_step(rc);
    }
  }
  dd_model_free(m);
  dd_config_free(cfg);
  int32_t *vocab = NULL;
  int64_t nvocab = 0;
  rc = dd_checkpoint_vocab(c, g_path, &vocab, &nvocab);
  dd_fuzz_step(rc);
  dd_free(vocab);
  dd_fuzz_done();
  return 0;
}
