/**
 * SQL for registered clients (`ClientRegistration`, migration 0005). The MP's
 * registration route and the admin API's client commands decide; this file
 * only reads and writes rows.
 */
import type { Kysely, Transaction } from 'kysely';
import type { ClientRow, Database } from './schema.ts';
import { nowIso } from './time.ts';

type Db = Kysely<Database> | Transaction<Database>;

export const APPROVAL_STATUSES = ['approved', 'pending', 'revoked'] as const;
export type ApprovalStatus = (typeof APPROVAL_STATUSES)[number];

export interface ClientFacts {
  readonly clientId: string;
  readonly name: string;
  readonly publicKey: string;
  readonly fingerprint: string;
  readonly ipAddresses: readonly string[];
  readonly osFamily: string;
  readonly osVersion: string;
  readonly agentVersion: string;
}

export async function findClient(db: Db, clientId: string): Promise<ClientRow | undefined> {
  return db.selectFrom('ClientRegistration').selectAll().where('ClientID', '=', clientId).executeTakeFirst();
}

/** A client by client ID, or by name when exactly one client has it (names are not unique). */
export async function findClientsByIdOrName(db: Db, idOrName: string): Promise<ClientRow[]> {
  const byId = await db.selectFrom('ClientRegistration').selectAll().where('ClientID', '=', idOrName.toUpperCase().replace(/^guid:/i, 'GUID:')).execute();
  if (byId.length) return byId;
  return db.selectFrom('ClientRegistration').selectAll().where((eb) => eb(eb.fn('lower', ['NetBIOSName']), '=', idOrName.toLowerCase())).orderBy('ResourceID').execute();
}

export async function listClients(db: Db): Promise<ClientRow[]> {
  return db.selectFrom('ClientRegistration').selectAll().orderBy('NetBIOSName').orderBy('ClientID').execute();
}

/** Inserts a new client; a concurrent insert of the same ID keeps the first (the caller reads it back). */
export async function insertClient(db: Db, f: ClientFacts, status: ApprovalStatus): Promise<ClientRow> {
  const now = nowIso();
  await db
    .insertInto('ClientRegistration')
    .values({
      ClientID: f.clientId,
      NetBIOSName: f.name,
      PublicKey: f.publicKey,
      KeyFingerprint: f.fingerprint,
      IPAddresses: JSON.stringify(f.ipAddresses),
      OSFamily: f.osFamily,
      OSVersion: f.osVersion,
      AgentVersion: f.agentVersion,
      ApprovalStatus: status,
      RegisteredTime: now,
      ApprovedTime: status === 'approved' ? now : '',
      LastSeenTime: now,
    })
    .onConflict((oc) => oc.column('ClientID').doNothing())
    .execute();
  return (await findClient(db, f.clientId))!;
}

/** Refreshes what a repeated registration reports (name, addresses, OS, agent version). */
export async function refreshClientFacts(db: Db, f: ClientFacts): Promise<void> {
  await db
    .updateTable('ClientRegistration')
    .set({ NetBIOSName: f.name, IPAddresses: JSON.stringify(f.ipAddresses), OSFamily: f.osFamily, OSVersion: f.osVersion, AgentVersion: f.agentVersion, LastSeenTime: nowIso() })
    .where('ClientID', '=', f.clientId)
    .execute();
}

export async function setClientApproval(db: Db, resourceId: number, status: ApprovalStatus): Promise<void> {
  await db
    .updateTable('ClientRegistration')
    .set(status === 'approved' ? { ApprovalStatus: status, ApprovedTime: nowIso() } : { ApprovalStatus: status })
    .where('ResourceID', '=', resourceId)
    .execute();
}

export async function touchClient(db: Db, resourceId: number, when = nowIso()): Promise<void> {
  await db.updateTable('ClientRegistration').set({ LastSeenTime: when }).where('ResourceID', '=', resourceId).execute();
}

export function clientAddresses(row: Pick<ClientRow, 'IPAddresses'>): string[] {
  try {
    const v = JSON.parse(row.IPAddresses) as unknown;
    return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
  } catch {
    return [];
  }
}
