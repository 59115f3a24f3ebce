/** The MP relay plugin, black-box through inject(): signed reports become .SMX files, client status messages .SVF files; everything else is refused with a code and writes nothing. */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import Fastify from 'fastify';
import type { FastifyInstance } from 'fastify';
import { MP_PREFIX, STATE_MESSAGES_ROUTE, STATUS_MESSAGES_ROUTE, signRelayRequest, stateRelay } from '../../src/mp/state-relay.ts';
import { createComponentLog } from '../../src/shared/cmtrace-log.ts';
import { parseSvf } from '../../src/shared/status-message.ts';
import { MAX_REPORT_BYTES } from '../../src/shared/state-report.ts';
import { ROOT, tempDir } from '../helpers/processes.ts';

const SPEC = fs.readFileSync(path.join(ROOT, 'test', 'fixtures', 'state-report-spec.xml'), 'utf8');
const KEY = 'relay-test-key';
const STATE = `${MP_PREFIX}${STATE_MESSAGES_ROUTE}`;
const STATUS = `${MP_PREFIX}${STATUS_MESSAGES_ROUTE}`;

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await fsp.rm(d, { recursive: true, force: true });
});

async function build(): Promise<{ app: FastifyInstance; smx: string; svf: string; log: string }> {
  const dir = await tempDir('relay');
  dirs.push(dir);
  const smx = path.join(dir, 'statesys');
  const svf = path.join(dir, 'statmsgs');
  const log = createComponentLog({ dir, name: 'MP_Relay', component: 'MP_RelayEndpoint' });
  const app = Fastify();
  await app.register(stateRelay, { prefix: MP_PREFIX, key: KEY, siteCode: 'CS1', statesysIncoming: smx, statmsgs: svf, log });
  return { app, smx, svf, log: log.file };
}

function post(app: FastifyInstance, url: string, body: string, key = KEY, signedBody = body) {
  return app.inject({ method: 'POST', url, payload: body, headers: { 'content-type': url === STATE ? 'text/xml' : 'application/json', authorization: signRelayRequest(key, 'POST', url, signedBody) } });
}

const files = (dir: string) => (fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => !f.startsWith('.')) : []);

test("a signed Report (the spec's example) is written unchanged as one .SMX in the state system's inbox", async () => {
  const { app, smx, log } = await build();
  const res = await post(app, STATE, SPEC);
  assert.equal(res.statusCode, 202);
  const json = res.json<{ file: string; records: number; invalidRecords: number }>();
  assert.deepEqual([json.records, json.invalidRecords], [1, 0]);
  assert.deepEqual(files(smx), [res.json().file]);
  assert.match(res.json().file, /\.SMX$/);
  assert.equal(fs.readFileSync(path.join(smx, res.json().file), 'utf8'), SPEC);
  assert.match(fs.readFileSync(log, 'utf8'), /Relayed a state-message report from GUID:A1006D0E-CF56-41D1-A006-6330EFC39381 \(PS1WIN7X64, priority 5\): 1 messages, 0 invalid/);
});

test('an unsigned, wrongly signed, replayed or altered request is refused with 401 and writes nothing', async () => {
  const { app, smx } = await build();
  const unsigned = await app.inject({ method: 'POST', url: STATE, payload: SPEC, headers: { 'content-type': 'text/xml' } });
  assert.deepEqual([unsigned.statusCode, unsigned.json().code], [401, 'CAIRN_AUTH_MISSING']);
  const wrongKey = await post(app, STATE, SPEC, 'another key');
  assert.deepEqual([wrongKey.statusCode, wrongKey.json().code], [401, 'CAIRN_AUTH_INVALID']);
  const altered = await post(app, STATE, SPEC.replace('State ID="2"', 'State ID="3"'), KEY, SPEC);
  assert.deepEqual([altered.statusCode, altered.json().code], [401, 'CAIRN_AUTH_INVALID']);
  const headers = { 'content-type': 'text/xml', authorization: signRelayRequest(KEY, 'POST', STATE, SPEC) };
  assert.equal((await app.inject({ method: 'POST', url: STATE, payload: SPEC, headers })).statusCode, 202);
  const replay = await app.inject({ method: 'POST', url: STATE, payload: SPEC, headers });
  assert.deepEqual([replay.statusCode, replay.json().code], [401, 'CAIRN_AUTH_INVALID']);
  assert.equal(files(smx).length, 1, 'only the one good request wrote a file');
});

test('malformed XML and a body that is not a Report get 400 with their codes and write nothing', async () => {
  const { app, smx, log } = await build();
  const malformed = await post(app, STATE, '<Report><ReportHeader>');
  assert.deepEqual([malformed.statusCode, malformed.json().code], [400, 'CAIRN_STATE_XML_MALFORMED']);
  const other = await post(app, STATE, '<Inventory/>');
  assert.deepEqual([other.statusCode, other.json().code], [400, 'CAIRN_STATE_REPORT_INVALID']);
  assert.deepEqual(files(smx), []);
  assert.match(fs.readFileSync(log, 'utf8'), /Refused POST \/mp\/v1\/relay\/state-messages from .*: CAIRN_STATE_XML_MALFORMED/);
});

test('a report with an unknown topic type is relayed, counting the invalid record for the state system', async () => {
  const { app, smx } = await build();
  const res = await post(app, STATE, SPEC.replace('Type="500"', 'Type="777"'));
  assert.equal(res.statusCode, 202);
  assert.deepEqual([res.json().records, res.json().invalidRecords], [1, 1]);
  assert.equal(files(smx).length, 1);
});

test('an oversize report gets 413 CAIRN_STATE_TOO_LARGE, an oversize status body 413 CAIRN_STATUS_TOO_LARGE', async () => {
  const { app, smx, svf } = await build();
  const big = SPEC.replace('<ReportBody>', `<ReportBody><!--${'x'.repeat(MAX_REPORT_BYTES)}-->`);
  const res = await post(app, STATE, big);
  assert.deepEqual([res.statusCode, res.json().code], [413, 'CAIRN_STATE_TOO_LARGE']);
  const res2 = await post(app, STATUS, JSON.stringify({ messages: [], pad: 'x'.repeat(2 * 1024 * 1024) }));
  assert.deepEqual([res2.statusCode, res2.json().code], [413, 'CAIRN_STATUS_TOO_LARGE']);
  assert.deepEqual([files(smx), files(svf)], [[], []]);
});

test('client status messages become one .SVF the status manager reads, severity from the ID bits', async () => {
  const { app, svf } = await build();
  const body = {
    messages: [
      { id: 1073753174, component: 'Peer DP Agent', machine: 'PC1', time: '2026-11-22T07:00:00.000Z', istr: ['CS100001', '1'], attrs: [{ id: 408, value: 'GUID:1' }, { id: 400, value: 'CS100001' }] },
      { id: 11351, severity: 'W', component: 'Peer DP Agent', machine: 'PC1', time: '2026-11-22T07:00:01.000Z' },
    ],
  };
  const res = await post(app, STATUS, JSON.stringify(body));
  assert.equal(res.statusCode, 202);
  const [file] = files(svf);
  assert.equal(file, res.json().file);
  const msgs = parseSvf(fs.readFileSync(path.join(svf, file!), 'utf8'));
  assert.deepEqual(
    msgs.map((m) => [m.id, m.severity, m.source, m.component, m.site, m.istr.length, m.attrs.length]),
    [
      [1073753174, 'I', 'SMS Client', 'Peer DP Agent', 'CS1', 2, 2],
      [11351, 'W', 'SMS Client', 'Peer DP Agent', 'CS1', 0, 0],
    ],
  );
});

test('invalid client status messages get 400 CAIRN_STATUS_MESSAGE_INVALID naming the problem, and write nothing', async () => {
  const { app, svf } = await build();
  const cases: [string, RegExp][] = [
    ['not json', /not JSON/],
    ['[]', /JSON object/],
    ['{"messages":[]}', /non-empty list/],
    ['{"messages":[{"id":"x","component":"c","machine":"m","time":"2026-01-01T00:00:00Z"}]}', /id must be an integer/],
    ['{"messages":[{"id":1,"machine":"m","time":"2026-01-01T00:00:00Z"}]}', /component must be a string/],
    ['{"messages":[{"id":1,"component":"c","machine":"m","time":"soon"}]}', /time is not a date/],
    ['{"messages":[{"id":3221236054,"severity":"I","component":"c","machine":"m","time":"2026-01-01T00:00:00Z"}]}', /contradicts/],
  ];
  for (const [body, why] of cases) {
    const res = await post(app, STATUS, body);
    assert.equal(res.statusCode, 400, body);
    assert.equal(res.json().code, 'CAIRN_STATUS_MESSAGE_INVALID', body);
    assert.match(res.json().message, why, body);
  }
  assert.deepEqual(files(svf), []);
});
