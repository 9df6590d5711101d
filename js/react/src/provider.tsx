import {
  IsRestoringProvider,
  QueryClient,
  QueryClientProvider,
  type UseQueryOptions,
} from '@tanstack/react-query'
import {
  createContext,
  useContext,
  useEffect,
  useMemo,
  useRef,
  useState,
  useSyncExternalStore,
  type ReactElement,
  type ReactNode,
} from 'react'
import {
  connectEvents,
  EventsStore,
  type CacheEventsState,
  type EventSourceConstructor,
  type ReconnectOptions,
} from './events'
import { eventScope, type CacheEvent } from './keys'
import { createPersistence, DEFAULT_MAX_AGE, type PersistOptions } from './persist'

/** A `staleTime` value (not a function of the query): what a default can be for any query. */
export type StaleTime = Exclude<UseQueryOptions['staleTime'], (...args: never[]) => unknown>

export interface CacheDefaults {
  staleTime?: StaleTime
  ttl?: number
}

export const DefaultsContext = createContext<CacheDefaults>({})
const EventsContext = createContext<EventsStore | null>(null)

export interface CacheProviderProps {
  children?: ReactNode
  /** The QueryClient to provide; without it the provider makes one. */
  client?: QueryClient
  /** Where `GET /cache/events` is served (e.g. `'/cache/events'`); without it, no events. */
  eventsUrl?: string
  /** Send cookies to a cross-origin `eventsUrl` (same-origin requests always send them). */
  withCredentials?: boolean
  /** Backoff for reopening a stream the browser closed for good; `false` never reopens. */
  reconnect?: ReconnectOptions | false
  /** An `EventSource` implementation to use instead of the browser's (a polyfill, a fake). */
  eventSource?: EventSourceConstructor
  /** Called for every event received, after its queries were invalidated. */
  onEvent?: (event: CacheEvent, id: string | null) => void
  /** Save the cache in `localStorage` (or `persist.storage` / `persist.persister`). */
  persist?: PersistOptions
  /** Default `staleTime` of `useCachedQuery`, and of queries on a client the provider makes. */
  staleTime?: StaleTime
  /**
   * Default `ttl` (TanStack's `gcTime`, in ms); with `persist` and no `ttl`, `persist.maxAge`,
   * since a query dropped from memory is dropped from the saved cache too.
   */
  ttl?: number
}

function definedOnly<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(
    Object.entries(value).filter(([, item]) => item !== undefined),
  ) as Partial<T>
}

/**
 * Provides a QueryClient, follows the server's invalidation events and optionally restores
 * and saves the cache.
 */
export function CacheProvider({
  children,
  client: givenClient,
  eventsUrl,
  withCredentials = false,
  reconnect,
  eventSource,
  onEvent,
  persist,
  staleTime,
  ttl,
}: CacheProviderProps): ReactElement {
  const ttlDefault = ttl ?? (persist ? (persist.maxAge ?? DEFAULT_MAX_AGE) : undefined)
  const ownClient = useRef<QueryClient | null>(null)
  let client = givenClient
  if (client === undefined) {
    ownClient.current ??= new QueryClient({
      defaultOptions: { queries: definedOnly({ staleTime, gcTime: ttlDefault }) },
    })
    client = ownClient.current
  }

  const EventSourceImpl =
    eventSource ?? (globalThis as { EventSource?: EventSourceConstructor }).EventSource
  const [store] = useState(
    () =>
      new EventsStore(
        eventsUrl !== undefined && EventSourceImpl !== undefined ? 'connecting' : 'disabled',
        eventsUrl,
      ),
  )

  // Restoring runs during the first render so that, with a synchronous storage, the first
  // render already shows the saved data instead of a loading state.
  const [persistence] = useState(() =>
    persist ? createPersistence(persist, { client, store, eventsUrl }) : null,
  )
  const [isRestoring, setIsRestoring] = useState(() => persistence?.restoring != null)

  useEffect(() => {
    const restoring = persistence?.restoring
    if (!restoring) return undefined
    let live = true
    void restoring.then(() => {
      if (live) setIsRestoring(false)
    })
    return () => {
      live = false
    }
  }, [persistence])

  useEffect(() => {
    if (persistence === null || isRestoring) return undefined
    return persistence.start()
  }, [persistence, isRestoring])

  const onEventRef = useRef(onEvent)
  useEffect(() => {
    onEventRef.current = onEvent
  })

  const reconnectOff = reconnect === false
  const minDelay = (reconnect === false ? undefined : reconnect?.minDelay) ?? 1000
  const maxDelay = (reconnect === false ? undefined : reconnect?.maxDelay) ?? 30000

  useEffect(() => {
    // Wait for the restore: it may hold the id the first connection resumes from.
    if (isRestoring) return undefined
    store.retarget(eventsUrl)
    if (eventsUrl === undefined || EventSourceImpl === undefined) {
      store.set({ status: 'disabled' })
      return undefined
    }
    return connectEvents({
      url: eventsUrl,
      withCredentials,
      EventSource: EventSourceImpl,
      reconnect: reconnectOff ? false : { minDelay, maxDelay },
      store,
      onEvent: (event, id) => {
        const scope = eventScope(event)
        if (scope !== 'none') {
          void client.invalidateQueries(
            scope === 'all' ? undefined : { predicate: (query) => scope(query.queryKey) },
          )
        }
        onEventRef.current?.(event, id)
      },
      onGap: () => {
        void client.invalidateQueries()
      },
    })
  }, [
    client,
    store,
    eventsUrl,
    withCredentials,
    EventSourceImpl,
    isRestoring,
    reconnectOff,
    minDelay,
    maxDelay,
  ])

  const defaults = useMemo(
    () => definedOnly({ staleTime, ttl: ttlDefault }),
    [staleTime, ttlDefault],
  )

  return (
    <QueryClientProvider client={client}>
      <IsRestoringProvider value={isRestoring}>
        <DefaultsContext.Provider value={defaults}>
          <EventsContext.Provider value={store}>{children}</EventsContext.Provider>
        </DefaultsContext.Provider>
      </IsRestoringProvider>
    </QueryClientProvider>
  )
}

const DISABLED: CacheEventsState = { status: 'disabled', lastEventId: null }
const noSubscription = (): (() => void) => () => undefined
const disabledSnapshot = (): CacheEventsState => DISABLED

/** The state of the provider's event stream; `disabled` outside a `CacheProvider`. */
export function useCacheEvents(): CacheEventsState {
  const store = useContext(EventsContext)
  const getSnapshot = store?.getSnapshot ?? disabledSnapshot
  return useSyncExternalStore(store?.subscribe ?? noSubscription, getSnapshot, getSnapshot)
}
