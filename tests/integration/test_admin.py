"""Admin listener: /ready, /metrics (Prometheus text, SPEC names, exact
counts), /config, /filters, and a pausing filter resuming a stream."""

import re
import time

import harness as h

SPEC_METRICS = [
    "sluice_downstream_connections_total",
    "sluice_downstream_connections_active",
    "sluice_requests_total",
    "sluice_downstream_protocol_errors_total",
    "sluice_upstream_requests_total",
    "sluice_upstream_connect_failures_total",
    "sluice_upstream_timeouts_total",
    "sluice_config_reloads_total",
    "sluice_config_generation",
    "sluice_streams_active",
]

PAUSE_MS = 300


class Admin(h.SluiceTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        try:
            cls.up = cls.class_upstream("AD")
            routes = [h.direct(None, 200, "direct\n", path="/direct"),
                      h.route_to("c", prefix="/hello"), h.route_to("c", prefix="/headers")]
            cfg = h.build_config(h.free_port(), h.free_port(),
                                 [h.router_filter(routes), h.lb_filter()],
                                 [h.cluster("c", [cls.up.addr])], workers=2)
            cls.s = cls.class_sluice(cfg)
        except BaseException:
            cls.tearDownClass()
            raise

    def wait_metric(self, name, want, timeout=3, **labels):
        deadline = time.monotonic() + timeout
        v = h.mval(self.s.metrics(), name, **labels)
        while v < want and time.monotonic() < deadline:
            time.sleep(0.05)
            v = h.mval(self.s.metrics(), name, **labels)
        time.sleep(0.1)  # let any overshoot show
        return h.mval(self.s.metrics(), name, **labels)

    def test_ready(self):
        r = h.curl([self.s.admin_url("/ready")])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, b"ready\n")

    def test_unknown_admin_path_404(self):
        r = h.curl([self.s.admin_url("/no-such-thing")])
        self.assertEqual(r.status, 404, r)

    def test_metrics_format(self):
        r = h.curl([self.s.admin_url("/metrics")])
        self.assertEqual(r.status, 200, r)
        self.assertRegex(r.headers.get("content-type", ""), r"^text/plain")
        text = r.text()
        m = h.parse_metrics(text)  # raises on any malformed sample line
        self.assertTrue(m)
        helps = set(re.findall(r"^# HELP (\S+) .+$", text, re.M))
        types = dict(re.findall(r"^# TYPE (\S+) (counter|gauge|histogram|summary|untyped)$",
                                text, re.M))
        for ln in text.splitlines():
            if ln.startswith("#"):
                self.assertRegex(ln, r"^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* \S", ln)
        for (name, _labels) in m:
            fam = re.sub(r"_(bucket|sum|count)$", "", name) if name not in types else name
            self.assertIn(fam, types, "no TYPE line for %s" % name)
            self.assertIn(fam, helps, "no HELP line for %s" % name)
        # one sample per (name, labels): no duplicated series
        samples = [ln.split(" ")[0] for ln in text.splitlines() if ln and not ln.startswith("#")]
        self.assertEqual(len(samples), len(set(samples)), "duplicated series")

    def test_spec_metric_names(self):
        # Every SPEC family is exposed from the start (at least its HELP/TYPE
        # lines), so dashboards and alerts see it before the first event.
        text = h.curl([self.s.admin_url("/metrics")]).text()
        types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
        missing = [n for n in SPEC_METRICS if n not in types]
        self.assertEqual(missing, [], "SPEC metric families missing from a fresh /metrics")
        self.assertEqual(types["sluice_requests_total"], "counter")
        self.assertEqual(types["sluice_config_generation"], "gauge")
        self.assertEqual(types["sluice_streams_active"], "gauge")
        m = h.parse_metrics(text)
        self.assertEqual(h.mval(m, "sluice_config_generation"), 1)

    def test_request_counts_exact(self):
        m0 = self.s.metrics()
        r2 = h.mval(m0, "sluice_requests_total", listener="public", code_class="2xx")
        r4 = h.mval(m0, "sluice_requests_total", listener="public", code_class="4xx")
        up0 = h.mval(m0, "sluice_upstream_requests_total", cluster="c")
        conns0 = h.mval(m0, "sluice_downstream_connections_total", listener="public")
        n = 7
        # 7 proxied requests on one connection, 1 direct response, 1 404
        rc, out, err = h.curl_w([self.s.url("/hello")] * n, "%{http_code}\n")
        self.assertEqual(out.split(), ["200"] * n, err)
        self.assertEqual(h.curl([self.s.url("/direct")]).status, 200)
        self.assertEqual(h.curl([self.s.url("/nothing")]).status, 404)
        got2 = self.wait_metric("sluice_requests_total", r2 + n + 1, listener="public",
                                code_class="2xx")
        self.assertEqual(got2 - r2, n + 1)
        got4 = self.wait_metric("sluice_requests_total", r4 + 1, listener="public",
                                code_class="4xx")
        self.assertEqual(got4 - r4, 1)
        gotu = self.wait_metric("sluice_upstream_requests_total", up0 + n, cluster="c")
        self.assertEqual(gotu - up0, n)
        gotc = self.wait_metric("sluice_downstream_connections_total", conns0 + 3,
                                listener="public")
        self.assertEqual(gotc - conns0, 3)

    def test_active_connections_gauge(self):
        base = h.mval(self.s.metrics(), "sluice_downstream_connections_active", listener="public")
        c = h.RawConn(self.s.port)
        try:
            c.send("GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            self.assertEqual(c.read_response()[0], 200)
            v = self.wait_metric("sluice_downstream_connections_active", base + 1,
                                 listener="public")
            self.assertEqual(v, base + 1)
        finally:
            c.close()
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            v = h.mval(self.s.metrics(), "sluice_downstream_connections_active", listener="public")
            if v == base:
                break
            time.sleep(0.05)
        self.assertEqual(v, base)
        self.assertEqual(h.mval(self.s.metrics(), "sluice_streams_active"), 0)

    def test_config_endpoint(self):
        r = h.curl([self.s.admin_url("/config")])
        self.assertEqual(r.status, 200, r)
        t = r.text()
        self.assertIn("public", t)
        self.assertIn("listeners", t)
        self.assertIn("127.0.0.1:%d" % self.s.port, t)
        self.assertIn("round_robin", t)

    def test_filters_endpoint(self):
        r = h.curl([self.s.admin_url("/filters")])
        self.assertEqual(r.status, 200, r)
        lines = [ln for ln in r.text().splitlines() if ln.strip()]
        parsed = []
        for ln in lines:
            kv = dict(re.findall(r"(\w+)=(\S+)", ln))
            parsed.append(kv)
        byname = {kv.get("name"): kv for kv in parsed}
        for mod, inst in (("router", "routes"), ("lb", "balance")):
            self.assertIn(mod, byname, r.text())
            kv = byname[mod]
            self.assertEqual(kv.get("instance"), inst, kv)
            self.assertEqual(kv.get("abi"), h.ABI, kv)
            self.assertRegex(kv.get("version", ""), r"^\d+\.\d+\.\d+$")
            self.assertTrue(kv.get("path", "").endswith("/%s.so" % mod), kv)

    def test_pause_resume_filter(self):
        mod = h.test_module("pause_resume")
        up = self.upstream("P")
        filters = [{"name": "pause", "module": mod, "config": {"delay": "%dms" % PAUSE_MS}},
                   h.router_filter([h.route_to("c")]), h.lb_filter()]
        s = self.sluice(h.build_config(h.free_port(), h.free_port(), filters,
                                       [h.cluster("c", [up.addr])], workers=1), name="pause")
        for _ in range(2):
            t0 = time.monotonic()
            r = h.curl([s.url("/headers")])
            dt = time.monotonic() - t0
            self.assertEqual(r.status, 200, r)
            self.assertIn("x-paused: 1", r.text().lower().splitlines(), r.text())
            self.assertGreaterEqual(dt, PAUSE_MS / 1000.0 - 0.01)
            self.assertLess(dt, PAUSE_MS / 1000.0 + 1.5)
        # concurrent paused streams each resume on their own
        rc, out, err = h.curl_w(["--parallel", "--parallel-max", "5"]
                                + [s.url("/hello")] * 5, "%{http_code}\n")
        self.assertEqual(out.split(), ["200"] * 5, err)


if __name__ == "__main__":
    h.main()
