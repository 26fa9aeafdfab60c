/* wrong_abi: a test module built "for ABI 2.0". The host must refuse it
 * with a message naming the file and both versions, without calling any
 * hook. */
#include <sluice/filter.h>
#include <sluice/host.h>

static slc_action_t wrong_abi_on_request_headers(void *ctx, slc_req_t *r)
{
    (void)ctx;
    (void)r;
    return SLC_CONTINUE;
}

static const slc_filter_desc_t wrong_abi_desc = {
    .abi_version = (2u << 16) | 0u,
    .struct_size = sizeof(slc_filter_desc_t),
    .name = "wrong_abi",
    .version = "0.1.0",
    .on_request_headers = wrong_abi_on_request_headers,
};

SLC_FILTER_DEFINE(wrong_abi_desc)
