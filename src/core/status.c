/* Status table lookups and the per-process "last error" message. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "ddtrain/status.h"

#define DD_MSG_MAX 1024

/* per thread: the prefetch thread reports its own errors (the consumer adopts them) */
static _Thread_local char dd__msg[DD_MSG_MAX];
static _Thread_local int dd__msg_set;

const char *dd_strerror(int status) {
  switch (status) {
#define DD__CASE(name, value, msg)                                                                                     \
  case name:                                                                                                           \
    return msg;
    DD_STATUS_TABLE(DD__CASE)
#undef DD__CASE
  default:
    return "unknown error";
  }
}

const char *dd_status_name(int status) {
  switch (status) {
#define DD__CASE(name, value, msg)                                                                                     \
  case name:                                                                                                           \
    return #name;
    DD_STATUS_TABLE(DD__CASE)
#undef DD__CASE
  default:
    return "DD_UNKNOWN";
  }
}

int dd_error(int status, const char *fmt, ...) {
  if (dd__msg_set)
    return status;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(dd__msg, sizeof dd__msg, fmt, ap);
  va_end(ap);
  /* keep it one line: a message with a newline would break log parsing */
  for (char *p = dd__msg; *p; p++)
    if (*p == '\n' || *p == '\r')
      *p = ' ';
  dd__msg_set = 1;
  return status;
}

void dd_error_set_message(const char *msg) {
  snprintf(dd__msg, sizeof dd__msg, "%s", msg ? msg : "");
  dd__msg_set = msg && *msg;
}

const char *dd_error_message(void) {
  return dd__msg_set ? dd__msg : "";
}

void dd_error_clear(void) {
  dd__msg[0] = '\0';
  dd__msg_set = 0;
}
