/**
 * A small pool of hash workers (hash-worker.ts) so that reading and hashing
 * files never runs on the main thread's event loop; the pool mechanics are
 * the shared WorkerPool's.
 *
 * It must never interpret results (the caller maps failures to error codes)
 * and never touch the content library.
 */
import os from 'node:os';
import { WorkerPool } from '../shared/worker-pool.ts';
import type { HashReply, HashTask } from './hash-worker.ts';

export type { HashFailure, HashReply, HashSuccess } from './hash-worker.ts';

export class HashPool {
  readonly #pool: WorkerPool<Omit<HashTask, 'id'>, HashReply>;

  constructor(size = Math.min(4, os.availableParallelism())) {
    this.#pool = new WorkerPool(new URL('./hash-worker.ts', import.meta.url), 'hash', size);
  }

  get size(): number {
    return this.#pool.size;
  }

  /**
   * Hashes one file in a worker. Resolves with the worker's reply (success or
   * a per-file failure); rejects only when the worker itself died or the pool
   * was closed.
   */
  hashFile(source: string, opts: { temp?: string } = {}): Promise<HashReply> {
    return this.#pool.run({ source, temp: opts.temp });
  }

  /** Stops every worker and rejects queued and running tasks. */
  close(): Promise<void> {
    return this.#pool.close();
  }
}

let shared: HashPool | undefined;

/** The process's pool of min(4, available parallelism) hash workers, created on first use. */
export function sharedHashPool(): HashPool {
  if (!shared) shared = new HashPool();
  return shared;
}
