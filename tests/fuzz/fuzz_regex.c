/* fuzz_regex: libFuzzer target for the RE2 shim (sdk/util/regex.cc) behind
 * slcu_regex_*.
 *
 * Input: one byte |k|, then a pattern of k bytes (fewer if the input is
 * shorter), then the subject. It compiles the pattern and, when it
 * compiles, matches the subject, aborting when an invariant breaks:
 *  - a failed compile names a reason and an offset inside the pattern;
 *  - a program is within max_program_size, compiling twice gives the same
 *    size, and matching twice gives the same answer;
 *  - algebra that full matching must obey, checked whenever the rewritten
 *    pattern also compiles: (?:P) and (?:P)|(?:P) and (?:P)(?:) match what
 *    P matches; (?:P)* matches the empty string; if P matches s and has no
 *    anchors or word boundaries then (?:P)+ and (?:P){2} match ss;
 *  - an ASCII subject escaped byte by byte (\xHH) matches the subject and
 *    nothing one byte longer or shorter; a valid UTF-8 subject of k
 *    characters matches (?s).{k}.
 * RE2 matches in linear time, so slow units are bugs too (run with
 * -timeout). Only the shim is instrumented; libre2 comes from Debian.
 */
#include <sluice/util.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"

/* Large enough that wrapping a pattern rarely crosses it, small enough that
 * compiles stay fast. */
#define LIMIT 5000

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* wrap builds pre + P + mid + P + post (P twice when |mid| is non-NULL) in a
 * malloc'd buffer and compiles it; NULL if it does not compile. */
static slcu_regex_t *wrap(const char *p, size_t n, const char *pre, const char *mid,
                          const char *post)
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
    slcu_regex_error_t err;
    slcu_regex_t *re = slcu_regex_compile(buf, at, LIMIT, &err);
    free(buf);
    return re;
}

static void check_same(const char *p, size_t n, const char *pre, const char *mid, const char *post,
                       const char *s, size_t sl, bool want)
{
    slcu_regex_t *re = wrap(p, n, pre, mid, post);
    if (re != NULL) {
        CHECK(slcu_regex_match(re, s, sl) == want);
        slcu_regex_free(re);
    }
}

static void check_escaped(const char *s, size_t sl)
{
    if (sl > 200) {
        sl = 200;
    }
    for (size_t i = 0; i < sl; i++) {
        if ((unsigned char)s[i] >= 0x80) {
            return; /* \xHH is a code point, not a byte, in UTF-8 mode */
        }
    }
    char pat[200 * 4 + 1];
    for (size_t i = 0; i < sl; i++) {
        snprintf(pat + 4 * i, 5, "\\x%02x", (unsigned char)s[i]);
    }
    slcu_regex_error_t err;
    slcu_regex_t *re = slcu_regex_compile(pat, 4 * sl, 100000, &err);
    CHECK(re != NULL);
    CHECK(slcu_regex_match(re, s, sl));
    char longer[201];
    memcpy(longer, s, sl);
    longer[sl] = 'x';
    CHECK(!slcu_regex_match(re, longer, sl + 1));
    if (sl > 0) {
        CHECK(!slcu_regex_match(re, s, sl - 1));
    }
    slcu_regex_free(re);
}

/* utf8_chars counts the characters of a valid UTF-8 (RE2's view: no
 * surrogates, nothing past U+10FFFF, shortest forms) string, or -1. */
static long utf8_chars(const unsigned char *s, size_t n)
{
    long k = 0;
    for (size_t i = 0; i < n; k++) {
        unsigned c = s[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (len == 0 || i + len > n) {
            return -1;
        }
        uint32_t cp = len == 1 ? c : c & (0x7fu >> len);
        for (size_t j = 1; j < len; j++) {
            if ((s[i + j] & 0xc0) != 0x80) {
                return -1;
            }
            cp = (cp << 6) | (s[i + j] & 0x3f);
        }
        static const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
            return -1;
        }
        i += len;
    }
    return k;
}

static void check_dots(const char *s, size_t sl)
{
    long k = utf8_chars((const unsigned char *)s, sl);
    if (k < 0 || k > 50) {
        return;
    }
    char pat[32];
    int n = snprintf(pat, sizeof(pat), "(?s).{%ld}", k);
    slcu_regex_error_t err;
    slcu_regex_t *re = slcu_regex_compile(pat, (size_t)n, 100000, &err);
    CHECK(re != NULL);
    CHECK(slcu_regex_match(re, s, sl));
    slcu_regex_free(re);
}

static bool has_anchor(const char *p, size_t n)
{
    if (memchr(p, '^', n) != NULL || memchr(p, '$', n) != NULL) {
        return true;
    }
    for (size_t i = 0; i + 1 < n; i++) {
        if (p[i] == '\\' && strchr("AzbB", p[i + 1]) != NULL && p[i + 1] != '\0') {
            return true;
        }
    }
    return false;
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
    check_dots(s, sl);

    slcu_regex_error_t err = {{0}, 0};
    slcu_regex_t *re = slcu_regex_compile(p, n, LIMIT, &err);
    if (re == NULL) {
        CHECK(err.msg[0] != '\0');
        CHECK(err.pos <= n);
        return 0;
    }
    int psize = slcu_regex_program_size(re);
    CHECK(psize >= 1 && psize <= LIMIT);

    slcu_regex_t *again = slcu_regex_compile(p, n, LIMIT, &err);
    CHECK(again != NULL);
    CHECK(slcu_regex_program_size(again) == psize);

    bool m = slcu_regex_match(re, s, sl);
    CHECK(slcu_regex_match(again, s, sl) == m);
    CHECK(slcu_regex_match(re, s, sl) == m);
    slcu_regex_free(again);

    check_same(p, n, "(?:", NULL, ")", s, sl, m);
    check_same(p, n, "(?:", ")|(?:", ")", s, sl, m);
    check_same(p, n, "(?:", NULL, ")(?:)", s, sl, m);
    check_same(p, n, "(?:", NULL, ")*", "", 0, true);
    if (m && !has_anchor(p, n) && sl <= 2048) {
        char *ss = malloc(2 * sl + 1);
        CHECK(ss != NULL);
        memcpy(ss, s, sl);
        memcpy(ss + sl, s, sl);
        check_same(p, n, "(?:", NULL, ")+", ss, 2 * sl, true);
        check_same(p, n, "(?:", NULL, "){2}", ss, 2 * sl, true);
        free(ss);
    }
    slcu_regex_free(re);
    return 0;
}
