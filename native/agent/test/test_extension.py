#!/usr/bin/env python3
"""Host test of protocol extension A in test mode (--test-fd): the full
process spec (TERMINAL, UID/GID/GIDS, UMASK, RLIMIT, CAPS, NO_NEW_PRIVS,
OOM_SCORE_ADJ, SECCOMP), HOLD/START, RESIZE, and SETUP parsing (test mode
checks SETUP but applies nothing; nstest_agent.py applies it for real).

Usage (root): python3 test/test_extension.py build/husk-agent [-v]
"""
import errno
import os
import platform
import struct
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(__file__))
import test_agent as t  # noqa: E402

t.AGENT = sys.argv[1] if len(sys.argv) > 1 else "build/husk-agent"

CREATED, START, SETUP, SETUP_DONE, RESIZE = 11, 12, 13, 14, 15
(TERMINAL, WINSIZE, UID, GID, GIDS, UMASK, RLIMIT, CAPS, NO_NEW_PRIVS, OOM_SCORE_ADJ,
 SECCOMP, SECCOMP_FLAGS, HOLD) = range(13, 26)
HOSTNAME, DOMAINNAME, MOUNT, MASKED, READONLY, SYSCTL, ROOTFS_RO, DEVICE = range(26, 34)
FEATURES = 40
ENV = ["PATH=/usr/local/bin:/usr/bin:/bin"]


def tlv(tag, value):
    return t.tlv(tag, value)


def u8(tag, v):
    return tlv(tag, bytes([v]))


def run_payload(argv, env=ENV, cwd=None, extra=b""):
    p = b"".join(tlv(t.ARG, a) for a in argv) + b"".join(tlv(t.ENV, e) for e in env)
    if cwd:
        p += tlv(t.CWD, cwd)
    return p + extra


def mount_rec(typ, src, dst, data="", flags=0, prop=0):
    return tlv(MOUNT, struct.pack("<II", flags, prop) + b"\0".join(
        s.encode() for s in (typ, src, dst, data)) + b"\0")


def device_rec(typ, major, minor, path, mode=0, uid=0, gid=0):
    return tlv(DEVICE, struct.pack("<6I", ord(typ), major, minor, mode, uid, gid) + path.encode() + b"\0")


def caps(bnd, eff, prm, inh, amb):
    return tlv(CAPS, struct.pack("<5Q", bnd, eff, prm, inh, amb))


def status_of(out, key):
    for line in out.decode().splitlines():
        if line.startswith(key + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"{key} not in {out!r}")


# seccomp: ERRNO(EPERM) for mkdir/mkdirat, everything else allowed
def mkdir_filter():
    arch = platform.machine()
    if arch == "x86_64":
        audit, nrs = 0xC000003E, [83, 258]
    elif arch == "aarch64":
        audit, nrs = 0xC00000B7, [34]
    else:
        return None
    insns = [(0x20, 0, 0, 4),  # ld [arch]
             (0x15, 1, 0, audit),  # jeq audit: skip the allow
             (0x06, 0, 0, 0x7FFF0000),  # ret ALLOW
             (0x20, 0, 0, 0)]  # ld [nr]
    for nr in nrs:
        insns += [(0x15, 0, 1, nr), (0x06, 0, 0, 0x00050000 | errno.EPERM)]
    insns.append((0x06, 0, 0, 0x7FFF0000))
    return b"".join(struct.pack("<HBBI", *i) for i in insns)


TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


@test
def hello_features(a):
    typ, _, p = a.recv()
    assert typ == t.HELLO
    assert t.u32(t.parse_tlv(p)[FEATURES][0]) & 3 == 3  # extensions A and B
    assert t.u32(t.parse_tlv(p)[FEATURES][0]) & 64  # understands husk.defer_root


@test
def hold_start(a):
    d = tempfile.mkdtemp()
    f = os.path.join(d, "ran")
    a.send(t.RUN, 1, run_payload(["sh", "-c", f"touch {f}; echo done"], extra=u8(HOLD, 1)))
    typ, id_, p = a.recv()
    assert (typ, id_) == (CREATED, 1), (typ, p)
    pid = t.u32(t.parse_tlv(p)[t.PID][0])
    time.sleep(0.3)
    assert not os.path.exists(f), "held process ran before START"
    assert os.path.exists(f"/proc/{pid}")
    a.send(START, 1)
    r = a.collect(1)
    assert r["started"] == pid and r["out"] == b"done\n" and r["exit"] == (0, 0), r
    assert os.path.exists(f)
    os.unlink(f)
    os.rmdir(d)
    # errors: missing executable, START twice/unknown/not held
    a.send(t.RUN, 2, run_payload(["no-such-cmd-xyz"], extra=u8(HOLD, 1)))
    r = a.collect(2)
    assert r["error"] == (errno.ENOENT, 'exec: "no-such-cmd-xyz": executable file not found in $PATH'), r
    a.send(t.RUN, 3, run_payload(["/no/such"], extra=u8(HOLD, 1)))
    assert a.collect(3)["error"] == (errno.ENOENT, 'exec: "/no/such": no such file or directory')
    a.send(START, 4)
    a.expect_error(4, errno.ESRCH)
    a.send(t.RUN, 5, run_payload(["sleep", "5"]))
    assert a.recv()[0] == t.STARTED
    a.send(START, 5)
    a.expect_error(5, errno.EINVAL)
    a.send(t.SIGNAL, 5, tlv(t.SIGNO, 9))
    assert a.collect(5, started=1)["exit"] == (137, 9)
    # SIGNAL to a held process: EXIT without STARTED
    a.send(t.RUN, 6, run_payload(["true"], extra=u8(HOLD, 1)))
    assert a.recv()[:2] == (CREATED, 6)
    a.send(t.SIGNAL, 6, tlv(t.SIGNO, 15))
    typ, id_, p = a.recv()
    assert (typ, id_) == (t.EXIT, 6), typ
    assert t.i32(t.parse_tlv(p)[t.STATUS][0]) == 143
    # START right behind RUN (before CREATED was seen)
    a.send(t.RUN, 7, run_payload(["echo", "early"], extra=u8(HOLD, 1)))
    a.send(START, 7)
    assert a.recv()[:2] == (CREATED, 7)
    r = a.collect(7)
    assert r["out"] == b"early\n", r
    a.send(START, 7)
    a.expect_error(7, errno.ESRCH)


@test
def user_and_groups(a):
    a.send(t.RUN, 10, run_payload(["id"], extra=tlv(UID, 1234) + tlv(GID, 2345) +
                                  tlv(GIDS, struct.pack("<2I", 3000, 3001))))
    r = a.collect(10)
    assert r["out"] == b"uid=1234 gid=2345 groups=2345,3000,3001\n" or \
        r["out"] == b"uid=1234 gid=2345 groups=3000,3001\n", r
    a.send(t.RUN, 11, run_payload(["sh", "-c", "id -G; grep Cap /proc/self/status"],
                                  extra=tlv(UID, 1000) + tlv(GIDS, b"")))
    r = a.collect(11)
    assert r["out"].splitlines()[0] == b"0", r  # gid unchanged (root), no supplementary groups
    assert status_of(r["out"], "CapEff") == "0000000000000000", r


@test
def umask_rlimit_oom(a):
    lim = struct.pack("<IIQQ", 7, 0, 123, 456)  # RLIMIT_NOFILE
    a.send(t.RUN, 20, run_payload(["sh", "-c", "umask; ulimit -n; ulimit -Hn; cat /proc/self/oom_score_adj"],
                                  extra=tlv(UMASK, 0o027) + tlv(RLIMIT, lim) + tlv(OOM_SCORE_ADJ, 555)))
    r = a.collect(20)
    assert r["out"].split() == [b"0027", b"123", b"456", b"555"], r
    a.send(t.RUN, 21, run_payload(["true"], extra=tlv(RLIMIT, struct.pack("<IIQQ", 7, 0, 10, 5))))
    a.expect_error(21, errno.EINVAL, "soft limit")
    a.send(t.RUN, 22, run_payload(["true"], extra=tlv(RLIMIT, struct.pack("<IIQQ", 99, 0, 1, 1))))
    a.expect_error(22, errno.EINVAL)


@test
def nnp_and_caps(a):
    a.send(t.RUN, 30, run_payload(["grep", "NoNewPrivs", "/proc/self/status"], extra=u8(NO_NEW_PRIVS, 1)))
    assert a.collect(30)["out"].split() == [b"NoNewPrivs:", b"1"]
    x = (1 << 0) | (1 << 10)  # CAP_CHOWN, CAP_NET_BIND_SERVICE
    a.send(t.RUN, 31, run_payload(["grep", "Cap", "/proc/self/status"],
                                  extra=tlv(UID, 1000) + tlv(GID, 1000) + caps(x, x, x, x, x)))
    r = a.collect(31)
    for k in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"]:
        assert int(status_of(r["out"], k), 16) == x, (k, r)
    # root with a small bounding set: after execve permitted = bounding
    a.send(t.RUN, 32, run_payload(["grep", "Cap", "/proc/self/status"],
                                  extra=caps(1 << 21, 1 << 21, 1 << 21, 0, 0)))
    r = a.collect(32)
    assert int(status_of(r["out"], "CapBnd"), 16) == 1 << 21, r
    assert int(status_of(r["out"], "CapEff"), 16) == 1 << 21, r
    a.send(t.RUN, 33, run_payload(["true"], extra=tlv(CAPS, b"\0" * 39)))
    a.expect_error(33, errno.EINVAL)


@test
def seccomp(a):
    prog = mkdir_filter()
    if prog is None:
        print("  (seccomp: unknown architecture; skipped)")
        return
    d = tempfile.mkdtemp()
    for id_, nnp in ((40, True), (41, False)):
        extra = tlv(SECCOMP, prog) + tlv(SECCOMP_FLAGS, 0) + (u8(NO_NEW_PRIVS, 1) if nnp else b"")
        a.send(t.RUN, id_, run_payload(["sh", "-c", f"mkdir {d}/x || echo refused; grep Seccomp: /proc/self/status"],
                                       extra=extra))
        r = a.collect(id_)
        assert b"refused" in r["out"] and b"Seccomp:\t2" in r["out"], r
        assert b"not permitted" in r["err"], r
    assert not os.path.exists(f"{d}/x")
    os.rmdir(d)
    a.send(t.RUN, 42, run_payload(["true"], extra=tlv(SECCOMP, prog[:-1])))
    a.expect_error(42, errno.EINVAL)
    a.send(t.RUN, 43, run_payload(["true"], extra=tlv(SECCOMP, b"\0" * 8 * 4097)))
    a.expect_error(43, errno.EINVAL)
    a.send(t.RUN, 44, run_payload(["true"], extra=tlv(SECCOMP, b"")))
    a.expect_error(44, errno.EINVAL)
    # a program the kernel refuses (jump out of range): ERROR from the child
    a.send(t.RUN, 45, run_payload(["true"], extra=tlv(SECCOMP, struct.pack("<HBBI", 0x05, 0, 0, 100))))
    assert a.collect(45)["error"][0] == errno.EINVAL


@test
def terminal(a):
    ws = struct.pack("<HH", 33, 111)
    a.send(t.RUN, 50, run_payload(["sh", "-c", "tty; stty size; read x; stty size; echo got $x"],
                                  extra=u8(TERMINAL, 1) + tlv(WINSIZE, ws)))
    assert a.recv()[:2] == (t.STARTED, 50)
    out = b""
    while b"33 111" not in out:
        typ, id_, p = a.recv()
        assert (typ, id_) == (t.STDOUT, 50), (typ, p)
        out += p
    a.send(RESIZE, 50, tlv(WINSIZE, struct.pack("<HH", 44, 99)))
    a.send(t.STDIN, 50, b"")  # ignored for a terminal
    a.send(t.STDIN, 50, b"hello\n")
    r = a.collect(50, started=1)
    out += r["out"]
    lines = out.replace(b"\r\n", b"\n").splitlines()
    assert lines[0].startswith(b"/dev/pts/"), out
    assert lines[1] == b"33 111" and lines[2] == b"hello" and lines[3] == b"44 99", out
    assert lines[4] == b"got hello" and r["err"] == b"" and r["exit"] == (0, 0), (out, r)
    a.send(RESIZE, 50, tlv(WINSIZE, ws))
    a.expect_error(50, errno.ESRCH)
    a.send(t.RUN, 51, run_payload(["sleep", "5"]))
    assert a.recv()[0] == t.STARTED
    a.send(RESIZE, 51, tlv(WINSIZE, ws))
    a.expect_error(51, errno.ENOTTY)
    a.send(RESIZE, 51, tlv(WINSIZE, b"\1\2\3"))
    a.expect_error(51, errno.EINVAL)
    a.send(t.SIGNAL, 51, tlv(t.SIGNO, 9))
    a.collect(51, started=1)
    # a terminal process killed by a signal; output before it is kept
    a.send(t.RUN, 52, run_payload(["sh", "-c", "echo bye; kill -9 $$"], extra=u8(TERMINAL, 1)))
    r = a.collect(52)
    assert r["out"] == b"bye\r\n" and r["exit"] == (137, 9), r


@test
def run_validation(a):
    for id_, extra in [(60, tlv(TERMINAL, b"")), (61, tlv(WINSIZE, b"\0\0")), (62, tlv(UID, b"\0")),
                       (63, tlv(GIDS, b"\0\0\0")), (64, tlv(UMASK, 0o1777)), (65, tlv(OOM_SCORE_ADJ, 5000)),
                       (66, tlv(SECCOMP_FLAGS, 8)), (67, tlv(HOLD, b"\1\1")), (68, tlv(NO_NEW_PRIVS, b""))]:
        a.send(t.RUN, id_, run_payload(["true"], extra=extra))
        a.expect_error(id_, errno.EINVAL)


@test
def setup_messages(_):
    a = t.Agent()
    assert a.recv()[0] == t.HELLO
    # malformed: nothing changes, a later SETUP is still accepted
    bad = [
        tlv(MOUNT, b"\0" * 7),
        tlv(MOUNT, struct.pack("<II", 0, 0) + b"proc\0proc\0/proc\0"),  # 3 strings
        tlv(MOUNT, struct.pack("<II", 0, 0) + b"proc\0proc\0/proc\0\0x"),  # trailing byte
        mount_rec("proc", "proc", "relative"),
        mount_rec("", "proc", "/proc"),
        mount_rec("proc", "proc", "/proc", flags=1 << 13),  # MS_MOVE
        mount_rec("proc", "proc", "/proc", flags=1 << 30),
        mount_rec("proc", "proc", "/proc", prop=1 << 14),  # MS_REC alone
        mount_rec("proc", "proc", "/proc", prop=(1 << 18) | (1 << 19)),
        mount_rec("bind", "relative", "/x", flags=4096),
        mount_rec("virtiofs", "", "/x"),
        tlv(HOSTNAME, "h" * 65),
        tlv(HOSTNAME, b"a\0b"),
        tlv(MASKED, "relative"),
        tlv(SYSCTL, "novalue"),
        tlv(SYSCTL, "net.ipv4..x=1"),
        tlv(SYSCTL, "net/../../etc=1"),
        tlv(ROOTFS_RO, b""),
        tlv(DEVICE, b""),
        tlv(DEVICE, struct.pack("<6I", 99, 1, 3, 0, 0, 0)),  # no path
        tlv(DEVICE, struct.pack("<6I", 99, 1, 3, 0, 0, 0)[:23] + b"/dev/x\0"),  # short fixed part
        tlv(DEVICE, struct.pack("<6I", 99, 1, 3, 0, 0, 0) + b"/dev/x"),  # no NUL
        tlv(DEVICE, struct.pack("<6I", 99, 1, 3, 0, 0, 0) + b"/dev/x\0y"),  # byte after NUL
        tlv(DEVICE, struct.pack("<6I", 99, 1, 3, 0, 0, 0) + b"/dev/x\0\0"),
        tlv(DEVICE, struct.pack("<6I", 99, 1, 3, 0, 0, 0) + b"/\0"),
        device_rec("x", 1, 3, "/dev/x"),
        device_rec("c", 1, 3, "dev/x"),
        device_rec("c", 1, 3, "/dev/x/"),
        device_rec("c", 1, 3, "/dev/.."),
        device_rec("c", 1, 3, "/dev/x", mode=0o10666),
        device_rec("c", 4096, 3, "/dev/x"),
        device_rec("b", 8, 1 << 20, "/dev/x"),
        mount_rec("proc", "proc", "/proc") + device_rec("c", 1, 3, "/dev/x", mode=0o100000),
        b"\x1c\x00\xff\xff",  # truncated TLV
    ]
    for i, p in enumerate(bad):
        a.send(SETUP, 0, p)
        typ, id_, r = a.recv()
        assert typ == t.ERROR and t.i32(t.parse_tlv(r)[t.ERRNO][0]) == errno.EINVAL, (i, typ, r)
    a.send(SETUP, 5, b"")
    a.expect_error(5, errno.EINVAL)
    good = (tlv(HOSTNAME, "box") + tlv(DOMAINNAME, "example") +
            mount_rec("proc", "proc", "/proc", flags=2 | 4 | 8) +
            mount_rec("tmpfs", "tmpfs", "/dev", "mode=755,size=65536k", flags=2 | (1 << 24)) +
            mount_rec("devpts", "devpts", "/dev/pts", "newinstance,ptmxmode=0666,mode=0620,gid=5", flags=2 | 8) +
            mount_rec("bind", "/run/husk/binds/m0", "/data", flags=4096 | 16384 | 1, prop=(1 << 18) | (1 << 14)) +
            mount_rec("cgroup", "cgroup", "/sys/fs/cgroup", flags=1 | 2 | 4 | 8) +
            tlv(MASKED, "/proc/kcore") + tlv(READONLY, "/proc/sys") +
            tlv(SYSCTL, "net.ipv4.ip_forward=1") + u8(ROOTFS_RO, 1) + tlv(999, b"future") +
            device_rec("c", 10, 200, "/dev/net/tun", 0o666) + device_rec("b", 8, 0, "/dev/sda", 0o660, 0, 6) +
            device_rec("u", 1, 3, "/dev/mynull") + device_rec("p", 0, 0, "/run/fifo", 0o600, 1000, 1000))
    a.send(SETUP, 0, good)
    assert a.recv()[:2] == (SETUP_DONE, 0)
    a.send(SETUP, 0, good)
    a.expect_error(0, errno.EINVAL, "already")
    a.run(70, ["echo", "ok"])
    assert a.collect(70)["out"] == b"ok\n"
    a.send(SETUP, 0, good)
    a.expect_error(0, errno.EINVAL, "already")
    assert a.close() == 0


PS, PS_LIST, FD_DATA = 16, 17, 18
EXTRA_FDS = 41


@test
def extension_b_extra_fds(a):
    """EXTRA_FDS / FD_DATA (extension B): fds 3.. of the process are relayed both ways."""
    a.send(t.RUN, 40, run_payload(["sh", "-c", "cat <&3 >&4; echo tail >&4; echo err >&3"], extra=tlv(EXTRA_FDS, struct.pack("<I", 2))))
    a.send(FD_DATA, 40, struct.pack("<I", 3) + b"to fd 3\n")
    a.send(FD_DATA, 40, struct.pack("<I", 3))  # EOF
    got = {3: b"", 4: b""}
    eof = set()
    while True:
        typ, id_, p = a.recv()
        assert id_ == 40, (typ, id_)
        if typ == FD_DATA:
            fd = t.u32(p[:4])
            if len(p) == 4:
                eof.add(fd)
            else:
                assert fd not in eof, "data after EOF"
                got[fd] += p[4:]
        elif typ == t.EXIT:
            assert t.i32(t.parse_tlv(p)[t.STATUS][0]) == 0
            break
        else:
            assert typ == t.STARTED, typ
    assert got == {3: b"err\n", 4: b"to fd 3\ntail\n"}, got
    assert eof == {3, 4}, eof
    # bad requests
    a.send(t.RUN, 41, run_payload(["true"], extra=tlv(EXTRA_FDS, struct.pack("<I", 65))))
    a.expect_error(41, errno.EINVAL, "EXTRA_FDS")
    a.send(FD_DATA, 42, struct.pack("<I", 3) + b"x")
    a.expect_error(42, errno.ESRCH)
    a.send(t.RUN, 43, run_payload(["sleep", "2"]))
    assert a.recv()[:2] == (t.STARTED, 43)
    a.send(FD_DATA, 43, struct.pack("<I", 3) + b"x")
    a.expect_error(43, errno.EBADF)
    a.send(FD_DATA, 43, b"\1")
    a.expect_error(43, errno.EINVAL)
    a.send(t.SIGNAL, 43, tlv(t.SIGNO, struct.pack("<I", 9)))
    assert a.collect(43, started=1)["exit"] == (137, 9)


@test
def extension_b_ps_without_container(a):
    """PS needs the container's pid namespace (SETUP + init): test mode has none."""
    a.send(PS, 50)
    a.expect_error(50, errno.ESRCH, "container not running")
    a.send(PS, 51, b"\1")
    a.expect_error(51, errno.EINVAL)
NET_LINK, NET_ADDR, NET_ROUTE, NET_RTO_MIN = 50, 51, 52, 90


@test
def net_attributes(_):
    a = t.Agent()
    typ, _, p = a.recv()
    assert typ == t.HELLO
    assert t.u32(t.parse_tlv(p)[FEATURES][0]) & 8  # networking
    assert t.u32(t.parse_tlv(p)[FEATURES][0]) & 32  # NET_RTO_MIN
    link = struct.pack("<I", 65520) + bytes([2, 0, 0, 0, 0, 1, 0, 0])
    v4 = bytes([10, 88, 0, 5]) + bytes(12)
    gw4 = bytes([10, 88, 0, 1]) + bytes(12)
    bad = [
        tlv(NET_LINK, link[:11]),
        tlv(NET_LINK, struct.pack("<I", 67) + link[4:]),  # MTU below IPv4's minimum
        tlv(NET_LINK, struct.pack("<I", 70000) + link[4:]),
        tlv(NET_LINK, link[:4] + bytes([1, 0, 0, 0, 0, 1, 0, 0])),  # multicast MAC
        tlv(NET_ADDR, bytes([4, 24, 0, 0]) + v4[:15]),
        tlv(NET_ADDR, bytes([5, 24, 0, 0]) + v4),  # family
        tlv(NET_ADDR, bytes([4, 33, 0, 0]) + v4),  # prefix
        tlv(NET_ADDR, bytes([6, 129, 0, 0]) + v4),
        tlv(NET_ROUTE, bytes([4, 0, 1, 0]) + bytes(16) + gw4[:15]),
        tlv(NET_ROUTE, bytes([4, 0, 2, 0]) + bytes(16) + gw4),  # gateway flag
        tlv(NET_ROUTE, bytes([4, 40, 0, 0]) + bytes(32)),
        tlv(NET_RTO_MIN, struct.pack("<H", 10)),
        tlv(NET_RTO_MIN, struct.pack("<I", 0)),
        tlv(NET_RTO_MIN, struct.pack("<I", 1001)),
    ]
    for i, p in enumerate(bad):
        a.send(SETUP, 0, p)
        typ, id_, r = a.recv()
        assert typ == t.ERROR and t.i32(t.parse_tlv(r)[t.ERRNO][0]) == errno.EINVAL, (i, typ, r)
    good = (tlv(NET_LINK, link) + tlv(NET_RTO_MIN, struct.pack("<I", 10)) + tlv(NET_ADDR, bytes([4, 24, 0, 0]) + v4) +
            tlv(NET_ADDR, bytes([6, 64, 0, 0]) + bytes.fromhex("fd000000000000000000000000000005")) +
            tlv(NET_ROUTE, bytes([4, 0, 1, 0]) + bytes(16) + gw4) +
            tlv(NET_ROUTE, bytes([6, 0, 1, 0]) + bytes(16) + bytes.fromhex("fe800000000000000000000000000001")))
    a.send(SETUP, 0, good)
    assert a.recv()[:2] == (SETUP_DONE, 0)
    assert a.close() == 0


def main():
    if os.geteuid() != 0:
        print("test_extension: needs root (uid/caps changes); skipped")
        return
    a = t.Agent(debug="-v" in sys.argv)
    failed = 0
    for fn in TESTS:
        start = time.time()
        try:
            fn(a)
            print(f"ok   {fn.__name__} ({time.time() - start:.2f}s)")
        except Exception as e:  # noqa: BLE001
            failed += 1
            print(f"FAIL {fn.__name__}: {type(e).__name__}: {e!r}")
            if a.proc.poll() is not None:
                print("agent died with", a.proc.returncode)
                break
    if a.proc.poll() is None:
        a.close()
    b = t.Agent()
    assert b.recv()[0] == t.HELLO
    b.run(1, ["true"])
    b.collect(1)
    b.send(SETUP, 0, b"")
    b.expect_error(0, errno.EINVAL, "already runs")
    b.close()
    print("ok   SETUP after RUN refused")
    print("all passed" if not failed else f"{failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
