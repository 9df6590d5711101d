// Redis glob patterns, matched the way Redis (and chenu-cache's Python side) match them.
//
// Redis compares bytes, so `?` and a `[...]` set each consume one UTF-8 byte: `user:?`
// does not match `user:é`. Matching the UTF-16 string instead would make the browser
// invalidate a different set of queries than the server invalidated keys.

const STAR = 0 as const
type ByteTest = (byte: number) => boolean
type Token = typeof STAR | ByteTest

const encoder = new TextEncoder()

const BACKSLASH = 0x5c

function literal(expected: number): ByteTest {
  return (byte) => byte === expected
}

// Returns null for patterns the Python side refuses (an unclosed `[`, a trailing lone
// `\`, a range with a non-ASCII end): such a pattern cannot have come from chenu-cache,
// and the caller decides what an unreadable pattern covers.
function tokenize(pattern: Uint8Array): Token[] | null {
  const tokens: Token[] = []
  const n = pattern.length
  let i = 0
  while (i < n) {
    const c = pattern[i]!
    if (c === 0x2a) {
      // Consecutive stars mean the same as one; collapsing them keeps matching linear.
      if (tokens[tokens.length - 1] !== STAR) tokens.push(STAR)
      i += 1
    } else if (c === 0x3f) {
      tokens.push(() => true)
      i += 1
    } else if (c === 0x5b) {
      const parsed = bracket(pattern, i + 1)
      if (parsed === null) return null
      tokens.push(parsed.test)
      i = parsed.next
    } else if (c === BACKSLASH) {
      if (i + 1 >= n) return null
      tokens.push(literal(pattern[i + 1]!))
      i += 2
    } else {
      tokens.push(literal(c))
      i += 1
    }
  }
  return tokens
}

function bracket(pattern: Uint8Array, start: number): { test: ByteTest; next: number } | null {
  const n = pattern.length
  let i = start
  const negate = pattern[i] === 0x5e
  if (negate) i += 1
  const singles = new Set<number>()
  const ranges: Array<[number, number]> = []
  for (;;) {
    if (i >= n) return null
    const c = pattern[i]!
    if (c === BACKSLASH && n - i >= 2) {
      singles.add(pattern[i + 1]!)
      i += 2
    } else if (c === 0x5d) {
      i += 1
      break
    } else if (n - i >= 3 && pattern[i + 1] === 0x2d) {
      const end = pattern[i + 2]!
      if (c > 0x7f || end > 0x7f) return null
      // Redis accepts a range written backwards (`[z-a]`) and means the same set.
      ranges.push(c <= end ? [c, end] : [end, c])
      i += 3
    } else {
      singles.add(c)
      i += 1
    }
  }
  const inSet = (byte: number): boolean =>
    singles.has(byte) || ranges.some(([low, high]) => byte >= low && byte <= high)
  // `[]` matches nothing and `[^]` any byte, as in Redis.
  return { test: negate ? (byte) => !inSet(byte) : inSet, next: i }
}

// Every token but the star consumes exactly one byte, so backtracking to the last star
// alone is exact; it is O(key × pattern) where a regular expression could go exponential
// on patterns such as `*a*a*a*b`.
function run(tokens: readonly Token[], text: Uint8Array): boolean {
  let t = 0
  let i = 0
  let starToken = -1
  let starText = 0
  while (i < text.length) {
    const token = tokens[t]
    if (token !== undefined && token !== STAR && token(text[i]!)) {
      t += 1
      i += 1
    } else if (token === STAR) {
      starToken = t
      starText = i
      t += 1
    } else if (starToken >= 0) {
      t = starToken + 1
      starText += 1
      i = starText
    } else {
      return false
    }
  }
  while (tokens[t] === STAR) t += 1
  return t === tokens.length
}

/**
 * Compile a Redis glob into a predicate over strings, or return `null` when the pattern
 * is malformed (unclosed `[`, trailing `\`, non-ASCII range end).
 */
export function compileGlob(pattern: string): ((text: string) => boolean) | null {
  const tokens = tokenize(encoder.encode(pattern))
  if (tokens === null) return null
  return (text) => run(tokens, encoder.encode(text))
}
