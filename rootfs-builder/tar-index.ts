// Random access into an uncompressed tar archive (the outer archive written
// by `podman save`, `docker save`, `skopeo copy ... oci-archive:`): one pass
// over the headers, skipping data, gives each regular file's offset and size.
// Only file names and sizes are needed here; contents are read later with
// ranged streams, so nothing is ever loaded whole.
import fs from 'node:fs';
import { ImageError } from './errors.js';

export interface TarMember {
  offset: number;
  size: number;
}

function cstr(b: Buffer, start: number, len: number): string {
  const s = b.subarray(start, start + len);
  const nul = s.indexOf(0);
  return s.subarray(0, nul === -1 ? s.length : nul).toString('utf8');
}

function numeric(b: Buffer, start: number, len: number): number {
  const f = b.subarray(start, start + len);
  if (f[0]! & 0x80) {
    // base-256 (GNU) for sizes >= 8 GiB
    let v = 0;
    for (let i = 1; i < f.length; i++) v = v * 256 + f[i]!;
    return v;
  }
  const t = cstr(b, start, len).trim();
  return t === '' ? 0 : parseInt(t, 8);
}

function paxRecords(buf: Buffer): Map<string, string> {
  const out = new Map<string, string>();
  let i = 0;
  while (i < buf.length) {
    const sp = buf.indexOf(0x20, i);
    if (sp === -1) break;
    const len = parseInt(buf.subarray(i, sp).toString(), 10);
    if (!(len > 0) || i + len > buf.length) break;
    const rec = buf.subarray(sp + 1, i + len - 1).toString('utf8');
    const eq = rec.indexOf('=');
    if (eq > 0) out.set(rec.slice(0, eq), rec.slice(eq + 1));
    i += len;
  }
  return out;
}

export function normalizeMemberName(name: string): string {
  return name.split('/').filter((c) => c !== '' && c !== '.').join('/');
}

/** Indexes the regular files of the tar at `file` (names normalized: no `./`, no trailing `/`). */
export function indexTar(file: string): Map<string, TarMember> {
  const fd = fs.openSync(file, 'r');
  try {
    const total = fs.fstatSync(fd).size;
    const members = new Map<string, TarMember>();
    const hdr = Buffer.alloc(512);
    let off = 0;
    let longName: string | undefined;
    let pax: Map<string, string> | undefined;
    const readAt = (buf: Buffer, pos: number) => {
      const n = fs.readSync(fd, buf, 0, buf.length, pos);
      if (n !== buf.length) throw new ImageError(`${file}: truncated tar archive`);
    };
    while (off + 512 <= total) {
      readAt(hdr, off);
      if (hdr.every((b) => b === 0)) break; // end-of-archive marker
      const magic = hdr.subarray(257, 262).toString('latin1');
      let sum = 0;
      for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : hdr[i]!;
      if (numeric(hdr, 148, 8) !== sum) {
        throw new ImageError(`${file}: not a tar archive (bad header checksum at offset ${off})`);
      }
      let size = numeric(hdr, 124, 12);
      const type = String.fromCharCode(hdr[156]!) || '0';
      let name = cstr(hdr, 0, 100);
      if (magic === 'ustar') {
        const prefix = cstr(hdr, 345, 155);
        if (prefix) name = `${prefix}/${name}`;
      }
      const dataOff = off + 512;
      const next = dataOff + Math.ceil(size / 512) * 512;
      if (type === 'L' || type === 'x' || type === 'g') {
        if (size > 1 << 20) throw new ImageError(`${file}: oversized tar extension header`);
        const buf = Buffer.alloc(size);
        readAt(buf, dataOff);
        if (type === 'L') longName = cstr(buf, 0, size);
        else if (type === 'x') pax = paxRecords(buf);
        off = next;
        continue;
      }
      if (longName !== undefined) name = longName;
      if (pax?.has('path')) name = pax.get('path')!;
      if (pax?.has('size')) size = Number(pax.get('size'));
      longName = undefined;
      pax = undefined;
      if (type === '0' || type === '\0' || type === '7') {
        if (dataOff + size > total) throw new ImageError(`${file}: truncated tar archive (member ${name})`);
        members.set(normalizeMemberName(name), { offset: dataOff, size });
      }
      off = dataOff + Math.ceil(size / 512) * 512;
    }
    return members;
  } finally {
    fs.closeSync(fd);
  }
}
