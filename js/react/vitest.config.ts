import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    environment: 'jsdom',
    include: ['test/**/*.test.{ts,tsx}'],
    // Two cores shared with other work: one worker is enough for a suite this size.
    pool: 'threads',
    maxWorkers: 1,
    restoreMocks: true,
  },
})
