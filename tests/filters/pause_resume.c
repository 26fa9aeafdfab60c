/* pause_resume: a test module for asynchronous filters.
 *
 *   config: { delay: 50ms }    # the default
 *
 * on_request_headers arms a stream timer and returns SLC_PAUSE; when the
 * timer fires it sets request header `x-paused: 1` and resumes the stream,
 * so the upstream sees the header and the client sees the delay.
 */
#include <sluice/filter.h>
#include <sluice/host.h>

typedef struct pause_cfg {
    uint64_t delay_ms;
} pause_cfg_t;

static const slc_cfg_field_t pause_fields[] = {
    SLC_FIELD_DURATION("delay", pause_cfg_t, delay_ms, .dflt = "50ms"),
    SLC_FIELD_END,
};

static slc_status_t pause_config_new(const slc_host_t *h, const slc_cfg_node_t *n, void **out_cfg,
                                     slc_diag_t *d)
{
    /* Config-arena: the host frees it with the instance. */
    pause_cfg_t *cfg = h->cfg_alloc(d, sizeof(*cfg));
    *out_cfg = NULL;
    if (h->cfg_bind(d, n, pause_fields, cfg) != SLC_OK) {
        return SLC_EINVAL;
    }
    *out_cfg = cfg;
    return SLC_OK;
}

static void pause_timer_fired(slc_req_t *r, void *arg)
{
    (void)arg;
    if (slc_header_set(r, SLC_REQUEST_HEADERS, SLC_STR("x-paused"), SLC_STR("1")) != SLC_OK) {
        slc_send_local_reply(r, 500, SLC_STR("text/plain"), SLC_STR("pause_resume failed\n"));
    }
    slc_resume(r);
}

static slc_action_t pause_on_request_headers(void *ctx, slc_req_t *r)
{
    const pause_cfg_t *cfg = ctx;
    if (slc_host->timer_add(r, cfg->delay_ms, pause_timer_fired, NULL) == NULL) {
        slc_send_local_reply(r, 500, SLC_STR("text/plain"), SLC_STR("pause_resume failed\n"));
        return SLC_STOP;
    }
    return SLC_PAUSE;
}

static const slc_filter_desc_t pause_desc = {
    .abi_version = SLC_ABI_VERSION,
    .struct_size = sizeof(slc_filter_desc_t),
    .name = "pause_resume",
    .version = "0.1.0",
    .config_new = pause_config_new,
    .on_request_headers = pause_on_request_headers,
};

SLC_FILTER_DEFINE(pause_desc)
