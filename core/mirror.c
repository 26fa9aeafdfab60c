/* mirror: fire-and-forget copies of requests to a second cluster
 * (VirtualService `mirror`).
 *
 * A shadow is built from the stream when its request is complete (head and
 * the replay copy of the body), then lives on its own: the stream may end
 * first. Its response is read and discarded; nothing about it reaches the
 * client or the stream. A body too large for the replay buffer is not
 * mirrored (counted). Like Envoy, the shadow's Host gets a "-shadow" suffix
 * so the mirror target can tell copies from real traffic.
 *
 * OWNERSHIP: shadows belong to their worker (w->shadows) and free
 * themselves on completion, error or timeout; worker shutdown frees the rest.
 */
#include "mirror.h"
#include "log.h"
#include "server.h"
#include "stream.h"

#include <stdlib.h>
#include <string.h>

#define SHADOW_TIMEOUT_MS 10000

struct shadow {
    struct shadow *prev, *next;
    worker_t *w;
    sio_t io;
    struct evbuffer *pending; /* head + body, sent once connected */
};

static void shadow_free(shadow_t *sh)
{
    worker_t *w = sh->w;
    if (sh->prev)
        sh->prev->next = sh->next;
    else
        w->shadows = sh->next;
    if (sh->next)
        sh->next->prev = sh->prev;
    sio_close(&sh->io);
    if (sh->pending)
        evbuffer_free(sh->pending);
    free(sh);
}

static void on_shadow_read(sio_t *io, void *arg)
{
    (void)arg;
    /* The mirror's answer is nobody's business: drop it as it comes. */
    evbuffer_drain(io->in, evbuffer_get_length(io->in));
    sio_unthrottle(io);
}

static void on_shadow_event(sio_t *io, int what, void *arg)
{
    shadow_t *sh = arg;
    if (what & SIO_CONNECTED) {
        evbuffer_add_buffer(io->out, sh->pending);
        sio_mark(io);
        sio_read_enable(io, true);
        return;
    }
    /* EOF (we asked for connection: close), error or timeout: done. */
    shadow_free(sh);
}

void mirror_free_all(worker_t *w)
{
    while (w->shadows)
        shadow_free(w->shadows);
}

static const slc_endpoint_t *pick(stream_t *s, const slc_cluster_t *c)
{
    uint64_t now = gen_now_ms();
    for (size_t k = 0; k < c->neps; k++) {
        const slc_endpoint_t *e = &c->eps[(s->w->rr++) % c->neps];
        if (endpoint_usable(e, now))
            return e;
    }
    return NULL;
}

void mirror_start(stream_t *s)
{
    const slc_cluster_t *c = s->mirror;
    s->mirror = NULL; /* once per stream */
    worker_t *w = s->w;
    const char *skip = NULL;
    if (s->replay_broken || (s->req_bytes && !s->replay.on))
        skip = "body_too_large";
    const slc_endpoint_t *e = skip ? NULL : pick(s, c);
    if (!skip && !e)
        skip = "no_healthy_upstream";
    stat_inc(stats_getf(w->stats, "sluice_mirror_requests_total{cluster=\"%s\",result=\"%s\"}",
                        c->name, skip ? skip : "sent"));
    if (skip)
        return;

    shadow_t *sh = calloc(1, sizeof(*sh));
    if (!sh)
        abort();
    sh->w = w;
    sh->pending = evbuffer_new();
    if (!sh->pending)
        abort();
    struct evbuffer *b = sh->pending;
    evbuffer_add(b, s->method.ptr, s->method.len);
    evbuffer_add(b, " ", 1);
    evbuffer_add(b, s->path.ptr, s->path.len);
    evbuffer_add(b, " HTTP/1.1\r\n", 11);
    for (size_t i = 0; i < s->req_hdrs.n; i++) {
        hdr_t *h = &s->req_hdrs.v[i];
        if (is_framing_field(h->name) || h1_token_eq(h->name.ptr, h->name.len, "host"))
            continue;
        evbuffer_add(b, h->name.ptr, h->name.len);
        evbuffer_add(b, ": ", 2);
        evbuffer_add(b, h->value.ptr, h->value.len);
        evbuffer_add(b, "\r\n", 2);
    }
    slc_str_t a = s->authority.len ? s->authority : (slc_str_t){e->addr, strlen(e->addr)};
    evbuffer_add(b, "host: ", 6);
    evbuffer_add(b, a.ptr, a.len);
    evbuffer_add(b, "-shadow\r\n", 9);
    /* The whole body is known by now (the replay copy is data, unframed):
     * the shadow always goes with its length. */
    size_t body = s->replay.len;
    if (body || s->req_body != UB_NONE)
        evbuffer_add_printf(b, "content-length: %zu\r\n", body);
    evbuffer_add(b, "connection: close\r\n\r\n", 21);
    replay_copy_to(&s->replay, b);

    sh->next = w->shadows;
    if (w->shadows)
        w->shadows->prev = sh;
    w->shadows = sh;
    if (sio_connect(&sh->io, &w->sioloop, (const struct sockaddr *)&e->sa, e->salen,
                    c->pool.connect_timeout_ms, on_shadow_read, NULL, on_shadow_event, sh) != 0) {
        shadow_free(sh);
        return;
    }
    /* One bound for the shadow's whole life, connect included (an sio has
     * one timer): the shorter of the connect timeout and SHADOW_TIMEOUT_MS
     * would cut slow mirrors; the longer keeps a dead one 10 s at most. */
    sio_timer(&sh->io, SHADOW_TIMEOUT_MS);
}
