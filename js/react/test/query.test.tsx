import { focusManager, QueryClient, useQueryClient, type QueryKey } from '@tanstack/react-query'
import { act, cleanup, renderHook, waitFor } from '@testing-library/react'
import type { ReactNode } from 'react'
import { afterEach, describe, expect, expectTypeOf, it, vi } from 'vitest'
import { CacheProvider, useCachedQuery, useInvalidate, type CacheProviderProps } from '../src'

function wrapperFor(props: Partial<CacheProviderProps> = {}) {
  return ({ children }: { children: ReactNode }) => (
    <CacheProvider {...props}>{children}</CacheProvider>
  )
}

function quietClient(): QueryClient {
  return new QueryClient({ defaultOptions: { queries: { retry: false } } })
}

function counter<T>(value: (n: number) => T) {
  let calls = 0
  const fetcher = vi.fn(() => {
    calls += 1
    return Promise.resolve(value(calls))
  })
  return fetcher
}

afterEach(() => {
  cleanup()
  act(() => focusManager.setFocused(undefined))
})

describe('useCachedQuery', () => {
  it("runs the seed's example and returns TanStack's result", async () => {
    const api = { getUser: (id: string) => Promise.resolve({ id, name: 'Ada' }) }
    const userId = '42'
    const { result } = renderHook(
      () =>
        useCachedQuery(['user', userId], () => api.getUser(userId), {
          ttl: 60_000,
          staleTime: 5_000,
          refetchOnWindowFocus: true,
        }),
      { wrapper: wrapperFor() },
    )
    expect(result.current.isLoading).toBe(true)
    await waitFor(() => expect(result.current.isSuccess).toBe(true))
    expect(result.current.data).toEqual({ id: '42', name: 'Ada' })
    expect(result.current.error).toBeNull()
    expect(typeof result.current.refetch).toBe('function')
    expectTypeOf(result.current.data).toEqualTypeOf<{ id: string; name: string } | undefined>()
  })

  it('reports a failing fetcher as error', async () => {
    const { result } = renderHook(
      () => useCachedQuery(['boom'], () => Promise.reject(new Error('nope')), { retry: false }),
      { wrapper: wrapperFor() },
    )
    await waitFor(() => expect(result.current.isError).toBe(true))
    expect(result.current.error?.message).toBe('nope')
    expect(result.current.data).toBeUndefined()
  })

  it('refetch() runs the fetcher again', async () => {
    const fetcher = counter((n) => n)
    const { result } = renderHook(() => useCachedQuery(['n'], fetcher), {
      wrapper: wrapperFor(),
    })
    await waitFor(() => expect(result.current.data).toBe(1))
    await act(() => result.current.refetch())
    await waitFor(() => expect(result.current.data).toBe(2))
  })

  it('hands the fetcher TanStack context (key and abort signal)', async () => {
    const fetcher = vi.fn((context: { queryKey: QueryKey; signal: AbortSignal }) =>
      Promise.resolve(context.queryKey.length),
    )
    const { result } = renderHook(() => useCachedQuery(['a', 'b'], fetcher), {
      wrapper: wrapperFor(),
    })
    await waitFor(() => expect(result.current.data).toBe(2))
    expect(fetcher.mock.calls[0]?.[0].signal).toBeInstanceOf(AbortSignal)
  })

  it('maps ttl onto gcTime', async () => {
    const client = quietClient()
    renderHook(() => useCachedQuery(['t'], () => Promise.resolve(1), { ttl: 1234 }), {
      wrapper: wrapperFor({ client }),
    })
    await waitFor(() => expect(client.getQueryData(['t'])).toBe(1))
    expect(client.getQueryCache().find({ queryKey: ['t'] })?.gcTime).toBe(1234)
  })

  it('removes an unused result after ttl', async () => {
    vi.useFakeTimers({ shouldAdvanceTime: true })
    try {
      const client = quietClient()
      const { unmount } = renderHook(
        () => useCachedQuery(['gone'], () => Promise.resolve(1), { ttl: 1000 }),
        { wrapper: wrapperFor({ client }) },
      )
      await waitFor(() => expect(client.getQueryData(['gone'])).toBe(1))
      unmount()
      act(() => vi.advanceTimersByTime(999))
      expect(client.getQueryData(['gone'])).toBe(1)
      act(() => vi.advanceTimersByTime(2))
      expect(client.getQueryData(['gone'])).toBeUndefined()
    } finally {
      vi.useRealTimers()
    }
  })

  it('passes gcTime through, and prefers ttl when both are given', async () => {
    const client = quietClient()
    renderHook(
      () => {
        useCachedQuery(['g1'], () => Promise.resolve(1), { gcTime: 111 })
        useCachedQuery(['g2'], () => Promise.resolve(1), { gcTime: 111, ttl: 222 })
      },
      { wrapper: wrapperFor({ client }) },
    )
    await waitFor(() => expect(client.getQueryData(['g2'])).toBe(1))
    expect(client.getQueryCache().find({ queryKey: ['g1'] })?.gcTime).toBe(111)
    expect(client.getQueryCache().find({ queryKey: ['g2'] })?.gcTime).toBe(222)
  })

  it('keeps data fresh for staleTime', async () => {
    const { result } = renderHook(
      () => ({
        fresh: useCachedQuery(['fresh'], () => Promise.resolve(1), { staleTime: 60_000 }),
        stale: useCachedQuery(['stale'], () => Promise.resolve(1), { staleTime: 0 }),
      }),
      { wrapper: wrapperFor() },
    )
    await waitFor(() => expect(result.current.stale.isSuccess).toBe(true))
    await waitFor(() => expect(result.current.fresh.isSuccess).toBe(true))
    expect(result.current.fresh.isStale).toBe(false)
    expect(result.current.stale.isStale).toBe(true)
  })

  it('revalidates a stale query on mount, not a fresh one', async () => {
    const client = quietClient()
    const wrapper = wrapperFor({ client })
    for (const [key, staleTime, expected] of [
      ['m-stale', 0, 2],
      ['m-fresh', 60_000, 1],
    ] as const) {
      const fetcher = counter((n) => n)
      const first = renderHook(() => useCachedQuery([key], fetcher, { staleTime }), { wrapper })
      await waitFor(() => expect(first.result.current.data).toBe(1))
      const second = renderHook(() => useCachedQuery([key], fetcher, { staleTime }), { wrapper })
      await waitFor(() => expect(fetcher).toHaveBeenCalledTimes(expected))
      await waitFor(() => expect(second.result.current.data).toBe(expected))
    }
  })

  it('revalidates on window focus unless refetchOnWindowFocus is false', async () => {
    const on = counter((n) => n)
    const off = counter((n) => n)
    const { result } = renderHook(
      () => ({
        on: useCachedQuery(['focus-on'], on, { refetchOnWindowFocus: true }),
        off: useCachedQuery(['focus-off'], off, { refetchOnWindowFocus: false }),
      }),
      { wrapper: wrapperFor() },
    )
    await waitFor(() => expect(result.current.on.data).toBe(1))
    await waitFor(() => expect(result.current.off.data).toBe(1))
    act(() => focusManager.setFocused(false))
    act(() => focusManager.setFocused(true))
    await waitFor(() => expect(result.current.on.data).toBe(2))
    expect(off).toHaveBeenCalledTimes(1)
  })

  it('revalidates every refetchInterval', async () => {
    const fetcher = counter((n) => n)
    const { result } = renderHook(
      () => useCachedQuery(['tick'], fetcher, { refetchInterval: 10 }),
      { wrapper: wrapperFor() },
    )
    await waitFor(() => expect(result.current.data).toBeGreaterThanOrEqual(3))
  })

  it('waits while enabled is false', async () => {
    const fetcher = counter((n) => n)
    const { result, rerender } = renderHook(
      ({ enabled }: { enabled: boolean }) => useCachedQuery(['e'], fetcher, { enabled }),
      { wrapper: wrapperFor(), initialProps: { enabled: false } },
    )
    await new Promise((resolve) => setTimeout(resolve, 20))
    expect(fetcher).not.toHaveBeenCalled()
    expect(result.current.fetchStatus).toBe('idle')
    rerender({ enabled: true })
    await waitFor(() => expect(result.current.data).toBe(1))
  })

  it('passes other TanStack options through (select, retry)', async () => {
    let attempts = 0
    const { result } = renderHook(
      () =>
        useCachedQuery(
          ['pass'],
          () => {
            attempts += 1
            return attempts < 2 ? Promise.reject(new Error('once')) : Promise.resolve([1, 2, 3])
          },
          { retry: 1, retryDelay: 0, select: (items) => items.length },
        ),
      { wrapper: wrapperFor() },
    )
    await waitFor(() => expect(result.current.data).toBe(3))
    expectTypeOf(result.current.data).toEqualTypeOf<number | undefined>()
    expect(attempts).toBe(2)
  })
})

describe('provider defaults', () => {
  it('apply staleTime and ttl to useCachedQuery, even with a given client', async () => {
    const client = quietClient()
    const { result } = renderHook(() => useCachedQuery(['d'], () => Promise.resolve(1)), {
      wrapper: wrapperFor({ client, staleTime: 60_000, ttl: 4321 }),
    })
    await waitFor(() => expect(result.current.isSuccess).toBe(true))
    expect(result.current.isStale).toBe(false)
    expect(client.getQueryCache().find({ queryKey: ['d'] })?.gcTime).toBe(4321)
  })

  it('yield to the options of the call', async () => {
    const client = quietClient()
    const { result } = renderHook(
      () => useCachedQuery(['o'], () => Promise.resolve(1), { staleTime: 0, ttl: 10 }),
      { wrapper: wrapperFor({ client, staleTime: 60_000, ttl: 4321 }) },
    )
    await waitFor(() => expect(result.current.isSuccess).toBe(true))
    expect(result.current.isStale).toBe(true)
    expect(client.getQueryCache().find({ queryKey: ['o'] })?.gcTime).toBe(10)
  })

  it("leave a given client's own defaults alone when unset", async () => {
    const client = new QueryClient({
      defaultOptions: { queries: { staleTime: Infinity, gcTime: 999 } },
    })
    const { result } = renderHook(() => useCachedQuery(['c'], () => Promise.resolve(1)), {
      wrapper: wrapperFor({ client }),
    })
    await waitFor(() => expect(result.current.isSuccess).toBe(true))
    expect(result.current.isStale).toBe(false)
    expect(client.getQueryCache().find({ queryKey: ['c'] })?.gcTime).toBe(999)
  })

  it('become the defaults of the client the provider makes', () => {
    const { result } = renderHook(() => useQueryClient(), {
      wrapper: wrapperFor({ staleTime: 5000, ttl: 7000 }),
    })
    expect(result.current.getDefaultOptions().queries).toEqual({ staleTime: 5000, gcTime: 7000 })
  })

  it('make one client and keep it across renders', () => {
    const { result, rerender } = renderHook(() => useQueryClient(), { wrapper: wrapperFor() })
    const first = result.current
    rerender()
    expect(result.current).toBe(first)
    expect(first.getDefaultOptions().queries).toEqual({})
  })

  it('provide the given client', () => {
    const client = quietClient()
    const { result } = renderHook(() => useQueryClient(), { wrapper: wrapperFor({ client }) })
    expect(result.current).toBe(client)
  })
})

describe('useInvalidate', () => {
  const keys: QueryKey[] = [['user', '42'], ['user', '42', 'posts'], ['user', '43'], ['project']]

  function setup() {
    const client = quietClient()
    for (const key of keys) client.setQueryData(key, 1)
    const { result } = renderHook(() => useInvalidate(), { wrapper: wrapperFor({ client }) })
    const invalidated = () =>
      keys.filter((key) => client.getQueryState(key)?.isInvalidated).map((key) => key.join(':'))
    return { invalidate: result.current, invalidated }
  }

  it('invalidates a key and the keys it prefixes', async () => {
    const { invalidate, invalidated } = setup()
    await act(() => invalidate(['user', '42']))
    expect(invalidated()).toEqual(['user:42', 'user:42:posts'])
  })

  it('invalidates a whole prefix', async () => {
    const { invalidate, invalidated } = setup()
    await act(() => invalidate(['user']))
    expect(invalidated()).toEqual(['user:42', 'user:42:posts', 'user:43'])
  })

  it('takes TanStack filters such as exact', async () => {
    const { invalidate, invalidated } = setup()
    await act(() => invalidate(['user', '42'], { exact: true }))
    expect(invalidated()).toEqual(['user:42'])
  })

  it('invalidates everything without a key', async () => {
    const { invalidate, invalidated } = setup()
    await act(() => invalidate())
    expect(invalidated()).toHaveLength(keys.length)
  })

  it('refetches active queries and resolves when they are done', async () => {
    const fetcher = counter((n) => n)
    const { result } = renderHook(
      () => ({ query: useCachedQuery(['live'], fetcher), invalidate: useInvalidate() }),
      { wrapper: wrapperFor() },
    )
    await waitFor(() => expect(result.current.query.data).toBe(1))
    await act(() => result.current.invalidate(['live']))
    expect(fetcher).toHaveBeenCalledTimes(2)
    await waitFor(() => expect(result.current.query.data).toBe(2))
  })

  it('returns a stable function', () => {
    const { result, rerender } = renderHook(() => useInvalidate(), { wrapper: wrapperFor() })
    const first = result.current
    rerender()
    expect(result.current).toBe(first)
  })
})
