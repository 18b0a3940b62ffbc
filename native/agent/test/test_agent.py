#!/usr/bin/env python3
"""Host test of husk-agent's protocol handling (test mode, --test-fd).

Usage: python3 test/test_agent.py build/husk-agent [-v]
Speaks docs/agent-protocol.md over a socketpair; no VM needed.
"""
import base64
import errno
import hashlib
import os
import select
import socket
import struct
import subprocess
import sys
import time

AGENT = sys.argv[1] if len(sys.argv) > 1 else "build/husk-agent"
VERBOSE = "-v" in sys.argv

HELLO, RUN, STARTED, STDOUT, STDERR, STDIN, EXIT, SIGNAL, POWEROFF, ERROR = range(1, 11)
NAMES = {v: k for k, v in dict(HELLO=1, RUN=2, STARTED=3, STDOUT=4, STDERR=5, STDIN=6, EXIT=7,
                              SIGNAL=8, POWEROFF=9, ERROR=10).items()}
VERSION, AGENT_T, ARG, ENV, CWD, PID, STATUS, WAITSTATUS, SIGNO, ERRNO, MESSAGE, STDIN_T = range(1, 13)


def tlv(tag, value):
    if isinstance(value, str):
        value = value.encode()
    elif isinstance(value, int):
        value = struct.pack("<I", value & 0xFFFFFFFF)
    return struct.pack("<HI", tag, len(value)) + value


def parse_tlv(payload):
    out, i = {}, 0
    while i < len(payload):
        tag, n = struct.unpack_from("<HI", payload, i)
        i += 6
        v = payload[i:i + n]
        assert len(v) == n, "TLV overrun from agent"
        i += n
        out.setdefault(tag, []).append(v)
    return out


def u32(v):
    return struct.unpack("<I", v)[0]


def i32(v):
    return struct.unpack("<i", v)[0]


class Agent:
    def __init__(self, debug=False):
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        args = [AGENT, "--test-fd", str(theirs.fileno())] + (["--debug"] if debug else [])
        self.proc = subprocess.Popen(args, pass_fds=[theirs.fileno()])
        theirs.close()
        self.buf = b""

    def send_raw(self, data):
        self.sock.sendall(data)

    def send(self, typ, id_, payload=b"", flags=0):
        self.send_raw(struct.pack("<IHHI", len(payload), typ, flags, id_) + payload)

    def run(self, id_, argv, env=("PATH=/usr/local/bin:/usr/bin:/bin",), cwd=None, stdin=False):
        p = b"".join(tlv(ARG, a) for a in argv) + b"".join(tlv(ENV, e) for e in env)
        if cwd is not None:
            p += tlv(CWD, cwd)
        if stdin:
            p += struct.pack("<HIB", STDIN_T, 1, 1)
        self.send(RUN, id_, p)

    def _fill(self, n, timeout):
        deadline = time.time() + timeout
        while len(self.buf) < n:
            left = deadline - time.time()
            if left <= 0:
                raise TimeoutError("no message from agent")
            r, _, _ = select.select([self.sock], [], [], left)
            if r:
                d = self.sock.recv(1 << 20)
                if not d:
                    raise EOFError("agent closed the connection")
                self.buf += d

    def recv(self, timeout=10):
        self._fill(12, timeout)
        n, typ, flags, id_ = struct.unpack_from("<IHHI", self.buf)
        assert flags == 0 and n <= 1 << 20, (n, typ, flags)
        self._fill(12 + n, timeout)
        payload, self.buf = self.buf[12:12 + n], self.buf[12 + n:]
        if VERBOSE:
            print("  <-", NAMES.get(typ, typ), id_, payload[:80], file=sys.stderr)
        return typ, id_, payload

    def collect(self, id_, timeout=30, started=None):
        """Messages for id_ until EXIT or ERROR (pass started=PID if STARTED was consumed)."""
        res = dict(started=started, out=b"", err=b"", exit=None, error=None, order=[])
        while True:
            typ, mid, p = self.recv(timeout)
            assert mid == id_, f"message {NAMES.get(typ)} for id {mid}, expected {id_}"
            res["order"].append(typ)
            if typ == STARTED:
                assert res["started"] is None, "second STARTED"
                res["started"] = u32(parse_tlv(p)[PID][0])
            elif typ == STDOUT:
                assert res["started"] is not None and res["exit"] is None
                res["out"] += p
            elif typ == STDERR:
                assert res["started"] is not None and res["exit"] is None
                res["err"] += p
            elif typ == EXIT:
                assert res["started"] is not None
                t = parse_tlv(p)
                res["exit"] = (i32(t[STATUS][0]), u32(t[WAITSTATUS][0]))
                return res
            elif typ == ERROR:
                t = parse_tlv(p)
                res["error"] = (i32(t[ERRNO][0]), t[MESSAGE][0].decode())
                return res
            else:
                raise AssertionError(f"unexpected message type {typ}")

    def expect_error(self, id_, err, contains=""):
        typ, mid, p = self.recv()
        assert typ == ERROR, (NAMES.get(typ), p)
        t = parse_tlv(p)
        e, msg = i32(t[ERRNO][0]), t[MESSAGE][0].decode()
        assert mid == id_ and e == err and contains in msg, (mid, e, msg)
        return msg

    def close(self):
        self.sock.close()
        try:
            return self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise


TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


@test
def hello(a):
    typ, id_, p = a.recv()
    assert typ == HELLO and id_ == 0
    t = parse_tlv(p)
    assert u32(t[VERSION][0]) == 1 and t[AGENT_T][0] == b"husk-agent 0.1.0", t


@test
def echo(a):
    a.run(1, ["echo", "hello"])
    r = a.collect(1)
    assert r["out"] == b"hello\n" and r["err"] == b"" and r["exit"] == (0, 0), r
    assert r["started"] > 0


@test
def exit_code(a):
    a.run(2, ["sh", "-c", "exit 7"])
    assert a.collect(2)["exit"] == (7, 7 << 8)


@test
def killed_by_signal(a):
    a.run(3, ["sh", "-c", "kill -TERM $$"])
    assert a.collect(3)["exit"] == (143, 15)


@test
def stderr_separate(a):
    a.run(4, ["sh", "-c", "echo out; echo err >&2; echo out2"])
    r = a.collect(4)
    assert r["out"] == b"out\nout2\n" and r["err"] == b"err\n", r


@test
def exact_env_and_cwd(a):
    a.run(5, ["env"], env=["A=1", "B=two words"])  # PATH from the default
    r = a.collect(5)
    assert r["out"] == b"A=1\nB=two words\n", r
    a.run(6, ["pwd"], cwd="/tmp")
    assert a.collect(6)["out"] == b"/tmp\n"
    a.run(7, ["/bin/sh", "-c", 'printf "%s|" "$0" "$@"', "zero", "a b", ""], env=[])
    assert a.collect(7)["out"] == b"zero|a b||"


@test
def large_output_random(a):
    a.run(8, ["sh", "-c", "head -c 5000000 /dev/urandom | base64"])
    r = a.collect(8, timeout=60)
    assert r["exit"] == (0, 0)
    assert len(base64.b64decode(r["out"])) == 5000000


@test
def large_output_checked_slow_reader(a):
    data = os.urandom(6_000_000)
    path = "/tmp/husk-agent-test.bin"
    with open(path, "wb") as f:
        f.write(data)
    try:
        a.run(9, ["base64", path])
        time.sleep(1.5)  # let the agent's queue and the socket fill up
        r = a.collect(9, timeout=60)
    finally:
        os.unlink(path)
    assert r["exit"] == (0, 0)
    assert r["out"] == base64.encodebytes(data), "5 MB+ output differs"


@test
def exec_errors(a):
    a.run(10, ["no-such-binary-xyz"])
    r = a.collect(10)
    assert r["error"] == (errno.ENOENT, 'exec: "no-such-binary-xyz": executable file not found in $PATH'), r
    assert r["order"] == [ERROR]
    a.run(11, ["/no/such/path"])
    assert a.collect(11)["error"] == (errno.ENOENT, 'exec: "/no/such/path": no such file or directory')
    a.run(12, ["/etc/passwd"])
    assert a.collect(12)["error"] == (errno.EACCES, 'exec: "/etc/passwd": permission denied')
    a.run(13, ["x"], env=["PATH="])
    assert a.collect(13)["error"][0] == errno.ENOENT
    a.run(14, ["pwd"], cwd="/no/such/dir")
    r = a.collect(14)
    assert r["error"] == (errno.ENOENT, 'chdir to cwd ("/no/such/dir") set in config.json failed: no such file or directory'), r
    a.run(15, ['bad"name\n'])
    assert a.collect(15)["error"][1] == 'exec: "bad\\"name\\n": executable file not found in $PATH'
    # the agent keeps going, and ids of failed RUNs are free again
    a.run(10, ["true"])
    assert a.collect(10)["exit"] == (0, 0)


@test
def protocol_errors(a):
    a.send(99, 42, b"xyz")
    a.expect_error(42, errno.ENOSYS)
    a.send(HELLO, 43)
    a.expect_error(43, errno.ENOSYS)
    a.send(RUN, 44, b"\x03\x00\xff\xff\x00\x00ab")  # ARG overruns the payload
    a.expect_error(44, errno.EINVAL)
    a.send(RUN, 45, b"\x03\x00")  # truncated attribute header
    a.expect_error(45, errno.EINVAL)
    a.send(RUN, 46, tlv(ENV, "A=1"))  # no ARG
    a.expect_error(46, errno.EINVAL)
    a.send(RUN, 47, tlv(ARG, "ec\0ho"))
    a.expect_error(47, errno.EINVAL)
    a.send(RUN, 48, tlv(ARG, "pwd") + tlv(CWD, "relative"))
    a.expect_error(48, errno.EINVAL)
    a.send(RUN, 0, tlv(ARG, "true"))
    a.expect_error(0, errno.EINVAL)
    a.send(RUN, 49, tlv(ARG, "true") + struct.pack("<HI", STDIN_T, 4) + b"\1\0\0\0")
    a.expect_error(49, errno.EINVAL)
    big = 2 << 20
    a.send_raw(struct.pack("<IHHI", big, RUN, 0, 50))
    a.send_raw(b"\xab" * big)
    a.expect_error(50, errno.E2BIG)
    # exactly 1 MiB is allowed (unknown tag 200 is ignored)
    a.send(RUN, 51, tlv(ARG, "echo") + tlv(ARG, "ok") + tlv(200, b"z" * ((1 << 20) - 6 - 14 - 12)))
    assert a.collect(51)["out"] == b"ok\n"
    a.send(STDIN, 777, b"data")
    a.expect_error(777, errno.ESRCH)
    a.send(SIGNAL, 778, tlv(SIGNO, 15))
    a.expect_error(778, errno.ESRCH)
    a.send(SIGNAL, 779, b"")
    a.expect_error(779, errno.EINVAL)
    # a message dribbled in byte by byte
    msg = tlv(ARG, "echo") + tlv(ARG, "slow")
    for b in struct.pack("<IHHI", len(msg), RUN, 0, 52) + msg:
        a.send_raw(bytes([b]))
        time.sleep(0.001)
    assert a.collect(52)["out"] == b"slow\n"


@test
def stdin(a):
    a.run(60, ["cat"], stdin=True)
    assert a.recv()[0] == STARTED
    a.send(STDIN, 60, b"abc")
    a.send(STDIN, 60, b"def\n")
    a.send(STDIN, 60, b"")
    r = a.collect(60, started=1)
    assert r["out"] == b"abcdef\n" and r["exit"] == (0, 0), r
    # stdin without STDIN=1
    a.run(61, ["sleep", "5"])
    assert a.recv()[0] == STARTED
    a.send(STDIN, 61, b"x")
    a.expect_error(61, errno.EBADF)
    a.send(SIGNAL, 61, tlv(SIGNO, 9))
    assert a.collect(61, started=1)["exit"] == (137, 9)
    # /dev/null stdin: cat ends at once
    a.run(62, ["cat"])
    assert a.collect(62)["exit"] == (0, 0)


@test
def stdin_large(a):
    data = os.urandom(10_000_000)
    a.run(63, ["sha256sum"], stdin=True)
    for i in range(0, len(data), 1 << 20):
        a.send(STDIN, 63, data[i:i + (1 << 20)])
    a.send(STDIN, 63, b"")
    r = a.collect(63, timeout=60)
    assert r["out"].split()[0].decode() == hashlib.sha256(data).hexdigest(), r


@test
def stdin_slow_reader(a):
    # 20 MB to a process that starts reading after 1 s: the agent buffers
    # up to its limit, then stops reading the socket (our sendall blocks).
    data = os.urandom(20_000_000)
    a.run(65, ["sh", "-c", "sleep 1; exec wc -c"], stdin=True)
    t = time.time()
    for i in range(0, len(data), 1 << 20):
        a.send(STDIN, 65, data[i:i + (1 << 20)])
    a.send(STDIN, 65, b"")
    assert time.time() - t > 0.5, "agent buffered 20 MB of stdin"
    r = a.collect(65, timeout=60)
    assert r["out"].strip() == b"20000000", r


@test
def stdin_closed_by_process(a):
    a.run(64, ["head", "-c", "3"], stdin=True)
    assert a.recv()[0] == STARTED
    a.send(STDIN, 64, b"abcdef" * 100000)
    r = a.collect(64, started=1)
    assert r["out"] == b"abc" and r["exit"] == (0, 0), r


@test
def signals(a):
    a.run(70, ["sleep", "100"])
    assert a.recv()[0] == STARTED
    a.send(SIGNAL, 70, tlv(SIGNO, 999))
    a.expect_error(70, errno.EINVAL)
    a.send(SIGNAL, 70, tlv(SIGNO, 15))
    assert a.collect(70, started=1)["exit"] == (143, 15)


@test
def requests_before_started(a):
    # STDIN and SIGNAL right behind RUN, before STARTED is seen
    a.run(71, ["cat"], stdin=True)
    a.send(STDIN, 71, b"early")
    a.send(STDIN, 71, b"")
    r = a.collect(71)
    assert r["out"] == b"early" and r["exit"] == (0, 0), r
    a.run(72, ["sleep", "100"])
    a.send(SIGNAL, 72, tlv(SIGNO, 9))
    assert a.collect(72)["exit"] == (137, 9)


@test
def stdout_closed_early(a):
    a.run(73, ["sh", "-c", "echo a; exec >&-; sleep 0.2; echo b >&2; exit 4"])
    r = a.collect(73)
    assert r["out"] == b"a\n" and r["err"] == b"b\n" and r["exit"] == (4, 4 << 8), r


@test
def concurrent(a):
    a.run(80, ["sh", "-c", "sleep 0.3; echo A"])
    a.run(81, ["sh", "-c", "echo B"])
    a.run(80, ["true"])
    seen, exits = {}, {}
    while len(exits) < 2:
        typ, id_, p = a.recv()
        seen.setdefault(id_, []).append(typ)
        if typ == EXIT:
            exits[id_] = p
        if typ == ERROR:
            assert id_ == 80 and i32(parse_tlv(p)[ERRNO][0]) == errno.EEXIST
    assert seen[81] == [STARTED, STDOUT, EXIT], seen
    assert ERROR in seen[80] and [x for x in seen[80] if x != ERROR] == [STARTED, STDOUT, EXIT], seen


@test
def orphans_and_held_pipes(a):
    t = time.time()
    a.run(90, ["sh", "-c", "sleep 3 & echo parent"])
    r = a.collect(90)
    assert r["out"] == b"parent\n" and r["exit"] == (0, 0), r
    assert time.time() - t < 2, "EXIT waited for a grandchild holding the pipe"
    a.run(91, ["sh", "-c", "(sleep 0.2; exit 3) & exit 0"])
    assert a.collect(91)["exit"] == (0, 0)
    time.sleep(0.5)  # the orphan is reaped by the agent (subreaper); nothing is sent
    a.run(92, ["true"])
    assert a.collect(92)["order"] == [STARTED, EXIT]


@test
def many_quick(a):
    for i in range(100, 300):
        a.run(i, ["true"])
    exits = set()
    while len(exits) < 200:
        typ, id_, _ = a.recv()
        assert typ in (STARTED, EXIT)
        if typ == EXIT:
            exits.add(id_)


@test
def poweroff(a):
    a.run(95, ["sleep", "100"])
    assert a.recv()[0] == STARTED
    a.send(POWEROFF, 0)
    try:
        a.recv(5)
        raise AssertionError("message after POWEROFF")
    except EOFError:
        pass
    assert a.proc.wait(5) == 0


def main():
    a = Agent(debug=VERBOSE)
    failed = 0
    for fn in TESTS:
        t = time.time()
        try:
            fn(a)
            print(f"ok   {fn.__name__} ({time.time() - t:.2f}s)")
        except Exception as e:  # noqa: BLE001
            failed += 1
            print(f"FAIL {fn.__name__}: {type(e).__name__}: {e}")
            if a.proc.poll() is not None:
                print("agent died with", a.proc.returncode)
                break
    if a.proc.poll() is None:
        a.close()
    # EOF on the socket ends the agent too
    b = Agent()
    assert b.recv()[0] == HELLO
    rc = b.close()
    print(("ok  " if rc == 0 else "FAIL"), f"exit on EOF (rc={rc})")
    failed += rc != 0
    print("all passed" if not failed else f"{failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
