/* stream: one request and its response, whatever codec brought it.
 *
 * A downstream codec (h1down.c now; HTTP/2 next) parses a request head,
 * makes a stream (stream_new), fills its request facts and headers, and
 * starts it (stream_start). From then on the stream runs the filter chain,
 * makes its upstream attempts through the pool's exchanges (upstream.h),
 * and talks back to the codec only through the codec's down_ops_t: request
 * body data in, response head, body data and end out. The codec feeds it
 * events: input (stream_pump_request), room for output
 * (stream_pump_response), the client gone (stream_abort_downstream), the
 * idle timer (stream_idle_timeout).
 *
 * OWNERSHIP: a stream lives in its own arena and frees itself when it ends
 * (after down_ops_t.done, or in stream_abort_downstream). A codec must not
 * touch a stream after either. THREAD: its worker's.
 */
#ifndef SLUICE_STREAM_H
#define SLUICE_STREAM_H

#include "coretypes.h"
#include "upstream.h"

/* The body bytes a stream keeps for a retry or a mirror, at most. */
#define REPLAY_LIMIT (64 * 1024)

/* stream_tried: |e| was already attempted by |s|. */
static inline bool stream_tried(const stream_t *s, const slc_endpoint_t *e)
{
    for (uint32_t i = 0; i < s->ntried; i++)
        if (s->tried[i] == e)
            return true;
    return false;
}

/* stream_uncount_ep gives back the active-request count |s| holds on its
 * endpoint, if any. */
static inline void stream_uncount_ep(stream_t *s)
{
    if (s->counted_ep)
        atomic_fetch_sub_explicit(&s->counted_ep->st->active, 1, memory_order_relaxed);
    s->counted_ep = NULL;
}

/* replay_copy_to appends the kept body to |out| (a copy: |out| may outlive
 * the stream, as a mirror's does). */
static inline void replay_copy_to(const replay_t *r, struct evbuffer *out)
{
    for (const replay_piece_t *p = r->head; p; p = p->next)
        evbuffer_add(out, p->data, p->len);
}

/* down_ops_t: what a stream asks of the downstream codec it belongs to.
 * Each takes the stream; the codec finds its own state from it (s->down). */
typedef struct down_ops {
    /* Request body, as h1body_rd_next over the codec's input: H1B_DATA
     * leaves *n data bytes at the front of *src, to take and report with
     * recv_took. */
    h1body_res_t (*recv_next)(stream_t *s, struct evbuffer **src, size_t *n, const char **reason);
    void (*recv_took)(stream_t *s, size_t n);
    /* After recv_next said H1B_END: the request's trailer fields into
     * |out| (the stream's arena; none leaves it empty). */
    void (*recv_trailers)(stream_t *s, hdrs_t *out);
    /* The client asked to be told to send its body (100-continue): now is
     * the time, if the codec has not yet. */
    void (*send_continue)(stream_t *s);
    /* Writes the response head from the stream's status, reason, resp_hdrs,
     * resp_body and resp_length. False if it could not: the stream then
     * ends with its connection cut (closing_after). */
    bool (*send_head)(stream_t *s);
    /* Response body data out, framed by the codec; send_pending is what
     * waits to be written (the stream stops feeding above HIGH_WM until
     * the codec calls stream_pump_response again). */
    size_t (*send_pending)(stream_t *s);
    void (*send_data)(stream_t *s, struct evbuffer *src, size_t n);
    void (*send_bytes)(stream_t *s, const void *p, size_t n);
    /* The end of the response body, with s->resp_trailers if the framing
     * can carry them. */
    void (*send_end)(stream_t *s);
    /* The stream is over and freed: |down| is s->down as it was; |close|
     * says the connection's state is not trustworthy after it (a body not
     * read to its end, a cut response). */
    void (*done)(void *down, bool close);
} down_ops_t;

/* Stop moving body bytes into a buffer above HIGH_WM; a codec resumes its
 * reading when output drains below LOW_WM. */
#define STREAM_HIGH_WM (256 * 1024)
#define STREAM_LOW_WM  (64 * 1024)

/* stream_new makes a stream on |w| for listener |gl| of generation |g| (the
 * worker's current one), answering through |ops| with codec state |down|;
 * |conn| is the connection filters see, |lst| its listener's counters.
 * NULL when the arena cannot hold it. The codec then fills the request:
 * method, path, authority, is_head, protocol, req_body, req_length,
 * req_done, headers (hdrs_push), and calls stream_proxy_headers. */
stream_t *stream_new(worker_t *w, gen_t *g, glistener_t *gl, const down_ops_t *ops, void *down,
                     slc_conn_t *conn, lstats_t *lst);
/* stream_discard frees a stream that was never started. */
void stream_discard(stream_t *s);

/* Where a codec's header pass found the proxy headers in s->req_hdrs
 * (indexes; -1: none). */
typedef struct stream_hdr_at {
    ssize_t xff, xfp, via, rid;
} stream_hdr_at_t;

/* stream_proxy_headers edits the proxy headers as Envoy's connection
 * manager does (use_remote_address, xff_num_trusted_hops): the trusted
 * client address, x-forwarded-for, the scheme (https over a secured
 * connection, or a trusted hop's x-forwarded-proto), via, x-request-id.
 * |peer_ip| must live as long as the connection. */
void stream_proxy_headers(stream_t *s, const stream_hdr_at_t *at, const char *peer_ip, bool secure);

/* stream_start creates per-stream filter state and runs the request chain.
 * The chain may end the stream (and its codec's connection) before this
 * returns. */
void stream_start(stream_t *s);

void stream_pump_request(stream_t *s);
void stream_pump_response(stream_t *s);
/* stream_abort_downstream: the client went away mid-stream; the stream
 * ends and is freed (down_ops_t.done is not called). */
void stream_abort_downstream(stream_t *s);
/* stream_progress is a cheap "did anything move" mark for the codec's
 * stream idle timer; stream_idle_timeout ends a stream that did not move
 * for a whole idle_timeout (408 before the request was read, else 504). */
uint64_t stream_progress(const stream_t *s);
void stream_idle_timeout(stream_t *s);

/* Header lists in the stream's arena (hostapi.c, codecs). */
int hdrs_push(stream_t *s, hdrs_t *h, slc_str_t name, slc_str_t value);
slc_status_t hdrs_set(stream_t *s, hdrs_t *h, slc_str_t name, slc_str_t value, bool append);
int hdrs_remove(hdrs_t *h, slc_str_t name);
hdr_t *hdrs_find(hdrs_t *h, slc_str_t name);

/* What filters call through the host table (hostapi.c). */
void stream_resume(stream_t *s);
slc_status_t stream_local_reply(stream_t *s, int status, slc_str_t ctype, slc_str_t body);
void stream_chain_continue(stream_t *s);
void stream_upstream_failed(stream_t *s, int status, uint32_t flag, const char *body);
/* stream_attempt_failed: the current upstream attempt ended without a
 * usable response. Reports it, retries if the policy allows, else answers
 * |status| with |flag|. */
void stream_attempt_failed(stream_t *s, slc_attempt_result_t res, int status, uint32_t flag,
                           const char *body);
/* stream_report_attempt runs on_upstream_result filters. */
void stream_report_attempt(stream_t *s, slc_attempt_result_t res, int status);
/* stream_can_retry: another attempt is possible (no response head sent
 * downstream, the body replayable, the worker not draining, and fewer than
 * STREAM_MAX_ATTEMPTS made), whoever decides it. */
bool stream_can_retry(const stream_t *s);
/* The router accepts up to 100 retries; a filter deciding its own retries
 * (attempt_retry) is held to the same bound, so none can loop forever. */
#define STREAM_MAX_ATTEMPTS 101

#endif
