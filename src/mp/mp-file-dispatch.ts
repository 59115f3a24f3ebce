/**
 * MPFDM, the MP file dispatch manager of a remote MP (spec 00; spec 30 §4
 * step 2; UC22): moves the files the MP wrote into its own outboxes to the
 * site server over authenticated HTTP (src/mp/mp-dispatch-receiver.ts), and
 * logs each as the seed does: "Moved file <outbox file> to <site>…".
 *
 * Nothing is lost while the site is down: a file is deleted only after the
 * site answered 200 (it is then in the site's inbox). Files go oldest first;
 * when the site cannot be reached or answers with a server error, the pass
 * stops and the next one waits for the backoff below. A file the site
 * refuses as invalid (400 `CAIRN_MP_FILE_INVALID`) goes to the outbox's
 * `bad/` folder so it never blocks the good ones.
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import { createComponentLog } from '../shared/cmtrace-log.ts';
import type { ComponentLog } from '../shared/cmtrace-log.ts';
import { listInboxFiles, removeInboxFile } from '../shared/inbox.ts';
import { WorkLoop } from '../shared/work-loop.ts';
import { signRelayRequest } from './state-relay.ts';
import { DISPATCH_EXTENSION, MP_NAME_HEADER } from './mp-dispatch-receiver.ts';
import type { DispatchKind } from './mp-dispatch-receiver.ts';

export const MPFDM_COMPONENT = 'SMS_MP_FILE_DISPATCH_MANAGER';

/**
 * Seconds to wait after the n-th failure in a row: quick at first (a site
 * restart takes seconds), then at most a minute, so a site that comes back
 * gets its files within a minute and a site that is gone is not hammered.
 */
const RETRY_SECONDS = [1, 2, 5, 10, 20, 30, 60] as const;

export interface MpFileDispatchOptions {
  readonly siteUrl: string;
  readonly mpName: string;
  readonly key: string;
  readonly outboxes: Readonly<Record<DispatchKind, string>>;
  readonly logDir: string;
  readonly rescanMs?: number;
  readonly echo?: boolean;
}

export class MpFileDispatch {
  readonly log: ComponentLog;
  readonly #opts: MpFileDispatchOptions;
  readonly #loop: WorkLoop;
  #failures = 0;
  #retryAt = 0;

  constructor(opts: MpFileDispatchOptions) {
    this.#opts = { ...opts, siteUrl: opts.siteUrl.replace(/\/+$/, '') };
    this.log = createComponentLog({ dir: opts.logDir, name: 'MPFDM', component: MPFDM_COMPONENT, echo: opts.echo ?? false });
    this.#loop = new WorkLoop({ log: this.log, inboxes: Object.values(opts.outboxes), rescanMs: opts.rescanMs ?? 1000, work: () => this.#pass() });
  }

  start(): void {
    this.log.info(`${MPFDM_COMPONENT} started; management point ${this.#opts.mpName}; site ${this.#opts.siteUrl}; outboxes ${Object.values(this.#opts.outboxes).join(', ')}.`);
    this.#loop.start();
  }

  wake(): void {
    this.#loop.wake();
  }

  async stop(): Promise<void> {
    await this.#loop.stop();
  }

  async #pass(): Promise<void> {
    if (Date.now() < this.#retryAt) return;
    for (const [kind, dir] of Object.entries(this.#opts.outboxes) as [DispatchKind, string][]) {
      for (const name of await listInboxFiles(dir, DISPATCH_EXTENSION[kind])) {
        if (!(await this.#send(kind, dir, name))) return;
      }
    }
  }

  /** Sends one file; false when the pass must stop and back off. */
  async #send(kind: DispatchKind, dir: string, name: string): Promise<boolean> {
    const file = path.join(dir, name);
    let body: Buffer;
    try {
      body = await fsp.readFile(file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return true;
      throw err;
    }
    const route = `/mp/v1/dispatch/${kind}/${encodeURIComponent(name)}`;
    let status: number;
    let answer: string;
    try {
      const res = await fetch(`${this.#opts.siteUrl}${route}`, {
        method: 'POST',
        headers: { authorization: signRelayRequest(this.#opts.key, 'POST', route, body), [MP_NAME_HEADER]: this.#opts.mpName, 'content-type': 'application/octet-stream' },
        body: new Uint8Array(body),
      });
      status = res.status;
      answer = await res.text();
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      return this.#backoff(`cannot reach the site server ${this.#opts.siteUrl} (${cause?.code ?? cause?.message ?? (err as Error).message})`, file);
    }
    if (status === 200) {
      await removeInboxFile(file);
      this.log.info(`Moved file ${file} to ${this.#opts.siteUrl} (${kind} inbox) ${name}`);
      if (this.#failures) this.log.info(`The site server answers again after ${this.#failures} failed attempts.`);
      this.#failures = 0;
      return true;
    }
    let code = '';
    try {
      code = (JSON.parse(answer) as { code?: string }).code ?? '';
    } catch {
      /* not JSON */
    }
    if (status === 400 && code === 'CAIRN_MP_FILE_INVALID') {
      const bad = path.join(dir, 'bad');
      await fsp.mkdir(bad, { recursive: true });
      await fsp.rename(file, path.join(bad, name));
      this.log.error(`The site server refused ${file} as invalid (${answer.slice(0, 300)}); moved it to ${bad}.`);
      return true;
    }
    return this.#backoff(`the site server answered ${status} ${code || answer.slice(0, 200)}${status === 401 ? ' (is this MP registered with `cairn admin mp add` and started with its key?)' : ''}`, file);
  }

  #backoff(why: string, file: string): false {
    const wait = RETRY_SECONDS[Math.min(this.#failures, RETRY_SECONDS.length - 1)]!;
    this.#failures += 1;
    this.#retryAt = Date.now() + wait * 1000;
    this.log.warn(`Could not move ${file}: ${why}; attempt ${this.#failures}, will retry in ${wait} seconds. The file stays in the outbox.`);
    return false;
  }
}
