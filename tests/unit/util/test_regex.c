/* Unit tests of the RE2 shim (sdk/util/regex.cc) through <sluice/util.h>:
 * full-match semantics, UTF-8, the classes RE2 adds over the old engine,
 * the program-size limit and error positions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <sluice/util.h>

#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A limit large enough for every pattern of the semantics table: the table
 * checks matching, test_program_size checks the limit. */
#define BIG 100000

typedef struct rx_case {
    const char *pattern, *input;
    bool match;
} rx_case_t;

/* Full-match results (Python's re.fullmatch agrees on all of these). */
static const rx_case_t rx_table[] = {
    {"abc", "abc", true},
    {"abc", "ab", false},
    {"abc", "abcd", false},
    {"abc", "xabc", false},
    {"a.c", "abc", true},
    {"a.c", "a\nc", false},
    {"(?s)a.c", "a\nc", true},
    {"^/api/v[0-9]+/users$", "/api/v12/users", true},
    {"^/api/v[0-9]+/users$", "/api/v1/users/", false},
    {"/(foo|bar)/.*", "/bar/", true},
    {"/(foo|bar)/.*", "/baz/x", false},
    {"[^a-z]+", "1-2", true},
    {"\\d{3}-\\d{4}", "555-1234", true},
    {"\\d{3}-\\d{4}", "5555-1234", false},
    {"a{2,4}", "aaaaa", false},
    {"(ab)*", "", true},
    {"(ab)*", "aba", false},
    {"(?P<n>ab)+", "abab", true},
    {"(?i)hello", "HeLLo", true},
    {"x*?y", "xxy", true},
    {"^a|b$", "ab", false},
    {"\\x41\\x62", "Ab", true},
    {"(.*a){12}", "aaaaaaaaaaa", false},
    {"", "", true},
    {"", "a", false},
    /* UTF-8: one character is one '.', whatever its bytes. */
    {".", "\xc3\xa9", true},         /* é */
    {"..", "\xc3\xa9", false},       /* not two bytes */
    {".", "\xf0\x9f\x98\x80", true}, /* 😀, four bytes */
    {"[^a]", "\xc3\xa9", true},      /* a negated class takes a whole é */
    {"[^a]", "a", false},
    {"(?i)\xc3\xa9", "\xc3\x89", true}, /* (?i)é matches É */
    {"\xc3\xa9", "\xc3\x89", false},
    {"caf\xc3\xa9", "caf\xc3\xa9", true},
    /* Classes the old engine refused. */
    {"\\bfoo\\b", "foo", true},
    {"a\\bb", "ab", false},
    {"\\bfoo bar\\b", "foo bar", true},
    {"[[:alpha:]]+", "abcXYZ", true},
    {"[[:alpha:]]+", "abc1", false},
    {"[[:digit:]]{2}", "42", true},
    {"\\pL+", "caf\xc3\xa9", true},
    {"\\pL+", "abc1", false},
    {"\\p{Greek}+", "\xce\xb1\xce\xb2", true}, /* αβ */
};

static slcu_regex_t *compile(const char *p, uint32_t max, slcu_regex_error_t *err)
{
    return slcu_regex_compile(p, strlen(p), max, err);
}

static void test_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(rx_table) / sizeof(rx_table[0]); i++) {
        const rx_case_t *c = &rx_table[i];
        slcu_regex_error_t err;
        slcu_regex_t *re = compile(c->pattern, BIG, &err);
        if (re == NULL) {
            fail_msg("'%s' failed to compile: %s at %zu", c->pattern, err.msg, err.pos);
        }
        if (slcu_regex_match(re, c->input, strlen(c->input)) != c->match) {
            fail_msg("'%s' on '%s': expected %s", c->pattern, c->input,
                     c->match ? "a match" : "no match");
        }
        slcu_regex_free(re);
    }
}

static void test_bytes_and_null(void **state)
{
    (void)state;
    slcu_regex_error_t err;
    /* The subject is a byte range: an embedded NUL is a character. */
    slcu_regex_t *re = compile("a\\x00b", BIG, &err);
    assert_non_null(re);
    assert_true(slcu_regex_match(re, "a\0b", 3));
    assert_false(slcu_regex_match(re, "a\0b", 2));
    slcu_regex_free(re);
    /* NULL with length 0 is the empty string. */
    re = compile("x*", 0, &err);
    assert_non_null(re);
    assert_true(slcu_regex_match(re, NULL, 0));
    slcu_regex_free(re);
    slcu_regex_free(NULL);
    /* Invalid UTF-8 in a pattern is an error, not a byte match. */
    assert_null(slcu_regex_compile("\xff", 1, 0, &err));
    assert_non_null(strstr(err.msg, "UTF-8"));
}

static void test_program_size(void **state)
{
    (void)state;
    slcu_regex_error_t err;
    /* 0 is Envoy's default, 100. */
    slcu_regex_t *re = compile("/api/v[0-9]+/users/[a-z]+", 0, &err);
    assert_non_null(re);
    assert_true(slcu_regex_program_size(re) <= SLCU_REGEX_DEFAULT_MAX_PROGRAM_SIZE);
    slcu_regex_free(re);
    /* \pL expands to every letter range: over 100, so refused by default
     * (as Envoy refuses it) with the reason, and accepted when raised. */
    assert_null(compile("\\pL+", 0, &err));
    assert_non_null(strstr(err.msg, "program size"));
    assert_non_null(strstr(err.msg, "over max_program_size 100"));
    assert_int_equal(err.pos, 0);
    re = compile("\\pL+", 5000, &err);
    assert_non_null(re);
    int size = slcu_regex_program_size(re);
    assert_true(size > 100);
    slcu_regex_free(re);
    /* The limit is inclusive. */
    re = compile("\\pL+", (uint32_t)size, &err);
    assert_non_null(re);
    slcu_regex_free(re);
    assert_null(compile("\\pL+", (uint32_t)size - 1, &err));
    assert_null(compile(".{1000}", 0, &err));
    assert_non_null(strstr(err.msg, "program size"));
}

typedef struct rx_bad {
    const char *pattern;
    size_t pos;
    const char *msg;
} rx_bad_t;

static void test_errors(void **state)
{
    (void)state;
    /* RE2's reasons, and where the offending text starts. */
    static const rx_bad_t bad[] = {
        {"/users/(\\d+", 0, "missing )"},
        {"x\\qy", 1, "invalid escape sequence: \\q"},
        {"ab)", 0, "unexpected )"},
        {"xa[bc", 2, "missing ]"},
        {"*a", 0, "no argument for repetition operator"},
        {"ba**", 2, "bad repetition operator: **"},
        {"a{2000}", 1, "invalid repetition size"},
        {"(a)\\1", 3, "invalid escape sequence: \\1"},
        {"x(?=a)", 1, "invalid perl operator"},
        {"abc(?P<n", 3, "invalid named capture group"},
        {"a++", 1, "bad repetition operator"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        slcu_regex_error_t err;
        slcu_regex_t *re = compile(bad[i].pattern, BIG, &err);
        if (re != NULL) {
            fail_msg("'%s' compiled", bad[i].pattern);
        }
        if (err.pos != bad[i].pos || strstr(err.msg, bad[i].msg) == NULL) {
            fail_msg("'%s': got '%s' at %zu, expected '%s' at %zu", bad[i].pattern, err.msg,
                     err.pos, bad[i].msg, bad[i].pos);
        }
    }
}

static void test_linear_time(void **state)
{
    (void)state;
    /* Patterns that take a backtracking engine exponential time are linear
     * in RE2: 20 KiB of input against each must be quick. */
    static const char *const evil[] = {"(a+)+b", "(a|a)*b", "(a*)*b", "(.*a){20}b",
                                       "([a-z]+[a-z]+)+!"};
    size_t n = 20000;
    char *in = malloc(n);
    assert_non_null(in);
    memset(in, 'a', n);
    clock_t t0 = clock();
    for (size_t i = 0; i < sizeof(evil) / sizeof(evil[0]); i++) {
        slcu_regex_error_t err;
        slcu_regex_t *re = compile(evil[i], BIG, &err);
        assert_non_null(re);
        assert_false(slcu_regex_match(re, in, n));
        slcu_regex_free(re);
    }
    in[n - 1] = 'b';
    slcu_regex_error_t err;
    slcu_regex_t *re = compile("(a+)+b", BIG, &err);
    assert_true(slcu_regex_match(re, in, n));
    slcu_regex_free(re);
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    assert_true(secs < 5.0);
    free(in);
}

static void test_strmatch_regex(void **state)
{
    (void)state;
    slcu_regex_error_t err;
    slcu_regex_t *re = compile("v[0-9]+", 0, &err);
    assert_non_null(re);
    slcu_strmatch_t m = {.kind = SLCU_MATCH_REGEX, .re = re};
    slc_str_t v = {"v12", 3}, w = {"v12x", 4};
    assert_true(slcu_strmatch_value(&m, &v));
    assert_false(slcu_strmatch_value(&m, &w)); /* full match, not search */
    assert_false(slcu_strmatch_value(&m, NULL));
    slcu_regex_free(re);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),        cmocka_unit_test(test_bytes_and_null),
        cmocka_unit_test(test_program_size), cmocka_unit_test(test_errors),
        cmocka_unit_test(test_linear_time),  cmocka_unit_test(test_strmatch_regex),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
