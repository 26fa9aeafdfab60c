"""The test certificate toolkit (certs.py) makes what the TLS tests assume:
each kind checked with `openssl verify`, and served for real by
`openssl s_server` to curl and `openssl s_client`. Needs no sluice build:
it guards the mtls tests against a broken toolkit."""

import os
import time
import unittest

import certs
import harness as h

SPIFFE_A = "spiffe://cluster.local/ns/necpgame/sa/a"


def read(path):
    with open(path) as f:
        return f.read()


class Certs(h.SluiceTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.ca = certs.CA(cls.workdir, "root")
        cls.other = certs.CA(cls.workdir, "other")
        cls.a = cls.ca.issue("a", spiffe=SPIFFE_A, dns=["a.example.com"])
        cls.srv = cls.ca.issue("srv", dns=["api.example.com", "*.example.org"], client=False)

    def server(self, cert, key, args=()):
        s = certs.SServer(self.tdir, cert, key, args)
        self._procs.append(s)
        return s

    def test_layout_and_names(self):
        self.assertEqual(self.ca.pem, os.path.join(self.workdir, "root", "ca.pem"))
        self.assertEqual(self.ca.key, os.path.join(self.workdir, "root", "ca.key"))
        self.assertEqual((self.a.cert, self.a.key), (os.path.join(self.workdir, "root", "a.pem"),
                                                     os.path.join(self.workdir, "root", "a.key")))
        cert, key = self.a  # a Leaf unpacks as (cert, key)
        self.assertEqual(cert, self.a.cert)
        self.assertIn("BEGIN PRIVATE KEY", read(key))
        self.assertIn("ASN1 OID: prime256v1", certs.cert_text(self.a.cert))

    def test_verify_each_kind(self):
        ok, out = certs.verify(self.ca.pem, self.a.cert)
        self.assertTrue(ok, out)
        ok, out = certs.verify(self.ca.pem, self.ca.pem)
        self.assertTrue(ok, out)
        ok, out = certs.verify(self.other.pem, self.a.cert)
        self.assertFalse(ok, out)
        self.assertIn("unable to get local issuer certificate", out)
        x = self.other.issue("x", spiffe="spiffe://cluster.local/ns/necpgame/sa/x")
        self.assertTrue(certs.verify(self.other.pem, x.cert)[0])
        self.assertFalse(certs.verify(self.ca.pem, x.cert)[0])

    def test_expired_is_expired(self):
        e = self.ca.issue("expired", spiffe=SPIFFE_A, expired=True)
        ok, out = certs.verify(self.ca.pem, e.cert)
        self.assertFalse(ok)
        self.assertIn("certificate has expired", out)
        self.assertLess(certs.not_after(e.cert), time.time() - 3600)
        n = self.ca.issue("future", not_yet_valid=True)
        ok, out = certs.verify(self.ca.pem, n.cert)
        self.assertFalse(ok)
        self.assertIn("not yet valid", out)
        self.assertGreater(certs.not_after(self.a.cert), time.time() + 29 * 86400)

    def test_sans(self):
        self.assertEqual(certs.san_uris(self.a.cert), [SPIFFE_A])
        self.assertEqual(certs.san_dns(self.a.cert), ["a.example.com"])
        two = self.ca.issue("two", spiffe=[SPIFFE_A, "spiffe://other.domain/ns/x/sa/y"])
        self.assertEqual(certs.san_uris(two.cert), [SPIFFE_A, "spiffe://other.domain/ns/x/sa/y"])
        none = self.ca.issue("none")
        self.assertEqual(certs.san_uris(none.cert), [])
        self.assertNotIn("Subject Alternative Name", certs.cert_text(none.cert))
        self.assertEqual(certs.subject(self.ca.issue("named", cn="svc.local").cert),
                         "CN=svc.local")

    def test_key_usage(self):
        self.assertTrue(certs.verify(self.ca.pem, self.a.cert, "sslclient")[0])
        self.assertTrue(certs.verify(self.ca.pem, self.a.cert, "sslserver")[0])
        self.assertTrue(certs.verify(self.ca.pem, self.srv.cert, "sslserver")[0])
        self.assertFalse(certs.verify(self.ca.pem, self.srv.cert, "sslclient")[0])

    def test_fingerprint_and_serial(self):
        import hashlib
        import subprocess
        der = subprocess.run(["openssl", "x509", "-in", self.a.cert, "-outform", "DER"],
                             capture_output=True, check=True).stdout
        self.assertEqual(certs.fingerprint_sha256(self.a.cert), hashlib.sha256(der).hexdigest())
        again = self.ca.issue("again")
        self.assertNotEqual(again.serial, self.a.serial)
        self.assertRegex(again.serial, r"^[0-9a-f]+$")

    def test_istio_dir_and_rotation(self):
        d = self.ca.istio_dir(os.path.join(self.tdir, "istio"), SPIFFE_A)
        names = sorted(n for n in os.listdir(d) if not n.startswith(".."))
        self.assertEqual(names, ["cert-chain.pem", "key.pem", "root-cert.pem"])
        for n in names:
            self.assertTrue(os.path.islink(os.path.join(d, n)), n)
            self.assertEqual(os.readlink(os.path.join(d, n)), os.path.join("..data", n))
        self.assertTrue(os.path.islink(os.path.join(d, "..data")))
        first = os.readlink(os.path.join(d, "..data"))
        self.assertEqual(read(os.path.join(d, "root-cert.pem")), read(self.ca.pem))
        self.assertEqual(certs.san_uris(os.path.join(d, "cert-chain.pem")), [SPIFFE_A])
        self.assertTrue(certs.verify(os.path.join(d, "root-cert.pem"),
                                     os.path.join(d, "cert-chain.pem"))[0])
        old_serial = certs.serial_hex(os.path.join(d, "cert-chain.pem"))
        b = self.ca.issue("b", spiffe="spiffe://cluster.local/ns/necpgame/sa/b")
        certs.rotate_istio_dir(d, b.cert, b.key)
        second = os.readlink(os.path.join(d, "..data"))
        self.assertNotEqual(first, second)
        self.assertFalse(os.path.exists(os.path.join(d, first)), "old data dir left behind")
        self.assertFalse(os.path.lexists(os.path.join(d, "..data_tmp")))
        self.assertEqual(certs.serial_hex(os.path.join(d, "cert-chain.pem")), b.serial)
        self.assertNotEqual(b.serial, old_serial)
        self.assertEqual(read(os.path.join(d, "key.pem")), read(b.key))
        self.assertEqual(read(os.path.join(d, "root-cert.pem")), read(self.ca.pem))

    def test_plain_dir_replace(self):
        d = certs.plain_dir(os.path.join(self.tdir, "plain"), self.a.cert, self.a.key, self.ca.pem)
        self.assertFalse(os.path.islink(os.path.join(d, "cert-chain.pem")))
        certs.replace_files(d, self.srv.cert, self.srv.key)
        self.assertEqual(certs.serial_hex(os.path.join(d, "cert-chain.pem")), self.srv.serial)

    def test_served_to_curl_and_s_client(self):
        s = self.server(self.srv.cert, self.srv.key)
        url = "https://api.example.com:%d/" % s.port
        resolve = "api.example.com:%d:127.0.0.1" % s.port
        r = h.curl(["--cacert", self.ca.pem, "--resolve", resolve, url], timeout=5)
        self.assertEqual(r.status, 200, r)
        # the wildcard SAN
        r = h.curl(["--cacert", self.ca.pem, "--resolve", "x.example.org:%d:127.0.0.1" % s.port,
                    "https://x.example.org:%d/" % s.port], timeout=5)
        self.assertEqual(r.status, 200, r)
        # another CA does not trust it
        r = h.curl(["--cacert", self.other.pem, "--resolve", resolve, url], timeout=5)
        self.assertEqual(r.rc, 60, r)
        sc = certs.s_client(s.port, servername="api.example.com", cafile=self.ca.pem, tls="1.3")
        self.assertTrue(sc.handshake_ok, sc)
        self.assertEqual(sc.protocol, "TLSv1.3", sc)
        self.assertEqual(certs.serial_hex(sc.cert), self.srv.serial)
        sc = certs.s_client(s.port, cafile=self.ca.pem, tls="1.2")
        self.assertEqual(sc.protocol, "TLSv1.2", sc)

    def test_client_certificate_required(self):
        # -Verify: s_server demands a client certificate from its CA
        s = self.server(self.srv.cert, self.srv.key, ["-Verify", "2", "-CAfile", self.ca.pem,
                                                      "-verify_return_error"])
        url = "https://api.example.com:%d/" % s.port
        resolve = "api.example.com:%d:127.0.0.1" % s.port
        r = h.curl(["--cacert", self.ca.pem, "--resolve", resolve, "--cert", self.a.cert,
                    "--key", self.a.key, url], timeout=5)
        self.assertEqual(r.status, 200, r)
        r = h.curl(["--cacert", self.ca.pem, "--resolve", resolve, url], timeout=5)
        self.assertEqual(r.status, 0, r)
        e = self.ca.issue("expired-client", spiffe=SPIFFE_A, expired=True)
        r = h.curl(["--cacert", self.ca.pem, "--resolve", resolve, "--cert", e.cert, "--key",
                    e.key, url], timeout=5)
        self.assertEqual(r.status, 0, r)
        x = self.other.issue("x2")
        r = h.curl(["--cacert", self.ca.pem, "--resolve", resolve, "--cert", x.cert, "--key",
                    x.key, url], timeout=5)
        self.assertEqual(r.status, 0, r)

    def test_tls11_client_option(self):
        # s_server with TLS 1.1 allowed: the s_client helper's 1.1 mode does
        # offer TLS 1.1 (OpenSSL 3 needs SECLEVEL=0 for it).
        s = self.server(self.srv.cert, self.srv.key, ["-cipher", "DEFAULT@SECLEVEL=0"])
        sc = certs.s_client(s.port, tls="1.1")
        self.assertEqual(sc.protocol, "TLSv1.1", sc)

    def test_ocsp_staple(self):
        der = self.ca.ocsp_response(self.srv, os.path.join(self.tdir, "srv.ocsp.der"))
        s = self.server(self.srv.cert, self.srv.key, ["-status_file", der])
        sc = certs.s_client(s.port, status=True, cafile=self.ca.pem, tls="1.2")
        self.assertIn("OCSP Response Status: successful", sc.out, sc)
        self.assertIn("Cert Status: good", sc.out, sc)

    def test_session_resumption_detected(self):
        s = self.server(self.srv.cert, self.srv.key)
        sess = os.path.join(self.tdir, "sess.pem")
        first = certs.s_client(s.port, tls="1.2", sess_out=sess)
        self.assertFalse(first.reused, first)
        again = certs.s_client(s.port, tls="1.2", sess_in=sess)
        self.assertTrue(again.reused, again)


if __name__ == "__main__":
    unittest.main()
