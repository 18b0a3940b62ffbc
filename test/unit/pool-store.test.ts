// The pool's files (pool-store.ts) and the claim request (claim-request.ts):
// pure logic over a scratch state root.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { claimEntry, listEntries, poolDir, poolKey, readPoolConfig, writePoolConfig } from '../../src/runtime/pool/pool-store.js';
import { CLAIM_FDS, parseClaimRequest } from '../../src/runtime/pool/claim-request.js';
import { processStartTime } from '../../src/sys/process.js';

let root = '';
beforeEach(() => { root = fs.mkdtempSync(path.join(os.tmpdir(), 'husk-pool-unit-')); });
afterEach(() => { fs.rmSync(root, { recursive: true, force: true }); });

function entry(name: string, info: object | null, files: string[] = []): string {
  const d = path.join(poolDir(root), name);
  fs.mkdirSync(d, { recursive: true });
  if (info) fs.writeFileSync(path.join(d, 'entry.json'), JSON.stringify(info));
  for (const f of files) fs.writeFileSync(path.join(d, f), '');
  return d;
}

const me = () => ({ pid: process.pid, startTime: processStartTime(process.pid) });

describe('pool config', () => {
  it('is off without a file and with a malformed one', () => {
    expect(readPoolConfig(root)).toEqual({ size: 0, idleSeconds: 0 });
    fs.mkdirSync(poolDir(root), { recursive: true });
    fs.writeFileSync(path.join(poolDir(root), 'config.json'), '{not json');
    expect(readPoolConfig(root)).toEqual({ size: 0, idleSeconds: 0 });
  });

  it('round-trips and bounds what it reads', () => {
    writePoolConfig(root, { size: 2, idleSeconds: 30 });
    expect(readPoolConfig(root)).toEqual({ size: 2, idleSeconds: 30 });
    fs.writeFileSync(path.join(poolDir(root), 'config.json'), JSON.stringify({ size: 1000, idleSeconds: -5 }));
    expect(readPoolConfig(root)).toEqual({ size: 16, idleSeconds: 0 });
    fs.writeFileSync(path.join(poolDir(root), 'config.json'), JSON.stringify({ size: 1.5, idleSeconds: 'x' }));
    expect(readPoolConfig(root)).toEqual({ size: 0, idleSeconds: 0 });
  });

  it('lives where no container id can be', () => {
    // '@' is outside runc's id alphabet, so no `create` can take this directory.
    expect(path.basename(poolDir(root))).toBe('@pool');
  });
});

describe('pool entries', () => {
  it('lists live entries with their state and drops the entries of dead VMMs', () => {
    const live = entry('e-live', { ...me(), key: 'k' }, ['ready']);
    const claimed = entry('e-claimed', { ...me(), key: 'k' }, ['claimed']);
    const dead = entry('e-dead', { pid: process.pid, startTime: 1, key: 'k' }, ['ready']); // same pid, other process
    entry('e-half', null); // entry.json not written yet: not an entry
    const list = listEntries(root).sort((a, b) => a.dir.localeCompare(b.dir));
    expect(list.map((e) => [path.basename(e.dir), e.ready, e.claimed])).toEqual([['e-claimed', false, true], ['e-live', true, false]]);
    expect(fs.existsSync(dead)).toBe(false);
    expect(fs.existsSync(live) && fs.existsSync(claimed)).toBe(true);
  });

  it('gives a ready entry of the right key to exactly one claimer', () => {
    entry('e-a', { ...me(), key: 'other' }, ['ready']);
    const b = entry('e-b', { ...me(), key: 'mine' }, ['ready']);
    entry('e-c', { ...me(), key: 'mine' }, ['claimed']);
    const won = claimEntry(root, 'mine');
    expect(won?.dir).toBe(b);
    expect(fs.existsSync(path.join(b, 'claimed'))).toBe(true);
    expect(fs.existsSync(path.join(b, 'ready'))).toBe(false);
    expect(claimEntry(root, 'mine')).toBeUndefined();
  });

  it('keys on the guest assets, so a rebuilt kernel is never served stale', () => {
    const kernel = path.join(root, 'vmlinux');
    fs.writeFileSync(kernel, 'a');
    const parts = { engine: 'auto', vcpus: 1, memoryMiB: 512, kernel, initrd: path.join(root, 'missing'), debug: false };
    const before = poolKey(parts);
    expect(poolKey(parts)).toBe(before);
    fs.writeFileSync(kernel, 'ab');
    expect(poolKey(parts)).not.toBe(before);
    expect(poolKey({ ...parts, debug: true })).not.toBe(poolKey(parts));
  });
});

describe('pool VM start', () => {
  it('ends at once, leaving nothing, where no pool is or the pool is drained', async () => {
    const { poolVm } = await import('../../src/runtime/pool/pool-vm.js');
    expect(await poolVm({ root, debug: false })).toBe(0);
    expect(fs.readdirSync(root)).toEqual([]);
    writePoolConfig(root, { size: 0, idleSeconds: 0 });
    expect(await poolVm({ root, debug: false })).toBe(0);
    expect(fs.readdirSync(poolDir(root))).toEqual(['config.json']);
  });
});

describe('claim request', () => {
  const good = { v: 1, root: '/run/husk', id: 'c1', thinPid: 1234 };
  it('accepts a well-formed line with exactly its fds', () => {
    expect(parseClaimRequest(JSON.stringify(good) + '\n', CLAIM_FDS)).toEqual({ ...good, consoleSocket: undefined });
    expect(parseClaimRequest(JSON.stringify({ ...good, consoleSocket: '/tmp/c.sock' }) + '\n', CLAIM_FDS)?.consoleSocket).toBe('/tmp/c.sock');
  });

  it('refuses anything else', () => {
    const bad: [string, number][] = [
      [JSON.stringify(good) + '\n', CLAIM_FDS - 1],
      [JSON.stringify(good), CLAIM_FDS],
      ['{"v":1,\n', CLAIM_FDS],
      [JSON.stringify({ ...good, v: 2 }) + '\n', CLAIM_FDS],
      [JSON.stringify({ ...good, thinPid: 1 }) + '\n', CLAIM_FDS],
      [JSON.stringify({ ...good, thinPid: '12' }) + '\n', CLAIM_FDS],
      [JSON.stringify({ ...good, id: 7 }) + '\n', CLAIM_FDS],
      [JSON.stringify({ ...good, consoleSocket: 3 }) + '\n', CLAIM_FDS],
    ];
    for (const [text, n] of bad) expect(parseClaimRequest(text, n), text).toBeUndefined();
  });
});
