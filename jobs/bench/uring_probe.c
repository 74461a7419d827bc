/* uring_probe.c - would batching a micro-batch's random row reads into one io_uring submission beat a
 * pread per row? Random rows of ROW_BYTES from a file in the page cache, 2 s of each, three rounds.
 *   apt-get install liburing-dev; gcc -O2 jobs/bench/uring_probe.c -o /tmp/uring_probe -luring
 *   /tmp/uring_probe bench-data/r-f32.h5 3136; /tmp/uring_probe bench-data/r-u8.h5 784
 * Not built by CMake (liburing is not a dependency): docs/benchmarks.md#streaming-reader has its result. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <liburing.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}
int main(int argc, char **argv) {
  int fd = open(argv[1], O_RDONLY);
  struct stat st;
  fstat(fd, &st);
  const size_t rb = atoi(argv[2]);
  const int64_t nrows = (st.st_size - 4096) / rb;
  enum { B = 128 };
  char *buf = malloc(B * rb);
  uint64_t h = 1;
  struct io_uring ring;
  if (io_uring_queue_init(B, &ring, 0)) {
    perror("uring");
    return 1;
  }
  for (int rep = 0; rep < 3; rep++) {
    double t = now();
    int64_t done = 0;
    while (now() - t < 2) {
      for (int i = 0; i < B; i++) {
        h = h * 6364136223846793005u + 1;
        int64_t r = (h >> 20) % nrows;
        if (pread(fd, buf + i * rb, rb, 4096 + r * rb) != (ssize_t)rb)
          return 2;
      }
      done += B;
    }
    double a = done / (now() - t);
    t = now();
    done = 0;
    while (now() - t < 2) {
      for (int i = 0; i < B; i++) {
        h = h * 6364136223846793005u + 1;
        int64_t r = (h >> 20) % nrows;
        struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
        io_uring_prep_read(sqe, fd, buf + i * rb, rb, 4096 + r * rb);
      }
      io_uring_submit_and_wait(&ring, B);
      struct io_uring_cqe *cqe;
      unsigned head, n = 0;
      io_uring_for_each_cqe(&ring, head, cqe) {
        if (cqe->res != (int)rb)
          return 3;
        n++;
      }
      io_uring_cq_advance(&ring, n);
      done += B;
    }
    double b = done / (now() - t);
    printf("pread %.0f rows/s  io_uring %.0f rows/s  (%.2fx)\n", a, b, b / a);
  }
}
