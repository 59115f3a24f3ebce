/** IPv4 subnets, ranges and name patterns as collection rules and boundaries use them. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { globToRegExp, ipv4ToNumber, parseRange, parseSubnet, spanHas } from '../../src/shared/ip-match.ts';

test('IPv4 addresses parse to numbers; anything else does not', () => {
  assert.equal(ipv4ToNumber('10.0.0.1'), 0x0a000001);
  assert.equal(ipv4ToNumber('255.255.255.255'), 0xffffffff);
  assert.equal(ipv4ToNumber('::ffff:10.0.0.1'), 0x0a000001);
  for (const bad of ['10.0.0.256', '10.0.0', 'fe80::1', '', 'a.b.c.d']) assert.equal(ipv4ToNumber(bad), undefined, bad);
});

test('subnets ignore host bits; ranges must not run backwards', () => {
  assert.deepEqual(parseSubnet('10.1.2.3/16'), { first: 0x0a010000, last: 0x0a01ffff });
  assert.deepEqual(parseSubnet('0.0.0.0/0'), { first: 0, last: 0xffffffff });
  assert.equal(parseSubnet('10.1.0.0/33'), undefined);
  assert.equal(parseSubnet('10.1.0.0'), undefined);
  assert.deepEqual(parseRange('10.0.0.1 - 10.0.0.9'), { first: 0x0a000001, last: 0x0a000009 });
  assert.equal(parseRange('10.0.0.9-10.0.0.1'), undefined);
  const span = parseSubnet('192.168.7.0/24')!;
  assert.equal(spanHas(span, ['10.0.0.1', '192.168.7.200']), true);
  assert.equal(spanHas(span, ['192.168.8.1', 'fe80::1']), false);
});

test('name patterns: * and ?, case-insensitive, everything else literal', () => {
  assert.ok(globToRegExp('WEB-*').test('web-01'));
  assert.ok(globToRegExp('db?').test('DB1'));
  assert.ok(!globToRegExp('db?').test('DB12'));
  assert.ok(!globToRegExp('a.b').test('axb'));
});
