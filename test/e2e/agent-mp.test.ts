/**
 * The agent against a real site and MP (`cairn start`), as real processes:
 * it pins the site key, registers, is approved automatically, applies the
 * ClientSettings policy, and refuses a policy body changed on the wire by a
 * tampering proxy between it and the MP (a real MP behind it: only the bytes
 * in transit are changed), keeping the version it applied before and
 * reporting the refusal as a client status message that reaches the site.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { afterTests, cli, readLog, startSite, tempDir, waitFor } from '../helpers/processes.ts';
import { logText, startAgentProc, waitWithTrigger } from '../helpers/agent.ts';

const { cleanups, track } = afterTests();

/** A pass-through HTTP proxy that, while `tamper` is on, changes one byte of every policy body the MP sends. */
async function tamperingProxy(target: string): Promise<{ url: string; tamper: boolean; close(): Promise<void> }> {
  const state = { tamper: false };
  const t = new URL(target);
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const up = http.request({ hostname: t.hostname, port: t.port, method: req.method, path: req.url, headers: req.headers }, (r) => {
        const body: Buffer[] = [];
        r.on('data', (c: Buffer) => body.push(c));
        r.on('end', () => {
          let bytes = Buffer.concat(body);
          if (state.tamper && r.statusCode === 200 && /^\/mp\/v1\/policy\/[^/]+\/[^/]+$/.test(req.url ?? '')) {
            bytes = Buffer.from(bytes.toString('utf8').replace(/"stateReportingSeconds":(\d+)/, '"stateReportingSeconds":5'));
          }
          const headers = { ...r.headers, 'content-length': String(bytes.length) };
          res.writeHead(r.statusCode ?? 502, headers).end(bytes);
        });
      });
      up.on('error', () => res.writeHead(502).end());
      up.end(Buffer.concat(chunks));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const proxy = {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    get tamper() {
      return state.tamper;
    },
    set tamper(v: boolean) {
      state.tamper = v;
    },
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
  return proxy;
}

const text = logText;

test('the agent registers, is approved, applies its client settings, and refuses a policy tampered with on the wire', async () => {
  const work = await tempDir('agent-mp');
  cleanups.push(() => fsp.rm(work, { recursive: true, force: true }));
  const site = track(await startSite(path.join(work, 'site'), ['--no-local-dp']));
  for (const [name, value] of [['client.policyPollSeconds', '5'], ['client.stateReportingSeconds', '7'], ['client.statusReportingSeconds', '5']]) {
    const r = await cli(site, ['settings', 'set', name!, value!]);
    assert.equal(r.code, 0, r.stderr);
  }
  const proxy = await tamperingProxy(site.url);
  cleanups.push(() => proxy.close());
  const data = path.join(work, 'agent');
  const siteKey = (await (await fetch(`${site.url}/mp/v1/site-key`)).json()) as { fingerprint: string };
  const agent = track(startAgentProc(['--mp', proxy.url, '--data', data, '--name', 'AGENT-E2E', '--site-key-fingerprint', siteKey.fingerprint.toLowerCase()]));

  // Registration: pinned key (the fingerprint given), registered, approved automatically.
  await waitFor(`the agent to be approved\n${agent.output()}`, async () => /AGENT-E2E \(GUID:[0-9A-F-]+\) is approved by the site/.test(await readLog(data, 'ClientIDManagerStartup')));
  const id = text(await readLog(data, 'ClientIDManagerStartup'));
  assert.match(id, new RegExp(`Pinned the site signing key of site CS1: fingerprint ${siteKey.fingerprint}, as given with --site-key-fingerprint`));
  assert.match(id, /Registration accepted by the MP: status approved/);
  const list = await cli(site, ['client', 'list', '--json']);
  const clients = JSON.parse(list.stdout) as { name: string; status: string }[];
  assert.deepEqual(clients.map((c) => [c.name, c.status]), [['AGENT-E2E', 'approved']]);

  // Policy: the ClientSettings policy with the site's values, verified and applied.
  const settingsRe = /Client settings from policy (\{[^}]+\}) (\d+\.00): policy poll every 5 s, state messages every 7 s/;
  await waitWithTrigger(data, 'policy', 'the client settings to be applied', async () => settingsRe.test(text(await readLog(data, 'PolicyAgent'))));
  const m = settingsRe.exec(text(await readLog(data, 'PolicyAgent')))!;
  const applied = { policyId: m[1]!, version: m[2]! };
  assert.match(text(await readLog(data, 'PolicyAgent')), /the list's signature verifies with the pinned site key/);
  assert.match(text(await readLog(data, 'CcmMessaging')), /GET \/mp\/v1\/policy\/assignments -> 200, 0 bytes sent, \d+ bytes received/);

  // A new version of the policy arrives changed on the wire: refused, the old one kept.
  proxy.tamper = true;
  assert.equal((await cli(site, ['settings', 'set', 'client.stateReportingSeconds', '8'])).code, 0);
  await waitWithTrigger(data, 'policy', 'the tampered policy to be refused', async () =>
    new RegExp(`Refused policy \\${applied.policyId} \\d+\\.00: .*\\(CAIRN_AGENT_POLICY_HASH_MISMATCH\\); keeping version ${applied.version.replace('.', '\\.')} applied before`).test(text(await readLog(data, 'PolicyAgent'))),
  );
  assert.doesNotMatch(text(await readLog(data, 'PolicyAgent')), /state messages every 5 s/);
  // The refusal reaches the site as client status message 10010.
  await waitFor('status message 10010 at the site', async () => {
    const r = await cli(site, ['status-messages', '--id', '10010', '--json']);
    const msgs = JSON.parse(r.stdout) as { component: string; istr: string[] }[];
    return msgs.some((m) => m.component === 'PolicyAgent' && m.istr[0] === 'CAIRN_AGENT_POLICY_HASH_MISMATCH');
  });

  // The wire is clean again: the next poll applies the new version.
  proxy.tamper = false;
  await waitWithTrigger(data, 'policy', 'the new version to be applied', async () => /policy poll every 5 s, state messages every 8 s/.test(text(await readLog(data, 'PolicyAgent'))));
  await agent.kill('SIGTERM');
  assert.equal(agent.child.exitCode, 0, agent.output());
});
