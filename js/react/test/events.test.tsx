import { QueryClient, type QueryKey } from '@tanstack/react-query'
import { act, cleanup, render, renderHook, screen, waitFor } from '@testing-library/react'
import { StrictMode, type ReactNode } from 'react'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import {
  CacheProvider,
  useCachedQuery,
  useCacheEvents,
  type CacheProviderProps,
  type EventSourceConstructor,
} from '../src'
import { withSince } from '../src/events'
import { FakeEventSource } from './fakeEventSource'

const KEYS: QueryKey[] = [
  ['user', '42'],
  ['user', '43'],
  ['user', '42', 'posts'],
  ['user'],
  ['users', '42'],
  ['project', 7],
]

function seeded(): QueryClient {
  const client = new QueryClient()
  for (const key of KEYS) client.setQueryData(key, { key })
  return client
}

function invalidated(client: QueryClient): string[] {
  return KEYS.filter((key) => client.getQueryState(key)?.isInvalidated).map((key) =>
    key.join(':'),
  )
}

function mount(props: Partial<CacheProviderProps> = {}, children: ReactNode = null) {
  const client = props.client ?? seeded()
  const utils = render(
    <CacheProvider
      client={client}
      eventsUrl="/cache/events"
      eventSource={FakeEventSource}
      {...props}
    >
      {children}
    </CacheProvider>,
  )
  return { client, ...utils }
}

function Status() {
  const { status, lastEventId } = useCacheEvents()
  return <p data-testid="status">{`${status} ${lastEventId ?? '-'}`}</p>
}

const status = () => screen.getByTestId('status').textContent

beforeEach(() => {
  FakeEventSource.reset()
})

afterEach(() => {
  cleanup()
  vi.useRealTimers()
  vi.unstubAllGlobals()
})

describe('the event stream', () => {
  it('opens one EventSource to eventsUrl, without credentials by default', () => {
    mount()
    expect(FakeEventSource.instances).toHaveLength(1)
    expect(FakeEventSource.last.url).toBe('/cache/events')
    expect(FakeEventSource.last.withCredentials).toBe(false)
  })

  it('passes withCredentials', () => {
    mount({ withCredentials: true })
    expect(FakeEventSource.last.withCredentials).toBe(true)
  })

  it('opens no second stream under StrictMode', () => {
    const client = seeded()
    render(
      <StrictMode>
        <CacheProvider client={client} eventsUrl="/cache/events" eventSource={FakeEventSource} />
      </StrictMode>,
    )
    const open = FakeEventSource.instances.filter((source) => !source.closed)
    expect(open).toHaveLength(1)
  })

  it('uses the global EventSource when none is given', () => {
    vi.stubGlobal('EventSource', FakeEventSource)
    render(<CacheProvider eventsUrl="/events" />)
    expect(FakeEventSource.last.url).toBe('/events')
  })

  it('closes the stream on unmount', () => {
    const { unmount } = mount()
    unmount()
    expect(FakeEventSource.last.closed).toBe(true)
  })

  it('accepts the browser EventSource type', () => {
    // A compile-time check as much as a run-time one: the DOM's class fits the option.
    const ctor: EventSourceConstructor | undefined = (
      globalThis as { EventSource?: typeof EventSource }
    ).EventSource
    expect(ctor === undefined || typeof ctor === 'function').toBe(true)
  })
})

describe('mapping events to queries', () => {
  it.each([
    ['a key event', { kind: 'key', keys: ['user:42'] }, ['user:42']],
    ['a key event in numbers', { kind: 'key', keys: ['project:7'] }, ['project:7']],
    ['a keys event', { kind: 'keys', keys: ['user:43', 'project:7'] }, ['user:43', 'project:7']],
    [
      'a namespace event',
      { kind: 'namespace', namespace: 'user' },
      ['user:42', 'user:43', 'user:42:posts', 'user'],
    ],
    ['a pattern event', { kind: 'pattern', pattern: 'user:4?' }, ['user:42', 'user:43']],
    ['a pattern over namespaces', { kind: 'pattern', pattern: '*:42' }, ['user:42', 'users:42']],
    ['a clear event', { kind: 'clear' }, KEYS.map((key) => key.join(':'))],
    ['a tags event', { kind: 'tags', tags: ['user:42'] }, ['user:42', 'user:42:posts']],
    ['a replayed key event', { kind: 'key', keys: ['user:42'], replayed: true }, ['user:42']],
    ['a malformed frame', '{not json', KEYS.map((key) => key.join(':'))],
  ])('%s invalidates exactly its queries', (_name, data, expected) => {
    const { client } = mount()
    FakeEventSource.last.open()
    FakeEventSource.last.emit('invalidate', data, '1-0')
    expect(invalidated(client)).toEqual(expected)
  })

  it('a reset event invalidates everything', () => {
    const { client } = mount()
    FakeEventSource.last.open()
    FakeEventSource.last.emit('reset', { kind: 'reset' }, '5-0')
    expect(invalidated(client)).toHaveLength(KEYS.length)
  })

  it('an event named reset is a reset whatever its data says', () => {
    const { client } = mount()
    FakeEventSource.last.emit('reset', { kind: 'key', keys: ['user:42'] }, '5-0')
    expect(invalidated(client)).toHaveLength(KEYS.length)
  })

  it('refetches the active queries it covers, and only those', async () => {
    const client = new QueryClient()
    const calls: Record<string, number> = { a: 0, b: 0 }
    function User({ id }: { id: string }) {
      const { data } = useCachedQuery(['user', id], () => {
        calls[id] = (calls[id] ?? 0) + 1
        return Promise.resolve(`${id}#${calls[id]}`)
      })
      return <p>{data ?? 'loading'}</p>
    }
    mount(
      { client },
      <>
        <User id="a" />
        <User id="b" />
      </>,
    )
    await screen.findByText('a#1')
    await screen.findByText('b#1')
    FakeEventSource.last.emit('invalidate', { kind: 'key', keys: ['user:a'] }, '1-0')
    await screen.findByText('a#2')
    expect(screen.getByText('b#1')).toBeTruthy()
    expect(calls).toEqual({ a: 2, b: 1 })
  })

  it('calls onEvent with each event and its id', () => {
    const onEvent = vi.fn()
    mount({ onEvent })
    FakeEventSource.last.emit('invalidate', { kind: 'namespace', namespace: 'user' }, '9-1')
    expect(onEvent).toHaveBeenCalledWith({ kind: 'namespace', namespace: 'user' }, '9-1')
  })
})

describe('connection state and reconnection', () => {
  it('reports connecting, open and the last event id', () => {
    mount({}, <Status />)
    expect(status()).toBe('connecting -')
    FakeEventSource.last.open()
    expect(status()).toBe('open -')
    FakeEventSource.last.emit('invalidate', { kind: 'key', keys: ['user:1'] }, '1717000000000-0')
    expect(status()).toBe('open 1717000000000-0')
  })

  it('keeps the id when a frame has none', () => {
    mount({}, <Status />)
    FakeEventSource.last.emit('invalidate', { kind: 'key', keys: ['user:1'] }, '3-0')
    FakeEventSource.last.emit('invalidate', { kind: 'key', keys: ['user:1'] })
    expect(status()).toBe('connecting 3-0')
  })

  it('leaves network errors to the browser, which reconnects with Last-Event-ID', () => {
    mount({}, <Status />)
    FakeEventSource.last.open()
    FakeEventSource.last.fail(false)
    expect(status()).toBe('connecting -')
    expect(FakeEventSource.instances).toHaveLength(1)
    expect(FakeEventSource.last.closed).toBe(false)
  })

  it('reopens a stream the browser closed, with since= and growing delays', () => {
    vi.useFakeTimers()
    vi.spyOn(Math, 'random').mockReturnValue(1)
    mount({ reconnect: { minDelay: 100, maxDelay: 300 } }, <Status />)
    const first = FakeEventSource.last
    first.open()
    first.emit('invalidate', { kind: 'key', keys: ['user:1'] }, '10-0')
    first.fail(true)
    expect(status()).toBe('closed 10-0')
    expect(first.closed).toBe(true)

    act(() => vi.advanceTimersByTime(99))
    expect(FakeEventSource.instances).toHaveLength(1)
    act(() => vi.advanceTimersByTime(1))
    expect(FakeEventSource.instances).toHaveLength(2)
    expect(FakeEventSource.last.url).toBe('/cache/events?since=10-0')
    expect(status()).toBe('connecting 10-0')

    FakeEventSource.last.fail(true)
    act(() => vi.advanceTimersByTime(199))
    expect(FakeEventSource.instances).toHaveLength(2)
    act(() => vi.advanceTimersByTime(1))
    expect(FakeEventSource.instances).toHaveLength(3)

    FakeEventSource.last.fail(true)
    act(() => vi.advanceTimersByTime(300))
    expect(FakeEventSource.instances).toHaveLength(4)

    FakeEventSource.last.fail(true)
    act(() => vi.advanceTimersByTime(300))
    expect(FakeEventSource.instances).toHaveLength(5)

    // An open stream starts the backoff over.
    FakeEventSource.last.open()
    FakeEventSource.last.fail(true)
    act(() => vi.advanceTimersByTime(100))
    expect(FakeEventSource.instances).toHaveLength(6)
  })

  it('jitters the delay between half and all of it', () => {
    vi.useFakeTimers()
    vi.spyOn(Math, 'random').mockReturnValue(0)
    mount({ reconnect: { minDelay: 1000 } })
    FakeEventSource.last.fail(true)
    act(() => vi.advanceTimersByTime(499))
    expect(FakeEventSource.instances).toHaveLength(1)
    act(() => vi.advanceTimersByTime(1))
    expect(FakeEventSource.instances).toHaveLength(2)
  })

  it('uses 1 s and 30 s as the default delays', () => {
    vi.useFakeTimers()
    vi.spyOn(Math, 'random').mockReturnValue(1)
    mount()
    for (let attempt = 0; attempt < 7; attempt += 1) {
      FakeEventSource.last.fail(true)
      act(() => vi.advanceTimersByTime(Math.min(30000, 1000 * 2 ** attempt)))
    }
    expect(FakeEventSource.instances).toHaveLength(8)
    FakeEventSource.last.fail(true)
    act(() => vi.advanceTimersByTime(29999))
    expect(FakeEventSource.instances).toHaveLength(8)
  })

  it('never reopens with reconnect={false}', () => {
    vi.useFakeTimers()
    mount({ reconnect: false }, <Status />)
    FakeEventSource.last.fail(true)
    act(() => vi.advanceTimersByTime(120000))
    expect(FakeEventSource.instances).toHaveLength(1)
    expect(status()).toBe('closed -')
  })

  it('does not reopen after unmount', () => {
    vi.useFakeTimers()
    const { unmount } = mount()
    FakeEventSource.last.fail(true)
    unmount()
    act(() => vi.advanceTimersByTime(120000))
    expect(FakeEventSource.instances).toHaveLength(1)
  })

  it('refetches everything when it reconnects with no id to resume from', () => {
    vi.useFakeTimers()
    vi.spyOn(Math, 'random').mockReturnValue(1)
    const { client } = mount({ reconnect: { minDelay: 10 } })
    FakeEventSource.last.open()
    expect(invalidated(client)).toEqual([])
    FakeEventSource.last.fail(true)
    act(() => vi.advanceTimersByTime(10))
    expect(FakeEventSource.last.url).toBe('/cache/events')
    FakeEventSource.last.open()
    expect(invalidated(client)).toHaveLength(KEYS.length)
  })

  it('the same after the browser reconnects by itself with no id', () => {
    const { client } = mount()
    FakeEventSource.last.open()
    FakeEventSource.last.fail(false)
    FakeEventSource.last.open()
    expect(invalidated(client)).toHaveLength(KEYS.length)
  })

  it('refetches nothing when it reconnects with an id', () => {
    vi.useFakeTimers()
    const { client } = mount({ reconnect: { minDelay: 10 } })
    FakeEventSource.last.open()
    FakeEventSource.last.emit('invalidate', { kind: 'tags', tags: ['x'] }, '4-0')
    FakeEventSource.last.fail(true)
    act(() => vi.advanceTimersByTime(10))
    FakeEventSource.last.open()
    expect(invalidated(client)).toEqual([])
  })

  it('starts over on another eventsUrl', () => {
    const client = seeded()
    const tree = (url?: string) => (
      <CacheProvider client={client} eventsUrl={url} eventSource={FakeEventSource}>
        <Status />
      </CacheProvider>
    )
    const { rerender } = render(tree('/a/events'))
    const first = FakeEventSource.last
    first.open()
    first.emit('invalidate', { kind: 'clear' }, '8-0')
    rerender(tree('/b/events?x=1'))
    expect(first.closed).toBe(true)
    expect(FakeEventSource.last.url).toBe('/b/events?x=1')
    expect(status()).toBe('connecting -')
    rerender(tree(undefined))
    expect(FakeEventSource.last.closed).toBe(true)
    expect(status()).toBe('disabled -')
  })

  it('is disabled without eventsUrl', () => {
    render(
      <CacheProvider eventSource={FakeEventSource}>
        <Status />
      </CacheProvider>,
    )
    expect(status()).toBe('disabled -')
    expect(FakeEventSource.instances).toHaveLength(0)
  })

  it('is disabled where there is no EventSource', () => {
    vi.stubGlobal('EventSource', undefined)
    render(
      <CacheProvider eventsUrl="/cache/events">
        <Status />
      </CacheProvider>,
    )
    expect(status()).toBe('disabled -')
  })

  it('is disabled outside a provider', () => {
    const { result } = renderHook(() => useCacheEvents())
    expect(result.current).toEqual({ status: 'disabled', lastEventId: null })
  })

  it('adds since= to any URL', () => {
    expect(withSince('/cache/events', '1-0')).toBe('/cache/events?since=1-0')
    expect(withSince('/cache/events?a=1', '1-0')).toBe('/cache/events?a=1&since=1-0')
    expect(withSince('https://x/e#f', '1-0')).toBe('https://x/e?since=1-0#f')
  })

  it('settles the refetch it started even when the fetch fails', async () => {
    const client = new QueryClient({ defaultOptions: { queries: { retry: false } } })
    let fail = false
    function User() {
      const { data, error } = useCachedQuery(['user', '1'], () =>
        fail ? Promise.reject(new Error('down')) : Promise.resolve('ok'),
      )
      return <p>{error ? error.message : (data ?? 'loading')}</p>
    }
    mount({ client }, <User />)
    await screen.findByText('ok')
    fail = true
    FakeEventSource.last.emit('invalidate', { kind: 'key', keys: ['user:1'] }, '1-0')
    await waitFor(() => expect(screen.getByText('down')).toBeTruthy())
  })
})
