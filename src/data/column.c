/* One HDF5 dataset read row by row without HDF5 calls: contiguous data at its file offset, chunks decoded here. */
#define _GNU_SOURCE /* pread, mmap flags */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "column.h"
#include "ddtrain/core.h"

/* HDF5 1.10 (Debian 12) is not thread-safe, and reading rows happens on the
 * prefetch thread while the main thread writes checkpoints. So everything
 * HDF5 knows about a dataset's storage is asked here once, at open, on the
 * main thread; rows are then read with pread/mmap at the offsets HDF5
 * reported, and chunks are decoded (deflate, shuffle, fletcher32) with
 * zlib. No HDF5 call happens after dd__col_open. */

enum { RELEASE_BYTES = 32 << 20 }; /* drop mapped pages from the resident set every 32 MiB read */
/* Columns whose rows are at most SMALL_ROW bytes (labels, lengths) are read
 * through a block cache of at most BLOCK_CACHE bytes in blocks of about
 * BLOCK_BYTES: one pread of a block costs about what one of a 4-byte label
 * does, and a 784-byte uint8 sample read with its label in two system calls
 * ran at 0.84 M rows/s against 1.16 M without the label (docs/benchmarks.md). */
enum { SMALL_ROW = 64, BLOCK_BYTES = 1024, BLOCK_CACHE = 8 << 20 };

static int col_fail(const dd__col *c, const char *what) {
  return dd_error(DD_EDATA, "'%s':%s %s", c->path, c->name, what);
}

/* 0, -errno, or 1 if the file ends first: open checked that it holds the data, so it shrank. */
static int read_full(int fd, void *buf, size_t n, int64_t off) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = pread(fd, (char *)buf + got, n - got, (off_t)(off + (int64_t)got));
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      return r < 0 ? -errno : 1;
    got += (size_t)r;
  }
  return 0;
}

static int shrunk(const dd__col *c) {
  return dd_error(DD_EDATA,
                  "'%s' became shorter while training read it (%s now ends before its data); a dataset must not be "
                  "rewritten during a run",
                  c->path, c->name);
}

static int open_type(hid_t dset, const char *role, dd__col *c) {
  hid_t t = H5Dget_type(dset);
  if (t < 0)
    return DD_H5_FAIL("H5Dget_type", c->path);
  H5T_class_t cls = H5Tget_class(t);
  int rc = DD_OK;
  c->esize = (int)H5Tget_size(t);
  if (cls == H5T_INTEGER) {
    c->cls = 'i';
    c->is_signed = H5Tget_sign(t) == H5T_SGN_2;
    if (c->esize != 1 && c->esize != 2 && c->esize != 4 && c->esize != 8)
      rc = dd_error(DD_EDATA, "'%s':%s (%s) holds %d-byte integers; store 1, 2, 4 or 8-byte integers", c->path, c->name,
                    role, c->esize);
  } else if (cls == H5T_FLOAT) {
    c->cls = 'f';
    c->is_signed = true;
    bool ieee = H5Tequal(t, H5T_IEEE_F32LE) > 0 || H5Tequal(t, H5T_IEEE_F32BE) > 0 || H5Tequal(t, H5T_IEEE_F64LE) > 0 ||
                H5Tequal(t, H5T_IEEE_F64BE) > 0;
    if (!ieee)
      rc = dd_error(DD_EDATA, "'%s':%s (%s) holds %d-byte floats of a non-IEEE layout; store float32 or float64",
                    c->path, c->name, role, c->esize);
  } else {
    rc = dd_error(DD_EDATA,
                  "'%s':%s (%s) has %s elements; it must be numeric "
                  "(float32 preferred, other numeric types are converted)",
                  c->path, c->name, role, dd__h5_class_name(cls));
  }
  if (rc == DD_OK && !dd__h5_type_ok(t))
    rc = dd_error(DD_EDATA,
                  "'%s':%s (%s) has a %d-byte %s type whose precision or offset does not fit it; the file is damaged",
                  c->path, c->name, role, c->esize, dd__h5_class_name(cls));
  if (rc == DD_OK && c->esize > 1) {
    H5T_order_t o = H5Tget_order(t);
    const uint16_t probe = 1;
    const bool little = *(const unsigned char *)&probe == 1;
    c->swap = (o == H5T_ORDER_BE && little) || (o == H5T_ORDER_LE && !little);
  }
  H5Tclose(t);
  return rc;
}

static int open_chunked(hid_t dset, hid_t dcpl, int64_t file_size, int64_t cache_chunks, dd__col *c) {
  hsize_t cd[DD__COL_MAXDIM];
  if (H5Pget_chunk(dcpl, c->ndim, cd) != c->ndim)
    return DD_H5_FAIL("H5Pget_chunk", c->path);
  int nf = H5Pget_nfilters(dcpl);
  if (nf < 0 || nf > 8)
    return col_fail(c, "has a filter pipeline ddtrain cannot read");
  for (int i = 0; i < nf; i++) {
    unsigned flags, cdv[8];
    size_t ncd = 8;
    char fname[64] = "";
    H5Z_filter_t id = H5Pget_filter2(dcpl, (unsigned)i, &flags, &ncd, cdv, sizeof fname, fname, NULL);
    if (id != H5Z_FILTER_DEFLATE && id != H5Z_FILTER_SHUFFLE && id != H5Z_FILTER_FLETCHER32)
      return dd_error(DD_EDATA,
                      "'%s':%s is stored with the HDF5 filter '%s' (id %d), which ddtrain cannot decode (it reads "
                      "gzip, shuffle and fletcher32); repack it: h5repack -f %s:GZIP=4 %s OUT.h5",
                      c->path, c->name, fname[0] ? fname : "?", (int)id, c->name, c->path);
    c->filters[c->nfilters++] = (int)id;
  }
  /* the chunk shape is the file's word too: checked before it sizes anything */
  c->ncells = 1;
  int64_t cbytes = c->esize;
  for (int d = 0; d < c->ndim; d++) {
    if (cd[d] == 0 || cd[d] > ((hsize_t)1 << 32) || dd_mul_overflows(cbytes, (int64_t)cd[d], &cbytes) ||
        cbytes > ((int64_t)1 << 32)) {
      char chunk[200];
      return dd_error(DD_EDATA, "'%s':%s has chunks of %s elements, which HDF5 does not write; the file is damaged",
                      c->path, c->name, dd__h5_shape_str(c->ndim, cd, chunk, sizeof chunk));
    }
    c->cdims[d] = (int64_t)cd[d];
    c->grid[d] = (c->dims[d] - 1) / c->cdims[d] + 1; /* dims > 0 here */
    if (dd_mul_overflows(c->ncells, c->grid[d], &c->ncells))
      return col_fail(c, "has more chunks than ddtrain counts; the file is damaged");
  }
  c->chunk_bytes = (size_t)cbytes;
  /* a file that stores few of its chunks is not data: a small file of 4 Mi never-written one-byte
   * chunks trained on 4 Mi rows of fill values (and the index is asked cell by cell below) */
  hsize_t nstored = 0;
  hid_t space = H5Dget_space(dset);
  const herr_t counted = space >= 0 ? H5Dget_num_chunks(dset, space, &nstored) : -1;
  if (space >= 0)
    H5Sclose(space);
  if (counted < 0) {
    H5Eclear2(H5E_DEFAULT);
    return col_fail(c, "has a chunk index HDF5 cannot read; the file is damaged");
  }
  if ((uint64_t)c->ncells > 1100 * (uint64_t)nstored + 65536)
    return dd_error(DD_EDATA,
                    "'%s':%s has %lld chunks of which the file stores %llu: the rest were never written; the file is "
                    "damaged or unfinished",
                    c->path, c->name, (long long)c->ncells, (unsigned long long)nstored);
  c->cells = dd_alloc((size_t)c->ncells, sizeof *c->cells);
  if (!c->cells)
    return DD_ENOMEM;
  /* the chunk index, cell by cell (by coordinates: O(log chunks) each) */
  hsize_t off[DD__COL_MAXDIM];
  for (int64_t cell = 0; cell < c->ncells; cell++) {
    int64_t rest = cell;
    for (int d = c->ndim - 1; d >= 0; d--) {
      off[d] = (hsize_t)((rest % c->grid[d]) * c->cdims[d]);
      rest /= c->grid[d];
    }
    unsigned mask = 0;
    haddr_t addr = HADDR_UNDEF;
    hsize_t size = 0;
    if (H5Dget_chunk_info_by_coord(dset, off, &mask, &addr, &size) < 0 || addr == HADDR_UNDEF) {
      H5Eclear2(H5E_DEFAULT);
      continue; /* never written: the fill value */
    }
    if (addr > (haddr_t)file_size || size > (hsize_t)file_size - addr || size > 0xffffffffu)
      return dd_error(DD_EDATA,
                      "'%s':%s: chunk %lld lies past the end of the file (%lld bytes); the file is truncated or "
                      "damaged",
                      c->path, c->name, (long long)cell, (long long)file_size);
    c->cells[cell] = (dd__chunk_cell){.addr = addr, .size = (uint32_t)size, .mask = mask};
    if (size > c->raw_n)
      c->raw_n = size;
  }
  if (c->raw_n < c->chunk_bytes)
    c->raw_n = c->chunk_bytes;
  /* a row spans the inner cells of one first-dimension chunk: keep two rows of chunks at least */
  int64_t inner = c->ncells / c->grid[0];
  int64_t keep = cache_chunks > 0 ? cache_chunks : (int64_t)((4 << 20) / (c->chunk_bytes ? c->chunk_bytes : 1));
  int64_t want = (keep < 2 ? 2 : keep) * inner;
  if (want > 65536)
    want = 65536;
  c->nslots = (int)want;
  c->slots = dd_alloc((size_t)c->nslots, sizeof *c->slots);
  c->raw = dd_alloc(c->raw_n + 8, 1);
  c->tmp = dd_alloc(c->chunk_bytes + 8, 1);
  if (!c->slots || !c->raw || !c->tmp)
    return DD_ENOMEM;
  for (int i = 0; i < c->nslots; i++)
    c->slots[i].cell = -1;
  return DD_OK;
}

static int open_contig(hid_t dset, int64_t file_size, dd__col *c) {
  haddr_t off = H5Dget_offset(dset);
  const int64_t bytes = c->nrows * c->row_elems * c->esize;
  if (off == HADDR_UNDEF) { /* allocated lazily and never written */
    H5Eclear2(H5E_DEFAULT);
    c->layout = DD__COL_EMPTY;
    return DD_OK;
  }
  c->offset = off > (haddr_t)file_size ? file_size + 1 : (int64_t)off;
  if (bytes > file_size - c->offset)
    return dd_error(
        DD_EDATA, "'%s':%s needs bytes up to %llu but the file has %lld; the file is truncated (an interrupted copy?)",
        c->path, c->name, (unsigned long long)off + (unsigned long long)bytes, (long long)file_size);
  /* Rows are read with pread, one system call per row (or per run of
   * consecutive rows). DD_READ_MMAP=1 maps the dataset instead and memcpy's
   * rows out of the map: no system call, but each first touch of a page
   * faults and the kernel maps up to 64 KiB of cached neighbours with it,
   * which the periodic release below then unmaps again: measured slower
   * (the reference MLP at 1 rank: 3.5-3.6 s wall, 3.1-3.3 s CPU an epoch
   * against 2.9-3.0 s and 2.6-2.7 s with pread; docs/data.md). */
  long page = sysconf(_SC_PAGESIZE);
  int64_t start = c->offset / page * page;
  size_t len = (size_t)(c->offset + bytes - start);
  const char *mm = getenv("DD_READ_MMAP");
  if (bytes > 0 && mm && strcmp(mm, "1") == 0) {
    void *m = mmap(NULL, len, PROT_READ, MAP_SHARED, c->fd, (off_t)start);
    if (m != MAP_FAILED) {
      madvise(m, len, MADV_RANDOM);
      c->map_base = m;
      c->map_len = len;
      c->map_skip = (size_t)(c->offset - start);
      c->map = (const unsigned char *)m + c->map_skip;
    }
  }
  /* read by pread, small rows: the block cache (dd__col_row) */
  const int64_t rb = c->row_elems * c->esize;
  if (!c->map && rb > 0 && rb <= SMALL_ROW && c->nrows > 0) {
    c->brows = BLOCK_BYTES / rb;
    const int64_t need = (c->nrows + c->brows - 1) / c->brows, most = BLOCK_CACHE / (c->brows * rb);
    c->nblocks = need < most ? need : most;
    c->blocks = dd_alloc((size_t)(c->nblocks * c->brows * rb), 1);
    c->btag = dd_alloc((size_t)c->nblocks, sizeof *c->btag);
    if (!c->blocks || !c->btag)
      return DD_ENOMEM;
    for (int64_t i = 0; i < c->nblocks; i++)
      c->btag[i] = -1;
  }
  return DD_OK;
}

int dd__col_open(hid_t f, int fd, const char *path, const char *name, const char *role, const char *key,
                 int64_t cache_chunks, dd__col *c) {
  memset(c, 0, sizeof *c);
  c->fd = fd;
  c->path = path;
  snprintf(c->name, sizeof c->name, "%s", name);
  if (H5Lexists(f, name, H5P_DEFAULT) <= 0) {
    H5Eclear2(H5E_DEFAULT);
    char have[512];
    dd__h5_list_datasets(f, have, sizeof have);
    return dd_error(DD_EDATA, "'%s' has no dataset '%s' (%s); it has: %s; set %s to the right name", path, name, role,
                    have, key);
  }
  hid_t dset = H5Dopen2(f, name, H5P_DEFAULT);
  if (dset < 0)
    return DD_H5_FAIL("H5Dopen", path);
  hid_t dcpl = -1, sp = -1;
  int rc = open_type(dset, role, c);
  if (rc == DD_OK) {
    sp = H5Dget_space(dset);
    c->ndim = H5Sget_simple_extent_ndims(sp);
    if (c->ndim < 1 || c->ndim > DD__COL_MAXDIM) {
      rc = dd_error(DD_EDATA, "'%s':%s (%s) has %d dimensions; expected 1 to %d with samples first", path, name, role,
                    c->ndim, DD__COL_MAXDIM);
    } else {
      hsize_t d[DD__COL_MAXDIM];
      H5Sget_simple_extent_dims(sp, d, NULL);
      char shape[200];
      dd__h5_shape_str(c->ndim, d, shape, sizeof shape);
      /* every product of the shape is checked: a sample of 16x1048577x1099510579201 values is 2^64 + 16 */
      int64_t elems, bytes, row_bytes = 0;
      rc = dd__h5_size(path, name, role, c->ndim, d, c->esize, &elems, &bytes);
      c->row_elems = 1;
      bool over = false; /* with no rows the whole is 0 and the sample's size is checked on its own */
      for (int i = 1; rc == DD_OK && i < c->ndim && !over; i++)
        over = dd_mul_overflows(c->row_elems, (int64_t)d[i], &c->row_elems);
      if (rc == DD_OK && (over || dd_mul_overflows(c->row_elems, c->esize, &row_bytes)))
        rc = dd_error(DD_EDATA, "'%s':%s (%s) has shape %s, whose sample size overflows 64 bits; the file is damaged",
                      path, name, role, shape);
      if (rc == DD_OK && row_bytes > ((int64_t)1 << 32))
        rc = dd_error(DD_EDATA,
                      "'%s':%s (%s) has shape %s: one sample holds %lld values, more than ddtrain reads (4 GiB)", path,
                      name, role, shape, (long long)c->row_elems);
      if (rc == DD_OK)
        rc = dd__h5_check_stored(dset, path, name, role, c->ndim, d, bytes);
      for (int i = 0; rc == DD_OK && i < c->ndim; i++)
        c->dims[i] = (int64_t)d[i];
      c->nrows = c->dims[0];
    }
  }
  struct stat st;
  int64_t file_size = fstat(fd, &st) == 0 ? (int64_t)st.st_size : 0;
  if (rc == DD_OK) {
    dcpl = H5Dget_create_plist(dset);
    if (H5Pget_external_count(dcpl) > 0)
      rc = dd_error(DD_EDATA, "'%s':%s keeps its data in external files; repack it into the file with h5repack", path,
                    name);
  }
  if (rc == DD_OK && (c->nrows == 0 || c->row_elems == 0)) {
    c->layout = DD__COL_EMPTY; /* nothing to read: the caller says what is wrong with that */
  } else if (rc == DD_OK) {
    switch (H5Pget_layout(dcpl)) {
    case H5D_CONTIGUOUS:
      c->layout = DD__COL_CONTIG;
      rc = open_contig(dset, file_size, c);
      break;
    case H5D_COMPACT: {
      c->layout = DD__COL_COMPACT;
      size_t bytes = (size_t)(c->nrows * c->row_elems * c->esize);
      c->mem = dd_alloc(bytes + 1, 1);
      hid_t t = H5Dget_type(dset), nt = H5Tget_native_type(t, H5T_DIR_ASCEND);
      if (!c->mem)
        rc = DD_ENOMEM;
      else if (bytes && H5Dread(dset, nt, H5S_ALL, H5S_ALL, H5P_DEFAULT, c->mem) < 0)
        rc = DD_H5_FAIL("reading a compact dataset", path);
      c->swap = false; /* converted to native order by HDF5 */
      H5Tclose(nt);
      H5Tclose(t);
      break;
    }
    case H5D_CHUNKED:
      c->layout = DD__COL_CHUNKED;
      rc = open_chunked(dset, dcpl, file_size, cache_chunks, c);
      break;
    default:
      rc = dd_error(DD_EDATA, "'%s':%s has a storage layout ddtrain cannot read (virtual?); repack it with h5repack",
                    path, name);
    }
  }
  if (dcpl >= 0)
    H5Pclose(dcpl);
  if (sp >= 0)
    H5Sclose(sp);
  H5Dclose(dset);
  if (rc)
    dd__col_close(c);
  return rc;
}

void dd__col_close(dd__col *c) {
  if (!c)
    return;
  if (c->map_base)
    munmap(c->map_base, c->map_len);
  for (int i = 0; c->slots && i < c->nslots; i++)
    dd_free(c->slots[i].data);
  dd_free(c->slots);
  dd_free(c->cells);
  dd_free(c->raw);
  dd_free(c->tmp);
  dd_free(c->mem);
  dd_free(c->blocks);
  dd_free(c->btag);
  memset(c, 0, sizeof *c);
}

void dd__col_release(dd__col *c) {
  if (c->map_base)
    madvise(c->map_base, c->map_len, MADV_DONTNEED);
  c->touched = 0;
}

static void swap_bytes(unsigned char *p, int64_t n, int esize) {
  for (int64_t i = 0; i < n; i++, p += esize)
    for (int a = 0, b = esize - 1; a < b; a++, b--) {
      unsigned char t = p[a];
      p[a] = p[b];
      p[b] = t;
    }
}

/* HDF5's Fletcher-32 (H5checksum.c), over 16-bit big-endian words */
static uint32_t fletcher32(const unsigned char *data, size_t n) {
  size_t len = n / 2;
  uint32_t s1 = 0, s2 = 0;
  while (len) {
    size_t t = len > 360 ? 360 : len;
    len -= t;
    do {
      s1 += ((uint32_t)data[0] << 8) | data[1];
      data += 2;
      s2 += s1;
    } while (--t);
    s1 = (s1 & 0xffff) + (s1 >> 16);
    s2 = (s2 & 0xffff) + (s2 >> 16);
  }
  if (n % 2) {
    s1 += (uint32_t)*data << 8;
    s2 += s1;
    s1 = (s1 & 0xffff) + (s1 >> 16);
    s2 = (s2 & 0xffff) + (s2 >> 16);
  }
  s1 = (s1 & 0xffff) + (s1 >> 16);
  s2 = (s2 & 0xffff) + (s2 >> 16);
  return (s2 << 16) | s1;
}

/* Undo the filter pipeline of one stored chunk (in c->raw, n bytes) into out [chunk_bytes]. */
static int decode_chunk(dd__col *c, int64_t cell, size_t n, unsigned char *out) {
  unsigned char *cur = c->raw, *spare = c->tmp;
  const uint32_t mask = c->cells[cell].mask;
  for (int i = c->nfilters - 1; i >= 0; i--) {
    if (mask & (1u << i))
      continue;
    switch (c->filters[i]) {
    case H5Z_FILTER_FLETCHER32: {
      if (n < 4)
        return col_fail(c, "has a damaged chunk (too short for its checksum)");
      n -= 4;
      uint32_t stored =
          (uint32_t)cur[n] | (uint32_t)cur[n + 1] << 8 | (uint32_t)cur[n + 2] << 16 | (uint32_t)cur[n + 3] << 24;
      uint32_t sum = fletcher32(cur, n);
      uint32_t rev = ((sum & 0xff) << 24) | ((sum & 0xff00) << 8) | ((sum >> 8) & 0xff00) | (sum >> 24);
      if (stored != sum && stored != rev)
        return dd_error(DD_EDATA,
                        "'%s':%s: chunk %lld fails its Fletcher-32 checksum; the file is damaged (restore or "
                        "recreate it)",
                        c->path, c->name, (long long)cell);
      break;
    }
    case H5Z_FILTER_DEFLATE: {
      uLongf got = (uLongf)c->chunk_bytes;
      unsigned char *dst = cur == c->raw ? spare : c->raw;
      if (dst == c->raw && c->raw_n < c->chunk_bytes)
        return DD_ENOMEM;
      if (uncompress(dst, &got, cur, (uLong)n) != Z_OK || got != c->chunk_bytes)
        return dd_error(DD_EDATA, "'%s':%s: chunk %lld does not inflate to %zu bytes; the file is damaged", c->path,
                        c->name, (long long)cell, c->chunk_bytes);
      spare = cur;
      cur = dst;
      n = got;
      break;
    }
    case H5Z_FILTER_SHUFFLE: {
      /* what is left to unshuffle is the chunk itself: more (a crafted stored size) would overrun the
       * spare buffer, which holds one chunk */
      if (n > c->chunk_bytes)
        return dd_error(DD_EDATA, "'%s':%s: chunk %lld holds %zu bytes, expected %zu; the file is damaged", c->path,
                        c->name, (long long)cell, n, c->chunk_bytes);
      unsigned char *dst = cur == c->raw ? spare : c->raw;
      const size_t es = (size_t)c->esize, nel = n / es;
      for (size_t b = 0; b < es; b++)
        for (size_t e = 0; e < nel; e++)
          dst[e * es + b] = cur[b * nel + e];
      memcpy(dst + nel * es, cur + nel * es, n - nel * es);
      spare = cur;
      cur = dst;
      break;
    }
    default:
      return col_fail(c, "has an unknown filter");
    }
  }
  if (n != c->chunk_bytes)
    return dd_error(DD_EDATA, "'%s':%s: chunk %lld holds %zu bytes, expected %zu; the file is damaged", c->path,
                    c->name, (long long)cell, n, c->chunk_bytes);
  memcpy(out, cur, n);
  if (c->swap)
    swap_bytes(out, (int64_t)(n / (size_t)c->esize), c->esize);
  return DD_OK;
}

static int get_chunk(dd__col *c, int64_t cell, const unsigned char **data) {
  dd__chunk_slot *victim = NULL;
  for (int i = 0; i < c->nslots; i++) {
    dd__chunk_slot *s = &c->slots[i];
    if (s->cell == cell) {
      s->used = ++c->clock;
      *data = s->data;
      return DD_OK;
    }
    if (!victim || s->used < victim->used)
      victim = s;
  }
  if (!victim)
    return dd_error(DD_EINVAL, "'%s':%s: no chunk cache", c->path, c->name);
  if (!victim->data && !(victim->data = dd_alloc(c->chunk_bytes, 1)))
    return DD_ENOMEM;
  victim->cell = -1;
  const dd__chunk_cell *cc = &c->cells[cell];
  int rc = DD_OK;
  if (cc->addr == 0) {
    memset(victim->data, 0, c->chunk_bytes);
  } else {
    int e = read_full(c->fd, c->raw, cc->size, (int64_t)cc->addr);
    if (e > 0)
      return shrunk(c);
    if (e)
      return dd_error(DD_EIO, "'%s':%s: reading chunk %lld failed: %s", c->path, c->name, (long long)cell,
                      strerror(-e));
    rc = decode_chunk(c, cell, cc->size, victim->data);
  }
  if (rc)
    return rc;
  c->decodes++;
  victim->cell = cell;
  victim->used = ++c->clock;
  *data = victim->data;
  return DD_OK;
}

/* Copy the part of chunk `ch` (grid coordinates g) that holds row offset i0
 * into the row buffer: the inner dimensions' block, clipped at the edges. */
static void copy_block(const dd__col *c, const unsigned char *ch, const int64_t *g, int64_t i0, unsigned char *row) {
  const int inner = c->ndim - 1;
  const size_t es = (size_t)c->esize;
  if (inner == 0) {
    memcpy(row, ch + (size_t)i0 * es, es);
    return;
  }
  int64_t lo[DD__COL_MAXDIM] = {0}, ext[DD__COL_MAXDIM] = {0}, idx[DD__COL_MAXDIM] = {0};
  for (int d = 1; d < c->ndim; d++) {
    lo[d] = g[d] * c->cdims[d];
    ext[d] = c->dims[d] - lo[d] < c->cdims[d] ? c->dims[d] - lo[d] : c->cdims[d];
  }
  const int64_t run = ext[c->ndim - 1];
  for (;;) {
    int64_t src = i0, dst = 0;
    for (int d = 1; d < c->ndim; d++) {
      src = src * c->cdims[d] + idx[d];
      dst = dst * c->dims[d] + lo[d] + idx[d];
    }
    memcpy(row + (size_t)dst * es, ch + (size_t)src * es, (size_t)run * es);
    int d = c->ndim - 2;
    while (d >= 1 && ++idx[d] == ext[d])
      idx[d--] = 0;
    if (d < 1)
      break;
  }
}

/* rows [r0, r0 + n) of a contiguous dataset, as stored, by pread */
static int read_rows(const dd__col *c, int64_t r0, int64_t n, void *dst) {
  const size_t rb = (size_t)(c->row_elems * c->esize);
  const int e = read_full(c->fd, dst, rb * (size_t)n, c->offset + r0 * (int64_t)rb);
  if (e > 0)
    return shrunk(c);
  if (e == 0)
    return DD_OK;
  if (n == 1)
    return dd_error(DD_EIO, "'%s':%s: reading row %lld failed: %s", c->path, c->name, (long long)r0, strerror(-e));
  return dd_error(DD_EIO, "'%s':%s: reading rows %lld..%lld failed: %s", c->path, c->name, (long long)r0,
                  (long long)(r0 + n - 1), strerror(-e));
}

int dd__col_row(dd__col *c, int64_t r, void *dst) {
  const size_t rb = (size_t)(c->row_elems * c->esize);
  switch (c->layout) {
  case DD__COL_EMPTY:
    memset(dst, 0, rb);
    return DD_OK;
  case DD__COL_COMPACT:
    memcpy(dst, c->mem + (size_t)r * rb, rb);
    return DD_OK;
  case DD__COL_CONTIG:
    if (c->map) {
      memcpy(dst, c->map + (size_t)r * rb, rb);
      /* a fault maps up to 64 KiB of neighbouring cached pages too (the
       * kernel's fault-around), all of it resident: count that */
      if ((c->touched += rb + 65536) > RELEASE_BYTES)
        dd__col_release(c);
    } else if (c->blocks) {
      const int64_t b = r / c->brows, slot = b % c->nblocks;
      unsigned char *blk = c->blocks + (size_t)(slot * c->brows) * rb;
      if (c->btag[slot] != b) {
        const int64_t r0 = b * c->brows, n = c->nrows - r0 < c->brows ? c->nrows - r0 : c->brows;
        c->btag[slot] = -1;
        const int rc = read_rows(c, r0, n, blk);
        if (rc)
          return rc;
        c->btag[slot] = b;
      }
      memcpy(dst, blk + (size_t)(r - b * c->brows) * rb, rb);
    } else {
      const int rc = read_rows(c, r, 1, dst);
      if (rc)
        return rc;
    }
    if (c->swap)
      swap_bytes(dst, c->row_elems, c->esize);
    return DD_OK;
  default: {
    const int64_t q0 = r / c->cdims[0], i0 = r % c->cdims[0];
    int64_t g[DD__COL_MAXDIM] = {q0};
    const int64_t inner = c->ncells / c->grid[0];
    for (int64_t k = 0; k < inner; k++) {
      int64_t rest = k, cell = q0;
      for (int d = c->ndim - 1; d >= 1; d--) {
        g[d] = rest % c->grid[d];
        rest /= c->grid[d];
      }
      for (int d = 1; d < c->ndim; d++)
        cell = cell * c->grid[d] + g[d];
      const unsigned char *ch = NULL;
      int rc = get_chunk(c, cell, &ch);
      if (rc)
        return rc;
      copy_block(c, ch, g, i0, dst);
    }
    return DD_OK;
  }
  }
}

int dd__col_rows(dd__col *c, int64_t r0, int64_t n, void *dst) {
  const size_t rb = (size_t)(c->row_elems * c->esize);
  if (c->layout == DD__COL_CONTIG && !c->map && n > 1) {
    const int rc = read_rows(c, r0, n, dst);
    if (rc)
      return rc;
    if (c->swap)
      swap_bytes(dst, c->row_elems * n, c->esize);
    return DD_OK;
  }
  for (int64_t i = 0; i < n; i++) {
    int rc = dd__col_row(c, r0 + i, (unsigned char *)dst + (size_t)i * rb);
    if (rc)
      return rc;
  }
  return DD_OK;
}

double dd__col_value(const dd__col *c, const void *row, int64_t i) {
  const unsigned char *p = (const unsigned char *)row + i * c->esize;
  if (c->cls == 'f') {
    if (c->esize == 4) {
      float v;
      memcpy(&v, p, 4);
      return v;
    }
    double v;
    memcpy(&v, p, 8);
    return v;
  }
  switch (c->esize * (c->is_signed ? -1 : 1)) {
  case 1:
    return *p;
  case -1:
    return (int8_t)*p;
  case 2: {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
  }
  case -2: {
    int16_t v;
    memcpy(&v, p, 2);
    return v;
  }
  case 4: {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
  }
  case -4: {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
  }
  case 8: {
    uint64_t v;
    memcpy(&v, p, 8);
    return (double)v;
  }
  default: {
    int64_t v;
    memcpy(&v, p, 8);
    return (double)v;
  }
  }
}

/* x * scale + shift in double, rounded once to float32: the same value
 * numpy's (x * scale + shift).astype(float32) stores, so a uint8 file with a
 * scale trains exactly like the float32 file made from it. */
#define CONVERT(T)                                                                                                     \
  do {                                                                                                                 \
    const T *s = (const T *)row;                                                                                       \
    if (scale == 1.0 && shift == 0.0)                                                                                  \
      for (int64_t i = 0; i < n; i++)                                                                                  \
        out[i] = (float)s[i];                                                                                          \
    else                                                                                                               \
      for (int64_t i = 0; i < n; i++)                                                                                  \
        out[i] = (float)((double)s[i] * scale + shift);                                                                \
  } while (0)

void dd__col_to_f32(const dd__col *c, const void *row, int64_t n, double scale, double shift, float *out) {
  if (c->cls == 'f' && c->esize == 4) {
    if (scale == 1.0 && shift == 0.0) {
      memcpy(out, row, (size_t)n * 4);
      return;
    }
    CONVERT(float);
    return;
  }
  if (c->cls == 'f') {
    CONVERT(double);
    return;
  }
  switch (c->esize * (c->is_signed ? -1 : 1)) {
  case 1:
    CONVERT(uint8_t);
    return;
  case -1:
    CONVERT(int8_t);
    return;
  case 2:
    CONVERT(uint16_t);
    return;
  case -2:
    CONVERT(int16_t);
    return;
  case 4:
    CONVERT(uint32_t);
    return;
  case -4:
    CONVERT(int32_t);
    return;
  case 8:
    CONVERT(uint64_t);
    return;
  default:
    CONVERT(int64_t);
  }
}

const char *dd__col_type_name(const dd__col *c) {
  if (c->cls == 'f')
    return c->esize == 4 ? "float32" : "float64";
  switch (c->esize * (c->is_signed ? -1 : 1)) {
  case 1:
    return "uint8";
  case -1:
    return "int8";
  case 2:
    return "uint16";
  case -2:
    return "int16";
  case 4:
    return "uint32";
  case -4:
    return "int32";
  case 8:
    return "uint64";
  default:
    return "int64";
  }
}
