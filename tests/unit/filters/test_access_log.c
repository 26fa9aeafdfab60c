/* Unit tests of the access-log filter against the fake host: the format
 * and expression compilers (every operator, errors with their columns),
 * rendering against fake streams, JSON lines with hostile values parsed
 * back with jansson, the log filters, backlog drops and a rename of the
 * file between flushes. Lines go to a file in a fresh temporary directory;
 * alog_flush_now writes them at once (the writer thread would within its
 * flush interval). Configurations are YAML loaded by the core's loader. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alog.h"
#include "fake_host.h"

#include "cfgtree.h"

/* ---- helpers --------------------------------------------------------------- */

static char g_dir[64];
static char g_path[128];

static const slc_cfg_node_t *yaml(const char *text)
{
    return fake_yaml("alog.yaml", text);
}

typedef struct fixture {
    fake_gen_t *gen;
    const slc_filter_desc_t *desc;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    f->gen = fake_gen_new();
    f->desc = slc_filter_entry(&fake_host_table);
    snprintf(g_dir, sizeof(g_dir), "/tmp/alog-test-XXXXXX");
    assert_non_null(mkdtemp(g_dir));
    snprintf(g_path, sizeof(g_path), "%s/access.log", g_dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    fake_gen_free(f->gen);
    fake_cfg_free_all();
    char p[160];
    snprintf(p, sizeof(p), "%s/access.log", g_dir);
    unlink(p);
    snprintf(p, sizeof(p), "%s/access.log.1", g_dir);
    unlink(p);
    rmdir(g_dir);
    free(f);
    return 0;
}

/* inst_ok builds an instance writing to g_path; |extra| is more YAML keys. */
static fake_inst_t *inst_ok(fixture_t *f, const char *extra)
{
    char text[4096];
    snprintf(text, sizeof(text), "path: %s\n%s", g_path, extra);
    fake_inst_t *inst = fake_inst_new(f->desc, f->gen, yaml(text), 1);
    if (inst->status != SLC_OK) {
        fake_diag_dump(inst->diag);
        fail_msg("config refused: %s", text);
    }
    return inst;
}

static fake_inst_t *inst_bad(fixture_t *f, const char *extra)
{
    char text[4096];
    snprintf(text, sizeof(text), "path: %s\n%s", g_path, extra);
    fake_inst_t *inst = fake_inst_new(f->desc, f->gen, yaml(text), 1);
    assert_int_not_equal(inst->status, SLC_OK);
    return inst;
}

static char *slurp(const char *path)
{
    FILE *fp = fopen(path, "rb");
    if (fp == NULL) {
        return strdup("");
    }
    char *buf = calloc(1, 1 << 20);
    size_t n = fread(buf, 1, (1 << 20) - 1, fp);
    buf[n] = '\0';
    fclose(fp);
    return buf;
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++) {
        n += *s == '\n';
    }
    return n;
}

/* stream runs one stream through the instance: request_new, then the
 * response status and flags, then on_complete. */
static slc_req_t *stream(fake_inst_t *inst, fixture_t *f, const char *path, int status)
{
    slc_req_t *r = fake_req_new(f->gen, "GET", "svc.local", path);
    assert_int_equal(fake_inst_run(inst, r, FAKE_REQUEST_HEADERS), SLC_CONTINUE);
    fake_req_set_response_status(r, status);
    return r;
}

static void complete(fake_inst_t *inst, slc_req_t *r)
{
    fake_inst_complete(inst, r);
    fake_req_free(r);
}

/* ---- the format compiler ---------------------------------------------------- */

static void test_every_operator_compiles(void **state)
{
    (void)state;
    static const char *ok[] = {"%START_TIME%",
                               "%START_TIME(%Y-%m-%d %3f)%",
                               "%REQ(X)%",
                               "%REQ(X?Y)%",
                               "%REQ(X):5%",
                               "%REQ(:PATH?X-ENVOY-ORIGINAL-PATH):10%",
                               "%RESP(X)%",
                               "%PROTOCOL%",
                               "%RESPONSE_CODE%",
                               "%RESPONSE_FLAGS%",
                               "%BYTES_RECEIVED%",
                               "%BYTES_SENT%",
                               "%DURATION%",
                               "%RESPONSE_DURATION%",
                               "%UPSTREAM_HOST%",
                               "%UPSTREAM_CLUSTER%",
                               "%DOWNSTREAM_REMOTE_ADDRESS%",
                               "%DOWNSTREAM_LOCAL_ADDRESS%",
                               "%DOWNSTREAM_PEER_URI_SAN%",
                               "%REQUESTED_SERVER_NAME%",
                               "%REQUEST_ID%",
                               "%ROUTE_NAME%",
                               "%RBAC_POLICY%",
                               "%FACT(rbac.audit)%",
                               "%TRAILER(grpc-status)%",
                               "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
                               "%TRACE_ID%",
                               "%RESPONSE_CODE_DETAILS%",
                               "%CONNECTION_TERMINATION_DETAILS%",
                               "%UPSTREAM_LOCAL_ADDRESS%",
                               "100%% done",
                               "",
                               "plain text"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        alog_fmt_t f;
        char err[200];
        size_t col = 0;
        if (!alog_fmt_compile(ok[i], strlen(ok[i]), &f, err, sizeof(err), &col)) {
            fail_msg("'%s' refused at %zu: %s", ok[i], col, err);
        }
        alog_fmt_free(&f);
    }
    alog_fmt_t f;
    char err[200];
    size_t col;
    assert_true(alog_fmt_compile("a %REQ(X?Y):7% b", 16, &f, err, sizeof(err), &col));
    assert_int_equal(f.n, 3);
    assert_int_equal(f.pieces[1].op, ALOG_OP_REQ);
    assert_string_equal(f.pieces[1].text, "X");
    assert_string_equal(f.pieces[1].alt, "Y");
    assert_int_equal(f.pieces[1].max_len, 7);
    alog_fmt_free(&f);
    assert_true(alog_fmt_compile("%DURATION%", 10, &f, err, sizeof(err), &col));
    assert_true(alog_fmt_numeric(&f));
    alog_fmt_free(&f);
    assert_true(alog_fmt_compile("%DURATION%ms", 12, &f, err, sizeof(err), &col));
    assert_false(alog_fmt_numeric(&f));
    alog_fmt_free(&f);
}

static void test_format_errors_have_columns(void **state)
{
    (void)state;
    static const struct {
        const char *fmt;
        size_t col;
        const char *msg;
    } bad[] = {
        {"abc %NOPE% x", 5, "unknown operator %NOPE%"},
        {"%REQ%", 5, "needs an argument"},
        {"%REQ(X", 5, "unterminated argument"},
        {"xx %REQ()%", 9, "empty argument"},
        {"%REQ(?Y)%", 6, "empty header name"},
        {"%REQ(A?B?C)%", 6, "more than one '?'"},
        {"%DURATION(x)%", 10, "takes no argument"},
        {"%REQ(X):%", 8, "bad length"},
        {"%REQ(X):0%", 8, "bad length"},
        {"%DURATION", 10, "not closed"},
        {"%REQ(X):5", 10, "not closed"},
        {"50% off", 3, "not followed by an operator name"},
        {"%", 1, "not followed by an operator name"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        alog_fmt_t f;
        char err[200];
        size_t col = 0;
        assert_false(alog_fmt_compile(bad[i].fmt, strlen(bad[i].fmt), &f, err, sizeof(err), &col));
        if (col != bad[i].col || strstr(err, bad[i].msg) == NULL) {
            fail_msg("'%s': column %zu '%s', want %zu '%s'", bad[i].fmt, col, err, bad[i].col,
                     bad[i].msg);
        }
        assert_null(f.pieces);
    }
}

static void test_start_time(void **state)
{
    (void)state;
    char b[128];
    /* 2021-03-04T05:06:07.089123Z */
    uint64_t us = 1614834367089123ull;
    alog_strftime(NULL, us, b, sizeof(b));
    assert_string_equal(b, "2021-03-04T05:06:07.089Z");
    alog_strftime("%Y/%m/%d %H:%M:%S.%6f|%f|%1f|%s|%%f", us, b, sizeof(b));
    assert_string_equal(b, "2021/03/04 05:06:07.089123|089123000|0|1614834367|%f");
    assert_true(alog_strftime("%Y-%m-%d", us, b, 5) < 5); /* never overflows */
}

/* ---- expressions -------------------------------------------------------------- */

static bool expr(const char *s, int64_t code, int64_t dur)
{
    alog_expr_t e;
    char err[200];
    size_t col;
    if (!alog_expr_compile(s, strlen(s), &e, err, sizeof(err), &col)) {
        fail_msg("'%s' refused at %zu: %s", s, col, err);
    }
    bool v = alog_expr_eval(&e, code, dur);
    alog_expr_free(&e);
    return v;
}

static void test_expressions(void **state)
{
    (void)state;
    assert_true(expr("response.code >= 400", 404, 0));
    assert_false(expr("response.code >= 400", 200, 0));
    assert_true(expr("response.code == 404", 404, 0));
    assert_false(expr("response.code == 404", 403, 0));
    assert_true(expr("response.code != 200", 503, 0));
    assert_false(expr("response.code != 200", 200, 0));
    assert_true(expr("response.duration > 100", 200, 101));
    assert_false(expr("response.duration > 100", 200, 100));
    assert_true(expr("response.code<300", 200, 0));
    assert_true(expr("response.code <= 300", 300, 0));
    /* && binds tighter than ||. */
    const char *e = "response.code >= 500 || response.code >= 400 && response.duration > 100";
    assert_true(expr(e, 503, 0));
    assert_true(expr(e, 404, 101));
    assert_false(expr(e, 404, 50));
    assert_false(expr(e, 200, 500));
    assert_true(expr("response.code == 200 && response.duration < 5", 200, 4));
    assert_false(expr("response.code == 200 && response.duration < 5", 200, 5));

    static const struct {
        const char *s;
        size_t col;
    } bad[] = {
        {"request.code > 1", 1},
        {"response.code", 14},
        {"response.code = 1", 15},
        {"response.code > x", 17},
        {"response.code > 1 &", 19},
        {"response.code > 1 && ", 22},
        {"(response.code > 1)", 1},
        {"response.code > -1", 17},
        {"response.code > 1 and 2", 19},
        {"", 1},
        {"response.code > 99999999999999", 17},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        alog_expr_t x;
        char err[200];
        size_t col = 0;
        assert_false(alog_expr_compile(bad[i].s, strlen(bad[i].s), &x, err, sizeof(err), &col));
        if (col != bad[i].col) {
            fail_msg("'%s': column %zu (%s), want %zu", bad[i].s, col, err, bad[i].col);
        }
    }
}

static void test_utf8_sanitize(void **state)
{
    (void)state;
    char out[64];
    /* valid 2-, 3- and 4-byte sequences stay; a lone continuation byte, an
     * overlong form, a surrogate and a truncated sequence become U+FFFD. */
    const char in[] = "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\x80\xc0\xaf\xed\xa0\x80\xe2\x82";
    size_t n = alog_utf8_sanitize(in, sizeof(in) - 1, out);
    const char want[] = "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"
                        "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
                        "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
                        "\xef\xbf\xbd\xef\xbf\xbd";
    assert_int_equal(n, sizeof(want) - 1);
    assert_memory_equal(out, want, n);
}

/* ---- rendering ------------------------------------------------------------------ */

static void test_render_every_operator(void **state)
{
    fixture_t *f = *state;
    fake_inst_t *inst =
        inst_ok(f, "format: \"%START_TIME% %REQ(:METHOD)% %REQ(:PATH)% %REQ(X-MISSING?User-Agent)% "
                   "%REQ(user-agent):3% %RESP(server)% %RESP(none)% %PROTOCOL% %RESPONSE_CODE% "
                   "%RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESPONSE_DURATION% "
                   "%UPSTREAM_HOST% %UPSTREAM_CLUSTER% %DOWNSTREAM_REMOTE_ADDRESS% "
                   "%DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_PEER_URI_SAN% %REQUESTED_SERVER_NAME% "
                   "%REQUEST_ID% %ROUTE_NAME% %RBAC_POLICY% %FACT(rbac.audit)% %FACT(none)% "
                   "%TRAILER(grpc-status)% %UPSTREAM_TRANSPORT_FAILURE_REASON% %TRACE_ID% "
                   "%UPSTREAM_REQUEST_ATTEMPT_COUNT%\"\n");
    slc_cluster_t *cl = fake_cluster_add(f->gen, "backend", "127.0.0.7:8080", NULL);
    slc_conn_t *c = fake_conn_new("192.0.2.1:5555", "127.1.1.1:15006");
    fake_conn_set_tls(c, NULL, "svc.example", NULL);
    fake_conn_set_peer_cert(c, "cluster.local/ns/foo/sa/bar");
    slc_req_t *r = stream(inst, f, "/a?b=1", 503);
    fake_req_set_conn(r, c);
    fake_req_add_header(r, SLC_REQUEST_HEADERS, "User-Agent", "curl/8.0");
    fake_req_add_header(r, SLC_RESPONSE_HEADERS, "server", "up");
    assert_int_equal(fake_host_table.route_set_cluster(r, cl), SLC_OK);
    assert_int_equal(fake_host_table.upstream_set_endpoint(r, fake_endpoint(cl, 0)), SLC_OK);
    fake_host_table.set_response_flag(r, SLC_RF_UO);
    fake_host_table.set_response_flag(r, SLC_RF_UF);
    fake_host_table.req_fact_set(r, SLC_STR("route.name"), SLC_STR("r1"));
    fake_host_table.req_fact_set(r, SLC_STR("rbac.policy"), SLC_STR("ns/allow-all"));
    fake_host_table.req_fact_set(r, SLC_STR("rbac.audit"), SLC_STR("ns/audit"));
    slc_stream_info_t *in = fake_req_info(r);
    in->start_us = 1614834367089123ull;
    in->duration_us = 12345;
    in->bytes_received = 7;
    in->bytes_sent = 1024;
    in->request_id = SLC_STR("rid-1");
    in->attempts = 2;
    complete(inst, r);
    alog_flush_now(inst->cfg);
    char *got = slurp(g_path);
    assert_string_equal(got,
                        "2021-03-04T05:06:07.089Z GET /a?b=1 curl/8.0 cur up - HTTP/1.1 503 UF,UO "
                        "7 1024 12 - 127.0.0.7:8080 backend 192.0.2.1:5555 127.1.1.1:15006 "
                        "spiffe://cluster.local/ns/foo/sa/bar svc.example rid-1 r1 ns/allow-all "
                        "ns/audit - - - - 2\n");
    free(got);
    fake_inst_free(inst);
    fake_conn_free(c);
}

static void test_default_format_is_istios(void **state)
{
    fixture_t *f = *state;
    fake_inst_t *inst = inst_ok(f, "");
    slc_req_t *r = stream(inst, f, "/x", 200);
    fake_req_add_header(r, SLC_REQUEST_HEADERS, "x-request-id", "id-7");
    fake_req_add_header(r, SLC_REQUEST_HEADERS, "user-agent", "ua");
    fake_req_info(r)->start_us = 1614834367000000ull;
    fake_req_info(r)->duration_us = 3000;
    complete(inst, r);
    alog_flush_now(inst->cfg);
    char *got = slurp(g_path);
    assert_string_equal(got, "[2021-03-04T05:06:07.000Z] \"GET /x HTTP/1.1\" 200 - - - \"-\" 0 0 "
                             "3 - \"-\" \"ua\" \"id-7\" \"svc.local\" \"-\" - - - - - -\n");
    free(got);
    fake_inst_free(inst);
}

static void test_text_escapes_control_bytes(void **state)
{
    fixture_t *f = *state;
    fake_inst_t *inst = inst_ok(f, "format: \"[%REQ(x-evil)%]\"\n");
    slc_req_t *r = stream(inst, f, "/", 200);
    fake_req_add_header(r, SLC_REQUEST_HEADERS, "x-evil", "a\nb\tc\x7f\"\\");
    complete(inst, r);
    alog_flush_now(inst->cfg);
    char *got = slurp(g_path);
    assert_string_equal(got, "[a\\x0ab\\x09c\\x7f\"\\]\n");
    free(got);
    fake_inst_free(inst);
}

static void test_json_hostile_values_round_trip(void **state)
{
    fixture_t *f = *state;
    fake_inst_t *inst = inst_ok(f, "json_format:\n"
                                   "  code: \"%RESPONSE_CODE%\"\n"
                                   "  bytes: \"%BYTES_SENT%\"\n"
                                   "  dur: \"%DURATION%\"\n"
                                   "  rdur: \"%RESPONSE_DURATION%\"\n"
                                   "  evil: \"%REQ(x-evil)%\"\n"
                                   "  utf: \"%REQ(x-utf)%\"\n"
                                   "  missing: \"%REQ(x-none)%\"\n"
                                   "  mixed: \"code=%RESPONSE_CODE% id=%REQ(x-none)%\"\n"
                                   "  policy: \"%RBAC_POLICY%\"\n");
    slc_req_t *r = stream(inst, f, "/", 404);
    const char evil[] = "q\"uote \\back\\ nl\n cr\r nul-less \x01\x1f tab\t }{,:";
    fake_req_add_header(r, SLC_REQUEST_HEADERS, "x-evil", evil);
    fake_req_add_header(r, SLC_REQUEST_HEADERS, "x-utf", "ok\xc3\xa9 bad\xff\xfe end");
    fake_host_table.req_fact_set(r, SLC_STR("rbac.policy"), SLC_STR("ns/\"deny\""));
    fake_req_info(r)->bytes_sent = 99;
    fake_req_info(r)->duration_us = 2500;
    complete(inst, r);
    alog_flush_now(inst->cfg);
    char *got = slurp(g_path);
    assert_int_equal(count_lines(got), 1);
    json_error_t je;
    json_t *o = json_loads(got, 0, &je);
    if (o == NULL) {
        fail_msg("line does not parse: %s: %s", je.text, got);
    }
    assert_true(json_is_integer(json_object_get(o, "code")));
    assert_int_equal(json_integer_value(json_object_get(o, "code")), 404);
    assert_int_equal(json_integer_value(json_object_get(o, "bytes")), 99);
    assert_int_equal(json_integer_value(json_object_get(o, "dur")), 2);
    assert_true(json_is_null(json_object_get(o, "rdur")));
    assert_true(json_is_null(json_object_get(o, "missing")));
    assert_string_equal(json_string_value(json_object_get(o, "evil")), evil);
    assert_string_equal(json_string_value(json_object_get(o, "utf")),
                        "ok\xc3\xa9 bad\xef\xbf\xbd\xef\xbf\xbd end");
    assert_string_equal(json_string_value(json_object_get(o, "mixed")), "code=404 id=-");
    assert_string_equal(json_string_value(json_object_get(o, "policy")), "ns/\"deny\"");
    /* Keys in configuration order. */
    assert_int_equal(strncmp(got, "{\"code\":404,\"bytes\":99,", 23), 0);
    json_decref(o);
    free(got);
    fake_inst_free(inst);
}

/* ---- filters ---------------------------------------------------------------------- */

static size_t run_statuses(fake_inst_t *inst, fixture_t *f, const int *st, size_t n, uint32_t flags,
                           uint64_t dur_us)
{
    for (size_t i = 0; i < n; i++) {
        slc_req_t *r = stream(inst, f, "/", st[i]);
        if (flags) {
            fake_host_table.set_response_flag(r, flags);
        }
        fake_req_info(r)->duration_us = dur_us;
        complete(inst, r);
    }
    alog_flush_now(inst->cfg);
    char *got = slurp(g_path);
    size_t lines = count_lines(got);
    free(got);
    truncate(g_path, 0);
    return lines;
}

static void test_filters(void **state)
{
    fixture_t *f = *state;
    const int st[] = {200, 301, 404, 429, 500, 503};
    fake_inst_t *inst = inst_ok(f, "format: \"%RESPONSE_CODE%\"\n"
                                   "filter:\n  status: [{min: 400, max: 499}, {min: 503}]\n");
    assert_int_equal(run_statuses(inst, f, st, 6, 0, 0), 3);
    fake_inst_free(inst);

    inst = inst_ok(f, "format: x\nfilter: {response_flags: [UO, UF]}\n");
    assert_int_equal(run_statuses(inst, f, st, 6, 0, 0), 0);
    assert_int_equal(run_statuses(inst, f, st, 2, SLC_RF_UO, 0), 2);
    assert_int_equal(run_statuses(inst, f, st, 2, SLC_RF_NR, 0), 0);
    fake_inst_free(inst);

    inst = inst_ok(f, "format: x\nfilter: {min_duration: 100ms}\n");
    assert_int_equal(run_statuses(inst, f, st, 6, 0, 99999), 0);
    assert_int_equal(run_statuses(inst, f, st, 6, 0, 100000), 6);
    fake_inst_free(inst);

    inst = inst_ok(f, "format: x\nfilter: {expression: 'response.code >= 500 || response.code "
                      "== 404'}\n");
    assert_int_equal(run_statuses(inst, f, st, 6, 0, 0), 3);
    fake_inst_free(inst);

    /* All criteria together. */
    inst = inst_ok(f, "format: x\nfilter: {status: [{min: 500, max: 599}], expression: "
                      "'response.duration > 10'}\n");
    assert_int_equal(run_statuses(inst, f, st, 6, 0, 5000), 0);
    assert_int_equal(run_statuses(inst, f, st, 6, 0, 11000), 2);
    fake_inst_free(inst);
}

static uint32_t fnv(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 16777619u;
    }
    return h;
}

static void test_sampling_is_by_request_id(void **state)
{
    fixture_t *f = *state;
    fake_inst_t *inst = inst_ok(f, "format: \"%REQUEST_ID%\"\nfilter: {sample_percent: 10}\n");
    size_t want = 0;
    char ids[400][16];
    for (int i = 0; i < 400; i++) {
        snprintf(ids[i], sizeof(ids[i]), "req-%d", i);
        want += fnv(ids[i]) % 100 < 10;
        slc_req_t *r = stream(inst, f, "/", 200);
        fake_req_info(r)->request_id = (slc_str_t){ids[i], strlen(ids[i])};
        complete(inst, r);
    }
    alog_flush_now(inst->cfg);
    char *got = slurp(g_path);
    assert_int_equal(count_lines(got), want);
    assert_true(want > 10 && want < 80);
    free(got);
    fake_inst_free(inst);
}

/* ---- output --------------------------------------------------------------------------- */

static void test_backlog_drops_and_counts(void **state)
{
    fixture_t *f = *state;
    /* 4096-byte backlog, 100-byte lines: 40 fit, the rest are dropped. */
    fake_inst_t *inst = inst_ok(f, "format: \"%REQ(x-pad)%\"\nmax_backlog_bytes: 4096\n"
                                   "flush_interval: 60s\n");
    char pad[100];
    memset(pad, 'p', 99);
    pad[99] = '\0';
    for (int i = 0; i < 50; i++) {
        slc_req_t *r = stream(inst, f, "/", 200);
        fake_req_add_header(r, SLC_REQUEST_HEADERS, "x-pad", pad);
        complete(inst, r);
    }
    slc_metric_t *dropped = fake_metric(inst->diag, "access_log_dropped_total");
    slc_metric_t *lines = fake_metric(inst->diag, "access_log_lines_total");
    assert_non_null(dropped);
    assert_non_null(lines);
    assert_int_equal(fake_metric_value(dropped), 10);
    alog_flush_now(inst->cfg);
    char *got = slurp(g_path);
    assert_int_equal(count_lines(got), 40);
    free(got);
    /* The writer's count reaches the metric with the worker's next stream. */
    complete(inst, stream(inst, f, "/", 200));
    assert_int_equal(fake_metric_value(lines), 40);
    fake_inst_free(inst); /* the last flush writes the 41st line */
    got = slurp(g_path);
    assert_int_equal(count_lines(got), 41);
    free(got);
}

static void test_rename_reopens(void **state)
{
    fixture_t *f = *state;
    fake_inst_t *inst = inst_ok(f, "format: \"%REQUEST_ID%\"\nflush_interval: 60s\n");
    char moved[160];
    snprintf(moved, sizeof(moved), "%s/access.log.1", g_dir);
    for (int i = 0; i < 3; i++) {
        complete(inst, stream(inst, f, "/", 200));
    }
    alog_flush_now(inst->cfg);
    assert_int_equal(rename(g_path, moved), 0);
    /* Lines buffered before the writer notices land in the new file. */
    for (int i = 0; i < 2; i++) {
        complete(inst, stream(inst, f, "/", 200));
    }
    alog_flush_now(inst->cfg);
    char *a = slurp(moved), *b = slurp(g_path);
    assert_int_equal(count_lines(a), 3);
    assert_int_equal(count_lines(b), 2);
    free(a);
    free(b);
    fake_inst_free(inst);
}

static void test_writer_thread_flushes(void **state)
{
    fixture_t *f = *state;
    fake_inst_t *inst = inst_ok(f, "format: x\nflush_interval: 10ms\n");
    complete(inst, stream(inst, f, "/", 200));
    char *got = NULL;
    for (int i = 0; i < 500; i++) { /* at most 5 s */
        free(got);
        got = slurp(g_path);
        if (count_lines(got) == 1) {
            break;
        }
        usleep(10000);
    }
    assert_string_equal(got, "x\n");
    free(got);
    fake_inst_free(inst);
}

/* ---- config errors ---------------------------------------------------------------------- */

static void expect_error(fixture_t *f, const char *extra, const char *needle)
{
    fake_inst_t *inst = inst_bad(f, extra);
    if (fake_diag_find(inst->diag, needle) < 0) {
        fake_diag_dump(inst->diag);
        fail_msg("no error containing '%s' for: %s", needle, extra);
    }
    fake_inst_free(inst);
}

static void test_config_errors(void **state)
{
    fixture_t *f = *state;
    expect_error(f, "format: \"abc %NOPE%\"\n", "bad format at column 5: unknown operator %NOPE%");
    expect_error(f, "json_format: {a: \"%REQ(\"}\n", "bad format at column 5: unterminated");
    expect_error(f, "format: x\njson_format: {a: b}\n", "exclude each other");
    expect_error(f, "json_format: {}\n", "non-empty map");
    expect_error(f, "format: x\nfilter: {response_flags: [UO, XX]}\n",
                 "unknown response flag 'XX'");
    expect_error(f, "format: x\nfilter: {expression: 'response.code > 1 ||'}\n",
                 "bad expression at column 21");
    expect_error(f, "format: x\nfilter: {status: [{min: 500, max: 400}]}\n", "below min");
    expect_error(f, "format: x\nfilter: {sample_percent: 101}\n", "from 0 to 100");
    expect_error(f, "format: x\nfilter: {bogus: 1}\n", "bogus");
    expect_error(f, "format: x\nmax_backlog_bytes: 10\n", "from 4096");
    /* An unwritable path is refused at config time (g_path's directory
     * does not exist under it). */
    fake_inst_t *inst = fake_inst_new(
        f->desc, f->gen, yaml("path: /nonexistent-dir-for-alog/x.log\nformat: x\n"), 1);
    assert_int_not_equal(inst->status, SLC_OK);
    assert_true(fake_diag_find(inst->diag, "cannot open") >= 0);
    fake_inst_free(inst);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_operator_compiles),
        cmocka_unit_test(test_format_errors_have_columns),
        cmocka_unit_test(test_start_time),
        cmocka_unit_test(test_expressions),
        cmocka_unit_test(test_utf8_sanitize),
        cmocka_unit_test_setup_teardown(test_render_every_operator, setup, teardown),
        cmocka_unit_test_setup_teardown(test_default_format_is_istios, setup, teardown),
        cmocka_unit_test_setup_teardown(test_text_escapes_control_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_hostile_values_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_filters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sampling_is_by_request_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backlog_drops_and_counts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rename_reopens, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_thread_flushes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
