"""The access-log filter on real traffic: the real sluice binary, real curl,
sluice-upstream and an in-process upstream, all on 127.0.0.1.

(a) One JSON-format instance sees a success, a 404 with no route (NR), a
    403 from rbac (the line names the policy), a retried request (a 503
    upstream, then a good one: 2 attempts), a 503 with UO from the
    circuit-breaker's pool limits, and hostile header values sent on a raw
    socket: every line parses as JSON and the values round-trip (invalid
    UTF-8 bytes become U+FFFD).
(b) A logrotate-style rename of the file under a bounded load loop: the
    lines in the moved file and the new one together are exactly the
    requests sent.
(c) A curl client with a SPIFFE certificate (certs.py) on an mtls STRICT
    listener: %DOWNSTREAM_PEER_URI_SAN% is its SPIFFE ID and
    %REQUESTED_SERVER_NAME% the SNI it sent.
"""

import json
import os
import socket
import threading
import time
import unittest

import certs
import harness as h
from test_mtls import CLIENT_ID, SLUICE_ID, https, mtls_filter


def read_lines(path):
    try:
        with open(path, "rb") as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


class AccessLog(h.SluiceTestCase):
    def wait_lines(self, path, n, timeout=5):
        ok = h.wait_for(lambda: len(read_lines(path)) >= n, timeout)
        lines = read_lines(path)
        self.assertTrue(ok, "%d lines, want %d: %r" % (len(lines), n, lines[-5:]))
        return lines

    def test_json_lines_for_every_outcome(self):
        a = self.upstream("A")
        # lim shares A's address with clusters ok and retry on purpose: its
        # max_connections must hold even though another cluster has idle
        # connections to the same address (pools are per cluster; they once
        # were per address and lim borrowed ok's connection).
        bad = h.PyUpstream("BAD", status=503)
        self.addCleanup(bad.stop)
        log = os.path.join(self.tdir, "access.json")
        alog = {"name": "alog", "module": "access-log", "config": {
            "path": log,
            "flush_interval": "20ms",
            "json_format": {
                "method": "%REQ(:METHOD)%", "path": "%REQ(:PATH)%", "code": "%RESPONSE_CODE%",
                "flags": "%RESPONSE_FLAGS%", "upstream": "%UPSTREAM_HOST%",
                "cluster": "%UPSTREAM_CLUSTER%", "policy": "%RBAC_POLICY%",
                "attempts": "%UPSTREAM_REQUEST_ATTEMPT_COUNT%", "evil": "%REQ(x-evil)%",
                "tag": "%REQ(x-tag)%", "peer": "%DOWNSTREAM_REMOTE_ADDRESS%",
                "duration": "%DURATION%"}}}
        authz = {"name": "authz", "module": "rbac", "config": {"policies": [
            {"name": "ns/deny-denied", "action": "DENY",
             "rules": [{"to": [{"operation": {"paths": ["/ok/denied"]}}]}]}]}}
        # /C/x goes to cluster C as /x (sluice-upstream serves fixed paths).
        # /slow goes to lim unchanged (a rewrite would not keep the query).
        routes = ([{"match": {"prefix": "/slow"}, "route": {"cluster": "lim"}}] +
                  [h.prefix_route("/%s/" % c, c) for c in ("ok", "retry")])
        filters = [alog, authz, h.router_vhosts([h.vhost(["*"], routes)]),
                   h.cb_filter({"lim": {"connection_pool": {
                       "tcp": {"max_connections": 1},
                       "http": {"http1_max_pending_requests": 1}}}}),
                   h.lb_filter_cfg({"policy": "round_robin"})]
        clusters = [h.cluster("ok", [a.addr]), h.cluster("retry", [bad.addr, a.addr]),
                    h.cluster("lim", [a.addr])]
        s = self.sluice(h.build_config(h.free_port(), h.free_port(), filters, clusters,
                                       workers=2))

        self.assertEqual(h.curl([s.url("/ok/hello"), "-H", "x-tag: ok"]).status, 200)
        self.assertEqual(h.curl([s.url("/nomatch"), "-H", "x-tag: nr"]).status, 404)
        self.assertEqual(h.curl([s.url("/ok/denied"), "-H", "x-tag: rbac"]).status, 403)
        # Round robin over [BAD, A] (each worker has its own rotation): of two
        # requests at least one first meets BAD's 503 and is retried on A
        # (the router retries 503 by default).
        for i in range(2):
            self.assertEqual(h.curl([s.url("/retry/hello"), "-H", "x-tag: retry"]).status, 200)
        self.assertGreaterEqual(len(bad.requests), 1)

        # UO: one request holds lim's only connection for 2 s; of three more
        # sent meanwhile at most one may wait (the one pending slot), the
        # others overflow at once with 503 UO.
        holder = threading.Thread(target=h.curl, args=([s.url("/slow?ms=2000"),
                                                        "-H", "x-tag: holder"],), daemon=True)
        holder.start()
        self.assertTrue(h.wait_for(lambda: h.mval(s.metrics(), "sluice_upstream_requests_total",
                                                  cluster="lim") == 1, 3))
        racers = [threading.Thread(target=h.curl, args=([s.url("/slow?ms=1"), "-H", "x-tag: uo"],),
                                   daemon=True) for _ in range(3)]
        for t in racers:
            t.start()
        for t in racers + [holder]:
            t.join(10)

        # Hostile values on a raw socket: quotes, backslashes, a tab, braces,
        # valid UTF-8 and bytes that are not UTF-8 (obs-text).
        evil = b'q"uote \\back\\ \ttab }{,: caf\xc3\xa9 bad\xff\xfe end'
        sock = socket.create_connection(("127.0.0.1", s.port), timeout=5)
        self.addCleanup(sock.close)
        sock.sendall(b"GET /ok/hello HTTP/1.1\r\nHost: t\r\nx-tag: evil\r\nx-evil: " + evil +
                     b"\r\nconnection: close\r\n\r\n")
        got = b""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            got += chunk
        self.assertTrue(got.startswith(b"HTTP/1.1 200"), got[:200])

        lines = self.wait_lines(log, 10)
        recs = {}
        for ln in lines:
            rec = json.loads(ln.decode("utf-8"))  # every line is valid UTF-8 JSON
            self.assertEqual(json.loads(json.dumps(rec)), rec)
            recs.setdefault(rec["tag"], []).append(rec)

        ok = recs["ok"][0]
        self.assertEqual((ok["method"], ok["path"], ok["code"], ok["flags"]),
                         ("GET", "/hello", 200, None))
        self.assertEqual((ok["upstream"], ok["cluster"], ok["attempts"]), (a.addr, "ok", 1))
        self.assertTrue(ok["peer"].startswith("127.0.0.1:"), ok)
        self.assertIsInstance(ok["duration"], int)
        nr = recs["nr"][0]
        self.assertEqual((nr["code"], nr["flags"], nr["upstream"]), (404, "NR", None))
        rb = recs["rbac"][0]
        self.assertEqual((rb["code"], rb["flags"], rb["policy"]), (403, "UAEX", "ns/deny-denied"))
        retried = [r for r in recs["retry"] if r["attempts"] == 2]
        self.assertEqual(len(recs["retry"]), 2)
        self.assertGreaterEqual(len(retried), 1, recs["retry"])
        self.assertEqual(len(retried), len(bad.requests), recs["retry"])
        for r in recs["retry"]:
            self.assertEqual((r["code"], r["upstream"]), (200, a.addr), r)
        uo = [r for r in recs["uo"] if r["code"] == 503]
        self.assertGreaterEqual(len(uo), 2, recs["uo"])
        self.assertEqual((uo[0]["flags"], uo[0]["cluster"]), ("UO", "lim"))
        ev = recs["evil"][0]
        self.assertEqual(ev["evil"], evil.decode("utf-8", "replace"))
        self.assertIn("\ufffd\ufffd", ev["evil"])
        self.assertIn("caf\u00e9", ev["evil"])

        m = s.metrics()
        self.assertEqual(h.mval(m, "sluice_access_log_dropped_total", filter="alog"), 0)

    def test_rename_under_load_loses_no_line(self):
        a = self.upstream("A")
        log = os.path.join(self.tdir, "access.log")
        moved = log + ".1"
        alog = {"name": "alog", "module": "access-log", "config": {
            "path": log, "flush_interval": "20ms", "format": "%REQ(x-seq)%\n"}}
        filters = [alog, h.router_vhosts([h.vhost(["*"], [
            {"match": {"prefix": "/"}, "route": {"cluster": "c"}}])]),
            h.lb_filter_cfg({"policy": "round_robin"})]
        s = self.sluice(h.build_config(h.free_port(), h.free_port(), filters,
                                       [h.cluster("c", [a.addr])], workers=2))
        n = 300
        sent = []
        for i in range(n):
            if i == n // 2:
                os.rename(log, moved)  # logrotate's move; sluice is not told
            sock = socket.create_connection(("127.0.0.1", s.port), timeout=5)
            try:
                sock.sendall(("GET /hello HTTP/1.1\r\nHost: t\r\nx-seq: %d\r\n"
                              "connection: close\r\n\r\n" % i).encode())
                data = b""
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                self.assertTrue(data.startswith(b"HTTP/1.1 200"), data[:100])
                sent.append(str(i).encode())
            finally:
                sock.close()
        ok = h.wait_for(lambda: len(read_lines(moved)) + len(read_lines(log)) >= n, 5)
        old, new = read_lines(moved), read_lines(log)
        self.assertTrue(ok, "old %d + new %d lines, want %d" % (len(old), len(new), n))
        self.assertEqual(sorted(old + new, key=int), sent)
        self.assertGreater(len(old), 0)
        self.assertGreater(len(new), 0, "the writer never reopened the path")


class AccessLogMtls(h.SluiceTestCase):
    def test_spiffe_identity_and_sni(self):
        a = self.upstream("A")
        pki = os.path.join(self.tdir, "pki")
        ca = certs.CA(pki, "root")
        server = ca.issue("sluice", spiffe=SLUICE_ID, dns=["localhost"], ips=["127.0.0.1"])
        certs_dir = ca.istio_dir(os.path.join(pki, "istio-sluice"), leaf=server)
        client = ca.issue("client", spiffe=CLIENT_ID)
        log = os.path.join(self.tdir, "access.log")
        filters = [mtls_filter({"mode": "STRICT", "certs_dir": certs_dir}),
                   {"name": "alog", "module": "access-log", "config": {
                       "path": log, "flush_interval": "20ms",
                       "format": "%DOWNSTREAM_PEER_URI_SAN% %REQUESTED_SERVER_NAME% "
                                 "%RESPONSE_CODE%\n"}},
                   h.router_filter([h.route_to("up")]), h.lb_filter()]
        s = self.sluice(h.build_config(h.free_port(), h.free_port(), filters,
                                       [h.cluster("up", [a.addr])], workers=2))
        r = https(s.port, ca=ca.pem, leaf=client, name="localhost")
        self.assertEqual(r.status, 200, r)
        self.assertTrue(h.wait_for(lambda: len(read_lines(log)) >= 1, 5), read_lines(log))
        self.assertEqual(read_lines(log), [("%s localhost 200" % CLIENT_ID).encode()])


if __name__ == "__main__":
    unittest.main()
