/**
 * The agent's policy checks (ADR 0005): a signed assignment list and signed,
 * hashed bodies are accepted; anything tampered with is refused with its
 * code. Documents are signed with a real site key pair, as the MP signs them.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPublicKey } from 'node:crypto';
import { newKeyPair, policyHash, signDocument } from '../../src/shared/client-auth.ts';
import { isCairnError } from '../../src/shared/errors.ts';
import { parseClientSettings, parseContentDeployment, verifyAssignmentList, verifyPolicyBody } from '../../src/agent/policy-agent.ts';
import type { PolicyAssignment } from '../../src/agent/policy-agent.ts';
import { expandTemplate, parseFacts } from '../../src/agent/facts.ts';

const CLIENT = 'GUID:A1006D0E-CF56-41D1-A006-6330EFC39381';
const site = newKeyPair();
const siteKey = createPublicKey(site.publicKey);
const other = newKeyPair();

const body = Buffer.from(JSON.stringify({ policyId: '{5E0A3B0C-0F4B-4B5E-9C1D-2A8D3C9B7E11}', version: '2.00', category: 'ClientSettings', policyPollSeconds: 60, stateReportingSeconds: 30, statusReportingSeconds: 30 }));
const assignment: PolicyAssignment = { assignmentId: '{A0000000-0000-0000-0000-000000000001}', assignmentVersion: '1.00', policyId: '{5E0A3B0C-0F4B-4B5E-9C1D-2A8D3C9B7E11}', policyVersion: '2.00', category: 'ClientSettings', hashAlgorithm: 32780, hash: policyHash(body) };
const list = Buffer.from(JSON.stringify({ clientId: CLIENT, siteCode: 'CS1', generatedAt: '2026-11-22T07:00:00.000Z', assignments: [assignment] }));

const code = (c: string) => (err: unknown) => isCairnError(err) && err.code === c;

test('a signed assignment list and a signed body with the right hash are accepted', () => {
  const l = verifyAssignmentList(list, signDocument(site.privateKey, list), siteKey, CLIENT);
  assert.deepEqual(l.assignments, [assignment]);
  const b = verifyPolicyBody(assignment, body, { signature: signDocument(site.privateKey, body), hash: policyHash(body), hashAlgorithm: '32780' }, siteKey);
  assert.deepEqual(parseClientSettings(b), { policyPollSeconds: 60, stateReportingSeconds: 30, statusReportingSeconds: 30, scanWindowSeconds: 7200, scanScheduleSeconds: 604800 });
});

test('an assignment list changed after signing, signed by another key, unsigned or for another client is refused', () => {
  const sig = signDocument(site.privateKey, list);
  const tampered = Buffer.from(list.toString().replace('"2.00"', '"3.00"'));
  assert.throws(() => verifyAssignmentList(tampered, sig, siteKey, CLIENT), code('CAIRN_AGENT_POLICY_SIGNATURE_INVALID'));
  assert.throws(() => verifyAssignmentList(list, signDocument(other.privateKey, list), siteKey, CLIENT), code('CAIRN_AGENT_POLICY_SIGNATURE_INVALID'));
  assert.throws(() => verifyAssignmentList(list, undefined, siteKey, CLIENT), code('CAIRN_AGENT_POLICY_SIGNATURE_INVALID'));
  assert.throws(() => verifyAssignmentList(list, sig, siteKey, 'GUID:B2006D0E-CF56-41D1-A006-6330EFC39382'), code('CAIRN_AGENT_POLICY_INVALID'));
});

test('a tampered policy body is refused: wrong hash, wrong signature, or a body that contradicts its assignment', () => {
  const evil = Buffer.from(body.toString().replace('"policyPollSeconds":60', '"policyPollSeconds":5'));
  // The MP (or a proxy) serves other bytes with a fresh hash header: the assignment's hash still catches it.
  assert.throws(() => verifyPolicyBody(assignment, evil, { signature: signDocument(site.privateKey, evil), hash: policyHash(evil) }, siteKey), code('CAIRN_AGENT_POLICY_HASH_MISMATCH'));
  // Right bytes, signature by someone else.
  assert.throws(() => verifyPolicyBody(assignment, body, { signature: signDocument(other.privateKey, body) }, siteKey), code('CAIRN_AGENT_POLICY_SIGNATURE_INVALID'));
  assert.throws(() => verifyPolicyBody(assignment, body, {}, siteKey), code('CAIRN_AGENT_POLICY_SIGNATURE_INVALID'));
  // A signed, hashed body for another policy version.
  const wrong = Buffer.from(body.toString().replace('"2.00"', '"1.00"'));
  assert.throws(() => verifyPolicyBody({ ...assignment, hash: policyHash(wrong) }, wrong, { signature: signDocument(site.privateKey, wrong) }, siteKey), code('CAIRN_AGENT_POLICY_INVALID'));
});

test('a ContentDeployment body is parsed, and a malformed one refused', () => {
  const d = { deploymentId: '{D0000000-0000-0000-0000-000000000001}', packageId: 'CS100001', contentId: 'CS100001.1', packageVersion: 1, collectionId: 'SMS00001', files: [{ path: 'a/b.txt', size: 3, hash: 'A'.repeat(64) }] };
  assert.equal(parseContentDeployment(d).files[0]!.path, 'a/b.txt');
  assert.throws(() => parseContentDeployment({ ...d, files: [{ path: 'x', size: -1, hash: 'A'.repeat(64) }] }), code('CAIRN_AGENT_POLICY_INVALID'));
  assert.throws(() => parseContentDeployment({ ...d, packageId: '../x' }), code('CAIRN_AGENT_POLICY_INVALID'));
  assert.throws(() => parseClientSettings({ policyPollSeconds: 0 }), code('CAIRN_AGENT_POLICY_INVALID'));
});

test('facts templates make distinct names and addresses for every simulated client', () => {
  const facts = parseFacts(JSON.stringify({ clients: [{ name: 'SIM-{n:4}', count: 3, ipAddresses: ['{ipv4:10.0.0.254}'], osVersion: 'Ubuntu 24.04' }, { name: 'BR-{i}', ipAddresses: ['192.168.7.{n}'] }] }), 5);
  assert.deepEqual(
    facts.map((f) => [f.name, f.ipAddresses.join(',')]),
    [
      ['SIM-0001', '10.0.0.254'],
      ['SIM-0002', '10.0.0.255'],
      ['SIM-0003', '10.0.1.0'],
      ['BR-4', '192.168.7.1'],
      ['BR-5', '192.168.7.2'],
    ],
  );
  assert.equal(facts[0]!.osVersion, 'Ubuntu 24.04');
  assert.equal(facts[3]!.osFamily, 'linux');
  assert.equal(expandTemplate('{n:3}-{i}', 7, 9, 'x'), '007-9');
});

test('a bad facts file is refused with CAIRN_AGENT_FACTS_INVALID', () => {
  for (const [text, n] of [
    ['not json', 1],
    ['{"clients":[]}', 1],
    ['{"clients":[{"name":"A-{n}","count":1}]}', 2],
    ['{"clients":[{"name":"SAME","count":2}]}', 2],
    ['{"clients":[{"name":"A-{x}"}]}', 1],
    ['{"clients":[{"name":"A-{n}"},{"name":"B-{n}"}]}', 2],
    ['{"clients":[{"name":"A-{n}","ipAddresses":["{ipv4:300.0.0.1}"]}]}', 1],
  ] as const) {
    assert.throws(() => parseFacts(text, n), code('CAIRN_AGENT_FACTS_INVALID'), text);
  }
});
