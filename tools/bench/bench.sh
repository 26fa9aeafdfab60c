#!/usr/bin/env bash
# bench.sh: side-by-side HTTP/1.1 benchmark of sluice, HAProxy and nginx in
# front of one backend, everything on 127.0.0.1. See docs/performance.md.
#
# Modes:
#   (default)        wrk rounds over TARGETS (direct haproxy nginx sluice);
#                    table of median req/s, p50, p99 and paired ratios
#   FILTERS="0 1 8"  wrk rounds over sluice with 0, 1 and 8 noop filters
#                    before router+lb; req/s for each and cost per filter
#   INSTR=1          user-space instructions per request under callgrind,
#                    for sluice with each FILTERS count, haproxy, nginx
#                    (and the backend itself: "direct")
#   MEMORY=1         only the memory-after-burst stage (below)
#   TLS=1            HTTPS: haproxy, nginx and sluice (mtls filter, SIMPLE)
#                    terminate TLS 1.3 with one P-256 certificate made for
#                    the run (openssl, signed by a throwaway CA) in front of
#                    the same plain-HTTP backend. Two wrk runs per target
#                    and round: (a) HTTPS keep-alive, (b) a new connection
#                    and full handshake per request (-H 'Connection: close').
#                    Without a built mtls filter module, sluice is left out
#                    with a message and the other two still run.
#
# The default mode ends with the memory-after-burst stage: for each of
# BURST_CLIENTS and each proxy, a fresh proxy process gets N keep-alive
# clients that each send one request at once and then stay idle
# (burst.py); the RSS it keeps, per client, is reported.
#
# Environment (all optional):
#   SLUICE_BIN=build/core/sluice      SLUICE_FILTER_DIR=build/filters
#   NOOP_SO=build/tests/filters/noop.so   UPSTREAM_BIN=build/tools/sluice-upstream
#   (relative paths are relative to the repository root)
#   ROUNDS=3 DURATION=10 CONNS=50     wrk -t1 -c$CONNS -d${DURATION}s, ROUNDS interleaved rounds
#   BASE_PORT=29000                   ports BASE_PORT .. BASE_PORT+59 must be free
#   OUT_JSON=/tmp/sluice-bench/<mode>.json
#   TARGETS="direct haproxy nginx sluice"   (FILTERS mode: default none, sluice-fN are added)
#   FILTERS=""                        e.g. "0 1 8"
#   CB=0                              1: circuit-breaker in sluice's chain (router, cb, lb)
#   INSTR=0 N1=5000 N2=25000          INSTR=1: h2load --h1 -c10 -n N1, then -n N2
#   INSTR_TARGETS="sluice haproxy nginx direct"  (also: sluice-rbac = the default chain
#                                     with an rbac instance; sluice-tls = behind mtls, h2load over TLS 1.3)
#   RBAC=0                            1: an rbac instance (3 policies) in front of the router
#   BACKEND=nginx                     or "upstream" (sluice-upstream)
#   PIN=1 SERVER_CPU=1 CLIENT_CPU=0   servers on one core, load generator on another
#   WARMUP=2                          seconds of wrk per target before the rounds
#   KEEP_WORKDIR=0                    1: keep configs, raw outputs and logs
#   BURST_CLIENTS="1000 10000"        memory stage client counts ("" skips the stage)
#   BURST_SETTLE=3                    seconds between the last response and the reading
#   MEM_TARGETS="haproxy nginx sluice"  (default mode: those of TARGETS)
#   TLS=0                             1: TLS mode; TARGETS default "haproxy nginx sluice"
#
# Every process is started with setsid (its own process group) and stopped
# by that PID or group in the EXIT trap, never by name. Every client run is
# wrapped in `timeout`.
set -u
set -o pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
abspath() { case $1 in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$REPO/$1" ;; esac; }

SLUICE_BIN=$(abspath "${SLUICE_BIN:-build/core/sluice}")
SLUICE_FILTER_DIR=$(abspath "${SLUICE_FILTER_DIR:-build/filters}")
NOOP_SO=$(abspath "${NOOP_SO:-build/tests/filters/noop.so}")
UPSTREAM_BIN=$(abspath "${UPSTREAM_BIN:-build/tools/sluice-upstream}")
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-50}
BASE_PORT=${BASE_PORT:-29000}
FILTERS=${FILTERS:-}
INSTR=${INSTR:-0}
N1=${N1:-5000}
N2=${N2:-25000}
BACKEND=${BACKEND:-nginx}
PIN=${PIN:-1}
SERVER_CPU=${SERVER_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
WARMUP=${WARMUP:-2}
KEEP_WORKDIR=${KEEP_WORKDIR:-0}
MEMORY=${MEMORY:-0}
TLS=${TLS:-0}
BURST_CLIENTS=${BURST_CLIENTS-"1000 10000"}
BURST_SETTLE=${BURST_SETTLE:-3}
die_early() {
    echo "error: $*" >&2
    exit 1
}
if [ "$MEMORY" = 1 ]; then
    MODE=memory
    MEM_TARGETS=${MEM_TARGETS:-"haproxy nginx sluice"}
    TARGETS=""
    [ -n "$BURST_CLIENTS" ] || { echo "MEMORY=1 needs BURST_CLIENTS" >&2; exit 1; }
elif [ "$INSTR" = 1 ]; then
    MODE=instr
    FILTERS=${FILTERS:-"0 1 8"}
    INSTR_TARGETS=${INSTR_TARGETS:-"sluice haproxy nginx direct"}
elif [ "$TLS" = 1 ]; then
    MODE=tls
    TARGETS=${TARGETS:-"haproxy nginx sluice"}
    MEM_TARGETS=""
    [ -z "$FILTERS" ] || die_early "TLS=1 does not combine with FILTERS"
elif [ -n "$FILTERS" ]; then
    MODE=filters
    TARGETS=${TARGETS:-}
else
    MODE=bench
    TARGETS=${TARGETS:-"direct haproxy nginx sluice"}
fi
OUT_JSON=${OUT_JSON:-/tmp/sluice-bench/$MODE.json}

# Ports: backend +0, haproxy +1, nginx proxy +2, sluice +3 (admin +4),
# sluice with N noop filters +10+i (admin +20+i), callgrind runs +40..+59.
BACKEND_PORT=$BASE_PORT
HAPROXY_PORT=$((BASE_PORT + 1))
NGINX_PORT=$((BASE_PORT + 2))
SLUICE_PORT=$((BASE_PORT + 3))
SLUICE_ADMIN=$((BASE_PORT + 4))

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

case $BACKEND in nginx | upstream) ;; *) die "BACKEND must be nginx or upstream, not '$BACKEND'" ;; esac
for v in ROUNDS DURATION CONNS BASE_PORT N1 N2 WARMUP BURST_SETTLE; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a number, not '${!v}'"
done
for n in $BURST_CLIENTS; do
    if ! [[ $n =~ ^[0-9]+$ ]] || [ "$n" -lt 1 ] || [ "$n" -gt 15000 ]; then
        die "BURST_CLIENTS: '$n' is not 1..15000"
    fi
done
if [ "$MODE" = bench ] && [ -z "${MEM_TARGETS+x}" ]; then
    MEM_TARGETS=""
    for t in $TARGETS; do [ "$t" = direct ] || MEM_TARGETS+="$t "; done
fi
MEM_TARGETS=${MEM_TARGETS:-}
[ "$N2" -gt "$N1" ] || die "N2 must be larger than N1"
for n in $FILTERS; do
    if ! [[ $n =~ ^[0-9]+$ ]] || [ "$n" -gt 64 ]; then die "FILTERS: '$n' is not 0..64"; fi
done

# --- tools ------------------------------------------------------------------
need_cmds=(wrk haproxy nginx python3 taskset setsid timeout)
[ "$MODE" = instr ] && need_cmds+=(valgrind h2load)
[ "$MODE" = tls ] && need_cmds+=(openssl curl)
missing=()
for c in "${need_cmds[@]}"; do command -v "$c" >/dev/null 2>&1 || missing+=("$c"); done
if [ ${#missing[@]} -gt 0 ]; then
    pkgs=()
    for c in "${missing[@]}"; do
        case $c in
        h2load) pkgs+=(nghttp2-client) ;;
        python3) pkgs+=(python3-minimal) ;;
        taskset | setsid) pkgs+=(util-linux) ;;
        timeout) pkgs+=(coreutils) ;;
        *) pkgs+=("$c") ;;
        esac
    done
    [ "$(id -u)" = 0 ] || die "missing ${missing[*]}; install: apt-get install ${pkgs[*]}"
    log "installing ${pkgs[*]}"
    timeout 300 apt-get update -o DPkg::Lock::Timeout=120 >/dev/null 2>&1 || log "apt-get update failed; trying the install anyway"
    DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -o DPkg::Lock::Timeout=300 "${pkgs[@]}" >/dev/null ||
        die "apt-get install ${pkgs[*]} failed"
fi

if [ "$PIN" = 1 ] && { [ "$(nproc)" -le "$SERVER_CPU" ] || [ "$(nproc)" -le "$CLIENT_CPU" ]; }; then
    log "warning: only $(nproc) CPU(s); running unpinned (PIN=0)"
    PIN=0
fi
uses_sluice=0
for t in ${TARGETS:-} ${INSTR_TARGETS:-} ${MEM_TARGETS:-}; do [ "$t" = sluice ] && uses_sluice=1; done
[ "$MODE" = filters ] && uses_sluice=1
if [ "$uses_sluice" = 1 ]; then
    [ -x "$SLUICE_BIN" ] || die "sluice binary not found: $SLUICE_BIN (build it, or set SLUICE_BIN)"
    [ -d "$SLUICE_FILTER_DIR" ] || die "filter directory not found: $SLUICE_FILTER_DIR (set SLUICE_FILTER_DIR)"
    for n in $FILTERS; do
        [ "$n" -gt 0 ] && { [ -f "$NOOP_SO" ] || die "noop filter not found: $NOOP_SO (set NOOP_SO)"; }
    done
fi
[ "$BACKEND" = upstream ] && { [ -x "$UPSTREAM_BIN" ] || die "sluice-upstream not found: $UPSTREAM_BIN (set UPSTREAM_BIN)"; }
SKIPPED=""
if [ "$MODE" = tls ]; then
    for t in $TARGETS; do
        case $t in haproxy | nginx | sluice) ;; *) die "TLS=1: unknown target '$t' (haproxy nginx sluice; the backend speaks no TLS)" ;; esac
    done
    if [ "$uses_sluice" = 1 ] && [ ! -f "$SLUICE_FILTER_DIR/mtls.so" ]; then
        log "sluice left out of the TLS run: the mtls filter module is not built ($SLUICE_FILTER_DIR/mtls.so missing); haproxy and nginx still run"
        SKIPPED+="sluice(no mtls filter module) "
        keep=""
        for t in $TARGETS; do [ "$t" = sluice ] || keep+="$t "; done
        TARGETS=$keep
    fi
fi

# --- work directory and process bookkeeping -----------------------------------
WORKDIR=/tmp/sluice-bench/run.$(date +%Y%m%d-%H%M%S).$$
mkdir -p "$WORKDIR"/{raw,tmp,logs,cg,mem,tls} || die "cannot create $WORKDIR"
PIDS=() # every server we started; each leads its own process group (setsid)

stop_pid() { # pid [grace seconds]: TERM the group, wait, then KILL
    local pid=$1 grace=${2:-5} i
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
    for ((i = 0; i < grace * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL -- "-$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    return 0
}
cleanup() {
    local pid
    if [ -n "$CLIENT_PID" ]; then
        kill -TERM "$CLIENT_PID" 2>/dev/null
        wait "$CLIENT_PID" 2>/dev/null
    fi
    for pid in "${PIDS[@]}"; do stop_pid "$pid" 5; done
    PIDS=()
    if [ "$KEEP_WORKDIR" = 1 ]; then log "kept $WORKDIR"; else rm -rf "$WORKDIR"; fi
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM HUP

server_prefix=()
client_prefix=()
if [ "$PIN" = 1 ]; then
    server_prefix=(taskset -c "$SERVER_CPU")
    client_prefix=(taskset -c "$CLIENT_CPU")
fi

# start_server NAME CMD...: runs CMD in its own session, pinned; sets LAST_PID.
# A plain background command (no subshell) so that $! is the server itself.
start_server() {
    local name=$1
    shift
    setsid "${server_prefix[@]}" "$@" >"$WORKDIR/logs/$name.log" 2>&1 </dev/null &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
    log "started $name (pid $LAST_PID)"
}
forget_pid() {
    local p keep=()
    for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { # port seconds pid
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        port_open "$1" && return 0
        kill -0 "$3" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}
# client SECONDS CMD...: runs a load generator, pinned, bounded by timeout.
# It runs in the background and we `wait` for it, because a trapped signal
# interrupts `wait` at once but would otherwise wait for a foreground child.
CLIENT_PID=
client() {
    local t=$1 rc
    shift
    timeout -k 5 "$t" "${client_prefix[@]}" "$@" &
    CLIENT_PID=$!
    wait "$CLIENT_PID"
    rc=$?
    CLIENT_PID=
    return $rc
}
render() { # template output PORT [MASTER]
    sed -e "s#@RUN@#$WORKDIR#g" -e "s#@PORT@#$3#g" -e "s#@BACKEND_PORT@#$BACKEND_PORT#g" \
        -e "s#@MASTER@#${4:-on}#g" -e "s#@WORKERS@#${RENDER_WORKERS:-1}#g" \
        -e "s#@REUSEPORT@#${RENDER_REUSEPORT:-}#g" "$1" >"$2"
}
# sluice_config OUT PORT ADMIN_PORT NFILTERS
sluice_config() {
    local out=$1 port=$2 admin=$3 n=$4 i defs="" chain=""
    for ((i = 1; i <= n; i++)); do
        defs+="  - name: noop$i"$'\n'"    module: $NOOP_SO"$'\n'
        chain+="noop$i, "
    done
    local cbf="" cbc=""
    if [ "${CB:-0}" = 1 ]; then
        # limits far above the load: the filter counts and checks, never refuses
        cbf="  - name: cb"$'\n'"    module: circuit-breaker"$'\n'"    config:"$'\n'
        cbf+="      clusters:"$'\n'"        backend:"$'\n'
        cbf+="          connection_pool: { tcp: { max_connections: 10000 }, http: { http2_max_requests: 100000 } }"$'\n'
        cbf+="          outlier_detection: { consecutive_5xx_errors: 5 }"
        cbc="cb, "
    fi
    if [ "${RBAC:-0}" = 1 ]; then
        # A realistic policy set, evaluated in full on every request: a DENY
        # that does not match, then an ALLOW whose second rule matches.
        defs+="  - name: authz"$'\n'"    module: rbac"$'\n'"    config:"$'\n'"      policies:"$'\n'
        defs+="        - { name: deny-admin, action: DENY, rules: [ { to: [ { operation: { paths: [\"/admin*\", \"/internal/*\"] } } ] } ] }"$'\n'
        defs+="        - name: allow-app"$'\n'"          rules:"$'\n'
        defs+="            - { from: [ { source: { namespaces: [\"prod\"] } } ] }"$'\n'
        defs+="            - { from: [ { source: { ipBlocks: [\"127.0.0.0/8\", \"192.0.2.0/24\"] } } ], to: [ { operation: { methods: [GET, POST], paths: [\"/hello\", \"/api/*\"] } } ] }"$'\n'
        chain+="authz, "
    fi
    local tmpl="$HERE/sluice.yaml.in"
    [ "$MODE" = tls ] || [ "${SLUICE_TLS:-0}" = 1 ] && tmpl="$HERE/sluice-tls.yaml.in"
    CB_FILTER=$cbf CB_CHAIN=$cbc \
    NOOP_FILTERS=$defs NOOP_CHAIN=$chain python3 - "$tmpl" "$out" "$port" "$admin" \
        "$SLUICE_FILTER_DIR" "$BACKEND_PORT" "$WORKDIR" <<'PY'
import os, sys
tmpl, out, port, admin, fdir, bport, run = sys.argv[1:]
s = open(tmpl).read()
for k, v in (("@NOOP_FILTERS@\n", os.environ["NOOP_FILTERS"]), ("@NOOP_CHAIN@", os.environ["NOOP_CHAIN"]),
             ("@CB_FILTER@", os.environ["CB_FILTER"]), ("@CB_CHAIN@", os.environ["CB_CHAIN"]),
             ("@PORT@", port), ("@ADMIN_PORT@", admin), ("@FILTER_DIR@", fdir), ("@BACKEND_PORT@", bport),
             ("@RUN@", run)):
    s = s.replace(k, v)
open(out, "w").write(s)
PY
}

# --- backend -------------------------------------------------------------------
for ((p = BASE_PORT; p < BASE_PORT + 60; p++)); do
    port_open "$p" && die "port $p on 127.0.0.1 is in use (set BASE_PORT)"
done
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

start_backend() { # port
    if [ "$BACKEND" = nginx ]; then
        render "$HERE/backend.nginx.conf.in" "$WORKDIR/backend.conf" "$1"
        start_server backend nginx -p "$WORKDIR" -c "$WORKDIR/backend.conf" -e "$WORKDIR/logs/backend.stderr"
    else
        start_server backend "$UPSTREAM_BIN" --listen "127.0.0.1:$1" --name bench
    fi
    wait_port "$1" 10 "$LAST_PID" || die "backend did not listen on $1: $(tail -5 "$WORKDIR/logs/backend.log")"
    BACKEND_PID=$LAST_PID
}
start_backend "$BACKEND_PORT"

versions() {
    echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "host=$(uname -srm)"
    echo "nproc=$(nproc)"
    echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
    echo "haproxy=$(haproxy -v 2>&1 | head -1)"
    echo "nginx=$(nginx -v 2>&1)"
    echo "wrk=$(wrk -v 2>&1 | head -1)"
    [ "$MODE" = instr ] && echo "valgrind=$(valgrind --version)" && echo "h2load=$(h2load --version 2>&1 | head -1)"
    [ "$uses_sluice" = 1 ] && echo "sluice=$("$SLUICE_BIN" --version 2>&1 | head -1)"
    echo "backend=$BACKEND"
    echo "pin=$PIN (servers on CPU $SERVER_CPU, client on CPU $CLIENT_CPU)"
    echo "loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)"
}
versions >"$WORKDIR/meta.txt"

# --- memory after a burst ---------------------------------------------------------
# memory_stage: for each N of BURST_CLIENTS and each of MEM_TARGETS, a fresh
# proxy (its own port, BASE_PORT+30..33), one warm-up request, then burst.py
# with N clients; writes mem/<target>.<N>.json. A fresh process each time,
# so that every figure starts from the same idle state.
memory_stage() {
    local n t port pid cmd
    local mport=$((BASE_PORT + 30)) madmin=$((BASE_PORT + 31))
    echo "burst_clients=$BURST_CLIENTS" >>"$WORKDIR/meta.txt"
    echo "burst_settle=$BURST_SETTLE" >>"$WORKDIR/meta.txt"
    echo "mem_targets=$MEM_TARGETS" >>"$WORKDIR/meta.txt"
    for n in $BURST_CLIENTS; do
        for t in $MEM_TARGETS; do
            case $t in
            haproxy)
                render "$HERE/haproxy.cfg.in" "$WORKDIR/mem-haproxy.cfg" "$mport"
                cmd=(haproxy -db -f "$WORKDIR/mem-haproxy.cfg") ;;
            nginx)
                # One nginx worker holds a client and a backend connection
                # per request in flight, and cannot raise its open-files
                # limit past the hard one (often 20000): at 10,000 clients
                # it runs out. Two workers (reuseport splits the clients)
                # have a limit each; the second worker's own baseline is in
                # the "before" reading.
                RENDER_WORKERS=2 RENDER_REUSEPORT=" reuseport" \
                    render "$HERE/proxy.nginx.conf.in" "$WORKDIR/mem-proxy.conf" "$mport"
                cmd=(nginx -p "$WORKDIR" -c "$WORKDIR/mem-proxy.conf" -e "$WORKDIR/logs/mem-proxy.stderr") ;;
            sluice)
                sluice_config "$WORKDIR/mem-sluice.yaml" "$mport" "$madmin" 0
                cmd=("$SLUICE_BIN" -c "$WORKDIR/mem-sluice.yaml") ;;
            *) die "unknown memory target '$t' (haproxy nginx sluice)" ;;
            esac
            start_server "mem-$t-$n" "${cmd[@]}"
            pid=$LAST_PID
            if ! wait_port "$mport" 15 "$pid"; then
                log "$t did not listen on $mport: $(tail -3 "$WORKDIR/logs/mem-$t-$n.log")"
                stop_pid "$pid" 5
                forget_pid "$pid"
                continue
            fi
            curl -s -o /dev/null --max-time 5 "http://127.0.0.1:$mport/hello"
            sleep 1
            client $((BURST_SETTLE + 200)) python3 "$HERE/burst.py" --port "$mport" --pid "$pid" -n "$n" \
                --settle "$BURST_SETTLE" --timeout 180 --json "$WORKDIR/mem/$t.$n.json" \
                >/dev/null 2>"$WORKDIR/logs/burst-$t-$n.log" ||
                log "burst $t $n failed: $(tail -2 "$WORKDIR/logs/burst-$t-$n.log")"
            log "memory $t $n: $(grep -o 'VmRSS.*' "$WORKDIR/logs/burst-$t-$n.log" | head -1)"
            stop_pid "$pid" 10
            forget_pid "$pid"
            # the clients' sockets linger in TIME_WAIT on 127.0.0.1; let the
            # proxy's port go before the next one binds it
            sleep 1
        done
    done
}
if [ "$MODE" = memory ]; then
    memory_stage
    echo "loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$WORKDIR/meta.txt"
    python3 "$HERE/report.py" memory "$WORKDIR" "$OUT_JSON"
    exit $?
fi

# --- TLS mode: the run's certificate ---------------------------------------------------
# tls_certs: a throwaway CA and one P-256 server certificate it signed (SANs
# 127.0.0.1 and localhost, 2 days) in $WORKDIR/tls: server.pem, server.key,
# server.bundle.pem (certificate then key, for HAProxy's crt), ca.pem.
tls_certs() {
    local d="$WORKDIR/tls" ext="$WORKDIR/tls/server.ext"
    printf '%s\n' "basicConstraints = critical,CA:FALSE" "keyUsage = critical,digitalSignature" \
        "extendedKeyUsage = serverAuth" "subjectAltName = IP:127.0.0.1,DNS:localhost" >"$ext"
    {
        openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/ca.key" &&
            openssl req -x509 -new -key "$d/ca.key" -out "$d/ca.pem" -days 2 -subj "/CN=sluice-bench CA" \
                -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" &&
            openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/server.key" &&
            openssl req -new -key "$d/server.key" -out "$d/server.csr" -subj "/CN=localhost" &&
            openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
                -days 2 -sha256 -extfile "$ext" -out "$d/server.pem" &&
            cat "$d/server.pem" "$d/server.key" >"$d/server.bundle.pem" &&
            openssl verify -CAfile "$d/ca.pem" "$d/server.pem"
    } >"$WORKDIR/logs/tls-certs.log" 2>&1 || die "making the TLS certificate failed: $(tail -3 "$WORKDIR/logs/tls-certs.log")"
    log "TLS certificate: $(openssl x509 -in "$d/server.pem" -noout -subject -ext subjectAltName | tr '\n' ' ')"
}
# --- INSTR mode: instructions per request under callgrind ----------------------
if [ "$MODE" = instr ]; then
    VG_PORT=$((BASE_PORT + 40))
    VG_ADMIN=$((BASE_PORT + 41))
    render "$HERE/haproxy.cfg.in" "$WORKDIR/vg-haproxy.cfg" "$VG_PORT"
    render "$HERE/proxy.nginx.conf.in" "$WORKDIR/vg-proxy.conf" "$VG_PORT" off
    render "$HERE/backend.nginx.conf.in" "$WORKDIR/vg-backend.conf" "$VG_PORT" off
    # measure NAME N CMD...: runs CMD under callgrind while h2load sends N
    # requests on 10 keep-alive connections; sets MEAS_IR (total Ir, all
    # threads) and MEAS_OK (successful requests). Runs in this shell, not a
    # subshell, so the EXIT trap knows the PID at every moment.
    measure() {
        local name=$1 n=$2 out="$WORKDIR/cg/$1.$2.out" pid
        shift 2
        MEAS_IR=0
        MEAS_OK=0
        rm -f "$out"*
        start_server "vg-$name-$n" valgrind --tool=callgrind --callgrind-out-file="$out" \
            --dump-instr=no --compress-strings=no "$@"
        pid=$LAST_PID
        if ! wait_port "$VG_PORT" 120 "$pid"; then
            log "$name did not start under valgrind: $(tail -3 "$WORKDIR/logs/vg-$name-$n.log")"
            stop_pid "$pid" 30
            forget_pid "$pid"
            return
        fi
        client 900 h2load --h1 -t1 -c10 -n "$n" "${MEAS_SCHEME:-http}://127.0.0.1:$VG_PORT/hello" \
            >"$WORKDIR/logs/h2load-$name-$n.log" 2>&1
        MEAS_OK=$(grep -oE '[0-9]+ succeeded' "$WORKDIR/logs/h2load-$name-$n.log" | head -1 | cut -d' ' -f1)
        stop_pid "$pid" 60 # callgrind writes its totals on exit
        forget_pid "$pid"
        MEAS_IR=$(grep -hE '^(summary|totals):' "$out"* 2>/dev/null | head -1 | awk '{print $2}')
        MEAS_IR=${MEAS_IR:-0}
        MEAS_OK=${MEAS_OK:-0}
    }
    : >"$WORKDIR/instr.txt"
    for t in $INSTR_TARGETS; do
        variants=$t
        [ "$t" = sluice ] && variants=$(for n in $FILTERS; do printf 'sluice-f%s ' "$n"; done)
        for v in $variants; do
            MEAS_SCHEME=http
            case $v in
            sluice-f*)
                sluice_config "$WORKDIR/vg-$v.yaml" "$VG_PORT" "$VG_ADMIN" "${v#sluice-f}"
                cmd=("$SLUICE_BIN" -c "$WORKDIR/vg-$v.yaml") ;;
            sluice-rbac) # the default chain with rbac in front of the router
                RBAC=1 sluice_config "$WORKDIR/vg-$v.yaml" "$VG_PORT" "$VG_ADMIN" 0
                cmd=("$SLUICE_BIN" -c "$WORKDIR/vg-$v.yaml") ;;
            sluice-tls) # the default chain behind the mtls filter (SIMPLE, TLS 1.3)
                [ -f "$WORKDIR/tls/server.pem" ] || tls_certs
                SLUICE_TLS=1 sluice_config "$WORKDIR/vg-$v.yaml" "$VG_PORT" "$VG_ADMIN" 0
                cmd=("$SLUICE_BIN" -c "$WORKDIR/vg-$v.yaml")
                MEAS_SCHEME=https ;;
            haproxy) cmd=(haproxy -db -f "$WORKDIR/vg-haproxy.cfg") ;;
            nginx) cmd=(nginx -p "$WORKDIR" -c "$WORKDIR/vg-proxy.conf" -e "$WORKDIR/logs/vg-proxy.stderr") ;;
            direct)
                if [ "$BACKEND" = nginx ]; then
                    cmd=(nginx -p "$WORKDIR" -c "$WORKDIR/vg-backend.conf" -e "$WORKDIR/logs/vg-backend.stderr")
                else
                    cmd=("$UPSTREAM_BIN" --listen "127.0.0.1:$VG_PORT")
                fi ;;
            *) die "unknown INSTR target '$v' (sluice sluice-rbac sluice-tls haproxy nginx direct)" ;;
            esac
            measure "$v" "$N1" "${cmd[@]}"
            ir1=$MEAS_IR ok1=$MEAS_OK
            measure "$v" "$N2" "${cmd[@]}"
            ir2=$MEAS_IR ok2=$MEAS_OK
            log "$v: Ir($N1)=$ir1 ok=$ok1  Ir($N2)=$ir2 ok=$ok2"
            echo "$v $ir1 $ok1 $ir2 $ok2" >>"$WORKDIR/instr.txt"
        done
    done
    echo "loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$WORKDIR/meta.txt"
    python3 "$HERE/report.py" instr "$WORKDIR" "$OUT_JSON" "$N1" "$N2"
    exit $?
fi

SCHEME=http
CURL_TLS=()
if [ "$MODE" = tls ]; then
    tls_certs
    SCHEME=https
    CURL_TLS=(--cacert "$WORKDIR/tls/ca.pem")
    echo "tls=TLS 1.3, P-256 server certificate; sluice: mtls filter, mode SIMPLE" >>"$WORKDIR/meta.txt"
    echo "openssl=$(openssl version)" >>"$WORKDIR/meta.txt"
fi

# --- proxies under test -----------------------------------------------------------
declare -A PORT TPID
PORT[direct]=$BACKEND_PORT
TPID[direct]=$BACKEND_PID
ALL_TARGETS=""
for t in $TARGETS; do
    case $t in
    direct) ;;
    haproxy)
        hcfg=$HERE/haproxy.cfg.in
        [ "$MODE" = tls ] && hcfg=$HERE/haproxy-tls.cfg.in
        render "$hcfg" "$WORKDIR/haproxy.cfg" "$HAPROXY_PORT"
        haproxy -c -f "$WORKDIR/haproxy.cfg" >"$WORKDIR/logs/haproxy-check.log" 2>&1 ||
            die "haproxy config invalid: $(cat "$WORKDIR/logs/haproxy-check.log")"
        start_server haproxy haproxy -db -f "$WORKDIR/haproxy.cfg"
        PORT[haproxy]=$HAPROXY_PORT ;;
    nginx)
        ncfg=$HERE/proxy.nginx.conf.in
        [ "$MODE" = tls ] && ncfg=$HERE/proxy-tls.nginx.conf.in
        render "$ncfg" "$WORKDIR/proxy.conf" "$NGINX_PORT"
        start_server nginx nginx -p "$WORKDIR" -c "$WORKDIR/proxy.conf" -e "$WORKDIR/logs/proxy.stderr"
        PORT[nginx]=$NGINX_PORT ;;
    sluice)
        sluice_config "$WORKDIR/sluice.yaml" "$SLUICE_PORT" "$SLUICE_ADMIN" 0
        start_server sluice "$SLUICE_BIN" -c "$WORKDIR/sluice.yaml"
        PORT[sluice]=$SLUICE_PORT ;;
    *) die "unknown target '$t' (direct haproxy nginx sluice)" ;;
    esac
    [ "$t" = direct ] || TPID[$t]=$LAST_PID
    ALL_TARGETS+="$t "
done
i=0
for n in $FILTERS; do
    t=sluice-f$n
    sluice_config "$WORKDIR/$t.yaml" $((BASE_PORT + 10 + i)) $((BASE_PORT + 20 + i)) "$n"
    start_server "$t" "$SLUICE_BIN" -c "$WORKDIR/$t.yaml"
    PORT[$t]=$((BASE_PORT + 10 + i))
    TPID[$t]=$LAST_PID
    ALL_TARGETS+="$t "
    i=$((i + 1))
done
[ -n "$ALL_TARGETS" ] || die "no targets"
# target_down T REASON: in TLS mode a proxy that cannot serve is left out
# (said in the log and the report); elsewhere it ends the run.
target_down() {
    if [ "$MODE" != tls ]; then die "$1 $2"; fi
    log "warning: $1 left out of the TLS run: $2"
    SKIPPED+="$1(failed to serve) "
    [ "$1" = direct ] || { stop_pid "${TPID[$1]}" 5; forget_pid "${TPID[$1]}"; }
    local keep="" x
    for x in $ALL_TARGETS; do [ "$x" = "$1" ] || keep+="$x "; done
    ALL_TARGETS=$keep
}
for t in $ALL_TARGETS; do
    if ! wait_port "${PORT[$t]}" 15 "${TPID[$t]}"; then
        target_down "$t" "did not listen on ${PORT[$t]}: $(tail -5 "$WORKDIR/logs/$t.log" 2>/dev/null)"
        continue
    fi
    code=$(curl -s "${CURL_TLS[@]}" -o /dev/null -w '%{http_code}' --max-time 5 "$SCHEME://127.0.0.1:${PORT[$t]}/hello")
    [ "$code" = 200 ] || target_down "$t" "answered $SCHEME /hello with '$code', not 200: $(tail -5 "$WORKDIR/logs/$t.log" 2>/dev/null)"
done
[ -n "$ALL_TARGETS" ] || die "no target left to measure"
{
    echo "targets=$ALL_TARGETS"
    echo "skipped=$SKIPPED"
    echo "rounds=$ROUNDS"
    echo "duration=$DURATION"
    echo "conns=$CONNS"
    echo "command=wrk -t1 -c$CONNS -d${DURATION}s --latency $SCHEME://127.0.0.1:PORT/hello"
    [ "$MODE" = tls ] && echo "command_handshake=wrk -t1 -c$CONNS -d${DURATION}s --latency -H 'Connection: close' https://127.0.0.1:PORT/hello"
} >>"$WORKDIR/meta.txt"

# --- warm-up, then interleaved rounds -----------------------------------------------
for t in $ALL_TARGETS; do
    client $((WARMUP + 20)) wrk -t1 -c"$CONNS" -d"${WARMUP}s" "$SCHEME://127.0.0.1:${PORT[$t]}/hello" >/dev/null 2>&1
done
for ((r = 1; r <= ROUNDS; r++)); do
    for t in $ALL_TARGETS; do
        out="$WORKDIR/raw/$t.r$r.txt"
        client $((DURATION + 30)) wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency \
            "$SCHEME://127.0.0.1:${PORT[$t]}/hello" >"$out" 2>&1
        log "round $r/$ROUNDS $t: $(grep -E 'Requests/sec' "$out" | tr -s ' ' || echo 'no result')"
        if [ "$MODE" = tls ]; then
            # (b) a new TCP connection and a full TLS handshake per request
            out="$WORKDIR/raw/hs-$t.r$r.txt"
            client $((DURATION + 30)) wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -H 'Connection: close' \
                "$SCHEME://127.0.0.1:${PORT[$t]}/hello" >"$out" 2>&1
            log "round $r/$ROUNDS $t (new connection per request): $(grep -E 'Requests/sec' "$out" | tr -s ' ' || echo 'no result')"
        fi
    done
done
for t in $ALL_TARGETS; do
    kill -0 "${TPID[$t]}" 2>/dev/null || log "warning: $t (pid ${TPID[$t]}) died during the run"
done
if [ "$MODE" = bench ] && [ -n "$BURST_CLIENTS" ] && [ -n "$MEM_TARGETS" ]; then
    # The throughput proxies stay up (idle) meanwhile; the stage's own
    # processes are fresh.
    memory_stage
fi
echo "loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$WORKDIR/meta.txt"
python3 "$HERE/report.py" "$MODE" "$WORKDIR" "$OUT_JSON"
