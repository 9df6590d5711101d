import type { QueryKey } from '@tanstack/react-query'
import { compileGlob } from './glob'

/** The `kind` of an invalidation event, as `GET /cache/events` sends it. */
export type CacheEventKind = 'key' | 'keys' | 'pattern' | 'namespace' | 'clear' | 'tags' | 'reset'

/** The JSON `data` of one server-sent invalidation event. */
export interface CacheEvent {
  kind: CacheEventKind
  /** When the server made the invalidation, seconds since the epoch. */
  time?: number
  /** `key` and `keys`: the logical keys (`"user:42"`). */
  keys?: string[]
  /** `pattern`: a Redis glob over logical keys. */
  pattern?: string
  /** `namespace`: covers every key `"<namespace>:..."`. */
  namespace?: string
  /** `tags`: tags of public namespaces (`"user:42"`), each covering its key and below. */
  tags?: string[]
  /** The id of the cache instance that made the invalidation. */
  origin?: string
  /** Made while the server's Redis was unreachable, published when it came back. */
  replayed?: boolean
}

/** What an event covers: every query, none, or those whose key passes the predicate. */
export type EventScope = 'all' | 'none' | ((queryKey: QueryKey) => boolean)

/**
 * The chenu-cache logical key a query key stands for: its parts as strings, joined with
 * `:` (`['user', 42]` is `"user:42"`).
 */
export function logicalKey(queryKey: QueryKey): string {
  return queryKey.map((part) => String(part)).join(':')
}

const KINDS: ReadonlySet<string> = new Set([
  'key',
  'keys',
  'pattern',
  'namespace',
  'clear',
  'tags',
  'reset',
])

function isStringArray(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((item) => typeof item === 'string')
}

/**
 * Read an event's JSON. Anything unreadable becomes a `reset`: a frame we cannot read
 * may have invalidated anything, and refetching too much is safe where serving stale
 * data is not (the Python side decodes a malformed stream entry the same way).
 */
export function parseCacheEvent(data: string): CacheEvent {
  let value: unknown
  try {
    value = JSON.parse(data)
  } catch {
    return { kind: 'reset' }
  }
  if (typeof value !== 'object' || value === null) return { kind: 'reset' }
  const record = value as Record<string, unknown>
  const kind = record['kind']
  if (typeof kind !== 'string' || !KINDS.has(kind)) return { kind: 'reset' }
  const event = { ...record, kind } as CacheEvent
  const valid =
    ((kind === 'key' || kind === 'keys') && isStringArray(record['keys'])) ||
    (kind === 'pattern' && typeof record['pattern'] === 'string') ||
    (kind === 'namespace' && typeof record['namespace'] === 'string' && record['namespace'] !== '') ||
    kind === 'clear' ||
    (kind === 'tags' && isStringArray(record['tags'])) ||
    kind === 'reset'
  return valid ? event : { kind: 'reset' }
}

/** The queries an event covers. */
export function eventScope(event: CacheEvent): EventScope {
  switch (event.kind) {
    case 'clear':
    case 'reset':
      return 'all'
    // A tag names a thing ("user:42"): it covers the query of that key and every query
    // under it (['user', '42', 'posts']), everything about the thing. The server streams
    // only the tags whose first part is a public namespace.
    case 'tags': {
      const tags = new Set(event.tags ?? [])
      if (tags.size === 0) return 'none'
      return (queryKey) => {
        const parts = queryKey.map((part) => String(part))
        for (let end = parts.length; end > 0; end--) {
          if (tags.has(parts.slice(0, end).join(':'))) return true
        }
        return false
      }
    }
    case 'key':
    case 'keys': {
      const keys = new Set(event.keys ?? [])
      if (keys.size === 0) return 'none'
      return (queryKey) => keys.has(logicalKey(queryKey))
    }
    case 'namespace': {
      const namespace = event.namespace ?? ''
      const head = namespace + ':'
      return (queryKey) => {
        const key = logicalKey(queryKey)
        return key === namespace || key.startsWith(head)
      }
    }
    case 'pattern': {
      const matches = compileGlob(event.pattern ?? '')
      // A pattern the server itself would refuse is read as "anything", like a bad frame.
      if (matches === null) return 'all'
      return (queryKey) => matches(logicalKey(queryKey))
    }
    default:
      return 'all'
  }
}

/** Whether `event` covers the query whose key is `queryKey`. */
export function eventCovers(event: CacheEvent, queryKey: QueryKey): boolean {
  const scope = eventScope(event)
  return scope === 'all' || (scope !== 'none' && scope(queryKey))
}
