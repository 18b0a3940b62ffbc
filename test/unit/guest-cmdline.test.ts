// The guest kernel command line: the agent's husk.* tokens come from the
// options, husk.defer_root only when asked for (pre-booted pool VMs).
import { describe, expect, it } from 'vitest';
import { guestCmdline } from '../../src/vmm/cmdline.js';

const tokens = (o: Parameters<typeof guestCmdline>[0]) => guestCmdline(o).split(' ');

describe('guestCmdline', () => {
  it('carries the rootfs tag, the port and the binds tag', () => {
    const t = tokens({ rootfsTag: 'rootfs', agentPort: 1024, bindsTag: 'binds' });
    expect(t).toEqual(expect.arrayContaining(['husk.fs=rootfs', 'husk.port=1024', 'husk.binds=binds', 'rdinit=/init']));
    expect(t).not.toContain('husk.debug');
  });

  it('adds husk.defer_root only with deferRoot', () => {
    expect(tokens({ rootfsTag: 'rootfs', agentPort: 1024 })).not.toContain('husk.defer_root');
    expect(tokens({ rootfsTag: 'rootfs', agentPort: 1024, deferRoot: false })).not.toContain('husk.defer_root');
    const t = tokens({ rootfsTag: 'r', agentPort: 7, deferRoot: true, debug: true });
    expect(t.filter((x) => x === 'husk.defer_root')).toHaveLength(1);
    expect(t).toEqual(expect.arrayContaining(['husk.fs=r', 'husk.port=7', 'husk.debug']));
  });
});
