#!/usr/bin/env python3
"""Throws random and malformed frames at husk-agent (test mode) and checks it
keeps answering. Usage: python3 test/fuzz_agent.py AGENT [ROUNDS] [SEED]"""
import os
import random
import struct
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(__file__))
import test_agent as t  # noqa: E402

agent = sys.argv[1]
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
seed = int(sys.argv[3]) if len(sys.argv) > 3 else int(time.time())
rnd = random.Random(seed)
t.AGENT = agent


def rbytes(n):
    return bytes(rnd.getrandbits(8) for _ in range(n))


def random_tlv():
    out = b""
    for _ in range(rnd.randint(0, 6)):
        tag = rnd.choice([3, 4, 5, 9, 12, 0, 1, 77, 65535] + list(range(13, 34)) + [40])
        n = rnd.choice([0, 1, 3, 4, 5, 8, 24, 40, rnd.randint(0, 60)])
        val = rbytes(n)
        declared = n if rnd.random() < 0.85 else rnd.choice([n + 1, n + 1000, 0xFFFFFFFF, max(0, n - 1)])
        out += struct.pack("<HI", tag, declared) + val
    if rnd.random() < 0.1:
        out = out[:rnd.randint(0, len(out))]
    # never run anything real: an unusable PATH, and it is the last ENV
    return out + struct.pack("<HI", 4, 15) + b"PATH=/nonexist"


a = t.Agent()
assert a.recv()[0] == t.HELLO
print("seed", seed)
for i in range(rounds):
    typ = rnd.choice([0, 1, 2, 2, 2, 3, 6, 6, 8, 8, 10, 11, 12, 12, 13, 13, 15, 15, 0xFFFF])
    id_ = rnd.choice([0, 1, 2, 3, rnd.getrandbits(32)])
    kind = rnd.random()
    if kind < 0.02:
        n = rnd.choice([(1 << 20) + 1, 3 << 20, 0xFFFFFFFF & ((1 << 20) + rnd.getrandbits(12))])
        a.send_raw(struct.pack("<IHHI", n, typ, 0, id_))
        a.send_raw(b"\0" * n)
    elif typ in (2, 8, 13, 15):
        a.send(typ, id_, random_tlv(), flags=rnd.getrandbits(16))
    else:
        a.send(typ, id_, rbytes(rnd.randint(0, 64)))
    # drain whatever came back without blocking
    while True:
        try:
            a.recv(timeout=0)
        except TimeoutError:
            break
a.run(12345678, ["echo", "alive"])
while True:
    typ, id_, p = a.recv(timeout=20)
    if id_ == 12345678 and typ == t.STDOUT:
        assert p == b"alive\n"
    if id_ == 12345678 and typ == t.EXIT:
        break
a.send(t.POWEROFF, 0)
assert a.proc.wait(10) == 0
print(f"fuzz: {rounds} frames, agent alive and exited cleanly")
