/**
 * `cairn agent updates [--json] --data DIR [--client NAME] [--all]`: a
 * client's own update states from the agent's update store (issue 6, part 7;
 * the seed's `CCM_UpdateStatus`), read beside the running agent. By default
 * only the required (missing) updates; `--all` lists every state. The JSON
 * is documented in docs/cli-json.md.
 *
 * It only reads: the store is opened read-only, and a folder without an
 * agent store is `CAIRN_AGENT_DATA_MISSING`.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AgentStore } from '../agent/agent-store.ts';
import type { ScanJob } from '../agent/agent-store.ts';
import { CairnError } from '../shared/errors.ts';

export const UPDATE_STATE_NAMES = ['unknown', 'notRequired', 'required', 'installed'] as const;

export interface AgentUpdateView {
  readonly updateId: string;
  readonly revision: number;
  readonly title: string;
  readonly articleId: string;
  readonly productId: string;
  readonly state: (typeof UPDATE_STATE_NAMES)[number];
  readonly stateId: number;
  readonly reason: string;
  readonly time: string;
}

export interface AgentUpdatesView {
  readonly client: string;
  readonly clientId: string;
  readonly lastScan: { readonly jobId: string; readonly state: ScanJob['state']; readonly trigger: ScanJob['trigger']; readonly contentVersion: number; readonly requiredContentVersion: number; readonly updatePoint: string; readonly time: string; readonly lastError: string } | null;
  readonly nextScan: string | null;
  readonly updates: readonly AgentUpdateView[];
}

export function readAgentUpdates(dataDir: string, o: { client?: string; all?: boolean }): AgentUpdatesView {
  const data = path.resolve(dataDir);
  const file = path.join(data, 'agent.db');
  if (!fs.existsSync(file)) throw new CairnError('CAIRN_AGENT_DATA_MISSING', `${data} holds no agent store (agent.db); give the --data folder of a cairn agent`);
  const store = new AgentStore(file, { readonly: true });
  try {
    let clientId: string;
    let name: string;
    if (o.client !== undefined) {
      const row = store.simulatedIdentities().find((r) => r.name.toLowerCase() === o.client!.toLowerCase() || r.clientId === o.client);
      if (!row) throw new CairnError('CAIRN_AGENT_DATA_MISSING', `no simulated client named ${o.client} in ${data}`);
      clientId = row.clientId;
      name = row.name;
    } else {
      const idFile = path.join(data, 'client.json');
      let id: unknown;
      try {
        id = (JSON.parse(fs.readFileSync(idFile, 'utf8')) as { clientId?: unknown }).clientId;
      } catch {
        id = undefined;
      }
      if (typeof id !== 'string') throw new CairnError('CAIRN_AGENT_DATA_MISSING', `${idFile} is missing or has no clientId; for a simulated client give --client NAME`);
      clientId = id;
      // The real agent registers with the host name unless it was started with --name.
      name = os.hostname().split('.')[0] || 'localhost';
    }
    const job = store.scanJob(clientId);
    const next = store.nextScan(clientId);
    const updates = store
      .updateStatuses(clientId)
      .filter((u) => o.all || u.status === 2)
      .map((u): AgentUpdateView => ({ updateId: u.updateId, revision: u.revision, title: u.title, articleId: u.articleId, productId: u.productId, state: UPDATE_STATE_NAMES[u.status] ?? 'unknown', stateId: u.status, reason: u.reason, time: u.statusTime }))
      .sort((a, b) => a.title.localeCompare(b.title) || a.updateId.localeCompare(b.updateId));
    return {
      client: name,
      clientId,
      lastScan: job ? { jobId: job.jobId, state: job.state, trigger: job.trigger, contentVersion: job.scannedContentVersion, requiredContentVersion: job.requiredContentVersion, updatePoint: job.updatePoint, time: job.updatedAt, lastError: job.lastError } : null,
      nextScan: next?.at ?? null,
      updates,
    };
  } finally {
    store.close();
  }
}
