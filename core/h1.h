/* h1: HTTP/1.1 message-head parser and chunked-framing decoder (RFC 9112).
 *
 * Pure functions over caller-provided bytes: no allocation, no I/O. Views in
 * the results point into the caller's buffer, which must stay unchanged while
 * they are used. Strict: anything RFC 9110/9112 forbids, or that request
 * smuggling relies on, is an error, never "repaired".
 */
#ifndef SLUICE_H1_H
#define SLUICE_H1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* h1_hdr_kind: the header names the core acts on, classified once when a
 * head is parsed (h1_classify) so later passes switch on a byte instead of
 * comparing strings. Everything else is H1H_OTHER. */
typedef enum h1_hdr_kind {
    H1H_OTHER = 0,
    /* hop-by-hop (RFC 9110 7.6.1), in one range: see h1_kind_is_hop */
    H1H_CONNECTION,
    H1H_KEEP_ALIVE,
    H1H_PROXY_CONNECTION,
    H1H_TE,
    H1H_TRAILER,
    H1H_TRANSFER_ENCODING,
    H1H_UPGRADE,
    /* end-to-end, but framing or answered by the proxy itself */
    H1H_CONTENT_LENGTH,
    H1H_EXPECT,
    H1H_HOST,
    /* proxy headers the core edits */
    H1H_X_FORWARDED_FOR,
    H1H_X_FORWARDED_PROTO,
    H1H_VIA,
    H1H_X_REQUEST_ID,
} h1_hdr_kind_t;

static inline bool h1_kind_is_hop(unsigned kind)
{
    return kind >= H1H_CONNECTION && kind <= H1H_UPGRADE;
}

typedef struct h1_header {
    const char *name;
    size_t name_len;
    const char *value; /* leading/trailing OWS stripped */
    size_t value_len;
    uint8_t kind; /* h1_hdr_kind_t of |name| */
} h1_header_t;

/* h1_limits_t: a zero field (or a NULL |lim|) means the default: 8192 bytes
 * of request/status line, 65536 bytes of head, 100 headers. The header count
 * limit is further capped by the caller's |max_hdrs|. */
typedef struct h1_limits {
    size_t max_request_line; /* bytes, request line or status line; 414/431 past it */
    size_t max_head;         /* bytes, whole head incl. request line; 431 past it */
    size_t max_headers;      /* header count; 431 past it */
} h1_limits_t;

typedef enum h1_body {
    H1_BODY_NONE = 0,    /* no body */
    H1_BODY_LENGTH = 1,  /* content_length bytes */
    H1_BODY_CHUNKED = 2, /* Transfer-Encoding: chunked (final coding) */
    H1_BODY_EOF = 3,     /* response only: body until the connection closes */
} h1_body_t;

typedef enum h1_result {
    H1_OK = 1,         /* complete head parsed */
    H1_INCOMPLETE = 0, /* need more bytes (and none of the limits is hit yet) */
    H1_ERROR = -1,     /* invalid; *out_status and *out_reason say why */
} h1_result_t;

typedef struct h1_request {
    const char *method;
    size_t method_len;
    const char *target; /* request-target as sent */
    size_t target_len;
    int version_minor; /* 0 or 1 (HTTP/1.0 or HTTP/1.1) */
    h1_header_t *headers;
    size_t nheaders;
    size_t head_len; /* bytes of the head, including the final CRLF */
    h1_body_t body;
    uint64_t content_length; /* when body == H1_BODY_LENGTH */
    bool keep_alive;         /* per version default and Connection tokens */
    bool expect_continue;    /* Expect: 100-continue */
    bool upgrade;            /* Connection: upgrade + Upgrade present */
    const char *host;        /* Host header value (NULL if absent) */
    size_t host_len;
} h1_request_t;

typedef struct h1_response {
    int status;
    const char *reason;
    size_t reason_len;
    int version_minor;
    h1_header_t *headers;
    size_t nheaders;
    size_t head_len;
    h1_body_t body;
    uint64_t content_length;
    bool keep_alive;
} h1_response_t;

/* h1_parse_request parses the head at |buf|[0..len) into |out|, storing at
 * most |max_hdrs| headers in |hdrs| (out->headers points there).
 *
 * Returns H1_OK, H1_INCOMPLETE or H1_ERROR. On H1_ERROR, *out_status is the
 * status to answer with (400 malformed, 414 request line too long, 431 head
 * too large or too many headers, 501 unknown transfer coding, 505 version)
 * and *out_reason a static string for logs and counters ("bad_header_name",
 * "cl_te_conflict", ...). Validates: method token, request-target form,
 * version, header names (token), values (no CTL but HTAB, no bare CR), no
 * obs-fold, no whitespace before colon, bare LF as line end rejected,
 * Content-Length syntax and duplicates that differ, Transfer-Encoding with
 * Content-Length, Transfer-Encoding on HTTP/1.0, chunked not last, a missing
 * Host on HTTP/1.1 and more than one Host.
 *
 * The parser keeps no state: call it again with the whole buffered head
 * (plus whatever arrived) after H1_INCOMPLETE. Empty lines (CRLF) before the
 * request line are skipped and counted in head_len. Bytes after head_len
 * (body, pipelined requests) are not looked at. The limits hold even while
 * incomplete: |len| >= max_head without a complete head is 431, and a
 * request line already past max_request_line is 414. Garbage in the method
 * fails as soon as it arrives.
 *
 * Reasons: bare_lf, bare_cr, bad_method, bad_target, bad_request_line,
 * bad_version, version_not_supported (505), request_line_too_long (414),
 * head_too_large, too_many_headers (431), obs_fold, space_before_colon,
 * bad_header_name, bad_header_value, bad_content_length, cl_mismatch,
 * cl_te_conflict, te_http10, te_unsupported (501), te_chunked_twice,
 * bad_transfer_encoding, missing_host, duplicate_host, bad_host.
 *
 * LIFETIME: on every return *out is fully (re)initialised; its pointers and
 * |hdrs| entries borrow |buf|. *out_reason is a static string.
 * |out_status| and |out_reason| may be NULL. */
h1_result_t h1_parse_request(const char *buf, size_t len, const h1_limits_t *lim, h1_header_t *hdrs,
                             size_t max_hdrs, h1_request_t *out, int *out_status,
                             const char **out_reason);

/* h1_parse_response parses a response head from an upstream. |head_request|
 * and |connect_request| change the body rules (RFC 9112 section 6.3). 1xx,
 * 204 and 304 have no body. Errors make *out_reason non-NULL (the proxy
 * answers 502).
 *
 * There is no |connect_request| parameter: a 2xx answer to CONNECT starts a
 * tunnel right after the head, whatever its Content-Length or
 * Transfer-Encoding say, and the caller must treat it so. Transfer-Encoding
 * wins over Content-Length but clears keep_alive; a Transfer-Encoding whose
 * final coding is not chunked, or no framing at all, is H1_BODY_EOF with
 * keep_alive false. Leading empty lines are an error here. Reasons are the
 * request parser's header reasons plus bad_version, bad_status_line,
 * bad_status (outside 100-599), bad_reason and status_line_too_long.
 * LIFETIME: as for h1_parse_request. */
h1_result_t h1_parse_response(const char *buf, size_t len, const h1_limits_t *lim,
                              bool head_request, h1_header_t *hdrs, size_t max_hdrs,
                              h1_response_t *out, const char **out_reason);

/* Chunked framing decoder, incremental. The caller alternates:
 *
 *   while (!h1_chunked_done(st)) {
 *       if (h1_chunked_in_data(st)) {
 *           n = min(h1_chunked_data_left(st), bytes available);
 *           ... take n bytes of data ...;
 *           h1_chunked_data_consumed(st, n);
 *       } else {
 *           r = h1_chunked_parse(st, buf, len, &used);   // framing only
 *           ... |used| bytes of framing consumed (even on H1_INCOMPLETE) ...
 *       }
 *   }
 *
 * h1_chunked_parse consumes chunk-size lines (with extensions), the CRLF after
 * data, the last-chunk and trailer section. It never consumes data bytes.
 * Returns H1_OK when it reached data or the end, H1_INCOMPLETE when it needs
 * more bytes, H1_ERROR on bad framing (*out_reason set). A chunk-size line or
 * trailer section over the limits is an error.
 *
 * Consumption: h1_chunked_parse consumes every framing byte it is given as
 * it goes, so |used| is what the caller drains from its buffer, whatever the
 * result. H1_INCOMPLETE means all |len| bytes were consumed (used == len) and
 * the caller just waits for more; it never passes the same bytes twice. On
 * H1_OK, |used| stops right after the size line's LF (now in data) or after
 * the final CRLF (done; bytes past it belong to the next message). On
 * H1_ERROR the state is sticky and the connection must be closed.
 *
 * Trailer fields are validated like header fields and then dropped: they
 * are not returned (a proxy may discard trailers, RFC 9110 section 6.5).
 * Chunk extensions are validated and dropped likewise.
 *
 * Reasons: bad_chunk_size, chunk_size_overflow (more than 16 hex digits, or
 * above 2^62), bad_chunk_ext (including whitespace not followed by ';'),
 * bare_cr, bare_lf, bad_chunk_end (no CRLF right after data),
 * chunk_line_too_long, bad_trailer, obs_fold, trailers_too_large. */
typedef struct h1_chunked {
    int state;
    uint64_t left;       /* data bytes left in the current chunk */
    size_t line_len;     /* bytes of the current framing line seen so far */
    size_t trailer_len;  /* bytes of trailers seen so far */
    size_t max_line;     /* 0 means 4096 */
    size_t max_trailers; /* 0 means 8192 */
} h1_chunked_t;

/* h1_chunked_init resets |st| to expect a chunk-size line, with default
 * limits; set max_line/max_trailers after it. */
void h1_chunked_init(h1_chunked_t *st);
h1_result_t h1_chunked_parse(h1_chunked_t *st, const char *buf, size_t len, size_t *out_used,
                             const char **out_reason);
bool h1_chunked_in_data(const h1_chunked_t *st);
uint64_t h1_chunked_data_left(const h1_chunked_t *st);
void h1_chunked_data_consumed(h1_chunked_t *st, uint64_t n);
bool h1_chunked_done(const h1_chunked_t *st);
/* h1_chunked_in_trailers: past the last chunk, in the trailer section (or
 * its final CRLF). A size line's parse stops at its LF, so a caller that
 * feeds framing a line at a time knows which bytes are trailers. */
bool h1_chunked_in_trailers(const h1_chunked_t *st);

/* h1_token_eq compares a token case-insensitively with a NUL-terminated
 * lower-case literal. */
bool h1_token_eq(const char *s, size_t len, const char *lower);

/* h1_is_hop_by_hop: Connection, Keep-Alive, Proxy-Connection, TE, Trailer,
 * Transfer-Encoding, Upgrade (RFC 9110 section 7.6.1). */
bool h1_is_hop_by_hop(const char *name, size_t len);

/* h1_classify: the h1_hdr_kind_t of a header name (case-insensitive). One
 * switch on the length and at most two compares. */
h1_hdr_kind_t h1_classify(const char *name, size_t len);

/* h1_connection_lists reports whether the Connection header values in
 * |hdrs| list |name| as a connection option (to strip it when forwarding). */
bool h1_connection_lists(const h1_header_t *hdrs, size_t n, const char *name, size_t len);

/* h1_connection_names_others: the Connection fields among |hdrs| (by their
 * classified kind) name some field other than "close" and the hop-by-hop
 * ones, which go anyway. When false, which is nearly always, no field needs
 * checking with h1_connection_lists. */
bool h1_connection_names_others(const h1_header_t *hdrs, size_t n);

/* h1_conn_names_t: what a head's Connection fields name, gathered once so
 * that checking every field against them is a pass over those fields, not
 * over the whole head. Empty (n == 0) when they name nothing but close and
 * hop-by-hop fields. LIFETIME: views into the parsed head. */
typedef struct h1_conn_names {
    h1_header_t few[8];
    const h1_header_t *v; /* |few|, or the whole head past 8 fields */
    size_t n;
} h1_conn_names_t;
void h1_conn_names_init(h1_conn_names_t *c, const h1_header_t *hdrs, size_t n);
/* h1_conn_names_has: field |name| is named by the Connection fields. */
static inline bool h1_conn_names_has(const h1_conn_names_t *c, const char *name, size_t len)
{
    return c->n && h1_connection_lists(c->v, c->n, name, len);
}

/* h1_valid_header_name / h1_valid_header_value: RFC 9110 token and
 * field-value checks (used when filters set headers). */
bool h1_valid_header_name(const char *s, size_t len);
/* (h1_valid_header_value also rejects leading or trailing SP/HTAB, which
 * the field-value grammar does not allow; an empty value is valid.) */
bool h1_valid_header_value(const char *s, size_t len);

#endif
