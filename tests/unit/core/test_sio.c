/* Unit tests for core/sio.c: write backpressure, the byte count the
 * upstream side uses to tell a stray response from an answer, and which
 * members of a filter's slc_transport_t the core uses (its struct_size).
 *
 * The peer is the other end of a socketpair that the test reads only when
 * it says so, so "the kernel refuses bytes" is real, not simulated. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sio.h"

#define REFILL (64 * 1024)

typedef struct fixture {
    struct event_base *base;
    sio_loop_t loop;
    sio_t io;
    int peer;
    size_t writes; /* on_write calls */
    size_t limit;  /* stop refilling after this many calls (bounds a spin) */
    size_t source; /* bytes the writer still has to give */
} fixture_t;

/* on_write plays the response pump: it moves what its source holds (the
 * upstream's input, here |source| bytes) and marks the socket for a flush,
 * moved or not, as stream_pump_response does. */
static void on_write(sio_t *io, void *arg)
{
    fixture_t *f = arg;
    if (++f->writes >= f->limit)
        return;
    static char chunk[REFILL];
    size_t n = f->source < sizeof(chunk) ? f->source : sizeof(chunk);
    f->source -= n;
    evbuffer_add(io->out, chunk, n);
    sio_mark(io);
}

static void on_read(sio_t *io, void *arg)
{
    (void)io;
    (void)arg;
}

static void on_event(sio_t *io, int what, void *arg)
{
    (void)io;
    (void)what;
    (void)arg;
}

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    int sv[2];
    if (!f || socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0)
        return -1;
    int small = 16 * 1024;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    f->base = event_base_new();
    sio_loop_init(&f->loop, f->base);
    sio_init(&f->io, &f->loop, sv[0], on_read, on_write, on_event, f);
    f->io.write_low = 64 * 1024;
    f->peer = sv[1];
    f->limit = 100000;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    if (f->io.in) /* a test may have closed it already */
        sio_close(&f->io);
    sio_loop_cleanup(&f->loop);
    close(f->peer);
    event_base_free(f->base);
    free(f);
    return 0;
}

static void run_for_ms(fixture_t *f, long ms)
{
    struct timeval tv = {0, ms * 1000};
    event_base_loopexit(f->base, &tv);
    event_base_dispatch(f->base);
}

static size_t drain_peer(fixture_t *f)
{
    char buf[65536];
    size_t total = 0;
    ssize_t n;
    while ((n = read(f->peer, buf, sizeof(buf))) > 0)
        total += (size_t)n;
    return total;
}

/* A peer that reads nothing: once the kernel refuses bytes the socket is
 * parked until it is writable, and the writer is not called back in a loop
 * (this spun a worker at 100% CPU behind one slow reader). */
static void test_refused_write_parks(void **state)
{
    fixture_t *f = *state;
    f->limit = 1000;               /* the old code reached it inside one flush */
    static char first[REFILL / 2]; /* under write_low even when refused */
    sio_write(&f->io, first, sizeof(first));
    run_for_ms(f, 200);
    assert_true(f->io.wev_armed);
    assert_true(sio_pending(&f->io) > 0);
    assert_in_range(f->writes, 0, 4);
}

/* Parked is not stuck: as the peer reads, writes resume and the writer is
 * asked for more. */
static void test_parked_socket_resumes_when_writable(void **state)
{
    fixture_t *f = *state;
    f->limit = 8;
    f->source = 16 * REFILL;
    static char first[REFILL];
    sio_write(&f->io, first, sizeof(first));
    size_t got = 0;
    for (int i = 0; i < 200 && f->writes < f->limit; i++) {
        run_for_ms(f, 5);
        got += drain_peer(f);
    }
    assert_int_equal(f->writes, f->limit);
    run_for_ms(f, 20);
    got += drain_peer(f);
    assert_true(got >= REFILL);
    assert_true(got <= f->io.sent);
}

/* |sent| counts bytes the kernel took, which is what "was the request head
 * on the wire" is measured against. */
static void test_sent_counts_kernel_bytes(void **state)
{
    fixture_t *f = *state;
    f->limit = 0;
    sio_write(&f->io, "hello", 5);
    assert_int_equal(f->io.sent, 0); /* nothing leaves before the loop flushes */
    run_for_ms(f, 10);
    assert_int_equal(f->io.sent, 5);
    char buf[8];
    assert_int_equal(read(f->peer, buf, sizeof(buf)), 5);
}

/* ---- transports: struct_size ------------------------------------------- */

static int t_shutdowns, t_frees;

static slc_status_t t_recv(void *ctx, slc_conn_t *c, const uint8_t *wire, size_t len)
{
    (void)ctx;
    (void)c;
    (void)wire;
    (void)len;
    return SLC_OK;
}

static slc_status_t t_send(void *ctx, slc_conn_t *c, const uint8_t *plain, size_t len)
{
    (void)ctx;
    (void)c;
    (void)plain;
    (void)len;
    return SLC_OK;
}

static void t_shutdown(void *ctx, slc_conn_t *c)
{
    (void)ctx;
    (void)c;
    t_shutdowns++;
}

static void t_free(void *ctx)
{
    (void)ctx;
    t_frees++;
}

static slc_str_t t_sni(void *ctx)
{
    (void)ctx;
    return SLC_STR("sni.example");
}

/* Beyond struct_size: calling it is the bug under test. */
static slc_str_t t_beyond(void *ctx)
{
    (void)ctx;
    fail_msg("the core called a transport member beyond struct_size");
    return SLC_STR_NULL;
}

/* A transport whose struct_size stops before |alpn| (as one built for a
 * minor without it would): the core reads the members below, treats alpn
 * as absent, and never calls the pointer that happens to follow. */
static void test_transport_struct_size_stops_before_alpn(void **state)
{
    fixture_t *f = *state;
    static const slc_transport_t t = {
        .struct_size = offsetof(slc_transport_t, alpn),
        .recv = t_recv,
        .send = t_send,
        .shutdown = t_shutdown,
        .free = t_free,
        .sni = t_sni,
        .alpn = t_beyond,
    };
    assert_int_equal(sio_set_transport(&f->io, &t, NULL, NULL), SLC_OK);
    assert_non_null(f->io.t);
    assert_true(slc_transport_has(f->io.t, sni));
    assert_string_equal(f->io.t->sni(NULL).ptr, "sni.example");
    assert_false(slc_transport_has(f->io.t, peer_identity));
    assert_null(f->io.t->alpn);
    assert_false(slc_transport_has(&t, alpn));
    t_shutdowns = t_frees = 0;
    sio_close(&f->io);
    assert_int_equal(t_shutdowns, 1);
    assert_int_equal(t_frees, 1);
}

/* Stopping before |free|: the core has no free to call, so it calls none
 * (the transport keeps ownership of ctx), and no shutdown either. */
static void test_transport_struct_size_stops_before_shutdown(void **state)
{
    fixture_t *f = *state;
    static const slc_transport_t t = {
        .struct_size = offsetof(slc_transport_t, shutdown),
        .recv = t_recv,
        .send = t_send,
        .shutdown = t_shutdown,
        .free = t_free,
    };
    assert_int_equal(sio_set_transport(&f->io, &t, NULL, NULL), SLC_OK);
    assert_null(f->io.t->shutdown);
    assert_null(f->io.t->free);
    t_shutdowns = t_frees = 0;
    sio_close(&f->io);
    assert_int_equal(t_shutdowns, 0);
    assert_int_equal(t_frees, 0);
}

/* A transport whose ctx is its sio, so its members can emit (the host's
 * conn_emit does the same through the connection). */
static void t_shutdown_emits(void *ctx, slc_conn_t *c)
{
    (void)c;
    t_shutdowns++;
    sio_emit(ctx, SLC_EMIT_WIRE, (const uint8_t *)"BYE", 3);
}

static slc_status_t t_recv_fails_with_alert(void *ctx, slc_conn_t *c, const uint8_t *w, size_t n)
{
    (void)c;
    (void)w;
    (void)n;
    sio_emit(ctx, SLC_EMIT_WIRE, (const uint8_t *)"ALERT", 5);
    return SLC_EIO;
}

static int closes;
static void on_event_close(sio_t *io, int what, void *arg)
{
    (void)what;
    (void)arg;
    closes++;
    sio_close(io);
}

/* The close_notify a transport's shutdown emits marks the socket dirty; a
 * closed sio must not stay on the loop's dirty list (it did, and the next
 * flush read freed memory). The bytes still go out, best effort. */
static void test_transport_shutdown_leaves_nothing_dirty(void **state)
{
    fixture_t *f = *state;
    static const slc_transport_t t = {
        .struct_size = sizeof(slc_transport_t),
        .recv = t_recv,
        .send = t_send,
        .shutdown = t_shutdown_emits,
    };
    assert_int_equal(sio_set_transport(&f->io, &t, &f->io, NULL), SLC_OK);
    t_shutdowns = 0;
    sio_close(&f->io);
    assert_int_equal(t_shutdowns, 1);
    assert_null(f->loop.dirty);
    assert_int_equal(drain_peer(f), 3);
    run_for_ms(f, 10); /* a flush now must find nothing */
}

/* A transport that fails while reading gets its last words (an alert)
 * written before the socket is failed and closed. */
static void test_transport_failure_sends_its_alert(void **state)
{
    fixture_t *f = *state;
    static const slc_transport_t t = {
        .struct_size = sizeof(slc_transport_t),
        .recv = t_recv_fails_with_alert,
        .send = t_send,
    };
    sio_setcb(&f->io, on_read, NULL, on_event_close, f);
    assert_int_equal(sio_set_transport(&f->io, &t, &f->io, NULL), SLC_OK);
    sio_read_enable(&f->io, true);
    closes = 0;
    assert_int_equal(write(f->peer, "hello", 5), 5);
    for (int i = 0; i < 50 && !closes; i++)
        run_for_ms(f, 10);
    assert_int_equal(closes, 1);
    char buf[16];
    assert_int_equal(read(f->peer, buf, sizeof(buf)), 5);
    assert_memory_equal(buf, "ALERT", 5);
    assert_null(f->loop.dirty);
}

/* struct_size 0 is the 1.0 layout (transports built before 1.3 left it
 * unset); too small for recv and send is refused and nothing installed. */
static void test_transport_struct_size_zero_and_too_small(void **state)
{
    fixture_t *f = *state;
    slc_transport_t t = {
        .struct_size = offsetof(slc_transport_t, send),
        .recv = t_recv,
        .send = t_send,
        .sni = t_sni,
    };
    assert_int_equal(sio_set_transport(&f->io, &t, NULL, NULL), SLC_EINVAL);
    assert_null(f->io.t);
    t.struct_size = 0;
    assert_int_equal(sio_set_transport(&f->io, &t, NULL, NULL), SLC_OK);
    assert_true(slc_transport_has(f->io.t, sni));
    assert_int_equal(f->io.t->struct_size, sizeof(slc_transport_t));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_refused_write_parks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parked_socket_resumes_when_writable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sent_counts_kernel_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transport_struct_size_stops_before_alpn, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_transport_struct_size_stops_before_shutdown, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_transport_shutdown_leaves_nothing_dirty, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_transport_failure_sends_its_alert, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transport_struct_size_zero_and_too_small, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
