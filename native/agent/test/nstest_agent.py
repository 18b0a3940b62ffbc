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
import struct
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(__file__))
import test_agent as t  # noqa: E402

AGENT = os.path.abspath(sys.argv[1])
ROOT = os.path.join(os.path.dirname(AGENT), "root")
TOOLS = ("sh echo ls cat readlink mount pwd env sleep ip test true wc head mkdir hostname grep touch tty stty"
         " id stat").split()


class SockAgent(t.Agent):
    def __init__(self, sock, proc):  # noqa: super().__init__ starts a process; not here
        self.sock, self.proc, self.buf = sock, proc, b""


def stage():
    shutil.rmtree(ROOT, ignore_errors=True)
    for d in ["dev", "proc", "sys", "tmp", "cfs/bin", "cfs/etc", "cfs/tmp", "cfs/var/real",
              "binds/m0", "tags/extra"]:
        os.makedirs(os.path.join(ROOT, d))
    shutil.copy(AGENT, os.path.join(ROOT, "init"))
    shutil.copy(shutil.which("busybox"), os.path.join(ROOT, "cfs/bin/busybox"))
    for tool in TOOLS:
        os.symlink("busybox", os.path.join(ROOT, "cfs/bin", tool))
    with open(os.path.join(ROOT, "cfs/etc/marker"), "w") as f:
        f.write("container rootfs\n")
    os.chmod(os.path.join(ROOT, "cfs/etc/marker"), 0o644)
    # symlinks that point out of the rootfs: SETUP must keep them inside
    os.symlink("../../../../../outside", os.path.join(ROOT, "cfs/escape"))
    os.symlink("/var/real", os.path.join(ROOT, "cfs/abs"))
    for name, text in [("binds/m0/file", "bound dir\n"), ("binds/m1", "bound file\n"),
                       ("tags/extra/hello", "virtiofs tag\n")]:
        with open(os.path.join(ROOT, name), "w") as f:
            f.write(text)


def boot(rootfs="/cfs", cmdline="quiet husk.debug husk.fs=myfs husk.port=5001 husk.port=x husk.binds=b"):
    path = os.path.join(ROOT, "tmp/agent.sock")
    if os.path.exists(path):
        os.unlink(path)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    env = dict(PATH="/usr/bin:/bin", HUSK_TEST_SOCKET="/tmp/agent.sock",
               HUSK_TEST_ROOTFS=rootfs, HUSK_TEST_CONSOLE="/tmp/console.log",
               HUSK_TEST_CMDLINE=cmdline, HUSK_TEST_BINDS="/binds", HUSK_TEST_TAGS="/tags")
    proc = subprocess.Popen(["unshare", "--pid", "--fork", "--mount", "--net", "--uts", "--ipc",
                             "--propagation", "private", "--root", ROOT, "/init"], env=env)
    srv.settimeout(15)
    conn, _ = srv.accept()
    srv.close()
    return SockAgent(conn, proc)


def run(a, id_, argv, extra=b"", **kw):
    if extra:
        p = b"".join(t.tlv(t.ARG, x) for x in argv) + t.tlv(t.ENV, "PATH=/bin") + extra
        a.send(t.RUN, id_, p)
    else:
        a.run(id_, argv, **kw)
    return a.collect(id_)


def mount_rec(typ, src, dst, data="", flags=0, prop=0):
    return t.tlv(28, struct.pack("<II", flags, prop) + b"\0".join(
        x.encode() for x in (typ, src, dst, data)) + b"\0")


MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC = 1, 2, 4, 8, 4096, 16384
MS_PRIVATE, MS_RELATIME, MS_STRICTATIME = 1 << 18, 1 << 21, 1 << 24
SETUP, SETUP_DONE = 13, 14


def setup_test():
    """SETUP applied for real: the mounts of an OCI default config and more."""
    a = boot()
    t.hello(a)
    a.send(SETUP, 0, mount_rec("proc", "/nonexistent-guest-path", "/data", flags=MS_BIND))
    typ, _, p = a.recv()  # a failing SETUP...
    assert typ == t.ERROR and t.i32(t.parse_tlv(p)[t.ERRNO][0]) == errno.ENOENT, p
    a.run(1, ["true"])  # ...makes the container unusable
    assert a.collect(1)["error"][1].startswith("container set-up failed: bind mount on /data"), "RUN after failed SETUP"
    a.send(t.POWEROFF, 0)
    a.proc.wait(10)

    a = boot()
    t.hello(a)
    nsx = MS_NOSUID | MS_NODEV | MS_NOEXEC
    p = (t.tlv(26, "husk-box") + t.tlv(27, "example.org") +
         mount_rec("proc", "proc", "/proc", flags=nsx) +
         mount_rec("tmpfs", "tmpfs", "/dev", "mode=755,size=65536k", flags=MS_NOSUID | MS_STRICTATIME) +
         mount_rec("devpts", "devpts", "/dev/pts", "newinstance,ptmxmode=0666,mode=0620,gid=5",
                   flags=MS_NOSUID | MS_NOEXEC) +
         mount_rec("tmpfs", "shm", "/dev/shm", "mode=1777,size=65536k", flags=nsx) +
         mount_rec("mqueue", "mqueue", "/dev/mqueue", flags=nsx) +
         mount_rec("sysfs", "sysfs", "/sys", flags=nsx | MS_RDONLY) +
         mount_rec("cgroup", "cgroup", "/sys/fs/cgroup", flags=nsx | MS_RELATIME | MS_RDONLY) +
         mount_rec("bind", "/run/husk/binds/m0", "/data/dir", flags=MS_BIND | MS_REC | MS_RDONLY,
                   prop=MS_PRIVATE | MS_REC) +
         mount_rec("bind", "/run/husk/binds/m1", "/etc/bound", flags=MS_BIND | MS_RDONLY) +
         mount_rec("virtiofs", "extra", "/mnt/extra") +
         mount_rec("tmpfs", "tmpfs", "/escape/x") +
         mount_rec("tmpfs", "tmpfs", "/abs/y") +
         mount_rec("tmpfs", "tmpfs", "/abs/../abs/z") +
         t.tlv(29, "/proc/version") + t.tlv(29, "/proc/acpi") + t.tlv(29, "/no/such") + t.tlv(29, "/var") +
         t.tlv(30, "/proc/sys") + t.tlv(30, "/no/such") +
         t.tlv(31, "kernel.domainname=from-sysctl") + t.tlv(32, b"\1"))
    a.send(SETUP, 0, p)
    typ, _, p = a.recv()
    assert typ == SETUP_DONE, t.parse_tlv(p)
    # The first RUN is the container's init, PID 1 of its own pid namespace;
    # the later ones join it (extension B).
    a.run(20, ["sleep", "1000"], env=("PATH=/bin",))
    typ, id_, _ = a.recv()
    assert (typ, id_) == (t.STARTED, 20), typ
    r = run(a, 21, ["sh", "-c", "echo $$; cat /proc/1/cmdline"])
    lines = r["out"].decode().split("\n", 1)
    assert lines[0] != "1" and lines[1] == "sleep\x001000\x00", r
    r = run(a, 2, ["sh", "-c", "hostname; cat /proc/sys/kernel/domainname; cat /data/dir/file /etc/bound"
                   " /mnt/extra/hello; readlink /dev/ptmx; readlink /dev/fd; test -c /dev/null && test -c /dev/urandom"
                   " && test -c /dev/tty && echo x >/dev/null && head -c 4 /dev/zero | wc -c;"
                   " touch /t; touch /data/dir/t; (echo 1 >/proc/sys/kernel/domainname);"
                   " cat /proc/version | wc -c; ls /var; ls /dev/mqueue && echo mq"])
    lines = r["out"].decode().splitlines()
    assert lines == ["husk-box", "from-sysctl", "bound dir", "bound file", "virtiofs tag", "pts/ptmx",
                     "/proc/self/fd", "4", "0", "mq"], r
    err = r["err"].decode().splitlines()
    assert len(err) == 3 and all("Read-only file system" in x for x in err), r
    r = run(a, 3, ["cat", "/proc/mounts"])
    mounts = [ln.split()[1:4] for ln in r["out"].decode().splitlines()]
    m = {mp: (typ, opts.split(",")) for mp, typ, opts in mounts}
    assert m["/"][1][0] == "ro", m["/"]
    assert m["/dev"][0] == "tmpfs" and m["/dev/pts"][0] == "devpts" and m["/dev/shm"][0] == "tmpfs", m
    assert m["/sys"][0] == "sysfs" and "ro" in m["/sys"][1] and m["/proc/sys"][1][0] == "ro", m
    assert m["/data/dir"][1][0] == "ro" and m["/etc/bound"][1][0] == "ro", m
    # symlinks resolved inside the rootfs (".." after a symlink applies to its target)
    assert "/outside/x" in m and "/var/real/y" in m and "/var/abs/z" in m, m
    assert not os.path.exists(os.path.join(ROOT, "outside")), "mount escaped the rootfs"
    if "/sys/fs/cgroup" in m:
        assert m["/sys/fs/cgroup"][0] == "cgroup2", m
    r = run(a, 4, ["sh", "-c", "tty; ls /dev/pts; stty size"], extra=struct.pack("<HIB", 13, 1, 1) +
            struct.pack("<HIHH", 14, 4, 12, 34))
    assert r["out"].replace(b"\r", b"").split() == [b"/dev/pts/0", b"0", b"ptmx", b"12", b"34"], r
    a.send(t.SIGNAL, 20, t.tlv(t.SIGNO, struct.pack("<I", 15)))  # PID 1 without a handler: ignored
    time.sleep(0.3)
    a.send(t.SIGNAL, 20, t.tlv(t.SIGNO, struct.pack("<I", 9)))
    assert a.collect(20, started=1)["exit"] == (137, 9)
    r = run(a, 22, ["true"])
    assert r["error"] == (errno.ESRCH, "container not running"), r
    a.send(t.POWEROFF, 0)
    a.proc.wait(10)
    print("ok   PID 1 mode: SETUP (hostname, OCI default mounts, binds, virtiofs, symlinks kept inside,"
          " masked, read-only, sysctl, read-only root), terminal in the container devpts")
    devices_console_test()


def device_rec(typ, major, minor, path, mode=0, uid=0, gid=0):
    return t.tlv(33, struct.pack("<6I", ord(typ), major, minor, mode, uid, gid) + path.encode() + b"\0")


def devices_console_test():
    """DEVICE records (after the mounts, inside the rootfs, replacing nodes) and
    the init's terminal on /dev/console."""
    a = boot()
    t.hello(a)
    p = (device_rec("c", 1, 5, "/dev/zero", 0o600, 123, 45) +  # before the /dev tmpfs in the message
         mount_rec("proc", "proc", "/proc") +
         mount_rec("tmpfs", "tmpfs", "/dev", "mode=755") +
         mount_rec("devpts", "devpts", "/dev/pts", "newinstance,ptmxmode=0666,mode=0620") +
         device_rec("u", 1, 3, "/dev/mynull") +
         device_rec("b", 7, 0, "/dev/sub/loop0", 0o4660, 0, 6) +
         device_rec("p", 0, 0, "/escape/fifo", 0o640, 1000, 1000))
    a.send(SETUP, 0, p)
    typ, _, p = a.recv()
    assert typ == SETUP_DONE, t.parse_tlv(p)
    term = struct.pack("<HIB", 13, 1, 1)
    # The init stays up (reading its terminal) while RUN 2 joins the container.
    a.send(t.RUN, 1, b"".join(t.tlv(t.ARG, x) for x in ["sh", "-c", "tty; stat -c '%t:%T' $(tty) /dev/console; read x"])
           + t.tlv(t.ENV, "PATH=/bin") + term)
    init_out = b""
    while init_out.count(b"\n") < 3:
        typ, id_, p = a.recv()
        assert id_ == 1 and typ in (t.STARTED, t.STDOUT), (typ, p)
        if typ == t.STDOUT:
            init_out += p
    out = init_out.replace(b"\r", b"").decode().split()
    assert out[0].startswith("/dev/pts/") and out[1] == out[2], init_out
    r = run(a, 2, ["sh", "-c", "stat -c '%n %F %t:%T %a %u:%g' /dev/zero /dev/mynull /dev/sub/loop0 /outside/fifo;"
                   " echo x >/dev/mynull && echo ok; tty; stat -c '%t:%T' /dev/console"], extra=term)
    lines = r["out"].replace(b"\r", b"").decode().splitlines()
    assert lines[:5] == ["/dev/zero character special file 1:5 600 123:45",
                         "/dev/mynull character special file 1:3 666 0:0",
                         "/dev/sub/loop0 block special file 7:0 4660 0:6",
                         "/outside/fifo fifo 0:0 640 1000:1000", "ok"], r
    assert lines[6] == out[1], r
    assert not os.path.exists(os.path.join(ROOT, "outside")), "device escaped the rootfs"
    a.send(t.STDIN, 1, b"\n")
    assert a.collect(1, started=1)["exit"] == (0, 0)
    a.send(t.POWEROFF, 0)
    a.proc.wait(10)
    with open(os.path.join(ROOT, "tmp/console.log")) as f:
        assert f.read().count("terminal is bound on /dev/console") == 1, "only the init's terminal"
    print("ok   PID 1 mode: SETUP devices (after the mounts, replaced, chown/chmod, inside the rootfs),"
          " init's terminal on /dev/console")


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
    assert set(r["out"].split()) == {b"abs", b"bin", b"dev", b"escape", b"etc", b"proc", b"sys", b"tmp", b"var"}, r
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
    # no SETUP: a terminal comes from the agent's devpts, seen through the /dev rbind
    r = run(a, 9, ["sh", "-c", "tty; id -u"], extra=struct.pack("<HIB", 13, 1, 1) + struct.pack("<HII", 15, 4, 99))
    assert r["out"].replace(b"\r", b"").split()[1] == b"99" and r["out"].startswith(b"/dev/pts/"), r
    a.send(t.POWEROFF, 0)
    try:
        a.recv(5)
        raise AssertionError("message after POWEROFF")
    except EOFError:
        pass
    a.proc.wait(10)
    print("ok   PID 1 mode: mounts, chroot, PATH in chroot, /dev, lo, POWEROFF")

    setup_test()

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
    assert "ignoring invalid husk.port=x" in log, log
    assert "husk.fs=myfs husk.port=5001" in log, log
    assert "send EXIT id=8" in log, log
    assert "mount /no-such-rootfs on /rootfs (none): no such file or directory" in log, log
    if not os.environ.get("KEEP"):
        shutil.rmtree(ROOT, ignore_errors=True)
    print("nstest passed")


if __name__ == "__main__":
    main()
