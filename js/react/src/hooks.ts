import {
  useQuery,
  useQueryClient,
  type DefaultError,
  type InvalidateQueryFilters,
  type QueryFunction,
  type QueryKey,
  type UseQueryOptions,
  type UseQueryResult,
} from '@tanstack/react-query'
import { useCallback, useContext } from 'react'
import { DefaultsContext } from './provider'

/**
 * TanStack's `useQuery` options, less the key and function (given as arguments), plus
 * `ttl`: how long, in ms, an unused result stays in memory (TanStack's `gcTime`).
 */
export type CachedQueryOptions<
  TQueryFnData = unknown,
  TError = DefaultError,
  TData = TQueryFnData,
  TQueryKey extends QueryKey = QueryKey,
> = Omit<UseQueryOptions<TQueryFnData, TError, TData, TQueryKey>, 'queryKey' | 'queryFn'> & {
  ttl?: number
}

/**
 * `useQuery` under the seed's names: `ttl` is `gcTime`, and the provider's `staleTime` and
 * `ttl` are the defaults. Revalidation on mount, focus, reconnect and interval is TanStack's.
 */
export function useCachedQuery<
  TQueryFnData = unknown,
  TError = DefaultError,
  TData = TQueryFnData,
  TQueryKey extends QueryKey = QueryKey,
>(
  key: TQueryKey,
  fetcher: QueryFunction<TQueryFnData, TQueryKey>,
  options: CachedQueryOptions<TQueryFnData, TError, TData, TQueryKey> = {},
): UseQueryResult<TData, TError> {
  const defaults = useContext(DefaultsContext)
  const { ttl, ...rest } = options
  const gcTime = ttl ?? rest.gcTime ?? defaults.ttl
  const staleTime = rest.staleTime ?? defaults.staleTime
  // An option set to undefined would override the client's own default, so absent stays absent.
  return useQuery<TQueryFnData, TError, TData, TQueryKey>({
    ...rest,
    ...(gcTime !== undefined && { gcTime }),
    ...(staleTime !== undefined && { staleTime }),
    queryKey: key,
    queryFn: fetcher,
  })
}

/** Invalidate filters other than the key, e.g. `{ exact: true }` or `{ refetchType: 'all' }`. */
export type InvalidateFilters = Omit<InvalidateQueryFilters, 'queryKey'>

/**
 * A function that invalidates the queries whose key starts with the given parts
 * (`['user', '42']`, or `['user']` for all of them), every query without a key.
 */
export function useInvalidate(): (key?: QueryKey, filters?: InvalidateFilters) => Promise<void> {
  const client = useQueryClient()
  return useCallback(
    (key?: QueryKey, filters?: InvalidateFilters) =>
      client.invalidateQueries(key === undefined ? filters : { ...filters, queryKey: key }),
    [client],
  )
}
