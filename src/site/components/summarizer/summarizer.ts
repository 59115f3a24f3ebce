/**
 * The summarisation tasks of the state system (spec 30, section 5; issue 6,
 * part 6), `summarizer.log` (component `SMS_UPDATE_SUMMARIZER`). The product
 * runs them inside the state system; ours is a component of its own beside
 * it, so a long summary never holds up state-message ingestion.
 *
 * Tasks (src/datastore/compliance.ts has the SQL and what each count means):
 *   Update Status Summarizer        per update: required / installed / not required / unknown
 *   Update Group Status Summarizer  per update group: compliant / non-compliant / unknown clients
 *   Assignment Compliance Evaluator per deployment (group → collection): the same, over the collection
 *   Migrate Update Status           brings Update_ComplianceStatus level with the latest topic 500 states
 *   Delete Aged Status              removes update state older than `summarizer.agedStatusDays`
 *
 * Schedules are site settings (`summarizer.*Seconds`, read on every pass; 0
 * turns one off). A task is due when it has never run or when its last start
 * is a schedule ago. The first three also run on demand (`cairn admin
 * summarize`); the last two only on their schedule, as in the product. Runs
 * never overlap: one queue serves the schedule and the admin API. Each run is
 * one transaction, logged as the product logs it:
 *   task <name> started
 *   task <name> completed successfully after running for N seconds, with status M   (M = rows touched)
 * and recorded in `SR_SummaryTasks` (start, end, result, rows, duration,
 * trigger). A failed run is logged with its reason and recorded as failed; it
 * never stops the component.
 */
import { createComponentLog } from '../../../shared/cmtrace-log.ts';
import type { ComponentLog } from '../../../shared/cmtrace-log.ts';
import { WorkLoop } from '../../../shared/work-loop.ts';
import { CairnError, describeError, isCairnError } from '../../../shared/errors.ts';
import { readSettings } from '../../../datastore/site-control.ts';
import type { SettingName, SiteSettings } from '../../../datastore/site-control.ts';
import { deleteAgedStatus, evaluateAssignments, listSummaryTasks, migrateUpdateStatus, recordTaskRun, SUMMARY_TASKS, summarizeUpdateGroups, summarizeUpdateStatus } from '../../../datastore/compliance.ts';
import type { SummaryTaskName } from '../../../datastore/compliance.ts';
import { nowIso } from '../../../datastore/time.ts';
import type { SiteContext } from '../../site-context.ts';

export const SUMMARIZER_COMPONENT = 'SMS_UPDATE_SUMMARIZER';

interface TaskDef {
  readonly setting: SettingName;
  readonly onDemand: boolean;
  /** Short names the CLI accepts besides the full name. */
  readonly aliases: readonly string[];
}

export const TASK_DEFS: Readonly<Record<SummaryTaskName, TaskDef>> = {
  'Update Status Summarizer': { setting: 'summarizer.updateStatusSeconds', onDemand: true, aliases: ['update-status'] },
  'Update Group Status Summarizer': { setting: 'summarizer.updateGroupStatusSeconds', onDemand: true, aliases: ['update-group-status', 'group-status'] },
  'Assignment Compliance Evaluator': { setting: 'summarizer.assignmentComplianceSeconds', onDemand: true, aliases: ['assignment-compliance', 'deployment-compliance'] },
  'Migrate Update Status': { setting: 'summarizer.migrateUpdateStatusSeconds', onDemand: false, aliases: ['migrate-update-status'] },
  'Delete Aged Status': { setting: 'summarizer.deleteAgedStatusSeconds', onDemand: false, aliases: ['delete-aged-status'] },
};

/** The tasks `cairn admin summarize` runs without `--task`, in this order. */
export const ON_DEMAND_TASKS: readonly SummaryTaskName[] = SUMMARY_TASKS.filter((t) => TASK_DEFS[t].onDemand);

/** A task by its full name (any case) or one of its short names. */
export function resolveTask(name: string): SummaryTaskName {
  const n = name.trim().toLowerCase();
  for (const t of SUMMARY_TASKS) if (t.toLowerCase() === n || t.toLowerCase().replaceAll(' ', '-') === n || TASK_DEFS[t].aliases.includes(n)) return t;
  throw new CairnError('CAIRN_SUMMARY_TASK_NOT_FOUND', `'${name.slice(0, 80)}' is not a summary task; they are: ${SUMMARY_TASKS.map((t) => `${t} (${TASK_DEFS[t].aliases[0]})`).join(', ')}`);
}

/** Pure: whether a task is due at `now` (ms) given its last start and schedule. */
export function isDue(lastRunStart: string, scheduleSeconds: number, now: number): boolean {
  if (scheduleSeconds <= 0) return false;
  if (!lastRunStart) return true;
  const last = Date.parse(lastRunStart);
  return !Number.isFinite(last) || now - last >= scheduleSeconds * 1000;
}

/** What an on-demand run covers when not everything. */
export interface Scope {
  /** The assignment compliance evaluator for this deployment only. */
  readonly assignmentId?: number;
  /** The update group status summarizer for this update group only, and its name for the log. */
  readonly authListId?: number;
  readonly groupName?: string;
}

export interface TaskRunResult {
  readonly task: SummaryTaskName;
  readonly trigger: 'schedule' | 'on demand';
  readonly result: 'success' | 'failed';
  readonly rowsTouched: number;
  readonly durationMs: number;
  readonly start: string;
  readonly end: string;
  readonly error: string;
}

export class Summarizer {
  readonly log: ComponentLog;
  readonly #ctx: SiteContext;
  readonly #loop: WorkLoop;
  #queue: Promise<unknown> = Promise.resolve();

  constructor(ctx: SiteContext) {
    this.#ctx = ctx;
    this.log = createComponentLog({ dir: ctx.paths.logs, name: 'summarizer', component: SUMMARIZER_COMPONENT });
    this.#loop = new WorkLoop({ log: this.log, rescanMs: Math.max(1000, ctx.settings['components.rescanMs']), work: () => this.#scheduled() });
  }

  start(): void {
    this.log.info(`${SUMMARIZER_COMPONENT} started; tasks: ${SUMMARY_TASKS.map((t) => `${t} every ${this.#ctx.settings[TASK_DEFS[t].setting]} s`).join(', ')}.`);
    this.#loop.start();
  }

  async stop(): Promise<void> {
    await this.#loop.stop();
    await this.#queue.catch(() => undefined);
  }

  /**
   * Runs tasks now, one after the other (after any run in progress), and
   * returns their results. `tasks` empty: every on-demand task. A
   * schedule-only task is refused. `assignmentId` limits the assignment
   * compliance evaluator to one deployment, `authListId` the update group
   * status summarizer to one update group (spec 30, section 5: on demand per
   * deployment and per update group).
   */
  async runOnDemand(tasks: readonly SummaryTaskName[], opts: Scope = {}): Promise<TaskRunResult[]> {
    const list = tasks.length ? tasks : ON_DEMAND_TASKS;
    for (const t of list) if (!TASK_DEFS[t].onDemand) throw new CairnError('CAIRN_SUMMARY_TASK_NOT_ON_DEMAND', `${t} runs on its schedule only (setting ${TASK_DEFS[t].setting})`);
    const settings = await readSettings(this.#ctx.db);
    const out: TaskRunResult[] = [];
    for (const t of list) out.push(await this.#enqueue(t, 'on demand', settings, opts));
    return out;
  }

  async #scheduled(): Promise<void> {
    const settings = await readSettings(this.#ctx.db);
    const tasks = await listSummaryTasks(this.#ctx.db);
    const now = Date.now();
    for (const t of tasks) {
      const name = t.TaskName as SummaryTaskName;
      if (!TASK_DEFS[name]) continue;
      if (isDue(t.LastRunStart, settings[TASK_DEFS[name].setting], now)) await this.#enqueue(name, 'schedule', settings);
    }
  }

  #enqueue(task: SummaryTaskName, trigger: TaskRunResult['trigger'], settings: SiteSettings, scope: Scope = {}): Promise<TaskRunResult> {
    const run = this.#queue.then(() => this.#run(task, trigger, settings, scope));
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async #run(task: SummaryTaskName, trigger: TaskRunResult['trigger'], settings: SiteSettings, scope: Scope): Promise<TaskRunResult> {
    const start = nowIso();
    const t0 = performance.now();
    const { assignmentId, authListId } = scope;
    const only =
      task === 'Assignment Compliance Evaluator' && assignmentId !== undefined ? ` for deployment ${assignmentId}` : task === 'Update Group Status Summarizer' && authListId !== undefined ? ` for update group ${authListId}${scope.groupName ? ` (${scope.groupName})` : ''}` : '';
    this.log.info(`task ${task} started (${trigger})${only}`);
    let rows = 0;
    let error = '';
    try {
      rows = await this.#ctx.db.transaction().execute(async (trx) => {
        switch (task) {
          case 'Update Status Summarizer':
            return summarizeUpdateStatus(trx, start);
          case 'Update Group Status Summarizer':
            return summarizeUpdateGroups(trx, start, authListId);
          case 'Assignment Compliance Evaluator':
            return evaluateAssignments(trx, start, assignmentId);
          case 'Migrate Update Status':
            return migrateUpdateStatus(trx);
          case 'Delete Aged Status':
            return deleteAgedStatus(trx, new Date(Date.now() - settings['summarizer.agedStatusDays'] * 86_400_000).toISOString());
        }
      });
    } catch (err) {
      error = isCairnError(err) ? `${err.code}: ${err.message}` : describeError(err);
    }
    const durationMs = Math.round(performance.now() - t0);
    const end = nowIso();
    const seconds = (durationMs / 1000).toFixed(3);
    if (error) this.log.error(`task ${task} failed after running for ${seconds} seconds: ${error}`);
    else this.log.info(`task ${task} completed successfully after running for ${seconds} seconds, with status ${rows}`);
    const result: TaskRunResult = { task, trigger, result: error ? 'failed' : 'success', rowsTouched: rows, durationMs, start, end, error };
    try {
      await recordTaskRun(this.#ctx.db, task, { scheduleSeconds: settings[TASK_DEFS[task].setting], start, end, result: result.result, error, rows, durationMs, trigger });
    } catch (err) {
      this.log.error(`Could not record the run of task ${task} in SR_SummaryTasks: ${describeError(err)}`);
    }
    return result;
  }
}
