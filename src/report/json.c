/* The report's JSON reader: recursive descent over one line of metrics.jsonl (RFC 8259, strict). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ddtrain/core.h"
#include "json.h"

enum { MAX_DEPTH = 64 };

typedef struct parser {
  const char *s;
  size_t n, i;
  char *why;
  size_t nwhy;
  int status;
} parser;

static int fail(parser *p, const char *what) {
  if (p->status == DD_OK) {
    if (p->i >= p->n)
      snprintf(p->why, p->nwhy, "%s at the end of the line (column %zu)", what, p->i + 1);
    else
      snprintf(p->why, p->nwhy, "%s at column %zu", what, p->i + 1);
    p->status = DD_EDATA;
  }
  return p->status;
}

static void skip_ws(parser *p) {
  while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\r' || p->s[p->i] == '\n'))
    p->i++;
}

static bool literal(parser *p, const char *word) {
  size_t k = strlen(word);
  if (p->n - p->i < k || memcmp(p->s + p->i, word, k) != 0)
    return false;
  p->i += k;
  return true;
}

static int hex4(parser *p, unsigned *out) {
  if (p->n - p->i < 4)
    return fail(p, "short \\u escape");
  unsigned v = 0;
  for (int k = 0; k < 4; k++) {
    char c = p->s[p->i++];
    v <<= 4;
    if (c >= '0' && c <= '9')
      v |= (unsigned)(c - '0');
    else if (c >= 'a' && c <= 'f')
      v |= (unsigned)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F')
      v |= (unsigned)(c - 'A' + 10);
    else
      return fail(p, "bad \\u escape");
  }
  *out = v;
  return DD_OK;
}

static size_t put_utf8(char *o, unsigned cp) {
  if (cp < 0x80) {
    o[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    o[0] = (char)(0xC0 | (cp >> 6));
    o[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (char)(0xE0 | (cp >> 12));
    o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  o[0] = (char)(0xF0 | (cp >> 18));
  o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
  o[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

/* at the opening quote; the decoded text is never longer than the escaped one */
static int string(parser *p, char **out) {
  size_t start = ++p->i, end = start;
  while (end < p->n && p->s[end] != '"')
    end += p->s[end] == '\\' ? 2 : 1;
  if (end >= p->n) {
    p->i = p->n;
    return fail(p, "unterminated string");
  }
  char *o = dd_alloc(end - start + 1, 1);
  if (!o)
    return p->status = DD_ENOMEM;
  size_t k = 0;
  while (p->i < end) {
    unsigned char c = (unsigned char)p->s[p->i];
    if (c < 0x20) {
      dd_free(o);
      return fail(p, "control character in a string");
    }
    if (c != '\\') {
      o[k++] = (char)c;
      p->i++;
      continue;
    }
    char e = p->s[p->i + 1];
    p->i += 2;
    const char *simple = strchr("\"\\/bfnrt", e);
    if (e && simple) {
      static const char map[] = "\"\\/\b\f\n\r\t";
      o[k++] = map[simple - "\"\\/bfnrt"];
      continue;
    }
    unsigned cp = 0, lo = 0;
    if (e != 'u' || hex4(p, &cp)) {
      dd_free(o);
      return fail(p, "bad escape in a string");
    }
    if (cp >= 0xD800 && cp < 0xDC00 && p->i + 1 < end && p->s[p->i] == '\\' && p->s[p->i + 1] == 'u') {
      p->i += 2;
      if (hex4(p, &lo) || lo < 0xDC00 || lo > 0xDFFF) {
        dd_free(o);
        return fail(p, "bad surrogate pair in a string");
      }
      cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
    }
    k += put_utf8(o + k, cp);
  }
  o[k] = '\0';
  p->i = end + 1;
  *out = o;
  return DD_OK;
}

static int number(parser *p, double *out) {
  size_t i = p->i;
  const char *s = p->s;
  if (i < p->n && s[i] == '-')
    i++;
  if (i < p->n && s[i] == '0')
    i++;
  else if (i < p->n && s[i] >= '1' && s[i] <= '9')
    while (i < p->n && s[i] >= '0' && s[i] <= '9')
      i++;
  else
    return fail(p, "expected a value");
  if (i < p->n && s[i] == '.') {
    if (++i >= p->n || s[i] < '0' || s[i] > '9')
      return fail(p, "bad number");
    while (i < p->n && s[i] >= '0' && s[i] <= '9')
      i++;
  }
  if (i < p->n && (s[i] == 'e' || s[i] == 'E')) {
    i++;
    if (i < p->n && (s[i] == '+' || s[i] == '-'))
      i++;
    if (i >= p->n || s[i] < '0' || s[i] > '9')
      return fail(p, "bad number");
    while (i < p->n && s[i] >= '0' && s[i] <= '9')
      i++;
  }
  char buf[64];
  if (i - p->i >= sizeof buf)
    return fail(p, "number too long");
  memcpy(buf, s + p->i, i - p->i);
  buf[i - p->i] = '\0';
  *out = strtod(buf, NULL);
  p->i = i;
  return DD_OK;
}

static dd_json *node(parser *p, dd_json_type t) {
  dd_json *v = dd_alloc(1, sizeof *v);
  if (!v)
    p->status = DD_ENOMEM;
  else
    v->type = t;
  return v;
}

static int value(parser *p, int depth, dd_json **out);

/* members of an object or elements of an array, at the opening bracket */
static int members(parser *p, int depth, dd_json *v, bool object) {
  const char close = object ? '}' : ']';
  dd_json **tail = &v->child;
  p->i++;
  skip_ws(p);
  if (p->i < p->n && p->s[p->i] == close) {
    p->i++;
    return DD_OK;
  }
  for (;;) {
    char *key = NULL;
    skip_ws(p);
    if (object) {
      if (p->i >= p->n || p->s[p->i] != '"')
        return fail(p, "expected a member name");
      if (string(p, &key))
        return p->status;
      skip_ws(p);
      if (p->i >= p->n || p->s[p->i] != ':') {
        dd_free(key);
        return fail(p, "expected ':'");
      }
      p->i++;
    }
    dd_json *m = NULL;
    int rc = value(p, depth + 1, &m);
    if (!m) {
      dd_free(key);
      return rc;
    }
    m->key = key; /* linked even when it failed half-way, so the caller frees it */
    *tail = m;
    tail = &m->next;
    if (rc)
      return rc;
    skip_ws(p);
    if (p->i < p->n && p->s[p->i] == ',') {
      p->i++;
      continue;
    }
    if (p->i < p->n && p->s[p->i] == close) {
      p->i++;
      return DD_OK;
    }
    return fail(p, object ? "expected ',' or '}'" : "expected ',' or ']'");
  }
}

static int value(parser *p, int depth, dd_json **out) {
  if (depth > MAX_DEPTH)
    return fail(p, "nested too deep");
  skip_ws(p);
  if (p->i >= p->n)
    return fail(p, "expected a value");
  char c = p->s[p->i];
  dd_json *v = NULL;
  if (c == '{' || c == '[') {
    if (!(v = node(p, c == '{' ? DD_JSON_OBJECT : DD_JSON_ARRAY)))
      return p->status;
    *out = v; /* freed by the caller on failure, with what was read so far */
    return members(p, depth, v, c == '{');
  }
  if (c == '"') {
    char *s = NULL;
    if (string(p, &s))
      return p->status;
    if (!(v = node(p, DD_JSON_STRING))) {
      dd_free(s);
      return p->status;
    }
    v->str = s;
  } else if (literal(p, "true") || literal(p, "false")) {
    if (!(v = node(p, DD_JSON_BOOL)))
      return p->status;
    v->b = c == 't';
  } else if (literal(p, "null")) {
    if (!(v = node(p, DD_JSON_NULL)))
      return p->status;
  } else {
    double d = 0;
    if (number(p, &d))
      return p->status;
    if (!(v = node(p, DD_JSON_NUMBER)))
      return p->status;
    v->num = d;
  }
  *out = v;
  return DD_OK;
}

int dd__json_parse(const char *text, size_t len, dd_json **out, char *why, size_t nwhy) {
  parser p = {.s = text, .n = len, .why = why, .nwhy = nwhy, .status = DD_OK};
  if (nwhy)
    why[0] = '\0';
  dd_json *v = NULL;
  if (value(&p, 0, &v) == DD_OK) {
    skip_ws(&p);
    if (p.i < p.n)
      fail(&p, "text after the value");
  }
  if (p.status != DD_OK) {
    dd__json_free(v);
    if (p.status == DD_ENOMEM)
      snprintf(why, nwhy, "out of memory");
    return p.status;
  }
  *out = v;
  return DD_OK;
}

void dd__json_free(dd_json *v) {
  while (v) {
    dd_json *next = v->next;
    dd__json_free(v->child);
    dd_free(v->str);
    dd_free(v->key);
    dd_free(v);
    v = next;
  }
}

const dd_json *dd__json_get(const dd_json *v, const char *key) {
  if (!v || v->type != DD_JSON_OBJECT)
    return NULL;
  for (const dd_json *m = v->child; m; m = m->next)
    if (m->key && strcmp(m->key, key) == 0)
      return m;
  return NULL;
}

double dd__json_num(const dd_json *v, const char *key) {
  const dd_json *m = dd__json_get(v, key);
  return m && m->type == DD_JSON_NUMBER && isfinite(m->num) ? m->num : NAN; /* 1e999 overflows to inf */
}

const char *dd__json_str(const dd_json *v, const char *key) {
  const dd_json *m = dd__json_get(v, key);
  return m && m->type == DD_JSON_STRING ? m->str : NULL;
}
