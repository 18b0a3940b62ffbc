// The "passt" end of a virtio-net device in unit tests: what the device
// wrote to its socket, read while the device's poller runs.
import { readFd, type Poller } from '../../src/sys/io.js';

/** Reads up to `n` bytes from `peer`, polling the device's `poller` in between. */
export function readFromPeer(poller: Poller, peer: number, n: number): Uint8Array {
  const out = new Uint8Array(n);
  let got = 0;
  for (let i = 0; i < 10000 && got < n; i++) {
    poller.poll(0);
    const k = readFd(peer, out.subarray(got));
    if (k > 0) got += k;
  }
  return out.subarray(0, got);
}
