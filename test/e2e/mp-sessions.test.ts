/**
 * End to end, MP sessions (docs/adr/0012-mp-sessions.md) with real
 * processes: a site, a remote MP (`cairn mp`) and an agent. The agent opens
 * a session with one signed exchange and polls policy under it; the MP
 * restarts (every session gone) and the agent opens a new session and goes
 * on without an error reaching its components; the client is revoked and its
 * very next request is refused, its session ended.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { afterTests, cli, freePort, readLog, startSite, tempDir, waitFor } from '../helpers/processes.ts';
import { startMpProcess } from '../helpers/mp-client.ts';
import { logText, startAgentProc, waitWithTrigger } from '../helpers/agent.ts';

const { cleanups, track } = afterTests();

const count = (text: string, re: RegExp): number => (text.match(new RegExp(re.source, `${re.flags}g`)) ?? []).length;

describe('MP sessions', () => {
  test('[UC21] the agent works under a session, opens a new one transparently when the MP restarts, and a revoked client is refused at its next request', async () => {
    const work = await tempDir('mp-sessions');
    cleanups.push(() => fsp.rm(work, { recursive: true, force: true }));
    const dataDir = path.join(work, 'site');
    const site = track(await startSite(dataDir, ['--no-local-dp']));
    const added = await cli(site, ['mp', 'add', 'mp1']);
    assert.equal(added.code, 0, added.stderr);
    const mpData = path.join(work, 'mp1');
    const mpPort = await freePort();
    const mpArgs = { data: mpData, port: mpPort, site: site.url, name: 'mp1', key: added.stdout.trim(), siteKey: path.join(dataDir, 'site-signing.key'), database: `sqlite:${path.join(dataDir, 'site.db')}` };
    const mp = track(await startMpProcess(mpArgs));
    const data = path.join(work, 'agent');
    const agent = track(startAgentProc(['--mp', mp.url, '--data', data, '--name', 'SESSION-01']));
    const ccm = async (): Promise<string> => logText(await readLog(data, 'CcmMessaging'));
    const policyOk = /GET \/mp\/v1\/policy\/assignments -> 200, 0 bytes sent, \d+ bytes received, [\d.]+ ms$/m;

    // A session: one signed exchange, then policy under the session's MAC.
    await waitWithTrigger(data, 'policy', `a policy poll under a session\n${agent.output()}`, async () => policyOk.test(await ccm()));
    const first = await ccm();
    assert.match(first, /POST \/mp\/v1\/session -> 200, \d+ bytes sent, \d+ bytes received, [\d.]+ ms, signed/);
    const opened = /Opened session ([0-9a-f]{32}) with the MP, valid for 3600 s\./.exec(first);
    assert.ok(opened, first);
    assert.match(await readLog(mpData, 'MP_Registration'), new RegExp(`Opened session ${opened[1]} for GUID:[0-9A-F-]+ \\(SESSION-01\\)`));

    // The MP restarts: the agent's session is unknown to it; it opens a new one and the poll succeeds.
    await mp.kill('SIGTERM');
    track(await startMpProcess(mpArgs));
    await waitWithTrigger(data, 'policy', `a new session after the MP restarted\n${agent.output()}`, async () => count(await ccm(), /Opened session [0-9a-f]{32} with the MP/) >= 2 && count(await ccm(), policyOk) >= 2);
    const afterRestart = await ccm();
    assert.match(afterRestart, new RegExp(`the MP no longer accepts session ${opened[1]} \\(CAIRN_SESSION_UNKNOWN\\); opening a new session and sending the request again`));
    assert.doesNotMatch(logText(await readLog(data, 'PolicyAgent')), /CAIRN_SESSION/, 'the session change never reached the policy agent');

    // Revoked: the next request under the session is refused, the session ended, the agent stops asking.
    const id = (JSON.parse(await fsp.readFile(path.join(data, 'client.json'), 'utf8')) as { clientId: string }).clientId;
    assert.equal((await cli(site, ['client', 'revoke', id])).code, 0);
    await waitWithTrigger(data, 'policy', `the revoked client to be refused\n${agent.output()}`, async () => /refused with CAIRN_CLIENT_REVOKED/.test(await ccm()));
    await waitFor('the MP to log the refusal', async () => /CAIRN_CLIENT_REVOKED.*its session [0-9a-f]{32} is ended/.test(await readLog(mpData, 'MP_Policy')));
    assert.match(logText(await readLog(data, 'PolicyAgent')) + logText(await readLog(data, 'ClientIDManagerStartup')), /CAIRN_CLIENT_REVOKED/);
  });
});
