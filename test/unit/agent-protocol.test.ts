// The real guest agent binary in its host test mode (--test-fd): protocol
// handling, exit statuses and robustness against garbage, without a VM.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MsgType, Tag, TlvWriter, attrInt, attrString, encodeFrame, parseTlv, type Frame } from '../../src/agent/protocol.js';
import { startTestAgent, type TestAgent } from '../helpers/test-agent.js';


let agent: TestAgent;
beforeEach(() => { agent = startTestAgent(); });
afterEach(() => agent.stop());
const waitFor = (pred: (f: Frame) => boolean, what: string) => agent.waitFor(pred, what);

function run(id: number, args: string[]): void {
  const w = new TlvWriter();
  args.forEach((a) => w.string(Tag.ARG, a));
  w.string(Tag.ENV, 'PATH=/usr/bin:/bin').string(Tag.CWD, '/');
  agent.sock.write(encodeFrame(MsgType.RUN, id, w.finish()));
}

function output(id: number, type: number): string {
  return Buffer.concat(agent.frames.filter((f) => f.id === id && f.type === type).map((f) => f.payload)).toString();
}

describe('guest agent protocol (test mode)', () => {
  it('says HELLO with protocol version 1', async () => {
    const h = await waitFor((f) => f.type === MsgType.HELLO, 'HELLO');
    const attrs = parseTlv(h.payload);
    expect(attrInt(attrs, Tag.VERSION)).toBe(1);
    expect(attrString(attrs, Tag.AGENT)).toMatch(/^husk-agent /);
  });

  it('runs a process: STARTED, STDOUT/STDERR apart, EXIT with code or 128+signal', async () => {
    run(1, ['sh', '-c', 'echo out; echo err >&2; exit 7']);
    const exit = await waitFor((f) => f.id === 1 && f.type === MsgType.EXIT, 'EXIT');
    expect(agent.frames.find((f) => f.id === 1 && f.type === MsgType.STARTED)).toBeDefined();
    expect(output(1, MsgType.STDOUT)).toBe('out\n');
    expect(output(1, MsgType.STDERR)).toBe('err\n');
    expect(attrInt(parseTlv(exit.payload), Tag.STATUS, true)).toBe(7);
    run(2, ['sh', '-c', 'kill -TERM $$']);
    const term = await waitFor((f) => f.id === 2 && f.type === MsgType.EXIT, 'EXIT 2');
    expect(attrInt(parseTlv(term.payload), Tag.STATUS, true)).toBe(143);
  });

  it('relays SIGNAL to the process', async () => {
    run(3, ['sh', '-c', 'trap "exit 42" TERM; echo ready; while :; do sleep 0.05; done']);
    await waitFor((f) => f.id === 3 && f.type === MsgType.STDOUT, 'ready');
    agent.sock.write(encodeFrame(MsgType.SIGNAL, 3, new TlvWriter().u32(Tag.SIGNO, 15).finish()));
    const exit = await waitFor((f) => f.id === 3 && f.type === MsgType.EXIT, 'EXIT');
    expect(attrInt(parseTlv(exit.payload), Tag.STATUS, true)).toBe(42);
  });

  it('answers a missing executable with a runc-like ERROR', async () => {
    run(4, ['no-such-command-xyz']);
    const err = await waitFor((f) => f.id === 4 && f.type === MsgType.ERROR, 'ERROR');
    expect(attrString(parseTlv(err.payload), Tag.MESSAGE)).toBe('exec: "no-such-command-xyz": executable file not found in $PATH');
  });

  it('survives garbage, bad TLV, unknown types and oversized agent.frames, and keeps working', async () => {
    await waitFor((f) => f.type === MsgType.HELLO, 'HELLO');
    agent.sock.write(encodeFrame(MsgType.RUN, 5, Uint8Array.of(3, 0, 255, 255, 255, 255)));
    agent.sock.write(encodeFrame(77, 6));
    const big = new Uint8Array(12);
    new DataView(big.buffer).setUint32(0, 2 << 20, true);
    new DataView(big.buffer).setUint16(4, MsgType.STDIN, true);
    agent.sock.write(big);
    agent.sock.write(new Uint8Array(2 << 20));
    run(8, ['echo', 'still alive']);
    await waitFor((f) => f.id === 8 && f.type === MsgType.EXIT, 'EXIT after garbage');
    const errnos = agent.frames.filter((f) => f.type === MsgType.ERROR).map((f) => attrInt(parseTlv(f.payload), Tag.ERRNO, true));
    expect(errnos).toEqual(expect.arrayContaining([22, 38, 7])); // EINVAL, ENOSYS, E2BIG
    expect(output(8, MsgType.STDOUT)).toBe('still alive\n');
  });
});
