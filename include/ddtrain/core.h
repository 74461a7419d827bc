/* ddtrain core: overflow-checked allocation, deterministic RNG, hashing, timing. */
#ifndef DDTRAIN_CORE_H
#define DDTRAIN_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ddtrain/status.h"

#define DD_VERSION_MAJOR 0
#define DD_VERSION_MINOR 1
#define DD_VERSION_PATCH 0
#define DD_VERSION_STRING "0.1.0"

#define DD_ALIGN 64 /* bytes; arenas are aligned for AVX-512 loads */

/* All allocation goes through these. Sizes are n * size, checked for
 * overflow; memory is zeroed and DD_ALIGN-aligned. Returns NULL on failure
 * (after recording a DD_ENOMEM message). dd_free(NULL) is a no-op. */
void *dd_alloc(size_t n, size_t size);
void dd_free(void *p);
/* Duplicate a NUL-terminated string (NULL in -> NULL out). Caller frees with
 * dd_free. */
char *dd_strdup(const char *s);

/* a * b into *out; true (and *out unchanged) if it overflows int64 or a
 * factor is negative: shapes read from files are multiplied through this. */
bool dd_mul_overflows(int64_t a, int64_t b, int64_t *out);

/* mkdir -p dir (what names the option or key for the message). */
int dd_mkdirs(const char *dir, const char *what);
/* mkdir -p of the directory part of a file path. */
int dd_mkdirs_for(const char *path, const char *what);

/* xoshiro256** generator. Seeded from (seed, stream) through splitmix64 so
 * independent streams (init, shuffling, dropout, ...) never overlap in
 * practice. The state is four words and can be checkpointed as is. */
typedef struct dd_rng {
  uint64_t s[4];
} dd_rng;

void dd_rng_seed(dd_rng *r, uint64_t seed, uint64_t stream);
uint64_t dd_rng_u64(dd_rng *r);
/* Uniform in [0, n) without modulo bias; n > 0. */
uint64_t dd_rng_below(dd_rng *r, uint64_t n);
/* Uniform float in [0, 1) with 24 random bits. */
float dd_rng_uniform(dd_rng *r);
/* Standard normal (Box-Muller, double precision internally). */
double dd_rng_normal(dd_rng *r);

/* Stateless 64-bit mix of three words (splitmix64 finaliser chain): the same
 * inputs give the same output on every rank, so per-sample randomness (e.g.
 * dropout masks) does not depend on how a batch is split across ranks. */
uint64_t dd_hash3(uint64_t a, uint64_t b, uint64_t c);
/* Uniform float in [0, 1) from a hash value. */
float dd_hash_uniform(uint64_t h);

/* FNV-1a over bytes: parameter checksums compared across ranks. */
uint64_t dd_fnv1a(const void *data, size_t bytes, uint64_t h);
#define DD_FNV_OFFSET 0xcbf29ce484222325ULL

/* Fisher-Yates permutation of 0..n-1 into perm, driven by r. */
void dd_permutation(int64_t *perm, int64_t n, dd_rng *r);

/* Fault injection for the tests (src/core/fault.c): DD_FAULT is a comma-
 * separated list of KIND@RANK:STEP (e.g. "stop@1:20,enospc@0:40"); true when
 * this rank reaches that step with that kind armed (each fires once).
 * Kinds used: exit, segv, stop, hang, nan, enospc, read, slowio. Never set in
 * production; costs one comparison when unset. */
bool dd_fault(const char *kind, int rank, int64_t step);

/* Monotonic wall clock in seconds. */
double dd_now(void);

/* Bytes this process may still use: the least of the node's MemAvailable
 * over local_ranks, the memory cgroup's free room over local_ranks and the
 * address-space limit's unused part; INFINITY if none is known. why gets
 * which one it is, with its numbers. */
double dd_mem_budget(int local_ranks, char *why, size_t n);

#endif
