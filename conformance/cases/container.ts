// config.md: root, hostname, domainname, mounts; checked from inside.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Case } from '../lib/case.js';
import { contains, ensure, equal, fail, matches } from '../lib/check.js';

/** The /proc/mounts entry mounted last at `dest`: [source, type, options]. */
function mountAt(procMounts: string, dest: string): { type: string; opts: string[] } {
  const lines = procMounts.split('\n').map((l) => l.split(' ')).filter((f) => f[1] === dest);
  const last = lines.at(-1);
  if (!last) fail(`nothing mounted at ${dest}; /proc/mounts: ${procMounts.split('\n').map((l) => l.split(' ').slice(1, 3).join(' ')).join(', ')}`);
  return { type: last[2]!, opts: last[3]!.split(',') };
}

export const containerCases: Case[] = [
  {
    name: 'root.readonly',
    section: 'config.md#root (readonly)',
    title: 'root.readonly true: the root filesystem cannot be written',
    async run(ctx) {
      const r = await ctx.inside('touch /written 2>&1; echo "rc=$?"; grep " / " /proc/mounts', (c) => { c.root.readonly = true; });
      contains(r.stdout, 'Read-only file system', 'touch / error');
      ensure(!/rc=0/.test(r.stdout), 'touch /written succeeded');
      ensure(!fs.existsSync(path.join(r.bundle.rootfs, 'written')), 'the file appeared in the rootfs');
    },
  },
  {
    name: 'root.writable',
    section: 'config.md#root',
    title: 'root.readonly false: files written in the container appear in the bundle\'s rootfs',
    async run(ctx) {
      const r = await ctx.inside('echo hello > /written', (c) => { c.root.readonly = false; });
      equal(r.code, 0, `exit code (${r.stderr.trim()})`);
      equal(fs.readFileSync(path.join(r.bundle.rootfs, 'written'), 'utf8'), 'hello\n', 'rootfs/written');
    },
  },
  {
    name: 'root.path-absolute',
    section: 'config.md#root (path)',
    title: 'root.path may be an absolute path outside the bundle',
    async run(ctx) {
      const b = ctx.bundle(['sh', '-c', 'cat /marker'], (c, { dir, rootfs }) => {
        const elsewhere = path.join(path.dirname(dir), `${path.basename(dir)}-rootfs-elsewhere`);
        fs.renameSync(rootfs, elsewhere);
        fs.writeFileSync(path.join(elsewhere, 'marker'), 'absolute-root\n');
        c.root.path = elsewhere;
      });
      const r = await ctx.rt.run(b.dir, b.id);
      equal(r.code, 0, `exit code (${r.stderr.trim()})`);
      equal(r.stdout, 'absolute-root\n', 'content of /marker');
    },
  },
  {
    name: 'hostname',
    section: 'config.md#hostname, config-linux.md#namespaces (uts)',
    title: 'hostname is set in the container\'s UTS namespace; the host keeps its own',
    async run(ctx) {
      const out = await ctx.insideOk('hostname; cat /proc/sys/kernel/hostname', (c) => { c.hostname = 'cf-host-name'; });
      equal(out, 'cf-host-name\ncf-host-name\n', 'hostname inside');
      ensure(os.hostname() !== 'cf-host-name', 'the host\'s hostname changed');
    },
  },
  {
    name: 'domainname',
    section: 'config.md#domainname',
    title: 'domainname is the container\'s NIS domain name',
    async run(ctx) {
      const out = await ctx.insideOk('cat /proc/sys/kernel/domainname', (c) => { c.domainname = 'cf.example'; });
      equal(out, 'cf.example\n', '/proc/sys/kernel/domainname');
    },
  },
  {
    name: 'mounts.default-types',
    section: 'config.md#mounts, config-linux.md#default-filesystems',
    title: 'the default mounts have their types: proc, tmpfs /dev, devpts, shm, mqueue, sysfs (ro)',
    async run(ctx) {
      const out = await ctx.insideOk('cat /proc/mounts');
      for (const [dest, type] of [['/proc', 'proc'], ['/dev', 'tmpfs'], ['/dev/pts', 'devpts'], ['/dev/shm', 'tmpfs'], ['/dev/mqueue', 'mqueue'], ['/sys', 'sysfs']]) {
        equal(mountAt(out, dest!).type, type, `type of ${dest}`);
      }
      ensure(mountAt(out, '/sys').opts.includes('ro'), `/sys is not ro: ${mountAt(out, '/sys').opts.join(',')}`);
    },
  },
  {
    name: 'mounts.tmpfs-options',
    section: 'config.md#mounts (type, options)',
    title: 'a tmpfs mount gets its options: nosuid, nodev, noexec, size=1m, mode=1770',
    async run(ctx) {
      const out = await ctx.insideOk('cat /proc/mounts', (c, { rootfs }) => {
        fs.mkdirSync(path.join(rootfs, 'mnt/t'), { recursive: true });
        c.mounts.push({ destination: '/mnt/t', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'noexec', 'size=1m', 'mode=1770'] });
      });
      const m = mountAt(out, '/mnt/t');
      equal(m.type, 'tmpfs', 'type');
      for (const o of ['nosuid', 'nodev', 'noexec', 'size=1024k', 'mode=1770']) ensure(m.opts.includes(o), `option ${o} missing: ${m.opts.join(',')}`);
    },
  },
  {
    name: 'mounts.ro-option',
    section: 'config.md#mounts (options: ro)',
    title: 'a mount with "ro" cannot be written',
    async run(ctx) {
      const out = await ctx.insideOk('touch /mnt/ro/x 2>&1; echo "rc=$?"', (c, { rootfs }) => {
        fs.mkdirSync(path.join(rootfs, 'mnt/ro'), { recursive: true });
        c.mounts.push({ destination: '/mnt/ro', type: 'tmpfs', source: 'tmpfs', options: ['ro'] });
      });
      contains(out, 'Read-only file system', 'touch error');
    },
  },
  {
    name: 'mounts.noexec-enforced',
    section: 'config.md#mounts (options: noexec)',
    title: 'a program on a noexec mount cannot be executed; the same on an exec mount can',
    async run(ctx) {
      const out = await ctx.insideOk('cp /bin/busybox /mnt/noexec/; cp /bin/busybox /mnt/exec/; /mnt/exec/busybox true && echo exec-ok; /mnt/noexec/busybox true 2>/dev/null || echo noexec-refused', (c, { rootfs }) => {
        fs.mkdirSync(path.join(rootfs, 'mnt/noexec'), { recursive: true });
        fs.mkdirSync(path.join(rootfs, 'mnt/exec'), { recursive: true });
        c.mounts.push({ destination: '/mnt/noexec', type: 'tmpfs', source: 'tmpfs', options: ['noexec'] });
        c.mounts.push({ destination: '/mnt/exec', type: 'tmpfs', source: 'tmpfs', options: ['exec'] });
      });
      equal(out, 'exec-ok\nnoexec-refused\n', 'output');
    },
  },
  {
    name: 'mounts.bind',
    section: 'config.md#mounts (bind)',
    title: 'a bind mount of a host directory shows its files and takes writes back to the host',
    async run(ctx) {
      const host = path.join(ctx.dir, 'shared');
      fs.mkdirSync(host);
      fs.writeFileSync(path.join(host, 'from-host'), 'host data\n');
      const out = await ctx.insideOk('cat /data/from-host; echo container data > /data/from-container', (c, { rootfs }) => {
        fs.mkdirSync(path.join(rootfs, 'data'));
        c.mounts.push({ destination: '/data', type: 'bind', source: host, options: ['rbind', 'rw'] });
      });
      equal(out, 'host data\n', 'host file read inside');
      equal(fs.readFileSync(path.join(host, 'from-container'), 'utf8'), 'container data\n', 'file written inside, read on the host');
    },
  },
  {
    name: 'mounts.bind-ro',
    section: 'config.md#mounts (bind, options: ro)',
    title: 'a read-only bind mount can be read but not written',
    async run(ctx) {
      const host = path.join(ctx.dir, 'shared');
      fs.mkdirSync(host);
      fs.writeFileSync(path.join(host, 'from-host'), 'host data\n');
      const out = await ctx.insideOk('cat /data/from-host; touch /data/new 2>&1; echo "rc=$?"', (c, { rootfs }) => {
        fs.mkdirSync(path.join(rootfs, 'data'));
        c.mounts.push({ destination: '/data', type: 'bind', source: host, options: ['rbind', 'ro'] });
      });
      contains(out, 'host data\n', 'host file read inside');
      contains(out, 'Read-only file system', 'touch error');
      ensure(!fs.existsSync(path.join(host, 'new')), 'the file was created on the host');
    },
  },
  {
    name: 'mounts.bind-file',
    section: 'config.md#mounts (bind of a file)',
    title: 'a single host file can be bind-mounted',
    async run(ctx) {
      const host = path.join(ctx.dir, 'file.txt');
      fs.writeFileSync(host, 'single file\n');
      const out = await ctx.insideOk('cat /etc/bound.txt', (c, { rootfs }) => {
        fs.writeFileSync(path.join(rootfs, 'etc/bound.txt'), 'placeholder\n');
        c.mounts.push({ destination: '/etc/bound.txt', type: 'bind', source: host, options: ['bind', 'ro'] });
      });
      equal(out, 'single file\n', 'content of /etc/bound.txt');
    },
  },
  {
    name: 'mounts.order',
    section: 'config.md#mounts (in order)',
    title: 'mounts are made in the listed order: a tmpfs over a subdirectory of an earlier bind mount is visible',
    async run(ctx) {
      const host = path.join(ctx.dir, 'outer');
      fs.mkdirSync(path.join(host, 'inner'), { recursive: true });
      fs.writeFileSync(path.join(host, 'inner/hidden'), 'x');
      const out = await ctx.insideOk('ls -A /mnt/outer/inner; echo; grep " /mnt/outer/inner " /proc/mounts', (c, { rootfs }) => {
        fs.mkdirSync(path.join(rootfs, 'mnt/outer'), { recursive: true });
        c.mounts.push({ destination: '/mnt/outer', type: 'bind', source: host, options: ['rbind', 'rw'] });
        c.mounts.push({ destination: '/mnt/outer/inner', type: 'tmpfs', source: 'tmpfs', options: [] });
      });
      equal(out.split('\n')[0], '', 'files in /mnt/outer/inner (the tmpfs must hide the host file)');
      matches(out, /\/mnt\/outer\/inner tmpfs /, '/proc/mounts');
    },
  },
];
