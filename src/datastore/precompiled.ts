/**
 * A query compiled once and run many times with new parameter values.
 *
 * Kysely builds and compiles a query's SQL anew on every call: about a third
 * of the management point's SQL time per request (docs/performance.md,
 * "Management point"). For the few queries an MP runs on every request, the
 * builder runs once with placeholder values; each call then runs the same
 * SQL text with the real values in the placeholders' positions, through the
 * same `executeQuery` (so the engine, its prepared-statement cache and
 * plugins are the same as for any query).
 */
import type { Compilable, CompiledQuery, Kysely } from 'kysely';
import type { Database } from './schema.ts';

/** A placeholder value for the builder; each stands for one argument, by position. */
export type Placeholder = never;

/**
 * `build` receives one placeholder per parameter it declares and must use
 * each exactly once as a plain value (in a `where`, a `values`, …); the
 * compiled parameters are then substituted by position. The returned
 * function takes the values in the same order.
 */
export function precompile<R>(db: Kysely<Database>, build: (...args: Placeholder[]) => Compilable<R>): (...args: readonly unknown[]) => Promise<R[]> {
  const marks = Array.from({ length: build.length }, (_, i) => `\u0000cairn-placeholder-${i}\u0000`);
  const compiled = build(...(marks as never[])).compile();
  const positions = compiled.parameters.map((p) => marks.indexOf(p as string));
  if (marks.some((_, i) => positions.filter((x) => x === i).length !== 1)) throw new Error(`precompile: every placeholder must appear exactly once in ${compiled.sql}`);
  const fixed = compiled.parameters;
  return async (...args: readonly unknown[]): Promise<R[]> => {
    if (args.length !== marks.length) throw new Error(`precompile: ${marks.length} values expected, got ${args.length}`);
    const query: CompiledQuery<R> = { ...compiled, parameters: positions.map((at, i) => (at < 0 ? fixed[i] : args[at])) };
    return (await db.executeQuery(query)).rows;
  };
}
