/* Unit tests for core/h1.c: request and response heads, chunked framing and
 * the header helpers. Inputs with NUL bytes are sized with sizeof, so every
 * case string is a literal. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "h1.h"

#define MAXH 128

/* S gives a literal and its length without the terminating NUL. */
#define S(lit) (lit), (sizeof(lit) - 1)

static h1_header_t g_hdrs[MAXH];

static h1_result_t parse_req(const char *raw, size_t len, const h1_limits_t *lim, h1_request_t *out,
                             int *status, const char **reason)
{
    return h1_parse_request(raw, len, lim, g_hdrs, MAXH, out, status, reason);
}

/* expect_reject_lim parses |raw| and fails the test unless it is rejected
 * with |status| and |reason|. Every proper prefix must be either incomplete
 * or rejected the same way: the parser decides at the first bad byte. */
static void expect_reject_lim(const char *raw, size_t len, const h1_limits_t *lim, int status,
                              const char *reason)
{
    h1_request_t req;
    int st = 0;
    const char *why = NULL;
    h1_result_t r = parse_req(raw, len, lim, &req, &st, &why);
    if (r != H1_ERROR || st != status || why == NULL || strcmp(why, reason) != 0) {
        print_error("input %.*s: got result %d status %d reason %s, want %d %s\n", (int)len, raw, r,
                    st, why ? why : "(null)", status, reason);
        fail();
    }
    for (size_t k = 0; k < len; k++) {
        r = parse_req(raw, k, lim, &req, &st, &why);
        if (r == H1_OK || (r == H1_ERROR && (st != status || strcmp(why, reason) != 0))) {
            print_error("prefix %zu of %.*s: got %d %d %s\n", k, (int)len, raw, r, st,
                        why ? why : "(null)");
            fail();
        }
    }
}

static void expect_reject(const char *raw, size_t len, int status, const char *reason)
{
    expect_reject_lim(raw, len, NULL, status, reason);
}

/* expect_ok parses |raw| and requires H1_OK with the head ending at the end
 * of |raw|, and H1_INCOMPLETE for every proper prefix. */
static void expect_ok(const char *raw, size_t len, h1_request_t *out)
{
    int st = 0;
    const char *why = NULL;
    h1_result_t r = parse_req(raw, len, NULL, out, &st, &why);
    if (r != H1_OK) {
        print_error("input %.*s: got %d %d %s\n", (int)len, raw, r, st, why ? why : "(null)");
        fail();
    }
    assert_int_equal(out->head_len, len);
    h1_request_t tmp;
    for (size_t k = 0; k < len; k++)
        assert_int_equal(parse_req(raw, k, NULL, &tmp, &st, &why), H1_INCOMPLETE);
}

static void test_get_basic(void **state)
{
    (void)state;
    h1_request_t req;
    const char raw[] = "GET /index.html?q=1 HTTP/1.1\r\nHost: example.com\r\n"
                       "User-Agent: t\r\nAccept: */*\r\n\r\n";
    expect_ok(S(raw), &req);
    assert_int_equal(req.method_len, 3);
    assert_memory_equal(req.method, "GET", 3);
    assert_int_equal(req.target_len, strlen("/index.html?q=1"));
    assert_memory_equal(req.target, "/index.html?q=1", req.target_len);
    assert_int_equal(req.version_minor, 1);
    assert_int_equal(req.nheaders, 3);
    assert_ptr_equal(req.headers, g_hdrs);
    assert_int_equal(req.headers[1].name_len, 10);
    assert_memory_equal(req.headers[1].name, "User-Agent", 10);
    assert_int_equal(req.headers[2].value_len, 3);
    assert_memory_equal(req.headers[2].value, "*/*", 3);
    assert_int_equal(req.host_len, 11);
    assert_memory_equal(req.host, "example.com", 11);
    assert_int_equal(req.body, H1_BODY_NONE);
    assert_true(req.keep_alive);
    assert_false(req.expect_continue);
    assert_false(req.upgrade);
}

static void test_post_bodies(void **state)
{
    (void)state;
    h1_request_t req;
    expect_ok(S("POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 42\r\n\r\n"), &req);
    assert_int_equal(req.body, H1_BODY_LENGTH);
    assert_int_equal(req.content_length, 42);

    expect_ok(S("POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n"), &req);
    assert_int_equal(req.body, H1_BODY_NONE);
    assert_int_equal(req.content_length, 0);

    expect_ok(S("POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"), &req);
    assert_int_equal(req.body, H1_BODY_CHUNKED);

    /* Case-insensitive coding and header name, OWS around the value. */
    expect_ok(S("POST /a HTTP/1.1\r\nHost: h\r\ntransfer-encoding:\t Chunked \t\r\n\r\n"), &req);
    assert_int_equal(req.body, H1_BODY_CHUNKED);

    /* The same value repeated, as a list or as two headers, is one value. */
    expect_ok(S("POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\n"), &req);
    assert_int_equal(req.body, H1_BODY_LENGTH);
    assert_int_equal(req.content_length, 5);
    expect_ok(S("POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n"),
              &req);
    assert_int_equal(req.content_length, 5);
    expect_ok(S("POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 007\r\n\r\n"), &req);
    assert_int_equal(req.content_length, 7);
    expect_ok(S("POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 4611686018427387904\r\n\r\n"),
              &req);
    assert_true(req.content_length == ((uint64_t)1 << 62));
}

static void test_pipelined(void **state)
{
    (void)state;
    const char raw[] = "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
                       "GET /b HTTP/1.1\r\nHost: h\r\n\r\nGET /c HT";
    h1_request_t req;
    int st;
    const char *why;
    size_t first = strlen("POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n");

    assert_int_equal(parse_req(S(raw), NULL, &req, &st, &why), H1_OK);
    assert_int_equal(req.head_len, first);
    size_t off = req.head_len + req.content_length;
    assert_int_equal(parse_req(raw + off, sizeof(raw) - 1 - off, NULL, &req, &st, &why), H1_OK);
    assert_int_equal(req.head_len, strlen("GET /b HTTP/1.1\r\nHost: h\r\n\r\n"));
    assert_memory_equal(req.target, "/b", 2);
    off += req.head_len;
    assert_int_equal(parse_req(raw + off, sizeof(raw) - 1 - off, NULL, &req, &st, &why),
                     H1_INCOMPLETE);
}

static void test_incomplete_prefixes(void **state)
{
    (void)state;
    h1_request_t req;
    /* expect_ok checks every prefix is H1_INCOMPLETE. */
    expect_ok(S("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), &req);
    expect_ok(S("PUT /x HTTP/1.1\r\nHost: a:8080\r\nX-Empty:\r\nX-Obs: caf\xc3\xa9\r\n"
                "Content-Length: 3\r\nConnection: keep-alive, Upgrade\r\nUpgrade: h2c\r\n"
                "Expect: 100-continue\r\n\r\n"),
              &req);
    assert_int_equal(req.nheaders, 7);
    assert_int_equal(req.headers[1].value_len, 0);
    assert_true(req.upgrade);
    assert_true(req.expect_continue);
}

static void test_leading_crlf(void **state)
{
    (void)state;
    h1_request_t req;
    expect_ok(S("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), &req);
    assert_int_equal(req.head_len, 4 + strlen("GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
    assert_memory_equal(req.method, "GET", 3);
    expect_reject(S("\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), 400, "bare_lf");
    expect_reject(S("\r\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), 400, "bare_cr");
    expect_reject(S(" \r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), 400, "bad_method");
}

static void test_request_line_rejects(void **state)
{
    (void)state;
    expect_reject(S("GET  / HTTP/1.1\r\nHost: a\r\n\r\n"), 400, "bad_request_line");
    expect_reject(S("GET / HTTP/1.1 \r\nHost: a\r\n\r\n"), 400, "bad_version");
    expect_reject(S("GET /  HTTP/1.1\r\nHost: a\r\n\r\n"), 400, "bad_version");
    expect_reject(S("GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n"), 400, "bad_method");
    expect_reject(S("G(T / HTTP/1.1\r\nHost: a\r\n\r\n"), 400, "bad_method");
    expect_reject(S(" GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 400, "bad_method");
    expect_reject(S("GET\r\nHost: a\r\n\r\n"), 400, "bad_request_line");
    expect_reject(S("GET /\r\n\r\n"), 400, "bad_request_line");
    expect_reject(S("GET / http/1.1\r\nHost: a\r\n\r\n"), 400, "bad_version");
    expect_reject(S("GET / HTTP/1\r\nHost: a\r\n\r\n"), 400, "bad_version");
    expect_reject(S("GET / HTTP/1.1x\r\nHost: a\r\n\r\n"), 400, "bad_version");
    expect_reject(S("GET / HTTP/2.0\r\nHost: a\r\n\r\n"), 505, "version_not_supported");
    expect_reject(S("GET / HTTP/1.2\r\nHost: a\r\n\r\n"), 505, "version_not_supported");
    expect_reject(S("GET / HTTP/0.9\r\nHost: a\r\n\r\n"), 505, "version_not_supported");
    /* Target characters: no CTL, no whitespace, no obs-text, no fragment. */
    expect_reject(S("GET /a\x7f HTTP/1.1\r\nHost: a\r\n\r\n"), 400, "bad_target");
    expect_reject(S("GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n"), 400, "bad_target");
    expect_reject(S("GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n"), 400, "bad_target");
    expect_reject(S("GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n"), 400, "bad_target");
    expect_reject(S("GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n"), 400, "bad_target");
    /* Target forms against methods. */
    expect_reject(S("GET * HTTP/1.1\r\nHost: a\r\n\r\n"), 400, "bad_target");
    expect_reject(S("OPTIONS *x HTTP/1.1\r\nHost: a\r\n\r\n"), 400, "bad_target");
    expect_reject(S("GET example.com:80 HTTP/1.1\r\nHost: a\r\n\r\n"), 400, "bad_target");
    expect_reject(S("CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n"), 400, "bad_target");
    expect_reject(S("CONNECT example.com HTTP/1.1\r\nHost: a\r\n\r\n"), 400, "bad_target");
    expect_reject(S("CONNECT http://example.com:443/ HTTP/1.1\r\nHost: a\r\n\r\n"), 400,
                  "bad_target");
    expect_reject(S("CONNECT a:123456 HTTP/1.1\r\nHost: a\r\n\r\n"), 400, "bad_target");
    expect_reject(S("GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n"), 400, "bad_target");
    expect_reject(S("GET http://user@evil/ HTTP/1.1\r\nHost: a\r\n\r\n"), 400, "bad_target");
    expect_reject(S("GET ftp://example.com/ HTTP/1.1\r\nHost: a\r\n\r\n"), 400, "bad_target");
    expect_reject(S("GET example.com/ HTTP/1.1\r\nHost: a\r\n\r\n"), 400, "bad_target");

    /* Garbage in the method fails before any line end: a TLS ClientHello
     * sent to a plaintext port, say. */
    h1_request_t req;
    int st;
    const char *why;
    assert_int_equal(parse_req(S("\x16\x03\x01\x02\x00\x01"), NULL, &req, &st, &why), H1_ERROR);
    assert_int_equal(st, 400);
    assert_string_equal(why, "bad_method");
    assert_int_equal(parse_req(S("G(T"), NULL, &req, &st, &why), H1_ERROR);
    assert_int_equal(parse_req(S("GET /x"), NULL, &req, &st, &why), H1_INCOMPLETE);
}

static void test_target_forms_ok(void **state)
{
    (void)state;
    h1_request_t req;
    expect_ok(S("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"), &req);
    assert_int_equal(req.target_len, 1);
    expect_ok(S("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"), &req);
    assert_memory_equal(req.method, "CONNECT", 7);
    expect_ok(S("CONNECT [::1]:8443 HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n"), &req);
    expect_ok(S("GET http://example.com/x?y HTTP/1.1\r\nHost: example.com\r\n\r\n"), &req);
    expect_ok(S("GET HTTPS://example.com:8443 HTTP/1.1\r\nHost: other\r\n\r\n"), &req);
    expect_ok(S("OPTIONS http://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n"), &req);
    expect_ok(S("GET //double/slash?a=%20 HTTP/1.1\r\nHost: a\r\n\r\n"), &req);
    expect_ok(S("GET / HTTP/1.0\r\n\r\n"), &req);
    assert_int_equal(req.version_minor, 0);
    assert_null(req.host);
}

static void test_line_endings(void **state)
{
    (void)state;
    expect_reject(S("GET / HTTP/1.1\nHost: a\r\n\r\n"), 400, "bare_lf");
    expect_reject(S("GET / HTTP/1.1\r\nHost: a\n\r\n"), 400, "bare_lf");
    expect_reject(S("GET / HTTP/1.1\r\nHost: a\r\n\n"), 400, "bare_lf");
    expect_reject(S("GET / HTTP/1.1\r\nHost: a\r\nX: 1\n\n"), 400, "bare_lf");
    expect_reject(S("GET / HTTP/1.1\rHost: a\r\n\r\n"), 400, "bare_cr");
    expect_reject(S("GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n"), 400, "bare_cr");
    expect_reject(S("GET / HTTP/1.1\r\nHost: a\r\n\r\r\n"), 400, "bare_cr");
    expect_reject(S("GET / HTTP/1.1\r\nX: a\r\r\n\r\n"), 400, "bare_cr");
    /* Decided before the head is complete. */
    expect_reject(S("GET / HTTP/1.1\r\nHost: a\rX"), 400, "bare_cr");
    expect_reject(S("GET / HTTP/1.1\r\nHost: a\n"), 400, "bare_lf");
}

static void test_header_rejects(void **state)
{
    (void)state;
    expect_reject(S("GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n 2\r\n\r\n"), 400, "obs_fold");
    expect_reject(S("GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n\t2\r\n\r\n"), 400, "obs_fold");
    expect_reject(S("GET / HTTP/1.1\r\n Host: a\r\n\r\n"), 400, "obs_fold");
    expect_reject(S("GET / HTTP/1.1\r\nHost : a\r\n\r\n"), 400, "space_before_colon");
    expect_reject(S("GET / HTTP/1.1\r\nHost\t: a\r\n\r\n"), 400, "space_before_colon");
    expect_reject(S("GET / HTTP/1.1\r\nHost: a\r\n: x\r\n\r\n"), 400, "bad_header_name");
    expect_reject(S("GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n"), 400, "bad_header_name");
    expect_reject(S("GET / HTTP/1.1\r\nHost: a\r\nX(y): 1\r\n\r\n"), 400, "bad_header_name");
    expect_reject(S("GET / HTTP/1.1\r\nHost: a\r\nX\xc3\xa9: 1\r\n\r\n"), 400, "bad_header_name");
    expect_reject(S("GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n"), 400, "bad_header_value");
    expect_reject(S("GET / HTTP/1.1\r\nHost: a\r\nX\0: a\r\n\r\n"), 400, "bad_header_name");
    expect_reject(S("GET / HTTP/1.1\r\nHost: a\r\nX: a\x01\r\n\r\n"), 400, "bad_header_value");
    expect_reject(S("GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f\r\n\r\n"), 400, "bad_header_value");
    expect_reject(S("GET / HTTP/1.1\r\nHost: a\r\nX: \x0b\r\n\r\n"), 400, "bad_header_value");
}

static void test_header_values(void **state)
{
    (void)state;
    h1_request_t req;
    expect_ok(S("GET / HTTP/1.1\r\nHost: a\r\nX: \t a \t b\t \r\nY:\r\nZ:   \r\n"
                "O: \x80\xff\r\n\r\n"),
              &req);
    assert_int_equal(req.nheaders, 5);
    assert_int_equal(req.headers[1].value_len, strlen("a \t b"));
    assert_memory_equal(req.headers[1].value, "a \t b", req.headers[1].value_len);
    assert_int_equal(req.headers[2].value_len, 0);
    assert_int_equal(req.headers[3].value_len, 0);
    assert_int_equal(req.headers[4].value_len, 2);
    assert_int_equal((unsigned char)req.headers[4].value[1], 0xff);
}

static void test_limits(void **state)
{
    (void)state;
    h1_request_t req;
    int st;
    const char *why;
    h1_limits_t lim = {.max_request_line = 20, .max_head = 0, .max_headers = 0};

    /* "GET /0123456789 HTTP/1.1" is 24 bytes: 414, even before its CRLF. */
    expect_reject_lim(S("GET /0123456789 HTTP/1.1\r\nHost: a\r\n\r\n"), &lim, 414,
                      "request_line_too_long");
    assert_int_equal(parse_req(S("GET /0123456789012345"), &lim, &req, &st, &why), H1_ERROR);
    assert_int_equal(st, 414);
    /* Exactly 20 bytes is fine. */
    assert_int_equal(parse_req(S("GET /23456 HTTP/1.1\r\nHost: a\r\n\r\n"), &lim, &req, &st, &why),
                     H1_OK);

    /* 431 by size: the head below is 28 bytes. */
    const char small[] = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    h1_limits_t hl = {.max_head = sizeof(small) - 1};
    assert_int_equal(parse_req(S(small), &hl, &req, &st, &why), H1_OK);
    hl.max_head = sizeof(small) - 2;
    expect_reject_lim(S(small), &hl, 431, "head_too_large");
    /* A head that never ends is bounded even while incomplete. */
    hl.max_head = 64;
    char big[200];
    memcpy(big, "GET / HTTP/1.1\r\nHost: a\r\nX: ", 28);
    memset(big + 28, 'x', sizeof(big) - 28);
    assert_int_equal(parse_req(big, 63, &hl, &req, &st, &why), H1_INCOMPLETE);
    assert_int_equal(parse_req(big, 64, &hl, &req, &st, &why), H1_ERROR);
    assert_int_equal(st, 431);
    assert_string_equal(why, "head_too_large");
    assert_int_equal(parse_req(big, sizeof(big), &hl, &req, &st, &why), H1_ERROR);
    assert_int_equal(st, 431);
    /* Pipelined bytes past a complete head do not count. */
    char pipe[300];
    memcpy(pipe, small, sizeof(small) - 1);
    memset(pipe + sizeof(small) - 1, 'G', sizeof(pipe) - (sizeof(small) - 1));
    hl.max_head = sizeof(small) - 1;
    assert_int_equal(parse_req(pipe, sizeof(pipe), &hl, &req, &st, &why), H1_OK);

    /* 431 by count, from the limits and from the caller's array. */
    h1_limits_t cl = {.max_headers = 3};
    const char four[] = "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
    expect_reject_lim(S(four), &cl, 431, "too_many_headers");
    cl.max_headers = 4;
    assert_int_equal(parse_req(S(four), &cl, &req, &st, &why), H1_OK);
    h1_header_t two[2];
    assert_int_equal(h1_parse_request(S(four), NULL, two, 2, &req, &st, &why), H1_ERROR);
    assert_int_equal(st, 431);
    assert_string_equal(why, "too_many_headers");
    assert_int_equal(h1_parse_request(S(four), NULL, two, 2, &req, NULL, NULL), H1_ERROR);

    /* Default of 100 headers when the limit is zero. */
    char many[4096];
    size_t n = (size_t)snprintf(many, sizeof(many), "GET / HTTP/1.1\r\nHost: a\r\n");
    for (int i = 0; i < 99; i++)
        n += (size_t)snprintf(many + n, sizeof(many) - n, "H%d: v\r\n", i);
    memcpy(many + n, "\r\n", 2);
    h1_limits_t zero = {0};
    assert_int_equal(parse_req(many, n + 2, &zero, &req, &st, &why), H1_OK);
    assert_int_equal(req.nheaders, 100);
    n += (size_t)snprintf(many + n, sizeof(many) - n, "H100: v\r\n\r\n");
    assert_int_equal(parse_req(many, n, &zero, &req, &st, &why), H1_ERROR);
    assert_int_equal(st, 431);
}

static void test_content_length(void **state)
{
    (void)state;
    expect_reject(S("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n"), 400,
                  "bad_content_length");
    expect_reject(S("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -5\r\n\r\n"), 400,
                  "bad_content_length");
    expect_reject(S("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5 5\r\n\r\n"), 400,
                  "bad_content_length");
    expect_reject(S("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\n"), 400,
                  "bad_content_length");
    expect_reject(S("POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n"), 400,
                  "bad_content_length");
    expect_reject(S("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5,\r\n\r\n"), 400,
                  "bad_content_length");
    expect_reject(S("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5,,5\r\n\r\n"), 400,
                  "bad_content_length");
    expect_reject(S("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4611686018427387905\r\n\r\n"),
                  400, "bad_content_length");
    expect_reject(
        S("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n"), 400,
        "bad_content_length");
    expect_reject(S("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n"), 400,
                  "cl_mismatch");
    expect_reject(S("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"),
                  400, "cl_mismatch");
}

static void test_transfer_encoding(void **state)
{
    (void)state;
    expect_reject(
        S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"),
        400, "cl_te_conflict");
    expect_reject(
        S("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"),
        400, "cl_te_conflict");
    expect_reject(S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n"), 501,
                  "te_unsupported");
    expect_reject(S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), 501,
                  "te_unsupported");
    expect_reject(S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"), 501,
                  "te_unsupported");
    expect_reject(S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                    "Transfer-Encoding: identity\r\n\r\n"),
                  501, "te_unsupported");
    expect_reject(S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"),
                  400, "te_chunked_twice");
    expect_reject(S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                    "Transfer-Encoding: CHUNKED\r\n\r\n"),
                  400, "te_chunked_twice");
    expect_reject(S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n"), 400,
                  "space_before_colon");
    expect_reject(S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;x=1\r\n\r\n"), 400,
                  "bad_transfer_encoding");
    expect_reject(S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ,chunked\r\n\r\n"), 400,
                  "bad_transfer_encoding");
    expect_reject(S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked,\r\n\r\n"), 400,
                  "bad_transfer_encoding");
    expect_reject(S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n"), 400,
                  "bad_transfer_encoding");
    expect_reject(S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n"), 400,
                  "bad_transfer_encoding");
    expect_reject(S("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), 400, "te_http10");
    expect_reject(S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\x0b\r\n\r\n"), 400,
                  "bad_header_value");
}

static void test_host(void **state)
{
    (void)state;
    h1_request_t req;
    expect_reject(S("GET / HTTP/1.1\r\nX: a\r\n\r\n"), 400, "missing_host");
    expect_reject(S("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"), 400, "duplicate_host");
    expect_reject(S("GET / HTTP/1.1\r\nHost: a b\r\n\r\n"), 400, "bad_host");
    expect_reject(S("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"), 400, "bad_host");
    expect_reject(S("GET / HTTP/1.1\r\nHost: user@a\r\n\r\n"), 400, "bad_host");
    expect_reject(S("GET / HTTP/1.1\r\nHost: a:99999\r\n\r\n"), 400, "bad_host");
    expect_reject(S("GET / HTTP/1.1\r\nHost: a:8x\r\n\r\n"), 400, "bad_host");
    expect_reject(S("GET / HTTP/1.1\r\nHost: :80\r\n\r\n"), 400, "bad_host");
    expect_reject(S("GET / HTTP/1.1\r\nHost: [::1\r\n\r\n"), 400, "bad_host");
    expect_reject(S("GET / HTTP/1.1\r\nHost: a%zz\r\n\r\n"), 400, "bad_host");
    expect_ok(S("GET / HTTP/1.1\r\nHost: Ex_ample-1.com:8080\r\n\r\n"), &req);
    assert_int_equal(req.host_len, strlen("Ex_ample-1.com:8080"));
    expect_ok(S("GET / HTTP/1.1\r\nHost: [2001:db8::1]:80\r\n\r\n"), &req);
    expect_ok(S("GET / HTTP/1.1\r\nHost: a%2Db\r\n\r\n"), &req);
    expect_ok(S("GET / HTTP/1.1\r\nHost:\r\n\r\n"), &req);
    assert_non_null(req.host);
    assert_int_equal(req.host_len, 0);
}

static void test_keep_alive(void **state)
{
    (void)state;
    h1_request_t req;
    expect_ok(S("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), &req);
    assert_true(req.keep_alive);
    expect_ok(S("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"), &req);
    assert_false(req.keep_alive);
    expect_ok(S("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, CLOSE\r\n\r\n"), &req);
    assert_false(req.keep_alive);
    expect_ok(S("GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n"), &req);
    assert_true(req.keep_alive);
    expect_ok(S("GET / HTTP/1.0\r\n\r\n"), &req);
    assert_false(req.keep_alive);
    expect_ok(S("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"), &req);
    assert_true(req.keep_alive);
    expect_ok(S("GET / HTTP/1.0\r\nConnection: foo\r\nConnection: ,keep-alive ,\r\n\r\n"), &req);
    assert_true(req.keep_alive);
    expect_ok(S("GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n"), &req);
    assert_false(req.keep_alive);
}

static void test_expect_upgrade(void **state)
{
    (void)state;
    h1_request_t req;
    expect_ok(S("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\n\r\n"), &req);
    assert_true(req.expect_continue);
    expect_ok(S("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continuex\r\n\r\n"), &req);
    assert_false(req.expect_continue);
    expect_ok(S("POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n"), &req);
    assert_false(req.expect_continue);
    expect_ok(S("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"),
              &req);
    assert_true(req.upgrade);
    expect_ok(S("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n"), &req);
    assert_false(req.upgrade);
    expect_ok(S("GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n"), &req);
    assert_false(req.upgrade);
    expect_ok(S("GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"), &req);
    assert_false(req.upgrade);
}

/* Responses. */

static h1_result_t parse_resp(const char *raw, size_t len, bool head, h1_response_t *out,
                              const char **why)
{
    return h1_parse_response(raw, len, NULL, head, g_hdrs, MAXH, out, why);
}

static void resp_ok(const char *raw, size_t len, bool head, h1_response_t *out)
{
    const char *why = NULL;
    h1_result_t r = parse_resp(raw, len, head, out, &why);
    if (r != H1_OK) {
        print_error("response %.*s: got %d %s\n", (int)len, raw, r, why ? why : "(null)");
        fail();
    }
    assert_int_equal(out->head_len, len);
    h1_response_t tmp;
    for (size_t k = 0; k < len; k++)
        assert_int_equal(parse_resp(raw, k, head, &tmp, &why), H1_INCOMPLETE);
}

static void resp_reject(const char *raw, size_t len, const char *reason)
{
    h1_response_t out;
    const char *why = NULL;
    h1_result_t r = parse_resp(raw, len, false, &out, &why);
    if (r != H1_ERROR || why == NULL || strcmp(why, reason) != 0) {
        print_error("response %.*s: got %d %s, want %s\n", (int)len, raw, r, why ? why : "(null)",
                    reason);
        fail();
    }
}

static void test_response_bodies(void **state)
{
    (void)state;
    h1_response_t r;
    resp_ok(S("HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n"), false, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.reason_len, 2);
    assert_memory_equal(r.reason, "OK", 2);
    assert_int_equal(r.body, H1_BODY_LENGTH);
    assert_int_equal(r.content_length, 12);
    assert_true(r.keep_alive);

    resp_ok(S("HTTP/1.1 204 No Content\r\nContent-Length: 12\r\n\r\n"), false, &r);
    assert_int_equal(r.body, H1_BODY_NONE);
    assert_true(r.keep_alive);
    resp_ok(S("HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n"), false, &r);
    assert_int_equal(r.body, H1_BODY_NONE);
    resp_ok(S("HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n"), true, &r);
    assert_int_equal(r.body, H1_BODY_NONE);
    resp_ok(S("HTTP/1.1 100 Continue\r\n\r\n"), false, &r);
    assert_int_equal(r.body, H1_BODY_NONE);
    assert_int_equal(r.status, 100);

    resp_ok(S("HTTP/1.1 200 OK\r\n\r\n"), false, &r);
    assert_int_equal(r.body, H1_BODY_EOF);
    assert_false(r.keep_alive);
    resp_ok(S("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), false, &r);
    assert_int_equal(r.body, H1_BODY_CHUNKED);
    assert_true(r.keep_alive);
    resp_ok(S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"), false, &r);
    assert_int_equal(r.body, H1_BODY_EOF);
    assert_false(r.keep_alive);
    resp_ok(S("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"), false,
            &r);
    assert_int_equal(r.body, H1_BODY_CHUNKED);
    assert_false(r.keep_alive);
    resp_ok(S("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), false, &r);
    assert_int_equal(r.body, H1_BODY_NONE);
    assert_true(r.keep_alive);

    resp_ok(S("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n"), false, &r);
    assert_int_equal(r.version_minor, 0);
    assert_false(r.keep_alive);
    resp_ok(S("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n"), false, &r);
    assert_true(r.keep_alive);
    resp_ok(S("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n"), false, &r);
    assert_false(r.keep_alive);
}

static void test_response_status_line(void **state)
{
    (void)state;
    h1_response_t r;
    resp_ok(S("HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n"), false, &r);
    assert_int_equal(r.status, 404);
    assert_int_equal(r.reason_len, 0);
    resp_ok(S("HTTP/1.1 503 \r\nContent-Length: 0\r\n\r\n"), false, &r);
    assert_int_equal(r.status, 503);
    assert_int_equal(r.reason_len, 0);
    resp_ok(S("HTTP/1.1 200 It's \tfine \xe2\x9c\x93\r\nContent-Length: 0\r\n\r\n"), false, &r);
    assert_int_equal(r.reason_len, strlen("It's \tfine \xe2\x9c\x93"));

    resp_reject(S("HTTP/1.1 99 OK\r\n\r\n"), "bad_status");
    resp_reject(S("HTTP/1.1 600 OK\r\n\r\n"), "bad_status");
    resp_reject(S("HTTP/1.1 2x0 OK\r\n\r\n"), "bad_status");
    resp_reject(S("HTTP/1.1 2000 OK\r\n\r\n"), "bad_status_line");
    resp_reject(S("HTTP/1.1  200 OK\r\n\r\n"), "bad_status");
    resp_reject(S("HTTP/1.1 200OK\r\n\r\n"), "bad_status_line");
    resp_reject(S("HTTP/1.1\r\n\r\n"), "bad_status_line");
    resp_reject(S("HTTP/2.0 200 OK\r\n\r\n"), "bad_version");
    resp_reject(S("http/1.1 200 OK\r\n\r\n"), "bad_version");
    resp_reject(S("\r\nHTTP/1.1 200 OK\r\n\r\n"), "bad_version");
    resp_reject(S("HTTP/1.1 200 O\x01K\r\n\r\n"), "bad_reason");
    resp_reject(S("HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n"), "bare_lf");
    resp_reject(S("HTTP/1.1 200 OK\r\nX: 1\r\n 2\r\n\r\n"), "obs_fold");
    resp_reject(S("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
                "cl_mismatch");
    resp_reject(S("HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\n"), "bad_content_length");
    resp_reject(S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"),
                "te_chunked_twice");
    resp_reject(S("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), "te_http10");
    resp_reject(S("HTTP/1.1 200 OK\r\nX: \0\r\n\r\n"), "bad_header_value");
}

static void test_response_limits(void **state)
{
    (void)state;
    h1_response_t r;
    const char *why;
    h1_limits_t lim = {.max_request_line = 16, .max_head = 40, .max_headers = 1};
    assert_int_equal(
        h1_parse_response(S("HTTP/1.1 200 Long Reason\r\n"), &lim, false, g_hdrs, MAXH, &r, &why),
        H1_ERROR);
    assert_string_equal(why, "status_line_too_long");
    assert_int_equal(h1_parse_response(S("HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\n\r\n"), &lim, false,
                                       g_hdrs, MAXH, &r, &why),
                     H1_ERROR);
    assert_string_equal(why, "too_many_headers");
    assert_int_equal(h1_parse_response(S("HTTP/1.1 200 OK\r\nA: 0123456789012345678901\r\n"), &lim,
                                       false, g_hdrs, MAXH, &r, &why),
                     H1_ERROR);
    assert_string_equal(why, "head_too_large");
    assert_int_equal(
        h1_parse_response(S("HTTP/1.1 200 OK\r\nA: 1\r\n"), &lim, false, g_hdrs, MAXH, &r, &why),
        H1_INCOMPLETE);
    assert_int_equal(h1_parse_response(S("HTTP/1.1 200 OK\r\nA: 1\r\n\r\n"), &lim, false, g_hdrs,
                                       MAXH, &r, NULL),
                     H1_OK);
}

/* Chunked decoding. */

struct ck_out {
    h1_result_t result; /* H1_OK when done */
    const char *reason;
    char data[256];
    size_t data_len;
    size_t consumed; /* bytes of input taken, framing and data */
};

/* ck_run plays a caller that receives |raw| |step| bytes at a time (0 means
 * at once), drains what h1_chunked_parse uses and takes data itself. */
static void ck_run(const char *raw, size_t len, size_t step, size_t max_line, size_t max_trailers,
                   struct ck_out *o)
{
    h1_chunked_t st;
    size_t pos = 0, avail = 0;

    memset(o, 0, sizeof(*o));
    h1_chunked_init(&st);
    st.max_line = max_line;
    st.max_trailers = max_trailers;
    o->result = H1_INCOMPLETE;
    while (avail < len) {
        avail = step == 0 || len - avail < step ? len : avail + step;
        while (!h1_chunked_done(&st)) {
            if (h1_chunked_in_data(&st)) {
                uint64_t n = h1_chunked_data_left(&st);
                if (n > avail - pos)
                    n = avail - pos;
                if (n == 0)
                    break;
                assert_true(o->data_len + n <= sizeof(o->data));
                memcpy(o->data + o->data_len, raw + pos, n);
                o->data_len += n;
                pos += n;
                h1_chunked_data_consumed(&st, n);
                continue;
            }
            size_t used = 99999;
            const char *why = NULL;
            h1_result_t r = h1_chunked_parse(&st, raw + pos, avail - pos, &used, &why);
            assert_true(used <= avail - pos);
            pos += used;
            if (r == H1_ERROR) {
                assert_non_null(why);
                o->result = H1_ERROR;
                o->reason = why;
                o->consumed = pos;
                /* Errors are sticky. */
                assert_int_equal(h1_chunked_parse(&st, raw + pos, avail - pos, &used, &why),
                                 H1_ERROR);
                return;
            }
            if (r == H1_INCOMPLETE) {
                assert_int_equal(pos, avail);
                break;
            }
        }
        if (h1_chunked_done(&st)) {
            o->result = H1_OK;
            break;
        }
    }
    o->consumed = pos;
}

/* ck_expect runs |raw| at once, one byte at a time, and split in two at
 * every boundary, and requires the same outcome each time. */
static void ck_expect(const char *raw, size_t len, size_t max_line, size_t max_trailers,
                      h1_result_t want, const char *want_data, const char *want_reason,
                      size_t want_consumed)
{
    struct ck_out o;
    for (size_t step = 0; step <= len; step++) {
        ck_run(raw, len, step, max_line, max_trailers, &o);
        if (o.result != want || (want_reason && (!o.reason || strcmp(o.reason, want_reason))) ||
            (want == H1_OK && o.consumed != want_consumed)) {
            print_error("chunked %.*s step %zu: got %d %s consumed %zu\n", (int)len, raw, step,
                        o.result, o.reason ? o.reason : "(null)", o.consumed);
            fail();
        }
        if (want_data) {
            assert_int_equal(o.data_len, strlen(want_data));
            assert_memory_equal(o.data, want_data, o.data_len);
        }
    }
    /* Two-part splits: the first part is every prefix. */
    for (size_t k = 1; k < len; k++) {
        h1_chunked_t st;
        h1_chunked_init(&st);
        st.max_line = max_line;
        st.max_trailers = max_trailers;
        size_t pos = 0;
        h1_result_t r = H1_INCOMPLETE;
        const char *why = NULL;
        for (int part = 0; part < 2 && r != H1_ERROR; part++) {
            size_t end = part == 0 ? k : len;
            while (!h1_chunked_done(&st) && pos < end) {
                if (h1_chunked_in_data(&st)) {
                    uint64_t n = h1_chunked_data_left(&st);
                    if (n > end - pos)
                        n = end - pos;
                    pos += n;
                    h1_chunked_data_consumed(&st, n);
                    continue;
                }
                size_t used;
                r = h1_chunked_parse(&st, raw + pos, end - pos, &used, &why);
                pos += used;
                if (r != H1_OK)
                    break;
            }
        }
        if (want == H1_OK) {
            assert_true(h1_chunked_done(&st));
            assert_int_equal(pos, want_consumed);
        } else {
            assert_int_equal(r, want);
            if (want_reason)
                assert_string_equal(why, want_reason);
        }
    }
}

static void test_chunked_ok(void **state)
{
    (void)state;
    const char a[] = "5\r\nhello\r\n0\r\n\r\n";
    ck_expect(S(a), 0, 0, H1_OK, "hello", NULL, sizeof(a) - 1);
    const char b[] = "5;a=b;c=\"x\\\"y;\" ; d\r\nhello\r\n6 ;e = f\t;g\r\n world\r\n"
                     "0;last\r\nX-T: v\r\nY:\r\nZ: caf\xc3\xa9\t\r\n\r\n";
    ck_expect(S(b), 0, 0, H1_OK, "hello world", NULL, sizeof(b) - 1);
    const char c[] = "A\r\n0123456789\r\n00001\r\n!\r\n000\r\n\r\nGET / HTTP/1.1\r\n";
    ck_expect(S(c), 0, 0, H1_OK, "0123456789!", NULL,
              strlen("A\r\n0123456789\r\n00001\r\n!\r\n000\r\n\r\n"));
    const char d[] = "1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n";
    ck_expect(S(d), 0, 0, H1_OK, "abcdefghijklmnopqrstuvwxyz", NULL, sizeof(d) - 1);
}

static void test_chunked_api(void **state)
{
    (void)state;
    h1_chunked_t st;
    size_t used;
    const char *why;
    h1_chunked_init(&st);
    assert_false(h1_chunked_in_data(&st));
    assert_int_equal(h1_chunked_data_left(&st), 0);
    assert_int_equal(h1_chunked_parse(&st, S("4000000000000000\r\nxx"), &used, &why), H1_OK);
    assert_int_equal(used, 18);
    assert_true(h1_chunked_in_data(&st));
    assert_true(h1_chunked_data_left(&st) == ((uint64_t)1 << 62));
    /* In data: the parser takes nothing. */
    assert_int_equal(h1_chunked_parse(&st, S("xx"), &used, &why), H1_OK);
    assert_int_equal(used, 0);
    h1_chunked_data_consumed(&st, 2);
    assert_true(h1_chunked_data_left(&st) == ((uint64_t)1 << 62) - 2);
    h1_chunked_data_consumed(&st, (uint64_t)1 << 62);
    assert_false(h1_chunked_in_data(&st));
    assert_int_equal(h1_chunked_parse(&st, S("\r\n0\r\n"), &used, &why), H1_INCOMPLETE);
    assert_int_equal(used, 5);
    assert_false(h1_chunked_done(&st));
    assert_int_equal(h1_chunked_parse(&st, S("\r\nrest"), &used, &why), H1_OK);
    assert_int_equal(used, 2);
    assert_true(h1_chunked_done(&st));
    assert_int_equal(h1_chunked_parse(&st, S("rest"), &used, &why), H1_OK);
    assert_int_equal(used, 0);
}

static void test_chunked_errors(void **state)
{
    (void)state;
    ck_expect(S("\r\n"), 0, 0, H1_ERROR, NULL, "bad_chunk_size", 0);
    ck_expect(S("g\r\n"), 0, 0, H1_ERROR, NULL, "bad_chunk_size", 0);
    ck_expect(S("-5\r\n"), 0, 0, H1_ERROR, NULL, "bad_chunk_size", 0);
    ck_expect(S("+5\r\n"), 0, 0, H1_ERROR, NULL, "bad_chunk_size", 0);
    ck_expect(S("0x5\r\n"), 0, 0, H1_ERROR, NULL, "bad_chunk_size", 0);
    ck_expect(S(" 5\r\n"), 0, 0, H1_ERROR, NULL, "bad_chunk_size", 0);
    ck_expect(S("5 \r\nhello\r\n"), 0, 0, H1_ERROR, NULL, "bad_chunk_ext", 0);
    ck_expect(S("5\nhello\r\n"), 0, 0, H1_ERROR, NULL, "bare_lf", 0);
    ck_expect(S("5\rhello\r\n"), 0, 0, H1_ERROR, NULL, "bare_cr", 0);
    ck_expect(S("00000000000000001\r\nx\r\n"), 0, 0, H1_ERROR, NULL, "chunk_size_overflow", 0);
    ck_expect(S("4000000000000001\r\n"), 0, 0, H1_ERROR, NULL, "chunk_size_overflow", 0);
    ck_expect(S("FFFFFFFFFFFFFFFF\r\n"), 0, 0, H1_ERROR, NULL, "chunk_size_overflow", 0);
    ck_expect(S("10000000000000000\r\n"), 0, 0, H1_ERROR, NULL, "chunk_size_overflow", 0);
    ck_expect(S("5\r\nhelloX\r\n0\r\n\r\n"), 0, 0, H1_ERROR, NULL, "bad_chunk_end", 0);
    ck_expect(S("5\r\nhello\n0\r\n\r\n"), 0, 0, H1_ERROR, NULL, "bare_lf", 0);
    ck_expect(S("5\r\nhello\r0\r\n\r\n"), 0, 0, H1_ERROR, NULL, "bare_cr", 0);
    ck_expect(S("3\r\nhello\r\n0\r\n\r\n"), 0, 0, H1_ERROR, NULL, "bad_chunk_end", 0);
    /* Extensions. */
    ck_expect(S("5;\r\nhello\r\n"), 0, 0, H1_ERROR, NULL, "bad_chunk_ext", 0);
    ck_expect(S("5;=x\r\nhello\r\n"), 0, 0, H1_ERROR, NULL, "bad_chunk_ext", 0);
    ck_expect(S("5;a=\r\nhello\r\n"), 0, 0, H1_ERROR, NULL, "bad_chunk_ext", 0);
    ck_expect(S("5;a b\r\nhello\r\n"), 0, 0, H1_ERROR, NULL, "bad_chunk_ext", 0);
    ck_expect(S("5;a=b c\r\nhello\r\n"), 0, 0, H1_ERROR, NULL, "bad_chunk_ext", 0);
    ck_expect(S("5;a=b \r\nhello\r\n"), 0, 0, H1_ERROR, NULL, "bad_chunk_ext", 0);
    ck_expect(S("5;a=\"x\r\nhello\r\n"), 0, 0, H1_ERROR, NULL, "bad_chunk_ext", 0);
    ck_expect(S("5;a=\"x\"y\r\nhello\r\n"), 0, 0, H1_ERROR, NULL, "bad_chunk_ext", 0);
    ck_expect(S("5;a=x\0\r\nhello\r\n"), 0, 0, H1_ERROR, NULL, "bad_chunk_ext", 0);
    ck_expect(S("5;a\nhello\r\n"), 0, 0, H1_ERROR, NULL, "bare_lf", 0);
    /* Trailers. */
    ck_expect(S("0\r\nX : v\r\n\r\n"), 0, 0, H1_ERROR, NULL, "bad_trailer", 0);
    ck_expect(S("0\r\n: v\r\n\r\n"), 0, 0, H1_ERROR, NULL, "bad_trailer", 0);
    ck_expect(S("0\r\nX: v\r\n w\r\n\r\n"), 0, 0, H1_ERROR, NULL, "obs_fold", 0);
    ck_expect(S("0\r\nX: \x01\r\n\r\n"), 0, 0, H1_ERROR, NULL, "bad_trailer", 0);
    ck_expect(S("0\r\nX: v\n\r\n"), 0, 0, H1_ERROR, NULL, "bare_lf", 0);
    ck_expect(S("0\r\nX: v\rw\r\n\r\n"), 0, 0, H1_ERROR, NULL, "bare_cr", 0);
    ck_expect(S("0\r\n\r\r"), 0, 0, H1_ERROR, NULL, "bare_cr", 0);
    ck_expect(S("0\r\n\n"), 0, 0, H1_ERROR, NULL, "bare_lf", 0);
    /* Limits. */
    ck_expect(S("5;abcdefgh\r\nhello\r\n0\r\n\r\n"), 8, 0, H1_ERROR, NULL, "chunk_line_too_long",
              0);
    ck_expect(S("5;abc\r\nhello\r\n0\r\n\r\n"), 8, 0, H1_OK, "hello", NULL,
              strlen("5;abc\r\nhello\r\n0\r\n\r\n"));
    ck_expect(S("0\r\nX-Long: 0123456789\r\n\r\n"), 0, 16, H1_ERROR, NULL, "trailers_too_large", 0);
    ck_expect(S("0\r\nX: 01\r\n\r\n"), 0, 9, H1_OK, "", NULL, strlen("0\r\nX: 01\r\n\r\n"));
}

/* Helpers. */

static void test_helpers(void **state)
{
    (void)state;
    assert_true(h1_token_eq("Content-LENGTH", 14, "content-length"));
    assert_false(h1_token_eq("Content-Length", 13, "content-length"));
    assert_false(h1_token_eq("content-lengthx", 15, "content-length"));

    assert_true(h1_is_hop_by_hop("Connection", 10));
    assert_true(h1_is_hop_by_hop("KEEP-ALIVE", 10));
    assert_true(h1_is_hop_by_hop("proxy-connection", 16));
    assert_true(h1_is_hop_by_hop("TE", 2));
    assert_true(h1_is_hop_by_hop("Trailer", 7));
    assert_true(h1_is_hop_by_hop("transfer-encoding", 17));
    assert_true(h1_is_hop_by_hop("Upgrade", 7));
    assert_false(h1_is_hop_by_hop("Trailers", 8));
    assert_false(h1_is_hop_by_hop("Host", 4));

    h1_header_t h[3] = {
        {"Connection", 10, "keep-alive, X-Foo", 17, H1H_CONNECTION},
        {"X-Bar", 5, "close", 5, H1H_OTHER},
        {"connection", 10, " ,x-bar ,", 9, H1H_CONNECTION},
    };
    assert_true(h1_connection_lists(h, 3, "x-foo", 5));
    assert_true(h1_connection_lists(h, 3, "X-BAR", 5));
    assert_true(h1_connection_lists(h, 3, "Keep-Alive", 10));
    assert_false(h1_connection_lists(h, 3, "close", 5));
    assert_false(h1_connection_lists(h, 3, "x-fo", 4));
    assert_false(h1_connection_lists(h, 0, "x-foo", 5));

    assert_true(h1_valid_header_name("X-Request-Id", 12));
    assert_true(h1_valid_header_name("!#$%&'*+-.^_`|~", 15));
    assert_false(h1_valid_header_name("", 0));
    assert_false(h1_valid_header_name("X Y", 3));
    assert_false(h1_valid_header_name("X:", 2));
    assert_false(h1_valid_header_name("X\0", 2));

    assert_true(h1_valid_header_value("", 0));
    assert_true(h1_valid_header_value("a b\tc", 5));
    assert_true(h1_valid_header_value("caf\xc3\xa9", 5));
    assert_false(h1_valid_header_value(" a", 2));
    assert_false(h1_valid_header_value("a\t", 2));
    assert_false(h1_valid_header_value("a\r\nX: y", 7));
    assert_false(h1_valid_header_value("a\0", 2));
    assert_false(h1_valid_header_value("a\x7f", 2));
}

/* Every name the core acts on is classified once, whatever its case, and
 * names that differ by one byte or one length are not. */
static void test_classify(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        h1_hdr_kind_t kind;
    } cases[] = {
        {"Connection", H1H_CONNECTION},
        {"KEEP-ALIVE", H1H_KEEP_ALIVE},
        {"proxy-connection", H1H_PROXY_CONNECTION},
        {"te", H1H_TE},
        {"Trailer", H1H_TRAILER},
        {"Transfer-Encoding", H1H_TRANSFER_ENCODING},
        {"upgrade", H1H_UPGRADE},
        {"Content-Length", H1H_CONTENT_LENGTH},
        {"expect", H1H_EXPECT},
        {"HOST", H1H_HOST},
        {"X-Forwarded-For", H1H_X_FORWARDED_FOR},
        {"x-forwarded-PROTO", H1H_X_FORWARDED_PROTO},
        {"Via", H1H_VIA},
        {"X-Request-Id", H1H_X_REQUEST_ID},
        {"Trailers", H1H_OTHER},
        {"hosts", H1H_OTHER},
        {"x-forwarded-fox", H1H_OTHER},
        {"x-forwarded-prot", H1H_OTHER},
        {"content-lengtH ", H1H_OTHER},
        {"t", H1H_OTHER},
        {"", H1H_OTHER},
        {"x-request-ie", H1H_OTHER},
        {"vie", H1H_OTHER},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        h1_hdr_kind_t k = h1_classify(cases[i].name, strlen(cases[i].name));
        if (k != cases[i].kind) {
            print_error("%s: kind %d, want %d\n", cases[i].name, k, cases[i].kind);
            fail();
        }
        assert_int_equal(h1_is_hop_by_hop(cases[i].name, strlen(cases[i].name)),
                         h1_kind_is_hop(cases[i].kind));
    }
    /* tchar, byte by byte (RFC 9110 5.6.2) */
    for (int c = 0; c < 256; c++) {
        char b = (char)c;
        bool want = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    (c && strchr("!#$%&'*+-.^_`|~", c) != NULL);
        assert_int_equal(h1_valid_header_name(&b, 1), want);
    }
    /* Every byte value at every position of a value long enough for the
     * word-at-a-time check: accepted exactly when it is a field char. */
    for (int c = 0; c < 256; c++) {
        for (size_t at = 0; at < 18; at++) {
            static const char tmpl[] = "GET / HTTP/1.1\r\nHost: a\r\nX: abcdefghijklmnopqr\r\n\r\n";
            const size_t val = sizeof("GET / HTTP/1.1\r\nHost: a\r\nX: ") - 1;
            char raw[sizeof(tmpl)];
            memcpy(raw, tmpl, sizeof(tmpl));
            if (c == '\r' || c == '\n' || ((c == ' ' || c == '\t') && (at == 0 || at == 17)))
                continue; /* line ends and edge whitespace are other rules */
            raw[val + at] = (char)c;
            h1_request_t rq;
            int st = 0;
            const char *why = NULL;
            h1_result_t r = parse_req(raw, sizeof(tmpl) - 1, NULL, &rq, &st, &why);
            bool want = (c >= 0x20 && c != 0x7f) || c == '\t';
            if ((r == H1_OK) != want) {
                print_error("byte 0x%02x at %zu: result %d (%s)\n", c, at, r, why ? why : "");
                fail();
            }
        }
    }
    /* the parser stores the kind with each field */
    h1_request_t req;
    const char raw[] = "POST / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.2.3.4\r\n"
                       "content-length: 0\r\nX-Other: v\r\n\r\n";
    expect_ok(S(raw), &req);
    assert_int_equal(req.nheaders, 4);
    assert_int_equal(req.headers[0].kind, H1H_HOST);
    assert_int_equal(req.headers[1].kind, H1H_X_FORWARDED_FOR);
    assert_int_equal(req.headers[2].kind, H1H_CONTENT_LENGTH);
    assert_int_equal(req.headers[3].kind, H1H_OTHER);

    /* Connection naming only itself, close and hop-by-hop fields needs no
     * per-field check; naming anything else does. */
    h1_header_t c[2] = {
        {"Connection", 10, "keep-alive, Close, TE, upgrade", 30, H1H_CONNECTION},
        {"X-A", 3, "x-b", 3, H1H_OTHER},
    };
    assert_false(h1_connection_names_others(c, 2));
    c[1] = (h1_header_t){"connection", 10, "close, x-b", 10, H1H_CONNECTION};
    assert_true(h1_connection_names_others(c, 2));
    c[1].kind = H1H_OTHER; /* only classified Connection fields count */
    assert_false(h1_connection_names_others(c, 2));

    /* The gathered set: empty when nothing extra is named; up to 8 fields
     * kept, past them the whole head is consulted. */
    h1_conn_names_t cn;
    h1_conn_names_init(&cn, c, 2);
    assert_int_equal(cn.n, 0);
    assert_false(h1_conn_names_has(&cn, "x-b", 3));
    h1_header_t many[10];
    for (size_t i = 0; i < 10; i++)
        many[i] = (h1_header_t){"Connection", 10, i == 9 ? "x-nine" : "x-b", i == 9 ? 6 : 3,
                                H1H_CONNECTION};
    h1_conn_names_init(&cn, many, 3);
    assert_int_equal(cn.n, 3);
    assert_true(h1_conn_names_has(&cn, "X-B", 3));
    assert_false(h1_conn_names_has(&cn, "x-nine", 6));
    h1_conn_names_init(&cn, many, 10);
    assert_ptr_equal(cn.v, many);
    assert_true(h1_conn_names_has(&cn, "x-nine", 6));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_basic),
        cmocka_unit_test(test_post_bodies),
        cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_incomplete_prefixes),
        cmocka_unit_test(test_leading_crlf),
        cmocka_unit_test(test_request_line_rejects),
        cmocka_unit_test(test_target_forms_ok),
        cmocka_unit_test(test_line_endings),
        cmocka_unit_test(test_header_rejects),
        cmocka_unit_test(test_header_values),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_content_length),
        cmocka_unit_test(test_transfer_encoding),
        cmocka_unit_test(test_host),
        cmocka_unit_test(test_keep_alive),
        cmocka_unit_test(test_expect_upgrade),
        cmocka_unit_test(test_response_bodies),
        cmocka_unit_test(test_response_status_line),
        cmocka_unit_test(test_response_limits),
        cmocka_unit_test(test_chunked_ok),
        cmocka_unit_test(test_chunked_api),
        cmocka_unit_test(test_chunked_errors),
        cmocka_unit_test(test_helpers),
        cmocka_unit_test(test_classify),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
