import { createSyncStoragePersister } from '@tanstack/query-sync-storage-persister'
import { dehydrate, QueryClient, useQueryClient, type QueryKey } from '@tanstack/react-query'
import { act, cleanup, render, renderHook, screen, waitFor } from '@testing-library/react'
import type { ReactNode } from 'react'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import {
  CacheProvider,
  useCachedQuery,
  type CacheProviderProps,
  type PersistedClient,
  type Persister,
  type StorageLike,
} from '../src'
import { FakeEventSource } from './fakeEventSource'

const KEY = 'chenu-cache-react'

interface Saved extends PersistedClient {
  lastEventId?: string
}

function snapshot(
  entries: Array<[QueryKey, unknown]>,
  extra: Partial<Saved> = {},
): Saved {
  const client = new QueryClient()
  for (const [key, value] of entries) client.setQueryData(key, value)
  return { timestamp: Date.now(), buster: '', clientState: dehydrate(client), ...extra }
}

function stored(storage: StorageLike = localStorage, key = KEY): Saved | null {
  const raw = storage.getItem(key)
  return raw === null ? null : (JSON.parse(raw) as Saved)
}

function savedKeys(saved: Saved | null): string[] {
  return (saved?.clientState.queries ?? []).map((query) => query.queryKey.join(':'))
}

/** Records what each render saw, so a test can tell what the very first render showed. */
function User({ id, seen }: { id: string; seen: unknown[] }) {
  const { data } = useCachedQuery(['user', id], () => Promise.resolve(`fetched ${id}`))
  seen.push(data)
  return <p>{String(data ?? 'loading')}</p>
}

function mount(props: Partial<CacheProviderProps>, children: ReactNode) {
  return render(<CacheProvider {...props}>{children}</CacheProvider>)
}

beforeEach(() => {
  localStorage.clear()
  FakeEventSource.reset()
})

afterEach(() => {
  cleanup()
  vi.useRealTimers()
  vi.unstubAllGlobals()
})

describe('persist', () => {
  it('saves the cache to localStorage, at most once per throttleTime', async () => {
    vi.useFakeTimers({ shouldAdvanceTime: true })
    const seen: unknown[] = []
    mount({ persist: {} }, <User id="1" seen={seen} />)
    await screen.findByText('fetched 1')
    expect(stored()).toBeNull()
    act(() => vi.advanceTimersByTime(1000))
    const saved = stored()
    expect(savedKeys(saved)).toEqual(['user:1'])
    expect(saved?.buster).toBe('')
    expect(saved?.timestamp).toBeGreaterThan(0)
    expect(saved?.lastEventId).toBeUndefined()
  })

  it('restores on the first render, before any fetch', () => {
    localStorage.setItem(KEY, JSON.stringify(snapshot([[['user', '1'], 'saved 1']])))
    const seen: unknown[] = []
    mount({ persist: { maxAge: 60_000 } }, <User id="1" seen={seen} />)
    expect(seen[0]).toBe('saved 1')
  })

  it('keeps the restored data when it is fresh, and revalidates it when stale', async () => {
    localStorage.setItem(
      KEY,
      JSON.stringify(snapshot([[['user', '1'], 'saved 1']], { timestamp: Date.now() })),
    )
    const seen: unknown[] = []
    mount({ persist: {}, staleTime: 0 }, <User id="1" seen={seen} />)
    await screen.findByText('fetched 1')
    expect(seen[0]).toBe('saved 1')
  })

  it('discards a save older than maxAge', () => {
    localStorage.setItem(
      KEY,
      JSON.stringify(snapshot([[['user', '1'], 'old']], { timestamp: Date.now() - 10_001 })),
    )
    const seen: unknown[] = []
    mount({ persist: { maxAge: 10_000 } }, <User id="1" seen={seen} />)
    expect(seen[0]).toBeUndefined()
    expect(stored()).toBeNull()
  })

  it('discards a save older than a day by default', () => {
    const day = 24 * 60 * 60 * 1000
    localStorage.setItem(
      KEY,
      JSON.stringify(snapshot([[['user', '1'], 'old']], { timestamp: Date.now() - day - 1 })),
    )
    const seen: unknown[] = []
    mount({ persist: {} }, <User id="1" seen={seen} />)
    expect(seen[0]).toBeUndefined()
  })

  it('discards a save made with another buster, and saves with its own', async () => {
    vi.useFakeTimers({ shouldAdvanceTime: true })
    localStorage.setItem(KEY, JSON.stringify(snapshot([[['user', '1'], 'v1']], { buster: 'v1' })))
    const seen: unknown[] = []
    mount({ persist: { buster: 'v2' } }, <User id="1" seen={seen} />)
    expect(seen[0]).toBeUndefined()
    await screen.findByText('fetched 1')
    act(() => vi.advanceTimersByTime(1000))
    expect(stored()?.buster).toBe('v2')
  })

  it.each([
    ['is not JSON', '{'],
    ['has no timestamp', JSON.stringify({ buster: '', clientState: { queries: [] } })],
  ])('discards a save that %s', (_name, raw) => {
    localStorage.setItem(KEY, raw)
    const seen: unknown[] = []
    mount({ persist: {} }, <User id="1" seen={seen} />)
    expect(seen[0]).toBeUndefined()
    expect(localStorage.getItem(KEY)).toBeNull()
  })

  it('uses the given storage and key', async () => {
    const map = new Map<string, string>()
    const storage: StorageLike = {
      getItem: (key) => map.get(key) ?? null,
      setItem: (key, value) => void map.set(key, value),
      removeItem: (key) => void map.delete(key),
    }
    map.set('mine', JSON.stringify(snapshot([[['user', '2'], 'from map']])))
    const seen: unknown[] = []
    const { unmount } = mount(
      { persist: { storage, key: 'mine', throttleTime: 5 } },
      <User id="2" seen={seen} />,
    )
    expect(seen[0]).toBe('from map')
    await screen.findByText('fetched 2')
    unmount()
    expect(savedKeys(stored(storage, 'mine'))).toEqual(['user:2'])
    expect(localStorage.length).toBe(0)
  })

  it('saves what dehydrateOptions selects', async () => {
    const seen: unknown[] = []
    const { unmount } = mount(
      {
        persist: {
          dehydrateOptions: { shouldDehydrateQuery: (query) => query.queryKey[1] === 'keep' },
        },
      },
      <>
        <User id="keep" seen={seen} />
        <User id="drop" seen={seen} />
      </>,
    )
    await screen.findByText('fetched keep')
    await screen.findByText('fetched drop')
    unmount()
    expect(savedKeys(stored())).toEqual(['user:keep'])
  })

  it('saves a pending change when the page is hidden', async () => {
    const seen: unknown[] = []
    mount({ persist: { throttleTime: 60_000 } }, <User id="1" seen={seen} />)
    await screen.findByText('fetched 1')
    expect(stored()).toBeNull()
    act(() => {
      window.dispatchEvent(new Event('pagehide'))
    })
    expect(savedKeys(stored())).toEqual(['user:1'])
  })

  it('saves a pending change on unmount', async () => {
    const seen: unknown[] = []
    const { unmount } = mount({ persist: { throttleTime: 60_000 } }, <User id="1" seen={seen} />)
    await screen.findByText('fetched 1')
    unmount()
    expect(savedKeys(stored())).toEqual(['user:1'])
  })

  it('drops the oldest queries when the storage is full', async () => {
    const map = new Map<string, string>()
    const storage: StorageLike = {
      getItem: (key) => map.get(key) ?? null,
      setItem: (key, value) => {
        if (value.includes('user","old')) throw new DOMException('full', 'QuotaExceededError')
        map.set(key, value)
      },
      removeItem: (key) => void map.delete(key),
    }
    const client = new QueryClient()
    client.setQueryData(['user', 'old'], 1, { updatedAt: 1000 })
    client.setQueryData(['user', 'new'], 2, { updatedAt: 2000 })
    const { unmount } = mount({ client, persist: { storage } }, null)
    act(() => client.setQueryData(['user', 'newer'], 3))
    unmount()
    expect(savedKeys(stored(storage)).sort()).toEqual(['user:new', 'user:newer'])
  })

  it('gives up the save when even an empty cache does not fit', async () => {
    const storage: StorageLike = {
      getItem: () => null,
      setItem: () => {
        throw new DOMException('full', 'QuotaExceededError')
      },
      removeItem: vi.fn(),
    }
    const client = new QueryClient()
    const { unmount } = mount({ client, persist: { storage } }, null)
    act(() => client.setQueryData(['user', '1'], 1))
    expect(() => unmount()).not.toThrow()
    expect(storage.removeItem).toHaveBeenCalledWith(KEY)
  })

  it('does nothing where localStorage is unavailable', () => {
    vi.stubGlobal('localStorage', undefined)
    const seen: unknown[] = []
    expect(() => mount({ persist: {} }, <User id="1" seen={seen} />)).not.toThrow()
  })

  it('survives a persister that throws', async () => {
    const persister: Persister = {
      persistClient: () => {
        throw new Error('disk on fire')
      },
      restoreClient: () => {
        throw new Error('disk on fire')
      },
      removeClient: () => {
        throw new Error('disk on fire')
      },
    }
    const seen: unknown[] = []
    const { unmount } = mount({ persist: { persister } }, <User id="1" seen={seen} />)
    await screen.findByText('fetched 1')
    expect(() => unmount()).not.toThrow()
  })

  it('makes maxAge the default ttl, so memory keeps what storage keeps', () => {
    const { result } = renderHook(() => useQueryClient(), {
      wrapper: ({ children }) => (
        <CacheProvider persist={{ maxAge: 123_000 }}>{children}</CacheProvider>
      ),
    })
    expect(result.current.getDefaultOptions().queries?.gcTime).toBe(123_000)
  })

  it('lets an explicit ttl win over maxAge', () => {
    const { result } = renderHook(() => useQueryClient(), {
      wrapper: ({ children }) => (
        <CacheProvider persist={{ maxAge: 123_000 }} ttl={5000}>
          {children}
        </CacheProvider>
      ),
    })
    expect(result.current.getDefaultOptions().queries?.gcTime).toBe(5000)
  })
})

describe('persist with an async persister', () => {
  function deferred() {
    let resolve: (value: PersistedClient | undefined) => void = () => undefined
    const promise = new Promise<PersistedClient | undefined>((done) => (resolve = done))
    return { promise, resolve }
  }

  it('holds queries and the event stream until restored', async () => {
    const restore = deferred()
    const persister: Persister = {
      persistClient: vi.fn(),
      restoreClient: () => restore.promise,
      removeClient: vi.fn(),
    }
    const fetcher = vi.fn(() => Promise.resolve('fetched'))
    function View() {
      const { data, fetchStatus } = useCachedQuery(['user', '1'], fetcher, { staleTime: 60_000 })
      return <p>{`${String(data ?? 'none')} ${fetchStatus}`}</p>
    }
    mount(
      { persist: { persister }, eventsUrl: '/cache/events', eventSource: FakeEventSource },
      <View />,
    )
    await new Promise((resolve) => setTimeout(resolve, 20))
    expect(fetcher).not.toHaveBeenCalled()
    expect(FakeEventSource.instances).toHaveLength(0)
    expect(screen.getByText('none idle')).toBeTruthy()

    await act(async () => {
      restore.resolve(snapshot([[['user', '1'], 'restored']], { lastEventId: '77-0' }))
      await restore.promise
    })
    await screen.findByText('restored idle')
    expect(fetcher).not.toHaveBeenCalled()
    expect(FakeEventSource.last.url).toBe('/cache/events?since=77-0')
  })

  it('discards an expired save through removeClient', async () => {
    const persister: Persister = {
      persistClient: vi.fn(),
      restoreClient: () =>
        Promise.resolve(snapshot([[['user', '1'], 'old']], { timestamp: Date.now() - 5000 })),
      removeClient: vi.fn(() => Promise.resolve()),
    }
    const seen: unknown[] = []
    mount({ persist: { persister, maxAge: 1000 } }, <User id="1" seen={seen} />)
    await screen.findByText('fetched 1')
    expect(persister.removeClient).toHaveBeenCalled()
    expect(seen).not.toContain('old')
  })

  it('starts without the save when restoring fails', async () => {
    const persister: Persister = {
      persistClient: vi.fn(),
      restoreClient: () => Promise.reject(new Error('unreadable')),
      removeClient: vi.fn(),
    }
    const seen: unknown[] = []
    mount({ persist: { persister } }, <User id="1" seen={seen} />)
    await screen.findByText('fetched 1')
    expect(persister.removeClient).toHaveBeenCalled()
  })

  it("works with TanStack's own sync storage persister", async () => {
    const persister = createSyncStoragePersister({
      storage: localStorage,
      key: 'tanstack',
      throttleTime: 0,
    })
    localStorage.setItem('tanstack', JSON.stringify(snapshot([[['user', '1'], 'by tanstack']])))
    const seen: unknown[] = []
    const { unmount } = mount(
      { persist: { persister, throttleTime: 0 } },
      <User id="3" seen={seen} />,
    )
    await screen.findByText('fetched 3')
    unmount()
    await waitFor(() => expect(savedKeys(stored(localStorage, 'tanstack'))).toContain('user:3'))
    expect(savedKeys(stored(localStorage, 'tanstack'))).toContain('user:1')
  })
})

describe('persist with events', () => {
  function mountWithEvents(seen: unknown[], props: Partial<CacheProviderProps> = {}) {
    return mount(
      { persist: {}, eventsUrl: '/cache/events', eventSource: FakeEventSource, ...props },
      <User id="1" seen={seen} />,
    )
  }

  it('saves the last event id with the cache', async () => {
    const seen: unknown[] = []
    const { unmount } = mountWithEvents(seen)
    await screen.findByText('fetched 1')
    FakeEventSource.last.emit('invalidate', { kind: 'key', keys: ['user:9'] }, '1717-3')
    unmount()
    expect(stored()?.lastEventId).toBe('1717-3')
  })

  it('saves a new event id even when the event covered no query', async () => {
    vi.useFakeTimers({ shouldAdvanceTime: true })
    const seen: unknown[] = []
    mountWithEvents(seen)
    await screen.findByText('fetched 1')
    act(() => vi.advanceTimersByTime(1000))
    expect(stored()?.lastEventId).toBeUndefined()
    FakeEventSource.last.emit('invalidate', { kind: 'tags', tags: ['x'] }, '5-0')
    act(() => vi.advanceTimersByTime(1000))
    expect(stored()?.lastEventId).toBe('5-0')
  })

  it('resumes the stream from the saved id, keeping the restored data fresh', async () => {
    localStorage.setItem(
      KEY,
      JSON.stringify(snapshot([[['user', '1'], 'saved 1']], { lastEventId: '42-0' })),
    )
    const seen: unknown[] = []
    mountWithEvents(seen, { staleTime: 60_000 })
    expect(FakeEventSource.last.url).toBe('/cache/events?since=42-0')
    expect(seen[0]).toBe('saved 1')
    await new Promise((resolve) => setTimeout(resolve, 20))
    expect(screen.getByText('saved 1')).toBeTruthy()
    // The replayed invalidation reaches the restored query.
    FakeEventSource.last.emit('invalidate', { kind: 'key', keys: ['user:1'] }, '43-0')
    await screen.findByText('fetched 1')
  })

  it('ignores a saved id that is not an event id', async () => {
    localStorage.setItem(
      KEY,
      JSON.stringify(snapshot([[['user', '1'], 'saved 1']], { lastEventId: 'x&y' })),
    )
    const seen: unknown[] = []
    mountWithEvents(seen, { staleTime: 60_000 })
    expect(FakeEventSource.last.url).toBe('/cache/events')
    await screen.findByText('fetched 1')
  })

  it('marks restored data stale when there is no id to resume from', async () => {
    localStorage.setItem(KEY, JSON.stringify(snapshot([[['user', '1'], 'saved 1']])))
    const seen: unknown[] = []
    mountWithEvents(seen, { staleTime: 60_000 })
    expect(seen[0]).toBe('saved 1')
    expect(FakeEventSource.last.url).toBe('/cache/events')
    await screen.findByText('fetched 1')
  })

  it('trusts restored data within staleTime when events are off', async () => {
    localStorage.setItem(KEY, JSON.stringify(snapshot([[['user', '1'], 'saved 1']])))
    const fetcher = vi.fn(() => Promise.resolve('fetched'))
    function View() {
      const { data } = useCachedQuery(['user', '1'], fetcher)
      return <p>{String(data)}</p>
    }
    mount({ persist: {}, staleTime: 60_000 }, <View />)
    await new Promise((resolve) => setTimeout(resolve, 20))
    expect(fetcher).not.toHaveBeenCalled()
    expect(screen.getByText('saved 1')).toBeTruthy()
  })
})
