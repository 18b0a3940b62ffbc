// Where the guest kernel and the agent initramfs are: built by the project
// (kernel/build.sh, native/agent/Makefile); HUSK_KERNEL / HUSK_INITRD override.
import path from 'node:path';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The project checkout (dist/src/vmm/assets.js -> three levels up; src/vmm/assets.ts -> two). */
export function projectRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'native'))) return dir;
    dir = path.dirname(dir);
  }
  throw new Error('cannot find the husk installation directory');
}

export interface GuestAssets {
  kernel: string;
  initrd: string;
}

export function guestAssets(): GuestAssets {
  const root = projectRoot();
  const kernel = process.env.HUSK_KERNEL ?? path.join(root, 'kernel/build/vmlinux');
  const initrd = process.env.HUSK_INITRD ?? path.join(root, 'native/agent/build/initramfs.cpio');
  for (const [what, p, how] of [['guest kernel', kernel, 'bash kernel/build.sh'], ['agent initramfs', initrd, 'make -C native/agent']] as const) {
    if (!fs.existsSync(p)) throw new Error(`${what} not found at ${p} (build it with: ${how})`);
  }
  return { kernel, initrd };
}
