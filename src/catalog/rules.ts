/**
 * The declarative rules an update carries (*is applicable*, *is installed*)
 * and their evaluation over one machine: its facts, its OS, and its installed
 * Debian packages (ARCHITECTURE.md, "Software updates"). Rules are data, so
 * that the site can store and serve them and the client can evaluate them
 * without running anything the catalog sent.
 *
 * Evaluation is pure: no I/O, no clock, the same answer for the same input.
 * It must never throw on a machine it does not understand: a missing fact,
 * OS field or malformed installed version makes that check false (and so a
 * `not` around it true), which is documented in docs/catalog.md.
 * Rules arrive here already validated (`catalog-input.ts`).
 */
import { compareParsedVersions, operatorHolds, parseDebianVersion } from './dpkg-version.ts';
import type { DebianVersion, VersionOperator } from './dpkg-version.ts';

/** A version test: `<installed or fact version> <op> <value>`, in dpkg's ordering. */
export interface VersionTest {
  readonly op: VersionOperator;
  readonly value: string;
}

export const RULE_KINDS = ['all', 'any', 'not', 'package', 'fact', 'os'] as const;
export type RuleKind = (typeof RULE_KINDS)[number];

export const FACT_OPERATORS = ['equals', 'in', 'lt', 'le', 'eq', 'ne', 'ge', 'gt'] as const;
export type FactOperator = (typeof FACT_OPERATORS)[number];

export type Rule =
  | { readonly kind: 'all'; readonly rules: readonly Rule[] }
  | { readonly kind: 'any'; readonly rules: readonly Rule[] }
  | { readonly kind: 'not'; readonly rule: Rule }
  /**
   * A Debian package check. `installed: true` holds when some installed
   * package of that name (and architecture, when given) satisfies `version`
   * (when given); `installed: false` holds when none of that name and
   * architecture is installed. As in dpkg and apt, `all` and the machine's
   * native architecture (its `architecture` fact) are one: a package that
   * moved between `Architecture: all` and `any` is still the same package.
   */
  | { readonly kind: 'package'; readonly name: string; readonly arch?: string; readonly installed: boolean; readonly version?: VersionTest }
  /** A named fact of the machine: equal to a value, one of values, or a version comparison (dpkg ordering). */
  | { readonly kind: 'fact'; readonly name: string; readonly op: 'equals'; readonly value: string }
  | { readonly kind: 'fact'; readonly name: string; readonly op: 'in'; readonly values: readonly string[] }
  | { readonly kind: 'fact'; readonly name: string; readonly op: VersionOperator; readonly value: string }
  /** The OS family (`debian`, `ubuntu`, … as in os-release `ID`), and optionally its version. */
  | { readonly kind: 'os'; readonly family: string; readonly version?: VersionTest };

export interface InstalledPackage {
  readonly name: string;
  readonly arch: string;
  readonly version: string;
}

/** What a rule is evaluated against: a real machine's inventory or a simulated machine's facts file. */
export interface Machine {
  readonly os?: { readonly family: string; readonly version: string };
  readonly facts?: Readonly<Record<string, string>>;
  readonly packages?: readonly InstalledPackage[];
}

/** A machine prepared for many evaluations: installed packages indexed by name, versions parsed once. */
export interface PreparedMachine {
  readonly os: { readonly family: string; readonly version: string } | undefined;
  readonly facts: Readonly<Record<string, string>>;
  readonly packages: ReadonlyMap<string, readonly { readonly arch: string; readonly version: DebianVersion | undefined }[]>;
  /** dpkg's native architecture (the `architecture` fact), which `all` packages count as. */
  readonly nativeArch: string | undefined;
}

/** Whether an installed package of architecture `have` answers a rule about `want` (undefined: any). */
export function archMatches(want: string | undefined, have: string, native: string | undefined): boolean {
  if (want === undefined || want === have) return true;
  return native !== undefined && ((want === 'all' && have === native) || (want === native && have === 'all'));
}

function tryParse(v: string): DebianVersion | undefined {
  try {
    return parseDebianVersion(v);
  } catch {
    return undefined;
  }
}

export function prepareMachine(m: Machine): PreparedMachine {
  const packages = new Map<string, { arch: string; version: DebianVersion | undefined }[]>();
  for (const p of m.packages ?? []) {
    const list = packages.get(p.name) ?? [];
    list.push({ arch: p.arch, version: tryParse(p.version) });
    packages.set(p.name, list);
  }
  const facts = m.facts ?? {};
  const native = Object.prototype.hasOwnProperty.call(facts, 'architecture') ? facts.architecture : undefined;
  return { os: m.os, facts, packages, nativeArch: native && native !== 'all' ? native : undefined };
}

function versionHolds(actual: string | DebianVersion | undefined, test: VersionTest): boolean {
  const a = typeof actual === 'string' ? tryParse(actual) : actual;
  const b = tryParse(test.value);
  if (!a || !b) return false;
  return operatorHolds(compareParsedVersions(a, b), test.op);
}

/** Evaluates `rule` on `machine`. Pure; prepare the machine once when evaluating many rules. */
export function evaluateRule(rule: Rule, machine: Machine | PreparedMachine): boolean {
  const m = machine.packages instanceof Map ? (machine as PreparedMachine) : prepareMachine(machine as Machine);
  return evaluate(rule, m);
}

function evaluate(rule: Rule, m: PreparedMachine): boolean {
  switch (rule.kind) {
    case 'all':
      return rule.rules.every((r) => evaluate(r, m));
    case 'any':
      return rule.rules.some((r) => evaluate(r, m));
    case 'not':
      return !evaluate(rule.rule, m);
    case 'package': {
      const candidates = (m.packages.get(rule.name) ?? []).filter((p) => archMatches(rule.arch, p.arch, m.nativeArch));
      if (!rule.installed) return candidates.length === 0;
      const test = rule.version;
      return candidates.some((p) => (test ? versionHolds(p.version, test) : true));
    }
    case 'fact': {
      const actual = Object.prototype.hasOwnProperty.call(m.facts, rule.name) ? m.facts[rule.name] : undefined;
      if (actual === undefined) return false;
      if (rule.op === 'equals') return actual === rule.value;
      if (rule.op === 'in') return rule.values.includes(actual);
      return versionHolds(actual, { op: rule.op, value: rule.value });
    }
    case 'os': {
      if (!m.os || m.os.family !== rule.family) return false;
      return rule.version ? versionHolds(m.os.version, rule.version) : true;
    }
  }
}

/** A rule compiled for many machines: version values parsed once, the same answer as `evaluateRule`. */
export type CompiledRule = (m: PreparedMachine) => boolean;

/**
 * Compiles `rule` into a function of a prepared machine. Catalogs are
 * evaluated against thousands of machines, so the version values in rules
 * are parsed here once instead of at every evaluation. It answers exactly as
 * `evaluateRule` does (`test/unit/scanner.test.ts` checks both on the same
 * rules and machines), including "a version that does not parse is false".
 */
export function compileRule(rule: Rule): CompiledRule {
  switch (rule.kind) {
    case 'all': {
      const parts = rule.rules.map(compileRule);
      return (m) => parts.every((p) => p(m));
    }
    case 'any': {
      const parts = rule.rules.map(compileRule);
      return (m) => parts.some((p) => p(m));
    }
    case 'not': {
      const inner = compileRule(rule.rule);
      return (m) => !inner(m);
    }
    case 'package': {
      const { name, arch, installed } = rule;
      if (!installed) return (m) => !(m.packages.get(name) ?? []).some((p) => archMatches(arch, p.arch, m.nativeArch));
      const test = rule.version;
      if (!test) return (m) => (m.packages.get(name) ?? []).some((p) => archMatches(arch, p.arch, m.nativeArch));
      const want = tryParse(test.value);
      const op = test.op;
      if (!want) return () => false;
      return (m) => (m.packages.get(name) ?? []).some((p) => archMatches(arch, p.arch, m.nativeArch) && p.version !== undefined && operatorHolds(compareParsedVersions(p.version, want), op));
    }
    case 'fact': {
      const name = rule.name;
      const get = (m: PreparedMachine): string | undefined => (Object.prototype.hasOwnProperty.call(m.facts, name) ? m.facts[name] : undefined);
      if (rule.op === 'equals') {
        const value = rule.value;
        return (m) => get(m) === value;
      }
      if (rule.op === 'in') {
        const values = new Set(rule.values);
        return (m) => {
          const v = get(m);
          return v !== undefined && values.has(v);
        };
      }
      const want = tryParse(rule.value);
      const op = rule.op;
      if (!want) return () => false;
      return (m) => {
        const v = get(m);
        const a = v === undefined ? undefined : tryParse(v);
        return a !== undefined && operatorHolds(compareParsedVersions(a, want), op);
      };
    }
    case 'os': {
      const { family, version } = rule;
      if (!version) return (m) => m.os !== undefined && m.os.family === family;
      const want = tryParse(version.value);
      const op = version.op;
      if (!want) return () => false;
      return (m) => {
        if (!m.os || m.os.family !== family) return false;
        const a = tryParse(m.os.version);
        return a !== undefined && operatorHolds(compareParsedVersions(a, want), op);
      };
    }
  }
}

/**
 * Package names of which at least one must be installed for `rule` to hold,
 * or undefined when the rule can hold with none of them (a `not`, a fact, an
 * OS check, `installed: false`). The scanner indexes updates by these names
 * so that a machine evaluates only the updates that name its packages.
 */
export function requiredPackages(rule: Rule): ReadonlySet<string> | undefined {
  switch (rule.kind) {
    case 'package':
      return rule.installed ? new Set([rule.name]) : undefined;
    case 'all': {
      // Every part must hold: any part's requirement is the whole rule's; the smallest is the sharpest.
      let best: ReadonlySet<string> | undefined;
      for (const r of rule.rules) {
        const s = requiredPackages(r);
        if (s && (!best || s.size < best.size)) best = s;
      }
      return best;
    }
    case 'any': {
      // Some part must hold: the union of the parts' requirements, when every part has one (empty any never holds).
      const out = new Set<string>();
      for (const r of rule.rules) {
        const s = requiredPackages(r);
        if (!s) return undefined;
        for (const n of s) out.add(n);
      }
      return out;
    }
    case 'not':
    case 'fact':
    case 'os':
      return undefined;
  }
}
