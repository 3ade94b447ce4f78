#!/usr/bin/env bash
# demo.sh -- ferroswan site-to-site demo in network namespaces (run as root: sudo scripts/demo.sh)
#
#   fsdemo-hostA 192.168.1.10 -- 192.168.1.1 fsdemo-gwA 100.1.1.1 ==veth== 200.2.2.2 fsdemo-gwB 192.168.2.1 -- 192.168.2.10 fsdemo-hostB
#
# Installs the dependencies, builds ferroswan (release), starts it on both gateways with
# examples/site-to-site/gw-a.toml (initiator, start_action = "start") and gw-b.toml, pings
# hostA -> hostB through the tunnel, runs a short iperf3, shows `ferroswan status` of both
# gateways and counts ESP packets on the outside link. Everything is removed on exit.
# The gateways have no route between the private nets: traffic can only pass the tunnel.
# Env: IPERF_TIME (5), KEEP=1 (leave /tmp/fsdemo with logs and pcap), NO_INSTALL=1, NO_BUILD=1
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export PATH="$HOME/.cargo/bin:$PATH"
[ "$(id -u)" -eq 0 ] || { echo "demo.sh: needs root (network namespaces): sudo $0" >&2; exit 1; }

# shellcheck source=scripts/lib/topo.sh
. "$ROOT/scripts/lib/topo.sh"
topo_vars fsdemo
STATE=/tmp/fsdemo
CONF_A=${CONF_A:-$ROOT/examples/site-to-site/gw-a.toml}
CONF_B=${CONF_B:-$ROOT/examples/site-to-site/gw-b.toml}
BIN=${FERROSWAN_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/ferroswan}
PIDS=()

log() { echo "[demo $(date +%H:%M:%S)] $*" >&2; }

cleanup() {
  local rc=$?
  set +e
  # stop what we started, by PID, newest first
  for ((i=${#PIDS[@]}-1; i>=0; i--)); do
    p=${PIDS[$i]}
    kill -0 "$p" 2>/dev/null || continue
    kill -TERM "$p" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
  done
  if [ $rc -ne 0 ]; then
    for f in "$STATE"/gw*.log; do [ -f "$f" ] && { echo "----- tail $f"; tail -20 "$f"; }; done >&2
  fi
  topo_delete
  [ -n "${KEEP:-}" ] || rm -rf "$STATE"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# 1. dependencies and build
[ -n "${NO_INSTALL:-}" ] || "$ROOT/scripts/install-deps.sh"
[ -n "${NO_BUILD:-}" ] || { log "cargo build --release"; cargo build --release --bin ferroswan; }
for f in "$CONF_A" "$CONF_B" "$BIN"; do
  [ -e "$f" ] || { echo "demo.sh: missing $f" >&2; exit 1; }
done

# 2. topology
log "building the topology (namespaces fsdemo-*)"
rm -rf "$STATE"; mkdir -p "$STATE"
topo_delete
topo_create
if nsx $NS_HA ping -c 1 -W 1 $HB_IP >/dev/null 2>&1; then
  echo "demo.sh: hostB reachable without a tunnel?!" >&2; exit 1
fi
log "without a tunnel hostA cannot reach hostB (as expected)"

# 3. capture on the outside link (started before the tunnel, so IKE shows too)
ip netns exec $NS_GA tcpdump -Z root -U -n -s 128 -i ga-out -w "$STATE/outside.pcap" >/dev/null 2>"$STATE/tcpdump.log" &
PIDS+=($!)
for _ in $(seq 1 100); do grep -q 'listening on' "$STATE/tcpdump.log" 2>/dev/null && break; sleep 0.1; done

# 4. gateways (responder first; gw-a initiates by itself: start_action = "start")
start_gw() {  # ns name config
  local ns=$1 name=$2 conf=$3
  ip netns exec "$ns" "$BIN" run --config "$conf" --control "$STATE/$name.sock" >"$STATE/$name.log" 2>&1 &
  PIDS+=($!)
  local pid=$!
  for _ in $(seq 1 100); do
    [ -S "$STATE/$name.sock" ] && { log "ferroswan $name running in $ns (pid $pid)"; return 0; }
    kill -0 "$pid" 2>/dev/null || { echo "demo.sh: ferroswan $name exited:" >&2; tail -20 "$STATE/$name.log" >&2; return 1; }
    sleep 0.1
  done
  echo "demo.sh: ferroswan $name: no control socket" >&2; return 1
}
fsctl() { local name=$1; shift; "$BIN" --control "$STATE/$name.sock" "$@"; }
start_gw $NS_GB gw-b "$CONF_B"
start_gw $NS_GA gw-a "$CONF_A"

log "waiting for the tunnel"
up=
for _ in $(seq 1 200); do
  if fsctl gw-a status --json 2>/dev/null | jq -e '(.ike_sas // .status.ike_sas // []) | map(select(.state == "ESTABLISHED")) | length > 0' >/dev/null 2>&1 \
     && nsx $NS_HA ping -c 1 -W 1 $HB_IP >/dev/null 2>&1; then up=1; break; fi
  sleep 0.1
done
[ -n "$up" ] || { echo "demo.sh: tunnel not up after 20 s" >&2; fsctl gw-a status >&2 || true; exit 1; }

# 5. traffic
log "ping hostA -> hostB through the tunnel"
nsx $NS_HA ping -c 5 -i 0.2 $HB_IP
log "iperf3 hostA -> hostB (${IPERF_TIME:-5} s)"
ip netns exec $NS_HB iperf3 -s -1 -p 5201 >/dev/null 2>&1 &
PIDS+=($!)
for _ in $(seq 1 50); do nsx $NS_HB ss -ltn 2>/dev/null | grep -q ':5201' && break; sleep 0.1; done
nsx $NS_HA iperf3 -c $HB_IP -p 5201 -t "${IPERF_TIME:-5}"

# 6. status
for gw in gw-a gw-b; do
  log "ferroswan status ($gw)"
  fsctl $gw status
done

# 7. what went over the wire
sleep 0.3
kill -INT "${PIDS[0]}" 2>/dev/null; wait "${PIDS[0]}" 2>/dev/null || true
esp=$(tshark -n -r "$STATE/outside.pcap" -Y esp 2>/dev/null | wc -l)
ike=$(tshark -n -r "$STATE/outside.pcap" -Y isakmp 2>/dev/null | wc -l)
clear=$(tshark -n -r "$STATE/outside.pcap" -Y 'ip.addr == 192.168.0.0/16' 2>/dev/null | wc -l)
log "outside link (ga-out): $ike IKE packets, $esp ESP packets, $clear packets with a 192.168.x.x address in clear"
[ "$clear" -eq 0 ] || { echo "demo.sh: cleartext private traffic on the outside link!" >&2; exit 1; }
[ "$esp" -gt 0 ] || { echo "demo.sh: no ESP on the outside link!" >&2; exit 1; }
log "demo OK; tearing down"
