/* retry_status: a retry policy outside the router's vocabulary, written as
 * a third party would against SDK 1.3: retry any response whose status is
 * |status| (say 418, which no Istio retryOn name covers), at most
 * |attempts| times, |backoff| apart, keeping the request body for replay.
 *   { status: 418, attempts: 2, backoff: 10ms }
 * On a host before 1.3 it refuses its config (attempt_retry is missing). */
#include <sluice/filter.h>
#include <sluice/host.h>

typedef struct cfg {
    uint32_t status, attempts;
    uint64_t backoff_ms;
} cfg_t;

/* Per stream: the retries asked for so far (request arena). */
typedef struct st {
    const cfg_t *cfg;
    uint32_t asked;
} st_t;

static const slc_cfg_field_t fields[] = {
    SLC_FIELD_U32("status", cfg_t, status, .required = true, .min = 100, .max = 599),
    SLC_FIELD_U32("attempts", cfg_t, attempts, .dflt = "1", .max = 100),
    SLC_FIELD_DURATION("backoff", cfg_t, backoff_ms, .dflt = "0s"),
    SLC_FIELD_END,
};

static slc_status_t config_new(const slc_host_t *h, const slc_cfg_node_t *n, void **out,
                               slc_diag_t *d)
{
    if (!slc_host_has(h, attempt_retry)) {
        slc_diag_error(d, n, "retry_status needs a sluice with filter ABI 1.3");
        return SLC_EINVAL;
    }
    cfg_t *c = h->cfg_alloc(d, sizeof(*c));
    if (h->cfg_bind(d, n, fields, c) != SLC_OK)
        return SLC_EINVAL;
    *out = c;
    return SLC_OK;
}

static slc_status_t request_new(void *cfg, void *wctx, slc_req_t *r, void **out)
{
    (void)wctx;
    st_t *st = slc_arena_alloc(r, sizeof(*st));
    if (!st)
        return SLC_ENOMEM;
    st->cfg = cfg;
    *out = st;
    return SLC_OK;
}

static slc_action_t on_request_headers(void *ctx, slc_req_t *r)
{
    (void)ctx;
    slc_host->route_keep_body(r); /* so a retry can send the body again */
    return SLC_CONTINUE;
}

static void on_upstream_result(void *ctx, slc_req_t *r, const slc_endpoint_t *e,
                               slc_attempt_result_t res, int status)
{
    (void)e;
    st_t *st = ctx;
    if (res != SLC_ATTEMPT_RESPONSE || (uint32_t)status != st->cfg->status ||
        st->asked >= st->cfg->attempts)
        return;
    if (slc_host->attempt_retry(r, st->cfg->backoff_ms) == SLC_OK)
        st->asked++;
}

static const slc_filter_desc_t desc = {
    .abi_version = SLC_ABI_VERSION,
    .struct_size = sizeof(slc_filter_desc_t),
    .name = "retry_status",
    .version = "1.0.0",
    .config_new = config_new,
    .request_new = request_new,
    .on_request_headers = on_request_headers,
    .on_upstream_result = on_upstream_result,
};

SLC_FILTER_DEFINE(desc)
