/**
 * The site's DP client against a real DP server on loopback (and, where the
 * point is that the peer is not a DP, against plain HTTP servers and closed
 * ports): that it proves who it talks to, maps every failure to the DP error
 * codes the package transfer manager acts on, and resumes uploads.
 */
import { createHash } from 'node:crypto';
import fsp from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { FastifyInstance } from 'fastify';
import { createContentLibrary } from '../../src/content-library/content-library.ts';
import { definitionHash } from '../../src/content-library/definition.ts';
import type { ContentDefinition, FileEntry } from '../../src/content-library/types.ts';
import { createDpClient } from '../../src/dp/dp-client.ts';
import { buildDpServer, uploadTempPath } from '../../src/dp/dp-server.ts';
import { newSharedKey, signRequest } from '../../src/dp/protocol.ts';
import { isCairnError } from '../../src/shared/errors.ts';
import type { ErrorCode } from '../../src/shared/errors.ts';

const sha256 = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex').toUpperCase();

async function rejectsWith(promise: Promise<unknown>, code: ErrorCode, message?: RegExp): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(isCairnError(err), `expected a CairnError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (message) assert.match(err.message, message);
    return true;
  });
}

function portOf(server: http.Server | FastifyInstance['server']): number {
  return (server.address() as AddressInfo).port;
}

function entry(p: string, bytes: Buffer): FileEntry {
  return { path: p, hash: sha256(bytes), size: bytes.length, mode: 0o644, mtime: '2026-01-02T03:04:05.000Z' };
}

function definition(packageId: string, version: number, files: FileEntry[], folders: string[] = []): ContentDefinition {
  const contentId = `${packageId}.${version}`;
  return { contentId, packageId, version, folders, files, size: files.reduce((n, f) => n + f.size, 0), hash: definitionHash({ contentId, folders, files }) };
}

let root: string;
let app: FastifyInstance;
let url: string;
let dataDir: string;
const key = newSharedKey();

before(async () => {
  root = await fsp.mkdtemp(path.join(os.tmpdir(), 'cairn-dp-client-'));
  dataDir = path.join(root, 'dp');
  app = await buildDpServer({ dataDir, key, name: 'DP-CLIENT-TEST' });
  await app.listen({ port: 0, host: '127.0.0.1' });
  url = `http://127.0.0.1:${portOf(app.server)}`;
});
after(async () => {
  await app.close();
  await fsp.rm(root, { recursive: true, force: true });
});

async function writeSource(name: string, bytes: Buffer): Promise<string> {
  const file = path.join(root, name);
  await fsp.writeFile(file, bytes);
  return file;
}

describe('DP client authentication', () => {
  test('a client holding the DP key gets the status, the DP proof checked', async () => {
    const status = await createDpClient({ url, key }).status();
    assert.equal(status.name, 'DP-CLIENT-TEST');
    assert.ok(status.freeBytes > 0);
  });

  test('a client with another key than the DP gets CAIRN_DP_AUTH_FAILED', async () => {
    await rejectsWith(createDpClient({ url, key: newSharedKey() }).status(), 'CAIRN_DP_AUTH_FAILED');
  });

  test('an answer without a valid proof (something else on the DP address) is CAIRN_DP_AUTH_FAILED', async () => {
    // A process squatting on the address that answers like a DP but cannot prove the key.
    const impostor = http.createServer((req, res) => {
      res.setHeader('content-type', 'application/json');
      if (req.url?.startsWith('/dp/v1/files/missing')) {
        res.end(JSON.stringify({ missing: [] }));
        return;
      }
      res.setHeader('x-cairn-dp-proof', 'ab'.repeat(32));
      res.end(JSON.stringify({ name: 'fake', freeBytes: 1, contents: 0 }));
    });
    await new Promise<void>((r) => impostor.listen(0, '127.0.0.1', r));
    try {
      const client = createDpClient({ url: `http://127.0.0.1:${portOf(impostor)}`, key });
      await rejectsWith(client.status(), 'CAIRN_DP_AUTH_FAILED', /no valid proof/);
      // Without the proof check, "nothing is missing" would make the site skip every file.
      await rejectsWith(client.missing([sha256('x')]), 'CAIRN_DP_AUTH_FAILED');
    } finally {
      await new Promise((r) => impostor.close(r));
    }
  });
});

describe('DP client transport failures', () => {
  test('a DP on a closed port is CAIRN_DP_UNREACHABLE naming the reason', async () => {
    const probe = http.createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const port = portOf(probe);
    await new Promise((r) => probe.close(r));
    await rejectsWith(createDpClient({ url: `http://127.0.0.1:${port}`, key }).status(), 'CAIRN_DP_UNREACHABLE', /ECONNREFUSED/);
  });

  test('a DP that accepts but never answers is CAIRN_DP_UNREACHABLE after the timeout', async () => {
    const silent = http.createServer(() => undefined);
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    try {
      const started = Date.now();
      await rejectsWith(createDpClient({ url: `http://127.0.0.1:${portOf(silent)}`, key, timeoutMs: 300 }).status(), 'CAIRN_DP_UNREACHABLE', /ETIMEDOUT/);
      assert.ok(Date.now() - started < 5000);
    } finally {
      silent.closeAllConnections();
      await new Promise((r) => silent.close(r));
    }
  });

  test('a DP that drops the connection is CAIRN_DP_UNREACHABLE', async () => {
    const dropper = http.createServer((req) => req.socket.destroy());
    await new Promise<void>((r) => dropper.listen(0, '127.0.0.1', r));
    try {
      await rejectsWith(createDpClient({ url: `http://127.0.0.1:${portOf(dropper)}`, key }).status(), 'CAIRN_DP_UNREACHABLE');
    } finally {
      await new Promise((r) => dropper.close(r));
    }
  });
});

describe('DP client transfers', () => {
  const client = (): ReturnType<typeof createDpClient> => createDpClient({ url, key });
  const lib = (): ReturnType<typeof createContentLibrary> => createContentLibrary(path.join(dataDir, 'ContentLib'));

  test('missing() reports only the hashes the DP lacks, in order and once', async () => {
    const present = Buffer.from('present on the DP');
    await client().upload(sha256(present), 'CS200001.1', await writeSource('present.bin', present), present.length);
    const a = sha256('absent a');
    const b = sha256('absent b');
    assert.deepEqual(await client().missing([a, sha256(present), b, a.toLowerCase()]), [a, b]);
    assert.deepEqual(await client().missing([]), []);
  });

  test('upload stores the file and returns the bytes sent; a whole upload sends the whole file', async () => {
    const bytes = Buffer.alloc(2 * 1024 * 1024 + 3, 0x5a);
    const hash = sha256(bytes);
    assert.equal(await client().upload(hash.toLowerCase(), 'CS200002.1', await writeSource('whole.bin', bytes), bytes.length), bytes.length);
    assert.ok(await lib().hasFile(hash));
    assert.equal(await fsp.stat(uploadTempPath(dataDir, hash, 'CS200002.1')).catch(() => undefined), undefined);
  });

  test('upload resumes from what the DP already holds and sends only the rest', async () => {
    const bytes = Buffer.from('abcdefghijklmnopqrstuvwxyz'.repeat(4000));
    const hash = sha256(bytes);
    const held = 30_000;
    // The first part arrived earlier (an interrupted transfer).
    const pathWithQuery = `/dp/v1/uploads/${hash}?content=CS200003.1&offset=0&size=${bytes.length}`;
    const s = signRequest(key, 'PUT', pathWithQuery);
    const res = await fetch(url + pathWithQuery, { method: 'PUT', headers: { authorization: s.authorization, 'content-type': 'application/octet-stream' }, body: new Uint8Array(bytes.subarray(0, held)) });
    assert.equal(res.status, 200);
    const sent = await client().upload(hash, 'CS200003.1', await writeSource('resume.bin', bytes), bytes.length);
    assert.equal(sent, bytes.length - held);
    assert.deepEqual(await fsp.readFile(lib().filePath(hash)), bytes);
  });

  test('upload of bytes that do not match the hash is CAIRN_DP_HASH_MISMATCH and nothing is stored', async () => {
    const bytes = Buffer.from('the bytes on disk changed after hashing');
    const claimed = sha256('the bytes when they were hashed');
    await rejectsWith(client().upload(claimed, 'CS200004.1', await writeSource('changed.bin', bytes), bytes.length), 'CAIRN_DP_HASH_MISMATCH');
    assert.equal(await lib().hasFile(claimed), false);
  });

  test('putContent records a content whose files are all on the DP', async () => {
    const a = Buffer.from('file a');
    const b = Buffer.from('file b in a folder');
    for (const [name, bytes] of [
      ['a', a],
      ['b', b],
    ] as const) {
      await client().upload(sha256(bytes), 'CS200005.1', await writeSource(`${name}.src`, bytes), bytes.length);
    }
    const def = definition('CS200005', 1, [entry('a.txt', a), entry('sub/b.txt', b)], ['sub']);
    await client().putContent(def);
    assert.equal((await lib().currentContent('CS200005'))?.contentId, 'CS200005.1');
    assert.equal((await client().status()).contents >= 1, true);
  });

  test('putContent with a file the DP lacks is CAIRN_DP_CONTENT_INCOMPLETE naming it', async () => {
    const lacking = Buffer.from('never uploaded to the DP');
    const def = definition('CS200006', 1, [entry('lacking.bin', lacking)]);
    await rejectsWith(client().putContent(def), 'CAIRN_DP_CONTENT_INCOMPLETE', new RegExp(sha256(lacking)));
    assert.equal(await lib().getContent('CS200006.1'), undefined);
  });

  test('a definition the DP finds malformed is CAIRN_DP_REJECTED carrying the DP code', async () => {
    const def = { ...definition('CS200007', 1, [entry('x.txt', Buffer.from(''))]), hash: 'F'.repeat(64) };
    await rejectsWith(client().putContent(def), 'CAIRN_DP_REJECTED', /CAIRN_REQUEST_INVALID/);
  });

  test('upload of a file whose size differs from the content fails before sending', async () => {
    const bytes = Buffer.from('short');
    await rejectsWith(client().upload(sha256(bytes), 'CS200008.1', await writeSource('short.bin', bytes), 99), 'CAIRN_INTERNAL', /holds 5 bytes/);
  });

  test('a bundle carries small files in one request; a file whose bytes changed is rejected alone', async () => {
    const a = Buffer.from('bundle file a');
    const b = Buffer.alloc(100_000, 3);
    const changed = Buffer.from('the bytes on disk now');
    const files = [
      { hash: sha256(a), size: a.length, path: await writeSource('bundle-a.bin', a) },
      { hash: sha256(b), size: b.length, path: await writeSource('bundle-b.bin', b) },
      { hash: sha256('the bytes when hashed'), size: changed.length, path: await writeSource('bundle-c.bin', changed) },
    ];
    const r = await client().uploadBundle('CS200013.1', files);
    assert.deepEqual([...r.stored].sort(), [sha256(a), sha256(b)].sort());
    assert.deepEqual(r.rejected.map((x) => [x.hash, x.code]), [[files[2]!.hash, 'CAIRN_DP_HASH_MISMATCH']]);
    assert.ok(r.bytes > a.length + b.length + changed.length, 'the bytes sent include the header line');
    assert.deepEqual(await fsp.readFile(lib().filePath(sha256(b))), b);
    await rejectsWith(client().uploadBundle('CS200013.1', [{ ...files[0]!, size: 99 }]), 'CAIRN_INTERNAL', /holds 13 bytes/);
  });

  test('uploads over one client run in parallel on a keep-alive pool', async () => {
    const sources = await Promise.all(
      Array.from({ length: 12 }, async (_, i) => {
        const bytes = Buffer.alloc(200_000 + i, i + 1);
        return { bytes, hash: sha256(bytes), file: await writeSource(`par-${i}.bin`, bytes) };
      }),
    );
    const c = client();
    const sent = await Promise.all(sources.map((s) => c.upload(s.hash, 'CS200009.1', s.file, s.bytes.length)));
    assert.deepEqual(
      sent,
      sources.map((s) => s.bytes.length),
    );
    assert.deepEqual(await c.missing(sources.map((s) => s.hash)), []);
  });
});

describe('DP client upload conflicts', () => {
  /**
   * A pass-through proxy in front of the real DP. Before forwarding the n-th
   * upload PUT it runs `beforePut(n)`, which lets a test change what the DP
   * holds between the client's offset query and its PUT, as a second sender
   * would. It records every request line it forwards.
   */
  async function startProxy(beforePut: (n: number) => Promise<void>): Promise<{ url: string; seen: string[]; close(): Promise<void> }> {
    const seen: string[] = [];
    const target = new URL(url);
    let puts = 0;
    const proxy = http.createServer((req, res) => {
      void (async () => {
        seen.push(`${req.method} ${req.url}`);
        if (req.method === 'PUT' && req.url?.startsWith('/dp/v1/uploads/')) await beforePut(puts++);
        const up = http.request({ hostname: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (dpRes) => {
          res.writeHead(dpRes.statusCode ?? 502, dpRes.headers);
          dpRes.pipe(res);
        });
        up.on('error', () => res.destroy());
        req.pipe(up);
      })();
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    return {
      url: `http://127.0.0.1:${portOf(proxy)}`,
      seen,
      close: () => {
        proxy.closeAllConnections();
        return new Promise((r) => proxy.close(() => r()));
      },
    };
  }

  test('a 409 on upload makes the client ask for the offset again and continue from it', async () => {
    const bytes = Buffer.from('0123456789'.repeat(5000));
    const hash = sha256(bytes);
    const temp = uploadTempPath(dataDir, hash, 'CS200010.1');
    // Another sender delivers the first 20 000 bytes after the client has asked for the offset.
    const proxy = await startProxy(async (n) => {
      if (n === 0) await fsp.writeFile(temp, bytes.subarray(0, 20_000));
    });
    try {
      const sent = await createDpClient({ url: proxy.url, key }).upload(hash, 'CS200010.1', await writeSource('conflict.bin', bytes), bytes.length);
      assert.equal(sent, bytes.length - 20_000);
      const lines = proxy.seen.map((l) => l.replace(/\?.*$/, (q) => q.replace(/content=[^&]*&?/, '')));
      // A small file is sent at once, without asking for the offset first.
      assert.deepEqual(lines, [
        `PUT /dp/v1/uploads/${hash}?offset=0&size=${bytes.length}`,
        `GET /dp/v1/uploads/${hash}?`,
        `PUT /dp/v1/uploads/${hash}?offset=20000&size=${bytes.length}`,
      ]);
      assert.deepEqual(await fsp.readFile(createContentLibrary(path.join(dataDir, 'ContentLib')).filePath(hash)), bytes);
    } finally {
      await proxy.close();
    }
  });

  test('a file of 1 MiB or more asks for the offset before its first PUT', async () => {
    const bytes = Buffer.alloc(1024 * 1024 + 7, 0x5a);
    const hash = sha256(bytes);
    const proxy = await startProxy(() => Promise.resolve());
    try {
      assert.equal(await createDpClient({ url: proxy.url, key }).upload(hash, 'CS200012.1', await writeSource('large.bin', bytes), bytes.length), bytes.length);
      assert.deepEqual(
        proxy.seen.map((l) => l.replace(/\?.*$/, '')),
        [`GET /dp/v1/uploads/${hash}`, `PUT /dp/v1/uploads/${hash}`],
      );
    } finally {
      await proxy.close();
    }
  });

  test('a second 409 in a row is CAIRN_DP_REJECTED', async () => {
    const bytes = Buffer.from('abcdefghij'.repeat(5000));
    const hash = sha256(bytes);
    const temp = uploadTempPath(dataDir, hash, 'CS200011.1');
    // Every PUT finds the DP holding more than the client was just told.
    const proxy = await startProxy((n) => fsp.writeFile(temp, bytes.subarray(0, 1000 * (n + 1))));
    try {
      await rejectsWith(createDpClient({ url: proxy.url, key }).upload(hash, 'CS200011.1', await writeSource('conflict2.bin', bytes), bytes.length), 'CAIRN_DP_REJECTED', /offset 1000 does not match the 2000 bytes held/);
      assert.equal(proxy.seen.filter((l) => l.startsWith('PUT')).length, 2, 'one retry only');
    } finally {
      await proxy.close();
    }
  });
});
