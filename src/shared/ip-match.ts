/**
 * IPv4 subnets and ranges, and name patterns, as collection rules and
 * boundaries use them. Parsed at the edge (the admin API) into typed values;
 * matching then trusts them. IPv6 addresses never match an IPv4 rule.
 */

/** An IPv4 address as an unsigned 32-bit number, or undefined when it is not dotted-quad IPv4. */
export function ipv4ToNumber(text: string): number | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text.trim().replace(/^::ffff:/i, ''));
  if (!m) return undefined;
  const parts = m.slice(1).map(Number);
  if (parts.some((p) => p > 255)) return undefined;
  return ((parts[0]! << 24) >>> 0) + (parts[1]! << 16) + (parts[2]! << 8) + parts[3]!;
}

export interface Ipv4Span {
  readonly first: number;
  readonly last: number;
}

/** `10.1.0.0/16` → the span; undefined when malformed. Host bits are ignored (`10.1.2.3/16` is `10.1.0.0/16`). */
export function parseSubnet(text: string): Ipv4Span | undefined {
  const m = /^([^/]+)\/(\d{1,2})$/.exec(text.trim());
  if (!m) return undefined;
  const base = ipv4ToNumber(m[1]!);
  const bits = Number(m[2]);
  if (base === undefined || bits > 32) return undefined;
  const size = 2 ** (32 - bits);
  const first = Math.floor(base / size) * size;
  return { first, last: first + size - 1 };
}

/** `10.0.0.1-10.0.0.99` → the span; undefined when malformed or backwards. */
export function parseRange(text: string): Ipv4Span | undefined {
  const m = /^([^-\s]+)\s*-\s*([^-\s]+)$/.exec(text.trim());
  if (!m) return undefined;
  const first = ipv4ToNumber(m[1]!);
  const last = ipv4ToNumber(m[2]!);
  if (first === undefined || last === undefined || last < first) return undefined;
  return { first, last };
}

export function spanHas(span: Ipv4Span, addresses: readonly string[]): boolean {
  return addresses.some((a) => {
    const n = ipv4ToNumber(a);
    return n !== undefined && n >= span.first && n <= span.last;
  });
}

/** A name glob (`*` any run, `?` one character), case-insensitive, as a RegExp. */
export function globToRegExp(glob: string): RegExp {
  const body = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${body}$`, 'i');
}
