/* client_addr: passes the stream's trusted client address (ABI 1.3
 * slc_stream_info_t.client_address) upstream as x-sluice-client-address,
 * so a test can see what the listener's use_remote_address and
 * xff_num_trusted_hops made of the connection and its X-Forwarded-For. */
#include <sluice/filter.h>
#include <sluice/host.h>

static slc_status_t config_new(const slc_host_t *h, const slc_cfg_node_t *n, void **out,
                               slc_diag_t *d)
{
    (void)h;
    (void)n;
    (void)d;
    *out = NULL;
    return SLC_OK;
}

static slc_action_t on_request_headers(void *ctx, slc_req_t *r)
{
    (void)ctx;
    slc_stream_info_t info = {.struct_size = sizeof(info)};
    slc_host->stream_info(r, &info);
    /* A host before 1.3 fills less: struct_size says how much. */
    if (info.struct_size >=
            offsetof(slc_stream_info_t, client_address) + sizeof(info.client_address) &&
        info.client_address.len)
        slc_header_set(r, SLC_REQUEST_HEADERS, SLC_STR("x-sluice-client-address"),
                       info.client_address);
    return SLC_CONTINUE;
}

static const slc_filter_desc_t desc = {
    .abi_version = SLC_ABI_VERSION,
    .struct_size = sizeof(slc_filter_desc_t),
    .name = "client_addr",
    .version = "1.0.0",
    .config_new = config_new,
    .on_request_headers = on_request_headers,
};

SLC_FILTER_DEFINE(desc)
