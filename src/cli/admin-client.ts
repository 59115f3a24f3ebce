/**
 * The admin CLI's connection to the admin API: finds the site's address and
 * token in CAIRN_URL and CAIRN_TOKEN, or in the data folder of `cairn start`
 * (`./cairn-data` unless `--data` says otherwise), and turns API errors into
 * CairnErrors with the API's code.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { CairnError, ERRORS } from '../shared/errors.ts';

export interface AdminConnection {
  readonly url: string;
  readonly token: string;
}

export function findAdminConnection(dataDir = './cairn-data', env: NodeJS.ProcessEnv = process.env): AdminConnection {
  let url = env.CAIRN_URL;
  let token = env.CAIRN_TOKEN;
  if (!url || !token) {
    const data = path.resolve(dataDir);
    try {
      url ??= (JSON.parse(fs.readFileSync(path.join(data, 'site.json'), 'utf8')) as { adminUrl?: string }).adminUrl;
    } catch {
      /* reported below */
    }
    try {
      token ??= fs.readFileSync(path.join(data, 'admin.token'), 'utf8').trim();
    } catch {
      /* reported below */
    }
  }
  if (!url || !token) throw new CairnError('CAIRN_CONFIG_MISSING');
  return { url: url.replace(/\/+$/, ''), token };
}

export async function callAdmin<T>(conn: AdminConnection, method: 'GET' | 'POST' | 'PUT' | 'DELETE', route: string, body?: unknown): Promise<T> {
  let res: Response;
  try {
    res = await fetch(`${conn.url}${route}`, {
      method,
      headers: { authorization: `Bearer ${conn.token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    throw new CairnError('CAIRN_SITE_UNREACHABLE', `${conn.url} cannot be reached (${cause?.code ?? cause?.message ?? (err as Error).message})`);
  }
  const text = await res.text();
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : {};
  } catch {
    throw new CairnError('CAIRN_INTERNAL', `the admin API answered ${res.status} with a body that is not JSON`);
  }
  if (!res.ok) {
    const o = json as { code?: string; message?: string };
    const code = (o.code && o.code in ERRORS ? o.code : 'CAIRN_INTERNAL') as keyof typeof ERRORS;
    const err = new CairnError(code);
    err.message = o.message ?? ERRORS[code].message;
    throw err;
  }
  return json as T;
}

/**
 * Downloads a binary answer (a prestaged content file) to `file`: written to
 * a temporary name beside it and renamed when complete. Returns the bytes.
 */
export async function downloadAdmin(conn: AdminConnection, route: string, file: string): Promise<number> {
  let res: Response;
  try {
    res = await fetch(`${conn.url}${route}`, { headers: { authorization: `Bearer ${conn.token}` } });
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    throw new CairnError('CAIRN_SITE_UNREACHABLE', `${conn.url} cannot be reached (${cause?.code ?? cause?.message ?? (err as Error).message})`);
  }
  if (!res.ok || !res.body) {
    let o: { code?: string; message?: string } = {};
    try {
      o = (await res.json()) as typeof o;
    } catch {
      /* not JSON: reported by status below */
    }
    const code = (o.code && o.code in ERRORS ? o.code : 'CAIRN_INTERNAL') as keyof typeof ERRORS;
    const err = new CairnError(code);
    err.message = o.message ?? `${ERRORS[code].message} (HTTP ${res.status})`;
    throw err;
  }
  const tmp = `${file}.${process.pid}.part`;
  let bytes = 0;
  try {
    const out = fs.createWriteStream(tmp, { flags: 'wx' });
    const counter = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        bytes += chunk.length;
        cb(null, chunk);
      },
    });
    await pipeline(Readable.fromWeb(res.body as WebReadableStream), counter, out);
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    if (err instanceof CairnError) throw err;
    throw new CairnError('CAIRN_INTERNAL', `cannot write ${file}: ${(err as Error).message}`);
  }
  return bytes;
}
