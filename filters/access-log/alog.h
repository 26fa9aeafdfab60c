/* access-log internals shared by the filter (access_log.c), the pure
 * parsers (alog_format.c), the unit test and the fuzz target.
 *
 * alog_format.c calls no host function: a format string or a filter
 * expression is compiled from bytes alone, so the fuzz target links it
 * without a host table. OWNERSHIP: everything a compile function returns
 * is malloc'd and released by the matching *_free.
 */
#ifndef SLUICE_ALOG_H
#define SLUICE_ALOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Operators of a compiled format. ALOG_OP_LITERAL is a piece of text. */
typedef enum alog_op {
    ALOG_OP_LITERAL = 0,
    ALOG_OP_START_TIME,
    ALOG_OP_REQ,
    ALOG_OP_RESP,
    ALOG_OP_PROTOCOL,
    ALOG_OP_RESPONSE_CODE,
    ALOG_OP_RESPONSE_FLAGS,
    ALOG_OP_BYTES_RECEIVED,
    ALOG_OP_BYTES_SENT,
    ALOG_OP_DURATION,
    ALOG_OP_RESPONSE_DURATION,
    ALOG_OP_UPSTREAM_HOST,
    ALOG_OP_UPSTREAM_CLUSTER,
    ALOG_OP_DOWNSTREAM_REMOTE_ADDRESS,
    ALOG_OP_DOWNSTREAM_LOCAL_ADDRESS,
    ALOG_OP_DOWNSTREAM_PEER_URI_SAN,
    ALOG_OP_REQUESTED_SERVER_NAME,
    ALOG_OP_REQUEST_ID,
    ALOG_OP_ROUTE_NAME,
    ALOG_OP_RBAC_POLICY,
    ALOG_OP_FACT,
    ALOG_OP_UPSTREAM_REQUEST_ATTEMPT_COUNT,
    /* Accepted, always "-": SDK 1.4 does not expose what they need. */
    ALOG_OP_UNAVAILABLE,
} alog_op_t;

typedef struct alog_piece {
    alog_op_t op;
    char *text;     /* LITERAL: the text; START_TIME: strftime format or NULL;
                     * REQ/RESP: the header; FACT: the fact name */
    size_t len;     /* of text */
    char *alt;      /* REQ/RESP: the header after '?', or NULL */
    size_t alt_len; /* of alt */
    size_t max_len; /* ":N" truncation; 0 = none */
} alog_piece_t;

typedef struct alog_fmt {
    alog_piece_t *pieces;
    size_t n;
} alog_fmt_t;

/* alog_fmt_compile parses |s| (|len| bytes, need not be NUL-terminated).
 * On failure returns false, fills |err| (NUL-terminated) and *col with the
 * 1-based column of the problem, and leaves |out| empty. */
bool alog_fmt_compile(const char *s, size_t len, alog_fmt_t *out, char *err, size_t errlen,
                      size_t *col);
void alog_fmt_free(alog_fmt_t *f);
/* alog_fmt_numeric: the format is one operator whose value is a number
 * (a typed JSON value); false otherwise. */
bool alog_fmt_numeric(const alog_fmt_t *f);

/* Filter expressions: Istio Telemetry filter.expression simple forms,
 * "response.code >= 400 && response.duration > 100 || ...", compiled to a
 * disjunction of conjunctions (&& binds tighter than ||). */
typedef enum alog_cmp { ALOG_EQ, ALOG_NE, ALOG_LT, ALOG_LE, ALOG_GT, ALOG_GE } alog_cmp_t;
typedef enum alog_attr { ALOG_ATTR_CODE, ALOG_ATTR_DURATION } alog_attr_t;

typedef struct alog_term {
    alog_attr_t attr;
    alog_cmp_t cmp;
    int64_t value;
    bool or_next; /* "||" follows this term (ends a conjunction) */
} alog_term_t;

typedef struct alog_expr {
    alog_term_t *terms;
    size_t n;
} alog_expr_t;

bool alog_expr_compile(const char *s, size_t len, alog_expr_t *out, char *err, size_t errlen,
                       size_t *col);
void alog_expr_free(alog_expr_t *e);
/* alog_expr_eval with the response code and the duration in ms. An empty
 * expression is true. */
bool alog_expr_eval(const alog_expr_t *e, int64_t code, int64_t duration_ms);

/* alog_flag_names: Envoy's short names of the SLC_RF_* bits, by bit index;
 * alog_flag_bit: the bit for a name, 0 if unknown. */
extern const char *const alog_flag_names[];
extern const size_t alog_nflag_names;
uint32_t alog_flag_bit(const char *name, size_t len);

/* alog_strftime formats |us| (Unix microseconds, UTC) with |fmt| (strftime
 * plus Envoy's %f (9 digits) and %1f..%9f fractional seconds; NULL: the
 * default ISO 8601 "%Y-%m-%dT%H:%M:%S.%3fZ"). Returns the length written
 * (at most cap - 1, NUL-terminated). */
size_t alog_strftime(const char *fmt, uint64_t us, char *out, size_t cap);

/* alog_utf8_sanitize copies |len| bytes of |s| into |out| (capacity
 * 3 * len + 1), replacing each byte that does not start or continue a
 * valid UTF-8 sequence with U+FFFD. Returns the output length. */
size_t alog_utf8_sanitize(const char *s, size_t len, char *out);

/* For the unit test: write every buffered line now (as the writer thread
 * does every flush interval), from the calling thread. */
struct alog_cfg;
void alog_flush_now(struct alog_cfg *c);

#endif
