/* hello: the example sluice filter.
 *
 *   filters:
 *     - name: greet
 *       module: /path/to/hello.so
 *       config: { header: x-hello, value: "world" }
 *
 * Adds `<header>: <value>` to every response and counts the responses it
 * touched in sluice_hello_responses_total{filter="greet"}.
 *
 * Everything here is static except the entry function SLC_FILTER_DEFINE
 * exports: build with -fvisibility=hidden (sluice_add_filter does).
 */
#include <sluice/filter.h>
#include <sluice/host.h>
#include <sluice/types.h>

#include <string.h>

/* hello_cfg is one instance's configuration. It is built on the main thread
 * and then only read, by every worker at once.
 * OWNERSHIP: config-arena (cfg_alloc); the host frees it with the instance,
 * so the filter needs no config_free. */
typedef struct hello_cfg {
    char *header; /* config-arena, NUL-terminated; set by cfg_bind */
    char *value;  /* config-arena, NUL-terminated; set by cfg_bind */
    slc_str_t header_s, value_s;
    slc_metric_t *responses; /* owned by the host, lives as long as the instance */
} hello_cfg_t;

static const slc_cfg_field_t hello_fields[] = {
    SLC_FIELD_STR("header", hello_cfg_t, header, .required = true),
    SLC_FIELD_STR("value", hello_cfg_t, value, .required = true),
    SLC_FIELD_END,
};

/* is_tchar: RFC 9110 token characters, what a header name is made of. */
static bool is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static slc_status_t hello_config_new(const slc_host_t *h, const slc_cfg_node_t *n, void **out_cfg,
                                     slc_diag_t *d)
{
    hello_cfg_t *cfg = h->cfg_alloc(d, sizeof(*cfg));

    *out_cfg = NULL;
    /* cfg_bind reports unknown keys, missing required keys and wrong types
     * itself, each at its own line:column. Keep checking after a failure so
     * that the operator sees every problem in one run; a field the binder
     * could not fill stays NULL. */
    bool ok = h->cfg_bind(d, n, hello_fields, cfg) == SLC_OK;

    /* Our own checks point at the offending node too. */
    if (cfg->header != NULL && cfg->header[0] == '\0') {
        slc_diag_error(d, h->cfg_get(n, "header"), "header name must not be empty");
        ok = false;
    }
    for (const char *p = cfg->header; p != NULL && *p != '\0'; p++) {
        if (!is_tchar((unsigned char)*p)) {
            slc_diag_error(d, h->cfg_get(n, "header"),
                           "header name '%s' contains an invalid character '%c'", cfg->header, *p);
            ok = false;
            break;
        }
    }
    for (const char *p = cfg->value; p != NULL && *p != '\0'; p++) {
        unsigned char c = (unsigned char)*p;
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            slc_diag_error(d, h->cfg_get(n, "value"), "value contains a control character");
            ok = false;
            break;
        }
    }
    if (!ok) {
        return SLC_EINVAL;
    }
    /* Precompute the views so the request path does no strlen. */
    cfg->header_s = (slc_str_t){cfg->header, strlen(cfg->header)};
    cfg->value_s = (slc_str_t){cfg->value, strlen(cfg->value)};
    cfg->responses = h->metric_new(d, SLC_METRIC_COUNTER, "hello_responses_total",
                                   "Responses the hello filter added its header to");
    *out_cfg = cfg;
    return SLC_OK;
}

/* hello_on_response_headers runs on the worker that owns the stream. With no
 * request_new, |ctx| is the (read-only, shared) config. */
static slc_action_t hello_on_response_headers(void *ctx, slc_req_t *r)
{
    const hello_cfg_t *cfg = ctx;
    /* The host copies name and value into the request arena. */
    if (slc_header_add(r, SLC_RESPONSE_HEADERS, cfg->header_s, cfg->value_s) == SLC_OK) {
        slc_host->metric_add(r, cfg->responses, 1);
    }
    return SLC_CONTINUE;
}

static const slc_filter_desc_t hello_desc = {
    .abi_version = SLC_ABI_VERSION,
    .struct_size = sizeof(slc_filter_desc_t),
    .name = "hello",
    .version = "0.1.0",
    .config_new = hello_config_new,
    .on_response_headers = hello_on_response_headers,
};

SLC_FILTER_DEFINE(hello_desc)
