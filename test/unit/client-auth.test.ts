/** The client–MP signatures (docs/adr/0005-mp-client-protocol.md): what verifies and what must not. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  CLIENT_ID_RE,
  keyFingerprint,
  newClientId,
  newKeyPair,
  parseClientAuthorization,
  parsePublicKey,
  policyHash,
  signClientRequest,
  signDocument,
  verifyClientSignature,
  verifyDocument,
} from '../../src/shared/client-auth.ts';

const client = newKeyPair();
const other = newKeyPair();
const id = newClientId();

test('a client ID has the Report ClientID shape and is new each time', () => {
  assert.match(id, CLIENT_ID_RE);
  assert.notEqual(newClientId(), id);
});

test('a signed request verifies with the client key, and not with another key or a changed request', () => {
  const body = JSON.stringify({ packageId: 'CS100001', version: 2 });
  const header = signClientRequest(id, client.privateKey, 'post', '/mp/v1/location/content', body, 1_700_000_000_000);
  const auth = parseClientAuthorization(header);
  assert.ok(auth);
  assert.equal(auth.clientId, id);
  assert.equal(auth.ts, 1_700_000_000_000);
  assert.equal(verifyClientSignature(auth, client.publicKey, 'POST', '/mp/v1/location/content', body), true);
  assert.equal(verifyClientSignature(auth, other.publicKey, 'POST', '/mp/v1/location/content', body), false);
  assert.equal(verifyClientSignature(auth, client.publicKey, 'POST', '/mp/v1/location/content', body.replace('2', '3')), false);
  assert.equal(verifyClientSignature(auth, client.publicKey, 'POST', '/mp/v1/location/content?x=1', body), false);
  assert.equal(verifyClientSignature(auth, client.publicKey, 'GET', '/mp/v1/location/content', body), false);
  assert.equal(verifyClientSignature({ ...auth, ts: auth.ts + 1 }, client.publicKey, 'POST', '/mp/v1/location/content', body), false);
  assert.equal(verifyClientSignature(auth, 'not a key', 'POST', '/mp/v1/location/content', body), false);
});

test('malformed Authorization headers do not parse', () => {
  const good = signClientRequest(id, client.privateKey, 'GET', '/mp/v1/registration');
  assert.ok(parseClientAuthorization(good));
  for (const bad of [undefined, '', 'CairnHMAC ts=1,nonce=2,sig=3', good.replace('GUID:', 'guid:'), good.replace(/nonce=[0-9a-f]+/, 'nonce=zz'), `${good}x`, good.replace(/sig=.*/, 'sig=')]) {
    assert.equal(parseClientAuthorization(bad), undefined, String(bad));
  }
});

test('a site-signed document verifies, and a tampered one or a wrong signature does not', () => {
  const doc = Buffer.from(JSON.stringify({ policyId: '{A}', version: '1.00', category: 'ClientSettings' }));
  const sig = signDocument(client.privateKey, doc);
  assert.equal(verifyDocument(client.publicKey, doc, sig), true);
  const tampered = Buffer.from(doc);
  tampered.writeUInt8(tampered.readUInt8(5) ^ 1, 5);
  assert.equal(verifyDocument(client.publicKey, tampered, sig), false);
  assert.equal(verifyDocument(other.publicKey, doc, sig), false);
  assert.equal(verifyDocument(client.publicKey, doc, undefined), false);
  assert.equal(verifyDocument(client.publicKey, doc, 'short'), false);
});

test('fingerprints and policy hashes are stable hex upper; only Ed25519 keys parse', () => {
  assert.match(keyFingerprint(client.publicKey), /^[0-9A-F]{64}$/);
  assert.equal(keyFingerprint(client.publicKey), keyFingerprint(client.publicKey));
  assert.notEqual(keyFingerprint(client.publicKey), keyFingerprint(other.publicKey));
  assert.equal(policyHash('abc'), 'BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD');
  assert.ok(parsePublicKey(client.publicKey));
  assert.equal(parsePublicKey('-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n'), undefined);
});

// --- Sessions (ADR 0012) -------------------------------------------------------

import { generateKeyPairSync } from 'node:crypto';
import { acceptSessionReply, answerSessionOffer, newSessionId, newSessionOffer, parseSessionAuthorization, parseX25519, signSessionRequest, verifySessionMac } from '../../src/shared/client-auth.ts';

function exchange() {
  const site = generateKeyPairSync('ed25519');
  const offer = newSessionOffer();
  const sessionId = newSessionId();
  const mp = answerSessionOffer(parseX25519(offer.clientKey)!, offer.clientKey, sessionId, id);
  const bytes = Buffer.from(JSON.stringify({ clientId: id, sessionId, clientKey: offer.clientKey, mpKey: mp.mpKey, expiresInSeconds: 3600, expiresAt: new Date().toISOString() }));
  return { site, offer, sessionId, mp, bytes, signature: signDocument(site.privateKey, bytes) };
}

test('both sides of a session exchange derive the same key, and a request MAC verifies only unchanged and under that key', () => {
  const x = exchange();
  const s = acceptSessionReply(x.offer, id, x.bytes, x.signature, x.site.publicKey);
  assert.equal(s.sessionId, x.sessionId);
  assert.equal(s.expiresInSeconds, 3600);
  assert.deepEqual(s.key, x.mp.key);
  const header = signSessionRequest(id, s.sessionId, s.key, 'POST', '/mp/v1/location/content', '{"a":1}');
  const auth = parseSessionAuthorization(header)!;
  assert.equal(auth.clientId, id);
  assert.equal(auth.sessionId, x.sessionId);
  assert.equal(verifySessionMac(auth, x.mp.key, 'POST', '/mp/v1/location/content', '{"a":1}'), true);
  assert.equal(verifySessionMac(auth, x.mp.key, 'POST', '/mp/v1/location/content', '{"a":2}'), false, 'another body');
  assert.equal(verifySessionMac(auth, x.mp.key, 'GET', '/mp/v1/location/content', '{"a":1}'), false, 'another method');
  assert.equal(verifySessionMac(auth, exchange().mp.key, 'POST', '/mp/v1/location/content', '{"a":1}'), false, 'another session key');
  assert.equal(verifySessionMac({ ...auth, ts: auth.ts + 1 }, x.mp.key, 'POST', '/mp/v1/location/content', '{"a":1}'), false, 'another timestamp');
});

test('a session reply is refused when not signed by the pinned site key, for another client, or for another exchange', () => {
  const x = exchange();
  assert.throws(() => acceptSessionReply(x.offer, id, x.bytes, x.signature, generateKeyPairSync('ed25519').publicKey), /signature does not verify/);
  assert.throws(() => acceptSessionReply(x.offer, id, x.bytes, undefined, x.site.publicKey), /signature is missing/);
  assert.throws(() => acceptSessionReply(x.offer, newClientId(), x.bytes, x.signature, x.site.publicKey), /another client or another exchange/);
  assert.throws(() => acceptSessionReply(newSessionOffer(), id, x.bytes, x.signature, x.site.publicKey), /another client or another exchange/);
});

test('malformed session headers and X25519 keys do not parse', () => {
  const good = signSessionRequest(id, newSessionId(), Buffer.alloc(32), 'GET', '/x');
  assert.ok(parseSessionAuthorization(good));
  assert.equal(parseSessionAuthorization(good.replace('CairnSession', 'CairnClient')), undefined);
  assert.equal(parseSessionAuthorization(good.replace(/sid=[0-9a-f]+/, 'sid=XYZ')), undefined);
  assert.equal(parseSessionAuthorization(good.replace(/mac=[^,]+$/, 'mac=short')), undefined);
  assert.equal(parseSessionAuthorization(undefined), undefined);
  assert.equal(parseX25519('A'.repeat(43)) !== undefined, true);
  assert.equal(parseX25519('not a key'), undefined);
  assert.equal(parseX25519(42), undefined);
});
