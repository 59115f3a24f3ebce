/** Catalog rules (evaluation over a machine) and catalog input validation at the edge. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkUpdate, parseCategory, parseRule, parseUpdate } from '../../src/catalog/catalog-input.ts';
import { evaluateRule, prepareMachine } from '../../src/catalog/rules.ts';
import type { Machine, Rule } from '../../src/catalog/rules.ts';

const machine: Machine = {
  os: { family: 'debian', version: '12.5' },
  facts: { 'product.name': 'Contoso Agent', 'product.version': '2.4.1', channel: 'beta' },
  packages: [
    { name: 'openssl', arch: 'amd64', version: '3.0.11-1~deb12u2' },
    { name: 'libc6', arch: 'amd64', version: '2.36-9+deb12u4' },
    { name: 'libc6', arch: 'i386', version: '2.36-9+deb12u1' },
    { name: 'tzdata', arch: 'all', version: '2024a-0+deb12u1' },
  ],
};

const pkg = (name: string, op?: 'lt' | 'ge' | 'eq', value?: string, arch?: string): Rule => ({ kind: 'package', name, installed: true, ...(arch ? { arch } : {}), ...(op ? { version: { op, value: value! } } : {}) });

test('package rules compare the installed version with dpkg ordering, per architecture', () => {
  assert.equal(evaluateRule(pkg('openssl', 'lt', '3.0.11-1~deb12u3'), machine), true);
  assert.equal(evaluateRule(pkg('openssl', 'lt', '3.0.11-1~deb12u2'), machine), false);
  assert.equal(evaluateRule(pkg('openssl', 'lt', '3.0.11-1'), machine), true, '~deb12u2 sorts before the plain revision');
  assert.equal(evaluateRule(pkg('openssl', 'ge', '1:0.9'), machine), false, 'an epoch beats any upstream version');
  assert.equal(evaluateRule(pkg('libc6', 'lt', '2.36-9+deb12u4', 'amd64'), machine), false);
  assert.equal(evaluateRule(pkg('libc6', 'lt', '2.36-9+deb12u4', 'i386'), machine), true);
  assert.equal(evaluateRule(pkg('libc6', 'lt', '2.36-9+deb12u4'), machine), true, 'any architecture when none is given');
  assert.equal(evaluateRule(pkg('tzdata', 'ge', '2024a-0+deb12u1', 'all'), machine), true);
  assert.equal(evaluateRule(pkg('curl'), machine), false);
  assert.equal(evaluateRule({ kind: 'package', name: 'curl', installed: false }, machine), true);
  assert.equal(evaluateRule({ kind: 'package', name: 'libc6', arch: 'arm64', installed: false }, machine), true);
  assert.equal(evaluateRule({ kind: 'package', name: 'libc6', installed: false }, machine), false);
});

test('all, any and not combine checks; empty all is true and empty any is false', () => {
  const yes = pkg('openssl');
  const no = pkg('curl');
  assert.equal(evaluateRule({ kind: 'all', rules: [yes, yes] }, machine), true);
  assert.equal(evaluateRule({ kind: 'all', rules: [yes, no] }, machine), false);
  assert.equal(evaluateRule({ kind: 'any', rules: [no, yes] }, machine), true);
  assert.equal(evaluateRule({ kind: 'any', rules: [no] }, machine), false);
  assert.equal(evaluateRule({ kind: 'not', rule: no }, machine), true);
  assert.equal(evaluateRule({ kind: 'all', rules: [] }, machine), true);
  assert.equal(evaluateRule({ kind: 'any', rules: [] }, machine), false);
});

test('fact rules test equality, membership and versions; a missing fact is false', () => {
  const m = prepareMachine(machine);
  assert.equal(evaluateRule({ kind: 'fact', name: 'product.name', op: 'equals', value: 'Contoso Agent' }, m), true);
  assert.equal(evaluateRule({ kind: 'fact', name: 'product.name', op: 'equals', value: 'contoso agent' }, m), false);
  assert.equal(evaluateRule({ kind: 'fact', name: 'channel', op: 'in', values: ['stable', 'beta'] }, m), true);
  assert.equal(evaluateRule({ kind: 'fact', name: 'product.version', op: 'lt', value: '2.10' }, m), true, '2.4.1 < 2.10 numerically');
  assert.equal(evaluateRule({ kind: 'fact', name: 'product.version', op: 'ge', value: '2.4.1' }, m), true);
  assert.equal(evaluateRule({ kind: 'fact', name: 'missing', op: 'equals', value: '' }, m), false);
  assert.equal(evaluateRule({ kind: 'not', rule: { kind: 'fact', name: 'missing', op: 'lt', value: '1' } }, m), true);
  assert.equal(evaluateRule({ kind: 'fact', name: 'toString', op: 'equals', value: 'x' }, m), false, 'no inherited properties');
});

test('OS rules match the family and optionally its version', () => {
  assert.equal(evaluateRule({ kind: 'os', family: 'debian' }, machine), true);
  assert.equal(evaluateRule({ kind: 'os', family: 'ubuntu' }, machine), false);
  assert.equal(evaluateRule({ kind: 'os', family: 'debian', version: { op: 'ge', value: '12' } }, machine), true);
  assert.equal(evaluateRule({ kind: 'os', family: 'debian', version: { op: 'lt', value: '12.5' } }, machine), false);
  assert.equal(evaluateRule({ kind: 'os', family: 'debian' }, { packages: [] }), false, 'no OS known');
});

const goodUpdate = {
  id: '6F9619FF-8B86-D011-B42D-00C04FC964FF',
  revision: 2,
  title: 'Security update for openssl',
  description: 'Fixes things',
  articleId: 'DSA-5532-1',
  classification: '0fa1201d-4330-4fa8-8ae9-b877473b6441',
  products: ['a6d1c4a1-0000-4000-8000-000000000001'],
  severity: 'Important',
  cves: ['CVE-2023-5678'],
  releaseDate: '2023-11-01',
  supersedes: ['a6d1c4a1-0000-4000-8000-000000000002'],
  isApplicable: { kind: 'package', name: 'openssl', installed: true, version: { op: 'lt', value: '3.0.11-1~deb12u2' } },
  isInstalled: { kind: 'package', name: 'openssl', installed: true, version: { op: 'ge', value: '3.0.11-1~deb12u2' } },
  futureField: 'ignored',
};

test('a well-formed update parses into a typed value with lower-case GUIDs and defaults', () => {
  const u = parseUpdate(goodUpdate);
  assert.equal(u.id, '6f9619ff-8b86-d011-b42d-00c04fc964ff');
  assert.equal(u.severity, 'Important');
  assert.deepEqual(u.isApplicable, goodUpdate.isApplicable);
  assert.equal('futureField' in u, false);
  const minimal = parseUpdate({ ...goodUpdate, severity: undefined, cves: undefined, supersedes: undefined, description: undefined, articleId: undefined });
  assert.equal(minimal.severity, 'Unspecified');
  assert.deepEqual(minimal.cves, []);
  assert.equal(minimal.description, '');
});

test('a malformed update is rejected with its ID, a CAIRN_CATALOG code and the field at fault', () => {
  const cases: [Record<string, unknown>, string, RegExp][] = [
    [{ ...goodUpdate, id: 'not-a-guid' }, 'CAIRN_CATALOG_UPDATE_INVALID', /id must be a GUID/],
    [{ ...goodUpdate, revision: 0 }, 'CAIRN_CATALOG_UPDATE_INVALID', /revision must be a positive integer/],
    [{ ...goodUpdate, title: '' }, 'CAIRN_CATALOG_UPDATE_INVALID', /title must not be empty/],
    [{ ...goodUpdate, products: [] }, 'CAIRN_CATALOG_UPDATE_INVALID', /products must have at least 1 entry/],
    [{ ...goodUpdate, severity: 'Severe' }, 'CAIRN_CATALOG_UPDATE_INVALID', /severity must be one of/],
    [{ ...goodUpdate, cves: ['CVE-23-1'] }, 'CAIRN_CATALOG_UPDATE_INVALID', /cves\[0\] must be a CVE ID/],
    [{ ...goodUpdate, releaseDate: '2023-13-45' }, 'CAIRN_CATALOG_UPDATE_INVALID', /releaseDate must be an ISO 8601 date/],
    [{ ...goodUpdate, supersedes: [goodUpdate.id] }, 'CAIRN_CATALOG_UPDATE_INVALID', /must not name the update itself/],
    [{ ...goodUpdate, isApplicable: { kind: 'registry' } }, 'CAIRN_CATALOG_RULE_INVALID', /isApplicable.kind must be one of/],
    [{ ...goodUpdate, isInstalled: { kind: 'package', name: 'openssl', installed: true, version: { op: 'lt', value: 'x1' } } }, 'CAIRN_CATALOG_RULE_INVALID', /isInstalled.version.value is not a Debian version: .*does not start with digit/],
    [{ ...goodUpdate, isApplicable: { kind: 'package', name: 'openssl', installed: false, version: { op: 'lt', value: '1' } } }, 'CAIRN_CATALOG_RULE_INVALID', /only allowed with installed: true/],
    [{ ...goodUpdate, isApplicable: undefined }, 'CAIRN_CATALOG_RULE_INVALID', /isApplicable must be a rule object/],
  ];
  for (const [raw, code, why] of cases) {
    const r = checkUpdate(raw);
    assert.equal(r.ok, false, JSON.stringify(raw).slice(0, 80));
    if (r.ok) continue;
    assert.equal(r.code, code, r.reason);
    assert.match(r.reason, why);
    assert.equal(r.id, String(raw.id));
  }
  const notObject = checkUpdate('hello');
  assert.equal(notObject.ok, false);
  if (!notObject.ok) assert.equal(notObject.id, '(no id)');
});

test('rules are bounded in depth so a hostile catalog cannot blow up evaluation', () => {
  let deep: unknown = { kind: 'os', family: 'debian' };
  for (let i = 0; i < 20; i += 1) deep = { kind: 'not', rule: deep };
  assert.throws(() => parseRule(deep, 'u1'), /nests deeper than 16/);
  const wide = { kind: 'any', rules: Array.from({ length: 999 }, () => ({ kind: 'all', rules: [{ kind: 'os', family: 'x' }] })) };
  assert.throws(() => parseRule(wide, 'u1'), /larger than 1000 checks/);
});

test('categories are validated with their type and parent', () => {
  const c = parseCategory({ id: 'A6D1C4A1-0000-4000-8000-000000000001', revision: 1, type: 'Product', name: 'Debian 12', parent: 'a6d1c4a1-0000-4000-8000-000000000009' });
  assert.equal(c.id, 'a6d1c4a1-0000-4000-8000-000000000001');
  assert.throws(() => parseCategory({ id: 'a6d1c4a1-0000-4000-8000-000000000001', revision: 1, type: 'Vendor', name: 'x' }), (e: { code?: string }) => e.code === 'CAIRN_CATALOG_CATEGORY_INVALID');
});

test("Architecture: all and the machine's native architecture are one package, as in dpkg and apt", () => {
  const m: Machine = { facts: { architecture: 'amd64' }, packages: [{ name: 'moved-to-any', arch: 'all', version: '1.0-1' }, { name: 'moved-to-all', arch: 'amd64', version: '1.0-1' }, { name: 'foreign', arch: 'i386', version: '1.0-1' }] };
  // A package installed as `all` whose new version is built per architecture is upgradable (and the other way round).
  assert.equal(evaluateRule(pkg('moved-to-any', 'lt', '1.1-1', 'amd64'), m), true);
  assert.equal(evaluateRule(pkg('moved-to-all', 'lt', '1.1-1', 'all'), m), true);
  assert.equal(evaluateRule({ kind: 'package', name: 'moved-to-any', arch: 'amd64', installed: false }, m), false);
  // Only the native architecture: an i386 package is not an `all` one, nor an arm64 one.
  assert.equal(evaluateRule(pkg('foreign', 'lt', '1.1-1', 'all'), m), false);
  assert.equal(evaluateRule(pkg('moved-to-any', 'lt', '1.1-1', 'arm64'), m), false);
  // Without the architecture fact, architectures must be equal.
  assert.equal(evaluateRule(pkg('moved-to-any', 'lt', '1.1-1', 'amd64'), { ...m, facts: {} }), false);
});
