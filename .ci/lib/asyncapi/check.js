#!/usr/bin/env node
// Validates an AsyncAPI document with the AsyncAPI Initiative's parser (the one its CLI and
// Studio use): the spec's JSON Schema and its Spectral rules. Fails on any error or warning;
// prints the information lines (such as a newer spec version existing) without failing.
// Usage: node .ci/lib/asyncapi/check.js docs/asyncapi.yaml
'use strict';

const fs = require('fs');
const { Parser } = require('@asyncapi/parser');
const yaml = require('js-yaml');

const SEVERITY = ['error', 'warning', 'information', 'hint'];

async function main(path) {
  const text = fs.readFileSync(path, 'utf8');
  // The parser's YAML reader keeps the last of two equal keys without a word; readers that
  // code generators use refuse the document, or keep the first.
  yaml.load(text, { filename: path });
  const { document, diagnostics } = await new Parser().parse(text, { source: path });
  let failed = document === undefined;
  for (const d of diagnostics) {
    const where = d.range ? `${d.range.start.line + 1}:${d.range.start.character + 1}` : '?';
    const severity = SEVERITY[d.severity] ?? String(d.severity);
    console.log(`${path}:${where} ${severity} ${d.code} ${d.message} (at ${d.path.join('.')})`);
    if (d.severity <= 1) failed = true;
  }
  if (failed) {
    console.error(`${path} is not a valid AsyncAPI document (errors or warnings above)`);
    process.exit(1);
  }
  console.log(`${path}: valid AsyncAPI ${document.version()}, ${document.channels().length} channels, ${document.allMessages().length} messages`);
}

main(process.argv[2] || 'docs/asyncapi.yaml').catch((e) => {
  console.error(e);
  process.exit(1);
});
