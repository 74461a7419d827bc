/* ddtrain's fuzz targets: libFuzzer's entry points (each fuzz_*.c defines them), the helpers the
 * targets share (target.c), and what the in-tree driver (driver.c) reads back after each input.
 *
 * A target builds either with the in-tree driver (the default: a bounded mutation run, CTest label
 * fuzz) or, configured with -DDDTRAIN_LIBFUZZER=ON under clang, with libFuzzer's own main
 * (docs/reliability.md, "Fuzzing"). */
#ifndef DDTRAIN_TESTS_FUZZ_H
#define DDTRAIN_TESTS_FUZZ_H

#include <stddef.h>
#include <stdint.h>

#include "ddtrain/comm.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* What the last input did, as a hash: the driver keeps a mutated input whose value it has not seen
 * (an input that reached another check). Set by dd_fuzz_done. */
extern uint64_t dd_fuzz_feature;

/* Once per process: MPI and a one-rank communicator, HDF5's error printing off, a scratch directory
 * (removed at exit), and the number of HDF5 objects open at rest. */
void dd_fuzz_init(void);
dd_comm *dd_fuzz_comm(void);
const char *dd_fuzz_dir(void);
/* data into a new file at path (removed first: a new inode for every input, so HDF5 never takes it
 * for a file it still has open); 0 or -1. */
int dd_fuzz_write(const char *path, const uint8_t *data, size_t size);
/* After an input: mix status and the error message (its words, numbers left out) into
 * dd_fuzz_feature, clear the message, and abort if the input left an HDF5 object open (a leak on an
 * error path, reported as a crash with the input). */
void dd_fuzz_step(int status);
void dd_fuzz_done(void);

#endif
