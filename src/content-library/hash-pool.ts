/**
 * A small pool of hash workers (hash-worker.ts) so that reading and hashing
 * files never runs on the main thread's event loop.
 *
 * The pool owns its worker threads: it starts them lazily, gives each one
 * task at a time, keeps a worker referenced only while it has a task (an idle
 * pool never keeps the process alive) and replaces a worker that dies. A
 * worker failure rejects only the task that worker was running.
 *
 * It must never interpret results (the caller maps failures to error codes)
 * and never touch the content library.
 *
 * Loading a TypeScript worker: Cairn runs its sources through tsx, but on
 * Node 20 the loader hooks that `--import tsx` registers do not reach worker
 * threads, so `new Worker(new URL('./hash-worker.ts', import.meta.url))`
 * fails with ERR_UNKNOWN_FILE_EXTENSION (verified on Node 20.20). Each worker
 * therefore starts from a two-line bootstrap that registers tsx inside the
 * worker and then imports hash-worker.ts.
 */
import os from 'node:os';
import { Worker } from 'node:worker_threads';
import type { HashReply, HashTask } from './hash-worker.ts';

export type { HashFailure, HashReply, HashSuccess } from './hash-worker.ts';

const WORKER_URL = new URL('./hash-worker.ts', import.meta.url);

function workerBootstrap(): string {
  const tsx = import.meta.resolve('tsx/esm/api');
  return `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(WORKER_URL.href)}); });`;
}

interface Job {
  readonly task: Omit<HashTask, 'id'>;
  readonly resolve: (r: HashReply) => void;
  readonly reject: (e: Error) => void;
}

interface Slot {
  readonly worker: Worker;
  job: (Job & { readonly id: number }) | undefined;
}

export class HashPool {
  readonly size: number;
  readonly #slots: Slot[] = [];
  readonly #queue: Job[] = [];
  #nextId = 1;
  #closed = false;

  constructor(size = Math.min(4, os.availableParallelism())) {
    if (!Number.isInteger(size) || size < 1) throw new Error(`pool size must be a positive integer, got ${size}`);
    this.size = size;
  }

  /**
   * Hashes one file in a worker. Resolves with the worker's reply (success or
   * a per-file failure); rejects only when the worker itself died or the pool
   * was closed.
   */
  hashFile(source: string, opts: { temp?: string } = {}): Promise<HashReply> {
    if (this.#closed) return Promise.reject(new Error('the hash pool is closed'));
    return new Promise<HashReply>((resolve, reject) => {
      this.#queue.push({ task: { source, temp: opts.temp }, resolve, reject });
      this.#dispatch();
    });
  }

  /** Stops every worker and rejects queued and running tasks. */
  async close(): Promise<void> {
    this.#closed = true;
    const err = new Error('the hash pool is closed');
    for (const job of this.#queue.splice(0)) job.reject(err);
    const slots = this.#slots.splice(0);
    for (const slot of slots) {
      slot.job?.reject(err);
      slot.job = undefined;
    }
    await Promise.all(slots.map((s) => s.worker.terminate()));
  }

  #dispatch(): void {
    while (this.#queue.length > 0) {
      let slot = this.#slots.find((s) => s.job === undefined);
      if (!slot) {
        if (this.#slots.length >= this.size) return;
        slot = this.#spawn();
      }
      const job = this.#queue.shift() as Job;
      const running = { ...job, id: this.#nextId++ };
      slot.job = running;
      slot.worker.ref();
      slot.worker.postMessage({ ...running.task, id: running.id } satisfies HashTask);
    }
  }

  #spawn(): Slot {
    const worker = new Worker(workerBootstrap(), { eval: true, name: 'cairn-hash' });
    const slot: Slot = { worker, job: undefined };
    worker.unref();
    worker.on('message', (reply: HashReply) => {
      const job = slot.job;
      if (!job || job.id !== reply.id) return;
      slot.job = undefined;
      worker.unref();
      job.resolve(reply);
      this.#dispatch();
    });
    const fail = (err: Error): void => {
      const i = this.#slots.indexOf(slot);
      if (i === -1) return;
      this.#slots.splice(i, 1);
      const job = slot.job;
      slot.job = undefined;
      void worker.terminate();
      job?.reject(err);
      if (!this.#closed) this.#dispatch();
    };
    worker.on('error', (err) => fail(err));
    worker.on('exit', (code) => fail(new Error(`hash worker exited with code ${code}`)));
    this.#slots.push(slot);
    return slot;
  }
}

let shared: HashPool | undefined;

/** The process's pool of min(4, available parallelism) hash workers, created on first use. */
export function sharedHashPool(): HashPool {
  if (!shared) shared = new HashPool();
  return shared;
}
