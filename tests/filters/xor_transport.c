/* xor_transport: a test module for the transport interface. A toy "secure
 * channel": the client first sends "SLC-HELLO <identity>\n" in the clear;
 * the transport answers "SLC-OK\n", reports <identity> as the peer identity,
 * and from then on every byte in both directions is XORed with the key.
 * A request-phase hook copies the identity into x-peer-identity, so a test
 * can see it at the upstream. Config: { key: 90 } (0-255, default 90). */
#include <sluice/filter.h>
#include <sluice/host.h>
#include <stdlib.h>
#include <string.h>

typedef struct cfg {
    uint32_t key;
} cfg_t;

typedef struct tctx {
    uint8_t key;
    bool ready;
    char hello[128];
    size_t hello_len;
    char identity[96];
    size_t identity_len;
} tctx_t;

static const slc_cfg_field_t fields[] = {
    SLC_FIELD_U32("key", cfg_t, key, .dflt = "90", .min = 1, .max = 255),
    SLC_FIELD_END,
};

/* xor_emit XORs |p| with the key and emits it in |dir|, a buffer at a time. */
static slc_status_t xor_emit(tctx_t *t, slc_conn_t *c, slc_emit_t dir, const uint8_t *p, size_t n)
{
    uint8_t buf[4096];
    while (n) {
        size_t k = n < sizeof(buf) ? n : sizeof(buf);
        for (size_t i = 0; i < k; i++)
            buf[i] = p[i] ^ t->key;
        slc_status_t st = slc_host->conn_emit(c, dir, buf, k);
        if (st != SLC_OK)
            return st;
        p += k;
        n -= k;
    }
    return SLC_OK;
}

static slc_status_t t_recv(void *ctx, slc_conn_t *c, const uint8_t *p, size_t n)
{
    tctx_t *t = ctx;
    while (!t->ready && n) {
        if (t->hello_len == sizeof(t->hello))
            return SLC_EIO;
        char ch = (char)*p++;
        n--;
        t->hello[t->hello_len++] = ch;
        if (ch != '\n')
            continue;
        if (t->hello_len < 11 || memcmp(t->hello, "SLC-HELLO ", 10) != 0)
            return SLC_EIO;
        t->identity_len = t->hello_len - 11;
        if (t->identity_len >= sizeof(t->identity))
            return SLC_EIO;
        memcpy(t->identity, t->hello + 10, t->identity_len);
        t->ready = true;
        slc_host->conn_emit(c, SLC_EMIT_WIRE, (const uint8_t *)"SLC-OK\n", 7);
        slc_host->conn_transport_ready(c);
    }
    return xor_emit(t, c, SLC_EMIT_PLAIN, p, n);
}

static slc_status_t t_send(void *ctx, slc_conn_t *c, const uint8_t *p, size_t n)
{
    return xor_emit(ctx, c, SLC_EMIT_WIRE, p, n);
}

static void t_free(void *ctx)
{
    free(ctx);
}

static slc_str_t t_identity(void *ctx)
{
    tctx_t *t = ctx;
    return t->ready ? (slc_str_t){t->identity, t->identity_len} : SLC_STR_NULL;
}

static const slc_transport_t transport = {
    .struct_size = sizeof(slc_transport_t),
    .recv = t_recv,
    .send = t_send,
    .free = t_free,
    .peer_identity = t_identity,
};

static slc_status_t config_new(const slc_host_t *h, const slc_cfg_node_t *n, void **out,
                               slc_diag_t *d)
{
    cfg_t *c = h->cfg_alloc(d, sizeof(*c));
    if (h->cfg_bind(d, n, fields, c) != SLC_OK)
        return SLC_EINVAL;
    *out = c;
    return SLC_OK;
}

static slc_action_t on_connection(void *cfg, void *wctx, slc_conn_t *c)
{
    (void)wctx;
    tctx_t *t = calloc(1, sizeof(*t));
    if (!t)
        return SLC_STOP;
    t->key = (uint8_t)((cfg_t *)cfg)->key;
    if (slc_host->conn_set_transport(c, &transport, t) != SLC_OK) {
        free(t);
        return SLC_STOP;
    }
    return SLC_CONTINUE;
}

static slc_action_t on_request_headers(void *ctx, slc_req_t *r)
{
    (void)ctx;
    slc_str_t id = slc_host->conn_peer_identity(slc_host->req_conn(r));
    if (id.len)
        slc_header_set(r, SLC_REQUEST_HEADERS, SLC_STR("x-peer-identity"), id);
    return SLC_CONTINUE;
}

static const slc_filter_desc_t desc = {
    .abi_version = SLC_ABI_VERSION,
    .struct_size = sizeof(slc_filter_desc_t),
    .name = "xor-transport",
    .version = "0.1.0",
    .config_new = config_new,
    .on_connection = on_connection,
    .on_request_headers = on_request_headers,
};

SLC_FILTER_DEFINE(desc)
