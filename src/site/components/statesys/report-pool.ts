/**
 * A small pool of report workers (report-worker.ts): the state system hands
 * it `.SMX` files and gets typed reports back, parsed off the event loop.
 * The pool mechanics are the shared WorkerPool's.
 */
import { WorkerPool } from '../../../shared/worker-pool.ts';
import type { ReportReply, ReportTask } from './report-worker.ts';

export class ReportPool {
  readonly #pool: WorkerPool<Omit<ReportTask, 'id'>, ReportReply>;

  constructor(size: number) {
    this.#pool = new WorkerPool(new URL('./report-worker.ts', import.meta.url), 'statesys', size);
  }

  get size(): number {
    return this.#pool.size;
  }

  /** Reads and parses one file in a worker; rejects only when the worker died or the pool was closed. */
  parse(file: string, maxBytes: number, now: number): Promise<ReportReply> {
    return this.#pool.run({ file, maxBytes, now });
  }

  close(): Promise<void> {
    return this.#pool.close();
  }
}
