"""A reload that removes a cluster: the idle pooled upstream connections of
the removed cluster are closed when the old generation retires, so nothing
later (the upstream closing them, SIGTERM, a stream that was in flight
during the reload) reaches the cluster state the retirement freed."""

import threading

import harness as h

# How long the removed cluster's connections may outlive the reload: the old
# generation retires as soon as no stream uses it, which is at once here.
CLOSE_WITHIN_S = 3.0
SLOW_MS = 1500


def config(port, admin, ups, workers):
    """config routes /NAME/ to cluster NAME for each NAME -> Upstream in
    |ups|."""
    routes = [h.prefix_route("/%s/" % n, n) for n in ups]
    return h.build_config(port, admin, [h.router_filter(routes), h.lb_filter()],
                          [h.cluster(n, [u.addr]) for n, u in ups.items()], workers=workers)


class ReloadRemovesCluster(h.SluiceTestCase):
    def start(self, workers):
        """start runs sluice with clusters a and b, and leaves at least one
        idle pooled connection to b."""
        self.up_a = self.upstream("A")
        self.up_b = self.upstream("B")
        self.port, self.admin = h.free_port(), h.free_port()
        self.workers = workers
        s = self.sluice(config(self.port, self.admin, {"a": self.up_a, "b": self.up_b}, workers))
        # Separate client connections, so that with two workers both are
        # likely to pool one.
        for _ in range(4 * workers):
            r = h.curl([s.url("/b/hello")])
            self.assertEqual((r.status, r.headers.get("x-upstream")), (200, "B"), r)
        self.assertGreaterEqual(self.active(s, "b"), 1,
                                "no pooled connection to b: the test would prove nothing")
        return s

    def active(self, s, cluster):
        return h.mval(s.metrics(), "sluice_upstream_connections_active", cluster=cluster)

    def reload_without_b(self, s):
        s.reload(config(self.port, self.admin, {"a": self.up_a}, self.workers))
        # Sanity: b is gone from the routes, a still answers.
        self.assertEqual(h.curl([s.url("/b/hello")]).status, 404)
        r = h.curl([s.url("/a/hello")])
        self.assertEqual((r.status, r.headers.get("x-upstream")), (200, "A"), r)

    def assert_old_generation_retired(self, s):
        alive = h.wait_for(lambda: h.mval(s.metrics(), "sluice_config_generations_alive") == 1,
                           CLOSE_WITHIN_S)
        self.assertTrue(alive, "the old generation did not retire")

    def assert_b_connections_closed(self, s):
        # Today the connections stay pooled, pointing at b's freed cluster
        # state, and the gauge stays at what it was.
        closed = h.wait_for(lambda: self.active(s, "b") == 0, CLOSE_WITHIN_S, interval=0.1)
        self.assertTrue(closed, "sluice_upstream_connections_active{cluster=\"b\"} = %d %.0fs "
                        "after b was removed" % (self.active(s, "b"), CLOSE_WITHIN_S))

    def stop_clean(self, s):
        # Sluice.stop fails on any sanitizer report (heap-use-after-free in
        # uconn_free today, ASan build).
        self._procs.remove(s)
        self.assertEqual(s.stop(), 0, s.log_text()[-2000:])

    def upstream_closes_idle_connection(self, workers):
        s = self.start(workers)
        self.reload_without_b(s)
        self.assert_old_generation_retired(s)
        self.assert_b_connections_closed(s)
        # Were a connection to b still pooled, b's exit would EOF it into
        # sluice, which would then release it against freed cluster state.
        self.up_b.stop()
        for _ in range(10):
            r = h.curl([s.url("/a/hello")])
            self.assertEqual((r.status, r.headers.get("x-upstream")), (200, "A"), r)
        self.assertTrue(s.alive())
        self.stop_clean(s)

    def test_upstream_closes_idle_connection_1_worker(self):
        self.upstream_closes_idle_connection(1)

    def test_upstream_closes_idle_connection_2_workers(self):
        self.upstream_closes_idle_connection(2)

    def test_sigterm_after_removal(self):
        # b stays up: only the shutdown path (upstream_pools_free) could meet
        # a leftover connection to it.
        s = self.start(2)
        self.reload_without_b(s)
        self.assert_old_generation_retired(s)
        self.assert_b_connections_closed(s)
        self.stop_clean(s)

    def test_stream_in_flight_during_removal(self):
        s = self.start(1)
        before = h.mval(s.metrics(), "sluice_upstream_requests_total", cluster="b")
        res = []
        t = threading.Thread(target=lambda: res.append(
            h.curl([s.url("/b/slow?ms=%d" % SLOW_MS)], timeout=10)), daemon=True)
        t.start()
        started = h.wait_for(lambda: h.mval(s.metrics(), "sluice_upstream_requests_total",
                                            cluster="b") > before, 3, interval=0.02)
        self.assertTrue(started, "the slow request never reached cluster b")
        self.reload_without_b(s)
        # Sanity: the reload really happened while the stream was in flight.
        self.assertTrue(t.is_alive(), "the slow response finished before the reload")
        t.join(15)
        self.assertFalse(t.is_alive())
        r = res[0]
        self.assertEqual((r.status, r.body, r.headers.get("x-upstream")),
                         (200, b"slow %d\n" % SLOW_MS, "B"), r)
        # The stream kept the old generation alive; when it ended, its
        # connection must not go back into a pool that outlives b.
        self.assert_old_generation_retired(s)
        self.assert_b_connections_closed(s)
        self.up_b.stop()
        self.assertEqual(h.curl([s.url("/a/hello")]).status, 200)
        self.stop_clean(s)


if __name__ == "__main__":
    h.main()
