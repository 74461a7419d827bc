/* Which sample comes where: seeded bijections, the epoch order (global or by chunks) and the hold-out split. */
#include <string.h>

#include "ddtrain/data.h"

/* ---- a seeded bijection of [0, n) ----
 * A balanced Feistel network on 2h bits (2^(2h) >= n) with a keyed hash as
 * its round function, restricted to [0, n) by cycle walking: apply it again
 * until the value falls inside. Feistel rounds are invertible whatever the
 * round function, so this is a permutation of [0, 2^(2h)), and walking the
 * cycles keeps it one of [0, n). 2^(2h) < 4n, so a value takes fewer than 4
 * applications on average. Six rounds of a 64-bit mixing hash make the order
 * indistinguishable from a random permutation for training purposes. */
enum { BIJ_ROUNDS = 6 };

void dd_bij_init(dd_bij *b, uint64_t n, uint64_t key) {
  int k = 1;
  while (k < 62 && (1ULL << k) < n)
    k++;
  b->n = n;
  b->key = key;
  b->hbits = (k + 1) / 2;
  b->hmask = (1ULL << b->hbits) - 1;
}

static uint64_t round_fn(const dd_bij *b, int r, uint64_t v) {
  return dd_hash3(b->key, (uint64_t)r, v) & b->hmask;
}

static uint64_t feistel(const dd_bij *b, uint64_t x) {
  uint64_t L = x >> b->hbits, R = x & b->hmask;
  for (int r = 0; r < BIJ_ROUNDS; r++) {
    uint64_t t = L ^ round_fn(b, r, R);
    L = R;
    R = t;
  }
  return (L << b->hbits) | R;
}

static uint64_t feistel_inv(const dd_bij *b, uint64_t y) {
  uint64_t L = y >> b->hbits, R = y & b->hmask;
  for (int r = BIJ_ROUNDS - 1; r >= 0; r--) {
    uint64_t t = R ^ round_fn(b, r, L);
    R = L;
    L = t;
  }
  return (L << b->hbits) | R;
}

uint64_t dd_bij_at(const dd_bij *b, uint64_t i) {
  if (b->n <= 1)
    return 0;
  uint64_t y = feistel(b, i);
  while (y >= b->n)
    y = feistel(b, y);
  return y;
}

uint64_t dd_bij_inv(const dd_bij *b, uint64_t y) {
  if (b->n <= 1)
    return 0;
  uint64_t x = feistel_inv(b, y);
  while (x >= b->n)
    x = feistel_inv(b, x);
  return x;
}

/* ---- the epoch order ---- */

/* stream tags, so the bijections of one seed never coincide */
#define TAG_GLOBAL 0x676c6f62616cULL /* "global" */
#define TAG_CHUNKS 0x6368756e6b73ULL /* "chunks" */
#define TAG_WINDOW 0x77696e646f77ULL /* "window" */

int dd_order_init(dd_order *o, int kind, int64_t n, uint64_t seed, int64_t epoch, int64_t chunk, int64_t window) {
  memset(o, 0, sizeof *o);
  o->kind = kind;
  o->n = n;
  o->seed = seed;
  o->epoch = epoch;
  switch (kind) {
  case DD_ORDER_GLOBAL:
    dd_bij_init(&o->rows, (uint64_t)n, dd_hash3(seed, (uint64_t)epoch, TAG_GLOBAL));
    return DD_OK;
  case DD_ORDER_CHUNKS: {
    if (chunk < 1 || window < 1)
      return dd_error(DD_EINVAL, "chunk order needs chunk rows and a window >= 1 (got %lld, %lld)", (long long)chunk,
                      (long long)window);
    o->chunk = chunk;
    o->nchunks = (n + chunk - 1) / chunk;
    o->last = n - (o->nchunks - 1) * chunk;
    o->window = window < o->nchunks ? window : o->nchunks;
    o->nwin = (o->nchunks + o->window - 1) / o->window;
    dd_bij_init(&o->chunks, (uint64_t)o->nchunks, dd_hash3(seed, (uint64_t)epoch, TAG_CHUNKS));
    /* the window that holds the partial last chunk (if there is one) */
    o->short_slot = o->last < chunk ? (int64_t)dd_bij_inv(&o->chunks, (uint64_t)(o->nchunks - 1)) : -1;
    return DD_OK;
  }
  case DD_ORDER_LEGACY:
    o->perm = dd_alloc((size_t)(n > 0 ? n : 1), sizeof(int64_t));
    if (!o->perm)
      return DD_ENOMEM;
    dd_sampler_permutation(o->perm, n, seed, epoch);
    return DD_OK;
  default:
    return dd_error(DD_EINVAL, "unknown sample order %d", kind);
  }
}

void dd_order_free(dd_order *o) {
  if (!o)
    return;
  dd_free(o->perm);
  o->perm = NULL;
}

/* chunk order: window w holds the chunks at slots [w W, w W + W) of the
 * chunk permutation; only the slot of the partial last chunk is short. */
static int64_t win_start(const dd_order *o, int64_t w) {
  int64_t s = w * o->window * o->chunk;
  if (o->short_slot >= 0 && w > o->short_slot / o->window)
    s -= o->chunk - o->last;
  return s;
}

static int64_t chunk_row(const dd_order *o, int64_t pos) {
  int64_t w = pos / (o->window * o->chunk);
  if (w >= o->nwin)
    w = o->nwin - 1;
  while (w + 1 < o->nwin && win_start(o, w + 1) <= pos)
    w++;
  while (w > 0 && win_start(o, w) > pos)
    w--;
  const int64_t first = w * o->window, slots = o->nchunks - first < o->window ? o->nchunks - first : o->window;
  const int64_t size = (w + 1 < o->nwin ? win_start(o, w + 1) : o->n) - win_start(o, w);
  dd_bij rows;
  dd_bij_init(&rows, (uint64_t)size, dd_hash3(o->seed, (uint64_t)o->epoch, TAG_WINDOW ^ ((uint64_t)w << 48)));
  int64_t q = (int64_t)dd_bij_at(&rows, (uint64_t)(pos - win_start(o, w))), j, r;
  const int64_t js = o->short_slot >= first && o->short_slot < first + slots ? o->short_slot - first : -1;
  if (js < 0 || q < js * o->chunk) {
    j = q / o->chunk;
    r = q % o->chunk;
  } else if (q - js * o->chunk < o->last) {
    j = js;
    r = q - js * o->chunk;
  } else {
    int64_t q3 = q - js * o->chunk - o->last;
    j = js + 1 + q3 / o->chunk;
    r = q3 % o->chunk;
  }
  return (int64_t)dd_bij_at(&o->chunks, (uint64_t)(first + j)) * o->chunk + r;
}

int64_t dd_order_row(const dd_order *o, int64_t pos) {
  switch (o->kind) {
  case DD_ORDER_GLOBAL:
    return (int64_t)dd_bij_at(&o->rows, (uint64_t)pos);
  case DD_ORDER_CHUNKS:
    return chunk_row(o, pos);
  default:
    return o->perm[pos];
  }
}
