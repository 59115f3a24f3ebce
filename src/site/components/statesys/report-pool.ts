/**
 * A small pool of report workers (report-worker.ts): the state system hands
 * it `.SMX` files and gets typed reports back, parsed off the event loop.
 * Same habits as the content library's hash pool: workers start lazily, one
 * task each at a time, are referenced only while busy, and a dead worker is
 * replaced and fails only its own task. Workers load TypeScript through a tsx
 * bootstrap (see hash-pool.ts for why).
 */
import { Worker } from 'node:worker_threads';
import type { ReportReply, ReportTask } from './report-worker.ts';

const WORKER_URL = new URL('./report-worker.ts', import.meta.url);

function workerBootstrap(): string {
  const tsx = import.meta.resolve('tsx/esm/api');
  return `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(WORKER_URL.href)}); });`;
}

interface Job {
  readonly task: Omit<ReportTask, 'id'>;
  readonly resolve: (r: ReportReply) => void;
  readonly reject: (e: Error) => void;
}

interface Slot {
  readonly worker: Worker;
  job: (Job & { readonly id: number }) | undefined;
}

export class ReportPool {
  readonly size: number;
  readonly #slots: Slot[] = [];
  readonly #queue: Job[] = [];
  #nextId = 1;
  #closed = false;

  constructor(size: number) {
    if (!Number.isInteger(size) || size < 1) throw new Error(`pool size must be a positive integer, got ${size}`);
    this.size = size;
  }

  /** Reads and parses one file in a worker; rejects only when the worker died or the pool was closed. */
  parse(file: string, maxBytes: number, now: number): Promise<ReportReply> {
    if (this.#closed) return Promise.reject(new Error('the report pool is closed'));
    return new Promise<ReportReply>((resolve, reject) => {
      this.#queue.push({ task: { file, maxBytes, now }, resolve, reject });
      this.#dispatch();
    });
  }

  async close(): Promise<void> {
    this.#closed = true;
    const err = new Error('the report pool is closed');
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
      slot.worker.postMessage({ ...running.task, id: running.id } satisfies ReportTask);
    }
  }

  #spawn(): Slot {
    const worker = new Worker(workerBootstrap(), { eval: true, name: 'cairn-statesys' });
    const slot: Slot = { worker, job: undefined };
    worker.unref();
    worker.on('message', (reply: ReportReply) => {
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
    worker.on('exit', (code) => fail(new Error(`report worker exited with code ${code}`)));
    this.#slots.push(slot);
    return slot;
  }
}
