// bench/kvm's floor: a Node process that does nothing. Prints its process
// CPU at its first line, read like kvm-setup.ts reads Node's own start.
const u = process.cpuUsage();
process.stdout.write(`${(u.user + u.system) / 1000}\n`);
