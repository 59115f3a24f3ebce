/** The state-message Report parser: the spec's example as given, and every way a report or a message can be bad. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { parseStateReport, parseWmiDateTime, MAX_REPORT_BYTES } from '../../src/shared/state-report.ts';
import { isCairnError } from '../../src/shared/errors.ts';
import { ROOT } from '../helpers/processes.ts';

const SPEC = fs.readFileSync(path.join(ROOT, 'test', 'fixtures', 'state-report-spec.xml'), 'utf8');
const NOW = Date.parse('2014-01-21T00:00:00Z');

function report(messages: string, machine = '<ClientID>GUID:1</ClientID><NetBIOSName>PC1</NetBIOSName>'): string {
  return `<Report><ReportHeader><Identification><Machine>${machine}</Machine></Identification></ReportHeader><ReportBody>${messages}</ReportBody></Report>`;
}

function msg(serial: number, type = '500', extra = ''): string {
  return `<StateMessage MessageTime="20140120171855.573000+000" SerialNumber="${serial}"><Topic ID="u-${serial}" Type="${type}" IDType="3"/><State ID="2" Criticality="0"/>${extra}</StateMessage>`;
}

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (isCairnError(err)) return err.code;
    throw err;
  }
  return 'no error';
}

test("the spec's Report example parses exactly as given into one typed record", () => {
  const r = parseStateReport(SPEC, { now: NOW });
  assert.deepEqual(r.client, { clientId: 'GUID:A1006D0E-CF56-41D1-A006-6330EFC39381', netbiosName: 'PS1WIN7X64', clientVersion: '5.00.7958.1000', priority: 5 });
  assert.deepEqual(r.invalid, []);
  assert.deepEqual(r.records, [
    {
      clientId: 'GUID:A1006D0E-CF56-41D1-A006-6330EFC39381',
      netbiosName: 'PS1WIN7X64',
      messageTime: '2014-01-20T17:18:55.573Z',
      serialNumber: 232,
      topicType: 500,
      topicId: '505fda07-b4f3-45fb-83d9-8642554e2773',
      idType: 3,
      user: '',
      userSid: '',
      stateId: 2,
      criticality: 0,
      userFlags: 0,
      userParams: ['200'],
    },
  ]);
});

test('WMI datetimes convert to UTC using their minute offset; impossible dates are refused', () => {
  assert.equal(parseWmiDateTime('20140120171855.573000+000'), '2014-01-20T17:18:55.573Z');
  assert.equal(parseWmiDateTime('20140120171855.573999+060'), '2014-01-20T16:18:55.573Z');
  assert.equal(parseWmiDateTime('20140120171855.000000-300'), '2014-01-20T22:18:55.000Z');
  assert.equal(parseWmiDateTime('20140230171855.000000+000'), undefined);
  assert.equal(parseWmiDateTime('2014-01-20T17:18:55Z'), undefined);
});

test('malformed XML, a DOCTYPE, or a body that is not a state-message Report is refused with its code', () => {
  assert.equal(code(() => parseStateReport('<Report><ReportBody>', { now: NOW })), 'CAIRN_STATE_XML_MALFORMED');
  assert.equal(code(() => parseStateReport('not xml at all', { now: NOW })), 'CAIRN_STATE_XML_MALFORMED');
  assert.equal(code(() => parseStateReport(SPEC.replace('</ClientID>', '</ClientId>'), { now: NOW })), 'CAIRN_STATE_XML_MALFORMED');
  assert.equal(code(() => parseStateReport(`<!DOCTYPE r [<!ENTITY a "aaaa">]>${SPEC}`, { now: NOW })), 'CAIRN_STATE_XML_MALFORMED');
  assert.equal(code(() => parseStateReport('<Inventory><ReportBody/></Inventory>', { now: NOW })), 'CAIRN_STATE_REPORT_INVALID');
  assert.equal(code(() => parseStateReport(report(msg(1), '<NetBIOSName>PC1</NetBIOSName>'), { now: NOW })), 'CAIRN_STATE_REPORT_INVALID');
  assert.equal(code(() => parseStateReport(SPEC.replace('<ReportContent>State Message Data', '<ReportContent>Hardware Inventory'), { now: NOW })), 'CAIRN_STATE_REPORT_INVALID');
  assert.equal(code(() => parseStateReport('<Report><ReportHeader><Identification><Machine><ClientID>GUID:1</ClientID></Machine></Identification></ReportHeader></Report>', { now: NOW })), 'CAIRN_STATE_REPORT_INVALID');
});

test('a report larger than the limit is CAIRN_STATE_TOO_LARGE', () => {
  assert.equal(code(() => parseStateReport(SPEC, { now: NOW, maxBytes: 100 })), 'CAIRN_STATE_TOO_LARGE');
  const big = report(Array.from({ length: Math.ceil(MAX_REPORT_BYTES / msg(1).length) + 1 }, (_, i) => msg(i)).join(''));
  assert.equal(code(() => parseStateReport(big, { now: NOW })), 'CAIRN_STATE_TOO_LARGE');
});

test('an unknown topic type is one invalid record; the report keeps its good messages', () => {
  const r = parseStateReport(report(msg(1) + msg(2, '777') + msg(3, '902')), { now: NOW });
  assert.deepEqual(r.records.map((x) => [x.serialNumber, x.topicType]), [[1, 500], [3, 902]]);
  assert.deepEqual(r.invalid.map((x) => [x.index, x.code]), [[1, 'CAIRN_STATE_TOPIC_UNKNOWN']]);
  assert.match(r.invalid[0]!.reason, /777/);
});

test('missing or malformed fields make an invalid record with CAIRN_STATE_MESSAGE_INVALID naming the field', () => {
  const cases: [string, RegExp][] = [
    ['<StateMessage SerialNumber="1"><Topic ID="a" Type="500"/><State ID="1"/></StateMessage>', /MessageTime is missing/],
    ['<StateMessage MessageTime="yesterday" SerialNumber="1"><Topic ID="a" Type="500"/><State ID="1"/></StateMessage>', /MessageTime is not a WMI datetime/],
    ['<StateMessage MessageTime="20140120171855.573000+000"><Topic ID="a" Type="500"/><State ID="1"/></StateMessage>', /SerialNumber is missing/],
    ['<StateMessage MessageTime="20140120171855.573000+000" SerialNumber="x1"><Topic ID="a" Type="500"/><State ID="1"/></StateMessage>', /SerialNumber is not an integer/],
    ['<StateMessage MessageTime="20140120171855.573000+000" SerialNumber="1"><State ID="1"/></StateMessage>', /exactly one Topic/],
    ['<StateMessage MessageTime="20140120171855.573000+000" SerialNumber="1"><Topic Type="500"/><State ID="1"/></StateMessage>', /Topic ID is missing/],
    ['<StateMessage MessageTime="20140120171855.573000+000" SerialNumber="1"><Topic ID="a" Type="500"/></StateMessage>', /exactly one State/],
    ['<StateMessage MessageTime="20140120171855.573000+000" SerialNumber="1"><Topic ID="a" Type="500"/><State/></StateMessage>', /State ID is missing/],
    ['<StateMessage MessageTime="20140120171855.573000+000" SerialNumber="1"><Topic ID="a" Type="500"/><State ID="1"/><UserParameters Count="2"><Param>1</Param></UserParameters></StateMessage>', /Count is 2 but there are 1/],
    ['<StateMessage MessageTime="20200120171855.573000+000" SerialNumber="1"><Topic ID="a" Type="500"/><State ID="1"/></StateMessage>', /more than a day ahead/],
  ];
  for (const [xml, reason] of cases) {
    const r = parseStateReport(report(xml + msg(9)), { now: NOW });
    assert.equal(r.invalid.length, 1, xml);
    assert.equal(r.invalid[0]!.code, 'CAIRN_STATE_MESSAGE_INVALID', xml);
    assert.match(r.invalid[0]!.reason, reason, xml);
    assert.deepEqual(r.records.map((x) => x.serialNumber), [9], 'the good message is kept');
  }
});

test('a report with an empty body has no records and is valid', () => {
  const r = parseStateReport(report(''), { now: NOW });
  assert.deepEqual([r.records.length, r.invalid.length], [0, 0]);
});

test('entities and character references in values are decoded', () => {
  const r = parseStateReport(report(msg(1).replace('ID="u-1"', 'ID="a&amp;b&#x41;&#66;&lt;"'), '<ClientID>GUID:&quot;1&quot;</ClientID>'), { now: NOW });
  assert.equal(r.records[0]!.topicId, 'a&bAB<');
  assert.equal(r.client.clientId, 'GUID:"1"');
});
