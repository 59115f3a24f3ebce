/**
 * A small pool of worker threads running one TypeScript module, for work
 * that must stay off the main thread's event loop (hashing files, parsing
 * state-message files). Tasks and replies carry an `id`; the pool fills it in.
 *
 * The pool owns its worker threads: it starts them lazily, gives each one
 * task at a time, keeps a worker referenced only while it has a task (an idle
 * pool never keeps the process alive) and replaces a worker that dies. A
 * worker failure rejects only the task that worker was running.
 *
 * Loading a TypeScript worker: Cairn runs its sources through tsx, but on
 * Node 20 the loader hooks that `--import tsx` registers do not reach worker
 * threads, so `new Worker(new URL('./x.ts', import.meta.url))` fails with
 * ERR_UNKNOWN_FILE_EXTENSION (verified on Node 20.20). Each worker therefore
 * starts from a two-line bootstrap that registers tsx inside the worker and
 * then imports the module.
 */
import { Worker } from 'node:worker_threads';

function workerBootstrap(moduleUrl: URL): string {
  const tsx = import.meta.resolve('tsx/esm/api');
  return `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(moduleUrl.href)}); });`;
}

interface Job<Task, Reply> {
  readonly task: Task;
  readonly resolve: (r: Reply) => void;
  readonly reject: (e: Error) => void;
}

interface Slot<Task, Reply> {
  readonly worker: Worker;
  job: (Job<Task, Reply> & { readonly id: number }) | undefined;
}

export class WorkerPool<Task extends object, Reply extends { readonly id: number }> {
  readonly size: number;
  readonly #moduleUrl: URL;
  /** Names the threads and the pool in errors, e.g. `hash`. */
  readonly #name: string;
  readonly #slots: Slot<Task, Reply>[] = [];
  readonly #queue: Job<Task, Reply>[] = [];
  #nextId = 1;
  #closed = false;

  constructor(moduleUrl: URL, name: string, size: number) {
    if (!Number.isInteger(size) || size < 1) throw new Error(`pool size must be a positive integer, got ${size}`);
    this.#moduleUrl = moduleUrl;
    this.#name = name;
    this.size = size;
  }

  /** Runs one task in a worker; rejects only when the worker died or the pool was closed. */
  run(task: Task): Promise<Reply> {
    if (this.#closed) return Promise.reject(new Error(`the ${this.#name} pool is closed`));
    return new Promise<Reply>((resolve, reject) => {
      this.#queue.push({ task, resolve, reject });
      this.#dispatch();
    });
  }

  /**
   * Starts every worker now instead of at the first tasks, so a process's
   * first task does not wait for a worker (and its module loading) to start.
   * Idle workers do not keep the process alive.
   */
  warm(noop: Task): void {
    if (this.#closed) return;
    // One no-op task per worker, all at once: each starts a worker, and a worker that has answered does not keep the process alive.
    for (let i = this.#slots.filter((s) => s.job === undefined).length; i < this.size; i++) this.run(noop).catch(() => undefined);
  }

  /** Stops every worker and rejects queued and running tasks. */
  async close(): Promise<void> {
    this.#closed = true;
    const err = new Error(`the ${this.#name} pool is closed`);
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
      const job = this.#queue.shift() as Job<Task, Reply>;
      const running = { ...job, id: this.#nextId++ };
      slot.job = running;
      slot.worker.ref();
      slot.worker.postMessage({ ...running.task, id: running.id });
    }
  }

  #spawn(): Slot<Task, Reply> {
    const worker = new Worker(workerBootstrap(this.#moduleUrl), { eval: true, name: `cairn-${this.#name}` });
    const slot: Slot<Task, Reply> = { worker, job: undefined };
    worker.unref();
    worker.on('message', (reply: Reply) => {
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
    worker.on('exit', (code) => fail(new Error(`${this.#name} worker exited with code ${code}`)));
    this.#slots.push(slot);
    return slot;
  }
}
