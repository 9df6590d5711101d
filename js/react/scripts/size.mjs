// Prints what the package adds to an app's bundle: the built entry, minified and gzipped,
// without its peer dependencies (the app ships React and TanStack Query anyway).
import { build } from 'esbuild'
import { gzipSync } from 'node:zlib'

const result = await build({
  entryPoints: ['dist/index.js'],
  bundle: true,
  minify: true,
  format: 'esm',
  write: false,
  logLevel: 'silent',
  external: ['react', 'react/jsx-runtime', '@tanstack/react-query'],
})
const code = result.outputFiles[0].contents
console.log(`minified: ${code.length} bytes, minified+gzipped: ${gzipSync(code, { level: 9 }).length} bytes`)
