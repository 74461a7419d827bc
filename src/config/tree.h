/* Internal: a YAML document as a small tree that remembers source lines. */
#ifndef DDTRAIN_CONFIG_TREE_H
#define DDTRAIN_CONFIG_TREE_H

#include <stdbool.h>

enum { DD_CN_SCALAR, DD_CN_SEQ, DD_CN_MAP };

typedef struct dd_cnode {
  int type;
  char *key;          /* entry name when the parent is a map */
  char *value;        /* scalar text */
  int line;           /* 1-based source line; 0 for command-line values */
  const char *origin; /* file name or the override text (borrowed) */
  bool used;          /* consumed by the schema */
  int nkids, cap;
  struct dd_cnode **kids;
} dd_cnode;

/* Parse YAML text into a tree (an empty document gives an empty map). */
int dd__cn_parse(const char *text, const char *origin, int line_base, dd_cnode **out);
void dd__cn_free(dd_cnode *n);
/* Child of a map by key, or NULL. */
dd_cnode *dd__cn_get(const dd_cnode *map, const char *key);
/* Apply "a.b.0.c=value"; creates missing map entries. */
int dd__cn_override(dd_cnode *root, const char *assignment);
/* Emit the tree as YAML text (owned by the caller). */
int dd__cn_emit(const dd_cnode *root, char **text);
/* "file:12: " or "command line 'a=b': " into buf. */
const char *dd__cn_where(const dd_cnode *n, char *buf, int len);

#endif
