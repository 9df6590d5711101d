import { parseCacheEvent, type CacheEvent } from './keys'

/** The state of the provider's connection to `GET /cache/events`. */
export type CacheEventsStatus = 'connecting' | 'open' | 'closed' | 'disabled'

export interface CacheEventsState {
  /**
   * `connecting` while the stream is being (re)opened, `open` once the server answered,
   * `closed` after the browser gave up on it (an HTTP error, say) until the provider
   * reopens it, `disabled` without `eventsUrl` or without `EventSource`.
   */
  status: CacheEventsStatus
  /** The id of the last event handled: where the stream resumes after a reconnect. */
  lastEventId: string | null
}

/** The part of `EventSource` the provider uses, so a polyfill can stand in for it. */
export interface EventSourceLike {
  readonly readyState: number
  addEventListener(type: string, listener: (event: MessageEvent) => void): void
  close(): void
}

export type EventSourceConstructor = new (
  url: string,
  init?: { withCredentials?: boolean },
) => EventSourceLike

export interface ReconnectOptions {
  /** The first delay before reopening a stream the browser closed, in ms (default 1000). */
  minDelay?: number
  /** The longest delay between two attempts, in ms (default 30000). */
  maxDelay?: number
}

const CLOSED = 2

/** Holds the connection's state for `useSyncExternalStore`, across reconnections. */
export class EventsStore {
  state: CacheEventsState
  /** The events URL `state.lastEventId` belongs to: an id means nothing on another stream. */
  url: string | undefined
  /** Whether a connection to `url` was ever open, so that a reconnect may have missed events. */
  everOpened = false
  private readonly listeners = new Set<() => void>()

  constructor(status: CacheEventsStatus, url: string | undefined) {
    this.state = { status, lastEventId: null }
    this.url = url
  }

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener)
    return () => {
      this.listeners.delete(listener)
    }
  }

  getSnapshot = (): CacheEventsState => this.state

  set(patch: Partial<CacheEventsState>): void {
    const next = { ...this.state, ...patch }
    if (next.status === this.state.status && next.lastEventId === this.state.lastEventId) return
    this.state = next
    for (const listener of this.listeners) listener()
  }

  /** Point the store at `url`, forgetting what it knew of another stream. */
  retarget(url: string | undefined): void {
    if (url === this.url) return
    this.url = url
    this.everOpened = false
    this.set({ lastEventId: null })
  }
}

export interface ConnectOptions {
  url: string
  withCredentials: boolean
  EventSource: EventSourceConstructor
  reconnect: Required<ReconnectOptions> | false
  store: EventsStore
  /** Called for each event, before the store records its id. */
  onEvent: (event: CacheEvent, id: string | null) => void
  /** Called when a connection opened with nothing to resume from after an earlier one. */
  onGap: () => void
}

export function withSince(url: string, id: string): string {
  const hash = url.indexOf('#')
  const base = hash === -1 ? url : url.slice(0, hash)
  const fragment = hash === -1 ? '' : url.slice(hash)
  return `${base}${base.includes('?') ? '&' : '?'}since=${encodeURIComponent(id)}${fragment}`
}

/** Open the stream and keep it open until the returned function is called. */
export function connectEvents(options: ConnectOptions): () => void {
  const { store, reconnect } = options
  let source: EventSourceLike | null = null
  let timer: ReturnType<typeof setTimeout> | undefined
  let attempt = 0

  const scheduleReopen = (): void => {
    if (reconnect === false) return
    const ceiling = Math.min(reconnect.maxDelay, reconnect.minDelay * 2 ** attempt)
    attempt += 1
    // Jitter, so that the clients a server restart disconnected do not all return at once.
    const delay = ceiling / 2 + (Math.random() * ceiling) / 2
    timer = setTimeout(() => {
      timer = undefined
      open()
    }, delay)
  }

  const open = (): void => {
    const since = store.state.lastEventId
    // A new EventSource starts without a Last-Event-ID; `since` carries ours to the server.
    const url = since === null ? options.url : withSince(options.url, since)
    store.set({ status: 'connecting' })
    const current = new options.EventSource(url, { withCredentials: options.withCredentials })
    source = current

    current.addEventListener('open', () => {
      if (source !== current) return
      attempt = 0
      // Without an id the server streams from now, so whatever was invalidated while we
      // were away is lost: only refetching everything is safe.
      const gap = store.everOpened && store.state.lastEventId === null
      store.everOpened = true
      store.set({ status: 'open' })
      if (gap) options.onGap()
    })

    current.addEventListener('error', () => {
      if (source !== current) return
      if (current.readyState === CLOSED) {
        // The browser reconnects by itself after network errors; CLOSED means it gave up
        // (a non-200 answer such as 401 or 503), so it is ours to try again later.
        current.close()
        source = null
        store.set({ status: 'closed' })
        scheduleReopen()
      } else {
        store.set({ status: 'connecting' })
      }
    })

    const onMessage = (message: MessageEvent): void => {
      if (source !== current) return
      const data = typeof message.data === 'string' ? message.data : ''
      const parsed = parseCacheEvent(data)
      const event: CacheEvent = message.type === 'reset' ? { ...parsed, kind: 'reset' } : parsed
      const id = message.lastEventId === '' ? null : message.lastEventId
      // The id is recorded after the invalidation so that a persisted snapshot never holds
      // an id whose invalidation it does not hold too.
      options.onEvent(event, id)
      if (id !== null) store.set({ lastEventId: id })
    }
    current.addEventListener('invalidate', onMessage)
    current.addEventListener('reset', onMessage)
  }

  open()

  return () => {
    if (timer !== undefined) clearTimeout(timer)
    timer = undefined
    source?.close()
    source = null
  }
}
