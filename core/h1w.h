/* h1w: HTTP/1.1 message-head writers (the serializing half of the codec).
 *
 * Pure functions, like h1.c: no allocation, no I/O. Each writer has a size
 * function that bounds what it writes, and the writer itself checks every
 * byte against the room it was given, so a wrong bound cannot write past a
 * buffer: the head is refused instead (0), and the caller fails the stream.
 * Before this, the request head was sized from the authority plus fixed
 * slack while a long IPv6 endpoint and a 19-digit length could outgrow it.
 *
 * OWNERSHIP: the caller owns |buf| and everything the descriptions point to;
 * nothing is kept after a call returns.
 */
#ifndef SLUICE_H1W_H
#define SLUICE_H1W_H

#include "h1.h"

#define SLC_NO_WRAPPERS
#include <sluice/types.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* hdr_t is one header field; both strings are views owned by the caller. */
typedef struct hdr {
    slc_str_t name, value;
} hdr_t;

typedef struct hdrs {
    hdr_t *v;
    size_t n, cap;
} hdrs_t;

/* is_framing_field: headers a header list never forwards, whoever put them
 * there (upstream or filter): hop-by-hop ones and content-length. The
 * writers put the framing in themselves. */
static inline bool is_framing_field(slc_str_t name)
{
    h1_hdr_kind_t k = h1_classify(name.ptr, name.len);
    return h1_kind_is_hop(k) || k == H1H_CONTENT_LENGTH;
}

typedef enum h1w_framing {
    H1W_NONE,         /* no framing field */
    H1W_LENGTH,       /* content-length: |length| */
    H1W_CHUNKED,      /* transfer-encoding: chunked */
    H1W_EMPTY_LENGTH, /* content-length: 0 (a method that carries a body, without one) */
} h1w_framing_t;

/* h1w_req_t describes a request head to send upstream. */
typedef struct h1w_req {
    slc_str_t method, path;
    const hdr_t *hdrs; /* framing fields in it are skipped */
    size_t nhdrs;
    slc_str_t host; /* written as "host:" when |hdrs| has none */
    h1w_framing_t framing;
    uint64_t length;
} h1w_req_t;

typedef enum h1w_conn {
    H1W_CONN_NONE,       /* the version's default */
    H1W_CONN_CLOSE,      /* connection: close */
    H1W_CONN_KEEP_ALIVE, /* connection: keep-alive (HTTP/1.0 clients) */
} h1w_conn_t;

/* h1w_resp_t describes a response head to send downstream. */
typedef struct h1w_resp {
    int status;       /* 100..999 */
    slc_str_t reason; /* never empty */
    const hdr_t *hdrs;
    size_t nhdrs;
    bool keep_cl; /* a bodiless response keeps the list's content-length (HEAD, 304) */
    h1w_framing_t framing;
    uint64_t length;
    h1w_conn_t conn;
} h1w_resp_t;

/* h1w_request_size is at least what h1w_request writes for |r|. */
size_t h1w_request_size(const h1w_req_t *r);
/* h1w_request writes |r| into |buf| (|cap| bytes) and returns its length,
 * or 0 if it did not fit (then |buf| holds a partial head: never send it). */
size_t h1w_request(const h1w_req_t *r, char *buf, size_t cap);

size_t h1w_response_size(const h1w_resp_t *r);
size_t h1w_response(const h1w_resp_t *r, char *buf, size_t cap);

#endif
