#!/usr/bin/env node
// Thin launcher so `npx opendrim` works without a build step: tsx runs the TypeScript sources directly.
import { register } from 'tsx/esm/api';
import { fileURLToPath, pathToFileURL } from 'node:url';
import path from 'node:path';
register();
const here = path.dirname(fileURLToPath(import.meta.url));
process.env.OPENDRIM_CLI = '1';
await import(pathToFileURL(path.join(here, '..', 'src', 'cli.ts')).href);
