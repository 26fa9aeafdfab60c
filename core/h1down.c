/* h1down: the downstream HTTP/1.1 codec. It accepts connections, parses
 * request heads (with the resumable scan below), makes a stream for each
 * (stream.h) and serves it through down_ops_t: the request body unframed
 * (content-length or chunked), the response head and body framed for the
 * client (content-length, chunked for HTTP/1.1, close-delimited for 1.0),
 * 100-continue, keep-alive and pipelining, the header, idle and stream idle
 * timers, and what a malformed request gets.
 *
 * One stream at a time per connection; pipelined requests wait in the
 * input buffer and are taken up (via the deferred |kick| event, never by
 * recursion) when the previous stream is done.
 *
 * OWNERSHIP: a worker owns its dconns (w->conns); dconn_close frees one,
 * ending its stream first. The stream is the stream module's: the codec
 * only points at it (dc->s) until done or abort.
 */
#include "h1down.h"
#include "log.h"
#include "server.h"
#include "stream.h"

#include <sluice/util.h>

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_HDRS_HARD 1000

static void dconn_process(dconn_t *dc);
static void dconn_close(dconn_t *dc);
static const down_ops_t h1_down_ops;

/* ---- timers ----------------------------------------------------------- */

/* dconn_listener: the connection's listener in the worker's current
 * generation, or NULL if that generation dropped it. Looked up by name once
 * per generation and cached on the connection, keyed by the generation's
 * id (never reused, unlike its address). */
static glistener_t *dconn_listener(dconn_t *dc)
{
    gen_t *g = dc->w->cur ? dc->w->cur->gen : NULL;
    if (!g)
        return NULL;
    if (dc->gl_gen != g->id) {
        dc->gl = gen_listener(g, dc->ls->name);
        dc->gl_gen = g->id;
    }
    return dc->gl;
}

static void dconn_arm_timer(dconn_t *dc)
{
    glistener_t *gl = dconn_listener(dc);
    uint64_t ms = 10000;
    if (gl)
        ms = dc->head_seen && !dc->s ? gl->conf->header_timeout_ms : gl->conf->idle_timeout_ms;
    struct timeval tv;
    evtimer_add(&dc->timer, worker_timeout(dc->w, ms, &tv));
}

static void on_dconn_timer(evutil_socket_t fd, short what, void *arg)
{
    dconn_t *dc = arg;
    (void)fd;
    (void)what;
    if (dc->s) {
        /* Stream idle timeout (Envoy's stream_idle_timeout): nothing moved
         * for a whole idle_timeout. The route timeout, when set, is usually
         * shorter and answers 504 first. */
        stream_t *s = dc->s;
        if (s->paused || stream_progress(s) != dc->progress) {
            dc->progress = stream_progress(s);
            dconn_arm_timer(dc);
            return;
        }
        stat_inc(stats_getf(dc->w->stats,
                            "sluice_downstream_protocol_errors_total{listener=\"%s\","
                            "reason=\"stream_idle_timeout\"}",
                            dc->ls->name));
        stream_idle_timeout(s);
        return;
    }
    if (dc->head_seen) {
        /* A partial head that never completed: slow or stuck client. */
        static const char r408[] = "HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\n"
                                   "connection: close\r\n\r\n";
        sio_write(&dc->io, r408, sizeof(r408) - 1);
        stat_inc(stats_getf(dc->w->stats,
                            "sluice_downstream_protocol_errors_total{listener=\"%s\","
                            "reason=\"header_timeout\"}",
                            dc->ls->name));
        dc->closing = true;
        sio_read_enable(&dc->io, false);
        if (sio_pending(&dc->io) == 0)
            dconn_close(dc);
        return;
    }
    dconn_close(dc);
}

/* ---- downstream connection ------------------------------------------- */

static void on_dconn_read(sio_t *io, void *arg)
{
    (void)io;
    dconn_process(arg);
}

static void on_dconn_write(sio_t *io, void *arg)
{
    dconn_t *dc = arg;
    size_t out = sio_pending(io);
    if (dc->s && dc->s->state == ST_RESP_BODY) {
        stream_pump_response(dc->s);
        return;
    }
    if (dc->closing && out == 0 && !dc->s)
        dconn_close(dc);
}

static void on_dconn_event(sio_t *io, int what, void *arg)
{
    dconn_t *dc = arg;
    (void)io;
    if (what & SIO_ERROR) {
        if (dc->s)
            stat_inc(dc->st->aborts);
        dconn_close(dc); /* aborts a stream in flight */
        return;
    }
    if (what & SIO_EOF) {
        /* The client sent all it will send. A FIN cannot tell a client that
         * closed from one that only half-closed, so by default (as Envoy and
         * nginx do) a stream still waiting for its response is cancelled:
         * one client must not pin upstream capacity by connecting, asking
         * and leaving. Pipelined requests already buffered say the client
         * still wants answers, and abort_on_client_close: false serves
         * half-closed clients; then a complete request is answered and the
         * connection closes after the last response. A request cut short
         * always ends as a downstream reset. */
        dc->eof = true;
        if (dc->s) {
            stream_t *s = dc->s;
            if (!s->req_done || (s->gl->conf->abort_on_client_close && !dc->s_pipelined &&
                                 evbuffer_get_length(dc->io.in) == 0)) {
                stat_inc(dc->st->aborts);
                dconn_close(dc);
            }
            return; /* stream_finish serves what is buffered, then closes */
        }
        if (evbuffer_get_length(dc->io.in)) {
            dconn_process(dc);
            return;
        }
        dconn_close(dc);
    }
}

static void on_dconn_kick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    dconn_process(arg);
}

static void sa_str(const struct sockaddr *sa, char *out, size_t len, char *ip, size_t iplen)
{
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
        port = ntohs(s4->sin_port);
        snprintf(out, len, "%s:%d", host, port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
        port = ntohs(s6->sin6_port);
        snprintf(out, len, "[%s]:%d", host, port);
    } else {
        snprintf(out, len, "unix");
    }
    if (ip)
        snprintf(ip, iplen, "%s", host);
}

void dconn_accept(worker_t *w, lsock_t *ls, int fd, const struct sockaddr *sa, int salen)
{
    (void)salen;
    dconn_t *dc = calloc(1, sizeof(*dc));
    if (!dc)
        abort();
    dc->kind = CONN_DOWNSTREAM;
    dc->w = w;
    dc->ls = ls;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    sa_str(sa, dc->peer, sizeof(dc->peer), dc->peer_ip, sizeof(dc->peer_ip));
    struct sockaddr_storage local;
    socklen_t ll = sizeof(local);
    if (getsockname(fd, (struct sockaddr *)&local, &ll) == 0)
        sa_str((struct sockaddr *)&local, dc->local, sizeof(dc->local), NULL, 0);
    sio_init(&dc->io, &w->sioloop, fd, on_dconn_read, on_dconn_write, on_dconn_event, dc);
    /* Input above STREAM_HIGH_WM stops reading from the socket: that is the
     * request-side backpressure. Output drained below STREAM_LOW_WM calls us back. */
    dc->io.read_high = STREAM_HIGH_WM;
    dc->io.write_low = STREAM_LOW_WM;
    evtimer_assign(&dc->timer, w->base, on_dconn_timer, dc);
    event_assign(&dc->kick, w->base, -1, 0, on_dconn_kick, dc);
    dc->st = worker_lstats(w, ls->name);
    stat_inc(dc->st->conns_total);
    stat_inc(dc->st->conns_active);
    dc->next = w->conns;
    if (w->conns)
        w->conns->prev = dc;
    w->conns = dc;
    w->nconns++;

    /* Connection-phase filters of the current generation. */
    glistener_t *gl = dconn_listener(dc);
    if (gl) {
        chain_t *ch = &gl->chain;
        for (size_t i = 0; i < ch->nph[PH_CONNECTION]; i++) {
            finst_t *fi = ch->f[ch->ph[PH_CONNECTION][i]];
            if (fi->wfailed[w->id]) { /* no worker state: refuse rather than guess */
                dconn_close(dc);
                return;
            }
            slc_action_t a = fi->desc.on_connection(fi->cfg, fi->wctx[w->id], (slc_conn_t *)dc);
            if (a == SLC_STOP) {
                dconn_close(dc);
                return;
            }
        }
        if (dc->io.t) {
            /* The transport's code lives in this generation's module. */
            dc->pinned = w->cur;
            worker_hold(dc->pinned);
        }
    }
    sio_read_enable(&dc->io, true);
    dconn_arm_timer(dc);
}

static void dconn_close(dconn_t *dc)
{
    worker_t *w = dc->w;
    if (dc->s) {
        stream_t *s = dc->s;
        dc->s = NULL;
        stream_abort_downstream(s); /* ends and frees it */
    }
    evtimer_del(&dc->timer);
    event_del(&dc->kick);
    h1body_rd_release(&dc->req_rd);
    sio_close(&dc->io); /* frees the transport too */
    if (dc->prev)
        dc->prev->next = dc->next;
    else
        w->conns = dc->next;
    if (dc->next)
        dc->next->prev = dc->prev;
    w->nconns--;
    stat_add(dc->st->conns_active, -1);
    if (dc->pinned)
        worker_release(w, dc->pinned);
    free(dc);
}

void dconn_close_all(worker_t *w)
{
    /* Past the drain deadline: whatever is still open ends now, so every
     * stream and pinned generation is released before the worker exits. */
    while (w->conns)
        dconn_close(w->conns);
}

void dconn_drain_all(worker_t *w)
{
    /* Idle connections close now; busy ones close after their stream. */
    for (dconn_t *dc = w->conns, *next; dc; dc = next) {
        next = dc->next;
        dc->closing = true;
        if (!dc->s)
            dconn_close(dc);
    }
}

static void proto_error(dconn_t *dc, int status, const char *reason)
{
    static const char *const texts[] = {[0] = "Bad Request",
                                        [1] = "URI Too Long",
                                        [2] = "Request Header Fields Too Large",
                                        [3] = "Not Implemented",
                                        [4] = "HTTP Version Not Supported"};
    int t = status == 414 ? 1 : status == 431 ? 2 : status == 501 ? 3 : status == 505 ? 4 : 0;
    char buf[256];
    int n = snprintf(buf, sizeof(buf),
                     "HTTP/1.1 %d %s\r\ncontent-type: text/plain\r\ncontent-length: %zu\r\n"
                     "connection: close\r\n\r\n%s\n",
                     status, texts[t], strlen(texts[t]) + 1, texts[t]);
    sio_write(&dc->io, buf, (size_t)n);
    stat_inc(stats_getf(dc->w->stats,
                        "sluice_downstream_protocol_errors_total{listener=\"%s\",reason=\"%s\"}",
                        dc->ls->name, reason));
    stat_inc(dc->st->req_class[status / 100 - 1]);
    log_debug("malformed request", "listener=%s peer=%s status=%d reason=%s", dc->ls->name,
              dc->peer, status, reason);
    /* Whatever else the client sent is not trusted: stop reading, close once
     * the reply is out. */
    dc->closing = true;
    sio_read_enable(&dc->io, false);
    evbuffer_drain(dc->io.in, evbuffer_get_length(dc->io.in));
    evtimer_del(&dc->timer);
}

/* ---- request head -> stream ------------------------------------------- */

/* h1_stream_begin turns a parsed head into a stream, copying the head into
 * its arena (so the caller may drain the input afterwards). HTTP/1.1's own
 * fields stay here: hop-by-hop ones and what Connection lists, the framing,
 * Expect; the stream gets the request and its end-to-end headers. The chain
 * is started separately by stream_start. */
static stream_t *h1_stream_begin(dconn_t *dc, gen_t *g, glistener_t *gl, const h1_request_t *req,
                                 const char *head)
{
    stream_t *s = stream_new(dc->w, g, gl, &h1_down_ops, dc, (slc_conn_t *)dc, dc->st);
    if (!s)
        return NULL;
    /* Copy the head into the arena once; every view below points there. */
    char *copy = arena_alloc_nozero(&s->arena, req->head_len);
    if (!copy) {
        stream_discard(s);
        return NULL;
    }
    dc->s = s;
    dc->requests++;
    memcpy(copy, head, req->head_len);
#define REBASE(p) (copy + ((const char *)(p)-head))
    s->method = (slc_str_t){REBASE(req->method), req->method_len};
    s->protocol = req->version_minor ? SLC_STR("HTTP/1.1") : SLC_STR("HTTP/1.0");
    s->is_head = req->method_len == 4 && memcmp(req->method, "HEAD", 4) == 0;
    dc->minor = req->version_minor;
    dc->expect_continue = req->expect_continue;
    dc->keep_alive = req->keep_alive;
    dc->sent_100 = false;
    dc->resp_close = false;
    slc_str_t target = {REBASE(req->target), req->target_len};
    bool absolute = false;
    if (target.len > 7 && (slcu_casehasprefix(target, SLC_STR("http://")) ||
                           (target.len > 8 && slcu_casehasprefix(target, SLC_STR("https://"))))) {
        /* absolute-form: the authority inside wins over Host (RFC 9112 3.2.2). */
        size_t skip = target.ptr[4] == ':' ? 7 : 8;
        const char *a = target.ptr + skip;
        const char *end = target.ptr + target.len;
        const char *slash = memchr(a, '/', (size_t)(end - a));
        s->authority = (slc_str_t){a, (size_t)((slash ? slash : end) - a)};
        s->path = slash ? (slc_str_t){slash, (size_t)(end - slash)} : SLC_STR("/");
        absolute = true;
    } else {
        s->path = target;
        if (req->host)
            s->authority = (slc_str_t){REBASE(req->host), req->host_len};
    }
    /* One pass over the fields, classified by the parser: hop-by-hop ones,
     * what Connection lists, content-length and expect stay with this
     * codec (it frames and answers 100-continue itself); the proxy headers'
     * places are noted for the stream's edits. */
    const conf_listener_t *lc = gl->conf;
    h1_conn_names_t named;
    h1_conn_names_init(&named, req->headers, req->nheaders);
    stream_hdr_at_t at = {-1, -1, -1, -1};
    for (size_t i = 0; i < req->nheaders; i++) {
        const h1_header_t *h = &req->headers[i];
        if (h1_kind_is_hop(h->kind) || h->kind == H1H_CONTENT_LENGTH || h->kind == H1H_EXPECT)
            continue;
        if (h1_conn_names_has(&named, h->name, h->name_len))
            continue;
        switch (h->kind) {
        case H1H_X_FORWARDED_FOR:
            at.xff = (ssize_t)s->req_hdrs.n;
            break;
        case H1H_X_FORWARDED_PROTO:
            /* Only a trusted hop may tell us the client's scheme. */
            if (lc->xff_num_trusted_hops == 0)
                continue;
            if (at.xfp < 0)
                at.xfp = (ssize_t)s->req_hdrs.n;
            break;
        case H1H_VIA:
            if (at.via < 0)
                at.via = (ssize_t)s->req_hdrs.n;
            break;
        case H1H_X_REQUEST_ID:
            if (at.rid < 0)
                at.rid = (ssize_t)s->req_hdrs.n;
            break;
        default:
            break;
        }
        hdrs_push(s, &s->req_hdrs, (slc_str_t){REBASE(h->name), h->name_len},
                  (slc_str_t){REBASE(h->value), h->value_len});
    }
#undef REBASE
    stream_proxy_headers(s, &at, dc->peer_ip, sio_is_secure(&dc->io));
    if (absolute && s->authority.len) /* Host must agree with what we routed on */
        hdrs_set(s, &s->req_hdrs, SLC_STR("host"), s->authority, false);
    s->req_body = req->body == H1_BODY_NONE     ? UB_NONE
                  : req->body == H1_BODY_LENGTH ? UB_LENGTH
                                                : UB_STREAM;
    s->req_length = req->content_length;
    h1body_rd_release(&dc->req_rd); /* the previous request's trailers */
    h1body_rd_init(&dc->req_rd, req->body, req->content_length);
    s->req_done = s->req_body == UB_NONE;
    return s;
}

static const char *status_text(int st)
{
    switch (st) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 206:
        return "Partial Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 303:
        return "See Other";
    case 304:
        return "Not Modified";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 413:
        return "Content Too Large";
    case 429:
        return "Too Many Requests";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return "Unknown";
    }
}

/* ---- the ops: what a stream asks of this codec ------------------------ */

/* h1_send_head writes the response head, choosing the framing: the length
 * when known, chunks for an HTTP/1.1 client otherwise, or the close for
 * an HTTP/1.0 one (which then is not kept). */
static bool h1_send_head(stream_t *s)
{
    dconn_t *dc = s->down;
    bool keep = dc->keep_alive && !s->closing_after && !dc->closing && !s->w->draining;
    bool chunked = false;
    if (!s->local_reply && s->resp_body == UB_STREAM) {
        if (dc->minor >= 1)
            chunked = true;
        else
            keep = false; /* HTTP/1.0 client: the body ends with the close */
    }
    h1body_wr_init(&dc->resp_wr, chunked);
    dc->resp_close = !keep;
    const char *reason = status_text(s->status);
    h1w_resp_t resp = {
        .status = s->status,
        .reason = s->reason.len ? s->reason : (slc_str_t){reason, strlen(reason)},
        .hdrs = s->resp_hdrs.v,
        .nhdrs = s->resp_hdrs.n,
        .keep_cl = s->resp_body == UB_NONE && !s->local_reply,
        .framing = s->resp_body == UB_LENGTH ? H1W_LENGTH
                   : chunked                 ? H1W_CHUNKED
                                             : H1W_NONE,
        .length = s->resp_length,
        .conn = !keep            ? H1W_CONN_CLOSE
                : dc->minor == 0 ? H1W_CONN_KEEP_ALIVE
                                 : H1W_CONN_NONE,
    };
    size_t need = h1w_response_size(&resp);
    char *buf = arena_alloc_nozero(&s->arena, need);
    size_t o = buf ? h1w_response(&resp, buf, need) : 0;
    if (!o) {
        if (buf) /* h1w_response_size is wrong: a bug, but never an overrun */
            log_error("response head outgrew its size", "listener=%s need=%zu", dc->ls->name, need);
        dc->closing = true;
        return false;
    }
    evbuffer_add(dc->io.out, buf, o);
    sio_mark(&dc->io);
    return true;
}

static h1body_res_t h1_recv_next(stream_t *s, struct evbuffer **src, size_t *n, const char **reason)
{
    dconn_t *dc = s->down;
    *src = dc->io.in;
    return h1body_rd_next(&dc->req_rd, *src, n, reason);
}

static void h1_recv_took(stream_t *s, size_t n)
{
    dconn_t *dc = s->down;
    h1body_rd_took(&dc->req_rd, n);
    sio_unthrottle(&dc->io);
}

static void h1_recv_trailers(stream_t *s, hdrs_t *out)
{
    dconn_t *dc = s->down;
    h1body_rd_trailers(&dc->req_rd, arena_alloc_cb, &s->arena, &out->v, &out->n);
    out->cap = out->n;
}

static void h1_send_continue(stream_t *s)
{
    dconn_t *dc = s->down;
    if (!dc->expect_continue || dc->sent_100)
        return;
    static const char c100[] = "HTTP/1.1 100 Continue\r\n\r\n";
    sio_write(&dc->io, c100, sizeof(c100) - 1);
    dc->sent_100 = true;
}

static size_t h1_send_pending(stream_t *s)
{
    return sio_pending(&((dconn_t *)s->down)->io);
}

static void h1_send_data(stream_t *s, struct evbuffer *src, size_t n)
{
    dconn_t *dc = s->down;
    h1body_wr_move(&dc->resp_wr, src, n, dc->io.out);
    sio_mark(&dc->io);
}

static void h1_send_bytes(stream_t *s, const void *p, size_t n)
{
    dconn_t *dc = s->down;
    h1body_wr_add(&dc->resp_wr, p, n, dc->io.out);
    sio_mark(&dc->io);
}

static void h1_send_end(stream_t *s)
{
    dconn_t *dc = s->down;
    h1body_wr_end(&dc->resp_wr, dc->io.out, s->resp_trailers.v, s->resp_trailers.n);
    sio_mark(&dc->io);
}

/* h1_done: the stream is over (and freed). Keep the connection for the
 * next request, pipelined or not, or close it once the output drains. */
static void h1_done(void *down, bool close)
{
    dconn_t *dc = down;
    dc->s = NULL;
    h1body_rd_release(&dc->req_rd);
    if (close || dc->resp_close || dc->closing) {
        dc->closing = true;
        sio_read_enable(&dc->io, false);
        if (sio_pending(&dc->io) == 0)
            dconn_close(dc);
        return;
    }
    dc->head_seen = evbuffer_get_length(dc->io.in) > 0;
    dc->pipelined = dc->head_seen;
    if (dc->eof && !dc->head_seen) {
        dc->closing = true;
        if (sio_pending(&dc->io) == 0)
            dconn_close(dc);
        return;
    }
    dconn_arm_timer(dc);
    sio_read_enable(&dc->io, true);
    if (dc->head_seen)
        event_active(&dc->kick, EV_READ, 0);
}

static const down_ops_t h1_down_ops = {
    .recv_next = h1_recv_next,
    .recv_took = h1_recv_took,
    .recv_trailers = h1_recv_trailers,
    .send_continue = h1_send_continue,
    .send_head = h1_send_head,
    .send_pending = h1_send_pending,
    .send_data = h1_send_data,
    .send_bytes = h1_send_bytes,
    .send_end = h1_send_end,
    .done = h1_done,
};

/* ---- input processing ------------------------------------------------- */

/* Parsing a head from its first byte on every read made a head trickled in
 * 16-byte pieces cost O(n^2). Between full parses only the new bytes are
 * scanned, for CRLF CRLF (the head may be complete) or a bare LF (the
 * parser rejects it at once). Otherwise the parser runs again only when the
 * input has doubled since its last run, so errors the parser finds early
 * (a request line past its limit, a bad byte) are still found while the
 * head grows, at O(n) total cost. */
static bool head_parse_due(dconn_t *dc, struct evbuffer *in, size_t avail, size_t limit)
{
    if (!dc->hscan_parsed || avail >= limit || avail >= 2 * dc->hscan_parsed)
        return true;
    bool due = false;
    struct evbuffer_ptr at;
    if (evbuffer_ptr_set(in, &at, dc->hscan_pos, EVBUFFER_PTR_SET) != 0)
        return true;
    uint8_t m = dc->hscan_match;
    while (!due) {
        struct evbuffer_iovec v[4];
        int k = evbuffer_peek(in, -1, &at, v, 4);
        if (k <= 0)
            break;
        size_t took = 0;
        for (int i = 0; i < k && i < 4 && !due; i++) {
            const unsigned char *b = v[i].iov_base;
            for (size_t j = 0; j < v[i].iov_len; j++) {
                unsigned char c = b[j];
                if (c == '\n' && m != 1 && m != 3) {
                    due = true; /* bare LF */
                    break;
                }
                m = c == '\r' ? (m == 2 ? 3 : 1) : c == '\n' ? (uint8_t)(m + 1) : 0;
                if (m == 4) {
                    due = true;
                    break;
                }
            }
            took += v[i].iov_len;
        }
        if (evbuffer_ptr_set(in, &at, took, EVBUFFER_PTR_ADD) != 0)
            break;
    }
    dc->hscan_pos = avail;
    dc->hscan_match = m;
    return due;
}

/* head_scan_parsed: the parser saw |avail| bytes and wants more. The
 * scanner resumes at the end, knowing how much of CRLF CRLF ends them. */
static void head_scan_parsed(dconn_t *dc, struct evbuffer *in, size_t avail)
{
    unsigned char tail[3];
    size_t n = avail < 3 ? avail : 3;
    struct evbuffer_ptr at;
    uint8_t m = 0;
    if (evbuffer_ptr_set(in, &at, avail - n, EVBUFFER_PTR_SET) == 0 &&
        evbuffer_copyout_from(in, &at, tail, n) == (ev_ssize_t)n) {
        for (size_t i = 0; i < n; i++)
            m = tail[i] == '\r' ? (m == 2 ? 3 : 1) : tail[i] == '\n' ? (uint8_t)(m + 1) : 0;
    }
    dc->hscan_parsed = avail;
    dc->hscan_pos = avail;
    dc->hscan_match = m;
}

down_codec_t down_codec_for_alpn(slc_str_t alpn)
{
    static const char *const h1[] = {"http/1.1",       "http/1.0", "istio-http/1.1",
                                     "istio-http/1.0", "istio",    "istio-peer-exchange"};
    if (!alpn.len)
        return DOWN_CODEC_H1;
    for (size_t i = 0; i < sizeof(h1) / sizeof(h1[0]); i++)
        if (alpn.len == strlen(h1[i]) && memcmp(alpn.ptr, h1[i], alpn.len) == 0)
            return DOWN_CODEC_H1;
    return DOWN_CODEC_NONE; /* h2, istio-h2: the protocols work */
}

static void dconn_process(dconn_t *dc)
{
    worker_t *w = dc->w;
    if (dc->s) {
        stream_pump_request(dc->s);
        return;
    }
    if (dc->closing)
        return;
    struct evbuffer *in = dc->io.in;
    size_t avail = evbuffer_get_length(in);
    if (avail == 0)
        return;
    if (dc->io.t && !dc->codec_checked) {
        /* The handshake chose the protocol (ALPN): plaintext reaches us
         * only after it. This codec serves every value that means
         * HTTP/1.1, or none; h2 will be dispatched here to its own codec. */
        dc->codec_checked = true;
        const slc_str_t alpn = dc->io.t->alpn ? dc->io.t->alpn(dc->io.tctx) : SLC_STR_NULL;
        if (down_codec_for_alpn(alpn) != DOWN_CODEC_H1) {
            log_warn("no codec for the negotiated protocol", "alpn=%.*s peer=%s", (int)alpn.len,
                     alpn.ptr, dc->peer);
            dconn_close(dc);
            return;
        }
    }
    gen_t *g = w->cur ? w->cur->gen : NULL;
    glistener_t *gl = dconn_listener(dc);
    if (!gl) {
        /* The listener is gone from the configuration. */
        dconn_close(dc);
        return;
    }
    const conf_listener_t *lc = gl->conf;
    size_t limit = (size_t)lc->max_header_bytes + 2;
    if (!head_parse_due(dc, in, avail, limit)) {
        if (dc->eof) /* the rest of this head will never come */
            dconn_close(dc);
        return;
    }
    size_t look = avail < limit ? avail : limit;
    const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)look);
    h1_limits_t lim = {lc->max_request_line, lc->max_header_bytes, lc->max_headers};
    h1_header_t hdrs[MAX_HDRS_HARD];
    h1_request_t req;
    int status = 0;
    const char *reason = NULL;
    h1_result_t r =
        h1_parse_request(p, look, &lim, hdrs,
                         lc->max_headers + 1 < MAX_HDRS_HARD ? lc->max_headers + 1 : MAX_HDRS_HARD,
                         &req, &status, &reason);
    if (r == H1_INCOMPLETE) {
        head_scan_parsed(dc, in, avail);
        if (dc->eof) { /* the rest of this head will never come */
            dconn_close(dc);
            return;
        }
        if (!dc->head_seen) {
            dc->head_seen = true;
            dconn_arm_timer(dc); /* the header timeout runs from the first byte */
        }
        return;
    }
    if (r == H1_ERROR) {
        proto_error(dc, status ? status : 400, reason ? reason : "malformed");
        if (sio_pending(&dc->io) == 0)
            dconn_close(dc);
        return;
    }
    dc->head_seen = false;
    dc->hscan_pos = dc->hscan_parsed = 0;
    dc->hscan_match = 0;
    stream_t *s = h1_stream_begin(dc, g, gl, &req, p);
    if (s) {
        dc->s_pipelined = dc->pipelined;
        dc->pipelined = false;
    }
    evbuffer_drain(in, req.head_len);
    sio_unthrottle(&dc->io);
    if (!s) {
        proto_error(dc, 431, "head_too_large");
        return;
    }
    dc->progress = stream_progress(s);
    dconn_arm_timer(dc); /* now the stream idle timeout */
    /* The chain may finish the stream, and even close |dc|, before this
     * returns: touch nothing after it. */
    stream_start(s);
}
