/** Times are stored as ISO 8601 UTC text on both engines. */
export function nowIso(): string {
  return new Date().toISOString();
}
