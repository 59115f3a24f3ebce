/**
 * End to end, the management point's caches (docs/adr/0013-mp-caches.md)
 * with a remote MP (`cairn mp`, its own process on the site's database):
 * every change made through the site's admin API — a package installed on a
 * DP, `mp.locationFallback`, a boundary group, its boundary and its DP — is
 * in the very next location answer of the remote MP. The staleness bound is
 * zero: each request is asked once, right after the change, never retried
 * or waited for.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { afterTests, api, cli, readLog, startSite, tempDir, waitFor } from '../helpers/processes.ts';
import { addRemoteMp, mpRequest, newTestClient, register } from '../helpers/mp-client.ts';

const { cleanups, track } = afterTests();

describe('MP caches (ADR 0013)', () => {
  test('a remote MP answers content location from its caches, and the next request after an admin API change already sees it', async () => {
    const work = await tempDir('mp-caches');
    cleanups.push(() => fsp.rm(work, { recursive: true, force: true }));
    const dataDir = path.join(work, 'site');
    const site = track(await startSite(dataDir));
    const started = await addRemoteMp(site, work, 'mp1');
    const mp = track(started.mp);
    const mpData = started.data;
    const c = newTestClient('CACHE-01', ['10.9.0.7']);
    assert.equal((await register(mp.url, c)).json.status, 'approved');

    const source = path.join(work, 'source');
    await fsp.mkdir(source, { recursive: true });
    await fsp.writeFile(path.join(source, 'setup.sh'), '#!/bin/sh\necho hello\n');
    const created = await cli(site, ['package', 'create', '--name', 'Cached', '--source', source]);
    assert.equal(created.code, 0, created.stderr);
    const pkgId = created.stdout.trim();
    const locate = async (): Promise<[string, string | null, boolean][]> => {
      const r = await mpRequest(mp.url, c, 'POST', '/mp/v1/location/content', { packageId: pkgId, version: 1, ipAddresses: c.ipAddresses });
      assert.equal(r.status, 200, JSON.stringify(r.json));
      return (r.json.locations as { dpName: string; boundaryGroup: string | null; fallback: boolean }[]).map((l) => [l.dpName, l.boundaryGroup, l.fallback]);
    };
    // Asked twice: the second answer comes from the remote MP's cache of the DPs holding the version.
    assert.deepEqual(await locate(), []);
    assert.deepEqual(await locate(), []);

    // The package reaches the DP (PkgStatus): the very next request finds it.
    assert.equal((await cli(site, ['package', 'distribute', pkgId, '--dp', 'local'])).code, 0);
    await waitFor('the package on the DP', async () => {
      const s = await api<{ distributionPoints: { status: number; version: number }[] }>(site, 'GET', `/api/v1/packages/${pkgId}/status`);
      return s.json.distributionPoints.length === 1 && s.json.distributionPoints[0]!.status === 3 && s.json.distributionPoints[0]!.version === 1;
    });
    assert.deepEqual(await locate(), [['local', null, true]], 'outside every boundary, served by fallback (the default)');

    // A setting through the admin API.
    assert.equal((await api(site, 'PUT', '/api/v1/settings/mp.locationFallback', { value: 0 })).status, 200);
    assert.deepEqual(await locate(), [], 'fallback off: nothing');

    // A boundary group, its boundary and its DP through the admin API: each seen by the next request.
    assert.equal((await api(site, 'POST', '/api/v1/boundary-groups', { name: 'Branch' })).status, 201);
    assert.equal((await api(site, 'POST', '/api/v1/boundary-groups/Branch/boundaries', { type: 'subnet', value: '10.9.0.0/16' })).status, 200);
    assert.deepEqual(await locate(), [], 'in the group, but the group has no DP yet');
    assert.equal((await api(site, 'POST', '/api/v1/boundary-groups/Branch/distribution-points', { dp: 'local' })).status, 200);
    assert.deepEqual(await locate(), [['local', 'Branch', false]]);
    assert.equal((await api(site, 'PUT', '/api/v1/settings/mp.locationFallback', { value: 1 })).status, 200);
    assert.deepEqual(await locate(), [['local', 'Branch', false]]);

    const log = await readLog(mpData, 'MP_Location');
    assert.match(log, /MP LM: the client's boundary groups: none; fallback off; 0 locations\./);
    assert.match(log, /MP LM: the client's boundary groups: Branch; fallback to every DP holding the content; 1 locations\./);
  });
});
