#!/usr/bin/env python3
"""report.py: turns the raw outputs of bench.sh into a table and a JSON file.

usage: report.py bench|filters|memory|tls RUN_DIR OUT_JSON
       report.py instr RUN_DIR OUT_JSON N1 N2

RUN_DIR holds meta.txt (key=value lines) and, for bench/filters, one wrk
output per target and round in raw/<target>.r<round>.txt; for instr,
instr.txt with lines "<target> <Ir(N1)> <ok1> <Ir(N2)> <ok2>"; for the
memory stage (memory mode, and the end of bench mode), mem/<target>.<N>.json
as written by burst.py. The tls mode has two wrk outputs per target and
round: raw/<target>.r<round>.txt (HTTPS keep-alive) and
raw/hs-<target>.r<round>.txt (a new connection and handshake per request).
Standard library only.
"""
import glob
import json
import os
import re
import statistics
import sys

UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def read_meta(run):
    meta = {}
    with open(os.path.join(run, "meta.txt")) as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition("=")
            if k:
                meta[k] = v
    return meta


def parse_wrk(path):
    """parse_wrk returns {rps, p50_ms, p99_ms, requests, errors, non2xx} or None."""
    text = open(path, errors="replace").read()
    m = re.search(r"Requests/sec:\s+([0-9.]+)", text)
    if not m:
        return None
    res = {"rps": float(m.group(1)), "errors": 0, "non2xx": 0}
    for pct, key in (("50", "p50_ms"), ("99", "p99_ms")):
        m = re.search(r"^\s+%s(?:\.0+)?%%\s+([0-9.]+)(us|ms|s|m)\s*$" % pct, text, re.M)
        res[key] = float(m.group(1)) * UNIT_MS[m.group(2)] if m else None
    m = re.search(r"(\d+) requests in", text)
    res["requests"] = int(m.group(1)) if m else None
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        res["errors"] = sum(int(x) for x in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        res["non2xx"] = int(m.group(1))
    return res


def load_rounds(run, targets):
    """load_rounds returns {target: [result per round (None if missing)]}."""
    data = {}
    for t in targets:
        files = glob.glob(os.path.join(run, "raw", "%s.r*.txt" % t))
        files.sort(key=lambda p: int(re.search(r"\.r(\d+)\.txt$", p).group(1)))
        data[t] = [parse_wrk(p) for p in files]
    return data


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def summarize(rounds):
    ok = [r for r in rounds if r]
    rps = [r["rps"] for r in ok]
    return {
        "rps": rps,
        "rps_median": med(rps),
        "rps_min": min(rps) if rps else None,
        "rps_max": max(rps) if rps else None,
        "rps_cv_pct": round(100 * statistics.pstdev(rps) / statistics.mean(rps), 2) if len(rps) > 1 else None,
        "p50_ms": [r["p50_ms"] for r in ok],
        "p99_ms": [r["p99_ms"] for r in ok],
        "p50_ms_median": med(r["p50_ms"] for r in ok),
        "p99_ms_median": med(r["p99_ms"] for r in ok),
        "socket_errors": sum(r["errors"] for r in ok),
        "non2xx": sum(r["non2xx"] for r in ok),
        "rounds_missing": len(rounds) - len(ok),
    }


def paired(data, a, b):
    """paired returns the per-round ratios rps(a)/rps(b) and their median."""
    ratios = []
    for ra, rb in zip(data.get(a, []), data.get(b, [])):
        if ra and rb and rb["rps"] > 0:
            ratios.append(ra["rps"] / rb["rps"])
    if not ratios:
        return None
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios),
            "per_round": [round(x, 4) for x in ratios]}


def fmt(x, spec="%.0f"):
    return "-" if x is None else spec % x


def print_table(targets, summ):
    print("%-12s %10s %21s %6s %9s %9s %7s" % ("target", "req/s", "min..max", "CV%", "p50 ms",
                                              "p99 ms", "errors"))
    for t in targets:
        s = summ[t]
        mm = "%s..%s" % (fmt(s["rps_min"]), fmt(s["rps_max"]))
        print("%-12s %10s %21s %6s %9s %9s %7d" % (t, fmt(s["rps_median"]), mm, fmt(s["rps_cv_pct"], "%.1f"),
                                                  fmt(s["p50_ms_median"], "%.3f"),
                                                  fmt(s["p99_ms_median"], "%.3f"),
                                                  s["socket_errors"] + s["non2xx"]))


def write_json(out, doc):
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    print("\nJSON: %s" % out)


def report_rounds(mode, run, out):
    meta = read_meta(run)
    targets = meta.get("targets", "").split()
    data = load_rounds(run, targets)
    summ = {t: summarize(data[t]) for t in targets}
    doc = {"mode": mode, "meta": meta, "targets": summ}
    print("\n%s" % meta.get("command", ""))
    print("%s rounds x %ss, interleaved; medians over rounds\n" % (meta.get("rounds"), meta.get("duration")))
    print_table(targets, summ)
    bad = [t for t in targets if summ[t]["non2xx"] or summ[t]["socket_errors"] or summ[t]["rounds_missing"]]

    if mode == "bench":
        pairs = [("sluice", "haproxy"), ("sluice", "nginx"), ("sluice", "direct"), ("nginx", "haproxy"),
                 ("haproxy", "direct")]
        doc["ratios"] = {}
        print("\nratio of req/s: median of the per-round paired ratios [min..max]")
        for a, b in pairs:
            if a in summ and b in summ:
                p = paired(data, a, b)
                if p:
                    doc["ratios"]["%s/%s" % (a, b)] = p
                    print("  %-16s %.3f  [%.3f..%.3f]" % ("%s/%s" % (a, b), p["median"], p["min"], p["max"]))
    else:
        counts = sorted(int(t[len("sluice-f"):]) for t in targets if t.startswith("sluice-f"))
        base = "sluice-f%d" % counts[0] if counts else None
        doc["filters"] = {}
        if base:
            print("\nnoop filters before router+lb, against %s (paired per round)" % base)
            print("  %8s %10s %10s %16s %18s" % ("filters", "req/s", "x base", "cost/filter %", "ns/filter/req"))
        for n in counts:
            t = "sluice-f%d" % n
            p = paired(data, t, base)
            extra = n - counts[0]
            entry = {"filters": n, "rps_median": summ[t]["rps_median"],
                     "ratio_vs_base": p["median"] if p else None, "ratio_vs_base_rounds": p["per_round"] if p else None}
            if p and extra > 0:
                # cost per filter in % of req/s, and the added time per
                # request per filter; with everything pinned on one core
                # 1/rps is the CPU time of a request on that core.
                entry["cost_per_filter_pct"] = 100 * (1 - p["median"]) / extra
                rb, rn = summ[base]["rps_median"], summ[t]["rps_median"]
                entry["ns_per_filter_per_request"] = (1e9 / rn - 1e9 / rb) / extra if rb and rn else None
            doc["filters"][str(n)] = entry
            print("  %8d %10s %10s %16s %18s" % (n, fmt(entry["rps_median"]), fmt(entry["ratio_vs_base"], "%.3f"),
                                                  fmt(entry.get("cost_per_filter_pct"), "%.2f"),
                                                  fmt(entry.get("ns_per_filter_per_request"), "%.0f")))
    if mode == "bench" and report_memory(run, meta, doc):
        bad.append("memory")
    if bad:
        print("\nWARNING: errors, non-2xx responses or missing rounds for: %s" % " ".join(bad))
    noisy = [t for t in targets if (summ[t]["rps_cv_pct"] or 0) > 5]
    if noisy:
        print("\nWARNING: req/s varied by more than 5%% between rounds (CV) for: %s. Something else "
              "used the CPUs; rerun on a quiet machine or with more ROUNDS." % " ".join(noisy))
    doc["noisy_targets"] = noisy
    print("\nload average: start %s, end %s" % (meta.get("loadavg_start"), meta.get("loadavg_end")))
    write_json(out, doc)
    return 1 if bad else 0


def report_tls(run, out):
    """report_tls prints, for HTTPS keep-alive and for a new connection per
    request, the req/s table and the paired ratios sluice/haproxy,
    sluice/nginx and nginx/haproxy."""
    meta = read_meta(run)
    targets = meta.get("targets", "").split()
    doc = {"mode": "tls", "meta": meta}
    bad = []
    noisy = []
    print("\n%s" % meta.get("tls", "TLS"))
    print("%s rounds x %ss per run, interleaved; medians over rounds" % (meta.get("rounds"),
                                                                      meta.get("duration")))
    for kind, prefix, title, cmd in (
            ("keepalive", "", "(a) HTTPS keep-alive", meta.get("command", "")),
            ("handshake", "hs-", "(b) new connection + full TLS handshake per request",
             meta.get("command_handshake", ""))):
        raw = load_rounds(run, [prefix + t for t in targets])
        data = {t: raw[prefix + t] for t in targets}
        summ = {t: summarize(data[t]) for t in targets}
        print("\n%s\n%s\n" % (title, cmd))
        print_table(targets, summ)
        ratios = {}
        print("\nratio of req/s: median of the per-round paired ratios [min..max]")
        for a, b in (("sluice", "haproxy"), ("sluice", "nginx"), ("nginx", "haproxy")):
            p = paired(data, a, b) if a in summ and b in summ else None
            if p:
                ratios["%s/%s" % (a, b)] = p
                print("  %-16s %.3f  [%.3f..%.3f]" % ("%s/%s" % (a, b), p["median"], p["min"], p["max"]))
            else:
                print("  %-16s -" % ("%s/%s" % (a, b)))
        doc[kind] = {"targets": summ, "ratios": ratios}
        noisy += ["%s(%s)" % (t, kind) for t in targets if (summ[t]["rps_cv_pct"] or 0) > 5]
        bad += ["%s(%s)" % (t, kind) for t in targets
                if summ[t]["non2xx"] or summ[t]["socket_errors"] or summ[t]["rounds_missing"]
                or not summ[t]["rps"]]
    if noisy:
        print("\nWARNING: req/s varied by more than 5%% between rounds (CV) for: %s. Something else "
              "used the CPUs; rerun on a quiet machine or with more ROUNDS." % " ".join(noisy))
    doc["noisy_targets"] = noisy
    skipped = meta.get("skipped", "").split()
    if skipped:
        print("\nNOT MEASURED: %s" % " ".join(skipped))
    doc["skipped"] = skipped
    if bad:
        print("\nWARNING: errors, non-2xx responses or missing rounds for: %s" % " ".join(bad))
    print("\nload average: start %s, end %s" % (meta.get("loadavg_start"), meta.get("loadavg_end")))
    write_json(out, doc)
    return 1 if bad or skipped else 0


MEM_ORDER = ("haproxy", "nginx", "sluice")


def load_memory(run):
    """load_memory returns {target: {clients: burst.py result}} from mem/*.json."""
    out = {}
    for p in glob.glob(os.path.join(run, "mem", "*.json")):
        m = re.match(r"(.+)\.(\d+)\.json$", os.path.basename(p))
        if not m:
            continue
        with open(p) as f:
            out.setdefault(m.group(1), {})[int(m.group(2))] = json.load(f)
    return out


def report_memory(run, meta, doc):
    """report_memory prints KiB per client after a burst and fills doc["memory"].
    Returns the targets/counts that were asked for but have no figure."""
    mem = load_memory(run)
    counts = [int(x) for x in meta.get("burst_clients", "").split()]
    targets = meta.get("mem_targets", "").split()
    if not counts or not targets:
        return []
    targets = [t for t in MEM_ORDER if t in targets] + [t for t in targets if t not in MEM_ORDER]
    print("\nmemory kept after a burst: N keep-alive clients send one request each at once, then stay")
    print("idle; (RSS %ss after the last response - RSS before connecting) / N, in KiB per client"
          % meta.get("burst_settle", "?"))
    print("(VmRSS of the proxy's process tree; Private_Dirty in brackets)\n")
    print("%-10s" % "target" + "".join("%20s" % ("%d clients" % n) for n in counts))
    missing = []
    doc["memory"] = {}
    for t in targets:
        row = "%-10s" % t
        doc["memory"][t] = {}
        for n in counts:
            r = mem.get(t, {}).get(n)
            if not r:
                row += "%20s" % "-"
                missing.append("%s@%d" % (t, n))
                continue
            k = r["kib_per_client"]
            doc["memory"][t][str(n)] = {"kib_per_client_vmrss": round(k["vmrss"], 2),
                                        "kib_per_client_private_dirty": round(k["private_dirty"], 2),
                                        "kib_per_client_rss": round(k["rss"], 2),
                                        "before_kib": r["before_kib"], "after_kib": r["after_kib"],
                                        "burst_seconds": r["burst_seconds"]}
            row += "%20s" % ("%.2f [%.2f]" % (k["vmrss"], k["private_dirty"]))
        print(row)
    if missing:
        print("\nWARNING: no memory figure (start failure or failed burst) for: %s" % " ".join(missing))
    return missing


def report_memory_only(run, out):
    meta = read_meta(run)
    doc = {"mode": "memory", "meta": meta}
    missing = report_memory(run, meta, doc)
    print("\nload average: start %s, end %s" % (meta.get("loadavg_start"), meta.get("loadavg_end")))
    write_json(out, doc)
    return 1 if missing else 0


def report_instr(run, out, n1, n2):
    meta = read_meta(run)
    rows = []
    with open(os.path.join(run, "instr.txt")) as f:
        for line in f:
            t, ir1, ok1, ir2, ok2 = line.split()
            ir1, ok1, ir2, ok2 = int(ir1), int(ok1), int(ir2), int(ok2)
            valid = ir1 > 0 and ir2 > 0 and ok1 == n1 and ok2 == n2
            rows.append({"target": t, "ir_n1": ir1, "ok_n1": ok1, "ir_n2": ir2, "ok_n2": ok2,
                         "instr_per_request": round((ir2 - ir1) / (n2 - n1)) if valid else None})
    by = {r["target"]: r for r in rows}
    hap = by.get("haproxy", {}).get("instr_per_request")
    print("\nuser-space instructions per request = (Ir(N2) - Ir(N1)) / (N2 - N1), N1=%d N2=%d" % (n1, n2))
    print("h2load --h1 -t1 -c10 -n N, path /hello, target under valgrind --tool=callgrind\n")
    print("%-12s %16s %16s %14s %10s" % ("target", "Ir(N1)", "Ir(N2)", "instr/request", "x haproxy"))
    for r in rows:
        ipr = r["instr_per_request"]
        r["ratio_vs_haproxy"] = ipr / hap if ipr and hap else None
        print("%-12s %16d %16d %14s %10s" % (r["target"], r["ir_n1"], r["ir_n2"], fmt(ipr),
                                            fmt(r["ratio_vs_haproxy"], "%.3f")))
    doc = {"mode": "instr", "meta": meta, "n1": n1, "n2": n2, "targets": by}
    counts = sorted(int(t[len("sluice-f"):]) for t in by if t.startswith("sluice-f"))
    if len(counts) > 1:
        b = by["sluice-f%d" % counts[0]]["instr_per_request"]
        doc["per_filter"] = {}
        print("\nper noop filter (against %d filters):" % counts[0])
        for n in counts[1:]:
            v = by["sluice-f%d" % n]["instr_per_request"]
            per = (v - b) / (n - counts[0]) if v and b else None
            doc["per_filter"][str(n)] = per
            print("  %d filters: %s instructions per filter per request" % (n, fmt(per)))
    bad = [r["target"] for r in rows if r["instr_per_request"] is None]
    if bad:
        print("\nWARNING: incomplete measurement (start failure or failed requests) for: %s" % " ".join(bad))
    write_json(out, doc)
    return 1 if bad else 0


def main():
    if len(sys.argv) < 4 or sys.argv[1] not in ("bench", "filters", "instr", "memory", "tls"):
        sys.stderr.write(__doc__)
        return 2
    mode, run, out = sys.argv[1:4]
    if mode == "instr":
        return report_instr(run, out, int(sys.argv[4]), int(sys.argv[5]))
    if mode == "memory":
        return report_memory_only(run, out)
    if mode == "tls":
        return report_tls(run, out)
    return report_rounds(mode, run, out)


if __name__ == "__main__":
    sys.exit(main())
