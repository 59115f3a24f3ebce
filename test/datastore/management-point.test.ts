/** The management point's tables (migration 0005), on both engines. */
import { describe } from 'node:test';
import assert from 'node:assert/strict';
import { engineTest } from '../helpers/engines.ts';
import { MIGRATION_NAMES, migrateToLatest } from '../../src/datastore/migrate.ts';
import { findClient, findClientsByIdOrName, insertClient, refreshClientFacts, setClientApproval } from '../../src/datastore/clients.ts';
import { assignmentsForResource, changeResPolicyMap, getSettingsPolicy, nextPolicyVersion, policyForResource, putAssignment, putPolicy, putSettingsPolicy, readResPolicyMap } from '../../src/datastore/policies.ts';
import { ALL_CLIENTS_COLLECTION, addCollectionRule, findCollection, insertCollection, insertDeployment, listCollectionRules, nextCollectionId, readCollectionMembers, replaceCollectionMembers } from '../../src/datastore/collections.ts';
import { addBoundary, addBoundaryGroupDp, dpsHoldingPackage, insertBoundaryGroup, listBoundaryGroups } from '../../src/datastore/boundaries.ts';
import { insertDistributionPoint } from '../../src/datastore/distribution-points.ts';
import { upsertPkgStatus } from '../../src/datastore/pkg-status.ts';
import { insertPackage } from '../../src/datastore/packages.ts';
import { findManagementPoint, insertManagementPoint } from '../../src/datastore/management-points.ts';
import type { SiteDatabase } from '../../src/datastore/engine.ts';

const facts = (n: number, ip = `10.0.0.${n}`) => ({
  clientId: `GUID:00000000-0000-4000-8000-${String(n).padStart(12, '0')}`,
  name: `PC${n}`,
  publicKey: 'PEM',
  fingerprint: 'FP',
  ipAddresses: [ip],
  osFamily: 'linux',
  osVersion: '6.1',
  agentVersion: '0.1.0',
});

async function ready(d: SiteDatabase): Promise<void> {
  await migrateToLatest(d.db, d.engine);
}

describe('management point tables', () => {
  engineTest('migration 0005 applies on top of a database at 0004, with All Clients and topic type 901', async (d) => {
    assert.deepEqual(await migrateToLatest(d.db, d.engine, '0004-update-catalog'), MIGRATION_NAMES.slice(0, 4));
    // Every later migration follows (0006 landed beside 0005).
    assert.deepEqual(await migrateToLatest(d.db, d.engine), MIGRATION_NAMES.slice(4));
    assert.equal(MIGRATION_NAMES[4], '0005-management-point');
    const all = await findCollection(d.db, 'all clients');
    assert.equal(all?.CollectionID, ALL_CLIENTS_COLLECTION);
    const names = await d.db.selectFrom('SR_StateNames').select(['StateID', 'StateName']).where('TopicType', '=', 901).orderBy('StateID').execute();
    assert.deepEqual(names.map((n) => [n.StateID, n.StateName]), [[1, 'Downloading'], [2, 'Downloaded and verified'], [3, 'Failed']]);
    const topic = await d.db.selectFrom('SR_TopicTypes').select('TopicTypeName').where('TopicType', '=', 901).executeTakeFirst();
    assert.equal(topic?.TopicTypeName, 'Content deployment');
  });

  engineTest('a client registers once; a repeat keeps its resource ID and approval; found by ID or name', async (d) => {
    await ready(d);
    const a = await insertClient(d.db, facts(1), 'pending');
    const again = await insertClient(d.db, { ...facts(1), name: 'other' }, 'approved');
    assert.equal(again.ResourceID, a.ResourceID);
    assert.equal(again.ApprovalStatus, 'pending');
    await refreshClientFacts(d.db, { ...facts(1), ipAddresses: ['10.9.9.9'] });
    await setClientApproval(d.db, Number(a.ResourceID), 'approved');
    const row = await findClient(d.db, facts(1).clientId);
    assert.equal(row?.ApprovalStatus, 'approved');
    assert.notEqual(row?.ApprovedTime, '');
    assert.equal(row?.IPAddresses, '["10.9.9.9"]');
    assert.equal((await findClientsByIdOrName(d.db, 'pc1')).length, 1);
    assert.equal((await findClientsByIdOrName(d.db, facts(1).clientId.toLowerCase())).length, 1);
  });

  engineTest('policies, assignments and the resource to policy mapping: a client sees only what is mapped to it', async (d) => {
    await ready(d);
    const a = await insertClient(d.db, facts(1), 'approved');
    const b = await insertClient(d.db, facts(2), 'approved');
    await putPolicy(d.db, { policyId: '{p1}', version: '1.00', category: 'ClientSettings', body: '{}', hash: 'H1', signature: 'S', crc: 'c' });
    const padbid = await putAssignment(d.db, { assignmentId: '{a1}', policyId: '{p1}', version: '1.00', collectionId: null });
    assert.equal(await putAssignment(d.db, { assignmentId: '{a1}', policyId: '{p1}', version: nextPolicyVersion('1.00'), collectionId: null }), padbid);
    await putSettingsPolicy(d.db, 'CS1', 'ClientSettings', { policyId: '{p1}', assignmentId: '{a1}', padbid, sourceCrc: 'c' });
    assert.equal((await getSettingsPolicy(d.db, 'CS1', 'ClientSettings'))?.padbid, padbid);
    await changeResPolicyMap(d.db, Number(a.ResourceID), [padbid], []);
    await changeResPolicyMap(d.db, Number(a.ResourceID), [padbid], []);
    assert.deepEqual(await assignmentsForResource(d.db, Number(a.ResourceID)), [{ assignmentId: '{a1}', assignmentVersion: '2.00', policyId: '{p1}', policyVersion: '1.00', category: 'ClientSettings', hash: 'H1' }]);
    assert.equal((await policyForResource(d.db, Number(a.ResourceID), '{p1}'))?.Body, '{}');
    assert.equal(await policyForResource(d.db, Number(b.ResourceID), '{p1}'), undefined);
    assert.deepEqual([...(await readResPolicyMap(d.db)).get(Number(a.ResourceID))!], [padbid]);
    await changeResPolicyMap(d.db, Number(a.ResourceID), [], [padbid]);
    assert.equal((await readResPolicyMap(d.db)).size, 0);
  });

  engineTest('collections: IDs from their own sequence, rules once, members replaced exactly; deployments once per package and collection', async (d) => {
    await ready(d);
    const id = await nextCollectionId(d.db, 'CS1');
    assert.equal(id, 'CS100001');
    await insertCollection(d.db, { CollectionID: id, Name: 'Web servers' });
    assert.equal(await addCollectionRule(d.db, id, 'subnet', '10.0.0.0/24'), true);
    assert.equal(await addCollectionRule(d.db, id, 'subnet', '10.0.0.0/24'), false);
    assert.equal((await listCollectionRules(d.db, id)).length, 1);
    assert.equal(await replaceCollectionMembers(d.db, id, new Set(), new Set([1, 2])), 2);
    assert.equal(await replaceCollectionMembers(d.db, id, new Set([1, 2]), new Set([2, 3])), 2);
    assert.deepEqual([...(await readCollectionMembers(d.db)).get(id)!].sort(), [2, 3]);
    assert.equal((await findCollection(d.db, 'web servers'))?.MemberCount, 2);
    await insertPackage(d.db, { PkgID: 'CS100001', Name: 'p', Description: '', Source: '/s', SourceSite: 'CS1', Priority: 2 });
    const dep = await insertDeployment(d.db, { DeploymentID: '{d1}', PkgID: 'CS100001', CollectionID: id, PolicyID: '{p}', PolicyAssignmentID: '{a}' });
    const again = await insertDeployment(d.db, { DeploymentID: '{d2}', PkgID: 'CS100001', CollectionID: id, PolicyID: '{p2}', PolicyAssignmentID: '{a2}' });
    assert.equal(again.DeploymentID, dep.DeploymentID);
  });

  engineTest('boundaries and the DPs holding a package version, by DP priority', async (d) => {
    await ready(d);
    const dp1 = await insertDistributionPoint(d.db, { Name: 'dp1', NALPath: 'nal1', URL: 'http://dp1', SiteCode: 'CS1', SharedKey: 'k', Priority: 300 });
    const dp2 = await insertDistributionPoint(d.db, { Name: 'dp2', NALPath: 'nal2', URL: 'http://dp2', SiteCode: 'CS1', SharedKey: 'k', Priority: 100 });
    await insertDistributionPoint(d.db, { Name: 'dp3', NALPath: 'nal3', URL: 'http://dp3', SiteCode: 'CS1', SharedKey: 'k', Priority: 100 });
    await upsertPkgStatus(d.db, { ID: 'CS100001', Type: 2, SiteCode: 'CS1', PkgServer: 'nal1' }, { Status: 3, SourceVersion: 2 });
    await upsertPkgStatus(d.db, { ID: 'CS100001', Type: 2, SiteCode: 'CS1', PkgServer: 'nal2' }, { Status: 3, SourceVersion: 2 });
    await upsertPkgStatus(d.db, { ID: 'CS100001', Type: 2, SiteCode: 'CS1', PkgServer: 'nal3' }, { Status: 3, SourceVersion: 1 });
    assert.deepEqual((await dpsHoldingPackage(d.db, 'CS100001', 2)).map((x) => x.name), ['dp2', 'dp1']);
    const g = await insertBoundaryGroup(d.db, 'Branch');
    assert.equal(await addBoundary(d.db, g.GroupID, 'subnet', '10.1.0.0/16'), true);
    assert.equal(await addBoundary(d.db, g.GroupID, 'subnet', '10.1.0.0/16'), false);
    await addBoundaryGroupDp(d.db, g.GroupID, Number(dp1.DPID));
    await addBoundaryGroupDp(d.db, g.GroupID, Number(dp2.DPID));
    const [view] = await listBoundaryGroups(d.db);
    assert.deepEqual(view!.distributionPoints, ['dp2', 'dp1']);
    assert.deepEqual(view!.boundaries, [{ type: 'subnet', value: '10.1.0.0/16' }]);
    await insertManagementPoint(d.db, 'mp1', 'key');
    assert.equal((await findManagementPoint(d.db, 'mp1'))?.SharedKey, 'key');
  });
});
