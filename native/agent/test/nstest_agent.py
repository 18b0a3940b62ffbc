#!/usr/bin/env python3
"""Runs husk-agent as PID 1 (the VM code path: mounts, chroot, power-off) in
new PID/mount/net namespaces, with the HUSK_TEST_HOOKS build: a unix socket
stands in for vsock, a bind mount for virtio-fs, a file for /dev/console.
reboot() in a non-initial PID namespace only ends that namespace.

Usage (root): python3 test/nstest_agent.py build/nstest/husk-agent
"""
import errno
import os
import shutil
import socket
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(__file__))
import test_agent as t  # noqa: E402

AGENT = os.path.abspath(sys.argv[1])
ROOT = os.path.join(os.path.dirname(AGENT), "root")
TOOLS = "sh echo ls cat readlink mount pwd env sleep ip test true wc head mkdir".split()


class SockAgent(t.Agent):
    def __init__(self, sock, proc):  # noqa: super().__init__ starts a process; not here
        self.sock, self.proc, self.buf = sock, proc, b""


def stage():
    shutil.rmtree(ROOT, ignore_errors=True)
    for d in ["dev", "proc", "sys", "tmp", "cfs/bin", "cfs/etc", "cfs/tmp"]:
        os.makedirs(os.path.join(ROOT, d))
    shutil.copy(AGENT, os.path.join(ROOT, "init"))
    shutil.copy(shutil.which("busybox"), os.path.join(ROOT, "cfs/bin/busybox"))
    for tool in TOOLS:
        os.symlink("busybox", os.path.join(ROOT, "cfs/bin", tool))
    with open(os.path.join(ROOT, "cfs/etc/marker"), "w") as f:
        f.write("container rootfs\n")
    os.chmod(os.path.join(ROOT, "cfs/etc/marker"), 0o644)


def boot(rootfs="/cfs", cmdline="quiet husk.debug husk.fs=myfs husk.port=5001 husk.port=x"):
    path = os.path.join(ROOT, "tmp/agent.sock")
    if os.path.exists(path):
        os.unlink(path)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    env = dict(PATH="/usr/bin:/bin", HUSK_TEST_SOCKET="/tmp/agent.sock",
               HUSK_TEST_ROOTFS=rootfs, HUSK_TEST_CONSOLE="/tmp/console.log",
               HUSK_TEST_CMDLINE=cmdline)
    proc = subprocess.Popen(["unshare", "--pid", "--fork", "--mount", "--net",
                             "--propagation", "private", "--root", ROOT, "/init"], env=env)
    srv.settimeout(15)
    conn, _ = srv.accept()
    srv.close()
    return SockAgent(conn, proc)


def run(a, id_, argv, **kw):
    a.run(id_, argv, **kw)
    return a.collect(id_)


def main():
    if os.geteuid() != 0:
        print("nstest: needs root; skipped")
        return
    stage()
    a = boot()
    t.hello(a)
    r = run(a, 1, ["cat", "/etc/marker"])  # PATH lookup inside the chroot
    assert r["out"] == b"container rootfs\n" and r["exit"] == (0, 0), r
    r = run(a, 2, ["ls", "/"])
    assert set(r["out"].split()) == {b"bin", b"dev", b"etc", b"proc", b"sys", b"tmp"}, r
    r = run(a, 3, ["sh", "-c", "ls /dev/null /dev/pts/ptmx /dev/shm >/dev/null && readlink /dev/fd"
                   " && echo x > /dev/shm/y && cat /dev/shm/y && test -d /proc/1 && ls /sys/kernel >/dev/null"
                   " && ip link show lo | head -1"])
    assert r["exit"] == (0, 0), r
    lines = r["out"].splitlines()
    assert lines[0] == b"/proc/self/fd" and lines[1] == b"x" and b"UP" in lines[2], r
    r = run(a, 4, ["mount"])
    mounts = r["out"].decode()
    for mp in ["/proc type proc", "/sys type sysfs (ro", "/dev/pts type devpts", "/dev/shm type tmpfs"]:
        assert mp in mounts, (mp, mounts)
    r = run(a, 5, ["pwd"], cwd="/etc")
    assert r["out"] == b"/etc\n"
    r = run(a, 6, ["nope"])
    assert r["error"] == (errno.ENOENT, 'exec: "nope": executable file not found in $PATH'), r
    r = run(a, 7, ["/etc/marker"])
    assert r["error"] == (errno.EACCES, 'exec: "/etc/marker": permission denied'), r
    r = run(a, 8, ["sh", "-c", "sleep 0.2 & exit 5"])
    assert r["exit"] == (5, 5 << 8)
    time.sleep(0.4)  # the orphan is reaped by PID 1
    a.send(t.POWEROFF, 0)
    try:
        a.recv(5)
        raise AssertionError("message after POWEROFF")
    except EOFError:
        pass
    a.proc.wait(10)
    print("ok   PID 1 mode: mounts, chroot, PATH in chroot, /dev, lo, POWEROFF")

    a = boot(rootfs="/no-such-rootfs")
    typ, id_, p = a.recv()
    tl = t.parse_tlv(p)
    assert typ == t.ERROR and id_ == 0 and t.i32(tl[t.ERRNO][0]) == errno.ENOENT, (typ, p)
    try:
        a.recv(5)
        raise AssertionError("message after setup ERROR")
    except EOFError:
        pass
    a.proc.wait(10)
    print("ok   PID 1 mode: rootfs mount failure -> ERROR id 0, power off")
    with open(os.path.join(ROOT, "tmp/console.log")) as f:
        log = f.read()
    assert "husk-agent: ignoring invalid husk.port=x" in log, log
    assert "husk.fs=myfs husk.port=5001" in log, log
    assert "husk-agent: send EXIT id=8" in log, log
    assert "husk-agent: mount /no-such-rootfs on /rootfs (none): no such file or directory" in log, log
    if not os.environ.get("KEEP"):
        shutil.rmtree(ROOT, ignore_errors=True)
    print("nstest passed")


if __name__ == "__main__":
    main()
