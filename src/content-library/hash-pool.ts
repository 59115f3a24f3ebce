/**
 * A small pool of hash workers (hash-worker.ts) so that reading and hashing
 * files never runs on the main thread's event loop; the pool mechanics are
 * the shared WorkerPool's.
 *
 * It must never interpret results (the caller maps failures to error codes)
 * and never decide anything about the content library: the bookkeeping tasks
 * (records.ts) are the content library's, run while it holds their locks.
 */
import os from 'node:os';
import { WorkerPool } from '../shared/worker-pool.ts';
import type { HashChunksReply, HashReply, StoreChunksReply, WorkerReply, WorkerTask } from './hash-worker.ts';
import type { ContentRecordsTask, DropReferencesTask, PrepareRecordsTask, RecordsReply, StoreFilesTask } from './records.ts';

export type { HashChunksReply, HashFailure, HashReply, HashSuccess, StoreChunksReply } from './hash-worker.ts';

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

export class HashPool {
  readonly #pool: WorkerPool<DistributiveOmit<WorkerTask, 'id'>, WorkerReply>;

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
  hashFile(source: string, opts: { temp?: string; chunkDir?: string; skip?: readonly string[]; previous?: readonly (readonly [number, string])[]; only?: 'whole' | 'chunks' } = {}): Promise<HashReply> {
    return this.#pool.run({ source, temp: opts.temp, chunkDir: opts.chunkDir, skip: opts.skip, previous: opts.previous, only: opts.only }) as Promise<HashReply>;
  }

  /** Hashes chunks that arrived in a bundle and stores those that match in `chunkDir` (ChunkLib). */
  storeChunks(chunkDir: string, data: Uint8Array, entries: readonly { hash: string; size: number; start: number }[], replace: boolean): Promise<StoreChunksReply> {
    return this.#pool.run({ kind: 'storeChunks', chunkDir, data, entries, replace }) as Promise<StoreChunksReply>;
  }

  /** Reads chunks in order: the whole file's SHA-256 and, with `perChunk`, what is wrong with each chunk. */
  hashChunks(chunkDir: string, chunks: readonly (readonly [number, string] | readonly [number, string, string, number])[], perChunk: boolean): Promise<HashChunksReply> {
    return this.#pool.run({ kind: 'hashChunks', chunkDir, chunks, perChunk }) as Promise<HashChunksReply>;
  }

  /** Writes a content's per-file bookkeeping in one pass (records.ts); the caller holds the locks. */
  contentRecords(task: Omit<ContentRecordsTask, 'id' | 'kind'>): Promise<RecordsReply> {
    return this.#pool.run({ kind: 'contentRecords', ...task }) as Promise<RecordsReply>;
  }

  /** Writes a content's folder tree, per-file INIs and JSON copy ahead of its files (records.ts); the caller holds the content's lock. */
  prepareRecords(task: Omit<PrepareRecordsTask, 'id' | 'kind'>): Promise<RecordsReply> {
    return this.#pool.run({ kind: 'prepareRecords', ...task }) as Promise<RecordsReply>;
  }

  /** Removes a content from companion lists in one pass (records.ts); the caller holds the locks. */
  dropReferences(task: Omit<DropReferencesTask, 'id' | 'kind'>): Promise<RecordsReply> {
    return this.#pool.run({ kind: 'dropReferences', ...task }) as Promise<RecordsReply>;
  }

  /** Hashes a bundle's files and stores those that match in FileLib (records.ts); the caller holds their hashes' locks. */
  storeFiles(task: Omit<StoreFilesTask, 'id' | 'kind'>): Promise<RecordsReply> {
    return this.#pool.run({ kind: 'storeFiles', ...task }) as Promise<RecordsReply>;
  }

  /** Starts the workers before the first task needs them (a DP's first chunk bundle, say). */
  warm(): void {
    this.#pool.warm({ kind: 'hashChunks', chunkDir: '', chunks: [], perChunk: false });
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
