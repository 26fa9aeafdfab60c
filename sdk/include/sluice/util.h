/* sluice filter helpers (libsluice-util.a): the small pieces every policy
 * filter needs, written once so that filters and the core agree on them.
 * docs/filter-helpers.md is the guide.
 *
 * LINKING: a static library compiled -fPIC with hidden visibility, so a
 * filter module (built -fvisibility=hidden) links it without exporting any
 * of it. Out of tree: `target_link_libraries(f PRIVATE sluice::util)` after
 * find_package(sluice-sdk), or `pkg-config --libs sluice-util`. The regex
 * functions use RE2 (libre2, C++): a filter that calls them links libre2 and
 * libstdc++ too (both the CMake target and the .pc file say so).
 *
 * MEMORY: nothing here allocates on a request path. Functions that produce
 * bytes write into memory the caller passes; the only allocations are the
 * compiled regexes (slcu_regex_compile, at config time) and what RE2 keeps
 * inside them (its DFA cache, bounded by the compile-time memory budget).
 *
 * THREADS: every function is reentrant. Compiled matchers and regexes are
 * read-only after config time and may be shared by all workers; an
 * slcu_rng_t belongs to one worker.
 */
#ifndef SLUICE_UTIL_H
#define SLUICE_UTIL_H

#include <sluice/types.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- ASCII case ---------------------------------------------------------- */

/* slcu_lower lower-cases one ASCII letter; other bytes are returned as is
 * (HTTP names are case-insensitive in ASCII only). */
static inline int slcu_lower(int c)
{
    return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

/* slcu_casecmp orders |a| and |b| byte-wise after ASCII lower-casing both
 * (shorter first on a common prefix): <0, 0 or >0. NULL pointers are fine
 * with a zero length. */
int slcu_casecmp(slc_str_t a, slc_str_t b);

/* slcu_caseeq is slcu_casecmp(a, b) == 0, with the length test first. */
bool slcu_caseeq(slc_str_t a, slc_str_t b);

/* slcu_casehasprefix tells whether |s| starts with |prefix|, ignoring ASCII
 * case. */
bool slcu_casehasprefix(slc_str_t s, slc_str_t prefix);

/* ---- edit distance ------------------------------------------------------- */

/* SLCU_EDIT_MAX is the longest string slcu_edit_distance compares; it works
 * in a stack row of this size, so longer inputs are not compared. */
#define SLCU_EDIT_MAX 64

/* slcu_edit_distance is the Levenshtein distance between |a| and |b|
 * (insert, delete, substitute one byte), for "did you mean" hints;
 * |ignore_case| compares ASCII letters case-insensitively. SIZE_MAX when
 * either string is longer than SLCU_EDIT_MAX (no useful hint comes from
 * those). */
size_t slcu_edit_distance(slc_str_t a, slc_str_t b, bool ignore_case);

/* ---- hashing and random numbers ------------------------------------------ */

#define SLCU_FNV1A64_INIT 0xcbf29ce484222325ull

/* slcu_fnv1a64_add continues an FNV-1a 64 hash |h| over |n| bytes; start
 * from SLCU_FNV1A64_INIT. For hash tables, not for anything adversarial. */
uint64_t slcu_fnv1a64_add(uint64_t h, const void *p, size_t n);

/* slcu_fnv1a64 hashes |n| bytes from SLCU_FNV1A64_INIT. */
uint64_t slcu_fnv1a64(const void *p, size_t n);

/* slcu_rng_t is a splitmix64 generator: one 64-bit counter, any seed is
 * fine (zero too). Fast and well mixed, for traffic splitting, sampling and
 * ids that must be unique, never for secrets.
 * THREADS: one per worker (or per thread); no locking. */
typedef struct slcu_rng {
    uint64_t state;
} slcu_rng_t;

/* slcu_mix64 is splitmix64's finalizer: a bijection on 64 bits in which
 * every input bit affects every output bit. */
uint64_t slcu_mix64(uint64_t x);

/* slcu_rng_seed seeds |r| from |seed| (e.g. worker id, instance address and
 * getrandom bytes mixed together); distinct seeds give distinct streams. */
void slcu_rng_seed(slcu_rng_t *r, uint64_t seed);

/* slcu_rng_next is the next 64 random bits. */
uint64_t slcu_rng_next(slcu_rng_t *r);

/* ---- retries --------------------------------------------------------------
 * slcu_retry_covers: does retry policy |p| (its retry_on bits and
 * retriable statuses, in Istio's retryOn meaning) cover one attempt's
 * outcome? A connect failure matches connect-failure, 5xx and
 * gateway-error; a reset matches reset, 5xx and gateway-error; a per-try
 * timeout counts as a 504; a response status matches 5xx, gateway-error
 * (502-504) or a listed status. The core's built-in policy and the router
 * both decide with it. Pure; any thread. */
bool slcu_retry_covers(const slc_retry_policy_t *p, slc_attempt_result_t res, int status);
/* slcu_retry_backoff_ms: Envoy's full-jitter backoff before retry |n|
 * (1 = the first retry): |random| reduced to [0, min(base * 2^(n-1),
 * 10 * base)]; a base of 0 means Envoy's 25 ms. */
uint64_t slcu_retry_backoff_ms(uint64_t base_ms, uint32_t n, uint64_t random);

/* slcu_rng_below is uniform in [0, n) for 0 < n <= 2^32 (multiply-shift on
 * the top 32 bits; bias below n / 2^32); 0 when n is 0. */
uint64_t slcu_rng_below(slcu_rng_t *r, uint64_t n);

/* ---- durations ----------------------------------------------------------- */

/* slcu_duration_ms parses an Istio (Go time.ParseDuration) duration without
 * sign: one or more "<number><unit>" terms, the number with an optional
 * fraction, the unit one of h m s ms us µs ns ("1h", "1.5s", "1m30s",
 * "250us"). A bare number, even "0", is an error. The sum is exact in
 * nanoseconds (over UINT64_MAX ns is an error) and rounds to the nearest
 * millisecond, except that a nonzero duration under 0.5 ms gives 1 ms, so
 * "250us" never silently means "off". The core's cfg_duration_ms (and so
 * SLC_FIELD_DURATION) is this function. */
slc_status_t slcu_duration_ms(slc_str_t text, uint64_t *out_ms);

/* ---- query strings ------------------------------------------------------- */

/* slcu_query_next walks a raw query "a=1&b&c=3" (no leading '?'): it skips
 * empty parameters, stores the next one's name and value (a parameter
 * without '=' has an empty value) and advances |*rest|; false at the end.
 * Nothing is percent-decoded: names and values are views into the query.
 * A '#' ends the query (a fragment is never part of it, RFC 3986 3.5). */
bool slcu_query_next(slc_str_t *rest, slc_str_t *name, slc_str_t *value);

/* slcu_query_get finds the first parameter named exactly |name|. */
bool slcu_query_get(slc_str_t query, slc_str_t name, slc_str_t *value);

/* slcu_query_of is the query of a request target "/p?q#f" ("q"), or an
 * empty string with a NULL pointer when there is no '?'. */
slc_str_t slcu_query_of(slc_str_t target);

/* ---- identities ---------------------------------------------------------- */

/* slcu_principal_parts splits an Istio principal "TD/ns/NS/sa/SA" (a SPIFFE
 * ID without "spiffe://"; a leading "spiffe://" is skipped) into its trust
 * domain and namespace, views into |principal|. Either is an empty string
 * with a NULL pointer when absent: no namespace unless "/ns/" follows the
 * trust domain directly. */
void slcu_principal_parts(slc_str_t principal, slc_str_t *trust_domain, slc_str_t *ns);

/* ---- paths --------------------------------------------------------------- */

enum {
    SLCU_PATH_MERGE_SLASHES = 1u << 0, /* "//a///b" -> "/a/b" (Envoy's merge_slashes) */
    /* Percent-encoded unreserved characters (RFC 3986 2.3: ALPHA, DIGIT,
     * '-', '.', '_', '~'; hex in either case) are decoded, once: "%61" is
     * "a", "%2e%2e" is "..", "%252e" stays "%2e". */
    SLCU_PATH_DECODE_UNRESERVED = 1u << 1,
    SLCU_PATH_BACKSLASH = 1u << 2,      /* '\' is '/' */
    SLCU_PATH_DECODE_SLASHES = 1u << 3, /* "%2F" is '/', "%5C" is '\' (then BACKSLASH) */
};

/* Istio's meshConfig.pathNormalization as flag sets (NONE: no call). Under
 * each, a "%00" makes the path invalid (Istio answers 400). */
#define SLCU_PATH_ISTIO_BASE          (SLCU_PATH_DECODE_UNRESERVED | SLCU_PATH_BACKSLASH)
#define SLCU_PATH_ISTIO_MERGE_SLASHES (SLCU_PATH_ISTIO_BASE | SLCU_PATH_MERGE_SLASHES)
#define SLCU_PATH_ISTIO_DECODE_AND_MERGE_SLASHES                                                   \
    (SLCU_PATH_ISTIO_MERGE_SLASHES | SLCU_PATH_DECODE_SLASHES)

/* slcu_path_normalize removes "." and ".." segments from the path |in| (no
 * query) as RFC 3986 section 5.2.4 says, into |out| (|cap| bytes; never
 * more than in.len bytes are needed, or 1 for an empty path, which becomes
 * "/"). ".." above the root stays at the root. |flags| add, in Istio's
 * order: decoding (percent-encoded slashes, unreserved characters, one
 * pass), backslashes as slashes, then the dot segments, then merging runs
 * of '/'. Without a decoding flag percent-encoded dots stay as they are.
 * Returns the length written, SIZE_MAX when |cap| is too small, or
 * SLCU_PATH_INVALID for a "%00" under a decoding flag. |out| may equal
 * |in.ptr|. */
size_t slcu_path_normalize(slc_str_t in, char *out, size_t cap, unsigned flags);
#define SLCU_PATH_INVALID (SIZE_MAX - 1)

/* ---- CIDR ranges --------------------------------------------------------- */

/* slcu_cidr_t is one IPv4 or IPv6 range, bits past the prefix cleared. */
typedef struct slcu_cidr {
    uint8_t family; /* 4 or 6 */
    uint8_t prefix; /* 0..32 or 0..128 */
    uint8_t addr[16];
} slcu_cidr_t;

/* slcu_cidr_parse reads "192.0.2.0/24", "2001:db8::/32" or a bare address (a
 * full-length prefix). Host bits set past the prefix are an error (Istio
 * rejects "192.0.2.1/24" too), as are prefixes over the family's length. */
bool slcu_cidr_parse(slc_str_t text, slcu_cidr_t *out);

/* slcu_ip_parse reads one address, IPv4 dotted or IPv6 text, optionally in
 * brackets ("[::1]"), into a full-length range. */
bool slcu_ip_parse(slc_str_t text, slcu_cidr_t *out);

/* slcu_cidr_contains tells whether address |ip| (from slcu_ip_parse) is in
 * |range|. An IPv4-mapped IPv6 address (::ffff:a.b.c.d) matches IPv4
 * ranges, as a dual-stack socket reports IPv4 peers that way. */
bool slcu_cidr_contains(const slcu_cidr_t *range, const slcu_cidr_t *ip);

/* slcu_cidr_match_text parses |ip| text and tests it; false if it does not
 * parse. */
bool slcu_cidr_match_text(const slcu_cidr_t *range, slc_str_t ip);

/* ---- regular expressions (RE2) ------------------------------------------- */

/* Envoy's default for safe_regex's max_program_size. */
#define SLCU_REGEX_DEFAULT_MAX_PROGRAM_SIZE 100

/* slcu_regex_t is a compiled RE2 pattern: UTF-8, and every match is a FULL
 * match (anchored at both ends), as Envoy's safe_regex and Istio's regex
 * matches are. Matching runs in time linear in the input. */
typedef struct slcu_regex slcu_regex_t;

/* slcu_regex_error_t says why a pattern was refused: |msg| is RE2's reason
 * (or the program-size limit), |pos| the byte offset in the pattern where
 * the offending text starts (0 when the whole pattern is at fault). */
typedef struct slcu_regex_error {
    char msg[160];
    size_t pos;
} slcu_regex_error_t;

/* slcu_regex_compile compiles |len| bytes at |pattern|. A program larger
 * than |max_program_size| RE2 instructions (0: the Envoy default) is
 * refused, so that match cost stays bounded per input byte.
 * OWNERSHIP: the caller owns the result and frees it with slcu_regex_free,
 * after the last match (a filter: in config_free). NULL with |*err| filled
 * on error (or out of memory). Config time only: it allocates. */
slcu_regex_t *slcu_regex_compile(const char *pattern, size_t len, uint32_t max_program_size,
                                 slcu_regex_error_t *err);

/* slcu_regex_free frees a compiled pattern; NULL does nothing. */
void slcu_regex_free(slcu_regex_t *re);

/* slcu_regex_match tells whether |re| matches all |len| bytes at |s| (NULL
 * with len 0 is the empty string). THREADS: any number of threads at once. */
bool slcu_regex_match(const slcu_regex_t *re, const char *s, size_t len);

/* slcu_regex_program_size is RE2's ProgramSize of |re| (for limits and tests). */
int slcu_regex_program_size(const slcu_regex_t *re);

/* ---- string, header and query-parameter matchers ------------------------- */

typedef enum slcu_match_kind {
    SLCU_MATCH_EXACT = 0,
    SLCU_MATCH_PREFIX = 1,
    SLCU_MATCH_SUFFIX = 2,
    SLCU_MATCH_REGEX = 3,
    SLCU_MATCH_PRESENT = 4, /* the header or parameter exists, any value */
    SLCU_MATCH_ABSENT = 5,  /* it does not exist */
} slcu_match_kind_t;

/* slcu_strmatch_t is Istio's StringMatch (exact, prefix, regex) plus suffix
 * and presence. |ignore_case| applies to exact, prefix and suffix (ASCII);
 * a regex says (?i) itself.
 * OWNERSHIP: |text| and |re| are borrowed; they must outlive the matcher
 * (config-arena text, a regex freed in config_free). */
typedef struct slcu_strmatch {
    slcu_match_kind_t kind;
    bool ignore_case;
    slc_str_t text;
    const slcu_regex_t *re;
} slcu_strmatch_t;

/* slcu_strmatch_value tests a value. |v| NULL means "not there": only
 * SLCU_MATCH_ABSENT holds then; with a value, ABSENT never holds. */
bool slcu_strmatch_value(const slcu_strmatch_t *m, const slc_str_t *v);

/* slcu_kvmatch_t is one header or query-parameter condition: a name and a
 * string match on its value. Header names are matched case-insensitively
 * (store them lower-cased for the host's lookups); parameter names
 * exactly. |invert| negates the outcome (Envoy's invert_match). */
typedef struct slcu_kvmatch {
    slc_str_t name;
    slcu_strmatch_t m;
    bool invert;
} slcu_kvmatch_t;

/* slcu_header_match tests a header condition given the header's value
 * (NULL: the request has no such header). The caller looks the header up
 * (slc_header_get), so this works on any header source. */
bool slcu_header_match(const slcu_kvmatch_t *kv, const slc_str_t *value);

/* slcu_query_match tests a query-parameter condition against the raw query
 * (slcu_query_of): the first parameter of that name is the one tested. */
bool slcu_query_match(const slcu_kvmatch_t *kv, slc_str_t query);

#ifdef __cplusplus
}
#endif

#endif
