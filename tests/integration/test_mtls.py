"""The mtls filter (module "mtls", BoringSSL) with real clients: curl, the
openssl s_client command and Python's ssl module in this process (never in
sluice's), a real sluice-upstream behind it, and a second sluice as a TLS
upstream. Certificates come from certs.py (the openssl CLI, EC P-256).

Every listener's chain is [mtls instance, routes, balance]. sluice-upstream's
/headers echoes the request head it received, which is how the tests see
x-forwarded-client-cert and x-forwarded-proto.

Run: `ctest -L tls` (with test_certs), or by hand
`python3 tests/integration/test_mtls.py [Class[.test]]` after a build.
Until filters/mtls is built every class fails at start-up: sluice cannot
load "mtls" from filter_dir. TwoHopsRbac also needs the rbac module.

What the tests take for granted about the filter, beyond the config
schema, so the filter can be matched to them (or they to it):
  - Refusals (STRICT without or with a bad client certificate, plaintext in
    STRICT or SIMPLE, TLS 1.1, TLS to DISABLE) end the connection with no
    HTTP response; a TLS alert first is fine, a hang is not.
  - PERMISSIVE verifies the certificate of a TLS client (another CA's is
    refused) and serves plaintext and TLS on one port; the default mode is
    PERMISSIVE. port_level_mtls keys are listener ports.
  - servers[]: an SNI match picks that entry's certificate; "*.example.org"
    matches "x.example.org" but not "example.org"; no or unknown SNI gets
    the default (certs_dir / cert_chain) certificate. An entry with
    ca_certificates requires a client certificate for its hosts only.
    ocsp_staple is stapled to the default certificate.
  - An upstream TLS failure (peer refuses, SAN mismatch, unknown CA) is
    answered 503 (Envoy's UF) with a body containing "upstream" or "TLS".
    The core answers plain connect failures 502 today; only the TLS case
    is held to 503. A cluster neither listed nor in mesh_clusters gets
    plaintext; ISTIO_MUTUAL presents the certs_dir certificate.
  - XFCC as Envoy/Istio: the element sluice adds is
    By=<own URI SAN>;Hash=<sha256 hex of the client DER>;...;URI=<client
    URI SAN>, modes as forward_client_cert_details; without a client
    certificate (plaintext) XFCC is removed except with ALWAYS_FORWARD_ONLY.
  - Metrics: sluice_mtls_handshakes_total{filter}, sluice_mtls_handshake_
    failures_total{filter,reason} (a plaintext or certificate-less client in
    STRICT counts under a non-empty reason), sluice_mtls_resumptions_total
    {filter} (a TLS 1.2 s_client -sess_in resumption with a client
    certificate counts: the server needs a session id context),
    sluice_mtls_cert_expiry_timestamp_seconds{filter,cert} (notAfter, Unix
    time).
  - Rotation: with watch: true a Kubernetes-style ..data swap is served by
    new handshakes within 5 s, with no failed request and open keep-alive
    connections kept; a SIGHUP reload with an unchanged config re-reads the
    files.
  - The module is loaded RTLD_NODELETE (SLC_FILTER_NODELETE) and maps
    Debian's BoringSSL (.../android/libssl.so.0, libcrypto.so.0), never
    OpenSSL 3.
"""

import hashlib
import http.client
import os
import re
import ssl
import threading
import time
import unittest

import certs
import harness as h

TD = "cluster.local"
SLUICE_ID = "spiffe://%s/ns/necpgame/sa/sluice" % TD
CLIENT_ID = "spiffe://%s/ns/necpgame/sa/client" % TD
A_ID = "spiffe://%s/ns/necpgame/sa/a" % TD
B_ID = "spiffe://%s/ns/necpgame/sa/b" % TD
OTHER_ID = "spiffe://%s/ns/necpgame/sa/other" % TD

# Status an upstream TLS failure (handshake refused, SAN mismatch, unknown
# CA) is answered with: Envoy's 503 with flag UF. NOTE: the core answers a
# plain TCP connect failure or reset with 502 today (core/upstream.c); the
# mtls origination is expected to report its failures as 503.
UPSTREAM_TLS_FAILURE_STATUS = 503

BORINGSSL_RE = re.compile(r"/android/lib(ssl|crypto)\.so\.0\b")
OPENSSL3_RE = re.compile(r"lib(ssl|crypto)\.so\.3\b")


def module_name(name):
    """module_name is a filter module's name as the config gives it: the
    bare name, resolved by sluice in filter_dir like "router" and "lb"."""
    return name


def mtls_filter(config, name="mtls"):
    return {"name": name, "module": module_name("mtls"), "config": config}


def rbac_allow(principals, name="rbac"):
    return {"name": name, "module": module_name("rbac"),
            "config": {"policies": [{"name": "allow-a", "action": "ALLOW",
                                     "rules": [{"from": [{"source": {"principals":
                                                                     list(principals)}}]}]}]}}


def listener(name, port, chain):
    return {"name": name, "address": "127.0.0.1:%d" % port, "protocol": "http",
            "filter_chain": list(chain)}


def mtls_config(filters, clusters, listeners, workers=2, log_level="info"):
    """mtls_config is a whole sluice config: |filters| plus the shared
    "routes" (everything to cluster "up") and "balance" filters, and one
    listener per (name, port, mtls filter name) in |listeners| with chain
    [mtls, routes, balance]. The first listener is Sluice.port."""
    routes = h.router_filter([h.route_to("up")])
    names = [f["name"] for f in filters]
    fl = list(filters) + [routes, h.lb_filter()]
    cfg = h.build_config(listeners[0][1], h.free_port(), fl, clusters, workers=workers)
    cfg["log"] = {"level": log_level}
    cfg["listeners"] = [listener(n, p, ([m] if m else []) + ["routes", "balance"])
                        for n, p, m in listeners]
    assert all(m in names for _, _, m in listeners if m)
    return cfg


def https(port, path="/hello", ca=None, leaf=None, name="127.0.0.1", args=(), timeout=5):
    """https runs curl on https://NAME:PORT/PATH (NAME resolved to
    127.0.0.1), trusting |ca| and presenting |leaf| if given."""
    argv = []
    if ca:
        argv += ["--cacert", ca]
    if leaf:
        argv += ["--cert", leaf.cert, "--key", leaf.key]
    if name != "127.0.0.1":
        argv += ["--resolve", "%s:%d:127.0.0.1" % (name, port)]
    argv += list(args) + ["https://%s:%d%s" % (name, port, path)]
    return h.curl(argv, timeout=timeout)


def plain(port, path="/hello", args=(), timeout=5):
    return h.curl(list(args) + ["http://127.0.0.1:%d%s" % (port, path)], timeout=timeout)


def seen_headers(body):
    """seen_headers parses sluice-upstream's /headers body into
    {lower-case name: [values]}."""
    out = {}
    for ln in body.decode("latin-1").split("\n")[1:]:
        ln = ln.rstrip("\r")
        if ":" in ln:
            k, v = ln.split(":", 1)
            out.setdefault(k.strip().lower(), []).append(v.strip())
    return out


def xfcc(body):
    v = seen_headers(body).get("x-forwarded-client-cert")
    return None if v is None else ",".join(v)


def xfcc_elements(value):
    """xfcc_elements splits an XFCC value into elements (commas outside
    double quotes); [] for None (no header)."""
    if value is None:
        return []
    out, cur, q = [], "", False
    for ch in value:
        if ch == '"':
            q = not q
        if ch == "," and not q:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return out


def refused(r):
    """refused: curl got no HTTP response at all, and not because it gave
    up waiting (rc 28): the connection was closed or the handshake failed,
    as opposed to an HTTP error status. curl's rc says how: 35 handshake
    failed, 52 empty reply, 56 reset or a TLS alert after the handshake
    (TLS 1.3's "certificate required"), 1 a TLS alert record read by a
    plain-HTTP client as HTTP/0.9."""
    return r.status == 0 and r.rc not in (0, 28)


def metric(s, name, **labels):
    return h.mval(s.metrics(), name, **labels)


class MtlsCase(h.SluiceTestCase):
    """MtlsCase makes the class's PKI: a root CA, another CA, sluice's own
    serving identity (SPIFFE SLUICE_ID, SANs 127.0.0.1 and localhost) in an
    Istio directory, and client leaves."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        try:
            pki = os.path.join(cls.workdir, "pki")
            cls.ca = certs.CA(pki, "root")
            cls.other_ca = certs.CA(pki, "other")
            cls.server_leaf = cls.ca.issue("sluice", spiffe=SLUICE_ID, dns=["localhost"],
                                           ips=["127.0.0.1"])
            cls.certs_dir = cls.ca.istio_dir(os.path.join(pki, "istio-sluice"),
                                             leaf=cls.server_leaf)
            cls.client = cls.ca.issue("client", spiffe=CLIENT_ID)
            cls.expired_client = cls.ca.issue("client-expired", spiffe=CLIENT_ID, expired=True)
            cls.foreign_client = cls.other_ca.issue("client-foreign", spiffe=CLIENT_ID)
            cls.up = cls.class_upstream("MT")
            cls.setup_sluice()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def setup_sluice(cls):
        pass

    def served(self, r):
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.headers.get("x-upstream"), "MT", r)

    def assertXfcc(self, body, pattern):
        """assertXfcc: the upstream saw an x-forwarded-client-cert matching
        |pattern| (re.search)."""
        v = xfcc(body)
        self.assertIsNotNone(v, "no x-forwarded-client-cert upstream: %r" % body)
        self.assertRegex(v, pattern)


# ---------------------------------------------------------------- STRICT

class Strict(MtlsCase):
    """PeerAuthentication STRICT: mTLS only, client certificates from the
    CA in certs_dir's root-cert.pem."""

    @classmethod
    def setup_sluice(cls):
        cls.port = h.free_port()
        cfg = mtls_config([mtls_filter({"mode": "STRICT", "certs_dir": cls.certs_dir},
                                       name="mtls-strict")],
                          [h.cluster("up", [cls.up.addr])],
                          [("strict", cls.port, "mtls-strict")])
        cls.s = cls.class_sluice(cfg)

    def test_mtls_client_is_served(self):
        self.served(https(self.port, ca=self.ca.pem, leaf=self.client))
        # the server name in the certificate (localhost) verifies too
        self.served(https(self.port, ca=self.ca.pem, leaf=self.client, name="localhost"))

    def test_plaintext_gets_no_http_response(self):
        self.control()
        r = plain(self.port)
        self.assertTrue(refused(r), r)
        self.assertEqual(r.body, b"", r)

    def control(self):
        """control: the listener does serve a good mTLS client, so a refusal
        next to it is the filter's doing, not a listener without TLS."""
        self.served(https(self.port, ca=self.ca.pem, leaf=self.client))

    def test_tls_without_client_cert_refused(self):
        self.control()
        r = https(self.port, ca=self.ca.pem)
        self.assertTrue(refused(r), r)
        sc = certs.s_client(self.port, cafile=self.ca.pem, tls="1.2",
                            request=b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        self.assertNotIn("HTTP/1.1 200", sc.out, sc)

    def test_cert_from_other_ca_refused(self):
        self.control()
        self.assertTrue(refused(https(self.port, ca=self.ca.pem, leaf=self.foreign_client)))

    def test_expired_client_cert_refused(self):
        self.control()
        self.assertTrue(refused(https(self.port, ca=self.ca.pem, leaf=self.expired_client)))

    def test_tls11_refused(self):
        ok = certs.s_client(self.port, cert=self.client.cert, key=self.client.key, tls="1.2")
        self.assertTrue(ok.handshake_ok, ok)
        sc = certs.s_client(self.port, cert=self.client.cert, key=self.client.key, tls="1.1")
        self.assertFalse(sc.handshake_ok, sc)
        self.assertNotEqual(sc.protocol, "TLSv1.1", sc)

    def test_tls12_and_tls13_work(self):
        req = b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        for v in ("1.2", "1.3"):
            sc = certs.s_client(self.port, cert=self.client.cert, key=self.client.key,
                                cafile=self.ca.pem, tls=v, request=req)
            self.assertTrue(sc.handshake_ok, sc)
            self.assertEqual(sc.protocol, "TLSv" + v, sc)
            self.assertIn("HTTP/1.1 200", sc.out, sc)
            self.assertEqual(certs.serial_hex(sc.cert), self.server_leaf.serial)
        self.served(https(self.port, ca=self.ca.pem, leaf=self.client,
                          args=["--tlsv1.2", "--tls-max", "1.2"]))
        self.served(https(self.port, ca=self.ca.pem, leaf=self.client, args=["--tlsv1.3"]))

    def test_identity_reaches_upstream(self):
        r = https(self.port, "/headers", ca=self.ca.pem, leaf=self.client)
        self.served(r)
        hd = seen_headers(r.body)
        self.assertEqual(hd.get("x-forwarded-proto"), ["https"], r.body)
        self.assertXfcc(r.body, r"(^|,)By=%s;Hash=%s;.*URI=%s" % (
            re.escape(SLUICE_ID), certs.fingerprint_sha256(self.client.cert), re.escape(CLIENT_ID)))

    def test_metrics(self):
        f = {"filter": "mtls-strict"}
        before_ok = metric(self.s, "sluice_mtls_handshakes_total", **f)
        before_fail = metric(self.s, "sluice_mtls_handshake_failures_total", **f)
        self.served(https(self.port, ca=self.ca.pem, leaf=self.client))
        self.assertTrue(h.wait_for(lambda: metric(self.s, "sluice_mtls_handshakes_total", **f)
                                   >= before_ok + 1, 3))
        # a plaintext client and a TLS client without a certificate: at
        # least one of them counts as a handshake failure, under some reason
        self.assertTrue(refused(plain(self.port)))
        self.assertTrue(refused(https(self.port, ca=self.ca.pem)))
        m = h.wait_for(lambda: metric(self.s, "sluice_mtls_handshake_failures_total", **f)
                       >= before_fail + 1 and self.s.metrics(), 3)
        self.assertTrue(m, "failures did not count")
        reasons = {dict(ls).get("reason") for ls, v in
                   h.mseries(m, "sluice_mtls_handshake_failures_total").items()
                   if dict(ls).get("filter") == "mtls-strict" and v > 0}
        self.assertTrue(reasons and None not in reasons and "" not in reasons, reasons)

        # expiry gauge: when the serving certificate expires (Unix time)
        name = "sluice_mtls_cert_expiry_timestamp_seconds"
        exp = {dict(ls).get("cert"): v for ls, v in h.mseries(m, name).items()
               if dict(ls).get("filter") == "mtls-strict"}
        self.assertTrue(exp, "no %s{filter=\"mtls-strict\"}" % name)
        want = certs.not_after(self.server_leaf.cert)
        self.assertTrue(abs(exp.get("default", 0) - want) < 300, (exp, want))

    def test_resumption_counted(self):
        f = {"filter": "mtls-strict"}
        sess = os.path.join(self.tdir, "sess.pem")
        before = metric(self.s, "sluice_mtls_resumptions_total", **f)
        first = certs.s_client(self.port, cert=self.client.cert, key=self.client.key,
                               cafile=self.ca.pem, tls="1.2", sess_out=sess)
        self.assertTrue(first.handshake_ok and not first.reused, first)
        again = certs.s_client(self.port, cert=self.client.cert, key=self.client.key,
                               cafile=self.ca.pem, tls="1.2", sess_in=sess)
        self.assertTrue(again.reused, again)
        self.assertTrue(h.wait_for(lambda: metric(self.s, "sluice_mtls_resumptions_total", **f)
                                   >= before + 1, 3))


# ---------------------------------------------------------------- other modes

class Modes(MtlsCase):
    """PERMISSIVE, SIMPLE, MUTUAL, DISABLE and portLevelMtls, one listener
    (and one mtls instance) each, in one sluice."""

    @classmethod
    def setup_sluice(cls):
        cls.ports = {n: h.free_port() for n in ("permissive", "simple", "mutual", "disable",
                                                "pl_perm", "pl_strict")}
        ca_opts = {"cert_chain": cls.server_leaf.cert, "private_key": cls.server_leaf.key}
        filters = [
            mtls_filter({"certs_dir": cls.certs_dir}, name="mtls-permissive"),  # the default mode
            mtls_filter(dict(ca_opts, mode="SIMPLE"), name="mtls-simple"),
            mtls_filter(dict(ca_opts, mode="MUTUAL", ca_certificates=cls.ca.pem),
                        name="mtls-mutual"),
            mtls_filter({"mode": "DISABLE", "certs_dir": cls.certs_dir}, name="mtls-disable"),
            mtls_filter({"mode": "PERMISSIVE", "certs_dir": cls.certs_dir,
                         "port_level_mtls": {str(cls.ports["pl_strict"]): "STRICT"}},
                        name="mtls-portlevel"),
        ]
        lst = [("permissive", cls.ports["permissive"], "mtls-permissive"),
               ("simple", cls.ports["simple"], "mtls-simple"),
               ("mutual", cls.ports["mutual"], "mtls-mutual"),
               ("disable", cls.ports["disable"], "mtls-disable"),
               ("pl_perm", cls.ports["pl_perm"], "mtls-portlevel"),
               ("pl_strict", cls.ports["pl_strict"], "mtls-portlevel")]
        cls.s = cls.class_sluice(mtls_config(filters, [h.cluster("up", [cls.up.addr])], lst))

    def test_permissive_serves_plaintext_and_mtls_on_one_port(self):
        p = self.ports["permissive"]
        r = plain(p, "/headers")
        self.served(r)
        self.assertEqual(seen_headers(r.body).get("x-forwarded-proto"), ["http"], r.body)
        r = https(p, "/headers", ca=self.ca.pem, leaf=self.client)
        self.served(r)
        self.assertEqual(seen_headers(r.body).get("x-forwarded-proto"), ["https"], r.body)
        # and again, alternating on keep-alive connections of each kind
        self.served(plain(p))
        self.served(https(p, ca=self.ca.pem, leaf=self.client))

    def test_permissive_still_verifies_client_certs(self):
        # a TLS client's certificate is checked against the CA in PERMISSIVE too
        self.served(https(self.ports["permissive"], ca=self.ca.pem, leaf=self.client))
        self.assertTrue(refused(https(self.ports["permissive"], ca=self.ca.pem,
                                      leaf=self.foreign_client)))

    def test_simple_serves_client_without_cert(self):
        p = self.ports["simple"]
        r = https(p, "/headers", ca=self.ca.pem)
        self.served(r)
        hd = seen_headers(r.body)
        self.assertEqual(hd.get("x-forwarded-proto"), ["https"], r.body)
        self.assertTrue(refused(plain(p)))

    def test_mutual_requires_client_cert(self):
        p = self.ports["mutual"]
        self.assertTrue(refused(https(p, ca=self.ca.pem)))
        self.served(https(p, ca=self.ca.pem, leaf=self.client))
        self.assertTrue(refused(https(p, ca=self.ca.pem, leaf=self.foreign_client)))

    def test_disable_is_plaintext_only(self):
        # (a filter that does nothing passes this one: DISABLE is exactly that)
        p = self.ports["disable"]
        self.served(plain(p))
        r = https(p, ca=self.ca.pem, leaf=self.client)
        self.assertEqual(r.status, 0, r)
        self.assertNotEqual(r.rc, 0, r)

    def test_port_level_strict(self):
        perm, strict = self.ports["pl_perm"], self.ports["pl_strict"]
        self.served(plain(perm))
        self.served(https(perm, ca=self.ca.pem, leaf=self.client))
        self.assertTrue(refused(plain(strict)))
        self.assertTrue(refused(https(strict, ca=self.ca.pem)))
        self.served(https(strict, ca=self.ca.pem, leaf=self.client))


# ---------------------------------------------------------------- SNI

class Sni(MtlsCase):
    """Gateway servers: certificates chosen by SNI, wildcards, a per-server
    client CA (MUTUAL for that host only), OCSP stapling of the default
    certificate."""

    @classmethod
    def setup_sluice(cls):
        pki = os.path.join(cls.workdir, "pki")
        cls.api = cls.ca.issue("api", dns=["api.example.com"], client=False)
        cls.wild = cls.ca.issue("wild", dns=["*.example.org"], client=False)
        cls.mut = cls.ca.issue("mut", dns=["mutual.example.net"], client=False)
        cls.ocsp = cls.ca.ocsp_response(cls.server_leaf, os.path.join(pki, "sluice.ocsp.der"))
        cls.port = h.free_port()
        cfg = mtls_config(
            [mtls_filter({"mode": "SIMPLE", "certs_dir": cls.certs_dir, "ocsp_staple": cls.ocsp,
                          "servers": [
                              {"hosts": ["api.example.com"], "cert_chain": cls.api.cert,
                               "private_key": cls.api.key},
                              {"hosts": ["*.example.org"], "cert_chain": cls.wild.cert,
                               "private_key": cls.wild.key},
                              {"hosts": ["mutual.example.net"], "cert_chain": cls.mut.cert,
                               "private_key": cls.mut.key, "ca_certificates": cls.ca.pem}]},
                         name="mtls-sni")],
            [h.cluster("up", [cls.up.addr])], [("gw", cls.port, "mtls-sni")])
        cls.s = cls.class_sluice(cfg)

    def served_serial(self, servername):
        sc = certs.s_client(self.port, servername=servername, cafile=self.ca.pem)
        self.assertTrue(sc.handshake_ok, sc)
        return certs.serial_hex(sc.cert), sc.cert

    def test_cert_per_server_name(self):
        serial, pem = self.served_serial("api.example.com")
        self.assertEqual(serial, self.api.serial)
        self.assertEqual(certs.san_dns(pem), ["api.example.com"])
        self.served(https(self.port, ca=self.ca.pem, name="api.example.com"))

    def test_wildcard(self):
        serial, pem = self.served_serial("x.example.org")
        self.assertEqual(serial, self.wild.serial)
        self.assertEqual(certs.san_dns(pem), ["*.example.org"])
        self.served(https(self.port, ca=self.ca.pem, name="games.example.org"))
        # the wildcard covers one label: the bare domain gets the default cert
        self.assertEqual(self.served_serial("example.org")[0], self.server_leaf.serial)

    def test_default_cert_without_or_unknown_sni(self):
        self.assertEqual(self.served_serial(None)[0], self.server_leaf.serial)
        self.assertEqual(self.served_serial("unknown.test")[0], self.server_leaf.serial)
        self.served(https(self.port, ca=self.ca.pem, name="localhost"))

    def test_per_server_client_ca(self):
        self.assertEqual(self.served_serial("mutual.example.net")[0], self.mut.serial)
        self.assertTrue(refused(https(self.port, ca=self.ca.pem, name="mutual.example.net")))
        self.served(https(self.port, ca=self.ca.pem, leaf=self.client, name="mutual.example.net"))
        # the other hosts stay SIMPLE
        self.served(https(self.port, ca=self.ca.pem, name="api.example.com"))

    def test_ocsp_staple(self):
        sc = certs.s_client(self.port, cafile=self.ca.pem, status=True)
        self.assertIn("OCSP Response Status: successful", sc.out, sc)
        self.assertIn("Cert Status: good", sc.out, sc)


# ---------------------------------------------------------------- XFCC

class Xfcc(MtlsCase):
    """x-forwarded-client-cert and x-forwarded-proto as Envoy sets them, for
    each forward_client_cert_details mode."""

    SENT = "By=spiffe://evil/ns/x/sa/y;URI=spiffe://evil/ns/x/sa/z"

    @classmethod
    def setup_sluice(cls):
        modes = ("APPEND_FORWARD", "SANITIZE", "SANITIZE_SET", "FORWARD_ONLY",
                 "ALWAYS_FORWARD_ONLY")
        cls.ports = {m: h.free_port() for m in modes}
        cls.ports["default"] = h.free_port()
        filters = [mtls_filter({"certs_dir": cls.certs_dir}, name="mtls-xfcc-default")]
        lst = [("default", cls.ports["default"], "mtls-xfcc-default")]
        for m in modes:
            n = "mtls-xfcc-" + m.lower().replace("_", "-")
            filters.append(mtls_filter({"mode": "PERMISSIVE", "certs_dir": cls.certs_dir,
                                        "xfcc": m}, name=n))
            lst.append((m.lower(), cls.ports[m], n))
        cls.s = cls.class_sluice(mtls_config(filters, [h.cluster("up", [cls.up.addr])], lst))

    def get(self, mode, tls, sent=None):
        args = ["-H", "x-forwarded-client-cert: %s" % sent] if sent else []
        if tls:
            r = https(self.ports[mode], "/headers", ca=self.ca.pem, leaf=self.client, args=args)
        else:
            r = plain(self.ports[mode], "/headers", args=args)
        self.served(r)
        return r

    def own_element(self):
        return re.compile(r"^By=%s;Hash=%s;.*URI=%s(;|$)" % (
            re.escape(SLUICE_ID), certs.fingerprint_sha256(self.client.cert),
            re.escape(CLIENT_ID)))

    def test_default_is_append_forward(self):
        r = self.get("default", True)
        els = xfcc_elements(xfcc(r.body))
        self.assertEqual(len(els), 1, els)
        self.assertRegex(els[0], self.own_element())
        self.assertEqual(seen_headers(r.body).get("x-forwarded-proto"), ["https"])

    def test_append_forward_appends_to_sent(self):
        for mode in ("default", "APPEND_FORWARD"):
            r = self.get(mode, True, self.SENT)
            els = xfcc_elements(xfcc(r.body))
            self.assertEqual(len(els), 2, els)
            self.assertEqual(els[0], self.SENT)
            self.assertRegex(els[1], self.own_element())

    def test_plaintext_xfcc_is_sanitized(self):
        for mode in ("default", "APPEND_FORWARD", "SANITIZE", "SANITIZE_SET", "FORWARD_ONLY"):
            r = self.get(mode, False, self.SENT)
            hd = seen_headers(r.body)
            self.assertNotIn("x-forwarded-client-cert", hd, (mode, r.body))
            self.assertEqual(hd.get("x-forwarded-proto"), ["http"], (mode, r.body))

    def test_sanitize(self):
        r = self.get("SANITIZE", True, self.SENT)
        self.assertNotIn("x-forwarded-client-cert", seen_headers(r.body), r.body)

    def test_sanitize_set(self):
        r = self.get("SANITIZE_SET", True, self.SENT)
        els = xfcc_elements(xfcc(r.body))
        self.assertEqual(len(els), 1, els)
        self.assertRegex(els[0], self.own_element())

    def test_forward_only(self):
        r = self.get("FORWARD_ONLY", True, self.SENT)
        self.assertEqual(xfcc(r.body), self.SENT)

    def test_always_forward_only(self):
        r = self.get("ALWAYS_FORWARD_ONLY", False, self.SENT)
        self.assertEqual(xfcc(r.body), self.SENT)
        r = self.get("ALWAYS_FORWARD_ONLY", True, self.SENT)
        self.assertEqual(xfcc(r.body), self.SENT)


# ---------------------------------------------------------------- origination

class Origination(MtlsCase):
    """DestinationRule tls: sluice A originates TLS to sluice B (STRICT,
    SPIFFE B_ID, same CA) and to openssl s_server peers."""

    @classmethod
    def setup_sluice(cls):
        pki = os.path.join(cls.workdir, "pki")
        # B: STRICT in front of sluice-upstream
        b_leaf = cls.ca.issue("b", spiffe=B_ID, ips=["127.0.0.1"])
        b_dir = cls.ca.istio_dir(os.path.join(pki, "istio-b"), leaf=b_leaf)
        cls.b_port = h.free_port()
        cls.b = cls.class_sluice(mtls_config(
            [mtls_filter({"mode": "STRICT", "certs_dir": b_dir}, name="mtls-b")],
            [h.cluster("up", [cls.up.addr])], [("b", cls.b_port, "mtls-b")]), name="sluice-b")
        # TLS servers that are not sluice: one with a certificate of our CA
        # (SIMPLE works), one of another CA (SIMPLE must refuse it)
        good = cls.ca.issue("s-good", dns=["s.test"], ips=["127.0.0.1"], client=False)
        bad = cls.other_ca.issue("s-bad", dns=["s.test"], ips=["127.0.0.1"], client=False)
        cls.s_good = certs.SServer(cls.workdir, good.cert, good.key, name="s_server-good")
        cls._class_procs.append(cls.s_good)
        cls.s_bad = certs.SServer(cls.workdir, bad.cert, bad.key, name="s_server-bad")
        cls._class_procs.append(cls.s_bad)
        # A: plaintext clients in (PERMISSIVE), TLS out per cluster
        a_leaf = cls.ca.issue("a", spiffe=A_ID)
        a_dir = cls.ca.istio_dir(os.path.join(pki, "istio-a"), leaf=a_leaf)
        cls.a_mutual = cls.ca.issue("a-mutual", spiffe=A_ID + "-mutual")
        b_addr = "127.0.0.1:%d" % cls.b_port
        clusters = [h.cluster(n, [b_addr]) for n in
                    ("b_istio", "b_auto", "b_san_ok", "b_san_bad", "b_mutual", "b_simple",
                     "b_plain")]
        clusters += [h.cluster("s_good", ["127.0.0.1:%d" % cls.s_good.port]),
                     h.cluster("s_bad", ["127.0.0.1:%d" % cls.s_bad.port])]
        upstream = {
            "auto_mtls": True,
            "mesh_clusters": ["b_auto"],
            "clusters": [
                {"cluster": "b_istio", "mode": "ISTIO_MUTUAL"},
                {"cluster": "b_san_ok", "mode": "ISTIO_MUTUAL", "subject_alt_names": [B_ID]},
                {"cluster": "b_san_bad", "mode": "ISTIO_MUTUAL",
                 "subject_alt_names": ["spiffe://%s/ns/necpgame/sa/not-b" % TD]},
                {"cluster": "b_mutual", "mode": "MUTUAL", "sni": "b.necpgame.svc",
                 "client_certificate": cls.a_mutual.cert, "private_key": cls.a_mutual.key,
                 "ca_certificates": cls.ca.pem},
                {"cluster": "b_simple", "mode": "SIMPLE", "ca_certificates": cls.ca.pem},
                {"cluster": "s_good", "mode": "SIMPLE", "sni": "s.test",
                 "ca_certificates": cls.ca.pem},
                {"cluster": "s_bad", "mode": "SIMPLE", "sni": "s.test",
                 "ca_certificates": cls.ca.pem},
            ]}
        routes = h.router_filter([h.prefix_route("/%s/" % c["name"], c["name"])
                                  for c in clusters])
        cls.a_port = h.free_port()
        cfg = h.build_config(cls.a_port, h.free_port(),
                             [mtls_filter({"mode": "PERMISSIVE", "certs_dir": a_dir,
                                           "upstream": upstream}, name="mtls-a"),
                              routes, h.lb_filter()], clusters)
        cls.a = cls.class_sluice(cfg, name="sluice-a")

    def via_a(self, cluster, path="headers"):
        return plain(self.a_port, "/%s/%s" % (cluster, path))

    def assertTlsFailure(self, r):
        self.assertEqual(r.status, UPSTREAM_TLS_FAILURE_STATUS, r)
        self.assertRegex(r.text(), re.compile(r"tls|upstream", re.I))

    def test_istio_mutual(self):
        for c in ("b_istio", "b_auto", "b_san_ok"):
            r = self.via_a(c)
            self.served(r)
            # B saw A's workload certificate and says so
            self.assertXfcc(r.body, r"By=%s;.*URI=%s(;|$)" % (re.escape(B_ID), re.escape(A_ID)))
            self.assertEqual(seen_headers(r.body).get("x-forwarded-proto"), ["https"], c)

    def test_san_mismatch_is_503(self):
        self.assertTlsFailure(self.via_a("b_san_bad"))
        # the others keep working
        self.served(self.via_a("b_istio"))

    def test_mutual_with_explicit_client_cert(self):
        r = self.via_a("b_mutual")
        self.served(r)
        self.assertXfcc(r.body, r"URI=%s(;|$)" % re.escape(A_ID + "-mutual"))

    def test_simple_to_strict_peer_fails(self):
        # no client certificate: B refuses the handshake
        self.assertTlsFailure(self.via_a("b_simple"))

    def test_no_tls_outside_the_mesh(self):
        # b_plain is neither listed nor in mesh_clusters: plaintext, which
        # STRICT B does not answer (the core's own upstream failure reply)
        r = self.via_a("b_plain")
        self.assertIn(r.status, (502, 503), r)

    def test_simple_to_our_ca(self):
        r = plain(self.a_port, "/s_good/")
        self.assertEqual(r.status, 200, r)

    def test_simple_to_other_ca_is_503(self):
        self.assertTlsFailure(plain(self.a_port, "/s_bad/"))


# ---------------------------------------------------------------- two hops + rbac

class TwoHopsRbac(MtlsCase):
    """client -> sluice A (PERMISSIVE, ISTIO_MUTUAL to B) -> sluice B
    (STRICT, rbac allows only A's principal) -> sluice-upstream."""

    @classmethod
    def setup_sluice(cls):
        pki = os.path.join(cls.workdir, "pki")
        b_dir = cls.ca.istio_dir(os.path.join(pki, "istio-b"),
                                 leaf=cls.ca.issue("b", spiffe=B_ID, ips=["127.0.0.1"]))
        a_dir = cls.ca.istio_dir(os.path.join(pki, "istio-a"), leaf=cls.ca.issue("a", spiffe=A_ID))
        cls.a_leaf_direct = cls.ca.issue("a-direct", spiffe=A_ID)
        cls.other = cls.ca.issue("other", spiffe=OTHER_ID)
        cls.b_port = h.free_port()
        b_filters = [mtls_filter({"mode": "STRICT", "certs_dir": b_dir}, name="mtls-b"),
                     rbac_allow(["%s/ns/necpgame/sa/a" % TD]),
                     h.router_filter([h.route_to("up")]), h.lb_filter()]
        cfg = h.build_config(cls.b_port, h.free_port(), b_filters,
                             [h.cluster("up", [cls.up.addr])],
                             chain=["mtls-b", "rbac", "routes", "balance"])
        cls.b = cls.class_sluice(cfg, name="sluice-b")
        cls.a_port = h.free_port()
        cfg = h.build_config(cls.a_port, h.free_port(),
                             [mtls_filter({"mode": "PERMISSIVE", "certs_dir": a_dir,
                                           "upstream": {"clusters": [
                                               {"cluster": "b", "mode": "ISTIO_MUTUAL"}]}},
                                          name="mtls-a"),
                              h.router_filter([h.route_to("b")]), h.lb_filter()],
                             [h.cluster("b", ["127.0.0.1:%d" % cls.b_port])])
        cls.a = cls.class_sluice(cfg, name="sluice-a")

    def test_through_a_is_allowed(self):
        r = plain(self.a_port, "/headers")
        self.served(r)
        self.assertXfcc(r.body, r"URI=%s(;|$)" % re.escape(A_ID))
        for _ in range(3):  # pooled mTLS connection to B, reused
            self.served(plain(self.a_port))

    def test_direct_with_other_principal_is_403(self):
        r = https(self.b_port, ca=self.ca.pem, leaf=self.other)
        self.assertEqual(r.status, 403, r)
        # Envoy's body, with or without sluice's usual trailing newline
        self.assertEqual(r.body.rstrip(b"\n"), b"RBAC: access denied", r)

    def test_direct_with_a_principal_is_allowed(self):
        self.served(https(self.b_port, ca=self.ca.pem, leaf=self.a_leaf_direct))

    def test_direct_plaintext_never_reaches_rbac(self):
        self.assertTrue(refused(plain(self.b_port)))


# ---------------------------------------------------------------- rotation

class LoadClient:
    """LoadClient runs two bounded mTLS client loops in threads (Python's
    ssl): one keep-alive connection that must survive for the whole run,
    and one new connection (new handshake) per request, which records the
    SHA-256 of each certificate the server presented."""

    def __init__(self, port, ca, leaf, max_s=10.0):
        self.port = port
        self.ctx = ssl.create_default_context(cafile=ca)
        self.ctx.load_cert_chain(leaf.cert, leaf.key)
        self.deadline = time.monotonic() + max_s
        self.stop_ev = threading.Event()
        self.lock = threading.Lock()
        self.errors = []
        self.ka_ok = 0
        self.ka_after_mark = 0
        self.ka_reconnects = 0
        self.new_ok = 0
        self.seen = []  # (monotonic time, fingerprint) per new connection
        self.mark = None
        self.ts = [threading.Thread(target=self._keepalive, daemon=True),
                   threading.Thread(target=self._fresh, daemon=True)]

    def start(self):
        for t in self.ts:
            t.start()
        return self

    def running(self):
        return not self.stop_ev.is_set() and time.monotonic() < self.deadline

    def _err(self, what, e):
        with self.lock:
            self.errors.append("%s: %r" % (what, e))

    def _keepalive(self):
        c = None
        while self.running():
            try:
                if c is None:
                    if self.ka_ok:
                        self.ka_reconnects += 1
                    c = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx,
                                                    timeout=5)
                c.request("GET", "/hello")
                r = c.getresponse()
                r.read()
                if r.status != 200:
                    self._err("keep-alive", "status %d" % r.status)
                with self.lock:
                    self.ka_ok += 1
                    if self.mark is not None:
                        self.ka_after_mark += 1
            except (OSError, http.client.HTTPException) as e:
                self._err("keep-alive", e)
                if c is not None:
                    c.close()
                c = None
                time.sleep(0.05)
            time.sleep(0.005)
        if c is not None:
            c.close()

    def _fresh(self):
        while self.running():
            c = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx, timeout=5)
            try:
                c.connect()  # the handshake; the socket is gone after a "close" response
                der = c.sock.getpeercert(binary_form=True)
                c.request("GET", "/hello", headers={"Connection": "close"})
                r = c.getresponse()
                r.read()
                if r.status != 200:
                    self._err("new-conn", "status %d" % r.status)
                with self.lock:
                    self.new_ok += 1
                    if der:
                        self.seen.append((time.monotonic(), hashlib.sha256(der).hexdigest()))
            except (OSError, http.client.HTTPException) as e:
                self._err("new-conn", e)
                time.sleep(0.05)
            finally:
                c.close()
            time.sleep(0.01)

    def stop(self):
        self.stop_ev.set()
        for t in self.ts:
            t.join(10)
        return not any(t.is_alive() for t in self.ts)


class Rotation(MtlsCase):
    """Certificate rotation without dropping a request: a Kubernetes-style
    symlink swap picked up by the watcher, and SIGHUP after a plain file
    replacement."""

    def start_strict(self, certs_dir, watch, name):
        port = h.free_port()
        cfg = mtls_config([mtls_filter({"mode": "STRICT", "certs_dir": certs_dir,
                                        "watch": watch}, name=name)],
                          [h.cluster("up", [self.up.addr])], [("strict", port, name)])
        return self.sluice(cfg), port

    def served_serial(self, port):
        sc = certs.s_client(port, cert=self.client.cert, key=self.client.key, cafile=self.ca.pem)
        return certs.serial_hex(sc.cert) if sc.cert else None

    def test_watch_rotation_under_load(self):
        d = os.path.join(self.tdir, "istio")
        old = self.ca.issue("rot-old", spiffe=SLUICE_ID, ips=["127.0.0.1"])
        new = self.ca.issue("rot-new", spiffe=SLUICE_ID, ips=["127.0.0.1"])
        self.ca.istio_dir(d, leaf=old)
        s, port = self.start_strict(d, True, "mtls-rot")
        self.assertEqual(self.served_serial(port), old.serial)
        new_fp = certs.fingerprint_sha256(new.cert)
        load = LoadClient(port, self.ca.pem, self.client, max_s=10).start()
        try:
            time.sleep(1.5)
            with load.lock:
                load.mark = time.monotonic()
            certs.rotate_istio_dir(d, new.cert, new.key)
            picked = h.wait_for(lambda: any(fp == new_fp for _, fp in list(load.seen)), 5)
            time.sleep(1.0)  # more requests on both loops after the switch
        finally:
            self.assertTrue(load.stop(), "load threads did not stop")
        self.assertEqual(load.errors, [], "failed requests during rotation")
        self.assertTrue(picked, "no new handshake saw the new certificate within 5 s")
        self.assertEqual(self.served_serial(port), new.serial)
        # the connection opened before the rotation kept working, unbroken
        self.assertEqual(load.ka_reconnects, 0)
        self.assertGreater(load.ka_after_mark, 10, "keep-alive loop made no progress")
        self.assertGreater(load.new_ok, 10)
        # after the switch, no handshake went back to the old certificate
        old_fp = certs.fingerprint_sha256(old.cert)
        first_new = min(t for t, fp in load.seen if fp == new_fp)
        self.assertFalse([t for t, fp in load.seen if t > first_new and fp == old_fp])
        self.assertTrue(s.alive())

    def test_sighup_picks_up_replaced_files(self):
        d = os.path.join(self.tdir, "plain")
        old = self.ca.issue("hup-old", spiffe=SLUICE_ID, ips=["127.0.0.1"])
        new = self.ca.issue("hup-new", spiffe=SLUICE_ID, ips=["127.0.0.1"])
        certs.plain_dir(d, old.cert, old.key, self.ca.pem)
        s, port = self.start_strict(d, False, "mtls-hup")
        self.assertEqual(self.served_serial(port), old.serial)
        certs.replace_files(d, new.cert, new.key)
        s.reload(s.config)
        self.assertTrue(h.wait_for(lambda: self.served_serial(port) == new.serial, 5),
                        "still serving %s after SIGHUP" % self.served_serial(port))
        self.served(https(port, ca=self.ca.pem, leaf=self.client))


# ---------------------------------------------------------------- libraries

def mapped(pid):
    with open("/proc/%d/maps" % pid) as f:
        return sorted({ln.split(None, 5)[5].strip() for ln in f if len(ln.split(None, 5)) == 6})


def module_mapped(maps, name):
    """module_mapped: filter module |name| is mapped. sluice dlopens a
    private copy of each module (core/module.c: <tmpdir>/<seq>-<name>.so,
    unlinked at once, so maps show it "(deleted)"), or the file itself."""
    pat = re.compile(r"/(\d+-)?%s\.so( \(deleted\))?$" % re.escape(name))
    return [m for m in maps if pat.search(m)]


class Libraries(MtlsCase):
    """The module maps Debian's BoringSSL and never OpenSSL 3, and stays
    mapped (RTLD_NODELETE) after a reload drops its last instance."""

    def test_boringssl_not_openssl3_and_nodelete(self):
        noop = h.test_module("noop")
        port = h.free_port()
        cfg = mtls_config([mtls_filter({"mode": "STRICT", "certs_dir": self.certs_dir},
                                       name="mtls-libs"),
                           {"name": "noop", "module": noop}],
                          [h.cluster("up", [self.up.addr])], [("libs", port, "mtls-libs")])
        cfg["listeners"][0]["filter_chain"] = ["mtls-libs", "noop", "routes", "balance"]
        s = self.sluice(cfg)
        self.served(https(port, ca=self.ca.pem, leaf=self.client))
        maps = mapped(s.pid)
        self.assertTrue(module_mapped(maps, "mtls"), maps)
        self.assertTrue(module_mapped(maps, "noop"), maps)
        self.assertTrue([m for m in maps if BORINGSSL_RE.search(m) and "libssl" in m], maps)
        self.assertTrue([m for m in maps if BORINGSSL_RE.search(m) and "libcrypto" in m], maps)
        self.assertEqual([m for m in maps if OPENSSL3_RE.search(m)], [])

        # reload to a config without mtls (and without noop); once the old
        # generation is gone, noop.so is unmapped (the control: modules do
        # get dlclosed) but mtls.so, NODELETE, is still there
        cfg2 = mtls_config([], [h.cluster("up", [self.up.addr])], [("libs", port, None)])
        cfg2["admin"] = cfg["admin"]
        s.reload(cfg2)
        self.served(plain(port))
        self.assertTrue(h.wait_for(lambda: h.mval(s.metrics(), "sluice_config_generations_alive")
                                   == 1, 15), "the old generation stayed alive")
        self.assertTrue(h.wait_for(lambda: not module_mapped(mapped(s.pid), "noop"), 5),
                        "control failed: noop.so still mapped after its generation went")
        maps = mapped(s.pid)
        self.assertTrue(module_mapped(maps, "mtls"),
                        "mtls.so was unmapped: not loaded RTLD_NODELETE\n%s" % "\n".join(maps))
        self.assertEqual([m for m in maps if OPENSSL3_RE.search(m)], [])
        self.served(plain(port))
        self.assertTrue(s.alive())


if __name__ == "__main__":
    unittest.main()
