// `husk run` end to end on the tcg engine: real kernel, real agent, husk's
// own virtio-fs and vsock backends, QEMU running the CPU.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { bundle, husk, processesMentioning, scratch, uniqueId } from '../helpers/husk.js';

let tmp: ReturnType<typeof scratch>;
let root: string;

beforeAll(() => {
  tmp = scratch();
  root = path.join(tmp.dir, 'state');
});
afterAll(() => tmp.cleanup());

function mkBundle(name: string, args: string[]): string {
  return bundle(path.join(tmp.dir, name), { args });
}

function text(b: unknown): string {
  return Buffer.from(b as Uint8Array).toString();
}

describe('husk run (tcg engine)', () => {
  it('boots, reports the agent ready over husk vsock, serves the rootfs over husk virtio-fs', async () => {
    const b = mkBundle('boot', ['echo', 'hello']);
    const r = await husk(root, ['--debug', 'run', '--bundle', b, uniqueId('boot')]);
    const err = text(r.stderr);
    expect(r.exitCode, err).toBe(0);
    expect(text(r.stdout)).toBe('hello\n');
    expect(err).toMatch(/agent ready: husk-agent/);
    const fsStats = JSON.parse(/device fs0 served (\{.*\})/.exec(err)![1]!);
    expect(fsStats.INIT).toBe(1);
    expect(fsStats.LOOKUP).toBeGreaterThan(0);
    expect(fsStats.READ).toBeGreaterThan(0);
    const vsockStats = JSON.parse(/device vsock1 served (\{.*\})/.exec(err)![1]!);
    expect(vsockStats.guestConnects).toBe(1);
    expect(vsockStats.txBytes).toBeGreaterThan(0);
  });

  it('exits with the process status: code, and 128+signal', async () => {
    const seven = await husk(root, ['run', '--bundle', mkBundle('exit7', ['sh', '-c', 'exit 7']), uniqueId('x7')]);
    expect(seven.exitCode, text(seven.stderr)).toBe(7);
    // The process is PID 1 of its pid namespace (as with runc): a signal it has
    // no handler for only ends it when it comes from outside, like `husk kill`.
    const termId = uniqueId('term');
    const running = husk(root, ['run', '--bundle', mkBundle('term', ['sleep', '1000']), termId]);
    const end = Date.now() + 120_000;
    while (!text((await husk(root, ['state', termId])).stdout).includes('"running"') && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
    expect((await husk(root, ['kill', termId, 'KILL'])).exitCode).toBe(0);
    const term = await running;
    expect(term.exitCode, text(term.stderr)).toBe(137);
  });

  it('keeps stdout and stderr apart', async () => {
    const r = await husk(root, ['run', '--bundle', mkBundle('streams', ['sh', '-c', 'echo out; echo err >&2; echo out2']), uniqueId('streams')]);
    expect(r.exitCode).toBe(0);
    expect(text(r.stdout)).toBe('out\nout2\n');
    expect(text(r.stderr)).toBe('err\n');
  });

  it('delivers a 5 MB output complete and in order', async () => {
    const b = mkBundle('big', ['cat', '/big.bin']);
    const data = crypto.randomBytes(5 * 1024 * 1024);
    fs.writeFileSync(path.join(b, 'rootfs/big.bin'), data);
    const r = await husk(root, ['run', '--bundle', b, uniqueId('big')], { stripFinalNewline: false });
    expect(r.exitCode, text(r.stderr)).toBe(0);
    const out = Buffer.from(r.stdout as Uint8Array);
    expect(out.length).toBe(data.length);
    expect(crypto.createHash('sha256').update(out).digest('hex')).toBe(crypto.createHash('sha256').update(data).digest('hex'));
  });

  it('takes a 5 MB stdin complete and in order', async () => {
    const data = crypto.randomBytes(5 * 1024 * 1024);
    const r = await husk(root, ['run', '--bundle', mkBundle('sink', ['sha256sum']), uniqueId('sink')], { stdin: data });
    expect(r.exitCode, text(r.stderr)).toBe(0);
    expect(text(r.stdout)).toBe(`${crypto.createHash('sha256').update(data).digest('hex')}  -\n`);
  });

  it('runs the lifecycle hooks in runc\'s order (run = create + start + delete)', async () => {
    const b = mkBundle('hooks', ['sh', '-c', 'echo process >> /order.txt']);
    const seen = path.join(tmp.dir, 'hooks-order.txt');
    const hook = path.join(tmp.dir, 'order-hook.sh');
    fs.writeFileSync(hook, `#!/bin/sh\nstatus=$(sed 's/.*"status":"\\([a-z]*\\)".*/\\1/')\necho "$1 $status" >> ${seen}\n`, { mode: 0o755 });
    // startContainer runs in the container (its path resolves there): it writes into the rootfs.
    fs.writeFileSync(path.join(b, 'rootfs/start-hook.sh'), '#!/bin/sh\necho startContainer >> /order.txt\n', { mode: 0o755 });
    const cfgPath = path.join(b, 'config.json');
    const cfg = JSON.parse(fs.readFileSync(cfgPath, 'utf8'));
    const host = (phase: string) => [{ path: hook, args: [hook, phase] }];
    cfg.hooks = {
      prestart: host('prestart'), createRuntime: host('createRuntime'), createContainer: host('createContainer'),
      startContainer: [{ path: '/start-hook.sh' }], poststart: host('poststart'), poststop: host('poststop'),
    };
    fs.writeFileSync(cfgPath, JSON.stringify(cfg));
    const r = await husk(root, ['run', '--bundle', b, uniqueId('hooks')]);
    expect(r.exitCode, text(r.stderr)).toBe(0);
    expect(fs.readFileSync(seen, 'utf8').trim().split('\n')).toEqual([
      'prestart creating', 'createRuntime creating', 'createContainer creating', 'poststart running', 'poststop stopped',
    ]);
    expect(fs.readFileSync(path.join(b, 'rootfs/order.txt'), 'utf8')).toBe('startContainer\nprocess\n');
  });

  it('shares files both ways with host owners and modes', async () => {
    const b = mkBundle('share', ['sh', '-c', 'cat /from-host.txt; echo from-guest > /tmp/from-guest.txt; ls -ln /owned.txt']);
    fs.writeFileSync(path.join(b, 'rootfs/from-host.txt'), 'written on the host\n');
    const owned = path.join(b, 'rootfs/owned.txt');
    fs.writeFileSync(owned, 'x');
    fs.chownSync(owned, 1234, 5678);
    fs.chmodSync(owned, 0o640);
    const r = await husk(root, ['run', '--bundle', b, uniqueId('share')]);
    expect(r.exitCode, text(r.stderr)).toBe(0);
    const lines = text(r.stdout).split('\n');
    expect(lines[0]).toBe('written on the host');
    expect(lines[1]).toMatch(/^-rw-r-----\s+1\s+1234\s+5678\s+1\s.*\/owned\.txt$/);
    expect(fs.readFileSync(path.join(b, 'rootfs/tmp/from-guest.txt'), 'utf8')).toBe('from-guest\n');
  });

  it('keeps file pages across opens, yet sees a file the host changed once its attributes expire', async () => {
    // The rootfs lets the guest keep page cache across opens (FOPEN_KEEP_CACHE
    // with AUTO_INVAL_DATA): a host write must still show after the 1 s attribute timeout.
    const b = mkBundle('coherence', ['sh', '-c', 'cat /data.txt; cat /data.txt; read go; sleep 2; cat /data.txt']);
    const data = path.join(b, 'rootfs/data.txt');
    fs.writeFileSync(data, 'first version\n');
    const id = uniqueId('coherence');
    const run = husk(root, ['run', '--bundle', b, id], { stdin: 'pipe' });
    let out = '';
    run.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
    const end = Date.now() + 120_000;
    while (out !== 'first version\nfirst version\n' && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    fs.writeFileSync(data, 'second, longer version\n');
    run.stdin!.end('go\n');
    const r = await run;
    expect(r.exitCode, text(r.stderr)).toBe(0);
    expect(out).toBe('first version\nfirst version\nsecond, longer version\n');
  });

  it('never lets the guest reach files outside the shared tree', async () => {
    const b = mkBundle('escape', ['sh', '-c', [
      'cat /../outside.txt', 'cat ../../../outside.txt', 'cat /rel-link', 'cat /abs-link', 'cat /dir-link/outside.txt',
      'ls -a /.. /../..', 'echo done',
    ].join('; ')]);
    const secret = `SECRET-${crypto.randomUUID()}`;
    fs.writeFileSync(path.join(b, 'outside.txt'), secret);
    fs.symlinkSync('../outside.txt', path.join(b, 'rootfs/rel-link'));
    fs.symlinkSync(path.join(b, 'outside.txt'), path.join(b, 'rootfs/abs-link'));
    fs.symlinkSync(b, path.join(b, 'rootfs/dir-link'));
    const r = await husk(root, ['run', '--bundle', b, uniqueId('escape')]);
    const all = text(r.stdout) + text(r.stderr);
    expect(text(r.stdout)).toMatch(/done\n$/);
    expect(all).not.toContain(secret);
    expect(text(r.stdout)).not.toContain('outside.txt');
    expect(text(r.stderr)).toMatch(/rel-link'?: No such file or directory/);
  });

  describe('bad input: one line on stderr, non-zero exit, nothing left behind', () => {
    async function expectCleanFailure(args: string[], id: string, pattern: RegExp) {
      const r = await husk(root, [...args, id]);
      const err = text(r.stderr);
      expect(r.exitCode).not.toBe(0);
      expect(err).toMatch(pattern);
      expect(err.trim().split('\n')).toHaveLength(1);
      expect(err).not.toMatch(/\n\s+at /);
      expect(fs.existsSync(path.join(root, id))).toBe(false);
      expect(await processesMentioning(path.join(root, id))).toEqual([]);
    }

    it('a missing bundle', async () => {
      await expectCleanFailure(['run', '--bundle', path.join(tmp.dir, 'nope')], uniqueId('nb'), /^husk: bundle .*nope does not exist$/m);
    });

    it('a config.json that is not JSON', async () => {
      const b = mkBundle('badjson', ['true']);
      fs.writeFileSync(path.join(b, 'config.json'), '{"ociVersion": "1.2.0", ');
      await expectCleanFailure(['run', '--bundle', b], uniqueId('bj'), /^husk: .*config\.json: invalid JSON/m);
    });

    it('a config.json without process', async () => {
      const b = mkBundle('noproc', ['true']);
      const spec = JSON.parse(fs.readFileSync(path.join(b, 'config.json'), 'utf8'));
      delete spec.process;
      fs.writeFileSync(path.join(b, 'config.json'), JSON.stringify(spec));
      await expectCleanFailure(['run', '--bundle', b], uniqueId('np'), /^husk: config\.json: process is required$/m);
    });

    it('an args[0] that does not exist in the rootfs', async () => {
      const b = mkBundle('noexec', ['/no/such/binary']);
      await expectCleanFailure(['run', '--bundle', b], uniqueId('ne'), /^husk: unable to start container process: exec: "\/no\/such\/binary": no such file or directory$/m);
      const b2 = mkBundle('noexec2', ['no-such-command']);
      await expectCleanFailure(['run', '--bundle', b2], uniqueId('ne2'), /executable file not found in \$PATH/);
    });

    it('an invalid container id', async () => {
      const r = await husk(root, ['run', '--bundle', mkBundle('badid', ['true']), '../evil']);
      expect(r.exitCode).not.toBe(0);
      expect(text(r.stderr)).toMatch(/^husk: invalid container id format: \.\.\/evil$/m);
    });
  });
});
