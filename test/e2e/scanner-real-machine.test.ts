/**
 * The real thing (issue 6, part 8, the scanner's half): a real `cairn sup`
 * process syncs this machine's own apt lists (as the site's default upstream
 * does), the scanner fetches that catalog from it over loopback and scans
 * this machine's real dpkg database, and the updates it reports required are
 * exactly the packages and candidate versions of `apt list --upgradable`,
 * run here in the same test.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { readLocalInventory } from '../../src/agent/scan/inventory.ts';
import { createScanner } from '../../src/agent/scan/scanner.ts';
import { createComponentLog } from '../../src/shared/cmtrace-log.ts';
import { createSupClient } from '../../src/sup/sup-client.ts';
import { startSupProcess } from '../helpers/catalog.ts';
import { tempDir, waitFor } from '../helpers/processes.ts';

const APT_LISTS = '/var/lib/apt/lists';
const skip = !fs.existsSync('/usr/bin/apt') || !fs.existsSync('/var/lib/dpkg/status')
  ? 'no apt or dpkg on this machine'
  : !fs.existsSync('/usr/lib/apt/apt-helper') || !fs.readdirSync(APT_LISTS).some((n) => /_Packages(\.\w+)?$/.test(n))
    ? 'no apt lists on this machine (run apt-get update)'
    : false;

/** `apt list --upgradable` as `<package> <version> (<arch>)`, the apt source's update titles. */
function aptUpgradable(): string[] {
  const out = execFileSync('apt', ['list', '--upgradable'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], env: { ...process.env, LC_ALL: 'C' } });
  const rows: string[] = [];
  for (const line of out.split('\n')) {
    // e.g. "bash/oldstable 5.2.15-2+b13 amd64 [upgradable from: 5.2.15-2+b8]"
    const m = /^([^/\s]+)\/\S+ (\S+) (\S+) \[upgradable from: [^\]]+\]$/.exec(line.trim());
    if (m) rows.push(`${m[1]} ${m[2]} (${m[3]})`);
    else assert.ok(!line.trim() || line.startsWith('Listing'), `an apt list line this test cannot read: ${line}`);
  }
  return rows.sort();
}

test("[UC14][UC16] on this Debian machine the scan's required updates are exactly apt list --upgradable", { skip, timeout: 900_000 }, async () => {
  const dir = await tempDir('scan-real');
  const key = 'k'.repeat(43);
  const sup = await startSupProcess(path.join(dir, 'sup'), key, 0, 'sup-apt', ['--apt', APT_LISTS]);
  try {
    const client = createSupClient({ url: sup.url, key });
    const { syncId } = await client.startSync('', false);
    const done = await waitFor(
      'the update point to sync the apt lists',
      async () => {
        const st = await client.syncState();
        return st.syncId === syncId && st.state !== 'running' ? st : undefined;
      },
      600_000,
    );
    assert.equal(done.state, 'succeeded', JSON.stringify(done.error));
    const version = done.result!.contentVersion;

    const machine = await readLocalInventory('/');
    const log = createComponentLog({ dir: path.join(dir, 'logs'), name: 'Scanner', component: 'Scanner' });
    const scanner = createScanner({ cacheDir: path.join(dir, 'cache') });
    const result = await scanner.scan({ updateSourceId: 'c2d17964-bbdd-4339-b9f3-12d7205b39cc', requiredContentVersion: version, location: { url: sup.url, serverName: 'sup-apt', contentVersion: version }, machine, log });
    const apt = aptUpgradable();

    const required = result.updates.filter((u) => u.state === 'required').map((u) => u.title).sort();
    assert.deepEqual(required, apt, `scan says ${required.length} required, apt lists ${apt.length} upgradable`);
    assert.equal(result.updates.filter((u) => u.state === 'unknown').length, 0, 'apt updates are never unknown');
    // Every installed package that some list carries is either required or installed, once (the rest is pruned or not required).
    const installed = result.updates.filter((u) => u.state === 'installed').length;
    assert.ok(installed + required.length <= machine.packages!.length, `${installed} installed + ${required.length} required > ${machine.packages!.length} packages`);
    const text = await fsp.readFile(log.file, 'utf8');
    assert.match(text, new RegExp(`Found ${installed + required.length} updates and \\d+ categories in search; evaluated applicability rules of \\d+ out of ${result.total} deployed entities`));
  } finally {
    await sup.kill();
    await fsp.rm(dir, { recursive: true, force: true });
  }
});
