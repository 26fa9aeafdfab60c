/* h1body: body framing over evbuffers (see h1body.h). */
#include "h1body.h"

#include <stdio.h>

void h1body_rd_init(h1body_rd_t *r, h1_body_t kind, uint64_t length)
{
    r->kind = kind;
    r->left = kind == H1_BODY_LENGTH ? length : 0;
    r->taken = 0;
    r->pending = false;
    h1_chunked_init(&r->ch);
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
         * prefix so a huge buffer is not made contiguous. */
        size_t look = avail < 16384 ? avail : 16384;
        const char *p = (const char *)evbuffer_pullup(src, (ev_ssize_t)look);
        size_t used = 0;
        h1_result_t res = h1_chunked_parse(&r->ch, p, look, &used, reason);
        if (res == H1_ERROR)
            return H1B_ERROR;
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

void h1body_wr_end(h1body_wr_t *w, struct evbuffer *dst)
{
    if (w->ended)
        return;
    w->ended = true;
    if (w->chunked)
        evbuffer_add(dst, "0\r\n\r\n", 5);
}
