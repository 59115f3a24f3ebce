/** CPU figures of the processes a benchmark starts, read from /proc (Linux). */
import fsp from 'node:fs/promises';

const fmt = (s: number): string => s.toFixed(2);

/** User and system CPU seconds a process (all its threads) has used so far. */
export async function cpuSeconds(pid: number | undefined): Promise<{ user: number; sys: number }> {
  if (pid === undefined) return { user: 0, sys: 0 };
  const stat = await fsp.readFile(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name, which is in parentheses and may hold spaces: utime and stime are the 12th and 13th.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const tick = 100; // sysconf(_SC_CLK_TCK) on Linux
  return { user: Number(fields[11]) / tick, sys: Number(fields[12]) / tick };
}

/** Waits until a process has used no CPU for 200 ms (two readings of /proc 200 ms apart agree), 30 s at most. */
export async function untilIdle(pid: number | undefined): Promise<void> {
  const deadline = Date.now() + 30_000;
  let last = await cpuSeconds(pid);
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 200));
    const now = await cpuSeconds(pid);
    if (now.user + now.sys === last.user + last.sys) return;
    last = now;
  }
}

/** "1.23 s (user 0.80, system 0.43)": what a process used between two readings. */
export const cpuSince = (a: { user: number; sys: number }, b: { user: number; sys: number }): string =>
  `${fmt(b.user + b.sys - a.user - a.sys)} s (user ${fmt(b.user - a.user)}, system ${fmt(b.sys - a.sys)})`;
