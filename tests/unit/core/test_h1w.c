/* Unit tests for core/h1w.c: the HTTP/1.1 head writers.
 *
 * The worst cases the old hand-sized request writer got wrong are driven
 * here: an HTTP/1.0 request without Host (the endpoint's address is
 * written instead, a long IPv6 one from a DNS cluster) with a 20-digit
 * Content-Length. Every writer must fit its own size bound, and must refuse
 * rather than write past a buffer that is one byte short. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "h1w.h"

#define CANARY 0x5a

/* fits checks what |write| produced for a buffer of |size| bytes from
 * |size_fn|: it fits, and one byte less is refused without touching the
 * byte past the buffer. Returns the head (malloc'd) and its length. */
typedef size_t (*write_fn)(const void *r, char *buf, size_t cap);
typedef size_t (*size_fn)(const void *r);

static char *fits(const void *r, size_fn sz, write_fn wr, size_t *out_len)
{
    size_t need = sz(r);
    char *buf = malloc(need + 1);
    assert_non_null(buf);
    memset(buf, CANARY, need + 1);
    size_t n = wr(r, buf, need);
    assert_true(n > 0);
    assert_true(n <= need);
    assert_int_equal((unsigned char)buf[need], CANARY);

    char *small = malloc(n);
    assert_non_null(small);
    memset(small, CANARY, n);
    assert_int_equal(wr(r, small, n - 1), 0);
    assert_int_equal((unsigned char)small[n - 1], CANARY);
    free(small);
    *out_len = n;
    return buf;
}

static size_t req_size(const void *r)
{
    return h1w_request_size(r);
}
static size_t req_write(const void *r, char *b, size_t c)
{
    return h1w_request(r, b, c);
}
static size_t resp_size(const void *r)
{
    return h1w_response_size(r);
}
static size_t resp_write(const void *r, char *b, size_t c)
{
    return h1w_response(r, b, c);
}

static void assert_head(const char *got, size_t n, const char *want)
{
    assert_int_equal(n, strlen(want));
    assert_memory_equal(got, want, n);
}

static void test_request_without_host_long_ipv6_max_length(void **state)
{
    (void)state;
    /* The stream's header list after parsing: content-length removed, and
     * proxy headers appended. */
    hdr_t h[] = {
        {SLC_STR("x-forwarded-for"), SLC_STR("192.0.2.1")},
        {SLC_STR("x-forwarded-proto"), SLC_STR("http")},
        {SLC_STR("via"), SLC_STR("1.0 sluice")},
    };
    h1w_req_t r = {
        .method = SLC_STR("PUT"),
        .path = SLC_STR("/"),
        .hdrs = h,
        .nhdrs = 3,
        .host = SLC_STR("[2001:db8:85a3:1234:5678:8a2e:370:7334]:8080"),
        .framing = H1W_LENGTH,
        .length = UINT64_MAX, /* 20 digits */
    };
    size_t n;
    char *head = fits(&r, req_size, req_write, &n);
    assert_head(head, n,
                "PUT / HTTP/1.1\r\n"
                "x-forwarded-for: 192.0.2.1\r\n"
                "x-forwarded-proto: http\r\n"
                "via: 1.0 sluice\r\n"
                "host: [2001:db8:85a3:1234:5678:8a2e:370:7334]:8080\r\n"
                "content-length: 18446744073709551615\r\n"
                "\r\n");
    free(head);
}

static void test_request_framing_fields_from_the_list_are_dropped(void **state)
{
    (void)state;
    /* Whatever a filter added, only the writer's own framing goes out, and
     * a Host in the list wins over the fallback. */
    hdr_t h[] = {
        {SLC_STR("Host"), SLC_STR("example.com")},
        {SLC_STR("content-length"), SLC_STR("7")},
        {SLC_STR("transfer-encoding"), SLC_STR("gzip")},
        {SLC_STR("connection"), SLC_STR("close")},
        {SLC_STR("x-a"), SLC_STR("1")},
    };
    h1w_req_t r = {SLC_STR("POST"), SLC_STR("/up"), h, 5, SLC_STR("192.0.2.9:1"), H1W_CHUNKED, 0};
    size_t n;
    char *head = fits(&r, req_size, req_write, &n);
    assert_head(head, n,
                "POST /up HTTP/1.1\r\nHost: example.com\r\nx-a: 1\r\n"
                "transfer-encoding: chunked\r\n\r\n");
    free(head);
    r.framing = H1W_EMPTY_LENGTH;
    head = fits(&r, req_size, req_write, &n);
    assert_non_null(strstr(head, "\r\ncontent-length: 0\r\n\r\n"));
    free(head);
}

static void test_response_worst_case(void **state)
{
    (void)state;
    hdr_t h[] = {
        {SLC_STR("content-type"), SLC_STR("text/plain")},
        {SLC_STR("content-length"), SLC_STR("12")}, /* kept only when bodiless */
    };
    h1w_resp_t r = {
        .status = 299,
        .reason = SLC_STR("A Reason Phrase Longer Than Any Table Entry"),
        .hdrs = h,
        .nhdrs = 2,
        .framing = H1W_LENGTH,
        .length = UINT64_MAX,
        .conn = H1W_CONN_KEEP_ALIVE,
    };
    size_t n;
    char *head = fits(&r, resp_size, resp_write, &n);
    assert_head(head, n,
                "HTTP/1.1 299 A Reason Phrase Longer Than Any Table Entry\r\n"
                "content-type: text/plain\r\n"
                "content-length: 18446744073709551615\r\n"
                "connection: keep-alive\r\n\r\n");
    free(head);

    r.status = 304;
    r.reason = SLC_STR("Not Modified");
    r.keep_cl = true;
    r.framing = H1W_NONE;
    r.conn = H1W_CONN_CLOSE;
    head = fits(&r, resp_size, resp_write, &n);
    assert_head(head, n,
                "HTTP/1.1 304 Not Modified\r\ncontent-type: text/plain\r\n"
                "content-length: 12\r\nconnection: close\r\n\r\n");
    free(head);
}

/* Random header lists, lengths and hosts: the bound always holds, and a
 * buffer one short is always refused cleanly. */
static void test_bounds_hold_for_random_heads(void **state)
{
    (void)state;
    static char pool[4096];
    for (size_t i = 0; i < sizeof(pool); i++)
        pool[i] = (char)('a' + i % 26);
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (int iter = 0; iter < 2000; iter++) {
        hdr_t h[12];
        size_t nh = 0;
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        nh = x % 12;
        for (size_t k = 0; k < nh; k++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            h[k].name = (slc_str_t){pool, 1 + x % 40};
            h[k].value = (slc_str_t){pool + 100, x % 900};
        }
        h1w_req_t r = {SLC_STR("GET"),
                       (slc_str_t){pool, 1 + (x >> 20) % 2000},
                       h,
                       nh,
                       (slc_str_t){pool, (x >> 32) % 300},
                       (h1w_framing_t)(x % 4),
                       x};
        size_t n;
        free(fits(&r, req_size, req_write, &n));
        h1w_resp_t p = {(int)(100 + x % 900),
                        (slc_str_t){pool, 1 + (x >> 8) % 60},
                        h,
                        nh,
                        (x >> 3) & 1,
                        (h1w_framing_t)((x >> 5) % 3),
                        x,
                        (h1w_conn_t)((x >> 7) % 3)};
        free(fits(&p, resp_size, resp_write, &n));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_without_host_long_ipv6_max_length),
        cmocka_unit_test(test_request_framing_fields_from_the_list_are_dropped),
        cmocka_unit_test(test_response_worst_case),
        cmocka_unit_test(test_bounds_hold_for_random_heads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
