#!/usr/bin/env bash
# bench/run.sh -- ferroswan throughput benchmark (run as root: sudo bench/run.sh)
#
# One run, on one namespace topology of its own:
#
#   fsb-hostA 192.168.1.10 -- 192.168.1.1 fsb-gwA 100.1.1.1 ==veth== 200.2.2.2 fsb-gwB 192.168.2.1 -- 192.168.2.10 fsb-hostB
#
# measures, hostA -> hostB, these cases (CASES):
#   plain   no tunnel, the gateways route the private nets in clear (baseline)
#   ss-ss   strongSwan <-> strongSwan   (charon 5.9, kernel-libipsec = userspace ESP over TUN)
#   fs-fs   ferroswan  <-> ferroswan    (release build, default config: `encap = "auto"`, so
#           the two ferroswan peers negotiate ESP in UDP 4500 for UDP GSO/GRO)
#   fs-fs-raw  ferroswan <-> ferroswan with `encap = false`: raw ESP (IP protocol 50), as
#           with any peer that is not a ferroswan when there is no NAT
#   fs-ss   ferroswan (gwA, initiator) <-> strongSwan (gwB)
#   fs-fs-encap  ferroswan <-> ferroswan with `encap = true` (forced UDP; opt-in case)
# for each ESP suite (SUITES), IKE proposal $IKE_PROPOSAL. Per case and suite:
#   - tunnel cases first prove on gwA's outside link (tcpdump + tshark, during a ping and a 1 s
#     iperf3) that the traffic is ESP (raw or UDP 4500) and that no 192.168.x.x packet crosses
#     in clear; otherwise the row is INVALID and not measured;
#   - RTT at idle (ping -c 50 -i 0.05: min, avg, median), iperf3 TCP 1 stream (with a ping running: RTT under
#     load; and each gateway process's CPU = utime+stime from /proc/PID/stat, % of one core),
#     TCP 4 streams (-P 4), UDP packets/s at each payload size of UDP_SIZES (-u -b 0 -l SIZE).
# Output: raw figures in bench/results/<timestamp>.json (or $RESULTS), a table on stdout
# (per suite and metric: each implementation, ratios ferroswan/strongSwan and
# ferroswan/plain) and a final "SUMMARY ..." line. Rows that cannot run (e.g. the daemon
# does not establish a tunnel yet) are recorded as FAIL and the run goes on.
#
# Env knobs:
#   DURATION=8         seconds per iperf3 run
#   SUITES="aes256gcm16 chacha20poly1305 aes256-sha256"   ESP proposals (strongSwan syntax)
#   CASES="plain ss-ss fs-fs fs-fs-raw fs-ss"              subset/order of cases
#   IKE_PROPOSAL=aes256gcm16-prfsha256-x25519
#   UDP_SIZES="64 1372 1400"  UDP payload sizes (1372 B = a full-size 1400 B packet; 1400 B payload = 1428 B IP packets, more than
#                        the 1400 B tunnel MTU: hostA fragments them in two)
#   TUN_MTU=1400       tunnel MTU of both implementations
#   WORKERS=auto       ferroswan [daemon] workers (TUN queues / TUN reader threads): auto or N
#   SMOKE=1            CI smoke mode: first suite only, DURATION=2, no 4-stream/UDP runs; exit
#                      non-zero if a ferroswan row produced no TCP number or saw no ESP
#   RESULTS=path       where to write the JSON
#   FERROSWAN_BIN=path use this binary (else `cargo build --release` first, unless NO_BUILD=1)
#   NO_INSTALL=1       do not run scripts/install-deps.sh
#   KEEP=1             keep the run directory /tmp/fsbench/<run id> (logs, pcaps, iperf JSON)
# Exit status: 0 (even if the figures are poor: this is a benchmark, not a test), 1 if any
# tunnel leaked cleartext (or, with SMOKE=1, if a ferroswan row failed), 2 on setup errors.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$ROOT/bench
export PATH="$HOME/.cargo/bin:$PATH"

# ---------------------------------------------------------------- knobs
SMOKE=${SMOKE:-}
SUITES=${SUITES:-"aes256gcm16 chacha20poly1305 aes256-sha256"}
CASES=${CASES:-"plain ss-ss fs-fs fs-fs-raw fs-ss"}
IKE_PROPOSAL=${IKE_PROPOSAL:-aes256gcm16-prfsha256-x25519}
UDP_SIZES=${UDP_SIZES:-"64 1372 1400"}
TUN_MTU=${TUN_MTU:-1400}
WORKERS=${WORKERS:-auto}
case $WORKERS in
  auto) WORKERS_TOML='"auto"' ;;
  *[!0-9]*|'') echo "WORKERS must be auto or a number, not '$WORKERS'" >&2; exit 2 ;;
  *) WORKERS_TOML=$WORKERS ;;
esac
if [ -n "$SMOKE" ]; then
  DURATION=${DURATION:-2}
  SUITES=${SUITES%% *}          # first suite only
else
  DURATION=${DURATION:-8}
fi
RUN_ID=$(date +%Y%m%d-%H%M%S)
RESULTS=${RESULTS:-$BENCH/results/$RUN_ID.json}
FSB_ROOT=/tmp/fsbench
RUN=$FSB_ROOT/$RUN_ID
BIN=${FERROSWAN_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/ferroswan}
CHARON=${CHARON:-/usr/lib/ipsec/charon}
SWANCTL=${SWANCTL:-/usr/sbin/swanctl}
PSK="fsbench-$RANDOM$RANDOM-psk-0123456789abcdef"

# ---------------------------------------------------------------- topology constants
# shellcheck source=scripts/lib/topo.sh
. "$ROOT/scripts/lib/topo.sh"   # nsx, topo_vars, topo_create, topo_delete
topo_vars fsb
PORT=5201

log()  { echo "[bench $(date +%H:%M:%S)] $*" >&2; }
die()  { log "ERROR: $*"; exit 2; }
has_word() { case " $1 " in *" $2 "*) return 0 ;; esac; return 1; }

[ "$(id -u)" -eq 0 ] || { echo "bench/run.sh: needs root (network namespaces): sudo $0" >&2; exit 2; }

# ---------------------------------------------------------------- result records
# Everything measured goes to two TSV files in the run dir; bench/report.py turns them into
# the JSON and the table.  rows.tsv: case suite status note; metrics.tsv: case suite key value.
put()    { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "${4:-null}" >> "$RUN/metrics.tsv"; }
row()    { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "${4:-}" >> "$RUN/rows.tsv"; log "row $1 $2: $3 ${4:-}"; }
isnum()  { [[ "${1:-}" =~ ^-?[0-9]+(\.[0-9]+)?$ ]]; }

# ---------------------------------------------------------------- process bookkeeping
PIDS=()            # every background process this script started (killed on exit)
declare -A GW_PID  # side (A|B) -> PID of the gateway daemon running there
declare -A GW_IMPL # side -> ss|fs
declare -A GW_DIR  # side -> instance dir

stop_pid() {  # PID: SIGTERM, wait up to 5 s, then SIGKILL
  local p=$1
  kill -0 "$p" 2>/dev/null || { wait "$p" 2>/dev/null || true; return 0; }
  kill -TERM "$p" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  set +e
  trap - EXIT
  for side in A B; do [ -n "${GW_PID[$side]:-}" ] && stop_pid "${GW_PID[$side]}"; done
  for ((i=${#PIDS[@]}-1; i>=0; i--)); do stop_pid "${PIDS[$i]}"; done
  # Backstop: anything still inside our own namespaces (created and locked by this run, so
  # only descendants of processes started here, e.g. a charon updown child) -- by PID.
  for ns in $ALL_NS; do
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null
  done
  if [ -d "${RUN:-}" ] && [ -z "${KEEP:-}" ]; then rm -rf "$RUN"; fi
  [ -n "${KEEP:-}" ] && [ -d "${RUN:-}" ] && log "run directory kept: $RUN"
  exit "$rc"
}

# ---------------------------------------------------------------- setup: lock, deps, build
mkdir -p "$FSB_ROOT"
exec 9>"$FSB_ROOT/.lock"
flock -n 9 || die "another bench/run.sh is running (lock $FSB_ROOT/.lock)"
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$RUN" "$(dirname "$RESULTS")"
: > "$RUN/rows.tsv"; : > "$RUN/metrics.tsv"
log "run $RUN_ID: cases [$CASES] suites [$SUITES] duration ${DURATION}s${SMOKE:+ SMOKE} (state in $RUN)"

if [ -z "${NO_INSTALL:-}" ]; then
  "$ROOT/scripts/install-deps.sh" >&2 || log "WARNING: scripts/install-deps.sh failed; checking tools"
fi
for t in ip iperf3 tcpdump tshark ping envsubst python3 flock unshare "$CHARON" "$SWANCTL"; do
  command -v "$t" >/dev/null 2>&1 || die "missing tool: $t (run scripts/install-deps.sh)"
done

NEED_FS=; for c in $CASES; do case $c in fs-*) NEED_FS=1 ;; esac; done
BIN_NOTE=
if [ -n "$NEED_FS" ] && [ -z "${FERROSWAN_BIN:-}" ] && [ -z "${NO_BUILD:-}" ]; then
  log "cargo build --release -p ferroswan"
  if ! (cd "$ROOT" && cargo build --release -p ferroswan) > "$RUN/build.log" 2>&1; then
    tail -20 "$RUN/build.log" >&2; BIN_NOTE="cargo build failed"
    cp "$RUN/build.log" "$FSB_ROOT/build-$RUN_ID.log" 2>/dev/null || true
  fi
fi
if [ -n "$NEED_FS" ] && [ -z "$BIN_NOTE" ] && [ ! -x "$BIN" ]; then BIN_NOTE="no binary $BIN"; fi
[ -n "$BIN_NOTE" ] && log "ferroswan rows will FAIL: $BIN_NOTE"

# ---------------------------------------------------------------- topology
topo_up() {
  # Leftovers of a killed earlier run (we hold the lock, so no other run owns them): stop
  # what still runs inside them, by PID, and delete them.
  local p
  for ns in $ALL_NS; do
    [ -e "/run/netns/$ns" ] || continue
    log "removing leftover namespace $ns"
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
    ip netns del "$ns" || true
  done
  topo_create
}
# clear: the gateways route the private nets to each other in clear (plain baseline).
routes_clear() {
  nsx $NS_GA ip route replace 192.168.2.0/24 via $GB_OUT dev ga-out
  nsx $NS_GB ip route replace 192.168.1.0/24 via $GA_OUT dev gb-out
}
# noclear: no such routes, so hostA reaches hostB only through a tunnel (no silent fallback).
routes_noclear() {
  nsx $NS_GA ip route del 192.168.2.0/24 2>/dev/null || true
  nsx $NS_GB ip route del 192.168.1.0/24 2>/dev/null || true
}
reachable() { nsx $NS_HA ping -c 1 -W 1 $HB_IP >/dev/null 2>&1; }

# ---------------------------------------------------------------- gateways
# gw_start IMPL SIDE SUITE DIR -- start strongSwan (ss) or ferroswan (fs) on gateway SIDE (A|B)
gw_start() {
  local impl=$1 side=$2 suite=$3 dir=$4 ns local_addr remote_addr local_id remote_id local_ts remote_ts pid
  if [ "$side" = A ]; then ns=$NS_GA; local_addr=$GA_OUT; remote_addr=$GB_OUT; local_id=gw-a.example; remote_id=gw-b.example; local_ts=192.168.1.0/24; remote_ts=192.168.2.0/24
  else                     ns=$NS_GB; local_addr=$GB_OUT; remote_addr=$GA_OUT; local_id=gw-b.example; remote_id=gw-a.example; local_ts=192.168.2.0/24; remote_ts=192.168.1.0/24; fi
  mkdir -p "$dir"
  GW_IMPL[$side]=$impl; GW_DIR[$side]=$dir
  export INST_DIR=$dir TUN_MTU IKE_PROPOSAL ESP_PROPOSAL=$suite PSK
  if [ "$impl" = ss ]; then
    # Private charon like /work/shared/interop/ss-start.sh: own mount namespace with $dir/run
    # over /run (charon's pid file path is hard-coded), own strongswan.conf, own vici socket.
    mkdir -p "$dir/run" "$dir/swanctl"/{conf.d,x509,x509ca,private,pubkey}
    envsubst '${INST_DIR} ${TUN_MTU}' < "$BENCH/conf/strongswan.conf.tmpl" > "$dir/strongswan.conf"
    envsubst '${IKE_PROPOSAL} ${ESP_PROPOSAL} ${PSK}' < "$BENCH/conf/swanctl-gw$side.conf.tmpl" > "$dir/swanctl/swanctl.conf"
    ip netns exec "$ns" unshare -m --propagation private \
      sh -c 'mount --bind "$1/run" /run && exec env STRONGSWAN_CONF="$1/strongswan.conf" "$2"' \
      sh "$dir" "$CHARON" > "$dir/stdout.log" 2>&1 < /dev/null &
    pid=$!; GW_PID[$side]=$pid       # ip, unshare, sh and env all exec: $! is charon itself
    for _ in $(seq 1 100); do
      [ -S "$dir/run/charon.vici" ] && break
      kill -0 "$pid" 2>/dev/null || { log "charon gw$side died"; tail -5 "$dir/charon.log" >&2 2>/dev/null; return 1; }
      sleep 0.1
    done
    [ -S "$dir/run/charon.vici" ] || { log "charon gw$side: no vici socket"; return 1; }
    [ -s "$dir/run/charon.pid" ] && GW_PID[$side]=$(cat "$dir/run/charon.pid")
    swanctl_i "$side" --load-all --noprompt > "$dir/load.log" 2>&1 || { log "swanctl --load-all gw$side failed"; cat "$dir/load.log" >&2; return 1; }
  else
    [ -z "$BIN_NOTE" ] || { log "$BIN_NOTE"; return 1; }
    export ENCAP=${ENCAP:-'"auto"'}
    export WORKERS_TOML CONTROL_SOCKET=$dir/ctl.sock LOCAL_ADDR=$local_addr REMOTE_ADDR=$remote_addr \
           LOCAL_ID=$local_id REMOTE_ID=$remote_id LOCAL_TS=$local_ts REMOTE_TS=$remote_ts
    envsubst < "$BENCH/conf/ferroswan.toml.tmpl" > "$dir/ferroswan.toml"
    ip netns exec "$ns" "$BIN" run --config "$dir/ferroswan.toml" --control "$dir/ctl.sock" \
      > "$dir/ferroswan.log" 2>&1 < /dev/null &
    pid=$!; GW_PID[$side]=$pid
    for _ in $(seq 1 100); do
      [ -S "$dir/ctl.sock" ] && break
      kill -0 "$pid" 2>/dev/null || { log "ferroswan gw$side exited: $(tail -3 "$dir/ferroswan.log" | tr '\n' ' ')"; return 1; }
      sleep 0.1
    done
    [ -S "$dir/ctl.sock" ] || { log "ferroswan gw$side: no control socket"; return 1; }
  fi
  log "$impl on gw$side up (pid ${GW_PID[$side]})"
}
swanctl_i() { local side=$1; shift; SWANCTL_DIR="${GW_DIR[$side]}/swanctl" "$SWANCTL" "$@" --uri "unix://${GW_DIR[$side]}/run/charon.vici"; }
fsctl()     { local side=$1; shift; timeout 40 "$BIN" --control "${GW_DIR[$side]}/ctl.sock" "$@"; }

gw_stop() {  # SIDE
  local side=$1 ns=$NS_GB
  [ "$side" = A ] && ns=$NS_GA
  [ -n "${GW_PID[$side]:-}" ] || return 0
  stop_pid "${GW_PID[$side]}"
  unset "GW_PID[$side]"
  # ferroswan's fail-closed nftables table outlives it on purpose; the next case may be a
  # strongSwan gateway in the same namespace (its own TUN), so lift it.
  if [ "${GW_IMPL[$side]:-}" = fs ]; then
    ip netns exec "$ns" "$BIN" unblock --config "${GW_DIR[$side]}/ferroswan.toml" > /dev/null 2>&1 || true
  fi
}

gw_initiate() {  # bring the tunnel up from gwA; output in $1
  if [ "${GW_IMPL[A]}" = ss ]; then
    timeout 40 env SWANCTL_DIR="${GW_DIR[A]}/swanctl" "$SWANCTL" --initiate --ike s2s --child net --timeout 20 \
      --uri "unix://${GW_DIR[A]}/run/charon.vici" > "$1" 2>&1
  else
    fsctl A up s2s --timeout 20 > "$1" 2>&1
  fi
}

# ---------------------------------------------------------------- measurements
# Every helper prints "null" for a figure it could not get and never aborts the run.
cpu_ticks() {  # PID... -> utime+stime (clock ticks) summed; all threads of a process are in /proc/PID/stat
  local sum=0 p t
  for p in "$@"; do
    t=$(awk '{print $14+$15}' "/proc/$p/stat" 2>/dev/null) || t=
    isnum "$t" && sum=$((sum + t))
  done
  echo "$sum"
}
host_cpu() { awk '/^cpu /{print $2+$3+$4+$6+$7+$8+$9, $5+$6}' /proc/stat; }  # busy idle (ticks, all cores)

ping_stats() {  # COUNT INTERVAL OUTFILE -> "min avg median" (ms)
  nsx $NS_HA ping -n -c "$1" -i "$2" -W 1 $HB_IP > "$3" 2>&1 || true
  local med
  med=$(sed -n 's/.* time=\([0-9.]*\) ms.*/\1/p' "$3" | sort -g |
        awk '{v[NR]=$1} END {if (NR == 0) print "null"; else if (NR % 2) print v[(NR+1)/2]; else printf "%.3f\n", (v[NR/2]+v[NR/2+1])/2}')
  awk -F'[/ =]+' -v med="$med" '/^(rtt|round-trip)/ {print $6, $7, med; found=1} END {if (!found) print "null null null"}' "$3"
}

iperf_client() {  # JSONFILE SECONDS ARGS... -- one-shot server on hostB, client on hostA (bounded)
  # (ARGS may hold "-n BYTES" with SECONDS as the upper bound; stderr goes to JSONFILE.err)
  local json=$1 secs=$2 t=(-t "$2"); shift 2
  case " $* " in *" -n "*) t=() ;; esac
  ip netns exec $NS_HB iperf3 -s -1 -p $PORT > /dev/null 2>&1 &
  local spid=$!; PIDS+=("$spid")
  for _ in $(seq 1 50); do nsx $NS_HB ss -ltn 2>/dev/null | grep -q ":$PORT " && break; sleep 0.1; done
  timeout -k 2 $((secs + 20)) ip netns exec $NS_HA iperf3 -c $HB_IP -p $PORT --connect-timeout 3000 \
    "${t[@]}" -J "$@" > "$json" 2> "$json.err" || true
  for _ in $(seq 1 30); do kill -0 "$spid" 2>/dev/null || break; sleep 0.1; done
  stop_pid "$spid"
}
iperf_parse() {  # JSONFILE tcp|udp -> "mbps retransmits" or "pps loss_pct" (receiver side)
  python3 - "$1" "$2" <<'PY'
import json, sys
try:
    e = json.load(open(sys.argv[1]))["end"]
    if sys.argv[2] == "tcp":
        print("%.1f %s" % (e["sum_received"]["bits_per_second"] / 1e6, e["sum_sent"].get("retransmits", "null")))
    else:
        # UDP: received = the server's count (its "packets" is the highest sequence number seen,
        # so subtract its gap count); loss = 1 - received/sent, which also counts datagrams lost
        # after the last one that arrived (iperf3's own lost_percent does not).
        # sum_received/sum_sent exist since iperf3 3.11.
        s = e.get("sum_received", e["sum"])
        tx = e.get("sum_sent", e["sum"])
        rx = s["packets"] - s["lost_packets"]
        loss = 100.0 * (1 - rx / tx["packets"]) if tx["packets"] else 100.0
        print("%.0f %.2f %.0f" % (rx / s["seconds"], loss, tx["packets"] / tx["seconds"]))
except Exception:
    print("null null null")
PY
}

# measure CASE SUITE DIR -- all the figures of one row (gateways already running if a tunnel)
measure() {
  local case=$1 suite=$2 dir=$3 min avg idle mbps retr pps loss txpps
  read -r min avg med < <(ping_stats 50 0.05 "$dir/ping-idle.txt")
  put "$case" "$suite" rtt_idle_min_ms "$min"; put "$case" "$suite" rtt_idle_avg_ms "$avg"; idle=$avg
  put "$case" "$suite" rtt_idle_median_ms "$med"

  # TCP 1 stream, with a ping running (RTT under load) and CPU accounting around it
  local a0 b0 h0 h1 t0 t1 a1 b1 ppid
  (sleep 0.7; exec ip netns exec $NS_HA ping -q -n -c $(( DURATION * 10 - 10 > 5 ? DURATION * 10 - 10 : 5 )) \
     -i 0.1 -W 1 $HB_IP) > "$dir/ping-load.txt" 2>&1 &
  ppid=$!; PIDS+=("$ppid")
  a0=$(cpu_ticks ${GW_PID[A]:-}); b0=$(cpu_ticks ${GW_PID[B]:-}); h0=$(host_cpu); t0=$(date +%s.%N)
  iperf_client "$dir/tcp1.json" "$DURATION"
  a1=$(cpu_ticks ${GW_PID[A]:-}); b1=$(cpu_ticks ${GW_PID[B]:-}); h1=$(host_cpu); t1=$(date +%s.%N)
  wait "$ppid" 2>/dev/null || true
  read -r mbps retr < <(iperf_parse "$dir/tcp1.json" tcp)
  put "$case" "$suite" tcp1_mbps "$mbps"; put "$case" "$suite" tcp1_retr "$retr"
  read -r min avg < <(awk -F'[/ =]+' '/^(rtt|round-trip)/ {print $6, $7; f=1} END {if (!f) print "null null"}' "$dir/ping-load.txt")
  put "$case" "$suite" rtt_load_min_ms "$min"; put "$case" "$suite" rtt_load_avg_ms "$avg"
  python3 - "$a0" "$a1" "$b0" "$b1" "$h0" "$h1" "$t0" "$t1" "$(getconf CLK_TCK)" "${GW_PID[A]:-}" "${GW_PID[B]:-}" \
      > "$dir/cpu.txt" <<'PY'
import sys
a0, a1, b0, b1 = map(int, sys.argv[1:5]); h0, h1 = sys.argv[5].split(), sys.argv[6].split()
t0, t1, hz = float(sys.argv[7]), float(sys.argv[8]), int(sys.argv[9]); dt = t1 - t0
pa, pb = sys.argv[10], sys.argv[11]
pct = lambda d: "%.0f" % (100.0 * d / hz / dt)
busy = int(h1[0]) - int(h0[0]); idle = int(h1[1]) - int(h0[1])
print("cpu_gwA_pct", pct(a1 - a0) if pa else "null")
print("cpu_gwB_pct", pct(b1 - b0) if pb else "null")
print("host_cpu_busy_pct", "%.0f" % (100.0 * busy / max(1, busy + idle)))
PY
  while read -r k v; do put "$case" "$suite" "$k" "$v"; done < "$dir/cpu.txt"
  log "$case $suite: TCP-1 $mbps Mbit/s, RTT idle $idle ms loaded $avg ms, $(tr '\n' ' ' < "$dir/cpu.txt")"

  [ -n "$SMOKE" ] && return 0
  iperf_client "$dir/tcp4.json" "$DURATION" -P 4
  read -r mbps retr < <(iperf_parse "$dir/tcp4.json" tcp)
  put "$case" "$suite" tcp4_mbps "$mbps"; put "$case" "$suite" tcp4_retr "$retr"
  local size
  for size in $UDP_SIZES; do
    iperf_client "$dir/udp$size.json" "$DURATION" -u -b 0 -l "$size"
    read -r pps loss txpps < <(iperf_parse "$dir/udp$size.json" udp)
    put "$case" "$suite" "udp${size}_pps" "$pps"; put "$case" "$suite" "udp${size}_loss_pct" "$loss"
    put "$case" "$suite" "udp${size}_tx_pps" "$txpps"
  done
  log "$case $suite: TCP-4 $mbps Mbit/s, UDP $UDP_SIZES done"
}

# verify_esp CASE SUITE DIR -- capture on gwA's outside link during a ping and a short iperf3
# TCP transfer (2 MB, so the capture stays small and tshark fast):
# returns 0 if ESP was seen and no 192.168.x.x packet, 1 if no ESP/no traffic, 2 if cleartext leaked,
# 3 if the ESP was not encapsulated as the case says (fs-fs-raw: raw only; other cases: UDP only,
# strongSwan's kernel-libipsec always encapsulates).
verify_esp() {
  local case=$1 suite=$2 dir=$3 tpid ok
  ip netns exec $NS_GA tcpdump -Z root -U -n -s 200 -i ga-out -w "$dir/verify.pcap" > /dev/null 2> "$dir/tcpdump.log" &
  tpid=$!; PIDS+=("$tpid")
  for _ in $(seq 1 100); do grep -q 'listening on' "$dir/tcpdump.log" 2>/dev/null && break; sleep 0.1; done
  sleep 0.2
  nsx $NS_HA ping -q -c 20 -i 0.05 -W 1 $HB_IP > "$dir/verify-ping.txt" 2>&1 && ok=1 || ok=0
  iperf_client "$dir/verify-iperf.json" 10 -n 2M
  sleep 0.3; kill -INT "$tpid" 2>/dev/null || true; wait "$tpid" 2>/dev/null || true
  # one tshark pass: protocol stack, every IP address (inner ones too, if tshark could decode
  # them), UDP ports and length of each frame
  local counts esp clear ike espudp
  counts=$(tshark -n -r "$dir/verify.pcap" -T fields -E separator=/t -e frame.protocols -e ip.addr -e udp.port -e frame.len 2>/dev/null |
    awk -F'\t' '
      { if ($2 ~ /192\.168\./) clear++
        if ($1 ~ /(^|:)esp(:|$)/) { esp++; if ($1 ~ /:udp:/) espudp++ }
        else if ($1 ~ /isakmp/) ike++
        else if ($3 ~ /(^|,)4500(,|$)/ && $4 > 80) { esp++; espudp++ }  # UDP 4500, non-IKE, not a NAT keepalive
      }
      END { printf "%d %d %d %d\n", esp, clear, ike, espudp }')
  read -r esp clear ike espudp <<< "$counts"
  put "$case" "$suite" verify_esp_pkts "$esp"; put "$case" "$suite" verify_clear_pkts "$clear"
  put "$case" "$suite" verify_esp_udp4500_pkts "$espudp"
  put "$case" "$suite" verify_ike_pkts "$ike"; put "$case" "$suite" verify_ping_ok "$ok"
  log "$case $suite verify: ping_ok=$ok esp=$esp (udp-encap $espudp) cleartext_192.168=$clear ike=$ike"
  [ "$clear" -eq 0 ] || return 2
  [ "$ok" = 1 ] && [ "$esp" -gt 0 ] || return 1
  case $case in
    fs-fs-raw) [ "$espudp" -eq 0 ] || return 3 ;;
    *) [ "$espudp" -eq "$esp" ] || return 3 ;;
  esac
  return 0
}

# run_tunnel CASE SUITE -- one tunnel row: start, initiate, verify, measure, stop
run_tunnel() {
  local case=$1 suite=$2 dir=$RUN/$1-$2 impl_a impl_b rc
  ENCAP='"auto"'
  case $case in ss-ss) impl_a=ss; impl_b=ss ;; fs-fs) impl_a=fs; impl_b=fs ;; fs-ss) impl_a=fs; impl_b=ss ;;
    fs-fs-raw) impl_a=fs; impl_b=fs; ENCAP=false ;;
    fs-fs-encap) impl_a=fs; impl_b=fs; ENCAP=true ;;
    *) row "$case" "$suite" FAIL "unknown case"; return ;; esac
  mkdir -p "$dir"
  log "=== $case (gwA $impl_a, gwB $impl_b) ESP $suite"
  if ! gw_start "$impl_b" B "$suite" "$dir/gwB" || ! gw_start "$impl_a" A "$suite" "$dir/gwA"; then
    row "$case" "$suite" FAIL "gateway start failed${BIN_NOTE:+: $BIN_NOTE}"; gw_stop A; gw_stop B; return
  fi
  if ! gw_initiate "$dir/initiate.log"; then
    row "$case" "$suite" FAIL "initiate failed: $(tail -2 "$dir/initiate.log" | tr '\n\t' '  ' | cut -c1-160)"
    gw_stop A; gw_stop B; return
  fi
  local up=
  for _ in $(seq 1 10); do reachable && { up=1; break; }; sleep 0.5; done
  if [ -z "$up" ]; then
    row "$case" "$suite" FAIL "tunnel up but hostA cannot reach hostB"; gw_stop A; gw_stop B; return
  fi
  rc=0; verify_esp "$case" "$suite" "$dir" || rc=$?
  if [ $rc -ne 0 ]; then
    case $rc in
      2) row "$case" "$suite" INVALID "CLEARTEXT LEAK on the outside link" ;;
      3) row "$case" "$suite" INVALID "ESP not encapsulated as the case says (see the verify line)" ;;
      *) row "$case" "$suite" INVALID "no ESP seen on the outside link" ;;
    esac
    gw_stop A; gw_stop B; return
  fi
  measure "$case" "$suite" "$dir"
  [ "$impl_a" = fs ] && { fsctl A status --json > "$dir/gwA-status.json" 2>&1 || true; }
  [ "$impl_b" = fs ] && { fsctl B status --json > "$dir/gwB-status.json" 2>&1 || true; }
  if isnum "$(awk -F'\t' -v c="$case" -v s="$suite" '$1==c && $2==s && $3=="tcp1_mbps" {print $4}' "$RUN/metrics.tsv")"; then
    row "$case" "$suite" OK
  else
    row "$case" "$suite" FAIL "no TCP figure (tunnel broke during the run?)"
  fi
  gw_stop A; gw_stop B
}

# ---------------------------------------------------------------- the run
STARTED=$(date -Is)
topo_up
log "topology up (namespaces fsb-*)"

if has_word "$CASES" plain; then
  log "=== plain forwarding (no tunnel)"
  routes_clear
  mkdir -p "$RUN/plain"
  if reachable; then
    measure plain - "$RUN/plain"
    row plain - OK
  else
    row plain - FAIL "hostB unreachable with clear routes"
  fi
fi
routes_noclear
reachable && die "hostB reachable without a tunnel: topology error"

for suite in $SUITES; do
  for case in $CASES; do
    [ "$case" = plain ] && continue
    run_tunnel "$case" "$suite"
  done
done

# ---------------------------------------------------------------- report
cat > "$RUN/meta.tsv" <<EOF
run_id	$RUN_ID
started	$STARTED
finished	$(date -Is)
duration_s	$DURATION
suites	$SUITES
cases	$CASES
ike_proposal	$IKE_PROPOSAL
udp_sizes	$UDP_SIZES
tun_mtu	$TUN_MTU
ferroswan_workers	$WORKERS
smoke	${SMOKE:-0}
kernel	$(uname -r)
nproc	$(nproc)
cpu_model	$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
loadavg_at_end	$(cut -d' ' -f1-3 /proc/loadavg)
strongswan	$("$CHARON" --version 2>&1 | head -1)
iperf3	$(iperf3 --version 2>&1 | head -1)
ferroswan_bin	$BIN
ferroswan_version	$( [ -x "$BIN" ] && "$BIN" --version 2>/dev/null | head -1 || echo "n/a")
ferroswan_git	$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo "n/a")
ferroswan_note	$BIN_NOTE
EOF
python3 "$BENCH/report.py" "$RUN" "$RESULTS"
log "raw figures: $RESULTS"

# ---------------------------------------------------------------- exit status
rc=0
leaks=$(awk -F'\t' '$3=="verify_clear_pkts" && $4+0 > 0' "$RUN/metrics.tsv" | wc -l)
if [ "$leaks" -gt 0 ]; then log "FAILED: cleartext leaked in $leaks row(s)"; rc=1; fi
if [ -n "$SMOKE" ]; then
  # every row must have produced a TCP number (and tunnel rows must have shown ESP: an
  # INVALID row has no number); ferroswan rows failing make the smoke run fail.
  while IFS=$'\t' read -r c s st note; do
    v=$(awk -F'\t' -v c="$c" -v s="$s" '$1==c && $2==s && $3=="tcp1_mbps" {print $4}' "$RUN/metrics.tsv")
    if [ "$st" != OK ] || ! isnum "$v"; then
      case $c in fs-*) log "SMOKE FAIL: $c $s: $st $note"; rc=1 ;; *) log "SMOKE WARN: $c $s: $st $note" ;; esac
    fi
  done < "$RUN/rows.tsv"
fi
exit $rc
