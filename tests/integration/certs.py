"""Test certificates for the TLS tests, made with the `openssl` command-line
tool (OpenSSL 3.0 as on Debian 12). EC P-256 keys, so a CA plus a handful of
leaves takes well under a second. Nothing here links a TLS library: sluice's
processes must never see OpenSSL 3 (docs/security.md), and the tests drive
them from outside.

Layout (every name is fixed, so a failing test's files are easy to find):

  CA(dir, name)                     dir/name/ca.pem, dir/name/ca.key
  ca.issue(leaf, ...)               dir/name/leaf.pem, dir/name/leaf.key
                                    (returns a Leaf: .cert, .key, .ca, .serial,
                                    .spiffe, .dns)
  ca.istio_dir(path, spiffe)        path/cert-chain.pem, key.pem, root-cert.pem,
                                    laid out as a Kubernetes secret volume
                                    (below)
  rotate_istio_dir(path, cert, key) swaps in new files the way the kubelet
                                    does

API:

  CA(dir, name="root", days=3650)
      A self-signed root (basicConstraints CA:TRUE, keyCertSign) with
      subject CN=<name>. Two CA objects are two unrelated trust roots: make a
      second one for "certificate from another CA" cases.

  ca.issue(name, spiffe=None, dns=(), cn=None, days=30, expired=False,
           not_yet_valid=False, client=True, server=True, ips=())
      A leaf signed by the CA with `openssl ca` (so validity can start or
      end in the past). |spiffe| is a URI SAN or a list of them (several
      URI SANs, or none with None / []); |dns| and |ips| add DNS / IP SANs.
      Subject is CN=<cn or name>. extendedKeyUsage has serverAuth and/or
      clientAuth as asked. expired=True: valid from 10 days ago to 1 day
      ago. not_yet_valid=True: valid from 1 day ahead. Issuing the same name
      twice replaces the files (a new key and a new random serial).

  ca.istio_dir(path, spiffe, leaf=None)
      An Istio workload certificate directory: cert-chain.pem (the leaf),
      key.pem, root-cert.pem (this CA). |leaf| reuses an issued Leaf;
      otherwise one is issued with URI SAN |spiffe| (name taken from the
      directory). Returns |path|. The files are symlinks into `..data`, a
      symlink to a timestamped directory, exactly as a Kubernetes secret
      mount looks, so rotate_istio_dir can later swap them atomically.

  rotate_istio_dir(path, new_cert, new_key, new_root=None)
      The kubelet's atomic writer: write the new files into a fresh
      `..<timestamp>` directory, point a `..data_tmp` symlink at it, rename
      `..data_tmp` over `..data` (one atomic rename: an inotify watcher on
      |path| sees IN_MOVED_TO for `..data`), then delete the old timestamped
      directory. The top-level names never change. root-cert.pem is kept
      unless |new_root| is given.

  replace_files(path, new_cert, new_key, new_root=None)
      The plain way: each file written to a temp name and os.replace()d over
      the old one (for SIGHUP-driven reloads of a plain directory).

  ca.ocsp_response(leaf, path, status="good")
      A DER OCSP response for |leaf| signed by the CA itself (the CA is its
      own OCSP signer), valid 1 day: for the filter's ocsp_staple.

  Inspection helpers (openssl CLI, for assertions):
      verify(ca_pem, cert_pem) -> (ok, output)
      cert_text(cert_pem) -> `openssl x509 -text` output
      serial_hex(cert_pem), subject(cert_pem), san_uris(cert_pem),
      fingerprint_sha256(cert_pem) -> lower-case hex of the DER's SHA-256
      (the XFCC "Hash" value), not_after(cert_pem) -> epoch seconds
      s_client(port, ...) -> SClient with the served certificate (PEM),
      protocol, whether the session was reused, and the raw output.

  SServer(workdir, cert, key, args=())
      `openssl s_server -www` on a free 127.0.0.1 port (a harness Proc:
      own process group, stopped by PID), for a TLS peer that is not sluice.
"""

import calendar
import datetime
import os
import re
import shutil
import socket
import subprocess
import threading
import time

OPENSSL = "openssl"
_lock = threading.Lock()  # `openssl ca` keeps one index per CA


def _run(argv, timeout=30, input=None, check=True):
    p = subprocess.run(argv, input=input, capture_output=True, timeout=timeout)
    if check and p.returncode != 0:
        raise RuntimeError("%s failed rc=%d:\n%s%s" % (" ".join(argv), p.returncode,
                                                      p.stdout.decode("utf-8", "replace"),
                                                      p.stderr.decode("utf-8", "replace")))
    return p


def _genkey(path):
    _run([OPENSSL, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
          "-out", path])
    os.chmod(path, 0o600)


def _asn1_time(dt):
    return dt.strftime("%Y%m%d%H%M%SZ")


_CA_CONF = """\
[ca]
default_ca = this_ca

[this_ca]
dir = {dir}
database = $dir/index.txt
serial = $dir/serial
new_certs_dir = $dir/issued
certificate = $dir/ca.pem
private_key = $dir/ca.key
default_md = sha256
policy = policy_any
unique_subject = no
copy_extensions = none
email_in_dn = no

[policy_any]
commonName = supplied
"""


class Leaf:
    """Leaf is one issued certificate: .cert and .key paths, the issuing CA,
    the serial (lower-case hex) and the SANs it was issued with."""

    def __init__(self, name, cert, key, ca, spiffe, dns):
        self.name = name
        self.cert = cert
        self.key = key
        self.ca = ca
        self.spiffe = spiffe
        self.dns = dns
        self.serial = serial_hex(cert)

    def __iter__(self):  # cert, key = ca.issue(...)
        return iter((self.cert, self.key))

    def __repr__(self):
        return "Leaf(%s serial=%s spiffe=%r dns=%r)" % (self.cert, self.serial, self.spiffe, self.dns)


class CA:
    """CA is a self-signed root in dir/name (see the module docstring)."""

    def __init__(self, dir, name="root", days=3650):
        self.name = name
        self.dir = os.path.join(os.path.abspath(dir), name)
        os.makedirs(os.path.join(self.dir, "issued"), exist_ok=True)
        self.pem = os.path.join(self.dir, "ca.pem")
        self.key = os.path.join(self.dir, "ca.key")
        self.conf = os.path.join(self.dir, "ca.cnf")
        with open(self.conf, "w") as f:
            f.write(_CA_CONF.format(dir=self.dir))
        open(os.path.join(self.dir, "index.txt"), "w").close()
        with open(os.path.join(self.dir, "serial"), "w") as f:
            f.write("1000\n")  # unused: every leaf gets -rand_serial
        _genkey(self.key)
        _run([OPENSSL, "req", "-x509", "-new", "-key", self.key, "-out", self.pem,
              "-days", str(days), "-sha256", "-subj", "/O=sluice-test/CN=%s" % name,
              "-addext", "basicConstraints=critical,CA:TRUE",
              "-addext", "keyUsage=critical,keyCertSign,cRLSign",
              "-addext", "subjectKeyIdentifier=hash"])

    def issue(self, name, spiffe=None, dns=(), cn=None, days=30, expired=False,
              not_yet_valid=False, client=True, server=True, ips=()):
        if isinstance(spiffe, str):
            uris = [spiffe]
        else:
            uris = list(spiffe or [])
        if isinstance(dns, str):
            dns = [dns]
        cert = os.path.join(self.dir, name + ".pem")
        key = os.path.join(self.dir, name + ".key")
        csr = os.path.join(self.dir, name + ".csr")
        ext = os.path.join(self.dir, name + ".ext")
        _genkey(key)
        _run([OPENSSL, "req", "-new", "-key", key, "-out", csr, "-subj",
              "/CN=%s" % (cn or name)])
        eku = [u for u, on in (("serverAuth", server), ("clientAuth", client)) if on]
        sans = ["URI:%s" % u for u in uris] + ["DNS:%s" % d for d in dns] + \
               ["IP:%s" % i for i in ips]
        lines = ["[v3]", "basicConstraints = critical,CA:FALSE",
                 "keyUsage = critical,digitalSignature,keyAgreement",
                 "subjectKeyIdentifier = hash", "authorityKeyIdentifier = keyid"]
        if eku:
            lines.append("extendedKeyUsage = %s" % ",".join(eku))
        if sans:
            # URI SANs make the extension critical in Istio only when the
            # subject is empty; ours always has a CN, so it stays non-critical.
            lines.append("subjectAltName = %s" % ",".join(sans))
        with open(ext, "w") as f:
            f.write("\n".join(lines) + "\n")
        now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        if expired:
            start, end = now - datetime.timedelta(days=10), now - datetime.timedelta(days=1)
        elif not_yet_valid:
            start, end = now + datetime.timedelta(days=1), now + datetime.timedelta(days=1 + days)
        else:
            # a minute of slack for clocks that disagree by a little
            start, end = now - datetime.timedelta(minutes=1), now + datetime.timedelta(days=days)
        with _lock:
            _run([OPENSSL, "ca", "-batch", "-config", self.conf, "-in", csr, "-out", cert,
                  "-notext", "-rand_serial", "-startdate", _asn1_time(start),
                  "-enddate", _asn1_time(end), "-extfile", ext, "-extensions", "v3"])
        for p in (csr, ext):
            os.unlink(p)
        return Leaf(name, cert, key, self, uris, list(dns))

    def istio_dir(self, path, spiffe=None, leaf=None):
        if leaf is None:
            leaf = self.issue("istio-" + os.path.basename(os.path.normpath(path)), spiffe=spiffe)
        os.makedirs(path, exist_ok=True)
        _write_k8s_volume(path, {"cert-chain.pem": _read(leaf.cert), "key.pem": _read(leaf.key),
                                 "root-cert.pem": _read(self.pem)})
        return path

    def ocsp_response(self, leaf, path, status="good"):
        """ocsp_response writes a DER OCSP response for |leaf| (issued by this
        CA) to |path|: "good", or "revoked" (the CA's index marks it so)."""
        cert = leaf.cert if isinstance(leaf, Leaf) else leaf
        req = path + ".req"
        _run([OPENSSL, "ocsp", "-issuer", self.pem, "-cert", cert, "-reqout", req, "-no_nonce"])
        index = os.path.join(self.dir, "ocsp-index.txt")
        with _lock:
            # `openssl ocsp -index` reads the same format as `openssl ca`
            # writes; build one with just this certificate, in the state asked.
            na = _run([OPENSSL, "x509", "-in", cert, "-noout", "-enddate"]).stdout.decode()
            na = datetime.datetime.strptime(na.strip().split("=", 1)[1], "%b %d %H:%M:%S %Y %Z")
            subj = _run([OPENSSL, "x509", "-in", cert, "-noout", "-subject", "-nameopt",
                         "compat"]).stdout.decode().strip().split("=", 1)[1].strip()
            serial = serial_hex(cert).upper()
            if len(serial) % 2:
                serial = "0" + serial
            if status == "revoked":
                row = "R\t%s\t%s\t%s\tunknown\t%s\n" % (
                    na.strftime("%y%m%d%H%M%SZ"),
                    datetime.datetime.now(datetime.timezone.utc).strftime("%y%m%d%H%M%SZ"), serial, subj)
            else:
                row = "V\t%s\t\t%s\tunknown\t%s\n" % (na.strftime("%y%m%d%H%M%SZ"), serial, subj)
            with open(index, "w") as f:
                f.write(row)
            _run([OPENSSL, "ocsp", "-index", index, "-rsigner", self.pem, "-rkey", self.key,
                  "-CA", self.pem, "-reqin", req, "-respout", path, "-ndays", "1"])
        os.unlink(req)
        return path


def _read(p):
    with open(p, "rb") as f:
        return f.read()


def _ts_dir_name():
    # the kubelet's format: ..2026_12_03_19_44_39.123456789
    t = time.time()
    return time.strftime("..%Y_%m_%d_%H_%M_%S", time.gmtime(t)) + ".%09d" % (
        int((t % 1) * 1e9))


def _write_k8s_volume(path, files):
    """_write_k8s_volume (re)writes |files| ({name: bytes}) into |path| the
    way the kubelet's AtomicWriter does."""
    old = None
    data = os.path.join(path, "..data")
    if os.path.islink(data):
        old = os.path.join(path, os.readlink(data))
    ts = _ts_dir_name()
    while os.path.exists(os.path.join(path, ts)):
        time.sleep(0.001)
        ts = _ts_dir_name()
    tsdir = os.path.join(path, ts)
    os.mkdir(tsdir, 0o755)
    for name, content in files.items():
        with open(os.path.join(tsdir, name), "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(os.path.join(tsdir, name), 0o644 if not name.startswith("key") else 0o600)
    tmp = os.path.join(path, "..data_tmp")
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(ts, tmp)
    os.rename(tmp, data)  # the atomic swap
    for name in files:
        link = os.path.join(path, name)
        if not os.path.islink(link):
            if os.path.lexists(link):
                os.unlink(link)
            os.symlink(os.path.join("..data", name), link)
    if old and os.path.isdir(old):
        shutil.rmtree(old)


def rotate_istio_dir(path, new_cert, new_key, new_root=None):
    """rotate_istio_dir swaps an istio_dir's files atomically (module
    docstring). |new_cert|/|new_key| are paths (a Leaf's .cert/.key)."""
    root = _read(new_root) if new_root else _read(os.path.join(path, "root-cert.pem"))
    _write_k8s_volume(path, {"cert-chain.pem": _read(new_cert), "key.pem": _read(new_key),
                             "root-cert.pem": root})


def plain_dir(path, cert, key, root):
    """plain_dir writes an Istio-layout directory of regular files (no
    symlinks), for replace_files."""
    os.makedirs(path, exist_ok=True)
    replace_files(path, cert, key, root)
    return path


def replace_files(path, new_cert, new_key, new_root=None):
    """replace_files replaces cert-chain.pem, key.pem (and root-cert.pem if
    given) in a plain directory, each by write-to-temp + os.replace."""
    pairs = [("cert-chain.pem", new_cert), ("key.pem", new_key)]
    if new_root:
        pairs.append(("root-cert.pem", new_root))
    for name, src in pairs:
        tmp = os.path.join(path, "." + name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(_read(src))
        os.replace(tmp, os.path.join(path, name))


# ---------------------------------------------------------------- inspection

def verify(ca_pem, cert_pem, purpose=None):
    """verify runs `openssl verify -CAfile ca_pem cert_pem`; returns (ok, text)."""
    argv = [OPENSSL, "verify", "-CAfile", ca_pem]
    if purpose:
        argv += ["-purpose", purpose]
    p = _run(argv + [cert_pem], check=False)
    return p.returncode == 0, (p.stdout + p.stderr).decode("utf-8", "replace")


def cert_text(cert_pem, inform="PEM"):
    return _run([OPENSSL, "x509", "-inform", inform, "-noout", "-text"],
                input=_read(cert_pem) if os.path.exists(cert_pem) else cert_pem.encode()
                ).stdout.decode()


def _x509(cert, *opts):
    """_x509 runs `openssl x509 -noout OPTS` on a PEM path or PEM text."""
    data = _read(cert) if os.path.exists(cert) else cert.encode()
    return _run([OPENSSL, "x509", "-noout"] + list(opts), input=data).stdout.decode().strip()


def serial_hex(cert):
    return _x509(cert, "-serial").split("=", 1)[1].lower().lstrip("0") or "0"


def subject(cert):
    return _x509(cert, "-subject", "-nameopt", "RFC2253").split("=", 1)[1].strip()


def san_uris(cert):
    text = _x509(cert, "-ext", "subjectAltName")
    return re.findall(r"URI:([^,\s]+)", text)


def san_dns(cert):
    text = _x509(cert, "-ext", "subjectAltName")
    return re.findall(r"DNS:([^,\s]+)", text)


def fingerprint_sha256(cert):
    """fingerprint_sha256 is the SHA-256 of the certificate's DER, lower-case
    hex without colons (Envoy's XFCC Hash)."""
    fp = _x509(cert, "-fingerprint", "-sha256").split("=", 1)[1]
    return fp.replace(":", "").lower()


def not_after(cert):
    s = _x509(cert, "-enddate").split("=", 1)[1]
    return calendar.timegm(time.strptime(s, "%b %d %H:%M:%S %Y %Z"))


def pem_of(text):
    """pem_of returns the first PEM certificate block in |text| or None."""
    m = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", text, re.S)
    return m.group(0) + "\n" if m else None


class SClient:
    """SClient is one `openssl s_client` run: rc, out (stdout+stderr), the
    served leaf as PEM (.cert, None if none), .protocol ("TLSv1.3"...),
    .reused (True if the session was resumed), .ocsp (the OCSP part of the
    output with -status, else "")."""

    def __init__(self, rc, out):
        self.rc = rc
        self.out = out
        self.cert = pem_of(out)
        # A completed handshake prints "New, <cipher's version>, Cipher is X"
        # (a failed one "New, (NONE), Cipher is (NONE)"). The negotiated
        # version is the SSL-Session "Protocol :" line, which a failed
        # handshake prints too (the version offered): only trusted with a
        # cipher.
        # A TLS 1.3 run that quits before the session ticket prints no
        # SSL-Session at all; there the cipher's version is TLSv1.3 (only
        # TLS 1.3 has TLS 1.3 ciphers).
        new = re.search(r"^(?:New|Reused), (\S+), Cipher is (?!\(NONE\))", out, re.M)
        self.handshake_ok = bool(new)
        m = re.search(r"^\s*Protocol\s*:\s*(\S+)", out, re.M)
        if not new:
            self.protocol = None
        elif m:
            self.protocol = m.group(1)
        else:
            self.protocol = "TLSv1.3" if new.group(1) == "TLSv1.3" else None
        self.reused = bool(re.search(r"^Reused,", out, re.M))
        i = out.find("OCSP response:")
        self.ocsp = out[i:] if i >= 0 else ""

    def __repr__(self):
        return "SClient(rc=%s protocol=%s reused=%s out=%r)" % (self.rc, self.protocol,
                                                              self.reused, self.out[-1500:])


def s_client(port, servername=None, cert=None, key=None, cafile=None, tls=None, cipher=None,
             sess_out=None, sess_in=None, status=False, request=None, host="127.0.0.1",
             timeout=10, extra=()):
    """s_client runs `openssl s_client -connect host:port` with the options
    given; |tls| is "1.1", "1.2" or "1.3" (only that version offered; 1.1
    adds DEFAULT@SECLEVEL=0 so OpenSSL 3 offers it at all). |request| is sent
    after the handshake (e.g. b"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n");
    otherwise stdin is empty and s_client quits once the handshake is done.
    Returns an SClient. Never raises on a failed handshake."""
    argv = [OPENSSL, "s_client", "-connect", "%s:%d" % (host, port), "-showcerts"]
    if servername:
        argv += ["-servername", servername]
    else:
        argv += ["-noservername"]
    if cert:
        argv += ["-cert", cert]
    if key:
        argv += ["-key", key]
    if cafile:
        argv += ["-CAfile", cafile, "-verify_return_error"]
    if tls == "1.1":
        argv += ["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"]
    elif tls == "1.2":
        argv += ["-tls1_2"]
    elif tls == "1.3":
        argv += ["-tls1_3"]
    if cipher:
        argv += ["-cipher", cipher]
    if sess_out:
        argv += ["-sess_out", sess_out]
    if sess_in:
        argv += ["-sess_in", sess_in]
    if status:
        argv += ["-status"]
    if request is not None:
        # keep reading after stdin ends, until the server closes: send
        # "Connection: close" in |request| or the run lasts |timeout|
        argv += ["-ign_eof"]
    argv += list(extra)
    try:
        p = subprocess.run(argv, input=request or b"", capture_output=True, timeout=timeout)
        out = (p.stdout + p.stderr).decode("utf-8", "replace")
        return SClient(p.returncode, out)
    except subprocess.TimeoutExpired as e:
        out = ((e.stdout or b"") + (e.stderr or b"")).decode("utf-8", "replace")
        return SClient(-1, out + "\n[s_client timed out]")


def _harness():
    import harness  # noqa: PLC0415 - only SServer needs the process harness
    return harness


def SServer(workdir, cert, key, args=(), name="s_server"):
    """SServer starts `openssl s_server -www` on a free 127.0.0.1 port with
    |cert|/|key| (+ |args|) and waits until it accepts; returns the Proc,
    with .port set."""
    h = _harness()
    port = h.free_port()
    argv = [OPENSSL, "s_server", "-accept", "127.0.0.1:%d" % port, "-cert", cert, "-key", key,
            "-www"] + list(args)
    p = h.Proc(argv, os.path.join(workdir, "%s-%d.log" % (name, port)))
    p.port = port
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return p
        except OSError:
            if not p.alive():
                break
            time.sleep(0.05)
    p.stop()
    raise RuntimeError("s_server did not listen on %d: %s" % (port, p.log_text()))
