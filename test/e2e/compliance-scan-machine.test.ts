/**
 * The real thing (issue 6, part 8): `cairn start` on this Debian machine
 * with its default upstream (the machine's own apt lists) and its own client
 * agent. After the first sync and the UpdateSource policy, the agent scans
 * this machine's dpkg database, and the updates it reports required are
 * exactly the packages and candidate versions `apt list --upgradable` lists:
 * in its own update store (`cairn agent updates --json`) and, after the
 * reporting cycle, at the site (topic 500, state 2).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { AgentUpdatesView } from '../../src/cli/agent-updates.ts';
import { afterTests, api, cli, runCairn, startSite, tempDir, waitFor } from '../helpers/processes.ts';
import { writeTrigger, TRIGGER_POLICY, TRIGGER_REPORT, TRIGGER_SCAN } from '../../src/agent/agent-host.ts';

const { cleanups, track } = afterTests();
const hasApt = fs.existsSync('/usr/lib/apt/apt-helper') && fs.existsSync('/var/lib/dpkg/status') && fs.existsSync('/var/lib/apt/lists');

/** `apt list --upgradable` as `name version arch` lines. */
function aptUpgradable(): string[] {
  const out = execFileSync('apt', ['list', '--upgradable'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  return out
    .split('\n')
    .map((l) => /^([^/\s]+)\/\S+ (\S+) (\S+)/.exec(l))
    .filter((m): m is RegExpExecArray => !!m)
    .map((m) => `${m[1]} ${m[2]} ${m[3]}`)
    .sort();
}

test("[UC3][UC12][UC14][UC16][UC17][UC19][UC24] cairn start scans this machine: the required updates are exactly apt list --upgradable's packages and candidate versions, at the client and at the site", { skip: hasApt ? false : 'not a Debian machine with apt' }, async () => {
  const dir = await tempDir('scan-machine');
  if (!process.env['CAIRN_KEEP_TEST_DATA']) cleanups.push(() => fsp.rm(dir, { recursive: true, force: true }));
  const site = track(await startSite(path.join(dir, 'site'), ['--agent', '--no-local-dp'], { CAIRN_NO_DEFAULT_UPSTREAM: '0' }));
  const agentData = path.join(site.dataDir, 'agent');
  await waitFor('the first sync from the apt lists', async () => (JSON.parse((await cli(site, ['sync', 'status', '--json'])).stdout) as { contentVersion: number }).contentVersion >= 1, 600_000);

  // The policy poll and the scan on demand (rather than the two-hour window), asked again until the scan completed.
  let last = 0;
  const done = await waitFor(
    'the first scan of this machine',
    async () => {
      const r = await runCairn(['agent', 'updates', '--data', agentData, '--json']);
      const v = r.code === 0 ? (JSON.parse(r.stdout) as AgentUpdatesView) : undefined;
      if (v?.lastScan?.state === 'complete') return v;
      // Asked again only while no scan is under way: a request during a scan queues one more whole scan after it.
      const busy = v?.lastScan?.state === 'locating' || v?.lastScan?.state === 'scanning';
      if (!busy && Date.now() - last > 5000) {
        last = Date.now();
        await writeTrigger(agentData, TRIGGER_POLICY);
        await writeTrigger(agentData, TRIGGER_SCAN);
      }
      return undefined;
    },
    600_000,
  );
  // The scan ran against what apt knows now (the site's catalog is the machine's apt lists).
  const expected = aptUpgradable();
  const required = done.updates.map((u) => /^(\S+) (\S+) \((\S+)\)$/.exec(u.title)).map((m) => `${m![1]} ${m![2]} ${m![3]}`).sort();
  assert.deepEqual(required, expected);

  // At the site, after the reporting cycle: the same updates, state 2, for this client.
  const ids = new Set(done.updates.map((u) => u.updateId));
  let lastReport = 0;
  await waitFor('the required states at the site', async () => {
    if (Date.now() - lastReport > 5000) {
      lastReport = Date.now();
      await writeTrigger(agentData, TRIGGER_REPORT);
    }
    const states = (await api<{ states: { clientId: string; topicId: string; stateId: number }[] }>(site, 'GET', `/api/v1/states?topicType=500&limit=100000`)).json.states.filter((s) => s.clientId === done.clientId);
    const atSite = new Set(states.filter((s) => s.stateId === 2).map((s) => s.topicId));
    return atSite.size === ids.size && [...ids].every((id) => atSite.has(id));
  }, 600_000);
});
