/* upstream: per-worker connection pools to endpoints and the upstream half
 * of a stream (connect, send the request head, read the response head). */
#include "log.h"
#include "server.h"

#include <errno.h>
#include <sluice/util.h>
#include <event2/buffer.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define UP_HIGH_WM  (256 * 1024)
#define UP_LOW_WM   (64 * 1024)
#define UP_MAX_HEAD (64 * 1024)
#define UP_MAX_HDRS 200
/* Interim (1xx) responses one attempt may receive before the upstream is
 * taken for broken: an endless 100 Continue must not keep a stream alive. */
#define UP_MAX_INTERIM       16
#define UP_MAX_INTERIM_BYTES (16 * 1024)

static uint64_t hash_addr(const char *s)
{
    return slcu_fnv1a64(s, strlen(s));
}

static upool_t *pool_get(worker_t *w, const char *addr, const char *sig)
{
    size_t b = (hash_addr(addr) ^ hash_addr(sig)) % UPOOL_BUCKETS;
    for (upool_t *p = w->pools[b]; p; p = p->next)
        if (strcmp(p->addr, addr) == 0 && strcmp(p->sig, sig) == 0)
            return p;
    upool_t *p = calloc(1, sizeof(*p));
    if (!p)
        abort();
    snprintf(p->addr, sizeof(p->addr), "%s", addr);
    p->sig = strdup(sig);
    if (!p->sig)
        abort();
    p->next = w->pools[b];
    w->pools[b] = p;
    return p;
}

/* endpoint_pool: pool_get through the endpoint's slot for this worker. */
static upool_t *endpoint_pool(worker_t *w, const slc_endpoint_t *ep, const char *sig)
{
    ep_pool_slot_t *slot = &ep->wpool[w->id];
    if (slot->pool && slot->sig == sig)
        return slot->pool;
    upool_t *p = pool_get(w, ep->addr, sig);
    slot->sig = sig;
    slot->pool = p;
    return p;
}

static void uconn_free(uconn_t *uc)
{
    if (uc->connected && uc->cst)
        stat_add(uc->cst->cx_active, -1);
    if (uc->clst) {
        atomic_fetch_sub_explicit(&uc->clst->connections, 1, memory_order_relaxed);
        uc->clst = NULL;
        if (uc->w->pend_head)
            event_active(uc->w->pend_ev, EV_TIMEOUT, 0); /* a slot freed: look */
    }
    sio_close(&uc->io); /* and the transport, if a filter installed one */
    if (uc->pinned)
        worker_release(uc->w, uc->pinned);
    free(uc);
}

static void pool_unlink(uconn_t *uc)
{
    upool_t *p = uc->pool;
    for (uconn_t **pp = &p->idle; *pp; pp = &(*pp)->next) {
        if (*pp == uc) {
            *pp = uc->next;
            p->nidle--;
            return;
        }
    }
}

static void discard(uconn_t *uc, int why)
{
    if (uc->cst)
        stat_inc(uc->cst->discards[why]);
    pool_unlink(uc);
    uconn_free(uc);
}

static bool gen_has_state(const gen_t *g, const cl_state_t *st)
{
    for (size_t i = 0; i < g->nclusters; i++)
        if (g->clusters[i].st == st)
            return true;
    return false;
}

void upstream_pools_retain(worker_t *w, const gen_t *g)
{
    for (size_t b = 0; b < UPOOL_BUCKETS; b++) {
        for (upool_t *p = w->pools[b]; p; p = p->next) {
            for (uconn_t **pp = &p->idle; *pp;) {
                uconn_t *uc = *pp;
                if (uc->clst && !gen_has_state(g, uc->clst)) {
                    *pp = uc->next;
                    p->nidle--;
                    uconn_free(uc);
                    continue;
                }
                pp = &uc->next;
            }
        }
    }
}

static const char *const fault_names[] = {"UF", "UC", "UR", "UT", "UPE"};

void upstream_fault(stream_t *s, int kind)
{
    if (s->cst)
        stat_inc(s->cst->faults[kind]);
    const slc_cluster_t *c = s->ep ? s->ep->cluster : s->cluster;
    if (!c)
        return;
    uint64_t supp;
    if (log_limit_take(&c->st->fault_log, 1000, &supp))
        log_warn("upstream fault", "cluster=%s flag=%s upstream=%s suppressed=%llu", c->name,
                 fault_names[kind], s->ep ? s->ep->addr : "-", (unsigned long long)supp);
}

void upstream_pools_free(worker_t *w)
{
    if (w->pend_ev) {
        event_free(w->pend_ev);
        w->pend_ev = NULL;
    }
    for (size_t b = 0; b < UPOOL_BUCKETS; b++) {
        while (w->pools[b]) {
            upool_t *p = w->pools[b];
            w->pools[b] = p->next;
            while (p->idle) {
                uconn_t *uc = p->idle;
                p->idle = uc->next;
                uconn_free(uc);
            }
            free(p->sig);
            free(p);
        }
    }
}

static void read_response_head(stream_t *s)
{
    uconn_t *uc = s->up;
    struct evbuffer *in = uc->io.in;
    for (;;) {
        size_t avail = evbuffer_get_length(in);
        if (avail == 0)
            return;
        size_t look = avail < UP_MAX_HEAD ? avail : UP_MAX_HEAD;
        const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)look);
        h1_limits_t lim = {UP_MAX_HEAD, UP_MAX_HEAD, UP_MAX_HDRS};
        h1_header_t hdrs[UP_MAX_HDRS];
        h1_response_t r;
        const char *reason = NULL;
        h1_result_t res =
            h1_parse_response(p, look, &lim, s->is_head, hdrs, UP_MAX_HDRS, &r, &reason);
        if (res == H1_INCOMPLETE)
            return;
        if (res == H1_ERROR) {
            log_debug("malformed upstream response", "cluster=%s upstream=%s reason=%s",
                      s->cluster->name, s->ep->addr, reason ? reason : "?");
            stat_inc(uc->cst->resets);
            upstream_fault(s, FAULT_UPE);
            s->ev->attempt_failed(s, SLC_ATTEMPT_RESET, 502, SLC_RF_UPE,
                                  "upstream sent a malformed response\n");
            return;
        }
        if (r.status >= 100 && r.status < 200) {
            if (r.status == 101) {
                upstream_fault(s, FAULT_UPE);
                s->ev->upstream_failed(s, 502, SLC_RF_UPE, "upstream protocol upgrade refused\n");
                return;
            }
            s->interim++;
            s->interim_bytes += (uint32_t)r.head_len;
            if (s->interim > UP_MAX_INTERIM || s->interim_bytes > UP_MAX_INTERIM_BYTES) {
                log_debug("too many interim responses", "cluster=%s upstream=%s count=%u",
                          s->cluster->name, s->ep->addr, s->interim);
                upstream_fault(s, FAULT_UPE);
                s->ev->upstream_failed(s, 502, SLC_RF_UPE,
                                       "upstream sent too many 1xx responses\n");
                return;
            }
            /* Interim responses are ours to answer (100-continue was sent
             * to the client already): drop them. */
            evbuffer_drain(in, r.head_len);
            sio_unthrottle(&uc->io);
            continue;
        }
        uc->requests++;
        s->ev->on_response_head(s, &r, p);
        return;
    }
}

static void on_up_read(sio_t *io, void *arg)
{
    uconn_t *uc = arg;
    stream_t *s = uc->s;
    (void)io;
    if (!s) {
        /* An idle pooled connection must stay silent. */
        discard(uc, DISCARD_IDLE_READABLE);
        return;
    }
    if (s->state == ST_UPSTREAM && uc->io.sent < uc->head_end) {
        /* A response before our request was on the wire answers something
         * else (a stray the upstream sent late): the connection cannot be
         * trusted to pair requests and responses any more. */
        log_debug("upstream response before the request was sent", "cluster=%s upstream=%s",
                  s->cluster->name, s->ep->addr);
        upstream_fault(s, FAULT_UPE);
        s->ev->attempt_failed(s, SLC_ATTEMPT_RESET, 502, SLC_RF_UPE,
                              "upstream sent a response before the request\n");
        return;
    }
    if (s->state == ST_UPSTREAM)
        read_response_head(s);
    else if (s->state == ST_RESP_BODY)
        s->ev->pump_response(s);
}

static void on_up_write(sio_t *io, void *arg)
{
    uconn_t *uc = arg;
    (void)io;
    if (uc->s && uc->s->req_pumping)
        uc->s->ev->pump_request(uc->s);
}

static void upstream_connect(stream_t *s);
static void upstream_dispatch(stream_t *s);

/* reserve_connection takes a slot for a new connection to |c|, or fails if
 * the cluster is at max_connections. Compare-and-swap: two workers
 * checking at once cannot both take the last slot. */
static bool reserve_connection(const slc_cluster_t *c)
{
    _Atomic uint32_t *n = &c->st->connections;
    uint32_t max = c->pool.max_connections;
    if (!max) {
        atomic_fetch_add_explicit(n, 1, memory_order_relaxed);
        return true;
    }
    uint32_t cur = atomic_load_explicit(n, memory_order_relaxed);
    while (cur < max)
        if (atomic_compare_exchange_weak_explicit(n, &cur, cur + 1, memory_order_relaxed,
                                                  memory_order_relaxed))
            return true;
    return false;
}
static void pend_add(worker_t *w, stream_t *s);
static bool worker_has_pending(worker_t *w, const slc_cluster_t *c);

static bool method_idempotent(slc_str_t m)
{
    static const char *const idem[] = {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"};
    for (size_t i = 0; i < sizeof(idem) / sizeof(idem[0]); i++)
        if (m.len == strlen(idem[i]) && memcmp(m.ptr, idem[i], m.len) == 0)
            return true;
    return false;
}

static void on_up_event(sio_t *io, int what, void *arg)
{
    uconn_t *uc = arg;
    stream_t *s = uc->s;
    if (what & SIO_CONNECTED) {
        uc->connected = true;
        stat_inc(uc->cst->cx_total);
        stat_inc(uc->cst->cx_active);
        if (!s)
            return;
        s->phase = PH_UP_CONNECT;
        s->phase_at = 0;
        s->ev->chain_continue(s);
        return;
    }
    if (!(what & (SIO_EOF | SIO_ERROR | SIO_TIMEOUT)))
        return;
    if (!s) {
        /* Idle connection closed by the upstream, or idle timeout. */
        if (what & SIO_TIMEOUT) {
            pool_unlink(uc);
            uconn_free(uc);
        } else {
            discard(uc, DISCARD_IDLE_READABLE);
        }
        return;
    }
    if (!uc->connected) {
        stat_inc(uc->cst->connect_fail);
        upstream_fault(s, FAULT_UF);
        log_debug("upstream connect failed", "cluster=%s upstream=%s timeout=%d", s->cluster->name,
                  s->ep->addr, (what & SIO_TIMEOUT) != 0);
        s->ev->attempt_failed(s, SLC_ATTEMPT_CONNECT_FAILURE, 502, SLC_RF_UF,
                              "upstream connect error or disconnect/reset before headers\n");
        return;
    }
    if (s->state == ST_UPSTREAM && uc->reused && s->req_bytes == 0 &&
        evbuffer_get_length(io->in) == 0 && s->attempts < 2 && method_idempotent(s->method)) {
        /* The upstream closed a kept-alive connection as we reused it, and
         * no byte of a response came back. The request may still have
         * reached it, so only an idempotent one (RFC 9110 9.2.2) is sent
         * again, on a fresh connection. */
        log_debug("pooled upstream connection closed; retrying on a new one", "upstream=%s",
                  s->ep->addr);
        upstream_abort(s);
        s->attempts++;
        /* Replaces the connection just closed: its slot, taken back at once. */
        atomic_fetch_add_explicit(&s->ep->cluster->st->connections, 1, memory_order_relaxed);
        upstream_connect(s);
        return;
    }
    if (s->state == ST_UPSTREAM)
        stat_inc(uc->cst->resets);
    s->ev->upstream_eof(s, (what & SIO_ERROR) != 0);
}

static void attach(stream_t *s, uconn_t *uc)
{
    uc->s = s;
    s->up = uc;
    uc->head_end = UINT64_MAX; /* until the head is queued, any byte is a stray */
    sio_setcb(&uc->io, on_up_read, on_up_write, on_up_event, uc);
    sio_timer(&uc->io, 0);
    sio_read_enable(&uc->io, true);
}

static void upstream_connect(stream_t *s)
{
    worker_t *w = s->w;
    const slc_endpoint_t *ep = s->ep;
    uconn_t *uc = calloc(1, sizeof(*uc));
    if (!uc)
        abort();
    uc->kind = CONN_UPSTREAM;
    uc->w = w;
    uc->pool = endpoint_pool(w, ep, s->chain->up_sig);
    uc->cst = s->cst;
    /* The caller reserved this connection's slot in clst->connections
     * (upstream_dispatch, or the reuse retry replacing one just closed). */
    uc->clst = ep->cluster->st;
    uc->s = s;
    s->up = uc;
    uc->head_end = UINT64_MAX;
    int rc =
        sio_connect(&uc->io, &w->sioloop, (const struct sockaddr *)&ep->sa, ep->salen,
                    ep->cluster->pool.connect_timeout_ms, on_up_read, on_up_write, on_up_event, uc);
    uc->io.read_high = UP_HIGH_WM;
    uc->io.write_low = UP_LOW_WM;
    uc->io.reading = true; /* enabled once connected */
    if (rc != 0) {
        /* Immediate failure (e.g. no route): the event callback may not run. */
        stat_inc(uc->cst->connect_fail);
        upstream_fault(s, FAULT_UF);
        s->ev->attempt_failed(s, SLC_ATTEMPT_CONNECT_FAILURE, 502, SLC_RF_UF,
                              "upstream connect error or disconnect/reset before headers\n");
    }
}

static void on_route_timeout(evutil_socket_t fd, short what, void *arg)
{
    stream_t *s = arg;
    (void)fd;
    (void)what;
    if (s->cst)
        stat_inc(s->cst->timeouts);
    upstream_fault(s, FAULT_UT);
    if (s->up && s->state == ST_UPSTREAM)
        s->ev->report_attempt(s, SLC_ATTEMPT_TIMEOUT, 0);
    /* The route timeout bounds the whole request, retries included. */
    s->ev->upstream_failed(s, 504, SLC_RF_UT, "upstream request timeout\n");
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
    upstream_fault(s, FAULT_UT);
    if (s->resp_head_sent) {
        s->ev->upstream_failed(s, 504, SLC_RF_UT, "upstream request timeout\n");
        return;
    }
    s->ev->attempt_failed(s, SLC_ATTEMPT_TIMEOUT, 504, SLC_RF_UT, "upstream request timeout\n");
}

void upstream_begin(stream_t *s)
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
    s->interim = s->interim_bytes = 0;
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
    upstream_dispatch(s);
}

/* idle_is_quiet: nothing arrived on an idle connection (no bytes, no EOF)
 * since it was pooled. The loop may not have run its read event yet, so ask
 * the socket: a stray response read as the answer to the next request would
 * hand one client's response to another. */
static bool idle_is_quiet(uconn_t *uc)
{
    char c;
    if (evbuffer_get_length(uc->io.in) || uc->io.eof || uc->io.dead)
        return false;
    /* Pooled during this very loop iteration (the loop's cached time has
     * not moved): its response was read to its end moments ago, in this
     * batch of events, and what could have arrived since is what could
     * arrive between a peek and the write anyway. The peek is a system
     * call per reuse; it is kept for connections that sat through an
     * epoll_wait, where a stray can have landed unread. */
    if (uc->pooled_us == now_us(uc->w))
        return true;
    ssize_t n = recv(uc->io.fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

/* upstream_dispatch gives the stream a connection: a pooled one, a new one
 * within the cluster's max_connections, or a place in the pending queue
 * (503 UO at once past max_pending_requests). */
static void upstream_dispatch(stream_t *s)
{
    worker_t *w = s->w;
    upool_t *p = endpoint_pool(w, s->ep, s->chain->up_sig);
    while (p->idle && !idle_is_quiet(p->idle))
        discard(p->idle, DISCARD_REUSE_READABLE);
    if (p->idle) {
        uconn_t *uc = p->idle;
        p->idle = uc->next;
        p->nidle--;
        uc->next = NULL;
        uc->reused = true;
        uc->cst = s->cst;
        attach(s, uc);
        stream_upstream_ready(s);
        return;
    }
    const slc_cluster_t *c = s->ep->cluster;
    if (!reserve_connection(c)) {
        uint32_t maxp = c->pool.max_pending_requests;
        if (maxp && atomic_load_explicit(&c->st->pending, memory_order_relaxed) >= maxp) {
            stat_inc(s->cst->overflow);
            s->ev->upstream_failed(s, 503, SLC_RF_UO, "upstream connection pool overflow\n");
            return;
        }
        pend_add(w, s);
        return;
    }
    upstream_connect(s);
}

/* ---- the pending queue ------------------------------------------------- */

static void pend_add(worker_t *w, stream_t *s)
{
    s->pending = true;
    s->pend_next = NULL;
    s->pend_prev = w->pend_tail;
    if (w->pend_tail)
        w->pend_tail->pend_next = s;
    else
        w->pend_head = s;
    w->pend_tail = s;
    uint32_t before =
        atomic_fetch_add_explicit(&s->ep->cluster->st->pending, 1, memory_order_relaxed);
    stat_inc(s->cst->pending);
    /* The connections that hold the limit may sit idle in other workers'
     * pools, where this stream cannot use them: ask those workers to let
     * them go (upstream_release_idle_for_waiters). Once, when the cluster
     * starts to have waiters: while any wait, upstream_release closes
     * instead of pooling on workers that have none, so no later stream
     * needs to write to every other worker's pipe again. */
    if (before == 0)
        for (int i = 0; i < w->srv->nworkers; i++)
            if (&w->srv->workers[i] != w)
                worker_notify(&w->srv->workers[i], 'p');
    if (!evtimer_pending(w->pend_ev, NULL)) {
        struct timeval tv = {0, 5000};
        evtimer_add(w->pend_ev, &tv);
    }
}

void upstream_cancel_pending(stream_t *s)
{
    if (!s->pending)
        return;
    worker_t *w = s->w;
    if (s->pend_prev)
        s->pend_prev->pend_next = s->pend_next;
    else
        w->pend_head = s->pend_next;
    if (s->pend_next)
        s->pend_next->pend_prev = s->pend_prev;
    else
        w->pend_tail = s->pend_prev;
    s->pending = false;
    s->pend_prev = s->pend_next = NULL;
    atomic_fetch_sub_explicit(&s->ep->cluster->st->pending, 1, memory_order_relaxed);
    stat_add(s->cst->pending, -1);
}

/* pend_kick hands connections to waiting streams, oldest first, while the
 * limits allow. Connections freed on other workers do not notify this one,
 * so a timer polls while anything waits. */
static bool worker_waits_for(worker_t *w, const cl_state_t *st)
{
    for (stream_t *s = w->pend_head; s; s = s->pend_next)
        if (s->ep->cluster->st == st)
            return true;
    return false;
}

static bool worker_has_pending(worker_t *w, const slc_cluster_t *c)
{
    return worker_waits_for(w, c->st);
}

void upstream_release_idle_for_waiters(worker_t *w)
{
    for (size_t b = 0; b < UPOOL_BUCKETS; b++) {
        for (upool_t *p = w->pools[b]; p; p = p->next) {
            for (uconn_t **pp = &p->idle; *pp;) {
                uconn_t *uc = *pp;
                if (uc->clst &&
                    atomic_load_explicit(&uc->clst->pending, memory_order_relaxed) > 0 &&
                    !worker_waits_for(w, uc->clst)) {
                    *pp = uc->next;
                    p->nidle--;
                    uconn_free(uc); /* frees the slot; the waiting worker polls */
                    continue;
                }
                pp = &uc->next;
            }
        }
    }
}

static bool pend_can_go(worker_t *w, stream_t *s)
{
    const slc_cluster_t *c = s->ep->cluster;
    if (!c->pool.max_connections ||
        atomic_load_explicit(&c->st->connections, memory_order_relaxed) < c->pool.max_connections)
        return true;
    return endpoint_pool(w, s->ep, s->chain->up_sig)->idle != NULL;
}

static void pend_kick(worker_t *w)
{
    /* Dispatching may end streams (a connect failing at once), so restart
     * from the head after each one; bounded in case other workers keep
     * taking the freed slots. */
    size_t budget = 64;
    for (stream_t *s = w->pend_head; s && budget; budget--) {
        if (!pend_can_go(w, s)) {
            s = s->pend_next;
            continue;
        }
        upstream_cancel_pending(s);
        upstream_dispatch(s);
        s = w->pend_head;
    }
    if (w->pend_head && !evtimer_pending(w->pend_ev, NULL)) {
        struct timeval tv = {0, 5000};
        evtimer_add(w->pend_ev, &tv);
    }
}

static void on_pend(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pend_kick(arg);
}

void upstream_worker_init(worker_t *w)
{
    w->pend_ev = evtimer_new(w->base, on_pend, w);
    if (!w->pend_ev)
        abort();
}

static bool method_has_body(slc_str_t m)
{
    return (m.len == 4 && memcmp(m.ptr, "POST", 4) == 0) ||
           (m.len == 3 && memcmp(m.ptr, "PUT", 3) == 0) ||
           (m.len == 5 && memcmp(m.ptr, "PATCH", 5) == 0);
}

/* stream_upstream_ready writes the request head (one buffer) and starts the
 * request body flowing. */
void stream_upstream_ready(stream_t *s)
{
    uconn_t *uc = s->up;
    h1w_req_t req = {
        .method = s->method,
        .path = s->path,
        .hdrs = s->req_hdrs.v,
        .nhdrs = s->req_hdrs.n,
        /* An HTTP/1.0 request may have come without Host. */
        .host = s->authority.len ? s->authority : (slc_str_t){s->ep->addr, strlen(s->ep->addr)},
        .framing = s->req_body == H1_BODY_LENGTH    ? H1W_LENGTH
                   : s->req_body == H1_BODY_CHUNKED ? H1W_CHUNKED
                   : method_has_body(s->method)     ? H1W_EMPTY_LENGTH
                                                    : H1W_NONE,
        .length = s->req_length, /* not req_left: a retry resends it all */
    };
    size_t need = h1w_request_size(&req);
    char *buf = arena_alloc_nozero(&s->arena, need);
    if (!buf) {
        s->ev->upstream_failed(s, 431, SLC_RF_DPE, "request too large\n");
        return;
    }
    size_t o = h1w_request(&req, buf, need);
    if (!o) { /* h1w_request_size is wrong: a bug, but never an overrun */
        log_error("request head outgrew its size", "cluster=%s need=%zu", s->cluster->name, need);
        s->ev->upstream_failed(s, 500, SLC_RF_LR, "internal error writing the request head\n");
        return;
    }
    sio_write(&uc->io, buf, o);
    /* With a transport the wire bytes outnumber these: the check in
     * on_up_read then errs toward accepting the response. */
    uc->head_end = uc->io.sent + sio_pending(&uc->io);
    /* A retry: the body data the failed attempt took, framed again. */
    h1body_wr_init(&s->req_wr, s->req_body == H1_BODY_CHUNKED);
    for (const replay_piece_t *rp = s->replay.head; rp; rp = rp->next)
        h1body_wr_add(&s->req_wr, rp->data, rp->len, uc->io.out);
    if (s->req_done)
        h1body_wr_end(&s->req_wr, uc->io.out);
    s->req_pumping = true;
    if (s->req_done && s->mirror)
        mirror_start(s); /* bodiless (or replayed) request: complete already */
    s->ev->pump_request(s);
    /* The response may already be waiting (fast upstream, reused conn). */
    if (s->up && s->state == ST_UPSTREAM && evbuffer_get_length(s->up->io.in))
        read_response_head(s);
}

void upstream_abort(stream_t *s)
{
    uconn_t *uc = s->up;
    if (!uc)
        return;
    s->up = NULL;
    s->req_pumping = false;
    uconn_free(uc);
}

void upstream_release(stream_t *s)
{
    uconn_t *uc = s->up;
    worker_t *w = s->w;
    s->up = NULL;
    s->req_pumping = false;
    uc->s = NULL;
    upool_t *p = uc->pool;
    const conf_cluster_t *cc = s->ep->cluster->conf;
    uint32_t maxr = s->ep->cluster->pool.max_requests_per_connection;
    /* An idle connection still counts against max_connections, and streams
     * waiting on another worker cannot use it: when others wait and nothing
     * here does, give the slot back instead of pooling the connection. */
    bool others_wait =
        s->ep->cluster->pool.max_connections &&
        atomic_load_explicit(&s->ep->cluster->st->pending, memory_order_relaxed) > 0 &&
        !worker_has_pending(w, s->ep->cluster);
    /* A stream of a retired generation may hold a connection to a cluster
     * the current one removed: its cluster state goes with that generation,
     * so the connection cannot outlive it in the pool. */
    bool orphan = s->holder != w->cur && (!w->cur || !gen_has_state(w->cur->gen, uc->clst));
    if (evbuffer_get_length(uc->io.in) != 0) {
        stat_inc(uc->cst->discards[DISCARD_LEFTOVER]); /* bytes after the response's end */
        uconn_free(uc);
        return;
    }
    if (!uc->keep_alive || w->draining || p->nidle >= cc->max_idle ||
        (maxr && uc->requests >= maxr) || others_wait || orphan || sio_pending(&uc->io) != 0) {
        uconn_free(uc);
        return;
    }
    /* Idle: any read event (data or EOF) or the idle timeout closes it. */
    uc->idle_tick = w->ticks;
    uc->pooled_us = now_us(w);
    sio_timer(&uc->io, s->ep->cluster->pool.idle_timeout_ms);
    sio_read_enable(&uc->io, true);
    uc->next = p->idle;
    p->idle = uc;
    p->nidle++;
    if (w->pend_head)
        event_active(w->pend_ev, EV_TIMEOUT, 0); /* an idle connection to hand out */
}

size_t upstream_pools_trim(worker_t *w, size_t keep)
{
    /* A burst opens as many connections as it has streams in flight;
     * max_idle of them would stay for the whole idle_timeout, and the
     * memory they hold would pin the pages of all those closed around
     * them. Those pooled before the previous tick were not needed for a
     * whole interval: the load they served is over. The LIFO list has the
     * most recently used first, so the first |keep| stay. */
    size_t closed = 0;
    for (size_t b = 0; b < UPOOL_BUCKETS; b++) {
        for (upool_t *p = w->pools[b]; p; p = p->next) {
            size_t i = 0;
            for (uconn_t **pp = &p->idle; *pp;) {
                uconn_t *uc = *pp;
                if (i >= keep && uc->idle_tick + 1 < w->ticks) {
                    *pp = uc->next;
                    p->nidle--;
                    if (uc->cst) /* visible: it overrides max_idle and idle_timeout */
                        stat_inc(uc->cst->discards[DISCARD_IDLE_TRIM]);
                    uconn_free(uc);
                    closed++;
                    continue;
                }
                i++;
                pp = &uc->next;
            }
        }
    }
    return closed;
}
