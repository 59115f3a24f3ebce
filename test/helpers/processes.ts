/**
 * Test helpers that run Cairn the way an administrator does: real `cairn`
 * processes on loopback, real files, the admin API over HTTP. Waiting is
 * always on a condition, polled with a bound; the bound is a safety net, not
 * a timing assertion.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after } from 'node:test';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CAIRN_BIN = path.join(ROOT, 'bin', 'cairn.js');

export async function tempDir(prefix: string): Promise<string> {
  return fsp.mkdtemp(path.join(os.tmpdir(), `cairn-${prefix}-`));
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

export async function waitFor<T>(what: string, probe: () => Promise<T | undefined | false>, limitMs = 120_000): Promise<T> {
  const deadline = Date.now() + limitMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export interface Proc {
  readonly child: ChildProcess;
  readonly output: () => string;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

/** `CAIRN_PROFILE_DIR=DIR` makes every long-running role write a V8 CPU profile there when it exits (for bench/). */
const PROFILE_ARGS = process.env['CAIRN_PROFILE_DIR'] ? ['--cpu-prof', `--cpu-prof-dir=${process.env['CAIRN_PROFILE_DIR']}`] : [];

/** Starts `cairn ARGS…` as a long-running process; its output is collected, `kill` waits for it to exit. */
export function startCairn(args: string[], env: NodeJS.ProcessEnv = {}): Proc & { readonly exited: Promise<number | null> } {
  const child = spawn(process.execPath, [...PROFILE_ARGS, CAIRN_BIN, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    child,
    exited,
    output: () => out,
    async kill(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
}

/** Starts a role that prints "listening on URL" (`cairn upstream`, `sup`, `mp`) and resolves with its URL once it does. */
export async function startListening(args: string[]): Promise<Proc & { readonly url: string; readonly pid: number }> {
  const proc = startCairn(args);
  const url = await waitFor(`cairn ${args[0]} to listen\n${proc.output()}`, async () => {
    if (proc.child.exitCode !== null) throw new Error(`cairn ${args[0]} exited: ${proc.output()}`);
    return /listening on (http:\/\/\S+)/.exec(proc.output())?.[1];
  }, 60_000);
  return { ...proc, url, pid: proc.child.pid! };
}

/**
 * For a test file's top level: `cleanups` run after the file's tests, last
 * added first; `track` adds a process to be killed (SIGKILL) then.
 */
export function afterTests(): { cleanups: (() => Promise<void>)[]; track: <T extends Pick<Proc, 'kill'>>(p: T) => T } {
  const cleanups: (() => Promise<void>)[] = [];
  after(async () => {
    for (const c of cleanups.reverse()) await c();
  });
  return {
    cleanups,
    track: (p) => {
      cleanups.push(() => p.kill('SIGKILL'));
      return p;
    },
  };
}

export interface SiteProc extends Proc {
  readonly url: string;
  readonly token: string;
  readonly dataDir: string;
}

/**
 * Starts `cairn start`. The machine's own client agent is left out (`--no-agent`) unless `extraArgs`
 * has `--agent`: most tests want a site with only the clients they make.
 */
export async function startSite(dataDir: string, extraArgs: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<SiteProc> {
  // Test sites do not sync this machine's apt lists unless a test asks (env CAIRN_NO_DEFAULT_UPSTREAM: '0'),
  // and run no client agent unless a test passes --agent.
  const proc = startCairn(['start', '--data', dataDir, '--port', '0', ...(extraArgs.includes('--agent') ? [] : ['--no-agent']), ...extraArgs], { CAIRN_NO_DEFAULT_UPSTREAM: '1', ...env });
  const url = await waitFor(`the site to start\n${proc.output()}`, async () => {
    if (proc.child.exitCode !== null) throw new Error(`site exited: ${proc.output()}`);
    return /admin API:\s+(http:\/\/\S+)/.exec(proc.output())?.[1];
  }, 60_000);
  const token = (await fsp.readFile(path.join(dataDir, 'admin.token'), 'utf8')).trim();
  return { ...proc, url, token, dataDir };
}

export interface DpProc extends Proc {
  readonly url: string;
  readonly port: number;
  readonly dataDir: string;
}

export async function startDp(dataDir: string, port: number, key: string, name = 'dp'): Promise<DpProc> {
  const proc = startCairn(['dp', '--data', dataDir, '--port', String(port), '--key', key, '--name', name]);
  await waitFor(`DP ${name} to listen\n${proc.output()}`, async () => {
    if (proc.child.exitCode !== null) throw new Error(`DP exited: ${proc.output()}`);
    return /listening on/.test(proc.output());
  }, 60_000);
  return { ...proc, url: `http://127.0.0.1:${port}`, port, dataDir };
}

/** Runs `cairn ARGS…` as a user would, returning exit code and output. */
export async function runCairn(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [CAIRN_BIN, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number>((resolve) => child.once('exit', (c) => resolve(c ?? -1)));
  return { code, stdout, stderr };
}

/** Runs `cairn admin …` against `site` as a user would, returning exit code and output. */
export async function cli(site: { url: string; token: string }, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return runCairn(['admin', ...args], { CAIRN_URL: site.url, CAIRN_TOKEN: site.token });
}

/** Registers a DP named `name` with the site on a free loopback port and starts it with its data in `dataDir`. */
export async function addDp(site: { url: string; token: string }, dataDir: string, name: string): Promise<DpProc> {
  const port = await freePort();
  const added = await cli(site, ['dp', 'add', '--name', name, '--url', `http://127.0.0.1:${port}`]);
  if (added.code !== 0) throw new Error(`cairn admin dp add ${name} failed: ${added.stderr}`);
  return startDp(dataDir, port, added.stdout.trim(), name);
}

export async function api<T>(site: { url: string; token: string }, method: string, route: string, body?: unknown): Promise<{ status: number; json: T }> {
  const res = await fetch(`${site.url}${route}`, {
    method,
    headers: { authorization: `Bearer ${site.token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, json: (await res.json()) as T };
}

export async function sha256File(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of fs.createReadStream(file)) h.update(chunk as Buffer);
  return h.digest('hex').toUpperCase();
}

/** Every file under `dir`, as '/'-separated relative paths. */
export async function listFiles(dir: string, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await fsp.readdir(path.join(dir, prefix), { withFileTypes: true })) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...(await listFiles(dir, rel)));
    else out.push(rel);
  }
  return out.sort();
}

/** The issue's test tree: nested folders, an empty file, a large file, names with spaces and non-ASCII characters. */
export async function makeTree(dir: string, largeBytes = 50 * 1024 * 1024): Promise<void> {
  await fsp.mkdir(path.join(dir, 'nested', 'deeper', 'deepest'), { recursive: true });
  await fsp.mkdir(path.join(dir, 'empty folder'), { recursive: true });
  await fsp.mkdir(path.join(dir, 'données été'), { recursive: true });
  await fsp.writeFile(path.join(dir, 'empty.txt'), '');
  await fsp.writeFile(path.join(dir, 'readme with spaces.txt'), 'hello, distribution point\n');
  await fsp.writeFile(path.join(dir, 'données été', 'résumé – 日本語.txt'), 'non-ASCII names travel too\n');
  await fsp.writeFile(path.join(dir, 'nested', 'deeper', 'deepest', 'config.json'), JSON.stringify({ a: 1 }));
  for (let i = 0; i < 20; i += 1) await fsp.writeFile(path.join(dir, 'nested', `small-${i}.dat`), `file ${i}\n`.repeat(i * 50 + 1));
  // Two files with the same bytes: stored and sent once.
  await fsp.writeFile(path.join(dir, 'nested', 'deeper', 'copy-a.bin'), Buffer.alloc(4096, 7));
  await fsp.writeFile(path.join(dir, 'copy-b.bin'), Buffer.alloc(4096, 7));
  const fd = await fsp.open(path.join(dir, 'large file.bin'), 'w');
  const block = Buffer.alloc(1024 * 1024);
  for (let written = 0; written < largeBytes; written += block.length) {
    for (let i = 0; i < block.length; i += 4) block.writeUInt32LE((written + i) * 2654435761 >>> 0, i);
    await fd.write(block, 0, Math.min(block.length, largeBytes - written));
  }
  await fd.close();
}

export async function readLog(dataDir: string, name: string): Promise<string> {
  try {
    return await fsp.readFile(path.join(dataDir, 'logs', `${name}.log`), 'utf8');
  } catch {
    return '';
  }
}
