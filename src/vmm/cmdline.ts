// The guest kernel command line: console on the serial port (a log file on
// the host), reboot = triple fault so a guest reboot ends the VM (QEMU runs
// with -no-reboot), and the agent's parameters.
export interface GuestCmdlineOptions {
  rootfsTag: string;
  agentPort: number;
  debug?: boolean;
  /** virtio-fs tag carrying the bind-mount sources, mounted by the agent at bindsDir */
  bindsTag?: string;
  bindsDir?: string;
}

export function guestCmdline(o: GuestCmdlineOptions): string {
  return [
    'console=ttyS0',
    'reboot=t',
    'panic=-1',
    'rdinit=/init',
    'tsc=reliable',
    o.debug ? 'loglevel=7' : 'quiet',
    `husk.fs=${o.rootfsTag}`,
    `husk.port=${o.agentPort}`,
    ...(o.bindsTag ? [`husk.binds=${o.bindsTag}`] : []),
    ...(o.debug ? ['husk.debug'] : []),
  ].join(' ');
}
