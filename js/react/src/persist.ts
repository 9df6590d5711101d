import {
  dehydrate,
  hydrate,
  type DehydrateOptions,
  type DehydratedState,
  type HydrateOptions,
  type QueryClient,
} from '@tanstack/react-query'
import type { EventsStore } from './events'

// Persistence is written on TanStack's own dehydrate/hydrate, and speaks the Persister
// interface of @tanstack/query-persist-client-core, so that an app that does not persist
// never needs the persister packages, and an app that does may pass one of theirs.

/** What a persister stores: TanStack's `PersistedClient`. */
export interface PersistedClient {
  timestamp: number
  buster: string
  clientState: DehydratedState
}

type Promisable<T> = T | PromiseLike<T>

/** TanStack's `Persister` interface: `createSyncStoragePersister()` and its kin fit it. */
export interface Persister {
  persistClient(persistedClient: PersistedClient): Promisable<void>
  restoreClient(): Promisable<PersistedClient | undefined>
  removeClient(): Promisable<void>
}

/** The part of the Web Storage API persistence needs (`localStorage` fits). */
export interface StorageLike {
  getItem(key: string): string | null
  setItem(key: string, value: string): void
  removeItem(key: string): void
}

export interface PersistOptions {
  /** Discard a saved cache older than this, in ms (default 24 hours). */
  maxAge?: number
  /** Discard a saved cache written with another buster (an app version, say; default ''). */
  buster?: string
  /** Where to save (default `localStorage`); ignored when `persister` is given. */
  storage?: StorageLike
  /** The storage key (default `'chenu-cache-react'`); ignored when `persister` is given. */
  key?: string
  /** At most one save per this many ms (default 1000). */
  throttleTime?: number
  /** A TanStack persister (e.g. an async one over IndexedDB) instead of `storage`. */
  persister?: Persister
  dehydrateOptions?: DehydrateOptions
  hydrateOptions?: HydrateOptions
}

export const DEFAULT_MAX_AGE = 24 * 60 * 60 * 1000
const DEFAULT_KEY = 'chenu-cache-react'
const DEFAULT_THROTTLE = 1000

// The event id travels inside the persisted client, so that restored data and the point
// in the event stream it is current to are saved and restored together.
interface SavedClient extends PersistedClient {
  lastEventId?: string
}

// The server's id syntax. A saved id that is not one (a corrupted or foreign save) would be
// refused with a 400 on every reconnection, so it is treated as no id at all.
const EVENT_ID = /^\d+(-\d+)?$/

function isPromiseLike<T>(value: Promisable<T>): value is PromiseLike<T> {
  return typeof (value as { then?: unknown } | null | undefined)?.then === 'function'
}

function defaultStorage(): StorageLike | undefined {
  try {
    // Reading `localStorage` throws where storage is blocked (some private modes, sandboxed
    // frames) and is undefined during server rendering.
    return globalThis.localStorage ?? undefined
  } catch {
    return undefined
  }
}

function writeShrinking(storage: StorageLike, key: string, client: PersistedClient): void {
  const queries = [...client.clientState.queries]
  for (;;) {
    try {
      storage.setItem(
        key,
        JSON.stringify({ ...client, clientState: { ...client.clientState, queries } }),
      )
      return
    } catch {
      if (queries.length === 0) {
        storage.removeItem(key)
        return
      }
      // Over quota: give up the query updated longest ago, the likeliest to be refetched
      // anyway, rather than lose the whole cache.
      let oldest = 0
      queries.forEach((query, index) => {
        if (query.state.dataUpdatedAt < queries[oldest]!.state.dataUpdatedAt) oldest = index
      })
      queries.splice(oldest, 1)
    }
  }
}

/** A synchronous persister over a Web Storage, so that restoring needs no loading state. */
export function storagePersister(storage: StorageLike, key: string): Persister {
  return {
    persistClient: (client) => writeShrinking(storage, key, client),
    restoreClient: () => {
      const raw = storage.getItem(key)
      return raw === null ? undefined : (JSON.parse(raw) as PersistedClient)
    },
    removeClient: () => storage.removeItem(key),
  }
}

export interface Persistence {
  /** Resolves once the saved cache is restored or discarded; null when that was synchronous. */
  restoring: Promise<void> | null
  start(): () => void
}

interface PersistenceContext {
  client: QueryClient
  store: EventsStore
  eventsUrl: string | undefined
}

function discard(persister: Persister): Promise<void> | void {
  try {
    const removed = persister.removeClient()
    if (isPromiseLike(removed)) return Promise.resolve(removed).then(undefined, () => undefined)
  } catch {
    // A storage that cannot even delete has nothing left to offer.
  }
  return undefined
}

function apply(
  saved: SavedClient | undefined,
  options: PersistOptions,
  { client, store, eventsUrl }: PersistenceContext,
  persister: Persister,
): Promise<void> | void {
  if (saved === undefined) return undefined
  const maxAge = options.maxAge ?? DEFAULT_MAX_AGE
  const buster = options.buster ?? ''
  if (!saved.timestamp || Date.now() - saved.timestamp > maxAge || saved.buster !== buster) {
    return discard(persister)
  }
  hydrate(client, saved.clientState, options.hydrateOptions)
  void client.resumePausedMutations()
  if (eventsUrl === undefined) return undefined
  if (typeof saved.lastEventId === 'string' && EVENT_ID.test(saved.lastEventId)) {
    // The first connection resumes from here, so whatever the server invalidated while the
    // page was closed reaches the restored queries (or a reset does, if it is too old).
    store.retarget(eventsUrl)
    store.set({ lastEventId: saved.lastEventId })
  } else {
    // Nothing to resume from: the restored data may have been invalidated since. Marked
    // stale (`refetchType: 'none'` fetches nothing now), it still shows at once and is
    // refetched when a component uses it.
    const restored = new Set(saved.clientState.queries.map((query) => query.queryHash))
    void client.invalidateQueries({
      predicate: (query) => restored.has(query.queryHash),
      refetchType: 'none',
    })
  }
  return undefined
}

/**
 * Restore the saved cache into `client` (synchronously when the persister is), then save it
 * on every change once `start()` is called. Returns null when persistence is unavailable.
 */
export function createPersistence(
  options: PersistOptions,
  context: PersistenceContext,
): Persistence | null {
  let persister = options.persister
  if (persister === undefined) {
    const storage = options.storage ?? defaultStorage()
    if (storage === undefined) return null
    persister = storagePersister(storage, options.key ?? DEFAULT_KEY)
  }
  const chosen = persister

  let restoring: Promise<void> | null = null
  try {
    const saved = chosen.restoreClient() as Promisable<SavedClient | undefined>
    if (isPromiseLike(saved)) {
      restoring = Promise.resolve(saved)
        .then((value) => apply(value, options, context, chosen))
        .then(undefined, () => discard(chosen))
    } else {
      const applied = apply(saved, options, context, chosen)
      if (applied) restoring = applied
    }
  } catch {
    // An unreadable save (bad JSON, a foreign format) is dropped, as TanStack does.
    const discarded = discard(chosen)
    if (discarded) restoring = discarded
  }

  const start = (): (() => void) => {
    const { client, store } = context
    const throttle = options.throttleTime ?? DEFAULT_THROTTLE
    let timer: ReturnType<typeof setTimeout> | undefined

    const save = (): void => {
      timer = undefined
      const lastEventId = store.state.lastEventId
      const snapshot: SavedClient = {
        timestamp: Date.now(),
        buster: options.buster ?? '',
        clientState: dehydrate(client, options.dehydrateOptions),
        ...(lastEventId !== null && { lastEventId }),
      }
      try {
        const done = chosen.persistClient(snapshot)
        if (isPromiseLike(done)) Promise.resolve(done).then(undefined, () => undefined)
      } catch {
        // Failing to save loses only the next page load's head start.
      }
    }
    const schedule = (): void => {
      if (timer === undefined) timer = setTimeout(save, throttle)
    }
    const flush = (): void => {
      if (timer === undefined) return
      clearTimeout(timer)
      save()
    }
    const onCacheEvent = (event: { type: string }): void => {
      // Observer comings and goings change nothing worth saving.
      if (event.type === 'added' || event.type === 'removed' || event.type === 'updated') {
        schedule()
      }
    }

    const unsubscribeQueries = client.getQueryCache().subscribe(onCacheEvent)
    const unsubscribeMutations = client.getMutationCache().subscribe(onCacheEvent)
    let lastEventId = store.state.lastEventId
    const unsubscribeStore = store.subscribe(() => {
      if (store.state.lastEventId === lastEventId) return
      lastEventId = store.state.lastEventId
      schedule()
    })
    // A throttled save still pending when the tab goes away would be lost.
    const target = typeof window === 'undefined' ? undefined : window
    target?.addEventListener('pagehide', flush)

    return () => {
      unsubscribeQueries()
      unsubscribeMutations()
      unsubscribeStore()
      target?.removeEventListener('pagehide', flush)
      flush()
    }
  }

  return { restoring, start }
}
