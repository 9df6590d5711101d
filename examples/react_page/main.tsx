// The page examples/fastapi_app.py serves at `/`: user 42's card, kept current by the
// server's invalidation events and revalidated with ETags. Built into dist/app.js by
// `npm run build:example` in js/react/ (React, TanStack Query and chenu-cache-react from
// js/react/src in one bundle); tested in Chromium by `npm run e2e` there.
import { useSyncExternalStore } from 'react'
import { createRoot } from 'react-dom/client'
import {
  CacheProvider,
  createCachedFetch,
  useCachedQuery,
  useCacheEvents,
  useInvalidate,
  type CacheEvent,
} from 'chenu-cache-react'

interface User {
  id: string
  name: string
}

// What the page shows about the last response and the last event, outside React so that
// the fetch and the provider's onEvent can write it.
interface Seen {
  status: number | null
  cacheStatus: string | null
  responses: { 200: number; 304: number }
  event: string | null
  events: number
}

let seen: Seen = { status: null, cacheStatus: null, responses: { 200: 0, 304: 0 }, event: null, events: 0 }
const listeners = new Set<() => void>()
function note(patch: (previous: Seen) => Partial<Seen>): void {
  seen = { ...seen, ...patch(seen) }
  for (const listener of listeners) listener()
}
function useSeen(): Seen {
  return useSyncExternalStore(
    (listener) => {
      listeners.add(listener)
      return () => listeners.delete(listener)
    },
    () => seen,
  )
}

// Each event with the time it arrived (performance.now()), for the curious in the console
// and for the e2e test, which times invalidations from the PUT to the event to the screen.
declare global {
  interface Window {
    chenuEvents: Array<{ at: number; id: string | null; event: CacheEvent }>
  }
}
window.chenuEvents = []

// The package's cachedFetch (If-None-Match, the body kept for 304s) over a fetch that
// notes each answer's status and Cache-Status header for the page to show.
const cachedFetch = createCachedFetch({
  fetch: async (input, init) => {
    const response = await fetch(input, init)
    note((previous) => ({
      status: response.status,
      cacheStatus: response.headers.get('Cache-Status'),
      responses:
        response.status === 304 || response.status === 200
          ? { ...previous.responses, [response.status]: previous.responses[response.status] + 1 }
          : previous.responses,
    }))
    return response
  },
})

function initials(name: string): string {
  const letters = name
    .split(/\s+/)
    .filter(Boolean)
    .map((word) => word[0]!.toUpperCase())
  return letters.slice(0, 2).join('') || '?'
}

function UserCard({ userId }: { userId: string }) {
  const { data, isLoading, isFetching, error } = useCachedQuery(
    ['user', userId],
    ({ signal }) => cachedFetch<User>(`/users/${userId}/card`, { signal }),
    // Events refetch at once what the server invalidated; staleTime bounds how long the
    // page could show old data if the stream were down (a focus then revalidates).
    { staleTime: 30_000, refetchOnWindowFocus: true },
  )
  const { status, lastEventId } = useCacheEvents()
  const invalidate = useInvalidate()
  const info = useSeen()

  return (
    <div className="card">
      <div className="person">
        <div className="avatar" aria-hidden="true">
          {data ? initials(data.name) : '…'}
        </div>
        <div>
          <p className="name" data-testid="user-name">
            {data ? data.name : isLoading ? 'Loading…' : '—'}
          </p>
          <p className="sub">
            user <code>{userId}</code> · query key <code>['user', '{userId}']</code>
          </p>
        </div>
      </div>
      <dl>
        <dt>event stream</dt>
        <dd>
          <span className={`badge ${status}`} data-testid="events-status">
            {status}
          </span>
        </dd>
        <dt>last event</dt>
        <dd data-testid="last-event">
          {info.event ?? 'none yet'}
          {lastEventId !== null && (
            <>
              {' '}
              · id <code>{lastEventId}</code>
            </>
          )}
        </dd>
        <dt>last response</dt>
        <dd data-testid="last-response">
          {info.status === null ? '—' : info.status === 304 ? '304 Not Modified' : info.status}
          {info.cacheStatus !== null && (
            <>
              {' '}
              · <code>{info.cacheStatus}</code>
            </>
          )}
        </dd>
        <dt>responses</dt>
        <dd data-testid="responses">
          {info.responses[200]} × 200, {info.responses[304]} × 304 · {info.events} events
        </dd>
      </dl>
      <div className="actions">
        <button type="button" data-testid="refresh" onClick={() => void invalidate(['user', userId])}>
          Revalidate
        </button>
        <span className="fetching" data-testid="fetching">
          {isFetching ? 'revalidating…' : ''}
        </span>
      </div>
      {error && (
        <div className="error" role="alert" data-testid="error">
          {error.message}
        </div>
      )}
    </div>
  )
}

function describe(event: CacheEvent): string {
  const what = event.tags ?? event.keys ?? (event.namespace ? [event.namespace] : [])
  return `${event.kind}${what.length ? ` ${what.join(', ')}` : ''}`
}

function App() {
  return (
    <main>
      <header>
        <h1>chenu-cache-react</h1>
        <p>
          Rename the user on the server (<code>PUT /users/42</code>): this card follows at once.
        </p>
      </header>
      <CacheProvider
        eventsUrl="/cache/events"
        onEvent={(event, id) => {
          window.chenuEvents.push({ at: performance.now(), id, event })
          note((previous) => ({ event: describe(event), events: previous.events + 1 }))
        }}
      >
        <UserCard userId="42" />
      </CacheProvider>
      <footer>
        <code>GET /users/42/card</code> is cached on the server with <code>@cache_response</code>{' '}
        (ETag, <code>Cache-Status</code>); the page revalidates it with{' '}
        <code>If-None-Match</code>, so unchanged data costs a 304.
      </footer>
    </main>
  )
}

createRoot(document.getElementById('root')!).render(<App />)
