/**
 * One timer for every client of an agent process: a min-heap of due times
 * and a single `setTimeout` for the earliest. Five thousand simulated clients
 * with three schedules each cost fifteen thousand heap entries, not fifteen
 * thousand Node timers. Due tasks run through one concurrency limit, so that
 * clients whose times coincide queue instead of opening a thousand sockets.
 *
 * A task's error is the task's to log; the scheduler only makes sure one
 * failing task never stops the others.
 */
import { Limiter } from '../shared/limit.ts';

interface Entry {
  due: number;
  seq: number;
  run: () => Promise<void>;
  cancelled: boolean;
}

export interface ScheduledTask {
  cancel(): void;
}

/** A delay spread by ±`fraction` at random, so that clients drift apart instead of moving in step. */
export function jitter(ms: number, fraction = 0.1): number {
  return Math.max(0, Math.round(ms * (1 - fraction + 2 * fraction * Math.random())));
}

export class Scheduler {
  readonly #heap: Entry[] = [];
  readonly #limit: Limiter;
  #seq = 0;
  #timer: NodeJS.Timeout | undefined;
  #timerDue = Infinity;
  #stopped = false;
  readonly #running = new Set<Promise<void>>();

  constructor(concurrency = 32) {
    this.#limit = new Limiter(concurrency);
  }

  get size(): number {
    return this.#heap.length;
  }

  /** Runs `run` after `delayMs`. */
  at(delayMs: number, run: () => Promise<void>): ScheduledTask {
    const e: Entry = { due: Date.now() + Math.max(0, delayMs), seq: (this.#seq += 1), run, cancelled: false };
    this.#push(e);
    this.#arm();
    return {
      cancel: () => {
        e.cancelled = true;
      },
    };
  }

  /** Stops firing and waits for the tasks already running. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#heap.length = 0;
    await Promise.allSettled([...this.#running]);
  }

  #arm(): void {
    if (this.#stopped) return;
    const top = this.#heap[0];
    if (!top) return;
    if (this.#timer && this.#timerDue <= top.due) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timerDue = top.due;
    // setTimeout's limit is about 24.8 days; longer waits re-arm on wake-up.
    this.#timer = setTimeout(() => this.#fire(), Math.min(Math.max(0, top.due - Date.now()), 2 ** 31 - 1));
  }

  #fire(): void {
    this.#timer = undefined;
    this.#timerDue = Infinity;
    const now = Date.now();
    while (this.#heap[0] && this.#heap[0].due <= now) {
      const e = this.#pop()!;
      if (e.cancelled) continue;
      const p: Promise<void> = this.#limit
        .run(async () => {
          if (!this.#stopped) await e.run();
        })
        .catch(() => undefined)
        .finally(() => this.#running.delete(p));
      this.#running.add(p);
    }
    this.#arm();
  }

  #less(a: Entry, b: Entry): boolean {
    return a.due < b.due || (a.due === b.due && a.seq < b.seq);
  }

  #push(e: Entry): void {
    const h = this.#heap;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.#less(h[i]!, h[p]!)) break;
      [h[i], h[p]] = [h[p]!, h[i]!];
      i = p;
    }
  }

  #pop(): Entry | undefined {
    const h = this.#heap;
    const top = h[0];
    const last = h.pop();
    if (h.length && last) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && this.#less(h[l]!, h[m]!)) m = l;
        if (r < h.length && this.#less(h[r]!, h[m]!)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m]!, h[i]!];
        i = m;
      }
    }
    return top;
  }
}
