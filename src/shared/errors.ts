/**
 * The one registry of Cairn's error codes (STYLE.md, convention 4). Every
 * error that crosses a boundary (HTTP response, CLI exit, status message
 * reason) carries one of these codes. `docs/errors.md` lists the same codes;
 * a test keeps the two in step.
 */
export interface ErrorDefinition {
  readonly message: string;
  /** HTTP status the API answers with. */
  readonly status: number;
  /** True when the caller is at fault (bad input), false when the server or a peer is. */
  readonly callerFault: boolean;
}

export const ERRORS = {
  CAIRN_AUTH_MISSING: { message: 'no credentials were presented', status: 401, callerFault: true },
  CAIRN_AUTH_INVALID: { message: 'the credentials are not valid', status: 401, callerFault: true },
  CAIRN_REQUEST_INVALID: { message: 'the request is malformed', status: 400, callerFault: true },
  CAIRN_NOT_FOUND: { message: 'no such route', status: 404, callerFault: true },
  CAIRN_PACKAGE_NOT_FOUND: { message: 'no package has this ID', status: 404, callerFault: true },
  CAIRN_PACKAGE_SOURCE_MISSING: { message: 'the package source folder is missing', status: 400, callerFault: true },
  CAIRN_PACKAGE_SOURCE_UNREADABLE: { message: 'the package source folder cannot be read', status: 400, callerFault: true },
  CAIRN_PACKAGE_SOURCE_ESCAPES: { message: 'a source entry leads outside the source folder', status: 400, callerFault: true },
  CAIRN_PACKAGE_NAME_INVALID: { message: 'the package name is empty or too long', status: 400, callerFault: true },
  CAIRN_DP_NOT_FOUND: { message: 'no distribution point has this name', status: 404, callerFault: true },
  CAIRN_DP_EXISTS: { message: 'a distribution point with this name or URL already exists', status: 409, callerFault: true },
  CAIRN_DP_URL_INVALID: { message: 'the distribution point URL is not a valid http(s) URL', status: 400, callerFault: true },
  CAIRN_DP_UNREACHABLE: { message: 'the distribution point cannot be reached', status: 502, callerFault: false },
  CAIRN_DP_AUTH_FAILED: { message: 'the distribution point and the site could not authenticate each other', status: 502, callerFault: false },
  CAIRN_DP_DISK_FULL: { message: 'the distribution point is out of disk space', status: 507, callerFault: false },
  CAIRN_DP_HASH_MISMATCH: { message: 'the uploaded bytes do not match their hash', status: 422, callerFault: true },
  CAIRN_DP_CONTENT_INCOMPLETE: { message: 'a content definition names files the library does not hold', status: 409, callerFault: true },
  CAIRN_DP_FILE_NOT_FOUND: { message: 'no such package or file on this distribution point', status: 404, callerFault: true },
  CAIRN_DP_REJECTED: { message: 'the distribution point rejected the request', status: 502, callerFault: false },
  CAIRN_DP_CONTENT_INVALID: { message: 'content on the distribution point failed validation', status: 409, callerFault: false },
  CAIRN_PACKAGE_NOT_ON_DP: { message: 'the package is not on that distribution point', status: 409, callerFault: true },
  CAIRN_PRESTAGE_INVALID: { message: 'the prestaged content file is damaged, truncated or not a prestaged content file', status: 400, callerFault: true },
  CAIRN_CONTENT_PATH_INVALID: { message: 'a content path is absolute, empty or leads outside its content', status: 400, callerFault: true },
  CAIRN_HASH_INVALID: { message: 'a hash is not 64 hexadecimal characters', status: 400, callerFault: true },
  // The client agent (src/agent/; issue 4).
  CAIRN_AGENT_MP_UNREACHABLE: { message: 'the management point cannot be reached', status: 502, callerFault: false },
  CAIRN_AGENT_MP_REFUSED: { message: 'the management point refused the request', status: 502, callerFault: false },
  CAIRN_AGENT_MP_REPLY_INVALID: { message: "the management point's reply is malformed", status: 502, callerFault: false },
  CAIRN_AGENT_CLOCK_SKEW: { message: "the management point refused the request because this machine's clock is more than 5 minutes off its own", status: 502, callerFault: false },
  CAIRN_SITE_KEY_CHANGED: { message: 'the site signing key differs from the one this agent pinned', status: 409, callerFault: false },
  CAIRN_SITE_KEY_UNTRUSTED: { message: 'the site signing key does not have the fingerprint given with --site-key-fingerprint', status: 409, callerFault: false },
  CAIRN_AGENT_POLICY_SIGNATURE_INVALID: { message: 'a policy or policy assignment list is not signed by the pinned site key', status: 422, callerFault: false },
  CAIRN_AGENT_POLICY_HASH_MISMATCH: { message: 'a policy body does not match the hash in its assignment', status: 422, callerFault: false },
  CAIRN_AGENT_POLICY_INVALID: { message: 'a policy body or assignment list is malformed', status: 422, callerFault: false },
  CAIRN_AGENT_NO_LOCATION: { message: 'no distribution point holding the content serves this client', status: 404, callerFault: false },
  CAIRN_AGENT_DOWNLOAD_FAILED: { message: 'content could not be downloaded from any location', status: 502, callerFault: false },
  CAIRN_AGENT_CONTENT_HASH_MISMATCH: { message: 'a downloaded file does not match the hash in its policy', status: 422, callerFault: false },
  CAIRN_AGENT_FACTS_INVALID: { message: "the simulated clients' facts file is malformed", status: 400, callerFault: true },
  // Issue 6, the scan agent and update-point location (docs/adr/0010-scan-agent.md).
  CAIRN_WSUS_LOCATION_REQUEST_INVALID: { message: 'the WSUSLocationRequest is malformed', status: 400, callerFault: true },
  CAIRN_AGENT_NO_UPDATE_POINT: { message: 'no update point holding the required content version serves this client yet', status: 404, callerFault: false },
  CAIRN_AGENT_SCAN_FAILED: { message: 'the compliance scan failed', status: 500, callerFault: false },
  CAIRN_AGENT_DATA_MISSING: { message: "the folder holds no agent data (agent store or identity), or not the client named", status: 404, callerFault: true },
  CAIRN_DATABASE_URL_INVALID: { message: 'the database URL is not sqlite: or postgres(ql)://', status: 400, callerFault: true },
  CAIRN_SITE_UNREACHABLE: { message: 'the site admin API cannot be reached', status: 502, callerFault: false },
  CAIRN_CONFIG_MISSING: { message: 'no site address or admin token was found (set CAIRN_URL and CAIRN_TOKEN, or run in the folder of `cairn start`)', status: 400, callerFault: true },
  CAIRN_CATALOG_UPDATE_INVALID: { message: 'an update in the catalog is malformed', status: 400, callerFault: true },
  CAIRN_CATALOG_CATEGORY_INVALID: { message: 'a category in the catalog is malformed', status: 400, callerFault: true },
  CAIRN_CATALOG_RULE_INVALID: { message: "an update's applicability or installed rule is malformed", status: 400, callerFault: true },
  CAIRN_CATALOG_VERSION_INVALID: { message: 'a Debian version string is malformed', status: 400, callerFault: true },
  CAIRN_CATALOG_FOLDER_INVALID: { message: 'the catalog folder is missing, unreadable or not in the catalog format', status: 400, callerFault: true },
  CAIRN_CATALOG_ANCHOR_INVALID: { message: 'the sync anchor or page cursor is malformed', status: 400, callerFault: true },
  CAIRN_CATALOG_CHANGED: { message: 'the catalog changed while a sync was reading it', status: 409, callerFault: false },
  CAIRN_UPDATE_NOT_FOUND: { message: "no update in the site's catalog has this ID", status: 404, callerFault: true },
  CAIRN_UPDATE_GROUP_NOT_FOUND: { message: 'no update group has this name', status: 404, callerFault: true },
  CAIRN_UPDATE_GROUP_EXISTS: { message: 'an update group with this name already exists', status: 409, callerFault: true },
  CAIRN_UPDATE_DEPLOYMENT_NOT_FOUND: { message: 'no update deployment has this ID', status: 404, callerFault: true },
  CAIRN_SUMMARY_TASK_NOT_FOUND: { message: 'no summary task has this name', status: 404, callerFault: true },
  CAIRN_SUMMARY_TASK_NOT_ON_DEMAND: { message: 'this summary task runs on its schedule only', status: 409, callerFault: true },
  CAIRN_SUMMARY_TASK_FAILED: { message: 'the summary task failed; the summarizer log has the reason', status: 500, callerFault: false },
  CAIRN_CATALOG_APT_UNREADABLE: { message: 'an apt index file cannot be read', status: 500, callerFault: false },
  CAIRN_UPSTREAM_UNREACHABLE: { message: 'the upstream update server cannot be reached', status: 502, callerFault: false },
  CAIRN_UPSTREAM_REJECTED: { message: 'the upstream update server answered with an error or a malformed page', status: 502, callerFault: false },
  CAIRN_SUP_NOT_FOUND: { message: 'no software update point has this name', status: 404, callerFault: true },
  CAIRN_SUP_EXISTS: { message: 'a software update point with this name or URL already exists', status: 409, callerFault: true },
  CAIRN_SUP_URL_INVALID: { message: 'the software update point URL is not a valid http(s) URL', status: 400, callerFault: true },
  CAIRN_SUP_UNREACHABLE: { message: 'the software update point cannot be reached', status: 502, callerFault: false },
  CAIRN_SUP_AUTH_FAILED: { message: 'the software update point and the site could not authenticate each other', status: 502, callerFault: false },
  CAIRN_SUP_REJECTED: { message: 'the software update point rejected the request or answered with a malformed body', status: 502, callerFault: false },
  CAIRN_SYNC_NO_UPDATE_POINT: { message: 'the site has no software update point to sync', status: 409, callerFault: true },
  CAIRN_SYNC_NO_UPSTREAM: { message: 'no upstream is configured for the site or its first software update point', status: 409, callerFault: true },
  CAIRN_SYNC_UPSTREAM_INVALID: { message: 'the upstream is neither an http(s) URL nor apt:<absolute folder>', status: 400, callerFault: true },
  CAIRN_SYNC_INTERRUPTED: { message: 'the software update point restarted or lost the sync it was running', status: 502, callerFault: false },
  // The scanner (src/agent/scan/; issue 6, part 3).
  CAIRN_SCAN_UPDATE_POINT_UNREACHABLE: { message: 'the update point cannot be reached or answered with an error', status: 502, callerFault: false },
  CAIRN_SCAN_CONTENT_VERSION_TOO_OLD: { message: 'the update point holds an older catalog than the scan requires', status: 409, callerFault: false },
  CAIRN_INTERNAL: { message: 'an internal error occurred', status: 500, callerFault: false },
  CAIRN_STATE_XML_MALFORMED: { message: 'the state-message report is not well-formed XML', status: 400, callerFault: true },
  CAIRN_STATE_REPORT_INVALID: { message: 'the body is not a state-message Report (wrong root, missing client ID or body)', status: 400, callerFault: true },
  CAIRN_STATE_MESSAGE_INVALID: { message: 'a state message lacks a field or has a malformed value', status: 400, callerFault: true },
  CAIRN_STATE_TOPIC_UNKNOWN: { message: 'a state message has a topic type this site does not know', status: 400, callerFault: true },
  CAIRN_STATE_TOO_LARGE: { message: 'the state-message report is too large', status: 413, callerFault: true },
  CAIRN_STATUS_MESSAGE_INVALID: { message: 'the client status messages are not valid', status: 400, callerFault: true },
  CAIRN_STATUS_TOO_LARGE: { message: 'the client status-message body is too large', status: 413, callerFault: true },
  CAIRN_CLIENT_UNKNOWN: { message: 'no client is registered with this client ID', status: 401, callerFault: true },
  CAIRN_CLIENT_CLOCK_SKEW: { message: "the request's timestamp is more than 5 minutes from the management point's clock", status: 401, callerFault: true },
  CAIRN_AUTH_REPLAY: { message: 'the request was seen before (its nonce was already used)', status: 401, callerFault: true },
  CAIRN_CLIENT_REVOKED: { message: 'the client is revoked', status: 403, callerFault: true },
  CAIRN_CLIENT_NOT_APPROVED: { message: 'the client is registered but not approved yet', status: 403, callerFault: true },
  CAIRN_CLIENT_KEY_MISMATCH: { message: 'this client ID is registered with a different key', status: 409, callerFault: true },
  CAIRN_CLIENT_MISMATCH: { message: "the report's client ID is not the signer's", status: 403, callerFault: true },
  CAIRN_CLIENT_NOT_FOUND: { message: 'no client has this name or client ID', status: 404, callerFault: true },
  CAIRN_CLIENT_AMBIGUOUS: { message: 'several clients have this name; use the client ID', status: 409, callerFault: true },
  CAIRN_SESSION_UNKNOWN: { message: 'this management point has no such session (it restarted, or the session ended)', status: 401, callerFault: true },
  CAIRN_SESSION_EXPIRED: { message: 'the session has expired', status: 401, callerFault: true },
  CAIRN_SESSION_MISMATCH: { message: 'the session belongs to another client', status: 401, callerFault: true },
  CAIRN_POLICY_NOT_FOUND: { message: 'no such policy (or version) is assigned to this client', status: 404, callerFault: true },
  CAIRN_REQUEST_TOO_LARGE: { message: 'the request body is too large', status: 413, callerFault: true },
  CAIRN_COLLECTION_NOT_FOUND: { message: 'no collection has this name or ID', status: 404, callerFault: true },
  CAIRN_COLLECTION_EXISTS: { message: 'a collection with this name already exists', status: 409, callerFault: true },
  CAIRN_COLLECTION_RULE_INVALID: { message: 'the collection rule is malformed', status: 400, callerFault: true },
  CAIRN_BOUNDARY_GROUP_NOT_FOUND: { message: 'no boundary group has this name', status: 404, callerFault: true },
  CAIRN_BOUNDARY_GROUP_EXISTS: { message: 'a boundary group with this name already exists', status: 409, callerFault: true },
  CAIRN_BOUNDARY_INVALID: { message: 'the boundary is not an IPv4 subnet (CIDR) or range (A-B)', status: 400, callerFault: true },
  CAIRN_MP_EXISTS: { message: 'a management point with this name already exists', status: 409, callerFault: true },
  CAIRN_MP_FILE_INVALID: { message: 'a file dispatched by a management point is not a valid inbox file', status: 400, callerFault: true },
  CAIRN_SITE_SIGNING_KEY_INVALID: { message: 'the site signing key file is missing or not an Ed25519 private key', status: 500, callerFault: false },
} as const satisfies Record<string, ErrorDefinition>;

export type ErrorCode = keyof typeof ERRORS;
export const ERROR_CODES = Object.keys(ERRORS) as ErrorCode[];

/** An error with a registry code. `detail` says what exactly went wrong. */
export class CairnError extends Error {
  readonly code: ErrorCode;
  readonly detail: string | undefined;

  constructor(code: ErrorCode, detail?: string, options?: { cause?: unknown }) {
    super(detail ? `${ERRORS[code].message}: ${detail}` : ERRORS[code].message, options);
    this.name = 'CairnError';
    this.code = code;
    this.detail = detail;
  }

  get status(): number {
    return ERRORS[this.code].status;
  }

  toJSON(): { code: ErrorCode; message: string } {
    return { code: this.code, message: this.message };
  }
}

export function isCairnError(err: unknown): err is CairnError {
  return err instanceof CairnError;
}

/** Human-readable text for any thrown value, for logs and status-message reasons. */
export function describeError(err: unknown): string {
  if (err instanceof CairnError) return `${err.code}: ${err.message}`;
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    return code ? `${code}: ${err.message}` : err.message;
  }
  return String(err);
}
