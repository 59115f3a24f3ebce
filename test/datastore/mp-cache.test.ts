/**
 * The MP's change counter (migration 0010) and its caches
 * (src/mp/mp-cache.ts, docs/adr/0013-mp-caches.md), on both engines: every
 * write to a counted table moves the counter in the same transaction, a
 * rolled-back write does not, and the caches answer from the database again
 * as soon as the counter moved.
 */
import { describe } from 'node:test';
import assert from 'node:assert/strict';
import { engineTest } from '../helpers/engines.ts';
import { MIGRATION_NAMES, migrateToLatest } from '../../src/datastore/migrate.ts';
import { addBoundary, addBoundaryGroupDp, insertBoundaryGroup } from '../../src/datastore/boundaries.ts';
import { insertDistributionPoint } from '../../src/datastore/distribution-points.ts';
import { upsertPkgStatus } from '../../src/datastore/pkg-status.ts';
import { insertClient } from '../../src/datastore/clients.ts';
import { changeResPolicyMap, putAssignment, putPolicy } from '../../src/datastore/policies.ts';
import { writeSetting } from '../../src/datastore/site-control.ts';
import { MpCache } from '../../src/mp/mp-cache.ts';
import { precompile } from '../../src/datastore/precompiled.ts';
import { ClientAuthenticator } from '../../src/mp/client-authenticator.ts';
import { keyFingerprint, newClientId, newKeyPair, signClientRequest } from '../../src/shared/client-auth.ts';

describe('the MP change counter and caches (migration 0010)', () => {
  engineTest('migration 0010 applies on a database at 0008; each write to a boundary, DP, setting, package status or policy table moves the counter, a rolled-back one does not', async (d) => {
    assert.deepEqual(await migrateToLatest(d.db, d.engine, '0008-compliance-reporting'), MIGRATION_NAMES.slice(0, 8));
    // Every later migration follows (a 0009 from another branch may land beside 0010).
    assert.ok((await migrateToLatest(d.db, d.engine)).includes('0010-mp-change-counter'));
    const cache = new MpCache(d.db);
    let last = await cache.version();
    assert.equal(last, 1);
    const moved = async (what: string): Promise<void> => {
      const now = await cache.version();
      assert.ok(now > last, `${what} moved the counter (${last} -> ${now})`);
      last = now;
    };
    const dp = await insertDistributionPoint(d.db, { Name: 'dp1', NALPath: 'nal1', URL: 'http://dp1', SiteCode: 'CS1', SharedKey: 'k', Priority: 100 });
    await moved('a new DP');
    const g = await insertBoundaryGroup(d.db, 'Branch');
    await moved('a new boundary group');
    await addBoundary(d.db, g.GroupID, 'subnet', '10.1.0.0/16');
    await moved('a new boundary');
    await addBoundaryGroupDp(d.db, g.GroupID, Number(dp.DPID));
    await moved("a group's new DP");
    await writeSetting(d.db, 'mp.locationFallback', 0);
    await moved('a setting');
    await d.db.deleteFrom('Boundaries').execute();
    await moved('a deleted boundary');
    await putPolicy(d.db, { policyId: '{p1}', version: '1.00', category: 'ClientSettings', body: '{}', hash: 'H1', signature: 'S', crc: 'c' });
    await moved('a policy');
    const padbid = await putAssignment(d.db, { assignmentId: '{a1}', policyId: '{p1}', version: '1.00', collectionId: null });
    await moved('an assignment');
    const client = await insertClient(d.db, { clientId: 'GUID:00000000-0000-4000-8000-000000000001', name: 'PC1', publicKey: 'PEM', fingerprint: 'FP', ipAddresses: ['10.1.0.5'], osFamily: 'linux', osVersion: '6.1', agentVersion: '0.1.0' }, 'approved');
    assert.equal(await cache.version(), last, 'a client registration is not counted');
    await changeResPolicyMap(d.db, Number(client.ResourceID), [padbid], []);
    await moved("a client's new assignment");
    await upsertPkgStatus(d.db, { ID: 'CS100001', Type: 2, SiteCode: 'CS1', PkgServer: 'nal1' }, { Status: 3, SourceVersion: 1 });
    await moved('a package installed on a DP');
    await assert.rejects(
      d.db.transaction().execute(async (trx) => {
        await writeSetting(trx as never, 'mp.locationFallback', 1);
        throw new Error('rolled back');
      }),
      /rolled back/,
    );
    assert.equal(await cache.version(), last, 'a rolled-back change does not move the counter');
  });

  engineTest('the location context and a signed list are read again once the counter moved, and only then', async (d) => {
    await migrateToLatest(d.db, d.engine);
    const cache = new MpCache(d.db);
    const dp = await insertDistributionPoint(d.db, { Name: 'dp1', NALPath: 'nal1', URL: 'http://dp1', SiteCode: 'CS1', SharedKey: 'k', Priority: 100 });
    const v1 = await cache.version();
    const first = await cache.locationContext(v1);
    assert.deepEqual([first.fallback, first.groups], [true, []]);
    assert.equal(await cache.locationContext(v1), first, 'the same counter: the cached context');
    const g = await insertBoundaryGroup(d.db, 'Branch');
    await addBoundary(d.db, g.GroupID, 'subnet', '10.1.0.0/16');
    await addBoundaryGroupDp(d.db, g.GroupID, Number(dp.DPID));
    await writeSetting(d.db, 'mp.locationFallback', 0);
    const v2 = await cache.version();
    const second = await cache.locationContext(v2);
    assert.deepEqual([second.fallback, second.groups.map((x) => [x.name, x.spans, x.dpIds])], [false, [['Branch', [{ first: 0x0a010000, last: 0x0a01ffff }], [Number(dp.DPID)]]]]);
    assert.notEqual(await cache.locationContext(v1), second, 'an older counter (PostgreSQL pool, out of order) is answered afresh and leaves the cache alone');
    assert.equal(await cache.locationContext(v2), second);

    assert.deepEqual(await cache.dpsHolding('CS100001', 1, v2), []);
    await upsertPkgStatus(d.db, { ID: 'CS100001', Type: 2, SiteCode: 'CS1', PkgServer: 'nal1' }, { Status: 3, SourceVersion: 1 });
    assert.deepEqual(await cache.dpsHolding('CS100001', 1, v2), [], 'the same counter: the cached (empty) list');
    const v2b = await cache.version();
    assert.deepEqual((await cache.dpsHolding('CS100001', 1, v2b)).map((x) => [x.name, x.url]), [['dp1', 'http://dp1']], 'the package installed moved the counter: read again');

    const list = { bytes: '{}', signature: 'sig', count: 0, summary: 'none' };
    assert.equal(cache.assignmentList(7, v2b), undefined);
    cache.keepAssignmentList(7, v2b, list);
    assert.equal(cache.assignmentList(7, v2b), list);
    await putPolicy(d.db, { policyId: '{p1}', version: '1.00', category: 'ClientSettings', body: '{}', hash: 'H1', signature: 'S', crc: 'c' });
    const v3 = await cache.version();
    assert.equal(cache.assignmentList(7, v3), undefined, 'a policy change drops the lists');
    cache.keepAssignmentList(7, v2b, list);
    cache.keepAssignmentList(8, v3, list);
    cache.keepAssignmentList(7, v2b, list);
    assert.equal(cache.assignmentList(7, v3), undefined, 'a list built at an older counter is never kept once a newer one was seen');
    assert.equal(cache.assignmentList(8, v3), list);
  });

  engineTest("a client's authenticated request carries the change counter read with its row", async (d) => {
    await migrateToLatest(d.db, d.engine);
    const keys = newKeyPair();
    const clientId = newClientId();
    await insertClient(d.db, { clientId, name: 'PC1', publicKey: keys.publicKey, fingerprint: keyFingerprint(keys.publicKey), ipAddresses: ['10.1.0.5'], osFamily: 'linux', osVersion: '6.1', agentVersion: '0.1.0' }, 'approved');
    const auth = new ClientAuthenticator(d.db);
    const ask = async () => (await auth.authenticate(signClientRequest(clientId, keys.privateKey, 'GET', '/mp/v1/policy/assignments'), 'GET', '/mp/v1/policy/assignments', Buffer.alloc(0))).changeCounter;
    const before = await ask();
    assert.equal(before, await new MpCache(d.db).version());
    await writeSetting(d.db, 'mp.locationFallback', 0);
    assert.ok((await ask()) > before, 'the next request sees the moved counter');
    await auth.close();
  });

  engineTest('a precompiled query runs its SQL with new values in the placeholders, constants kept', async (d) => {
    await migrateToLatest(d.db, d.engine);
    await insertDistributionPoint(d.db, { Name: 'dp1', NALPath: 'nal1', URL: 'http://dp1', SiteCode: 'CS1', SharedKey: 'k', Priority: 100 });
    await insertDistributionPoint(d.db, { Name: 'dp2', NALPath: 'nal2', URL: 'http://dp2', SiteCode: 'CS1', SharedKey: 'k', Priority: 200 });
    const byName = precompile(d.db, (name, priority) => d.db.selectFrom('DistributionPoints').select(['Name', 'URL']).where('SiteCode', '=', 'CS1').where('Name', '=', name).where('Priority', '=', priority));
    assert.deepEqual(await byName('dp2', 200), [{ Name: 'dp2', URL: 'http://dp2' }]);
    assert.deepEqual(await byName('dp1', 100), [{ Name: 'dp1', URL: 'http://dp1' }]);
    assert.deepEqual(await byName('dp1', 200), []);
    await assert.rejects(byName('dp1'), /2 values expected, got 1/);
    assert.throws(() => precompile(d.db, (name) => d.db.selectFrom('DistributionPoints').select('Name').where('Name', '=', name).where('URL', '=', name)), /exactly once/);
  });
});
