// config.md#process: args, env, cwd, user, umask, rlimits, capabilities,
// noNewPrivileges, oomScoreAdj; checked from inside with busybox tools.
import fs from 'node:fs';
import path from 'node:path';
import type { Case } from '../lib/case.js';
import { contains, equal, matches } from '../lib/check.js';

const CAPS = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_DAC_READ_SEARCH', 'CAP_FOWNER', 'CAP_FSETID', 'CAP_KILL', 'CAP_SETGID',
  'CAP_SETUID', 'CAP_SETPCAP', 'CAP_LINUX_IMMUTABLE', 'CAP_NET_BIND_SERVICE', 'CAP_NET_BROADCAST', 'CAP_NET_ADMIN',
  'CAP_NET_RAW', 'CAP_IPC_LOCK', 'CAP_IPC_OWNER', 'CAP_SYS_MODULE', 'CAP_SYS_RAWIO', 'CAP_SYS_CHROOT', 'CAP_SYS_PTRACE',
  'CAP_SYS_PACCT', 'CAP_SYS_ADMIN', 'CAP_SYS_BOOT', 'CAP_SYS_NICE', 'CAP_SYS_RESOURCE', 'CAP_SYS_TIME',
];

function mask(names: string[]): string {
  let m = 0n;
  for (const n of names) m |= 1n << BigInt(CAPS.indexOf(n));
  return m.toString(16).padStart(16, '0');
}

function statusField(status: string, field: string): string {
  return matches(status, new RegExp(`^${field}:\\s*(.*)$`, 'm'), `/proc/self/status ${field}`)[1]!.trim();
}

export const processCases: Case[] = [
  {
    name: 'process.args',
    section: 'config.md#process (args)',
    title: 'args reach the program exactly, including spaces, quotes and empty strings',
    async run(ctx) {
      const b = ctx.bundle(['sh', '-c', 'printf "[%s]" "$0" "$@"', 'zero', 'a b', '', '"q"', '$HOME']);
      const r = await ctx.rt.run(b.dir, b.id);
      equal(r.code, 0, `exit code (${r.stderr.trim()})`);
      equal(r.stdout, '[zero][a b][]["q"][$HOME]', 'argv');
    },
  },
  {
    name: 'process.args-path-lookup',
    section: 'config.md#process (args: execvp semantics)',
    title: 'a bare args[0] is looked up in the PATH of process.env',
    async run(ctx) {
      const b = ctx.bundle(['my-echo', 'found-in-path'], (c, { rootfs }) => {
        fs.mkdirSync(path.join(rootfs, 'custom-bin'));
        fs.writeFileSync(path.join(rootfs, 'custom-bin/my-echo'), '#!/bin/sh\necho "$@"\n', { mode: 0o755 });
        c.process.env = ['PATH=/custom-bin:/bin'];
      });
      const r = await ctx.rt.run(b.dir, b.id);
      equal(r.code, 0, `exit code (${r.stderr.trim()})`);
      const out = r.stdout;
      equal(out, 'found-in-path\n', 'output of my-echo');
    },
  },
  {
    name: 'process.env',
    section: 'config.md#process (env)',
    title: 'env entries are set exactly, values with "=" and spaces included',
    async run(ctx) {
      const out = await ctx.insideOk('echo "A=$A"; echo "B=$B"; echo "C=${C-unset}"; echo "D=${D-unset}"', (c) => {
        c.process.env = ['PATH=/bin', 'A=1=2', 'B=x y  z', 'C='];
      });
      equal(out, 'A=1=2\nB=x y  z\nC=\nD=unset\n', 'environment');
    },
  },
  {
    name: 'process.cwd',
    section: 'config.md#process (cwd)',
    title: 'the program starts in cwd',
    async run(ctx) {
      const out = await ctx.insideOk('pwd', (c, { rootfs }) => {
        fs.mkdirSync(path.join(rootfs, 'home/work'));
        c.process.cwd = '/home/work';
      });
      equal(out, '/home/work\n', 'pwd');
    },
  },
  {
    name: 'process.user',
    section: 'config.md#posix-platform-user (uid, gid)',
    title: 'the program runs with user.uid and user.gid (real and effective)',
    async run(ctx) {
      const out = await ctx.insideOk('id -u; id -g; id -ru; id -rg', (c) => { c.process.user = { uid: 1234, gid: 5678 }; });
      equal(out, '1234\n5678\n1234\n5678\n', 'id -u, -g, -ru, -rg');
    },
  },
  {
    name: 'process.additional-gids',
    section: 'config.md#posix-platform-user (additionalGids)',
    title: 'additionalGids become the supplementary groups',
    async run(ctx) {
      const out = await ctx.insideOk('grep ^Groups: /proc/self/status', (c) => { c.process.user = { uid: 1000, gid: 1000, additionalGids: [5, 300, 70000] }; });
      equal(out.replace(/^Groups:\s*/, '').trim().split(/\s+/).map(Number).sort((a, b) => a - b), [5, 300, 70000], 'Groups');
    },
  },
  {
    name: 'process.umask',
    section: 'config.md#posix-platform-user (umask)',
    title: 'user.umask is the program\'s umask (and files it creates follow it)',
    async run(ctx) {
      const out = await ctx.insideOk('umask; touch /tmp/f; stat -c %a /tmp/f', (c) => { c.process.user = { uid: 0, gid: 0, umask: 0o027 }; });
      equal(out, '0027\n640\n', 'umask and mode of a new file');
    },
  },
  {
    name: 'process.rlimits',
    section: 'config.md#posix-process (rlimits)',
    title: 'rlimits set soft and hard limits (NOFILE 1500/2000, NPROC 300/400, CORE 0/0)',
    async run(ctx) {
      const out = await ctx.insideOk('grep -E "^Max (open files|processes|core file size)" /proc/self/limits', (c) => {
        c.process.rlimits = [
          { type: 'RLIMIT_NOFILE', soft: 1500, hard: 2000 },
          { type: 'RLIMIT_NPROC', soft: 300, hard: 400 },
          { type: 'RLIMIT_CORE', soft: 0, hard: 0 },
        ];
      });
      const lim = (name: string) => matches(out, new RegExp(`^${name}\\s+(\\S+)\\s+(\\S+)`, 'm'), name).slice(1, 3);
      equal(lim('Max open files'), ['1500', '2000'], 'Max open files');
      equal(lim('Max processes'), ['300', '400'], 'Max processes');
      equal(lim('Max core file size'), ['0', '0'], 'Max core file size');
    },
  },
  {
    name: 'process.capabilities',
    section: 'config.md#linux-process (capabilities)',
    title: 'bounding, permitted, effective and inheritable sets are as configured for a root process (/proc/self/status)',
    async run(ctx) {
      // For uid 0, execve sets effective = permitted (capabilities(7)), so effective is configured equal to permitted.
      const bnd = ['CAP_CHOWN', 'CAP_KILL', 'CAP_NET_BIND_SERVICE', 'CAP_SYS_TIME'];
      const prm = ['CAP_CHOWN', 'CAP_KILL', 'CAP_NET_BIND_SERVICE'];
      const inh = ['CAP_KILL'];
      const out = await ctx.insideOk('cat /proc/self/status', (c) => {
        c.process.capabilities = { bounding: bnd, effective: prm, permitted: prm, inheritable: inh };
      });
      equal(statusField(out, 'CapBnd'), mask(bnd), 'CapBnd');
      equal(statusField(out, 'CapPrm'), mask(prm), 'CapPrm');
      equal(statusField(out, 'CapEff'), mask(prm), 'CapEff');
      equal(statusField(out, 'CapInh'), mask(inh), 'CapInh');
      equal(statusField(out, 'CapAmb'), mask([]), 'CapAmb');
    },
  },
  {
    name: 'process.capabilities-enforced',
    section: 'config.md#linux-process (capabilities)',
    title: 'without CAP_CHOWN root cannot chown; with it, it can',
    async run(ctx) {
      const without = await ctx.inside('touch /tmp/f && chown 1:1 /tmp/f', (c) => {
        c.process.capabilities = { bounding: ['CAP_KILL'], effective: ['CAP_KILL'], permitted: ['CAP_KILL'] };
      });
      equal(without.code !== 0, true, `chown without CAP_CHOWN exit code was ${without.code}`);
      const withCap = await ctx.inside('touch /tmp/f && chown 1:1 /tmp/f', (c) => {
        c.process.capabilities = { bounding: ['CAP_CHOWN'], effective: ['CAP_CHOWN'], permitted: ['CAP_CHOWN'] };
      });
      equal(withCap.code, 0, `chown with CAP_CHOWN exit code (${withCap.stderr.trim()})`);
    },
  },
  {
    name: 'process.capabilities-ambient',
    section: 'config.md#linux-process (capabilities: ambient)',
    title: 'a non-root user keeps ambient capabilities (CapAmb, CapEff)',
    async run(ctx) {
      const caps = ['CAP_NET_BIND_SERVICE'];
      const out = await ctx.insideOk('cat /proc/self/status', (c) => {
        c.process.user = { uid: 1000, gid: 1000 };
        c.process.capabilities = { bounding: caps, effective: caps, permitted: caps, inheritable: caps, ambient: caps };
      });
      equal(statusField(out, 'CapAmb'), mask(caps), 'CapAmb');
      equal(statusField(out, 'CapEff'), mask(caps), 'CapEff');
    },
  },
  {
    name: 'process.no-new-privileges',
    section: 'config.md#linux-process (noNewPrivileges)',
    title: 'noNewPrivileges true sets NoNewPrivs: 1; false leaves 0',
    async run(ctx) {
      const on = await ctx.insideOk('grep ^NoNewPrivs: /proc/self/status', (c) => { c.process.noNewPrivileges = true; });
      equal(on.trim().split(/\s+/)[1], '1', 'NoNewPrivs with noNewPrivileges: true');
      const off = await ctx.insideOk('grep ^NoNewPrivs: /proc/self/status', (c) => { c.process.noNewPrivileges = false; });
      equal(off.trim().split(/\s+/)[1], '0', 'NoNewPrivs with noNewPrivileges: false');
    },
  },
  {
    name: 'process.oom-score-adj',
    section: 'config.md#linux-process (oomScoreAdj)',
    title: 'oomScoreAdj is the program\'s /proc/self/oom_score_adj',
    async run(ctx) {
      const out = await ctx.insideOk('cat /proc/self/oom_score_adj', (c) => { c.process.oomScoreAdj = 123; });
      equal(out.trim(), '123', 'oom_score_adj');
    },
  },
  {
    name: 'process.stdio',
    section: 'config.md#process (terminal false: the runtime\'s stdio)',
    title: 'without a terminal, stdin/stdout/stderr are the runtime\'s: stdin read to EOF, stdout and stderr kept apart',
    async run(ctx) {
      const inFile = `${ctx.dir}/stdin.txt`;
      fs.writeFileSync(inFile, 'line one\nline two\n');
      const r = await ctx.inside('cat; echo to-stdout; echo to-stderr >&2', undefined, { stdinFile: inFile });
      equal(r.code, 0, `exit code (${r.stderr.trim()})`);
      equal(r.stdout, 'line one\nline two\nto-stdout\n', 'stdout');
      contains(r.stderr, 'to-stderr\n', 'stderr');
      equal(r.stderr.includes('to-stdout'), false, 'stdout leaked into stderr');
    },
  },
];
