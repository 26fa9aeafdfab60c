/* upconnect: counts the upstream-connect phase per stream and reports it
 * in the response, so a test can tell which attempts ran on a new
 * connection (the phase runs) and which on a pooled one (it must not).
 *   config: {}
 * Response header: x-upstream-connects: <times on_upstream_connect ran>. */
#include <sluice/filter.h>
#include <sluice/host.h>

#include <stdio.h>

/* Per stream (request arena). */
typedef struct st {
    unsigned connects;
    char buf[16];
} st_t;

static slc_status_t config_new(const slc_host_t *h, const slc_cfg_node_t *n, void **out,
                               slc_diag_t *d)
{
    (void)h;
    (void)n;
    (void)d;
    *out = NULL;
    return SLC_OK;
}

static slc_status_t request_new(void *cfg, void *wctx, slc_req_t *r, void **out)
{
    (void)cfg;
    (void)wctx;
    st_t *st = slc_arena_alloc(r, sizeof(*st));
    if (!st)
        return SLC_ENOMEM;
    st->connects = 0;
    *out = st;
    return SLC_OK;
}

static slc_action_t on_upstream_connect(void *ctx, slc_req_t *r, slc_conn_t *up)
{
    (void)r;
    (void)up;
    ((st_t *)ctx)->connects++;
    return SLC_CONTINUE;
}

static slc_action_t on_response_headers(void *ctx, slc_req_t *r)
{
    st_t *st = ctx;
    int n = snprintf(st->buf, sizeof(st->buf), "%u", st->connects);
    (void)slc_header_set(r, SLC_RESPONSE_HEADERS, SLC_STR("x-upstream-connects"),
                         (slc_str_t){st->buf, (size_t)n});
    return SLC_CONTINUE;
}

static const slc_filter_desc_t desc = {
    .abi_version = SLC_ABI_VERSION,
    .struct_size = sizeof(slc_filter_desc_t),
    .name = "upconnect",
    .version = "1.0.0",
    .config_new = config_new,
    .request_new = request_new,
    .on_upstream_connect = on_upstream_connect,
    .on_response_headers = on_response_headers,
};

SLC_FILTER_DEFINE(desc)
