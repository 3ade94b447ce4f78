#!/usr/bin/env python3
"""bench/report.py RUN_DIR RESULTS_JSON -- turn bench/run.sh's raw records into JSON + table.

Inputs (written by run.sh in RUN_DIR):
  rows.tsv     case  suite  status(OK|FAIL|INVALID)  note
  metrics.tsv  case  suite  key  value ("null" when a figure could not be measured)
  meta.tsv     key   value
The plain row has suite "-" and is compared against every suite.
Ratios are plain value ratios (A/B) of the same metric; for RTT and CPU lower is better,
for Mbit/s and pps higher is better.  Added RTT = case RTT - plain RTT (same kind: idle/load).
"""
import json
import sys

run_dir, out = sys.argv[1], sys.argv[2]
CASE_ORDER = ["plain", "ss-ss", "fs-fs", "fs-fs-raw", "fs-fs-encap", "fs-ss"]
IMPL = {"plain": (None, None), "ss-ss": ("strongswan", "strongswan"),
        "fs-fs": ("ferroswan", "ferroswan"), "fs-fs-raw": ("ferroswan", "ferroswan"),
        "fs-fs-encap": ("ferroswan", "ferroswan"), "fs-ss": ("ferroswan", "strongswan")}
RATIOS = [("fs-fs", "ss-ss"), ("fs-fs-raw", "ss-ss"), ("fs-fs-encap", "ss-ss"), ("fs-ss", "ss-ss"), ("fs-fs", "plain")]


def ratio_ok(key):  # ratios are shown for throughput, pps, RTT and gateway CPU only
    return not key.endswith(("_retr", "_loss_pct", "_tx_pps", "_added_ms")) and key != "host_cpu_busy_pct"


def tsv(name):
    try:
        with open(f"{run_dir}/{name}") as f:
            return [line.rstrip("\n").split("\t") for line in f if line.strip()]
    except FileNotFoundError:
        return []


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


meta = {r[0]: (r[1] if len(r) > 1 else "") for r in tsv("meta.tsv")}
rows = {}
for r in tsv("rows.tsv"):
    r += [""] * (4 - len(r))
    rows[(r[0], r[1])] = {"case": r[0], "suite": None if r[1] == "-" else r[1],
                          "impl_gwA": IMPL.get(r[0], (None,))[0], "impl_gwB": IMPL.get(r[0], (None, None))[1],
                          "status": r[2], "note": r[3], "metrics": {}, "verify": {}}
for c, s, k, v in tsv("metrics.tsv"):
    row = rows.setdefault((c, s), {"case": c, "suite": None if s == "-" else s, "status": "FAIL",
                                   "note": "no status recorded", "metrics": {}, "verify": {}})
    val = num(v)
    if k.startswith("verify_"):
        row["verify"][k[len("verify_"):]] = int(val) if val is not None else None
    else:
        row["metrics"][k] = val

plain = rows.get(("plain", "-"))
for (c, s), row in rows.items():
    m = row["metrics"]
    if c != "plain" and plain and plain["status"] == "OK":
        for kind in ("idle", "load"):
            a, b = m.get(f"rtt_{kind}_avg_ms"), plain["metrics"].get(f"rtt_{kind}_avg_ms")
            m[f"rtt_{kind}_added_ms"] = round(a - b, 3) if a is not None and b is not None else None
        a, b = m.get("rtt_idle_median_ms"), plain["metrics"].get("rtt_idle_median_ms")
        m["rtt_idle_median_added_ms"] = round(a - b, 3) if a is not None and b is not None else None
    if row["status"] != "OK":          # INVALID/FAIL rows are not counted
        for k in list(m):
            m[k] = None

suites = meta.get("suites", "").split()
cases = [c for c in CASE_ORDER if c in meta.get("cases", "").split()] + \
        [c for c in meta.get("cases", "").split() if c not in CASE_ORDER]
udp_sizes = meta.get("udp_sizes", "").split()

METRICS = [("tcp1_mbps", "TCP 1 stream Mbit/s"), ("tcp1_retr", "TCP 1 stream retransmits"),
           ("tcp4_mbps", "TCP 4 streams Mbit/s")]
for sz in udp_sizes:
    METRICS += [(f"udp{sz}_pps", f"UDP {sz} B rx pkt/s"), (f"udp{sz}_loss_pct", f"UDP {sz} B loss %"),
                (f"udp{sz}_tx_pps", f"UDP {sz} B tx pkt/s")]
METRICS += [("rtt_idle_min_ms", "RTT idle min ms"), ("rtt_idle_avg_ms", "RTT idle avg ms"),
            ("rtt_idle_added_ms", "RTT idle added ms"), ("rtt_idle_median_ms", "RTT idle median ms"),
            ("rtt_idle_median_added_ms", "RTT idle median added ms"), ("rtt_load_avg_ms", "RTT under load avg ms"),
            ("rtt_load_added_ms", "RTT load added ms"), ("cpu_gwA_pct", "CPU gwA % of 1 core"),
            ("cpu_gwB_pct", "CPU gwB % of 1 core"), ("host_cpu_busy_pct", "host CPU busy % (all)")]


def cell(case, suite, key):
    row = rows.get((case, "-" if case == "plain" else suite))
    if row is None:
        return None, "-"
    if row["status"] != "OK":
        return None, row["status"]
    v = row["metrics"].get(key)
    if v is None:
        return None, "n/a"
    return v, (f"{v:.0f}" if abs(v) >= 100 else f"{v:.3g}" if abs(v) < 1 else f"{v:.1f}")


ratios = {}
lines = []
for suite in suites:
    ratios[suite] = {}
    hdr = ["metric"] + cases + [f"{a}/{b}" for a, b in RATIOS if a in cases and b in cases]
    table = [hdr]
    st = ["status"]
    for c in cases:
        r = rows.get((c, "-" if c == "plain" else suite))
        st.append(r["status"] if r else "-")
    table.append(st + [""] * (len(hdr) - len(st)))
    for key, label in METRICS:
        vals = {c: cell(c, suite, key) for c in cases}
        if all(v[1] in ("n/a", "-") for v in vals.values()):
            continue
        line = [label] + [vals[c][1] for c in cases]
        for a, b in RATIOS:
            if a not in cases or b not in cases:
                continue
            va, vb = vals[a][0], vals[b][0]
            rt = round(va / vb, 3) if va is not None and vb not in (None, 0) and ratio_ok(key) else None
            ratios[suite].setdefault(key, {})[f"{a}/{b}"] = rt
            line.append(f"{rt:.2f}" if rt is not None else "-")
        table.append(line)
    widths = [max(len(r[i]) for r in table) for i in range(len(hdr))]
    lines.append(f"== ESP {suite}  (IKE {meta.get('ike_proposal')}, {meta.get('duration_s')} s per run)")
    for r in table:
        lines.append("  ".join(r[0].ljust(widths[0]) if i == 0 else r[i].rjust(widths[i])
                               for i in range(len(hdr))))
    lines.append("")

# notes for rows that did not produce figures
notes = [f"  {c} {s}: {r['status']} {r['note']}" for (c, s), r in sorted(rows.items()) if r["status"] != "OK"]
if notes:
    lines.append("rows without figures:")
    lines += notes
    lines.append("")

counts = {}
for r in rows.values():
    counts[r["status"]] = counts.get(r["status"], 0) + 1
leaks = sum(1 for r in rows.values() if (r["verify"].get("clear_pkts") or 0) > 0)
summ = [f"dur={meta.get('duration_s')}s", f"rows={len(rows)}"] + \
       [f"{k}={v}" for k, v in sorted(counts.items())] + [f"leaks={leaks}"]
for suite in suites:
    parts = []
    for c in cases:
        v, txt = cell(c, suite, "tcp1_mbps")
        parts.append(f"{c}={txt}")
    r = ratios.get(suite, {}).get("tcp1_mbps", {})
    fr = r.get("fs-fs/ss-ss")
    parts.append(f"fs/ss={fr:.2f}" if fr is not None else "fs/ss=-")
    summ.append(f"| {suite} tcp1_mbps " + " ".join(parts))

result = {
    "schema": 1,
    "run_id": meta.get("run_id"),
    "started": meta.get("started"), "finished": meta.get("finished"),
    "params": {"duration_s": num(meta.get("duration_s")), "suites": suites, "cases": cases,
               "ike_proposal": meta.get("ike_proposal"), "udp_sizes": [int(s) for s in udp_sizes],
               "tun_mtu": num(meta.get("tun_mtu")), "smoke": meta.get("smoke") not in ("", "0", None)},
    "host": {k: meta.get(k) for k in ("kernel", "nproc", "cpu_model", "loadavg_at_end")},
    "versions": {k: meta.get(k) for k in ("strongswan", "iperf3", "ferroswan_bin", "ferroswan_version",
                                          "ferroswan_git", "ferroswan_note")},
    "rows": sorted(rows.values(), key=lambda r: (r["suite"] or "", CASE_ORDER.index(r["case"])
                                                  if r["case"] in CASE_ORDER else 99)),
    "ratios": ratios,
    "summary": {"status_counts": counts, "leaks": leaks},
}
with open(out, "w") as f:
    json.dump(result, f, indent=2)
    f.write("\n")
print("\n".join(lines))
print("SUMMARY " + " ".join(summ))
