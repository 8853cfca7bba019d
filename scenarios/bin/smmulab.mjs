#!/usr/bin/env node
// The smmulab CLI entry point: registers the TypeScript loader, then runs scenarios/cli/main.ts.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../cli/main.ts');
process.exitCode = await main(process.argv.slice(2));
