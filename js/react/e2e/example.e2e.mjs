// The browser end-to-end test (SPEC §17): examples/fastapi_app.py on a throw-away Redis,
// its page (examples/react_page/, built by `npm run build:example`) in headless Chromium.
//
//   cd js/react && npm ci && CHENU_E2E_PYTHON=/path/to/venv/bin/python npm run e2e
//
// It checks that (a) the page shows the user; (b) a PUT on the server reaches the open
// page through the event stream within 1 s, 20 times, and prints p50/p99 of the delay;
// (c) revalidations of unchanged data cost 304s, counted as the browser saw them and
// as uvicorn's access log recorded them; (d) with Redis killed (SIGKILL) the page still
// works: a rename shows after a revalidation, and no error is displayed; then, after
// another rename, Redis restarted, the page catches up by itself; (e) it writes the
// screenshot docs/img/react-example.png. Exits non-zero on any failure; stops Redis, the
// app and the browser whatever happens.
//
// Environment:
//   CHENU_E2E_PYTHON        the Python with chenu-cache[fastapi] and uvicorn (default python3)
//   CHENU_E2E_CHROMIUM      the browser (default /usr/bin/chromium, Debian's package)
//   CHENU_E2E_REDIS_SERVER  redis-server (default: from PATH)
//   CHENU_E2E_DB_DELAY      seconds the example's stand-in database sleeps per query
//                           (default 0: the delays measured are the cache's and the stream's)
//   CI=true                 a missing browser fails the run instead of skipping it
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium } from 'playwright-core'

const started = performance.now()
const here = dirname(fileURLToPath(import.meta.url))
const REPO = resolve(here, '../../..')
const PYTHON = process.env.CHENU_E2E_PYTHON || 'python3'
const CHROMIUM = process.env.CHENU_E2E_CHROMIUM || '/usr/bin/chromium'
const REDIS_SERVER = process.env.CHENU_E2E_REDIS_SERVER || 'redis-server'
const DB_DELAY = process.env.CHENU_E2E_DB_DELAY || '0'
const SCREENSHOT = resolve(REPO, 'docs/img/react-example.png')
const CARD = '/users/42/card'
const ROUNDS = 20
const WHOLE_RUN = 110_000 // ms: a run that takes longer has hung somewhere
// Every name differs from the one before it, so that each PUT changes the card.
const NAMES = [
  'Ada Lovelace', 'Grace Hopper', 'Alan Turing', 'Katherine Johnson', 'Edsger Dijkstra',
  'Barbara Liskov', 'Donald Knuth', 'Frances Allen', 'John Backus', 'Margaret Hamilton',
  'Dennis Ritchie', 'Radia Perlman', 'Ken Thompson', 'Hedy Lamarr', 'Claude Shannon',
  'Sophie Wilson', 'Niklaus Wirth', 'Adele Goldberg', 'Tim Berners-Lee', 'Jean Sammet',
]

const log = (...parts) => console.log('[e2e]', ...parts)

class Failure extends Error {}
function check(condition, message) {
  if (!condition) throw new Failure(message)
}

const sleep = (ms) => new Promise((done) => setTimeout(done, ms))

/**
 * Poll `probe` every `every` ms until it returns a truthy value, or fail after `ms`. A probe
 * that throws is tried again (a server not listening yet), unless it throws a `Failure`.
 */
async function until(what, probe, { ms, every = 50 }) {
  const deadline = performance.now() + ms
  let last
  for (;;) {
    try {
      const value = await probe()
      if (value) return value
    } catch (error) {
      if (error instanceof Failure) throw error
      last = error
    }
    if (performance.now() > deadline) {
      throw new Failure(`${what}: not within ${ms} ms${last ? ` (${last.message})` : ''}`)
    }
    await sleep(every)
  }
}

function freePort() {
  return new Promise((done, fail) => {
    const server = net.createServer()
    server.on('error', fail)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      server.close(() => done(port))
    })
  })
}

function redisPing(port) {
  return new Promise((done) => {
    const socket = net.connect({ port, host: '127.0.0.1' })
    let reply = ''
    const finish = (ok) => {
      socket.destroy()
      done(ok)
    }
    socket.setTimeout(500, () => finish(false))
    socket.on('error', () => finish(false))
    socket.on('connect', () => socket.write('PING\r\n'))
    socket.on('data', (chunk) => {
      reply += chunk
      if (reply.includes('\r\n')) finish(reply.startsWith('+PONG'))
    })
  })
}

/** A child process whose output is kept (for diagnostics and for uvicorn's access log). */
function start(name, command, args, options = {}) {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...options })
  const proc = { name, child, output: [], exited: null }
  const keep = (chunk) => {
    for (const line of String(chunk).split('\n')) if (line.trim()) proc.output.push(line)
  }
  child.stdout.on('data', keep)
  child.stderr.on('data', keep)
  child.on('error', (error) => {
    proc.exited = `could not start ${command}: ${error.message}`
  })
  child.on('exit', (code, signal) => {
    proc.exited ??= `exited (${signal ?? code})`
  })
  return proc
}

/** Stop a process: `signal` first, SIGKILL if it is still there after `grace` ms. */
async function stop(proc, signal = 'SIGTERM', grace = 5000) {
  if (!proc || proc.exited || proc.child.exitCode !== null || proc.child.signalCode !== null) {
    return
  }
  const gone = new Promise((done) => proc.child.once('exit', done))
  proc.child.kill(signal)
  const timer = setTimeout(() => proc.child.kill('SIGKILL'), grace)
  await gone
  clearTimeout(timer)
}

function percentile(sorted, p) {
  // Nearest rank: with 20 samples, p99 is the largest.
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]
}

const fmt = (ms) => `${ms.toFixed(1)} ms`

async function main() {
  if (!existsSync(CHROMIUM)) {
    const message = `no browser at ${CHROMIUM} (apt-get install chromium, or set CHENU_E2E_CHROMIUM)`
    if (process.env.CI === 'true') throw new Failure(message)
    log(`SKIPPED: ${message}`)
    return false
  }

  const state = { redis: null, app: null, browser: null, scratch: null }
  const watchdog = setTimeout(() => {
    console.error(`[e2e] FAILED: still running after ${WHOLE_RUN / 1000} s; stopping`)
    process.exitCode = 1
    void cleanup(state).then(() => process.exit(1))
  }, WHOLE_RUN)
  const interrupted = () => {
    process.exitCode = 130
    void cleanup(state).then(() => process.exit(130))
  }
  process.once('SIGINT', interrupted)
  process.once('SIGTERM', interrupted)
  try {
    await run(state)
  } catch (error) {
    // What the app said last, for the failure's report.
    if (state.app) console.error(`[e2e] uvicorn's last lines:\n${state.app.output.slice(-25).join('\n')}`)
    throw error
  } finally {
    clearTimeout(watchdog)
    await cleanup(state)
    process.off('SIGINT', interrupted)
    process.off('SIGTERM', interrupted)
  }
  return true
}

async function cleanup(state) {
  const { browser, app, redis, scratch } = state
  state.browser = state.app = state.redis = state.scratch = null
  // The browser first: its open event stream would hold uvicorn's graceful shutdown.
  if (browser) await Promise.race([browser.close().catch(() => undefined), sleep(5000)])
  await Promise.all([stop(app, 'SIGTERM'), stop(redis, 'SIGKILL')])
  if (scratch) rmSync(scratch, { recursive: true, force: true })
}

async function run(state) {
  // -- Redis and the app ------------------------------------------------------------------
  const redisPort = await freePort()
  state.scratch = mkdtempSync(join(tmpdir(), 'chenu-e2e-'))
  const redis = (state.redis = start(REDIS_SERVER, REDIS_SERVER, [
    '--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
    '--dir', state.scratch,
  ]))
  await until('redis-server answers PING', async () => {
    if (redis.exited) throw new Failure(`redis-server ${redis.exited}: ${redis.output.join('\n')}`)
    return redisPing(redisPort)
  }, { ms: 10_000 })

  const appPort = await freePort()
  const base = `http://127.0.0.1:${appPort}`
  const app = (state.app = start('uvicorn', PYTHON, [
    '-m', 'uvicorn', 'examples.fastapi_app:app', '--host', '127.0.0.1', '--port', String(appPort),
    '--timeout-graceful-shutdown', '2',
  ], {
    cwd: REPO,
    env: {
      ...process.env,
      CHENU_CACHE_REDIS_URL: `redis://127.0.0.1:${redisPort}/0`,
      CHENU_CACHE_ADMIN_TOKEN: randomBytes(24).toString('hex'),
      CHENU_EXAMPLE_DB_DELAY: DB_DELAY,
      PYTHONUNBUFFERED: '1',
    },
  }))
  const health = await until('the example app answers /cache/health', async () => {
    if (app.exited) {
      throw new Failure(`uvicorn (${PYTHON}) ${app.exited}:\n${app.output.slice(-30).join('\n')}`)
    }
    const reply = await fetch(`${base}/cache/health`)
    return reply.ok ? reply.json() : null
  }, { ms: 30_000, every: 100 })
  check(health.backend === 'redis', `the app should serve from Redis: ${JSON.stringify(health)}`)
  const home = await fetch(`${base}/`)
  check(home.status === 200, `GET / answered ${home.status}: run \`npm run build:example\` first`)
  log(`redis-server on :${redisPort}, uvicorn on :${appPort} (${PYTHON}), database delay ${DB_DELAY} s`)

  // -- the browser ------------------------------------------------------------------------
  state.browser = await chromium.launch({ executablePath: CHROMIUM, headless: true })
  log(`chromium ${state.browser.version()}`)
  const context = await state.browser.newContext({ viewport: { width: 760, height: 500 } })
  const page = await context.newPage()
  const problems = []
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`))
  page.on('console', (message) => {
    if (message.type() === 'error') {
      problems.push(`console error: ${message.text()} (${message.location().url})`)
    }
  })
  // Every response to the card's URL as the browser saw it, with whether it was conditional.
  const cards = []
  page.on('response', (response) => {
    if (new URL(response.url()).pathname !== CARD) return
    cards.push({
      status: response.status(),
      // cachedFetch sets If-None-Match itself, so it is among the request's headers.
      conditional: 'if-none-match' in response.request().headers(),
      cacheStatus: response.headers()['cache-status'] ?? null,
    })
  })
  const nameOnPage = () => page.getByTestId('user-name').textContent()
  const errorsShown = () => page.getByTestId('error').count()

  // (a) the page shows the user
  await page.goto(`${base}/`)
  await until('(a) the page shows user 42', async () => (await nameOnPage()) === 'User 42', {
    ms: 10_000,
  })
  await until('the event stream opens', async () =>
    (await page.getByTestId('events-status').textContent()) === 'open', { ms: 10_000 })
  // A marker a reload would lose.
  await page.evaluate(() => {
    window.e2eMarker = 'no reload'
  })
  log('(a) the page shows "User 42"; event stream open')

  // The stream is "open" once its headers arrive, which can be a moment before the server
  // follows the Redis stream: an invalidation whose event reaches the page proves it does.
  const before = await page.evaluate(() => window.chenuEvents.length)
  await until('a first event reaches the page', async () => {
    await fetch(`${base}/users/42/refresh`, { method: 'POST' })
    return page
      .waitForFunction((count) => window.chenuEvents.length > count, before, { timeout: 1000 })
      .then(() => true, () => false)
  }, { ms: 10_000, every: 0 })
  await until('the refetch it caused is done', async () =>
    (await page.getByTestId('fetching').textContent()) === '', { ms: 5000 })

  // (b) 20 renames, each timed in the page from just before the PUT to the DOM change
  const rounds = []
  const cardsBeforeRenames = cards.length
  for (let i = 0; i < ROUNDS; i += 1) {
    const name = NAMES[i]
    // The clock is the page's performance.now(): t0 is taken in the page right before the
    // test sends the PUT; a MutationObserver takes t1 when React writes the new name.
    await page.evaluate((expected) => {
      const probe = { t0: performance.now(), t1: null, events: window.chenuEvents.length }
      window.e2eProbe = probe
      const observer = new MutationObserver(() => {
        const element = document.querySelector('[data-testid="user-name"]')
        if (element?.textContent === expected) {
          probe.t1 = performance.now()
          observer.disconnect()
        }
      })
      observer.observe(document.getElementById('root'), {
        childList: true, characterData: true, subtree: true,
      })
    }, name)
    const reply = await fetch(`${base}/users/42`, {
      method: 'PUT',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ name }),
    })
    check(reply.status === 200, `PUT /users/42 answered ${reply.status}`)
    const seen = await page
      .waitForFunction(() => window.e2eProbe.t1 !== null, null, { timeout: 3000, polling: 10 })
      .then(() => page.evaluate(() => {
        const probe = window.e2eProbe
        const event = window.chenuEvents
          .slice(probe.events)
          .find((item) => item.event.kind === 'tags' && item.event.tags?.includes('user:42'))
        return { total: probe.t1 - probe.t0, event: event ? event.at - probe.t0 : null }
      }))
      .catch(() => null)
    check(seen !== null, `(b) round ${i + 1}: "${name}" not on the page within 3 s of the PUT`)
    check(seen.event !== null, `(b) round ${i + 1}: the name changed but no tags event arrived`)
    rounds.push(seen)
  }
  check(
    (await page.evaluate(() => window.e2eMarker)) === 'no reload',
    '(b) the page was reloaded',
  )
  const totals = rounds.map((round) => round.total).sort((a, b) => a - b)
  const toEvent = rounds.map((round) => round.event).sort((a, b) => a - b)
  const afterEvent = rounds.map((round) => round.total - round.event).sort((a, b) => a - b)
  log(`(b) ${ROUNDS} renames, each on screen without a reload; delays (page clock, MutationObserver):`)
  log(`    PUT -> name on screen: p50 ${fmt(percentile(totals, 50))}, p99 ${fmt(percentile(totals, 99))}, max ${fmt(totals.at(-1))}`)
  log(`    PUT -> event in page:  p50 ${fmt(percentile(toEvent, 50))}, p99 ${fmt(percentile(toEvent, 99))}`)
  log(`    event -> on screen:    p50 ${fmt(percentile(afterEvent, 50))}, p99 ${fmt(percentile(afterEvent, 99))}`)
  log(`    each: ${rounds.map((round) => round.total.toFixed(0)).join(' ')} ms`)
  const renameFetches = cards.slice(cardsBeforeRenames)
  check(
    renameFetches.length === ROUNDS &&
      renameFetches.every((card) => card.status === 200 && card.conditional),
    `(b) each rename should be one conditional GET answered 200: ${JSON.stringify(renameFetches)}`,
  )
  log(`    card requests during the renames: ${renameFetches.length}, each conditional and answered 200`)
  const slow = totals.filter((ms) => ms > 1000)
  check(slow.length === 0, `(b) ${slow.length} renames took over 1 s: ${slow.map(fmt).join(', ')}`)

  // (c) revalidations of data that did not change cost 304s
  const lastName = NAMES[ROUNDS - 1]
  const revalidations = []
  const revalidate = async (how, trigger) => {
    const response = page.waitForResponse((r) => new URL(r.url()).pathname === CARD, {
      timeout: 5000,
    })
    await trigger()
    const answer = await response
    revalidations.push({ how, status: answer.status(), cacheStatus: answer.headers()['cache-status'] })
  }
  for (let i = 0; i < 10; i += 1) {
    // The page's button: useInvalidate(), then TanStack refetches the query on screen.
    await revalidate('button', () => page.getByTestId('refresh').click())
  }
  for (let i = 0; i < 5; i += 1) {
    // A server-side invalidation that changes nothing: the event makes the page refetch,
    // the server renders the card again (a miss) with the same bytes, so the same ETag.
    await revalidate('event', () => fetch(`${base}/users/42/refresh`, { method: 'POST' }))
  }
  await revalidate('event', () =>
    fetch(`${base}/users/42`, {
      method: 'PUT',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ name: lastName }),
    }),
  )
  await until('the last revalidation is on screen', async () =>
    (await page.getByTestId('fetching').textContent()) === '', { ms: 5000 })
  check((await nameOnPage()) === lastName, `(c) the page should still show "${lastName}"`)
  const notModified = revalidations.filter((r) => r.status === 304).length
  check(
    notModified === revalidations.length,
    `(c) every revalidation of unchanged data should be a 304: ${JSON.stringify(revalidations)}`,
  )
  const conditional = cards.filter((card) => card.conditional)
  const browser304 = conditional.filter((card) => card.status === 304).length
  log(`(c) revalidations of unchanged data: ${notModified}/${revalidations.length} answered 304 ` +
    `(ratio ${(notModified / revalidations.length).toFixed(2)}; 10 button, 6 event-driven)`)
  log(`    e.g. button: "${revalidations[0].cacheStatus}"; event: "${revalidations.at(-1).cacheStatus}"`)
  log(`    all conditional card requests the browser made: ${conditional.length}, of which ` +
    `${browser304} were 304 (ratio ${(browser304 / conditional.length).toFixed(2)}; the others ` +
    `are the ${ROUNDS} renames, which changed the data)`)
  // The server's own count, from uvicorn's access log (the same requests, from the other end).
  await until('uvicorn logged the card requests', async () =>
    app.output.filter((line) => line.includes(`"GET ${CARD} HTTP/1.1"`)).length >= cards.length,
  { ms: 3000 })
  const logged = app.output.filter((line) => line.includes(`"GET ${CARD} HTTP/1.1"`))
  const logged304 = logged.filter((line) => / 304\b/.test(line.split('HTTP/1.1"')[1] ?? '')).length
  log(`    uvicorn's access log: ${logged.length} GET ${CARD}, ${logged304} of them 304`)
  check(logged304 === browser304, `(c) the server logged ${logged304} 304s, the browser saw ${browser304}`)

  // (e) the screenshot, with everything up
  mkdirSync(dirname(SCREENSHOT), { recursive: true })
  await page.screenshot({ path: SCREENSHOT })
  log(`(e) screenshot: ${relative(process.cwd(), SCREENSHOT)}`)

  // (d) Redis killed: the app fails over to memory and the page keeps working
  const killedAt = performance.now()
  await stop(redis, 'SIGKILL')
  const outageName = 'Barbara Liskov (Redis down)'
  const put = await fetch(`${base}/users/42`, {
    method: 'PUT',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ name: outageName }),
  })
  check(put.status === 200, `(d) PUT during the outage answered ${put.status}`)
  const putMs = performance.now() - killedAt
  // No event comes while Redis is down (the stream lives there); a revalidation shows it.
  const clicked = performance.now()
  await revalidate('button, Redis down', () => page.getByTestId('refresh').click())
  await until(`(d) "${outageName}" on the page`, async () => (await nameOnPage()) === outageName, {
    ms: 5000,
  })
  const shownMs = performance.now() - clicked
  const outage = revalidations.at(-1)
  const status = await page.getByTestId('events-status').textContent()
  const healthDown = await (await fetch(`${base}/cache/health`)).json()
  check(healthDown.backend === 'memory', `(d) the app should serve from memory: ${JSON.stringify(healthDown)}`)
  // Another revalidation of unchanged data, on the memory tier: still a 304.
  await revalidate('button, Redis down', () => page.getByTestId('refresh').click())
  check(revalidations.at(-1).status === 304, `(d) an unchanged card should still be a 304: ${JSON.stringify(revalidations.at(-1))}`)
  check((await nameOnPage()) === outageName, '(d) the page lost the name')
  check((await errorsShown()) === 0, `(d) the page shows an error: ${await page.getByTestId('error').allTextContents()}`)
  check(
    (await page.evaluate(() => window.e2eMarker)) === 'no reload',
    '(d) the page was reloaded',
  )
  log(`(d) Redis killed: PUT answered 200 after ${fmt(putMs)}; the revalidation (${outage.status}, ` +
    `"${outage.cacheStatus}") showed the new name ${fmt(shownMs)} after the click; ` +
    `no error shown; event stream "${status}"; health ${healthDown.status}/${healthDown.backend}`)

  // (d, continued) a rename while Redis is down, with nothing on the page to revalidate,
  // then Redis back (empty: it kept nothing): the app fails back, publishes what it
  // journaled, and the page catches up by itself.
  const laterName = 'Grace Hopper (while Redis was down)'
  const eventsBefore = await page.evaluate(() => window.chenuEvents.length)
  const again = await fetch(`${base}/users/42`, {
    method: 'PUT',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ name: laterName }),
  })
  check(again.status === 200, `(d) PUT during the outage answered ${again.status}`)
  check((await nameOnPage()) === outageName, '(d) the page changed with no event and no revalidation')
  const restartedAt = performance.now()
  const revived = (state.redis = start(REDIS_SERVER, REDIS_SERVER, [
    '--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
    '--dir', state.scratch,
  ]))
  await until('redis-server answers PING again', async () => {
    if (revived.exited) throw new Failure(`redis-server ${revived.exited}: ${revived.output.join('\n')}`)
    return redisPing(redisPort)
  }, { ms: 10_000 })
  await until(`(d) "${laterName}" on the page after Redis came back`, async () =>
    (await nameOnPage()) === laterName, { ms: 20_000, every: 20 })
  const caughtUpMs = performance.now() - restartedAt
  const healthUp = await until('the app serves from Redis again', async () => {
    const health = await (await fetch(`${base}/cache/health`)).json()
    return health.backend === 'redis' ? health : null
  }, { ms: 20_000, every: 100 })
  const failedBackMs = performance.now() - restartedAt
  const arrived = await page.evaluate((count) => window.chenuEvents.slice(count), eventsBefore)
  check((await errorsShown()) === 0, '(d) the page shows an error after Redis came back')
  log(`    Redis restarted: the page showed "${laterName}" ${fmt(caughtUpMs)} later, by itself; ` +
    `events: ${arrived.map((item) => `${item.event.kind}${item.event.replayed ? ' (replayed)' : ''}`).join(', ') || 'none'}; ` +
    `health ${healthUp.status}/${healthUp.backend} ${fmt(failedBackMs)} after the restart`)

  check(problems.length === 0, `the page reported errors:\n${problems.join('\n')}`)
}

try {
  const ran = await main()
  if (ran && !process.exitCode) log(`PASSED in ${((performance.now() - started) / 1000).toFixed(1)} s`)
} catch (error) {
  process.exitCode = 1
  console.error(`[e2e] FAILED after ${((performance.now() - started) / 1000).toFixed(1)} s:`)
  console.error(error instanceof Failure ? error.message : error)
}
