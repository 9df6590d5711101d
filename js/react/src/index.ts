export { CacheProvider, useCacheEvents } from './provider'
export type { CacheProviderProps, StaleTime } from './provider'
export { useCachedQuery, useInvalidate } from './hooks'
export type { CachedQueryOptions, InvalidateFilters } from './hooks'
export { cachedFetch, createCachedFetch, HttpError } from './cachedFetch'
export type { CachedFetch, CachedFetchOptions } from './cachedFetch'
export { eventCovers, logicalKey, parseCacheEvent } from './keys'
export type { CacheEvent, CacheEventKind } from './keys'
export type {
  CacheEventsState,
  CacheEventsStatus,
  EventSourceConstructor,
  EventSourceLike,
  ReconnectOptions,
} from './events'
export type { PersistedClient, Persister, PersistOptions, StorageLike } from './persist'
