/* h1body: HTTP/1.1 message-body framing over evbuffers, both ways.
 *
 * The reader strips a body's framing (Content-Length, chunked, or "until
 * the connection closes") so that what a codec hands the stream is data
 * only; the writer frames data for the peer it goes to. A stream moves
 * bodies between the two without knowing either side's framing, which is
 * what lets an HTTP/2 codec take either end later.
 *
 * Both work in place on the caller's evbuffers: data is moved, not copied,
 * as far as evbuffer_remove_buffer allows (whole chains move; a partial
 * chain's bytes are copied).
 *
 * OWNERSHIP: the states are plain values inside the caller's objects; no
 * allocation. THREAD: the caller's.
 */
#ifndef SLUICE_H1BODY_H
#define SLUICE_H1BODY_H

#include "h1.h"
#include "h1w.h"

#include <event2/buffer.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum h1body_res {
    H1B_ERROR = -1, /* bad framing: *reason says why; the connection must close */
    H1B_MORE = 0,   /* no data at the front of the input yet */
    H1B_DATA = 1,   /* *n data bytes are at the front of the input */
    H1B_END = 2,    /* the body is complete; what follows is the next message */
} h1body_res_t;

typedef struct h1body_rd {
    h1_body_t kind;
    uint64_t left;  /* H1_BODY_LENGTH: data bytes still to come */
    uint64_t taken; /* data bytes taken so far */
    h1_chunked_t ch;
    bool pending; /* a H1B_DATA result not yet answered by h1body_rd_took */
    /* The trailer section as it came (validated by the chunk parser), up to
     * but not including its final CRLF; created at the first trailer byte.
     * OWNERSHIP: the reader's; h1body_rd_release frees it. */
    struct evbuffer *trailers;
} h1body_rd_t;

/* h1body_rd_init prepares |r| for a body of |kind| (|length| bytes for
 * H1_BODY_LENGTH); h1body_rd_release frees what the last body kept (its
 * trailers): call it before init on a reader that was used, and when its
 * owner goes. */
void h1body_rd_init(h1body_rd_t *r, h1_body_t kind, uint64_t length);
void h1body_rd_release(h1body_rd_t *r);
/* h1body_rd_trailers hands over a chunked body's trailer fields, read to
 * its end: *out gets |*n| fields whose array and bytes come from
 * |alloc|(|actx|, size) (NULL from it: the trailers are dropped). Without
 * trailers, *n is 0. */
void h1body_rd_trailers(const h1body_rd_t *r, void *(*alloc)(void *actx, size_t size), void *actx,
                        hdr_t **out, size_t *n);

/* h1body_rd_next consumes framing at the front of |src| (draining it) until
 * data or the end of the body is at its front. On H1B_DATA the first *n
 * bytes of |src| are body data: the caller takes them (moves or drains
 * exactly those, no more) and says so with h1body_rd_took before calling
 * again; it may take fewer than *n. A close-delimited body (H1_BODY_EOF)
 * never returns H1B_END: the caller ends it when the connection closes. */
h1body_res_t h1body_rd_next(h1body_rd_t *r, struct evbuffer *src, size_t *n, const char **reason);
void h1body_rd_took(h1body_rd_t *r, size_t n);
/* h1body_rd_done: the body was read to its end (not for H1_BODY_EOF). */
bool h1body_rd_done(const h1body_rd_t *r);

typedef struct h1body_wr {
    bool chunked; /* frame each piece as a chunk; else the bytes go as they are */
    bool ended;
} h1body_wr_t;

void h1body_wr_init(h1body_wr_t *w, bool chunked);
/* h1body_wr_move moves the first |n| bytes of |src| to |dst|, framed. */
void h1body_wr_move(h1body_wr_t *w, struct evbuffer *src, size_t n, struct evbuffer *dst);
/* h1body_wr_add copies |n| bytes at |p| to |dst|, framed. */
void h1body_wr_add(h1body_wr_t *w, const void *p, size_t n, struct evbuffer *dst);
/* h1body_wr_end writes the end of the body once: the last chunk with the
 * |n| trailer fields |tr| if chunked (fields that frame or route a message
 * are left out); an unchunked body has no place for trailers. */
void h1body_wr_end(h1body_wr_t *w, struct evbuffer *dst, const hdr_t *tr, size_t n);

#endif
