// Copies cbor-x's browser ES modules, unmodified, with its licence, into vendor/cbor-x/, so that a
// page can load the client with an import map and no npm (see README.md). Run: npm run vendor.

import { copyFileSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const from = join(root, 'node_modules', 'cbor-x');
const to = join(root, 'vendor', 'cbor-x');
// index.js is the package's browser ES module entry ("default" export condition); it imports the
// other three. package.json records the version; LICENSE must travel with the code.
const FILES = ['index.js', 'encode.js', 'decode.js', 'iterators.js', 'LICENSE', 'package.json'];

rmSync(to, { recursive: true, force: true });
mkdirSync(to, { recursive: true });
for (const f of FILES) copyFileSync(join(from, f), join(to, f));
const { version } = JSON.parse(readFileSync(join(from, 'package.json'), 'utf8'));
console.log(`vendored cbor-x ${version} into vendor/cbor-x/: ${FILES.join(', ')}`);
