/** The error registry and docs/errors.md list the same codes with the same HTTP statuses. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { ERRORS } from '../../src/shared/errors.ts';
import { ROOT } from '../helpers/processes.ts';

test('docs/errors.md documents every registered error code with its HTTP status, and nothing else', () => {
  const doc = fs.readFileSync(path.join(ROOT, 'docs', 'errors.md'), 'utf8');
  const rows = [...doc.matchAll(/^\| `(CAIRN_[A-Z_]+)` \| (\d{3}) \|/gm)].map((m) => [m[1], Number(m[2])]);
  const registry = Object.entries(ERRORS).map(([code, d]) => [code, d.status]);
  assert.deepEqual(rows.sort(), registry.sort());
});
