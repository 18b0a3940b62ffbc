#!/usr/bin/env python3
"""Host test of protocol extension C in test mode (--test-fd): HELLO
announces FEATURES bit 2, UPDATE checks every resource attribute before
anything (test mode applies nothing and answers RESULT), STATS without a
cgroup is ENOTSUP; extension D's PROCFS without a container is ESRCH. The guest cgroup itself is tested with real VMs
(test/integration/pause.test.ts).

Usage: python3 test/test_cgroup.py build/husk-agent
"""
import errno
import os
import struct
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(__file__))
import test_agent as t  # noqa: E402

t.AGENT = sys.argv[1] if len(sys.argv) > 1 else "build/husk-agent"

UPDATE, STATS, RESULT = 20, 21, 22
PROCFS = 24
SETUP, SETUP_DONE = 13, 14
CG_NAMESPACE = 67
MEM_MAX, SWAP_MAX, MEM_LOW, CPU_MAX, CPU_WEIGHT, PIDS_MAX = range(60, 66)
FEATURES = 40
U64_MAX = (1 << 64) - 1


def u64(tag, v):
    return t.tlv(tag, struct.pack("<Q", v))


def main():
    a = t.Agent()
    typ, _, p = a.recv()
    assert typ == t.HELLO
    feats = t.u32(t.parse_tlv(p)[FEATURES][0])
    assert feats & 4 and feats & 1, feats
    print("ok   HELLO features bit 2")

    good = (u64(MEM_MAX, 256 << 20) + u64(SWAP_MAX, U64_MAX) + u64(MEM_LOW, 0) +
            t.tlv(CPU_MAX, struct.pack("<QQ", 50000, 100000)) + t.tlv(CPU_WEIGHT, struct.pack("<I", 100)) +
            u64(PIDS_MAX, 64) + t.tlv(999, b"future"))
    a.send(UPDATE, 7, good)
    typ, id_, _ = a.recv()
    assert (typ, id_) == (RESULT, 7), (typ, id_)
    print("ok   UPDATE accepted")

    bad = [
        t.tlv(MEM_MAX, b"\0" * 4),  # wrong size
        t.tlv(CPU_MAX, b"\0" * 8),
        t.tlv(CPU_WEIGHT, struct.pack("<I", 0)),
        t.tlv(CPU_WEIGHT, struct.pack("<I", 10001)),
        t.tlv(CPU_MAX, struct.pack("<QQ", 50000, 10)),  # period below 1 ms
        t.tlv(CPU_MAX, struct.pack("<QQ", 10, 100000)),  # quota below 1 ms
        good + t.tlv(PIDS_MAX, b"\1"),  # a bad one after good ones: nothing applies
        b"\x3c\x00\xff\xff",  # truncated TLV
    ]
    for i, p in enumerate(bad):
        a.send(UPDATE, 100 + i, p)
        a.expect_error(100 + i, errno.EINVAL)
    print("ok   UPDATE validation")

    # CG_NAMESPACE belongs to SETUP (1 byte); UPDATE ignores it like any unknown tag.
    a.send(UPDATE, 8, t.tlv(CG_NAMESPACE, b"\1"))
    assert a.recv()[:2] == (RESULT, 8)
    a.send(SETUP, 0, t.tlv(CG_NAMESPACE, b""))
    a.expect_error(0, errno.EINVAL, "CG_NAMESPACE")
    a.send(SETUP, 0, t.tlv(CG_NAMESPACE, b"\1") + t.tlv(CPU_WEIGHT, struct.pack("<I", 0)))
    a.expect_error(0, errno.EINVAL, "cpu weight")
    a.send(SETUP, 0, t.tlv(CG_NAMESPACE, b"\1") + good)
    assert a.recv()[:2] == (SETUP_DONE, 0)
    print("ok   SETUP with CG_NAMESPACE and resources")

    a.send(STATS, 9, b"")
    a.expect_error(9, errno.ENOTSUP, "no container cgroup")
    print("ok   STATS without a cgroup")

    # Extension D: PROCFS needs the container's pid namespace (a real VM:
    # test/integration/podman.test.ts, plain podman top).
    assert feats & 16, feats
    a.send(PROCFS, 10, b"")
    a.expect_error(10, errno.ESRCH, "container not running")
    print("ok   PROCFS without a container")
    assert a.close() == 0
    print("all passed")


if __name__ == "__main__":
    main()
