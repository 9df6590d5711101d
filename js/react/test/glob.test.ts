import { describe, expect, it } from 'vitest'
import { compileGlob } from '../src/glob'

function matches(pattern: string, text: string): boolean {
  const test = compileGlob(pattern)
  if (test === null) throw new Error(`pattern ${pattern} did not compile`)
  return test(text)
}

describe('compileGlob (Redis rules)', () => {
  it.each([
    ['user:*', 'user:42', true],
    ['user:*', 'user:', true],
    ['user:*', 'users:42', false],
    ['*', '', true],
    ['*:42', 'user:42', true],
    ['*:42', 'user:420', false],
    ['u*r:4*', 'user:42', true],
    ['user:4?', 'user:42', true],
    ['user:4?', 'user:4', false],
    ['user:4?', 'user:421', false],
    ['user:[123]', 'user:2', true],
    ['user:[123]', 'user:4', false],
    ['user:[a-c]', 'user:b', true],
    ['user:[a-c]', 'user:d', false],
    ['user:[c-a]', 'user:b', true],
    ['user:[^a]', 'user:b', true],
    ['user:[^a]', 'user:a', false],
    ['user:[^a-c]', 'user:b', false],
    ['user:[^a-c]', 'user:z', true],
    ['user:\\*', 'user:*', true],
    ['user:\\*', 'user:4', false],
    ['user:\\?', 'user:?', true],
    ['user:\\[1]', 'user:[1]', true],
    ['user:[\\]]', 'user:]', true],
    ['user:[\\-]', 'user:-', true],
    ['user:[\\-]', 'user:a', false],
    ['user:[]', 'user:a', false],
    ['user:[^]', 'user:a', true],
    ['a**b', 'ab', true],
    ['a**b', 'axxb', true],
    ['*a*b', 'xaxxb', true],
    ['*a*b', 'xbxa', false],
    ['user:42', 'user:42', true],
    ['user:42', 'user:421', false],
  ])('%s against %s is %s', (pattern, text, expected) => {
    expect(matches(pattern, text)).toBe(expected)
  })

  it('counts UTF-8 bytes as Redis does, not UTF-16 units', () => {
    // 'é' is two bytes: one '?' does not cover it, two do.
    expect(matches('user:?', 'user:é')).toBe(false)
    expect(matches('user:??', 'user:é')).toBe(true)
    expect(matches('user:é*', 'user:éa')).toBe(true)
    expect(matches('[^a]??', 'é')).toBe(false)
  })

  it('refuses what the server refuses', () => {
    expect(compileGlob('user:[abc')).toBeNull()
    expect(compileGlob('user:\\')).toBeNull()
    expect(compileGlob('user:[a-é]')).toBeNull()
  })

  it('stays linear on patterns that make regular expressions backtrack', () => {
    const text = 'a'.repeat(5000)
    const started = performance.now()
    expect(matches('*a*a*a*a*a*a*a*a*b', text)).toBe(false)
    expect(performance.now() - started).toBeLessThan(1000)
  })
})
