// The CLI side of pause, resume, update and events: state checks like
// runc's, then one request to the container's VMM daemon. pause/resume/
// update hold the container lock so the daemon records the status alone.
import { ControlError } from './control.js';
import { control, LifecycleError } from './lifecycle.js';
import { lockContainer } from './lock.js';
import { readState, type ContainerState } from './state.js';
import { isSameProcessAlive } from '../sys/process.js';
import type { LinuxResources } from '../oci/spec.js';
import { eventLine } from './guest-cgroup.js';

async function locked<T>(root: string, id: string, fn: (st: ContainerState) => Promise<T>): Promise<T> {
  const lock = lockContainer(root, id);
  try {
    return await fn(readState(root, id));
  } finally {
    lock.release();
  }
}

export function pause(root: string, id: string): Promise<void> {
  return locked(root, id, async (st) => {
    if (st.status !== 'running' && st.status !== 'created') throw new LifecycleError('container not running');
    await control(st, { op: 'pause' });
  });
}

export function resume(root: string, id: string): Promise<void> {
  return locked(root, id, async (st) => {
    if (st.status !== 'paused') throw new LifecycleError('container not paused');
    await control(st, { op: 'resume' });
  });
}

export function update(root: string, id: string, resources: LinuxResources): Promise<void> {
  return locked(root, id, async (st) => {
    if (st.status === 'stopped' || st.status === 'creating') throw new LifecycleError('container not running');
    await control(st, { op: 'update', resources });
  });
}

export interface StatsReading {
  stats: Record<string, unknown>;
  oomKills: number;
}

export async function stats(root: string, id: string): Promise<StatsReading> {
  const st = readState(root, id);
  if (st.status === 'stopped') throw new LifecycleError(`container with id ${id} is not running`);
  const r = await control(st, { op: 'stats' });
  return { stats: r.stats as Record<string, unknown>, oomKills: Number(r.oomKills) || 0 };
}

export interface EventsOptions {
  intervalMs: number;
  write(line: string): void;
}

/** runc's `events` without --stats: stats every interval and "oom" when the OOM-kill count grows, until the container stops. */
export async function events(root: string, id: string, o: EventsOptions): Promise<void> {
  const first = readState(root, id);
  if (first.status === 'stopped') throw new LifecycleError(`container with id ${id} is not running`);
  // The OOM counter is checked more often than stats are printed, so an OOM is reported promptly.
  const tick = Math.min(o.intervalMs, 1000);
  let lastOom: number | undefined;
  let nextStats = Date.now() + o.intervalMs;
  for (;;) {
    await new Promise((r) => setTimeout(r, tick));
    let st: ContainerState;
    try {
      st = readState(root, id);
    } catch {
      return; // deleted
    }
    if (st.status === 'stopped') return;
    if (st.status === 'paused') continue; // frozen: nothing changes, and the agent cannot answer
    let reading: StatsReading;
    try {
      reading = await stats(root, id);
    } catch (err) {
      if (err instanceof ControlError || !isSameProcessAlive(st.pid, st.husk.vmmStartTime)) return;
      if (err instanceof LifecycleError && /not running|paused/.test(err.message)) continue;
      throw err;
    }
    if (lastOom !== undefined && reading.oomKills > lastOom) o.write(eventLine({ type: 'oom', id }));
    lastOom = reading.oomKills;
    if (Date.now() >= nextStats) {
      nextStats += o.intervalMs;
      o.write(eventLine({ type: 'stats', id, data: reading.stats }));
    }
  }
}
