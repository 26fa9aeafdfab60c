"""The transport interface: a connection filter (tests/filters/xor_transport.c)
installs a byte transport on downstream connections. sluice's core links no
TLS library and knows nothing of the encoding, yet requests flow through it
both ways, handshake bytes go out before any plaintext, the peer identity the
transport reports reaches request filters, and a client that fails the
handshake is cut off. No off-the-shelf client speaks this toy transport, so
the test speaks it over a raw socket; real TLS is driven with openssl s_client
once the mtls filter exists."""

import socket
import time
import unittest

import harness as h

KEY = 77
IDENTITY = b"spiffe://cluster.local/ns/demo/sa/client"


def xor(b):
    return bytes(x ^ KEY for x in b)


class Transport(h.SluiceTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        try:
            cls.up = cls.class_upstream("TR")
            filters = [{"name": "tls", "module": h.test_module("xor_transport"),
                        "config": {"key": KEY}},
                       h.router_filter([h.route_to("c", prefix="/")]), h.lb_filter()]
            cfg = h.build_config(h.free_port(), h.free_port(), filters,
                                 [h.cluster("c", [cls.up.addr])], workers=2)
            cls.s = cls.class_sluice(cfg)
        except BaseException:
            cls.tearDownClass()
            raise

    def connect(self):
        sock = socket.create_connection(("127.0.0.1", self.s.port), timeout=5)
        self.addCleanup(sock.close)
        return sock

    def read_until(self, sock, pred, limit=1 << 20):
        data = b""
        deadline = time.monotonic() + 5
        while not pred(data) and time.monotonic() < deadline and len(data) < limit:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data

    def handshake(self, sock):
        sock.sendall(b"SLC-HELLO " + IDENTITY + b"\n")
        ok = self.read_until(sock, lambda d: b"\n" in d)
        self.assertEqual(ok, b"SLC-OK\n")

    def request(self, sock, path, body=b""):
        head = ("POST %s HTTP/1.1\r\nHost: t\r\ncontent-length: %d\r\n\r\n" % (path, len(body)))
        sock.sendall(xor(head.encode() + body))
        plain = b""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            plain += xor(chunk)
            if b"\r\n\r\n" in plain:
                head_b, rest = plain.split(b"\r\n\r\n", 1)
                cl = [l for l in head_b.split(b"\r\n") if l.lower().startswith(b"content-length:")]
                if cl and len(rest) >= int(cl[0].split(b":")[1]):
                    return head_b, rest
                te = [l for l in head_b.split(b"\r\n")
                      if l.lower().startswith(b"transfer-encoding:")]
                if te and rest.endswith(b"0\r\n\r\n"):
                    return head_b, rest
        self.fail("no complete response; got %r" % plain[:300])

    def test_request_through_transport_carries_identity(self):
        sock = self.connect()
        self.handshake(sock)
        head, body = self.request(sock, "/headers")
        self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
        self.assertIn(b"x-peer-identity: " + IDENTITY, body)
        # a secured connection is https to the upstream
        self.assertIn(b"x-forwarded-proto: https", body.lower())
        # keep-alive through the transport: a second request, same socket
        head2, body2 = self.request(sock, "/hello")
        self.assertTrue(head2.startswith(b"HTTP/1.1 200"), head2)

    def test_body_both_ways(self):
        sock = self.connect()
        self.handshake(sock)
        payload = bytes(range(256)) * 2000  # 512 KB: several reads and writes
        head, body = self.request(sock, "/echo", payload)
        self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
        # /echo answers chunked: strip the framing
        out, rest = b"", body
        while rest:
            size_line, rest = rest.split(b"\r\n", 1)
            n = int(size_line.split(b";")[0], 16)
            if n == 0:
                break
            out += rest[:n]
            rest = rest[n + 2:]
        self.assertEqual(out, payload)

    def counters(self):
        m = self.s.metrics()
        return {
            "conns": h.mval(m, "sluice_downstream_connections_total", listener="public"),
            "active": h.mval(m, "sluice_downstream_connections_active", listener="public"),
            "requests": h.mval(m, "sluice_requests_total", listener="public"),
            "upstream": h.mval(m, "sluice_upstream_requests_total", cluster="c"),
            "proto_errors": h.mval(m, "sluice_downstream_protocol_errors_total", listener="public"),
            "aborts": h.mval(m, "sluice_downstream_aborts_total", listener="public"),
        }

    def assertRefusedQuietly(self, before):
        """assertRefusedQuietly checks what a refused handshake costs: one
        connection accepted and closed again, and no request, upstream
        request, protocol error or abort counted (the transport's recv
        failed the socket before the codec saw a byte)."""
        self.assertTrue(h.wait_for(lambda: self.counters()["active"] == 0, 3),
                        "the refused connection is still open: %r" % self.counters())
        after = self.counters()
        self.assertEqual(after["conns"] - before["conns"], 1, (before, after))
        for k in ("requests", "upstream", "proto_errors", "aborts"):
            self.assertEqual(after[k], before[k], (k, before, after))

    def quiet(self):
        """quiet waits until no connection of an earlier test is open, so
        the counters start from rest."""
        self.assertTrue(h.wait_for(lambda: self.counters()["active"] == 0, 3), self.counters())
        return self.counters()

    def test_bad_handshake_is_cut_off(self):
        # The transport's recv returns an error on the first line that is
        # not "SLC-HELLO ...": sluice closes the socket at once (an orderly
        # FIN: every byte sent was read), writing nothing, not even the
        # transport's shutdown (the sio is dead, so sio_close skips it).
        before = self.quiet()
        sock = self.connect()
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        t0 = time.monotonic()
        sock.settimeout(3)
        data = sock.recv(65536)  # a reset or a timeout raises: neither is what sluice does
        self.assertEqual(data, b"", "a client that fails the handshake must get nothing back")
        self.assertLess(time.monotonic() - t0, 1.0, "closed only after a timeout")
        self.assertRefusedQuietly(before)

    def test_oversized_hello_is_cut_off(self):
        # No newline within the 128-byte hello buffer: refused the same way.
        before = self.quiet()
        sock = self.connect()
        sock.sendall(b"SLC-HELLO " + b"x" * 200)
        sock.settimeout(3)
        self.assertEqual(sock.recv(65536), b"")
        self.assertRefusedQuietly(before)

    def test_plaintext_http_gets_nothing_readable(self):
        # curl speaks plain HTTP, which fails the handshake: the connection
        # closes with no byte of response (curl exit 52, "Empty reply from
        # server"), not an HTTP error status.
        before = self.quiet()
        r = h.curl([self.s.url("/hello")], timeout=5, check=False)
        self.assertEqual((r.rc, r.status, r.body), (52, 0, b""), r)
        self.assertIn("Empty reply from server", r.stderr)
        self.assertRefusedQuietly(before)


if __name__ == "__main__":
    unittest.main()
