"""Upstream failures, route and header timeouts, and their metrics."""

import re
import socket
import time

import harness as h


class ErrorsTimeouts(h.SluiceTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        try:
            cls.up = cls.class_upstream("E")
            cls.dead_port = h.closed_port()
            routes = [
                h.route_to("dead", prefix="/dead"),
                h.route_to("slowc", prefix="/slow", timeout="200ms"),
                h.route_to("up", prefix="/"),
            ]
            cfg = h.build_config(
                h.free_port(), h.free_port(),
                [h.router_filter(routes), h.lb_filter()],
                [h.cluster("dead", ["127.0.0.1:%d" % cls.dead_port], connect_timeout="2s"),
                 h.cluster("slowc", [cls.up.addr]),
                 h.cluster("up", [cls.up.addr])],
                workers=1,
                listener_extra={"header_timeout": "1s"})
            cls.s = cls.class_sluice(cfg)
        except BaseException:
            cls.tearDownClass()
            raise

    def test_connect_refused_502(self):
        before = h.mval(self.s.metrics(), "sluice_upstream_connect_failures_total", cluster="dead")
        t0 = time.monotonic()
        r = h.curl([self.s.url("/dead/x")])
        self.assertEqual(r.status, 502, r)
        self.assertLess(time.monotonic() - t0, 2.0)
        deadline = time.monotonic() + 3
        after = before
        while after <= before and time.monotonic() < deadline:
            after = h.mval(self.s.metrics(), "sluice_upstream_connect_failures_total", cluster="dead")
            time.sleep(0.05)
        self.assertGreaterEqual(after - before, 1)
        # sluice still serves on the same listener
        self.assertEqual(h.curl([self.s.url("/hello")]).status, 200)

    def test_upstream_drop_502(self):
        r = h.curl([self.s.url("/drop")])
        self.assertEqual(r.status, 502, r)
        r = h.curl([self.s.url("/hello")])
        self.assertEqual(r.status, 200, r)

    def test_route_timeout_504(self):
        before = h.mval(self.s.metrics(), "sluice_upstream_timeouts_total", cluster="slowc")
        t0 = time.monotonic()
        r = h.curl([self.s.url("/slow?ms=2000")], timeout=5)
        elapsed = time.monotonic() - t0
        self.assertEqual(r.status, 504, r)
        self.assertGreaterEqual(elapsed, 0.18)
        self.assertLess(elapsed, 1.0, "504 took %.2fs for a 200ms route timeout" % elapsed)
        deadline = time.monotonic() + 3
        after = before
        while after <= before and time.monotonic() < deadline:
            after = h.mval(self.s.metrics(), "sluice_upstream_timeouts_total", cluster="slowc")
            time.sleep(0.05)
        self.assertEqual(after - before, 1)
        # a fast request on the same route still works
        r = h.curl([self.s.url("/slow?ms=10")], timeout=5)
        self.assertEqual(r.status, 200, r)

    def test_header_timeout(self):
        c = h.RawConn(self.s.port, timeout=5)
        try:
            c.send("GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Partial: ")
            t0 = time.monotonic()
            data = b""
            c.s.settimeout(4)
            try:
                while True:
                    d = c.s.recv(4096)
                    if not d:
                        break
                    data += d
            except (ConnectionResetError, socket.timeout):
                pass
            elapsed = time.monotonic() - t0
        finally:
            c.close()
        self.assertLess(elapsed, 2.5, "partial head not timed out (%.2fs)" % elapsed)
        self.assertGreater(elapsed, 0.7, "closed too early (%.2fs)" % elapsed)
        if data:
            self.assertTrue(data.startswith(b"HTTP/1.1 408"), data[:200])

    def test_idle_keepalive_not_hit_by_header_timeout(self):
        # a complete request answered promptly is unaffected by header_timeout
        rc, err = h.curl_v(["-o", "/dev/null", self.s.url("/hello"),
                            "-o", "/dev/null", self.s.url("/hello")])
        self.assertEqual(rc, 0, err)
        self.assertIn("Re-using existing connection", err)

    def test_upstream_close_then_next_request(self):
        # /close answers with connection: close and closes; the client's
        # connection must survive and the next request use a fresh upstream one.
        rc, err = h.curl_v(["-o", "/dev/null", self.s.url("/close"),
                            "-o", "/dev/null", self.s.url("/hello"),
                            "-o", "/dev/null", self.s.url("/hello")])
        self.assertEqual(rc, 0, err)
        self.assertEqual(err.count("< HTTP/1.1 200"), 3, err)
        self.assertIn("Re-using existing connection", err)
        for _ in range(3):
            r = h.curl([self.s.url("/close")])
            self.assertEqual(r.status, 200, r)
            r = h.curl([self.s.url("/hello")])
            self.assertEqual(r.status, 200, r)

    def test_sleep_then_close_502(self):
        # the upstream closes without any response after 100 ms
        t0 = time.monotonic()
        r = h.curl([self.s.url("/sleep-then-close?ms=100")])
        self.assertEqual(r.status, 502, r)
        self.assertLess(time.monotonic() - t0, 2.0)
        self.assertEqual(h.curl([self.s.url("/hello")]).status, 200)

    def test_pooled_connections_closed_by_upstream_restart(self):
        # Fill the pool with idle kept-alive upstream connections, restart the
        # upstream on the same port (every pooled connection gets a FIN), then
        # requests must still succeed on fresh connections.
        up = self.upstream("R1")
        port = up.port
        s = self.sluice(h.build_config(h.free_port(), h.free_port(),
                                       [h.router_filter([h.route_to("r")]), h.lb_filter()],
                                       [h.cluster("r", [up.addr])], workers=1), name="restart")
        rc, out, err = h.curl_w([s.url("/hello")] * 4, "%{http_code}\n")
        self.assertEqual(out.split(), ["200"] * 4, err)
        up.stop()
        self._procs.remove(up)
        up2 = self.upstream("R2", ports=[port])
        time.sleep(0.2)
        for _ in range(4):
            r = h.curl([s.url("/hello")])
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.headers.get("x-upstream"), "R2")
        del up2

    def test_no_healthy_endpoint_503(self):
        # Every endpoint of the cluster fails its active health checks (both
        # ports are closed), so none is usable: 503 UH, and nothing is sent
        # upstream. Once through the lb filter, once through the core's own
        # round robin (a listener whose chain has no lb).
        dead = ["127.0.0.1:%d" % h.closed_port() for _ in range(2)]
        hc = {"path": "/hello", "interval": "50ms", "timeout": "40ms",
              "unhealthy_threshold": 2, "healthy_threshold": 1}
        cfg = h.build_config(h.free_port(), h.free_port(),
                             [h.router_filter([h.route_to("down")]), h.lb_filter()],
                             [h.cluster("down", dead, health_check=hc)], workers=1)
        core_port = h.free_port()
        cfg["listeners"].append({"name": "core-rr", "address": "127.0.0.1:%d" % core_port,
                                 "filter_chain": ["routes"]})
        cfg["log"] = {"level": "debug"}
        s = self.sluice(cfg, name="down")

        def unhealthy():
            log = s.log_text()
            return all(re.search(r'msg="endpoint failed its health checks" cluster=down '
                                 r'endpoint=%s ' % re.escape(ep), log) for ep in dead)

        self.assertTrue(h.wait_for(unhealthy, 5), "health checks never took both endpoints out")
        m = s.metrics()
        self.assertGreaterEqual(h.mval(m, "sluice_health_checks_total", cluster="down",
                                       result="failure"), 4)
        lb_uh0 = h.mval_suffix(m, "lb_no_healthy_upstream_total")
        since = len(s.log_text())
        for port in (s.port, core_port):
            r = h.curl(["http://127.0.0.1:%d/hello" % port])
            self.assertEqual(r.status, 503, r)
            self.assertEqual(r.body, b"no healthy upstream\n", r)
        self.assertTrue(h.wait_for(lambda: len(h.stream_flags(s, since)) >= 2, 3),
                        s.log_text()[since:])
        self.assertEqual(h.stream_flags(s, since), [(503, h.RF["UH"])] * 2)
        m = s.metrics()
        self.assertEqual(h.mval_suffix(m, "lb_no_healthy_upstream_total") - lb_uh0, 1)
        self.assertEqual(h.mval(m, "sluice_upstream_requests_total", cluster="down"), 0)
        self.assertEqual(h.mval(m, "sluice_upstream_connect_failures_total", cluster="down"), 0)


if __name__ == "__main__":
    h.main()
