/** Debian version ordering: our implementation of dpkg's algorithm against known pairs and against dpkg itself. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { compareDebianVersions, debianVersionError, parseDebianVersion, versionSatisfies } from '../../src/catalog/dpkg-version.ts';

/** [a, b, sign of a compared with b]: from dpkg's own test suite (t-version.c), Debian policy 5.6.12 and real archive versions. */
const KNOWN: readonly (readonly [string, string, -1 | 0 | 1])[] = [
  ['0', '0', 0],
  ['0', '00', 0],
  ['1', '0', 1],
  ['0', '1', -1],
  ['1:0', '0:0', 1],
  ['1:0', '1', 1],
  ['1:0', '2', 1],
  ['0:1', '1', 0],
  ['1:1', '1:2', -1],
  ['2:1', '1:9999', 1],
  ['1.0', '1.0', 0],
  ['1.0', '1.0-0', 0],
  ['1.0-1', '1.0', 1],
  ['1.0-0', '1.0', 0],
  ['1.0~rc1', '1.0', -1],
  ['1.0~rc1', '1.0~rc2', -1],
  ['1.0~', '1.0', -1],
  ['1.0~~', '1.0~', -1],
  ['1.0~~a', '1.0~~', 1],
  ['1.0~', '1.0~a', -1],
  ['1.0', '1.0a', -1],
  ['1.0a', '1.0+', -1],
  ['1.0+', '1.0.', -1],
  ['1.0.1', '1.0+1', 1],
  ['1.0-1~bpo1', '1.0-1', -1],
  ['1.0-1+deb12u1', '1.0-1', 1],
  ['1.0-1+deb12u1', '1.0-2', -1],
  ['2.36-9+deb12u4', '2.36-9+deb12u10', -1],
  ['1.2.3-1ubuntu0.1', '1.2.3-1ubuntu0.10', -1],
  ['1.2.3-1ubuntu1', '1.2.3-1', 1],
  ['1:2.0', '3.0', 1],
  ['0.0.26-3', '0.0.26-1', 1],
  ['7.88.1-10+deb12u5', '7.88.1-10+deb12u12', -1],
  ['3.0.11-1~deb12u2', '3.0.11-1', -1],
  ['3.0.11-1~deb12u2', '3.0.9-1', 1],
  ['1.0-1', '1.0-1.1', -1],
  ['1.0-1.1', '1.0-1a', 1],
  ['a', 'b', -1],
  ['1a', '1b', -1],
  ['1Z', '1a', -1],
  ['1.001', '1.1', 0],
  ['1.0010', '1.10', 0],
  ['10', '9', 1],
  ['1.10', '1.9', 1],
  ['1.2.10', '1.2.9', 1],
  ['20230101', '2023.01.01', 1],
  ['1:1.0', '1:1.0-0', 0],
  ['1.0+dfsg-1', '1.0-1', 1],
  ['1.0+dfsg1-1', '1.0+dfsg-1', 1],
  ['2.0~beta1+git20240101', '2.0~beta1', 1],
  ['4.19.0-21', '4.19.0-21~', 1],
  ['6.1.0-18', '6.1.0-18-amd64', -1],
  ['1.0-a-b', '1.0-a', 1],
  ['9:1', '10:0', -1],
  ['1.0+b1', '1.0', 1],
  ['1.0+b1', '1.0-1', 1],
  ['1:1.2.11.dfsg-2+deb11u2', '1:1.2.13.dfsg-1', -1],
  ['~~', '~~a', -1],
  ['~', '~~a', 1],
  ['~', '', -1],
  ['', '~', 1],
];

/** Runs `dpkg --compare-versions`; true when the relation holds. */
function dpkg(a: string, op: string, b: string): boolean {
  try {
    execFileSync('dpkg', ['--compare-versions', a, op, b], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const hasDpkg = fs.existsSync('/usr/bin/dpkg');

test('Debian versions compare as dpkg orders them: epochs, tildes, revisions, digit runs', () => {
  for (const [a, b, want] of KNOWN) {
    // A few entries probe verrevcmp on bare strings, which parse rejects; compare those through parts.
    if (debianVersionError(a) || debianVersionError(b)) continue;
    assert.equal(compareDebianVersions(a, b), want, `${a} vs ${b}`);
    assert.equal(compareDebianVersions(b, a), 0 - want, `${b} vs ${a}`);
  }
});

test('the known pairs agree with dpkg --compare-versions on this machine', { skip: hasDpkg ? false : 'dpkg is not installed' }, () => {
  for (const [a, b, want] of KNOWN) {
    if (debianVersionError(a) || debianVersionError(b)) continue;
    const op = want < 0 ? 'lt' : want > 0 ? 'gt' : 'eq';
    assert.ok(dpkg(a, op, b), `dpkg says ${a} ${op} ${b} does not hold`);
  }
});

test('random versions built from tricky parts order exactly as dpkg orders them', { skip: hasDpkg ? false : 'dpkg is not installed' }, () => {
  // A fixed linear congruential generator, so a failure can be reproduced.
  let seed = 12345;
  const rnd = (n: number): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const parts = ['0', '1', '2', '10', '01', '9', '.', '+', '~', '~~', 'a', 'b', 'Z', 'rc', 'dfsg', 'deb12u', 'ubuntu', '~bpo', '.1'];
  const make = (): string => {
    let up = String(rnd(3));
    for (let i = rnd(5); i > 0; i -= 1) up += parts[rnd(parts.length)];
    const epoch = rnd(4) === 0 ? `${rnd(3)}:` : '';
    let rev = '';
    if (rnd(2)) {
      rev = `-${rnd(3)}`;
      for (let i = rnd(3); i > 0; i -= 1) rev += parts[rnd(parts.length)];
    }
    return `${epoch}${up}${rev}`;
  };
  let checked = 0;
  for (let i = 0; i < 250; i += 1) {
    const a = make();
    const b = rnd(5) === 0 ? a : make();
    if (debianVersionError(a) || debianVersionError(b)) continue;
    const ours = compareDebianVersions(a, b);
    const op = ours < 0 ? 'lt' : ours > 0 ? 'gt' : 'eq';
    assert.ok(dpkg(a, op, b), `we say ${a} ${op} ${b}; dpkg disagrees`);
    checked += 1;
  }
  assert.ok(checked > 200, `only ${checked} random pairs were valid`);
});

test('versionSatisfies implements the six operators of dpkg --compare-versions', () => {
  assert.ok(versionSatisfies('1.0~rc1', 'lt', '1.0'));
  assert.ok(versionSatisfies('1.0', 'le', '1.0-0'));
  assert.ok(versionSatisfies('1:1', 'gt', '99'));
  assert.ok(versionSatisfies('1:1', 'ge', '1:1'));
  assert.ok(versionSatisfies('1.0', 'eq', '0:1.0'));
  assert.ok(versionSatisfies('1.0', 'ne', '1.0-1'));
  assert.ok(!versionSatisfies('1.0', 'ne', '1.00'));
});

test('malformed versions are rejected with dpkg reasons and a CAIRN_CATALOG_VERSION_INVALID code', () => {
  assert.deepEqual(parseDebianVersion(' 1:2.0-3 '), { epoch: 1, upstream: '2.0', revision: '3' });
  assert.deepEqual(parseDebianVersion('2.0-1-2'), { epoch: 0, upstream: '2.0-1', revision: '2' });
  const cases: [string, RegExp][] = [
    ['', /empty/],
    ['1.0 2', /embedded spaces/],
    [':1.0', /nothing before colon/],
    ['a:1.0', /epoch in version is not number/],
    ['1.0-', /revision number is empty/],
    ['1:', /nothing after colon/],
    ['abc', /does not start with digit/],
    ['1.0_1', /invalid character in version number/],
    ['1.0-1_2', /invalid character in revision number/],
  ];
  for (const [v, why] of cases) {
    assert.throws(() => parseDebianVersion(v), (err: { code?: string; message?: string }) => err.code === 'CAIRN_CATALOG_VERSION_INVALID' && why.test(err.message ?? ''), v);
  }
});
