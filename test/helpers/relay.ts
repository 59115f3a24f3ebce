/**
 * A pass-through HTTP relay for e2e tests: a role is registered with the
 * site under the relay's address, and the relay forwards every request to
 * the role's real port unchanged. It changes no byte; it records what it
 * relayed and, when asked, holds back one request (not forwarded) until the
 * test releases it. That is how a test makes "the update point died in the
 * middle of a download" happen at a known point: hold the agent's next
 * page request, kill the real process, release. The held request then meets
 * a dead process, and the client's connection is reset, as it would be had
 * the process died while serving it.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Relayed {
  readonly method: string;
  readonly url: string;
  /** The answer's status; 0 while pending, -1 when the target could not be reached (the client's connection was reset). */
  status: number;
}

export interface Relay {
  readonly url: string;
  /** Every request relayed (or held), in arrival order. */
  readonly requests: readonly Relayed[];
  /** Holds back the next request whose path and query match; resolves with it once one arrives. */
  holdNext(match: (pathAndQuery: string) => boolean): Promise<Relayed>;
  /** Forwards the held request now. */
  release(): void;
  close(): Promise<void>;
}

export async function startRelay(targetPort: number): Promise<Relay> {
  const requests: Relayed[] = [];
  let hold: { match: (u: string) => boolean; held: (r: Relayed) => void } | undefined;
  let releaseHeld: (() => void) | undefined;

  const forward = (req: http.IncomingMessage, res: http.ServerResponse, rec: Relayed): void => {
    // A fresh connection each time: a pooled one to a process since killed would only hide when it died.
    const up = http.request({ host: '127.0.0.1', port: targetPort, method: req.method, path: req.url, headers: req.headers, agent: false }, (r) => {
      rec.status = r.statusCode ?? 0;
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
      r.on('error', () => res.destroy());
    });
    up.on('error', () => {
      rec.status = -1;
      res.destroy();
    });
    res.on('close', () => up.destroy());
    req.pipe(up);
  };

  const server = http.createServer((req, res) => {
    const rec: Relayed = { method: req.method ?? '', url: req.url ?? '', status: 0 };
    requests.push(rec);
    const h = hold;
    if (h && h.match(rec.url)) {
      hold = undefined;
      req.pause();
      releaseHeld = () => {
        req.resume();
        forward(req, res, rec);
      };
      h.held(rec);
      return;
    }
    forward(req, res, rec);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    holdNext: (match) =>
      new Promise<Relayed>((resolve) => {
        hold = { match, held: resolve };
      }),
    release() {
      const r = releaseHeld;
      releaseHeld = undefined;
      r?.();
    },
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
