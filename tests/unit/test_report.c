/* report: the JSON reader (valid and broken texts) and the log reader (partial lines, damage, resumes). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "ddtrain/core.h"
#include "json.h"
#include "log.h"

DD_TEST_GLOBALS;

static dd_json *parse(const char *s, char *why, size_t n) {
  dd_json *v = NULL;
  int rc = dd__json_parse(s, strlen(s), &v, why, n);
  return rc == DD_OK ? v : NULL;
}

static void json_values(void) {
  char why[160];
  dd_json *v = parse(" {\"event\": \"epoch\", \"a\": -1.5e2, \"n\": null, \"t\": true, \"arr\": [1, [2, {}], \"x\"],"
                     " \"o\": {\"k\": 0}} ",
                     why, sizeof why);
  CHECK(v != NULL);
  if (!v) {
    DD_FAIL_AT("parse: %s", why);
    return;
  }
  CHECK_INT(v->type, DD_JSON_OBJECT);
  CHECK(strcmp(dd__json_str(v, "event"), "epoch") == 0);
  CHECK_NEAR(dd__json_num(v, "a"), -150.0, 0);
  CHECK(isnan(dd__json_num(v, "n")));       /* null */
  CHECK(isnan(dd__json_num(v, "missing"))); /* absent */
  CHECK(isnan(dd__json_num(v, "event")));   /* not a number */
  CHECK(dd__json_get(v, "t")->b);
  const dd_json *arr = dd__json_get(v, "arr");
  CHECK_INT(arr->type, DD_JSON_ARRAY);
  CHECK_NEAR(arr->child->num, 1.0, 0);
  CHECK_INT(arr->child->next->child->next->type, DD_JSON_OBJECT);
  CHECK_NEAR(dd__json_num(dd__json_get(v, "o"), "k"), 0.0, 0);
  dd__json_free(v);

  /* escapes decode: \" \\ \n \u00e9 and a surrogate pair (U+1F600) to UTF-8 */
  v = parse("{\"s\": \"a\\\"b\\\\c\\nd\\u00e9\\ud83d\\ude00\"}", why, sizeof why);
  CHECK(v != NULL);
  if (v)
    CHECK(strcmp(dd__json_str(v, "s"), "a\"b\\c\nd\xc3\xa9\xf0\x9f\x98\x80") == 0);
  dd__json_free(v);
}

static void json_errors(void) {
  static const struct {
    const char *text, *why;
  } bad[] = {
      {"{\"event\": \"step\", \"step\": ", "expected a value"},
      {"{\"event\": \"st", "unterminated string"},
      {"{\"a\": 1,}", "expected a member name"},
      {"{\"a\" 1}", "expected ':'"},
      {"{\"a\": 1} x", "text after the value"},
      {"{\"a\": 01}", "expected ',' or '}'"},
      {"{\"a\": 1.}", "bad number"},
      {"{\"a\": NaN}", "expected a value"},
      {"{\"a\": \"\\x\"}", "bad escape"},
      {"{\"a\": \"\t\"}", "control character"},
      {"[1, 2", "expected ',' or ']'"},
      {"", "expected a value"},
  };
  char why[160];
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    dd_json *v = parse(bad[i].text, why, sizeof why);
    if (v) {
      DD_FAIL_AT("'%s' parsed", bad[i].text);
      dd__json_free(v);
      continue;
    }
    CHECK_CONTAINS(why, bad[i].why);
    CHECK_CONTAINS(why, "column ");
  }
  /* nesting is bounded (a damaged line must not overflow the stack) */
  char deep[400];
  memset(deep, '[', sizeof deep - 1);
  deep[sizeof deep - 1] = '\0';
  CHECK(parse(deep, why, sizeof why) == NULL);
  CHECK_CONTAINS(why, "nested too deep");
}

static void write_file(const char *path, const char *text, size_t n) {
  FILE *f = fopen(path, "wb");
  CHECK(f != NULL);
  if (f) {
    fwrite(text, 1, n, f);
    fclose(f);
  }
}

#define START(at) "{\"event\": \"start\", \"version\": \"0.1.0\", \"ranks\": 2, \"resumed_at_step\": " #at "}\n"
#define STEP(s, t) "{\"event\": \"step\", \"step\": " #s ", \"epoch\": 1, \"train_loss\": 1.5, \"elapsed_s\": " #t "}\n"
#define LINE(text)                                                                                                     \
  { text, sizeof text - 1 }

static void log_reading(void) {
  char dir[] = "/tmp/dd_test_report.XXXXXX";
  if (!mkdtemp(dir)) {
    DD_FAIL_AT("mkdtemp: %s", dir);
    return;
  }
  char path[256];
  snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
  /* a run stopped after step 30 with its checkpoint at 20, resumed from 20 (its clock from 0 again),
   * a damaged line (zero bytes, as a crash leaves them), and at the end a record being written */
  static const struct {
    const char *s;
    size_t n;
  } lines[] = {
      LINE(START(0)),
      LINE(STEP(10, 1.0)),
      LINE(STEP(20, 2.0)),
      LINE("{\"event\": \"checkpoint\", \"step\": 20, \"epoch\": 1, \"path\": \"c\", \"elapsed_s\": 2.5}\n"),
      LINE(STEP(30, 3.0)),
      LINE("{\"event\": \"step\", \"st\0\0\n"),
      LINE(START(20)),
      LINE(STEP(30, 0.5)),
      LINE(
          "{\"event\": \"epoch\", \"epoch\": 1, \"step\": 40, \"phases\": {\"data\": {\"mean_s\": 0.1, \"max_s\": 0.3, "
          "\"max_rank\": 1}, \"sync\": {\"mean_s\": null, \"max_s\": null, \"max_rank\": null}}, \"elapsed_s\": "
          "1.0}\n"),
      LINE("{\"event\": \"done\", \"st"),
  };
  FILE *f = fopen(path, "wb");
  CHECK(f != NULL);
  if (!f)
    return;
  for (size_t i = 0; i < sizeof lines / sizeof *lines; i++)
    fwrite(lines[i].s, 1, lines[i].n, f);
  fclose(f);
  dd__run r = {0};
  char warnings[2048] = "";
  FILE *w = fmemopen(warnings, sizeof warnings, "w");
  CHECK_OK(dd__run_read(dir, &r, w));
  fclose(w);
  CHECK_INT(r.lines, 10);
  CHECK_INT(r.damaged, 1);
  CHECK(r.partial_tail);
  CHECK_CONTAINS(warnings, "metrics.jsonl:6: zero bytes");
  CHECK(strstr(warnings, ":10:") == NULL); /* the record being written is no damage */
  CHECK_INT(r.resumes, 1);
  /* the resume from step 20 replaced the first run's step 30: steps 10, 20, 30 (the new one) */
  CHECK_INT(r.nsteps, 3);
  if (r.nsteps == 3) {
    CHECK_NEAR(r.steps[2].step, 30, 0);
    CHECK_NEAR(r.steps[2].t, 3.5, 1e-12); /* the resumed clock goes on from the last record's 3.0 s */
  }
  CHECK_INT(r.nepochs, 1);
  CHECK_INT(r.nphases, 2);
  if (r.nepochs == 1 && r.nphases == 2) {
    CHECK(strcmp(r.phase[0], "data") == 0 && strcmp(r.phase[1], "sync") == 0);
    CHECK_NEAR(r.epochs[0].ph[0].max_s, 0.3, 0);
    CHECK_INT(r.epochs[0].ph[0].max_rank, 1);
    CHECK(isnan(r.epochs[0].ph[1].mean_s));
    CHECK_INT(r.epochs[0].ph[1].max_rank, -1);
  }
  CHECK_INT(r.nevents, 3); /* start, checkpoint, resume */
  CHECK(r.start != NULL && dd__json_num(r.start, "ranks") == 2);
  dd__run_free(&r);

  /* errors name the file and the fix */
  write_file(path, "", 0);
  dd_error_clear();
  CHECK_INT(dd__run_read(dir, &r, NULL), DD_EDATA);
  CHECK_CONTAINS(dd_error_message(), "metrics.jsonl is empty");
  dd__run_free(&r);
  write_file(path, "garbage\n{\"no_event\": 1}\n", 24);
  dd_error_clear();
  CHECK_INT(dd__run_read(dir, &r, NULL), DD_EDATA);
  CHECK_CONTAINS(dd_error_message(), "no readable record (2 damaged line(s)");
  dd__run_free(&r);
  remove(path);
  dd_error_clear();
  CHECK_INT(dd__run_read(dir, &r, NULL), DD_ENOTFOUND);
  CHECK_CONTAINS(dd_error_message(), "has no metrics.jsonl");
  dd__run_free(&r);
  rmdir(dir);
  dd_error_clear();
  CHECK_INT(dd__run_read(dir, &r, NULL), DD_ENOTFOUND);
  CHECK_CONTAINS(dd_error_message(), "does not exist");
  dd__run_free(&r);
  dd_error_clear();
}

int main(void) {
  RUN(json_values);
  RUN(json_errors);
  RUN(log_reading);
  return dd_test_failures ? 1 : 0;
}
