#!/usr/bin/python3
"""Summarizes a scripts/bench.sh run: medians over rounds, ratios, checks.

    report.py RUN_DIR        reads RUN_DIR/results.tsv (round target test metric value)
                             and RUN_DIR/env.txt, prints Markdown on stdout
    report.py --h2-log FILE  latency percentiles of an `h2load --log-file` (one line
                             per request: start µs, status (-1: failed), duration µs),
                             one line of key=value (p99_ms=...) on stdout
"""
import collections
import math
import os
import statistics
import sys


def percentile(sorted_vals, q):
    """Nearest-rank percentile (q in 0..100) of an ascending list."""
    if not sorted_vals:
        return None
    k = max(1, math.ceil(q / 100 * len(sorted_vals)))
    return sorted_vals[min(k, len(sorted_vals)) - 1]


def h2_log_summary(path):
    """Percentiles (ms) of the requests h2load completed (status >= 0) in its log file."""
    durs, failed, non2xx = [], 0, 0
    with open(path) as f:
        for line in f:
            parts = line.split("\t")
            if len(parts) < 3:
                continue
            try:
                status, us = int(parts[1]), int(parts[2])
            except ValueError:
                continue
            if status < 0:
                failed += 1
                continue
            if not 200 <= status < 300:
                non2xx += 1
            durs.append(us)
    durs.sort()
    out = [f"logged={len(durs) + failed}", f"completed={len(durs)}", f"failed={failed}",
           f"non2xx={non2xx}"]
    for name, q in (("p50", 50), ("p90", 90), ("p99", 99), ("p99.9", 99.9), ("max", 100)):
        v = percentile(durs, q)
        out.append(f"{name}_ms=" + (f"{v / 1000:.3f}" if v is not None else ""))
    return " ".join(out)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--h2-log":
        print(h2_log_summary(sys.argv[2]))
        return
    run = sys.argv[1]
    vals = collections.defaultdict(list)
    rounds = set()
    with open(f"{run}/results.tsv") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 5 or parts[4] == "":
                continue
            rnd, target, test, metric, value = parts
            try:
                v = float(value)
            except ValueError:
                continue
            vals[(target, test, metric)].append(v)
            if rnd != "0":
                rounds.add(rnd)
    targets = [t for t in ("moat", "haproxy", "nginx")
               if any(k[0] == t for k in vals)]

    def med(t, test, metric):
        v = vals.get((t, test, metric))
        return statistics.median(v) if v else None

    def tot(t, test, metric):
        v = vals.get((t, test, metric))
        return sum(v) if v else None

    def fmt(v, nd=1):
        if v is None:
            return "-"
        return f"{v:,.{nd}f}"

    def ratio(t, test, metric):
        a, b = med(t, test, metric), med("haproxy", test, metric)
        if a is None or not b:
            return None
        return a / b

    out = []
    p = out.append
    try:
        env = open(f"{run}/env.txt").read().strip()
    except OSError:
        env = ""
    p("# moat benchmark summary\n")
    p("```\n" + env + "\n```\n")
    p(f"Medians over {len(rounds)} round(s). Proxy: 1 worker on CPU 1; wrk/h2load/tlsload and the "
      "upstream on CPU 0. CPU = the proxy process's utime+stime over the run.\n")

    p("## Keep-alive HTTPS (wrk -t1 -c64, 64-byte body)\n")
    p("| target | req/s | p99 ms | CPU µs/req | proxy CPU use | CPU 1 used by others | "
      "load avg | errors (all rounds) |")
    p("|---|---:|---:|---:|---:|---:|---:|---:|")
    for t in targets:
        p(f"| {t} | {fmt(med(t,'keepalive','rps'),0)} | {fmt(med(t,'keepalive','p99_ms'),2)} | "
          f"{fmt(med(t,'keepalive','cpu_us_per_req'),2)} | "
          f"{fmt(100*(med(t,'keepalive','cpu_util') or 0),0)}% | "
          f"{fmt(med(t,'keepalive','cpu1_other_pct'),0)}% | {fmt(med(t,'keepalive','loadavg'),1)} | "
          f"{fmt(tot(t,'keepalive','errors'),0)} |")
    p("")
    p("Per-round values (req/s; CPU µs/req): " + "; ".join(
        f"{t} " + ", ".join(f"{a:,.0f}/{b:.1f}" for a, b in
                            zip(vals.get((t, 'keepalive', 'rps'), []),
                                vals.get((t, 'keepalive', 'cpu_us_per_req'), [])))
        for t in targets) + "\n")

    bodies = [(k, d) for k, d in (("body16k", "16 KiB response body (GET /16k)"),
                                   ("body256k", "256 KiB response body (GET /256k)"),
                                   ("upload1m", "1 MiB request body (POST /upload)"))
              if any((t, k, "rps") in vals for t in targets)]
    if bodies:
        p("## Larger bodies (wrk -t1 -c64, keep-alive)\n")
        p("Target (issue 18): CPU per response <= 0.9x HAProxy's for each.\n")
        p("| test | target | req/s | MB/s of body | p99 ms | CPU µs/req | CPU µs/req vs HAProxy | "
          "proxy CPU use | CPU 1 used by others | page faults/req | errors (all rounds) |")
        p("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        size = {"body16k": 16384, "body256k": 262144, "upload1m": 1048576}
        for k, _ in bodies:
            for t in targets:
                r = ratio(t, k, "cpu_us_per_req")
                rps = med(t, k, "rps")
                mbs = rps * size[k] / 1e6 if rps is not None else None
                p(f"| {k} | {t} | {fmt(rps,0)} | {fmt(mbs,0)} | {fmt(med(t,k,'p99_ms'),2)} | "
                  f"{fmt(med(t,k,'cpu_us_per_req'),2)} | {fmt(r,2) + 'x' if r is not None else '-'} | "
                  f"{fmt(100*(med(t,k,'cpu_util') or 0),0)}% | {fmt(med(t,k,'cpu1_other_pct'),0)}% | "
                  f"{fmt(med(t,k,'faults_per_req'),2)} | {fmt(tot(t,k,'errors'),0)} |")
        p("")
        p("Per-round CPU µs/req: " + "; ".join(
            f"{k} {t} " + ", ".join(f"{b:.1f}" for b in vals.get((t, k, 'cpu_us_per_req'), []))
            for k, _ in bodies for t in targets) + "\n")

    def h2_na(t):
        """Why t has no h2 figures (h2 never negotiated in any round), else None."""
        neg = vals.get((t, "h2", "negotiated"))
        if neg and not any(neg):
            try:
                why = open(f"{run}/raw/h2-unavailable-{t}.txt").read().strip()
            except OSError:
                why = "h2 not negotiated"
            return why or "h2 not negotiated"
        return None

    h2_targets = [t for t in targets if (t, "h2", "negotiated") in vals]
    if h2_targets:
        p("## HTTP/2 (h2load -c 64 -m 10, ALPN h2, 64-byte body)\n")
        p("p99 from h2load's per-request log (--log-file), completed requests only. "
          "CPU µs/req: proxy CPU over the run / responses (done - errored). "
          "errors: h2load's failed (non-2xx/3xx or stream errors) + timed-out requests.\n")
        p("| target | req/s | p99 ms | CPU µs/req | proxy CPU use | CPU 1 used by others | "
          "load avg | errors (all rounds) |")
        p("|---|---:|---:|---:|---:|---:|---:|---:|")
        for t in h2_targets:
            na = h2_na(t)
            if na:
                p(f"| {t} | n/a: {na} | - | - | - | - | - | {fmt(tot(t,'h2','errors'),0)} |")
                continue
            p(f"| {t} | {fmt(med(t,'h2','rps'),0)} | {fmt(med(t,'h2','p99_ms'),2)} | "
              f"{fmt(med(t,'h2','cpu_us_per_req'),2)} | "
              f"{fmt(100*(med(t,'h2','cpu_util') or 0),0)}% | "
              f"{fmt(med(t,'h2','cpu1_other_pct'),0)}% | {fmt(med(t,'h2','loadavg'),1)} | "
              f"{fmt(tot(t,'h2','errors'),0)} |")
        p("")
        p("Per-round values (req/s; CPU µs/req): " + "; ".join(
            f"{t} " + (", ".join(f"{a:,.0f}/{b:.1f}" for a, b in
                                 zip(vals.get((t, 'h2', 'rps'), []),
                                     vals.get((t, 'h2', 'cpu_us_per_req'), []))) or "n/a")
            for t in h2_targets) + "\n")

    if any(k[1] in ("full-rsa", "full-ec", "resumed") for k in vals):
        p("## TLS handshakes (tlsload, 32 concurrent, one request per connection)\n")
        p("full-*: tickets and session caches off on every proxy; the client offers the newest "
          "session it holds (resumed must be 0). resumed: tickets + caches on, RSA-2048, TLS 1.3; "
          "the client keeps the newest resumable session, so a server that issues no new ticket "
          "on a resumed connection gets a full handshake every other time. "
          "\"CPU µs per resumed\" subtracts the full handshakes at the full-rsa cost.\n")
        p("| target | full RSA-2048 hs/s | CPU µs/hs | full ECDSA P-256 hs/s | CPU µs/hs | "
          "tickets-on hs/s | resumed | CPU µs/hs (mix) | CPU µs per resumed | "
          "proxy CPU use (RSA / EC / tickets) | CPU 1 used by others |")
        p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|")
        for t in targets:
            util = " / ".join(f"{fmt(100*(med(t,k,'cpu_util') or 0),0)}%"
                              for k in ("full-rsa", "full-ec", "resumed"))
            hs, rs = tot(t, "resumed", "handshakes"), tot(t, "resumed", "resumed")
            frac = f"{100*rs/hs:.0f}%" if hs else "-"
            est = None
            mix, full = med(t, "resumed", "cpu_us_per_hs"), med(t, "full-rsa", "cpu_us_per_hs")
            if hs and rs and mix is not None and full is not None:
                est = (mix * hs - full * (hs - rs)) / rs
            other = "/".join(fmt(med(t, k, "cpu1_other_pct"), 0) for k in ("full-rsa", "full-ec", "resumed"))
            p(f"| {t} | {fmt(med(t,'full-rsa','hs_per_s'),0)} | {fmt(med(t,'full-rsa','cpu_us_per_hs'),0)} | "
              f"{fmt(med(t,'full-ec','hs_per_s'),0)} | {fmt(med(t,'full-ec','cpu_us_per_hs'),0)} | "
              f"{fmt(med(t,'resumed','hs_per_s'),0)} | {frac} | {fmt(mix,0)} | {fmt(est,0)} | {util} | {other} % |")
        p("")
        p("Per-round CPU µs per full handshake (RSA; EC): " + "; ".join(
            f"{t} " + ", ".join(f"{a:.0f}" for a in vals.get((t, 'full-rsa', 'cpu_us_per_hs'), [])) +
            "; " + ", ".join(f"{a:.0f}" for a in vals.get((t, 'full-ec', 'cpu_us_per_hs'), []))
            for t in targets) + "\n")
        p("TLS 1.2 with tickets on (tlsload -t 1.2, resumed/handshakes): " + ", ".join(
            f"{t} {tot(t,'resumed','tls12_resumed') or 0:.0f}/{tot(t,'resumed','tls12_handshakes') or 0:.0f}"
            for t in targets) + "\n")
        sp = {m: med("openssl", "speed", m) for m in
              ("rsa2048_sign_per_s", "ecdsap256_sign_per_s", "x25519_op_per_s")}
        if any(sp.values()):
            line = (f"Ceiling on CPU 1 (`openssl speed`): RSA-2048 {fmt(sp['rsa2048_sign_per_s'],0)} sign/s, "
                    f"ECDSA P-256 {fmt(sp['ecdsap256_sign_per_s'],0)} sign/s, X25519 "
                    f"{fmt(sp['x25519_op_per_s'],0)} op/s")
            if sp["rsa2048_sign_per_s"] and sp["x25519_op_per_s"]:
                # A full TLS 1.3 handshake: one signature, one X25519 keygen + one derive.
                rsa_us = 1e6 / sp["rsa2048_sign_per_s"] + 2e6 / sp["x25519_op_per_s"]
                line += f"; signature + 2 X25519 ops = {rsa_us:.0f} µs per RSA handshake"
                if sp["ecdsap256_sign_per_s"]:
                    ec_us = 1e6 / sp["ecdsap256_sign_per_s"] + 2e6 / sp["x25519_op_per_s"]
                    line += f", {ec_us:.0f} µs per ECDSA handshake"
            p(line + ".\n")

    if any(k[1] in ("idle", "idle-hs") for k in vals):
        p("## Idle TLS connections (memory)\n")
        p("| target | held after | connections | VmRSS before KiB | VmRSS holding KiB | KiB per idle conn | "
          "VmRSS after close KiB | closed by proxy while idle |")
        p("|---|---|---:|---:|---:|---:|---:|---:|")
        for k, what in (("idle", "one request"), ("idle-hs", "handshake only")):
            if not any(key[1] == k for key in vals):
                continue
            for t in targets:
                p(f"| {t} | {what} | {fmt(med(t,k,'opened'),0)} | {fmt(med(t,k,'rss_before_kib'),0)} | "
                  f"{fmt(med(t,k,'rss_after_kib'),0)} | {fmt(med(t,k,'kib_per_conn'),2)} | "
                  f"{fmt(med(t,k,'rss_after_close_kib'),0)} | {fmt(tot(t,k,'dropped'),0)} |")
        p("")

    p("## Summary and ratios to HAProxy\n")
    p("| target | req/s | p99 ms | CPU µs/req | h2 req/s | h2 p99 ms | h2 CPU µs/req | "
      "full hs/s (RSA) | CPU µs/hs (RSA) | CPU µs/hs (EC) | KiB/idle conn |")
    p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    cols = [("keepalive", "rps", 0), ("keepalive", "p99_ms", 2), ("keepalive", "cpu_us_per_req", 2),
            ("h2", "rps", 0), ("h2", "p99_ms", 2), ("h2", "cpu_us_per_req", 2),
            ("full-rsa", "hs_per_s", 0), ("full-rsa", "cpu_us_per_hs", 0),
            ("full-ec", "cpu_us_per_hs", 0), ("idle", "kib_per_conn", 2)]

    def cell(t, a, b, nd):
        if a == "h2" and h2_na(t):
            return "n/a"
        return fmt(med(t, a, b), nd)

    def rcell(t, a, b):
        if a == "h2" and (h2_na(t) or h2_na("haproxy")):
            return "n/a"
        r = ratio(t, a, b)
        return fmt(r, 2) + "x" if r is not None else "-"

    for t in targets:
        p(f"| {t} | " + " | ".join(cell(t, a, b, nd) for a, b, nd in cols) + " |")
    if "haproxy" in targets:
        for t in targets:
            if t == "haproxy":
                continue
            p(f"| **{t}/HAProxy** | " + " | ".join(rcell(t, a, b) for a, b, _ in cols) + " |")
    p("")

    if "moat" in targets and "haproxy" in targets:
        p("## moat against its targets\n")
        checks = [
            ("CPU per keep-alive request <= 1.25x HAProxy", ratio("moat", "keepalive", "cpu_us_per_req"),
             lambda r: r <= 1.25),
            ("keep-alive throughput >= 0.8x HAProxy", ratio("moat", "keepalive", "rps"),
             lambda r: r >= 0.8),
            ("RSS per idle TLS connection <= HAProxy's", ratio("moat", "idle", "kib_per_conn"),
             lambda r: r <= 1.0),
            ("CPU per 16 KiB response <= 0.9x HAProxy", ratio("moat", "body16k", "cpu_us_per_req"),
             lambda r: r <= 0.9),
            ("CPU per 256 KiB response <= 0.9x HAProxy", ratio("moat", "body256k", "cpu_us_per_req"),
             lambda r: r <= 0.9),
            ("CPU per 1 MiB upload <= 0.9x HAProxy", ratio("moat", "upload1m", "cpu_us_per_req"),
             lambda r: r <= 0.9),
            ("(DESIGN.md budget) CPU per request <= 0.8x HAProxy", ratio("moat", "keepalive", "cpu_us_per_req"),
             lambda r: r <= 0.8),
            ("(DESIGN.md budget) CPU per full RSA handshake <= 0.9x HAProxy",
             ratio("moat", "full-rsa", "cpu_us_per_hs"), lambda r: r <= 0.9),
            ("(DESIGN.md budget) RSS per idle connection <= 0.5x HAProxy", ratio("moat", "idle", "kib_per_conn"),
             lambda r: r <= 0.5),
            ("(issue 18) RSS per connection idle after its handshake <= 0.5x HAProxy",
             ratio("moat", "idle-hs", "kib_per_conn"), lambda r: r <= 0.5),
            ("(issue 18) CPU per full ECDSA handshake <= 0.85x HAProxy",
             ratio("moat", "full-ec", "cpu_us_per_hs"), lambda r: r <= 0.85),
        ]
        for name, r, ok in checks:
            if r is None:
                p(f"- {name}: not measured")
            else:
                p(f"- {name}: {r:.2f}x — {'met' if ok(r) else 'NOT met'}")
        p("")

    prof = os.path.join(run, "profile")
    if os.path.isdir(prof):
        p("## Profile under keep-alive load (perf, cpu-clock sampling)\n")
        p("Syscalls per request (perf stat on syscalls:sys_enter_*, divided by wrk's requests):\n")
        for t in ("moat", "haproxy", "nginx"):
            f = os.path.join(prof, f"{t}-syscalls.txt")
            if not os.path.exists(f):
                continue
            rows, total = [], 0.0
            for line in open(f):
                parts = line.split()
                if len(parts) >= 3 and parts[2].replace(".", "").isdigit():
                    rows.append(f"{parts[0]} {parts[2]}")
                    total += float(parts[2])
            p(f"- {t}: {total:.1f} in all — " + ", ".join(rows))
        p("")
        p("Share of the proxy's CPU time per binary/library:\n")
        for t in ("moat", "haproxy", "nginx"):
            f = os.path.join(prof, f"{t}-dso.txt")
            if not os.path.exists(f):
                continue
            rows = [" ".join(line.split()[:2]) for line in open(f)
                    if line.strip() and not line.startswith("#")]
            p(f"- {t}: " + ", ".join(rows))
        p("")
        f = os.path.join(prof, "moat-userspace.txt")
        if os.path.exists(f):
            p("moat, hottest user-space symbols (share of all its CPU time; kernel, "
              "libssl and libcrypto left out):\n")
            p("```")
            n = 0
            for line in open(f):
                if line.strip() and not line.startswith("#") and n < 20:
                    p(" ".join(line.split()[:4]))
                    n += 1
            p("```\n")

    p("## Correctness checks\n")
    problems, notes = [], []
    for t in targets:
        for k in ("keepalive", "body16k", "body256k", "upload1m"):
            e = tot(t, k, "errors")
            if e:
                problems.append(f"{t}: {e:.0f} wrk errors (socket errors + non-2xx) under {k} load")
        e = tot(t, "h2", "errors")
        if e:
            problems.append(f"{t}: {e:.0f} h2load errors (failed + timed out) under HTTP/2 load")
        neg = vals.get((t, "h2", "negotiated"))
        if neg and not all(neg):
            na = h2_na(t)
            notes.append(f"{t}: HTTP/2 not available in {len(neg) - sum(1 for v in neg if v)} of "
                         f"{len(neg)} round(s)" + (f" ({na})" if na else ""))
        for k in ("full-rsa", "full-ec", "resumed"):
            e = tot(t, k, "errors")
            if e:
                problems.append(f"{t}: {e:.0f} failed connections in {k}")
        for k in ("full-rsa", "full-ec"):
            rs = tot(t, k, "resumed")
            if rs:
                problems.append(f"{t}: {rs:.0f} handshakes RESUMED in {k} (tickets/caches not off)")
            rs = tot(t, k, "tls12_resumed")
            if rs:
                problems.append(f"{t}: {rs:.0f} TLS 1.2 handshakes RESUMED in {k} (tickets/caches not off)")
            sc = tot(t, k, "s_client_reused")
            if sc:
                problems.append(f"{t}: openssl s_client -reconnect resumed {sc:.0f} times in {k}")
            if (t, k, "s_client_new") in vals and not tot(t, k, "s_client_new"):
                problems.append(f"{t}: openssl s_client -reconnect did not connect in {k}")
        hs, rs = tot(t, "resumed", "handshakes"), tot(t, "resumed", "resumed")
        if hs and rs is not None and rs < 0.9 * hs:
            notes.append(f"{t}: only {rs:.0f}/{hs:.0f} TLS 1.3 handshakes resumed with tickets on "
                         f"({tot(t,'resumed','renewed') or 0:.0f} resumed connections brought a new ticket)")
        for k in ("idle", "idle-hs"):
            d = tot(t, k, "dropped")
            if d:
                problems.append(f"{t}: closed {d:.0f} idle connections during the {k} memory test")
    for m in ("moat_5xx", "moat_upstream_errors", "moat_count_mismatch"):
        for k in ("keepalive", "body16k", "body256k", "upload1m"):
            v = tot("moat", k, m)
            if v:
                problems.append(f"moat: {m} = {v:.0f} during {k} runs")
        v = tot("moat", "h2", m)
        if v:
            problems.append(f"moat: {m} = {v:.0f} during HTTP/2 runs")
    rsum = {t: (tot(t, "full-rsa", "resumed") or 0) + (tot(t, "full-ec", "resumed") or 0)
            for t in targets}
    p("- full handshakes resumed (must be 0): " +
      ", ".join(f"{t} {rsum[t]:.0f} of {tot(t,'full-rsa','handshakes') or 0:.0f}+"
                f"{tot(t,'full-ec','handshakes') or 0:.0f} (sessions offered: "
                f"{(tot(t,'full-rsa','offered') or 0) + (tot(t,'full-ec','offered') or 0):.0f}; "
                f"TLS 1.2: {(tot(t,'full-rsa','tls12_resumed') or 0) + (tot(t,'full-ec','tls12_resumed') or 0):.0f} "
                f"of {(tot(t,'full-rsa','tls12_offered') or 0) + (tot(t,'full-ec','tls12_offered') or 0):.0f} offered)"
                for t in targets))
    p("- resumed with tickets on: " + ", ".join(
        f"{t} {tot(t,'resumed','resumed') or 0:.0f}/{tot(t,'resumed','handshakes') or 0:.0f}"
        for t in targets))
    for x in notes:
        p(f"- NOTE: {x}")
    if problems:
        for x in problems:
            p(f"- PROBLEM: {x}")
    else:
        p("- no errors: every response 200, no socket errors, nothing resumed where it must not be")
    print("\n".join(out))


if __name__ == "__main__":
    main()
