import { defineConfig } from 'vitest/config';

// Integration tests boot real VMs: run files one at a time (2-core machines)
// with generous timeouts; timing goals live in bench/, never here.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    fileParallelism: false,
    testTimeout: 10 * 60_000,
    hookTimeout: 10 * 60_000,
    reporters: ['default', './test/summary-reporter.ts'],
  },
});
