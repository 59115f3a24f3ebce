/**
 * Where a site keeps its things under its data folder: the database (SQLite),
 * the inboxes, the component logs, the content library and the bootstrap
 * files (`site.json`, `admin.token`).
 */
import path from 'node:path';

export interface SitePaths {
  readonly data: string;
  readonly inboxes: string;
  readonly logs: string;
  readonly contentLibrary: string;
  readonly siteJson: string;
  readonly adminToken: string;
  /** The secret state-message and status-message posts to the MP relay are signed with (docs/adr/0003-state-relay.md). */
  readonly relayKey: string;
  readonly sqlite: string;
  readonly distmgrBox: string;
  readonly distmgrIncoming: string;
  readonly pkgTransferMgrBox: string;
  readonly statmsgs: string;
  /** The state system's inbox (spec 40): `.SMX` files from the MP relay. */
  readonly statesysIncoming: string;
  /** The all-in-one site's own distribution point data folder. */
  readonly localDp: string;
  /** The site's Ed25519 signing key (PKCS#8 PEM, 0600): policies and assignment lists are signed with it (ADR 0005). */
  readonly siteSigningKey: string;
  /** The policy provider's inbox: `.STN`, `.DEP`, `.COL`, `.CLI` wake-ups (docs/adr/0006-mp-server.md). */
  readonly policypvBox: string;
  /** The update sync manager's inbox (seed 004): `SELF.SYN`, `FULL.SYN`, a parent's `<SiteCode>.SYN`. */
  readonly wsyncmgrBox: string;
  /** The all-in-one site's own software update point data folder. */
  readonly localSup: string;
}

export function sitePaths(dataDir: string): SitePaths {
  const data = path.resolve(dataDir);
  const inboxes = path.join(data, 'inboxes');
  return Object.freeze({
    data,
    inboxes,
    logs: path.join(data, 'logs'),
    contentLibrary: path.join(data, 'ContentLib'),
    siteJson: path.join(data, 'site.json'),
    adminToken: path.join(data, 'admin.token'),
    relayKey: path.join(data, 'relay.key'),
    sqlite: path.join(data, 'site.db'),
    distmgrBox: path.join(inboxes, 'distmgr.box'),
    distmgrIncoming: path.join(inboxes, 'distmgr.box', 'incoming'),
    pkgTransferMgrBox: path.join(inboxes, 'PkgTransferMgr.box'),
    statmsgs: path.join(inboxes, 'statmgr.box', 'statmsgs'),
    statesysIncoming: path.join(inboxes, 'auth', 'statesys.box', 'incoming'),
    localDp: path.join(data, 'dp'),
    siteSigningKey: path.join(data, 'site-signing.key'),
    policypvBox: path.join(inboxes, 'policypv.box'),
    wsyncmgrBox: path.join(inboxes, 'WSyncMgr.box'),
    localSup: path.join(data, 'sup'),
  });
}

/** The NAL path of a DP, shaped like the seeds' so log searches read the same. */
export function nalPath(dpName: string, siteCode: string): string {
  return `["Display=\\\\${dpName}\\"]MSWNET:["SMS_SITE=${siteCode}"]\\\\${dpName}\\`;
}
