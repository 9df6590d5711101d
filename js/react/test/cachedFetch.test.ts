import { afterEach, describe, expect, it, vi } from 'vitest'
import { cachedFetch, createCachedFetch, HttpError } from '../src'

interface Reply {
  status?: number
  body?: string | null
  etag?: string
  statusText?: string
}

/** A fetch that answers from a script and records what it was asked. */
function server(...replies: Reply[]) {
  const calls: Array<{ url: string; init: RequestInit; headers: Headers }> = []
  const fetch = vi.fn((input: RequestInfo | URL, init: RequestInit = {}) => {
    const reply = replies.shift()
    if (reply === undefined) throw new Error('unexpected request')
    calls.push({ url: String(input), init, headers: new Headers(init.headers) })
    const headers = new Headers()
    if (reply.etag !== undefined) headers.set('ETag', reply.etag)
    const status = reply.status ?? 200
    const body = status === 304 || status === 204 ? null : (reply.body ?? '')
    return Promise.resolve(
      new Response(body, { status, statusText: reply.statusText ?? '', headers }),
    )
  })
  return { fetch: fetch as unknown as typeof globalThis.fetch, calls }
}

async function failure(pending: Promise<unknown>): Promise<HttpError> {
  try {
    await pending
  } catch (error) {
    return error as HttpError
  }
  throw new Error('the request did not fail')
}

afterEach(() => {
  vi.unstubAllGlobals()
  cachedFetch.clear()
})

describe('cachedFetch', () => {
  it('fetches JSON and asks for it', async () => {
    const { fetch, calls } = server({ body: '{"id":42}' })
    const get = createCachedFetch({ fetch })
    await expect(get('/users/42')).resolves.toEqual({ id: 42 })
    expect(calls[0]?.headers.get('Accept')).toBe('application/json')
    expect(calls[0]?.url).toBe('/users/42')
  })

  it('keeps the Accept header the caller chose', async () => {
    const { fetch, calls } = server({ body: '1' })
    await createCachedFetch({ fetch })('/x', { headers: { Accept: 'application/vnd.x+json' } })
    expect(calls[0]?.headers.get('Accept')).toBe('application/vnd.x+json')
  })

  it('sends If-None-Match and reuses the kept body on 304', async () => {
    const { fetch, calls } = server(
      { body: '{"id":42,"name":"Ada"}', etag: 'W/"v1"' },
      { status: 304 },
    )
    const get = createCachedFetch({ fetch })
    const first = await get<{ id: number; name: string }>('/users/42')
    const second = await get<{ id: number; name: string }>('/users/42')
    expect(calls[0]?.headers.has('If-None-Match')).toBe(false)
    expect(calls[1]?.headers.get('If-None-Match')).toBe('W/"v1"')
    expect(second).toEqual({ id: 42, name: 'Ada' })
    // Each caller gets its own copy: mutating one does not change the next.
    expect(second).not.toBe(first)
    first.name = 'changed'
    expect(second.name).toBe('Ada')
  })

  it('takes a new ETag and body from a 200', async () => {
    const { fetch, calls } = server(
      { body: '1', etag: '"a"' },
      { body: '2', etag: '"b"' },
      { status: 304 },
    )
    const get = createCachedFetch({ fetch })
    await get('/n')
    await expect(get('/n')).resolves.toBe(2)
    await expect(get('/n')).resolves.toBe(2)
    expect(calls[2]?.headers.get('If-None-Match')).toBe('"b"')
  })

  it('takes the ETag a 304 carries', async () => {
    const { fetch, calls } = server(
      { body: '1', etag: 'W/"a"' },
      { status: 304, etag: '"a"' },
      { status: 304 },
    )
    const get = createCachedFetch({ fetch })
    await get('/n')
    await get('/n')
    await expect(get('/n')).resolves.toBe(1)
    expect(calls[2]?.headers.get('If-None-Match')).toBe('"a"')
  })

  it('keeps nothing for a response without ETag, and forgets the old one', async () => {
    const { fetch, calls } = server({ body: '1', etag: '"a"' }, { body: '2' }, { body: '3' })
    const get = createCachedFetch({ fetch })
    await get('/n')
    await get('/n')
    expect(get.size).toBe(0)
    await get('/n')
    expect(calls[2]?.headers.has('If-None-Match')).toBe(false)
  })

  it('asks the server rather than the HTTP cache when it has no validator', async () => {
    const { fetch, calls } = server({ body: '1', etag: '"a"' }, { status: 304 }, { body: '1' })
    const get = createCachedFetch({ fetch })
    await get('/n')
    expect(calls[0]?.init.cache).toBe('no-cache')
    await get('/n')
    expect(calls[1]?.init.cache).toBeUndefined()
    await get('/other', { cache: 'force-cache' })
    expect(calls[2]?.init.cache).toBe('force-cache')
  })

  it("respects the caller's own If-None-Match", async () => {
    const { fetch, calls } = server({ body: '1', etag: '"a"' }, { body: '1' })
    const get = createCachedFetch({ fetch })
    await get('/n')
    await get('/n', { headers: { 'If-None-Match': '"mine"' } })
    expect(calls[1]?.headers.get('If-None-Match')).toBe('"mine"')
  })

  it('fails a 304 it has no body for', async () => {
    const { fetch } = server({ status: 304 })
    const get = createCachedFetch({ fetch })
    const error = await failure(get('/n', { headers: { 'If-None-Match': '"x"' } }))
    expect(error).toBeInstanceOf(HttpError)
    expect(error.status).toBe(304)
  })

  it('uses the entry it read even if it is evicted before the 304 arrives', async () => {
    let release: (response: Response) => void = () => undefined
    const calls: string[] = []
    const fetch = vi.fn((input: RequestInfo | URL) => {
      calls.push(String(input))
      if (calls.length === 3) return new Promise<Response>((resolve) => (release = resolve))
      return Promise.resolve(
        new Response(`"${String(input)}"`, { headers: { ETag: `"${calls.length}"` } }),
      )
    }) as unknown as typeof globalThis.fetch
    const get = createCachedFetch({ fetch, maxEntries: 1 })
    await get('/a')
    await get('/b')
    const pending = get('/b')
    await get('/c')
    expect(get.size).toBe(1)
    release(new Response(null, { status: 304 }))
    await expect(pending).resolves.toBe('/b')
  })

  it('throws HttpError with the status and the JSON body on errors', async () => {
    const detail = { detail: { error: 'NotFound', message: 'no such user' } }
    const { fetch } = server({ status: 404, statusText: 'Not Found', body: JSON.stringify(detail) })
    const error = await failure(createCachedFetch({ fetch })('/users/9'))
    expect(error).toBeInstanceOf(HttpError)
    expect(error).toBeInstanceOf(Error)
    expect(error).toMatchObject({
      name: 'HttpError',
      status: 404,
      statusText: 'Not Found',
      url: '/users/9',
      body: detail,
      message: 'HTTP 404 Not Found for /users/9',
    })
  })

  it('gives a text body as text', async () => {
    const { fetch } = server({ status: 502, body: 'Bad gateway' })
    const error = await failure(createCachedFetch({ fetch })('/x'))
    expect(error.body).toBe('Bad gateway')
    expect(error.message).toBe('HTTP 502 for /x')
  })

  it('returns null for an empty body', async () => {
    const { fetch } = server({ status: 204 }, { body: '' })
    const get = createCachedFetch({ fetch })
    await expect(get('/x', { method: 'DELETE' })).resolves.toBeNull()
    await expect(get('/y')).resolves.toBeNull()
  })

  it('throws on a body that is not JSON and keeps no entry for it', async () => {
    const { fetch, calls } = server({ body: '1', etag: '"a"' }, { body: '<html>', etag: '"b"' }, {
      body: '2',
    })
    const get = createCachedFetch({ fetch })
    await get('/n')
    await expect(get('/n')).rejects.toBeInstanceOf(SyntaxError)
    await get('/n')
    expect(calls[2]?.headers.has('If-None-Match')).toBe(false)
  })

  it('neither validates nor keeps other methods', async () => {
    const { fetch, calls } = server({ body: '1', etag: '"a"' }, { body: '2', etag: '"b"' })
    const get = createCachedFetch({ fetch })
    await get('/n')
    await expect(get('/n', { method: 'post', body: '{}' })).resolves.toBe(2)
    expect(calls[1]?.headers.has('If-None-Match')).toBe(false)
    expect(calls[1]?.init.cache).toBeUndefined()
    expect(calls[1]?.init.method).toBe('post')
  })

  it('shares one entry between a relative URL, its absolute form and a URL object', async () => {
    const { fetch, calls } = server({ body: '1', etag: '"a"' }, { status: 304 }, { status: 304 })
    const get = createCachedFetch({ fetch })
    await get('/n')
    await get(new URL('/n', location.href).href)
    await get(new URL('/n', location.href))
    expect(calls.map((call) => call.headers.get('If-None-Match'))).toEqual([null, '"a"', '"a"'])
    expect(get.size).toBe(1)
  })

  it('keeps the query string apart', async () => {
    const { fetch, calls } = server({ body: '1', etag: '"a"' }, { body: '2', etag: '"b"' })
    const get = createCachedFetch({ fetch })
    await get('/n?page=1')
    await get('/n?page=2')
    expect(calls[1]?.headers.has('If-None-Match')).toBe(false)
    expect(get.size).toBe(2)
  })

  it('forgets the least recently used URL beyond maxEntries', async () => {
    const { fetch, calls } = server(
      { body: '1', etag: '"1"' },
      { body: '2', etag: '"2"' },
      { status: 304 },
      { body: '3', etag: '"3"' },
      { status: 304 },
      { body: '2', etag: '"2"' },
    )
    const get = createCachedFetch({ fetch, maxEntries: 2 })
    await get('/1')
    await get('/2')
    await get('/1') // /1 is now the most recently used
    await get('/3') // so /2 goes
    expect(get.size).toBe(2)
    await get('/1')
    await get('/2')
    expect(calls[4]?.headers.get('If-None-Match')).toBe('"1"')
    expect(calls[5]?.headers.has('If-None-Match')).toBe(false)
  })

  it('bounds the characters kept, and keeps no body larger than the bound', async () => {
    const { fetch, calls } = server(
      { body: '"aaaa"', etag: '"a"' },
      { body: '"bbbb"', etag: '"b"' },
      { body: '"cccccccccccc"', etag: '"c"' },
      { body: '"aaaa"', etag: '"a"' },
    )
    const get = createCachedFetch({ fetch, maxSize: 12 })
    await get('/a')
    await get('/b')
    expect(get.size).toBe(2)
    await get('/c')
    expect(get.size).toBe(2)
    await get('/a')
    expect(calls[3]?.headers.get('If-None-Match')).toBe('"a"')
  })

  it('evicts by size as well as by count', async () => {
    const { fetch } = server(
      { body: '"aaaa"', etag: '"a"' },
      { body: '"bbbb"', etag: '"b"' },
      { body: '"cccc"', etag: '"c"' },
    )
    const get = createCachedFetch({ fetch, maxSize: 13 })
    await get('/a')
    await get('/b')
    await get('/c')
    expect(get.size).toBe(2)
  })

  it('clear() forgets everything', async () => {
    const { fetch, calls } = server({ body: '1', etag: '"a"' }, { body: '1', etag: '"a"' })
    const get = createCachedFetch({ fetch })
    await get('/n')
    get.clear()
    expect(get.size).toBe(0)
    await get('/n')
    expect(calls[1]?.headers.has('If-None-Match')).toBe(false)
  })

  it('passes the rest of init through (signal, credentials)', async () => {
    const { fetch, calls } = server({ body: '1' })
    const controller = new AbortController()
    await createCachedFetch({ fetch })('/n', { signal: controller.signal, credentials: 'include' })
    expect(calls[0]?.init.signal).toBe(controller.signal)
    expect(calls[0]?.init.credentials).toBe('include')
  })

  it('the shared cachedFetch uses the global fetch of the moment', async () => {
    const { fetch, calls } = server({ body: '{"ok":true}', etag: '"1"' }, { status: 304 })
    vi.stubGlobal('fetch', fetch)
    await expect(cachedFetch('/shared')).resolves.toEqual({ ok: true })
    await expect(cachedFetch('/shared')).resolves.toEqual({ ok: true })
    expect(calls[1]?.headers.get('If-None-Match')).toBe('"1"')
    expect(cachedFetch.size).toBe(1)
  })
})
