/* YAML text <-> a line-tracking tree, and command-line overrides. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "ddtrain/core.h"
#include "tree.h"

static dd_cnode *node_new(int type, int line, const char *origin) {
  dd_cnode *n = dd_alloc(1, sizeof *n);
  if (n) {
    n->type = type;
    n->line = line;
    n->origin = origin;
  }
  return n;
}

void dd__cn_free(dd_cnode *n) {
  if (!n)
    return;
  for (int i = 0; i < n->nkids; i++)
    dd__cn_free(n->kids[i]);
  dd_free(n->kids);
  dd_free(n->key);
  dd_free(n->value);
  dd_free(n);
}

static int add_kid(dd_cnode *p, dd_cnode *k) {
  if (p->nkids == p->cap) {
    int nc = p->cap ? 2 * p->cap : 8;
    dd_cnode **nk = dd_alloc((size_t)nc, sizeof *nk);
    if (!nk)
      return DD_ENOMEM;
    if (p->kids)
      memcpy(nk, p->kids, sizeof *nk * (size_t)p->nkids);
    dd_free(p->kids);
    p->kids = nk;
    p->cap = nc;
  }
  p->kids[p->nkids++] = k;
  return DD_OK;
}

const char *dd__cn_where(const dd_cnode *n, char *buf, int len) {
  if (!n)
    snprintf(buf, (size_t)len, "config: ");
  else if (n->line > 0)
    snprintf(buf, (size_t)len, "%s:%d: ", n->origin, n->line);
  else
    snprintf(buf, (size_t)len, "command line '%s': ", n->origin);
  return buf;
}

typedef struct conv_ctx {
  yaml_document_t *doc;
  const char *origin;
  int line_base;
  int depth;
  int64_t nodes; /* expanded so far: YAML aliases can multiply a small text exponentially */
} conv_ctx;

/* A run config has hundreds of nodes; an alias "bomb" of 400 bytes has billions. */
enum { MAX_NODES = 100000 };

static int convert(conv_ctx *cx, yaml_node_t *y, dd_cnode **out) {
  *out = NULL;
  int line = cx->line_base >= 0 ? (int)y->start_mark.line + 1 + cx->line_base : 0;
  if (++cx->depth > 64) {
    cx->depth--;
    return dd_error(DD_ECONFIG, "%s:%d: config nested too deeply", cx->origin, line);
  }
  if (++cx->nodes > MAX_NODES) {
    cx->depth--;
    return dd_error(DD_ECONFIG,
                    "%s:%d: the config expands to more than %d nodes (YAML aliases referring to aliases?); a run "
                    "config needs far fewer: write it out without nested aliases",
                    cx->origin, line, MAX_NODES);
  }
  dd_cnode *n = NULL;
  int rc = DD_OK;
  switch (y->type) {
  case YAML_SCALAR_NODE:
    n = node_new(DD_CN_SCALAR, line, cx->origin);
    if (n) {
      n->value = dd_alloc(y->data.scalar.length + 1, 1);
      if (n->value)
        memcpy(n->value, y->data.scalar.value, y->data.scalar.length);
      else
        rc = DD_ENOMEM;
    }
    break;
  case YAML_SEQUENCE_NODE:
    n = node_new(DD_CN_SEQ, line, cx->origin);
    for (yaml_node_item_t *it = y->data.sequence.items.start; n && rc == DD_OK && it < y->data.sequence.items.top;
         it++) {
      dd_cnode *k;
      rc = convert(cx, yaml_document_get_node(cx->doc, *it), &k);
      if (rc == DD_OK && (rc = add_kid(n, k)) != DD_OK)
        dd__cn_free(k);
    }
    break;
  case YAML_MAPPING_NODE:
    n = node_new(DD_CN_MAP, line, cx->origin);
    for (yaml_node_pair_t *pr = y->data.mapping.pairs.start; n && rc == DD_OK && pr < y->data.mapping.pairs.top; pr++) {
      yaml_node_t *kn = yaml_document_get_node(cx->doc, pr->key);
      int kline = (int)kn->start_mark.line + 1 + (cx->line_base > 0 ? cx->line_base : 0);
      if (kn->type != YAML_SCALAR_NODE) {
        rc = dd_error(DD_ECONFIG, "%s:%d: keys must be plain names", cx->origin, kline);
        break;
      }
      const char *key = (const char *)kn->data.scalar.value;
      if (dd__cn_get(n, key)) {
        rc = dd_error(DD_ECONFIG, "%s:%d: duplicate key '%s'", cx->origin, kline, key);
        break;
      }
      dd_cnode *k;
      rc = convert(cx, yaml_document_get_node(cx->doc, pr->value), &k);
      if (rc)
        break;
      k->key = dd_strdup(key);
      if (cx->line_base >= 0)
        k->line = kline; /* point at the key, which is what users look for */
      if (!k->key || (rc = add_kid(n, k)) != DD_OK) {
        dd__cn_free(k);
        rc = DD_ENOMEM;
      }
    }
    break;
  default:
    rc = dd_error(DD_ECONFIG, "%s:%d: empty YAML node", cx->origin, line);
  }
  cx->depth--;
  if (!n && rc == DD_OK)
    rc = DD_ENOMEM;
  if (rc) {
    dd__cn_free(n);
    return rc;
  }
  *out = n;
  return DD_OK;
}

/* line_base >= 0: lines relative to a file; -1: a command-line value. */
int dd__cn_parse(const char *text, const char *origin, int line_base, dd_cnode **out) {
  *out = NULL;
  yaml_parser_t p;
  yaml_document_t doc;
  if (!yaml_parser_initialize(&p))
    return DD_ENOMEM;
  yaml_parser_set_input_string(&p, (const unsigned char *)text, strlen(text));
  int rc = DD_OK;
  if (!yaml_parser_load(&p, &doc)) {
    if (line_base >= 0)
      rc = dd_error(DD_ECONFIG, "%s:%zu: YAML syntax error: %s%s%s", origin, p.problem_mark.line + 1,
                    p.problem ? p.problem : "unknown", p.context ? " " : "", p.context ? p.context : "");
    else
      rc = dd_error(DD_ECONFIG, "command line '%s': bad YAML value: %s", origin, p.problem ? p.problem : "unknown");
    yaml_parser_delete(&p);
    return rc;
  }
  yaml_node_t *root = yaml_document_get_root_node(&doc);
  if (!root) {
    *out = node_new(DD_CN_MAP, 1, origin);
    rc = *out ? DD_OK : DD_ENOMEM;
  } else {
    conv_ctx cx = {&doc, origin, line_base, 0, 0};
    rc = convert(&cx, root, out);
  }
  /* a second document in the file is almost certainly a mistake */
  yaml_document_t extra;
  if (rc == DD_OK && yaml_parser_load(&p, &extra)) {
    if (yaml_document_get_root_node(&extra))
      rc = dd_error(DD_ECONFIG, "%s: has more than one YAML document (---); put everything in one", origin);
    yaml_document_delete(&extra);
    if (rc) {
      dd__cn_free(*out);
      *out = NULL;
    }
  }
  yaml_document_delete(&doc);
  yaml_parser_delete(&p);
  return rc;
}

dd_cnode *dd__cn_get(const dd_cnode *map, const char *key) {
  if (!map || map->type != DD_CN_MAP)
    return NULL;
  for (int i = 0; i < map->nkids; i++)
    if (map->kids[i]->key && strcmp(map->kids[i]->key, key) == 0)
      return map->kids[i];
  return NULL;
}

static void set_origin(dd_cnode *n, const char *origin) {
  n->origin = origin;
  n->line = 0;
  for (int i = 0; i < n->nkids; i++)
    set_origin(n->kids[i], origin);
}

int dd__cn_override(dd_cnode *root, const char *assignment) {
  const char *eq = strchr(assignment, '=');
  if (!eq || eq == assignment)
    return dd_error(DD_EUSAGE, "command line '%s': overrides look like section.key=value, e.g. optim.lr=0.05",
                    assignment);
  char path[512];
  size_t plen = (size_t)(eq - assignment);
  if (plen >= sizeof path)
    return dd_error(DD_EUSAGE, "command line '%s': key too long", assignment);
  memcpy(path, assignment, plen);
  path[plen] = '\0';
  dd_cnode *val;
  int rc = dd__cn_parse(*(eq + 1) ? eq + 1 : "\"\"", assignment, -1, &val);
  if (rc)
    return rc;
  set_origin(val, assignment);
  dd_cnode *cur = root;
  char *save = NULL;
  char *tok = strtok_r(path, ".", &save);
  while (tok) {
    char *next = strtok_r(NULL, ".", &save);
    dd_cnode *child = NULL;
    int idx = -1;
    if (cur->type == DD_CN_SEQ) {
      char *end;
      long v = strtol(tok, &end, 10);
      if (*end || v < 0 || v >= cur->nkids) {
        dd__cn_free(val);
        return dd_error(DD_ECONFIG, "command line '%s': '%s' is not an index of a list with %d entries (0..%d)",
                        assignment, tok, cur->nkids, cur->nkids - 1);
      }
      idx = (int)v;
      child = cur->kids[idx];
    } else if (cur->type == DD_CN_MAP) {
      child = dd__cn_get(cur, tok);
      for (int i = 0; child && i < cur->nkids; i++)
        if (cur->kids[i] == child)
          idx = i;
    } else {
      dd__cn_free(val);
      return dd_error(DD_ECONFIG, "command line '%s': '%s' is inside a single value, not a section", assignment, tok);
    }
    if (!next) { /* replace or insert the leaf */
      if (child) {
        val->key = child->key;
        child->key = NULL;
        dd__cn_free(child);
        cur->kids[idx] = val;
      } else {
        val->key = dd_strdup(tok);
        if (!val->key || add_kid(cur, val) != DD_OK) {
          dd__cn_free(val);
          return DD_ENOMEM;
        }
      }
      return DD_OK;
    }
    if (!child) {
      child = node_new(DD_CN_MAP, 0, assignment);
      if (!child || !(child->key = dd_strdup(tok)) || add_kid(cur, child) != DD_OK) {
        dd__cn_free(child);
        dd__cn_free(val);
        return DD_ENOMEM;
      }
    }
    cur = child;
    tok = next;
  }
  dd__cn_free(val);
  return DD_OK;
}

/* ---- emit -------------------------------------------------------------- */

static int build(yaml_document_t *d, const dd_cnode *n, bool in_seq) {
  switch (n->type) {
  case DD_CN_SCALAR:
    return yaml_document_add_scalar(d, NULL, (yaml_char_t *)n->value, -1, YAML_ANY_SCALAR_STYLE);
  case DD_CN_SEQ: {
    int flow = 1;
    for (int i = 0; i < n->nkids; i++)
      flow = flow && n->kids[i]->type == DD_CN_SCALAR;
    int s = yaml_document_add_sequence(d, NULL, flow ? YAML_FLOW_SEQUENCE_STYLE : YAML_BLOCK_SEQUENCE_STYLE);
    for (int i = 0; s && i < n->nkids; i++) {
      int k = build(d, n->kids[i], true);
      if (!k || !yaml_document_append_sequence_item(d, s, k))
        return 0;
    }
    return s;
  }
  default: {
    /* small all-scalar maps inside lists (layers) read best on one line */
    int flow = in_seq && n->nkids <= 6;
    for (int i = 0; i < n->nkids; i++)
      flow = flow && n->kids[i]->type == DD_CN_SCALAR;
    int m = yaml_document_add_mapping(d, NULL, flow ? YAML_FLOW_MAPPING_STYLE : YAML_BLOCK_MAPPING_STYLE);
    for (int i = 0; m && i < n->nkids; i++) {
      int k = yaml_document_add_scalar(d, NULL, (yaml_char_t *)n->kids[i]->key, -1, YAML_PLAIN_SCALAR_STYLE);
      int v = build(d, n->kids[i], false);
      if (!k || !v || !yaml_document_append_mapping_pair(d, m, k, v))
        return 0;
    }
    return m;
  }
  }
}

typedef struct outbuf {
  char *p;
  size_t n, cap;
} outbuf;

static int write_cb(void *data, unsigned char *buf, size_t size) {
  outbuf *o = data;
  if (o->n + size + 1 > o->cap) {
    size_t nc = (o->cap ? o->cap * 2 : 4096) + size;
    char *np = dd_alloc(nc, 1);
    if (!np)
      return 0;
    if (o->p)
      memcpy(np, o->p, o->n);
    dd_free(o->p);
    o->p = np;
    o->cap = nc;
  }
  memcpy(o->p + o->n, buf, size);
  o->n += size;
  o->p[o->n] = '\0';
  return 1;
}

int dd__cn_emit(const dd_cnode *root, char **text) {
  *text = NULL;
  yaml_document_t d;
  if (!yaml_document_initialize(&d, NULL, NULL, NULL, 1, 1))
    return DD_ENOMEM;
  if (!build(&d, root, false)) {
    yaml_document_delete(&d);
    return DD_ENOMEM;
  }
  yaml_emitter_t e;
  outbuf o = {0};
  if (!yaml_emitter_initialize(&e)) {
    yaml_document_delete(&d);
    return DD_ENOMEM;
  }
  yaml_emitter_set_output(&e, write_cb, &o);
  yaml_emitter_set_width(&e, 100);
  yaml_emitter_set_unicode(&e, 1);
  int ok = yaml_emitter_open(&e) && yaml_emitter_dump(&e, &d) && yaml_emitter_close(&e);
  yaml_emitter_delete(&e); /* dump deleted the document */
  if (!ok || !o.p) {
    dd_free(o.p);
    return dd_error(DD_ECONFIG, "cannot write the effective config as YAML");
  }
  *text = o.p;
  return DD_OK;
}
