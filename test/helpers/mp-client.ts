/**
 * A test-side caller of the MP's client routes (ADR 0005): a key pair, a
 * client ID, and fetch with `signClientRequest` from the shared module. Not
 * a mock of the agent: just the few lines any client must write.
 */
import os from 'node:os';
import assert from 'node:assert/strict';
import path from 'node:path';
import { cli, freePort, startListening } from './processes.ts';
import type { SiteProc } from './processes.ts';
import { newClientId, newKeyPair, signClientRequest } from '../../src/shared/client-auth.ts';
import type { KeyPairPem } from '../../src/shared/client-auth.ts';

export interface TestClient {
  readonly clientId: string;
  readonly name: string;
  readonly keys: KeyPairPem;
  readonly ipAddresses: string[];
}

export function newTestClient(name: string, ipAddresses: string[] = ['127.0.0.1']): TestClient {
  return { clientId: newClientId(), name, keys: newKeyPair(), ipAddresses };
}

export interface MpReply {
  readonly status: number;
  readonly headers: Headers;
  readonly bytes: Buffer;
  readonly json: Record<string, unknown>;
}

/** Sends one signed request; `authorization` overrides the header (for replay and bad-signature tests). */
export async function mpRequest(base: string, client: TestClient, method: 'GET' | 'POST', route: string, body?: unknown, opts: { authorization?: string; now?: number; signWith?: string; rawBody?: string } = {}): Promise<MpReply & { authorization: string }> {
  const text = opts.rawBody ?? (body === undefined ? '' : JSON.stringify(body));
  const authorization = opts.authorization ?? signClientRequest(client.clientId, opts.signWith ?? client.keys.privateKey, method, route, text, opts.now);
  const res = await fetch(`${base}${route}`, {
    method,
    headers: { authorization, ...(text ? { 'content-type': route.includes('state-messages') ? 'text/xml' : 'application/json' } : {}) },
    ...(method === 'POST' ? { body: text } : {}),
  });
  const bytes = Buffer.from(await res.arrayBuffer());
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(bytes.toString('utf8')) as Record<string, unknown>;
  } catch {
    /* not JSON */
  }
  return { status: res.status, headers: res.headers, bytes, json, authorization };
}

export function registrationBody(c: TestClient): Record<string, unknown> {
  return { clientId: c.clientId, name: c.name, publicKey: c.keys.publicKey, ipAddresses: c.ipAddresses, osFamily: 'linux', osVersion: os.release(), agentVersion: '0.1.0-test' };
}

export async function register(base: string, c: TestClient): Promise<MpReply> {
  return mpRequest(base, c, 'POST', '/mp/v1/register', registrationBody(c));
}

/** Starts `cairn mp` as a real process; resolves when it listens. */
export async function startMpProcess(args: { data: string; port: number; site: string; name: string; key: string; siteKey: string; database: string }): Promise<{ url: string; output: () => string; kill(signal?: NodeJS.Signals): Promise<void> }> {
  return startListening(['mp', '--data', args.data, '--port', String(args.port), '--site', args.site, '--name', args.name, '--key', args.key, '--site-key', args.siteKey, '--database', args.database]);
}

/**
 * Adds MP `name` to the site with `cairn admin mp add` and starts it as a
 * real `cairn mp` process on the site's SQLite database and signing key, its
 * data under `<work>/<name>`.
 */
export async function addRemoteMp(site: SiteProc, work: string, name: string): Promise<{ mp: Awaited<ReturnType<typeof startMpProcess>>; data: string }> {
  const added = await cli(site, ['mp', 'add', name]);
  assert.equal(added.code, 0, added.stderr);
  const data = path.join(work, name);
  const mp = await startMpProcess({
    data,
    port: await freePort(),
    site: site.url,
    name,
    key: added.stdout.trim(),
    siteKey: path.join(site.dataDir, 'site-signing.key'),
    database: `sqlite:${path.join(site.dataDir, 'site.db')}`,
  });
  return { mp, data };
}
