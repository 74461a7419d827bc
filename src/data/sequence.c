/* Sequence data: lengths (dataset or pad id), `data text` (characters), synthetic token sequences, UTF-8. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "ddtrain/data.h"
#include "h5util.h"
#include "sequence.h"

/* ---- lengths ----------------------------------------------------------- */

static int read_lengths(dd_dataset *ds, const char *lname, const char *key) {
  hid_t f = -1;
  int rc = dd__h5_open_read(ds->path, key, &f);
  if (rc)
    return rc;
  int64_t n = 0;
  int32_t *len = NULL;
  rc = dd__h5_read_i32_vector(f, ds->path, lname, "sequence lengths", &n, &len);
  if (rc == DD_ENOTFOUND) {
    char have[512];
    dd__h5_list_datasets(f, have, sizeof have);
    rc = dd_error(DD_EDATA, "'%s' has no dataset '%s' (sequence lengths, data.lengths); it has: %s", ds->path, lname,
                  have);
  } else if (rc == DD_OK && n != ds->n) {
    rc = dd_error(DD_EDATA, "'%s':%s has %lld lengths but %s has %lld sequences; it needs one length per sequence",
                  ds->path, lname, (long long)n, ds->xname, (long long)ds->n);
  }
  H5Fclose(f);
  if (rc) {
    dd_free(len);
    return rc;
  }
  memcpy(ds->lengths, len, sizeof(int32_t) * (size_t)n);
  dd_free(len);
  return DD_OK;
}

int dd_data_set_lengths(dd_comm *c, dd_dataset *ds, const char *lname, int64_t pad_id, const char *key) {
  const bool by_name = lname && lname[0];
  if (!by_name && pad_id < 0)
    return DD_OK;
  if (by_name && pad_id >= 0)
    return dd_error(DD_ECONFIG, "set either data.lengths or data.pad_id, not both");
  char shape[64];
  if (ds->xshape.ndim > 2 || (!by_name && ds->xshape.ndim != 1))
    return dd_error(DD_EDATA, "%s '%s':%s holds %s per sample; %s needs sequences: %s", key, ds->path, ds->xname,
                    dd_shape_str(ds->xshape, shape, sizeof shape), by_name ? "data.lengths" : "data.pad_id",
                    by_name ? "token ids [N, T] or features [N, T, D]" : "token ids [N, T]");
  const int64_t T = ds->xshape.d[0];
  dd_free(ds->lengths);
  ds->lengths = dd_alloc((size_t)ds->n, sizeof(int32_t));
  int rc = dd_comm_agree(c, ds->lengths ? DD_OK : DD_ENOMEM);
  if (rc)
    return rc;
  if (by_name) { /* rank 0 reads, everyone gets the same */
    if (dd_comm_rank(c) == 0)
      rc = read_lengths(ds, lname, key);
    rc = dd_comm_bcast_status(c, rc, 0);
    if (rc == DD_OK)
      rc = dd_comm_bcast(c, ds->lengths, ds->n * 4, 0);
    if (rc)
      return rc;
  } else { /* every rank holds the same ids: derive locally */
    for (int64_t i = 0; i < ds->n; i++) {
      const float *x = ds->x + i * T;
      int64_t n = T;
      while (n > 0 && x[n - 1] == (float)pad_id)
        n--;
      ds->lengths[i] = (int32_t)n;
    }
  }
  for (int64_t i = 0; i < ds->n; i++) {
    const int32_t n = ds->lengths[i];
    if (by_name && (n < 1 || n > T))
      return dd_error(DD_EDATA,
                      "%s '%s':%s[%lld] = %d is not a length in 1..%lld (the sequences of %s have %lld steps); fix "
                      "the lengths",
                      key, ds->path, lname, (long long)i, n, (long long)T, ds->xname, (long long)T);
    if (!by_name && n < 1)
      return dd_error(DD_EDATA,
                      "%s '%s':%s[%lld] holds only padding (data.pad_id = %lld); remove empty sequences or set "
                      "data.pad_id to the id that pads",
                      key, ds->path, ds->xname, (long long)i, (long long)pad_id);
  }
  /* padding steps are out of the loss: per-step class labels there become -1 */
  if (ds->yc && ds->ysize == T)
    for (int64_t i = 0; i < ds->n; i++)
      for (int64_t t = ds->lengths[i]; t < T; t++)
        ds->yc[i * T + t] = -1;
  return DD_OK;
}

/* ---- UTF-8 ------------------------------------------------------------- */

int64_t dd_utf8_decode(const char *s, int64_t n, int32_t *cps, int64_t *bad) {
  const unsigned char *u = (const unsigned char *)s;
  int64_t i = 0, k = 0;
  while (i < n) {
    const unsigned char b = u[i];
    int len = b < 0x80 ? 1 : (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : (b >> 3) == 30 ? 4 : 0;
    int32_t cp = len == 1 ? b : len == 2 ? b & 0x1f : len == 3 ? b & 0x0f : b & 0x07;
    bool ok = len > 0 && i + len <= n;
    for (int j = 1; ok && j < len; j++) {
      ok = (u[i + j] & 0xc0) == 0x80;
      cp = (cp << 6) | (u[i + j] & 0x3f);
    }
    /* no overlong forms, surrogates or values past U+10FFFF */
    static const int32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (ok && (cp < min_cp[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)))
      ok = false;
    if (!ok) {
      if (bad)
        *bad = i;
      return -1;
    }
    cps[k++] = cp;
    i += len;
  }
  return k;
}

int dd_utf8_encode(int32_t cp, char *out) {
  unsigned char *o = (unsigned char *)out;
  if (cp < 0x80) {
    o[0] = (unsigned char)cp;
    return 1;
  }
  if (cp < 0x800) {
    o[0] = (unsigned char)(0xc0 | (cp >> 6));
    o[1] = (unsigned char)(0x80 | (cp & 0x3f));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (unsigned char)(0xe0 | (cp >> 12));
    o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
    o[2] = (unsigned char)(0x80 | (cp & 0x3f));
    return 3;
  }
  o[0] = (unsigned char)(0xf0 | (cp >> 18));
  o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
  o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
  o[3] = (unsigned char)(0x80 | (cp & 0x3f));
  return 4;
}

void dd_char_label(int32_t cp, char *buf, int n) {
  if (cp == '\n')
    snprintf(buf, (size_t)n, "\\n");
  else if (cp == '\t')
    snprintf(buf, (size_t)n, "\\t");
  else if (cp == '\r')
    snprintf(buf, (size_t)n, "\\r");
  else if (cp == ' ')
    snprintf(buf, (size_t)n, "' '");
  else if (cp < 0x20 || cp == 0x7f || cp > 0x10ffff || cp < 0)
    snprintf(buf, (size_t)n, "U+%04X", (unsigned)cp);
  else if (n > 4) {
    int k = dd_utf8_encode(cp, buf);
    buf[k] = '\0';
  }
}

/* ---- data text --------------------------------------------------------- */

#define CP_LIMIT 0x110000

static int read_file(const char *path, char **buf, int64_t *n) {
  *buf = NULL;
  FILE *f = fopen(path, "rb");
  if (!f)
    return dd_error(DD_EIO, "cannot open text file '%s': %s", path, strerror(errno));
  int rc = DD_OK;
  if (fseek(f, 0, SEEK_END) != 0 || (*n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0)
    rc = dd_error(DD_EIO, "cannot read text file '%s': %s (is it a regular file?)", path, strerror(errno));
  if (rc == DD_OK) {
    *buf = dd_alloc((size_t)*n + 1, 1);
    if (!*buf)
      rc = DD_ENOMEM;
    else if (fread(*buf, 1, (size_t)*n, f) != (size_t)*n)
      rc = dd_error(DD_EIO, "cannot read text file '%s': %s", path, strerror(errno));
  }
  fclose(f);
  if (rc) {
    dd_free(*buf);
    *buf = NULL;
  }
  return rc;
}

int dd_data_read_vocab(const char *path, int32_t **vocab, int64_t *n) {
  *vocab = NULL;
  *n = 0;
  hid_t f = -1;
  int rc = dd__h5_open_read(path, "--vocab", &f);
  if (rc)
    return rc;
  rc = dd__h5_read_i32_vector(f, path, "/vocab", "vocabulary", n, vocab);
  H5Fclose(f);
  if (rc == DD_ENOTFOUND)
    return dd_error(DD_EDATA, "'%s' has no /vocab; give a file written by 'ddtrain data text'", path);
  for (int64_t i = 0; rc == DD_OK && i < *n; i++)
    if ((*vocab)[i] < 0 || (*vocab)[i] >= 0x110000 || (i > 0 && (*vocab)[i] <= (*vocab)[i - 1]))
      rc = dd_error(DD_EDATA, "'%s':/vocab[%lld] = %d: a vocabulary holds increasing Unicode code points", path,
                    (long long)i, (*vocab)[i]);
  if (rc) {
    dd_free(*vocab);
    *vocab = NULL;
  }
  return rc;
}

/* line and column (1-based) of byte offset at in text */
static void line_col(const char *text, int64_t at, int64_t *line, int64_t *col) {
  *line = 1;
  *col = 1;
  for (int64_t i = 0; i < at; i++, (*col)++)
    if (text[i] == '\n') {
      (*line)++;
      *col = 0;
    }
}

int dd_data_text(const char *txt, int64_t T, int64_t stride, const int32_t *vocab, int64_t nvocab, dd_dataset **out) {
  *out = NULL;
  if (T < 1)
    return dd_error(DD_EINVAL, "--seq-len must be at least 1, got %lld", (long long)T);
  if (stride < 1)
    return dd_error(DD_EINVAL, "--stride must be at least 1, got %lld", (long long)stride);
  char *bytes = NULL;
  int64_t nb = 0;
  int rc = read_file(txt, &bytes, &nb);
  if (rc)
    return rc;
  int32_t *cps = dd_alloc((size_t)nb + 1, sizeof(int32_t));
  int32_t *map = dd_alloc(CP_LIMIT, sizeof(int32_t));
  dd_dataset *ds = dd_alloc(1, sizeof *ds);
  rc = cps && map && ds ? DD_OK : DD_ENOMEM;
  int64_t L = 0;
  if (rc == DD_OK) {
    int64_t bad = 0;
    L = dd_utf8_decode(bytes, nb, cps, &bad);
    if (L < 0) {
      int64_t line, col;
      line_col(bytes, bad, &line, &col);
      rc = dd_error(DD_EDATA,
                    "%s:%lld: byte %lld (column %lld) = 0x%02x is not valid UTF-8; convert the file, e.g. iconv -f "
                    "latin1 -t utf-8",
                    txt, (long long)line, (long long)bad, (long long)col, (unsigned)(unsigned char)bytes[bad]);
    } else if (L < T + 1) {
      rc = dd_error(DD_EDATA,
                    "%s has %lld characters; --seq-len %lld needs at least %lld (one window and its next "
                    "character): use a longer text or a shorter --seq-len",
                    txt, (long long)L, (long long)T, (long long)T + 1);
    }
  }
  if (rc == DD_OK && vocab) { /* a given vocabulary: every character must be in it */
    for (int64_t i = 0; i < nvocab; i++)
      map[vocab[i]] = 1;
    int64_t at = 0;
    for (int64_t i = 0; i < L; i++) {
      if (!map[cps[i]]) {
        char ch[16];
        int64_t line, col;
        dd_char_label(cps[i], ch, sizeof ch);
        line_col(bytes, at, &line, &col);
        rc = dd_error(DD_EDATA,
                      "%s:%lld: character %s (column %lld) is not in the --vocab vocabulary of %lld characters; "
                      "build the vocabulary from a text that has all characters",
                      txt, (long long)line, ch, (long long)col, (long long)nvocab);
        break;
      }
      char tmp[4];
      at += dd_utf8_encode(cps[i], tmp);
    }
  }
  if (rc == DD_OK) {
    /* vocabulary: the code points present (or given), in increasing order */
    if (!vocab)
      for (int64_t i = 0; i < L; i++)
        map[cps[i]] = 1;
    int64_t V = 0;
    for (int32_t cp = 0; cp < CP_LIMIT; cp++)
      if (map[cp])
        V++;
    ds->vocab = dd_alloc((size_t)V, sizeof(int32_t));
    ds->nvocab = V;
    const int64_t N = (L - 1 - T) / stride + 1;
    ds->n = N;
    ds->xshape = (dd_shape){1, {T}};
    ds->xsize = T;
    ds->yshape = (dd_shape){1, {T}};
    ds->ysize = T;
    ds->ykind = DD_LABELS_CLASS;
    ds->nclasses = V;
    ds->tokens = true;
    ds->x = dd_alloc((size_t)(N * T), sizeof(float));
    ds->yc = dd_alloc((size_t)(N * T), sizeof(int32_t));
    rc = ds->vocab && ds->x && ds->yc ? DD_OK : DD_ENOMEM;
    if (rc == DD_OK) {
      int32_t id = 0;
      for (int32_t cp = 0; cp < CP_LIMIT; cp++)
        if (map[cp]) {
          ds->vocab[id] = cp;
          map[cp] = id++;
        }
      for (int64_t i = 0; i < L; i++)
        cps[i] = map[cps[i]];
      for (int64_t n = 0; n < N; n++)
        for (int64_t t = 0; t < T; t++) {
          ds->x[n * T + t] = (float)cps[n * stride + t];
          ds->yc[n * T + t] = cps[n * stride + t + 1];
        }
    }
  }
  dd_free(bytes);
  dd_free(cps);
  dd_free(map);
  if (rc) {
    dd_data_free(ds);
    return rc;
  }
  snprintf(ds->path, sizeof ds->path, "%s", txt);
  *out = ds;
  return DD_OK;
}

/* ---- synthetic token sequences (data synth --seq-len) ------------------ */

/* Token ids: 0 pads, 1 is 'not', then WORDS words per class, then neutral words. */
enum { PAD = 0, NOT = 1, FIRST_WORD = 2 };

static int words_per_class(const dd_synth_spec *s) {
  int64_t w = (s->vocab - FIRST_WORD) / (2 * s->classes);
  return (int)(w > 8 ? 8 : w);
}

/* argmax of score[0..K), or -1 on a tie for the top */
static int32_t winner(const int *score, int64_t K) {
  int32_t best = 0;
  bool tie = false;
  for (int32_t k = 1; k < K; k++) {
    if (score[k] > score[best]) {
      best = k;
      tie = false;
    } else if (score[k] == score[best]) {
      tie = true;
    }
  }
  return tie ? -1 : best;
}

int dd__data_synth_seq(const dd_synth_spec *s, dd_dataset **out) {
  *out = NULL;
  const int64_t T = s->seq_len, K = s->classes, N = s->samples;
  const int64_t lo = s->min_len > 0 ? s->min_len : (T / 4 > 1 ? T / 4 : 1);
  if (K > 64)
    return dd_error(DD_EINVAL, "--classes %lld is too many for sequences (at most 64)", (long long)K);
  if (s->vocab < FIRST_WORD + 2 * K)
    return dd_error(DD_EINVAL,
                    "--vocab %lld is too small for %lld classes: it needs at least %lld (pad, 'not', a word per class "
                    "and as many neutral ones)",
                    (long long)s->vocab, (long long)K, (long long)(FIRST_WORD + 2 * K));
  if (s->vocab > (1 << 24))
    return dd_error(DD_EINVAL, "--vocab %lld is above 2^24", (long long)s->vocab);
  if (lo > T)
    return dd_error(DD_EINVAL, "--min-len %lld is longer than --seq-len %lld", (long long)lo, (long long)T);
  dd_dataset *ds = dd_alloc(1, sizeof *ds);
  if (!ds)
    return DD_ENOMEM;
  ds->n = N;
  ds->xshape = (dd_shape){1, {T}};
  ds->xsize = T;
  ds->tokens = true;
  ds->ykind = DD_LABELS_CLASS;
  ds->nclasses = K;
  if (s->per_step)
    ds->yshape = (dd_shape){1, {T}};
  ds->ysize = s->per_step ? T : 1;
  ds->x = dd_alloc((size_t)(N * T), sizeof(float));
  ds->yc = dd_alloc((size_t)(N * ds->ysize), sizeof(int32_t));
  ds->lengths = dd_alloc((size_t)N, sizeof(int32_t));
  if (!ds->x || !ds->yc || !ds->lengths) {
    dd_data_free(ds);
    return DD_ENOMEM;
  }
  const int W = words_per_class(s);
  const int64_t nwords = FIRST_WORD + K * W;
  dd_rng r;
  dd_rng_seed(&r, s->seed, 3);
  for (int64_t n = 0; n < N; n++) {
    float *x = ds->x + n * T;
    int32_t *y = ds->yc + n * ds->ysize, label = -1;
    int64_t len = 0;
    while (label < 0) { /* draw until one class wins outright */
      int score[64] = {0};
      len = lo + (int64_t)dd_rng_below(&r, (uint64_t)(T - lo + 1));
      for (int64_t t = 0; t < T; t++) {
        int64_t id = PAD;
        if (t < len) {
          const float u = dd_rng_uniform(&r);
          if (u < 0.2f)
            id = FIRST_WORD + (int64_t)dd_rng_below(&r, (uint64_t)(K * W));
          else if (u < 0.27f)
            id = NOT;
          else
            id = nwords + (int64_t)dd_rng_below(&r, (uint64_t)(s->vocab - nwords));
          if (id >= FIRST_WORD && id < nwords)
            score[(id - FIRST_WORD) / W] += t > 0 && x[t - 1] == (float)NOT ? -1 : 1;
        }
        x[t] = (float)id;
        if (s->per_step) /* the class leading after step t; -1 while tied or in padding */
          y[t] = t < len ? winner(score, K) : -1;
      }
      label = winner(score, K);
    }
    if (!s->per_step)
      y[0] = label;
    ds->lengths[n] = (int32_t)len;
  }
  *out = ds;
  return DD_OK;
}
