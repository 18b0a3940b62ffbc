// containers.conf for a private podman (tests and benchmarks) that runs the
// given OCI runtimes: DESIGN.md §1's ulimits, cgroupfs, file events, JSON
// runtime logs, and a tmp_dir of its own.
import fs from 'node:fs';
import path from 'node:path';

/** Writes `dir`/containers.conf (for CONTAINERS_CONF) and returns its path. `extra`: more lines (e.g. a [network] section). */
export function writePodmanConf(dir: string, runtimes: Record<string, string>, extra: string[] = []): string {
  const conf = path.join(dir, 'containers.conf');
  fs.writeFileSync(conf, [
    '[containers]',
    'default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]',
    '[engine]',
    'cgroup_manager = "cgroupfs"',
    'events_logger = "file"',
    // Private: the default (/run/libpod) is shared by every podman on the host, and another
    // set-up's `system reset` there makes this one "refresh" (forget running containers).
    `tmp_dir = "${path.join(dir, 'libpod-tmp')}"`,
    'runtime_supports_json = ["crun", "runc", "husk"]',
    '[engine.runtimes]',
    ...Object.entries(runtimes).map(([name, bin]) => `${name} = ["${bin}"]`),
    ...extra,
    '',
  ].join('\n'));
  return conf;
}
