/**
 * The wake-up files of the policy provider's inbox (`policypv.box`,
 * docs/adr/0006-mp-server.md). A file only says "look again"; the database
 * rows are the truth, and the policy provider deletes a file only after the
 * work it asks for is committed. Dropping the same file twice is harmless.
 *
 * | file | dropped by | asks for |
 * | --- | --- | --- |
 * | `{UpdateSourceID}.STN` | DB monitor (spec 30 §1) or an administrator | bump the UpdateSource policy to the current content version |
 * | `<DeploymentID>.DEP` | admin API (`package deploy`) | build the deployment's ContentDeployment policy |
 * | `<CollectionID>.COL` | admin API (collection created, rule or member added) | re-evaluate collection membership |
 * | `<ResourceID>.CLI` | MP (client registered approved, its name or addresses changed), admin API (approved, revoked) | re-evaluate collection membership |
 */
import { writeInboxFile } from '../../../shared/inbox.ts';

export const POLICY_TRIGGER_EXTENSIONS = ['STN', 'DEP', 'COL', 'CLI'] as const;
export type PolicyTriggerExtension = (typeof POLICY_TRIGGER_EXTENSIONS)[number];

/** Drops `<key>.<ext>` into the policy provider's inbox (or a remote MP's outbox for it). */
export async function dropPolicyTrigger(box: string, key: string, ext: PolicyTriggerExtension, note = ''): Promise<string> {
  const safe = key.replace(/[^A-Za-z0-9{}._-]/g, '_');
  return writeInboxFile(box, `${safe}.${ext}`, `${ext} ${key} ${new Date().toISOString()} ${note}\n`);
}
