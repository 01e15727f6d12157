#!/usr/bin/env python3
"""The copy script a user would write: redis-py, SCAN + pipelined PTTL/DUMP, pipelined RESTORE.

    baseline.py --source-port P --target-port P --cacert CA [--count 1000]
    (target password in FERRY_TARGET_PASSWORD)

One connection each side, one SCAN page at a time: read the page's TTLs and values in one
pipeline, write them in another (RESTORE with the relative TTL and REPLACE). This is the baseline
ferry's live migration is compared with in scripts/bench.sh. Prints the number of keys written.
"""
import argparse
import os

import redis


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--source-port", type=int, required=True)
    ap.add_argument("--target-port", type=int, required=True)
    ap.add_argument("--cacert", required=True)
    ap.add_argument("--count", type=int, default=1000)
    a = ap.parse_args()
    src = redis.Redis(host=a.host, port=a.source_port)
    dst = redis.Redis(host=a.host, port=a.target_port, ssl=True, ssl_ca_certs=a.cacert,
                      password=os.environ.get("FERRY_TARGET_PASSWORD"))
    written = 0
    cursor = 0
    while True:
        cursor, keys = src.scan(cursor, count=a.count)
        if keys:
            p = src.pipeline(transaction=False)
            for k in keys:
                p.pttl(k)
                p.dump(k)
            res = p.execute()
            w = dst.pipeline(transaction=False)
            for k, ttl, val in zip(keys, res[0::2], res[1::2]):
                if val is None or ttl == -2:
                    continue
                w.restore(k, ttl if ttl > 0 else 0, val, replace=True)
                written += 1
            w.execute()
        if cursor == 0:
            break
    print(written)


if __name__ == "__main__":
    main()
