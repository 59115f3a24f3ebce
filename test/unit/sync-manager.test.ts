/** The sync manager's pure parts: criteria, duration format, upstream strings, the default apt upstream. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { criteriaFilter, formatSyncTime } from '../../src/site/components/wsyncmgr/sync-manager.ts';
import { normaliseSourceSpec } from '../../src/catalog/source-spec.ts';
import { defaultUpstream } from '../../src/site/default-upstream.ts';
import type { Update } from '../../src/catalog/catalog.ts';
import { tempDir } from '../helpers/processes.ts';

const u = (classification: string, products: string[]): Update => ({
  id: 'x', revision: 1, title: 't', description: '', articleId: '', classification, products, severity: 'Unspecified', cves: [], releaseDate: '2024-01-01', supersedes: [],
  isApplicable: { kind: 'all', rules: [] }, isInstalled: { kind: 'all', rules: [] },
});

test('sync criteria: empty lists accept every update; products and classifications must both match when given', () => {
  assert.equal(criteriaFilter({ products: [], classifications: [], languages: ['en'] }), undefined);
  const f = criteriaFilter({ products: ['p1'], classifications: ['sec'], languages: [] })!;
  assert.equal(f(u('sec', ['p2', 'p1'])), true);
  assert.equal(f(u('upd', ['p1'])), false);
  assert.equal(f(u('sec', ['p2'])), false);
  assert.equal(criteriaFilter({ products: [], classifications: ['sec'], languages: [] })!(u('sec', ['any'])), true);
});

test('the sync time is written as the seed writes it', () => {
  assert.equal(formatSyncTime(233_000), '0d00h03m53s');
  assert.equal(formatSyncTime(90_061_000), '1d01h01m01s');
  assert.equal(formatSyncTime(0), '0d00h00m00s');
});

test('an upstream is an http(s) URL or apt:<absolute folder>; anything else is refused', () => {
  assert.equal(normaliseSourceSpec('http://127.0.0.1:8530/'), 'http://127.0.0.1:8530');
  assert.equal(normaliseSourceSpec('apt:/var/lib/apt/lists/'), 'apt:/var/lib/apt/lists');
  assert.equal(normaliseSourceSpec('  '), '');
  for (const bad of ['apt:relative/dir', 'ftp://x', 'not a url']) assert.throws(() => normaliseSourceSpec(bad), (e: { code?: string }) => e.code === 'CAIRN_SYNC_UPSTREAM_INVALID', bad);
});

test('the default upstream is the apt lists on Debian and Ubuntu only, and only when there are lists', async () => {
  const dir = await tempDir('os');
  try {
    const lists = path.join(dir, 'lists');
    await fsp.mkdir(lists);
    const osr = path.join(dir, 'os-release');
    await fsp.writeFile(osr, 'NAME="Fedora Linux"\nID=fedora\n');
    assert.equal(defaultUpstream(osr, lists), undefined);
    await fsp.writeFile(osr, 'NAME="Linux Mint"\nID=linuxmint\nID_LIKE="ubuntu debian"\n');
    assert.equal(defaultUpstream(osr, lists), undefined, 'no lists yet');
    await fsp.writeFile(path.join(lists, 'deb.example.org_dists_x_main_binary-amd64_Packages.lz4'), '');
    // apt-helper must exist too: on a machine without it there is no default.
    const expected = (await fsp.stat('/usr/lib/apt/apt-helper').catch(() => undefined)) ? `apt:${lists}` : undefined;
    assert.equal(defaultUpstream(osr, lists), expected);
    assert.equal(defaultUpstream(path.join(dir, 'missing'), lists), undefined);
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
});
