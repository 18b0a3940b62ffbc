// The guest kernel command line: console on the serial port (a log file on
// the host), reboot = triple fault so a guest reboot ends the VM (QEMU runs
// with -no-reboot), and the agent's parameters.
import fs from 'node:fs';
export interface GuestCmdlineOptions {
  rootfsTag: string;
  agentPort: number;
  debug?: boolean;
  /** virtio-fs tag carrying the bind-mount sources, mounted by the agent at bindsDir */
  bindsTag?: string;
  bindsDir?: string;
  /** husk.defer_root: the agent says HELLO before mounting the rootfs and binds tags (at SETUP or first RUN) */
  deferRoot?: boolean;
}

/**
 * The host TSC rate in kHz when the host TSC is constant. Under TCG the guest
 * TSC runs at the host's rate; telling the guest spares it a calibration that
 * fails on a loaded host (and leaves it on the 4 ms jiffies clock).
 */
export function hostTscKhz(): number | undefined {
  try {
    const info = fs.readFileSync('/proc/cpuinfo', 'utf8');
    const cpu0 = info.split('\n\n')[0] ?? '';
    if (!/^flags\s*:.*\bconstant_tsc\b/m.test(cpu0)) return undefined;
    const mhz = Number(/^cpu MHz\s*:\s*([\d.]+)/m.exec(cpu0)?.[1]);
    return mhz > 0 ? Math.round(mhz * 1000) : undefined;
  } catch {
    return undefined;
  }
}

export function guestCmdline(o: GuestCmdlineOptions): string {
  const tsc = hostTscKhz();
  return [
    'console=ttyS0',
    'reboot=t',
    'panic=-1',
    'rdinit=/init',
    'tsc=reliable',
    ...(tsc ? [`tsc_early_khz=${tsc}`] : []),
    o.debug ? 'loglevel=7' : 'quiet',
    `husk.fs=${o.rootfsTag}`,
    `husk.port=${o.agentPort}`,
    ...(o.bindsTag ? [`husk.binds=${o.bindsTag}`] : []),
    ...(o.deferRoot ? ['husk.defer_root'] : []),
    ...(o.debug ? ['husk.debug'] : []),
  ].join(' ');
}
