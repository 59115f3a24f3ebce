/**
 * Enumerations from REFERENCE.md, as named constants so that code reads
 * `PKG_STATUS.installed` and the database holds the product's numbers.
 */
export const PKG_STATUS = {
  none: 0,
  sent: 1,
  received: 2,
  installed: 3,
  retry: 4,
  failed: 5,
  removed: 6,
  pendingRemove: 7,
  removeFailed: 8,
  retryRemove: 9,
} as const;

/** Names shown by `package status`, indexed by PkgStatus.Status. */
export const PKG_STATUS_NAMES = ['pending', 'sent', 'received', 'installed', 'retrying', 'failed', 'removed', 'removal pending', 'removal failed', 'removal retrying'] as const;

export const PKG_STATUS_TYPE = { site: 1, dp: 2 } as const;

export const JOB_STATE = {
  pending: 0,
  ready: 1,
  started: 2,
  inProgress: 3,
  pendingRestart: 4,
  complete: 5,
  failed: 6,
  canceled: 7,
  suspended: 8,
} as const;

export const ACTION = { none: 0, update: 1, add: 2, delete: 3, validate: 4, cancel: 5 } as const;

/** Job actions (spec 10): 1 distribute/update, 2 redistribute; ours, numbered as ACTION: 3 remove, 4 validate. */
export const JOB_ACTION = { distribute: 1, redistribute: 2, remove: 3, validate: 4 } as const;

/** PkgNotification.Type (spec 10). */
export const NOTIFICATION_TYPE = { update: 1, created: 2, dpAdded: 4 } as const;

export const PRIORITY = { high: 1, medium: 2, low: 3 } as const;

export const DEFAULT_DP_PRIORITY = 200;
