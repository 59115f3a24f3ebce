/**
 * End to end, state and status messages: a real `cairn start` process, reports
 * posted to its MP relay as a client would (signed with the site's relay
 * key), out-of-order serial numbers, a bad `.SMX` dropped by hand among good
 * ones, and the result read back with `cairn admin state list --json`.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { STATE_MESSAGES_ROUTE, STATUS_MESSAGES_ROUTE, postToRelay } from '../../src/mp/state-relay.ts';
import { afterTests, cli, readLog, ROOT, startSite, tempDir, waitFor } from '../helpers/processes.ts';
import type { StateView } from '../../src/site/services/state-messages.ts';

const SPEC = fs.readFileSync(path.join(ROOT, 'test', 'fixtures', 'state-report-spec.xml'), 'utf8');
const UPDATE_A = '505fda07-b4f3-45fb-83d9-8642554e2773';
const UPDATE_B = '11111111-2222-3333-4444-555555555555';

const { cleanups, track } = afterTests();

/** A report from client PC2 with the given messages: [serial, topic ID, topic type, state, minute of the message time]. */
function report(messages: [number, string, number, number, number][]): string {
  const body = messages
    .map(
      ([serial, topic, type, state, minute]) =>
        `<StateMessage MessageTime="20261122070${minute}00.000000+000" SerialNumber="${serial}"><Topic ID="${topic}" Type="${type}" IDType="3" User="" UserSID=""/><State ID="${state}" Criticality="0"/><UserParameters Flags="0" Count="0"></UserParameters></StateMessage>`,
    )
    .join('');
  return `<Report><ReportHeader><Identification><Machine><ClientID>GUID:PC2</ClientID><NetBIOSName>PC2</NetBIOSName><Priority>5</Priority></Machine></Identification><ReportDetails><ReportContent>State Message Data</ReportContent></ReportDetails></ReportHeader><ReportBody>${body}</ReportBody></Report>`;
}

function sums(log: string): { records: number; invalid: number; files: number; bad: number } {
  const out = { records: 0, invalid: 0, files: 0, bad: 0 };
  for (const m of log.matchAll(/processed (\d+) records with (\d+) invalid records/g)) {
    out.records += Number(m[1]);
    out.invalid += Number(m[2]);
  }
  for (const m of log.matchAll(/processed (\d+) message files in this batch, with (\d+) bad files/g)) {
    out.files += Number(m[1]);
    out.bad += Number(m[2]);
  }
  return out;
}

describe('state messages end to end', () => {
  test('[UC20][UC21][CD3.13][UC23][UC24][UC25] reports through the MP relay keep the latest state per client and topic, out-of-order serials and a bad .SMX included', async () => {
    const work = await tempDir('states');
    cleanups.push(() => fsp.rm(work, { recursive: true, force: true }));
    const dataDir = path.join(work, 'site');
    const site = track(await startSite(dataDir, ['--no-local-dp']));
    const key = (await fsp.readFile(path.join(dataDir, 'relay.key'), 'utf8')).trim();
    const relay = async (xml: string) => {
      const r = await postToRelay(site.url, key, STATE_MESSAGES_ROUTE, xml);
      assert.equal(r.status, 202, JSON.stringify(r.json));
      return r.json;
    };

    // The spec's Report exactly as given (client PS1WIN7X64, serial 232, required).
    await relay(SPEC);
    // PC2, update A: serial 20 (installed) arrives before 18 (required), which must not win.
    await relay(report([[20, UPDATE_A, 500, 3, 5]]));
    await relay(report([[18, UPDATE_A, 500, 2, 3]]));
    // PC2, update B: 31 and 30 in one report, in that order; then 32 with an older time, which must not win either.
    await relay(report([[31, UPDATE_B, 500, 1, 6], [30, UPDATE_B, 500, 2, 4]]));
    await relay(report([[32, UPDATE_B, 500, 2, 1]]));
    // A pull DP state and an unknown topic type in one report: the unknown one is an invalid record.
    const mixed = await relay(report([[40, 'CS100001', 902, 1, 7], [41, 'x', 777, 1, 7]]));
    assert.deepEqual([mixed.records, mixed.invalidRecords], [2, 1]);

    // An administrator drops a bad .SMX by hand among the good ones.
    const inbox = path.join(dataDir, 'inboxes', 'auth', 'statesys.box', 'incoming');
    await fsp.writeFile(path.join(inbox, '.bad.tmp'), '<Report><ReportHeader><Identification>');
    await fsp.rename(path.join(inbox, '.bad.tmp'), path.join(inbox, 'hand-dropped.SMX'));
    await relay(report([[50, 'CS100002', 902, 4, 8]]));

    // 8 files (7 relayed, 1 bad), 9 records of which 1 invalid.
    const totals = await waitFor('every file to be processed', async () => {
      const s = sums(await readLog(dataDir, 'statesys'));
      return s.files === 8 ? s : undefined;
    });
    assert.deepEqual(totals, { records: 9, invalid: 1, files: 8, bad: 1 });
    assert.deepEqual(fs.readdirSync(path.join(inbox, 'bad')), ['hand-dropped.SMX']);
    assert.deepEqual(fs.readdirSync(inbox).filter((f) => f !== 'bad'), [], 'every good file deleted');
    const log = await readLog(dataDir, 'statesys');
    assert.match(log, /hand-dropped\.SMX is bad \(CAIRN_STATE_XML_MALFORMED/);
    assert.match(log, /CAIRN_STATE_TOPIC_UNKNOWN: topic type 777/);
    assert.match(await readLog(dataDir, 'MP_Relay'), /Relayed a state-message report from GUID:A1006D0E-CF56-41D1-A006-6330EFC39381/);

    const listed = await cli(site, ['state', 'list', '--json']);
    assert.equal(listed.code, 0, listed.stderr);
    const states = JSON.parse(listed.stdout) as StateView[];
    assert.deepEqual(
      states.map((s) => [s.client, s.topicType, s.topicTypeName, s.topicId, s.serialNumber, s.stateId, s.stateName]),
      [
        ['PS1WIN7X64', 500, 'Update detection', UPDATE_A, 232, 2, 'Required'],
        ['PC2', 500, 'Update detection', UPDATE_B, 31, 1, 'Not required'],
        ['PC2', 500, 'Update detection', UPDATE_A, 20, 3, 'Installed'],
        ['PC2', 902, 'Pull distribution point', 'CS100001', 40, 1, 'Success'],
        ['PC2', 902, 'Pull distribution point', 'CS100002', 50, 4, 'Failure'],
      ],
    );
    assert.equal(states[0]!.messageTime, '2014-01-20T17:18:55.573Z');
    assert.deepEqual(states[0]!.userParams, ['200']);

    const pc2Updates = JSON.parse((await cli(site, ['state', 'list', '--client', 'PC2', '--topic-type', '500', '--json'])).stdout) as StateView[];
    assert.deepEqual(pc2Updates.map((s) => [s.topicId, s.stateName]), [[UPDATE_B, 'Not required'], [UPDATE_A, 'Installed']]);
    const text = await cli(site, ['state', 'list', '--client', 'PS1WIN7X64']);
    assert.match(text.stdout, /PS1WIN7X64\s+500 Update detection\s+505fda07-b4f3-45fb-83d9-8642554e2773\s+2 Required\s+232/);
  });

  test('[CD7.10] client status messages posted to the status receiver are stored with their insertion strings and attributes', async () => {
    const work = await tempDir('statusrcv');
    cleanups.push(() => fsp.rm(work, { recursive: true, force: true }));
    const dataDir = path.join(work, 'site');
    const site = track(await startSite(dataDir, ['--no-local-dp']));
    const key = (await fsp.readFile(path.join(dataDir, 'relay.key'), 'utf8')).trim();
    const attrs = [{ id: 408, value: 'GUID:PC2' }, { id: 400, value: 'CS100001' }];
    const messages = [
      { id: 1073753174, component: 'Peer DP Agent', machine: 'PC2', time: '2026-11-22T07:00:00.000Z', istr: ['CS100001', '1'], attrs },
      { id: 1073753175, component: 'Peer DP Agent', machine: 'PC2', time: '2026-11-22T07:00:01.000Z', istr: ['CS100001', '1'], attrs },
      { id: 1073753193, component: 'Peer DP Agent', machine: 'PC2', time: '2026-11-22T07:00:02.000Z', istr: ['CS100001', '1', '\\\\PC2\\SCCMContentLib$'], attrs },
    ];
    const r = await postToRelay(site.url, key, STATUS_MESSAGES_ROUTE, JSON.stringify({ messages }));
    assert.equal(r.status, 202, JSON.stringify(r.json));
    const stored = await waitFor('the three messages to be stored', async () => {
      const out = await cli(site, ['status-messages', '--component', 'Peer DP Agent', '--json']);
      const list = JSON.parse(out.stdout) as { id: number; severity: string; source: string; istr: string[]; attrs: { id: number; value: string }[] }[];
      return list.length === 3 ? list : undefined;
    });
    assert.deepEqual(stored.map((m) => [m.id, m.severity, m.source, m.istr.length]), [[1073753174, 'I', 'SMS Client', 2], [1073753175, 'I', 'SMS Client', 2], [1073753193, 'I', 'SMS Client', 3]]);
    assert.deepEqual(stored[2]!.attrs, attrs);
  });
});
