"""Bodies cross sluice as data, never as the peer's framing: the
downstream codec strips the client's chunking, the upstream side frames the
data anew (and the other way for responses). What an upstream sees of a
chunked request is therefore plain chunks without the client's chunk
extensions or trailers; what a client sees of a chunked response is sluice's
own chunks; an HTTP/1.0 client gets the data close-delimited. Trailer
fields travel as fields (re-serialized; any that frame or route a message
are dropped). The origin here is a raw socket server that records every byte
it reads."""

import socket
import threading
import time

import harness as h


def chunked_complete(body):
    """chunked_complete: |body| holds a whole chunked body (chunks, the last
    chunk, trailer lines and the empty line that ends them)."""
    i = 0
    while True:
        eol = body.find(b"\r\n", i)
        if eol < 0:
            return False
        size = int(body[i:eol].split(b";")[0], 16)
        i = eol + 2
        if size == 0:
            break
        i += size + 2
    while True:
        eol = body.find(b"\r\n", i)
        if eol < 0:
            return False
        if eol == i:
            return True
        i = eol + 2


class RawOrigin:
    """RawOrigin answers each connection's one request with |response|
    (bytes) after reading the request head and, if chunked, the body up to
    its last chunk; it records the raw request bytes. In-process threads, no
    PID; stop() closes the listener."""

    def __init__(self, response):
        self.response = response
        self.requests = []
        self.lock = threading.Lock()
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(16)
        self.ls.settimeout(0.1)
        self.addr = "127.0.0.1:%d" % self.ls.getsockname()[1]
        self.stopping = False
        self.t = threading.Thread(target=self._accept, daemon=True)
        self.t.start()

    def _accept(self):
        while not self.stopping:
            try:
                c, _ = self.ls.accept()
            except (socket.timeout, OSError):
                continue
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        c.settimeout(5)
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                d = c.recv(65536)
                if not d:
                    return
                data += d
            head = data.split(b"\r\n\r\n", 1)[0].lower()
            if b"transfer-encoding: chunked" in head:
                while not chunked_complete(data.split(b"\r\n\r\n", 1)[1]):
                    d = c.recv(65536)
                    if not d:
                        break
                    data += d
            elif b"content-length:" in head:
                n = int(head.split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
                while len(data.split(b"\r\n\r\n", 1)[1]) < n:
                    d = c.recv(65536)
                    if not d:
                        break
                    data += d
            with self.lock:
                self.requests.append(data)
            c.sendall(self.response)
        except OSError:
            pass
        finally:
            c.close()

    def stop(self):
        self.stopping = True
        self.t.join(2)
        self.ls.close()


CHUNKED_RESPONSE = (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
                    b"5;origin-ext=1\r\nhello\r\n"
                    b"7\r\n, world\r\n"
                    b"0\r\nx-origin-trailer: t\r\n\r\n")


class BodyFraming(h.SluiceTestCase):
    def start(self, response=CHUNKED_RESPONSE):
        origin = RawOrigin(response)
        self.addCleanup(origin.stop)
        cfg = h.build_config(h.free_port(), h.free_port(),
                             [h.router_filter([h.route_to("o", prefix="/")]), h.lb_filter()],
                             [h.cluster("o", [origin.addr])], workers=1)
        return origin, self.sluice(cfg)

    def raw_exchange(self, port, request):
        """raw_exchange sends |request| and returns every byte sluice sends
        back until it closes (bounded)."""
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.addCleanup(s.close)
        s.sendall(request)
        out = b""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            d = s.recv(65536)
            if not d:
                break
            out += d
        return out

    def test_request_chunks_are_reframed_for_the_upstream(self):
        origin, s = self.start()
        req = (b"POST /up HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n"
               b"connection: close\r\n\r\n"
               b"3;client-ext=\"q\"\r\nabc\r\n"
               b"4\r\ndefg\r\n"
               b"0\r\nx-client-trailer:  1 \r\ncontent-length: 9\r\n\r\n")
        self.raw_exchange(s.port, req)
        self.assertTrue(h.wait_for(lambda: origin.requests, 5), "the origin got no request")
        got = origin.requests[0]
        head, body = got.split(b"\r\n\r\n", 1)
        self.assertIn(b"transfer-encoding: chunked", head.lower())
        # The data, chunked by sluice: no extension; the trailer field as a
        # field, the framing one (content-length) dropped.
        self.assertEqual(body, b"3\r\nabc\r\n4\r\ndefg\r\n0\r\nx-client-trailer: 1\r\n\r\n")

    def test_response_chunks_are_reframed_for_the_client(self):
        _, s = self.start()
        out = self.raw_exchange(s.port, b"GET /r HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        head, body = out.split(b"\r\n\r\n", 1)
        self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
        self.assertIn(b"transfer-encoding: chunked", head.lower())
        self.assertNotIn(b"origin-ext", body)
        self.assertEqual(body, b"5\r\nhello\r\n7\r\n, world\r\n0\r\nx-origin-trailer: t\r\n\r\n")

    def test_http10_client_gets_the_data_close_delimited(self):
        _, s = self.start()
        out = self.raw_exchange(s.port, b"GET /r HTTP/1.0\r\nhost: x\r\n\r\n")
        head, body = out.split(b"\r\n\r\n", 1)
        self.assertNotIn(b"transfer-encoding", head.lower())
        self.assertEqual(body, b"hello, world")

    def test_close_delimited_response_is_chunked_and_the_client_kept(self):
        # The origin ends its body by closing; an HTTP/1.1 client is told the
        # end with the last chunk instead, so its connection can carry on.
        _, s = self.start(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the close")
        c = h.RawConn(s.port, timeout=5)
        self.addCleanup(c.close)
        for _ in range(2):
            c.send(b"GET /eof HTTP/1.1\r\nhost: x\r\n\r\n")
            st, hdrs, body = c.read_response()
            names = dict(hdrs)
            self.assertEqual((st, body), (200, b"until the close"))
            self.assertEqual(names.get("transfer-encoding"), "chunked")
            self.assertNotIn("connection", names)

    def test_content_length_request_keeps_its_length(self):
        origin, s = self.start(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
        out = self.raw_exchange(s.port, b"PUT /p HTTP/1.1\r\nhost: x\r\ncontent-length: 6\r\n"
                                b"connection: close\r\n\r\nsix by")
        self.assertTrue(out.endswith(b"\r\n\r\nok"), out)
        head, body = origin.requests[0].split(b"\r\n\r\n", 1)
        self.assertIn(b"content-length: 6", head.lower())
        self.assertNotIn(b"transfer-encoding", head.lower())
        self.assertEqual(body, b"six by")


if __name__ == "__main__":
    h.main()
