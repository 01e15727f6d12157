#!/usr/bin/env python3
"""Measures how long the benchmark's source is blocked while something reads it.

    latency.py --port P --out FILE     (runs until SIGTERM)

Two measures, started together and read when SIGTERM arrives:
  slowlog   the server's own: `slowlog-log-slower-than 100` (µs) and a slowlog long enough to
            keep every such command, emptied at start; the slowest entry (SLOWLOG/CONFIG left
            out) is the longest any one command held the server. Not disturbed by a loaded
            machine's scheduling of the client.
  ping      a PING every 2 ms from here; the worst round trip (includes this process's own
            scheduling delays on a loaded machine, so it is an upper bound).
Writes one line to FILE: `<worst ping ms> <slowest command µs> <pings> <slowest command>`.
This changes the benchmark source's slowlog settings: only for bench.sh's own servers.
"""
import argparse
import signal
import time

import redis


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    r = redis.Redis(host=a.host, port=a.port)
    r.config_set("slowlog-log-slower-than", 100)
    r.config_set("slowlog-max-len", 1_000_000)
    r.slowlog_reset()
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    worst, pings = 0.0, 0
    while not stop:
        t = time.perf_counter()
        r.ping()
        worst = max(worst, time.perf_counter() - t)
        pings += 1
        time.sleep(0.002)
    slowest, what = 0, "none over 100 us"
    for e in r.slowlog_get(1_000_000):
        us = e["duration"]
        words = e["command"]
        words = (words.decode(errors="replace") if isinstance(words, bytes) else str(words)).split(" ")
        if words[0].upper() in ("SLOWLOG", "CONFIG") or us <= slowest:
            continue
        slowest = us
        what = " ".join(w[:40] for w in words[:3])
    with open(a.out, "w") as f:
        f.write(f"{worst * 1000:.1f} {slowest} {pings} {what}\n")


if __name__ == "__main__":
    main()
