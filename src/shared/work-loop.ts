/**
 * The loop every component runs: wake on an inbox arrival, an explicit
 * `wake()` or a periodic rescan, run the component's `work()` once, and run it
 * again if it was woken meanwhile. Wakes coalesce, so a burst of inbox files
 * costs one pass. An error in `work()` is logged and the loop carries on:
 * nothing crashes a component (STYLE.md, convention 4).
 */
import { describeError } from './errors.ts';
import type { ComponentLog } from './cmtrace-log.ts';
import { watchInbox } from './inbox.ts';

export interface WorkLoopOptions {
  readonly log: ComponentLog;
  /** Inbox folders to watch; an arrival wakes the loop. */
  readonly inboxes?: readonly string[];
  /** Periodic rescan, in milliseconds. */
  readonly rescanMs: number;
  readonly work: () => Promise<void>;
}

export class WorkLoop {
  readonly #options: WorkLoopOptions;
  #running = false;
  #again = false;
  #stopped = true;
  #timer: NodeJS.Timeout | undefined;
  #unwatch: (() => void)[] = [];
  #idle: Promise<void> = Promise.resolve();

  constructor(options: WorkLoopOptions) {
    this.#options = options;
  }

  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    for (const dir of this.#options.inboxes ?? []) this.#unwatch.push(watchInbox(dir, () => this.wake()));
    this.#timer = setInterval(() => this.wake(), this.#options.rescanMs);
    this.#timer.unref();
    this.wake();
  }

  /** Asks for one more pass of `work()` as soon as possible. */
  wake(): void {
    if (this.#stopped) return;
    if (this.#running) {
      this.#again = true;
      return;
    }
    this.#running = true;
    this.#idle = this.#run();
  }

  async #run(): Promise<void> {
    do {
      this.#again = false;
      try {
        await this.#options.work();
      } catch (err) {
        this.#options.log.error(`Unexpected error, will retry on the next pass: ${describeError(err)}`);
      }
    } while (this.#again && !this.#stopped);
    this.#running = false;
  }

  /** Stops waking and waits for the pass in progress to finish. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearInterval(this.#timer);
    for (const unwatch of this.#unwatch) unwatch();
    this.#unwatch = [];
    await this.#idle;
  }
}
