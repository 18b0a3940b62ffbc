// config-linux.md and runtime-linux.md: namespaces, devices, masked and
// readonly paths, sysctl, seccomp, cgroups path.
import fs from 'node:fs';
import path from 'node:path';
import type { Case } from '../lib/case.js';
import { contains, ensure, equal, fail, until } from '../lib/check.js';

const VM_KERNEL = 'a VM runtime runs the container on its own kernel';

export const linuxCases: Case[] = [
  {
    name: 'linux.namespace-pid',
    section: 'config-linux.md#namespaces (pid)',
    title: 'in a new pid namespace the program is pid 1 and sees no host processes',
    async run(ctx) {
      const out = await ctx.insideOk(`echo $$; test -d /proc/${process.pid} && echo host-visible || echo host-hidden`);
      equal(out, '1\nhost-hidden\n', 'pid and host process visibility');
    },
  },
  {
    name: 'linux.namespace-host-pid',
    section: 'config-linux.md#namespaces (no pid entry: the runtime\'s namespace)',
    title: 'without a pid namespace entry the program shares the runtime\'s pid namespace (sees the runner)',
    notApplicable: (rt) => (rt.kind === 'vm' ? `${VM_KERNEL}: it cannot share the host's pid namespace` : undefined),
    async run(ctx) {
      const out = await ctx.insideOk(`echo $$; test -d /proc/${process.pid} && echo host-visible || echo host-hidden`, (c) => {
        c.linux.namespaces = c.linux.namespaces.filter((n: { type: string }) => n.type !== 'pid');
      });
      ensure(!out.startsWith('1\n'), 'the program is pid 1');
      contains(out, 'host-visible', 'the runner\'s pid in /proc');
    },
  },
  {
    name: 'linux.namespace-network',
    section: 'config-linux.md#namespaces (network)',
    title: 'a new network namespace has only the loopback interface',
    async run(ctx) {
      const out = await ctx.insideOk('tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d " "');
      equal(out, 'lo\n', 'interfaces in /proc/net/dev');
    },
  },
  {
    name: 'linux.namespace-ipc',
    section: 'config-linux.md#namespaces (ipc)',
    title: 'a new ipc namespace starts with no System V message queues, semaphores or shared memory',
    async run(ctx) {
      const out = await ctx.insideOk('tail -n +2 /proc/sysvipc/msg | wc -l; tail -n +2 /proc/sysvipc/sem | wc -l; tail -n +2 /proc/sysvipc/shm | wc -l');
      equal(out.split('\n').map((s) => s.trim()).join(' '), '0 0 0 ', 'System V objects');
    },
  },
  {
    name: 'linux.default-devices',
    section: 'config-linux.md#default-devices',
    title: '/dev/null, zero, full, random, urandom, tty are character devices with their numbers and work',
    async run(ctx) {
      const out = await ctx.insideOk('for d in null zero full random urandom tty; do stat -c "%n %F %t:%T" /dev/$d; done; echo x > /dev/null && echo null-ok; head -c 4 /dev/zero | od -An -tx1 | tr -d " "; head -c 8 /dev/urandom | wc -c');
      const expected = { null: '1:3', zero: '1:5', full: '1:7', random: '1:8', urandom: '1:9', tty: '5:0' };
      for (const [d, nums] of Object.entries(expected)) contains(out, `/dev/${d} character special file ${nums}\n`, `/dev/${d}`);
      contains(out, 'null-ok\n00000000\n8\n', 'using /dev/null, /dev/zero, /dev/urandom');
    },
  },
  {
    name: 'linux.dev-symlinks',
    section: 'runtime-linux.md#dev-symbolic-links',
    title: '/dev/fd, /dev/stdin, /dev/stdout, /dev/stderr are the standard symlinks into /proc/self/fd',
    async run(ctx) {
      const out = await ctx.insideOk('for l in fd stdin stdout stderr; do echo "$l -> $(readlink /dev/$l)"; done');
      equal(out, 'fd -> /proc/self/fd\nstdin -> /proc/self/fd/0\nstdout -> /proc/self/fd/1\nstderr -> /proc/self/fd/2\n', 'symlinks');
    },
  },
  {
    name: 'linux.devices',
    section: 'config-linux.md#devices',
    title: 'a linux.devices entry is created with its type, numbers, mode and owner, and is usable',
    async run(ctx) {
      const out = await ctx.insideOk('stat -c "%F %t:%T %a %u:%g" /dev/cf-null 2>&1; echo x > /dev/cf-null && echo write-ok', (c) => {
        c.linux.devices = [{ path: '/dev/cf-null', type: 'c', major: 1, minor: 3, fileMode: 0o662, uid: 7, gid: 8 }];
      });
      equal(out, 'character special file 1:3 662 7:8\nwrite-ok\n', 'stat of /dev/cf-null');
    },
  },
  {
    name: 'linux.masked-paths',
    section: 'config-linux.md#masked-paths',
    title: 'masked files read empty and masked directories look empty (/proc/kcore, /sys/firmware and two rootfs paths)',
    async run(ctx) {
      const out = await ctx.insideOk('cat /masked-file; echo "file:$(cat /masked-file | wc -c)"; echo "dir:$(ls -A /masked-dir | wc -l)"; echo "kcore:$(head -c 16 /proc/kcore | wc -c)"; echo "fw:$(ls -A /sys/firmware | wc -l)"', (c, { rootfs }) => {
        fs.writeFileSync(path.join(rootfs, 'masked-file'), 'secret\n');
        fs.mkdirSync(path.join(rootfs, 'masked-dir'));
        fs.writeFileSync(path.join(rootfs, 'masked-dir/inside'), 'secret\n');
        c.linux.maskedPaths = ['/proc/kcore', '/sys/firmware', '/masked-file', '/masked-dir'];
      });
      equal(out.split('\n').map((l) => l.replace(/\s+/g, '')).filter(Boolean), ['file:0', 'dir:0', 'kcore:0', 'fw:0'], 'masked paths');
    },
  },
  {
    name: 'linux.readonly-paths',
    section: 'config-linux.md#readonly-paths',
    title: 'readonly paths cannot be written (a rootfs directory) and are mounted ro (/proc/sys)',
    async run(ctx) {
      const out = await ctx.insideOk('echo before; cat /ro-dir/f; touch /ro-dir/new 2>&1; echo "rc=$?"; grep " /proc/sys " /proc/mounts', (c, { rootfs }) => {
        fs.mkdirSync(path.join(rootfs, 'ro-dir'));
        fs.writeFileSync(path.join(rootfs, 'ro-dir/f'), 'readable\n');
        c.linux.readonlyPaths = ['/proc/sys', '/ro-dir'];
      });
      contains(out, 'readable\n', 'reading /ro-dir/f');
      contains(out, 'Read-only file system', 'writing /ro-dir');
      const procSys = out.split('\n').find((l) => l.split(' ')[1] === '/proc/sys');
      ensure(procSys && procSys.split(' ')[3]!.split(',').includes('ro'), `/proc/sys is not mounted ro: ${procSys ?? 'not a mount'}`);
    },
  },
  {
    name: 'linux.sysctl',
    section: 'config-linux.md#sysctl',
    title: 'namespaced sysctls are set (net.ipv4.ip_forward, kernel.msgmax)',
    async run(ctx) {
      const out = await ctx.insideOk('cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/msgmax', (c) => {
        c.linux.sysctl = { 'net.ipv4.ip_forward': '1', 'kernel.msgmax': '4321' };
      });
      equal(out, '1\n4321\n', 'sysctl values');
    },
  },
  {
    name: 'linux.seccomp',
    section: 'config-linux.md#seccomp',
    title: 'a seccomp rule returning EPERM for mkdir/mkdirat blocks mkdir and nothing else',
    async run(ctx) {
      const out = await ctx.insideOk('mkdir /tmp/d 2>&1; echo "mkdir=$?"; touch /tmp/f && echo touch-ok', (c) => {
        c.linux.seccomp = {
          defaultAction: 'SCMP_ACT_ALLOW',
          architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'],
          syscalls: [{ names: ['mkdir', 'mkdirat'], action: 'SCMP_ACT_ERRNO', errnoRet: 1 }],
        };
      });
      contains(out, 'Operation not permitted', 'mkdir error');
      contains(out, 'touch-ok', 'other syscalls');
    },
  },
  {
    name: 'linux.cgroups-path',
    section: 'config-linux.md#cgroups-path',
    title: 'the container\'s processes are in the host cgroup named by cgroupsPath',
    notApplicable: (rt) => (rt.kind === 'vm' ? `${VM_KERNEL}: its processes are in the guest's cgroups, not visible in the host's` : undefined),
    async run(ctx) {
      const b = ctx.bundle(['sh', '-c', 'touch /ran; exec sleep 1000']);
      await ctx.rt.mustCreate(b.dir, b.id);
      await ctx.rt.mustStart(b.id);
      await until(() => fs.existsSync(path.join(b.rootfs, 'ran')), 'the program to run');
      const pid = (await ctx.rt.state(b.id)).pid as number;
      const rel = b.config.linux.cgroupsPath as string;
      const self = fs.readFileSync(`/proc/${pid}/cgroup`, 'utf8');
      const lines = self.split('\n').filter(Boolean);
      if (!lines.some((l) => l.split(':')[2] === rel)) fail(`pid ${pid} is not in ${rel}: /proc/${pid}/cgroup = ${lines.join(' | ')}`);
    },
  },
];
