/* fuzz_regex: libFuzzer target for filters/router/regex.c.
 *
 * Input: one byte |k|, then a pattern of k bytes (fewer if the input is
 * shorter), then the subject. It compiles the pattern and, when it
 * compiles, matches the subject, aborting when an invariant breaks:
 *  - a failed compile names a message and an offset inside the pattern;
 *  - a program has at most RX_MAX_INSNS + 1 instructions, compiling twice
 *    gives the same bytes, and a memcpy'd copy matches exactly the same;
 *  - algebra that any regex engine must obey, checked whenever the rewritten
 *    pattern also compiles: (?:P) and (?:P)|(?:P) and (?:P)(?:) match
 *    what P matches; (?:P)* matches the empty string; if P matches s and
 *    has no anchors then (?:P)+ and (?:P){2} match ss;
 *  - the subject escaped byte by byte (\xHH) matches the subject and
 *    nothing one byte longer.
 * Every match is linear in the subject, so slow units are bugs too (run
 * with -timeout).
 *
 * Build: clang -g -O1 -fsanitize=fuzzer,address,undefined
 *        filters/router/regex.c tests/fuzz/fuzz_regex.c
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../filters/router/regex.h"

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x)) {                                                                                \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #x);              \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* wrap builds pre + P + mid + P + post (P twice when |mid| is non-NULL) in a
 * malloc'd buffer and compiles it; NULL if it does not compile. */
static rx_t *wrap(const char *p, size_t n, const char *pre, const char *mid, const char *post)
{
    size_t lp = strlen(pre), lm = mid ? strlen(mid) : 0, lq = strlen(post);
    size_t len = lp + n + (mid ? lm + n : 0) + lq;
    char *buf = malloc(len ? len : 1);
    CHECK(buf != NULL);
    size_t at = 0;
    memcpy(buf + at, pre, lp);
    at += lp;
    memcpy(buf + at, p, n);
    at += n;
    if (mid != NULL) {
        memcpy(buf + at, mid, lm);
        at += lm;
        memcpy(buf + at, p, n);
        at += n;
    }
    memcpy(buf + at, post, lq);
    at += lq;
    rx_error_t err;
    rx_t *re = rx_compile(buf, at, &err);
    free(buf);
    return re;
}

static void check_same(const char *p, size_t n, const char *pre, const char *mid, const char *post,
                       const char *s, size_t sl, bool want)
{
    rx_t *re = wrap(p, n, pre, mid, post);
    if (re != NULL) {
        CHECK(rx_match(re, s, sl) == want);
        rx_free(re);
    }
}

static void check_escaped(const char *s, size_t sl)
{
    if (sl > 200) {
        sl = 200;
    }
    char pat[200 * 4 + 1];
    for (size_t i = 0; i < sl; i++) {
        snprintf(pat + 4 * i, 5, "\\x%02x", (unsigned char)s[i]);
    }
    rx_error_t err;
    rx_t *re = rx_compile(pat, 4 * sl, &err);
    CHECK(re != NULL);
    CHECK(rx_match(re, s, sl));
    char longer[201];
    memcpy(longer, s, sl);
    longer[sl] = 'x';
    CHECK(!rx_match(re, longer, sl + 1));
    if (sl > 0) {
        CHECK(!rx_match(re, s, sl - 1));
    }
    rx_free(re);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) {
        return 0;
    }
    size_t n = data[0];
    if (n > size - 1) {
        n = size - 1;
    }
    const char *p = (const char *)data + 1;
    const char *s = p + n;
    size_t sl = size - 1 - n;

    check_escaped(s, sl);

    rx_error_t err = {0};
    rx_t *re = rx_compile(p, n, &err);
    if (re == NULL) {
        CHECK(err.msg != NULL);
        CHECK(err.pos <= n);
        return 0;
    }
    CHECK(rx_insns(re) >= 1 && rx_insns(re) <= RX_MAX_INSNS + 1);

    rx_error_t err2;
    rx_t *again = rx_compile(p, n, &err2);
    CHECK(again != NULL);
    CHECK(rx_size(again) == rx_size(re) && memcmp(again, re, rx_size(re)) == 0);
    rx_free(again);

    bool m = rx_match(re, s, sl);
    void *copy = malloc(rx_size(re));
    CHECK(copy != NULL);
    memcpy(copy, re, rx_size(re));
    CHECK(rx_match(copy, s, sl) == m);
    free(copy);

    check_same(p, n, "(?:", NULL, ")", s, sl, m);
    check_same(p, n, "(?:", ")|(?:", ")", s, sl, m);
    check_same(p, n, "(?:", NULL, ")(?:)", s, sl, m);
    check_same(p, n, "(?:", NULL, ")*", "", 0, true);
    /* Anchors break concatenation (b$ matches "b", not inside "bb"). */
    bool anchors = memchr(p, '^', n) != NULL || memchr(p, '$', n) != NULL;
    for (size_t i = 0; i + 1 < n && !anchors; i++) {
        anchors = p[i] == '\\' && (p[i + 1] == 'A' || p[i + 1] == 'z');
    }
    if (m && !anchors && sl <= 2048) {
        char *ss = malloc(2 * sl + 1);
        CHECK(ss != NULL);
        memcpy(ss, s, sl);
        memcpy(ss + sl, s, sl);
        check_same(p, n, "(?:", NULL, ")+", ss, 2 * sl, true);
        check_same(p, n, "(?:", NULL, "){2}", ss, 2 * sl, true);
        free(ss);
    }
    rx_free(re);
    return 0;
}
