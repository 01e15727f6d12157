#!/usr/bin/env python3
"""Turns the raw rows of scripts/bench.sh into the summary table and target/bench/e2e.json.

    report.py RESULTS.tsv META.json OUT.json

RESULTS.tsv columns: shape scale method rep wall_s cpu_s rss_kb keys bytes src_cpu_s dst_cpu_s status
[ping_ms slowest_us slowest_command] (method: live, rdb, limit, baseline, live-before and rdb-before
for FERRY_BIN_BEFORE's runs, and `dumps` for the
DUMPs that wrote the RESTORE file; scale: 1 or 4; cpu_s/rss_kb only for ferry's runs; the
source-latency columns only where measured: `bigkeys`' live runs and its dumps).
Every headline figure is a ratio of medians measured in the same run:
  live/limit, rdb/limit      ferry's time over the target's ingest limit (redis-cli --pipe)
  baseline/live, baseline/rdb  the Python script's time over ferry's (how many times faster)
  live_slowest_over_dumps, live_ping_over_dumps   (bigkeys) the longest the source was blocked
                             during ferry's runs over the same during the reference's DUMPs
"""
import json
import statistics
import sys

METHODS = ["live", "rdb", "limit", "baseline"]
# FERRY_BIN_BEFORE's runs (an older binary, same rotation), when there are any.
BEFORE = ["live-before", "rdb-before"]


def med(xs):
    return statistics.median(xs) if xs else None


def ratio(a, b):
    return round(a / b, 3) if a is not None and b else None


def source_latency(rows):
    """Worst PING and slowest source command, over the runs of live and of the dumps."""
    out = {}
    for m in ("live", "dumps"):
        ok = [r for r in rows if r["method"] == m and r["status"] == "ok" and r["slowest_us"] is not None]
        if ok:
            worst = max(ok, key=lambda r: r["slowest_us"])
            out[m] = {"worst_ping_ms": max(r["ping_ms"] for r in ok), "slowest_us": worst["slowest_us"],
                      "slowest_command": worst["slowest_cmd"], "runs": len(ok)}
    return out


def main():
    rows_path, meta_path, out_path = sys.argv[1:4]
    meta = json.load(open(meta_path))
    rows = []
    for line in open(rows_path):
        f = line.rstrip("\n").split("\t")
        if len(f) < 12 or f[0] == "shape":
            continue
        num = lambda s: float(s) if s not in ("", "-") else None  # noqa: E731
        rows.append(dict(shape=f[0], scale=int(f[1]), method=f[2], rep=int(f[3]), wall_s=num(f[4]),
                         cpu_s=num(f[5]), rss_kb=num(f[6]), keys=int(f[7] or 0), bytes=int(f[8] or 0),
                         src_cpu_s=num(f[9]), dst_cpu_s=num(f[10]), status=f[11],
                         ping_ms=num(f[12]) if len(f) > 12 else None,
                         slowest_us=num(f[13]) if len(f) > 13 else None,
                         slowest_cmd=f[14] if len(f) > 14 else ""))
    shapes = {}
    for shape in dict.fromkeys(r["shape"] for r in rows):
        rs = [r for r in rows if r["shape"] == shape]
        one = [r for r in rs if r["scale"] == 1]
        keys = max((r["keys"] for r in one), default=0)
        size = max((r["bytes"] for r in one), default=0)
        methods = {}
        ran = {r["method"] for r in one}
        for m in METHODS + [b for b in BEFORE if b in ran]:
            ok = [r for r in one if r["method"] == m and r["status"] == "ok"]
            bad = [r["status"] for r in one if r["method"] == m and r["status"] != "ok"]
            if not ok:
                methods[m] = {"status": bad[0] if bad else "not run"}
                continue
            t = med([r["wall_s"] for r in ok])
            d = {"status": "ok", "runs_s": [round(r["wall_s"], 3) for r in ok], "median_s": round(t, 3),
                 "keys_per_s": round(keys / t), "mb_per_s": round(size / t / 1e6, 1)}
            if m in ("live", "rdb") or m in BEFORE:
                cpu = med([r["cpu_s"] for r in ok if r["cpu_s"] is not None])
                rss = max(r["rss_kb"] for r in ok if r["rss_kb"] is not None)
                d["cpu_s"] = round(cpu, 3)
                d["cpu_s_per_million_keys"] = round(cpu / keys * 1e6, 3) if keys else None
                d["peak_rss_mb"] = round(rss / 1024, 1)
            src = med([r["src_cpu_s"] for r in ok if r["src_cpu_s"] is not None])
            dst = med([r["dst_cpu_s"] for r in ok if r["dst_cpu_s"] is not None])
            d["source_server_cpu_s"] = None if src is None else round(src, 2)
            d["target_server_cpu_s"] = None if dst is None else round(dst, 2)
            methods[m] = d
        latency = source_latency(one)
        if latency:
            methods["live"]["source_latency"] = latency.get("live")
        t = {m: methods[m].get("median_s") for m in METHODS}
        entry = {"keys": keys, "bytes": size, "reps": max((r["rep"] for r in one), default=0),
                 "methods": methods,
                 "ratios": {"live_over_limit": ratio(t["live"], t["limit"]),
                            "rdb_over_limit": ratio(t["rdb"], t["limit"]),
                            "baseline_over_live": ratio(t["baseline"], t["live"]),
                            "baseline_over_rdb": ratio(t["baseline"], t["rdb"])}}
        for b in BEFORE:
            if b in methods:
                entry["ratios"][b.replace("-", "_") + "_over_limit"] = ratio(methods[b].get("median_s"), t["limit"])
        if latency:
            entry["reference_dumps_source_latency"] = latency.get("dumps")
            live, dumps = latency.get("live") or {}, latency.get("dumps") or {}
            entry["ratios"]["live_slowest_over_dumps"] = ratio(live.get("slowest_us"), dumps.get("slowest_us"))
            entry["ratios"]["live_ping_over_dumps"] = ratio(live.get("worst_ping_ms"), dumps.get("worst_ping_ms"))
        four = [r for r in rs if r["scale"] == 4]
        if four:
            x4 = {"keys": max(r["keys"] for r in four)}
            for m in ("live", "rdb"):
                ok = [r for r in four if r["method"] == m and r["status"] == "ok"]
                if not ok:
                    bad = [r["status"] for r in four if r["method"] == m]
                    x4[m] = {"status": bad[0] if bad else "not run"}
                    continue
                rss = max(r["rss_kb"] for r in ok) / 1024
                base = methods.get(m, {}).get("peak_rss_mb")
                x4[m] = {"status": "ok", "median_s": round(med([r["wall_s"] for r in ok]), 3),
                         "peak_rss_mb": round(rss, 1),
                         "cpu_s_per_million_keys": round(med([r["cpu_s"] for r in ok]) / x4["keys"] * 1e6, 3),
                         "rss_over_1x": ratio(rss, base)}
            entry["x4"] = x4
        shapes[shape] = entry
    result = {**meta, "shapes": shapes}
    with open(out_path, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")

    def s(x, fmt="{:.2f}"):
        return "n/a" if x is None else fmt.format(x)

    print()
    print(f"ferry {meta.get('ferry_version', '?')} ({meta.get('ferry_commit', '?')}), source {meta.get('source')}, "
          f"target {meta.get('target')}, {meta.get('cores')} cores, reps {meta.get('reps')}, medians")
    hdr = ["shape", "keys", "MB", "live s", "rdb s", "limit s", "python s", "live/limit", "rdb/limit",
           "python/live", "python/rdb", "live keys/s", "live MB/s", "CPU s/Mkeys", "RSS 1x MB", "RSS 4x MB"]
    table = [hdr]
    for shape, e in shapes.items():
        m = e["methods"]
        live = m["live"]
        x4 = e.get("x4", {}).get("live", {})
        table.append([shape, str(e["keys"]), s(e["bytes"] / 1e6, "{:.0f}"),
                      s(live.get("median_s")), s(m["rdb"].get("median_s")), s(m["limit"].get("median_s")),
                      s(m["baseline"].get("median_s")),
                      s(e["ratios"]["live_over_limit"]), s(e["ratios"]["rdb_over_limit"]),
                      s(e["ratios"]["baseline_over_live"], "{:.1f}"), s(e["ratios"]["baseline_over_rdb"], "{:.1f}"),
                      s(live.get("keys_per_s"), "{:.0f}"), s(live.get("mb_per_s"), "{:.1f}"),
                      s(live.get("cpu_s_per_million_keys")), s(live.get("peak_rss_mb"), "{:.1f}"),
                      s(x4.get("peak_rss_mb"), "{:.1f}")])
        rdb = m["rdb"]
        if rdb.get("status") == "ok":
            rx4 = e.get("x4", {}).get("rdb", {})
            table.append(["  (rdb)", "", "", "", "", "", "", "", "", "", "",
                          s(rdb.get("keys_per_s"), "{:.0f}"), s(rdb.get("mb_per_s"), "{:.1f}"),
                          s(rdb.get("cpu_s_per_million_keys")), s(rdb.get("peak_rss_mb"), "{:.1f}"),
                          s(rx4.get("peak_rss_mb"), "{:.1f}")])
        for b in BEFORE:
            before = m.get(b, {})
            if before.get("status") == "ok":
                ratio_key = b.replace("-", "_") + "_over_limit"
                table.append([f"  ({b})", "", "", s(before.get("median_s")) if b == "live-before" else "",
                              s(before.get("median_s")) if b == "rdb-before" else "", "", "",
                              s(e["ratios"].get(ratio_key)) if b == "live-before" else "",
                              s(e["ratios"].get(ratio_key)) if b == "rdb-before" else "", "", "",
                              s(before.get("keys_per_s"), "{:.0f}"), s(before.get("mb_per_s"), "{:.1f}"),
                              s(before.get("cpu_s_per_million_keys")), s(before.get("peak_rss_mb"), "{:.1f}"), ""])
    widths = [max(len(r[i]) for r in table) for i in range(len(hdr))]
    for i, r in enumerate(table):
        print("  ".join(c.rjust(w) for c, w in zip(r, widths)))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    for shape, e in shapes.items():
        ref = e.get("reference_dumps_source_latency")
        live = e["methods"]["live"].get("source_latency")
        if ref or live:
            print(f"\n{shape}: source blocked (slowest command in its SLOWLOG; worst PING), ferry live "
                  f"{s((live or {}).get('slowest_us'), '{:.0f}')} us, {s((live or {}).get('worst_ping_ms'), '{:.1f}')} ms "
                  f"({(live or {}).get('slowest_command', '')}); the reference's DUMPs "
                  f"{s((ref or {}).get('slowest_us'), '{:.0f}')} us, {s((ref or {}).get('worst_ping_ms'), '{:.1f}')} ms "
                  f"({(ref or {}).get('slowest_command', '')}); ratios {s(e['ratios'].get('live_slowest_over_dumps'), '{:.3f}')}, "
                  f"{s(e['ratios'].get('live_ping_over_dumps'), '{:.3f}')}")
    print(f"\nwritten: {out_path}")


if __name__ == "__main__":
    main()
