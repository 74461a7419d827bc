/* `ddtrain generate`: sample text from a character-level model in a checkpoint. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "session.h"

/* Token id of code point cp in the sorted vocabulary, or -1. */
static int64_t id_of(const int32_t *vocab, int64_t n, int32_t cp) {
  int64_t lo = 0, hi = n - 1;
  while (lo <= hi) {
    int64_t mid = (lo + hi) / 2;
    if (vocab[mid] == cp)
      return mid;
    if (vocab[mid] < cp)
      lo = mid + 1;
    else
      hi = mid - 1;
  }
  return -1;
}

static int check_model(const dd_model *m, const char *ckpt, int64_t nvocab) {
  const dd_layer *first = &m->layers[0];
  char sh[64];
  if (strcmp(first->kind->name, "embedding") != 0 || m->input.ndim != 1 || m->loss != DD_LOSS_CROSS_ENTROPY ||
      m->out_rows != m->input.d[0])
    return dd_error(DD_ECKPT,
                    "the model in '%s' (input %s, output %s) is not a per-step character classifier; generate needs "
                    "embedding -> recurrent layers (sequences: true) -> dense with one output row per input step",
                    ckpt, dd_shape_str(m->input, sh, sizeof sh), m->out_rows > 1 ? "one row per step" : "one row");
  if (m->classes < nvocab || first->spec.vocab < nvocab)
    return dd_error(DD_ECKPT,
                    "the model in '%s' has %lld output classes and %lld embedding rows but its vocabulary has %lld "
                    "characters; it was not trained on the 'ddtrain data text' file whose vocabulary it carries",
                    ckpt, (long long)m->classes, (long long)first->spec.vocab, (long long)nvocab);
  return DD_OK;
}

static int desc(const void *a, const void *b) {
  const float x = *(const float *)a, y = *(const float *)b;
  return (x < y) - (x > y);
}

/* The next token from logits z[K]: argmax at temperature 0, else a draw
 * from softmax(z / temperature) over the top_k largest logits (0: all; ties
 * with the k-th largest stay in, as with torch.topk's threshold). tmp: [K]. */
static int64_t sample(const float *z, int64_t K, double temperature, int64_t top_k, float *tmp, dd_rng *r) {
  int64_t arg = 0;
  for (int64_t k = 1; k < K; k++)
    if (z[k] > z[arg])
      arg = k;
  if (temperature <= 0.0)
    return arg;
  float thr = -INFINITY;
  if (top_k > 0 && top_k < K) {
    memcpy(tmp, z, sizeof(float) * (size_t)K);
    qsort(tmp, (size_t)K, sizeof(float), desc);
    thr = tmp[top_k - 1];
  }
  double sum = 0.0;
  for (int64_t k = 0; k < K; k++)
    if (z[k] >= thr)
      sum += exp(((double)z[k] - (double)z[arg]) / temperature);
  double u = (double)dd_rng_uniform(r) * sum, acc = 0.0;
  for (int64_t k = 0; k < K; k++) {
    if (z[k] < thr)
      continue;
    acc += exp(((double)z[k] - (double)z[arg]) / temperature);
    if (u < acc)
      return k;
  }
  return arg;
}

static void put_char(FILE *out, int32_t cp) {
  char b[4] = {0};
  fwrite(b, 1, (size_t)dd_utf8_encode(cp, b), out);
}

int dd_generate_run(dd_comm *c, const char *ckpt, const dd_generate_opts *o, FILE *out) {
  dd_config *cfg = NULL;
  dd_model *m = NULL;
  int32_t *vocab = NULL, *ids = NULL;
  float *tmp = NULL;
  int64_t nvocab = 0;
  int rc = dd_model_from_checkpoint(c, ckpt, 1, &cfg, &m);
  if (rc == DD_OK)
    rc = dd_checkpoint_vocab(c, ckpt, &vocab, &nvocab);
  if (rc == DD_OK && nvocab == 0)
    rc = dd_error(DD_ECKPT,
                  "checkpoint '%s' has no vocabulary; generate needs a model trained on a 'ddtrain data text' file "
                  "(its checkpoints store the characters)",
                  ckpt);
  if (rc == DD_OK)
    rc = check_model(m, ckpt, nvocab);
  const int64_t plen = o->prompt ? (int64_t)strlen(o->prompt) : 0;
  int64_t n = 0;
  if (rc == DD_OK && plen == 0)
    rc = dd_error(DD_EINVAL, "--prompt is empty; give at least one character to start from");
  if (rc == DD_OK) {
    /* the prompt's ids, then the window of the last T */
    const int64_t cap = plen > m->input.d[0] ? plen : m->input.d[0];
    ids = dd_alloc((size_t)cap + 1, sizeof(int32_t));
    tmp = dd_alloc((size_t)m->classes, sizeof(float));
    rc = ids && tmp ? DD_OK : DD_ENOMEM;
  }
  if (rc == DD_OK) {
    int64_t bad = 0;
    n = dd_utf8_decode(o->prompt, plen, ids, &bad);
    if (n < 0)
      rc = dd_error(DD_EINVAL, "--prompt is not valid UTF-8 (byte %lld)", (long long)bad);
  }
  for (int64_t i = 0; rc == DD_OK && i < n; i++) {
    const int64_t id = id_of(vocab, nvocab, ids[i]);
    if (id < 0) {
      char ch[16];
      dd_char_label(ids[i], ch, sizeof ch);
      rc = dd_error(DD_EINVAL,
                    "prompt character %s (position %lld) is not in the model's vocabulary of %lld characters; use "
                    "characters of the training text ('ddtrain data inspect' on it lists them)",
                    ch, (long long)i + 1, (long long)nvocab);
    }
    ids[i] = (int32_t)id;
  }
  rc = dd_comm_agree(c, rc);
  FILE *w = dd_comm_rank(c) == 0 ? out : NULL;
  if (rc == DD_OK && w) {
    fputs(o->prompt, w);
    fflush(w);
  }
  const int64_t T = rc == DD_OK ? m->input.d[0] : 0, K = rc == DD_OK ? m->classes : 0;
  dd_rng r;
  dd_rng_seed(&r, o->seed, 0x67656e /* "gen" */);
  /* only the last T characters are ever read: keep those (memory does not grow with --length) */
  if (rc == DD_OK && n > T) {
    memmove(ids, ids + (n - T), (size_t)T * sizeof *ids);
    n = T;
  }
  for (int64_t k = 0; rc == DD_OK && k < o->length; k++) {
    /* the last (up to) T characters, as a sequence of that length */
    const int64_t L = n;
    for (int64_t t = 0; t < T; t++)
      m->acts[0][t] = t < L ? (float)ids[t] : 0.0f;
    int32_t len = (int32_t)L;
    dd_pass p = {.B = 1, .B_global = 1, .lengths = &len};
    rc = dd_model_forward(m, &p);
    if (rc)
      break;
    /* classes past the vocabulary (a model wider than its data) are never drawn */
    const int64_t next = sample(m->acts[m->nlayers] + (L - 1) * K, nvocab, o->temperature, o->top_k, tmp, &r);
    if (n == T) { /* slide the window by one */
      memmove(ids, ids + 1, (size_t)(T - 1) * sizeof *ids);
      n--;
    }
    ids[n++] = (int32_t)next;
    if (w) {
      put_char(w, vocab[next]);
      fflush(w);
    }
  }
  if (rc == DD_OK && w) {
    fputc('\n', w);
    fflush(w);
  }
  dd_free(ids);
  dd_free(tmp);
  dd_free(vocab);
  dd_model_free(m);
  dd_config_free(cfg);
  return rc;
}
