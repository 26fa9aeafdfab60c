/* deny: a test module that refuses some paths locally.
 *
 *   config: { path_prefix: /deny }     # the default
 *
 * A request whose path starts with path_prefix gets 403 "denied\n" and the
 * chain stops; anything else continues. Tests use it to check that a
 * SLC_STOP short-circuits later filters and the upstream, while response
 * filters still see the local reply.
 */
#include <sluice/filter.h>
#include <sluice/host.h>

#include <string.h>

typedef struct deny_cfg {
    char *path_prefix; /* config-arena */
    size_t len;
} deny_cfg_t;

static const slc_cfg_field_t deny_fields[] = {
    SLC_FIELD_STR("path_prefix", deny_cfg_t, path_prefix, .dflt = "/deny"),
    SLC_FIELD_END,
};

static slc_status_t deny_config_new(const slc_host_t *h, const slc_cfg_node_t *n, void **out_cfg,
                                    slc_diag_t *d)
{
    deny_cfg_t *cfg = h->cfg_alloc(d, sizeof(*cfg));
    *out_cfg = NULL;
    if (h->cfg_bind(d, n, deny_fields, cfg) != SLC_OK) {
        return SLC_EINVAL;
    }
    if (cfg->path_prefix[0] != '/') {
        slc_diag_error(d, h->cfg_get(n, "path_prefix"), "path_prefix '%s' must start with '/'",
                       cfg->path_prefix);
        return SLC_EINVAL;
    }
    cfg->len = strlen(cfg->path_prefix);
    *out_cfg = cfg;
    return SLC_OK;
}

static slc_action_t deny_on_request_headers(void *ctx, slc_req_t *r)
{
    const deny_cfg_t *cfg = ctx;
    slc_str_t path = slc_pseudo(r, SLC_PSEUDO_PATH);
    if (path.len >= cfg->len && memcmp(path.ptr, cfg->path_prefix, cfg->len) == 0) {
        slc_send_local_reply(r, 403, SLC_STR("text/plain"), SLC_STR("denied\n"));
        return SLC_STOP;
    }
    return SLC_CONTINUE;
}

static const slc_filter_desc_t deny_desc = {
    .abi_version = SLC_ABI_VERSION,
    .struct_size = sizeof(slc_filter_desc_t),
    .name = "deny",
    .version = "0.1.0",
    .config_new = deny_config_new,
    .on_request_headers = deny_on_request_headers,
};

SLC_FILTER_DEFINE(deny_desc)
