/* transport: moving a connection's bytes through a filter-installed
 * transport (TLS in the mtls filter) without the core linking any TLS
 * library.
 *
 * The connection's socket bufferevent stays underneath; on top sits a
 * libevent filter bufferevent whose input filter hands ciphertext to
 * t->recv and whose output filter hands plaintext to t->send. The codec
 * above sees plain bytes and keeps its watermarks. A connection without a
 * transport has no filter layer at all.
 */
#include "log.h"
#include "server.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <string.h>

transport_slot_t *transport_slot_of(slc_conn_t *c)
{
    int kind = *(const int *)c;
    if (kind == CONN_DOWNSTREAM)
        return &((dconn_t *)c)->tr;
    if (kind == CONN_UPSTREAM)
        return &((uconn_t *)c)->tr;
    return NULL;
}

/* feed runs |fn| over every contiguous piece of |src|, draining it. */
static enum bufferevent_filter_result feed(transport_slot_t *slot, struct evbuffer *src, bool in)
{
    while (evbuffer_get_length(src)) {
        struct evbuffer_iovec v[8];
        int k = evbuffer_peek(src, -1, NULL, v, 8);
        size_t used = 0;
        for (int i = 0; i < k && i < 8; i++) {
            slc_status_t st =
                in ? slot->t->recv(slot->ctx, slot->conn, v[i].iov_base, v[i].iov_len)
                   : slot->t->send(slot->ctx, slot->conn, v[i].iov_base, v[i].iov_len);
            if (st != SLC_OK && st != SLC_EAGAIN) {
                evbuffer_drain(src, evbuffer_get_length(src));
                /* libevent 2.1 does not turn a filter's BEV_ERROR into an
                 * event: raise it ourselves (deferred), so the connection
                 * closes through its normal error path. */
                if (!slot->failed) {
                    slot->failed = true;
                    bufferevent_trigger_event(
                        slot->top, BEV_EVENT_ERROR | (in ? BEV_EVENT_READING : BEV_EVENT_WRITING),
                        BEV_TRIG_DEFER_CALLBACKS);
                }
                return BEV_ERROR;
            }
            used += v[i].iov_len;
        }
        evbuffer_drain(src, used);
    }
    return BEV_OK;
}

static enum bufferevent_filter_result in_filter(struct evbuffer *src, struct evbuffer *dst,
                                                ev_ssize_t limit, enum bufferevent_flush_mode m,
                                                void *arg)
{
    transport_slot_t *slot = arg;
    (void)limit;
    (void)m;
    slot->plain_dst = dst;
    enum bufferevent_filter_result r = feed(slot, src, true);
    slot->plain_dst = NULL;
    return r;
}

static enum bufferevent_filter_result out_filter(struct evbuffer *src, struct evbuffer *dst,
                                                 ev_ssize_t limit, enum bufferevent_flush_mode m,
                                                 void *arg)
{
    transport_slot_t *slot = arg;
    (void)limit;
    (void)m;
    slot->wire_dst = dst;
    enum bufferevent_filter_result r = feed(slot, src, false);
    slot->wire_dst = NULL;
    return r;
}

struct bufferevent *transport_wrap(transport_slot_t *slot, struct bufferevent *raw)
{
    slot->raw = raw;
    /* The filter bufferevent owns |raw| (BEV_OPT_CLOSE_ON_FREE); the
     * transport context is freed by transport_close, not by libevent.
     * Deferred callbacks: a write into the filter layer runs the output
     * filter at once, and its write callback must not re-enter the codec
     * in the middle of moving a body. */
    slot->top = bufferevent_filter_new(raw, in_filter, out_filter,
                                       BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS, NULL, slot);
    return slot->top;
}

slc_status_t transport_emit(transport_slot_t *slot, slc_emit_t dir, const uint8_t *p, size_t n)
{
    if (!slot || !slot->t)
        return SLC_ESTATE;
    if (dir == SLC_EMIT_PLAIN) {
        /* Plaintext only appears while recv runs (the codec reads it next). */
        if (!slot->plain_dst)
            return SLC_ESTATE;
        return evbuffer_add(slot->plain_dst, p, n) == 0 ? SLC_OK : SLC_ENOMEM;
    }
    if (slot->wire_dst)
        return evbuffer_add(slot->wire_dst, p, n) == 0 ? SLC_OK : SLC_ENOMEM;
    /* Handshake records during recv, alerts at shutdown: straight to the
     * socket. */
    if (!slot->raw)
        return SLC_ESTATE;
    return bufferevent_write(slot->raw, p, n) == 0 ? SLC_OK : SLC_ENOMEM;
}

void transport_close(transport_slot_t *slot)
{
    if (!slot->t)
        return;
    if (slot->t->shutdown && slot->raw)
        slot->t->shutdown(slot->ctx, slot->conn);
    if (slot->t->free)
        slot->t->free(slot->ctx);
    slot->t = NULL;
    slot->ctx = NULL;
}
