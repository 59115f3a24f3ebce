/** Debian version ordering: our implementation of dpkg's algorithm against known pairs and against dpkg itself. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
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

/**
 * Asks the real dpkg about many pairs at once: one shell loop per batch
 * (two batches side by side), one `dpkg --compare-versions a op b` per line,
 * answering 1 when the relation holds. A process per pair from Node would
 * cost several times more.
 */
async function dpkgHolds(triples: readonly (readonly [string, string, string])[]): Promise<boolean[]> {
  const run = (part: readonly (readonly [string, string, string])[]): Promise<boolean[]> =>
    new Promise((resolve, reject) => {
      const sh = spawn('sh', ['-c', 'while read -r a op b; do if dpkg --compare-versions "$a" "$op" "$b"; then echo 1; else echo 0; fi; done'], { stdio: ['pipe', 'pipe', 'inherit'] });
      let out = '';
      sh.stdout.on('data', (d: Buffer) => (out += d.toString()));
      sh.on('error', reject);
      sh.on('close', (code) => {
        const answers = out.split('\n').filter(Boolean).map((l) => l === '1');
        if (code !== 0 || answers.length !== part.length) reject(new Error(`the dpkg loop exited with ${code} after ${answers.length} of ${part.length} answers`));
        else resolve(answers);
      });
      sh.stdin.end(part.map((t) => t.join(' ')).join('\n') + '\n');
    });
  const half = Math.ceil(triples.length / 2);
  const [a, b] = await Promise.all([run(triples.slice(0, half)), run(triples.slice(half))]);
  return [...a, ...b];
}

/** Checks our comparison of every pair against dpkg: one call per pair, asking whether our answer holds. */
async function agreeWithDpkg(pairs: readonly (readonly [string, string])[], what: string): Promise<void> {
  const triples = pairs.map(([a, b]) => {
    const c = compareDebianVersions(a, b);
    return [a, c < 0 ? 'lt' : c > 0 ? 'gt' : 'eq', b] as const;
  });
  const answers = await dpkgHolds(triples);
  const wrong = triples.filter((_, i) => !answers[i]);
  assert.deepEqual(wrong.slice(0, 10), [], `${wrong.length} of ${triples.length} ${what} pairs: dpkg disagrees with our ordering`);
}

/** Versions of the apt lists (through apt-helper, which undoes their compression) by package, and of the dpkg status file. */
function realVersions(): { lists: Map<string, string[]>; installed: Map<string, string> } {
  const stanzas = (text: string): [string, string][] =>
    text.split('\n\n').flatMap((st) => {
      const name = /^Package: (\S+)$/m.exec(st)?.[1];
      const version = /^Version: (\S+)$/m.exec(st)?.[1];
      return name && version ? [[name, version] as [string, string]] : [];
    });
  const lists = new Map<string, string[]>();
  const dir = '/var/lib/apt/lists';
  const helper = '/usr/lib/apt/apt-helper';
  if (fs.existsSync(helper) && fs.existsSync(dir)) {
    for (const name of fs.readdirSync(dir).filter((n) => /_Packages(\.\w+)?$/.test(n)).sort()) {
      for (const [pkg, version] of stanzas(execFileSync(helper, ['cat-file', path.join(dir, name)], { encoding: 'utf8', maxBuffer: 512 * 1024 * 1024 }))) {
        const vs = lists.get(pkg);
        if (vs) vs.push(version);
        else lists.set(pkg, [version]);
      }
    }
  }
  const installed = new Map(fs.existsSync('/var/lib/dpkg/status') ? stanzas(fs.readFileSync('/var/lib/dpkg/status', 'utf8')) : []);
  return { lists, installed };
}

test('thousands of generated version pairs order exactly as dpkg --compare-versions orders them', { skip: hasDpkg ? false : 'dpkg is not installed' }, async () => {
  let seed = 20240601;
  const rnd = (n: number): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const parts = ['0', '1', '2', '9', '10', '99', '01', '000', '.', '+', '~', '~~', '-', 'a', 'b', 'z', 'A', 'Z', 'rc', 'beta', 'dfsg', 'deb12u', 'ubuntu', '~bpo', '+b', '.1', ':'];
  const make = (): string => {
    let up = String(rnd(12));
    for (let i = rnd(7); i > 0; i -= 1) up += parts[rnd(parts.length)];
    const epoch = rnd(4) === 0 ? `${rnd(12)}:` : '';
    let rev = '';
    if (rnd(3)) {
      rev = `-${rnd(5)}`;
      for (let i = rnd(4); i > 0; i -= 1) rev += parts[rnd(parts.length)]!.replace(/[-:]/g, '.');
    }
    return `${epoch}${up}${rev}`;
  };
  const pairs: [string, string][] = [];
  while (pairs.length < 2000) {
    const a = make();
    // A third of the pairs are near misses: the same version with one part changed.
    const b = rnd(3) === 0 ? a.replace(/\d+/, (d) => String(Number(d) + rnd(2))) + (rnd(2) ? parts[rnd(parts.length)]!.replace(/[-:]/g, '') : '') : make();
    if (debianVersionError(a) || debianVersionError(b)) continue;
    pairs.push([a, b]);
  }
  await agreeWithDpkg(pairs, 'generated');
});

test("real versions from this machine's apt lists and dpkg database order exactly as dpkg orders them", { skip: hasDpkg ? false : 'dpkg is not installed' }, async (t) => {
  const { lists, installed } = realVersions();
  if (lists.size < 100) {
    t.skip('no apt lists on this machine');
    return;
  }
  // A total order is right when every adjacent pair of it is: sort a sample of the distinct
  // versions with our comparison, then ask dpkg about each neighbour (by transitivity, that checks
  // every pair of the sample).
  const distinct = [...new Set([...[...lists.values()].flat(), ...installed.values()])].filter((v) => !debianVersionError(v));
  const step = Math.max(1, Math.floor(distinct.length / 1500));
  const sample = distinct.filter((_, i) => i % step === 0).sort(compareDebianVersions);
  const neighbours = sample.slice(1).map((v, i) => [sample[i]!, v] as [string, string]);
  // And every installed package's version against each version the lists hold of it: the scan's own comparisons.
  const scanPairs: [string, string][] = [];
  for (const [name, version] of installed) for (const v of new Set(lists.get(name) ?? [])) scanPairs.push([version, v]);
  assert.ok(neighbours.length > 1000, `${neighbours.length} neighbour pairs`);
  assert.ok(scanPairs.length > 10, `${scanPairs.length} installed-against-list pairs`);
  await agreeWithDpkg([...neighbours, ...scanPairs], 'real');
});
