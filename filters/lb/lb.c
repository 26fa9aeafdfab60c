/* lb: picks an endpoint of the cluster the router chose.
 *
 *   config: { policy: round_robin }     # the default
 *
 * Policies are a table of pick functions over a per-worker state, so
 * least_request (endpoint_active_requests), random and hash (a header or the
 * peer address) slot in as new rows without touching the hook.
 *
 * Round robin keeps one cursor per cluster per worker: no atomics, no locks,
 * and each worker cycles through the endpoints on its own (with N workers
 * the first request of each worker goes to the first endpoint; over time
 * the load evens out, as with Envoy's per-worker round robin). Unhealthy
 * endpoints are skipped and the cursor moves past the one picked, so the
 * healthy ones share the load evenly.
 */
#include <sluice/filter.h>
#include <sluice/host.h>
#include <sluice/types.h>

#include <stdint.h>
#include <stdlib.h>

typedef enum lb_policy_kind {
    LB_ROUND_ROBIN = 0,
    /* LB_LEAST_REQUEST, LB_RANDOM, LB_HASH: next. */
} lb_policy_kind_t;

static const char *const lb_policy_names[] = {"round_robin", NULL};

/* rr_slot is the round-robin cursor of one cluster on one worker. */
typedef struct rr_slot {
    const slc_cluster_t *cluster;
    size_t next;
} rr_slot_t;

/* A worker remembers cursors for up to LB_RR_SLOTS clusters; beyond that
 * the rest share one cursor (still correct, only less even). */
#define LB_RR_SLOTS 128

struct lb_cfg;

/* lb_worker is one worker's mutable state for one lb instance.
 * OWNERSHIP: owned by the instance; malloc'd in worker_init, freed in
 * worker_fini, touched only on its worker's thread. */
typedef struct lb_worker {
    const struct lb_cfg *cfg;
    rr_slot_t slots[LB_RR_SLOTS];
    size_t overflow_next;
} lb_worker_t;

typedef const slc_endpoint_t *(*lb_pick_fn)(lb_worker_t *w, const slc_cluster_t *c);

typedef struct lb_policy {
    const char *name;
    lb_pick_fn pick; /* NULL when no endpoint may be used */
} lb_policy_t;

typedef struct lb_cfg {
    int policy; /* lb_policy_kind_t, bound by cfg_bind */
    const lb_policy_t *impl;
    slc_metric_t *no_healthy; /* config-arena (host-owned) */
} lb_cfg_t;

/* rr_cursor finds (or claims) the cursor of |c| with open addressing on the
 * cluster pointer. Cluster pointers are stable for the life of the config
 * generation, which outlives this worker state. */
static size_t *rr_cursor(lb_worker_t *w, const slc_cluster_t *c)
{
    uint64_t h = (uint64_t)(uintptr_t)c * 0x9e3779b97f4a7c15ull;
    size_t i = (size_t)(h >> 32) % LB_RR_SLOTS;
    for (size_t probe = 0; probe < LB_RR_SLOTS; probe++) {
        rr_slot_t *s = &w->slots[(i + probe) % LB_RR_SLOTS];
        if (s->cluster == c) {
            return &s->next;
        }
        if (s->cluster == NULL) {
            s->cluster = c;
            s->next = 0;
            return &s->next;
        }
    }
    return &w->overflow_next;
}

static const slc_endpoint_t *rr_pick(lb_worker_t *w, const slc_cluster_t *c)
{
    size_t n = slc_host->cluster_endpoint_count(c);
    if (n == 0) {
        return NULL;
    }
    size_t *cursor = rr_cursor(w, c);
    size_t start = *cursor % n;
    for (size_t i = 0; i < n; i++) {
        size_t idx = (start + i) % n;
        const slc_endpoint_t *e = slc_host->cluster_endpoint(c, idx);
        if (e != NULL && slc_host->endpoint_healthy(e)) {
            *cursor = idx + 1;
            return e;
        }
    }
    return NULL;
}

static const lb_policy_t lb_policies[] = {
    [LB_ROUND_ROBIN] = {"round_robin", rr_pick},
};

static const slc_cfg_field_t lb_fields[] = {
    SLC_FIELD_ENUM("policy", lb_cfg_t, policy, lb_policy_names, .dflt = "round_robin"),
    SLC_FIELD_END,
};

static slc_status_t lb_config_new(const slc_host_t *h, const slc_cfg_node_t *n, void **out_cfg,
                                  slc_diag_t *d)
{
    *out_cfg = NULL;
    /* Config-arena: freed by the host with the instance. */
    lb_cfg_t *cfg = h->cfg_alloc(d, sizeof(*cfg));
    if (h->cfg_bind(d, n, lb_fields, cfg) != SLC_OK) {
        return SLC_EINVAL;
    }
    if (cfg->policy < 0 || (size_t)cfg->policy >= sizeof(lb_policies) / sizeof(lb_policies[0])) {
        slc_diag_error(d, h->cfg_get(n, "policy"), "policy not supported");
        return SLC_EINVAL;
    }
    cfg->impl = &lb_policies[cfg->policy];
    cfg->no_healthy = h->metric_new(d, SLC_METRIC_COUNTER, "lb_no_healthy_upstream_total",
                                    "Requests answered 503 because no endpoint was healthy");
    *out_cfg = cfg;
    return SLC_OK;
}

static slc_status_t lb_worker_init(void *cfg, int worker_id, void **out_wctx)
{
    lb_worker_t *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        return SLC_ENOMEM;
    }
    (void)worker_id;
    w->cfg = cfg;
    *out_wctx = w;
    return SLC_OK;
}

static void lb_worker_fini(void *cfg, void *wctx)
{
    (void)cfg;
    free(wctx);
}

/* lb_request_new hands the worker state to the stream hooks as their ctx:
 * the lb keeps nothing per stream, so it allocates nothing per stream. */
static slc_status_t lb_request_new(void *cfg, void *wctx, slc_req_t *r, void **out_ctx)
{
    (void)cfg;
    (void)r;
    *out_ctx = wctx;
    return SLC_OK;
}

static slc_action_t lb_on_upstream_select(void *ctx, slc_req_t *r)
{
    lb_worker_t *w = ctx;
    const slc_cluster_t *c = slc_host->route_cluster(r);
    if (c == NULL) {
        return SLC_CONTINUE; /* answered locally or not routed: nothing to pick */
    }
    const slc_endpoint_t *e = w->cfg->impl->pick(w, c);
    if (e == NULL) {
        slc_host->set_response_flag(r, SLC_RF_UH);
        slc_host->metric_add(r, w->cfg->no_healthy, 1);
        slc_send_local_reply(r, 503, SLC_STR("text/plain"), SLC_STR("no healthy upstream\n"));
        return SLC_STOP;
    }
    if (slc_host->upstream_set_endpoint(r, e) != SLC_OK) {
        slc_send_local_reply(r, 503, SLC_STR("text/plain"), SLC_STR("no healthy upstream\n"));
        return SLC_STOP;
    }
    return SLC_CONTINUE;
}

static const slc_filter_desc_t lb_desc = {
    .abi_version = SLC_ABI_VERSION,
    .struct_size = sizeof(slc_filter_desc_t),
    .name = "lb",
    .version = "0.1.0",
    .config_new = lb_config_new,
    .worker_init = lb_worker_init,
    .worker_fini = lb_worker_fini,
    .request_new = lb_request_new,
    .on_upstream_select = lb_on_upstream_select,
};

SLC_FILTER_DEFINE(lb_desc)
