/* circuit-breaker: Istio DestinationRule connectionPool and outlierDetection
 * for the clusters it lists.
 *
 *   config:
 *     clusters:
 *       api:
 *         connection_pool:
 *           tcp:  { max_connections: 100, connect_timeout: 5s }
 *           http: { http1_max_pending_requests: 50, http2_max_requests: 100,
 *                   max_requests_per_connection: 10, max_retries: 3, idle_timeout: 1h }
 *         outlier_detection:
 *           consecutive_5xx_errors: 5
 *           interval: 10s
 *           base_ejection_time: 30s
 *           max_ejection_percent: 10
 *
 * Three mechanisms:
 *   - connection limits (max_connections, http1_max_pending_requests,
 *     max_requests_per_connection, connect_timeout, idle_timeout) go to the
 *     core with cfg_cluster_pool at config time; the core enforces them;
 *   - http2_max_requests and max_retries are counted here, per cluster
 *     across all workers, with atomics in a module-wide per-cluster entry
 *     (so a reload neither forgets nor double-counts requests in flight),
 *     checked in on_upstream_select: over the limit the stream is answered
 *     503 with flag UO at once;
 *   - outlier detection watches every attempt (on_upstream_result) and
 *     ejects endpoints through the core (endpoint_eject); see outlier.h.
 *
 * The chain must run this filter after the router (it needs the routed
 * cluster) and before the lb (so an overflowing stream is refused before an
 * endpoint is picked).
 */
#include <sluice/filter.h>
#include <sluice/host.h>
#include <sluice/types.h>

#include "outlier.h"

#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

/* Every CB_RESCAN_MS at most, a cluster's endpoints are scanned to bring
 * the cb_ejections_active gauge in line with ejections that ended or that
 * another instance (an older generation during a reload) made. */
#define CB_RESCAN_MS 1000

/* Envoy's default max_ejection_time, which Istio does not expose. */
#define CB_MAX_EJECTION_MS 300000

/* What the field tables bind; one per cluster. */
typedef struct cb_tcp_conf {
    uint32_t max_connections;
    uint64_t connect_timeout_ms;
} cb_tcp_conf_t;

typedef struct cb_http_conf {
    uint32_t http1_max_pending_requests;
    uint32_t http2_max_requests;
    uint32_t max_requests_per_connection;
    uint32_t max_retries;
    uint64_t idle_timeout_ms;
} cb_http_conf_t;

typedef struct cb_pool_conf {
    const slc_cfg_node_t *tcp;
    const slc_cfg_node_t *http;
} cb_pool_conf_t;

typedef struct cb_od_conf {
    uint32_t consecutive_5xx_errors;
    uint32_t consecutive_gateway_errors;
    uint32_t consecutive_errors;
    uint64_t interval_ms;
    uint64_t base_ejection_ms;
    uint32_t max_ejection_percent;
    uint32_t min_health_percent;
} cb_od_conf_t;

typedef struct cb_cluster_conf {
    const slc_cfg_node_t *connection_pool;
    const slc_cfg_node_t *outlier_detection;
} cb_cluster_conf_t;

typedef struct cb_conf {
    const slc_cfg_node_t *clusters;
} cb_conf_t;

/* cb_cluster_t is one listed cluster of an instance.
 * OWNERSHIP: config-arena. Immutable after config_new; what workers update
 * is in the module-wide entries (outlier.h) or in the *_local atomics. */
typedef struct cb_cluster {
    slc_str_t name;               /* config-arena, NUL-terminated */
    const slc_cluster_t *cluster; /* of the instance's generation */
    const slc_cfg_node_t *node;   /* clusters.<name>, for diagnostics */
    uint32_t max_requests;        /* http2_max_requests; 0 = unlimited */
    uint32_t max_retries;         /* 0 = unlimited */
    bool outlier;                 /* outlier_detection configured */
    ob_settings_t od;
    ob_entry_t *shared; /* the cluster's entry; NULL if the table is full */
    size_t neps;
    ob_entry_t **hosts; /* by endpoint index; an entry is NULL if the table is full */
    /* Requests in flight and streams retrying: the cluster entry's
     * counters, shared by every instance and generation, or the local ones
     * if there is no entry. */
    _Atomic uint32_t *active, *retrying;
    _Atomic uint32_t active_local, retrying_local;
    slc_metric_t *m_active, *m_overflow, *m_ejections, *m_ejected;
} cb_cluster_t;

typedef struct cb_cfg {
    cb_cluster_t *clusters; /* config-arena */
    size_t nclusters;
} cb_cfg_t;

/* cb_stream_t remembers what a stream counted, so on_complete gives it
 * back exactly once. OWNERSHIP: request-arena. */
typedef struct cb_stream {
    const cb_cfg_t *cfg;
    cb_cluster_t *active;   /* counted in ->active, or NULL */
    cb_cluster_t *retrying; /* counted in ->retrying, or NULL */
    uint32_t selects;       /* upstream_select rounds seen */
} cb_stream_t;

/* ---- configuration ------------------------------------------------------- */

static const slc_cfg_field_t cb_fields[] = {
    SLC_FIELD_NODE("clusters", cb_conf_t, clusters),
    SLC_FIELD_END,
};

static const slc_cfg_field_t cb_cluster_fields[] = {
    SLC_FIELD_NODE("connection_pool", cb_cluster_conf_t, connection_pool),
    SLC_FIELD_NODE("outlier_detection", cb_cluster_conf_t, outlier_detection),
    SLC_FIELD_END,
};

static const slc_cfg_field_t cb_pool_fields[] = {
    SLC_FIELD_NODE("tcp", cb_pool_conf_t, tcp),
    SLC_FIELD_NODE("http", cb_pool_conf_t, http),
    SLC_FIELD_END,
};

/* Absent limits stay 0, which means unlimited (Istio's 2^32-1); absent
 * timeouts stay 0, which keeps the cluster's own (10s and 1h by default,
 * Istio's defaults). */
static const slc_cfg_field_t cb_tcp_fields[] = {
    SLC_FIELD_U32("max_connections", cb_tcp_conf_t, max_connections),
    SLC_FIELD_DURATION("connect_timeout", cb_tcp_conf_t, connect_timeout_ms, .min = 1),
    SLC_FIELD_END,
};

static const slc_cfg_field_t cb_http_fields[] = {
    SLC_FIELD_U32("http1_max_pending_requests", cb_http_conf_t, http1_max_pending_requests),
    SLC_FIELD_U32("http2_max_requests", cb_http_conf_t, http2_max_requests),
    SLC_FIELD_U32("max_requests_per_connection", cb_http_conf_t, max_requests_per_connection),
    SLC_FIELD_U32("max_retries", cb_http_conf_t, max_retries),
    SLC_FIELD_DURATION("idle_timeout", cb_http_conf_t, idle_timeout_ms, .min = 1),
    SLC_FIELD_END,
};

static const slc_cfg_field_t cb_od_fields[] = {
    SLC_FIELD_U32("consecutive_5xx_errors", cb_od_conf_t, consecutive_5xx_errors, .dflt = "5"),
    SLC_FIELD_U32("consecutive_gateway_errors", cb_od_conf_t, consecutive_gateway_errors,
                  .dflt = "0"),
    SLC_FIELD_U32("consecutive_errors", cb_od_conf_t, consecutive_errors),
    SLC_FIELD_DURATION("interval", cb_od_conf_t, interval_ms, .dflt = "10s", .min = 1),
    SLC_FIELD_DURATION("base_ejection_time", cb_od_conf_t, base_ejection_ms, .dflt = "30s",
                       .min = 1),
    SLC_FIELD_U32("max_ejection_percent", cb_od_conf_t, max_ejection_percent, .dflt = "10",
                  .max = 100),
    SLC_FIELD_U32("min_health_percent", cb_od_conf_t, min_health_percent, .dflt = "0", .max = 100),
    SLC_FIELD_END,
};

/* present: |key| is in map |n| with a non-null value. */
static bool present(const slc_host_t *h, const slc_cfg_node_t *n, const char *key)
{
    const slc_cfg_node_t *v = n != NULL ? h->cfg_get(n, key) : NULL;
    return v != NULL && h->cfg_type(v) != SLC_CFG_NULL;
}

static bool is_null(const slc_host_t *h, const slc_cfg_node_t *n)
{
    return n == NULL || h->cfg_type(n) == SLC_CFG_NULL;
}

/* bind_pool binds connection_pool |n| of cluster |cc| and hands the
 * connection limits to the core. Returns false after reporting errors. */
static bool bind_pool(const slc_host_t *h, slc_diag_t *d, const slc_cfg_node_t *n, cb_cluster_t *cc)
{
    cb_pool_conf_t pc = {0};
    cb_tcp_conf_t tcp = {0};
    cb_http_conf_t http = {0};
    bool ok = h->cfg_bind(d, n, cb_pool_fields, &pc) == SLC_OK;
    if (!is_null(h, pc.tcp)) {
        ok = h->cfg_bind(d, pc.tcp, cb_tcp_fields, &tcp) == SLC_OK && ok;
    }
    if (!is_null(h, pc.http)) {
        ok = h->cfg_bind(d, pc.http, cb_http_fields, &http) == SLC_OK && ok;
    }
    if (!ok) {
        return false;
    }
    cc->max_requests = http.http2_max_requests;
    cc->max_retries = http.max_retries;
    slc_pool_options_t o = {
        .struct_size = sizeof(o),
        .connect_timeout_ms = tcp.connect_timeout_ms,
        .idle_timeout_ms = http.idle_timeout_ms,
        .max_requests_per_connection = http.max_requests_per_connection,
        .max_connections = tcp.max_connections,
        .max_pending_requests = http.http1_max_pending_requests,
    };
    if (h->cfg_cluster_pool(d, cc->cluster, &o) != SLC_OK) {
        slc_diag_error(d, n,
                       "cannot set the connection pool of cluster '%.*s': another filter "
                       "instance already set it",
                       (int)cc->name.len, cc->name.ptr);
        return false;
    }
    return true;
}

/* bind_outlier binds outlier_detection |n| into cc->od. */
static bool bind_outlier(const slc_host_t *h, slc_diag_t *d, const slc_cfg_node_t *n,
                         cb_cluster_t *cc)
{
    cb_od_conf_t oc = {0};
    if (h->cfg_bind(d, n, cb_od_fields, &oc) != SLC_OK) {
        return false;
    }
    ob_settings_t *s = &cc->od;
    s->consecutive_5xx = oc.consecutive_5xx_errors;
    s->consecutive_gateway = oc.consecutive_gateway_errors;
    if (present(h, n, "consecutive_errors")) {
        /* Istio's deprecated consecutiveErrors counted only 502/503/504:
         * Istio turns it into Envoy's consecutive_gateway_failure and
         * switches the 5xx detector off, unless the newer keys say
         * otherwise. */
        const slc_cfg_node_t *old = h->cfg_get(n, "consecutive_errors");
        if (present(h, n, "consecutive_gateway_errors")) {
            slc_diag_warn(d, old,
                          "consecutive_errors is deprecated and ignored here: "
                          "consecutive_gateway_errors is set");
        } else {
            slc_diag_warn(
                d, old,
                "consecutive_errors is deprecated: use consecutive_gateway_errors "
                "(and consecutive_5xx_errors); treated as consecutive_gateway_errors: "
                "%u%s",
                oc.consecutive_errors,
                present(h, n, "consecutive_5xx_errors") ? "" : " with consecutive_5xx_errors: 0");
            s->consecutive_gateway = oc.consecutive_errors;
            if (!present(h, n, "consecutive_5xx_errors")) {
                s->consecutive_5xx = 0;
            }
        }
    }
    s->interval_ms = oc.interval_ms;
    s->base_ejection_ms = oc.base_ejection_ms;
    s->max_ejection_ms =
        oc.base_ejection_ms > CB_MAX_EJECTION_MS ? oc.base_ejection_ms : CB_MAX_EJECTION_MS;
    s->max_ejection_percent = oc.max_ejection_percent;
    s->min_health_percent = oc.min_health_percent;
    return true;
}

/* bind_entries gives cluster |cc| its entries in the module-wide table,
 * creating them (this is the main thread), so workers only ever look up. */
static void bind_entries(const slc_host_t *h, slc_diag_t *d, const slc_cfg_node_t *n,
                         cb_cluster_t *cc)
{
    cc->shared = ob_entry_get(cc->name, SLC_STR(""), true);
    cc->hosts = h->cfg_alloc(d, (cc->neps ? cc->neps : 1) * sizeof(*cc->hosts));
    bool full = cc->shared == NULL;
    for (size_t i = 0; i < cc->neps; i++) {
        const slc_endpoint_t *e = h->cluster_endpoint(cc->cluster, i);
        cc->hosts[i] = e != NULL ? ob_entry_get(cc->name, h->endpoint_address(e), true) : NULL;
        full = full || (e != NULL && cc->hosts[i] == NULL);
    }
    if (full) {
        slc_diag_warn(d, n,
                      "circuit-breaker state table is full (%d entries): cluster '%.*s' is only "
                      "partly watched",
                      OB_SLOTS, (int)cc->name.len, cc->name.ptr);
    }
    atomic_init(&cc->active_local, 0);
    atomic_init(&cc->retrying_local, 0);
    cc->active = cc->shared != NULL ? ob_active(cc->shared) : &cc->active_local;
    cc->retrying = cc->shared != NULL ? ob_retrying(cc->shared) : &cc->retrying_local;
}

static void register_metrics(const slc_host_t *h, slc_diag_t *d, cb_cluster_t *cc, const char *name)
{
    cc->m_active =
        h->metric_new_labeled(d, SLC_METRIC_GAUGE, "cb_active_requests",
                              "Requests in flight to the cluster, all workers", "cluster", name);
    cc->m_overflow = h->metric_new_labeled(
        d, SLC_METRIC_COUNTER, "cb_overflow_total",
        "Requests answered 503 (flag UO) because http2_max_requests or max_retries was reached",
        "cluster", name);
    cc->m_ejections =
        h->metric_new_labeled(d, SLC_METRIC_COUNTER, "cb_ejections_total",
                              "Endpoints ejected by outlier detection", "cluster", name);
    cc->m_ejected =
        h->metric_new_labeled(d, SLC_METRIC_GAUGE, "cb_ejections_active",
                              "Endpoints of the cluster ejected right now", "cluster", name);
}

static slc_status_t cb_config_new(const slc_host_t *h, const slc_cfg_node_t *n, void **out_cfg,
                                  slc_diag_t *d)
{
    *out_cfg = NULL;
    /* Config-arena throughout: the host frees it with the instance, also
     * when config_new fails half-way. */
    cb_cfg_t *cfg = h->cfg_alloc(d, sizeof(*cfg));
    cb_conf_t conf = {0};
    bool ok = h->cfg_bind(d, n, cb_fields, &conf) == SLC_OK;
    const slc_cfg_node_t *cl = conf.clusters;
    if (!is_null(h, cl) && h->cfg_type(cl) != SLC_CFG_MAP) {
        slc_diag_error(d, cl, "clusters: expected a map of cluster names");
        return SLC_EINVAL;
    }
    size_t ncl = is_null(h, cl) ? 0 : h->cfg_len(cl);
    cfg->clusters = h->cfg_alloc(d, (ncl ? ncl : 1) * sizeof(*cfg->clusters));
    for (size_t i = 0; i < ncl; i++) {
        slc_str_t name = h->cfg_key_at(cl, i);
        const slc_cfg_node_t *v = h->cfg_at(cl, i);
        const slc_cluster_t *c = h->cfg_cluster(d, name);
        if (c == NULL) {
            slc_diag_error(d, v, "unknown cluster '%.*s'", (int)name.len, name.ptr);
            ok = false;
            continue;
        }
        cb_cluster_t *cc = &cfg->clusters[cfg->nclusters++];
        char *cname = h->cfg_alloc(d, name.len + 1);
        memcpy(cname, name.ptr, name.len);
        cc->name = (slc_str_t){cname, name.len};
        cc->cluster = c;
        cc->neps = h->cluster_endpoint_count(c);
        cc->node = v;
        register_metrics(h, d, cc, cname);
        if (is_null(h, v)) {
            continue; /* listed with nothing: metrics only */
        }
        /* On errors (unknown keys) the binder still fills the known keys:
         * go on and report the problems below them in the same pass. */
        cb_cluster_conf_t ccf = {0};
        ok = h->cfg_bind(d, v, cb_cluster_fields, &ccf) == SLC_OK && ok;
        if (!is_null(h, ccf.connection_pool)) {
            ok = bind_pool(h, d, ccf.connection_pool, cc) && ok;
        }
        if (!is_null(h, ccf.outlier_detection)) {
            cc->outlier = bind_outlier(h, d, ccf.outlier_detection, cc);
            ok = cc->outlier && ok;
        }
    }
    if (!ok) {
        return SLC_EINVAL;
    }
    /* Only a config that will be used takes slots of the module-wide
     * table, which are never given back. */
    for (size_t i = 0; i < cfg->nclusters; i++) {
        bind_entries(h, d, cfg->clusters[i].node, &cfg->clusters[i]);
    }
    *out_cfg = cfg;
    return SLC_OK;
}

/* ---- the request path ---------------------------------------------------- */

/* find_cluster: the listed cluster |c|, or NULL. The handles were
 * resolved in config_new from this instance's own generation, which is the
 * generation of every stream that runs it, so pointers are compared and no
 * name is looked up on the request path. */
static cb_cluster_t *find_cluster(const cb_cfg_t *cfg, const slc_cluster_t *c)
{
    if (c == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < cfg->nclusters; i++) {
        if (cfg->clusters[i].cluster == c) {
            return &cfg->clusters[i];
        }
    }
    return NULL;
}

/* notice_returns brings cb_ejections_active up to date when an ejection
 * may have ended, and at most every CB_RESCAN_MS anyway (to see ejections
 * made elsewhere): endpoints back in service leave the gauge and start over
 * with fresh counters, as Envoy resets them when it brings a host back. */
static void notice_returns(slc_req_t *r, cb_cluster_t *cc, uint64_t now)
{
    ob_entry_t *cl = cc->shared;
    if (cl == NULL || now < ob_next_scan(cl) || !ob_trylock(cl)) {
        return; /* not due, or another worker is at it */
    }
    uint64_t next = now + CB_RESCAN_MS;
    int64_t delta = 0;
    for (size_t i = 0; i < cc->neps; i++) {
        const slc_endpoint_t *e = slc_host->cluster_endpoint(cc->cluster, i);
        ob_entry_t *h = cc->hosts[i];
        if (e == NULL || h == NULL) {
            continue;
        }
        uint64_t until = slc_host->endpoint_ejected_until(e);
        if (until != 0) {
            delta += ob_set_counted(h, true) ? 0 : 1;
            next = until < next ? until : next;
        } else if (ob_set_counted(h, false)) {
            delta--;
            ob_reset(h);
        }
    }
    ob_set_next_scan(cl, next);
    ob_unlock(cl);
    if (delta != 0) {
        slc_host->metric_add(r, cc->m_ejected, delta);
    }
}

/* overflow answers the stream 503 with flag UO. */
static slc_action_t overflow(slc_req_t *r, cb_cluster_t *cc)
{
    slc_host->set_response_flag(r, SLC_RF_UO);
    slc_host->metric_add(r, cc->m_overflow, 1);
    slc_send_local_reply(r, 503, SLC_STR("text/plain"), SLC_STR("upstream overflow\n"));
    return SLC_STOP;
}

/* take reserves one unit of |counter| under |limit| (0 = unlimited). */
static bool take(_Atomic uint32_t *counter, uint32_t limit)
{
    uint32_t was = atomic_fetch_add_explicit(counter, 1, memory_order_relaxed);
    if (limit != 0 && was >= limit) {
        atomic_fetch_sub_explicit(counter, 1, memory_order_relaxed);
        return false;
    }
    return true;
}

static slc_status_t cb_request_new(void *cfg, void *wctx, slc_req_t *r, void **out_ctx)
{
    (void)wctx;
    cb_stream_t *st = slc_arena_alloc(r, sizeof(*st));
    if (st == NULL) {
        return SLC_ENOMEM;
    }
    st->cfg = cfg;
    *out_ctx = st;
    return SLC_OK;
}

static slc_action_t cb_on_upstream_select(void *ctx, slc_req_t *r)
{
    cb_stream_t *st = ctx;
    cb_cluster_t *cc = find_cluster(st->cfg, slc_host->route_cluster(r));
    if (cc == NULL) {
        return SLC_CONTINUE;
    }
    notice_returns(r, cc, slc_host->now_ms());
    /* A second round, or attempts already made, means a retry. */
    bool retry = st->selects++ > 0 || slc_host->req_attempts(r) > 0;
    if (st->active == NULL && !retry) {
        if (!take(cc->active, cc->max_requests)) {
            return overflow(r, cc);
        }
        st->active = cc;
        slc_host->metric_add(r, cc->m_active, 1);
    } else if (retry && st->retrying == NULL) {
        /* Envoy's max_retries: retries outstanding to the cluster at once.
         * A stream counts from its first retry until it completes. */
        if (!take(cc->retrying, cc->max_retries)) {
            return overflow(r, cc);
        }
        st->retrying = cc;
    }
    return SLC_CONTINUE;
}

static void cb_on_upstream_result(void *ctx, slc_req_t *r, const slc_endpoint_t *e,
                                  slc_attempt_result_t res, int status)
{
    cb_stream_t *st = ctx;
    if (e == NULL) {
        return;
    }
    const slc_cluster_t *c = slc_host->endpoint_cluster(e);
    cb_cluster_t *cc = find_cluster(st->cfg, c);
    if (cc == NULL || !cc->outlier || cc->shared == NULL) {
        return;
    }
    size_t idx = slc_host->endpoint_index(e);
    ob_entry_t *h = c == cc->cluster && idx < cc->neps
                        ? cc->hosts[idx]
                        : ob_entry_get(cc->name, slc_host->endpoint_address(e), false);
    if (h == NULL || !ob_record(h, &cc->od, res, status)) {
        return;
    }
    uint64_t now = slc_host->now_ms();
    bool newly;
    uint64_t until = ob_try_eject(cc->shared, h, &cc->od, e, now, &newly);
    if (until == 0) {
        return;
    }
    slc_host->metric_add(r, cc->m_ejections, 1);
    if (newly) {
        slc_host->metric_add(r, cc->m_ejected, 1);
    }
    slc_str_t addr = slc_host->endpoint_address(e);
    slc_log(SLC_LOG_INFO, "circuit-breaker", "ejected endpoint %.*s of cluster %.*s for %llu ms",
            (int)addr.len, addr.ptr, (int)cc->name.len, cc->name.ptr,
            (unsigned long long)(until - now));
}

static void cb_on_complete(void *ctx, slc_req_t *r)
{
    cb_stream_t *st = ctx;
    if (st->active != NULL) {
        atomic_fetch_sub_explicit(st->active->active, 1, memory_order_relaxed);
        slc_host->metric_add(r, st->active->m_active, -1);
        st->active = NULL;
    }
    if (st->retrying != NULL) {
        atomic_fetch_sub_explicit(st->retrying->retrying, 1, memory_order_relaxed);
        st->retrying = NULL;
    }
}

static const slc_filter_desc_t cb_desc = {
    .abi_version = SLC_ABI_VERSION,
    .struct_size = sizeof(slc_filter_desc_t),
    .name = "circuit-breaker",
    .version = "0.1.0",
    .config_new = cb_config_new,
    .request_new = cb_request_new,
    .on_upstream_select = cb_on_upstream_select,
    .on_complete = cb_on_complete,
    .on_upstream_result = cb_on_upstream_result,
};

SLC_FILTER_DEFINE(cb_desc)
