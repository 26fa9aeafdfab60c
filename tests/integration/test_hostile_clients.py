"""Hostile and broken clients (issue #6, items 1, 3, 6 and 7): a slow
reader, a crowd that exhausts the fd limit, a client that hangs up while its
response is pending, and a request head trickled in 16-byte pieces. None of
them may make sluice spin, starve other clients or keep upstream work alive
for nobody.

The tests of items 1, 3 and 7 read sluice's CPU time from /proc/PID/stat
over a window of at least 2 s while the hostile peer is connected and fail
above 10% of one core: an event loop that waits for the kernel costs almost
nothing in that time, one that spins costs a whole core.
"""

import os
import re
import resource
import socket
import sys
import threading
import time

import harness as h
import hostile_client as hc

MAX_CPU = 0.10  # share of one core


def sleep_until(t):
    """sleep_until sleeps until monotonic time |t| (not at all if it has
    passed): probes keep a fixed schedule whatever each one took."""
    left = t - time.monotonic()
    if left > 0:
        time.sleep(left)


def timed_curl(url, timeout=2):
    """timed_curl GETs |url| with curl and returns (status, seconds); status
    0 when nothing came back within |timeout| s."""
    t0 = time.monotonic()
    r = h.curl([url], timeout=timeout)
    return r.status, time.monotonic() - t0


# ---------------------------------------------------------------- item 1

class SlowReader(h.SluiceTestCase):
    """Clients that ask for 100 MiB and read 1 KiB a second: sluice must
    park each transfer (stop reading the upstream, wait for the client's
    socket to become writable) rather than retry writes the kernel keeps
    refusing, which pins the worker at 100% and starves every other
    connection on it.

    Four slow readers at once: today's code falls into the spin only when
    its first writes to a reader race the upstream's data in a particular
    way, which one reader set off in about two runs of three here; with
    four it did in each of 20 runs."""

    READERS = 4

    def test_slow_readers_neither_spin_nor_starve_the_worker(self):
        up = self.upstream("S")
        # One worker: the probe requests share the slow readers' event loop.
        cfg = h.build_config(h.free_port(), h.free_port(),
                             [h.router_filter([h.route_to("up")]), h.lb_filter()],
                             [h.cluster("up", [up.addr])], workers=1)
        s = self.sluice(cfg)
        self.assertEqual(h.curl([s.url("/hello")]).status, 200)  # warm-up

        readers = []
        try:
            for _ in range(self.READERS):
                readers.append(hc.SlowReader(s.port, "/bytes?n=104857600"))
            h.wait_for(lambda: all(r.first_byte.is_set() for r in readers), 3)
            meter = h.CpuMeter(s.pid).start()
            probes = []
            for i in range(4):
                # One probe per second of the window, on a fixed schedule.
                due = meter.t0 + i
                sleep_until(due)
                probes.append(timed_curl(s.url("/hello"), timeout=2))
            end = meter.t0 + 3.5
            sleep_until(end)
            share = meter.stop()
            answered = sum(r.first_byte.is_set() for r in readers)
            errors = [r.error for r in readers if r.error]
        finally:
            for r in readers:
                r.stop()

        summary = ("sluice CPU %.0f%% of a core over %.1fs; probes (status, s): %s; "
                   "%d of %d slow readers answered" % (
                       100 * share, meter.wall, ["(%d, %.2f)" % p for p in probes], answered,
                       self.READERS))
        self.assertLess(share, MAX_CPU, summary)
        for status, secs in probes:
            self.assertEqual(status, 200, summary)
            self.assertLess(secs, 2.0, summary)
        self.assertEqual(answered, self.READERS, summary)
        self.assertFalse(errors, summary)


# ---------------------------------------------------------------- item 3

class _NofileLimit(h.Proc):
    """_NofileLimit sits between Sluice and Proc in the method resolution
    order of LimitedSluice, so the argv Sluice builds is started with
    RLIMIT_NOFILE soft = hard = NOFILE. The wrapper is this Python, which
    sets the limit and execs sluice: same PID, nothing outside the standard
    library."""

    NOFILE = 256
    _EXEC = ("import os, resource, sys; n = int(sys.argv[1]); "
             "resource.setrlimit(resource.RLIMIT_NOFILE, (n, n)); "
             "os.execv(sys.argv[2], sys.argv[2:])")

    def __init__(self, argv, log_path, **kw):
        super().__init__([sys.executable, "-c", self._EXEC, str(self.NOFILE)] + list(argv),
                         log_path, **kw)


class LimitedSluice(h.Sluice, _NofileLimit):
    """LimitedSluice is harness.Sluice under RLIMIT_NOFILE=256."""


def count_log_lines(path, needles):
    """count_log_lines counts the lines of |path| that contain each of
    |needles| without loading the file (a flooded log is hundreds of MB)."""
    counts = dict.fromkeys(needles, 0)
    tail = b""
    with open(path, "rb") as f:
        while True:
            block = f.read(1 << 20)
            if not block:
                break
            lines = (tail + block).split(b"\n")
            tail = lines.pop()
            for ln in lines:
                for n in needles:
                    if n in ln:
                        counts[n] += 1
    for n in needles:
        if n in tail:
            counts[n] += 1
    return counts


# The message may go on (e.g. "accept failed; pausing accepts").
ACCEPT_FAILED = b'msg="accept failed'


def open_fds(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return 0


class FdLimit(h.SluiceTestCase):
    """400 idle connections against a limit of 256 fds: accept() fails with
    EMFILE while the backlog stays readable, so a listener that just retries
    spins, floods the log and leaves no room for the admin listener. sluice
    must back off (count and rate-limit the failures), keep /metrics
    reachable and serve again once the crowd leaves."""

    CONNS = 400

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # The test itself holds 400 sockets.
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    def test_emfile_backs_off_and_recovers(self):
        up = self.upstream("F")
        # Long header and idle timeouts: sluice must not get its fds back by
        # timing the crowd out during the window.
        cfg = h.build_config(h.free_port(), h.free_port(),
                             [h.router_filter([h.route_to("up")]), h.lb_filter()],
                             [h.cluster("up", [up.addr])], workers=1,
                             listener_extra={"header_timeout": "60s", "idle_timeout": "60s"})
        s = LimitedSluice(self.tdir, cfg)
        self._procs.append(s)
        self.assertEqual(h.curl([s.url("/hello")]).status, 200)

        t_open = time.monotonic()
        socks = hc.hold_connections(s.port, self.CONNS)
        try:
            # Near 256 open fds, accept() fails from here on.
            self.assertTrue(h.wait_for(lambda: open_fds(s.pid) >= 240, 10),
                            "sluice never neared its fd limit: %d fds" % open_fds(s.pid))
            meter = h.CpuMeter(s.pid).start()
            scrapes = []
            for i in range(3):
                due = meter.t0 + i
                sleep_until(due)
                t0 = time.monotonic()
                r = h.curl([s.admin_url("/metrics")], timeout=2)
                scrapes.append((r.status, time.monotonic() - t0, r))
            end = meter.t0 + 3.0
            sleep_until(end)
            share = meter.stop()
            elapsed = time.monotonic() - t_open
            lines = count_log_lines(s.log_path, [ACCEPT_FAILED, b"[warn]"])
            with open(s.log_path, "rb") as f:
                refused = re.search(re.escape(ACCEPT_FAILED) + rb'[^\n]*refused=\d+',
                                    f.read(1 << 20))
        finally:
            hc.close_all(socks)

        summary = ("sluice CPU %.0f%% of a core over %.1fs; /metrics (status, s): %s; "
                   "log after %.1fs: %d 'accept failed', %d '[warn]' lines" % (
                       100 * share, meter.wall, ["(%d, %.2f)" % sc[:2] for sc in scrapes],
                       elapsed, lines[ACCEPT_FAILED], lines[b"[warn]"]))
        self.assertLess(share, MAX_CPU, summary)
        for status, secs, _ in scrapes:
            self.assertEqual(status, 200, summary)
            self.assertLess(secs, 2.0, summary)
        m = h.parse_metrics(scrapes[-1][2].text())
        self.assertGreater(h.mval(m, "sluice_downstream_accept_errors_total", listener="public",
                                  reason="emfile"), 0, summary)
        # One line per second per listener (public, and admin if it logs),
        # plus one each of slack.
        self.assertLessEqual(lines[ACCEPT_FAILED], 2 * (int(elapsed) + 2), summary)
        self.assertGreaterEqual(lines[ACCEPT_FAILED], 1, summary)
        self.assertIsNotNone(refused, "no accept-failure line counts refusals (refused=N)")
        self.assertLessEqual(lines[b"[warn]"], 5, summary)

        # The crowd has left: sluice accepts again (it retries on its own;
        # nothing prods it).
        served = h.wait_for(lambda: h.curl([s.url("/hello")], timeout=2).status == 200, 5)
        self.assertTrue(served, "no 200 within 5s after the %d connections closed" % self.CONNS)


# ---------------------------------------------------------------- item 6

class ClientGoesAway(h.SluiceTestCase):
    """A client that hangs up while its response is pending: nobody will
    read the answer, so sluice must cancel the upstream request at once
    (close the upstream connection, flag DC, count an abort) instead of
    holding the upstream connection until the upstream answers. A listener
    with abort_on_client_close: false keeps serving clients that only
    half-closed. (The DC flag is not checked: a stream aborted this way
    logs no "stream done" line and no test filter reports flags.)"""

    def start(self, cluster_addr, listener_extra=None):
        cfg = h.build_config(h.free_port(), h.free_port(),
                             [h.router_filter([h.route_to("c")]), h.lb_filter()],
                             [h.cluster("c", [cluster_addr])], workers=1,
                             listener_extra=listener_extra,
                             # Where a stream is left hanging (today's code), the
                             # stop at tearDown need not wait 10 s for it.
                             # debug: "stream done" lines carry each stream's flags.
                             extra={"drain_timeout": "1s", "log": {"level": "debug"}})
        return self.sluice(cfg)

    def hang_up_after(self, port, path, delay=0.2):
        """hang_up_after sends a complete GET |path| on a new connection and
        returns it with the time, |delay| s after the send, at which the
        caller is to close() it."""
        c = h.RawConn(port, timeout=5)
        t0 = time.monotonic()
        c.send(hc.request_head(path))
        return c, t0 + delay

    def test_client_close_cancels_upstream_request(self):
        up = self.upstream("G")
        s = self.start(up.addr)

        def active():
            return h.mval(s.metrics(), "sluice_upstream_connections_active", cluster="c")

        aborts0 = h.mval(s.metrics(), "sluice_downstream_aborts_total", listener="public")
        c, close_at = self.hang_up_after(s.port, "/slow?ms=8000")
        try:
            self.assertTrue(h.wait_for(lambda: active() == 1, 2),
                            "the request never reached the upstream")
            sleep_until(close_at)
        finally:
            c.close()
        t_close = time.monotonic()

        def cancelled():
            m = s.metrics()
            return (h.mval(m, "sluice_upstream_connections_active", cluster="c") == 0
                    and h.mval(m, "sluice_downstream_aborts_total", listener="public") >= aborts0 + 1)

        done = h.wait_for(cancelled, 2)
        m = s.metrics()
        summary = "%.1fs after the client closed: connections_active=%s aborts=%s (before %s)" % (
            time.monotonic() - t_close, h.mval(m, "sluice_upstream_connections_active", cluster="c"),
            h.mval(m, "sluice_downstream_aborts_total", listener="public"), aborts0)
        self.assertTrue(done, summary)
        self.assertEqual(h.mval(m, "sluice_downstream_aborts_total", listener="public"),
                         aborts0 + 1, summary)
        self.assertTrue(any(f & h.RF["DC"] for _, f in h.stream_flags(s)),
                        "no stream ended with flag DC: %r" % h.stream_flags(s))
        # The worker is fine afterwards.
        self.assertEqual(h.curl([s.url("/hello")]).status, 200)

    def test_upstream_sees_the_cancel(self):
        # The upstream's own view: its connection is closed soon after the
        # client's, not when some timeout fires (the route has none).
        up = hc.SilentUpstream()
        self.addCleanup(up.stop)
        s = self.start(up.addr)
        c, close_at = self.hang_up_after(s.port, "/never-answered")
        try:
            self.assertTrue(h.wait_for(lambda: any(g for g, _ in up.snapshot()), 2),
                            "the request never reached the upstream")
            sleep_until(close_at)
        finally:
            c.close()
        t_close = time.monotonic()
        closed = h.wait_for(lambda: all(cl for _, cl in up.snapshot()), 2)
        self.assertTrue(closed, "upstream connections (request seen, closed) %.1fs after the "
                        "client closed: %r" % (time.monotonic() - t_close,
                                               [(g is not None, cl is not None)
                                                for g, cl in up.snapshot()]))
        self.assertLess(max(cl for _, cl in up.snapshot()) - t_close, 2.0)

    def test_half_closed_client_served_without_abort_on_client_close(self):
        up = self.upstream("H")
        s = self.start(up.addr, listener_extra={"abort_on_client_close": False})
        c = h.RawConn(s.port, timeout=5)
        try:
            c.send(hc.request_head("/slow?ms=300"))
            # Done sending, still reading: a half-close, not a hang-up.
            c.s.shutdown(socket.SHUT_WR)
            status, _, body = c.read_response()
        finally:
            c.close()
        self.assertEqual(status, 200)
        self.assertEqual(body, b"slow 300\n")


# ---------------------------------------------------------------- item 7

class TrickledHead(h.SluiceTestCase):
    """A 58 KB request head sent 16 bytes per millisecond: if every
    arrival rescans the head from its first byte, the work is quadratic in
    the head's size (about a fifth of a core per such client today). sluice
    must resume where the previous scan stopped; and the head, reassembled
    from ~3600 pieces, must still reach the upstream intact.

    The CPU window is the last ~2.1 s of the ~3.6 s trickle: a rescan costs
    more the longer the head already is, while the fixed code's cost per
    piece (mostly the read syscall) is flat, so that window separates them
    best. Two clients there cost 27-30% of a core today and about 5% fixed
    (release build); one client is too close to 10% to tell, three bring
    the fixed code near 10% under ASan."""

    CLIENTS = 2
    WINDOW_AFTER = 1.5  # s into the trickle
    PADS = 480  # x-pad-NNN headers of ~120 bytes: ~58 KB in all

    def test_trickled_head_costs_linear_cpu(self):
        up = self.upstream("T")
        cfg = h.build_config(h.free_port(), h.free_port(),
                             [h.router_filter([h.route_to("up")]), h.lb_filter()],
                             [h.cluster("up", [up.addr])], workers=1,
                             listener_extra={"max_header_bytes": "128Ki", "max_headers": 1000,
                                             "header_timeout": "60s"})
        s = self.sluice(cfg)
        pads = [("x-pad-%03d" % i, ("%03d" % i) * 36) for i in range(self.PADS)]
        head = hc.request_head("/headers", headers=pads)
        self.assertGreater(len(head), 57000)
        self.assertLess(len(head), 60000)  # sluice-upstream's own head limit is 64 KiB

        conns = [h.RawConn(s.port, timeout=15) for _ in range(self.CLIENTS)]
        errors = []

        def send(c):
            try:
                hc.trickle(c.s, head, piece=16, interval=0.001, timeout=10)
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        try:
            ts = [threading.Thread(target=send, args=(c,), daemon=True) for c in conns]
            t_start = time.monotonic()
            for t in ts:
                t.start()
            # The trickle runs on a fixed schedule: this is a point in it.
            sleep_until(t_start + self.WINDOW_AFTER)
            meter = h.CpuMeter(s.pid).start()
            for t in ts:
                t.join(15)
            share = meter.stop()
            self.assertFalse(errors, errors)
            self.assertFalse(any(t.is_alive() for t in ts), "trickle threads still running")
            responses = [c.read_response() for c in conns]
        finally:
            for c in conns:
                c.close()

        summary = ("sluice CPU %.0f%% of a core over the last %.1fs of the trickle of %d x %d "
                   "bytes" % (100 * share, meter.wall, self.CLIENTS, len(head)))
        self.assertGreaterEqual(meter.wall, 2.0, summary)
        self.assertLess(share, MAX_CPU, summary)
        for status, _, body in responses:
            self.assertEqual(status, 200, summary)
            got = dict(ln.partition(": ")[::2] for ln in body.decode("latin-1").splitlines()[1:])
            for k, v in pads:
                self.assertEqual(got.get(k), v, "header %s arrived mangled" % k)


if __name__ == "__main__":
    h.main()
