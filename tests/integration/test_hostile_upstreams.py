"""Hostile upstreams (issue #6): stray responses on pooled connections,
floods of interim responses, and the counters and log lines that make
upstream faults visible. The misbehaving origin is hostile_upstream.py,
run as a subprocess so that stopping sluice (SIGSTOP) or the test's own
waiting never stalls it."""

import math
import os
import re
import signal
import sys
import time

import harness as h

HOSTILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hostile_upstream.py")
FAULTS = "sluice_upstream_faults_total"
DISCARDS = "sluice_upstream_pool_discards_total"


EPOLL_WAIT_SYSCALLS = {"232", "281", "441"}  # x86-64 epoll_wait, epoll_pwait, epoll_pwait2


def wait_workers_asleep(pid, timeout=3.0):
    """wait_workers_asleep waits (bounded) until every worker thread of |pid|
    sleeps in epoll_wait, seen twice 20 ms apart. A worker asleep there
    has no ready event left over: epoll re-queues a level-triggered fd it
    just reported and only drops it on the next epoll_wait, so a process
    stopped between handling an event and its next epoll_wait would be
    handed that fd first when it runs again, whatever became ready later."""
    def asleep():
        tids = []
        for tid in os.listdir("/proc/%d/task" % pid):
            try:
                with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
                    if not f.read().startswith("sluice-w"):
                        continue
                with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
                with open("/proc/%d/task/%s/syscall" % (pid, tid)) as f:
                    nr = f.read().split()[0]
            except FileNotFoundError:
                continue
            if state != "S" or nr not in EPOLL_WAIT_SYSCALLS:
                return False
            tids.append(tid)
        return bool(tids)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if asleep():
            time.sleep(0.02)
            if asleep():
                return
        time.sleep(0.01)
    raise RuntimeError("sluice's workers not asleep in epoll_wait within %.1fs" % timeout)


class Hostile(h.ListeningProc):
    """Hostile runs hostile_upstream.py on a port the kernel picks and reads
    its "event=..." lines back from the log."""

    def __init__(self, workdir, name="hostile", timeout=10):
        super().__init__([sys.executable, HOSTILE, "--listen", "127.0.0.1:0"],
                         os.path.join(workdir, "%s.log" % name), timeout=timeout)
        self.addr = "127.0.0.1:%d" % self.ports[0]

    def events(self, name):
        """events returns [(conn, {key: value})] of the event lines |name|."""
        out = []
        for m in re.finditer(r"^event=%s conn=(\d+)(.*)$" % re.escape(name), self.log_text(), re.M):
            out.append((int(m.group(1)), dict(kv.split("=", 1) for kv in m.group(2).split())))
        return out

    def wait_event(self, name, conn=None, timeout=5):
        """wait_event waits (bounded) for event |name| (on |conn| if given)
        and returns its conn number."""
        def find():
            return [c for c, _ in self.events(name) if conn is None or c == conn]
        got = h.wait_for(find, timeout)
        if not got:
            raise AssertionError("hostile upstream: no event=%s%s within %ss"
                                 % (name, "" if conn is None else " conn=%d" % conn, timeout))
        return got[0]

    def conn_of(self, path):
        """conn_of returns the connection a request for |path| came on."""
        for c, kv in self.events("request"):
            if kv.get("path") == path:
                return c
        raise AssertionError("hostile upstream never got %s" % path)


def wait_stopped(pid, timeout=2.0):
    """wait_stopped waits (bounded) until every thread of |pid| is in state
    T: kill(SIGSTOP) returns before the threads have actually stopped."""
    deadline = time.monotonic() + timeout
    while True:
        states = []
        for tid in os.listdir("/proc/%d/task" % pid):
            try:
                with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                    states.append(f.read().rsplit(")", 1)[1].split()[0])
            except FileNotFoundError:  # a thread that just exited
                pass
        if all(st in "Tt" for st in states):
            return
        if time.monotonic() > deadline:
            raise RuntimeError("sluice not stopped %.1fs after SIGSTOP: %r" % (timeout, states))
        time.sleep(0.005)


def fwd(prefix, cluster, timeout=None):
    """fwd is a route to |cluster| with retries off. Without a retries key
    the router applies Istio's default (2 retries on connect-failure and
    more, docs/filters/router.md); attempts: 0 keeps every request to one
    attempt, so one request is exactly one fault and a stray cannot be
    hidden behind a retry."""
    r = {"match": {"prefix": prefix}, "route": {"cluster": cluster}, "retries": {"attempts": 0}}
    if timeout:
        r["timeout"] = timeout
    return r


def config(clusters, routes):
    # One worker: every request shares one connection pool, which is what
    # lets a stray on a pooled connection reach the next client.
    return h.build_config(h.free_port(), h.free_port(), [h.router_filter(routes), h.lb_filter()],
                          clusters, workers=1)


def request(path):
    return ("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % path).encode("latin-1")


def get(port, path, timeout=5):
    """get sends one request on a new connection; returns (status, body)."""
    c = h.RawConn(port, timeout=timeout)
    try:
        c.send(request(path))
        st, _, body = c.read_response()
        return st, body
    finally:
        c.close()


class HostileCase(h.SluiceTestCase):
    def hostile(self):
        u = Hostile(self.tdir)
        self._procs.append(u)
        return u

    def wait_metric(self, s, name, want, **labels):
        """wait_metric polls until metric |name| reaches |want| (bounded) and
        returns the value read then."""
        deadline = time.monotonic() + 5
        v = h.mval(s.metrics(), name, **labels)
        while v < want and time.monotonic() < deadline:
            time.sleep(0.05)
            v = h.mval(s.metrics(), name, **labels)
        return v

    def wait_metric_down(self, s, name, want, **labels):
        """wait_metric_down polls until metric |name| falls to |want|
        (bounded) and returns the value read then."""
        deadline = time.monotonic() + 5
        v = h.mval(s.metrics(), name, **labels)
        while v > want and time.monotonic() < deadline:
            time.sleep(0.05)
            v = h.mval(s.metrics(), name, **labels)
        return v


class StrayResponses(HostileCase):
    """Spec item 4: a response that did not answer the request on its
    connection must never reach a client."""

    def start(self):
        up = self.hostile()
        s = self.sluice(config([h.cluster("stray", [up.addr])], [fwd("/", "stray")]))
        return up, s

    def test_stray_while_sluice_stopped_never_reaches_next_client(self):
        up, s = self.start()
        # B's keep-alive connection is accepted and idle before the race, so
        # all that is pending for it later is its next request.
        b = h.RawConn(s.port, timeout=10)
        self.addCleanup(b.close)
        b.send(request("/ok"))
        self.assertEqual(b.read_response()[2], b"ok")
        st, body = get(s.port, "/stray-later?ms=300")
        self.assertEqual((st, body), (200, b"first"))
        # Only B is left, and the worker has gone back to sleep: nothing it
        # handled before is still queued ahead of what arrives while stopped.
        self.assertEqual(self.wait_metric_down(s, "sluice_downstream_connections_active", 1,
                                               listener="public"), 1)
        wait_workers_asleep(s.pid)
        # Stopped, sluice cannot see the stray arrive on the idle pooled
        # connection before B's request: when it runs again, epoll reports
        # B's socket first (ready first, and nothing older queued), and the pooled connection, stray
        # already in its receive buffer, is what B's request would get.
        s.signal(signal.SIGSTOP)
        try:
            wait_stopped(s.pid)
            if up.events("stray-sent"):
                raise RuntimeError("the stray left before B's request: the race was not set up")
            b.send(request("/ok"))
            up.wait_event("stray-sent", timeout=5)
        finally:
            s.signal(signal.SIGCONT)
        st, _, body = b.read_response()
        self.assertNotEqual(body, b"STRAY", "B got the stray response meant for nobody")
        self.assertEqual((st, body), (200, b"ok"))
        m = s.metrics()
        reuse = h.mval(m, DISCARDS, cluster="stray", reason="reuse_readable")
        upe = h.mval(m, FAULTS, cluster="stray", flag="UPE")
        self.assertGreater(reuse + upe, 0,
                           "stray not counted: reuse_readable=%s UPE=%s" % (reuse, upe))

    def test_stray_on_idle_connection_closes_it(self):
        up, s = self.start()
        self.assertEqual(get(s.port, "/stray-later?ms=300"), (200, b"first"))
        conn = up.conn_of("/stray-later?ms=300")
        up.wait_event("stray-sent", conn=conn)
        up.wait_event("eof", conn=conn)
        self.assertEqual(
            self.wait_metric(s, DISCARDS, 1, cluster="stray", reason="idle_readable"), 1)
        self.assertEqual(get(s.port, "/ok"), (200, b"ok"))

    def test_leftover_after_response_never_reaches_next_client(self):
        up, s = self.start()
        self.assertEqual(get(s.port, "/leftover"), (200, b"first"))
        st, body = get(s.port, "/ok")
        self.assertNotEqual(body, b"EXTRA", "the bytes after a response reached the next client")
        self.assertEqual((st, body), (200, b"ok"))
        self.assertEqual(self.wait_metric(s, DISCARDS, 1, cluster="stray", reason="leftover"), 1)
        up.wait_event("eof", conn=up.conn_of("/leftover"))


class InterimResponses(HostileCase):
    """Spec item 5: at most 16 interim (1xx) responses and 16 KiB of their
    heads per upstream attempt."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        try:
            cls.up = Hostile(cls.workdir)
            cls._class_procs.append(cls.up)
            # No route timeout: only the interim limit can end a flood.
            cls.s = cls.class_sluice(config([h.cluster("flood", [cls.up.addr])],
                                            [fwd("/", "flood")]))
        except BaseException:
            cls.tearDownClass()
            raise

    def test_flood_of_100_continue_gets_502_without_spinning(self):
        before = h.mval(self.s.metrics(), FAULTS, cluster="flood", flag="UPE")
        t0 = time.monotonic()
        r = h.curl([self.s.url("/flood-100")], timeout=3)
        elapsed = time.monotonic() - t0
        self.assertEqual(r.status, 502, "no 502 within 3 s of an endless 1xx flood "
                         "(%.1fs): %r" % (elapsed, r))
        self.assertEqual(self.wait_metric(self.s, FAULTS, before + 1, cluster="flood", flag="UPE"),
                         before + 1)
        frac = h.cpu_fraction(self.s.pid, 2.0)
        self.assertLess(frac, 0.10, "sluice used %.0f%% of a core after the flood" % (frac * 100))
        self.assertEqual(get(self.s.port, "/ok"), (200, b"ok"))

    def test_response_hop_by_hop_fields_dropped(self):
        """Not hostile, but the same origin can send them: hop-by-hop fields
        of a response, and what its Connection names, stop at sluice."""
        r = h.curl([self.s.url("/hop-headers")])
        self.assertEqual((r.status, r.body), (200, b"hop"), r)
        self.assertEqual(r.headers.get("x-visible"), "yes", r.headers)
        for name in ("x-secret", "keep-alive", "proxy-connection"):
            self.assertNotIn(name, r.headers, r.headers)
        self.assertNotIn("x-secret", r.headers.get("connection", "").lower(), r.headers)

    def test_a_few_interim_responses_then_the_answer(self):
        r = h.curl([self.s.url("/interim?n=3")])
        self.assertEqual((r.status, r.body), (200, b"interim-ok"), r)

    def test_interim_limits(self):
        before = h.mval(self.s.metrics(), FAULTS, cluster="flood", flag="UPE")
        r = h.curl([self.s.url("/interim?n=16")])
        self.assertEqual((r.status, r.body), (200, b"interim-ok"), "16 interim heads are allowed")
        r = h.curl([self.s.url("/interim?n=17")])
        self.assertEqual(r.status, 502, "17 interim heads: %r" % r)
        # Two heads of ~9 KB: few, but past 16 KiB together.
        r = h.curl([self.s.url("/interim?n=2&pad=9000")])
        self.assertEqual(r.status, 502, "18 KB of interim heads: %r" % r)
        self.assertEqual(self.wait_metric(self.s, FAULTS, before + 2, cluster="flood", flag="UPE"),
                         before + 2)


class FaultVisibility(HostileCase):
    """Spec item 8: every upstream fault is counted by cluster and flag and
    logged (rate-limited) at the default log level. Each test has a cluster
    of its own, which only ever sees the failing requests of that test: no
    connection of it is pooled, so every request is one fresh attempt."""

    CLUSTERS = ("uc", "ur", "ut", "upe_head", "upe_length", "upe_chunk", "upe_cut_chunked",
                "burst", "ok")

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        try:
            cls.up = Hostile(cls.workdir)
            cls._class_procs.append(cls.up)
            clusters = [h.cluster("uf", ["127.0.0.1:%d" % h.closed_port()], connect_timeout="2s")]
            clusters += [h.cluster(n, [cls.up.addr]) for n in cls.CLUSTERS]
            routes = [fwd("/uf/", "uf"), fwd("/ut/", "ut", timeout="200ms")]
            routes += [fwd("/%s/" % n, n) for n in cls.CLUSTERS if n != "ut"]
            cls.s = cls.class_sluice(config(clusters, routes))
        except BaseException:
            cls.tearDownClass()
            raise

    def faults(self, cluster, flag):
        return h.mval(self.s.metrics(), FAULTS, cluster=cluster, flag=flag)

    def fault_lines(self, cluster):
        """fault_lines are sluice's "upstream fault" log lines for |cluster|."""
        pat = re.compile(r'msg="upstream fault".*(?:^|\s)cluster="?%s"?(?:\s|$)'
                         % re.escape(cluster))
        return [ln for ln in self.s.log_text().splitlines() if pat.search(ln)]

    def check_fault(self, cluster, flag, cause):
        """check_fault runs |cause| (one request) and checks that it counted
        exactly one fault |flag| for |cluster| and logged it."""
        before = self.faults(cluster, flag)
        cause()
        self.assertEqual(self.wait_metric(self.s, FAULTS, before + 1, cluster=cluster, flag=flag),
                         before + 1, "%s{cluster=%s,flag=%s}" % (FAULTS, cluster, flag))
        lines = h.wait_for(lambda: self.fault_lines(cluster), 3)
        self.assertTrue(lines, 'no "upstream fault" log line for cluster=%s' % cluster)
        self.assertRegex(lines[-1], r"(?:^|\s)flag=\"?%s\"?(?:\s|$)" % flag)
        # The fault cost nobody else anything.
        self.assertEqual(get(self.s.port, "/ok/ok"), (200, b"ok"))

    def assert_status(self, path, status):
        st, _ = get(self.s.port, path)
        self.assertEqual(st, status, path)

    def assert_truncated(self, path):
        """assert_truncated checks that the client sees the transfer of
        |path| end early, never a complete response."""
        c = h.RawConn(self.s.port, timeout=5)
        try:
            c.send(request(path))
            try:
                st, _, body = c.read_response()
            except EOFError:
                return
            self.fail("a cut upstream body reached the client as a complete response: %s %r"
                      % (st, body[:80]))
        finally:
            c.close()

    def test_uf_connect_failure(self):
        self.check_fault("uf", "UF", lambda: self.assert_status("/uf/ok", 502))

    def test_uc_closed_before_response(self):
        self.check_fault("uc", "UC", lambda: self.assert_status("/uc/drop", 502))

    def test_ur_reset_before_response(self):
        self.check_fault("ur", "UR", lambda: self.assert_status("/ur/reset", 502))

    def test_ut_route_timeout(self):
        self.check_fault("ut", "UT", lambda: self.assert_status("/ut/slow?ms=2000", 504))

    def test_upe_malformed_head(self):
        self.check_fault("upe_head", "UPE", lambda: self.assert_status("/upe_head/garbage", 502))

    def test_upe_content_length_cut_short(self):
        self.check_fault("upe_length", "UPE",
                         lambda: self.assert_truncated("/upe_length/cut-length"))

    def test_upe_bad_chunk_size(self):
        self.check_fault("upe_chunk", "UPE", lambda: self.assert_truncated("/upe_chunk/bad-chunk"))

    def test_upe_chunked_body_cut_short(self):
        self.check_fault("upe_cut_chunked", "UPE",
                         lambda: self.assert_truncated("/upe_cut_chunked/cut-chunked"))

    def test_fault_log_is_rate_limited(self):
        t0 = time.monotonic()
        for _ in range(20):
            self.assert_status("/burst/drop", 502)
        elapsed = time.monotonic() - t0
        self.assertEqual(self.wait_metric(self.s, FAULTS, 20, cluster="burst", flag="UC"), 20)
        lines = self.fault_lines("burst")
        # One line a second: a burst that took under a second is at most two
        # lines (it may straddle one second boundary).
        self.assertLessEqual(len(lines), math.ceil(elapsed) + 1,
                             "%d lines for 20 faults in %.2fs:\n%s" % (len(lines), elapsed,
                                                                       "\n".join(lines)))
        # Faults past the limit are not lost: the next line logged says how
        # many were suppressed. Bounded: one more fault every 250 ms, 3 s.
        extra = 0
        deadline = time.monotonic() + 3
        n = len(lines)
        while time.monotonic() < deadline:
            self.assert_status("/burst/drop", 502)
            extra += 1
            if h.wait_for(lambda: len(self.fault_lines("burst")) > n, 0.25):
                break
        lines = self.fault_lines("burst")
        found = (re.search(r"\bsuppressed=(\d+)", ln) for ln in lines)
        suppressed = [int(m.group(1)) for m in found if m]
        self.assertTrue(suppressed and max(suppressed) > 0,
                        "no suppressed=N:\n%s" % "\n".join(lines))
        self.assertEqual(len(lines) + sum(suppressed), 20 + extra,
                         "every fault is logged or counted as suppressed:\n%s" % "\n".join(lines))


if __name__ == "__main__":
    h.main()
