/**
 * `cairn agent`: runs the client agent in the foreground (one client for
 * this machine, or `--simulate N` clients), says where its data and logs
 * are, and stops cleanly on SIGINT or SIGTERM like the other roles. A fatal
 * start-up error (a refused site key) ends the command with its code. It
 * never exits the process itself: the CLI entry point decides the exit code.
 *
 * `cairn agent policy --now`, `cairn agent report --now` and `cairn agent
 * scan --now` ask a running agent (found by its data folder) for a policy
 * poll, for sending its messages, or for a compliance scan at once, through
 * a trigger file.
 */
import path from 'node:path';
import { startAgent, writeTrigger, TRIGGER_POLICY, TRIGGER_REPORT, TRIGGER_SCAN } from '../agent/agent-host.ts';
import { untilStopSignal } from './until-signal.ts';

export interface AgentCommandOptions {
  readonly mp: string;
  readonly data: string;
  readonly siteKeyFingerprint?: string;
  readonly name?: string;
  readonly simulate?: number;
  readonly facts?: string;
  readonly spreadSeconds?: number;
  /** Items per page the scanner asks of update points (default: the protocol's largest; tests use small pages). */
  readonly scanPageSize?: number;
}

export async function runAgentCommand(o: AgentCommandOptions): Promise<void> {
  // Listen for the stop signal before anything is started, so that a signal during start-up stops cleanly too.
  const stopSignal = untilStopSignal();
  let fatal: unknown;
  let wakeFatal: () => void = () => undefined;
  const fatalSeen = new Promise<void>((resolve) => (wakeFatal = resolve));
  const agent = startAgent({
    mpUrl: o.mp,
    dataDir: o.data,
    ...(o.siteKeyFingerprint === undefined ? {} : { siteKeyFingerprint: o.siteKeyFingerprint }),
    ...(o.name === undefined ? {} : { name: o.name }),
    ...(o.simulate === undefined ? {} : { simulate: { count: o.simulate, factsFile: o.facts!, ...(o.spreadSeconds === undefined ? {} : { spreadSeconds: o.spreadSeconds }) } }),
    ...(o.scanPageSize === undefined ? {} : { scanPageSize: o.scanPageSize }),
    onFatal: (err) => {
      fatal = err;
      wakeFatal();
    },
  });
  const first = agent.clients[0]!;
  process.stdout.write(
    (o.simulate === undefined ? `Cairn agent for ${first.name} (${first.clientId}) is running.\n` : `Cairn agent is running ${agent.clients.length} simulated clients.\n`) +
      `  management point: ${o.mp}\n` +
      `  data:             ${path.resolve(o.data)}\n` +
      `  logs:             ${agent.logsDir}\n`,
  );
  await Promise.race([stopSignal, fatalSeen]);
  await agent.close();
  if (fatal !== undefined) throw fatal;
}

export async function runAgentTrigger(data: string, what: 'policy' | 'report' | 'scan'): Promise<string> {
  return writeTrigger(data, what === 'policy' ? TRIGGER_POLICY : what === 'report' ? TRIGGER_REPORT : TRIGGER_SCAN);
}
