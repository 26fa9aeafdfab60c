/* tag: a test module that stamps responses with a tag header.
 *
 *   config: { value: "A" }                   # required
 *   config: { header: x-tag, value: "A" }    # header defaults to x-tag
 *
 * Reload tests run two generations with different values and read the
 * header to see which generation answered a given request. Building with
 * -DTAG_SUFFIX='"-rebuilt"' appends that suffix to every value, which is how
 * the reload test tells a rebuilt .so swapped in under the same path from
 * the old one.
 */
#include <sluice/filter.h>
#include <sluice/host.h>

#include <string.h>

#ifndef TAG_SUFFIX
#define TAG_SUFFIX ""
#endif

typedef struct tag_cfg {
    char *header; /* config-arena */
    char *value;  /* config-arena */
    slc_str_t header_s, value_s;
} tag_cfg_t;

static const slc_cfg_field_t tag_fields[] = {
    SLC_FIELD_STR("header", tag_cfg_t, header, .dflt = "x-tag"),
    SLC_FIELD_STR("value", tag_cfg_t, value, .required = true),
    SLC_FIELD_END,
};

static bool is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static slc_status_t tag_config_new(const slc_host_t *h, const slc_cfg_node_t *n, void **out_cfg,
                                   slc_diag_t *d)
{
    /* Config-arena: the host frees it with the instance. */
    tag_cfg_t *cfg = h->cfg_alloc(d, sizeof(*cfg));
    *out_cfg = NULL;
    if (h->cfg_bind(d, n, tag_fields, cfg) != SLC_OK) {
        return SLC_EINVAL;
    }
    bool ok = cfg->header[0] != '\0';
    for (const char *p = cfg->header; *p != '\0'; p++) {
        ok = ok && is_tchar((unsigned char)*p);
    }
    if (!ok) {
        slc_diag_error(d, h->cfg_get(n, "header"), "'%s' is not a valid header name", cfg->header);
        return SLC_EINVAL;
    }
    for (const char *p = cfg->value; *p != '\0'; p++) {
        unsigned char c = (unsigned char)*p;
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            slc_diag_error(d, h->cfg_get(n, "value"), "value contains a control character");
            return SLC_EINVAL;
        }
    }
    size_t vlen = strlen(cfg->value), slen = strlen(TAG_SUFFIX);
    char *v = h->cfg_alloc(d, vlen + slen + 1);
    memcpy(v, cfg->value, vlen);
    memcpy(v + vlen, TAG_SUFFIX, slen);
    cfg->header_s = (slc_str_t){cfg->header, strlen(cfg->header)};
    cfg->value_s = (slc_str_t){v, vlen + slen};
    *out_cfg = cfg;
    return SLC_OK;
}

static slc_action_t tag_on_response_headers(void *ctx, slc_req_t *r)
{
    const tag_cfg_t *cfg = ctx;
    /* set, not add: exactly one tag per response, whatever the upstream sent. */
    (void)slc_header_set(r, SLC_RESPONSE_HEADERS, cfg->header_s, cfg->value_s);
    return SLC_CONTINUE;
}

static const slc_filter_desc_t tag_desc = {
    .abi_version = SLC_ABI_VERSION,
    .struct_size = sizeof(slc_filter_desc_t),
    .name = "tag",
    .version = "0.1.0",
    .config_new = tag_config_new,
    .on_response_headers = tag_on_response_headers,
};

SLC_FILTER_DEFINE(tag_desc)
