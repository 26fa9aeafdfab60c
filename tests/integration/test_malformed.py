"""Malformed requests over raw sockets: right status, connection closed,
protocol-error counter incremented by one each, and sluice keeps serving."""

import time

import harness as h

HOST = "Host: 127.0.0.1\r\n"

# (name, raw request, expected status, expected `reason` label)
CASES = [
    ("bad_method_char", "GE(T / HTTP/1.1\r\n" + HOST + "\r\n", 400, "bad_method"),
    ("bare_lf", "GET / HTTP/1.1\nHost: 127.0.0.1\n\n", 400, "bare_lf"),
    ("obs_fold", "GET / HTTP/1.1\r\n" + HOST + "X-A: a\r\n  b\r\n\r\n", 400, "obs_fold"),
    ("space_before_colon", "GET / HTTP/1.1\r\n" + HOST + "X-A : 1\r\n\r\n", 400, "space_before_colon"),
    ("cl_and_te", "POST /echo HTTP/1.1\r\n" + HOST
     + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "cl_te_conflict"),
    ("two_different_cl", "POST /echo HTTP/1.1\r\n" + HOST
     + "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400, "cl_mismatch"),
    ("te_xchunked", "POST /echo HTTP/1.1\r\n" + HOST
     + "Transfer-Encoding: xchunked\r\n\r\n", 501, "te_unsupported"),
    ("missing_host_11", "GET / HTTP/1.1\r\nUser-Agent: t\r\n\r\n", 400, "missing_host"),
    ("http_2_0", "GET / HTTP/2.0\r\n" + HOST + "\r\n", 505, "version_not_supported"),
    ("request_line_too_long", "GET /" + "a" * 2000 + " HTTP/1.1\r\n" + HOST + "\r\n", 414,
     "request_line_too_long"),
    ("head_too_big", "GET / HTTP/1.1\r\n" + HOST
     + "".join("X-Pad-%d: %s\r\n" % (i, "p" * 900) for i in range(6)) + "\r\n", 431,
     "head_too_large"),
    ("too_many_headers", "GET / HTTP/1.1\r\n" + HOST
     + "".join("X-H%d: %d\r\n" % (i, i) for i in range(12)) + "\r\n", 431,
     "too_many_headers"),
]


class Malformed(h.SluiceTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        try:
            cls.up = cls.class_upstream("M")
            cfg = h.build_config(
                h.free_port(), h.free_port(),
                [h.router_filter([h.route_to("c")]), h.lb_filter()],
                [h.cluster("c", [cls.up.addr])],
                listener_extra={"max_request_line": "1Ki", "max_header_bytes": "4Ki",
                                "max_headers": 10})
            cls.s = cls.class_sluice(cfg)
        except BaseException:
            cls.tearDownClass()
            raise

    def _errors(self):
        return h.mval(self.s.metrics(), "sluice_downstream_protocol_errors_total", listener="public")

    def _wait_errors(self, want, timeout=3):
        deadline = time.monotonic() + timeout
        got = self._errors()
        while got < want and time.monotonic() < deadline:
            time.sleep(0.05)
            got = self._errors()
        return got

    def test_malformed_requests(self):
        for name, raw, want, reason in CASES:
            with self.subTest(case=name):
                before = self._errors()
                rbefore = h.mval(self.s.metrics(), "sluice_downstream_protocol_errors_total",
                                 listener="public", reason=reason)
                c = h.RawConn(self.s.port, timeout=5)
                try:
                    c.send(raw)
                    status, hdrs, _ = c.read_response()
                    self.assertEqual(status, want, "%s: headers %r" % (name, hdrs))
                    self.assertTrue(c.closed_by_peer(3), "%s: connection left open" % name)
                finally:
                    c.close()
                got = self._wait_errors(before + 1)
                self.assertEqual(got - before, 1, "%s: protocol error counter delta" % name)
                rafter = h.mval(self.s.metrics(), "sluice_downstream_protocol_errors_total",
                                listener="public", reason=reason)
                self.assertEqual(rafter - rbefore, 1, "%s: reason=%s delta; series %r"
                                 % (name, reason, h.mseries(self.s.metrics(),
                                                           "sluice_downstream_protocol_errors_total")))
        # sluice still serves
        r = h.curl([self.s.url("/hello")])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, b"hello\n")

    def test_counter_reasons_labelled(self):
        m = self.s.metrics()
        # Send one of each class, then expect at least one series per listener
        # with a non-empty reason label.
        c = h.RawConn(self.s.port)
        try:
            c.send(CASES[0][1])
            self.assertEqual(c.read_response()[0], 400)
        finally:
            c.close()
        self._wait_errors(h.mval(m, "sluice_downstream_protocol_errors_total", listener="public") + 1)
        series = h.mseries(self.s.metrics(), "sluice_downstream_protocol_errors_total")
        self.assertTrue(series)
        for labels in series:
            d = dict(labels)
            self.assertIn("listener", d, labels)
            self.assertTrue(d.get("reason"), labels)

    def test_good_request_after_garbage_on_other_conn(self):
        bad = h.RawConn(self.s.port)
        good = h.RawConn(self.s.port)
        try:
            bad.send("\x00\x01\x02 garbage\r\n\r\n")
            good.send("GET /hello HTTP/1.1\r\n" + HOST + "\r\n")
            status, _, body = good.read_response()
            self.assertEqual((status, body), (200, b"hello\n"))
            st, _, _ = bad.read_response()
            self.assertEqual(st, 400)
            self.assertTrue(bad.closed_by_peer(3))
        finally:
            bad.close()
            good.close()


if __name__ == "__main__":
    h.main()
