import { act } from '@testing-library/react'

type Listener = (event: MessageEvent) => void

/** Stands in for the browser's EventSource: the tests drive its lifecycle by hand. */
export class FakeEventSource {
  static instances: FakeEventSource[] = []

  static reset(): void {
    FakeEventSource.instances = []
  }

  static get last(): FakeEventSource {
    const last = FakeEventSource.instances[FakeEventSource.instances.length - 1]
    if (last === undefined) throw new Error('no EventSource was created')
    return last
  }

  readyState = 0
  closed = false
  readonly url: string
  readonly withCredentials: boolean
  private readonly listeners = new Map<string, Set<Listener>>()

  constructor(url: string, init?: { withCredentials?: boolean }) {
    this.url = url
    this.withCredentials = init?.withCredentials ?? false
    FakeEventSource.instances.push(this)
  }

  addEventListener(type: string, listener: Listener): void {
    let set = this.listeners.get(type)
    if (set === undefined) {
      set = new Set()
      this.listeners.set(type, set)
    }
    set.add(listener)
  }

  close(): void {
    this.readyState = 2
    this.closed = true
  }

  private dispatch(type: string, event: MessageEvent): void {
    act(() => {
      for (const listener of this.listeners.get(type) ?? []) listener(event)
    })
  }

  /** The server answered 200 with text/event-stream. */
  open(): void {
    this.readyState = 1
    this.dispatch('open', new MessageEvent('open'))
  }

  /** A frame; `data` is sent as JSON unless it is already a string. */
  emit(type: string, data: unknown, id = ''): void {
    const text = typeof data === 'string' ? data : JSON.stringify(data)
    this.dispatch(type, new MessageEvent(type, { data: text, lastEventId: id }))
  }

  /** A network error (the browser retries) or, with `closed`, a refusal (it gives up). */
  fail(closed: boolean): void {
    this.readyState = closed ? 2 : 0
    this.dispatch('error', new MessageEvent('error'))
  }
}
