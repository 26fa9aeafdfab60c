"""Shared harness for sluice's integration tests.

Real processes (sluice, sluice-upstream) started with subprocess in their own
process group and stopped by PID (SIGTERM, then SIGKILL after a timeout);
real clients (curl, wrk) for HTTP. Raw sockets only where a real client cannot
send the bytes (malformed input, pipelining, holding a keep-alive connection
across a reload).

Environment (set by ctest, see tests/CMakeLists.txt):
  SLUICE_BIN, SLUICE_FILTER_DIR, SLUICE_TEST_FILTER_DIR, SLUICE_UPSTREAM_BIN,
  SLUICE_SOURCE_DIR, SLUICE_BUILD_DIR.
When run by hand, anything missing defaults to the layout of a build in
SLUICE_BUILD_DIR (default <source dir>/build).
"""

import atexit
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))

# ---------------------------------------------------------------- environment

SOURCE_DIR = os.environ.get("SLUICE_SOURCE_DIR") or os.path.abspath(os.path.join(HERE, "..", ".."))
BUILD_DIR = os.environ.get("SLUICE_BUILD_DIR") or os.path.join(SOURCE_DIR, "build")


def _abi_version():
    """_abi_version reads "MAJOR.MINOR" from the SDK's version.h, so tests
    follow ABI bumps instead of hard-coding them."""
    with open(os.path.join(SOURCE_DIR, "sdk", "include", "sluice", "version.h")) as f:
        text = f.read()
    major = re.search(r"#define SLC_ABI_MAJOR\s+(\d+)", text).group(1)
    minor = re.search(r"#define SLC_ABI_MINOR\s+(\d+)", text).group(1)
    return "%s.%s" % (major, minor)


ABI = _abi_version()
SLUICE_BIN = os.environ.get("SLUICE_BIN") or os.path.join(BUILD_DIR, "core", "sluice")
FILTER_DIR = os.environ.get("SLUICE_FILTER_DIR") or os.path.join(BUILD_DIR, "filters")
TEST_FILTER_DIR = os.environ.get("SLUICE_TEST_FILTER_DIR") or os.path.join(BUILD_DIR, "tests", "filters")
UPSTREAM_BIN = os.environ.get("SLUICE_UPSTREAM_BIN") or os.path.join(BUILD_DIR, "tools", "sluice-upstream")

# Clients must never go through a proxy from the environment.
CLIENT_ENV = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)


def require_binaries(*paths):
    """require_binaries raises RuntimeError if a binary is missing: that is a
    broken build, not a reason to skip."""
    for p in paths:
        if not (os.path.isfile(p) and os.access(p, os.X_OK)):
            raise RuntimeError("required binary missing: %s" % p)


def test_module(name):
    """test_module returns the absolute path of tests/filters/<name>.so or
    raises SkipTest if it was not built."""
    p = os.path.join(TEST_FILTER_DIR, name + ".so")
    if not os.path.isfile(p):
        raise unittest.SkipTest("test filter module not built: %s" % p)
    return p


# ---------------------------------------------------------------- ports

# Ports this test process has handed out. A port named "closed" (a dead
# endpoint) must not come back later as a listener's or admin port, or the
# "dead" endpoint answers: a config built in a loop once routed half its
# requests to sluice's own admin listener that way.
_handed_out = set()
_ports_lock = threading.Lock()


def free_port():
    """free_port binds 127.0.0.1:0, reads the port and closes the socket;
    never a port this process handed out before."""
    for _ in range(100):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        finally:
            s.close()
        with _ports_lock:
            if port not in _handed_out:
                _handed_out.add(port)
                return port
    raise RuntimeError("no fresh port in 100 tries")


def closed_port():
    """closed_port returns a port on 127.0.0.1 that nothing listens on (best
    effort: it was free a moment ago, and free_port never hands it out
    again in this process)."""
    return free_port()


# ---------------------------------------------------------------- processes

_live = []  # every Proc started and not yet stopped, for atexit cleanup
_live_lock = threading.Lock()


def _cleanup_all():
    with _live_lock:
        procs = list(_live)
    for p in procs:
        try:
            p.stop(timeout=3)
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


atexit.register(_cleanup_all)


def _term_handler(signum, frame):  # ctest timeout sends SIGTERM: clean up first
    _cleanup_all()
    sys.exit(128 + signum)


signal.signal(signal.SIGTERM, _term_handler)


class Proc:
    """Proc is a child process in its own process group with its stdout and
    stderr captured in |log_path|. stop() signals the PID only."""

    def __init__(self, argv, log_path, stdout_pipe=False):
        self.argv = list(argv)
        self.log_path = log_path
        self._log = open(log_path, "ab", buffering=0)
        self.p = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout_pipe else self._log,
            stderr=self._log,
            start_new_session=True,
        )
        self.pid = self.p.pid
        with _live_lock:
            _live.append(self)

    def alive(self):
        return self.p.poll() is None

    def signal(self, sig):
        if self.alive():
            os.kill(self.pid, sig)

    def wait(self, timeout):
        """wait returns the exit code or raises subprocess.TimeoutExpired."""
        return self.p.wait(timeout=timeout)

    def stop(self, timeout=10):
        """stop sends SIGTERM, waits up to |timeout| s, then SIGKILLs. Returns
        the exit code."""
        try:
            if self.alive():
                os.kill(self.pid, signal.SIGTERM)
                try:
                    self.p.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    os.kill(self.pid, signal.SIGKILL)
                    self.p.wait(timeout=10)
            return self.p.returncode
        finally:
            with _live_lock:
                if self in _live:
                    _live.remove(self)
            if self.p.stdout:
                try:
                    self.p.stdout.close()
                except OSError:
                    pass
            try:
                self._log.close()
            except OSError:
                pass

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""


class ListeningProc(Proc):
    """ListeningProc is a server child that prints one "listening ADDR:PORT"
    line per listening socket on stdout (port 0 resolved) once bound. The
    constructor waits for |nlisten| of them, bounded by |timeout| s, and
    then keeps draining stdout into the log so the child never blocks on a
    full pipe."""

    def __init__(self, argv, log_path, nlisten=1, timeout=10):
        super().__init__(argv, log_path, stdout_pipe=True)
        self.ports = []
        buf = b""
        deadline = time.monotonic() + timeout
        fd = self.p.stdout.fileno()
        while len(self.ports) < nlisten:
            left = deadline - time.monotonic()
            if left <= 0 or not self.alive():
                self.stop()
                raise RuntimeError("%s did not print 'listening': %r %s"
                                   % (os.path.basename(argv[1] if argv[0] == sys.executable
                                                       else argv[0]), buf, self.log_text()))
            r, _, _ = select.select([fd], [], [], min(left, 0.2))
            if not r:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                continue
            buf += chunk
            self.ports = [int(m) for m in re.findall(rb"listening 127\.0\.0\.1:(\d+)", buf)]
        t = threading.Thread(target=self._drain, daemon=True)
        t.start()

    def _drain(self):
        try:
            for line in self.p.stdout:
                self._log.write(line)
        except (OSError, ValueError):
            pass


class Upstream(ListeningProc):
    """Upstream runs tools/upstream (sluice-upstream) on one or more ports
    picked by the kernel and waits for its `listening` lines."""

    def __init__(self, workdir, name="up", nlisten=1, timeout=10, ports=None):
        require_binaries(UPSTREAM_BIN)
        argv = [UPSTREAM_BIN]
        ports = list(ports) if ports else [0] * nlisten
        for port in ports:
            argv += ["--listen", "127.0.0.1:%d" % port]
        argv += ["--name", name]
        self.name = name
        super().__init__(argv, os.path.join(workdir, "upstream-%s.log" % name), len(ports), timeout)

    @property
    def port(self):
        return self.ports[0]

    @property
    def addr(self):
        return "127.0.0.1:%d" % self.ports[0]

    @property
    def addrs(self):
        return ["127.0.0.1:%d" % p for p in self.ports]


def cpu_seconds(pid):
    """cpu_seconds is the user+system CPU time |pid| (all its threads) has
    used so far, from fields 14 and 15 of /proc/PID/stat."""
    with open("/proc/%d/stat" % pid) as f:
        stat = f.read()
    # The command name (field 2) may hold spaces; fields 3.. follow its ')'.
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CpuMeter measures the share of one core |pid| uses between start()
    and stop() (1.0 is one core busy the whole time). t0 is the monotonic
    time of start(), for scheduling probes within the window."""

    def __init__(self, pid):
        self.pid = pid
        self.share = None
        self.wall = None

    def start(self):
        self._cpu0 = cpu_seconds(self.pid)
        self.t0 = time.monotonic()
        return self

    def stop(self):
        cpu = cpu_seconds(self.pid) - self._cpu0
        self.wall = time.monotonic() - self.t0
        self.share = cpu / self.wall
        return self.share


def cpu_fraction(pid, window=2.0):
    """cpu_fraction is the share of one core |pid| uses over the next
    |window| s."""
    m = CpuMeter(pid).start()
    time.sleep(window)
    return m.stop()


# ---------------------------------------------------------------- config

_PLAIN_RE = re.compile(r"^[A-Za-z0-9_/.][A-Za-z0-9_./:\-]*\Z")
_RESERVED = {"null", "true", "false", "yes", "no", "on", "off", "~", "y", "n"}


def _scalar(v):
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, (int, float)):
        return str(v)
    s = str(v)
    if _PLAIN_RE.match(s) and s.lower() not in _RESERVED and not re.match(r"^[0-9.]+$", s):
        return s
    return json.dumps(s)  # a JSON string is a valid YAML double-quoted scalar


def to_yaml(obj, indent=0):
    """to_yaml renders dicts/lists/scalars as block YAML (keys in insertion
    order). Strings that could be misread are double-quoted."""
    pad = " " * indent
    out = []
    if isinstance(obj, dict):
        if not obj:
            return pad + "{}\n"
        for k, v in obj.items():
            if isinstance(v, dict) and v:
                out.append("%s%s:\n%s" % (pad, k, to_yaml(v, indent + 2)))
            elif isinstance(v, list) and v:
                out.append("%s%s:\n%s" % (pad, k, to_yaml(v, indent + 2)))
            elif isinstance(v, dict):
                out.append("%s%s: {}\n" % (pad, k))
            elif isinstance(v, list):
                out.append("%s%s: []\n" % (pad, k))
            else:
                out.append("%s%s: %s\n" % (pad, k, _scalar(v)))
        return "".join(out)
    if isinstance(obj, list):
        for v in obj:
            if isinstance(v, (dict, list)) and v:
                inner = to_yaml(v, indent + 2)
                # put the first line right after "- "
                out.append("%s- %s" % (pad, inner[indent + 2:]))
            elif isinstance(v, dict):
                out.append("%s- {}\n" % pad)
            elif isinstance(v, list):
                out.append("%s- []\n" % pad)
            else:
                out.append("%s- %s\n" % (pad, _scalar(v)))
        return "".join(out)
    return pad + _scalar(obj) + "\n"


def router_filter(routes, name="routes", domains=("*",)):
    """router_filter builds a router filter entry with one virtual host."""
    return {
        "name": name,
        "module": "router",
        "config": {"virtual_hosts": [{"name": "default", "domains": list(domains), "routes": routes}]},
    }


def lb_filter(name="balance"):
    return {"name": name, "module": "lb", "config": {"policy": "round_robin"}}


def route_to(cluster, prefix="/", timeout=None, path=None):
    m = {"path": path} if path else {"prefix": prefix}
    r = {"cluster": cluster}
    if timeout:
        r["timeout"] = timeout
    return {"match": m, "route": r}


def prefix_route(prefix, cluster):
    """prefix_route sends |prefix|... to |cluster| with the prefix rewritten
    to "/" (sluice-upstream serves its endpoints at fixed paths)."""
    return {"match": {"prefix": prefix}, "route": {"cluster": cluster}, "rewrite": {"uri": "/"}}


def direct(prefix, status, body, path=None):
    m = {"path": path} if path else {"prefix": prefix}
    return {"match": m, "direct_response": {"status": status, "body": body}}


def cluster(name, endpoints, **kw):
    c = {"name": name, "endpoints": list(endpoints)}
    c.update(kw)
    return c


def build_config(listen_port, admin_port, filters, clusters, chain=None, listener_extra=None,
                 workers=2, extra=None, listener_name="public"):
    """build_config returns a config dict with one http listener."""
    lst = {
        "name": listener_name,
        "address": "127.0.0.1:%d" % listen_port,
        "protocol": "http",
        "filter_chain": chain if chain is not None else [f["name"] for f in filters],
    }
    if listener_extra:
        lst.update(listener_extra)
    cfg = {
        "workers": workers,
        "log": {"level": "info"},
        "admin": {"address": "127.0.0.1:%d" % admin_port},
        "filter_dir": FILTER_DIR,
        "drain_timeout": "10s",
        "filters": filters,
        "clusters": clusters,
        "listeners": [lst],
    }
    if extra:
        cfg.update(extra)
    return cfg


# ---------------------------------------------------------------- sluice

class Sluice(Proc):
    """Sluice runs the sluice binary on a config file in |workdir|."""

    def __init__(self, workdir, config, name="sluice", wait_ready=True, ready_timeout=15,
                 extra_args=()):
        require_binaries(SLUICE_BIN)
        self.workdir = workdir
        self.config_path = os.path.join(workdir, "%s.yaml" % name)
        self.write_config(config)
        self._admin_port, self._port = self._ports_of(self.config, self.config_text)
        super().__init__([SLUICE_BIN, "-c", self.config_path] + list(extra_args),
                         os.path.join(workdir, "%s.log" % name))
        if wait_ready:
            try:
                self.wait_ready(ready_timeout)
            except BaseException:
                self.stop(timeout=3)
                raise

    def write_config(self, config):
        """write_config writes |config| (dict or YAML text) atomically (rename)."""
        if isinstance(config, dict):
            self.config = config
            text = to_yaml(config)
        else:
            self.config = None
            text = config
        self.config_text = text
        tmp = self.config_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.config_path)

    @staticmethod
    def _ports_of(config, text):
        if config:
            return (int(config["admin"]["address"].rsplit(":", 1)[1]),
                    int(config["listeners"][0]["address"].rsplit(":", 1)[1]))
        m = re.search(r"admin:\s*\{?\s*address:\s*\"?127\.0\.0\.1:(\d+)", text)
        admin = int(m.group(1)) if m else 9901
        m = re.search(r"listeners:.*?address:\s*\"?127\.0\.0\.1:(\d+)", text, re.S)
        return admin, int(m.group(1)) if m else None

    @property
    def admin_port(self):
        """admin_port is the admin port of the config sluice started with."""
        return self._admin_port

    @property
    def port(self):
        """port is the first listener's port of the config sluice started with."""
        return self._port

    def url(self, path="/"):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def admin_url(self, path):
        return "http://127.0.0.1:%d%s" % (self.admin_port, path)

    def wait_ready(self, timeout=15):
        """wait_ready polls admin /ready with curl until 200, bounded."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError("sluice exited with %s before ready:\n%s"
                                   % (self.p.returncode, self.log_text()[-4000:]))
            r = curl([self.admin_url("/ready")], timeout=2, check=False)
            last = r
            if r.status == 200:
                return
            time.sleep(0.05)
        raise RuntimeError("sluice not ready after %ss (last %r):\n%s"
                           % (timeout, last and last.status, self.log_text()[-4000:]))

    def sighup(self):
        self.signal(signal.SIGHUP)

    SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                         "WARNING: ThreadSanitizer")

    def stop(self, timeout=10):
        """stop stops sluice like Proc.stop and then fails the test if the
        sanitizer build reported anything (ASan, LSan at exit, UBSan)."""
        rc = super().stop(timeout)
        text = self.log_text()
        for marker in self.SANITIZER_MARKERS:
            i = text.find(marker)
            if i >= 0:
                raise AssertionError("sanitizer report in %s:\n%s"
                                     % (self.log_path, text[max(0, i - 200):i + 4000]))
        return rc

    def metrics(self):
        return metrics(self.admin_port)

    def rss_kib(self):
        return rss_kib(self.pid)

    def reload(self, config, expect_success=True, timeout=10):
        """reload rewrites the config, sends SIGHUP and waits until
        sluice_config_reloads_total{result=...} increments. Returns the
        metrics after."""
        res = "success" if expect_success else "failure"
        before = mval(self.metrics(), "sluice_config_reloads_total", result=res)
        self.write_config(config)
        self.sighup()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = self.metrics()
            if mval(m, "sluice_config_reloads_total", result=res) > before:
                return m
            time.sleep(0.02)
        raise AssertionError("reload (%s) not observed within %ss" % (res, timeout))


def run_sluice(args, timeout=30, env=None, binary=None):
    """run_sluice runs the binary (|binary|, default SLUICE_BIN) to
    completion with |env| (default: this process's); returns
    CompletedProcess."""
    binary = binary or SLUICE_BIN
    require_binaries(binary)
    return subprocess.run([binary] + list(args), stdin=subprocess.DEVNULL, env=env,
                          capture_output=True, text=True, timeout=timeout)


# ---------------------------------------------------------------- curl

class Resp:
    """Resp is one curl result: final status, final headers, body, and the
    list of every status seen (interim 1xx included). Unpacks as
    (status, headers, body)."""

    def __init__(self, rc, status, headers, header_list, body, statuses, stderr):
        self.rc = rc
        self.status = status
        self.headers = headers          # lower-case name -> last value
        self.header_list = header_list  # [(name, value)] of the final response
        self.body = body                # bytes
        self.statuses = statuses
        self.stderr = stderr

    def __iter__(self):
        return iter((self.status, self.headers, self.body))

    def __repr__(self):
        return "Resp(rc=%s status=%s headers=%r body=%r stderr=%r)" % (
            self.rc, self.status, self.headers, self.body[:200], self.stderr[-300:])

    def text(self):
        return self.body.decode("utf-8", "replace")


def _parse_curl_i(out):
    statuses = []
    headers, header_list = {}, []
    rest = out
    while rest.startswith(b"HTTP/"):
        sep = rest.find(b"\r\n\r\n")
        if sep < 0:
            head, rest = rest, b""
        else:
            head, rest = rest[:sep], rest[sep + 4:]
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        status = int(parts[1])
        statuses.append(status)
        headers, header_list = {}, []
        for ln in lines[1:]:
            if b":" in ln:
                k, v = ln.split(b":", 1)
                k = k.decode("latin-1").strip().lower()
                v = v.decode("latin-1").strip()
                headers[k] = v
                header_list.append((k, v))
    return statuses, headers, header_list, rest


def curl(args, timeout=10, check=False, input=None, stdin=None):
    """curl runs `curl -sS -i --max-time timeout ARGS` and returns a Resp.
    status is 0 when curl got no response (rc tells why). With check=True a
    non-zero curl exit raises."""
    argv = ["curl", "-sS", "-i", "--max-time", str(timeout), "--noproxy", "*"] + list(args)
    p = subprocess.run(argv, input=input, stdin=stdin if input is None else None,
                       capture_output=True, env=CLIENT_ENV, timeout=timeout + 10)
    if check and p.returncode != 0:
        raise AssertionError("curl %s failed rc=%d: %s" % (args, p.returncode, p.stderr.decode()))
    statuses, headers, header_list, body = _parse_curl_i(p.stdout)
    return Resp(p.returncode, statuses[-1] if statuses else 0, headers, header_list, body,
                statuses, p.stderr.decode("utf-8", "replace"))


def curl_w(args, fmt, timeout=10):
    """curl_w runs `curl -sS -w FMT ARGS` with every URL's body sent to
    /dev/null and returns (rc, stdout text, stderr text)."""
    argv = ["curl", "-sS", "--max-time", str(timeout), "--noproxy", "*", "-w", fmt]
    for a in args:
        if a.startswith("http://"):
            argv += ["-o", "/dev/null"]
        argv.append(a)
    p = subprocess.run(argv, capture_output=True, env=CLIENT_ENV, timeout=timeout + 10, text=True)
    return p.returncode, p.stdout, p.stderr


def curl_v(args, timeout=10):
    """curl_v runs `curl -sS -v ARGS` (stdout discarded); returns (rc, stderr).
    Give one `-o /dev/null` per URL in ARGS to keep bodies out of the way."""
    argv = ["curl", "-sS", "-v", "--max-time", str(timeout), "--noproxy", "*"] + list(args)
    p = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=CLIENT_ENV,
                       timeout=timeout + 10, text=True)
    return p.returncode, p.stderr


# ---------------------------------------------------------------- metrics

_SAMPLE_RE = re.compile(
    r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*)\})?'
    r' (?P<value>[-+]?(?:[0-9.]+(?:[eE][-+]?[0-9]+)?|NaN|[-+]?Inf))(?: -?[0-9]+)?$')
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """parse_metrics parses Prometheus text into {(name, frozenset(labels)): value}.
    Raises ValueError on a line that is neither a comment nor a sample."""
    out = {}
    for ln in text.splitlines():
        if not ln.strip() or ln.startswith("#"):
            continue
        m = _SAMPLE_RE.match(ln)
        if not m:
            raise ValueError("bad metrics line: %r" % ln)
        labels = frozenset(_LABEL_RE.findall(m.group("labels") or ""))
        key = (m.group("name"), labels)
        if key in out:
            raise ValueError("duplicated series: %r" % ln)
        out[key] = float(m.group("value"))
    return out


def metrics(admin_port, timeout=5):
    r = curl(["http://127.0.0.1:%d/metrics" % admin_port], timeout=timeout)
    if r.status != 200:
        raise AssertionError("GET /metrics -> %r" % r)
    return parse_metrics(r.text())


def mval(m, name, **labels):
    """mval sums every series of |name| whose labels include |labels|."""
    want = set(labels.items())
    return sum(v for (n, ls), v in m.items() if n == name and want <= set(ls))


def mseries(m, name):
    return {ls: v for (n, ls), v in m.items() if n == name}


# ---------------------------------------------------------------- memory

def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1])
    raise RuntimeError("no VmRSS for %d" % pid)


class RssSampler:
    """RssSampler samples a PID's RSS every |interval| s in a thread."""

    def __init__(self, pid, interval=0.02):
        self.pid, self.interval = pid, interval
        self.samples = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                self.samples.append(rss_kib(self.pid))
            except (OSError, RuntimeError):
                return
            self._stop.wait(self.interval)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join(5)

    @property
    def peak(self):
        return max(self.samples) if self.samples else 0


# ---------------------------------------------------------------- raw sockets

class RawConn:
    """RawConn is a plain TCP client for bytes curl cannot send. It reads
    HTTP/1.x responses (Content-Length, chunked, or close-delimited)."""

    def __init__(self, port, timeout=5):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.timeout = timeout

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.s.sendall(data)

    def _fill(self):
        try:
            d = self.s.recv(65536)
        except ConnectionResetError:
            d = b""
        if not d:
            raise EOFError
        self.buf += d

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        ln, self.buf = self.buf.split(b"\r\n", 1)
        return ln

    def _exact(self, n):
        while len(self.buf) < n:
            self._fill()
        d, self.buf = self.buf[:n], self.buf[n:]
        return d

    def read_response(self, method="GET"):
        """read_response returns (status, [(name, value)], body); skips 1xx.
        Raises EOFError if the peer closed before a whole response."""
        while True:
            status_line = self._line()
            parts = status_line.split(b" ", 2)
            status = int(parts[1])
            hdrs = []
            while True:
                ln = self._line()
                if not ln:
                    break
                k, v = ln.split(b":", 1)
                hdrs.append((k.decode("latin-1").strip().lower(), v.decode("latin-1").strip()))
            if 100 <= status < 200:
                continue
            break
        h = dict(hdrs)
        if method == "HEAD" or status in (204, 304):
            return status, hdrs, b""
        if "chunked" in h.get("transfer-encoding", "").lower():
            body = b""
            while True:
                size = int(self._line().split(b";")[0], 16)
                if size == 0:
                    while self._line():
                        pass
                    break
                body += self._exact(size)
                self._line()
            return status, hdrs, body
        if "content-length" in h:
            return status, hdrs, self._exact(int(h["content-length"]))
        # close-delimited
        while True:
            try:
                self._fill()
            except EOFError:
                break
        body, self.buf = self.buf, b""
        return status, hdrs, body

    def closed_by_peer(self, timeout=3.0):
        """closed_by_peer returns True if the peer closes (EOF or RST) within
        |timeout| s with no further bytes, False on timeout; raises if more
        bytes arrive."""
        if self.buf:
            raise AssertionError("unexpected bytes after response: %r" % self.buf[:200])
        self.s.settimeout(timeout)
        try:
            d = self.s.recv(4096)
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True
        finally:
            self.s.settimeout(self.timeout)
        if d:
            raise AssertionError("unexpected bytes after response: %r" % d[:200])
        return True

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


# ---------------------------------------------------------------- test case

class SluiceTestCase(unittest.TestCase):
    """SluiceTestCase gives each class a temp dir (self.workdir / cls.workdir),
    tracks processes started through start_* and prints their logs when a
    test fails. Class-level processes are stopped in tearDownClass, test-level
    ones in tearDown."""

    keep_workdir = bool(os.environ.get("SLUICE_KEEP_WORKDIR"))

    @classmethod
    def setUpClass(cls):
        cls.workdir = tempfile.mkdtemp(prefix="sluice-itest-%s-" % cls.__name__)
        cls._class_procs = []

    @classmethod
    def tearDownClass(cls):
        for p in reversed(cls._class_procs):
            p.stop()
        cls._class_procs = []
        if not cls.keep_workdir:
            shutil.rmtree(cls.workdir, ignore_errors=True)

    @classmethod
    def class_upstream(cls, name="up", nlisten=1):
        u = Upstream(cls.workdir, name=name, nlisten=nlisten)
        cls._class_procs.append(u)
        return u

    @classmethod
    def class_sluice(cls, config, name="sluice", **kw):
        s = Sluice(cls.workdir, config, name=name, **kw)
        cls._class_procs.append(s)
        return s

    def setUp(self):
        self._procs = []
        self.tdir = tempfile.mkdtemp(prefix="t-", dir=self.workdir)

    def tearDown(self):
        for p in reversed(self._procs):
            p.stop()

    def upstream(self, name="up", nlisten=1, ports=None):
        u = Upstream(self.tdir, name=name, nlisten=nlisten, ports=ports)
        self._procs.append(u)
        return u

    def sluice(self, config, name="sluice", **kw):
        s = Sluice(self.tdir, config, name=name, **kw)
        self._procs.append(s)
        return s

    def run(self, result=None):
        before = (len(result.failures) + len(result.errors)) if result else 0
        r = super().run(result)
        if result is not None and len(result.failures) + len(result.errors) > before:
            self._dump_logs()
        return r

    def _dump_logs(self):
        procs = list(getattr(self, "_procs", [])) + list(getattr(type(self), "_class_procs", []))
        seen = set()
        for p in procs:
            if p.log_path in seen:
                continue
            seen.add(p.log_path)
            txt = p.log_text()
            lines = txt.splitlines()
            sys.stderr.write("\n----- %s (%s, last %d of %d lines) -----\n"
                             % (os.path.basename(p.log_path), " ".join(p.argv[:3]),
                                min(80, len(lines)), len(lines)))
            sys.stderr.write("\n".join(lines[-80:]) + "\n")
        sys.stderr.flush()


def main():
    """main runs unittest with a verbose summary; exits non-zero on failure."""
    unittest.main(verbosity=2)


# ---------------------------------------------------------------- traffic
# traffic: helpers for the issue-3 tests (router, lb, circuit-breaker).
# Nothing above this line depends on them.

import collections  # noqa: E402  (traffic: helpers only)
import http.server  # noqa: E402
import socketserver  # noqa: E402

# traffic: response flag bits (sdk/include/sluice/types.h SLC_RF_*).
RF = {"UF": 1 << 0, "UH": 1 << 1, "UT": 1 << 2, "UC": 1 << 3, "UR": 1 << 4, "NR": 1 << 5,
      "DC": 1 << 6, "LR": 1 << 7, "UO": 1 << 8, "DI": 1 << 9, "FI": 1 << 10, "DPE": 1 << 13,
      "SI": 1 << 14, "UPE": 1 << 15}


def router_vhosts(vhosts, name="routes"):
    """traffic: router_vhosts builds a router filter entry from a list of
    virtual hosts ({"name", "domains", "routes"})."""
    return {"name": name, "module": "router", "config": {"virtual_hosts": list(vhosts)}}


def vhost(domains, routes, name=None):
    """traffic: vhost is one virtual host of a router config."""
    v = {"name": name or str(domains[0]).replace("*", "any"), "domains": list(domains),
         "routes": list(routes)}
    return v


def lb_filter_cfg(config, name="balance"):
    """traffic: lb_filter_cfg is an lb filter entry with a whole config."""
    return {"name": name, "module": "lb", "config": config}


def cb_module():
    """traffic: cb_module names the circuit-breaker module: the built .so
    under FILTER_DIR if one exists (circuit-breaker.so or
    circuit_breaker.so), else "circuit-breaker"."""
    for n in ("circuit-breaker", "circuit_breaker", "circuitbreaker"):
        if os.path.isfile(os.path.join(FILTER_DIR, n + ".so")):
            return n
    return "circuit-breaker"


def cb_filter(clusters_cfg, name="cb"):
    """traffic: cb_filter is a circuit-breaker filter entry configuring
    |clusters_cfg| ({cluster name: {connection_pool, outlier_detection}})."""
    return {"name": name, "module": cb_module(), "config": {"clusters": clusters_cfg}}


def mval_suffix(m, suffix, **labels):
    """traffic: mval_suffix sums every series whose name ends with |suffix|
    (e.g. "cb_ejections_total" matches sluice_cb_ejections_total) and whose
    labels include |labels|."""
    want = set(labels.items())
    return sum(v for (n, ls), v in m.items() if n.endswith(suffix) and want <= set(ls))


def wait_for(pred, timeout, interval=0.05):
    """traffic: wait_for polls pred() until it returns something truthy or
    |timeout| s pass; returns the last value."""
    deadline = time.monotonic() + timeout
    v = pred()
    while not v and time.monotonic() < deadline:
        time.sleep(interval)
        v = pred()
    return v


def stream_flags(sluice, since=0):
    """traffic: stream_flags parses sluice's debug "stream done" log lines
    (log level debug) from byte offset |since| of its log and returns
    [(status, flags)]."""
    text = sluice.log_text()[since:]
    out = []
    for m in re.finditer(r'msg="stream done".*?status=(\d+) flags=0x([0-9a-fA-F]+)', text):
        out.append((int(m.group(1)), int(m.group(2), 16)))
    return out


def _request_bytes(method, path, host, headers):
    lines = ["%s %s HTTP/1.1" % (method, path), "Host: %s" % host]
    for k, v in (headers or {}).items():
        lines.append("%s: %s" % (k, v))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def pipelined_get(port, n, path="/hello", host="127.0.0.1", headers=None, conns=4, batch=50,
                  timeout=60, method="GET", req_fn=None):
    """traffic: pipelined_get sends |n| requests over |conns| keep-alive
    connections, |batch| pipelined requests at a time, and returns
    [(status, {lower-case header: value}, body)] in no particular order.
    req_fn(i) -> (path, headers) overrides path/headers per request. It is a
    counting client: bounded by |n| and |timeout| s; a connection the server
    closes is reopened and the unanswered requests re-sent (at most 50
    times per connection). Raises AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    reqs = []
    for i in range(n):
        p, hd = req_fn(i) if req_fn else (path, headers)
        reqs.append(_request_bytes(method, p, host, hd))
    shares = [reqs[i::conns] for i in range(conns)]
    results = [[] for _ in range(conns)]
    errors = []

    def worker(k):
        todo = shares[k]
        reopen = 0
        c = None
        try:
            while todo:
                if time.monotonic() > deadline:
                    raise AssertionError("pipelined_get: timed out with %d left" % len(todo))
                if c is None:
                    c = RawConn(port, timeout=max(1.0, min(20.0, deadline - time.monotonic())))
                chunk = todo[:batch]
                c.send(b"".join(chunk))
                got = 0
                try:
                    for _ in chunk:
                        st, hdrs, body = c.read_response(method)
                        results[k].append((st, dict(hdrs), body))
                        got += 1
                        if dict(hdrs).get("connection", "").lower() == "close":
                            raise EOFError
                except (EOFError, ConnectionError):
                    c.close()
                    c = None
                    reopen += 1
                    if reopen > 50:
                        raise AssertionError("pipelined_get: server kept closing")
                todo = todo[got:]
        except BaseException as e:  # noqa: BLE001 - reported to the caller
            errors.append(e)
        finally:
            if c is not None:
                c.close()

    ts = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(conns)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(max(0.1, deadline - time.monotonic() + 5))
    if errors:
        raise AssertionError("pipelined_get failed: %r" % errors[0])
    if any(t.is_alive() for t in ts):
        raise AssertionError("pipelined_get: client threads still running after %ss" % timeout)
    return [r for rs in results for r in rs]


def count_header(results, name="x-upstream"):
    """traffic: count_header counts the values of header |name| (None when
    absent) in pipelined_get/concurrent_get results."""
    return collections.Counter(r[1].get(name) for r in results)


def concurrent_get(port, n, conc=10, path="/hello", host="127.0.0.1", headers=None, timeout=60,
                   req_timeout=10):
    """traffic: concurrent_get sends |n| requests from |conc| threads, each
    with one keep-alive connection and one request at a time, and returns
    [(status, headers, body, elapsed_s)]; status 0 when the request failed
    (connection error or per-request timeout). Bounded by |n| and
    |timeout|."""
    deadline = time.monotonic() + timeout
    req = _request_bytes("GET", path, host, headers)
    lock = threading.Lock()
    left = [n]
    out = []

    def worker():
        c = None
        while time.monotonic() < deadline:
            with lock:
                if left[0] <= 0:
                    break
                left[0] -= 1
            t0 = time.monotonic()
            try:
                if c is None:
                    c = RawConn(port, timeout=req_timeout)
                c.send(req)
                st, hdrs, body = c.read_response()
                hd = dict(hdrs)
                if hd.get("connection", "").lower() == "close":
                    c.close()
                    c = None
            except (OSError, EOFError, ValueError):
                st, hd, body = 0, {}, b""
                if c is not None:
                    c.close()
                    c = None
            with lock:
                out.append((st, hd, body, time.monotonic() - t0))
        if c is not None:
            c.close()

    ts = [threading.Thread(target=worker, daemon=True) for _ in range(conc)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(max(0.1, deadline - time.monotonic() + req_timeout + 5))
    return out


def staggered_get(port, n, interval, path="/hello", host="127.0.0.1", headers=None,
                  req_timeout=10):
    """traffic: staggered_get starts request i (a new connection each) at
    i * |interval| s, lets them overlap, and returns
    [(status, headers, body, elapsed_s)] in start order (status 0 on error
    or timeout). Bounded: n threads, each at most |req_timeout| s."""
    req = _request_bytes("GET", path, host, dict(headers or {}, Connection="close"))
    out = [None] * n
    t_start = time.monotonic()

    def one(i):
        delay = t_start + i * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        t0 = time.monotonic()
        c = None
        try:
            c = RawConn(port, timeout=req_timeout)
            c.send(req)
            st, hdrs, body = c.read_response()
            out[i] = (st, dict(hdrs), body, time.monotonic() - t0)
        except (OSError, EOFError, ValueError):
            out[i] = (0, {}, b"", time.monotonic() - t0)
        finally:
            if c is not None:
                c.close()

    ts = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(n * interval + req_timeout + 5)
    return [o if o is not None else (0, {}, b"", req_timeout) for o in out]


class PyUpstream:
    """traffic: PyUpstream is an in-process threaded HTTP/1.1 server for what
    sluice-upstream cannot do: count the requests it receives (mirror
    targets) and answer deliberately slowly (|delay| s before every
    response, cut short by stop()). Every response has status |status|
    (default 200), "x-upstream: NAME" and body "NAME\\n". Not a process: stop() shuts it
    down (no PID involved)."""

    def __init__(self, name="py", delay=0.0, port=0, status=200):
        self.name = name
        self.delay = delay
        self.status = status
        self.requests = []  # [(method, path, {lower-case header: value})]
        self.lock = threading.Lock()
        self._stopping = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _serve(self):
                n = int(self.headers.get("content-length") or 0)
                if n:
                    self.rfile.read(n)
                with outer.lock:
                    outer.requests.append((self.command, self.path,
                                           {k.lower(): v for k, v in self.headers.items()}))
                if outer.delay and outer._stopping.wait(outer.delay):
                    self.close_connection = True
                    return
                body = (outer.name + "\n").encode()
                self.send_response(outer.status)
                self.send_header("x-upstream", outer.name)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _serve

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            block_on_close = False
            allow_reuse_address = True
            request_queue_size = 128

            def handle_error(self, request, client_address):
                pass  # a peer that went away mid-response is expected here

        self.server = Server(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.addr = "127.0.0.1:%d" % self.port
        self._t = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                   daemon=True)
        self._t.start()

    def count(self, path_prefix=""):
        with self.lock:
            return sum(1 for _, p, _ in self.requests if p.startswith(path_prefix))

    def stop(self):
        self._stopping.set()
        self.server.shutdown()
        self.server.server_close()
        self._t.join(5)


def kill_upstream(u):
    """traffic: kill_upstream SIGKILLs the Upstream |u| by PID (a crash, not
    a graceful stop) and reaps it."""
    u.signal(signal.SIGKILL)
    u.stop(timeout=5)
