// What `create` sends a pool entry it won: one JSON line, with the
// container's stdin, stdout, stderr and the thin process's channel as
// SCM_RIGHTS fds (in that order). The pooled VMM answers one line, the
// create status; `decline` says the entry cannot serve this container and
// create boots a VM of its own instead.
import type { CreateStatus } from '../vmm-daemon.js';

export const CLAIM_FDS = 4;

export interface ClaimRequest {
  v: 1;
  root: string;
  id: string;
  consoleSocket?: string;
  /** the thin process: the container's pid for every client */
  thinPid: number;
}

export type ClaimReply = CreateStatus & { decline?: boolean };

/** The request when well-formed and it came with exactly its fds; undefined otherwise. */
export function parseClaimRequest(text: string, nfds: number): ClaimRequest | undefined {
  if (nfds !== CLAIM_FDS) return undefined;
  const nl = text.indexOf('\n');
  if (nl < 0) return undefined;
  let r: Partial<ClaimRequest>;
  try {
    r = JSON.parse(text.slice(0, nl)) as Partial<ClaimRequest>;
  } catch {
    return undefined;
  }
  if (r.v !== 1 || typeof r.root !== 'string' || typeof r.id !== 'string' || !Number.isInteger(r.thinPid) || r.thinPid! <= 1) return undefined;
  if (r.consoleSocket !== undefined && typeof r.consoleSocket !== 'string') return undefined;
  return { v: 1, root: r.root, id: r.id, consoleSocket: r.consoleSocket, thinPid: r.thinPid! };
}
