/* policy: a test module that applies core traffic policy from its config,
 * so the core's retries, mirroring and pool limits can be tested without
 * the router/lb/circuit-breaker filters.
 *   { retries: 2, retry_on: 33, per_try_timeout: 200ms, backoff: 5ms,
 *     retriable_status: 503, mirror: shadow,
 *     pool_cluster: c, max_connections: 1, max_pending: 1 } */
#include <sluice/filter.h>
#include <sluice/host.h>
#include <string.h>

typedef struct cfg {
    uint32_t retries, retry_on, retriable_status, max_connections, max_pending;
    uint64_t per_try_ms, backoff_ms;
    char *mirror, *pool_cluster;
} cfg_t;

static const slc_cfg_field_t fields[] = {
    SLC_FIELD_U32("retries", cfg_t, retries, .dflt = "0"),
    SLC_FIELD_U32("retry_on", cfg_t, retry_on, .dflt = "0"),
    SLC_FIELD_U32("retriable_status", cfg_t, retriable_status, .dflt = "0"),
    SLC_FIELD_DURATION("per_try_timeout", cfg_t, per_try_ms, .dflt = "0s"),
    SLC_FIELD_DURATION("backoff", cfg_t, backoff_ms, .dflt = "25ms"),
    SLC_FIELD_STR("mirror", cfg_t, mirror),
    SLC_FIELD_STR("pool_cluster", cfg_t, pool_cluster),
    SLC_FIELD_U32("max_connections", cfg_t, max_connections, .dflt = "0"),
    SLC_FIELD_U32("max_pending", cfg_t, max_pending, .dflt = "0"),
    SLC_FIELD_END,
};

static slc_status_t config_new(const slc_host_t *h, const slc_cfg_node_t *n, void **out,
                               slc_diag_t *d)
{
    cfg_t *c = h->cfg_alloc(d, sizeof(*c));
    if (h->cfg_bind(d, n, fields, c) != SLC_OK)
        return SLC_EINVAL;
    if (c->pool_cluster) {
        const slc_cluster_t *cl =
            h->cfg_cluster(d, (slc_str_t){c->pool_cluster, strlen(c->pool_cluster)});
        if (!cl) {
            slc_diag_error(d, h->cfg_get(n, "pool_cluster"), "unknown cluster '%s'",
                           c->pool_cluster);
            return SLC_EINVAL;
        }
        slc_pool_options_t o = {.struct_size = sizeof(o),
                                .max_connections = c->max_connections,
                                .max_pending_requests = c->max_pending};
        if (h->cfg_cluster_pool(d, cl, &o) != SLC_OK) {
            slc_diag_error(d, n, "cannot set pool options");
            return SLC_EINVAL;
        }
    }
    *out = c;
    return SLC_OK;
}

static slc_action_t on_request_headers(void *ctx, slc_req_t *r)
{
    cfg_t *c = ctx;
    if (c->retries) {
        slc_retry_policy_t p = {.struct_size = sizeof(p),
                                .max_retries = c->retries,
                                .retry_on = c->retry_on,
                                .per_try_timeout_ms = c->per_try_ms,
                                .backoff_base_ms = c->backoff_ms};
        if (c->retriable_status) {
            p.retriable_statuses[0] = (uint16_t)c->retriable_status;
            p.nretriable_statuses = 1;
        }
        slc_host->route_set_retry(r, &p);
    } else {
        /* This module decides retries: clear whatever an earlier filter
         * (the router's Istio default) set. */
        slc_host->route_set_retry(r, NULL);
    }
    if (c->mirror) {
        const slc_cluster_t *m =
            slc_host->cluster_get(r, (slc_str_t){c->mirror, strlen(c->mirror)});
        if (m)
            slc_host->route_set_mirror(r, m);
    }
    return SLC_CONTINUE;
}

static const slc_filter_desc_t desc = {
    .abi_version = SLC_ABI_VERSION,
    .struct_size = sizeof(slc_filter_desc_t),
    .name = "policy",
    .version = "0.1.0",
    .config_new = config_new,
    .on_request_headers = on_request_headers,
};

SLC_FILTER_DEFINE(desc)
