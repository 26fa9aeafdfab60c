/* upstream: per-worker connection pools to endpoints, and exchanges over
 * HTTP/1.1 connections (see upstream.h): connect or reuse, send the head
 * and the framed body, read the response head, unframe its body. */
#include "wctx.h"
#include "upstream.h"

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

/* pool_get finds or makes the pool of |addr| for connections set up by a
 * chain with signature |sig| for cluster |cl|. Pools are per cluster, as
 * Envoy's are: a connection counts against its cluster's max_connections,
 * and a transport is set up per cluster (TLS settings, expected identity).
 * Sharing an address's idle connections between clusters let one cluster
 * borrow connections that never counted against its own limit. */
static upool_t *pool_get(worker_t *w, const char *addr, const char *sig, const char *cl)
{
    size_t b = (hash_addr(addr) ^ hash_addr(sig) ^ (hash_addr(cl) << 1)) % UPOOL_BUCKETS;
    for (upool_t *p = w->pools[b]; p; p = p->next)
        if (strcmp(p->addr, addr) == 0 && strcmp(p->sig, sig) == 0 && strcmp(p->cluster, cl) == 0)
            return p;
    upool_t *p = calloc(1, sizeof(*p));
    if (!p)
        abort();
    snprintf(p->addr, sizeof(p->addr), "%s", addr);
    p->sig = strdup(sig);
    p->cluster = strdup(cl);
    if (!p->sig || !p->cluster)
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
    upool_t *p = pool_get(w, ep->addr, sig, ep->cluster->name);
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

void upstream_fault(cstats_t *cst, const slc_cluster_t *c, const slc_endpoint_t *ep, int kind)
{
    if (cst)
        stat_inc(cst->faults[kind]);
    if (!c)
        return;
    uint64_t supp;
    if (log_limit_take(&c->st->fault_log, 1000, &supp))
        log_warn("upstream fault", "cluster=%s flag=%s upstream=%s suppressed=%llu", c->name,
                 fault_names[kind], ep ? ep->addr : "-", (unsigned long long)supp);
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
            free(p->cluster);
            free(p);
        }
    }
}

/* ---- exchanges on HTTP/1.1 connections ------------------------------- */

enum {
    X_PENDING,    /* in the worker's queue, waiting for a connection slot */
    X_CONNECTING, /* a new connection is being made */
    X_READY,      /* connected; the caller runs its connection filters */
    X_HEAD,       /* the request is going; waiting for the response head */
    X_BODY,       /* the head was handed over; the body follows */
    X_DEAD,       /* failed or finished: the pool is done with it */
};

/* h1x: an exchange on an HTTP/1.1 connection. In the caller's arena. */
struct h1x {
    ureq_t pub; /* first: the caller holds &pub */
    worker_t *w;
    up_target_t t;
    const up_events_t *ev;
    void *ctx;
    uconn_t *uc;
    int state;
    uint32_t interim, interim_bytes; /* 1xx responses so far */
    h1body_wr_t wr;                  /* frames the request body */
    h1body_rd_t rd;                  /* unframes the response body */
    bool up_eof;                     /* the upstream closed after the head */
    bool body_sent;                  /* some request body data went out */
    bool pending;
    h1x_t *pend_prev, *pend_next;
};

static const up_ops_t h1x_ops;

static const slc_cluster_t *x_cluster(const h1x_t *x)
{
    return x->t.ep->cluster;
}

static void x_fault(h1x_t *x, int kind)
{
    if (x->t.probe)
        return; /* the checker counts its own verdicts */
    upstream_fault(x->t.cst, x_cluster(x), x->t.ep, kind);
}

/* x_detach drops the exchange's connection without reuse. */
static void x_detach(h1x_t *x)
{
    h1body_rd_release(&x->rd);
    uconn_t *uc = x->uc;
    if (!uc)
        return;
    x->uc = NULL;
    uc->x = NULL;
    uconn_free(uc);
}

/* x_fail ends the exchange and reports it. The caller's handler may free
 * the arena the exchange lives in: nothing of |x| is touched after. */
static void x_fail(h1x_t *x, slc_attempt_result_t res, int status, uint32_t flag, const char *body,
                   bool final, bool reused_closed)
{
    x_detach(x);
    x->state = X_DEAD;
    up_fail_t f = {.res = res,
                   .status = status,
                   .flag = flag,
                   .body = body,
                   .final = final,
                   .reused_closed = reused_closed};
    x->ev->failed(x->ctx, &f);
}

/* x_response_head parses what the upstream sent as the response head: drops
 * interim responses, hands a final head to the caller. */
static void x_response_head(h1x_t *x)
{
    uconn_t *uc = x->uc;
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
            h1_parse_response(p, look, &lim, x->t.is_head, hdrs, UP_MAX_HDRS, &r, &reason);
        if (res == H1_INCOMPLETE)
            return;
        if (res == H1_ERROR) {
            log_debug("malformed upstream response", "cluster=%s upstream=%s reason=%s",
                      x_cluster(x)->name, x->t.ep->addr, reason ? reason : "?");
            if (uc->cst)
                stat_inc(uc->cst->resets);
            x_fault(x, FAULT_UPE);
            x_fail(x, SLC_ATTEMPT_RESET, 502, SLC_RF_UPE, "upstream sent a malformed response\n",
                   false, false);
            return;
        }
        if (r.status >= 100 && r.status < 200) {
            if (r.status == 101) {
                x_fault(x, FAULT_UPE);
                x_fail(x, SLC_ATTEMPT_RESET, 502, SLC_RF_UPE, "upstream protocol upgrade refused\n",
                       true, false);
                return;
            }
            x->interim++;
            x->interim_bytes += (uint32_t)r.head_len;
            if (x->interim > UP_MAX_INTERIM || x->interim_bytes > UP_MAX_INTERIM_BYTES) {
                log_debug("too many interim responses", "cluster=%s upstream=%s count=%u",
                          x_cluster(x)->name, x->t.ep->addr, x->interim);
                x_fault(x, FAULT_UPE);
                x_fail(x, SLC_ATTEMPT_RESET, 502, SLC_RF_UPE,
                       "upstream sent too many 1xx responses\n", true, false);
                return;
            }
            /* Interim responses are ours to answer (100-continue was sent
             * to the client already): drop them. */
            evbuffer_drain(in, r.head_len);
            sio_unthrottle(&uc->io);
            continue;
        }
        uc->requests++;
        uc->keep_alive = r.keep_alive;
        /* One arena copy of the head; the views handed over point into it.
         * Hop-by-hop fields and what Connection lists go now, classified by
         * the parser. */
        char *copy = arena_alloc_nozero(x->t.arena, r.head_len);
        if (!copy) {
            x_fail(x, SLC_ATTEMPT_RESET, 502, SLC_RF_UPE, "upstream response head too large\n",
                   true, false);
            return;
        }
        memcpy(copy, p, r.head_len);
        /* Room for the filters' additions, so the caller's list rarely has
         * to grow. */
        size_t cap = r.nheaders + 8;
        hdr_t *hv = arena_alloc_nozero(x->t.arena, cap * sizeof(*hv));
        if (!hv) {
            x_fail(x, SLC_ATTEMPT_RESET, 502, SLC_RF_UPE, "upstream response head too large\n",
                   true, false);
            return;
        }
        size_t nh = 0;
        h1_conn_names_t named;
        h1_conn_names_init(&named, r.headers, r.nheaders);
        for (size_t i = 0; i < r.nheaders; i++) {
            const h1_header_t *h = &r.headers[i];
            if (h1_kind_is_hop(h->kind) || h1_conn_names_has(&named, h->name, h->name_len))
                continue;
            hv[nh].name = (slc_str_t){copy + (h->name - p), h->name_len};
            hv[nh].value = (slc_str_t){copy + (h->value - p), h->value_len};
            nh++;
        }
        up_head_t head = {
            .status = r.status,
            .reason =
                r.reason_len ? (slc_str_t){copy + (r.reason - p), r.reason_len} : SLC_STR_NULL,
            .hdrs = hv,
            .nhdrs = nh,
            .hdrs_cap = cap,
            .body = r.body == H1_BODY_NONE     ? UB_NONE
                    : r.body == H1_BODY_LENGTH ? UB_LENGTH
                                               : UB_STREAM,
            .length = r.content_length,
        };
        h1body_rd_init(&x->rd, r.body, r.content_length);
        /* |r| points into the input: drain the head before the caller runs
         * (it may end the exchange and free the connection). */
        evbuffer_drain(in, r.head_len);
        sio_unthrottle(&uc->io);
        x->state = X_BODY;
        x->ev->head(x->ctx, &head);
        return;
    }
}

static void on_up_read(sio_t *io, void *arg)
{
    uconn_t *uc = arg;
    h1x_t *x = uc->x;
    (void)io;
    if (!x) {
        /* An idle pooled connection must stay silent. */
        discard(uc, DISCARD_IDLE_READABLE);
        return;
    }
    if (x->state != X_BODY && uc->io.sent < uc->head_end) {
        /* A response before our request was on the wire answers something
         * else (a stray the upstream sent late): the connection cannot be
         * trusted to pair requests and responses any more. */
        log_debug("upstream response before the request was sent", "cluster=%s upstream=%s",
                  x_cluster(x)->name, x->t.ep->addr);
        x_fault(x, FAULT_UPE);
        x_fail(x, SLC_ATTEMPT_RESET, 502, SLC_RF_UPE,
               "upstream sent a response before the request\n", false, false);
        return;
    }
    if (x->state == X_HEAD)
        x_response_head(x);
    else if (x->state == X_BODY)
        x->ev->readable(x->ctx);
}

static void on_up_write(sio_t *io, void *arg)
{
    uconn_t *uc = arg;
    (void)io;
    if (uc->x && uc->x->state >= X_HEAD && uc->x->state < X_DEAD)
        uc->x->ev->writable(uc->x->ctx);
}

static void x_connect(h1x_t *x);
static void x_dispatch(h1x_t *x);

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
static void pend_add(worker_t *w, h1x_t *x);
static void pend_remove(h1x_t *x);
static bool worker_waits_for(worker_t *w, const cl_state_t *st);

static void on_up_event(sio_t *io, int what, void *arg)
{
    uconn_t *uc = arg;
    h1x_t *x = uc->x;
    if (what & SIO_CONNECTED) {
        uc->connected = true;
        if (uc->cst) {
            stat_inc(uc->cst->cx_total);
            stat_inc(uc->cst->cx_active);
        }
        if (!x)
            return;
        x->state = X_READY;
        x->ev->connected(x->ctx, (slc_conn_t *)uc, true);
        return;
    }
    if (!(what & (SIO_EOF | SIO_ERROR | SIO_TIMEOUT)))
        return;
    if (!x) {
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
        if (uc->cst)
            stat_inc(uc->cst->connect_fail);
        x_fault(x, FAULT_UF);
        log_debug("upstream connect failed", "cluster=%s upstream=%s timeout=%d",
                  x_cluster(x)->name, x->t.ep->addr, (what & SIO_TIMEOUT) != 0);
        x_fail(x, SLC_ATTEMPT_CONNECT_FAILURE, 502, SLC_RF_UF,
               "upstream connect error or disconnect/reset before headers\n", false, false);
        return;
    }
    /* A transport that never finished its handshake failed too, whatever
     * the socket said (a peer that closes without an alert). */
    if ((io->t_failed || (io->t && !io->t_ready)) && x->state != X_BODY) {
        /* The transport (TLS) refused the upstream: the handshake failed,
         * its certificate did not verify or named the wrong identity. As
         * Envoy: a connection failure, 503 with UF and the reason. The text
         * lives in this thread until the stream copies it (local reply). */
        static __thread char msg[256];
        slc_str_t why = io->t->failure_reason ? io->t->failure_reason(io->tctx) : SLC_STR_NULL;
        snprintf(msg, sizeof(msg),
                 "upstream connect error or disconnect/reset before headers. reset reason: "
                 "connection failure, transport failure reason: %.*s\n",
                 (int)(why.ptr ? (why.len > 160 ? 160 : why.len) : 30),
                 why.ptr ? why.ptr : "the handshake did not complete");
        if (uc->cst)
            stat_inc(uc->cst->connect_fail);
        x_fault(x, FAULT_UF);
        log_debug("upstream transport failed", "cluster=%s upstream=%s reason=%.*s",
                  x_cluster(x)->name, x->t.ep->addr, (int)why.len, why.ptr ? why.ptr : "");
        x_fail(x, SLC_ATTEMPT_CONNECT_FAILURE, 503, SLC_RF_UF, msg, false, false);
        return;
    }
    bool reset = (what & SIO_ERROR) != 0;
    if (x->state == X_BODY && !reset) {
        /* The head is in. What the upstream sent before closing may still
         * sit in its input behind a slow client: the caller's reads decide
         * whether the body is complete (or close-delimited) or cut. */
        x->up_eof = true;
        x->ev->readable(x->ctx);
        return;
    }
    bool reused_closed =
        x->state != X_BODY && uc->reused && !x->body_sent && evbuffer_get_length(io->in) == 0;
    /* A reused connection's close is the caller's to count: it may send
     * the request again instead (then it is no fault). */
    if (!reused_closed) {
        if (x->state != X_BODY && uc->cst)
            stat_inc(uc->cst->resets);
        x_fault(x, reset ? FAULT_UR : FAULT_UC);
    }
    x_fail(x, SLC_ATTEMPT_RESET, 502, reset ? SLC_RF_UR : SLC_RF_UC,
           "upstream connect error or disconnect/reset before headers\n", x->state == X_BODY,
           reused_closed);
}

static void attach(h1x_t *x, uconn_t *uc)
{
    uc->x = x;
    x->uc = uc;
    uc->head_end = UINT64_MAX; /* until the head is queued, any byte is a stray */
    sio_setcb(&uc->io, on_up_read, on_up_write, on_up_event, uc);
    sio_timer(&uc->io, 0);
    sio_read_enable(&uc->io, true);
}

static void x_connect(h1x_t *x)
{
    worker_t *w = x->w;
    const slc_endpoint_t *ep = x->t.ep;
    uconn_t *uc = calloc(1, sizeof(*uc));
    if (!uc)
        abort();
    uc->kind = CONN_UPSTREAM;
    uc->w = w;
    uc->pool = endpoint_pool(w, ep, x->t.sig);
    uc->cst = x->t.cst;
    /* The caller reserved this connection's slot in clst->connections
     * (x_dispatch); a probe's counts against nothing. */
    uc->clst = x->t.probe ? NULL : ep->cluster->st;
    uc->x = x;
    x->uc = uc;
    x->state = X_CONNECTING;
    uc->head_end = UINT64_MAX;
    int rc =
        sio_connect(&uc->io, &w->sioloop, (const struct sockaddr *)&ep->sa, ep->salen,
                    ep->cluster->pool.connect_timeout_ms, on_up_read, on_up_write, on_up_event, uc);
    uc->io.read_high = UP_HIGH_WM;
    uc->io.write_low = UP_LOW_WM;
    uc->io.reading = true; /* enabled once connected */
    if (rc != 0) {
        /* Immediate failure (e.g. no route): the event callback may not run. */
        if (uc->cst)
            stat_inc(uc->cst->connect_fail);
        x_fault(x, FAULT_UF);
        x_fail(x, SLC_ATTEMPT_CONNECT_FAILURE, 502, SLC_RF_UF,
               "upstream connect error or disconnect/reset before headers\n", false, false);
    }
}

ureq_t *upstream_new(worker_t *w, const up_target_t *t, const up_events_t *ev, void *ctx)
{
    h1x_t *x = arena_alloc(t->arena, sizeof(*x));
    if (!x)
        return NULL;
    x->pub.ops = &h1x_ops;
    x->w = w;
    x->t = *t;
    x->ev = ev;
    x->ctx = ctx;
    x->state = X_PENDING;
    return &x->pub;
}

void upstream_start(ureq_t *u)
{
    x_dispatch((h1x_t *)u);
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

/* x_dispatch gives the exchange a connection: a pooled one, a new one
 * within the cluster's max_connections, or a place in the pending queue
 * (503 UO at once past max_pending_requests). */
static void x_dispatch(h1x_t *x)
{
    worker_t *w = x->w;
    if (x->t.probe) {
        x_connect(x);
        return;
    }
    upool_t *p = endpoint_pool(w, x->t.ep, x->t.sig);
    while (p->idle && !idle_is_quiet(p->idle))
        discard(p->idle, DISCARD_REUSE_READABLE);
    if (p->idle && !x->t.fresh) {
        uconn_t *uc = p->idle;
        p->idle = uc->next;
        p->nidle--;
        uc->next = NULL;
        uc->reused = true;
        uc->cst = x->t.cst;
        attach(x, uc);
        x->state = X_READY;
        x->ev->connected(x->ctx, (slc_conn_t *)uc, false);
        return;
    }
    const slc_cluster_t *c = x_cluster(x);
    if (!reserve_connection(c)) {
        uint32_t maxp = c->pool.max_pending_requests;
        if (maxp && atomic_load_explicit(&c->st->pending, memory_order_relaxed) >= maxp) {
            stat_inc(x->t.cst->overflow);
            x_fail(x, SLC_ATTEMPT_CONNECT_FAILURE, 503, SLC_RF_UO,
                   "upstream connection pool overflow\n", true, false);
            return;
        }
        pend_add(w, x);
        return;
    }
    x_connect(x);
}

/* ---- the pending queue ------------------------------------------------- */

static void pend_add(worker_t *w, h1x_t *x)
{
    x->pending = true;
    x->pend_next = NULL;
    x->pend_prev = w->pend_tail;
    if (w->pend_tail)
        w->pend_tail->pend_next = x;
    else
        w->pend_head = x;
    w->pend_tail = x;
    uint32_t before =
        atomic_fetch_add_explicit(&x_cluster(x)->st->pending, 1, memory_order_relaxed);
    stat_inc(x->t.cst->pending);
    /* The connections that hold the limit may sit idle in other workers'
     * pools, where this exchange cannot use them: ask those workers to let
     * them go (upstream_release_idle_for_waiters). Once, when the cluster
     * starts to have waiters: while any wait, x_finish closes instead of
     * pooling on workers that have none, so no later exchange needs to
     * write to every other worker's pipe again. */
    if (before == 0)
        for (int i = 0; i < w->srv->nworkers; i++)
            if (&w->srv->workers[i] != w)
                worker_notify(&w->srv->workers[i], 'p');
    if (!evtimer_pending(w->pend_ev, NULL)) {
        struct timeval tv = {0, 5000};
        evtimer_add(w->pend_ev, &tv);
    }
}

static void pend_remove(h1x_t *x)
{
    if (!x->pending)
        return;
    worker_t *w = x->w;
    if (x->pend_prev)
        x->pend_prev->pend_next = x->pend_next;
    else
        w->pend_head = x->pend_next;
    if (x->pend_next)
        x->pend_next->pend_prev = x->pend_prev;
    else
        w->pend_tail = x->pend_prev;
    x->pending = false;
    x->pend_prev = x->pend_next = NULL;
    atomic_fetch_sub_explicit(&x_cluster(x)->st->pending, 1, memory_order_relaxed);
    stat_add(x->t.cst->pending, -1);
}

/* pend_kick hands connections to waiting exchanges, oldest first, while the
 * limits allow. Connections freed on other workers do not notify this one,
 * so a timer polls while anything waits. */
static bool worker_waits_for(worker_t *w, const cl_state_t *st)
{
    for (h1x_t *x = w->pend_head; x; x = x->pend_next)
        if (x_cluster(x)->st == st)
            return true;
    return false;
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

static bool pend_can_go(worker_t *w, h1x_t *x)
{
    const slc_cluster_t *c = x_cluster(x);
    if (!c->pool.max_connections ||
        atomic_load_explicit(&c->st->connections, memory_order_relaxed) < c->pool.max_connections)
        return true;
    return endpoint_pool(w, x->t.ep, x->t.sig)->idle != NULL;
}

static void pend_kick(worker_t *w)
{
    /* Dispatching may end exchanges (a connect failing at once), so restart
     * from the head after each one; bounded in case other workers keep
     * taking the freed slots. */
    size_t budget = 64;
    for (h1x_t *x = w->pend_head; x && budget; budget--) {
        if (!pend_can_go(w, x)) {
            x = x->pend_next;
            continue;
        }
        pend_remove(x);
        x_dispatch(x);
        x = w->pend_head;
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

/* ---- the ops ----------------------------------------------------------- */

static bool method_has_body(slc_str_t m)
{
    return (m.len == 4 && memcmp(m.ptr, "POST", 4) == 0) ||
           (m.len == 3 && memcmp(m.ptr, "PUT", 3) == 0) ||
           (m.len == 5 && memcmp(m.ptr, "PATCH", 5) == 0);
}

static int x_send_head(ureq_t *u, const up_req_t *rq)
{
    h1x_t *x = (h1x_t *)u;
    uconn_t *uc = x->uc;
    if (x->state != X_READY || !uc)
        return 500;
    /* A transport's code lives in the generation that installed it: the
     * connection keeps that generation while it is open. */
    if (uc->io.t && !uc->pinned && x->t.holder) {
        uc->pinned = x->t.holder;
        worker_hold(x->t.holder);
    }
    h1w_req_t req = {
        .method = rq->method,
        .path = rq->path,
        .hdrs = rq->hdrs,
        .nhdrs = rq->nhdrs,
        /* An HTTP/1.0 request may have come without Host. */
        .host =
            rq->authority.len ? rq->authority : (slc_str_t){x->t.ep->addr, strlen(x->t.ep->addr)},
        .framing = rq->body == UB_LENGTH         ? H1W_LENGTH
                   : rq->body == UB_STREAM       ? H1W_CHUNKED
                   : method_has_body(rq->method) ? H1W_EMPTY_LENGTH
                                                 : H1W_NONE,
        .length = rq->length,
    };
    h1body_wr_init(&x->wr, rq->body == UB_STREAM);
    size_t need = h1w_request_size(&req);
    char *buf = arena_alloc_nozero(x->t.arena, need);
    if (!buf)
        return 431;
    size_t o = h1w_request(&req, buf, need);
    if (!o) { /* h1w_request_size is wrong: a bug, but never an overrun */
        log_error("request head outgrew its size", "cluster=%s need=%zu", x_cluster(x)->name, need);
        return 500;
    }
    sio_write(&uc->io, buf, o);
    /* With a transport the wire bytes outnumber these: the check in
     * on_up_read then errs toward accepting the response. */
    uc->head_end = uc->io.sent + sio_pending(&uc->io);
    x->state = X_HEAD;
    return 0;
}

static void x_send_data(ureq_t *u, struct evbuffer *src, size_t n)
{
    h1x_t *x = (h1x_t *)u;
    if (!x->uc || n == 0)
        return;
    x->body_sent = true;
    h1body_wr_move(&x->wr, src, n, x->uc->io.out);
    sio_mark(&x->uc->io);
}

static void x_send_bytes(ureq_t *u, const void *p, size_t n)
{
    h1x_t *x = (h1x_t *)u;
    if (!x->uc || n == 0)
        return;
    x->body_sent = true;
    h1body_wr_add(&x->wr, p, n, x->uc->io.out);
    sio_mark(&x->uc->io);
}

static void x_send_end(ureq_t *u, const hdr_t *tr, size_t n)
{
    h1x_t *x = (h1x_t *)u;
    if (!x->uc)
        return;
    h1body_wr_end(&x->wr, x->uc->io.out, tr, n);
    sio_mark(&x->uc->io);
}

static size_t x_send_pending(ureq_t *u)
{
    h1x_t *x = (h1x_t *)u;
    return x->uc ? sio_pending(&x->uc->io) : 0;
}

static h1body_res_t x_recv_next(ureq_t *u, struct evbuffer **src, size_t *n, const char **reason)
{
    h1x_t *x = (h1x_t *)u;
    *n = 0;
    if (!x->uc || x->state != X_BODY) {
        *src = NULL;
        return H1B_MORE;
    }
    *src = x->uc->io.in;
    h1body_res_t r = h1body_rd_next(&x->rd, *src, n, reason);
    if (r != H1B_MORE || !x->up_eof)
        return r;
    /* The upstream closed and all it sent is read: that ends a
     * close-delimited body and cuts any other short. */
    if (x->rd.kind == H1_BODY_EOF)
        return H1B_END;
    *reason = "eof";
    return H1B_ERROR;
}

static void x_recv_trailers(ureq_t *u, hdrs_t *out)
{
    h1x_t *x = (h1x_t *)u;
    h1body_rd_trailers(&x->rd, arena_alloc_cb, x->t.arena, &out->v, &out->n);
    out->cap = out->n;
}

static void x_recv_took(ureq_t *u, size_t n)
{
    h1x_t *x = (h1x_t *)u;
    h1body_rd_took(&x->rd, n);
    if (x->uc)
        sio_unthrottle(&x->uc->io);
}

static void x_finish(ureq_t *u, bool reuse)
{
    h1x_t *x = (h1x_t *)u;
    pend_remove(x);
    uconn_t *uc = x->uc;
    int state = x->state;
    x->state = X_DEAD;
    if (!uc)
        return;
    if (!reuse || x->t.probe || state != X_BODY || x->up_eof || !h1body_rd_done(&x->rd)) {
        x_detach(x);
        return;
    }
    worker_t *w = x->w;
    h1body_rd_release(&x->rd);
    x->uc = NULL;
    uc->x = NULL;
    upool_t *p = uc->pool;
    const slc_cluster_t *c = x_cluster(x);
    const conf_cluster_t *cc = c->conf;
    uint32_t maxr = c->pool.max_requests_per_connection;
    /* An idle connection still counts against max_connections, and
     * exchanges waiting on another worker cannot use it: when others wait
     * and nothing here does, give the slot back instead of pooling it. */
    bool others_wait = c->pool.max_connections &&
                       atomic_load_explicit(&c->st->pending, memory_order_relaxed) > 0 &&
                       !worker_waits_for(w, c->st);
    /* An exchange of a retired generation may hold a connection to a
     * cluster the current one removed: its cluster state goes with that
     * generation, so the connection cannot outlive it in the pool. */
    bool orphan = x->t.holder != w->cur && (!w->cur || !gen_has_state(w->cur->gen, uc->clst));
    if (evbuffer_get_length(uc->io.in) != 0) {
        if (uc->cst)
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
    sio_timer(&uc->io, c->pool.idle_timeout_ms);
    sio_read_enable(&uc->io, true);
    uc->next = p->idle;
    p->idle = uc;
    p->nidle++;
    if (w->pend_head)
        event_active(w->pend_ev, EV_TIMEOUT, 0); /* an idle connection to hand out */
}

static const up_ops_t h1x_ops = {
    .send_head = x_send_head,
    .send_data = x_send_data,
    .send_bytes = x_send_bytes,
    .send_end = x_send_end,
    .send_pending = x_send_pending,
    .recv_next = x_recv_next,
    .recv_took = x_recv_took,
    .recv_trailers = x_recv_trailers,
    .finish = x_finish,
};

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
