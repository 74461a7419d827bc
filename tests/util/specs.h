/* Layer specs for tests: a type with its defaults, as the config parser starts from. */
#ifndef DDTRAIN_TEST_SPECS_H
#define DDTRAIN_TEST_SPECS_H

#include "ddtrain/layers.h"

static inline dd_layer_spec tu_spec(const char *type) {
  dd_layer_spec s;
  dd_layer_spec_defaults(&s, type);
  return s;
}

static inline dd_layer_spec tu_dense(int units) {
  dd_layer_spec s = tu_spec("dense");
  s.units = units;
  return s;
}

static inline dd_layer_spec tu_embedding(int vocab, int dim) {
  dd_layer_spec s = tu_spec("embedding");
  s.vocab = vocab;
  s.dim = dim;
  return s;
}

#endif
