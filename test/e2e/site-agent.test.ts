/**
 * `cairn start` runs a client agent for the machine it is on (issue 4, part
 * 4): in-process, data under `<site data>/agent`, registered and approved
 * automatically even when the site vets clients (`mp.autoApprove` 0), its
 * ClientSettings policy applied, and stopped with the site.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterTests, cli, readLog, startSite, tempDir, waitFor } from '../helpers/processes.ts';
import { logText, waitWithTrigger } from '../helpers/agent.ts';

const { cleanups, track } = afterTests();
test("cairn start runs this machine's agent: approved automatically (even with mp.autoApprove 0), client settings applied, stopped with the site", async () => {
  const work = await tempDir('site-agent');
  if (!process.env['CAIRN_KEEP_TEST_DATA']) cleanups.push(() => fsp.rm(work, { recursive: true, force: true }));
  const dataDir = path.join(work, 'site');
  // A site that vets its clients.
  const first = track(await startSite(dataDir, ['--no-local-dp']));
  assert.equal((await cli(first, ['settings', 'set', 'mp.autoApprove', '0'])).code, 0);
  assert.equal((await cli(first, ['settings', 'set', 'client.statusReportingSeconds', '600'])).code, 0);
  await first.kill('SIGTERM');
  assert.ok(!fs.existsSync(path.join(dataDir, 'agent')), '--no-agent starts no agent');

  const site = track(await startSite(dataDir, ['--no-local-dp', '--agent']));
  const m = /client agent:\s+(\S+) \((GUID:[0-9A-F-]+)\), data (\S+)/.exec(site.output());
  assert.ok(m, site.output());
  const [, name, clientId, agentDir] = m;
  assert.equal(name, os.hostname().split('.')[0]);
  assert.equal(agentDir, path.join(path.resolve(dataDir), 'agent'));

  await waitFor('the agent to be approved', async () => /is approved by the site/.test(await readLog(agentDir!, 'ClientIDManagerStartup')));
  const clients = JSON.parse((await cli(site, ['client', 'list', '--json'])).stdout) as { name: string; clientId: string; status: string }[];
  assert.deepEqual(clients.map((c) => [c.name, c.clientId, c.status]), [[name, clientId, 'approved']]);
  assert.match(logText(await readLog(dataDir, 'MP_Registration')), new RegExp(`Registered new client ${clientId} \\(${name}, .*approved automatically \\(the site's own agent\\)\\.`));
  assert.match(logText(await readLog(agentDir!, 'ClientIDManagerStartup')), /Pinned the site signing key of site CS1: fingerprint [0-9A-F]{64}, as given with --site-key-fingerprint\./);

  // Its ClientSettings policy: the site's values, verified and applied.
  await waitWithTrigger(agentDir!, 'policy', 'the client settings to be applied', async () =>
    /Client settings from policy \{[^}]+\} \d+\.00: policy poll every 3600 s, state messages every 900 s, status messages every 600 s\./.test(logText(await readLog(agentDir!, 'PolicyAgent'))),
  );
  // Quiet: the agent logs to its own files, not to the site's output.
  assert.doesNotMatch(site.output(), /PolicyAgent|Client settings from policy/);

  // Stopped with the site.
  await site.kill('SIGTERM');
  assert.equal(site.child.exitCode, 0, site.output());
  assert.match(logText(await readLog(agentDir!, 'ClientIDManagerStartup')), /The agent stopped\.\s*$/);
});
