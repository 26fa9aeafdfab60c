/* regex: a small linear-time regular expression matcher for the router.
 *
 * Patterns are compiled at config time into a Thompson NFA program and run
 * by a set-based simulation (a Pike VM without capture slots): every input
 * byte is looked at once per live NFA state, so a match costs
 * O(len(input) * len(program)) whatever the pattern, with no backtracking
 * and therefore no catastrophic cases (ReDoS). The program size is capped
 * (RX_MAX_INSNS) so that the bound is a small constant per input byte.
 *
 * The syntax is a subset of RE2's: literals; "." (any byte but \n, or any
 * byte after (?s)); [...] and [^...] with ranges and \d \w \s \D \W \S
 * inside; \d \w \s \D \W \S; \n \t \r \f \v \xHH and escaped punctuation;
 * ^ $ \A \z (anchors); (...) (?:...) (?P<name>...) (?<name>...) groups;
 * alternation |; * + ? {n} {n,} {n,m} with optional lazy '?' (laziness does
 * not change whether a pattern matches); a leading (?i) / (?s) / (?is).
 * Not supported, reported as errors: backreferences, lookaround, \b \B,
 * POSIX and Unicode classes, possessive quantifiers. Matching is on bytes.
 *
 * Every match is a FULL match of the input (RE2's FullMatch, what Envoy and
 * Istio use for header, path and query regexes).
 *
 * This file depends on the C library only, so that the fuzz target can
 * compile it alone.
 */
#ifndef SLUICE_ROUTER_REGEX_H
#define SLUICE_ROUTER_REGEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Limits. A pattern over any of them is a compile error, never a slow
 * match: RX_MAX_INSNS bounds the work per input byte. */
#define RX_MAX_INSNS   1000 /* NFA instructions after expanding {m,n} */
#define RX_MAX_REPEAT  1000 /* largest n or m in {n,m} (RE2's limit) */
#define RX_MAX_DEPTH   64   /* nesting of groups */
#define RX_MAX_PATTERN 4096 /* bytes of pattern text */

/* rx_t is a compiled program: one position-independent block of memory
 * (indices, no pointers), so it can be copied with memcpy (rx_size). */
typedef struct rx rx_t;

/* rx_error_t describes a compile error: |msg| is a static string and |pos|
 * the 0-based byte offset in the pattern where the problem was found. */
typedef struct rx_error {
    const char *msg;
    size_t pos;
} rx_error_t;

/* rx_compile compiles the |len| bytes at |pattern|. Returns the program, or
 * NULL with |*err| filled in.
 * OWNERSHIP: owned by the caller; free with rx_free (or copy rx_size bytes
 * elsewhere, then rx_free). */
rx_t *rx_compile(const char *pattern, size_t len, rx_error_t *err);

/* rx_free frees a program from rx_compile; NULL does nothing. */
void rx_free(rx_t *re);

/* rx_size is the size in bytes of the block |re| occupies. */
size_t rx_size(const rx_t *re);

/* rx_insns is the number of NFA instructions of |re| (for tests). */
size_t rx_insns(const rx_t *re);

/* rx_match tells whether |re| matches all |len| bytes at |s|. It allocates
 * nothing (about 10 KiB of stack) and runs in O(len * rx_insns(re)). */
bool rx_match(const rx_t *re, const char *s, size_t len);

#endif
