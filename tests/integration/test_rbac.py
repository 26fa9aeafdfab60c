"""The rbac filter on real traffic: the real sluice binary, a real
sluice-upstream on 127.0.0.1, Python raw-socket clients.

(a) The operators' AuthorizationPolicy for auth-service (istio-seed
    authorization-policy.yaml) written as sluice YAML, with identities carried
    by the xor-transport test module (tests/filters/xor_transport.c): the
    client sends "SLC-HELLO <spiffe id>\\n", then HTTP XORed with the key.
(b) Path-normalization bypasses: a DENY policy on /admin and /admin/* behind
    each path_normalization option, judged against the raw paths attackers
    send; a request that passes must reach the upstream with exactly the path
    rbac judged.
"""

import socket
import time
import unittest

import harness as h

KEY = 90
TD = "spiffe://cluster.local/ns/necpgame/sa/"
GATEWAY = TD + "ingressgateway"
AUTH = TD + "auth-service"
OUTSIDER = "spiffe://cluster.local/ns/other/sa/auth-service"

# auth-service-policy from the seed, spec pasted under a name.
AUTH_POLICY = {
    "name": "necpgame/auth-service-policy",
    "action": "ALLOW",
    "rules": [
        {"from": [{"source": {"principals": ["cluster.local/ns/necpgame/sa/ingressgateway"]}}]},
        {"from": [{"source": {"principals": ["cluster.local/ns/necpgame/sa/*"]}}],
         "to": [{"operation": {"methods": ["GET", "POST"], "paths": ["/health"]}}]},
    ],
}

OPTIONS = ["NONE", "BASE", "MERGE_SLASHES", "DECODE_AND_MERGE_SLASHES"]

# Raw path -> expected outcome per option (NONE, BASE, MERGE_SLASHES,
# DECODE_AND_MERGE_SLASHES): 403 denied by rbac, 400 refused by rbac as a
# path it cannot judge, "up" passed to the upstream (which answers 404 for
# paths it does not serve, with its x-upstream header).
BYPASS = [
    ("/admin",              (403, 403, 403, 403)),
    ("/admin/x",            (403, 403, 403, 403)),
    ("/./admin",            ("up", 403, 403, 403)),
    ("//admin",             ("up", "up", 403, 403)),
    ("/%61dmin",            ("up", 403, 403, 403)),
    ("/public/../admin",    ("up", 403, 403, 403)),
    ("/admin%2Fx",          ("up", "up", "up", 403)),
    ("/admin%2fx",          ("up", "up", "up", 403)),
    ("/ADMIN",              ("up", "up", "up", "up")),
    ("/admin?x=1",          (403, 403, 403, 403)),
    ("/public/..%2Fadmin",  ("up", "up", "up", 403)),
    ("/%2e/admin",          ("up", 403, 403, 403)),
    ("/%2E%2E/admin",       ("up", 403, 403, 403)),
    ("/admin%00",           ("up", 400, 400, 400)),
    ("/public/%2e%2e/admin", ("up", 403, 403, 403)),
    ("/public%5C..%5Cadmin", ("up", "up", "up", 403)),
    ("/a/..//admin",        ("up", "up", 403, 403)),
    ("/admin/",             (403, 403, 403, 403)),
    ("/public/%%32e%%32e/admin", ("up", 400, 400, 400)),
    ("/admin%zz",           ("up", 400, 400, 400)),
]

# Paths that pass and that the upstream serves only once normalized: its
# /headers endpoint echoes the request line it received, so the test sees
# the path the upstream got. (raw, what the upstream sees per option; None:
# not served, 404).
ECHO = [
    ("/./headers",             (None, "/headers", "/headers", "/headers")),
    ("/x/../headers?a=/../b",  (None, "/headers?a=/../b", "/headers?a=/../b", "/headers?a=/../b")),
    ("/%68eaders",             (None, "/headers", "/headers", "/headers")),
    ("//headers",              (None, None, "/headers", "/headers")),
    ("/x%2F..%2Fheaders",      (None, None, None, "/headers")),
    ("/headers",               ("/headers", "/headers", "/headers", "/headers")),
]


def xor(b):
    return bytes(x ^ KEY for x in b)


def read_response(recv, first=b""):
    """read_response reads one HTTP/1.1 response with a content-length or
    chunked body through |recv| (returns plaintext bytes, b"" at EOF).
    Returns (status, headers dict, body)."""
    data = first
    deadline = time.monotonic() + 5
    while b"\r\n\r\n" not in data:
        chunk = recv()
        if not chunk or time.monotonic() > deadline:
            raise AssertionError("no response head; got %r" % data[:300])
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ")[1])
    hdrs = {}
    for ln in lines[1:]:
        k, v = ln.split(b":", 1)
        hdrs[k.decode().strip().lower()] = v.decode().strip()
    if "content-length" in hdrs:
        n = int(hdrs["content-length"])
        while len(rest) < n:
            chunk = recv()
            if not chunk:
                break
            rest += chunk
        return status, hdrs, rest[:n]
    if "chunked" in hdrs.get("transfer-encoding", ""):
        while not rest.endswith(b"0\r\n\r\n"):
            chunk = recv()
            if not chunk:
                break
            rest += chunk
        body, buf = b"", rest
        while buf:
            size_line, buf = buf.split(b"\r\n", 1)
            n = int(size_line.split(b";")[0], 16)
            if n == 0:
                break
            body += buf[:n]
            buf = buf[n + 2:]
        return status, hdrs, body
    return status, hdrs, rest


class Rbac(h.SluiceTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        try:
            cls.up = cls.class_upstream("RB")
            filters = [
                {"name": "tls", "module": h.test_module("xor_transport"), "config": {"key": KEY}},
                {"name": "authz", "module": "rbac", "config": {"policies": [AUTH_POLICY]}},
            ]
            deny_admin = {"name": "deny-admin", "action": "DENY",
                          "rules": [{"to": [{"operation": {"paths": ["/admin", "/admin/*"]}}]}]}
            # Two more policies, so one instance exports several series of a
            # metric: they never change the bypass table's outcomes.
            deny_debug = {"name": "deny-debug", "action": "DENY",
                          "rules": [{"to": [{"operation": {"paths": ["/debug"]}}]}]}
            audit_all = {"name": "audit-all", "action": "AUDIT", "rules": [{}]}
            for opt in OPTIONS:
                filters.append({"name": "authz_" + opt.lower(), "module": "rbac",
                                "config": {"path_normalization": opt,
                                           "policies": [deny_admin, deny_debug, audit_all]}})
            filters += [h.router_filter([h.route_to("c", prefix="/")]), h.lb_filter()]
            cfg = h.build_config(h.free_port(), h.free_port(), filters,
                                 [h.cluster("c", [cls.up.addr])], workers=2,
                                 chain=["tls", "authz", "routes", "balance"])
            cls.plain_ports = {}
            for opt in OPTIONS:
                port = h.free_port()
                cls.plain_ports[opt] = port
                cfg["listeners"].append({
                    "name": "plain_" + opt.lower(),
                    "address": "127.0.0.1:%d" % port,
                    "protocol": "http",
                    "filter_chain": ["authz_" + opt.lower(), "routes", "balance"],
                })
            cls.s = cls.class_sluice(cfg)
        except BaseException:
            cls.tearDownClass()
            raise

    # ---- clients ---------------------------------------------------------

    def xor_request(self, identity, method, path):
        """xor_request opens a connection, does the xor-transport handshake
        as |identity| and sends one request; returns (status, headers, body)."""
        sock = socket.create_connection(("127.0.0.1", self.s.port), timeout=5)
        self.addCleanup(sock.close)
        sock.sendall(b"SLC-HELLO " + identity.encode() + b"\n")
        got = b""
        while b"\n" not in got:
            chunk = sock.recv(64)
            self.assertTrue(chunk, "handshake refused")
            got += chunk
        self.assertTrue(got.startswith(b"SLC-OK\n"), got)
        leftover = got[len(b"SLC-OK\n"):]
        body = b"x" if method in ("POST", "PUT") else b""
        head = "%s %s HTTP/1.1\r\nHost: auth-service\r\ncontent-length: %d\r\n\r\n" % (
            method, path, len(body))
        sock.sendall(xor(head.encode() + body))
        return read_response(lambda: xor(sock.recv(65536)), xor(leftover))

    def plain_request(self, opt, raw_path):
        """plain_request sends |raw_path| byte for byte (no client
        normalization) to the listener of option |opt|."""
        sock = socket.create_connection(("127.0.0.1", self.plain_ports[opt]), timeout=5)
        self.addCleanup(sock.close)
        sock.sendall(("GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % raw_path).encode("latin-1"))
        return read_response(lambda: sock.recv(65536))

    def metric(self, name, **labels):
        return h.mval(self.s.metrics(), "sluice_" + name, **labels)

    # ---- (a) the seed's auth-service policy ------------------------------

    def test_gateway_reaches_every_path(self):
        for method, path in [("GET", "/hello"), ("POST", "/sink"), ("DELETE", "/hello"),
                             ("GET", "/headers"), ("PUT", "/status/201"), ("GET", "/health")]:
            status, hdrs, body = self.xor_request(GATEWAY, method, path)
            self.assertNotEqual(status, 403, (method, path, body))
            self.assertEqual(hdrs.get("x-upstream"), "RB", (method, path))
        status, hdrs, body = self.xor_request(GATEWAY, "GET", "/headers")
        self.assertEqual(status, 200)
        self.assertIn(b"x-peer-identity: " + GATEWAY.encode(), body)

    def test_auth_service_only_health_get_post(self):
        for method in ("GET", "POST"):
            status, hdrs, body = self.xor_request(AUTH, method, "/health")
            # Allowed: the upstream answers (it serves no /health: 404).
            self.assertEqual((status, hdrs.get("x-upstream")), (404, "RB"), (method, body))
        for method, path in [("GET", "/hello"), ("DELETE", "/health"), ("PUT", "/health"),
                             ("GET", "/health/x"), ("GET", "/headers")]:
            status, hdrs, body = self.xor_request(AUTH, method, path)
            self.assertEqual(status, 403, (method, path, body))
            self.assertEqual(body, b"RBAC: access denied")
            self.assertNotIn("x-upstream", hdrs)

    def test_outsider_denied(self):
        before = self.metric("rbac_denied_total", filter="authz", policy="(no-allow-match)")
        for path in ("/health", "/hello"):
            status, hdrs, body = self.xor_request(OUTSIDER, "GET", path)
            self.assertEqual(status, 403, path)
            self.assertEqual(body, b"RBAC: access denied")
            self.assertEqual(hdrs.get("content-type"), "text/plain")
        after = self.metric("rbac_denied_total", filter="authz", policy="(no-allow-match)")
        self.assertEqual(after - before, 2)

    def test_allowed_counted_per_policy(self):
        label = {"filter": "authz", "policy": "necpgame/auth-service-policy"}
        before = self.metric("rbac_allowed_total", **label)
        self.xor_request(GATEWAY, "GET", "/hello")
        self.xor_request(AUTH, "GET", "/health")
        self.xor_request(AUTH, "GET", "/hello")  # denied: not counted here
        self.assertEqual(self.metric("rbac_allowed_total", **label) - before, 2)

    def test_plaintext_client_gets_nothing(self):
        # The policy cannot be reached without the transport's handshake:
        # plain HTTP fails it and the connection closes without a response.
        r = h.curl([self.s.url("/hello")], timeout=5, check=False)
        self.assertEqual(r.status, 0, r)

    # ---- (b) path normalization bypasses ----------------------------------

    def test_bypass_table(self):
        failures = []
        for raw, expected in BYPASS:
            for opt, want in zip(OPTIONS, expected):
                status, hdrs, body = self.plain_request(opt, raw)
                if want == "up":
                    ok = hdrs.get("x-upstream") == "RB" and status != 403
                else:
                    ok = status == want and "x-upstream" not in hdrs
                    if want == 403:
                        ok = ok and body == b"RBAC: access denied"
                if not ok:
                    failures.append("%s %r: expected %s, got %d %r" % (opt, raw, want, status,
                                                                        body[:60]))
        self.assertEqual(failures, [], "\n".join(failures))

    def test_upstream_sees_the_judged_path(self):
        failures = []
        for raw, expected in ECHO:
            for opt, want in zip(OPTIONS, expected):
                status, hdrs, body = self.plain_request(opt, raw)
                if want is None:
                    ok = status == 404 and hdrs.get("x-upstream") == "RB"
                else:
                    first = body.split(b"\n", 1)[0].decode("latin-1")
                    ok = status == 200 and first == "GET %s HTTP/1.1" % want
                if not ok:
                    failures.append("%s %r: expected upstream path %s, got %d %r" % (
                        opt, raw, want, status, body[:80]))
        self.assertEqual(failures, [], "\n".join(failures))

    def test_bad_path_counted(self):
        before = self.metric("rbac_bad_path_total", filter="authz_base")
        status, hdrs, body = self.plain_request("BASE", "/x%00y")
        self.assertEqual((status, body), (400, b"Bad Request"))
        self.assertEqual(self.metric("rbac_bad_path_total", filter="authz_base") - before, 1)

    def test_deny_counted_per_policy(self):
        f = "authz_merge_slashes"
        m = self.s.metrics()
        admin0 = h.mval(m, "sluice_rbac_denied_total", filter=f, policy="deny-admin")
        debug0 = h.mval(m, "sluice_rbac_denied_total", filter=f, policy="deny-debug")
        audit0 = h.mval(m, "sluice_rbac_audit_total", filter=f, policy="audit-all")
        self.assertEqual(self.plain_request("MERGE_SLASHES", "//admin//x")[0], 403)
        self.assertEqual(self.plain_request("MERGE_SLASHES", "/x/../debug")[0], 403)
        self.assertEqual(self.plain_request("MERGE_SLASHES", "/debug")[0], 403)
        self.assertEqual(self.plain_request("MERGE_SLASHES", "/hello")[0], 200)
        m = self.s.metrics()
        self.assertEqual(h.mval(m, "sluice_rbac_denied_total", filter=f, policy="deny-admin")
                         - admin0, 1)
        self.assertEqual(h.mval(m, "sluice_rbac_denied_total", filter=f, policy="deny-debug")
                         - debug0, 2)
        self.assertEqual(h.mval(m, "sluice_rbac_audit_total", filter=f, policy="audit-all")
                         - audit0, 4)


if __name__ == "__main__":
    unittest.main()
