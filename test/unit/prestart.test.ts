// The VMM's guess of its devices (made before it loads translate/network)
// must agree with the tests Sandbox.boot really uses.
import { describe, expect, it } from 'vitest';
import { expectedDeviceKinds } from '../../src/runtime/prestart.js';
import { isBindMount } from '../../src/runtime/translate.js';
import { networkNamespace } from '../../src/runtime/network.js';
import { defaultSpec } from '../../src/oci/default-spec.js';
import type { Mount, Spec } from '../../src/oci/spec.js';

function spec(mounts: Mount[], netns: { path?: string } | null): Spec {
  const s = defaultSpec();
  s.mounts = [...(s.mounts ?? []), ...mounts];
  const others = (s.linux?.namespaces ?? []).filter((n) => n.type !== 'network');
  s.linux = { ...s.linux, namespaces: netns ? [...others, { type: 'network', ...netns }] : others };
  return s;
}

const mountSets: Mount[][] = [
  [],
  [{ destination: '/data', type: 'bind', source: '/tmp', options: ['rbind', 'ro'] }],
  [{ destination: '/data', type: 'none', source: '/tmp', options: ['bind'] }],
  [{ destination: '/etc/hosts', source: '/tmp/hosts', options: ['rbind', 'rprivate'] }],
  [{ destination: '/scratch', type: 'tmpfs', source: 'tmpfs', options: ['nosuid'] }],
];
const netnsChoices = [null, {}, { path: '/run/netns/x' }];

describe('prestarted device workers', () => {
  for (const mounts of mountSets) {
    for (const netns of netnsChoices) {
      it(`guesses like Sandbox.boot: mounts ${JSON.stringify(mounts.map((m) => m.options ?? m.type))}, netns ${JSON.stringify(netns)}`, () => {
        const s = spec(mounts, netns);
        const expected = ['fs', 'vsock'];
        if ((s.mounts ?? []).some(isBindMount)) expected.push('fs');
        if (networkNamespace(s).kind !== 'new') expected.push('net');
        expect(expectedDeviceKinds(s)).toEqual(expected);
      });
    }
  }
});
