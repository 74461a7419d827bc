/* A small JSON reader for the report: one text (a metrics.jsonl line) into a tree of nodes. */
#ifndef DDTRAIN_REPORT_JSON_H
#define DDTRAIN_REPORT_JSON_H

#include <stdbool.h>
#include <stddef.h>

typedef enum dd_json_type {
  DD_JSON_NULL,
  DD_JSON_BOOL,
  DD_JSON_NUMBER,
  DD_JSON_STRING,
  DD_JSON_ARRAY,
  DD_JSON_OBJECT
} dd_json_type;

/* One value. Objects and arrays hold their members as a list (child, then
 * next); an object's members carry their name in key. Strings are decoded
 * (escapes, \u to UTF-8) and NUL-terminated. */
typedef struct dd_json {
  dd_json_type type;
  bool b;
  double num;
  char *str;
  char *key;
  struct dd_json *child, *next;
} dd_json;

/* Parse text[0 .. len) as one JSON value (RFC 8259; nesting at most 64 deep),
 * nothing but whitespace after it. 0 and *out (free with dd__json_free), or
 * DD_EDATA with what is wrong and where ("unterminated string at column 57")
 * in why; no error message is recorded (a damaged line is a warning). */
int dd__json_parse(const char *text, size_t len, dd_json **out, char *why, size_t nwhy);
void dd__json_free(dd_json *v);

/* The member key of an object (NULL if v is not an object or has none). */
const dd_json *dd__json_get(const dd_json *v, const char *key);
/* The member's number; NAN when absent, null, not a number or too large for a double. */
double dd__json_num(const dd_json *v, const char *key);
/* The member's string; NULL when absent or not a string. */
const char *dd__json_str(const dd_json *v, const char *key);

#endif
