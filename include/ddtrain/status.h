/* ddtrain status codes: one table feeds the enum, dd_strerror and dd_status_name. */
#ifndef DDTRAIN_STATUS_H
#define DDTRAIN_STATUS_H

#include <stddef.h>

/* X(name, value, generic message) */
#define DD_STATUS_TABLE(X)                                                                                             \
  X(DD_OK, 0, "success")                                                                                               \
  X(DD_ENOMEM, -1, "out of memory")                                                                                    \
  X(DD_EINVAL, -2, "invalid argument")                                                                                 \
  X(DD_EIO, -3, "input/output error")                                                                                  \
  X(DD_ECONFIG, -4, "bad configuration")                                                                               \
  X(DD_EDATA, -5, "bad dataset")                                                                                       \
  X(DD_EMPI, -6, "MPI error")                                                                                          \
  X(DD_EHDF5, -7, "HDF5 error")                                                                                        \
  X(DD_ECKPT, -8, "bad checkpoint")                                                                                    \
  X(DD_EMISMATCH, -9, "ranks disagree")                                                                                \
  X(DD_ENOTFOUND, -10, "not found")                                                                                    \
  X(DD_EUSAGE, -11, "bad command line")                                                                                \
  X(DD_ENUMERIC, -12, "non-finite value")                                                                              \
  X(DD_EPEER, -13, "another rank failed")                                                                              \
  X(DD_EINTERRUPTED, -14, "interrupted by a signal")

enum {
#define DD__ENUM(name, value, msg) name = value,
  DD_STATUS_TABLE(DD__ENUM)
#undef DD__ENUM
};

/* Generic text for a status code ("bad dataset"); never NULL. */
const char *dd_strerror(int status);
/* Symbolic name of a status code ("DD_EDATA"); never NULL. */
const char *dd_status_name(int status);

/* Record the one-line, user-facing detail of the error being returned and
 * return `status`, so call sites read `return dd_error(DD_EDATA, "...", ...)`.
 * The message names what is wrong and how to fix it. The first message set
 * since the last dd_error_clear() wins: the innermost cause is the most
 * precise, and callers on the way up must not overwrite it. */
int dd_error(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Replace the current detail unconditionally (used when a peer's message is
 * adopted after ranks agree on a failure). */
void dd_error_set_message(const char *msg);
/* The detail of the last error, or "" if none was recorded. Owned by the
 * library; valid until the next dd_error or dd_error_clear. */
const char *dd_error_message(void);
void dd_error_clear(void);

#endif
