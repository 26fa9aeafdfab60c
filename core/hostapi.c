/* hostapi: the slc_host_t table handed to every filter module. Thin
 * adapters from the SDK's opaque handles to the core's structures. */
#include "hostapi.h"
#include "log.h"
#include "server.h"
#include "stream.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- logging ---------------------------------------------------------- */

static void h_log(slc_log_level_t level, const char *filter, const char *fmt, va_list ap)
{
    if (!log_enabled(level))
        return;
    char msg[1024];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    /* Keep the line parseable: the message goes in quotes, so no quotes in it. */
    for (char *p = msg; *p; p++)
        if (*p == '"' || *p == '\n')
            *p = '\'';
    slog(level, msg, "filter=%s", filter ? filter : "?");
}

static bool h_log_enabled(slc_log_level_t level)
{
    return log_enabled(level);
}

/* ---- configuration --------------------------------------------------- */

/* ---- clusters -------------------------------------------------------- */

static slc_str_t h_cluster_name(const slc_cluster_t *c)
{
    return (slc_str_t){c->name, strlen(c->name)};
}

static size_t h_cluster_endpoint_count(const slc_cluster_t *c)
{
    return c->neps;
}

static const slc_endpoint_t *h_cluster_endpoint(const slc_cluster_t *c, size_t i)
{
    return i < c->neps ? &c->eps[i] : NULL;
}

static slc_str_t h_endpoint_address(const slc_endpoint_t *e)
{
    return (slc_str_t){e->addr, strlen(e->addr)};
}

static uint32_t h_endpoint_active_requests(const slc_endpoint_t *e)
{
    return atomic_load_explicit(&e->st->active, memory_order_relaxed);
}

/* Healthy = not failing active health checks and not ejected right now. */
static bool h_endpoint_healthy(const slc_endpoint_t *e)
{
    return endpoint_usable(e, gen_now_ms());
}

/* ---- the stream -------------------------------------------------------- */

static void *h_arena_alloc(slc_req_t *r, size_t size)
{
    return arena_alloc(&r->arena, size);
}

static slc_status_t h_arena_defer(slc_req_t *r, slc_defer_fn fn, void *arg)
{
    return arena_defer(&r->arena, fn, arg) == 0 ? SLC_OK : SLC_ENOMEM;
}

static hdrs_t *which_hdrs(slc_req_t *r, slc_hdrs_t which)
{
    return which == SLC_RESPONSE_HEADERS ? &r->resp_hdrs : &r->req_hdrs;
}

static slc_status_t h_header_get(slc_req_t *r, slc_hdrs_t which, slc_str_t name, slc_str_t *out)
{
    hdr_t *h = hdrs_find(which_hdrs(r, which), name);
    if (!h)
        return SLC_ENOENT;
    *out = h->value;
    return SLC_OK;
}

static bool iterating(const slc_req_t *r, slc_hdrs_t which)
{
    return r->iterating & (1u << (which == SLC_RESPONSE_HEADERS));
}

static slc_status_t h_header_set(slc_req_t *r, slc_hdrs_t which, slc_str_t name, slc_str_t value)
{
    if (iterating(r, which))
        return SLC_ESTATE;
    return hdrs_set(r, which_hdrs(r, which), name, value, false);
}

static slc_status_t h_header_add(slc_req_t *r, slc_hdrs_t which, slc_str_t name, slc_str_t value)
{
    if (iterating(r, which))
        return SLC_ESTATE;
    return hdrs_set(r, which_hdrs(r, which), name, value, true);
}

static slc_status_t h_header_remove(slc_req_t *r, slc_hdrs_t which, slc_str_t name)
{
    if (iterating(r, which))
        return SLC_ESTATE;
    return hdrs_remove(which_hdrs(r, which), name) ? SLC_OK : SLC_ENOENT;
}

static void h_header_iterate(slc_req_t *r, slc_hdrs_t which, slc_header_fn fn, void *arg)
{
    hdrs_t *h = which_hdrs(r, which);
    unsigned bit = 1u << (which == SLC_RESPONSE_HEADERS);
    unsigned was = r->iterating;
    r->iterating |= bit;
    for (size_t i = 0; i < h->n; i++)
        if (!fn(arg, h->v[i].name, h->v[i].value))
            break;
    r->iterating = was; /* nested walks of the same block keep the bit */
}

static slc_str_t h_pseudo(slc_req_t *r, slc_pseudo_t which)
{
    switch (which) {
    case SLC_PSEUDO_METHOD:
        return r->method;
    case SLC_PSEUDO_PATH:
        return r->path;
    case SLC_PSEUDO_AUTHORITY:
        return r->authority;
    case SLC_PSEUDO_SCHEME:
        return r->scheme;
    }
    return SLC_STR_NULL;
}

static slc_status_t h_set_pseudo(slc_req_t *r, slc_pseudo_t which, slc_str_t value)
{
    if (r->state != ST_REQ_FILTERS)
        return SLC_ESTATE;
    /* The authority is also the Host header. */
    if (which == SLC_PSEUDO_AUTHORITY && iterating(r, SLC_REQUEST_HEADERS))
        return SLC_ESTATE;
    if (!h1_valid_header_value(value.ptr, value.len) || value.len == 0)
        return SLC_EINVAL;
    char *c = arena_strndup(&r->arena, value.ptr, value.len);
    if (!c)
        return SLC_ENOMEM;
    slc_str_t v = {c, value.len};
    switch (which) {
    case SLC_PSEUDO_METHOD:
        if (!h1_valid_header_name(value.ptr, value.len)) /* a method is a token */
            return SLC_EINVAL;
        r->method = v;
        r->is_head = v.len == 4 && memcmp(v.ptr, "HEAD", 4) == 0;
        return SLC_OK;
    case SLC_PSEUDO_PATH:
        if (v.ptr[0] != '/' || memchr(v.ptr, ' ', v.len))
            return SLC_EINVAL;
        r->path = v;
        return SLC_OK;
    case SLC_PSEUDO_AUTHORITY:
        r->authority = v;
        /* On HTTP/1.1 the authority travels as Host. */
        return hdrs_set(r, &r->req_hdrs, SLC_STR("host"), v, false);
    case SLC_PSEUDO_SCHEME:
        r->scheme = v;
        return SLC_OK;
    }
    return SLC_EINVAL;
}

static int h_response_status(slc_req_t *r)
{
    return r->status;
}

static slc_status_t h_set_response_status(slc_req_t *r, int status)
{
    if (status < 200 || status > 599)
        return SLC_EINVAL;
    /* Earlier the upstream's (or a local reply's) status would overwrite it
     * unseen; later the head is on the wire. */
    if (r->state != ST_RESP_FILTERS || r->resp_head_sent)
        return SLC_ESTATE;
    r->status = status;
    r->reason = SLC_STR_NULL;
    return SLC_OK;
}

static slc_status_t h_send_local_reply(slc_req_t *r, int status, slc_str_t ctype, slc_str_t body)
{
    return stream_local_reply(r, status, ctype, body);
}

static void h_resume(slc_req_t *r)
{
    stream_resume(r);
}

/* of_stream_gen: |c| is a cluster of the stream's own generation. Handles
 * from cfg_cluster are, for the filter instance that resolved them; this
 * O(1) check keeps a stale handle (a filter bug) from reaching freed
 * memory. */
static bool of_stream_gen(const slc_req_t *r, const slc_cluster_t *c)
{
    return c && c->index < r->gen->nclusters && &r->gen->clusters[c->index] == c;
}

static slc_status_t h_route_set_cluster(slc_req_t *r, const slc_cluster_t *c)
{
    if (r->state != ST_REQ_FILTERS)
        return SLC_ESTATE;
    if (!of_stream_gen(r, c))
        return SLC_EINVAL;
    r->cluster = c;
    r->ep = NULL;
    return SLC_OK;
}

static const slc_cluster_t *h_route_cluster(slc_req_t *r)
{
    return r->cluster;
}

static void h_route_set_timeout(slc_req_t *r, uint64_t ms)
{
    /* The timer starts when the request first goes upstream and is never
     * re-armed; a later call would be silently ignored anyway, so it is
     * ignored explicitly (no status to return in the 1.0 signature). */
    if (r->state != ST_REQ_FILTERS)
        return;
    r->timeout_ms = ms;
}

static const slc_cluster_t *h_cluster_get(slc_req_t *r, slc_str_t name)
{
    return gen_cluster(r->gen, name.ptr, name.len);
}

static slc_status_t h_upstream_set_endpoint(slc_req_t *r, const slc_endpoint_t *e)
{
    /* Only while an upstream_select round runs (or is paused): afterwards
     * the attempt already holds r->ep. */
    if (r->phase != PH_UP_SELECT || !(r->in_chain || r->paused))
        return SLC_ESTATE;
    if (!r->cluster || !e || e->cluster != r->cluster)
        return SLC_EINVAL;
    r->ep = e;
    return SLC_OK;
}

static void h_stream_info(slc_req_t *r, slc_stream_info_t *out)
{
    uint32_t size = out->struct_size ? out->struct_size : sizeof(*out);
    slc_stream_info_t i = {0};
    i.struct_size = sizeof(i);
    i.response_flags = r->flags;
    i.status = r->status;
    i.start_us = r->start_us;
    i.duration_us = now_us(r->w) - r->start_us;
    i.upstream_start_us = r->upstream_start_us;
    i.bytes_received = r->req_bytes;
    i.bytes_sent = r->resp_bytes;
    if (r->cluster)
        i.cluster = (slc_str_t){r->cluster->name, strlen(r->cluster->name)};
    if (r->ep)
        i.upstream = (slc_str_t){r->ep->addr, strlen(r->ep->addr)};
    i.listener = (slc_str_t){r->gl->conf->name, strlen(r->gl->conf->name)};
    i.request_id = (slc_str_t){r->request_id, strlen(r->request_id)};
    i.protocol = r->protocol;
    i.attempts = r->attempts;
    i.client_address = r->client_addr;
    memcpy(out, &i, size < sizeof(i) ? size : sizeof(i));
    out->struct_size = size < sizeof(i) ? size : (uint32_t)sizeof(i);
}

static void h_set_response_flag(slc_req_t *r, uint32_t flag)
{
    r->flags |= flag;
}

static slc_conn_t *h_req_conn(slc_req_t *r)
{
    return r->down_conn;
}

static int h_req_worker(slc_req_t *r)
{
    return r->w->id;
}

/* ---- timers ----------------------------------------------------------- */

struct slc_timer {
    struct event *ev;
    slc_req_t *r;
    slc_timer_fn fn;
    void *arg;
};

static void on_filter_timer(evutil_socket_t fd, short what, void *arg)
{
    struct slc_timer *t = arg;
    (void)fd;
    (void)what;
    t->fn(t->r, t->arg);
}

static void timer_defer_del(void *arg)
{
    event_del(arg);
}

static slc_timer_t *h_timer_add(slc_req_t *r, uint64_t ms, slc_timer_fn fn, void *arg)
{
    struct slc_timer *t = arena_alloc(&r->arena, sizeof(*t));
    if (!t)
        return NULL;
    t->ev = arena_alloc(&r->arena, event_get_struct_event_size());
    if (!t->ev || arena_defer(&r->arena, timer_defer_del, t->ev) != 0)
        return NULL;
    t->r = r;
    t->fn = fn;
    t->arg = arg;
    evtimer_assign(t->ev, r->w->base, on_filter_timer, t);
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    evtimer_add(t->ev, &tv);
    return t;
}

static void h_timer_cancel(slc_timer_t *t)
{
    if (t)
        event_del(t->ev);
}

/* ---- metrics ---------------------------------------------------------- */

static void h_metric_add(slc_req_t *r, slc_metric_t *m, int64_t v)
{
    if (!m || !r)
        return;
    worker_t *w = r->w;
    stat_t *st = m->per_worker[w->id];
    if (!st) {
        st = stats_get(w->stats, m->key);
        m->per_worker[w->id] = st;
    }
    stat_add(st, v);
}

/* ---- connections -------------------------------------------------------- */

static int conn_kind(slc_conn_t *c)
{
    return *(const int *)c;
}

static slc_str_t h_conn_peer(slc_conn_t *c)
{
    if (conn_kind(c) == CONN_DOWNSTREAM) {
        dconn_t *dc = (dconn_t *)c;
        return (slc_str_t){dc->peer, strlen(dc->peer)};
    }
    uconn_t *uc = (uconn_t *)c;
    return (slc_str_t){uc->pool->addr, strlen(uc->pool->addr)};
}

static slc_str_t h_conn_local(slc_conn_t *c)
{
    if (conn_kind(c) == CONN_DOWNSTREAM) {
        dconn_t *dc = (dconn_t *)c;
        return (slc_str_t){dc->local, strlen(dc->local)};
    }
    return SLC_STR_NULL;
}

sio_t *conn_sio(slc_conn_t *c)
{
    return conn_kind(c) == CONN_DOWNSTREAM ? &((dconn_t *)c)->io : &((uconn_t *)c)->io;
}

static slc_status_t h_conn_set_transport(slc_conn_t *c, const slc_transport_t *t, void *ctx)
{
    sio_t *io = conn_sio(c);
    if (io->t)
        return SLC_ESTATE;
    return sio_set_transport(io, t, ctx, c);
}

static slc_status_t h_conn_emit(slc_conn_t *c, slc_emit_t dir, const uint8_t *data, size_t len)
{
    return sio_emit(conn_sio(c), dir, data, len);
}

static void h_conn_transport_ready(slc_conn_t *c)
{
    conn_sio(c)->t_ready = true;
}

static slc_str_t fact(slc_conn_t *c, int which)
{
    sio_t *io = conn_sio(c);
    if (!io->t)
        return SLC_STR_NULL;
    slc_str_t (*fn)(void *) = which == 0   ? io->t->peer_identity
                              : which == 1 ? io->t->sni
                                           : io->t->alpn;
    return fn ? fn(io->tctx) : SLC_STR_NULL;
}

/* ---- ABI 1.4 ----------------------------------------------------------- */

static slc_status_t h_conn_peer_cert(slc_conn_t *c, slc_peer_cert_t *out)
{
    sio_t *io = conn_sio(c);
    if (!out || !io->t || !io->t->peer_cert)
        return SLC_ENOENT;
    /* The transport fills below the caller's struct_size; a caller that
     * left it 0 gets the whole struct as these headers know it. */
    if (!out->struct_size)
        out->struct_size = sizeof(*out);
    return io->t->peer_cert(io->tctx, out);
}

bool sio_is_secure(const sio_t *io)
{
    return io->t && (!io->t->secure || io->t->secure(io->tctx));
}

static bool h_conn_secure(slc_conn_t *c)
{
    return sio_is_secure(conn_sio(c));
}

static slc_status_t h_req_fact_set(slc_req_t *r, slc_str_t name, slc_str_t value)
{
    if (!name.len)
        return SLC_EINVAL;
    char *v = value.len ? arena_alloc_nozero(&r->arena, value.len) : NULL;
    if (value.len && !v)
        return SLC_ENOMEM;
    if (value.len)
        memcpy(v, value.ptr, value.len);
    for (fact_t *f = r->facts; f; f = f->next) {
        if (f->name.len == name.len && memcmp(f->name.ptr, name.ptr, name.len) == 0) {
            f->value = (slc_str_t){v ? v : "", value.len};
            return SLC_OK;
        }
    }
    fact_t *f = arena_alloc_nozero(&r->arena, sizeof(*f) + name.len);
    if (!f)
        return SLC_ENOMEM;
    memcpy(f + 1, name.ptr, name.len);
    f->name = (slc_str_t){(const char *)(f + 1), name.len};
    f->value = (slc_str_t){v ? v : "", value.len};
    f->next = r->facts;
    r->facts = f;
    return SLC_OK;
}

static slc_str_t h_req_fact_get(slc_req_t *r, slc_str_t name)
{
    for (fact_t *f = r->facts; f; f = f->next)
        if (f->name.len == name.len && memcmp(f->name.ptr, name.ptr, name.len) == 0)
            return f->value;
    return SLC_STR_NULL;
}

static slc_str_t h_conn_peer_identity(slc_conn_t *c)
{
    return fact(c, 0);
}

static slc_str_t h_conn_sni(slc_conn_t *c)
{
    return fact(c, 1);
}

static slc_str_t h_conn_alpn(slc_conn_t *c)
{
    return fact(c, 2);
}

/* ---- ABI 1.1 ----------------------------------------------------------- */

slc_status_t retry_policy_copy(arena_t *a, const slc_retry_policy_t *p, slc_retry_policy_t **out)
{
    slc_retry_policy_t *c = arena_alloc(a, sizeof(*c));
    if (!c)
        return SLC_ENOMEM;
    /* struct_size 0 predates the field being checked: the 1.1 layout. */
    size_t in = p->struct_size ? p->struct_size : offsetof(slc_retry_policy_t, statuses);
    memcpy(c, p, in < sizeof(*c) ? in : sizeof(*c));
    c->struct_size = sizeof(*c);
    const uint16_t *src = c->retriable_statuses;
    uint32_t n = c->nretriable_statuses < 8 ? c->nretriable_statuses : 8;
    if (slc_struct_has(c, slc_retry_policy_t, statuses)) {
        src = c->statuses;
        n = c->nstatuses;
    }
    /* The filter's array is only borrowed for the call. */
    uint16_t *st = n ? arena_alloc(a, n * sizeof(*st)) : NULL;
    if (n && !st)
        return SLC_ENOMEM;
    if (n)
        memcpy(st, src, n * sizeof(*st));
    c->statuses = st;
    c->nstatuses = n;
    *out = c;
    return SLC_OK;
}

static slc_status_t h_route_set_retry(slc_req_t *r, const slc_retry_policy_t *p)
{
    /* Only before any body byte left: the replay copy must hold all of it. */
    if (r->state != ST_REQ_FILTERS || r->req_bytes)
        return SLC_ESTATE;
    if (!p) {
        r->retry = NULL;
        return SLC_OK;
    }
    slc_retry_policy_t *c;
    slc_status_t st = retry_policy_copy(&r->arena, p, &c);
    if (st != SLC_OK)
        return st;
    r->retry = c->max_retries ? c : NULL;
    r->try_timeout_ms = r->retry ? r->retry->per_try_timeout_ms : 0;
    /* Only a request with a body needs a replay copy (Istio's default
     * retry policy is set on every routed request). */
    if (r->retry && r->req_body != UB_NONE)
        r->replay.on = true;
    return SLC_OK;
}

static bool h_upstream_tried(slc_req_t *r, const slc_endpoint_t *e)
{
    return stream_tried(r, e);
}

static slc_status_t h_route_set_mirror(slc_req_t *r, const slc_cluster_t *c)
{
    if (r->state != ST_REQ_FILTERS)
        return SLC_ESTATE;
    if (c && !of_stream_gen(r, c))
        return SLC_EINVAL;
    r->mirror = c;
    if (c && r->req_body != UB_NONE)
        r->replay.on = true;
    return SLC_OK;
}

static void h_endpoint_eject(const slc_endpoint_t *e, uint64_t until_ms)
{
    atomic_store_explicit(&e->st->ejected_until, until_ms, memory_order_relaxed);
    cluster_health_changed(e->cluster->st);
}

static uint64_t h_endpoint_ejected_until(const slc_endpoint_t *e)
{
    uint64_t u = atomic_load_explicit(&e->st->ejected_until, memory_order_relaxed);
    return u > gen_now_ms() ? u : 0;
}

static uint64_t h_now_ms(void)
{
    return gen_now_ms();
}

/* worker_stat: |m|'s series in worker |worker_id|'s shard, looked up once
 * and kept in the metric. THREAD: that worker. */
static stat_t *worker_stat(int worker_id, slc_metric_t *m)
{
    stat_t *st = m->per_worker[worker_id];
    if (!st) {
        st = stats_get(stats_worker_shard(worker_id), m->key);
        m->per_worker[worker_id] = st;
    }
    return st;
}

static void h_metric_add_global(int worker_id, slc_metric_t *m, int64_t v)
{
    if (!m || worker_id < 0)
        return;
    stat_add(worker_stat(worker_id, m), v);
}

static void h_metric_set_global(int worker_id, slc_metric_t *m, int64_t v)
{
    if (!m || worker_id < 0)
        return;
    atomic_store_explicit(&worker_stat(worker_id, m)->value, v, memory_order_relaxed);
}

static size_t h_endpoint_index(const slc_endpoint_t *e)
{
    return e->index;
}

static const slc_cluster_t *h_endpoint_cluster(const slc_endpoint_t *e)
{
    return e->cluster;
}

/* ---- ABI 1.3 ----------------------------------------------------------- */

static slc_status_t h_attempt_retry(slc_req_t *r, uint64_t backoff_ms)
{
    if (!r->in_result || !stream_can_retry(r))
        return SLC_ESTATE;
    r->retry_asked = true;
    if (backoff_ms > r->retry_backoff_ms)
        r->retry_backoff_ms = backoff_ms;
    return SLC_OK;
}

static slc_status_t h_route_keep_body(slc_req_t *r)
{
    if (r->state != ST_REQ_FILTERS || r->req_bytes)
        return SLC_ESTATE;
    if (r->req_body != UB_NONE)
        r->replay.on = true;
    return SLC_OK;
}

static slc_status_t h_route_set_try_timeout(slc_req_t *r, uint64_t ms)
{
    /* request filters, and every upstream_select round (retries too) */
    if (r->state != ST_REQ_FILTERS && !(r->in_chain && r->phase == PH_UP_SELECT))
        return SLC_ESTATE;
    r->try_timeout_ms = ms;
    return SLC_OK;
}

static uint32_t h_cluster_usable_count(const slc_cluster_t *c)
{
    return cluster_usable_count((slc_cluster_t *)c, gen_now_ms());
}

static uint32_t h_req_attempts(slc_req_t *r)
{
    return r->attempts;
}

const slc_host_t host_table = {
    .abi_version = SLC_ABI_VERSION,
    .struct_size = sizeof(slc_host_t),
    .log = h_log,
    .log_enabled = h_log_enabled,
    .cfg_type = cfg_type,
    .cfg_scalar = cfg_scalar,
    .cfg_len = cfg_len,
    .cfg_at = cfg_at,
    .cfg_key_at = cfg_key_at,
    .cfg_get = cfg_get,
    .cfg_bind = cfg_bind,
    .cfg_duration_ms = cfg_duration_ms,
    .diag_error = diag_verror,
    .diag_warn = diag_vwarn,
    .cfg_cluster = cfg_build_cluster,
    .cfg_alloc = cfg_build_alloc,
    .metric_new = cfg_build_metric,
    .cluster_name = h_cluster_name,
    .cluster_endpoint_count = h_cluster_endpoint_count,
    .cluster_endpoint = h_cluster_endpoint,
    .endpoint_address = h_endpoint_address,
    .endpoint_active_requests = h_endpoint_active_requests,
    .endpoint_healthy = h_endpoint_healthy,
    .arena_alloc = h_arena_alloc,
    .arena_defer = h_arena_defer,
    .header_get = h_header_get,
    .header_set = h_header_set,
    .header_add = h_header_add,
    .header_remove = h_header_remove,
    .header_iterate = h_header_iterate,
    .pseudo = h_pseudo,
    .set_pseudo = h_set_pseudo,
    .response_status = h_response_status,
    .set_response_status = h_set_response_status,
    .send_local_reply = h_send_local_reply,
    .resume = h_resume,
    .route_set_cluster = h_route_set_cluster,
    .route_cluster = h_route_cluster,
    .route_set_timeout = h_route_set_timeout,
    .cluster_get = h_cluster_get,
    .upstream_set_endpoint = h_upstream_set_endpoint,
    .stream_info = h_stream_info,
    .set_response_flag = h_set_response_flag,
    .req_conn = h_req_conn,
    .req_worker = h_req_worker,
    .timer_add = h_timer_add,
    .timer_cancel = h_timer_cancel,
    .metric_add = h_metric_add,
    .conn_peer = h_conn_peer,
    .conn_local = h_conn_local,
    .conn_set_transport = h_conn_set_transport,
    .conn_emit = h_conn_emit,
    .conn_transport_ready = h_conn_transport_ready,
    .conn_peer_identity = h_conn_peer_identity,
    .conn_sni = h_conn_sni,
    .conn_alpn = h_conn_alpn,
    .route_set_retry = h_route_set_retry,
    .upstream_tried = h_upstream_tried,
    .route_set_mirror = h_route_set_mirror,
    .endpoint_eject = h_endpoint_eject,
    .endpoint_ejected_until = h_endpoint_ejected_until,
    .now_ms = h_now_ms,
    .metric_new_labeled = cfg_build_metric_labeled,
    .metric_add_global = h_metric_add_global,
    .endpoint_index = h_endpoint_index,
    .endpoint_cluster = h_endpoint_cluster,
    .req_attempts = h_req_attempts,
    .cfg_cluster_pool = cfg_build_cluster_pool,
    .attempt_retry = h_attempt_retry,
    .route_keep_body = h_route_keep_body,
    .route_set_try_timeout = h_route_set_try_timeout,
    .cluster_usable_count = h_cluster_usable_count,
    .conn_peer_cert = h_conn_peer_cert,
    .conn_secure = h_conn_secure,
    .req_fact_set = h_req_fact_set,
    .req_fact_get = h_req_fact_get,
    .metric_set_global = h_metric_set_global,
};
