/** The summarizer's pure parts: task names, when a task is due, and the compliance arithmetic (the per-update counts are SQL: test/datastore/compliance*.test.ts). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isDue, ON_DEMAND_TASKS, resolveTask } from '../../src/site/components/summarizer/summarizer.ts';
import { complianceCounts } from '../../src/datastore/compliance.ts';
import { isCairnError } from '../../src/shared/errors.ts';

test('[UC29] tasks resolve by full name in any case, by slug and by short name; an unknown name is CAIRN_SUMMARY_TASK_NOT_FOUND', () => {
  assert.equal(resolveTask('update status summarizer'), 'Update Status Summarizer');
  assert.equal(resolveTask('update-status-summarizer'), 'Update Status Summarizer');
  assert.equal(resolveTask('assignment-compliance'), 'Assignment Compliance Evaluator');
  assert.equal(resolveTask('Delete Aged Status'), 'Delete Aged Status');
  assert.throws(() => resolveTask('nope'), (e: unknown) => isCairnError(e) && e.code === 'CAIRN_SUMMARY_TASK_NOT_FOUND');
  assert.deepEqual(ON_DEMAND_TASKS, ['Update Status Summarizer', 'Update Group Status Summarizer', 'Assignment Compliance Evaluator']);
});

test('[UC26] a task is due when it never ran or a schedule has passed since its last start; schedule 0 is off', () => {
  const t = Date.parse('2026-11-22T10:00:00.000Z');
  assert.equal(isDue('', 3600, t), true);
  assert.equal(isDue('2026-11-22T09:00:00.000Z', 3600, t), true);
  assert.equal(isDue('2026-11-22T09:00:00.001Z', 3600, t), false);
  assert.equal(isDue('', 0, t), false);
  assert.equal(isDue('garbage', 60, t), true);
});

test('compliance counts: any required is non-compliant; all known and none required is compliant; the rest and the silent are unknown; an empty group is all compliant', () => {
  const groups = [{ required: 1, known: 0, clients: 2 }, { required: 0, known: 3, clients: 1 }, { required: 0, known: 2, clients: 1 }];
  assert.deepEqual(complianceCounts(groups, 3, 6), { compliant: 1, nonCompliant: 2, unknown: 3, total: 6 });
  assert.deepEqual(complianceCounts(groups, 0, 5), { compliant: 5, nonCompliant: 0, unknown: 0, total: 5 });
});
