/* stream: the life of one request, whatever codec brought it (see
 * stream.h): the filter-chain runner, upstream attempts through the pool's
 * exchanges, retries and the replay copy, local replies, and the body pumps
 * between the downstream codec (down_ops_t) and the exchange (up_ops_t).
 */
#include "hostapi.h"
#include "mirror.h"
#include "wctx.h"
#include "stream.h"

#include "log.h"
#include "server.h"

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

#define STREAM_BUDGET (4 * 1024 * 1024)

static void stream_finish(stream_t *s);
static void stream_free(stream_t *s);
static void stream_respond(stream_t *s);
static void run_phase(stream_t *s);
static void after_phase(stream_t *s, int phase);
static void send_response_head(stream_t *s);
static void replay_keep(stream_t *s, struct evbuffer *src, size_t n);
static bool retry_wanted(stream_t *s, slc_attempt_result_t res, int status);
static void retry_schedule(stream_t *s);

static void stream_attempt(stream_t *s, bool fresh);
static void stream_drop_upstream(stream_t *s, bool reuse);
static void stream_send_request(stream_t *s);
static void on_up_connected(void *ctx, slc_conn_t *conn, bool fresh);
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

int hdrs_push(stream_t *s, hdrs_t *h, slc_str_t name, slc_str_t value)
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

static const struct timeval *ms_tv(struct timeval *tv, uint64_t ms)
{
    tv->tv_sec = (time_t)(ms / 1000);
    tv->tv_usec = (suseconds_t)((ms % 1000) * 1000);
    return tv;
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

void stream_proxy_headers(stream_t *s, const stream_hdr_at_t *at, const char *peer_ip, bool secure)
{
    const conf_listener_t *lc = s->gl->conf;
    ssize_t xff = at->xff, via = at->via, rid = at->rid, xfp = at->xfp;
    /* The trusted client address: the peer itself, or what the trusted hops
     * say it was (Envoy's rules: with use_remote_address the Nth address
     * from the right, else the N+1th; the peer when the list is short). */
    size_t iplen = strlen(peer_ip);
    s->client_addr = (slc_str_t){peer_ip, iplen};
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
                memcpy(v + h->value.len + 2, peer_ip, iplen + 1);
                h->value = (slc_str_t){v, n};
            }
        } else {
            hdrs_push(s, &s->req_hdrs, SLC_STR("x-forwarded-for"), (slc_str_t){peer_ip, iplen});
        }
    }

    /* The scheme is the transport's: a secured connection is https. A
     * trusted hop's x-forwarded-proto overrides it (kept as sent). */
    s->scheme = secure ? SLC_STR("https") : SLC_STR("http");
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

stream_t *stream_new(worker_t *w, gen_t *g, glistener_t *gl, const down_ops_t *ops, void *down,
                     slc_conn_t *conn, lstats_t *lst)
{
    arena_t a;
    arena_init(&a, &w->arena_pool, STREAM_BUDGET);
    stream_t *s = arena_alloc(&a, sizeof(*s));
    if (!s) {
        arena_reset(&a);
        return NULL;
    }
    s->arena = a; /* the arena now lives inside the stream it allocated */
    s->w = w;
    s->dops = ops;
    s->down = down;
    s->down_conn = conn;
    s->lst = lst;
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

void stream_discard(stream_t *s)
{
    stream_free(s);
}

uint64_t stream_progress(const stream_t *s)
{
    return s->req_bytes + s->resp_bytes + (uint64_t)s->state + (s->resp_head_sent ? 1u << 20 : 0);
}

void stream_idle_timeout(stream_t *s)
{
    /* Stream idle timeout (Envoy's stream_idle_timeout): nothing moved for
     * a whole idle_timeout. The route timeout, when set, is usually shorter
     * and answers 504 first. */
    if (!s->req_done)
        stream_upstream_failed(s, 408, SLC_RF_SI, "request body timeout\n");
    else
        stream_upstream_failed(s, 504, SLC_RF_SI, "stream idle timeout\n");
}

void stream_start(stream_t *s)
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
        if (!s->req_done)
            s->dops->send_continue(s); /* if the client waits to be asked */
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
        send_response_head(s);
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
    void (*trailers)(stream_t *s); /* at the end: take the trailer fields */
} body_src_t;

typedef struct body_sink {
    size_t (*pending)(stream_t *s);
    void (*move)(stream_t *s, struct evbuffer *src, size_t n);
    void (*end)(stream_t *s);
} body_sink_t;

/* pump_body moves data from |src| to |dst|, running the phase's body hooks
 * over it and keeping the request's replay copy. Returns 1 when the body is
 * complete (its end written too), 0 when it needs more input or |dst| is
 * above STREAM_HIGH_WM, -1 when the source's framing is broken or it was cut
 * short (*reason says which). */
static int pump_body(stream_t *s, int phase, const body_src_t *src, const body_sink_t *dst,
                     uint64_t *counted, const char **reason)
{
    for (;;) {
        if (dst->pending(s) >= STREAM_HIGH_WM)
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
            src->trailers(s);
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

/* The request body's ends: the downstream codec and the upstream exchange. */
static h1body_res_t req_src_next(stream_t *s, struct evbuffer **src, size_t *n, const char **reason)
{
    return s->dops->recv_next(s, src, n, reason);
}

static void req_src_took(stream_t *s, size_t n)
{
    s->dops->recv_took(s, n);
}

static void req_src_trailers(stream_t *s)
{
    s->dops->recv_trailers(s, &s->req_trailers);
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
    s->up->ops->send_end(s->up, s->req_trailers.v, s->req_trailers.n);
}

static const body_src_t req_src = {req_src_next, req_src_took, req_src_trailers};
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
    if (r == 1) {
        s->req_done = true;
        if (s->mirror)
            mirror_start(s);
    } else if (r < 0) {
        stat_inc(stats_getf(
            s->w->stats, "sluice_downstream_protocol_errors_total{listener=\"%s\",reason=\"%s\"}",
            s->lst->name, reason ? reason : "bad_chunk"));
        s->flags |= SLC_RF_DPE;
        s->closing_after = true;
        stream_upstream_failed(s, 400, SLC_RF_DPE, "malformed request body\n");
    }
}

/* ---- the upstream attempt ------------------------------------------------ */

/* count_timeout: a route or per-try timeout fired (counter and fault). */
static void count_timeout(stream_t *s)
{
    if (s->cst)
        stat_inc(s->cst->timeouts);
    upstream_fault(s->cst, s->ep ? s->ep->cluster : s->cluster, s->ep, FAULT_UT);
}

static void on_route_timeout(evutil_socket_t fd, short what, void *arg)
{
    stream_t *s = arg;
    (void)fd;
    (void)what;
    count_timeout(s);
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
    count_timeout(s);
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
            struct timeval tv;
            evtimer_add(s->try_ev, ms_tv(&tv, s->try_timeout_ms));
        }
    }
    s->upstream_start_us = now_us(w);
    if (s->timeout_ms && !s->timeout_ev) {
        s->timeout_ev = arena_alloc(&s->arena, event_get_struct_event_size());
        if (s->timeout_ev) {
            evtimer_assign(s->timeout_ev, w->base, on_route_timeout, s);
            arena_defer(&s->arena, event_del_cb, s->timeout_ev);
            struct timeval tv;
            evtimer_add(s->timeout_ev, ms_tv(&tv, s->timeout_ms));
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

static void on_up_connected(void *ctx, slc_conn_t *conn, bool fresh)
{
    stream_t *s = ctx;
    s->up_conn = conn;
    if (!fresh) { /* the upstream connect phase ran when it opened */
        stream_send_request(s);
        return;
    }
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
        .body = s->req_body,
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
        u->ops->send_end(u, s->req_trailers.v, s->req_trailers.n);
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
    s->resp_body = UB_LENGTH;
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

/* send_response_head: the response headers phase is over. The codec writes
 * the head; the body follows (a local reply's at once). */
static void send_response_head(stream_t *s)
{
    if (!s->dops->send_head(s)) {
        s->closing_after = true;
        stream_finish(s);
        return;
    }
    s->resp_head_sent = true;
    s->state = ST_RESP_BODY;
    if (s->local_reply) {
        if (!s->is_head && s->local_body.len)
            s->dops->send_bytes(s, s->local_body.ptr, s->local_body.len);
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
    /* The head is in our arena already: its list becomes ours as it is. */
    s->status = h->status;
    s->reason = h->reason;
    s->resp_hdrs = (hdrs_t){h->hdrs, h->nhdrs, h->hdrs_cap};
    s->resp_body = h->body;
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

/* The response body's ends: the upstream exchange and the downstream
 * codec. */
static h1body_res_t resp_src_next(stream_t *s, struct evbuffer **src, size_t *n,
                                  const char **reason)
{
    return s->up->ops->recv_next(s->up, src, n, reason);
}

static void resp_src_took(stream_t *s, size_t n)
{
    s->up->ops->recv_took(s->up, n);
}

static void resp_src_trailers(stream_t *s)
{
    s->up->ops->recv_trailers(s->up, &s->resp_trailers);
}

static size_t resp_sink_pending(stream_t *s)
{
    return s->dops->send_pending(s);
}

static void resp_sink_move(stream_t *s, struct evbuffer *src, size_t n)
{
    s->dops->send_data(s, src, n);
}

static void resp_sink_end(stream_t *s)
{
    s->dops->send_end(s);
}

static const body_src_t resp_src = {resp_src_next, resp_src_took, resp_src_trailers};
static const body_sink_t resp_sink = {resp_sink_pending, resp_sink_move, resp_sink_end};

void stream_pump_response(stream_t *s)
{
    if (s->state != ST_RESP_BODY || !s->up)
        return;
    if (s->resp_body == UB_NONE) {
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
        stream_drop_upstream(s, false);
        stream_finish(s);
    }
    /* A slow client: the pump stopped at STREAM_HIGH_WM, the upstream's
     * input fills to its read_high and reading pauses until the codec
     * calls stream_pump_response again as its output drains. */
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
                  s->lst->name, s->status, s->flags, (unsigned long long)s->req_bytes,
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
    if (s->state == ST_DONE)
        return;
    s->state = ST_DONE;
    /* Pool the connection only after a response read to its end; a local
     * reply sent instead (e.g. by a response filter) leaves the upstream's
     * body unread on it. */
    stream_drop_upstream(s, s->req_done && !s->local_reply && s->resp_read);
    if (s->status >= 100 && s->status < 600)
        stat_inc(s->lst->req_class[s->status / 100 - 1]);
    else
        stat_inc(s->lst->req_class[5]);
    stream_complete_hooks(s);
    stream_log_done(s);
    bool close = s->closing_after || !s->req_done;
    void *down = s->down;
    const down_ops_t *ops = s->dops;
    stream_free(s);
    ops->done(down, close);
}

void stream_abort_downstream(stream_t *s)
{
    s->flags |= SLC_RF_DC;
    s->closing_after = true;
    stream_drop_upstream(s, false);
    s->state = ST_DONE;
    stat_inc(s->lst->req_class[5]);
    stream_complete_hooks(s);
    stream_log_done(s);
    stream_free(s);
}
