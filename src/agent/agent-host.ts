/**
 * The agent process (`cairn agent`): one client for this machine, or N
 * simulated clients (`--simulate N --facts FILE`), sharing what can be
 * shared so that five thousand fit in one process (issue 4, item 6):
 *
 * - one SQLite store, `<data>/agent.db`, with a ClientID column;
 * - one keep-alive HTTP agent to the MP and one to the DPs;
 * - one scheduler (one timer, one concurrency limit) for every client's
 *   schedules, each spread with jitter;
 * - one set of CMTrace logs in `<data>/logs` (a simulated client's lines
 *   start with `[<name>]`);
 * - one pinned site key, `<data>/site-key.pem`.
 *
 * The real agent keeps its identity in `client.json`/`client.key` (ADR
 * 0005); simulated clients keep theirs in the store's `SimulatedClients`
 * table, stable across restarts. Start-up never waits for the MP: the site
 * key is pinned in the background with the registration backoff, and a key
 * that is refused (`CAIRN_SITE_KEY_CHANGED`, `CAIRN_SITE_KEY_UNTRUSTED`) is
 * fatal, reported through `onFatal`.
 *
 * On-demand work: a file `policy.TRG`, `report.TRG` or `scan.TRG` dropped
 * into `<data>/triggers` (by `cairn agent policy|report|scan --now`) makes
 * every client poll policy, send its messages, or scan, at once.
 *
 * Compliance scans (issue 6, docs/adr/0010-scan-agent.md): one scanner per
 * process (one catalog cache in `<data>/scan-cache`, shared by every client),
 * at most `scanLimit` scans at once; the real agent scans this machine's
 * dpkg database, a simulated client the inventory of its facts entry.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { createComponentLog } from '../shared/cmtrace-log.ts';
import type { ComponentLog } from '../shared/cmtrace-log.ts';
import { describeError, isCairnError } from '../shared/errors.ts';
import { watchInbox } from '../shared/inbox.ts';
import { newClientId, newKeyPair } from '../shared/client-auth.ts';
import { AgentStore } from './agent-store.ts';
import type { SimulatedIdentityRow } from './agent-store.ts';
import { ClientAgent, REGISTRATION_BACKOFF_MS } from './client-agent.ts';
import type { ClientFacts, ClientLogs } from './client-agent.ts';
import type { Machine } from '../catalog/rules.ts';
import { machineFacts, readFactsFile } from './facts.ts';
import { identityFromPem, loadOrCreateIdentity, pinSiteKey } from './identity.ts';
import type { ClientIdentity, SiteKey } from './identity.ts';
import { MpClient, MpTransport } from './mp-client.ts';
import { Scheduler, jitter } from './scheduler.ts';
import { Limiter } from '../shared/limit.ts';
import { createScanner } from './scan/scanner.ts';
import { readLocalInventory } from './scan/inventory.ts';

export const AGENT_VERSION = '0.1.0';
export const TRIGGER_POLICY = 'policy.TRG';
export const TRIGGER_REPORT = 'report.TRG';
/** `cairn agent scan --now` (issue 6; docs/adr/0010-scan-agent.md). */
export const TRIGGER_SCAN = 'scan.TRG';

export interface AgentOptions {
  readonly mpUrl: string;
  readonly dataDir: string;
  readonly siteKeyFingerprint?: string;
  readonly simulate?: { readonly count: number; readonly factsFile: string; readonly spreadSeconds?: number };
  /** Overrides this machine's name (the real agent). */
  readonly name?: string;
  /** The root whose dpkg database and os-release the real agent scans ('/'; tests and labs may point elsewhere). */
  readonly inventoryRoot?: string;
  /** Items per page the scanner asks of update points (default: the protocol's largest, 5,000; tests use small pages). */
  readonly scanPageSize?: number;
  /** Called when the agent cannot go on (a refused site key). */
  readonly onFatal?: (err: unknown) => void;
}

export interface RunningAgent {
  readonly clients: readonly ClientAgent[];
  readonly logsDir: string;
  /** Resolves when the site key is pinned and every client started. */
  readonly ready: Promise<void>;
  pollPolicyNow(): void;
  reportNow(): void;
  scanNow(): void;
  close(): Promise<void>;
}

const LOGS = [
  ['id', 'ClientIDManagerStartup'],
  ['ccm', 'CcmMessaging'],
  ['policy', 'PolicyAgent'],
  ['location', 'LocationServices'],
  ['dts', 'DataTransferService'],
  ['ctm', 'ContentTransferManager'],
  ['state', 'StateMessage'],
  ['scan', 'ScanAgent'],
  ['wua', 'WUAHandler'],
  ['updatesStore', 'UpdatesStore'],
  ['scanner', 'Scanner'],
] as const;

function prefixed(log: ComponentLog, prefix: string): ComponentLog {
  return {
    component: log.component,
    file: log.file,
    info: (t, th) => log.info(`${prefix}${t}`, th),
    warn: (t, th) => log.warn(`${prefix}${t}`, th),
    error: (t, th) => log.error(`${prefix}${t}`, th),
  };
}

function logsFor(base: ClientLogs, prefix: string): ClientLogs {
  if (!prefix) return base;
  return Object.fromEntries(Object.entries(base).map(([k, l]) => [k, prefixed(l, prefix)])) as unknown as ClientLogs;
}

/** Loads the simulated identities, making the missing ones (stable across restarts: keyed by the client's number). */
function simulatedIdentities(store: AgentStore, names: readonly string[], log: ComponentLog): ClientIdentity[] {
  const rows = new Map(store.simulatedIdentities().map((r) => [r.idx, r]));
  const fresh: SimulatedIdentityRow[] = [];
  const renamed: SimulatedIdentityRow[] = [];
  for (const [k, name] of names.entries()) {
    const r = rows.get(k + 1);
    if (!r) {
      const pair = newKeyPair();
      const row = { idx: k + 1, clientId: newClientId(), name, privateKey: pair.privateKey, publicKey: pair.publicKey };
      fresh.push(row);
      rows.set(k + 1, row);
    } else if (r.name !== name) {
      renamed.push({ ...r, name });
    }
  }
  if (fresh.length || renamed.length) store.saveSimulatedIdentities([...fresh, ...renamed]);
  if (fresh.length) log.info(`Created ${fresh.length} simulated client identities (client ID and Ed25519 key each) in ${store.file}.`);
  return names.map((_, k) => {
    const r = rows.get(k + 1)!;
    return identityFromPem(r.clientId, r.privateKey);
  });
}

export function startAgent(options: AgentOptions): RunningAgent {
  const dataDir = path.resolve(options.dataDir);
  const logsDir = path.join(dataDir, 'logs');
  fs.mkdirSync(dataDir, { recursive: true });
  const base = Object.fromEntries(LOGS.map(([k, name]) => [k, createComponentLog({ dir: logsDir, name, component: name })])) as unknown as ClientLogs;
  const sim = options.simulate;
  const store = new AgentStore(path.join(dataDir, 'agent.db'));
  const transport = new MpTransport(options.mpUrl, sim ? 64 : 8);
  const dpAgent = new http.Agent({ keepAlive: true, maxSockets: sim ? 64 : 8 });
  const scheduler = new Scheduler(sim ? 64 : 4);
  // One scanner per process: one catalog cache shared by every client (src/agent/scan/types.ts).
  const scanner = createScanner({ cacheDir: path.join(dataDir, 'scan-cache'), httpAgent: dpAgent, ...(options.scanPageSize ? { pageSize: options.scanPageSize } : {}) });
  // Ours: scans are CPU work over the shared catalog; two at once keep a simulation's other cycles moving on a small machine.
  const scanLimit = new Limiter(sim ? 2 : 1);

  let identities: ClientIdentity[];
  let facts: ClientFacts[];
  let machines: (() => Promise<Machine>)[];
  if (sim) {
    const simFacts = readFactsFile(options.simulate.factsFile, sim.count);
    identities = simulatedIdentities(store, simFacts.map((f) => f.name), base.id);
    facts = simFacts.map((f) => ({ ...f, ipAddresses: () => f.ipAddresses }));
    // A simulated client without an inventory in the facts file is scanned as an empty machine.
    machines = simFacts.map((f) => {
      const m: Machine = f.machine ?? {};
      return async () => m;
    });
    base.id.info(`Starting ${sim.count} simulated clients (${simFacts[0]!.name} … ${simFacts[simFacts.length - 1]!.name}) against the MP ${transport.baseUrl.origin}.`);
  } else {
    identities = [loadOrCreateIdentity(dataDir, base.id)];
    const m = machineFacts();
    facts = [{ ...m, ...(options.name ? { name: options.name } : {}) }];
    // This machine's dpkg database and os-release, read afresh at each scan.
    machines = [() => readLocalInventory(options.inventoryRoot ?? '/')];
    base.id.info(`Starting the agent for ${facts[0]!.name} against the MP ${transport.baseUrl.origin}.`);
  }

  let siteKey: SiteKey | undefined;
  const spreadMs = sim ? (sim.spreadSeconds ?? Math.min(300, Math.max(5, Math.ceil(sim.count / 100)))) * 1000 : 0;
  const clients = identities.map(
    (identity, k) =>
      new ClientAgent({
        identity,
        facts: facts[k]!,
        store,
        scheduler,
        transport,
        logs: logsFor(base, sim ? `[${facts[k]!.name}] ` : ''),
        siteKey: () => siteKey!,
        cacheDir: sim ? path.join(dataDir, 'cache', facts[k]!.name) : path.join(dataDir, 'cache'),
        agentVersion: AGENT_VERSION,
        firstDelayMs: sim ? Math.floor(Math.random() * spreadMs) : 0,
        spreadCycles: !!sim,
        httpAgent: dpAgent,
        scan: { scanner, limit: scanLimit, machine: machines[k]! },
      }),
  );

  let closed = false;
  const stopBoot = new AbortController();
  // The site key is fetched once for every client of the process (all talk to the same MP).
  const pinner = new MpClient(transport, { clientId: identities[0]!.clientId, privateKey: identities[0]!.privateKey }, base.ccm);
  const ready = (async () => {
    for (let attempt = 0; !closed; attempt += 1) {
      try {
        siteKey = await pinSiteKey(dataDir, pinner, base.id, options.siteKeyFingerprint);
        transport.trustSiteKey(siteKey.publicKey);
        break;
      } catch (err) {
        if (isCairnError(err) && (err.code === 'CAIRN_SITE_KEY_CHANGED' || err.code === 'CAIRN_SITE_KEY_UNTRUSTED')) throw err;
        const wait = jitter(REGISTRATION_BACKOFF_MS[Math.min(attempt, REGISTRATION_BACKOFF_MS.length - 1)]!);
        base.id.warn(`Cannot fetch the site signing key yet (${describeError(err)}); trying again in ${Math.round(wait / 1000)} s.`);
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, wait);
          stopBoot.signal.addEventListener('abort', () => {
            clearTimeout(t);
            resolve();
          }, { once: true });
        });
      }
    }
    if (closed) return;
    for (const c of clients) c.start();
    if (sim) base.id.info(`Scheduled ${clients.length} simulated clients over ${spreadMs / 1000} s.`);
  })();
  ready.catch((err: unknown) => {
    base.id.error(`The agent stops: ${describeError(err)}`);
    options.onFatal?.(err);
  });

  // Triggers for on-demand work.
  const triggers = path.join(dataDir, 'triggers');
  const checkTriggers = async (): Promise<void> => {
    for (const [file, run, what] of [
      [TRIGGER_POLICY, () => clients.forEach((c) => c.pollPolicyNow()), 'a policy poll'],
      [TRIGGER_REPORT, () => clients.forEach((c) => c.reportNow()), 'sending state and status messages'],
      [TRIGGER_SCAN, () => clients.forEach((c) => c.scanNow()), 'a compliance scan'],
    ] as const) {
      const p = path.join(triggers, file);
      try {
        await fsp.unlink(p);
      } catch {
        continue;
      }
      base.id.info(`Trigger ${file} found: ${what} now for ${clients.length === 1 ? 'this client' : `all ${clients.length} clients`}.`);
      run();
    }
  };
  const unwatch = watchInbox(triggers, () => void checkTriggers());
  const rescan = setInterval(() => void checkTriggers(), 5000);
  rescan.unref();
  void checkTriggers();

  return {
    clients,
    logsDir,
    ready: ready.catch(() => undefined),
    pollPolicyNow: () => clients.forEach((c) => c.pollPolicyNow()),
    reportNow: () => clients.forEach((c) => c.reportNow()),
    scanNow: () => clients.forEach((c) => c.scanNow()),
    async close() {
      if (closed) return;
      closed = true;
      stopBoot.abort();
      unwatch();
      clearInterval(rescan);
      for (const c of clients) c.stop();
      // Sockets first, so that a request in flight ends now rather than at its timeout.
      transport.close();
      dpAgent.destroy();
      await scheduler.stop();
      store.close();
      base.id.info('The agent stopped.');
    },
  };
}

/** Drops a trigger file for a running agent (`cairn agent policy --now`). */
export async function writeTrigger(dataDir: string, name: typeof TRIGGER_POLICY | typeof TRIGGER_REPORT | typeof TRIGGER_SCAN): Promise<string> {
  const dir = path.join(path.resolve(dataDir), 'triggers');
  await fsp.mkdir(dir, { recursive: true });
  const file = path.join(dir, name);
  await fsp.writeFile(file, new Date().toISOString());
  return file;
}
