// Bundles examples/react_page/main.tsx (React, TanStack Query, and chenu-cache-react from
// src/, not from a build) into examples/react_page/dist/app.js, which the example app
// serves at /static/app.js. `npm run build:example` type-checks the page first.
import { build } from 'esbuild'
import { dirname, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const pkg = resolve(here, '..')
const page = resolve(pkg, '../../examples/react_page')
const outfile = resolve(page, 'dist/app.js')

const result = await build({
  entryPoints: [resolve(page, 'main.tsx')],
  outfile,
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2020',
  jsx: 'automatic',
  minify: true,
  // The page lives outside this package: its imports resolve to this package's sources
  // and to its node_modules (React, TanStack Query).
  alias: { 'chenu-cache-react': resolve(pkg, 'src/index.ts') },
  nodePaths: [resolve(pkg, 'node_modules')],
  define: { 'process.env.NODE_ENV': '"production"' },
  logLevel: 'warning',
  metafile: true,
})
const bytes = Object.values(result.metafile.outputs).find((out) => out.entryPoint)?.bytes
console.log(`built ${relative(process.cwd(), outfile)} (${bytes} bytes, minified)`)
