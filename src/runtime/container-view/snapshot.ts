// The container's /proc files as the agent sent them (PROCFS, extension D):
// guest data, so every name, pid and size is checked before it is served.
import { parseTlv, Tag } from '../../agent/protocol.js';

/** Files served per process, and at the top of /proc. */
export const PROCESS_FILES = ['stat', 'status', 'cmdline'] as const;
export const TOP_FILES = ['stat', 'uptime'] as const;
/** Linux's PID_MAX_LIMIT: no pid namespace hands out more. */
export const PID_MAX = 4_194_304;
/** The agent sends at most 4 KiB per file. */
const FILE_MAX = 4096;

export interface ProcSnapshot {
  /** /proc/stat and /proc/uptime of the guest */
  top: Map<string, Buffer>;
  /** readlink of ns/pid, the same for every process of the container */
  pidNamespace?: string;
  /** pid (the container's namespace) -> its files, in the order the agent listed them */
  processes: Map<number, Map<string, Buffer>>;
  /** when it was taken (ms since the epoch), for attribute times and staleness */
  takenAt: number;
}

export function emptySnapshot(takenAt = Date.now()): ProcSnapshot {
  return { top: new Map(), processes: new Map(), takenAt };
}

/** PROC_FILE attributes: u32 pid (0 = top level), name, NUL, contents. Anything malformed is dropped. */
export function parseProcFiles(payload: Uint8Array, takenAt = Date.now()): ProcSnapshot {
  const snap = emptySnapshot(takenAt);
  for (const a of parseTlv(payload)) {
    if (a.tag !== Tag.PROC_FILE || a.value.byteLength < 6) continue;
    const v = Buffer.from(a.value.buffer, a.value.byteOffset, a.value.byteLength);
    const pid = v.readUInt32LE(0);
    const nul = v.indexOf(0, 4);
    if (nul < 0 || nul - 4 > 16) continue;
    const name = v.toString('latin1', 4, nul);
    const data = Buffer.from(v.subarray(nul + 1));
    if (data.length > FILE_MAX) continue;
    if (pid === 0) {
      if ((TOP_FILES as readonly string[]).includes(name)) snap.top.set(name, data);
      else if (name === 'ns/pid' && /^pid:\[\d{1,20}\]$/.test(data.toString('latin1'))) snap.pidNamespace = data.toString('latin1');
      continue;
    }
    if (pid > PID_MAX || !(PROCESS_FILES as readonly string[]).includes(name)) continue;
    let files = snap.processes.get(pid);
    if (!files) snap.processes.set(pid, (files = new Map()));
    files.set(name, data);
  }
  // A process is listed only with all its files: one that exited while the
  // agent read it would show half a row.
  for (const [pid, files] of snap.processes) {
    if (PROCESS_FILES.some((f) => !files.has(f))) snap.processes.delete(pid);
  }
  return snap;
}
