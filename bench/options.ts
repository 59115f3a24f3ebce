/** Command-line options of the benchmarks: `--name N`, a positive integer, or the fallback. */
export function intOption(name: string, fallback: number, args: readonly string[] = process.argv.slice(2)): number {
  const i = args.indexOf(name);
  const v = i === -1 ? fallback : Number(args[i + 1]);
  if (!Number.isInteger(v) || v < 1) throw new Error(`${name} must be a positive integer`);
  return v;
}
