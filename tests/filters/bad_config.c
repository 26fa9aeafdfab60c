/* bad_config: a test module whose config_new always fails, reporting the
 * error at its config node, so that the host's error path (message with
 * file:line:col, --validate exit status, reload keeping the old config)
 * is tested end to end. */
#include <sluice/filter.h>
#include <sluice/host.h>

static slc_status_t bad_config_new(const slc_host_t *h, const slc_cfg_node_t *n, void **out_cfg,
                                   slc_diag_t *d)
{
    (void)h;
    *out_cfg = NULL;
    slc_diag_error(d, n, "this filter rejects every config");
    return SLC_EINVAL;
}

static slc_action_t bad_config_on_request_headers(void *ctx, slc_req_t *r)
{
    (void)ctx;
    (void)r;
    return SLC_CONTINUE;
}

static const slc_filter_desc_t bad_config_desc = {
    .abi_version = SLC_ABI_VERSION,
    .struct_size = sizeof(slc_filter_desc_t),
    .name = "bad_config",
    .version = "0.1.0",
    .config_new = bad_config_new,
    .on_request_headers = bad_config_on_request_headers,
};

SLC_FILTER_DEFINE(bad_config_desc)
