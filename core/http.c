/* http: downstream HTTP/1.1 connections, the stream life cycle and the
 * filter-chain runner.
 *
 * One stream at a time per connection; pipelined requests wait in the input
 * buffer and are taken up (via the deferred |kick| event, never by
 * recursion) when the previous stream finishes.
 */
#include "log.h"
#include "server.h"
#include "upstream.h"

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

#define HIGH_WM       (256 * 1024) /* stop moving body bytes into a buffer above this */
#define LOW_WM        (64 * 1024)  /* resume when it drains below this */
#define STREAM_BUDGET (4 * 1024 * 1024)
#define MAX_HDRS_HARD 1000

static void dconn_process(dconn_t *dc);
static void dconn_close(dconn_t *dc);
static void stream_finish(stream_t *s);
static void stream_free(stream_t *s);
static void stream_respond(stream_t *s);
static void run_phase(stream_t *s);
static void after_phase(stream_t *s, int phase);
static void write_response_head(stream_t *s);
static void replay_keep(stream_t *s, struct evbuffer *src, size_t n);
static bool retry_wanted(stream_t *s, slc_attempt_result_t res, int status);
static void retry_schedule(stream_t *s);

static void stream_attempt(stream_t *s, bool fresh);
static void stream_drop_upstream(stream_t *s, bool reuse);
static void stream_send_request(stream_t *s);
static void on_up_connected(void *ctx, slc_conn_t *conn);
static void on_up_head(void *ctx, const up_head_t *h);
static void on_up_readable(void *ctx);
static void on_up_writable(void *ctx);
static void on_up_failed(void *ctx, const up_fail_t *f);

/* What the upstream exchange reports to the stream (upstream.h). */
static const up_events_t stream_up_events = {
    .connected = on_up_connected,
    .head = on_up_head,
    .readable = on_up_readable,
    .writable = on_up_writable,
    .failed = on_up_failed,
};

/* ---- headers --------------------------------------------------------- */

static bool name_eq(slc_str_t a, slc_str_t b)
{
    return slcu_caseeq(a, b);
}

hdr_t *hdrs_find(hdrs_t *h, slc_str_t name)
{
    for (size_t i = 0; i < h->n; i++)
        if (name_eq(h->v[i].name, name))
            return &h->v[i];
    return NULL;
}

int hdrs_remove(hdrs_t *h, slc_str_t name)
{
    size_t o = 0;
    int removed = 0;
    for (size_t i = 0; i < h->n; i++) {
        if (name_eq(h->v[i].name, name)) {
            removed++;
            continue;
        }
        h->v[o++] = h->v[i];
    }
    h->n = o;
    return removed;
}

static int hdrs_push(stream_t *s, hdrs_t *h, slc_str_t name, slc_str_t value)
{
    if (h->n == h->cap) {
        size_t ncap = h->cap ? h->cap * 2 : 16;
        hdr_t *nv = arena_alloc_nozero(&s->arena, ncap * sizeof(*nv));
        if (!nv)
            return -1;
        if (h->n)
            memcpy(nv, h->v, h->n * sizeof(*nv));
        h->v = nv;
        h->cap = ncap;
    }
    h->v[h->n].name = name;
    h->v[h->n].value = value;
    h->n++;
    return 0;
}

/* hdrs_set copies |name| and |value| into the arena. */
slc_status_t hdrs_set(stream_t *s, hdrs_t *h, slc_str_t name, slc_str_t value, bool append)
{
    if (!h1_valid_header_name(name.ptr, name.len) || !h1_valid_header_value(value.ptr, value.len))
        return SLC_EINVAL;
    char *n = arena_strndup(&s->arena, name.ptr, name.len);
    char *v = arena_strndup(&s->arena, value.ptr, value.len);
    if (!n || !v)
        return SLC_ENOMEM;
    if (!append)
        hdrs_remove(h, name);
    if (hdrs_push(s, h, (slc_str_t){n, name.len}, (slc_str_t){v, value.len}) != 0)
        return SLC_ENOMEM;
    return SLC_OK;
}

/* ---- timers ----------------------------------------------------------- */

static const struct timeval *ms_tv(struct timeval *tv, uint64_t ms)
{
    tv->tv_sec = (time_t)(ms / 1000);
    tv->tv_usec = (suseconds_t)((ms % 1000) * 1000);
    return tv;
}

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

/* stream_progress is a cheap "did anything move" mark for the stream idle
 * timeout. */
static uint64_t stream_progress(const stream_t *s)
{
    return s->req_bytes + s->resp_bytes + (uint64_t)s->state + (s->resp_head_sent ? 1u << 20 : 0);
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
        if (!s->req_done)
            stream_upstream_failed(s, 408, SLC_RF_SI, "request body timeout\n");
        else
            stream_upstream_failed(s, 504, SLC_RF_SI, "stream idle timeout\n");
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

static void stream_abort_downstream(stream_t *s);

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
            if (!s->req_done || (s->gl->conf->abort_on_client_close && !s->pipelined &&
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
    /* Input above HIGH_WM stops reading from the socket: that is the
     * request-side backpressure. Output drained below LOW_WM calls us back. */
    dc->io.read_high = HIGH_WM;
    dc->io.write_low = LOW_WM;
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
        stream_abort_downstream(dc->s);
        if (dc->s)
            return; /* cannot happen: abort finishes the stream */
    }
    evtimer_del(&dc->timer);
    event_del(&dc->kick);
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

/* ---- stream start ------------------------------------------------------ */

static slc_str_t sdup(stream_t *s, const char *p, size_t n)
{
    char *c = arena_strndup(&s->arena, p, n);
    return (slc_str_t){c, c ? n : 0};
}

/* xff_from_right: the |nth| address (1 = rightmost) of the X-Forwarded-For
 * list, which is the concatenation of every x-forwarded-for field in order.
 * LIFETIME: a view into the header value (request arena). */
static bool xff_from_right(const hdrs_t *h, uint32_t nth, slc_str_t *out)
{
    slc_str_t xff = SLC_STR("x-forwarded-for");
    for (size_t i = h->n; i-- > 0;) {
        if (!name_eq(h->v[i].name, xff))
            continue;
        const char *p = h->v[i].value.ptr;
        size_t end = h->v[i].value.len;
        while (end > 0) {
            size_t start = end;
            while (start > 0 && p[start - 1] != ',')
                start--;
            size_t a = start, z = end;
            while (a < z && (p[a] == ' ' || p[a] == '\t'))
                a++;
            while (z > a && (p[z - 1] == ' ' || p[z - 1] == '\t'))
                z--;
            if (z > a && --nth == 0) {
                *out = (slc_str_t){p + a, z - a};
                return true;
            }
            end = start ? start - 1 : 0;
        }
    }
    return false;
}

/* is_ip_text: |t| is an IPv4 or IPv6 address, as a trusted client address
 * must be (Envoy falls back to the peer for "unknown", a host name or an
 * address with a port). */
static bool is_ip_text(slc_str_t t)
{
    char buf[INET6_ADDRSTRLEN];
    unsigned char bin[sizeof(struct in6_addr)];
    if (t.len == 0 || t.len >= sizeof(buf))
        return false;
    memcpy(buf, t.ptr, t.len);
    buf[t.len] = '\0';
    return inet_pton(AF_INET, buf, bin) == 1 || inet_pton(AF_INET6, buf, bin) == 1;
}

/* stream_take_headers copies the request's fields into the stream in one
 * pass over the parser's classification: hop-by-hop fields, what Connection
 * lists, content-length and expect are dropped (the core frames and answers
 * 100-continue itself), and the proxy headers are edited as Envoy's
 * connection manager does (use_remote_address, xff_num_trusted_hops). The
 * views point into |copy|, the head's arena copy; |head| is the original. */
static void stream_take_headers(stream_t *s, const h1_request_t *req, const char *copy,
                                const char *head)
{
    dconn_t *dc = s->dc;
    const conf_listener_t *lc = s->gl->conf;
    h1_conn_names_t named;
    h1_conn_names_init(&named, req->headers, req->nheaders);
    ssize_t xff = -1, via = -1, rid = -1, xfp = -1;
    for (size_t i = 0; i < req->nheaders; i++) {
        const h1_header_t *h = &req->headers[i];
        if (h1_kind_is_hop(h->kind) || h->kind == H1H_CONTENT_LENGTH || h->kind == H1H_EXPECT)
            continue;
        if (h1_conn_names_has(&named, h->name, h->name_len))
            continue;
        switch (h->kind) {
        case H1H_X_FORWARDED_FOR:
            xff = (ssize_t)s->req_hdrs.n;
            break;
        case H1H_X_FORWARDED_PROTO:
            /* Only a trusted hop may tell us the client's scheme. */
            if (lc->xff_num_trusted_hops == 0)
                continue;
            if (xfp < 0)
                xfp = (ssize_t)s->req_hdrs.n;
            break;
        case H1H_VIA:
            if (via < 0)
                via = (ssize_t)s->req_hdrs.n;
            break;
        case H1H_X_REQUEST_ID:
            if (rid < 0)
                rid = (ssize_t)s->req_hdrs.n;
            break;
        default:
            break;
        }
        hdrs_push(s, &s->req_hdrs, (slc_str_t){copy + (h->name - head), h->name_len},
                  (slc_str_t){copy + (h->value - head), h->value_len});
    }

    /* The trusted client address: the peer itself, or what the trusted hops
     * say it was (Envoy's rules: with use_remote_address the Nth address
     * from the right, else the N+1th; the peer when the list is short). */
    size_t iplen = strlen(dc->peer_ip);
    s->client_addr = (slc_str_t){dc->peer_ip, iplen};
    uint32_t nth = lc->xff_num_trusted_hops + (lc->use_remote_address ? 0 : 1);
    slc_str_t told;
    if (nth && xff >= 0 && xff_from_right(&s->req_hdrs, nth, &told) && is_ip_text(told))
        s->client_addr = told;

    if (lc->use_remote_address) {
        /* Append to the LAST field: with several, the list is their
         * concatenation, and the hop we add must end it. */
        if (xff >= 0) {
            hdr_t *h = &s->req_hdrs.v[xff];
            size_t n = h->value.len + 2 + iplen;
            char *v = arena_alloc_nozero(&s->arena, n + 1);
            if (v) {
                memcpy(v, h->value.ptr, h->value.len);
                memcpy(v + h->value.len, ", ", 2);
                memcpy(v + h->value.len + 2, dc->peer_ip, iplen + 1);
                h->value = (slc_str_t){v, n};
            }
        } else {
            hdrs_push(s, &s->req_hdrs, SLC_STR("x-forwarded-for"), (slc_str_t){dc->peer_ip, iplen});
        }
    }

    /* The scheme is the transport's: a secured connection is https. A
     * trusted hop's x-forwarded-proto overrides it (kept as sent). */
    s->scheme = dc->io.t ? SLC_STR("https") : SLC_STR("http");
    if (xfp >= 0) {
        slc_str_t v = s->req_hdrs.v[xfp].value;
        if (h1_token_eq(v.ptr, v.len, "https"))
            s->scheme = SLC_STR("https");
        else if (h1_token_eq(v.ptr, v.len, "http"))
            s->scheme = SLC_STR("http");
    } else {
        hdrs_push(s, &s->req_hdrs, SLC_STR("x-forwarded-proto"), s->scheme);
    }

    if (via >= 0) {
        hdr_t *h = &s->req_hdrs.v[via];
        size_t n = h->value.len + sizeof(", 1.1 sluice") - 1;
        char *v = arena_alloc_nozero(&s->arena, n + 1);
        if (v) {
            memcpy(v, h->value.ptr, h->value.len);
            memcpy(v + h->value.len, ", 1.1 sluice", sizeof(", 1.1 sluice"));
            h->value = (slc_str_t){v, n};
        }
    } else {
        hdrs_push(s, &s->req_hdrs, SLC_STR("via"), SLC_STR("1.1 sluice"));
    }
    if (rid >= 0) {
        slc_str_t v = s->req_hdrs.v[rid].value;
        size_t n = v.len < sizeof(s->request_id) - 1 ? v.len : sizeof(s->request_id) - 1;
        memcpy(s->request_id, v.ptr, n);
        s->request_id[n] = '\0';
    } else {
        worker_uuid(s->w, s->request_id);
        hdrs_push(s, &s->req_hdrs, SLC_STR("x-request-id"),
                  (slc_str_t){s->request_id, strlen(s->request_id)});
    }
}

static stream_t *stream_new(dconn_t *dc, gen_t *g, glistener_t *gl)
{
    worker_t *w = dc->w;
    arena_t a;
    arena_init(&a, &w->arena_pool, STREAM_BUDGET);
    stream_t *s = arena_alloc(&a, sizeof(*s));
    s->arena = a; /* the arena now lives inside the stream it allocated */
    s->w = w;
    s->dc = dc;
    s->holder = w->cur;
    worker_hold(s->holder);
    s->gen = g;
    s->gl = gl;
    s->chain = &gl->chain;
    s->start_us = now_us(w);
    stat_inc(w->streams_active);
    s->ctx = arena_alloc(&s->arena, (gl->chain.n ? gl->chain.n : 1) * sizeof(void *));
    return s;
}

/* stream_begin turns a parsed head into a stream (copying the head into
 * its arena, so the caller may drain the input afterwards). The chain is
 * started separately by stream_start. */
static stream_t *stream_begin(dconn_t *dc, gen_t *g, glistener_t *gl, const h1_request_t *req,
                              const char *head)
{
    stream_t *s = stream_new(dc, g, gl);
    dc->s = s;
    dc->requests++;
    /* Copy the head into the arena once; every view below points there. */
    char *copy = arena_alloc_nozero(&s->arena, req->head_len);
    if (!copy) {
        dc->s = NULL;
        stream_free(s);
        return NULL;
    }
    memcpy(copy, head, req->head_len);
#define REBASE(p) (copy + ((const char *)(p)-head))
    s->method = (slc_str_t){REBASE(req->method), req->method_len};
    s->minor = req->version_minor;
    s->is_head = req->method_len == 4 && memcmp(req->method, "HEAD", 4) == 0;
    s->expect_continue = req->expect_continue;
    s->client_keep_alive = req->keep_alive;
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
#undef REBASE
    stream_take_headers(s, req, copy, head);
    if (absolute && s->authority.len) /* Host must agree with what we routed on */
        hdrs_set(s, &s->req_hdrs, SLC_STR("host"), s->authority, false);
    s->req_body = req->body;
    s->req_length = req->content_length;
    h1body_rd_init(&s->req_rd, req->body, req->content_length);
    s->req_done = s->req_body == H1_BODY_NONE;
    return s;
}

/* stream_start creates per-stream filter state and runs the request chain. */
static void stream_start(stream_t *s)
{
    chain_t *ch = s->chain;
    if (s->holder->init_failures) {
        for (size_t i = 0; i < ch->n; i++) {
            if (ch->f[i]->wfailed[s->w->id]) {
                stream_local_reply(s, 500, SLC_STR("text/plain"),
                                   SLC_STR("filter not initialised on this worker\n"));
                s->ctx_upto = 0; /* no stream state was made: no on_complete */
                stream_respond(s);
                return;
            }
        }
    }
    /* Per-stream filter state. */
    for (size_t i = 0; i < ch->n; i++)
        s->ctx[i] = ch->f[i]->cfg;
    s->ctx_upto = ch->n;
    for (size_t k = 0; k < ch->nwith_ctx; k++) {
        size_t i = ch->with_ctx[k];
        finst_t *fi = ch->f[i];
        void *ctx = NULL;
        if (fi->desc.request_new(fi->cfg, fi->wctx[s->w->id], s, &ctx) != SLC_OK) {
            /* Filters from here on have no stream state: none of their
             * hooks may run (they would get their config as ctx). */
            s->ctx_upto = i;
            stream_local_reply(s, 500, SLC_STR("text/plain"),
                               SLC_STR("filter could not start the stream\n"));
            stream_respond(s);
            return;
        }
        s->ctx[i] = ctx;
    }
    s->state = ST_REQ_FILTERS;
    s->phase = PH_REQ_HEADERS;
    s->phase_at = 0;
    run_phase(s);
}

/* ---- chain runner ----------------------------------------------------- */

static slc_action_t call_hook(stream_t *s, int phase, size_t pos)
{
    finst_t *fi = s->chain->f[pos];
    void *ctx = s->ctx[pos];
    switch (phase) {
    case PH_REQ_HEADERS:
        return fi->desc.on_request_headers(ctx, s);
    case PH_UP_SELECT:
        return fi->desc.on_upstream_select(ctx, s);
    case PH_UP_CONNECT:
        return fi->desc.on_upstream_connect(ctx, s, s->up_conn);
    case PH_RESP_HEADERS:
        return fi->desc.on_response_headers(ctx, s);
    }
    return SLC_CONTINUE;
}

/* run_phase runs s->phase from s->phase_at until the phase ends, a filter
 * stops the stream, or a filter pauses it. */
static void run_phase(stream_t *s)
{
    chain_t *ch = s->chain;
    int phase = s->phase;
    s->in_chain = true;
    while (s->phase_at < ch->nph[phase]) {
        size_t pos = ch->ph[phase][s->phase_at];
        if (pos >= s->ctx_upto) {
            s->phase_at++;
            continue;
        }
        slc_action_t a = call_hook(s, phase, pos);
        if (a == SLC_PAUSE) {
            s->paused = true;
            s->in_chain = false;
            return;
        }
        s->phase_at++;
        if (a == SLC_STOP) {
            s->in_chain = false;
            if (!s->local_reply)
                stream_local_reply(s, 500, SLC_STR("text/plain"),
                                   SLC_STR("filter stopped the stream without a reply\n"));
            if (phase == PH_RESP_HEADERS) {
                after_phase(s, phase);
                return;
            }
            stream_respond(s);
            return;
        }
    }
    s->in_chain = false;
    after_phase(s, phase);
}

void stream_resume(stream_t *s)
{
    if (!s->paused)
        return;
    s->paused = false;
    s->phase_at++;
    run_phase(s);
}

void stream_chain_continue(stream_t *s)
{
    run_phase(s);
}

/* route_default_endpoint: round robin over usable endpoints when no filter
 * chose one; on a retry, endpoints already tried come last. */
static void route_default_endpoint(stream_t *s)
{
    const slc_cluster_t *c = s->cluster;
    uint64_t now = gen_now_ms();
    const slc_endpoint_t *fallback = NULL;
    for (size_t k = 0; k < c->neps; k++) {
        const slc_endpoint_t *e = &c->eps[(s->w->rr++) % c->neps];
        if (!endpoint_usable(e, now))
            continue;
        if (!stream_tried(s, e)) {
            s->ep = e;
            return;
        }
        if (!fallback)
            fallback = e;
    }
    s->ep = fallback;
}

static void after_phase(stream_t *s, int phase)
{
    switch (phase) {
    case PH_REQ_HEADERS:
        if (s->local_reply) {
            stream_respond(s);
            return;
        }
        if (!s->cluster) {
            s->flags |= SLC_RF_NR;
            stream_local_reply(s, 404, SLC_STR("text/plain"), SLC_STR("no route\n"));
            stream_respond(s);
            return;
        }
        s->cst = cluster_stats(s->w, s->cluster);
        s->phase = PH_UP_SELECT;
        s->phase_at = 0;
        run_phase(s);
        return;
    case PH_UP_SELECT:
        if (s->local_reply) {
            stream_respond(s);
            return;
        }
        if (!s->ep)
            route_default_endpoint(s);
        if (!s->ep) {
            s->flags |= SLC_RF_UH;
            stream_local_reply(s, 503, SLC_STR("text/plain"), SLC_STR("no healthy upstream\n"));
            stream_respond(s);
            return;
        }
        s->state = ST_UPSTREAM;
        if (s->expect_continue && !s->req_done && !s->sent_100) {
            static const char c100[] = "HTTP/1.1 100 Continue\r\n\r\n";
            sio_write(&s->dc->io, c100, sizeof(c100) - 1);
            s->sent_100 = true;
        }
        stream_attempt(s, false);
        return;
    case PH_UP_CONNECT:
        if (s->local_reply) {
            stream_drop_upstream(s, false);
            stream_respond(s);
            return;
        }
        stream_send_request(s);
        return;
    case PH_RESP_HEADERS:
        write_response_head(s);
        return;
    }
}

/* ---- request body ------------------------------------------------------ */

static void body_hooks(stream_t *s, int phase, struct evbuffer *src, size_t n, bool end)
{
    chain_t *ch = s->chain;
    if (ch->nph[phase] == 0)
        return;
    struct evbuffer_iovec iov[16];
    size_t off = 0;
    struct evbuffer_ptr ptr;
    evbuffer_ptr_set(src, &ptr, 0, EVBUFFER_PTR_SET);
    while (off < n) {
        int k = evbuffer_peek(src, (ev_ssize_t)(n - off), &ptr, iov, 16);
        if (k <= 0)
            break;
        for (int i = 0; i < k && i < 16 && off < n; i++) {
            size_t len = iov[i].iov_len < n - off ? iov[i].iov_len : n - off;
            for (size_t p = 0; p < ch->nph[phase]; p++) {
                size_t pos = ch->ph[phase][p];
                finst_t *fi = ch->f[pos];
                if (pos >= s->ctx_upto)
                    continue;
                slc_str_t chunk = {iov[i].iov_base, len};
                if (phase == PH_REQ_BODY)
                    fi->desc.on_request_body(s->ctx[pos], s, chunk, false);
                else
                    fi->desc.on_response_body(s->ctx[pos], s, chunk, false);
            }
            off += len;
        }
        evbuffer_ptr_set(src, &ptr, off, EVBUFFER_PTR_SET);
    }
    if (end) {
        for (size_t p = 0; p < ch->nph[phase]; p++) {
            size_t pos = ch->ph[phase][p];
            finst_t *fi = ch->f[pos];
            if (pos >= s->ctx_upto)
                continue;
            if (phase == PH_REQ_BODY)
                fi->desc.on_request_body(s->ctx[pos], s, SLC_STR_NULL, true);
            else
                fi->desc.on_response_body(s->ctx[pos], s, SLC_STR_NULL, true);
        }
    }
}

/* A body moves from a source that strips its framing to a sink that frames
 * it again; the stream in between sees data only and knows neither side's
 * codec. The request goes downstream -> upstream exchange, the response the
 * other way. */
typedef struct body_src {
    h1body_res_t (*next)(stream_t *s, struct evbuffer **src, size_t *n, const char **reason);
    void (*took)(stream_t *s, size_t n);
} body_src_t;

typedef struct body_sink {
    size_t (*pending)(stream_t *s);
    void (*move)(stream_t *s, struct evbuffer *src, size_t n);
    void (*end)(stream_t *s);
} body_sink_t;

/* pump_body moves data from |src| to |dst|, running the phase's body hooks
 * over it and keeping the request's replay copy. Returns 1 when the body is
 * complete (its end written too), 0 when it needs more input or |dst| is
 * above HIGH_WM, -1 when the source's framing is broken or it was cut
 * short (*reason says which). */
static int pump_body(stream_t *s, int phase, const body_src_t *src, const body_sink_t *dst,
                     uint64_t *counted, const char **reason)
{
    for (;;) {
        if (dst->pending(s) >= HIGH_WM)
            return 0;
        size_t n;
        struct evbuffer *in = NULL;
        h1body_res_t r = src->next(s, &in, &n, reason);
        if (r == H1B_ERROR)
            return -1;
        if (r == H1B_MORE)
            return 0;
        if (r == H1B_END) {
            body_hooks(s, phase, in, 0, true);
            dst->end(s);
            return 1;
        }
        body_hooks(s, phase, in, n, false);
        if (phase == PH_REQ_BODY && s->replay.on && !s->replay_broken)
            replay_keep(s, in, n);
        dst->move(s, in, n);
        src->took(s, n);
        *counted += n;
    }
}

/* The request body's ends: the client's connection (HTTP/1.1 framing) and
 * the upstream exchange. */
static h1body_res_t req_src_next(stream_t *s, struct evbuffer **src, size_t *n, const char **reason)
{
    *src = s->dc->io.in;
    return h1body_rd_next(&s->req_rd, *src, n, reason);
}

static void req_src_took(stream_t *s, size_t n)
{
    h1body_rd_took(&s->req_rd, n);
}

static size_t req_sink_pending(stream_t *s)
{
    return s->up->ops->send_pending(s->up);
}

static void req_sink_move(stream_t *s, struct evbuffer *src, size_t n)
{
    s->up->ops->send_data(s->up, src, n);
}

static void req_sink_end(stream_t *s)
{
    s->up->ops->send_end(s->up);
}

static const body_src_t req_src = {req_src_next, req_src_took};
static const body_sink_t req_sink = {req_sink_pending, req_sink_move, req_sink_end};

void stream_pump_request(stream_t *s)
{
    if (s->req_done || !s->req_pumping || !s->up)
        return;
    const char *reason = NULL;
    if (s->in_pump_req)
        return;
    s->in_pump_req = true;
    int r = pump_body(s, PH_REQ_BODY, &req_src, &req_sink, &s->req_bytes, &reason);
    s->in_pump_req = false;
    sio_unthrottle(&s->dc->io);
    if (r == 1) {
        s->req_done = true;
        if (s->mirror)
            mirror_start(s);
    } else if (r < 0) {
        stat_inc(stats_getf(
            s->w->stats, "sluice_downstream_protocol_errors_total{listener=\"%s\",reason=\"%s\"}",
            s->dc->ls->name, reason ? reason : "bad_chunk"));
        s->flags |= SLC_RF_DPE;
        s->closing_after = true;
        stream_upstream_failed(s, 400, SLC_RF_DPE, "malformed request body\n");
    }
}

/* ---- the upstream attempt ------------------------------------------------ */

static void on_route_timeout(evutil_socket_t fd, short what, void *arg)
{
    stream_t *s = arg;
    (void)fd;
    (void)what;
    if (s->cst)
        stat_inc(s->cst->timeouts);
    upstream_fault(s->cst, s->ep ? s->ep->cluster : s->cluster, s->ep, FAULT_UT);
    if (s->up && s->state == ST_UPSTREAM)
        stream_report_attempt(s, SLC_ATTEMPT_TIMEOUT, 0);
    /* The route timeout bounds the whole request, retries included. */
    stream_upstream_failed(s, 504, SLC_RF_UT, "upstream request timeout\n");
}

static void event_del_cb(void *ev)
{
    event_del(ev);
}

static void on_try_timeout(evutil_socket_t fd, short what, void *arg)
{
    stream_t *s = arg;
    (void)fd;
    (void)what;
    if (s->cst)
        stat_inc(s->cst->timeouts);
    upstream_fault(s->cst, s->ep ? s->ep->cluster : s->cluster, s->ep, FAULT_UT);
    if (s->resp_head_sent) {
        stream_upstream_failed(s, 504, SLC_RF_UT, "upstream request timeout\n");
        return;
    }
    stream_attempt_failed(s, SLC_ATTEMPT_TIMEOUT, 504, SLC_RF_UT, "upstream request timeout\n");
}

/* stream_exchange opens the attempt's exchange with the pool (|fresh|:
 * never a pooled connection). Its events may run before this returns. */
static void stream_exchange(stream_t *s, bool fresh)
{
    up_target_t t = {
        .ep = s->ep,
        .sig = s->chain->up_sig,
        .cst = s->cst,
        .holder = s->holder,
        .arena = &s->arena,
        .is_head = s->is_head,
        .fresh = fresh,
    };
    ureq_t *u = upstream_new(s->w, &t, &stream_up_events, s);
    if (!u) {
        stream_upstream_failed(s, 500, SLC_RF_LR, "out of stream memory\n");
        return;
    }
    s->up = u;
    upstream_start(u);
}

/* stream_attempt starts an attempt on s->ep: the endpoint's active count,
 * the tried list, the timers, then the exchange. */
static void stream_attempt(stream_t *s, bool fresh)
{
    worker_t *w = s->w;
    if (s->counted_ep != s->ep) {
        stream_uncount_ep(s);
        atomic_fetch_add_explicit(&s->ep->st->active, 1, memory_order_relaxed);
        s->counted_ep = s->ep;
    }
    if (s->ntried < sizeof(s->tried) / sizeof(s->tried[0]) && !stream_tried(s, s->ep))
        s->tried[s->ntried++] = s->ep;
    stat_inc(s->cst->requests);
    s->attempts++;
    if (s->try_timeout_ms) {
        if (!s->try_ev) {
            s->try_ev = arena_alloc(&s->arena, event_get_struct_event_size());
            if (s->try_ev) {
                evtimer_assign(s->try_ev, w->base, on_try_timeout, s);
                arena_defer(&s->arena, event_del_cb, s->try_ev);
            }
        }
        if (s->try_ev) {
            struct timeval tv = {(time_t)(s->try_timeout_ms / 1000),
                                 (suseconds_t)((s->try_timeout_ms % 1000) * 1000)};
            evtimer_add(s->try_ev, &tv);
        }
    }
    s->upstream_start_us = now_us(w);
    if (s->timeout_ms && !s->timeout_ev) {
        s->timeout_ev = arena_alloc(&s->arena, event_get_struct_event_size());
        if (s->timeout_ev) {
            evtimer_assign(s->timeout_ev, w->base, on_route_timeout, s);
            arena_defer(&s->arena, event_del_cb, s->timeout_ev);
            struct timeval tv = {(time_t)(s->timeout_ms / 1000),
                                 (suseconds_t)((s->timeout_ms % 1000) * 1000)};
            evtimer_add(s->timeout_ev, &tv);
        }
    }
    stream_exchange(s, fresh);
}

/* stream_drop_upstream ends the exchange: the connection is pooled when
 * |reuse| and the exchange can tell it is clean, else closed. */
static void stream_drop_upstream(stream_t *s, bool reuse)
{
    ureq_t *u = s->up;
    if (!u)
        return;
    s->up = NULL;
    s->up_conn = NULL;
    s->req_pumping = false;
    u->ops->finish(u, reuse);
}

static void on_up_connected(void *ctx, slc_conn_t *conn)
{
    stream_t *s = ctx;
    s->up_conn = conn;
    s->phase = PH_UP_CONNECT;
    s->phase_at = 0;
    run_phase(s);
}

/* stream_send_request sends the request head, what a retry replays of the
 * body, and starts the rest of the body flowing. */
static void stream_send_request(stream_t *s)
{
    ureq_t *u = s->up;
    up_req_t rq = {
        .method = s->method,
        .path = s->path,
        .authority = s->authority,
        .hdrs = s->req_hdrs.v,
        .nhdrs = s->req_hdrs.n,
        .body = s->req_body == H1_BODY_NONE     ? UB_NONE
                : s->req_body == H1_BODY_LENGTH ? UB_LENGTH
                                                : UB_STREAM,
        .length = s->req_length, /* the whole length: a retry resends it all */
    };
    int st = u->ops->send_head(u, &rq);
    if (st) {
        stream_upstream_failed(s, st, st == 431 ? SLC_RF_DPE : SLC_RF_LR,
                               st == 431 ? "request too large\n"
                                         : "internal error writing the request head\n");
        return;
    }
    /* A retry: the body data the failed attempt took, again. */
    for (const replay_piece_t *rp = s->replay.head; rp; rp = rp->next)
        u->ops->send_bytes(u, rp->data, rp->len);
    if (s->req_done && rq.body != UB_NONE)
        u->ops->send_end(u);
    s->req_pumping = true;
    if (s->req_done && s->mirror)
        mirror_start(s); /* bodiless (or replayed) request: complete already */
    stream_pump_request(s);
}

static void on_up_writable(void *ctx)
{
    stream_t *s = ctx;
    if (s->req_pumping)
        stream_pump_request(s);
}

static bool method_idempotent(slc_str_t m)
{
    static const char *const idem[] = {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"};
    for (size_t i = 0; i < sizeof(idem) / sizeof(idem[0]); i++)
        if (m.len == strlen(idem[i]) && memcmp(m.ptr, idem[i], m.len) == 0)
            return true;
    return false;
}

static void on_up_failed(void *ctx, const up_fail_t *f)
{
    stream_t *s = ctx;
    stream_drop_upstream(s, false);
    if (f->reused_closed) {
        if (s->req_bytes == 0 && s->attempts < 2 && method_idempotent(s->method)) {
            /* The upstream closed a kept-alive connection as we reused it,
             * and no byte of a response came back. The request may still
             * have reached it, so only an idempotent one (RFC 9110 9.2.2)
             * is sent again, on a fresh connection. */
            log_debug("pooled upstream connection closed; retrying on a new one", "upstream=%s",
                      s->ep->addr);
            s->attempts++;
            stream_exchange(s, true);
            return;
        }
        if (s->cst)
            stat_inc(s->cst->resets);
        upstream_fault(s->cst, s->ep->cluster, s->ep, f->flag == SLC_RF_UR ? FAULT_UR : FAULT_UC);
    }
    if (f->final || s->state != ST_UPSTREAM)
        stream_upstream_failed(s, f->status, f->flag, f->body);
    else
        stream_attempt_failed(s, f->res, f->status, f->flag, f->body);
}

/* replay_keep copies the |n| body data bytes at the front of |src| (about
 * to move upstream) into the replay buffer, for a retry or the mirror.
 * Past REPLAY_LIMIT the body is no longer replayable. */
static void replay_keep(stream_t *s, struct evbuffer *src, size_t n)
{
    if (n == 0)
        return;
    if (s->replay.len + n > REPLAY_LIMIT) {
        s->replay_broken = true;
        return;
    }
    replay_piece_t *p = arena_alloc_nozero(&s->arena, sizeof(*p) + n);
    if (!p || evbuffer_copyout(src, p->data, n) != (ev_ssize_t)n) {
        s->replay_broken = true;
        return;
    }
    p->next = NULL;
    p->len = n;
    if (s->replay.tail)
        s->replay.tail->next = p;
    else
        s->replay.head = p;
    s->replay.tail = p;
    s->replay.len += n;
}

/* drain_request_body discards an unread request body after a local reply,
 * if it is small enough to be worth keeping the connection; otherwise the
 * connection closes. */
static void settle_request_body(stream_t *s)
{
    if (s->req_done)
        return;
    s->closing_after = true;
}

/* ---- responses --------------------------------------------------------- */

slc_status_t stream_local_reply(stream_t *s, int status, slc_str_t ctype, slc_str_t body)
{
    if (s->resp_head_sent)
        return SLC_ESTATE;
    if (status < 200 || status > 599)
        return SLC_EINVAL;
    s->local_reply = true;
    s->status = status;
    s->reason = SLC_STR_NULL;
    s->resp_hdrs.n = 0;
    s->local_body = sdup(s, body.ptr ? body.ptr : "", body.len);
    if (ctype.len)
        hdrs_set(s, &s->resp_hdrs, SLC_STR("content-type"), ctype, false);
    s->resp_body = H1_BODY_LENGTH;
    s->resp_length = body.len;
    return SLC_OK;
}

/* stream_respond: a local reply is ready; run response filters over it. */
static void stream_respond(stream_t *s)
{
    stream_drop_upstream(s, false);
    settle_request_body(s);
    s->state = ST_RESP_FILTERS;
    s->phase = PH_RESP_HEADERS;
    s->phase_at = 0;
    run_phase(s);
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

static void write_response_head(stream_t *s)
{
    dconn_t *dc = s->dc;
    bool keep = s->client_keep_alive && !s->closing_after && !dc->closing && !s->w->draining;
    bool chunk_through = false;
    if (!s->local_reply) {
        if (s->resp_body == H1_BODY_CHUNKED) {
            if (s->minor >= 1)
                chunk_through = true;
            else
                keep = false; /* HTTP/1.0 client: de-chunk, end by closing */
        }
        if (s->resp_body == H1_BODY_EOF)
            keep = false;
    }
    /* The upstream's chunks are not forwarded as they came: the body is
     * read as data and chunked again for an HTTP/1.1 client. */
    h1body_wr_init(&s->resp_wr, chunk_through);
    s->resp_close = !keep;
    const char *reason = status_text(s->status);
    h1w_resp_t resp = {
        .status = s->status,
        .reason = s->reason.len ? s->reason : (slc_str_t){reason, strlen(reason)},
        .hdrs = s->resp_hdrs.v,
        .nhdrs = s->resp_hdrs.n,
        .keep_cl = s->resp_body == H1_BODY_NONE && !s->local_reply,
        .framing = s->resp_body == H1_BODY_LENGTH ? H1W_LENGTH
                   : chunk_through                ? H1W_CHUNKED
                                                  : H1W_NONE,
        .length = s->resp_length,
        .conn = !keep           ? H1W_CONN_CLOSE
                : s->minor == 0 ? H1W_CONN_KEEP_ALIVE
                                : H1W_CONN_NONE,
    };
    size_t need = h1w_response_size(&resp);
    char *buf = arena_alloc_nozero(&s->arena, need);
    size_t o = buf ? h1w_response(&resp, buf, need) : 0;
    if (!o) {
        if (buf) /* h1w_response_size is wrong: a bug, but never an overrun */
            log_error("response head outgrew its size", "listener=%s need=%zu", dc->ls->name, need);
        s->closing_after = true;
        dc->closing = true;
        stream_finish(s);
        return;
    }
    struct evbuffer *out = dc->io.out;
    evbuffer_add(out, buf, o);
    sio_mark(&dc->io);
    s->resp_head_sent = true;
    s->state = ST_RESP_BODY;
    if (s->local_reply) {
        if (!s->is_head && s->local_body.len)
            evbuffer_add(out, s->local_body.ptr, s->local_body.len);
        s->resp_bytes = s->local_body.len;
        stream_finish(s);
        return;
    }
    stream_pump_response(s);
}

static void on_up_head(void *ctx, const up_head_t *h)
{
    stream_t *s = ctx;
    if (s->try_ev)
        event_del(s->try_ev);
    stream_report_attempt(s, SLC_ATTEMPT_RESPONSE, h->status);
    if (retry_wanted(s, SLC_ATTEMPT_RESPONSE, h->status)) {
        retry_schedule(s); /* the connection goes, body unread */
        return;
    }
    /* The views point into the exchange's copy in our arena. */
    s->status = h->status;
    s->reason = h->reason;
    s->resp_hdrs.n = 0;
    for (size_t i = 0; i < h->nhdrs; i++)
        hdrs_push(s, &s->resp_hdrs, h->hdrs[i].name, h->hdrs[i].value);
    /* A body of unknown length is chunked for an HTTP/1.1 client. */
    s->resp_body = h->body == UB_NONE     ? H1_BODY_NONE
                   : h->body == UB_LENGTH ? H1_BODY_LENGTH
                                          : H1_BODY_CHUNKED;
    s->resp_length = h->length;
    s->state = ST_RESP_FILTERS;
    s->phase = PH_RESP_HEADERS;
    s->phase_at = 0;
    run_phase(s);
}

static void on_up_readable(void *ctx)
{
    stream_pump_response(ctx);
}

/* The response body's ends: the upstream exchange and the client's
 * connection (HTTP/1.1 framing). */
static h1body_res_t resp_src_next(stream_t *s, struct evbuffer **src, size_t *n,
                                  const char **reason)
{
    return s->up->ops->recv_next(s->up, src, n, reason);
}

static void resp_src_took(stream_t *s, size_t n)
{
    s->up->ops->recv_took(s->up, n);
}

static size_t resp_sink_pending(stream_t *s)
{
    return sio_pending(&s->dc->io);
}

static void resp_sink_move(stream_t *s, struct evbuffer *src, size_t n)
{
    h1body_wr_move(&s->resp_wr, src, n, s->dc->io.out);
}

static void resp_sink_end(stream_t *s)
{
    h1body_wr_end(&s->resp_wr, s->dc->io.out);
}

static const body_src_t resp_src = {resp_src_next, resp_src_took};
static const body_sink_t resp_sink = {resp_sink_pending, resp_sink_move, resp_sink_end};

void stream_pump_response(stream_t *s)
{
    if (s->state != ST_RESP_BODY || !s->up)
        return;
    if (s->resp_body == H1_BODY_NONE) {
        s->resp_read = true;
        stream_finish(s);
        return;
    }
    const char *reason = NULL;
    if (s->in_pump_resp)
        return;
    s->in_pump_resp = true;
    int r = pump_body(s, PH_RESP_BODY, &resp_src, &resp_sink, &s->resp_bytes, &reason);
    s->in_pump_resp = false;
    sio_mark(&s->dc->io);
    if (r == 1) {
        s->resp_read = true;
        stream_finish(s);
    } else if (r < 0) {
        /* A bad chunk, or a body cut short: the client has the head and
         * part of the body, so all that is left is to cut its connection. */
        log_debug("upstream response body cut", "cluster=%s upstream=%s reason=%s",
                  s->cluster->name, s->ep->addr, reason ? reason : "bad_chunk");
        upstream_fault(s->cst, s->ep->cluster, s->ep, FAULT_UPE);
        s->flags |= SLC_RF_UPE;
        s->closing_after = true;
        s->dc->closing = true;
        stream_drop_upstream(s, false);
        stream_finish(s);
    }
    /* A slow client: the pump stopped at HIGH_WM, the upstream's input fills
     * to its read_high and reading pauses until on_dconn_write pumps again. */
}

void stream_upstream_failed(stream_t *s, int status, uint32_t flag, const char *body)
{
    s->flags |= flag;
    /* This ends the upstream side for good: no retry may fire later, and a
     * filter that paused the stream must not resume it into a finished one. */
    if (s->backoff_ev)
        event_del(s->backoff_ev);
    if (s->try_ev)
        event_del(s->try_ev);
    s->paused = false;
    stream_drop_upstream(s, false);
    if (s->resp_head_sent) {
        /* Too late for an error reply: cut the client connection. */
        s->closing_after = true;
        s->dc->closing = true;
        stream_finish(s);
        return;
    }
    stream_local_reply(s, status, SLC_STR("text/plain"), (slc_str_t){body, strlen(body)});
    s->closing_after = s->closing_after || !s->req_done;
    s->state = ST_RESP_FILTERS;
    s->phase = PH_RESP_HEADERS;
    s->phase_at = 0;
    run_phase(s);
}

/* ---- retries ------------------------------------------------------------ */

void stream_report_attempt(stream_t *s, slc_attempt_result_t res, int status)
{
    chain_t *ch = s->chain;
    s->retry_asked = false;
    s->retry_backoff_ms = 0;
    s->in_result = true;
    for (size_t p = 0; p < ch->nph[PH_UP_RESULT]; p++) {
        size_t pos = ch->ph[PH_UP_RESULT][p];
        if (pos < s->ctx_upto)
            ch->f[pos]->desc.on_upstream_result(s->ctx[pos], s, s->ep, res, status);
    }
    s->in_result = false;
}

bool stream_can_retry(const stream_t *s)
{
    if (s->resp_head_sent || s->w->draining || s->attempts >= STREAM_MAX_ATTEMPTS)
        return false;
    /* the body already sent cannot be sent again without its copy */
    return !s->req_bytes || (s->replay.on && !s->replay_broken);
}

/* retry_wanted: did a filter ask for another attempt (ABI 1.3), or does
 * the built-in policy (route_set_retry) cover this outcome; and can we? */
static bool retry_wanted(stream_t *s, slc_attempt_result_t res, int status)
{
    if (!stream_can_retry(s))
        return false;
    if (s->retry_asked)
        return true;
    const slc_retry_policy_t *p = s->retry;
    if (!p || s->retries_done >= p->max_retries)
        return false;
    return slcu_retry_covers(p, res, status);
}

static void on_backoff(evutil_socket_t fd, short what, void *arg)
{
    stream_t *s = arg;
    (void)fd;
    (void)what;
    /* A new upstream_select round: the lb sees upstream_tried. */
    s->ep = NULL;
    s->phase = PH_UP_SELECT;
    s->phase_at = 0;
    run_phase(s);
}

static void event_free_cb(void *ev)
{
    event_del(ev);
}

/* retry_schedule drops the current attempt and starts the next one after
 * an exponential backoff with full jitter (Envoy's: base 25 ms, capped at
 * ten times the base). */
static void retry_schedule(stream_t *s)
{
    stream_drop_upstream(s, false);
    if (s->try_ev)
        event_del(s->try_ev);
    stream_uncount_ep(s);
    s->retries_done++;
    s->status = 0;
    s->reason = SLC_STR_NULL;
    s->resp_hdrs.n = 0;
    s->state = ST_UPSTREAM;
    s->req_pumping = false;
    uint64_t ms = s->retry_backoff_ms;
    if (!s->retry_asked) {
        ms = slcu_retry_backoff_ms(s->retry->backoff_base_ms, s->retries_done, worker_rand(s->w));
    }
    s->retry_asked = false;
    if (!s->backoff_ev) {
        s->backoff_ev = arena_alloc(&s->arena, event_get_struct_event_size());
        if (!s->backoff_ev) {
            stream_upstream_failed(s, 503, SLC_RF_UF, "retry failed: out of stream memory\n");
            return;
        }
        evtimer_assign(s->backoff_ev, s->w->base, on_backoff, s);
        arena_defer(&s->arena, event_free_cb, s->backoff_ev);
    }
    struct timeval tv;
    evtimer_add(s->backoff_ev, ms_tv(&tv, ms));
    log_debug("retrying upstream request", "cluster=%s attempt=%u backoff_ms=%llu",
              s->cluster->name, s->retries_done + 1, (unsigned long long)ms);
}

void stream_attempt_failed(stream_t *s, slc_attempt_result_t res, int status, uint32_t flag,
                           const char *body)
{
    stream_report_attempt(s, res, 0);
    if (retry_wanted(s, res, 0)) {
        retry_schedule(s);
        return;
    }
    stream_upstream_failed(s, status, flag, body);
}

/* ---- end of stream ----------------------------------------------------- */

static void stream_complete_hooks(stream_t *s)
{
    chain_t *ch = s->chain;
    for (size_t p = 0; p < ch->nph[PH_COMPLETE]; p++) {
        size_t pos = ch->ph[PH_COMPLETE][p];
        if (pos < s->ctx_upto)
            ch->f[pos]->desc.on_complete(s->ctx[pos], s);
    }
}

static void stream_log_done(const stream_t *s)
{
    if (log_enabled(SLC_LOG_DEBUG))
        log_debug("stream done", "listener=%s status=%d flags=0x%x up_bytes=%llu down_bytes=%llu",
                  s->dc->ls->name, s->status, s->flags, (unsigned long long)s->req_bytes,
                  (unsigned long long)s->resp_bytes);
}

static void stream_free(stream_t *s)
{
    worker_t *w = s->w;
    holder_t *h = s->holder;
    if (s->timeout_ev)
        event_del(s->timeout_ev);
    stream_drop_upstream(s, false); /* before the arena it lives in goes */
    stream_uncount_ep(s);
    stat_add(w->streams_active, -1);
    arena_t a = s->arena; /* the stream itself lives in the arena */
    arena_reset(&a);
    worker_release(w, h);
}

static void stream_finish(stream_t *s)
{
    dconn_t *dc = s->dc;
    if (s->state == ST_DONE)
        return;
    s->state = ST_DONE;
    /* Pool the connection only after a response read to its end; a local
     * reply sent instead (e.g. by a response filter) leaves the upstream's
     * body unread on it. */
    stream_drop_upstream(s, !(s->resp_close || !s->req_done || s->local_reply || !s->resp_read));
    if (s->status >= 100 && s->status < 600)
        stat_inc(dc->st->req_class[s->status / 100 - 1]);
    else
        stat_inc(dc->st->req_class[5]);
    stream_complete_hooks(s);
    stream_log_done(s);
    bool close = s->resp_close || s->closing_after || !s->req_done;
    dc->s = NULL;
    stream_free(s);
    if (close || dc->closing) {
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

/* stream_abort_downstream: the client went away mid-stream. */
static void stream_abort_downstream(stream_t *s)
{
    s->flags |= SLC_RF_DC;
    s->closing_after = true;
    s->dc->closing = true;
    stream_drop_upstream(s, false);
    dconn_t *dc = s->dc;
    s->state = ST_DONE;
    stat_inc(dc->st->req_class[5]);
    stream_complete_hooks(s);
    stream_log_done(s);
    dc->s = NULL;
    stream_free(s);
}

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

static void dconn_process(dconn_t *dc)
{
    worker_t *w = dc->w;
    if (dc->s) {
        if (dc->s->req_pumping)
            stream_pump_request(dc->s);
        return;
    }
    if (dc->closing)
        return;
    struct evbuffer *in = dc->io.in;
    size_t avail = evbuffer_get_length(in);
    if (avail == 0)
        return;
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
    stream_t *s = stream_begin(dc, g, gl, &req, p);
    if (s) {
        s->pipelined = dc->pipelined;
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
