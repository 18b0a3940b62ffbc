#!/usr/bin/env python3
"""husk.defer_root in PID 1 mode (the HUSK_TEST_HOOKS build, see
nstest_agent.py): HELLO comes before the rootfs and binds are mounted; the
first SETUP, or the first RUN without SETUP, mounts them; a failed mount
answers that request with an ERROR and a later request tries again.

Usage (root): python3 test/nstest_defer.py build/nstest/husk-agent
"""
import errno
import os
import shutil
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(__file__))
import nstest_agent as ns  # noqa: E402
import test_agent as t  # noqa: E402

CMDLINE = "husk.debug husk.fs=myfs husk.port=5001 husk.binds=b husk.defer_root"
FEATURES, FEATURE_DEFER_ROOT = 40, 64


def agent_pid(a):
    """The agent's pid on the host: the child unshare --fork made."""
    with open(f"/proc/{a.proc.pid}/task/{a.proc.pid}/children") as f:
        return int(f.read().split()[0])


def mount_points(pid):
    with open(f"/proc/{pid}/mountinfo") as f:
        return {ln.split()[4] for ln in f}


def mounted(a):
    """(rootfs, binds) mounted in the agent's mount namespace, checked both in
    its mount table and by what its /rootfs and binds directory show."""
    pid = agent_pid(a)
    mps = mount_points(pid)
    root = f"/proc/{pid}/root"
    rootfs = "/rootfs" in mps
    binds = "/run/husk/binds" in mps
    assert rootfs == os.path.exists(root + "/rootfs/etc/marker"), mps
    assert binds == os.path.exists(root + "/run/husk/binds/m0/file"), mps
    return rootfs, binds


def hello(a):
    typ, id_, p = a.recv()
    assert typ == t.HELLO and id_ == 0, (typ, p)
    assert t.u32(t.parse_tlv(p)[FEATURES][0]) & FEATURE_DEFER_ROOT


def poweroff(a):
    a.send(t.POWEROFF, 0)
    a.proc.wait(10)


def error_of(p):
    tl = t.parse_tlv(p)
    return t.i32(tl[t.ERRNO][0]), tl[t.MESSAGE][0].decode()


def setup_mounts_root():
    a = ns.boot(cmdline=CMDLINE)
    hello(a)
    assert mounted(a) == (False, False), "rootfs mounted before SETUP"
    a.send(ns.SETUP, 0, ns.mount_rec("proc", "proc", "/proc") +
           ns.mount_rec("bind", "/run/husk/binds/m0", "/data", flags=ns.MS_BIND))
    typ, _, p = a.recv()
    assert typ == ns.SETUP_DONE, t.parse_tlv(p)
    assert mounted(a) == (True, True)
    r = ns.run(a, 1, ["cat", "/etc/marker", "/data/file"])
    assert r["out"] == b"container rootfs\nbound dir\n" and r["exit"] == (0, 0), r
    poweroff(a)
    print("ok   defer_root: HELLO before the rootfs and binds mounts, SETUP mounts them, the container runs")


def run_mounts_root():
    a = ns.boot(cmdline=CMDLINE)
    hello(a)
    assert mounted(a) == (False, False), "rootfs mounted before RUN"
    r = ns.run(a, 1, ["sh", "-c", "cat /etc/marker; test -d /proc/1 && echo proc"])
    assert r["out"] == b"container rootfs\nproc\n" and r["exit"] == (0, 0), r
    assert mounted(a) == (True, True)
    r = ns.run(a, 2, ["cat", "/etc/marker"])  # mounted once: no second mount over it
    assert r["exit"] == (0, 0), r
    assert sum(ln.split()[4] == "/rootfs" for ln in open(f"/proc/{agent_pid(a)}/mountinfo")) == 1
    poweroff(a)
    print("ok   defer_root: a RUN without SETUP mounts the rootfs (once)")


def mount_failure():
    late = os.path.join(ns.ROOT, "late-rootfs")
    if os.path.lexists(late):
        os.unlink(late)
    a = ns.boot(rootfs="/late-rootfs", cmdline=CMDLINE)
    hello(a)  # not an ERROR: nothing is mounted yet
    want = (errno.ENOENT, 'mount virtiofs "myfs" on /rootfs: no such file or directory')
    setup = ns.mount_rec("proc", "proc", "/proc")
    a.send(ns.SETUP, 0, setup)
    typ, id_, p = a.recv()
    assert typ == t.ERROR and id_ == 0 and error_of(p) == want, (typ, p)
    r = ns.run(a, 1, ["true"])  # the agent still answers; the RUN tries the mount too
    assert r["error"] == want, r
    assert mounted(a) == (False, False)
    # The directory appears (the host set it late): a second SETUP mounts it.
    os.symlink("cfs", late)
    a.send(ns.SETUP, 0, setup)
    typ, _, p = a.recv()
    assert typ == ns.SETUP_DONE, t.parse_tlv(p)
    assert mounted(a) == (True, True)
    r = ns.run(a, 2, ["cat", "/etc/marker"])
    assert r["out"] == b"container rootfs\n" and r["exit"] == (0, 0), r
    poweroff(a)
    os.unlink(late)
    print("ok   defer_root: a failed mount answers SETUP and RUN with an ERROR; a later SETUP mounts it")


def binds_failure():
    """The rootfs mounts but the binds do not: the retry mounts only the binds."""
    binds = os.path.join(ns.ROOT, "binds")
    hidden = binds + ".hidden"
    os.rename(binds, hidden)
    try:
        a = ns.boot(cmdline=CMDLINE)
        hello(a)
        r = ns.run(a, 1, ["true"])
        assert r["error"] == (errno.ENOENT, 'mount virtiofs "b" on /run/husk/binds: no such file or directory'), r
        os.rename(hidden, binds)
        r = ns.run(a, 2, ["cat", "/etc/marker"])
        assert r["out"] == b"container rootfs\n" and r["exit"] == (0, 0), r
        assert mounted(a) == (True, True)
        assert sum(ln.split()[4] == "/rootfs" for ln in open(f"/proc/{agent_pid(a)}/mountinfo")) == 1
        poweroff(a)
    finally:
        if os.path.exists(hidden):
            os.rename(hidden, binds)
    print("ok   defer_root: a failed binds mount is retried without mounting the rootfs twice")


def not_deferred():
    """Without the token the rootfs is there before HELLO, as before."""
    a = ns.boot(cmdline=CMDLINE.replace(" husk.defer_root", ""))
    hello(a)
    assert mounted(a) == (True, True)
    poweroff(a)
    print("ok   no defer_root: rootfs and binds mounted before HELLO")


def main():
    if os.geteuid() != 0:
        print("nstest_defer: needs root; skipped")
        return
    ns.stage()
    not_deferred()
    setup_mounts_root()
    run_mounts_root()
    mount_failure()
    binds_failure()
    with open(os.path.join(ns.ROOT, "tmp/console.log")) as f:
        log = f.read()
    assert "mount /late-rootfs on /rootfs (none): no such file or directory" in log, log
    if not os.environ.get("KEEP"):
        shutil.rmtree(ns.ROOT, ignore_errors=True)
    print("nstest_defer passed")


if __name__ == "__main__":
    main()
