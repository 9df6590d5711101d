import { defineConfig } from 'tsup'

export default defineConfig({
  entry: ['src/index.ts'],
  format: ['esm'],
  dts: true,
  sourcemap: true,
  clean: true,
  target: 'es2020',
  // Frameworks with React Server Components must load the hooks and the provider on the client.
  banner: { js: "'use client';" },
})
