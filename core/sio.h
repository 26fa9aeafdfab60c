/* sio: a non-blocking stream socket on raw libevent events — the core's
 * replacement for bufferevents on the request path.
 *
 * Why not bufferevents: they size every read with ioctl(FIONREAD) and arm
 * EPOLLOUT for every write, waiting a loop iteration to send; that is four to
 * six extra syscalls per proxied request. sio reads straight into reserved
 * evbuffer space, and writes are attempted at the end of the current loop
 * iteration (all sockets dirtied by one callback flush together, so a
 * response head and its body leave in one writev). EPOLLOUT is armed only
 * when the kernel refuses bytes.
 *
 * A transport (TLS in a filter) sits between the socket and the buffers:
 * wire bytes are read into |wire_in| and handed to t->recv, which emits
 * plaintext into |in|; plaintext in |out| goes through t->send into
 * |wire_out| before it is written.
 *
 * OWNERSHIP: the owner embeds an sio_t and calls sio_close exactly once; it
 * frees the buffers, events and the fd. Callbacks may close the sio (and free
 * its owner): after calling one, sio code touches nothing.
 * THREADS: one worker's loop only.
 */
#ifndef SLUICE_SIO_H
#define SLUICE_SIO_H

#define SLC_NO_WRAPPERS
#include <sluice/filter.h>
#include <sluice/host.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

/* Events. SIO_EOF only ends the read side: the owner may keep writing
 * (an HTTP client that half-closes after its request still gets the
 * response). SIO_ERROR ends the socket. */
enum {
    SIO_EOF = 1,
    SIO_ERROR = 2,
    SIO_TIMEOUT = 4,
    SIO_CONNECTED = 8,
};

typedef struct sio sio_t;
typedef void (*sio_cb)(sio_t *s, void *arg);
typedef void (*sio_event_cb)(sio_t *s, int what, void *arg);

/* sio_loop: per-worker state shared by its sockets (the dirty list). */
typedef struct sio_loop {
    struct event_base *base;
    struct event flush_ev;
    sio_t *dirty;
    bool flush_pending;
    /* The first read of every wakeup lands here and is copied into the
     * socket's buffer (sio.c on_readable). Owned by the loop: allocated in
     * sio_loop_init, freed in sio_loop_cleanup. */
    char *scratch;
} sio_loop_t;

struct sio {
    int fd;
    sio_loop_t *loop;
    struct event rev, wev, tev;
    struct evbuffer *in, *out;
    size_t read_high; /* stop reading when |in| holds this much */
    size_t write_low; /* call on_write when |out| drains below this */
    sio_cb on_read, on_write;
    sio_event_cb on_event;
    void *arg;
    bool reading;   /* the owner wants input */
    bool throttled; /* reading paused because |in| is full */
    bool connecting;
    bool wev_armed;
    bool dirty;
    bool dead; /* error seen: no more I/O */
    bool eof;  /* the peer closed its sending side; we may still write */
    bool ready_for_write_cb;
    uint64_t sent; /* bytes handed to the kernel (wire bytes) */
    sio_t *next_dirty;
    void *guard_top; /* innermost callback guard (sio.c) */
    /* transport: |t| is NULL or points at |tview|, the core's copy of the
     * members the filter's table has below its struct_size (later members
     * NULL), so no call site needs to check struct_size again. */
    const slc_transport_t *t;
    slc_transport_t tview;
    void *tctx;
    slc_conn_t *conn;
    bool t_ready, t_failed;
    struct evbuffer *plain_dst; /* set while t->recv runs */
    struct evbuffer *wire_in, *wire_out;
};

void sio_loop_init(sio_loop_t *l, struct event_base *base);
void sio_loop_cleanup(sio_loop_t *l);

/* sio_init takes |fd| (connected or listening-accepted, non-blocking). */
void sio_init(sio_t *s, sio_loop_t *l, int fd, sio_cb on_read, sio_cb on_write,
              sio_event_cb on_event, void *arg);
/* sio_connect creates a socket and starts a non-blocking connect; on_event
 * gets SIO_CONNECTED, or SIO_ERROR / SIO_TIMEOUT. Returns 0, or -1 if it
 * failed at once (errno set; the sio is still initialised and must be
 * closed). */
int sio_connect(sio_t *s, sio_loop_t *l, const struct sockaddr *sa, int salen, uint64_t timeout_ms,
                sio_cb on_read, sio_cb on_write, sio_event_cb on_event, void *arg);
void sio_setcb(sio_t *s, sio_cb on_read, sio_cb on_write, sio_event_cb on_event, void *arg);
void sio_close(sio_t *s);

/* sio_read_enable starts or stops delivering input. */
void sio_read_enable(sio_t *s, bool on);
/* sio_unthrottle resumes reading after the owner drained |in|. Cheap;
 * call it after every drain. */
void sio_unthrottle(sio_t *s);
/* sio_mark schedules a flush of |out| at the end of this loop iteration. */
void sio_mark(sio_t *s);
/* sio_write appends to |out| and marks the sio. */
void sio_write(sio_t *s, const void *data, size_t len);
/* sio_pending: bytes not yet handed to the kernel (plain + wire). */
size_t sio_pending(const sio_t *s);
/* sio_timer arms (ms > 0) or cancels (0) the one timer: on_event(SIO_TIMEOUT). */
void sio_timer(sio_t *s, uint64_t ms);

/* sio_set_transport installs |t|; from now on bytes go through it. Only the
 * members below t->struct_size are used (0 = the 1.0 layout). SLC_EINVAL,
 * and nothing installed, without recv and send. */
slc_status_t sio_set_transport(sio_t *s, const slc_transport_t *t, void *ctx, slc_conn_t *conn);
/* sio_is_secure: a transport protects the bytes (hostapi.c). */
bool sio_is_secure(const sio_t *s);
/* sio_emit is slc_host_t.conn_emit for the transport of |s|. */
slc_status_t sio_emit(sio_t *s, slc_emit_t dir, const uint8_t *p, size_t n);

#endif
