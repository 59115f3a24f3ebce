#!/usr/bin/env node
// The `cairn` command. The sources are TypeScript run through tsx, so the bin
// registers tsx and hands over to the CLI entry point.
import { register } from 'tsx/esm/api';
register();
await import('../src/cli/main.ts');
