/* fuzz_h1: libFuzzer target for core/h1.c.
 *
 * Runs the request parser, the response parser and the chunked decoder on
 * the input and aborts when an invariant breaks:
 *  - views (method, target, headers, host, reason) lie inside the head;
 *  - head_len <= len and the head ends in CRLF CRLF; nheaders <= the cap;
 *  - every stored header passes h1_valid_header_name/value;
 *  - a prefix never decides differently from the whole input (a prefix that
 *    is OK or an ERROR gives the same answer on the whole input);
 *  - the chunked decoder gives the same data, end and error whether the
 *    input comes at once, split at a data-derived point, or byte by byte.
 *
 * Build: clang -g -O1 -fsanitize=fuzzer,address,undefined -Icore
 *        core/h1.c tests/fuzz/fuzz_h1.c
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h1.h"

#include "fuzz_check.h"

#define MAXH 24

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool inside(const char *buf, size_t len, const char *p, size_t n)
{
    return p >= buf && n <= len && (size_t)(p - buf) <= len - n;
}

static void check_headers(const char *buf, size_t head_len, const h1_header_t *h, size_t n,
                          size_t cap)
{
    CHECK(n <= cap);
    for (size_t i = 0; i < n; i++) {
        CHECK(inside(buf, head_len, h[i].name, h[i].name_len));
        CHECK(inside(buf, head_len, h[i].value, h[i].value_len));
        CHECK(h1_valid_header_name(h[i].name, h[i].name_len));
        CHECK(h1_valid_header_value(h[i].value, h[i].value_len));
        (void)h1_is_hop_by_hop(h[i].name, h[i].name_len);
    }
    (void)h1_connection_lists(h, n, "x-fuzz", 6);
}

static void check_head_end(const char *buf, size_t head_len)
{
    CHECK(head_len >= 4);
    CHECK(memcmp(buf + head_len - 4, "\r\n\r\n", 4) == 0);
}

/* Requests. */

struct req_run {
    h1_result_t r;
    int status;
    const char *reason;
    h1_request_t req;
};

static void run_request(const char *buf, size_t len, const h1_limits_t *lim, h1_header_t *hdrs,
                        size_t cap, struct req_run *o)
{
    o->status = -1;
    o->reason = NULL;
    o->r = h1_parse_request(buf, len, lim, hdrs, cap, &o->req, &o->status, &o->reason);
    const h1_request_t *q = &o->req;
    CHECK(q->headers == hdrs);
    switch (o->r) {
    case H1_OK:
        CHECK(q->head_len > 0 && q->head_len <= len);
        if (lim && lim->max_head)
            CHECK(q->head_len <= lim->max_head);
        check_head_end(buf, q->head_len);
        CHECK(inside(buf, q->head_len, q->method, q->method_len) && q->method_len > 0);
        CHECK(inside(buf, q->head_len, q->target, q->target_len) && q->target_len > 0);
        CHECK(q->version_minor == 0 || q->version_minor == 1);
        check_headers(buf, q->head_len, q->headers, q->nheaders, cap);
        if (lim && lim->max_headers)
            CHECK(q->nheaders <= lim->max_headers);
        if (q->version_minor == 1)
            CHECK(q->host != NULL);
        if (q->host)
            CHECK(inside(buf, q->head_len, q->host, q->host_len));
        CHECK(q->body == H1_BODY_NONE || q->body == H1_BODY_LENGTH || q->body == H1_BODY_CHUNKED);
        if (q->body == H1_BODY_LENGTH)
            CHECK(q->content_length > 0 && q->content_length <= ((uint64_t)1 << 62));
        if (q->body == H1_BODY_CHUNKED)
            CHECK(q->version_minor == 1);
        if (q->upgrade || q->expect_continue)
            CHECK(q->version_minor == 1);
        CHECK(o->reason == NULL);
        break;
    case H1_INCOMPLETE:
        CHECK(q->head_len == 0);
        if (lim && lim->max_head)
            CHECK(len < lim->max_head);
        break;
    case H1_ERROR:
        CHECK(o->reason != NULL);
        CHECK(o->status == 400 || o->status == 414 || o->status == 431 || o->status == 501 ||
              o->status == 505);
        break;
    default:
        CHECK(!"bad result");
    }
}

static void fuzz_request(const char *buf, size_t size, size_t split, const h1_limits_t *lim,
                         size_t cap)
{
    h1_header_t hdrs[MAXH];
    struct req_run full, part;

    run_request(buf, size, lim, hdrs, cap, &full);
    /* A prefix that decides must decide like the whole input. */
    run_request(buf, split, lim, hdrs, cap, &part);
    if (part.r == H1_OK) {
        CHECK(full.r == H1_OK && full.req.head_len == part.req.head_len);
    } else if (part.r == H1_ERROR) {
        CHECK(full.r == H1_ERROR && full.status == part.status &&
              strcmp(full.reason, part.reason) == 0);
    }
    run_request(buf, size, lim, hdrs, cap, &full);
    if (full.r == H1_OK) {
        size_t head_len = full.req.head_len;
        run_request(buf, head_len - 1, lim, hdrs, cap, &part);
        CHECK(part.r == H1_INCOMPLETE);
        run_request(buf, head_len, lim, hdrs, cap, &part);
        CHECK(part.r == H1_OK && part.req.head_len == head_len);
    }
}

/* Responses. */

struct resp_run {
    h1_result_t r;
    const char *reason;
    h1_response_t resp;
};

static void run_response(const char *buf, size_t len, const h1_limits_t *lim, bool head,
                         h1_header_t *hdrs, size_t cap, struct resp_run *o)
{
    o->reason = NULL;
    o->r = h1_parse_response(buf, len, lim, head, hdrs, cap, &o->resp, &o->reason);
    const h1_response_t *p = &o->resp;
    switch (o->r) {
    case H1_OK:
        CHECK(p->head_len > 0 && p->head_len <= len);
        check_head_end(buf, p->head_len);
        CHECK(p->status >= 100 && p->status <= 599);
        CHECK(p->version_minor == 0 || p->version_minor == 1);
        CHECK(p->reason_len == 0 || inside(buf, p->head_len, p->reason, p->reason_len));
        check_headers(buf, p->head_len, p->headers, p->nheaders, cap);
        if (head || p->status < 200 || p->status == 204 || p->status == 304)
            CHECK(p->body == H1_BODY_NONE);
        if (p->body == H1_BODY_EOF)
            CHECK(!p->keep_alive);
        if (p->body == H1_BODY_LENGTH)
            CHECK(p->content_length > 0);
        CHECK(o->reason == NULL);
        break;
    case H1_INCOMPLETE:
        CHECK(p->head_len == 0);
        break;
    case H1_ERROR:
        CHECK(o->reason != NULL);
        break;
    default:
        CHECK(!"bad result");
    }
}

static void fuzz_response(const char *buf, size_t size, size_t split, const h1_limits_t *lim,
                          bool head)
{
    h1_header_t hdrs[MAXH];
    struct resp_run full, part;

    run_response(buf, size, lim, head, hdrs, MAXH, &full);
    run_response(buf, split, lim, head, hdrs, MAXH, &part);
    if (part.r == H1_OK)
        CHECK(full.r == H1_OK && full.resp.head_len == part.resp.head_len);
    else if (part.r == H1_ERROR)
        CHECK(full.r == H1_ERROR && strcmp(full.reason, part.reason) == 0);
    if (full.r == H1_OK) {
        run_response(buf, full.resp.head_len - 1, lim, head, hdrs, MAXH, &part);
        CHECK(part.r == H1_INCOMPLETE);
    }
}

/* Chunked. */

struct ck_run {
    int end; /* 0 incomplete, 1 done, -1 error */
    const char *reason;
    size_t consumed;
    size_t data_bytes;
    uint32_t data_hash;
};

/* ck_feed plays the caller: the input arrives in pieces of |step| bytes (the
 * first piece |first| bytes), framing goes to h1_chunked_parse, data is
 * taken here. */
static void ck_feed(const char *buf, size_t size, size_t first, size_t step, size_t max_line,
                    size_t max_trailers, struct ck_run *o)
{
    h1_chunked_t st;
    size_t pos = 0, avail = 0;

    memset(o, 0, sizeof(*o));
    o->data_hash = 2166136261u;
    h1_chunked_init(&st);
    st.max_line = max_line;
    st.max_trailers = max_trailers;
    for (bool first_piece = true;; first_piece = false) {
        size_t add = first_piece ? first : step;
        avail = size - avail < add ? size : avail + add;
        while (!h1_chunked_done(&st)) {
            if (h1_chunked_in_data(&st)) {
                uint64_t n = h1_chunked_data_left(&st);
                CHECK(n > 0);
                if (n > avail - pos)
                    n = avail - pos;
                if (n == 0)
                    break;
                for (size_t i = 0; i < n; i++)
                    o->data_hash = (o->data_hash ^ (uint8_t)buf[pos + i]) * 16777619u;
                o->data_bytes += n;
                pos += n;
                h1_chunked_data_consumed(&st, n);
                continue;
            }
            size_t used = SIZE_MAX;
            const char *why = NULL;
            h1_result_t r = h1_chunked_parse(&st, buf + pos, avail - pos, &used, &why);
            CHECK(used <= avail - pos);
            pos += used;
            if (r == H1_ERROR) {
                CHECK(why != NULL);
                o->end = -1;
                o->reason = why;
                o->consumed = pos;
                CHECK(h1_chunked_parse(&st, buf + pos, avail - pos, &used, &why) == H1_ERROR);
                return;
            }
            if (r == H1_INCOMPLETE) {
                CHECK(pos == avail);
                break;
            }
            CHECK(r == H1_OK);
            CHECK(h1_chunked_in_data(&st) || h1_chunked_done(&st));
        }
        if (h1_chunked_done(&st)) {
            o->end = 1;
            break;
        }
        if (avail == size)
            break;
    }
    o->consumed = pos;
}

static void ck_same(const struct ck_run *a, const struct ck_run *b)
{
    CHECK(a->end == b->end);
    CHECK(a->data_bytes == b->data_bytes && a->data_hash == b->data_hash);
    CHECK(a->consumed == b->consumed);
    if (a->end == -1)
        CHECK(strcmp(a->reason, b->reason) == 0);
}

static void fuzz_chunked(const char *buf, size_t size, size_t split, size_t max_line,
                         size_t max_trailers)
{
    struct ck_run once, two, bytes;
    ck_feed(buf, size, size, size, max_line, max_trailers, &once);
    ck_feed(buf, size, split, size, max_line, max_trailers, &two);
    ck_same(&once, &two);
    if (size <= 4096) {
        ck_feed(buf, size, 1, 1, max_line, max_trailers, &bytes);
        ck_same(&once, &bytes);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    /* Data-derived choices, from the last bytes so the parsers still see
     * the input from its first byte. */
    size_t split = 0;
    uint8_t sel = 0;
    if (size > 0) {
        sel = data[size - 1];
        split = size >= 2 ? ((size_t)data[size - 2] * 256 + sel) % (size + 1) : 0;
    }

    static const h1_limits_t small = {.max_request_line = 40, .max_head = 200, .max_headers = 6};
    /* Head limit below the line limit: 431 inside the start line. */
    static const h1_limits_t short_head = {.max_head = 96};
    fuzz_request(buf, size, split, NULL, MAXH);
    fuzz_request(buf, size, split, &small, MAXH);
    fuzz_request(buf, size, split, &short_head, sel % 4);
    fuzz_response(buf, size, split, &short_head, sel & 1);
    fuzz_response(buf, size, split, &small, (sel >> 1) & 1);
    fuzz_chunked(buf, size, split, 0, 0);
    fuzz_chunked(buf, size, split, 8 + sel % 24, 16 + sel % 64);
    return 0;
}
