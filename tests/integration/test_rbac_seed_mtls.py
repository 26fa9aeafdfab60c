"""The operators' Istio seed (istio-seed/authorization-policy.yaml: four
AuthorizationPolicies, each selecting one workload) enforced by sluice on
real mutual TLS: the principal every policy judges comes from the SPIFFE URI
SAN of a client certificate that this test issues with certs.py and that
curl presents (--cert/--key/--cacert). test_rbac.py has the same seed with
the xor-transport test module; this one goes through the mtls filter
(BoringSSL) and conn_peer_cert, as a sidecar would.

One sluice, one listener per selected workload; each listener's chain is

    [mtls-W (STRICT, W's workload certificate in an Istio dir),
     rbac-W (W's policies, the seed's spec pasted as is, selector included),
     routes, balance] -> sluice-upstream

    listener              workload          seed policy
    auth-service          auth-service      auth-service-policy
    matchmaking-service   matchmaking-...   matchmaking-service-policy
    economy-service       economy-service   economy-service-policy
    necpgame              (app: necpgame)   allow-all-internal

The selector is what picks the listener: sluice accepts a pasted selector
and ignores it (docs/filters/rbac.md), so each policy goes only into the
rbac instance of the listener of its workload.

Two more mTLS listeners hold a DENY policy on /admin under the default
path normalization (BASE) and are fed test_rbac.py's bypass paths with
`curl --path-as-is`: "deny-exact" has test_rbac's own policy (/admin,
/admin/*), so its expectations are test_rbac.BYPASS's BASE column;
"deny-prefix" has `/admin*`, whose expectations differ only where a prefix
match catches what /admin/* does not.

"Allowed" means the request reached sluice-upstream (its x-upstream header;
the status is the upstream's, 200 or 404); "denied" means sluice's local 403
with body `RBAC: access denied` and no x-upstream.

Run: `ctest -R test_rbac_seed_mtls` (labels integration, tls), or
`python3 tests/integration/test_rbac_seed_mtls.py [Class[.test]]`.
"""

import os
import re
import unittest

import certs
import harness as h
import test_rbac
from test_mtls import https, mtls_filter, plain, refused, xfcc

TD = "cluster.local"
NS = "spiffe://%s/ns/necpgame/sa/" % TD

# The seed, transcribed as is (metadata.name and namespace make the policy's
# name; spec pasted unchanged, selector included).
SEED = {
    "allow-all-internal": {
        "action": "ALLOW",
        "selector": {"matchLabels": {"app": "necpgame"}},
        "rules": [
            {"from": [{"source": {"principals": ["cluster.local/ns/necpgame/sa/*"]}}]},
        ],
    },
    "auth-service-policy": {
        "selector": {"matchLabels": {"app": "auth-service"}},
        "action": "ALLOW",
        "rules": [
            {"from": [{"source": {"principals": ["cluster.local/ns/necpgame/sa/ingressgateway"]}}]},
            {"from": [{"source": {"principals": ["cluster.local/ns/necpgame/sa/*"]}}],
             "to": [{"operation": {"methods": ["GET", "POST"], "paths": ["/health"]}}]},
        ],
    },
    "matchmaking-service-policy": {
        "selector": {"matchLabels": {"app": "matchmaking-service"}},
        "action": "ALLOW",
        "rules": [
            {"from": [{"source": {"principals": ["cluster.local/ns/necpgame/sa/ingressgateway"]}}]},
            {"from": [{"source": {"principals": ["cluster.local/ns/necpgame/sa/auth-service"]}}],
             "to": [{"operation": {"methods": ["GET", "POST"]}}]},
        ],
    },
    "economy-service-policy": {
        "selector": {"matchLabels": {"app": "economy-service"}},
        "action": "ALLOW",
        "rules": [
            {"from": [{"source": {"principals": ["cluster.local/ns/necpgame/sa/ingressgateway"]}}]},
            {"from": [{"source": {"principals": ["cluster.local/ns/necpgame/sa/auth-service"]}}],
             "to": [{"operation": {"methods": ["GET", "POST", "PUT", "DELETE"]}}]},
        ],
    },
}

# listener -> (the app label it stands for, the seed policy whose selector
# picks it). Listener names are also the workloads' service accounts.
WORKLOADS = [
    ("auth-service", "auth-service", "auth-service-policy"),
    ("matchmaking-service", "matchmaking-service", "matchmaking-service-policy"),
    ("economy-service", "economy-service", "economy-service-policy"),
    ("necpgame", "necpgame", "allow-all-internal"),
]

# Client identities: key -> URI SANs of its certificate (None: no URI SAN).
CLIENTS = {
    "ingressgateway": NS + "ingressgateway",
    "auth-service": NS + "auth-service",
    "matchmaking-service": NS + "matchmaking-service",
    "random": NS + "random",
    "other-ns": "spiffe://%s/ns/other/sa/x" % TD,
    # the gateway's service account name, but in another namespace
    "other-ns-gateway": "spiffe://%s/ns/other/sa/ingressgateway" % TD,
    # the gateway's namespace and name, under another trust domain
    "other-td-gateway": "spiffe://evil.local/ns/necpgame/sa/ingressgateway",
    "no-spiffe": None,
    # two SPIFFE URIs: no principal at all (Istio; docs/filters/mtls.md)
    "two-spiffe": [NS + "ingressgateway", NS + "auth-service"],
}

# Requests sent to every listener by every client: (method, path).
OPS = [
    ("GET", "/health"),
    ("POST", "/health"),
    ("GET", "/health?probe=1"),   # the query is not part of the judged path
    ("PUT", "/health"),
    ("DELETE", "/health"),
    ("GET", "/health/x"),
    ("GET", "/hello"),
    ("POST", "/sink"),
    ("PUT", "/hello"),
    ("DELETE", "/hello"),
    ("PATCH", "/hello"),
    ("OPTIONS", "/hello"),
]

ALLOW, DENY = "allowed", "403"


def in_necpgame(client):
    """in_necpgame: the client's principal is cluster.local/ns/necpgame/sa/*
    (exactly one SPIFFE URI, in the right trust domain and namespace)."""
    u = CLIENTS[client]
    return isinstance(u, str) and u.startswith(NS)


def expected(listener, client, method, path):
    """expected is the seed's decision, written out per workload."""
    path = path.split("?", 1)[0]
    if listener == "auth-service":
        if client == "ingressgateway":
            return ALLOW
        if in_necpgame(client) and method in ("GET", "POST") and path == "/health":
            return ALLOW
        return DENY
    if listener == "matchmaking-service":
        if client == "ingressgateway":
            return ALLOW
        if client == "auth-service" and method in ("GET", "POST"):
            return ALLOW
        return DENY
    if listener == "economy-service":
        if client == "ingressgateway":
            return ALLOW
        if client == "auth-service" and method in ("GET", "POST", "PUT", "DELETE"):
            return ALLOW
        return DENY
    if listener == "necpgame":
        return ALLOW if in_necpgame(client) else DENY
    raise KeyError(listener)


# The bypass paths, from test_rbac.py: raw path -> (deny-exact, deny-prefix)
# under BASE. 403 denied, 400 refused (a path rbac will not judge), "up"
# reached the upstream. deny-exact's column must equal test_rbac.BYPASS's
# BASE column (checked below, so the two tables cannot drift apart).
BASE_BYPASS = {
    "/admin":                    (403, 403),
    "/admin/x":                  (403, 403),
    "/./admin":                  (403, 403),
    "//admin":                   ("up", "up"),    # BASE does not merge slashes
    "/%61dmin":                  (403, 403),
    "/public/../admin":          (403, 403),
    "/admin%2Fx":                ("up", 403),     # %2F kept: not /admin/*, but /admin*
    "/admin%2fx":                ("up", 403),
    "/ADMIN":                    ("up", "up"),    # paths are case-sensitive
    "/admin?x=1":                (403, 403),
    "/public/..%2Fadmin":        ("up", "up"),
    "/%2e/admin":                (403, 403),
    "/%2E%2E/admin":             (403, 403),
    "/admin%00":                 (400, 400),
    "/public/%2e%2e/admin":      (403, 403),
    "/public%5C..%5Cadmin":      ("up", "up"),
    "/a/..//admin":              ("up", "up"),
    "/admin/":                   (403, 403),
    "/public/%%32e%%32e/admin":  (400, 400),
    "/admin%zz":                 (400, 400),
}
# Prefix-only extras (not in test_rbac's table).
PREFIX_EXTRA = {
    "/administrator":            ("up", 403),
    "/%61dministrator":          ("up", 403),
}
BASE_COLUMN = test_rbac.OPTIONS.index("BASE")

DENY_EXACT = {"name": "deny-admin", "action": "DENY",
              "rules": [{"to": [{"operation": {"paths": ["/admin", "/admin/*"]}}]}]}
DENY_PREFIX = {"name": "deny-admin-prefix", "action": "DENY",
               "rules": [{"to": [{"operation": {"paths": ["/admin*"]}}]}]}


def rbac_filter(name, policies):
    # path_normalization left out on purpose: the default is BASE
    return {"name": name, "module": "rbac", "config": {"policies": policies}}


def seed_policy(name):
    p = {"name": "necpgame/" + name}
    p.update(SEED[name])
    return p


class SeedMtls(h.SluiceTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        try:
            pki = os.path.join(cls.workdir, "pki")
            cls.ca = certs.CA(pki, "root")
            cls.other_ca = certs.CA(pki, "other")
            cls.up = cls.class_upstream("SEED")
            # workload certificates (served by each listener, and presented
            # by auth-service and matchmaking-service when they are clients)
            cls.workload_leaf = {}
            filters, listeners = [], []
            cls.ports = {}
            for lname, app, pol in WORKLOADS:
                leaf = cls.ca.issue("wl-" + app, spiffe=NS + app, ips=["127.0.0.1"])
                cls.workload_leaf[app] = leaf
                d = cls.ca.istio_dir(os.path.join(pki, "istio-" + app), leaf=leaf)
                filters += [mtls_filter({"mode": "STRICT", "certs_dir": d}, name="mtls-" + lname),
                            rbac_filter("rbac-" + lname, [seed_policy(pol)])]
                cls.ports[lname] = h.free_port()
                listeners.append((lname, ["mtls-" + lname, "rbac-" + lname]))
            # the /admin DENY listeners: their own workload identity
            adm = cls.ca.istio_dir(os.path.join(pki, "istio-admin"),
                                   leaf=cls.ca.issue("wl-admin", spiffe=NS + "admin",
                                                     ips=["127.0.0.1"]))
            for lname, pol in (("deny-exact", DENY_EXACT), ("deny-prefix", DENY_PREFIX)):
                filters += [mtls_filter({"mode": "STRICT", "certs_dir": adm}, name="mtls-" + lname),
                            rbac_filter("rbac-" + lname, [pol])]
                cls.ports[lname] = h.free_port()
                listeners.append((lname, ["mtls-" + lname, "rbac-" + lname]))

            cls.leaves = {}
            for c, uris in CLIENTS.items():
                if c in cls.workload_leaf:
                    cls.leaves[c] = cls.workload_leaf[c]
                else:
                    cls.leaves[c] = cls.ca.issue("cl-" + c, spiffe=uris)
            # the gateway's SPIFFE ID from a CA the workloads do not trust
            cls.forged_gateway = cls.other_ca.issue("forged-gateway", spiffe=NS + "ingressgateway")

            filters += [h.router_filter([h.route_to("up")]), h.lb_filter()]
            first = listeners[0][0]
            cfg = h.build_config(cls.ports[first], h.free_port(), filters,
                                 [h.cluster("up", [cls.up.addr])], workers=2)
            cfg["listeners"] = [{"name": n, "address": "127.0.0.1:%d" % cls.ports[n],
                                 "protocol": "http",
                                 "filter_chain": chain + ["routes", "balance"]}
                                for n, chain in listeners]
            cls.s = cls.class_sluice(cfg)
        except BaseException:
            cls.tearDownClass()
            raise

    # ---- helpers ----------------------------------------------------------

    def request(self, listener, client, method, path, raw=False):
        """request: one curl over mTLS to |listener| as |client| (a key of
        CLIENTS, or a Leaf). raw sends |path| byte for byte (--path-as-is)
        and -v, so the request line curl sent can be checked."""
        leaf = self.leaves[client] if isinstance(client, str) else client
        args = ["-X", method]
        if method in ("POST", "PUT", "PATCH"):
            args += ["--data-binary", "x"]
        if raw:
            args += ["--path-as-is", "-v"]
        return https(self.ports[listener], path, ca=self.ca.pem, leaf=leaf, args=args)

    def outcome(self, r):
        """outcome classifies a response: "allowed" (reached the upstream),
        "403" (rbac's denial), 400 (rbac refused the path), or a description
        of anything else."""
        if r.status == 0:
            return "no response rc=%d" % r.rc
        up = r.headers.get("x-upstream")
        if up == "SEED" and r.status != 403:
            return ALLOW
        if r.status == 403 and up is None and r.body.rstrip(b"\n") == b"RBAC: access denied":
            return DENY
        if r.status == 400 and up is None:
            return 400
        return "%d x-upstream=%s %r" % (r.status, up, r.body[:60])

    def denied(self, listener, policy):
        return h.mval(self.s.metrics(), "sluice_rbac_denied_total",
                      filter="rbac-" + listener, policy=policy)

    def allowed(self, listener, policy):
        return h.mval(self.s.metrics(), "sluice_rbac_allowed_total",
                      filter="rbac-" + listener, policy=policy)

    def run_table(self, listener, policy):
        """run_table sends every (client, method, path) to |listener|,
        compares with expected(), and checks the rbac counters moved by
        exactly the number of allowed and denied requests."""
        d0 = self.denied(listener, "(no-allow-match)")
        a0 = self.allowed(listener, "necpgame/" + policy)
        failures, rows = [], []
        n_allow = n_deny = 0
        for client in CLIENTS:
            for method, path in OPS:
                want = expected(listener, client, method, path)
                got = self.outcome(self.request(listener, client, method, path))
                rows.append("%-20s %-18s %-8s %-16s %-8s %s" % (
                    listener, client, method, path, want, got))
                if got != want:
                    failures.append(rows[-1])
                n_allow += want == ALLOW
                n_deny += want == DENY
        if os.environ.get("SEED_TABLE"):
            print("\n" + "\n".join(rows))
        self.assertEqual(failures, [], "listener %s: (client method path expected got)\n%s"
                         % (listener, "\n".join(failures)))
        self.assertTrue(n_allow and n_deny, "a table must hold both outcomes")
        self.assertEqual(self.denied(listener, "(no-allow-match)") - d0, n_deny)
        self.assertEqual(self.allowed(listener, "necpgame/" + policy) - a0, n_allow)

    # ---- the four policies ------------------------------------------------

    def test_auth_service(self):
        self.run_table("auth-service", "auth-service-policy")

    def test_matchmaking_service(self):
        self.run_table("matchmaking-service", "matchmaking-service-policy")

    def test_economy_service(self):
        self.run_table("economy-service", "economy-service-policy")

    def test_necpgame(self):
        self.run_table("necpgame", "allow-all-internal")

    # ---- identity is the certificate's ------------------------------------

    def test_principal_comes_from_the_certificate(self):
        # the upstream sees the identity rbac judged, in the XFCC sluice set
        r = self.request("auth-service", "ingressgateway", "GET", "/headers")
        self.assertEqual(r.status, 200, r)
        self.assertRegex(xfcc(r.body), r"(^|,)By=%s;.*URI=%s(;|$)" % (
            re.escape(NS + "auth-service"), re.escape(NS + "ingressgateway")))
        # a client-sent XFCC claiming the gateway does not make auth-service
        # the gateway (XFCC is never an input to rbac)
        r = https(self.ports["auth-service"], "/hello", ca=self.ca.pem,
                  leaf=self.leaves["random"],
                  args=["-H", "x-forwarded-client-cert: By=x;URI=%s" % (NS + "ingressgateway")])
        self.assertEqual(self.outcome(r), DENY, r)

    def test_untrusted_or_missing_certificate_never_reaches_rbac(self):
        f = {"filter": "rbac-auth-service"}
        m0 = self.s.metrics()
        # same SPIFFE ID as the gateway, signed by another CA: handshake refused
        r = https(self.ports["auth-service"], "/hello", ca=self.ca.pem, leaf=self.forged_gateway)
        self.assertTrue(refused(r), r)
        # TLS without a client certificate, and plaintext: STRICT refuses both
        self.assertTrue(refused(https(self.ports["auth-service"], "/hello", ca=self.ca.pem)))
        self.assertTrue(refused(plain(self.ports["auth-service"], "/hello")))
        m1 = self.s.metrics()
        for name in ("sluice_rbac_denied_total", "sluice_rbac_allowed_total"):
            self.assertEqual(h.mval(m1, name, **f), h.mval(m0, name, **f), name)
        self.assertGreaterEqual(h.mval(m1, "sluice_mtls_handshake_failures_total",
                                       filter="mtls-auth-service")
                                - h.mval(m0, "sluice_mtls_handshake_failures_total",
                                         filter="mtls-auth-service"), 2)
        # and the control: the real gateway is served on the same listener
        self.assertEqual(self.outcome(self.request("auth-service", "ingressgateway", "GET",
                                                   "/hello")), ALLOW)

    # ---- path normalization bypasses over mTLS ----------------------------

    def test_bypass_table_matches_test_rbac(self):
        theirs = {raw: exp[BASE_COLUMN] for raw, exp in test_rbac.BYPASS}
        ours = {raw: exp[0] for raw, exp in BASE_BYPASS.items()}
        self.assertEqual(ours, theirs)

    def test_path_normalization_bypasses(self):
        failures, rows = [], []
        want_denied = {"deny-exact": 0, "deny-prefix": 0}
        want_bad = {"deny-exact": 0, "deny-prefix": 0}
        m0 = self.s.metrics()
        table = dict(BASE_BYPASS)
        table.update(PREFIX_EXTRA)
        for raw, wants in table.items():
            for listener, want in zip(("deny-exact", "deny-prefix"), wants):
                r = self.request(listener, "ingressgateway", "GET", raw, raw=True)
                want = ALLOW if want == "up" else (DENY if want == 403 else want)
                got = self.outcome(r)
                # curl sent the path exactly as written
                sent = "> GET %s HTTP/1.1" % raw in r.stderr
                rows.append("%-12s %-28s %-8s %s%s" % (listener, raw, want, got,
                                                       "" if sent else " (curl changed it)"))
                if got != want or not sent:
                    failures.append(rows[-1])
                want_denied[listener] += want == DENY
                want_bad[listener] += want == 400
        if os.environ.get("SEED_TABLE"):
            print("\n" + "\n".join(rows))
        self.assertEqual(failures, [], "(listener path expected got)\n" + "\n".join(failures))
        m1 = self.s.metrics()
        for listener, pol in (("deny-exact", "deny-admin"), ("deny-prefix", "deny-admin-prefix")):
            f = "rbac-" + listener
            self.assertEqual(h.mval(m1, "sluice_rbac_denied_total", filter=f, policy=pol)
                             - h.mval(m0, "sluice_rbac_denied_total", filter=f, policy=pol),
                             want_denied[listener], listener)
            self.assertEqual(h.mval(m1, "sluice_rbac_bad_path_total", filter=f)
                             - h.mval(m0, "sluice_rbac_bad_path_total", filter=f),
                             want_bad[listener], listener)
        # no ALLOW policy on these listeners: nothing counted as no-allow-match
        self.assertEqual(h.mval(m1, "sluice_rbac_denied_total", filter="rbac-deny-exact",
                                policy="(no-allow-match)"), 0)


if __name__ == "__main__":
    h.main()
