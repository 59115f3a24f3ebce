/** The order in which the package transfer manager hands files to its lanes. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { interleave } from '../../src/site/components/pkgxfermgr/package-transfer-manager.ts';

test('large files and bundles take turns, and what is left of the longer list follows in order', () => {
  assert.deepEqual(interleave(['L0', 'L1'], ['B0', 'B1', 'B2', 'B3']), ['L0', 'B0', 'L1', 'B1', 'B2', 'B3']);
  assert.deepEqual(interleave(['L0', 'L1', 'L2'], ['B0']), ['L0', 'B0', 'L1', 'L2']);
  assert.deepEqual(interleave([], ['B0', 'B1']), ['B0', 'B1']);
  assert.deepEqual(interleave(['L0'], []), ['L0']);
});
