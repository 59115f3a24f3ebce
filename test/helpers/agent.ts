/**
 * Test helpers for `cairn agent` as a real process: start it, ask it for a
 * policy poll or a report through its trigger files (what `cairn agent
 * policy --now` does), and read its CMTrace logs as text.
 */
import { startCairn, waitFor } from './processes.ts';
import type { Proc } from './processes.ts';
import { TRIGGER_POLICY, TRIGGER_REPORT, writeTrigger } from '../../src/agent/agent-host.ts';

export interface AgentProc extends Proc {
  /** Resolves with the exit code (null when killed by a signal). */
  readonly exited: Promise<number | null>;
}

export function startAgentProc(args: string[]): AgentProc {
  return startCairn(['agent', ...args]);
}

/** The message texts of a CMTrace log, one per line. */
export const logText = (log: string): string => log.replace(/<!\[LOG\[(.*?)\]LOG\]!>[^\n]*/g, '$1');

/**
 * Waits for `check`, dropping the agent's trigger (`policy`: a policy poll,
 * `report`: send state and status messages) every two seconds: a policy
 * version may be built just after a poll, and reporting cycles are minutes.
 */
export async function waitWithTrigger(data: string, kind: 'policy' | 'report', what: string, check: () => Promise<boolean>): Promise<void> {
  let last = 0;
  await waitFor(what, async () => {
    if (await check()) return true;
    if (Date.now() - last > 2000) {
      last = Date.now();
      await writeTrigger(data, kind === 'policy' ? TRIGGER_POLICY : TRIGGER_REPORT);
    }
    return false;
  });
}
