/* mirror: fire-and-forget copies of requests to a second cluster
 * (VirtualService `mirror`).
 *
 * A shadow is built from the stream when its request is complete (head and
 * the replay copy of the body), then lives on its own: the stream may end
 * first. It goes through the core's upstream client (upstream.h), like a
 * stream's attempt, so it shares the pool's connection reuse, limits and
 * framing instead of a client of its own. Its response is read and
 * discarded; nothing about it reaches the client or the stream. A body too
 * large for the replay buffer is not mirrored (counted). Like Envoy, the
 * shadow's Host gets a "-shadow" suffix so the mirror target can tell
 * copies from real traffic.
 *
 * OWNERSHIP: a shadow lives in an arena of its own (the struct included),
 * holding copies of everything it sends: nothing points into the stream.
 * Shadows belong to their worker (w->shadows) and free themselves on
 * completion, error or timeout; worker shutdown frees the rest. A shadow
 * holds the stream's generation (worker_hold): the exchange keeps the
 * endpoint and cluster of that generation until it is finished.
 * RE-ENTRANCY: the exchange's events may run inside upstream_start or any
 * op. Every entry point (mirror_start, the events, the timer) counts itself
 * in |depth|; ending a shadow only finishes the exchange and marks it done,
 * and the outermost entry point frees it on its way out, so no code runs on
 * a freed shadow.
 * THREAD: the worker's.
 */
#include "mirror.h"
#include "log.h"
#include "server.h"
#include "stream.h"
#include "upstream.h"
#include "wctx.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#define SHADOW_TIMEOUT_MS 10000
/* What a shadow may hold: its head and at most REPLAY_LIMIT of body, the
 * request head the exchange writes, and the response head (64 KiB at
 * most). The stream's own budget bounds the head, so the same bound fits. */
#define SHADOW_BUDGET (4 * 1024 * 1024)

struct shadow {
    struct shadow *prev, *next;
    worker_t *w;
    holder_t *holder; /* the stream's generation, held until shadow_free */
    arena_t arena;    /* holds this struct and everything below */
    ureq_t *up;       /* in |arena|; finished once (|done|) before it goes */
    struct event *timer;
    /* Copies in |arena| of what the stream sent. */
    slc_str_t method, path, authority; /* authority: with "-shadow" */
    hdr_t *hdrs;                       /* the request's, without Host */
    size_t nhdrs;
    char *body; /* the replay copy, unframed */
    size_t body_len;
    bool has_body; /* the request had a body (possibly empty) */
    int depth;     /* entry points running on this shadow */
    bool done;     /* the exchange is finished: free on the way out */
};

/* The pool key for shadows: no connection filters run for them, so they
 * must not share connections with chains that install transports; "" is
 * the key of chains without connection filters (gen.h up_sig), whose
 * connections are plain too. One static string, because the endpoint's
 * pool slot caches by pointer. */
static const char shadow_sig[] = "";

static void shadow_free(shadow_t *sh)
{
    worker_t *w = sh->w;
    holder_t *h = sh->holder;
    if (sh->prev)
        sh->prev->next = sh->next;
    else
        w->shadows = sh->next;
    if (sh->next)
        sh->next->prev = sh->prev;
    if (sh->timer)
        event_del(sh->timer);
    arena_t a = sh->arena; /* the shadow itself lives in the arena */
    arena_reset(&a);
    worker_release(w, h);
}

/* shadow_end finishes the exchange (pooling its connection if |reuse| and
 * the response was read whole). The shadow is freed by the outermost entry
 * point (shadow_leave), never here. */
static void shadow_end(shadow_t *sh, bool reuse)
{
    if (sh->done)
        return;
    sh->done = true;
    sh->up->ops->finish(sh->up, reuse);
}

static void shadow_enter(shadow_t *sh)
{
    sh->depth++;
}

/* shadow_leave: the caller must not touch |sh| after. */
static void shadow_leave(shadow_t *sh)
{
    if (--sh->depth == 0 && sh->done)
        shadow_free(sh);
}

static void on_shadow_connected(void *ctx, slc_conn_t *conn, bool fresh)
{
    (void)fresh;
    shadow_t *sh = ctx;
    (void)conn; /* no connection filters for shadows */
    shadow_enter(sh);
    ureq_t *u = sh->up;
    up_req_t rq = {
        .method = sh->method,
        .path = sh->path,
        .authority = sh->authority,
        .hdrs = sh->hdrs,
        .nhdrs = sh->nhdrs,
        /* The whole body is known by now: the shadow always goes with its
         * length, whatever framing the client used. */
        .body = sh->has_body ? UB_LENGTH : UB_NONE,
        .length = sh->body_len,
    };
    if (u->ops->send_head(u, &rq) != 0) {
        shadow_end(sh, false);
    } else if (sh->has_body) {
        u->ops->send_bytes(u, sh->body, sh->body_len);
        if (!sh->done)
            u->ops->send_end(u, NULL, 0);
    }
    shadow_leave(sh);
}

/* shadow_drain reads the response body to its end and drops it: the
 * mirror's answer is nobody's business. */
static void shadow_drain(shadow_t *sh)
{
    ureq_t *u = sh->up;
    while (!sh->done) {
        struct evbuffer *src;
        size_t n;
        const char *reason = NULL;
        h1body_res_t r = u->ops->recv_next(u, &src, &n, &reason);
        if (r == H1B_MORE)
            return; /* readable comes again */
        if (r != H1B_DATA) {
            /* END: a complete response leaves the connection reusable. */
            shadow_end(sh, r == H1B_END);
            return;
        }
        evbuffer_drain(src, n);
        u->ops->recv_took(u, n);
    }
}

static void on_shadow_head(void *ctx, const up_head_t *h)
{
    shadow_t *sh = ctx;
    shadow_enter(sh);
    /* The status is ignored; a bodiless response is complete already. */
    if (h->body == UB_NONE)
        shadow_end(sh, true);
    else
        shadow_drain(sh); /* body bytes may have come with the head */
    shadow_leave(sh);
}

static void on_shadow_readable(void *ctx)
{
    shadow_t *sh = ctx;
    shadow_enter(sh);
    shadow_drain(sh);
    shadow_leave(sh);
}

static void on_shadow_writable(void *ctx)
{
    /* The whole body was queued at once (REPLAY_LIMIT bounds it). */
    (void)ctx;
}

static void on_shadow_failed(void *ctx, const up_fail_t *f)
{
    shadow_t *sh = ctx;
    (void)f; /* counted and logged by the pool as the mirror cluster's fault */
    shadow_enter(sh);
    shadow_end(sh, false);
    shadow_leave(sh);
}

static const up_events_t shadow_events = {
    .connected = on_shadow_connected,
    .head = on_shadow_head,
    .readable = on_shadow_readable,
    .writable = on_shadow_writable,
    .failed = on_shadow_failed,
};

/* One bound for the shadow's whole life, pending and connect included:
 * the pool's own timeouts do not cover a mirror that accepts and never
 * answers. */
static void on_shadow_timeout(evutil_socket_t fd, short what, void *arg)
{
    shadow_t *sh = arg;
    (void)fd;
    (void)what;
    shadow_enter(sh);
    shadow_end(sh, false);
    shadow_leave(sh);
}

void mirror_free_all(worker_t *w)
{
    while (w->shadows) {
        shadow_t *sh = w->shadows;
        shadow_end(sh, false);
        shadow_free(sh); /* no entry point runs at shutdown: depth is 0 */
    }
}

static const slc_endpoint_t *pick(stream_t *s, const slc_cluster_t *c)
{
    uint64_t now = gen_now_ms();
    for (size_t k = 0; k < c->neps; k++) {
        const slc_endpoint_t *e = &c->eps[(s->w->rr++) % c->neps];
        if (endpoint_usable(e, now))
            return e;
    }
    return NULL;
}

static bool copy_str(arena_t *a, slc_str_t *dst, slc_str_t src)
{
    char *p = arena_alloc_nozero(a, src.len ? src.len : 1);
    if (!p)
        return false;
    if (src.len)
        memcpy(p, src.ptr, src.len);
    *dst = (slc_str_t){p, src.len};
    return true;
}

/* shadow_copy fills |sh| with copies of what |s| sends; false when the
 * shadow's arena is exhausted. */
static bool shadow_copy(shadow_t *sh, const stream_t *s, const slc_endpoint_t *e)
{
    arena_t *a = &sh->arena;
    if (!copy_str(a, &sh->method, s->method) || !copy_str(a, &sh->path, s->path))
        return false;
    sh->hdrs = arena_alloc(a, (s->req_hdrs.n ? s->req_hdrs.n : 1) * sizeof(hdr_t));
    if (!sh->hdrs)
        return false;
    for (size_t i = 0; i < s->req_hdrs.n; i++) {
        const hdr_t *h = &s->req_hdrs.v[i];
        /* Framing fields would be skipped by the writer anyway. */
        if (is_framing_field(h->name) || h1_token_eq(h->name.ptr, h->name.len, "host"))
            continue;
        hdr_t *d = &sh->hdrs[sh->nhdrs];
        if (!copy_str(a, &d->name, h->name) || !copy_str(a, &d->value, h->value))
            return false;
        sh->nhdrs++;
    }
    slc_str_t auth = s->authority.len ? s->authority : (slc_str_t){e->addr, strlen(e->addr)};
    char *p = arena_alloc_nozero(a, auth.len + sizeof("-shadow") - 1);
    if (!p)
        return false;
    memcpy(p, auth.ptr, auth.len);
    memcpy(p + auth.len, "-shadow", sizeof("-shadow") - 1);
    sh->authority = (slc_str_t){p, auth.len + sizeof("-shadow") - 1};
    sh->body_len = s->replay.len;
    sh->has_body = sh->body_len || s->req_body != UB_NONE;
    sh->body = arena_alloc_nozero(a, sh->body_len ? sh->body_len : 1);
    if (!sh->body)
        return false;
    size_t o = 0;
    for (const replay_piece_t *rp = s->replay.head; rp; rp = rp->next) {
        memcpy(sh->body + o, rp->data, rp->len);
        o += rp->len;
    }
    sh->timer = arena_alloc(a, event_get_struct_event_size());
    return sh->timer != NULL;
}

void mirror_start(stream_t *s)
{
    const slc_cluster_t *c = s->mirror;
    s->mirror = NULL; /* once per stream */
    worker_t *w = s->w;
    const char *skip = NULL;
    if (s->replay_broken || (s->req_bytes && !s->replay.on))
        skip = "body_too_large";
    const slc_endpoint_t *e = skip ? NULL : pick(s, c);
    if (!skip && !e)
        skip = "no_healthy_upstream";
    stat_inc(stats_getf(w->stats, "sluice_mirror_requests_total{cluster=\"%s\",result=\"%s\"}",
                        c->name, skip ? skip : "sent"));
    if (skip)
        return;

    arena_t a;
    arena_init(&a, &w->arena_pool, SHADOW_BUDGET);
    shadow_t *sh = arena_alloc(&a, sizeof(*sh));
    if (!sh) {
        arena_reset(&a);
        return;
    }
    sh->arena = a; /* the arena now lives inside the shadow it allocated */
    sh->w = w;
    if (!shadow_copy(sh, s, e)) {
        log_debug("mirror request too large to copy", "cluster=%s", c->name);
        a = sh->arena;
        arena_reset(&a);
        return;
    }
    up_target_t t = {
        .ep = e,
        .sig = shadow_sig,
        .cst = cluster_stats(w, c),
        .holder = s->holder, /* |e| and |c| are this generation's */
        .arena = &sh->arena,
        .is_head = s->is_head,
        .fresh = false,
    };
    sh->up = upstream_new(w, &t, &shadow_events, sh);
    if (!sh->up) {
        a = sh->arena;
        arena_reset(&a);
        return;
    }
    sh->holder = s->holder;
    worker_hold(sh->holder);
    sh->next = w->shadows;
    if (w->shadows)
        w->shadows->prev = sh;
    w->shadows = sh;
    evtimer_assign(sh->timer, w->base, on_shadow_timeout, sh);
    struct timeval tv = {SHADOW_TIMEOUT_MS / 1000, (SHADOW_TIMEOUT_MS % 1000) * 1000};
    evtimer_add(sh->timer, &tv);
    shadow_enter(sh);
    upstream_start(sh->up); /* may connect, send, fail and end it at once */
    shadow_leave(sh);
}
