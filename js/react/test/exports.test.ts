import { describe, expect, it } from 'vitest'
import * as api from '../src'

describe('the public API', () => {
  it('exports exactly these values', () => {
    // A new export is a decision: this list makes it a visible one.
    expect(Object.keys(api).sort()).toEqual([
      'CacheProvider',
      'HttpError',
      'cachedFetch',
      'createCachedFetch',
      'eventCovers',
      'logicalKey',
      'parseCacheEvent',
      'useCacheEvents',
      'useCachedQuery',
      'useInvalidate',
    ])
  })
})
