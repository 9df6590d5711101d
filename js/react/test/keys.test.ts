import { describe, expect, it } from 'vitest'
import { eventCovers, eventScope, logicalKey, parseCacheEvent, type CacheEvent } from '../src/keys'

describe('logicalKey', () => {
  it('joins the parts with colons after String()', () => {
    expect(logicalKey(['user', '42'])).toBe('user:42')
    expect(logicalKey(['user', 42])).toBe('user:42')
    expect(logicalKey(['user:42'])).toBe('user:42')
    expect(logicalKey(['flag', true, null])).toBe('flag:true:null')
    expect(logicalKey([])).toBe('')
  })
})

describe('parseCacheEvent', () => {
  it('reads every kind the server sends', () => {
    const frames: CacheEvent[] = [
      { kind: 'key', keys: ['user:42'], time: 1, origin: 'o' },
      { kind: 'keys', keys: ['user:1', 'user:2'] },
      { kind: 'pattern', pattern: 'user:4*' },
      { kind: 'namespace', namespace: 'user' },
      { kind: 'clear' },
      { kind: 'tags', tags: ['t'] },
      { kind: 'reset', replayed: true },
    ]
    for (const frame of frames) expect(parseCacheEvent(JSON.stringify(frame))).toEqual(frame)
  })

  it.each([
    ['not json', '{'],
    ['not an object', '42'],
    ['null', 'null'],
    ['an unknown kind', '{"kind":"later"}'],
    ['no kind', '{"keys":["user:1"]}'],
    ['a key event without keys', '{"kind":"key"}'],
    ['keys that are not strings', '{"kind":"keys","keys":[1]}'],
    ['a pattern event without a pattern', '{"kind":"pattern"}'],
    ['a namespace event without a namespace', '{"kind":"namespace","namespace":""}'],
  ])('reads %s as a reset', (_name, data) => {
    expect(parseCacheEvent(data)).toEqual({ kind: 'reset' })
  })
})

describe('eventScope and eventCovers', () => {
  const key = (keys: string[]): CacheEvent => ({ kind: 'key', keys })

  it('a key event covers exactly the queries of that logical key', () => {
    const event = key(['user:42'])
    expect(eventCovers(event, ['user', '42'])).toBe(true)
    expect(eventCovers(event, ['user', 42])).toBe(true)
    expect(eventCovers(event, ['user:42'])).toBe(true)
    expect(eventCovers(event, ['user', '4'])).toBe(false)
    expect(eventCovers(event, ['user', '42', 'posts'])).toBe(false)
    expect(eventCovers(event, ['user'])).toBe(false)
  })

  it('a keys event covers each of its keys', () => {
    const event: CacheEvent = { kind: 'keys', keys: ['user:1', 'project:9'] }
    expect(eventCovers(event, ['user', 1])).toBe(true)
    expect(eventCovers(event, ['project', '9'])).toBe(true)
    expect(eventCovers(event, ['user', 9])).toBe(false)
    expect(eventScope({ kind: 'keys', keys: [] })).toBe('none')
  })

  it('a namespace event covers the namespace and everything under it', () => {
    const event: CacheEvent = { kind: 'namespace', namespace: 'user' }
    expect(eventCovers(event, ['user'])).toBe(true)
    expect(eventCovers(event, ['user', '42'])).toBe(true)
    expect(eventCovers(event, ['user', '42', 'posts'])).toBe(true)
    expect(eventCovers(event, ['user:42'])).toBe(true)
    expect(eventCovers(event, ['users', '42'])).toBe(false)
    expect(eventCovers(event, ['project', 'user'])).toBe(false)
  })

  it('a pattern event is a Redis glob over the joined key', () => {
    const event: CacheEvent = { kind: 'pattern', pattern: 'user:4*' }
    expect(eventCovers(event, ['user', '42'])).toBe(true)
    expect(eventCovers(event, ['user', 4, 'x'])).toBe(true)
    expect(eventCovers(event, ['user', '52'])).toBe(false)
    const any: CacheEvent = { kind: 'pattern', pattern: '*:42' }
    expect(eventCovers(any, ['project', 42])).toBe(true)
    const set: CacheEvent = { kind: 'pattern', pattern: 'user:[^1]' }
    expect(eventCovers(set, ['user', 2])).toBe(true)
    expect(eventCovers(set, ['user', 1])).toBe(false)
  })

  it('a pattern that does not compile covers everything', () => {
    expect(eventScope({ kind: 'pattern', pattern: 'user:[' })).toBe('all')
  })

  it('clear and reset cover everything', () => {
    expect(eventScope({ kind: 'clear' })).toBe('all')
    expect(eventScope({ kind: 'reset' })).toBe('all')
    expect(eventCovers({ kind: 'clear' }, ['anything'])).toBe(true)
  })

  it('a tag covers the query of its key and every query below it', () => {
    const event: CacheEvent = { kind: 'tags', tags: ['user:42'] }
    expect(eventCovers(event, ['user', '42'])).toBe(true)
    expect(eventCovers(event, ['user', 42, 'posts'])).toBe(true)
    expect(eventCovers(event, ['user', '421'])).toBe(false)
    expect(eventCovers(event, ['user'])).toBe(false)
    expect(eventScope({ kind: 'tags', tags: [] })).toBe('none')
  })
})
