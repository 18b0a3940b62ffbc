// A compiled seccomp filter on the real kernel: the guest agent binary in its
// host test mode (--test-fd, see agent-protocol.test.ts) installs the program
// from the RUN attribute SECCOMP right before execve.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import { MsgType, Tag, TlvWriter, attrInt, encodeFrame, parseTlv, type Frame } from '../../src/agent/protocol.js';
import { compileSeccomp } from '../../src/oci/seccomp/compile.js';
import { startTestAgent, type TestAgent } from '../helpers/test-agent.js';

// docs/agent-protocol.md, extension A.
const A_NO_NEW_PRIVS = 21;
const A_SECCOMP = 23;
const A_SECCOMP_FLAGS = 24;
const A_FEATURES = 40;

let agent: TestAgent;
beforeEach(() => { agent = startTestAgent(); });
afterEach(() => agent.stop());
const waitFor = (pred: (f: Frame) => boolean, what: string) => agent.waitFor(pred, what);

async function runUnder(id: number, profile: unknown, args: string[]): Promise<{ status: number; stdout: string; stderr: string }> {
  const hello = await waitFor((f) => f.type === MsgType.HELLO, 'HELLO');
  expect((attrInt(parseTlv(hello.payload), A_FEATURES) ?? 0) & 1).toBe(1);
  const w = new TlvWriter();
  args.forEach((a) => w.string(Tag.ARG, a));
  w.string(Tag.ENV, 'PATH=/usr/bin:/bin').string(Tag.CWD, '/');
  if (profile !== undefined) {
    const c = compileSeccomp(profile);
    w.u8(A_NO_NEW_PRIVS, 1).bytes(A_SECCOMP, c.program).u32(A_SECCOMP_FLAGS, c.flags);
  }
  agent.sock.write(encodeFrame(MsgType.RUN, id, w.finish()));
  const end = await waitFor((f) => f.id === id && (f.type === MsgType.EXIT || f.type === MsgType.ERROR), `EXIT ${id}`);
  const text = (type: number): string => Buffer.concat(agent.frames.filter((f) => f.id === id && f.type === type).map((f) => f.payload)).toString();
  expect(end.type).toBe(MsgType.EXIT);
  return { status: attrInt(parseTlv(end.payload), Tag.STATUS, true)!, stdout: text(MsgType.STDOUT), stderr: text(MsgType.STDERR) };
}

const DENY_MKDIR = {
  defaultAction: 'SCMP_ACT_ALLOW',
  architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'],
  syscalls: [{ names: ['mkdir', 'mkdirat'], action: 'SCMP_ACT_ERRNO', errnoRet: 1 }],
};

describe('seccomp filter installed by the agent (real kernel)', () => {
  it('mkdir/mkdirat -> EPERM', async () => {
    const r = await runUnder(1, DENY_MKDIR, ['sh', '-c', 'mkdir /tmp/x-$$ && echo made']);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/Operation not permitted/);
    expect(r.status).not.toBe(0);
    // The same command without the filter does make the directory.
    const ok = await runUnder(2, undefined, ['sh', '-c', 'mkdir /tmp/x-$$ && echo made && rmdir /tmp/x-$$']);
    expect(ok.stdout).toBe('made\n');
  });

  it('the podman-style default profile (ENOSYS default, ~1300 instructions) runs a shell', async () => {
    const profile: unknown = JSON.parse(fs.readFileSync(path.resolve(import.meta.dirname, '../fixtures/seccomp-default.json'), 'utf8'));
    const r = await runUnder(3, profile, ['sh', '-c', 'echo ok; mkdir /tmp/y-$$ && rmdir /tmp/y-$$ && echo dir']);
    expect(r.stdout).toBe('ok\ndir\n');
    expect(r.status).toBe(0);
  });
});
