/**
 * The settings service: site control settings read and changed through the
 * admin API. Values are validated here (a known name, a non-negative
 * integer). Components read most settings once at start-up, so a change
 * applies at the next start; the ones read on every use say so in
 * docs/operations.md.
 */
import { CairnError } from '../../shared/errors.ts';
import { readSettings, SETTING_DEFAULTS, SETTING_NAMES, writeSetting } from '../../datastore/site-control.ts';
import type { SettingName } from '../../datastore/site-control.ts';
import type { SiteContext } from '../site-context.ts';

export interface SettingView {
  readonly name: string;
  readonly value: number;
  readonly default: number;
}

export async function listSettings(ctx: SiteContext): Promise<SettingView[]> {
  const current = await readSettings(ctx.db);
  return SETTING_NAMES.map((name) => ({ name, value: current[name], default: SETTING_DEFAULTS[name] }));
}

export async function changeSetting(ctx: SiteContext, name: string, value: unknown): Promise<SettingView> {
  if (!(SETTING_NAMES as readonly string[]).includes(name)) throw new CairnError('CAIRN_REQUEST_INVALID', `'${name.slice(0, 80)}' is not a setting; \`cairn admin settings list\` shows them`);
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) throw new CairnError('CAIRN_REQUEST_INVALID', 'value must be a non-negative integer');
  await writeSetting(ctx.db, name as SettingName, value);
  return { name, value, default: SETTING_DEFAULTS[name as SettingName] };
}
