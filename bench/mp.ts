/**
 * Benchmark (issue 4, part 9): the management point's policy-assignment and
 * content-location requests per second from N simulated clients (default
 * 5,000), with p50 and p99 latency, next to a minimal HTTP handler on the
 * same server (the same fastify instance, a trivial route), measured in the
 * same run. Not a test; never gates CI. Target: the MP at least 30 % of the
 * minimal handler's rate.
 *
 * Usage: `npm run bench:mp [-- --clients 5000 --requests 20000 --concurrency 64]`
 *
 * Set-up (not timed): an all-in-one site in this process (SQLite, its own
 * DP, no agent) makes the real data: N clients register through the MP's
 * register route with their own Ed25519 keys (approved automatically), the
 * policy provider maps the ClientSettings policy and a ContentDeployment to
 * all of them, a package is distributed to the DP, and a boundary group
 * holds the clients' addresses and the DP. Then the site is closed and the
 * server measured is a fastify instance with the MP plugin (as `cairn mp`
 * and `cairn start` mount it) plus `GET /bench/minimal`, on the same
 * database.
 *
 * The load comes from a child process (this file with `--load`), so that
 * client work does not run on the server's thread: keep-alive HTTP, a fixed
 * number of requests in flight, every request signed beforehand (each with
 * its own nonce: the MP refuses replays), clients taken in turn. Phases:
 * minimal (after a warm-up); sessions: every client opens its session
 * (ADR 0012) with one Ed25519-signed X25519 exchange, as the agent does,
 * timed and reported on its own; assignments and location, each after a
 * warm-up, every request under its client's session (HMAC), as the agent
 * sends them; minimal again.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import http from 'node:http';
import inspector from 'node:inspector';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Fastify from 'fastify';
import { createPublicKey } from 'node:crypto';
import { SESSION_ROUTE, acceptSessionReply, newClientId, newKeyPair, newSessionOffer, signClientRequest, signSessionRequest } from '../src/shared/client-auth.ts';
import type { ClientSession, SessionOffer } from '../src/shared/client-auth.ts';
import { startSite } from '../src/site/site-server.ts';
import { openDatabase } from '../src/datastore/engine.ts';
import { managementPoint } from '../src/mp/management-point.ts';
import { createMpLogs } from '../src/mp/mp-logs.ts';
import { loadSiteSigningKey } from '../src/mp/site-signing-key.ts';
import { MP_PREFIX } from '../src/mp/state-relay.ts';
import { intOption } from './options.ts';

const args = process.argv.slice(2);
const opt = (name: string, fallback: number): number => intOption(name, fallback, args);

interface BenchClient {
  clientId: string;
  privateKey: string;
  ip: string;
}

interface PhaseResult {
  name: string;
  requests: number;
  errors: number;
  seconds: number;
  perSecond: number;
  p50ms: number;
  p99ms: number;
  /** The phase's start and end on the monotonic clock, in µs (the same clock as a V8 CPU profile's timestamps). */
  startUs: number;
  endUs: number;
  /** CPU time (user + system) of the load generator during the phase, in µs. */
  loadCpuUs: number;
  /** CPU time of the server during the phase, in µs (measured by the parent), and the part of it spent in the kernel. */
  serverCpuUs?: number;
  serverSysUs?: number;
}

const ASSIGNMENTS = '/mp/v1/policy/assignments';
const LOCATION = '/mp/v1/location/content';
const MINIMAL = '/bench/minimal';

// --- the load generator (child process) -------------------------------------

async function runLoad(): Promise<void> {
  const url = new URL(args[args.indexOf('--url') + 1]!);
  const clients = JSON.parse(fs.readFileSync(args[args.indexOf('--clients-file') + 1]!, 'utf8')) as BenchClient[];
  const pkg = args[args.indexOf('--package') + 1]!;
  const siteKey = createPublicKey(fs.readFileSync(args[args.indexOf('--site-key') + 1]!, 'utf8'));
  const sessions = new Map<string, ClientSession>();
  const requests = opt('--requests', 20_000);
  const concurrency = opt('--concurrency', 64);
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });

  type Req = { method: 'GET' | 'POST'; path: string; body: string; headers: Record<string, string>; clientId?: string; offer?: SessionOffer };
  const build = (kind: string, k: number): Req => {
    const c = clients[k % clients.length]!;
    if (kind === 'minimal') return { method: 'GET', path: MINIMAL, body: '', headers: {} };
    if (kind === 'session') {
      const offer = newSessionOffer();
      const body = JSON.stringify({ clientKey: offer.clientKey });
      return { method: 'POST', path: SESSION_ROUTE, body, headers: { authorization: signClientRequest(c.clientId, c.privateKey, 'POST', SESSION_ROUTE, body), 'content-type': 'application/json' }, clientId: c.clientId, offer };
    }
    const s = sessions.get(c.clientId);
    if (!s) throw new Error(`no session for ${c.clientId}`);
    if (kind === 'assignments') return { method: 'GET', path: ASSIGNMENTS, body: '', headers: { authorization: signSessionRequest(c.clientId, s.sessionId, s.key, 'GET', ASSIGNMENTS, '') } };
    const body = JSON.stringify({ packageId: pkg, version: 1, ipAddresses: [c.ip] });
    return { method: 'POST', path: LOCATION, body, headers: { authorization: signSessionRequest(c.clientId, s.sessionId, s.key, 'POST', LOCATION, body), 'content-type': 'application/json' } };
  };
  type Res = { status: number; body?: Buffer; signature?: string };
  const one = (r: Req): Promise<Res> =>
    new Promise((resolve) => {
      const req = http.request({ host: url.hostname, port: url.port, method: r.method, path: r.path, agent, headers: { ...r.headers, ...(r.body ? { 'content-length': String(Buffer.byteLength(r.body)) } : {}) } }, (res) => {
        if (!r.offer) {
          res.resume();
          res.on('end', () => resolve({ status: res.statusCode ?? 0 }));
          return;
        }
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks), signature: String(res.headers['x-cairn-signature'] ?? '') }));
      });
      req.on('error', () => resolve({ status: 0 }));
      req.end(r.body || undefined);
    });
  const phase = async (name: string, kind: string, n: number, offset: number): Promise<PhaseResult> => {
    // Signed before the clock starts: signing is the client's work, not the MP's.
    const list = Array.from({ length: n }, (_, k) => build(kind, offset + k));
    const replies: Res[] = [];
    const lat = new Float64Array(n);
    let next = 0;
    let errors = 0;
    const cpu0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        for (;;) {
          const k = next++;
          if (k >= n) return;
          const s = process.hrtime.bigint();
          const r = await one(list[k]!);
          lat[k] = Number(process.hrtime.bigint() - s) / 1e6;
          if (r.status !== 200) errors += 1;
          replies[k] = r;
        }
      }),
    );
    const t1 = process.hrtime.bigint();
    const cpu = process.cpuUsage(cpu0);
    const seconds = Number(t1 - t0) / 1e9;
    // The client's side of the exchange (checking the site's signature, X25519), after the clock stopped: it is the client's work.
    list.forEach((r, k) => {
      const reply = replies[k];
      if (r.offer && r.clientId && reply?.status === 200 && reply.body) sessions.set(r.clientId, acceptSessionReply(r.offer, r.clientId, reply.body, reply.signature, siteKey));
    });
    const sorted = Array.from(lat).sort((a, b) => a - b);
    const pct = (p: number): number => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
    return { name, requests: n, errors, seconds, perSecond: n / seconds, p50ms: pct(50), p99ms: pct(99), startUs: Number(t0 / 1000n), endUs: Number(t1 / 1000n), loadCpuUs: cpu.user + cpu.system };
  };
  const warm = Math.min(2000, requests);
  const results: PhaseResult[] = [];
  let offset = 0;
  for (const [name, kind] of [['minimal handler', 'minimal'], ['session opening', 'session'], ['policy assignments', 'assignments'], ['content location', 'location'], ['minimal handler (again)', 'minimal']] as const) {
    if (kind === 'session') {
      // One session per client, as agents open them; no warm-up (a second session would replace the first).
      results.push(await phase(name, kind, clients.length, 0));
      if (sessions.size !== clients.length) throw new Error(`only ${sessions.size} of ${clients.length} clients got a session`);
      continue;
    }
    await phase(`${name} (warm-up)`, kind, warm, offset);
    offset += warm;
    results.push(await phase(name, kind, requests, offset));
    offset += requests;
  }
  agent.destroy();
  process.stdout.write(`${JSON.stringify(results)}\n`);
}

// --- the server and the set-up (parent) ---------------------------------------

async function api<T>(base: string, token: string, method: string, route: string, body?: unknown): Promise<T> {
  const res = await fetch(`${base}${route}`, { method, headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  const json = (await res.json()) as T;
  if (!res.ok) throw new Error(`${method} ${route}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

async function until(what: string, probe: () => Promise<boolean>, limitMs = 600_000): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

function ipOf(k: number): string {
  const n = (10 << 24) + (20 << 16) + 1 + k;
  return [24, 16, 8, 0].map((s) => String((n >>> s) & 255)).join('.');
}

async function main(): Promise<void> {
  const clientCount = opt('--clients', 5000);
  const work = await fsp.mkdtemp(path.join(os.tmpdir(), 'cairn-bench-mp-'));
  const dataDir = path.join(work, 'site');
  process.stdout.write(`bench:mp — ${clientCount} clients; data in ${work}\n`);

  // 1. Real data through the real site.
  const site = await startSite({ dataDir, port: 0, localDp: true, agent: false });
  const token = fs.readFileSync(site.paths.adminToken, 'utf8').trim();
  const base = site.adminUrl;
  const source = path.join(work, 'source');
  await fsp.mkdir(source, { recursive: true });
  await fsp.writeFile(path.join(source, 'setup.sh'), '#!/bin/sh\necho hello\n');
  await fsp.writeFile(path.join(source, 'tool.bin'), Buffer.alloc(100_000, 7));
  const pkg = await api<{ packageId: string }>(base, token, 'POST', '/api/v1/packages', { name: 'Bench', source, priority: 'medium' });
  await api(base, token, 'POST', `/api/v1/packages/${pkg.packageId}/distribute`, { distributionPoints: ['local'] });
  await until('the package on the DP', async () => (await api<{ distributionPoints: { status: number }[] }>(base, token, 'GET', `/api/v1/packages/${pkg.packageId}/status`)).distributionPoints.every((d) => d.status === 3));
  await api(base, token, 'POST', '/api/v1/boundary-groups', { name: 'Bench' });
  await api(base, token, 'POST', '/api/v1/boundary-groups/Bench/boundaries', { type: 'subnet', value: '10.20.0.0/16' });
  await api(base, token, 'POST', '/api/v1/boundary-groups/Bench/distribution-points', { dp: 'local' });
  await api(base, token, 'POST', `/api/v1/packages/${pkg.packageId}/deploy`, { collection: 'All Clients' });

  const t0 = Date.now();
  const clients: BenchClient[] = [];
  const regAgent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  for (let k = 0; k < clientCount; k += 1) {
    const keys = newKeyPair();
    clients.push({ clientId: newClientId(), privateKey: keys.privateKey, ip: ipOf(k) });
    (clients[k] as BenchClient & { publicKey?: string }).publicKey = keys.publicKey;
  }
  let nextReg = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      for (;;) {
        const k = nextReg++;
        if (k >= clients.length) return;
        const c = clients[k] as BenchClient & { publicKey: string };
        const body = JSON.stringify({ clientId: c.clientId, name: `SIM-${String(k + 1).padStart(5, '0')}`, publicKey: c.publicKey, ipAddresses: [c.ip], osFamily: 'linux', osVersion: 'simulated', agentVersion: '0.1.0' });
        const res = await fetch(`${base}/mp/v1/register`, { method: 'POST', headers: { authorization: signClientRequest(c.clientId, c.privateKey, 'POST', '/mp/v1/register', body), 'content-type': 'application/json' }, body });
        const j = (await res.json()) as { status?: string };
        if (j.status !== 'approved') throw new Error(`registration of ${c.clientId}: ${res.status} ${JSON.stringify(j)}`);
      }
    }),
  );
  regAgent.destroy();
  process.stdout.write(`registered and approved ${clientCount} clients in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
  const db = site.database.db;
  await until('every client to get its two assignments', async () => {
    const r = await db.selectFrom('ResPolicyMap').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
    return Number(r.n) >= clientCount * 2;
  });
  process.stdout.write(`the policy provider mapped ClientSettings and the deployment to every client after ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
  const databaseUrl = `sqlite:${site.paths.sqlite}`;
  await site.close();

  // 2. The server measured: the MP plugin and a trivial route on one fastify instance.
  const database = openDatabase(databaseUrl);
  const app = Fastify({ logger: false });
  app.get(MINIMAL, async () => ({ ok: true }));
  await app.register(managementPoint, {
    prefix: MP_PREFIX,
    db: database.db,
    siteCode: 'CS1',
    signingKey: loadSiteSigningKey(site.paths.siteSigningKey),
    logs: createMpLogs(path.join(work, 'bench-mp-logs')),
    relay: { statesysIncoming: path.join(work, 'in-state'), statmsgs: path.join(work, 'in-status'), onStateFile: () => undefined, onStatusFile: () => undefined },
    onClientChanged: async () => undefined,
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const address = app.server.address();
  const url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  const clientsFile = path.join(work, 'clients.json');
  const sitePublicKeyFile = path.join(work, 'site-key.pem');
  await fsp.writeFile(sitePublicKeyFile, loadSiteSigningKey(site.paths.siteSigningKey).publicKeyPem);
  await fsp.writeFile(clientsFile, JSON.stringify(clients.map(({ clientId, privateKey, ip }) => ({ clientId, privateKey, ip }))));

  // 3. The load, from a child process. CAIRN_BENCH_PROFILE=FILE writes the server's CPU profile of the load phases only.
  const profileFile = process.env['CAIRN_BENCH_PROFILE'];
  const session = profileFile ? new inspector.Session() : undefined;
  const post = (method: string, params?: object): Promise<unknown> => new Promise((resolve, reject) => session!.post(method, params ?? {}, (err, r) => (err ? reject(err) : resolve(r))));
  if (session) {
    session.connect();
    await post('Profiler.enable');
    await post('Profiler.start');
  }
  // The server's CPU time, sampled every 20 ms on the same clock as the phases: CPU per request is what a shared machine's scheduler does not blur.
  const cpuSamples: { atUs: number; cpuUs: number; sysUs: number }[] = [];
  const sampleCpu = (): void => {
    const u = process.cpuUsage();
    cpuSamples.push({ atUs: Number(process.hrtime.bigint() / 1000n), cpuUs: u.user + u.system, sysUs: u.system });
  };
  sampleCpu();
  const cpuTimer = setInterval(sampleCpu, 20);
  const child = spawn(process.execPath, [...process.execArgv.filter((a) => !a.startsWith('--cpu-prof')), fileURLToPath(import.meta.url), '--load', '--url', url, '--clients-file', clientsFile, '--package', pkg.packageId, '--site-key', sitePublicKeyFile, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  clearInterval(cpuTimer);
  sampleCpu();
  if (session) {
    const { profile } = (await post('Profiler.stop')) as { profile: unknown };
    await fsp.writeFile(profileFile!, JSON.stringify(profile));
    session.disconnect();
    process.stdout.write(`the server's CPU profile of the load phases: ${profileFile}\n`);
  }
  await app.close();
  await database.destroy();
  if (code !== 0) throw new Error(`the load generator exited with ${code}`);
  const results = JSON.parse(out.trim().split('\n').pop()!) as PhaseResult[];
  const cpuAt = (us: number, field: 'cpuUs' | 'sysUs'): number => {
    const k = cpuSamples.findIndex((x) => x.atUs >= us);
    if (k <= 0) return cpuSamples[k < 0 ? cpuSamples.length - 1 : 0]![field];
    const a = cpuSamples[k - 1]!;
    const b = cpuSamples[k]!;
    return a[field] + ((b[field] - a[field]) * (us - a.atUs)) / Math.max(1, b.atUs - a.atUs);
  };
  for (const r of results) {
    r.serverCpuUs = cpuAt(r.endUs, 'cpuUs') - cpuAt(r.startUs, 'cpuUs');
    r.serverSysUs = cpuAt(r.endUs, 'sysUs') - cpuAt(r.startUs, 'sysUs');
  }
  // The phases' times on the profile's clock, so that a profile can be read phase by phase.
  if (profileFile) await fsp.writeFile(`${profileFile}.phases.json`, JSON.stringify(results.map(({ name, startUs, endUs, requests }) => ({ name, startUs, endUs, requests }))));

  const head = ['phase', 'requests', 'errors', 'req/s', 'p50 ms', 'p99 ms', 'server CPU µs/req (kernel)', 'load CPU µs/req'];
  const rows = results.map((r) => [r.name, String(r.requests), String(r.errors), r.perSecond.toFixed(0), r.p50ms.toFixed(2), r.p99ms.toFixed(2), `${((r.serverCpuUs ?? 0) / r.requests).toFixed(0)} (${((r.serverSysUs ?? 0) / r.requests).toFixed(0)})`, (r.loadCpuUs / r.requests).toFixed(0)]);
  const widths = rows[0]!.map((_, i) => Math.max(...[head, ...rows].map((r) => r[i]!.length)));
  for (const r of [head, ...rows]) process.stdout.write(`${r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ')}\n`);
  const minimal = (results[0]!.perSecond + results[4]!.perSecond) / 2;
  for (const r of results.slice(2, 4)) {
    const pct = (100 * r.perSecond) / minimal;
    process.stdout.write(`${r.name}: ${pct.toFixed(1)} % of the minimal handler's rate (target 30 %): ${pct >= 30 ? 'met' : 'MISSED'}\n`);
  }
  // What the rate would be if the server's CPU were the only limit: the ratio of CPU per request, free of the scheduler's noise.
  const minimalCpu = ((results[0]!.serverCpuUs ?? 0) + (results[4]!.serverCpuUs ?? 0)) / (results[0]!.requests + results[4]!.requests);
  for (const r of results.slice(2, 4)) process.stdout.write(`${r.name}: the server's CPU per request is ${((r.serverCpuUs ?? 0) / r.requests).toFixed(0)} µs, the minimal handler's ${minimalCpu.toFixed(0)} µs (${((100 * minimalCpu * r.requests) / (r.serverCpuUs ?? 1)).toFixed(1)} %)\n`);
  const opening = results[1]!;
  process.stdout.write(`session opening (once per client per hour): ${((100 * opening.perSecond) / minimal).toFixed(1)} % of the minimal handler's rate, ${(1000 / opening.perSecond).toFixed(2)} ms of the server's time per session\n`);
  process.stdout.write(`load average at the end: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}\n`);
  process.stdout.write(`machine: ${os.cpus().length} cores (${os.cpus()[0]?.model ?? '?'}), ${os.platform()} ${os.release()}, Node ${process.versions.node}\n`);
  await fsp.rm(work, { recursive: true, force: true });
}

if (args.includes('--load')) {
  await runLoad();
} else {
  await main();
}
