/* Internal: one HDF5 dataset of one file read row by row without HDF5 calls (see column.c). */
#ifndef DDTRAIN_DATA_COLUMN_H
#define DDTRAIN_DATA_COLUMN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "h5util.h"

enum { DD__COL_CONTIG = 1, DD__COL_COMPACT, DD__COL_CHUNKED, DD__COL_EMPTY };
enum { DD__COL_MAXDIM = 6 };

typedef struct dd__chunk_cell {
  uint64_t addr; /* 0: never written (fill value) */
  uint32_t size; /* stored bytes */
  uint32_t mask; /* filters skipped for this chunk */
} dd__chunk_cell;

typedef struct dd__chunk_slot {
  int64_t cell; /* -1: empty */
  uint64_t used;
  unsigned char *data; /* [chunk_bytes] decoded, native byte order */
} dd__chunk_slot;

typedef struct dd__col {
  const char *path; /* borrowed from the source */
  int fd;           /* borrowed */
  char name[256];
  int ndim;
  int64_t dims[DD__COL_MAXDIM];
  int64_t nrows, row_elems;
  /* element type as stored */
  char cls; /* 'i' integer, 'f' float */
  int esize;
  bool is_signed, swap; /* swap: stored in the other byte order */
  int layout;
  /* contiguous: file offset, and a read-only map of the region (NULL: pread) */
  int64_t offset;
  const unsigned char *map;
  void *map_base;
  size_t map_len, map_skip, touched;
  /* contiguous with small rows (labels, lengths): a direct-mapped cache of
   * blocks of brows rows, so a batch's labels do not cost a system call per
   * row (NULL: none) */
  unsigned char *blocks; /* [nblocks][brows * row bytes] */
  int64_t *btag;         /* [nblocks] block number held, -1: none */
  int64_t brows, nblocks;
  /* compact (small, in the object header): the whole dataset, read at open */
  unsigned char *mem;
  /* chunked */
  int64_t cdims[DD__COL_MAXDIM], grid[DD__COL_MAXDIM], ncells;
  dd__chunk_cell *cells;
  int nfilters;
  int filters[8];
  size_t chunk_bytes;
  dd__chunk_slot *slots;
  int nslots;
  uint64_t clock, decodes;
  unsigned char *raw; /* [max stored chunk bytes] */
  size_t raw_n;
  unsigned char *tmp; /* [chunk_bytes] for the shuffle filter */
} dd__col;

/* Main thread, HDF5: describe dataset `name` of the open file f (fd is the
 * same file opened with open(2)) for row reads. Types: integers of 1, 2, 4
 * or 8 bytes and floats of 4 or 8, either byte order. Storage: contiguous
 * (read at its file offset, mapped if possible), compact, or chunked with
 * deflate/shuffle/fletcher32 filters (decoded here with zlib), keeping the
 * last cache_chunks first-dimension chunks decoded (with all their inner
 * chunks; 0: 4 MiB worth; at least 2). role/key name it in errors. */
int dd__col_open(hid_t f, int fd, const char *path, const char *name, const char *role, const char *key,
                 int64_t cache_chunks, dd__col *c);
void dd__col_close(dd__col *c);

/* Any thread (one at a time per column), no HDF5: row r's elements in
 * native byte order into dst [row_elems * esize]. */
int dd__col_row(dd__col *c, int64_t r, void *dst);
/* Rows [r0, r0 + n) at once (contiguous: one copy). */
int dd__col_rows(dd__col *c, int64_t r0, int64_t n, void *dst);

/* Element i of a native-order row buffer as double. */
double dd__col_value(const dd__col *c, const void *row, int64_t i);
/* Convert a row buffer to float32 (x * scale + shift; scale 1, shift 0 for none). */
void dd__col_to_f32(const dd__col *c, const void *row, int64_t n, double scale, double shift, float *out);

/* "uint8", "float32", ... */
const char *dd__col_type_name(const dd__col *c);
/* Drop the pages of the mapping from this process's resident set (they
 * stay in the page cache): keeps resident memory independent of the data. */
void dd__col_release(dd__col *c);

#endif
