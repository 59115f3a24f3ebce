/**
 * Builds the `Report` a client posts to the MP relay, exactly in the shape
 * of spec 30, section 4 (the seed's example), so that the relay's and the
 * state system's parser (`src/shared/state-report.ts`) reads it back as it
 * reads the seed's. Pure: no I/O.
 */
import type { StoredStateMessage } from './agent-store.ts';

export interface ReportSender {
  readonly clientId: string;
  readonly netbiosName: string;
  readonly clientVersion: string;
  /** Message priority (spec 30, section 4 step 2); the seed sends 5. */
  readonly priority?: number;
}

const pad = (n: number, w = 2): string => String(n).padStart(w, '0');

/** A time as a WMI (CIM) datetime in UTC, `yyyymmddHHMMSS.ffffff+000`, as the seeds show. */
export function toWmiDateTime(d: Date): string {
  return `${d.getUTCFullYear()}${pad(d.getUTCMonth() + 1)}${pad(d.getUTCDate())}${pad(d.getUTCHours())}${pad(d.getUTCMinutes())}${pad(d.getUTCSeconds())}.${pad(d.getUTCMilliseconds(), 3)}000+000`;
}

/** Escapes text for an XML attribute value or element content. */
export function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]!);
}

export function buildStateReport(sender: ReportSender, messages: readonly StoredStateMessage[], now = new Date()): string {
  const body = messages
    .map((m) => {
      const params = m.userParams.map((p) => `<Param>${escapeXml(p)}</Param>`).join('');
      return (
        `<StateMessage MessageTime="${toWmiDateTime(new Date(m.messageTime))}" SerialNumber="${m.serialNumber}">` +
        `<Topic ID="${escapeXml(m.topicId)}" Type="${m.topicType}" IDType="${m.idType}" User="" UserSID=""/>` +
        `<State ID="${m.stateId}" Criticality="${m.criticality}"/>` +
        `<UserParameters Flags="${m.userFlags}" Count="${m.userParams.length}">${params}</UserParameters>` +
        `</StateMessage>`
      );
    })
    .join('');
  return (
    `<Report><ReportHeader><Identification><Machine>` +
    `<ClientInstalled>1</ClientInstalled><ClientType>1</ClientType>` +
    `<ClientID>${escapeXml(sender.clientId)}</ClientID>` +
    `<ClientVersion>${escapeXml(sender.clientVersion)}</ClientVersion><NetBIOSName>${escapeXml(sender.netbiosName)}</NetBIOSName>` +
    `<CodePage>437</CodePage><SystemDefaultLCID>1033</SystemDefaultLCID><Priority>${sender.priority ?? 5}</Priority>` +
    `</Machine></Identification>` +
    `<ReportDetails><ReportContent>State Message Data</ReportContent><ReportType>Full</ReportType>` +
    `<Date>${toWmiDateTime(now)}</Date><Version>1.0</Version><Format>1.0</Format></ReportDetails>` +
    `</ReportHeader><ReportBody>${body}</ReportBody></Report>`
  );
}
