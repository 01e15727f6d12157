#!/usr/bin/env python3
"""Writes the RESP commands that seed one benchmark dataset, for `redis-cli --pipe`.

    seed.py SHAPE COUNT [--first N]   > commands.resp

SHAPE:
  small  COUNT strings of ~100 B (keys `s:<n>`, ~110 B per key with the name)
  mixed  COUNT keys: 40% strings (20 B-1 KB, some integers), 15% each hashes, lists, sets
         (int and text), sorted sets; one in ten collections large enough to leave the compact
         encoding; every other key has a TTL of 1-2 hours
  large  COUNT strings of 10-100 KB (incompressible bytes)
  bigkeys  the big keys of issue #14 (tests/bigkeys.rs): a 1M-field hash, a 1M-element list, a
         500k-member zset (scores +-inf and 17-digit ones) and set, a 40 MB string, a 200k-entry
         stream with two groups, consumers and pending entries (TTLs on the hash, list and
         stream), beside COUNT - 6 small strings; --first is ignored (no 4x)

Keys are numbered from --first (default 0), so a second call can grow a dataset (4x runs).
Everything is deterministic: the same arguments always give the same bytes.
"""
import random
import sys


def cmd(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if not isinstance(a, bytes):
            a = str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def main():
    shape, count = sys.argv[1], int(sys.argv[2])
    first = int(sys.argv[sys.argv.index("--first") + 1]) if "--first" in sys.argv else 0
    rnd = random.Random(1234 + first)
    alnum = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    pool = bytes(rnd.choice(alnum) for _ in range(1 << 16))
    out = sys.stdout.buffer
    buf = []

    def text(n, i):
        off = (i * 7919) % (len(pool) - n)
        return pool[off:off + n]

    def flush(force=False):
        if force or len(buf) >= 2000:
            out.write(b"".join(buf))
            buf.clear()

    if shape == "small":
        for i in range(first, first + count):
            buf.append(cmd(b"SET", b"s:%09d" % i, text(98 + i % 5, i)))
            flush()
    elif shape == "mixed":
        for i in range(first, first + count):
            kind, big = i % 20, (i // 20) % 10 == 0
            if kind < 8:
                key = b"m:str:%d" % i
                v = b"%d" % (i * 31) if kind == 0 else text(20 + (i * 37) % 1000, i)
                buf.append(cmd(b"SET", key, v))
            elif kind < 11:
                key = b"m:hash:%d" % i
                n = 300 if big else 5 + i % 45
                args = [b"HMSET", key]
                for f in range(n):
                    args += [b"f%d" % f, text(10 + f % 40, i + f)]
                buf.append(cmd(*args))
            elif kind < 14:
                key = b"m:list:%d" % i
                n = 1000 if big else 5 + i % 45
                buf.append(cmd(b"RPUSH", key, *[text(8 + e % 30, i + e) for e in range(n)]))
            elif kind < 17:
                key = b"m:set:%d" % i
                n = 600 if big else 5 + i % 45
                if kind == 14:
                    members = [b"%d" % (i + m * 3) for m in range(n)]  # intset unless big
                else:
                    members = [b"%s:%d" % (text(12, i + m), m) for m in range(n)]
                buf.append(cmd(b"SADD", key, *members))
            else:
                key = b"m:zset:%d" % i
                n = 300 if big else 5 + i % 45
                args = [b"ZADD", key]
                for m in range(n):
                    args += [b"%.3f" % ((i * m) % 10007 / 7.0), b"%s:%d" % (text(10, i + m), m)]
                buf.append(cmd(*args))
            if i % 2 == 1:
                buf.append(cmd(b"PEXPIRE", key, 3_600_000 + (i * 997) % 3_600_000))
            flush()
    elif shape == "large":
        big = bytes(rnd.getrandbits(8) for _ in range(1 << 17))
        for i in range(first, first + count):
            n = 10_240 + (i * 7919) % (90 * 1024)
            off = (i * 104729) % (len(big) - n)
            # Make each value unique in its first bytes, so no two payloads are the same.
            buf.append(cmd(b"SET", b"l:%07d" % i, b"%09d" % i + big[off:off + n - 9]))
            flush()
    elif shape == "bigkeys":
        big_keys(buf, flush, max(count - 6, 0))
    else:
        sys.exit(f"unknown shape {shape!r} (small, mixed, large, bigkeys)")
    flush(True)


def big_keys(buf, flush, small):
    """The `bigkeys` shape: many elements per command, so seeding takes seconds."""
    def many(verb, key, n, per, args_of):
        for start in range(0, n, per):
            args = [verb, key]
            for i in range(start, min(start + per, n)):
                args += args_of(i)
            buf.append(cmd(*args))
            flush()

    many(b"HSET", b"big:hash", 1_000_000, 1000,
         lambda i: [b"field:%d" % i, b"value-%d-%s" % (i, b"h" * (i % 40))])
    many(b"RPUSH", b"big:list", 1_000_000, 1000, lambda i: [b"element-%d-%s" % (i, b"l" * (i % 30))])

    def score(i):
        if i < 2:
            return b"-inf" if i == 0 else b"+inf"
        return repr((i / 3.0) * (1 if i % 2 == 0 else -1)).encode()  # shortest round trip: up to 17 digits

    many(b"ZADD", b"big:zset", 500_000, 1000, lambda i: [score(i), b"member-%d" % i])
    many(b"SADD", b"big:set", 500_000, 1000, lambda i: [b"set-member-%d-%s" % (i, b"s" * (i % 20))])
    part = random.Random(40).randbytes(1 << 20)  # incompressible within LZF's 8 KB window
    for _ in range(40):
        buf.append(cmd(b"APPEND", b"big:string", part))
        flush()
    for i in range(200_000):
        buf.append(cmd(b"XADD", b"big:stream", b"%d-%d" % (1000 + i // 3, i % 3),
                       b"f", b"payload-%d-%s" % (i, b"x" * (i % 50)), b"n", b"%d" % i))
        flush()
    buf.append(cmd(b"XGROUP", b"CREATE", b"big:stream", b"g1", b"0"))
    buf.append(cmd(b"XGROUP", b"CREATE", b"big:stream", b"g2", b"1500-0"))
    for group, consumer, n in [(b"g1", b"alice", 300), (b"g1", b"bob", 200), (b"g2", b"carol", 50)]:
        buf.append(cmd(b"XREADGROUP", b"GROUP", group, consumer, b"COUNT", b"%d" % n,
                       b"STREAMS", b"big:stream", b">"))
    buf.append(cmd(b"XCLAIM", b"big:stream", b"g1", b"bob", b"0", b"1000-0", b"1001-2"))
    for key, ms in [(b"big:hash", 3_600_000), (b"big:list", 600_000), (b"big:stream", 1_800_000)]:
        buf.append(cmd(b"PEXPIRE", key, b"%d" % ms))
    for i in range(small):
        buf.append(cmd(b"SET", b"small:%d" % i, b"v%d" % i))
        flush()


if __name__ == "__main__":
    main()
