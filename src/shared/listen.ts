/**
 * Starts a fastify server listening and returns the URL to reach it: a
 * server on every interface (`0.0.0.0`, `::`) is reached on loopback, an IPv6
 * address goes in brackets, and port 0 becomes the port the system chose.
 */
import type { FastifyInstance } from 'fastify';

export async function listenUrl(app: FastifyInstance, port: number, host: string): Promise<string> {
  await app.listen({ port, host });
  const addr = app.server.address();
  const actual = typeof addr === 'object' && addr ? addr.port : port;
  const shown = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
  return `http://${shown}:${actual}`;
}
