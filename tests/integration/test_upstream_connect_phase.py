"""The upstream connect phase runs for a new upstream connection only: it
is where a filter installs an upstream transport, which a pooled connection
already has. tests/filters/upconnect.c reports how many times the phase ran
for each stream in x-upstream-connects."""

import harness as h


class UpstreamConnectPhase(h.SluiceTestCase):
    def test_phase_runs_on_new_connections_not_pooled_ones(self):
        up = self.upstream("UP")
        filters = [{"name": "upconnect", "module": h.test_module("upconnect"), "config": {}},
                   h.router_filter([h.route_to("c", prefix="/")]), h.lb_filter()]
        cfg = h.build_config(h.free_port(), h.free_port(), filters,
                             [h.cluster("c", [up.addr])], workers=1)
        s = self.sluice(cfg)
        c = h.RawConn(s.port, timeout=5)
        self.addCleanup(c.close)
        seen = []
        for _ in range(4):
            c.send(b"GET /hello HTTP/1.1\r\nhost: x\r\n\r\n")
            st, hdrs, _ = c.read_response()
            self.assertEqual(st, 200)
            seen.append(dict(hdrs).get("x-upstream-connects"))
        # One worker, one client, one request at a time: the first opens the
        # upstream connection, the rest reuse it from the pool.
        self.assertEqual(seen, ["1", "0", "0", "0"])
        self.assertEqual(h.mval(s.metrics(), "sluice_upstream_connections_total", cluster="c"), 1)


if __name__ == "__main__":
    h.main()
