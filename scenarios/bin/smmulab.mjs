#!/usr/bin/env node
// The smmulab CLI entry point: registers the TypeScript loader, then runs scenarios/cli.ts.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../cli.ts');
process.exitCode = await main(process.argv.slice(2));
