"""SIGTERM drains: in-flight requests complete, new connections are refused
(or /ready says 503), and sluice exits 0."""

import signal
import subprocess
import time

import harness as h


class Graceful(h.SluiceTestCase):
    def start(self, drain="10s"):
        up = self.upstream("G")
        cfg = h.build_config(h.free_port(), h.free_port(),
                             [h.router_filter([h.route_to("c")]), h.lb_filter()],
                             [h.cluster("c", [up.addr])], workers=2,
                             extra={"drain_timeout": drain})
        return self.sluice(cfg)

    def inflight(self, s, path):
        return subprocess.Popen(["curl", "-sS", "--noproxy", "*", "--max-time", "15", "-o", "-",
                                 "-w", "\n%{http_code}", s.url(path)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=h.CLIENT_ENV)

    def wait_streams(self, s, n, timeout=3):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if h.mval(s.metrics(), "sluice_streams_active") >= n:
                return True
            time.sleep(0.02)
        return False

    def test_sigterm_drains_inflight(self):
        s = self.start()
        c = self.inflight(s, "/slow?ms=1500")
        try:
            self.assertTrue(self.wait_streams(s, 1), "request never became active")
            t0 = time.monotonic()
            s.signal(signal.SIGTERM)
            time.sleep(0.2)
            # new work is turned away while draining
            rc, out, err = h.curl_w([s.url("/hello")], "%{http_code}", timeout=2)
            refused = rc == 7
            ready = h.curl([s.admin_url("/ready")], timeout=2)
            self.assertTrue(refused or ready.status == 503,
                            "after SIGTERM: new request rc=%d code=%s, /ready %s"
                            % (rc, out, ready.status))
            if rc == 0:
                self.fail("a new request was served after SIGTERM (code %s)" % out)
            out, err = c.communicate(timeout=15)
        finally:
            if c.poll() is None:
                c.kill()
                c.wait(5)
        self.assertEqual(c.returncode, 0, err)
        body, code = out.rsplit("\n", 1)
        self.assertEqual(code, "200", err)
        self.assertEqual(body, "slow 1500\n")
        rc = s.wait(timeout=10)
        self.assertEqual(rc, 0, "sluice exit status after drain")
        self.assertGreaterEqual(time.monotonic() - t0, 1.0, "exited before the request finished")

    def test_sigterm_idle_exits_promptly(self):
        s = self.start()
        self.assertEqual(h.curl([s.url("/hello")]).status, 200)
        t0 = time.monotonic()
        s.signal(signal.SIGTERM)
        self.assertEqual(s.wait(timeout=5), 0)
        self.assertLess(time.monotonic() - t0, 3.0)

    def test_sigint_also_graceful(self):
        s = self.start()
        c = self.inflight(s, "/slow?ms=800")
        try:
            self.assertTrue(self.wait_streams(s, 1))
            s.signal(signal.SIGINT)
            out, err = c.communicate(timeout=15)
        finally:
            if c.poll() is None:
                c.kill()
                c.wait(5)
        self.assertTrue(out.endswith("\n200"), (out, err))
        self.assertEqual(s.wait(timeout=10), 0)

    def test_drain_timeout_bounds_exit(self):
        s = self.start(drain="1s")
        c = self.inflight(s, "/slow?ms=6000")
        try:
            self.assertTrue(self.wait_streams(s, 1))
            t0 = time.monotonic()
            s.signal(signal.SIGTERM)
            s.wait(timeout=5)
            self.assertLess(time.monotonic() - t0, 3.0, "drain_timeout 1s not enforced")
            c.communicate(timeout=10)
        finally:
            if c.poll() is None:
                c.kill()
                c.wait(5)


if __name__ == "__main__":
    h.main()
