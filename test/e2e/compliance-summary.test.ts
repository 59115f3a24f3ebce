/**
 * End to end, compliance summarisation on a real `cairn start` process: a
 * catalog imported from the apt fixtures, three registered clients, topic 500
 * state messages through the MP relay (signed with the site's relay key) with
 * out-of-order serials, one client with no state, an update group deployed to
 * a collection, `cairn admin summarize`, and the counts read back with
 * `cairn admin compliance --json`, the per-client detail (`--client`) and
 * the clients of an update per state (`--update`); then a later state change
 * moves them.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { STATE_MESSAGES_ROUTE, postToRelay } from '../../src/mp/state-relay.ts';
import { afterTests, api, cli, readLog, ROOT, runCairn, startSite, tempDir, waitFor } from '../helpers/processes.ts';
import { newTestClient, register } from '../helpers/mp-client.ts';
import type { TestClient } from '../helpers/mp-client.ts';
import type { ComplianceView, SummaryTaskView, UpdateGroupView } from '../../src/site/services/compliance.ts';
import type { StoredUpdate } from '../../src/datastore/updates.ts';
import type { StateView } from '../../src/site/services/state-messages.ts';
import type { CollectionView } from '../../src/site/services/collections.ts';

const { cleanups, track } = afterTests();

/** A report from `c` with messages [serial, update ID, state, minute of the message time]. */
function report(c: TestClient, messages: [number, string, number, number][]): string {
  const body = messages
    .map(
      ([serial, topic, state, minute]) =>
        `<StateMessage MessageTime="2026112207${String(minute).padStart(2, '0')}00.000000+000" SerialNumber="${serial}"><Topic ID="${topic}" Type="500" IDType="3" User="" UserSID=""/><State ID="${state}" Criticality="0"/><UserParameters Flags="0" Count="0"></UserParameters></StateMessage>`,
    )
    .join('');
  return `<Report><ReportHeader><Identification><Machine><ClientID>${c.clientId}</ClientID><NetBIOSName>${c.name}</NetBIOSName><Priority>5</Priority></Machine></Identification><ReportDetails><ReportContent>State Message Data</ReportContent></ReportDetails></ReportHeader><ReportBody>${body}</ReportBody></Report>`;
}

const json = <T>(r: { code: number; stdout: string; stderr: string }): T => {
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as T;
};

describe('compliance summarisation end to end', () => {
  test(
    '[UC24][UC25][UC26][UC27][UC28][UC29] per-client states through the relay become per-update counts, update group and deployment compliance; a later state moves them',
    { skip: fs.existsSync('/usr/lib/apt/apt-helper') ? false : 'apt-helper is not installed (the catalog comes from the apt fixtures)' },
    async () => {
      const work = await tempDir('compliance');
      cleanups.push(() => fsp.rm(work, { recursive: true, force: true }));
      const dataDir = path.join(work, 'site');
      const imported = await runCairn(['catalog', 'import', '--apt', path.join(ROOT, 'test', 'fixtures', 'apt'), '--data', dataDir, '--json']);
      assert.equal(imported.code, 0, imported.stderr);
      const site = track(await startSite(dataDir, ['--no-local-dp', '--no-local-sup']));
      const relayKey = (await fsp.readFile(path.join(dataDir, 'relay.key'), 'utf8')).trim();
      const relay = async (xml: string) => {
        const r = await postToRelay(site.url, relayKey, STATE_MESSAGES_ROUTE, xml);
        assert.equal(r.status, 202, JSON.stringify(r.json));
      };

      const updates = (await api<{ updates: StoredUpdate[] }>(site, 'GET', '/api/v1/updates')).json.updates.map((u) => u.id).sort();
      assert.ok(updates.length >= 3, `the fixtures give at least 3 updates, got ${updates.length}`);
      const [u1, u2, u3] = updates as [string, string, string];

      // UC29: at start-up the schedule runs every task once (none has run); the daily ones too.
      const scheduled = await waitFor('the scheduled first runs of every summary task', async () => {
        const t = json<SummaryTaskView[]>(await cli(site, ['summary-tasks', '--json']));
        return t.every((x) => x.lastRunResult === 'success') && t;
      });
      assert.deepEqual(
        scheduled.map((t) => [t.name, t.scheduleSeconds, t.onDemand, t.lastTrigger]),
        [
          ['Update Status Summarizer', 3600, true, 'schedule'],
          ['Update Group Status Summarizer', 3600, true, 'schedule'],
          ['Assignment Compliance Evaluator', 3600, true, 'schedule'],
          ['Migrate Update Status', 86400, false, 'schedule'],
          ['Delete Aged Status', 86400, false, 'schedule'],
        ],
      );

      // Three registered clients; C never sends a state.
      const [a, b, c] = [newTestClient('PCA'), newTestClient('PCB'), newTestClient('PCC')];
      for (const x of [a, b, c]) assert.equal((await register(site.url, x)).status, 200);
      assert.equal((await cli(site, ['collection', 'create', 'Servers'])).code, 0);
      for (const x of [a, b, c]) assert.equal((await cli(site, ['collection', 'add-member', 'Servers', x.name])).code, 0);
      await waitFor('the policy provider to evaluate Servers', async () => json<CollectionView[]>(await cli(site, ['collection', 'list', '--json'])).find((col) => col.name === 'Servers')?.memberCount === 3);

      // A: u1 required at serial 5, then an older serial 3 (installed) that must not win; u2 installed, u3 not required.
      await relay(report(a, [[5, u1, 2, 10], [6, u2, 3, 10], [7, u3, 1, 10]]));
      await relay(report(a, [[3, u1, 3, 5]]));
      // B: everything installed or not required, in one report with serials out of order.
      await relay(report(b, [[12, u2, 1, 10], [11, u1, 3, 10], [13, u3, 3, 10]]));
      await waitFor('the state system to store 6 topic 500 states', async () => json<StateView[]>(await cli(site, ['state', 'list', '--topic-type', '500', '--json'])).length === 6);

      // Update group and deployment; bad input first.
      assert.equal((await cli(site, ['update-group', 'create', 'Baseline'])).code, 0);
      const dup = await cli(site, ['update-group', 'create', 'Baseline']);
      assert.equal(dup.code, 1);
      assert.match(dup.stderr, /CAIRN_UPDATE_GROUP_EXISTS/);
      const unknownUpdate = await cli(site, ['update-group', 'add', 'Baseline', u1, 'f0000000-0000-4000-8000-00000000dead']);
      assert.equal(unknownUpdate.code, 1);
      assert.match(unknownUpdate.stderr, /CAIRN_UPDATE_NOT_FOUND: .*f0000000-0000-4000-8000-00000000dead/);
      const added = json<{ added: number; group: UpdateGroupView }>(await cli(site, ['update-group', 'add', 'Baseline', u1, u2, u3, '--json']));
      assert.equal(added.added, 3);
      const deployed = json<{ deployment: { assignmentId: number; deploymentId: string; collectionName: string }; created: boolean }>(await cli(site, ['update-group', 'deploy', 'Baseline', '--collection', 'Servers', '--json']));
      assert.ok(deployed.created);
      assert.equal(deployed.deployment.collectionName, 'Servers');
      assert.match(deployed.deployment.deploymentId, /^\{[0-9a-f-]{36}\}$/);

      const notOnDemand = await cli(site, ['summarize', '--task', 'delete-aged-status']);
      assert.equal(notOnDemand.code, 1);
      assert.match(notOnDemand.stderr, /CAIRN_SUMMARY_TASK_NOT_ON_DEMAND/);
      const noTask = await cli(site, ['summarize', '--task', 'nope']);
      assert.match(noTask.stderr, /CAIRN_SUMMARY_TASK_NOT_FOUND/);

      // UC27: on demand, all three; the CLI prints the product's line per task.
      const ran = await cli(site, ['summarize']);
      assert.equal(ran.code, 0, ran.stderr);
      assert.match(ran.stdout, /^task Update Status Summarizer completed successfully after running for [\d.]+ seconds, with status \d+\ntask Update Group Status Summarizer completed successfully .* with status 1\ntask Assignment Compliance Evaluator completed successfully .* with status 1\n$/);

      const counts = async (u: string) => {
        const v = json<ComplianceView>(await cli(site, ['compliance', '--update', u, '--json']));
        assert.equal(v.kind, 'updates');
        const s = (v as Extract<ComplianceView, { kind: 'updates' }>).updates[0]!;
        return [s.required, s.installed, s.notRequired, s.unknown, s.total];
      };
      // [required, installed, not required, unknown, total] over A, B and C.
      assert.deepEqual(await counts(u1), [1, 1, 0, 1, 3]);
      assert.deepEqual(await counts(u2), [0, 1, 1, 1, 3]);
      assert.deepEqual(await counts(u3), [0, 1, 1, 1, 3]);
      const group = json<Extract<ComplianceView, { kind: 'group' }>>(await cli(site, ['compliance', '--group', 'Baseline', '--json']));
      assert.deepEqual([group.group.summary?.compliant, group.group.summary?.nonCompliant, group.group.summary?.unknown, group.group.summary?.total], [1, 1, 1, 3]);
      assert.deepEqual(group.updates.map((u) => u.updateId), [u1, u2, u3]);
      const dep = json<Extract<ComplianceView, { kind: 'deployment' }>>(await cli(site, ['compliance', '--deployment', String(deployed.deployment.assignmentId), '--json']));
      assert.deepEqual([dep.deployment.summary?.compliant, dep.deployment.summary?.nonCompliant, dep.deployment.summary?.unknown, dep.deployment.summary?.total], [1, 1, 1, 3]);
      const text = await cli(site, ['compliance', '--deployment', deployed.deployment.deploymentId]);
      assert.match(text.stdout, /deployment \d+ \{.*\}: update group Baseline to \S+ \(Servers\)\nCOMPLIANT\s+NON-COMPLIANT\s+UNKNOWN\s+TOTAL/);
      const missingGroup = await cli(site, ['compliance', '--group', 'nope']);
      assert.match(missingGroup.stderr, /CAIRN_UPDATE_GROUP_NOT_FOUND/);

      // Part 7, per-client detail (UC25: state names from SR_StateNames): A's states now, required first.
      type ClientKind = Extract<ComplianceView, { kind: 'client' }>;
      const detail = json<ClientKind>(await cli(site, ['compliance', '--client', 'PCA', '--json']));
      assert.equal(detail.kind, 'client');
      assert.deepEqual([detail.client.name, detail.client.clientId, detail.client.registration], ['PCA', a.clientId, 'approved']);
      assert.deepEqual(detail.client.counts, { required: 1, installed: 1, notRequired: 1, unknown: 0, noState: updates.length - 3 });
      assert.deepEqual(
        detail.client.updates.map((u) => [u.updateId, u.state, u.stateName, u.serialNumber]),
        [
          [u1, 2, 'Required', 5],
          [u2, 3, 'Installed', 6],
          [u3, 1, 'Not required', 7],
        ],
      );
      assert.ok(detail.client.updates.every((u) => typeof u.revision === 'number' && u.title && u.messageTime.startsWith('2026-11-22T07:10:00')), JSON.stringify(detail.client.updates[0]));
      assert.equal(detail.client.truncated, false);
      const one = json<ClientKind>(await cli(site, ['compliance', '--client', a.clientId.toLowerCase(), '--limit', '1', '--json']));
      assert.deepEqual([one.client.updates.map((u) => u.updateId), one.client.truncated, one.client.counts.required], [[u1], true, 1]);
      const clientText = await cli(site, ['compliance', '--client', 'PCA']);
      assert.equal(clientText.code, 0, clientText.stderr);
      assert.match(clientText.stdout, new RegExp(`^client PCA ${a.clientId}, approved; states now`));
      assert.match(clientText.stdout, new RegExp(`${u1}\\s.*\\s2 Required\\s+2026-11-22T07:10:00`));
      const noClient = await cli(site, ['compliance', '--client', 'nope']);
      assert.equal(noClient.code, 1);
      assert.match(noClient.stderr, /CAIRN_CLIENT_NOT_FOUND/);

      // One update with its clients per state now: A required, B installed, C unknown by silence.
      type UpdatesKind = Extract<ComplianceView, { kind: 'updates' }>;
      const perState = json<UpdatesKind>(await cli(site, ['compliance', '--update', u1, '--json'])).clients!;
      const names = (l: { clients: { name: string }[] }) => l.clients.map((x) => x.name);
      assert.deepEqual([names(perState.required), names(perState.installed), names(perState.notRequired), names(perState.unknown)], [['PCA'], ['PCB'], [], ['PCC']]);
      assert.deepEqual([perState.required.count, perState.installed.count, perState.notRequired.count, perState.unknown.count, perState.limit], [1, 1, 0, 1, 100]);
      assert.equal(perState.unknown.clients[0]!.messageTime, null);
      assert.equal(perState.required.clients[0]!.clientId, a.clientId);
      const limited = json<UpdatesKind>(await cli(site, ['compliance', '--update', u2, '--limit', '1', '--json'])).clients!;
      assert.deepEqual([limited.installed.count, limited.installed.clients.length, limited.notRequired.count], [1, 1, 1]);
      const updateText = await cli(site, ['compliance', '--update', u1]);
      assert.match(updateText.stdout, /required: 1 client\(s\)\nCLIENT\s+CLIENT ID\s+MESSAGE TIME\nPCA\s/);
      assert.match(updateText.stdout, /unknown: 1 client\(s\)\nCLIENT\s+CLIENT ID\s+MESSAGE TIME\nPCC\s+\S+\s+no state/);
      const badLimit = await cli(site, ['compliance', '--update', u1, '--limit', '0']);
      assert.equal(badLimit.code, 1);
      assert.match(badLimit.stderr, /CAIRN_REQUEST_INVALID: .*limit must be a whole number from 1 to 10000/);
      const noUpdate = await cli(site, ['compliance', '--update', 'f0000000-0000-4000-8000-00000000dead']);
      assert.match(noUpdate.stderr, /CAIRN_UPDATE_NOT_FOUND/);

      // A later state: A installs u1 (serial 8). Summaries move only when summarised.
      await relay(report(a, [[8, u1, 3, 20]]));
      await waitFor('the state system to store A\'s serial 8', async () =>
        json<StateView[]>(await cli(site, ['state', 'list', '--client', 'PCA', '--topic-type', '500', '--json'])).some((s) => s.topicId === u1 && s.serialNumber === 8),
      );
      assert.deepEqual(await counts(u1), [1, 1, 0, 1, 3]);
      assert.equal((await cli(site, ['summarize', '--task', 'update-status'])).code, 0);
      assert.equal((await cli(site, ['summarize', '--deployment', deployed.deployment.deploymentId])).code, 0);
      // UC27 per update group: only the update group status summarizer, for that group.
      const perGroup = await cli(site, ['summarize', '--group', 'Baseline']);
      assert.equal(perGroup.code, 0, perGroup.stderr);
      assert.match(perGroup.stdout, /^task Update Group Status Summarizer completed successfully after running for [\d.]+ seconds, with status 1\n$/);
      const group2 = json<Extract<ComplianceView, { kind: 'group' }>>(await cli(site, ['compliance', '--group', 'Baseline', '--json']));
      assert.deepEqual([group2.group.summary?.compliant, group2.group.summary?.nonCompliant, group2.group.summary?.unknown], [2, 0, 1]);
      assert.match((await cli(site, ['summarize', '--group', 'nope'])).stderr, /CAIRN_UPDATE_GROUP_NOT_FOUND/);
      assert.match((await cli(site, ['summarize', '--group', 'Baseline', '--task', 'update-status'])).stderr, /CAIRN_REQUEST_INVALID: .*group goes with the update group status summarizer only/);
      assert.deepEqual(await counts(u1), [0, 2, 0, 1, 3]);
      const dep2 = json<Extract<ComplianceView, { kind: 'deployment' }>>(await cli(site, ['compliance', '--deployment', String(deployed.deployment.assignmentId), '--json']));
      assert.deepEqual([dep2.deployment.summary?.compliant, dep2.deployment.summary?.nonCompliant, dep2.deployment.summary?.unknown], [2, 0, 1]);

      const tasks = json<SummaryTaskView[]>(await cli(site, ['summary-tasks', '--json']));
      assert.deepEqual(tasks.slice(0, 3).map((t) => [t.lastTrigger, t.lastRunResult]), [['on demand', 'success'], ['on demand', 'success'], ['on demand', 'success']]);
      assert.equal(tasks[0]!.lastRowsTouched, updates.length);

      const log = await readLog(dataDir, 'summarizer');
      assert.match(log, /task Update Status Summarizer started \(on demand\)/);
      assert.match(log, /task Assignment Compliance Evaluator started \(on demand\) for deployment \d+/);
      assert.match(log, /task Update Group Status Summarizer started \(on demand\) for update group \d+ \(Baseline\)/);
      assert.match(log, /task Delete Aged Status completed successfully after running for [\d.]+ seconds, with status 0/);
      const prov = await readLog(dataDir, 'SMSProv');
      assert.match(prov, /called POST \/api\/v1\/update-groups\/Baseline\/deployments: 201, deployed update group Baseline to /);
      assert.match(prov, /called POST \/api\/v1\/summary-tasks\/run: 200, ran Update Status Summarizer \(success, \d+ rows/);
      assert.match(prov, /called POST \/api\/v1\/summary-tasks\/run: 409, CAIRN_SUMMARY_TASK_NOT_ON_DEMAND/);
      assert.match(prov, /called GET \/api\/v1\/compliance\?client=PCA: 200, read the update states of client PCA \(GUID:/);
      assert.match(prov, /called GET \/api\/v1\/compliance\?client=nope: 404, CAIRN_CLIENT_NOT_FOUND/);
      assert.match(prov, /called GET \/api\/v1\/compliance\?update=[^:]+: 200, read the clients per state of update /);

      // A client that reports without registering is found by its client ID, and counts as a client in scope.
      const x = newTestClient('PCX');
      await relay(report(x, [[1, u1, 2, 30]]));
      const unregistered = await waitFor('the state system to store the unregistered client\'s state', async () => {
        const r = await cli(site, ['compliance', '--client', x.clientId, '--json']);
        return r.code === 0 && json<ClientKind>(r);
      });
      assert.deepEqual([unregistered.client.name, unregistered.client.registration, unregistered.client.updates.map((u) => u.updateId)], ['PCX', null, [u1]]);
      assert.match((await cli(site, ['compliance', '--client', 'PCX'])).stderr, /CAIRN_CLIENT_NOT_FOUND/);
    },
  );
});
