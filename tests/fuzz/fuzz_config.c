/* Fuzz target: a run config from a buffer (YAML through libyaml, the schema, the layer list), and,
 * when it declares model.input, the model it describes built with shapes checked (no data file). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ddtrain/config.h"
#include "ddtrain/core.h"
#include "ddtrain/model.h"
#include "fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  dd_fuzz_init();
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  dd_fuzz_feature = 0;
  char *text = dd_alloc(size + 1, 1);
  if (!text)
    return 0;
  memcpy(text, data, size); /* a NUL inside ends the document, as a C string does */
  dd_config *cfg = NULL;
  int rc = dd_config_parse(text, "fuzz.yaml", 0, NULL, &cfg);
  dd_fuzz_step(rc);
  if (rc == DD_OK) {
    /* the effective config goes into every checkpoint as text: what parsed once must parse again */
    dd_config *again = NULL;
    int rc2 = dd_config_parse(cfg->text, "fuzz.yaml (emitted)", 0, NULL, &again);
    if (rc2) {
      fprintf(stderr, "fuzz: the emitted config does not parse again: %s\n--- emitted:\n%s\n", dd_error_message(),
              cfg->text);
      abort();
    }
    dd_config_free(again);
  }
  if (rc == DD_OK && cfg->input.ndim > 0) {
    dd_model_spec spec = {.input = cfg->input, .nlayers = cfg->nlayers, .layers = cfg->layers, .loss = cfg->loss};
    dd_model *m = NULL;
    rc = dd_model_build(&spec, 2, 0, &m);
    dd_fuzz_step(rc);
    dd_model_free(m);
  }
  dd_config_free(cfg);
  dd_free(text);
  dd_fuzz_done();
  return 0;
}
