/** Resolves on the first SIGINT or SIGTERM, for foreground roles (`cairn dp`, `cairn upstream`) that then close and let the CLI decide the exit code. */
export function untilStopSignal(): Promise<void> {
  return new Promise<void>((resolve) => {
    const stop = (): void => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolve();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}
