/* Unit tests for core/h1body.c: stripping HTTP/1.1 body framing from an
 * evbuffer (reader) and framing data for the peer (writer).
 *
 * The reader is driven the way a codec drives it: bytes arrive in pieces
 * (all at once, one at a time, or in pseudo-random splits from a fixed
 * seed), next/took alternate, and the caller may take fewer bytes than
 * offered. Every run checks that the data reassembled is the body and that
 * what follows the body is left in the buffer for the next message. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "h1body.h"

/* S gives a literal and its length without the terminating NUL. */
#define S(lit) (lit), (sizeof(lit) - 1)

/* A small deterministic PRNG (xorshift32), so every run sees the same
 * splits. */
static uint32_t rnd(uint32_t *s)
{
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *s = x;
}

/* How drive() feeds the input and takes data. */
typedef struct feed {
    size_t piece;  /* 0: all at once; 1: byte by byte; else random 1..piece */
    size_t take;   /* 0: all offered; SIZE_MAX: random 1..n; else at most this */
    uint32_t seed; /* for the random choices */
} feed_t;

typedef struct run {
    h1body_res_t res;   /* H1B_END, H1B_ERROR, or H1B_MORE when input ran out */
    const char *reason; /* on H1B_ERROR */
    struct evbuffer *data;
    size_t datas; /* number of H1B_DATA results */
} run_t;

/* drive reads a body of |kind|/|length| from |in|, fed into |src| as |f|
 * says. On H1B_END the input not yet fed is appended to |src|, so that
 * |src| then holds exactly what follows the body. */
static void drive(h1body_rd_t *r, struct evbuffer *src, const char *in, size_t len, feed_t f,
                  run_t *o)
{
    size_t fed = 0;
    uint32_t s = f.seed ? f.seed : 1;

    o->reason = NULL;
    o->datas = 0;
    o->data = evbuffer_new();
    assert_non_null(o->data);
    for (size_t guard = 0;; guard++) {
        assert_true(guard < 10 * len + 100);
        size_t n = 12345;
        const char *why = NULL;
        size_t before = evbuffer_get_length(src);
        h1body_res_t res = h1body_rd_next(r, src, &n, &why);
        switch (res) {
        case H1B_DATA: {
            assert_true(n > 0);
            assert_true(n <= evbuffer_get_length(src));
            assert_true(r->pending);
            size_t t = n;
            if (f.take == SIZE_MAX)
                t = 1 + rnd(&s) % n;
            else if (f.take && t > f.take)
                t = f.take;
            assert_int_equal(evbuffer_remove_buffer(src, o->data, t), t);
            h1body_rd_took(r, t);
            assert_false(r->pending);
            o->datas++;
            break;
        }
        case H1B_MORE: {
            assert_int_equal(n, 0);
            /* No data at the front: all framing seen so far was consumed. */
            assert_int_equal(evbuffer_get_length(src), 0);
            if (fed == len) {
                o->res = H1B_MORE;
                return;
            }
            size_t p = len - fed;
            if (f.piece == 1)
                p = 1;
            else if (f.piece > 1)
                p = 1 + rnd(&s) % f.piece;
            if (p > len - fed)
                p = len - fed;
            evbuffer_add(src, in + fed, p);
            fed += p;
            break;
        }
        case H1B_END:
            assert_int_equal(n, 0);
            assert_true(evbuffer_get_length(src) <= before);
            if (r->kind != H1_BODY_EOF)
                assert_true(h1body_rd_done(r));
            evbuffer_add(src, in + fed, len - fed);
            o->res = H1B_END;
            return;
        case H1B_ERROR:
            assert_non_null(why);
            o->res = H1B_ERROR;
            o->reason = why;
            return;
        default:
            fail_msg("bad result %d", (int)res);
        }
    }
}

static void assert_buf(struct evbuffer *b, const char *want, size_t len)
{
    assert_int_equal(evbuffer_get_length(b), len);
    if (len)
        assert_memory_equal(evbuffer_pullup(b, -1), want, len);
}

/* read_expect reads |in| as a body of |kind| with |f| and checks the data,
 * the result and the bytes left over. */
static void read_expect(h1_body_t kind, uint64_t length, const char *in, size_t len, feed_t f,
                        h1body_res_t want_res, const char *want_data, size_t want_len,
                        const char *want_rest, size_t rest_len)
{
    h1body_rd_t r;
    run_t o;
    struct evbuffer *src = evbuffer_new();
    assert_non_null(src);
    h1body_rd_init(&r, kind, length);
    drive(&r, src, in, len, f, &o);
    assert_int_equal(o.res, want_res);
    assert_buf(o.data, want_data, want_len);
    assert_int_equal(r.taken, want_len);
    if (want_res == H1B_END)
        assert_buf(src, want_rest, rest_len);
    evbuffer_free(o.data);
    h1body_rd_release(&r);
    evbuffer_free(src);
}

/* read_all_ways runs read_expect all at once, byte by byte, and with 64
 * random feeds (some taking fewer bytes than offered). */
static void read_all_ways(h1_body_t kind, uint64_t length, const char *in, size_t len,
                          h1body_res_t want_res, const char *want_data, size_t want_len,
                          const char *want_rest, size_t rest_len)
{
    feed_t ways[] = {{0, 0, 0}, {1, 0, 0}, {0, 1, 0}, {1, 1, 0}, {0, 3, 0}, {0, SIZE_MAX, 7}};
    for (size_t i = 0; i < sizeof(ways) / sizeof(ways[0]); i++)
        read_expect(kind, length, in, len, ways[i], want_res, want_data, want_len, want_rest,
                    rest_len);
    for (uint32_t seed = 1; seed <= 64; seed++) {
        feed_t f = {1 + seed % 13, seed % 3 ? 0 : SIZE_MAX, seed * 2654435761u};
        read_expect(kind, length, in, len, f, want_res, want_data, want_len, want_rest, rest_len);
    }
}

/* Content-Length. */

static void test_length_all_at_once(void **state)
{
    (void)state;
    struct evbuffer *src = evbuffer_new();
    h1body_rd_t r;
    size_t n = 99;
    const char *why = NULL;

    evbuffer_add(src, S("hello worldGET / HTTP/1.1\r\n"));
    h1body_rd_init(&r, H1_BODY_LENGTH, 11);
    assert_false(h1body_rd_done(&r));
    assert_int_equal(h1body_rd_next(&r, src, &n, &why), H1B_DATA);
    assert_int_equal(n, 11);
    evbuffer_drain(src, n);
    h1body_rd_took(&r, n);
    assert_true(h1body_rd_done(&r));
    assert_int_equal(h1body_rd_next(&r, src, &n, &why), H1B_END);
    assert_int_equal(n, 0);
    assert_buf(src, S("GET / HTTP/1.1\r\n"));
    /* END again: the next message is not touched. */
    assert_int_equal(h1body_rd_next(&r, src, &n, &why), H1B_END);
    assert_buf(src, S("GET / HTTP/1.1\r\n"));
    h1body_rd_release(&r);
    evbuffer_free(src);
}

static void test_length_byte_by_byte(void **state)
{
    (void)state;
    feed_t f = {1, 0, 0};
    read_expect(H1_BODY_LENGTH, 11, S("hello worldNEXT"), f, H1B_END, S("hello world"), S("NEXT"));
    read_all_ways(H1_BODY_LENGTH, 11, S("hello worldNEXT"), H1B_END, S("hello world"), S("NEXT"));
    /* Body exactly the input: nothing left over. */
    read_all_ways(H1_BODY_LENGTH, 5, S("hello"), H1B_END, S("hello"), S(""));
    /* Input ends early: MORE with what there was. */
    read_all_ways(H1_BODY_LENGTH, 20, S("hello"), H1B_MORE, S("hello"), S(""));
}

static void test_length_partial_took(void **state)
{
    (void)state;
    struct evbuffer *src = evbuffer_new();
    struct evbuffer *out = evbuffer_new();
    h1body_rd_t r;
    size_t n = 0;
    const char *why = NULL;

    evbuffer_add(src, S("0123456789XY"));
    h1body_rd_init(&r, H1_BODY_LENGTH, 10);
    assert_int_equal(h1body_rd_next(&r, src, &n, &why), H1B_DATA);
    assert_int_equal(n, 10);
    evbuffer_remove_buffer(src, out, 4);
    h1body_rd_took(&r, 4);
    assert_false(h1body_rd_done(&r));
    assert_int_equal(r.left, 6);
    assert_int_equal(h1body_rd_next(&r, src, &n, &why), H1B_DATA);
    assert_int_equal(n, 6); /* never past the body, though 8 bytes are there */
    evbuffer_remove_buffer(src, out, 1);
    h1body_rd_took(&r, 1);
    assert_int_equal(h1body_rd_next(&r, src, &n, &why), H1B_DATA);
    assert_int_equal(n, 5);
    /* Taking nothing is allowed: the same data is offered again. */
    h1body_rd_took(&r, 0);
    assert_int_equal(h1body_rd_next(&r, src, &n, &why), H1B_DATA);
    assert_int_equal(n, 5);
    evbuffer_remove_buffer(src, out, 5);
    h1body_rd_took(&r, 5);
    assert_int_equal(h1body_rd_next(&r, src, &n, &why), H1B_END);
    assert_int_equal(r.taken, 10);
    assert_buf(out, S("0123456789"));
    assert_buf(src, S("XY"));
    h1body_rd_release(&r);
    evbuffer_free(src);
    evbuffer_free(out);
}

static void test_length_zero(void **state)
{
    (void)state;
    struct evbuffer *src = evbuffer_new();
    h1body_rd_t r;
    size_t n = 99;
    const char *why = NULL;

    h1body_rd_init(&r, H1_BODY_LENGTH, 0);
    assert_true(h1body_rd_done(&r));
    /* Empty buffer: END, not MORE. */
    assert_int_equal(h1body_rd_next(&r, src, &n, &why), H1B_END);
    assert_int_equal(n, 0);
    evbuffer_add(src, S("GET / HTTP/1.1\r\n"));
    assert_int_equal(h1body_rd_next(&r, src, &n, &why), H1B_END);
    assert_int_equal(n, 0);
    assert_buf(src, S("GET / HTTP/1.1\r\n"));
    h1body_rd_release(&r);
    evbuffer_free(src);
}

static void test_length_large(void **state)
{
    (void)state;
    /* Larger than one evbuffer chain and than the reader's framing look. */
    size_t len = 70000;
    char *in = malloc(len + 4);
    uint32_t s = 99;
    for (size_t i = 0; i < len; i++)
        in[i] = (char)rnd(&s);
    memcpy(in + len, "NEXT", 4);
    for (uint32_t seed = 1; seed <= 8; seed++) {
        feed_t f = {1 + seed * 3000, seed & 1 ? 0 : SIZE_MAX, seed};
        read_expect(H1_BODY_LENGTH, len, in, len + 4, f, H1B_END, in, len, S("NEXT"));
    }
    free(in);
}

/* Chunked. */

static void test_chunked_basic(void **state)
{
    (void)state;
    read_all_ways(H1_BODY_CHUNKED, 0, S("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nNEXT"), H1B_END,
                  S("hello world"), S("NEXT"));
    /* Upper- and lower-case hex, leading zeros. */
    read_all_ways(H1_BODY_CHUNKED, 0,
                  S("a\r\n0123456789\r\nB\r\nabcdefghijk\r\n0003\r\nxyz\r\n000\r\n\r\n"), H1B_END,
                  S("0123456789abcdefghijkxyz"), S(""));
    /* Only the last chunk. */
    read_all_ways(H1_BODY_CHUNKED, 0, S("0\r\n\r\nGET / HTTP/1.1\r\n\r\n"), H1B_END, S(""),
                  S("GET / HTTP/1.1\r\n\r\n"));
    /* Data that looks like framing is data. */
    read_all_ways(H1_BODY_CHUNKED, 0, S("6\r\n0\r\n\r\n\n\r\n0\r\n\r\n"), H1B_END, S("0\r\n\r\n\n"),
                  S(""));
}

static void test_chunked_extensions_trailers(void **state)
{
    (void)state;
    read_all_ways(H1_BODY_CHUNKED, 0,
                  S("5;a=b\r\nhello\r\n6 ; name ; q=\"x \\\"y\\\" z\" ; t=tok\r\n world\r\n"
                    "0;last\r\nExpires: never\r\nX-Sum: abc def\r\n\r\nNEXT"),
                  H1B_END, S("hello world"), S("NEXT"));
    /* Trailers are dropped: nothing of them in the data or the rest. */
    read_all_ways(H1_BODY_CHUNKED, 0, S("3\r\nabc\r\n0\r\nA: 1\r\nB:\r\n\r\n"), H1B_END, S("abc"),
                  S(""));
}

static void test_chunked_incomplete(void **state)
{
    (void)state;
    /* Every proper prefix of a body is MORE, with the data so far. */
    static const char body[] = "5;x=y\r\nhello\r\n3\r\nabc\r\n0\r\nT: v\r\n\r\n";
    static const char data[] = "helloabc";
    size_t blen = sizeof(body) - 1;
    for (size_t cut = 0; cut < blen; cut++) {
        /* Data bytes in body[0..cut). */
        size_t d = 0;
        if (cut > 7)
            d += cut - 7 < 5 ? cut - 7 : 5;
        if (cut > 17)
            d += cut - 17 < 3 ? cut - 17 : 3;
        feed_t ways[] = {{0, 0, 0}, {1, 0, 0}, {0, 2, 0}};
        for (size_t i = 0; i < 3; i++)
            read_expect(H1_BODY_CHUNKED, 0, body, cut, ways[i], H1B_MORE, data, d, NULL, 0);
    }
    read_all_ways(H1_BODY_CHUNKED, 0, body, blen, H1B_END, S(data), S(""));
}

/* make_chunked frames |data| as chunks of pseudo-random sizes (some with
 * extensions, some with leading zeros), then trailers and |tail|. */
static char *make_chunked(const char *data, size_t len, uint32_t seed, const char *tail,
                          size_t *out_len)
{
    size_t cap = len * 32 + 4096; /* a 1-byte chunk takes at most 31 */
    char *out = malloc(cap);
    size_t o = 0, i = 0;
    uint32_t s = seed;
    assert_non_null(out);
    while (i < len) {
        size_t c = 1 + rnd(&s) % (rnd(&s) % 4 == 0 ? 20000 : 300);
        if (c > len - i)
            c = len - i;
        const char *ext = rnd(&s) % 3 == 0 ? ";ext=\"v\"" : "";
        o += (size_t)snprintf(out + o, cap - o, rnd(&s) & 1 ? "%s%zx%s\r\n" : "%s%zX%s\r\n",
                              rnd(&s) % 5 == 0 ? "00" : "", c, ext);
        memcpy(out + o, data + i, c);
        o += c;
        i += c;
        memcpy(out + o, "\r\n", 2);
        o += 2;
    }
    o += (size_t)snprintf(out + o, cap - o, "0\r\nX-Trailer: %u\r\n\r\n%s", (unsigned)seed, tail);
    *out_len = o;
    return out;
}

static void test_chunked_random(void **state)
{
    (void)state;
    size_t len = 60000;
    char *data = malloc(len);
    uint32_t s = 12345;
    for (size_t i = 0; i < len; i++)
        data[i] = (char)rnd(&s);
    for (uint32_t seed = 1; seed <= 24; seed++) {
        size_t dlen = seed % 4 == 0 ? len : 1 + rnd(&s) % 3000;
        size_t elen;
        char *enc = make_chunked(data, dlen, seed * 7919u, "NEXT", &elen);
        feed_t ways[] = {
            {0, 0, 0},
            {1 + seed * 97 % 5000, 0, seed},
            {1 + seed % 7, SIZE_MAX, seed},
            {20000, 5, seed},
        };
        for (size_t i = 0; i < sizeof(ways) / sizeof(ways[0]); i++)
            read_expect(H1_BODY_CHUNKED, 0, enc, elen, ways[i], H1B_END, data, dlen, S("NEXT"));
        if (elen < 4000) {
            feed_t bytes = {1, 0, 0};
            read_expect(H1_BODY_CHUNKED, 0, enc, elen, bytes, H1B_END, data, dlen, S("NEXT"));
        }
        free(enc);
    }
    free(data);
}

static void test_chunked_pipelined(void **state)
{
    (void)state;
    /* Two chunked bodies back to back in one buffer: each reader stops at
     * its final CRLF and the next starts where it stopped. */
    struct evbuffer *src = evbuffer_new();
    struct evbuffer *out = evbuffer_new();
    h1body_rd_t r;
    size_t n;
    const char *why = NULL;

    evbuffer_add(src, S("3\r\nabc\r\n0\r\n\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\nrest"));
    for (int k = 0; k < 2; k++) {
        if (k)
            h1body_rd_release(&r);
        h1body_rd_init(&r, H1_BODY_CHUNKED, 0);
        h1body_res_t res;
        while ((res = h1body_rd_next(&r, src, &n, &why)) == H1B_DATA) {
            evbuffer_remove_buffer(src, out, n);
            h1body_rd_took(&r, n);
        }
        assert_int_equal(res, H1B_END);
        assert_true(h1body_rd_done(&r));
    }
    assert_buf(out, S("abcde"));
    assert_buf(src, S("rest"));
    h1body_rd_release(&r);
    evbuffer_free(src);
    evbuffer_free(out);
}

static void test_chunked_errors(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        size_t len;
        const char *data; /* data returned before the error */
        const char *reason;
    } cases[] = {
        {S("z\r\nhello\r\n0\r\n\r\n"), "", "bad_chunk_size"},
        {S("\r\n"), "", "bad_chunk_size"},
        {S("-5\r\nhello\r\n0\r\n\r\n"), "", "bad_chunk_size"},
        {S("5x\r\nhello\r\n0\r\n\r\n"), "", "bad_chunk_size"},
        {S("5 \r\nhello\r\n0\r\n\r\n"), "", "bad_chunk_ext"},
        {S("5;\"\r\nhello\r\n0\r\n\r\n"), "", "bad_chunk_ext"},
        {S("11111111111111111\r\n"), "", "chunk_size_overflow"},
        {S("5\r\nhelloX\r\n0\r\n\r\n"), "hello", "bad_chunk_end"},
        {S("5\r\nhello0\r\n\r\n"), "hello", "bad_chunk_end"},
        {S("5\r\nhello\n0\r\n\r\n"), "hello", "bare_lf"},
        {S("5\nhello\r\n0\r\n\r\n"), "", "bare_lf"},
        {S("5\r\nhello\r\n0\n\r\n"), "hello", "bare_lf"},
        {S("5\r\nhello\r\n0\r\n\n"), "hello", "bare_lf"},
        {S("5\r\nhello\r\n0\r\nT: v\n\r\n"), "hello", "bare_lf"},
        {S("5\rhello\r\n0\r\n\r\n"), "", "bare_cr"},
        {S("5\r\nhello\r\n0\r\nbad trailer\r\n\r\n"), "hello", "bad_trailer"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        feed_t ways[] = {{0, 0, 0}, {1, 0, 0}, {3, SIZE_MAX, (uint32_t)i + 1}};
        for (size_t w = 0; w < 3; w++) {
            h1body_rd_t r;
            run_t o;
            struct evbuffer *src = evbuffer_new();
            h1body_rd_init(&r, H1_BODY_CHUNKED, 0);
            drive(&r, src, cases[i].in, cases[i].len, ways[w], &o);
            if (o.res != H1B_ERROR || strcmp(o.reason, cases[i].reason) != 0)
                fail_msg("case %zu way %zu: res %d reason %s, want %s", i, w, (int)o.res,
                         o.reason ? o.reason : "(null)", cases[i].reason);
            assert_buf(o.data, cases[i].data, strlen(cases[i].data));
            assert_false(h1body_rd_done(&r));
            /* Sticky: the next call is an error too, with a reason. */
            size_t n = 7;
            const char *why = NULL;
            assert_int_equal(h1body_rd_next(&r, src, &n, &why), H1B_ERROR);
            assert_non_null(why);
            evbuffer_free(o.data);
            h1body_rd_release(&r);
            evbuffer_free(src);
        }
    }
}

static void test_chunked_line_limit(void **state)
{
    (void)state;
    /* A size line longer than the reader looks at in one go is still an
     * error (the parser's line cap), not a hang. */
    size_t len = 40000;
    char *in = malloc(len);
    memcpy(in, "5;a=", 4);
    memset(in + 4, 'x', len - 4);
    feed_t ways[] = {{0, 0, 0}, {4096, 0, 3}};
    for (size_t w = 0; w < 2; w++) {
        h1body_rd_t r;
        run_t o;
        struct evbuffer *src = evbuffer_new();
        h1body_rd_init(&r, H1_BODY_CHUNKED, 0);
        drive(&r, src, in, len, ways[w], &o);
        assert_int_equal(o.res, H1B_ERROR);
        assert_string_equal(o.reason, "chunk_line_too_long");
        evbuffer_free(o.data);
        h1body_rd_release(&r);
        evbuffer_free(src);
    }
    free(in);
}

/* Close-delimited and no body. */

static void test_eof(void **state)
{
    (void)state;
    struct evbuffer *src = evbuffer_new();
    h1body_rd_t r;
    size_t n = 99;
    const char *why = NULL;

    h1body_rd_init(&r, H1_BODY_EOF, 12345); /* the length is ignored */
    assert_int_equal(h1body_rd_next(&r, src, &n, &why), H1B_MORE);
    assert_int_equal(n, 0);
    evbuffer_add(src, S("0\r\n\r\nabc"));
    assert_int_equal(h1body_rd_next(&r, src, &n, &why), H1B_DATA);
    assert_int_equal(n, 8); /* no framing: everything is data */
    evbuffer_drain(src, 3);
    h1body_rd_took(&r, 3);
    assert_int_equal(h1body_rd_next(&r, src, &n, &why), H1B_DATA);
    assert_int_equal(n, 5);
    evbuffer_drain(src, 5);
    h1body_rd_took(&r, 5);
    assert_int_equal(h1body_rd_next(&r, src, &n, &why), H1B_MORE);
    assert_false(h1body_rd_done(&r));
    assert_int_equal(r.taken, 8);
    h1body_rd_release(&r);
    evbuffer_free(src);

    /* Never END, however it is fed: input running out is MORE. */
    read_all_ways(H1_BODY_EOF, 0, S("HTTP/1.1 200 OK\r\n\r\n0\r\n\r\n"), H1B_MORE,
                  S("HTTP/1.1 200 OK\r\n\r\n0\r\n\r\n"), NULL, 0);
}

static void test_none(void **state)
{
    (void)state;
    struct evbuffer *src = evbuffer_new();
    h1body_rd_t r;
    size_t n = 99;
    const char *why = NULL;

    h1body_rd_init(&r, H1_BODY_NONE, 10);
    assert_true(h1body_rd_done(&r));
    assert_int_equal(h1body_rd_next(&r, src, &n, &why), H1B_END);
    assert_int_equal(n, 0);
    evbuffer_add(src, S("5\r\nhello\r\n0\r\n\r\n"));
    assert_int_equal(h1body_rd_next(&r, src, &n, &why), H1B_END);
    assert_int_equal(n, 0);
    assert_buf(src, S("5\r\nhello\r\n0\r\n\r\n"));
    h1body_rd_release(&r);
    evbuffer_free(src);
}

/* Writer. */

static void test_writer_chunked(void **state)
{
    (void)state;
    struct evbuffer *dst = evbuffer_new();
    struct evbuffer *src = evbuffer_new();
    h1body_wr_t w;

    h1body_wr_init(&w, true);
    h1body_wr_add(&w, "hello", 5, dst);
    assert_buf(dst, S("5\r\nhello\r\n"));
    /* An empty piece writes nothing (a 0 chunk would end the body). */
    h1body_wr_add(&w, "", 0, dst);
    h1body_wr_move(&w, src, 0, dst);
    assert_buf(dst, S("5\r\nhello\r\n"));
    evbuffer_drain(dst, evbuffer_get_length(dst));

    evbuffer_add(src, S("0123456789abcdefghij"));
    h1body_wr_move(&w, src, 17, dst);
    assert_buf(dst, S("11\r\n0123456789abcdefg\r\n"));
    assert_buf(src, S("hij"));
    evbuffer_drain(dst, evbuffer_get_length(dst));

    char big[255];
    memset(big, 'q', sizeof(big));
    h1body_wr_add(&w, big, sizeof(big), dst);
    assert_int_equal(evbuffer_get_length(dst), 4 + 255 + 2);
    assert_memory_equal(evbuffer_pullup(dst, 4), "ff\r\n", 4);
    evbuffer_drain(dst, evbuffer_get_length(dst));

    h1body_wr_end(&w, dst, NULL, 0);
    assert_true(w.ended);
    h1body_wr_end(&w, dst, NULL, 0);
    assert_buf(dst, S("0\r\n\r\n"));
    evbuffer_free(dst);
    evbuffer_free(src);
}

static void test_writer_plain(void **state)
{
    (void)state;
    struct evbuffer *dst = evbuffer_new();
    struct evbuffer *src = evbuffer_new();
    h1body_wr_t w;

    h1body_wr_init(&w, false);
    h1body_wr_add(&w, "hello", 5, dst);
    h1body_wr_add(&w, "", 0, dst);
    evbuffer_add(src, S("5\r\n world"));
    h1body_wr_move(&w, src, 8, dst);
    assert_buf(src, S("d"));
    h1body_wr_end(&w, dst, NULL, 0);
    h1body_wr_end(&w, dst, NULL, 0);
    assert_buf(dst, S("hello5\r\n worl"));
    evbuffer_free(dst);
    evbuffer_free(src);
}

static void test_roundtrip(void **state)
{
    (void)state;
    size_t len = 100000;
    char *data = malloc(len);
    uint32_t s = 4242;
    for (size_t i = 0; i < len; i++)
        data[i] = (char)rnd(&s);
    for (uint32_t seed = 1; seed <= 16; seed++) {
        size_t dlen = seed % 4 == 0 ? len : rnd(&s) % 5000;
        struct evbuffer *wire = evbuffer_new();
        struct evbuffer *src = evbuffer_new();
        h1body_wr_t w;
        h1body_wr_init(&w, true);
        /* Pieces of random size, alternately copied and moved. */
        for (size_t i = 0; i < dlen;) {
            size_t p = rnd(&s) % (seed & 1 ? 64 : 9000);
            if (p > dlen - i)
                p = dlen - i;
            if (rnd(&s) & 1) {
                h1body_wr_add(&w, data + i, p, wire);
            } else {
                evbuffer_add(src, data + i, p);
                evbuffer_add(src, "zz", 2); /* not moved */
                h1body_wr_move(&w, src, p, wire);
                assert_buf(src, "zz", 2);
                evbuffer_drain(src, 2);
            }
            i += p;
        }
        h1body_wr_end(&w, wire, NULL, 0);
        h1body_wr_end(&w, wire, NULL, 0);
        evbuffer_add(wire, S("NEXT"));
        size_t elen = evbuffer_get_length(wire);
        char *enc = malloc(elen);
        assert_int_equal(evbuffer_remove(wire, enc, elen), (int)elen);

        feed_t ways[] = {{0, 0, 0}, {1 + seed * 211 % 3000, SIZE_MAX, seed}, {7, 0, seed}};
        for (size_t k = 0; k < 3; k++)
            read_expect(H1_BODY_CHUNKED, 0, enc, elen, ways[k], H1B_END, data, dlen, S("NEXT"));
        free(enc);
        evbuffer_free(wire);
        evbuffer_free(src);
    }
    free(data);
}

static void *test_alloc(void *actx, size_t n)
{
    (void)actx;
    return test_malloc(n);
}

/* Trailer fields come out of the reader as fields, whichever way the body
 * was fed; the writer puts them back after the last chunk, leaving out
 * those that frame or route a message. */
static void test_trailers(void **state)
{
    (void)state;
    static const char in[] = "3;x=1\r\nabc\r\n0\r\nx-check:  sum \r\nx-two: 2\r\n\r\nNEXT";
    feed_t ways[] = {{0, 0, 0}, {1, 0, 0}, {0, SIZE_MAX, 5}, {3, 1, 9}};
    for (size_t w = 0; w < sizeof(ways) / sizeof(ways[0]); w++) {
        h1body_rd_t r;
        run_t o;
        struct evbuffer *src = evbuffer_new();
        h1body_rd_init(&r, H1_BODY_CHUNKED, 0);
        drive(&r, src, in, sizeof(in) - 1, ways[w], &o);
        assert_int_equal(o.res, H1B_END);
        assert_buf(o.data, "abc", 3);
        assert_buf(src, "NEXT", 4);
        hdr_t *tr;
        size_t n;
        h1body_rd_trailers(&r, test_alloc, NULL, &tr, &n);
        assert_int_equal(n, 2);
        assert_true(tr[0].name.len == 7 && memcmp(tr[0].name.ptr, "x-check", 7) == 0);
        assert_true(tr[0].value.len == 3 && memcmp(tr[0].value.ptr, "sum", 3) == 0);
        assert_true(tr[1].name.len == 5 && memcmp(tr[1].name.ptr, "x-two", 5) == 0);
        assert_true(tr[1].value.len == 1 && tr[1].value.ptr[0] == '2');
        test_free((void *)tr[0].name.ptr);
        test_free(tr);
        h1body_rd_release(&r);
        evbuffer_free(o.data);
        evbuffer_free(src);
    }
    /* No trailer section: no fields. */
    h1body_rd_t r;
    run_t o;
    struct evbuffer *src = evbuffer_new();
    h1body_rd_init(&r, H1_BODY_CHUNKED, 0);
    drive(&r, src, "1\r\na\r\n0\r\n\r\n", 11, (feed_t){1, 0, 0}, &o);
    assert_int_equal(o.res, H1B_END);
    hdr_t *tr;
    size_t n;
    h1body_rd_trailers(&r, test_alloc, NULL, &tr, &n);
    assert_int_equal(n, 0);
    h1body_rd_release(&r);
    evbuffer_free(o.data);
    evbuffer_free(src);

    h1body_wr_t w;
    struct evbuffer *dst = evbuffer_new();
    hdr_t out[] = {{SLC_STR("x-check"), SLC_STR("sum")},
                   {SLC_STR("content-length"), SLC_STR("9")},
                   {SLC_STR("transfer-encoding"), SLC_STR("chunked")},
                   {SLC_STR("host"), SLC_STR("elsewhere")},
                   {SLC_STR("x-two"), SLC_STR("2")}};
    h1body_wr_init(&w, true);
    h1body_wr_end(&w, dst, out, 5);
    assert_buf(dst, "0\r\nx-check: sum\r\nx-two: 2\r\n\r\n", 29);
    evbuffer_drain(dst, evbuffer_get_length(dst));
    h1body_wr_init(&w, false); /* no place for them */
    h1body_wr_end(&w, dst, out, 5);
    assert_int_equal(evbuffer_get_length(dst), 0);
    evbuffer_free(dst);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_length_all_at_once),
        cmocka_unit_test(test_length_byte_by_byte),
        cmocka_unit_test(test_length_partial_took),
        cmocka_unit_test(test_length_zero),
        cmocka_unit_test(test_length_large),
        cmocka_unit_test(test_chunked_basic),
        cmocka_unit_test(test_chunked_extensions_trailers),
        cmocka_unit_test(test_chunked_incomplete),
        cmocka_unit_test(test_chunked_random),
        cmocka_unit_test(test_chunked_pipelined),
        cmocka_unit_test(test_chunked_errors),
        cmocka_unit_test(test_chunked_line_limit),
        cmocka_unit_test(test_eof),
        cmocka_unit_test(test_none),
        cmocka_unit_test(test_writer_chunked),
        cmocka_unit_test(test_writer_plain),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_trailers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
