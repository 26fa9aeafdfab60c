/* h1body: body framing over evbuffers (see h1body.h). */
#include "h1body.h"

#include <stdio.h>
#include <string.h>

void h1body_rd_init(h1body_rd_t *r, h1_body_t kind, uint64_t length)
{
    r->trailers = NULL;
    r->kind = kind;
    r->left = kind == H1_BODY_LENGTH ? length : 0;
    r->taken = 0;
    r->pending = false;
    h1_chunked_init(&r->ch);
}

void h1body_rd_release(h1body_rd_t *r)
{
    if (r->trailers)
        evbuffer_free(r->trailers);
    r->trailers = NULL;
}

bool h1body_rd_done(const h1body_rd_t *r)
{
    switch (r->kind) {
    case H1_BODY_NONE:
        return true;
    case H1_BODY_LENGTH:
        return r->left == 0;
    case H1_BODY_CHUNKED:
        return h1_chunked_done(&r->ch);
    default:
        return false;
    }
}

h1body_res_t h1body_rd_next(h1body_rd_t *r, struct evbuffer *src, size_t *n, const char **reason)
{
    *n = 0;
    for (;;) {
        size_t avail = evbuffer_get_length(src);
        switch (r->kind) {
        case H1_BODY_NONE:
            return H1B_END;
        case H1_BODY_LENGTH:
            if (r->left == 0)
                return H1B_END;
            if (avail == 0)
                return H1B_MORE;
            *n = avail < r->left ? avail : (size_t)r->left;
            r->pending = true;
            return H1B_DATA;
        case H1_BODY_EOF:
            if (avail == 0)
                return H1B_MORE;
            *n = avail;
            r->pending = true;
            return H1B_DATA;
        default:
            break;
        }
        /* chunked */
        if (h1_chunked_done(&r->ch))
            return H1B_END;
        if (avail == 0)
            return H1B_MORE;
        if (h1_chunked_in_data(&r->ch)) {
            uint64_t l = h1_chunked_data_left(&r->ch);
            *n = avail < l ? avail : (size_t)l;
            r->pending = true;
            return H1B_DATA;
        }
        /* Framing lines are short (the parser caps them); look at a bounded
         * prefix so a huge buffer is not made contiguous. Outside the
         * trailers, feed one line at a time: the last size line's parse
         * then stops at its LF, and what follows is known to be trailers. */
        size_t look = avail < 16384 ? avail : 16384;
        const char *p = (const char *)evbuffer_pullup(src, (ev_ssize_t)look);
        bool in_tr = h1_chunked_in_trailers(&r->ch);
        if (!in_tr) {
            const char *lf = memchr(p, '\n', look);
            if (lf)
                look = (size_t)(lf - p) + 1;
        }
        size_t used = 0;
        h1_result_t res = h1_chunked_parse(&r->ch, p, look, &used, reason);
        if (res == H1_ERROR)
            return H1B_ERROR;
        if (used && in_tr) {
            if (!r->trailers)
                r->trailers = evbuffer_new();
            if (r->trailers)
                evbuffer_add(r->trailers, p, used);
        }
        if (used)
            evbuffer_drain(src, used);
        if (res == H1_INCOMPLETE && used == 0)
            return H1B_MORE;
    }
}

void h1body_rd_took(h1body_rd_t *r, size_t n)
{
    r->pending = false;
    r->taken += n;
    if (r->kind == H1_BODY_LENGTH)
        r->left -= n < r->left ? n : r->left;
    else if (r->kind == H1_BODY_CHUNKED)
        h1_chunked_data_consumed(&r->ch, n);
}

void h1body_wr_init(h1body_wr_t *w, bool chunked)
{
    w->chunked = chunked;
    w->ended = false;
}

static void chunk_head(struct evbuffer *dst, size_t n)
{
    char line[24];
    int k = snprintf(line, sizeof(line), "%zx\r\n", n);
    evbuffer_add(dst, line, (size_t)k);
}

void h1body_wr_move(h1body_wr_t *w, struct evbuffer *src, size_t n, struct evbuffer *dst)
{
    if (n == 0)
        return;
    if (w->chunked)
        chunk_head(dst, n);
    evbuffer_remove_buffer(src, dst, n);
    if (w->chunked)
        evbuffer_add(dst, "\r\n", 2);
}

void h1body_wr_add(h1body_wr_t *w, const void *p, size_t n, struct evbuffer *dst)
{
    if (n == 0)
        return;
    if (w->chunked)
        chunk_head(dst, n);
    evbuffer_add(dst, p, n);
    if (w->chunked)
        evbuffer_add(dst, "\r\n", 2);
}

void h1body_wr_end(h1body_wr_t *w, struct evbuffer *dst, const hdr_t *tr, size_t n)
{
    if (w->ended)
        return;
    w->ended = true;
    if (!w->chunked)
        return;
    evbuffer_add(dst, "0\r\n", 3);
    for (size_t i = 0; i < n; i++) {
        /* RFC 9110 6.5.1: nothing that frames, routes or authenticates. */
        h1_hdr_kind_t k = h1_classify(tr[i].name.ptr, tr[i].name.len);
        if (h1_kind_is_hop(k) || k == H1H_CONTENT_LENGTH || k == H1H_HOST)
            continue;
        evbuffer_add(dst, tr[i].name.ptr, tr[i].name.len);
        evbuffer_add(dst, ": ", 2);
        evbuffer_add(dst, tr[i].value.ptr, tr[i].value.len);
        evbuffer_add(dst, "\r\n", 2);
    }
    evbuffer_add(dst, "\r\n", 2);
}

void h1body_rd_trailers(const h1body_rd_t *r, void *(*alloc)(void *actx, size_t size), void *actx,
                        hdr_t **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    size_t len = r->trailers ? evbuffer_get_length(r->trailers) : 0;
    if (len <= 2) /* the final CRLF alone */
        return;
    len -= 2;
    char *b = alloc(actx, len);
    if (!b)
        return;
    evbuffer_copyout(r->trailers, b, len);
    size_t lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += b[i] == '\n';
    hdr_t *v = alloc(actx, (lines ? lines : 1) * sizeof(*v));
    if (!v)
        return;
    /* The chunk parser validated every line: "name:OWS value OWS CRLF". */
    size_t k = 0;
    for (size_t i = 0; i < len && k < lines;) {
        const char *ln = b + i;
        const char *end = memchr(ln, '\n', len - i);
        size_t ll = (size_t)(end - ln);
        i += ll + 1;
        if (ll && ln[ll - 1] == '\r')
            ll--;
        const char *colon = memchr(ln, ':', ll);
        if (!colon)
            continue;
        const char *vs = colon + 1, *ve = ln + ll;
        while (vs < ve && (*vs == ' ' || *vs == '\t'))
            vs++;
        while (ve > vs && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        v[k].name = (slc_str_t){ln, (size_t)(colon - ln)};
        v[k].value = (slc_str_t){vs, (size_t)(ve - vs)};
        k++;
    }
    *out = v;
    *n = k;
}
