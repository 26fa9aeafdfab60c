#include "h1w.h"

#include <string.h>

/* Longest framing line any writer adds: "content-length: " + 20 digits +
 * CRLF (longer than "transfer-encoding: chunked\r\n"). */
#define FRAMING_MAX (sizeof("content-length: ") - 1 + 20 + 2)
#define CONN_MAX    (sizeof("connection: keep-alive\r\n") - 1)

/* wbuf is a bounded cursor: once a put does not fit, nothing more is
 * written and the result is refused. */
typedef struct wbuf {
    char *p;
    size_t len, cap;
    bool overflow;
} wbuf_t;

static void put(wbuf_t *w, const void *s, size_t n)
{
    if (w->overflow || n > w->cap - w->len) {
        w->overflow = true;
        return;
    }
    memcpy(w->p + w->len, s, n);
    w->len += n;
}

#define PUT_LIT(w, lit) put((w), (lit), sizeof(lit) - 1)

static void put_str(wbuf_t *w, slc_str_t s)
{
    put(w, s.ptr, s.len);
}

static void put_dec(wbuf_t *w, uint64_t v)
{
    char tmp[20];
    size_t n = sizeof(tmp);
    do {
        tmp[--n] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    put(w, tmp + n, sizeof(tmp) - n);
}

static void put_field(wbuf_t *w, slc_str_t name, slc_str_t value)
{
    put_str(w, name);
    PUT_LIT(w, ": ");
    put_str(w, value);
    PUT_LIT(w, "\r\n");
}

static void put_framing(wbuf_t *w, h1w_framing_t f, uint64_t length)
{
    switch (f) {
    case H1W_NONE:
        break;
    case H1W_LENGTH:
        PUT_LIT(w, "content-length: ");
        put_dec(w, length);
        PUT_LIT(w, "\r\n");
        break;
    case H1W_CHUNKED:
        PUT_LIT(w, "transfer-encoding: chunked\r\n");
        break;
    case H1W_EMPTY_LENGTH:
        PUT_LIT(w, "content-length: 0\r\n");
        break;
    }
}

static size_t fields_size(const hdr_t *h, size_t n)
{
    size_t sz = 0;
    for (size_t i = 0; i < n; i++)
        sz += h[i].name.len + h[i].value.len + 4;
    return sz;
}

static size_t finish(const wbuf_t *w)
{
    return w->overflow ? 0 : w->len;
}

size_t h1w_request_size(const h1w_req_t *r)
{
    return r->method.len + 1 + r->path.len + sizeof(" HTTP/1.1\r\n") - 1 +
           fields_size(r->hdrs, r->nhdrs) + sizeof("host: \r\n") - 1 + r->host.len + FRAMING_MAX +
           2;
}

size_t h1w_request(const h1w_req_t *r, char *buf, size_t cap)
{
    wbuf_t w = {buf, 0, cap, false};
    put_str(&w, r->method);
    PUT_LIT(&w, " ");
    put_str(&w, r->path);
    PUT_LIT(&w, " HTTP/1.1\r\n");
    bool have_host = false;
    for (size_t i = 0; i < r->nhdrs; i++) {
        const hdr_t *h = &r->hdrs[i];
        if (is_framing_field(h->name))
            continue;
        if (h1_token_eq(h->name.ptr, h->name.len, "host"))
            have_host = true;
        put_field(&w, h->name, h->value);
    }
    if (!have_host)
        put_field(&w, SLC_STR("host"), r->host);
    put_framing(&w, r->framing, r->length);
    PUT_LIT(&w, "\r\n");
    return finish(&w);
}

size_t h1w_response_size(const h1w_resp_t *r)
{
    return sizeof("HTTP/1.1 999 \r\n") - 1 + r->reason.len + fields_size(r->hdrs, r->nhdrs) +
           FRAMING_MAX + CONN_MAX + 2;
}

size_t h1w_response(const h1w_resp_t *r, char *buf, size_t cap)
{
    wbuf_t w = {buf, 0, cap, false};
    PUT_LIT(&w, "HTTP/1.1 ");
    put_dec(&w, r->status < 100 || r->status > 999 ? 500u : (uint64_t)r->status);
    PUT_LIT(&w, " ");
    put_str(&w, r->reason);
    PUT_LIT(&w, "\r\n");
    for (size_t i = 0; i < r->nhdrs; i++) {
        const hdr_t *h = &r->hdrs[i];
        /* Framing is ours, whatever the upstream or a filter put in the
         * list; only a bodiless response's content-length passes. */
        if (is_framing_field(h->name) &&
            !(r->keep_cl && h1_token_eq(h->name.ptr, h->name.len, "content-length")))
            continue;
        put_field(&w, h->name, h->value);
    }
    put_framing(&w, r->framing, r->length);
    if (r->conn == H1W_CONN_CLOSE)
        PUT_LIT(&w, "connection: close\r\n");
    else if (r->conn == H1W_CONN_KEEP_ALIVE)
        PUT_LIT(&w, "connection: keep-alive\r\n");
    PUT_LIT(&w, "\r\n");
    return finish(&w);
}
