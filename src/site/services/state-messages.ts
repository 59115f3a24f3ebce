/**
 * The state-message service: what the admin API's state calls decide. It
 * validates the filter and turns `StateMsg` rows into the stable view the
 * CLI's `--json` prints (docs/cli-json.md).
 */
import { CairnError } from '../../shared/errors.ts';
import { listLatestStates } from '../../datastore/state-messages.ts';
import type { SiteContext } from '../site-context.ts';

export interface StateView {
  readonly clientId: string;
  readonly client: string;
  readonly topicType: number;
  /** Friendly name from SR_TopicTypes; null for a topic type without one. */
  readonly topicTypeName: string | null;
  readonly topicId: string;
  readonly stateId: number;
  /** Friendly name from SR_StateNames; null for a state without one. */
  readonly stateName: string | null;
  readonly criticality: number;
  readonly serialNumber: number;
  readonly messageTime: string;
  readonly received: string;
  readonly userParams: string[];
}

export interface StateFilterInput {
  readonly client?: string | undefined;
  readonly topicType?: string | undefined;
  readonly limit?: string | undefined;
}

/** `state list`: latest state per client and topic, with friendly names. */
export async function listStates(ctx: SiteContext, input: StateFilterInput): Promise<StateView[]> {
  const topicType = input.topicType === undefined ? undefined : Number(input.topicType);
  if (topicType !== undefined && (!Number.isInteger(topicType) || topicType < 0)) throw new CairnError('CAIRN_REQUEST_INVALID', 'topicType must be a non-negative integer');
  const limit = input.limit === undefined ? undefined : Number(input.limit);
  if (limit !== undefined && (!Number.isInteger(limit) || limit < 1 || limit > 100000)) throw new CairnError('CAIRN_REQUEST_INVALID', 'limit must be 1-100000');
  const rows = await listLatestStates(ctx.db, {
    ...(input.client ? { client: input.client } : {}),
    ...(topicType !== undefined ? { topicType } : {}),
    ...(limit !== undefined ? { limit } : {}),
  });
  return rows.map((r) => ({
    clientId: r.ClientID,
    client: r.NetBIOSName,
    topicType: r.TopicType,
    topicTypeName: r.TopicTypeName,
    topicId: r.TopicID,
    stateId: r.StateID,
    stateName: r.StateName,
    criticality: r.Criticality,
    serialNumber: r.SerialNumber,
    messageTime: r.MessageTime,
    received: r.ReceivedTime,
    userParams: JSON.parse(r.UserParams) as string[],
  }));
}
