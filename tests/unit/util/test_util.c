/* Unit tests of the filter helper library's C parts (sdk/util, C files). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <sluice/util.h>

#include <stdio.h>
#include <string.h>

#define S(lit) ((slc_str_t){(lit), sizeof(lit) - 1})

static slc_str_t str(const char *s)
{
    return (slc_str_t){s, strlen(s)};
}

static void test_case(void **state)
{
    (void)state;
    assert_int_equal(slcu_lower('A'), 'a');
    assert_int_equal(slcu_lower('z'), 'z');
    assert_int_equal(slcu_lower(0xC9), 0xC9); /* not ASCII: untouched */
    assert_true(slcu_caseeq(S("Content-Length"), S("content-length")));
    assert_false(slcu_caseeq(S("abc"), S("abd")));
    assert_false(slcu_caseeq(S("abc"), S("abcd")));
    assert_true(slcu_caseeq((slc_str_t){NULL, 0}, S("")));
    assert_true(slcu_casecmp(S("ABC"), S("abd")) < 0);
    assert_true(slcu_casecmp(S("b"), S("A")) > 0);
    assert_true(slcu_casecmp(S("ab"), S("ABC")) < 0);
    assert_int_equal(slcu_casecmp(S("Host"), S("hOST")), 0);
    /* '[' (0x5b) sorts after 'Z' but before 'a'..: lower-casing first
     * puts it before the letters. */
    assert_true(slcu_casecmp(S("["), S("Z")) < 0);
    assert_true(slcu_casehasprefix(S("HTTP://x"), S("http://")));
    assert_false(slcu_casehasprefix(S("http:"), S("http://")));
}

static void test_edit_distance(void **state)
{
    (void)state;
    assert_int_equal(slcu_edit_distance(S("kitten"), S("sitting"), false), 3);
    assert_int_equal(slcu_edit_distance(S(""), S("abc"), false), 3);
    assert_int_equal(slcu_edit_distance(S("abc"), S(""), false), 3);
    assert_int_equal(slcu_edit_distance(S("5xx"), S("5xx"), false), 0);
    assert_int_equal(slcu_edit_distance(S("Timeout"), S("timeout"), false), 1);
    assert_int_equal(slcu_edit_distance(S("Timeout"), S("timeout"), true), 0);
    assert_int_equal(slcu_edit_distance(S("conect-failure"), S("connect-failure"), false), 1);
    char big[SLCU_EDIT_MAX + 2];
    memset(big, 'a', sizeof(big));
    assert_int_equal(slcu_edit_distance((slc_str_t){big, SLCU_EDIT_MAX}, S("a"), false),
                     SLCU_EDIT_MAX - 1);
    assert_int_equal(slcu_edit_distance((slc_str_t){big, SLCU_EDIT_MAX + 1}, S("a"), false),
                     SIZE_MAX);
}

static void test_fnv(void **state)
{
    (void)state;
    /* Reference values of FNV-1a 64. */
    assert_true(slcu_fnv1a64("", 0) == 0xcbf29ce484222325ull);
    assert_true(slcu_fnv1a64("a", 1) == 0xaf63dc4c8601ec8cull);
    assert_true(slcu_fnv1a64("foobar", 6) == 0x85944171f73967e8ull);
    uint64_t h = slcu_fnv1a64_add(SLCU_FNV1A64_INIT, "foo", 3);
    assert_true(slcu_fnv1a64_add(h, "bar", 3) == slcu_fnv1a64("foobar", 6));
}

static void test_rng(void **state)
{
    (void)state;
    slcu_rng_t a, b, c;
    slcu_rng_seed(&a, 1);
    slcu_rng_seed(&b, 1);
    slcu_rng_seed(&c, 2);
    int same_c = 0;
    for (int i = 0; i < 100; i++) {
        uint64_t x = slcu_rng_next(&a);
        assert_true(x == slcu_rng_next(&b));
        same_c += x == slcu_rng_next(&c);
    }
    assert_int_equal(same_c, 0);
    /* Zero is a fine seed, and rng_below stays in range and covers it. */
    slcu_rng_t z;
    slcu_rng_seed(&z, 0);
    int seen[10] = {0};
    for (int i = 0; i < 10000; i++) {
        uint64_t v = slcu_rng_below(&z, 10);
        assert_true(v < 10);
        seen[v]++;
    }
    for (int i = 0; i < 10; i++) {
        assert_in_range(seen[i], 800, 1200);
    }
    assert_int_equal(slcu_rng_below(&z, 0), 0);
    assert_true(slcu_rng_below(&z, 1) == 0);
    /* mix64 is a bijection: distinct inputs, distinct outputs. */
    assert_true(slcu_mix64(1) != slcu_mix64(2));
}

static void test_duration(void **state)
{
    (void)state;
    struct {
        const char *text;
        uint64_t ms;
    } ok[] = {
        {"1h", 3600000},  {"2m", 120000}, {"5s", 5000}, {"100ms", 100},   {"1.5s", 1500},
        {"1m30s", 90000}, {"250us", 1},   {"0s", 0},    {"\xc2\xb5s", 0}, {"1499us", 1},
        {"1500us", 2},    {"0.0005s", 1}, {".5s", 500}, {"1ns", 1},       {"1h1m1s1ms", 3661001},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        uint64_t ms = 12345;
        slc_status_t st = slcu_duration_ms(str(ok[i].text), &ms);
        if (strcmp(ok[i].text, "\xc2\xb5s") == 0) {
            assert_int_equal(st, SLC_EINVAL); /* a unit without a number */
            continue;
        }
        assert_int_equal(st, SLC_OK);
        assert_true(ms == ok[i].ms);
    }
    const char *bad[] = {"",  "0", "10", "5 s", "-1s", "1d", "s", "1.s.", "99999999999999999999s",
                         "1x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t ms;
        assert_int_equal(slcu_duration_ms(str(bad[i]), &ms), SLC_EINVAL);
    }
    uint64_t ms;
    assert_int_equal(slcu_duration_ms((slc_str_t){NULL, 0}, &ms), SLC_EINVAL);
}

static void test_query(void **state)
{
    (void)state;
    slc_str_t q = S("a=1&&b&c=3=4&=x&d=#frag=9"), k, v;
    const char *want[][2] = {{"a", "1"}, {"b", ""}, {"c", "3=4"}, {"", "x"}, {"d", ""}};
    size_t n = 0;
    while (slcu_query_next(&q, &k, &v)) {
        assert_true(n < 5);
        assert_int_equal(k.len, strlen(want[n][0]));
        assert_memory_equal(k.ptr, want[n][0], k.len);
        assert_int_equal(v.len, strlen(want[n][1]));
        assert_memory_equal(v.ptr, want[n][1], v.len);
        n++;
    }
    assert_int_equal(n, 5);
    assert_true(slcu_query_get(S("x=1&y=2&x=3"), S("x"), &v));
    assert_int_equal(v.len, 1);
    assert_int_equal(v.ptr[0], '1');
    assert_false(slcu_query_get(S("x=1"), S("X"), &v)); /* names are exact */
    assert_false(slcu_query_get(S("a=1#b=2"), S("b"), &v));
    assert_false(slcu_query_get((slc_str_t){NULL, 0}, S("a"), &v));
    slc_str_t t = slcu_query_of(S("/p?x=1"));
    assert_int_equal(t.len, 3);
    assert_memory_equal(t.ptr, "x=1", 3);
    assert_null(slcu_query_of(S("/p")).ptr);
    t = slcu_query_of(S("/p?"));
    assert_non_null(t.ptr);
    assert_int_equal(t.len, 0);
}

static void check_parts(const char *in, const char *td, const char *ns)
{
    slc_str_t t, n;
    slcu_principal_parts(str(in), &t, &n);
    if (td == NULL) {
        assert_null(t.ptr);
    } else {
        assert_int_equal(t.len, strlen(td));
        assert_memory_equal(t.ptr, td, t.len);
    }
    if (ns == NULL) {
        assert_null(n.ptr);
        assert_int_equal(n.len, 0);
    } else {
        assert_int_equal(n.len, strlen(ns));
        assert_memory_equal(n.ptr, ns, n.len);
    }
}

static void test_principal_parts(void **state)
{
    (void)state;
    check_parts("cluster.local/ns/shop/sa/web", "cluster.local", "shop");
    check_parts("spiffe://cluster.local/ns/shop/sa/web", "cluster.local", "shop");
    check_parts("td/ns/shop", "td", "shop");
    check_parts("td", "td", NULL);
    check_parts("td/", "td", NULL);
    check_parts("td/ns/", "td", NULL);
    check_parts("td/ns//sa/x", "td", NULL);
    /* "/ns/" counts only straight after the trust domain. */
    check_parts("td/x/ns/shop", "td", NULL);
    check_parts("td/nsx/shop", "td", NULL);
    check_parts("", NULL, NULL);
    slc_str_t t, n;
    slcu_principal_parts((slc_str_t){NULL, 0}, &t, &n);
    assert_null(t.ptr);
    assert_null(n.ptr);
}

static void check_path(const char *in, unsigned flags, const char *want)
{
    char out[256];
    size_t n = slcu_path_normalize(str(in), out, sizeof(out), flags);
    assert_true(n != SIZE_MAX);
    out[n] = '\0';
    if (strcmp(out, want) != 0) {
        fail_msg("normalize(%s, %u) = '%s', want '%s'", in, flags, out, want);
    }
    /* In place gives the same. */
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", in);
    size_t m = slcu_path_normalize(str(buf), buf, sizeof(buf), flags);
    assert_int_equal(m, n);
    assert_memory_equal(buf, want, n);
}

static void test_path(void **state)
{
    (void)state;
    /* RFC 3986 5.2.4's examples and the usual attacks. */
    check_path("/a/b/c/./../../g", 0, "/a/g");
    check_path("mid/content=5/../6", 0, "mid/6");
    check_path("/public/../admin", 0, "/admin");
    check_path("/../../etc/passwd", 0, "/etc/passwd");
    check_path("/a/.", 0, "/a/");
    check_path("/a/..", 0, "/");
    check_path("/a/b/..", 0, "/a/");
    check_path("/.", 0, "/");
    check_path("/", 0, "/");
    check_path("", 0, "/");
    check_path("/a/./b/", 0, "/a/b/");
    check_path("/a/.b/..c/", 0, "/a/.b/..c/");
    check_path("/a%2e%2e/b", 0, "/a%2e%2e/b");
    check_path("/a//b", 0, "/a//b");
    check_path("/a//b", SLCU_PATH_MERGE_SLASHES, "/a/b");
    check_path("//a///b//", SLCU_PATH_MERGE_SLASHES, "/a/b/");
    check_path("//", SLCU_PATH_MERGE_SLASHES, "/");
    check_path("/a//../b", SLCU_PATH_MERGE_SLASHES, "/b");
    char small[3];
    assert_true(slcu_path_normalize(S("/abcd"), small, sizeof(small), 0) == SIZE_MAX);
    assert_true(slcu_path_normalize(S("/%00"), small, sizeof(small), 0) == SIZE_MAX);
    assert_true(slcu_path_normalize(S(""), small, 0, 0) == SIZE_MAX);
}

/* Istio's pathNormalization options over the ways /admin is reached in
 * disguise: what each path becomes under BASE, MERGE_SLASHES and
 * DECODE_AND_MERGE_SLASHES (NULL: the path is invalid, 400). */
static void test_path_istio(void **state)
{
    (void)state;
    static const struct {
        const char *in, *base, *merge, *decode;
    } cases[] = {
        {"/admin", "/admin", "/admin", "/admin"},
        {"/./admin", "/admin", "/admin", "/admin"},
        {"//admin", "//admin", "/admin", "/admin"},
        {"/%61dmin", "/admin", "/admin", "/admin"},
        {"/%41DMIN", "/ADMIN", "/ADMIN", "/ADMIN"},
        {"/public/../admin", "/admin", "/admin", "/admin"},
        {"/public/%2e%2e/admin", "/admin", "/admin", "/admin"},
        {"/public/%2E%2e/admin", "/admin", "/admin", "/admin"},
        {"/%2e/admin", "/admin", "/admin", "/admin"},
        {"/public\\..\\admin", "/admin", "/admin", "/admin"},
        {"/public/..%2fadmin", "/public/..%2fadmin", "/public/..%2fadmin", "/admin"},
        {"/public/..%5cadmin", "/public/..%5cadmin", "/public/..%5cadmin", "/admin"},
        {"/admin%2fsecret", "/admin%2fsecret", "/admin%2fsecret", "/admin/secret"},
        {"/a%2F%2Fb", "/a%2F%2Fb", "/a%2F%2Fb", "/a/b"},
        {"/%252e%252e/admin", "/%252e%252e/admin", "/%252e%252e/admin", "/%252e%252e/admin"},
        {"/%7euser", "/~user", "/~user", "/~user"},
        {"/a%2d%5f%30", "/a-_0", "/a-_0", "/a-_0"},
        {"/%20x%3f", "/%20x%3f", "/%20x%3f", "/%20x%3f"},
        {"/bad%zz%4", "/bad%zz%4", "/bad%zz%4", "/bad%zz%4"},
        {"/a%00b", NULL, NULL, NULL},
        {"\\admin", "/admin", "/admin", "/admin"},
    };
    unsigned modes[3] = {SLCU_PATH_ISTIO_BASE, SLCU_PATH_ISTIO_MERGE_SLASHES,
                         SLCU_PATH_ISTIO_DECODE_AND_MERGE_SLASHES};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *want[3] = {cases[i].base, cases[i].merge, cases[i].decode};
        for (int m = 0; m < 3; m++) {
            if (want[m]) {
                check_path(cases[i].in, modes[m], want[m]);
                continue;
            }
            char out[256];
            if (slcu_path_normalize(str(cases[i].in), out, sizeof(out), modes[m]) !=
                SLCU_PATH_INVALID)
                fail_msg("normalize(%s, %u) should be invalid", cases[i].in, modes[m]);
        }
    }
}

static void test_cidr(void **state)
{
    (void)state;
    slcu_cidr_t r, ip;
    assert_true(slcu_cidr_parse(S("127.0.0.0/8"), &r));
    assert_int_equal(r.family, 4);
    assert_int_equal(r.prefix, 8);
    assert_true(slcu_cidr_match_text(&r, S("127.1.2.3")));
    assert_false(slcu_cidr_match_text(&r, S("128.0.0.1")));
    assert_true(slcu_cidr_match_text(&r, S("::ffff:127.9.9.9"))); /* v4-mapped */
    assert_false(slcu_cidr_match_text(&r, S("::1")));
    assert_false(slcu_cidr_match_text(&r, S("not-an-ip")));

    assert_true(slcu_cidr_parse(S("192.0.2.128/25"), &r));
    assert_true(slcu_cidr_match_text(&r, S("192.0.2.200")));
    assert_false(slcu_cidr_match_text(&r, S("192.0.2.127")));

    assert_true(slcu_cidr_parse(S("2001:db8::/32"), &r));
    assert_int_equal(r.family, 6);
    assert_true(slcu_cidr_match_text(&r, S("2001:db8:1::1")));
    assert_true(slcu_cidr_match_text(&r, S("[2001:db8::5]")));
    assert_false(slcu_cidr_match_text(&r, S("2001:db9::1")));
    assert_false(slcu_cidr_match_text(&r, S("127.0.0.1")));

    assert_true(slcu_cidr_parse(S("2001:db8::/33"), &r));
    assert_true(slcu_cidr_match_text(&r, S("2001:db8:7fff::1")));
    assert_false(slcu_cidr_match_text(&r, S("2001:db8:8000::1")));

    assert_true(slcu_cidr_parse(S("0.0.0.0/0"), &r));
    assert_true(slcu_cidr_match_text(&r, S("203.0.113.9")));
    assert_true(slcu_cidr_parse(S("::/0"), &r));
    assert_true(slcu_cidr_match_text(&r, S("::1")));

    assert_true(slcu_cidr_parse(S("127.0.0.1"), &r)); /* bare address: /32 */
    assert_int_equal(r.prefix, 32);
    assert_true(slcu_cidr_match_text(&r, S("127.0.0.1")));
    assert_false(slcu_cidr_match_text(&r, S("127.0.0.2")));

    const char *bad[] = {"127.0.0.1/8",    "127.0.0.0/33", "::/129", "127.0.0.0/",
                         "127.0.0.0/x",    "127.0.0/8",    "",       "/8",
                         "192.0.2.4/0008", "fe80::1%eth0"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (slcu_cidr_parse(str(bad[i]), &r)) {
            fail_msg("'%s' parsed", bad[i]);
        }
    }
    assert_true(slcu_ip_parse(S("[::1]"), &ip));
    assert_int_equal(ip.family, 6);
    assert_false(slcu_ip_parse((slc_str_t){NULL, 0}, &ip));
}

static void test_strmatch(void **state)
{
    (void)state;
    slcu_strmatch_t m = {.kind = SLCU_MATCH_EXACT, .text = S("Jason")};
    slc_str_t v = S("Jason"), w = S("jason"), e = {NULL, 0};
    assert_true(slcu_strmatch_value(&m, &v));
    assert_false(slcu_strmatch_value(&m, &w));
    assert_false(slcu_strmatch_value(&m, NULL));
    m.ignore_case = true;
    assert_true(slcu_strmatch_value(&m, &w));

    m = (slcu_strmatch_t){.kind = SLCU_MATCH_PREFIX, .text = S("/api")};
    slc_str_t p1 = S("/api/v1"), p2 = S("/API/v1"), p3 = S("/ap");
    assert_true(slcu_strmatch_value(&m, &p1));
    assert_false(slcu_strmatch_value(&m, &p2));
    assert_false(slcu_strmatch_value(&m, &p3));
    m.ignore_case = true;
    assert_true(slcu_strmatch_value(&m, &p2));

    m = (slcu_strmatch_t){.kind = SLCU_MATCH_SUFFIX, .text = S(".js")};
    slc_str_t s1 = S("/a/b.js"), s2 = S("/a/b.JS"), s3 = S("js");
    assert_true(slcu_strmatch_value(&m, &s1));
    assert_false(slcu_strmatch_value(&m, &s2));
    assert_false(slcu_strmatch_value(&m, &s3));
    m.ignore_case = true;
    assert_true(slcu_strmatch_value(&m, &s2));

    m = (slcu_strmatch_t){.kind = SLCU_MATCH_EXACT, .text = S("")};
    assert_true(slcu_strmatch_value(&m, &e)); /* NULL pointer, length 0 */

    m = (slcu_strmatch_t){.kind = SLCU_MATCH_PRESENT};
    assert_true(slcu_strmatch_value(&m, &e));
    assert_false(slcu_strmatch_value(&m, NULL));
    m = (slcu_strmatch_t){.kind = SLCU_MATCH_ABSENT};
    assert_false(slcu_strmatch_value(&m, &e));
    assert_true(slcu_strmatch_value(&m, NULL));
}

static void test_header_and_query_match(void **state)
{
    (void)state;
    slcu_kvmatch_t h = {.name = S("x-user"), .m = {.kind = SLCU_MATCH_EXACT, .text = S("jason")}};
    slc_str_t jason = S("jason"), other = S("mary");
    assert_true(slcu_header_match(&h, &jason));
    assert_false(slcu_header_match(&h, &other));
    assert_false(slcu_header_match(&h, NULL));
    h.invert = true;
    assert_false(slcu_header_match(&h, &jason));
    assert_true(slcu_header_match(&h, &other));
    assert_true(slcu_header_match(&h, NULL));

    slcu_kvmatch_t q = {.name = S("v"), .m = {.kind = SLCU_MATCH_PREFIX, .text = S("2")}};
    assert_true(slcu_query_match(&q, S("a=1&v=2.1")));
    assert_false(slcu_query_match(&q, S("a=1&v=1&v=2")));
    assert_false(slcu_query_match(&q, S("a=1")));
    q.m = (slcu_strmatch_t){.kind = SLCU_MATCH_PRESENT};
    assert_true(slcu_query_match(&q, S("v")));
    assert_false(slcu_query_match(&q, S("vv=1")));
    q.m = (slcu_strmatch_t){.kind = SLCU_MATCH_ABSENT};
    assert_true(slcu_query_match(&q, S("vv=1")));
}

/* Istio's retryOn meaning over both forms of the retriable statuses, and
 * Envoy's full-jitter backoff bounds. */
static void test_retry(void **state)
{
    (void)state;
    slc_retry_policy_t p = {.struct_size = sizeof(p), .retry_on = SLC_RETRY_CONNECT_FAILURE};
    assert_true(slcu_retry_covers(&p, SLC_ATTEMPT_CONNECT_FAILURE, 0));
    assert_false(slcu_retry_covers(&p, SLC_ATTEMPT_RESET, 0));
    assert_false(slcu_retry_covers(&p, SLC_ATTEMPT_RESPONSE, 503));
    p.retry_on = SLC_RETRY_GATEWAY_ERROR;
    assert_true(slcu_retry_covers(&p, SLC_ATTEMPT_RESET, 0));
    assert_true(slcu_retry_covers(&p, SLC_ATTEMPT_TIMEOUT, 0)); /* a 504 */
    assert_true(slcu_retry_covers(&p, SLC_ATTEMPT_RESPONSE, 502));
    assert_false(slcu_retry_covers(&p, SLC_ATTEMPT_RESPONSE, 500));
    p.retry_on = SLC_RETRY_5XX;
    assert_true(slcu_retry_covers(&p, SLC_ATTEMPT_RESPONSE, 500));
    assert_false(slcu_retry_covers(&p, SLC_ATTEMPT_RESPONSE, 429));
    /* statuses: the 1.3 list when present, else the 1.1 array */
    static const uint16_t list[] = {429, 418};
    p.retry_on = SLC_RETRY_RETRIABLE_STATUS;
    p.statuses = list;
    p.nstatuses = 2;
    p.retriable_statuses[0] = 503;
    p.nretriable_statuses = 1;
    assert_true(slcu_retry_covers(&p, SLC_ATTEMPT_RESPONSE, 418));
    assert_false(slcu_retry_covers(&p, SLC_ATTEMPT_RESPONSE, 503));
    p.struct_size = (uint32_t)offsetof(slc_retry_policy_t, statuses); /* a 1.1 filter's */
    assert_true(slcu_retry_covers(&p, SLC_ATTEMPT_RESPONSE, 503));
    assert_false(slcu_retry_covers(&p, SLC_ATTEMPT_RESPONSE, 418));

    /* retry n waits at most min(base * 2^(n-1), 10 * base) */
    assert_int_equal(slcu_retry_backoff_ms(25, 1, UINT64_MAX - 1), (UINT64_MAX - 1) % 26);
    for (uint64_t r = 0; r < 2000; r += 7) {
        assert_true(slcu_retry_backoff_ms(25, 1, r) <= 25);
        assert_true(slcu_retry_backoff_ms(25, 3, r) <= 100);
        assert_true(slcu_retry_backoff_ms(25, 9, r) <= 250);
        assert_true(slcu_retry_backoff_ms(0, 2, r) <= 50); /* 0: Envoy's 25 ms base */
    }
    assert_int_equal(slcu_retry_backoff_ms(25, 9, 250), 250);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_case),
        cmocka_unit_test(test_edit_distance),
        cmocka_unit_test(test_fnv),
        cmocka_unit_test(test_rng),
        cmocka_unit_test(test_duration),
        cmocka_unit_test(test_query),
        cmocka_unit_test(test_principal_parts),
        cmocka_unit_test(test_retry),
        cmocka_unit_test(test_path),
        cmocka_unit_test(test_path_istio),
        cmocka_unit_test(test_cidr),
        cmocka_unit_test(test_strmatch),
        cmocka_unit_test(test_header_and_query_match),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
