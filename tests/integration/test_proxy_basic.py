"""Basic HTTP/1.1 proxying through router + lb to real upstreams."""

import socket
import time
import os
import re

import harness as h

PATHS = ["/hello", "/echo", "/headers", "/bytes", "/status", "/slow", "/sink", "/close"]


class ProxyBasic(h.SluiceTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        try:
            cls.a = cls.class_upstream("A")
            cls.b = cls.class_upstream("B")
            routes = [h.direct(None, 200, "hello from sluice\n", path="/direct")]
            routes += [h.route_to("pair", prefix=p) for p in PATHS]
            cfg = h.build_config(h.free_port(), h.free_port(),
                                 [h.router_filter(routes), h.lb_filter()],
                                 [h.cluster("pair", [cls.a.addr, cls.b.addr])])
            cls.s = cls.class_sluice(cfg)
        except BaseException:
            cls.tearDownClass()
            raise
        cls.blob = os.path.join(cls.workdir, "blob.bin")
        with open(cls.blob, "wb") as f:
            f.write(bytes((i * 7 + 3) & 0xFF for i in range(300 * 1024)))

    def test_get_through_proxy(self):
        r = h.curl([self.s.url("/hello")])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, b"hello\n")
        self.assertIn(r.headers.get("x-upstream"), ("A", "B"))

    def test_round_robin_alternates(self):
        urls = [self.s.url("/hello")] * 8
        rc, out, err = h.curl_w(urls, "%header{x-upstream}\n")
        self.assertEqual(rc, 0, err)
        seq = out.split()
        self.assertEqual(len(seq), 8, out)
        self.assertEqual(set(seq), {"A", "B"}, seq)
        for x, y in zip(seq, seq[1:]):
            self.assertNotEqual(x, y, "round robin did not alternate: %s" % seq)

    def test_direct_response(self):
        r = h.curl([self.s.url("/direct")])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, b"hello from sluice\n")
        self.assertNotIn("x-upstream", r.headers)

    def test_no_route_404(self):
        r = h.curl([self.s.url("/no/such/route")])
        self.assertEqual(r.status, 404, r)
        self.assertNotIn("x-upstream", r.headers)

    def test_keepalive_reuse(self):
        rc, err = h.curl_v(["-o", "/dev/null", self.s.url("/hello"),
                            "-o", "/dev/null", self.s.url("/hello")])
        self.assertEqual(rc, 0, err)
        self.assertIn("Re-using existing connection", err)
        self.assertEqual(err.count("< HTTP/1.1 200"), 2, err)

    def test_pipelining(self):
        c = h.RawConn(self.s.port)
        try:
            req = "".join("GET /bytes?n=%d HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % n
                          for n in (3, 7, 11))
            c.send(req)
            for n in (3, 7, 11):
                status, hdrs, body = c.read_response()
                self.assertEqual(status, 200, hdrs)
                self.assertEqual(body, b"x" * n)
        finally:
            c.close()

    def _half_close(self, raw):
        """_half_close sends |raw|, shuts down our sending side, and returns
        everything sluice sends until it closes."""
        sock = socket.create_connection(("127.0.0.1", self.s.port), timeout=5)
        try:
            sock.sendall(raw)
            sock.shutdown(socket.SHUT_WR)
            data = b""
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                chunk = sock.recv(65536)
                if not chunk:
                    return data
                data += chunk
            self.fail("sluice did not close after a half-closed client: %r" % data[:200])
        finally:
            sock.close()

    def test_half_close_after_pipelined_requests_is_answered(self):
        # nc-style clients send their requests and shut down writing: every
        # complete request is still answered, then sluice closes.
        data = self._half_close(b"GET /bytes?n=5 HTTP/1.1\r\nHost: x\r\n\r\n"
                                b"GET /bytes?n=9 HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(data.count(b"HTTP/1.1 200"), 2, data)
        self.assertTrue(data.endswith(b"x" * 9), data[-40:])

    def test_half_close_mid_body_gets_no_response(self):
        # A body cut short can never be completed: no response, just close.
        data = self._half_close(b"POST /sink HTTP/1.1\r\nHost: x\r\ncontent-length: 10\r\n\r\nabc")
        self.assertEqual(data, b"")

    def test_post_content_length_echo(self):
        r = h.curl(["-H", "Expect:", "-H", "Content-Type: application/octet-stream",
                    "--data-binary", "@" + self.blob, self.s.url("/echo")])
        self.assertEqual(r.status, 200, r)
        with open(self.blob, "rb") as f:
            self.assertEqual(r.body, f.read())

    def test_post_chunked_echo(self):
        r = h.curl(["-H", "Expect:", "-H", "Transfer-Encoding: chunked",
                    "-H", "Content-Type: application/octet-stream",
                    "--data-binary", "@" + self.blob, self.s.url("/echo")])
        self.assertEqual(r.status, 200, r)
        with open(self.blob, "rb") as f:
            self.assertEqual(r.body, f.read())

    def test_expect_100_continue(self):
        # --expect100-timeout long enough that curl only sends the body after
        # a real 100 Continue (or fails the timing assertion below).
        r = h.curl(["-H", "Expect: 100-continue", "--expect100-timeout", "8",
                    "-H", "Content-Type: application/octet-stream",
                    "--data-binary", "@" + self.blob, self.s.url("/echo")], timeout=15)
        self.assertEqual(r.statuses, [100, 200], r)
        with open(self.blob, "rb") as f:
            self.assertEqual(r.body, f.read())

    def _upstream_headers(self, extra_args=()):
        r = h.curl(list(extra_args) + [self.s.url("/headers")])
        self.assertEqual(r.status, 200, r)
        lines = r.text().splitlines()
        self.assertTrue(lines and lines[0].startswith("GET /headers"), r.text())
        hdrs = []
        for ln in lines[1:]:
            if ":" in ln:
                k, v = ln.split(":", 1)
                hdrs.append((k.strip().lower(), v.strip()))
        return hdrs

    def test_hop_by_hop_removed(self):
        hdrs = self._upstream_headers(["-H", "Connection: x-foo", "-H", "x-foo: 1",
                                       "-H", "keep-alive: timeout=5", "-H", "x-keep: yes"])
        names = [k for k, _ in hdrs]
        self.assertNotIn("x-foo", names, hdrs)
        self.assertNotIn("keep-alive", names, hdrs)
        self.assertIn(("x-keep", "yes"), hdrs)  # an ordinary header does pass
        for k, v in hdrs:
            if k == "connection":
                self.assertNotIn("x-foo", v.lower(), hdrs)

    def test_forwarding_headers(self):
        hdrs = self._upstream_headers()
        d = {}
        for k, v in hdrs:
            d.setdefault(k, []).append(v)
        self.assertIn("x-forwarded-for", d, hdrs)
        self.assertIn("127.0.0.1", ",".join(d["x-forwarded-for"]))
        self.assertEqual(d.get("x-forwarded-proto"), ["http"], hdrs)
        self.assertIn("via", d, hdrs)
        self.assertIn("sluice", ",".join(d["via"]))
        self.assertEqual(len(d.get("x-request-id", [])), 1, hdrs)
        self.assertRegex(d["x-request-id"][0], h.UUID_RE)
        # version-4 UUID: 13th hex digit is 4, 17th is 8..b
        self.assertRegex(d["x-request-id"][0], r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab]")

    def test_forwarded_for_appends(self):
        hdrs = self._upstream_headers(["-H", "X-Forwarded-For: 203.0.113.7"])
        xff = ",".join(v for k, v in hdrs if k == "x-forwarded-for")
        self.assertRegex(xff, r"203\.0\.113\.7\s*,\s*127\.0\.0\.1", hdrs)

    def test_forwarded_proto_from_client_not_trusted(self):
        """With xff_num_trusted_hops 0 (the default) a client cannot claim a
        scheme: its x-forwarded-proto is replaced by the connection's."""
        hdrs = self._upstream_headers(["-H", "X-Forwarded-Proto: https"])
        self.assertEqual([v for k, v in hdrs if k == "x-forwarded-proto"], ["http"], hdrs)

    def test_request_id_preserved(self):
        hdrs = self._upstream_headers(["-H", "x-request-id: my-trace-0042"])
        ids = [v for k, v in hdrs if k == "x-request-id"]
        self.assertEqual(ids, ["my-trace-0042"], hdrs)

    def test_request_ids_unique(self):
        a = [v for k, v in self._upstream_headers() if k == "x-request-id"]
        b = [v for k, v in self._upstream_headers() if k == "x-request-id"]
        self.assertEqual(len(a), 1)
        self.assertEqual(len(b), 1)
        self.assertNotEqual(a, b)

    def test_http10_closes(self):
        r = h.curl(["-0", self.s.url("/hello")])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, b"hello\n")
        rc, err = h.curl_v(["-0", "-o", "/dev/null", self.s.url("/hello"),
                            "-o", "/dev/null", self.s.url("/hello")])
        self.assertEqual(rc, 0, err)
        self.assertNotIn("Re-using existing connection", err)
        # curl closes because the response said so (HTTP/1.0 without
        # keep-alive, or connection: close), not because a reuse failed.
        self.assertNotIn("Connection died", err)
        self.assertRegex(err, r"(?i)< connection: close|< HTTP/1\.0 ", err)
        self.assertEqual(len(re.findall(r"< HTTP/1\.[01] 200", err)), 2, err)

    def test_head_request(self):
        r = h.curl(["-I", self.s.url("/hello")])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, b"")
        # the connection stays usable after a HEAD (no body was expected)
        rc, err = h.curl_v(["-I", self.s.url("/hello"), self.s.url("/hello")])
        self.assertEqual(rc, 0, err)
        self.assertEqual(err.count("< HTTP/1.1 200"), 2, err)

    def test_upstream_status_passthrough(self):
        for code in (201, 404, 503):
            r = h.curl([self.s.url("/status/%d" % code)])
            self.assertEqual(r.status, code, r)
            self.assertIn(r.headers.get("x-upstream"), ("A", "B"))


class ForwardedTrust(h.SluiceTestCase):
    """A listener behind one trusted proxy that already appended the client
    (use_remote_address false, xff_num_trusted_hops 1): X-Forwarded-For
    passes unchanged and the hop's x-forwarded-proto is kept."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        try:
            cls.a = cls.class_upstream("A")
            cfg = h.build_config(h.free_port(), h.free_port(),
                                 [{"name": "client", "module": h.test_module("client_addr")},
                                  h.router_filter([h.route_to("one", prefix="/")]),
                                  h.lb_filter()],
                                 [h.cluster("one", [cls.a.addr])],
                                 listener_extra={"use_remote_address": False,
                                                 "xff_num_trusted_hops": 1})
            cls.s = cls.class_sluice(cfg)
        except BaseException:
            cls.tearDownClass()
            raise

    def upstream_headers(self, args):
        r = h.curl(list(args) + [self.s.url("/headers")])
        self.assertEqual(r.status, 200, r)
        out = []
        for ln in r.text().splitlines()[1:]:
            if ":" in ln:
                k, v = ln.split(":", 1)
                out.append((k.strip().lower(), v.strip()))
        return out

    def test_xff_not_appended(self):
        hdrs = self.upstream_headers(["-H", "X-Forwarded-For: 203.0.113.7, 198.51.100.2"])
        self.assertEqual([v for k, v in hdrs if k == "x-forwarded-for"],
                         ["203.0.113.7, 198.51.100.2"], hdrs)

    def test_trusted_client_address(self):
        """Envoy's rule without use_remote_address: the (hops + 1)th address
        from the right; the peer when X-Forwarded-For is shorter. Filters see
        it as slc_stream_info_t.client_address (tests/filters/client_addr.c)."""
        def client(args):
            return [v for k, v in self.upstream_headers(args) if k == "x-sluice-client-address"]
        self.assertEqual(client(["-H", "X-Forwarded-For: 203.0.113.7, 198.51.100.2"]),
                         ["203.0.113.7"])
        self.assertEqual(client(["-H", "X-Forwarded-For: 192.0.2.1,203.0.113.9 , 198.51.100.2"]),
                         ["203.0.113.9"])
        self.assertEqual(client(["-H", "X-Forwarded-For: 198.51.100.2"]), ["127.0.0.1"])
        # Not an address (Envoy's rule too): the peer.
        self.assertEqual(client(["-H", "X-Forwarded-For: unknown, 198.51.100.2"]), ["127.0.0.1"])
        self.assertEqual(client(["-H", "X-Forwarded-For: 203.0.113.7:4711, 198.51.100.2"]),
                         ["127.0.0.1"])
        self.assertEqual(client(["-H", "X-Forwarded-For: 2001:db8::7, 198.51.100.2"]),
                         ["2001:db8::7"])
        self.assertEqual(client([]), ["127.0.0.1"])

    def test_trusted_forwarded_proto_kept(self):
        hdrs = self.upstream_headers(["-H", "X-Forwarded-Proto: https"])
        self.assertEqual([v for k, v in hdrs if k == "x-forwarded-proto"], ["https"], hdrs)

    def test_forwarded_proto_added_when_absent(self):
        hdrs = self.upstream_headers([])
        self.assertEqual([v for k, v in hdrs if k == "x-forwarded-proto"], ["http"], hdrs)
        self.assertEqual([v for k, v in hdrs if k == "x-forwarded-for"], [], hdrs)


if __name__ == "__main__":
    h.main()
