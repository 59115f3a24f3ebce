/** The shared primitives: CMTrace logs with rollover, inbox files, the work loop, status messages, the limiter. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { createComponentLog, formatCmtraceLine, parseCmtraceLine } from '../../src/shared/cmtrace-log.ts';
import { listInboxFiles, removeInboxFile, writeInboxFile } from '../../src/shared/inbox.ts';
import { WorkLoop } from '../../src/shared/work-loop.ts';
import { createStatusReporter, formatStatmsg, parseSvf } from '../../src/shared/status-message.ts';
import { Limiter } from '../../src/shared/limit.ts';
import { tempDir, waitFor } from '../helpers/processes.ts';

test('a CMTrace line carries text, component, type and thread, and parses back', () => {
  const when = new Date(Date.UTC(2016, 4, 16, 16, 31, 37, 364));
  const line = formatCmtraceLine('Processing package CS10001E (SourceVersion:1;StoredVersion:0)', 'SMS_DISTRIBUTION_MANAGER', 'warning', 5800, when);
  assert.equal(
    line,
    '<![LOG[Processing package CS10001E (SourceVersion:1;StoredVersion:0)]LOG]!><time="16:31:37.364+000" date="05-16-2016" component="SMS_DISTRIBUTION_MANAGER" context="" type="2" thread="5800" file="">\n',
  );
  assert.deepEqual(parseCmtraceLine(line.trimEnd()), { text: 'Processing package CS10001E (SourceVersion:1;StoredVersion:0)', time: '16:31:37.364+000', date: '05-16-2016', component: 'SMS_DISTRIBUTION_MANAGER', type: 2, thread: 5800 });
  assert.equal(formatCmtraceLine('a\nb', 'X', 'info', 1).split('\n').length, 2, 'a newline in the text does not split the line');
});

test('a component log rolls over to .lo_ when it passes its size', async () => {
  const dir = await tempDir('log');
  const log = createComponentLog({ dir, name: 'distmgr', component: 'SMS_DISTRIBUTION_MANAGER', maxBytes: 2000 });
  for (let i = 0; i < 30; i += 1) log.info(`line ${i} ${'x'.repeat(50)}`);
  const current = await fsp.readFile(path.join(dir, 'distmgr.log'), 'utf8');
  const old = await fsp.readFile(path.join(dir, 'distmgr.lo_'), 'utf8');
  assert.ok(current.length <= 2000);
  assert.match(current, /line 29 /);
  assert.match(old, /line \d+ /);
  assert.doesNotMatch(current, /line 0 /);
  await fsp.rm(dir, { recursive: true });
});

test('a keepOpen log has each line in its file when the call returns, rolls over without losing one, and closes its file once idle', async () => {
  const dir = await tempDir('log-open');
  const log = createComponentLog({ dir, name: 'MP_Location', component: 'MP_LocationManager', maxBytes: 2000, keepOpen: true });
  const file = path.join(dir, 'MP_Location.log');
  for (let i = 0; i < 30; i += 1) {
    log.info(`line ${i} ${'x'.repeat(50)}`);
    assert.match(await fsp.readFile(file, 'utf8'), new RegExp(`line ${i} x+\\]LOG`), `line ${i} is in the file at once`);
  }
  const lines = `${await fsp.readFile(path.join(dir, 'MP_Location.lo_'), 'utf8')}${await fsp.readFile(file, 'utf8')}`.split('\n').filter(Boolean);
  assert.deepEqual(
    lines.map((l) => parseCmtraceLine(l)?.text.split(' ')[1]).slice(-10),
    Array.from({ length: 10 }, (_, k) => String(20 + k)),
    'the newest lines, in order, across the rollover',
  );
  const openHere = async (): Promise<boolean> => {
    for (const fd of await fsp.readdir('/proc/self/fd')) if ((await fsp.readlink(path.join('/proc/self/fd', fd)).catch(() => '')) === file) return true;
    return false;
  };
  assert.equal(await openHere(), true, 'kept open between lines');
  await waitFor('the idle log to close its file', async () => !(await openHere()));
  log.info('after the pause');
  assert.match(await fsp.readFile(file, 'utf8'), /after the pause/);
  await fsp.rm(dir, { recursive: true });
});

test('inbox files appear whole under their name, are listed by extension in name order, and removal is idempotent', async () => {
  const dir = path.join(await tempDir('inbox'), 'distmgr.box');
  await writeInboxFile(dir, 'B.PKN', 'b');
  await writeInboxFile(dir, 'A.PKN', 'a');
  await writeInboxFile(dir, 'x.STA', 's');
  assert.deepEqual(await listInboxFiles(dir, 'pkn'), ['A.PKN', 'B.PKN']);
  assert.deepEqual((await fsp.readdir(dir)).filter((n) => n.startsWith('.')), [], 'no temporary file is left');
  await removeInboxFile(path.join(dir, 'A.PKN'));
  await removeInboxFile(path.join(dir, 'A.PKN'));
  assert.deepEqual(await listInboxFiles(dir, 'PKN'), ['B.PKN']);
  assert.deepEqual(await listInboxFiles(path.join(dir, 'missing'), 'PKN'), []);
  await assert.rejects(writeInboxFile(dir, '../escape.PKN', 'x'));
});

test('the work loop runs again when woken during a pass, and survives an error', async () => {
  const dir = await tempDir('loop');
  const log = createComponentLog({ dir, name: 'loop', component: 'TEST' });
  let passes = 0;
  let release: () => void = () => undefined;
  const firstPass = new Promise<void>((r) => (release = r));
  let secondDone: () => void = () => undefined;
  const second = new Promise<void>((r) => (secondDone = r));
  const loop = new WorkLoop({
    log,
    rescanMs: 60_000,
    work: async () => {
      passes += 1;
      if (passes === 1) {
        await firstPass;
        throw new Error('boom');
      }
      secondDone();
    },
  });
  loop.start();
  loop.wake();
  loop.wake();
  release();
  await second;
  await loop.stop();
  assert.equal(passes, 2, 'two wakes during one pass cost one more pass');
  assert.match(await fsp.readFile(path.join(dir, 'loop.log'), 'utf8'), /Unexpected error, will retry on the next pass: boom/);
});

test('a raised status message is logged as STATMSG and dropped as a valid .SVF', async () => {
  const dir = await tempDir('svf');
  const log = createComponentLog({ dir, name: 'c', component: 'SMS_DISTRIBUTION_MANAGER' });
  const reporter = createStatusReporter({ component: 'SMS_DISTRIBUTION_MANAGER', site: 'CS1', statmsgsDir: path.join(dir, 'statmsgs'), log });
  const msg = await reporter.raise(2330, { istr: ['CS100001', 'dp'], attrs: [{ id: 400, value: 'CS100001' }], tid: 7 });
  const [file] = await listInboxFiles(path.join(dir, 'statmsgs'), 'SVF');
  assert.ok(file);
  assert.deepEqual(parseSvf(await fsp.readFile(path.join(dir, 'statmsgs', file), 'utf8')), [msg]);
  const line = formatStatmsg(msg);
  assert.match(line, /^STATMSG: ID=2330 SEV=I LEV=M SOURCE="SMS Server" COMP="SMS_DISTRIBUTION_MANAGER" SYS=\S+ SITE=CS1 PID=\d+ TID=7 GMTDATE=\w{3} \w{3} \d+ [\d:.]+ \d{4} ISTR0="CS100001" ISTR1="dp" ISTR2=""/);
  assert.match(line, /NUMATTRS=1 AID0=400 AVAL0="CS100001"$/);
  assert.match(await fsp.readFile(path.join(dir, 'c.log'), 'utf8'), /STATMSG: ID=2330/);
  assert.throws(() => parseSvf('{"format":"cairn-svf/1","messages":[{"id":"x"}]}'), /id is not an integer/);
  assert.throws(() => parseSvf('not json'));
});

test('the limiter never runs more than its limit at once', async () => {
  const limiter = new Limiter(3);
  let running = 0;
  let peak = 0;
  await Promise.all(
    Array.from({ length: 10 }, () =>
      limiter.run(async () => {
        running += 1;
        peak = Math.max(peak, running);
        await new Promise((r) => setImmediate(r));
        running -= 1;
      }),
    ),
  );
  assert.equal(peak, 3);
  assert.equal(limiter.active, 0);
});
