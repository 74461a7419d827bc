/* ddtrain data: reading datasets (sources, splits, sample orders), and
 * writers for synthetic, imported and predicted data (hdf5.h lives here and
 * in checkpoint only).
 *
 * A dataset file holds features /x [N, ...] (any numeric type, converted to
 * float32) and labels /y: [N] or [N, T] integer class ids, or [N] / [N, K]
 * float targets. Dataset names are configurable.
 *
 * Training and evaluation read through a dd_source (rows by sample id into
 * caller buffers); dd_dataset is the in-memory form the writers and
 * converters build. */
#ifndef DDTRAIN_DATA_H
#define DDTRAIN_DATA_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "ddtrain/comm.h"
#include "ddtrain/layers.h"

enum { DD_LABELS_CLASS = 1, DD_LABELS_FLOAT = 2 };

typedef struct dd_dataset {
  char path[1024];
  char xname[256], yname[256];
  int64_t n;       /* samples */
  dd_shape xshape; /* per sample */
  int64_t xsize;
  int ykind;       /* DD_LABELS_*, 0 = no labels loaded */
  dd_shape yshape; /* per sample: [] (ndim 0) for one label, [T] or [K] */
  int64_t ysize;
  int64_t nclasses; /* class labels: max label + 1 */
  float *x;         /* [n * xsize] owned */
  uint8_t *xu8;     /* or [n * xsize] 8-bit features (images), read as xu8 * xscale + xshift; owned */
  double xscale, xshift;
  int32_t *yc;       /* [n * ysize] class ids (negative = masked) */
  float *yf;         /* [n * ysize] float targets */
  char *class_names; /* newline-separated names of class ids, or NULL */
  /* sequences (docs/data.md): */
  bool tokens;      /* x holds integer token ids (written back as int32) */
  int32_t *lengths; /* [n] valid steps per sequence, or NULL (all xshape.d[0]) */
  int32_t *vocab;   /* [nvocab] Unicode code point of each token id (data text), or NULL */
  int64_t nvocab;
} dd_dataset;

/* Load path:xname/yname collectively (yname NULL or "": features only,
 * ykind 0). `key` names the config key the path
 * came from (e.g. "data.train") for error messages. *out owned by caller. */
int dd_data_load(dd_comm *c, const char *path, const char *xname, const char *yname, const char *key, dd_dataset **out);
void dd_data_free(dd_dataset *ds);

/* ---- reading for training and evaluation: sources (src/data/source.c) ---
 * A source is a dataset opened for reading rows by sample id: every rank
 * opens it (collectively: the same checks and messages everywhere) and reads
 * the rows it needs, in any order, converted to float32 features and int32
 * class ids / float32 targets. */
typedef struct dd_source dd_source;

typedef struct dd_source_spec {
  const char *path;          /* an HDF5 file, or several: newline-separated paths or glob patterns */
  const char *xname, *yname; /* yname NULL or "": features only */
  const char *lengths;       /* sequence lengths dataset (data.lengths), or NULL/"" */
  int64_t pad_id;            /* >= 0: lengths from trailing padding (data.pad_id) */
  bool map;                  /* features x * scale + shift with these, else the file's attributes (or 1, 0) */
  double scale, shift;
  const char *key;      /* the config key or option the path came from, for messages */
  int64_t cache_chunks; /* chunked data: first-dimension chunks decoded and kept per file (0: 4 MiB worth) */
} dd_source_spec;

typedef struct dd_source_info {
  char path[1024];
  char xname[256], yname[256];
  int64_t n;       /* samples */
  dd_shape xshape; /* per sample */
  int64_t xsize;
  int ykind; /* DD_LABELS_*, 0 = no labels */
  dd_shape yshape;
  int64_t ysize;
  int64_t nclasses;     /* class labels: largest + 1 */
  bool tokens;          /* features stored as integers (token ids) */
  bool lengths;         /* sequences have lengths (data.lengths or data.pad_id) */
  const int32_t *vocab; /* [nvocab] code points of a `data text` file, or NULL; owned by the source */
  int64_t nvocab;
  char xtype[16];      /* features as stored: "uint8", "float32", ... */
  double scale, shift; /* the map applied to them */
  int nfiles;          /* files the samples are numbered across */
  int64_t chunk_rows;  /* rows per HDF5 chunk of the features (0: contiguous) */
  bool compressed;     /* the features pass through a filter (gzip, shuffle, ...) */
} dd_source_info;

/* Collective. *out owned by the caller (dd_source_close). */
int dd_source_open(dd_comm *c, const dd_source_spec *spec, dd_source **out);
void dd_source_close(dd_source *s);
const dd_source_info *dd_source_get_info(const dd_source *s);
/* Bytes per sample of the labels read into y. */
size_t dd_source_label_bytes(const dd_source *s);
/* Rows rows[0..n) (sample ids, any order) into x [n, xsize], y [n, ysize]
 * (int32 class ids, -1 at padding steps, or float targets; y may be NULL)
 * and len [n] (if info.lengths; may be NULL). Not collective. */
int dd_source_read(dd_source *s, const int64_t *rows, int n, float *x, void *y, int32_t *len);
/* Collective: the first sample holding a class id >= atleast (*row = -1 if
 * none) and that id. */
int dd_source_find_label(dd_comm *c, dd_source *s, int64_t atleast, int64_t *row, int64_t *value);
/* Collective: every valid step's feature is an integer token id in [0, V)
 * (one-line error naming the sample, the step and the fix; role names the
 * config key). */
int dd_source_check_tokens(dd_comm *c, dd_source *s, int64_t V, const char *role);

/* Which rows of a source a split holds, by position 0..n-1. */
typedef struct dd_split {
  int64_t n;
  int64_t *rows;  /* [n] owned (0.1 hold-outs); NULL: below, or rows 0..n-1 */
  uint64_t *bits; /* hold-out: bit r set = row r is for validation */
  int64_t *cum;   /* set bits before each 512-bit block */
  int64_t nbits;
  bool ones; /* positions count the set bits (validation) or the clear ones (training) */
  bool owns; /* frees bits/cum (the training split; validation borrows them) */
} dd_split;

void dd_split_all(int64_t n, dd_split *s);
/* Hold out round(frac * n) rows for validation, the rest train; both keep
 * file order. The rows are a seeded bijection's first values, kept as a
 * bitmap (n/8 bytes + 1/64 of that; the training split owns it, free it
 * last). legacy: ddtrain 0.1's hold-out (a Fisher-Yates permutation, n-element
 * arrays), to resume its checkpoints exactly. */
int dd_split_holdout(int64_t n, double frac, uint64_t seed, bool legacy, dd_split *train, dd_split *val);
int64_t dd_split_row(const dd_split *s, int64_t pos);
void dd_split_free(dd_split *s);

/* ---- sequences: lengths, text, vocabularies (src/data/sequence.c) ----- */

/* Give the sequences of ds their lengths (collective): from the integer
 * dataset lname [N] of the same file (data.lengths), or, if pad_id >= 0,
 * from the token ids: a sequence ends after its last token that is not
 * pad_id (data.pad_id; trailing padding only). Lengths must be 1..T. Per
 * step class labels at padding steps become -1 (masked). Nothing to do if
 * lname is empty and pad_id < 0. key names the file's config key. */
int dd_data_set_lengths(dd_comm *c, dd_dataset *ds, const char *lname, int64_t pad_id, const char *key);

/* `data text`: a character-level next-character dataset from a UTF-8 text
 * file. The vocabulary is the sorted set of code points in the file (id i
 * is the i-th smallest), or vocab[nvocab] if given (another file's, so a
 * validation text gets the same ids; a character outside it is an error);
 * x [N, T] holds the ids of windows of T characters taken every `stride`
 * characters, y [N, T] the ids of the next characters (x shifted by one).
 * *out owned by the caller. */
int dd_data_text(const char *txt, int64_t T, int64_t stride, const int32_t *vocab, int64_t nvocab, dd_dataset **out);
/* The /vocab of an HDF5 file (a dataset or checkpoint), read here (no MPI).
 * *vocab [*n] owned by the caller; DD_EDATA if the file has none. */
int dd_data_read_vocab(const char *path, int32_t **vocab, int64_t *n);

/* UTF-8 helpers. Decode s[0..n) into cps (room for n code points); returns
 * the number of code points, or -1 with *bad = the byte offset of the first
 * invalid sequence. */
int64_t dd_utf8_decode(const char *s, int64_t n, int32_t *cps, int64_t *bad);
/* Encode one code point into out (4 bytes of room); returns the byte count. */
int dd_utf8_encode(int32_t cp, char *out);
/* A code point for a one-line message: the character, or \n, \t, U+XXXX. */
void dd_char_label(int32_t cp, char *buf, int n);

/* ---- sampler: the same global batches on any number of ranks ---------- */

/* The epoch's order of positions 0..n-1: a permutation from (seed, epoch). */
void dd_sampler_permutation(int64_t *perm, int64_t n, uint64_t seed, int64_t epoch);
/* Global batches per epoch: ceil(n / B), or floor with drop_last. */
int64_t dd_sampler_batches(int64_t n, int64_t B, bool drop_last);
/* Size of global batch b (the last one may be partial). */
int64_t dd_sampler_batch_size(int64_t n, int64_t B, int64_t b);
/* Rank r's contiguous share [lo, hi) of a global batch of gsize samples:
 * gsize / P each, the first gsize % P ranks one more. */
void dd_sampler_shard(int64_t gsize, int P, int r, int64_t *lo, int64_t *hi);

/* ---- sample order without an N-element array (src/data/order.c) ------- */

/* A seeded bijection of [0, n): a Feistel network with cycle walking. The
 * same (n, key) gives the same permutation everywhere; O(1) memory. */
typedef struct dd_bij {
  uint64_t n, key;
  int hbits;
  uint64_t hmask;
} dd_bij;
void dd_bij_init(dd_bij *b, uint64_t n, uint64_t key);
uint64_t dd_bij_at(const dd_bij *b, uint64_t i);  /* i in [0, n) -> [0, n) */
uint64_t dd_bij_inv(const dd_bij *b, uint64_t y); /* its inverse */

/* The order of an epoch: position p in [0, n) -> sample. A pure function of
 * (kind, n, seed, epoch): every rank computes any position itself, so any
 * rank count sees the same global batches, and resuming needs no state.
 *   DD_ORDER_GLOBAL: a uniformly shuffled order (data.shuffle: global).
 *   DD_ORDER_CHUNKS: chunks of `chunk` consecutive samples in a shuffled
 *     order, grouped into windows of `window` chunks, the samples of each
 *     window shuffled among themselves (data.shuffle: chunks): every sample
 *     once per epoch, and a window's batches read only its chunks.
 *   DD_ORDER_LEGACY: the Fisher-Yates permutation of ddtrain <= 0.1
 *     checkpoints (an n-element array), kept to resume them exactly. */
enum { DD_ORDER_GLOBAL = 1, DD_ORDER_CHUNKS = 2, DD_ORDER_LEGACY = 3 };
typedef struct dd_order {
  int kind;
  int64_t n, epoch;
  uint64_t seed;
  dd_bij rows;                          /* global */
  int64_t chunk, window, nchunks, last; /* chunks: rows per chunk, chunks per window, count, rows of the last */
  int64_t nwin, short_slot;             /* windows; slot of the partial last chunk (-1: none) */
  dd_bij chunks;
  int64_t *perm; /* legacy: [n] owned */
} dd_order;
int dd_order_init(dd_order *o, int kind, int64_t n, uint64_t seed, int64_t epoch, int64_t chunk, int64_t window);
int64_t dd_order_row(const dd_order *o, int64_t pos);
void dd_order_free(dd_order *o);

/* ---- prefetch: this rank's micro-batches, read ahead (src/data/loader.c) -
 * A background thread walks the plan's micro-batches in order, from (epoch,
 * batch) on: for each global batch the rank's contiguous share, split into
 * accum micro-batches, each sample's row = split row of the epoch order's
 * position. It fills up to `depth` buffers ahead of the consumer, reads
 * without HDF5 (dd_source_read), blocks every signal (stop requests stay
 * the main thread's) and hands an error to the consumer with its message. */
typedef struct dd_loader_plan {
  dd_source *src;
  const dd_split *split; /* borrowed; positions 0..split->n-1 */
  int order_kind;        /* DD_ORDER_* */
  uint64_t seed;
  int64_t chunk, window; /* DD_ORDER_CHUNKS */
  int64_t B, steps_per_epoch;
  int P, rank, accum, micro_max;
  int64_t epoch, batch; /* the first step to deliver */
  int64_t epochs;       /* stop after epoch epochs - 1 */
  int64_t step0;        /* the optimizer step of (epoch, batch), for fault injection */
} dd_loader_plan;

typedef struct dd_micro {
  int64_t epoch, batch;
  int j;            /* micro-batch of the step */
  int n;            /* samples (may be 0) */
  int64_t gsize;    /* samples in the global batch */
  int64_t sample0;  /* position of the first sample in the global batch */
  float *x;         /* [n, xsize] */
  void *y;          /* [n, ysize] */
  int32_t *len;     /* [n] if the source has lengths */
  int64_t *rows;    /* [n] sample ids */
  uint64_t digest;  /* sum of hash(epoch, position, id) */
  double t_read[2]; /* dd_now() when the reader started and finished it (the trace) */
  int status;
  char msg[512];
} dd_micro;

typedef struct dd_loader dd_loader;
int dd_loader_start(const dd_loader_plan *p, int depth, dd_loader **out);
/* The next micro-batch (blocks until it is read; *waited += the seconds
 * blocked). Valid until dd_loader_done. A read error comes back as its
 * status with the message adopted. */
int dd_loader_next(dd_loader *l, dd_micro **mb, double *waited);
void dd_loader_done(dd_loader *l);
/* Stop the thread and free (NULL: no-op). */
void dd_loader_stop(dd_loader *l);

/* ---- writing (rank 0 only; atomic: temporary file, fsync, rename) ------ */

enum { DD_F32 = 1, DD_I32 = 2, DD_U8 = 3 };
typedef struct dd_array {
  const char *name; /* "/x" */
  int type;         /* DD_F32, DD_I32 or DD_U8 */
  int ndim;
  int64_t dims[DD_SHAPE_MAX + 1];
  const void *data;
  double scale, shift; /* scale != 0: written as the dataset's scale/shift attributes */
} dd_array;
typedef struct dd_attr {
  const char *name;
  const char *text; /* string attribute, or NULL for the integer */
  int64_t value;
} dd_attr;

int dd_data_write(const char *path, const dd_array *arrays, int narrays, const dd_attr *attrs, int nattrs);
/* Writing a file too large to hold: the datasets (arrays' data ignored) are
 * created at their full size in a temporary file, filled row range by row
 * range, and committed (fsync, rename) or aborted (removed). Rank 0 only. */
typedef struct dd_writer dd_writer;
int dd_writer_create(const char *path, const dd_array *arrays, int narrays, const dd_attr *attrs, int nattrs,
                     dd_writer **out);
/* Rows [row0, row0 + nrows) of dataset i (the order given to create). */
int dd_writer_rows(dd_writer *w, int i, int64_t row0, int64_t nrows, const void *data);
int dd_writer_commit(dd_writer *w);
void dd_writer_abort(dd_writer *w);

/* Write a dataset struct as /x, /y (+ format attributes). */
int dd_data_save(const dd_dataset *ds, const char *path, const char *origin);

/* Print shapes, types, label counts and feature statistics of every
 * dataset in an HDF5 file. */
int dd_data_inspect(const char *path, FILE *out);

/* HDF5 objects this process holds open (files, groups, datasets, named
 * types, attributes): 0 between commands, or an error path left something
 * open. For tests (the fuzz targets check it after every input). */
int64_t dd_data_open_objects(void);

/* ---- synthetic data and converters (data synth / data import) -------- */

typedef struct dd_synth_spec {
  bool regression;
  int64_t samples, features, classes; /* classes = outputs for regression */
  double noise;
  uint64_t seed;
  dd_shape image; /* if ndim 3: x stored as [N, C, H, W] (features = C*H*W) */
  bool uint8;     /* images: stored as uint8 (x * 255 rounded) with scale 1/255 */
  /* seq_len > 0: token sequences instead (docs/data.md): x [N, seq_len]
   * ids in [0, vocab) right-padded with 0, lengths [N] in [min_len,
   * seq_len], y [N] (or [N, seq_len] if per_step) = which class's words
   * dominate, a word right after the 'not' token counting against its class */
  int64_t seq_len, vocab, min_len;
  bool per_step;
} dd_synth_spec;
/* Build a learnable dataset in memory; *out owned by the caller. */
int dd_data_synth(const dd_synth_spec *s, dd_dataset **out);

/* CSV: one row per sample; `label` names the label column by header name
 * or 0-based index (negative counts from the end; NULL = last column). A
 * header row is detected when the first row is not all numbers. Integer
 * labels are class ids; non-numeric labels are mapped to ids in sorted
 * order (names kept in class_names). regression: the label column is a
 * float target. */
int dd_data_import_csv(const char *csv, const char *label, bool regression, dd_dataset **out);
/* MNIST-style IDX (images idx3-ubyte, labels idx1-ubyte); pixels scaled to
 * [0, 1], stored as [N, 1, H, W]. */
int dd_data_import_idx(const char *images, const char *labels, dd_dataset **out);

#endif
