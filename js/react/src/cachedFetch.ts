/** A response outside 2xx (or a 304 with nothing to reuse), with what the server said. */
export class HttpError extends Error {
  override readonly name = 'HttpError'
  readonly status: number
  readonly statusText: string
  readonly url: string
  /** The response body: parsed JSON when it is JSON (chenu-cache's `{"detail": ...}`), else text. */
  readonly body: unknown

  constructor(status: number, statusText: string, url: string, body: unknown) {
    super(`HTTP ${status}${statusText ? ` ${statusText}` : ''} for ${url}`)
    this.status = status
    this.statusText = statusText
    this.url = url
    this.body = body
  }
}

export interface CachedFetchOptions {
  /** How many URLs keep their ETag and body (default 256); the least recently used go first. */
  maxEntries?: number
  /** How many characters of bodies are kept in all (default 4 Mi); a larger body is not kept. */
  maxSize?: number
  /** The `fetch` to call (default the global one, looked up at each call). */
  fetch?: typeof fetch
}

export interface CachedFetch {
  /**
   * Fetch JSON. A GET whose URL answered with an ETag before is sent with `If-None-Match`,
   * and a `304 Not Modified` returns the body kept from that answer.
   */
  <T = unknown>(input: string | URL, init?: RequestInit): Promise<T>
  /** Forget every kept ETag and body. */
  clear(): void
  /** How many URLs are kept. */
  readonly size: number
}

interface Entry {
  etag: string
  body: string
}

function absolute(url: string): string {
  const base = (globalThis as { location?: { href?: string } }).location?.href
  try {
    // `/users/1` and `https://app/users/1` are one resource and must share one entry.
    return new URL(url, base).href
  } catch {
    return url
  }
}

// Bodies are kept as text and parsed on every return, so a caller that mutates what it got
// cannot change what the next 304 hands out.
function parse(text: string): unknown {
  return text === '' ? null : JSON.parse(text)
}

function readError(text: string): unknown {
  try {
    return parse(text)
  } catch {
    return text
  }
}

/** Make a `cachedFetch` with its own bounded store of ETags and bodies. */
export function createCachedFetch(options: CachedFetchOptions = {}): CachedFetch {
  const maxEntries = options.maxEntries ?? 256
  const maxSize = options.maxSize ?? 4 * 1024 * 1024
  // A Map iterates in insertion order: re-inserting on use makes its first key the LRU one.
  const entries = new Map<string, Entry>()
  let size = 0

  const drop = (key: string): void => {
    const entry = entries.get(key)
    if (entry === undefined) return
    entries.delete(key)
    size -= entry.body.length
  }

  const keep = (key: string, entry: Entry): void => {
    drop(key)
    if (entry.body.length > maxSize) return
    entries.set(key, entry)
    size += entry.body.length
    for (const oldest of entries.keys()) {
      if (entries.size <= maxEntries && size <= maxSize) break
      drop(oldest)
    }
  }

  const run = async <T>(input: string | URL, init: RequestInit = {}): Promise<T> => {
    const url = typeof input === 'string' ? input : input.href
    const method = (init.method ?? 'GET').toUpperCase()
    const cacheable = method === 'GET'
    const key = absolute(url)
    // Taken now: if the entry is evicted while the request is out, its 304 still needs it.
    const entry = cacheable ? entries.get(key) : undefined

    const headers = new Headers(init.headers)
    if (!headers.has('Accept')) headers.set('Accept', 'application/json')
    const request: RequestInit = { ...init, headers }
    if (entry !== undefined && !headers.has('If-None-Match')) {
      // With a validator of the app's own, the browser neither answers from nor fills its
      // HTTP cache, and hands the 304 over instead of turning it into a 200.
      headers.set('If-None-Match', entry.etag)
    } else if (cacheable && init.cache === undefined) {
      // Without one, the browser could answer from its HTTP cache within max-age, after the
      // server said the data changed; `no-cache` makes it ask the server first.
      request.cache = 'no-cache'
    }

    const doFetch = options.fetch ?? globalThis.fetch
    const response = await doFetch(url, request)

    if (response.status === 304 && entry !== undefined) {
      const etag = response.headers.get('ETag')
      keep(key, etag === null ? entry : { etag, body: entry.body })
      return parse(entry.body) as T
    }

    const text = await response.text()
    if (!response.ok) {
      throw new HttpError(response.status, response.statusText, url, readError(text))
    }
    // Parsed before it is kept: a body that is not JSON must not be reused on the next 304.
    let value: unknown
    try {
      value = parse(text)
    } catch (error) {
      if (cacheable) drop(key)
      throw error
    }
    const etag = response.headers.get('ETag')
    if (cacheable && etag !== null) keep(key, { etag, body: text })
    else if (cacheable) drop(key)
    return value as T
  }

  const fetcher = run as CachedFetch
  Object.defineProperties(fetcher, {
    clear: {
      value: (): void => {
        entries.clear()
        size = 0
      },
    },
    size: { get: () => entries.size },
  })
  return fetcher
}

/** The shared `cachedFetch`: 256 URLs, 4 Mi characters of bodies at most. */
export const cachedFetch: CachedFetch = /* @__PURE__ */ createCachedFetch()
