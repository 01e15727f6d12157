#!/usr/bin/env python3
"""Writes the RESTORE commands ferry would send for a source's keys, as RESP, to a file.

    gen_restore.py --source-port P [--host H] --out FILE

For every key (SCAN + PTTL + DUMP from the source): `RESTORE key <abs ms> payload ABSTTL
REPLACE`, the same command, argument for argument, that ferry's writer sends. Replaying the file
with `redis-cli --pipe` measures what the target can ingest at best (one connection, no reading,
no waiting), which is the reference ferry's live and --rdb times are divided by.
Prints `<keys> <bytes of key+payload>` on stdout.
"""
import argparse

import redis


def cmd(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--source-port", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--count", type=int, default=1000)
    a = ap.parse_args()
    src = redis.Redis(host=a.host, port=a.source_port)
    secs, micros = src.time()
    now_ms = secs * 1000 + micros // 1000
    keys_n = size = 0
    with open(a.out, "wb", buffering=1 << 20) as f:
        cursor = 0
        while True:
            cursor, keys = src.scan(cursor, count=a.count)
            if keys:
                p = src.pipeline(transaction=False)
                for k in keys:
                    p.pttl(k)
                    p.dump(k)
                res = p.execute()
                for k, ttl, val in zip(keys, res[0::2], res[1::2]):
                    if val is None or ttl == -2:
                        continue
                    at = b"0" if ttl < 0 else b"%d" % (now_ms + ttl)
                    f.write(cmd(b"RESTORE", k, at, val, b"ABSTTL", b"REPLACE"))
                    keys_n += 1
                    size += len(k) + len(val)
            if cursor == 0:
                break
    print(keys_n, size)


if __name__ == "__main__":
    main()
