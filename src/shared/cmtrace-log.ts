/**
 * One CMTrace-format log file per component, the way administrators of this
 * kind of site read them (spec 40, "Logs"): each line is
 *   <![LOG[text]LOG]!><time="HH:MM:SS.mmm+000" date="MM-DD-YYYY" component="X" context="" type="1" thread="N" file="">
 * with type 1 information, 2 warning, 3 error.
 *
 * Size-based rollover: when the file passes `maxBytes`, it is renamed to
 * `<name>.lo_` (replacing the previous one) and a new file is started, as the
 * product does. Writes are synchronous appends so that a line is on disk before
 * the step it describes is reported done; a crash never loses a logged step.
 * This module never throws at its callers: a log that cannot be written is
 * reported once on stderr and the component carries on.
 */
import fs from 'node:fs';
import path from 'node:path';
import { threadId } from 'node:worker_threads';

export const LOG_TYPES = { info: 1, warning: 2, error: 3 } as const;
export type LogType = keyof typeof LOG_TYPES;

export interface ComponentLog {
  readonly component: string;
  readonly file: string;
  info(text: string, thread?: number): void;
  warn(text: string, thread?: number): void;
  error(text: string, thread?: number): void;
}

export interface LogOptions {
  /** Folder holding the logs, e.g. `<data>/logs`. */
  readonly dir: string;
  /** File name without extension, e.g. `distmgr`. */
  readonly name: string;
  /** Component name as in the seeds, e.g. `SMS_DISTRIBUTION_MANAGER`. */
  readonly component: string;
  /** Rollover size; default 5 MiB. */
  readonly maxBytes?: number;
  /** Also echo lines to stdout (for `cairn dp` in the foreground). */
  readonly echo?: boolean;
  /**
   * Keep the file open between lines (closed after a second without one)
   * instead of opening it for every line: a line costs one write instead of
   * open, write and close (about 4 µs instead of 17). Still synchronous: the
   * line is in the file before the call returns. For logs written on every
   * request (the MP's policy and location logs, docs/adr/0013-mp-caches.md).
   */
  readonly keepOpen?: boolean;
}

/** How long a `keepOpen` log keeps its file open after its last line. */
export const KEEP_OPEN_IDLE_MS = 1000;

const pad = (n: number, w = 2): string => String(n).padStart(w, '0');

/** Formats one CMTrace line; exported for tests and for the trace reader. */
export function formatCmtraceLine(text: string, component: string, type: LogType, thread: number, when = new Date()): string {
  const time = `${pad(when.getUTCHours())}:${pad(when.getUTCMinutes())}:${pad(when.getUTCSeconds())}.${pad(when.getUTCMilliseconds(), 3)}+000`;
  const date = `${pad(when.getUTCMonth() + 1)}-${pad(when.getUTCDate())}-${when.getUTCFullYear()}`;
  // A log line must stay one line: newlines inside the text would break readers.
  const safe = text.replace(/\r?\n/g, ' ').replace(/]LOG]!>/g, ']LOG]!&gt;');
  return `<![LOG[${safe}]LOG]!><time="${time}" date="${date}" component="${component}" context="" type="${LOG_TYPES[type]}" thread="${thread}" file="">\n`;
}

export interface ParsedLogLine {
  readonly text: string;
  readonly component: string;
  readonly type: number;
  readonly thread: number;
  readonly time: string;
  readonly date: string;
}

const LINE_RE = /^<!\[LOG\[(.*)\]LOG\]!><time="([^"]*)" date="([^"]*)" component="([^"]*)" context="[^"]*" type="(\d)" thread="(\d+)" file="[^"]*">$/;

export function parseCmtraceLine(line: string): ParsedLogLine | undefined {
  const m = LINE_RE.exec(line);
  if (!m) return undefined;
  return { text: m[1]!, time: m[2]!, date: m[3]!, component: m[4]!, type: Number(m[5]), thread: Number(m[6]) };
}

class FileComponentLog implements ComponentLog {
  readonly component: string;
  readonly file: string;
  readonly #maxBytes: number;
  readonly #echo: boolean;
  readonly #keepOpen: boolean;
  #size = -1;
  #warned = false;
  #fd: number | undefined;
  #lastWrite = 0;
  #idleTimer: NodeJS.Timeout | undefined;

  constructor(options: LogOptions) {
    this.component = options.component;
    this.file = path.join(options.dir, `${options.name}.log`);
    this.#maxBytes = options.maxBytes ?? 5 * 1024 * 1024;
    this.#echo = options.echo ?? false;
    this.#keepOpen = options.keepOpen ?? false;
    fs.mkdirSync(options.dir, { recursive: true });
  }

  info(text: string, thread?: number): void {
    this.#write(text, 'info', thread);
  }
  warn(text: string, thread?: number): void {
    this.#write(text, 'warning', thread);
  }
  error(text: string, thread?: number): void {
    this.#write(text, 'error', thread);
  }

  #write(text: string, type: LogType, thread = threadId): void {
    const line = formatCmtraceLine(text, this.component, type, thread);
    try {
      if (this.#size < 0) this.#size = statSize(this.file);
      if (this.#size + line.length > this.#maxBytes && this.#size > 0) {
        this.#closeFile();
        fs.renameSync(this.file, this.file.replace(/\.log$/, '.lo_'));
        this.#size = 0;
      }
      if (this.#keepOpen) this.#writeOpen(line);
      else fs.appendFileSync(this.file, line);
      this.#size += Buffer.byteLength(line);
    } catch (err) {
      if (!this.#warned) {
        this.#warned = true;
        process.stderr.write(`cairn: cannot write log ${this.file}: ${(err as Error).message}\n`);
      }
    }
    if (this.#echo) process.stdout.write(`${this.component}: ${text}\n`);
  }

  #writeOpen(line: string): void {
    this.#fd ??= fs.openSync(this.file, 'a');
    fs.writeSync(this.#fd, line);
    this.#lastWrite = Date.now();
    if (this.#idleTimer === undefined) this.#idleTimer = setTimeout(() => this.#closeWhenIdle(), KEEP_OPEN_IDLE_MS).unref();
  }

  #closeWhenIdle(): void {
    this.#idleTimer = undefined;
    const idle = Date.now() - this.#lastWrite;
    if (idle >= KEEP_OPEN_IDLE_MS) this.#closeFile();
    else this.#idleTimer = setTimeout(() => this.#closeWhenIdle(), KEEP_OPEN_IDLE_MS - idle).unref();
  }

  #closeFile(): void {
    if (this.#fd === undefined) return;
    const fd = this.#fd;
    this.#fd = undefined;
    try {
      fs.closeSync(fd);
    } catch {
      // Already closed: nothing to keep.
    }
  }
}

function statSize(file: string): number {
  try {
    return fs.statSync(file).size;
  } catch {
    return 0;
  }
}

export function createComponentLog(options: LogOptions): ComponentLog {
  return new FileComponentLog(options);
}
