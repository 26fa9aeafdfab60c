#include "sio.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SIO_READ_CHUNK       16384
#define SIO_READS_PER_WAKEUP 4

/* A callback may close the sio. Each site that calls back keeps a flag on
 * its stack that sio_close clears, and touches nothing once it is clear. */
typedef struct guard {
    bool alive;
    struct guard *prev;
} guard_t;

/* The guard chain lives in a side table keyed by the sio pointer would cost
 * a lookup; instead the innermost guard hangs off the sio itself. */
#define GUARD_PUSH(s, g)                                                                           \
    guard_t g = {true, (guard_t *)(s)->guard_top};                                                 \
    (s)->guard_top = &g
#define GUARD_POP(s, g)                                                                            \
    do {                                                                                           \
        if (g.alive)                                                                               \
            (s)->guard_top = g.prev;                                                               \
    } while (0)

static void flush_now(sio_t *s);

/* ---- dirty list -------------------------------------------------------- */

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    sio_loop_t *l = arg;
    (void)fd;
    (void)what;
    l->flush_pending = false;
    while (l->dirty) {
        sio_t *s = l->dirty;
        l->dirty = s->next_dirty;
        s->next_dirty = NULL;
        s->dirty = false;
        flush_now(s);
    }
}

void sio_loop_init(sio_loop_t *l, struct event_base *base)
{
    memset(l, 0, sizeof(*l));
    l->base = base;
    l->scratch = malloc(SIO_READ_CHUNK);
    if (!l->scratch)
        abort();
    event_assign(&l->flush_ev, base, -1, 0, on_flush, l);
}

void sio_loop_cleanup(sio_loop_t *l)
{
    event_del(&l->flush_ev);
    l->dirty = NULL;
    free(l->scratch);
    l->scratch = NULL;
}

void sio_mark(sio_t *s)
{
    /* Parked: the kernel refused bytes and EPOLLOUT is armed. Flushing again
     * before the socket is writable would only meet EAGAIN, and a caller that
     * refills and marks on every write callback would spin without ever
     * returning to epoll (a slow reader froze its worker that way). */
    if (s->dirty || s->fd < 0 || s->wev_armed)
        return;
    s->dirty = true;
    s->next_dirty = s->loop->dirty;
    s->loop->dirty = s;
    if (!s->loop->flush_pending) {
        s->loop->flush_pending = true;
        event_active(&s->loop->flush_ev, EV_WRITE, 0);
    }
}

static void unmark(sio_t *s)
{
    if (!s->dirty)
        return;
    for (sio_t **pp = &s->loop->dirty; *pp; pp = &(*pp)->next_dirty) {
        if (*pp == s) {
            *pp = s->next_dirty;
            break;
        }
    }
    s->dirty = false;
    s->next_dirty = NULL;
}

/* ---- events ----------------------------------------------------------- */

static void fail(sio_t *s, int what)
{
    s->dead = true;
    event_del(&s->rev);
    event_del(&s->wev);
    s->wev_armed = false;
    s->on_event(s, what, s->arg);
}

/* feed_recv hands |wire_in| to the transport; plaintext lands in |in|. */
static int feed_recv(sio_t *s)
{
    while (evbuffer_get_length(s->wire_in)) {
        struct evbuffer_iovec v[8];
        int k = evbuffer_peek(s->wire_in, -1, NULL, v, 8);
        size_t used = 0;
        s->plain_dst = s->in;
        for (int i = 0; i < k && i < 8; i++) {
            slc_status_t st = s->t->recv(s->tctx, s->conn, v[i].iov_base, v[i].iov_len);
            if (st != SLC_OK && st != SLC_EAGAIN) {
                s->plain_dst = NULL;
                s->t_failed = true;
                return -1;
            }
            used += v[i].iov_len;
        }
        s->plain_dst = NULL;
        evbuffer_drain(s->wire_in, used);
    }
    return 0;
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    sio_t *s = arg;
    (void)what;
    struct evbuffer *target = s->t ? s->wire_in : s->in;
    size_t before = evbuffer_get_length(s->in);
    int eof = 0;
    bool filled = false; /* the previous read filled SIO_READ_CHUNK */
    for (int i = 0; i < SIO_READS_PER_WAKEUP; i++) {
        ssize_t n;
        if (!filled) {
            /* A read that does not follow a full one goes through the loop's scratch
             * buffer and only what arrived is copied into |target|: a
             * reserved chain is 32 KiB of heap (libevent rounds 16 KiB plus
             * its header up to a power of two) for what is usually a
             * 100-byte head, and a burst of clients left those gaps all
             * over the heap (docs/performance.md, memory after a burst). */
            n = recv(fd, s->loop->scratch, SIO_READ_CHUNK, 0);
            /* As everywhere in the core, memory that cannot be had aborts:
             * dropping bytes already taken from the socket would corrupt
             * the stream silently. */
            if (n > 0 && evbuffer_add(target, s->loop->scratch, (size_t)n) != 0) {
                fputs("sluice: out of memory\n", stderr);
                abort();
            }
        } else {
            /* The previous read filled the chunk: a bulk transfer, and
             * |target| holds its bytes, so reading in place costs no copy
             * and a chain left empty by EAGAIN is freed when those bytes
             * are drained. */
            struct evbuffer_iovec v;
            if (evbuffer_reserve_space(target, SIO_READ_CHUNK, &v, 1) < 1)
                break;
            n = recv(fd, v.iov_base, v.iov_len, 0);
            int err = errno; /* commit may clobber it */
            v.iov_len = n > 0 ? (size_t)n : 0;
            evbuffer_commit_space(target, &v, n > 0 ? 1 : 0);
            errno = err;
        }
        if (n > 0) {
            if ((size_t)n < SIO_READ_CHUNK || evbuffer_get_length(s->in) >= s->read_high)
                break;
            filled = true;
            continue;
        }
        filled = false;
        if (n == 0) {
            eof = SIO_EOF;
        } else if (errno == EINTR) {
            continue;
        } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
            eof = SIO_ERROR;
        }
        break;
    }
    if (s->t && evbuffer_get_length(s->wire_in) && feed_recv(s) != 0) {
        /* Best effort, one write: the transport's last words (a TLS alert)
         * tell the peer why, instead of a bare close. */
        if (evbuffer_get_length(s->wire_out))
            evbuffer_write(s->wire_out, fd);
        fail(s, SIO_ERROR);
        return;
    }
    if (s->t && evbuffer_get_length(s->wire_out))
        sio_mark(s); /* handshake records to send */
    if (evbuffer_get_length(s->in) >= s->read_high && !eof) {
        event_del(&s->rev);
        s->throttled = true;
    }
    if (evbuffer_get_length(s->in) > before || (s->t && evbuffer_get_length(s->in))) {
        GUARD_PUSH(s, g);
        s->on_read(s, s->arg);
        if (!g.alive)
            return;
        GUARD_POP(s, g);
    }
    if (eof == SIO_EOF && !s->dead) {
        s->eof = true;
        event_del(&s->rev);
        s->on_event(s, SIO_EOF, s->arg);
    } else if (eof && !s->dead) {
        fail(s, eof);
    }
}

static void on_writable(evutil_socket_t fd, short what, void *arg)
{
    sio_t *s = arg;
    (void)what;
    if (s->connecting) {
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        event_del(&s->wev);
        s->wev_armed = false;
        event_del(&s->tev);
        s->connecting = false;
        if (err) {
            errno = err;
            fail(s, SIO_ERROR);
            return;
        }
        if (s->reading && !s->throttled)
            event_add(&s->rev, NULL);
        GUARD_PUSH(s, g);
        s->on_event(s, SIO_CONNECTED, s->arg);
        if (!g.alive)
            return;
        GUARD_POP(s, g);
        if (sio_pending(s))
            sio_mark(s);
        return;
    }
    flush_now(s);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    sio_t *s = arg;
    (void)fd;
    (void)what;
    s->on_event(s, SIO_TIMEOUT, s->arg);
}

/* ---- set-up and tear-down ------------------------------------------------ */

static void init_common(sio_t *s, sio_loop_t *l, int fd, sio_cb on_read, sio_cb on_write,
                        sio_event_cb on_event, void *arg)
{
    memset(s, 0, sizeof(*s));
    s->fd = fd;
    s->loop = l;
    s->in = evbuffer_new();
    s->out = evbuffer_new();
    if (!s->in || !s->out)
        abort();
    s->read_high = 256 * 1024;
    s->on_read = on_read;
    s->on_write = on_write;
    s->on_event = on_event;
    s->arg = arg;
    event_assign(&s->rev, l->base, fd, EV_READ | EV_PERSIST, on_readable, s);
    event_assign(&s->wev, l->base, fd, EV_WRITE | EV_PERSIST, on_writable, s);
    evtimer_assign(&s->tev, l->base, on_timer, s);
}

void sio_init(sio_t *s, sio_loop_t *l, int fd, sio_cb on_read, sio_cb on_write,
              sio_event_cb on_event, void *arg)
{
    init_common(s, l, fd, on_read, on_write, on_event, arg);
}

int sio_connect(sio_t *s, sio_loop_t *l, const struct sockaddr *sa, int salen, uint64_t timeout_ms,
                sio_cb on_read, sio_cb on_write, sio_event_cb on_event, void *arg)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    init_common(s, l, fd, on_read, on_write, on_event, arg);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, sa, (socklen_t)salen) != 0 && errno != EINPROGRESS)
        return -1;
    /* Even an immediate success is reported from the loop, never from here:
     * callers never see a callback inside sio_connect. */
    s->connecting = true;
    event_add(&s->wev, NULL);
    s->wev_armed = true;
    sio_timer(s, timeout_ms);
    return 0;
}

void sio_setcb(sio_t *s, sio_cb on_read, sio_cb on_write, sio_event_cb on_event, void *arg)
{
    s->on_read = on_read;
    s->on_write = on_write;
    s->on_event = on_event;
    s->arg = arg;
}

void sio_close(sio_t *s)
{
    for (guard_t *g = s->guard_top; g; g = g->prev)
        g->alive = false;
    s->guard_top = NULL;
    if (s->fd >= 0) {
        event_del(&s->rev);
        event_del(&s->wev);
    }
    event_del(&s->tev);
    if (s->t) {
        /* Best effort: a close_notify (or equivalent) if the socket takes it. */
        if (s->t->shutdown && !s->dead && s->fd >= 0) {
            s->t->shutdown(s->tctx, s->conn);
            evbuffer_write(s->wire_out, s->fd);
        }
        if (s->t->free)
            s->t->free(s->tctx);
        s->t = NULL;
        evbuffer_free(s->wire_in);
        evbuffer_free(s->wire_out);
        s->wire_in = s->wire_out = NULL;
    }
    /* After the transport's last words: its shutdown emits a close_notify,
     * which marks the socket dirty again. */
    unmark(s);
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
    evbuffer_free(s->in);
    evbuffer_free(s->out);
    s->in = s->out = NULL;
}

/* ---- reading ----------------------------------------------------------- */

void sio_read_enable(sio_t *s, bool on)
{
    s->reading = on;
    if (s->fd < 0 || s->dead || s->eof || s->connecting)
        return;
    if (on && !s->throttled)
        event_add(&s->rev, NULL);
    else
        event_del(&s->rev);
}

void sio_unthrottle(sio_t *s)
{
    if (!s->throttled || evbuffer_get_length(s->in) >= s->read_high)
        return;
    s->throttled = false;
    if (s->reading && !s->dead && !s->eof && !s->connecting)
        event_add(&s->rev, NULL);
}

/* ---- writing ----------------------------------------------------------- */

void sio_write(sio_t *s, const void *data, size_t len)
{
    evbuffer_add(s->out, data, len);
    sio_mark(s);
}

size_t sio_pending(const sio_t *s)
{
    return evbuffer_get_length(s->out) + (s->wire_out ? evbuffer_get_length(s->wire_out) : 0);
}

/* SIO_RECORD: the most plaintext handed to a transport in one call, one
 * TLS record's worth. */
#define SIO_RECORD 16384

static int feed_send(sio_t *s)
{
    while (evbuffer_get_length(s->out)) {
        /* Small pieces (a head, a chunk header, a short body) are made
         * contiguous first, so that together they become one TLS record and
         * not one each: pullup copies only when the first chain is shorter,
         * which a bulk body's chains seldom are. */
        size_t n = evbuffer_get_length(s->out);
        if (n > SIO_RECORD)
            n = SIO_RECORD;
        const uint8_t *p = evbuffer_pullup(s->out, (ev_ssize_t)n);
        if (!p)
            abort(); /* out of memory: as everywhere in the core */
        slc_status_t st = s->t->send(s->tctx, s->conn, p, n);
        if (st != SLC_OK && st != SLC_EAGAIN) {
            s->t_failed = true;
            return -1;
        }
        evbuffer_drain(s->out, n);
    }
    return 0;
}

static void flush_now(sio_t *s)
{
    if (s->fd < 0 || s->dead || s->connecting)
        return;
    if (s->t && evbuffer_get_length(s->out) && feed_send(s) != 0) {
        fail(s, SIO_ERROR);
        return;
    }
    struct evbuffer *buf = s->t ? s->wire_out : s->out;
    bool had = evbuffer_get_length(buf) > 0;
    while (evbuffer_get_length(buf)) {
        int n = evbuffer_write(buf, s->fd);
        if (n > 0) {
            s->sent += (uint64_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        fail(s, SIO_ERROR);
        return;
    }
    if (evbuffer_get_length(buf)) {
        if (!s->wev_armed) {
            event_add(&s->wev, NULL);
            s->wev_armed = true;
        }
    } else if (s->wev_armed) {
        event_del(&s->wev);
        s->wev_armed = false;
    }
    if (had && s->on_write && sio_pending(s) <= s->write_low)
        s->on_write(s, s->arg);
}

/* ---- timers and transports ---------------------------------------------- */

void sio_timer(sio_t *s, uint64_t ms)
{
    if (!ms) {
        event_del(&s->tev);
        return;
    }
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    evtimer_add(&s->tev, &tv);
}

slc_status_t sio_set_transport(sio_t *s, const slc_transport_t *t, void *ctx, slc_conn_t *conn)
{
    if (!t || !slc_transport_has(t, recv) || !slc_transport_has(t, send))
        return SLC_EINVAL;
    size_t size = t->struct_size ? t->struct_size : SLC_TRANSPORT_SIZE_1_0;
    memset(&s->tview, 0, sizeof(s->tview));
    memcpy(&s->tview, t, size < sizeof(s->tview) ? size : sizeof(s->tview));
    s->tview.struct_size = sizeof(s->tview);
    s->t = &s->tview;
    s->tctx = ctx;
    s->conn = conn;
    s->wire_in = evbuffer_new();
    s->wire_out = evbuffer_new();
    if (!s->wire_in || !s->wire_out)
        abort();
    /* Bytes already read before the transport existed are wire bytes. */
    evbuffer_add_buffer(s->wire_in, s->in);
    return SLC_OK;
}

slc_status_t sio_emit(sio_t *s, slc_emit_t dir, const uint8_t *p, size_t n)
{
    if (!s->t)
        return SLC_ESTATE;
    if (dir == SLC_EMIT_PLAIN) {
        /* Plaintext only appears while recv runs (the codec reads it next). */
        if (!s->plain_dst)
            return SLC_ESTATE;
        return evbuffer_add(s->plain_dst, p, n) == 0 ? SLC_OK : SLC_ENOMEM;
    }
    if (evbuffer_add(s->wire_out, p, n) != 0)
        return SLC_ENOMEM;
    sio_mark(s);
    return SLC_OK;
}
