#!/bin/bash
# Two platforms on one machine, federated over EAGER, as separate `bver serve` processes with
# their own SQLite databases: how fast events of one reach the other through the node path
# (outbox read, signed batches, QUIC, verification, effectively-once apply with the cursor).
#
#   deploy/scripts/two-platforms-bench.sh                # live: subscriber up while writing
#   REPLAY=1 deploy/scripts/two-platforms-bench.sh       # replay: subscriber starts after
#   LATENCY=1 RATE=500 deploy/scripts/two-platforms-bench.sh
#       # writes through the publisher's REST API at RATE/s, then commit-to-remote-apply
#       # latency per event (origin commit time vs the subscriber's apply, ms resolution)
#
# BVER=path/to/bver (default: target/debug/bver), N writes per task, TASKS writer tasks
# (`bver debug write-burst` on the publisher's file). Uses UDP ports 17811 and 17821.
set -e
cd "$(dirname "$0")/../.."
B=${BVER:-${CARGO_TARGET_DIR:-target}/debug/bver}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT; mkdir -p $T/pubdom
N=${N:-2500}; TASKS=${TASKS:-8}
cat > $T/pubdom/bundle.toml <<'X'
[bundle]
name = "burst"
version = "1.0.0"
role = "core"
namespaces = ["burst"]
[refs.item]
namespace = "burst"
[refs.item.schema]
type = "object"
[channels.items]
repos = ["item"]
X
$B node id --data $T/a --platform burst >/dev/null; $B node id --data $T/b --platform ops >/dev/null
FA=$($B node id --data $T/a --json | python3 -c 'import json,sys;print(json.load(sys.stdin)["fingerprint"])')
FB=$($B node id --data $T/b --json | python3 -c 'import json,sys;print(json.load(sys.stdin)["fingerprint"])')
$B peer add --data $T/a --id ops --fingerprint $FB >/dev/null
G=$($B grant issue --data $T/a --sub ops --channel items)
$B peer add --data $T/b --id burst --addr 127.0.0.1:17811 --fingerprint $FA --grant $G >/dev/null
printf '[[subscriptions]]\npeer = "burst"\nchannel = "items"\nstart = "oldest"\nemit = "remote.item"\n' > $T/b.toml
$B serve --domain $T/pubdom --data $T/a --listen 127.0.0.1:0 --eager-listen 127.0.0.1:17811 > $T/a.log 2>&1 & PA=$!
if [ -n "$REPLAY" ]; then $B debug write-burst --data $T/a --count $N --tasks $TASKS --prefix pre > /dev/null; fi
$B serve --domain node/tests/fixtures/federation/ops --data $T/b --listen 127.0.0.1:0 --eager-listen 127.0.0.1:17821 --config $T/b.toml > $T/b.log 2>&1 & PB=$!
if [ -n "$REPLAY" ]; then
  start=$(date +%s.%N); TOTAL=$((N*TASKS))
  while true; do
    seq=$(python3 -c "import json;d=json.load(open('$T/b/federation.json'));print(d['subscriptions'][0]['seq'])" 2>/dev/null || echo 0)
    [ "$seq" -ge "$TOTAL" ] && break
    sleep 0.02
  done
  d=$(date +%s.%N); python3 -c "print(f'replay: {$TOTAL} events applied in {$d-$start:.2f}s (incl. node start) = {$TOTAL/($d-$start):.0f}/s')"
  kill $PA $PB; exit 0
fi
sleep 2
if [ -n "$LATENCY" ]; then
  HTTP_A=$(grep -o 'http://[0-9.:]*/v1' $T/a.log | head -1)
  TOKEN=$($B token issue --data $T/a --sub bench --scope 'refs:*:*')
  TOTAL=${N}
  python3 - "$HTTP_A" "$TOKEN" "$TOTAL" "${RATE:-500}" <<'PY'
import json, sys, threading, time, urllib.request
base, token, total, rate = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
start = time.time()
def worker(k, step):
    for i in range(k, total, step):
        due = start + i / rate
        d = due - time.time()
        if d > 0:
            time.sleep(d)
        req = urllib.request.Request(base + "/refs/burst/item", method="POST",
            data=json.dumps({"id": f"l{i}", "value": {"i": i}}).encode(),
            headers={"Authorization": "Bearer " + token, "content-type": "application/json"})
        urllib.request.urlopen(req).read()
ts = [threading.Thread(target=worker, args=(k, 16)) for k in range(16)]
[t.start() for t in ts]; [t.join() for t in ts]
print(f"wrote {total} in {time.time()-start:.2f}s")
PY
  while true; do
    seq=$(python3 -c "import json;d=json.load(open('$T/b/federation.json'));print(d['subscriptions'][0]['seq'])" 2>/dev/null || echo 0)
    [ "$seq" -ge "$TOTAL" ] && break
    sleep 0.05
  done
  kill -TERM $PA $PB; wait $PA $PB 2>/dev/null || true
  python3 - "$T" <<'PY'
import sqlite3, sys
t = sys.argv[1]
a = dict(sqlite3.connect(f"{t}/a/bver.db").execute("select seq, at from bver_events"))
lat = []
for rid, at in sqlite3.connect(f"{t}/b/bver.db").execute("select request_id, at from bver_events where trigger = 'remote.item'"):
    seq = int(rid.rsplit('/', 1)[1])
    lat.append(at - a[seq])
lat.sort()
p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
print(f"commit-to-remote-apply over {len(lat)} events: p50 {p(0.5)} ms, p99 {p(0.99)} ms, max {lat[-1]} ms")
PY
  exit 0
fi
TOTAL=$((N*TASKS))
start=$(date +%s.%N)
$B debug write-burst --data $T/a --count $N --tasks $TASKS > /dev/null
wrote=$(date +%s.%N)
while true; do
  seq=$(python3 -c "import json;d=json.load(open('$T/b/federation.json'));print(d['subscriptions'][0]['seq'])" 2>/dev/null || echo 0)
  [ "$seq" -ge "$TOTAL" ] && break
  sleep 0.05
done
done_=$(date +%s.%N)
python3 - <<P
s,w,d=$start,$wrote,$done_
print(f"events={$TOTAL} write={w-s:.2f}s write_rate={$TOTAL/(w-s):.0f}/s end_to_end={d-s:.2f}s applied_rate={$TOTAL/(d-s):.0f}/s tail_after_writes={d-w:.2f}s")
P
kill $PA $PB; wait $PA $PB 2>/dev/null || true
