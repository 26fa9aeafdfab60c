"""The core's traffic machinery (ABI 1.1), driven through the tests/filters
policy module so it is tested apart from the router/lb/circuit-breaker
filters: retries (connect failure, status, per-try timeout, body replay),
mirroring, connection-pool limits with pending overflow, connect timeout."""

import http.server
import select
import socket
import socketserver
import subprocess
import threading
import time
import unittest

import harness as h

RETRY_CONNECT_FAILURE = 1
RETRY_RETRIABLE_STATUS = 16
RETRY_5XX = 32


class CountingServer:
    """CountingServer is an HTTP origin on 127.0.0.1 that counts requests and
    remembers their Host headers, framing headers and bodies (a mirror
    target), answering |status|. |conns| counts the connections accepted."""

    def __init__(self, status=200):
        self.count = 0
        self.conns = 0
        self.hosts = []
        self.bodies = []
        self.lengths = []  # content-length values (None: none sent)
        self.chunked = []  # transfer-encoding was sent
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                outer.conns += 1
                super().setup()

            def do_GET(self):
                outer.count += 1
                outer.hosts.append(self.headers.get("host", ""))
                outer.lengths.append(self.headers.get("content-length"))
                outer.chunked.append("transfer-encoding" in self.headers)
                n = int(self.headers.get("content-length", "0") or 0)
                outer.bodies.append(self.rfile.read(n) if n else b"")
                self.send_response(status)
                self.send_header("content-length", "3")
                self.end_headers()
                self.wfile.write(b"ok\n")

            do_POST = do_GET

            def log_message(self, *a):
                pass

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self.srv = Server(("127.0.0.1", 0), Handler)
        self.port = self.srv.server_address[1]
        self.t = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.t.start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


class SilentServer:
    """SilentServer accepts connections on 127.0.0.1 and never answers (a
    mirror that hangs); |held| are the accepted sockets."""

    def __init__(self):
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(16)
        self.port = self.ls.getsockname()[1]
        self.held = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            self.held.append(c)

    def close(self):
        self.ls.close()
        for c in self.held:
            c.close()


class Blackhole:
    """Blackhole listens with a backlog of 0 and never accepts; once its
    queue is full, new SYNs are dropped, so a connect hangs until the
    connecting side's own timeout."""

    def __init__(self):
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(0)
        self.port = self.ls.getsockname()[1]
        self.fillers = []
        for _ in range(4):
            s = socket.socket()
            s.setblocking(False)
            try:
                s.connect(("127.0.0.1", self.port))
            except BlockingIOError:
                pass
            self.fillers.append(s)
        # The queue is full once a filler's handshake has completed (a
        # non-blocking connect turns writable with no error); from then on
        # the kernel drops new SYNs.
        if not h.wait_for(self._queue_full, 5):
            self.close()
            raise RuntimeError("no filler connection completed: the backlog is not full")

    def _queue_full(self):
        _, w, _ = select.select([], self.fillers, [], 0)
        return any(s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0 for s in w)

    def close(self):
        for s in self.fillers:
            s.close()
        self.ls.close()


class CoreTraffic(h.SluiceTestCase):
    def start(self, policy, clusters, route_cluster="c", cluster_extra=None):
        up = self.upstream("U")
        cl = []
        for name, eps in clusters.items():
            eps = [up.addr if e == "UP" else e for e in eps]
            c = h.cluster(name, eps)
            if cluster_extra and name in cluster_extra:
                c.update(cluster_extra[name])
            cl.append(c)
        route = h.route_to(route_cluster, prefix="/")
        # On an ABI 1.3 host the router decides its own retries; attempts 0
        # leaves them to the policy module's built-in policy under test.
        route["retries"] = {"attempts": 0}
        filters = [h.router_filter([route]),
                   {"name": "policy", "module": h.test_module("policy"), "config": policy}]
        cfg = h.build_config(h.free_port(), h.free_port(), filters, cl, workers=2)
        # no lb filter: the core's own round robin (which skips tried hosts)
        return self.sluice(cfg), up

    def upstream_requests(self, s, cluster="c"):
        return h.mval(s.metrics(), "sluice_upstream_requests_total", cluster=cluster)

    def test_retry_hides_connect_failures(self):
        s, up = self.start({"retries": 2, "retry_on": RETRY_CONNECT_FAILURE, "backoff": "5ms"},
                           {"c": ["127.0.0.1:%d" % h.closed_port(), "UP"]})
        codes = [h.curl([s.url("/hello")]).status for _ in range(30)]
        self.assertEqual(codes, [200] * 30)
        self.assertGreater(h.mval(s.metrics(), "sluice_upstream_connect_failures_total"), 0,
                           "the dead endpoint was never tried: the test proves nothing")

    def test_without_retries_connect_failures_show(self):
        s, up = self.start({"retries": 0}, {"c": ["127.0.0.1:%d" % h.closed_port(), "UP"]})
        codes = [h.curl([s.url("/hello")]).status for _ in range(10)]
        self.assertIn(502, codes)

    def test_retry_on_status_exhausts_attempts(self):
        s, up = self.start({"retries": 2, "retry_on": RETRY_RETRIABLE_STATUS,
                            "retriable_status": 503, "backoff": "5ms"}, {"c": ["UP"]})
        before = self.upstream_requests(s)
        r = h.curl([s.url("/status/503")])
        self.assertEqual(r.status, 503)
        self.assertEqual(self.upstream_requests(s) - before, 3, "1 attempt + 2 retries")
        before = self.upstream_requests(s)
        self.assertEqual(h.curl([s.url("/status/500")]).status, 500)
        self.assertEqual(self.upstream_requests(s) - before, 1, "500 is not in the list")

    def test_per_try_timeout(self):
        s, up = self.start({"retries": 1, "retry_on": RETRY_5XX, "per_try_timeout": "200ms",
                            "backoff": "5ms"}, {"c": ["UP"]})
        before = self.upstream_requests(s)
        t0 = time.monotonic()
        r = h.curl([s.url("/slow?ms=3000")])
        took = time.monotonic() - t0
        self.assertEqual(r.status, 504, r)
        self.assertGreaterEqual(took, 0.39)
        self.assertLess(took, 1.5)
        self.assertEqual(self.upstream_requests(s) - before, 2)

    def test_body_replayed_on_retry(self):
        s, up = self.start({"retries": 2, "retry_on": RETRY_CONNECT_FAILURE, "backoff": "5ms"},
                           {"c": ["127.0.0.1:%d" % h.closed_port(), "UP"]})
        body = bytes((i * 7) % 251 for i in range(20000))
        path = "%s/body.bin" % self.tdir
        with open(path, "wb") as f:
            f.write(body)
        for _ in range(6):  # round robin puts the dead endpoint first half the time
            r = h.curl(["-H", "Expect:", "--data-binary", "@" + path, s.url("/echo")])
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.body, body)
        # A chunked body is replayed as data and chunked again for the retry.
        for _ in range(6):
            r = h.curl(["-H", "Expect:", "-H", "Transfer-Encoding: chunked",
                        "--data-binary", "@" + path, s.url("/echo")])
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.body, body)

    def test_mirror_sends_copies(self):
        mirror = CountingServer()
        self.addCleanup(mirror.close)
        s, up = self.start({"mirror": "shadow"},
                           {"c": ["UP"], "shadow": ["127.0.0.1:%d" % mirror.port]})
        for _ in range(20):
            self.assertEqual(h.curl([s.url("/hello")]).status, 200)
        h.wait_for(lambda: mirror.count >= 20, 5)
        self.assertEqual(mirror.count, 20)
        self.assertTrue(all(x.endswith("-shadow") for x in mirror.hosts), mirror.hosts[:3])
        m = s.metrics()
        self.assertEqual(h.mval(m, "sluice_mirror_requests_total", cluster="shadow",
                                result="sent"), 20)

    def test_mirror_sends_a_chunked_body_with_its_length(self):
        mirror = CountingServer()
        self.addCleanup(mirror.close)
        s, up = self.start({"mirror": "shadow"},
                           {"c": ["UP"], "shadow": ["127.0.0.1:%d" % mirror.port]})
        body = bytes((i * 31) % 251 for i in range(20000))
        path = "%s/body.bin" % self.tdir
        with open(path, "wb") as f:
            f.write(body)
        r = h.curl(["-H", "Expect:", "-H", "Transfer-Encoding: chunked",
                    "--data-binary", "@" + path, s.url("/echo")])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, body)
        self.assertTrue(h.wait_for(lambda: mirror.count >= 1, 5), "no shadow arrived")
        self.assertEqual(mirror.count, 1)
        # The shadow is sent once the body is whole: with its length, not
        # chunked, even though the client chunked it.
        self.assertEqual(mirror.lengths, [str(len(body))])
        self.assertEqual(mirror.chunked, [False])
        self.assertEqual(mirror.bodies, [body])
        self.assertTrue(mirror.hosts[0].endswith("-shadow"), mirror.hosts)

    def test_mirror_reuses_connections(self):
        mirror = CountingServer()
        self.addCleanup(mirror.close)
        s, up = self.start({"mirror": "shadow"},
                           {"c": ["UP"], "shadow": ["127.0.0.1:%d" % mirror.port]})
        n = 12
        for i in range(n):
            self.assertEqual(h.curl([s.url("/hello")]).status, 200)
            # One shadow at a time, so its connection can be back in its
            # worker's pool before the next request comes (the count moves
            # before the mirror answers: give the answer a moment).
            self.assertTrue(h.wait_for(lambda: mirror.count >= i + 1, 5), "shadow %d lost" % i)
            time.sleep(0.05)
        self.assertEqual(mirror.count, n)
        # Two workers: two connections, had every shadow found a pooled
        # one; a slow answer may cost another, never one per shadow.
        self.assertLess(mirror.conns, n, "every shadow opened its own connection")

    def test_mirror_that_never_answers_ends_cleanly_at_shutdown(self):
        # Shadows still in flight when sluice stops: the worker must finish
        # and free them (the sanitizer build checks the rest).
        mirror = SilentServer()
        self.addCleanup(mirror.close)
        s, up = self.start({"mirror": "shadow"},
                           {"c": ["UP"], "shadow": ["127.0.0.1:%d" % mirror.port]})
        t0 = time.monotonic()
        codes = [h.curl([s.url("/hello")]).status for _ in range(3)]
        self.assertEqual(codes, [200] * 3)
        self.assertLess(time.monotonic() - t0, 3, "the client waited for the mirror")
        # Unanswered shadows hold their connections: none is reused.
        self.assertTrue(h.wait_for(lambda: len(mirror.held) >= 3, 5), len(mirror.held))
        self.assertEqual(s.stop(), 0)

    def test_mirror_pending_at_shutdown(self):
        # Shadows wait in the pending queue behind the mirror cluster's one
        # connection. At shutdown upstream_pools_free frees the queue's
        # timer first; freeing a connection while shadows still wait then
        # pokes the freed timer (a crash).
        mirror = SilentServer()
        self.addCleanup(mirror.close)
        s, up = self.start({"mirror": "shadow", "pool_cluster": "shadow",
                            "max_connections": 1, "max_pending": 50},
                           {"c": ["UP"], "shadow": ["127.0.0.1:%d" % mirror.port]})
        for _ in range(8):
            self.assertEqual(h.curl([s.url("/hello")]).status, 200)
        self.assertTrue(h.wait_for(
            lambda: h.mval(s.metrics(), "sluice_upstream_pending", cluster="shadow") > 0, 5))
        self.assertEqual(s.stop(), 0)

    def test_mirror_failure_never_reaches_the_client(self):
        s, up = self.start({"mirror": "shadow"},
                           {"c": ["UP"], "shadow": ["127.0.0.1:%d" % h.closed_port()]})
        codes = [h.curl([s.url("/hello")]).status for _ in range(10)]
        self.assertEqual(codes, [200] * 10)

    def test_pool_limit_pending_then_overflow(self):
        s, up = self.start({"pool_cluster": "c", "max_connections": 1, "max_pending": 1},
                           {"c": ["UP"]})
        slow = s.url("/slow?ms=1500")
        procs = []
        # one takes the connection, one waits in the pending queue
        for started in (lambda m: h.mval(m, "sluice_upstream_requests_total", cluster="c") == 1,
                        lambda m: h.mval(m, "sluice_upstream_pending", cluster="c") == 1):
            procs.append(subprocess.Popen(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                                           "--max-time", "10", slow],
                                          stdout=subprocess.PIPE, text=True, env=h.CLIENT_ENV))
            self.assertTrue(h.wait_for(lambda: started(s.metrics()), 5), s.metrics())
        t0 = time.monotonic()
        r = h.curl([s.url("/hello")])
        took = time.monotonic() - t0
        self.assertEqual(r.status, 503, r)
        self.assertLess(took, 0.3, "overflow must answer at once, not after a timeout")
        outs = [p.communicate(timeout=15)[0] for p in procs]
        self.assertEqual(outs, ["200", "200"], "the waiting request must be served in turn")
        self.assertEqual(h.mval(s.metrics(), "sluice_upstream_overflow_total", cluster="c"), 1)

    def test_connect_timeout(self):
        bh = Blackhole()
        self.addCleanup(bh.close)
        s, up = self.start({}, {"c": ["127.0.0.1:%d" % bh.port]},
                           cluster_extra={"c": {"connect_timeout": "300ms"}})
        t0 = time.monotonic()
        r = h.curl([s.url("/hello")], timeout=10)
        took = time.monotonic() - t0
        self.assertEqual(r.status, 502, r)
        self.assertGreaterEqual(took, 0.25)
        self.assertLess(took, 2.5)


    def test_health_checks_take_a_dead_endpoint_out_and_back(self):
        a = self.upstream("A")
        b = self.upstream("B")
        hc = {"path": "/hello", "interval": "100ms", "timeout": "80ms",
              "unhealthy_threshold": 2, "healthy_threshold": 1}
        cl = h.cluster("c", [a.addr, b.addr])
        cl["health_check"] = hc
        filters = [h.router_filter([h.route_to("c", prefix="/")])]
        s = self.sluice(h.build_config(h.free_port(), h.free_port(), filters, [cl], workers=2))

        def seen(n=40):
            ups = []
            for _ in range(n):
                r = h.curl([s.url("/hello")])
                self.assertEqual(r.status, 200, r)  # no retries: health checks alone
                ups.append(r.headers.get("x-upstream"))
            return set(ups)

        self.assertEqual(seen(), {"A", "B"})
        port_b = b.port
        b.stop()
        # unhealthy after 2 failed checks (~200 ms): health.c logs the
        # verdict right after workers can see it
        gone = 'msg="endpoint failed its health checks" cluster=c endpoint=%s ' % b.addr
        self.assertTrue(h.wait_for(lambda: gone in s.log_text(), 3),
                        "B never failed its health checks")
        self.assertGreaterEqual(h.mval(s.metrics(), "sluice_health_checks_total", cluster="c",
                                       result="failure"), 2)
        self.assertEqual(seen(), {"A"}, "the dead endpoint must be out of rotation")
        b2 = self.upstream("B", ports=[port_b])
        h.wait_for(lambda: "B" in seen(10), 5)
        self.assertEqual(seen(), {"A", "B"}, "back in rotation after a good check")
        del b2


class FilterDecidedRetries(h.SluiceTestCase):
    """SDK 1.3: a retry policy beyond the router's vocabulary, written out of
    tree (tests/filters/retry_status.c retries a 418), decides each attempt
    from on_upstream_result; the core only replays and times them."""

    def start(self, attempts, endpoint=None):
        up = self.upstream("U")
        route = h.route_to("c", prefix="/")
        route["retries"] = {"attempts": 0}  # the router's own retries stay out of it
        filters = [h.router_filter([route]),
                   {"name": "teapot", "module": h.test_module("retry_status"),
                    "config": {"status": 418, "attempts": attempts, "backoff": "10ms"}}]
        cfg = h.build_config(h.free_port(), h.free_port(), filters,
                             [h.cluster("c", [endpoint or up.addr])])
        return self.sluice(cfg)

    def requests(self, s):
        return h.mval(s.metrics(), "sluice_upstream_requests_total", cluster="c")

    def test_listed_status_retried_until_attempts_run_out(self):
        s = self.start(2)
        before = self.requests(s)
        r = h.curl([s.url("/status/418")])
        self.assertEqual(r.status, 418, r)
        self.assertEqual(self.requests(s) - before, 3, "1 attempt + 2 retries the filter asked for")
        before = self.requests(s)
        self.assertEqual(h.curl([s.url("/status/500")]).status, 500)
        self.assertEqual(self.requests(s) - before, 1, "500 is not the filter's status")

    def test_body_sent_again_on_each_attempt(self):
        teapot = CountingServer(status=418)
        self.addCleanup(teapot.close)
        s = self.start(1, "127.0.0.1:%d" % teapot.port)
        body = bytes((i * 13) % 251 for i in range(3000))
        path = "%s/body.bin" % self.tdir
        with open(path, "wb") as f:
            f.write(body)
        r = h.curl(["-H", "Expect:", "--data-binary", "@" + path, s.url("/anything")])
        self.assertEqual(r.status, 418, r)
        self.assertEqual(teapot.count, 2, "1 attempt + 1 retry")
        self.assertEqual(teapot.bodies, [body, body], "the retry carried the whole body again")


if __name__ == "__main__":
    h.main()
