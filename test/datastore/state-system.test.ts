/**
 * The state system component against a real site database on both engines:
 * `.SMX` files in its inbox, parsed on its worker threads, stored, deleted;
 * a bad file moved aside without blocking the good ones; a file read twice
 * changing nothing.
 */
import { describe } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { engineTest } from '../helpers/engines.ts';
import { ROOT, tempDir } from '../helpers/processes.ts';
import { migrateToLatest } from '../../src/datastore/migrate.ts';
import { readSettings } from '../../src/datastore/site-control.ts';
import { countStateRows, listLatestStates } from '../../src/datastore/state-messages.ts';
import { createContentLibrary } from '../../src/content-library/content-library.ts';
import { sitePaths } from '../../src/site/site-paths.ts';
import { StateSystem } from '../../src/site/components/statesys/state-system.ts';
import type { BatchResult } from '../../src/site/components/statesys/state-system.ts';
import { writeInboxFile } from '../../src/shared/inbox.ts';
import type { SiteDatabase } from '../../src/datastore/engine.ts';
import type { SiteContext } from '../../src/site/site-context.ts';

const SPEC = fs.readFileSync(path.join(ROOT, 'test', 'fixtures', 'state-report-spec.xml'), 'utf8');

function specWith(serial: number, state: number, time = '20140120171855.573000+000'): string {
  return SPEC.replace('SerialNumber="232"', `SerialNumber="${serial}"`).replace('<State ID="2"', `<State ID="${state}"`).replace('MessageTime="20140120171855.573000+000"', `MessageTime="${time}"`);
}

async function withStateSystem(d: SiteDatabase, fn: (s: StateSystem, ctx: SiteContext, batches: BatchResult[]) => Promise<void>): Promise<void> {
  await migrateToLatest(d.db, d.engine);
  const dir = await tempDir('statesys');
  const paths = sitePaths(dir);
  const ctx: SiteContext = Object.freeze({ db: d.db, engine: d.engine, paths, siteCode: 'CS1', settings: await readSettings(d.db), library: createContentLibrary(paths.contentLibrary), wake: { dbmon: () => undefined } });
  const batches: BatchResult[] = [];
  const s = new StateSystem(ctx, { onBatch: (b) => batches.push(b) });
  try {
    await fn(s, ctx, batches);
  } finally {
    await s.stop();
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

describe('state system', () => {
  engineTest('good files are stored and deleted, a bad file goes to bad/ and does not block them, and the seed log lines are written', async (d) => {
    await withStateSystem(d, async (s, ctx, batches) => {
      const inbox = ctx.paths.statesysIncoming;
      await writeInboxFile(inbox, '001.SMX', specWith(10, 2));
      await writeInboxFile(inbox, '002.SMX', '<Report><ReportHeader>');
      await writeInboxFile(inbox, '003.SMX', specWith(12, 3).replace('</StateMessage>', '</StateMessage><StateMessage MessageTime="20140120171855.573000+000" SerialNumber="13"><Topic ID="x" Type="777"/><State ID="1"/></StateMessage>'));
      await writeInboxFile(inbox, '004.SMX', specWith(11, 1));
      await s.drain();
      assert.deepEqual(batches, [{ files: 4, badFiles: 1, records: 4, invalidRecords: 1, applied: 2, duplicates: 0 }]);
      assert.deepEqual(fs.readdirSync(inbox).sort(), ['bad']);
      assert.deepEqual(fs.readdirSync(path.join(inbox, 'bad')), ['002.SMX']);
      const latest = await listLatestStates(d.db);
      assert.deepEqual(latest.map((r) => [r.NetBIOSName, r.TopicID, r.SerialNumber, r.StateName]), [['PS1WIN7X64', '505fda07-b4f3-45fb-83d9-8642554e2773', 12, 'Installed']]);
      assert.equal(await countStateRows(d.db, 'StateMsgHistory'), 3);
      const log = fs.readFileSync(s.log.file, 'utf8');
      assert.match(log, /processed 4 records with 1 invalid records/);
      assert.match(log, /processed 4 message files in this batch, with 1 bad files/);
      assert.match(log, /002\.SMX is bad \(CAIRN_STATE_XML_MALFORMED/);
      assert.match(log, /003\.SMX .* 1 invalid records: #1 CAIRN_STATE_TOPIC_UNKNOWN/);
    });
  });

  engineTest('a file read again after a restart (deleted only after commit) changes nothing', async (d) => {
    await withStateSystem(d, async (s, ctx, batches) => {
      const inbox = ctx.paths.statesysIncoming;
      await writeInboxFile(inbox, 'a.SMX', specWith(5, 2));
      await s.drain();
      // As if the process had been killed between the commit and the delete.
      await writeInboxFile(inbox, 'a.SMX', specWith(5, 2));
      await s.drain();
      assert.deepEqual(batches.map((b) => [b.applied, b.duplicates]), [[1, 0], [0, 1]]);
      assert.equal(await countStateRows(d.db, 'StateMsgHistory'), 1);
      assert.equal(await countStateRows(d.db, 'StateMsg'), 1);
    });
  });

  engineTest('files are processed in batches of statesys.batchSize', async (d) => {
    await withStateSystem(d, async (s, ctx, batches) => {
      // Default batch size is 200: 450 files make three batches.
      for (let i = 0; i < 450; i += 1) await writeInboxFile(ctx.paths.statesysIncoming, `${String(i).padStart(4, '0')}.SMX`, specWith(i + 1, 2).replace('505fda07', `t${i}`));
      await s.drain();
      assert.deepEqual(batches.map((b) => b.files), [200, 200, 50]);
      assert.equal(await countStateRows(d.db, 'StateMsg'), 450);
    });
  });
});
