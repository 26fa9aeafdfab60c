"""`resolution: dns` clusters (ServiceEntry resolution: DNS): names are
resolved by the core's evdns resolver on the main thread, each address
becomes an endpoint, and a change of answer is picked up at the next
dns_refresh_rate without a reload. The test runs its own DNS server on
127.0.0.1 (stdlib, UDP) whose answers it changes, and two upstreams on the
same port at 127.0.0.1 and 127.0.0.2."""

import socket
import struct
import threading

import harness as h


class TinyDNS:
    """TinyDNS answers A queries from |records| (name -> [ip]); AAAA and
    unknown names get an empty NOERROR / NXDOMAIN answer."""

    def __init__(self):
        self.records = {}
        self.queries = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.sock.settimeout(0.2)
        self.stop = False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop:
            try:
                data, peer = self.sock.recvfrom(512)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                self.sock.sendto(self.answer(data), peer)
            except (OSError, ValueError, struct.error):
                pass

    def answer(self, q):
        self.queries += 1
        qid, flags, qd = struct.unpack("!HHH", q[:6])
        i, labels = 12, []
        while q[i]:
            n = q[i]
            labels.append(q[i + 1:i + 1 + n].decode())
            i += 1 + n
        qtype, qclass = struct.unpack("!HH", q[i + 1:i + 5])
        question = q[12:i + 5]
        name = ".".join(labels).lower()
        ips = self.records.get(name)
        rcode = 0 if ips is not None else 3
        answers = b""
        n = 0
        if qtype == 1 and ips:
            for ip in ips:
                answers += struct.pack("!HHHIH", 0xC00C, 1, 1, 1, 4) + socket.inet_aton(ip)
                n += 1
        hdr = struct.pack("!HHHHHH", qid, 0x8180 | rcode, 1, n, 0, 0)
        return hdr + question + answers

    def close(self):
        self.stop = True
        self.t.join(2)
        self.sock.close()


class Dns(h.SluiceTestCase):
    def setUp(self):
        super().setUp()
        self.dns = TinyDNS()
        self.addCleanup(self.dns.close)
        self.port = h.free_port()
        self.a = h.Proc([h.UPSTREAM_BIN, "--listen", "127.0.0.1:%d" % self.port, "--name", "A"],
                        "%s/upA.log" % self.tdir)
        self.b = h.Proc([h.UPSTREAM_BIN, "--listen", "127.0.0.2:%d" % self.port, "--name", "B"],
                        "%s/upB.log" % self.tdir)
        self._procs += [self.a, self.b]
        for ip in ("127.0.0.1", "127.0.0.2"):
            h.wait_for(lambda: self._listening(ip), 5)

    def _listening(self, ip):
        try:
            socket.create_connection((ip, self.port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def start(self, refresh="200ms"):
        cl = h.cluster("svc", ["svc.test:%d" % self.port])
        cl["resolution"] = "dns"
        cl["dns_refresh_rate"] = refresh
        filters = [h.router_filter([h.route_to("svc", prefix="/")])]
        cfg = h.build_config(h.free_port(), h.free_port(), filters, [cl], workers=2,
                             extra={"dns": {"nameservers": ["127.0.0.1:%d" % self.dns.port]}})
        return self.sluice(cfg)

    def who(self, s, n=20):
        out = []
        for _ in range(n):
            r = h.curl([s.url("/hello")])
            self.assertEqual(r.status, 200, r)
            out.append(r.headers.get("x-upstream"))
        return set(out)

    def test_resolves_and_follows_answer_changes(self):
        self.dns.records["svc.test"] = ["127.0.0.1"]
        s = self.start()
        self.assertEqual(self.who(s), {"A"})
        gen0 = h.mval(s.metrics(), "sluice_config_generation")
        self.dns.records["svc.test"] = ["127.0.0.2"]
        h.wait_for(lambda: self.who(s, 5) == {"B"}, 5)
        self.assertEqual(self.who(s), {"B"}, "traffic follows the new answer without a reload")
        m = s.metrics()
        self.assertGreater(h.mval(m, "sluice_config_generation"), gen0)
        self.assertGreaterEqual(h.mval(m, "sluice_dns_refreshes_total", result="changed"), 1)
        self.assertEqual(h.mval(m, "sluice_config_reloads_total", result="success"), 0)

    def test_every_address_is_an_endpoint(self):
        self.dns.records["svc.test"] = ["127.0.0.1", "127.0.0.2"]
        s = self.start()
        self.assertEqual(self.who(s, 30), {"A", "B"})

    def test_failed_lookup_keeps_the_last_answer(self):
        self.dns.records["svc.test"] = ["127.0.0.1"]
        s = self.start()
        self.assertEqual(self.who(s), {"A"})
        del self.dns.records["svc.test"]  # NXDOMAIN from now on
        h.wait_for(lambda: h.mval(s.metrics(), "sluice_dns_refreshes_total", result="failed") >= 2,
                   8)
        self.assertEqual(self.who(s), {"A"})

    def test_unresolvable_at_start_serves_503_until_it_resolves(self):
        s = self.start()  # no record yet: the cluster starts empty
        self.assertEqual(h.curl([s.url("/hello")]).status, 503)
        self.dns.records["svc.test"] = ["127.0.0.2"]
        h.wait_for(lambda: h.curl([s.url("/hello")]).status == 200, 5)
        self.assertEqual(self.who(s), {"B"})


if __name__ == "__main__":
    h.main()
