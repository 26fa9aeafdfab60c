/* noop: a test module that does nothing, as cheaply as possible.
 *
 * Implements on_request_headers and on_response_headers, both returning
 * SLC_CONTINUE, and nothing else (no config, no per-stream state). Chains
 * of N noop instances measure the per-filter cost of the chain runner.
 */
#include <sluice/filter.h>
#include <sluice/host.h>

static slc_action_t noop_on_request_headers(void *ctx, slc_req_t *r)
{
    (void)ctx;
    (void)r;
    return SLC_CONTINUE;
}

static slc_action_t noop_on_response_headers(void *ctx, slc_req_t *r)
{
    (void)ctx;
    (void)r;
    return SLC_CONTINUE;
}

static const slc_filter_desc_t noop_desc = {
    .abi_version = SLC_ABI_VERSION,
    .struct_size = sizeof(slc_filter_desc_t),
    .name = "noop",
    .version = "0.1.0",
    .on_request_headers = noop_on_request_headers,
    .on_response_headers = noop_on_response_headers,
};

SLC_FILTER_DEFINE(noop_desc)
