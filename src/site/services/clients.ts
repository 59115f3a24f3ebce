/**
 * The clients service: registered clients as the admin API shows them, and
 * approval and revocation. Approving or revoking drops a `.CLI` trigger so
 * the policy provider maps (or unmaps) the client's policies at once.
 */
import { CairnError } from '../../shared/errors.ts';
import { clientAddresses, findClientsByIdOrName, listClients, setClientApproval } from '../../datastore/clients.ts';
import type { ApprovalStatus } from '../../datastore/clients.ts';
import type { ClientRow } from '../../datastore/schema.ts';
import { dropPolicyTrigger } from '../components/policypv/policy-triggers.ts';
import type { SiteContext } from '../site-context.ts';

export interface ClientView {
  readonly clientId: string;
  readonly name: string;
  readonly resourceId: number;
  readonly status: string;
  readonly ipAddresses: string[];
  readonly osFamily: string;
  readonly osVersion: string;
  readonly agentVersion: string;
  readonly keyFingerprint: string;
  readonly registeredTime: string;
  readonly approvedTime: string;
  readonly lastSeenTime: string;
}

export function clientView(r: ClientRow): ClientView {
  return {
    clientId: r.ClientID,
    name: r.NetBIOSName,
    resourceId: Number(r.ResourceID),
    status: r.ApprovalStatus,
    ipAddresses: clientAddresses(r),
    osFamily: r.OSFamily,
    osVersion: r.OSVersion,
    agentVersion: r.AgentVersion,
    keyFingerprint: r.KeyFingerprint,
    registeredTime: r.RegisteredTime,
    approvedTime: r.ApprovedTime,
    lastSeenTime: r.LastSeenTime,
  };
}

export async function listClientViews(ctx: SiteContext): Promise<ClientView[]> {
  return (await listClients(ctx.db)).map(clientView);
}

/** One client by client ID or name; a name several clients share is refused. */
export async function requireClient(ctx: SiteContext, idOrName: string): Promise<ClientRow> {
  const rows = await findClientsByIdOrName(ctx.db, idOrName);
  if (!rows.length) throw new CairnError('CAIRN_CLIENT_NOT_FOUND', idOrName.slice(0, 80));
  if (rows.length > 1) throw new CairnError('CAIRN_CLIENT_AMBIGUOUS', `${idOrName.slice(0, 80)}: ${rows.map((r) => r.ClientID).join(', ')}`);
  return rows[0]!;
}

/** Approves or revokes a client; returns its view and its status before. */
export async function setApproval(ctx: SiteContext, idOrName: string, status: Exclude<ApprovalStatus, 'pending'>, wake: () => void): Promise<{ client: ClientView; before: string }> {
  const row = await requireClient(ctx, idOrName);
  const resourceId = Number(row.ResourceID);
  if (row.ApprovalStatus !== status) {
    await setClientApproval(ctx.db, resourceId, status);
    await dropPolicyTrigger(ctx.paths.policypvBox, String(resourceId), 'CLI', status);
    wake();
  }
  const after = (await findClientsByIdOrName(ctx.db, row.ClientID))[0]!;
  return { client: clientView(after), before: row.ApprovalStatus };
}
