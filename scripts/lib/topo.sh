# scripts/lib/topo.sh -- the namespace topology shared by scripts/demo.sh and bench/run.sh.
# Sourced (bash), not run. Same layout and addresses as the Rust harness (crates/fs-testbed):
#
#   <P>-hostA 192.168.1.10 -- 192.168.1.1 <P>-gwA 100.1.1.1 ==veth== 200.2.2.2 <P>-gwB 192.168.2.1 -- 192.168.2.10 <P>-hostB
#     ha0                      ga-in              ga-out              gb-out            gb-in                hb0
#
# The gateways forward but have no route between the private nets: hostA reaches hostB only
# through a tunnel (or routes the caller adds, e.g. bench/run.sh's plain baseline).
#
#   topo_vars PREFIX   set NS_HA NS_GA NS_GB NS_HB (PREFIX-hostA ...), ALL_NS and the addresses
#                      HA_IP GA_IN HB_IP GB_IN GA_OUT GB_OUT
#   topo_create        create the namespaces (they must not exist), veths, addresses, routes,
#                      forwarding; IPv6 off, rp_filter off on the gateways
#   topo_delete        delete the namespaces (ignores missing ones; stops no process)
#   nsx NS CMD...      run CMD in namespace NS

nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

topo_vars() {
  local p=$1
  NS_HA=$p-hostA; NS_GA=$p-gwA; NS_GB=$p-gwB; NS_HB=$p-hostB
  ALL_NS="$NS_HA $NS_GA $NS_GB $NS_HB"
  HA_IP=192.168.1.10; GA_IN=192.168.1.1; HB_IP=192.168.2.10; GB_IN=192.168.2.1
  GA_OUT=100.1.1.1;   GB_OUT=200.2.2.2
}

topo_create() {
  local ns pair
  for ns in $ALL_NS; do
    ip netns add "$ns"; nsx "$ns" ip link set lo up
    nsx "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  done
  ip link add ha0 netns "$NS_HA" type veth peer name ga-in netns "$NS_GA"
  ip link add ga-out netns "$NS_GA" type veth peer name gb-out netns "$NS_GB"   # the "internet"
  ip link add hb0 netns "$NS_HB" type veth peer name gb-in netns "$NS_GB"
  nsx "$NS_HA" ip addr add "$HA_IP/24" dev ha0
  nsx "$NS_GA" ip addr add "$GA_IN/24" dev ga-in
  nsx "$NS_GA" ip addr add "$GA_OUT/32" peer "$GB_OUT/32" dev ga-out
  nsx "$NS_GB" ip addr add "$GB_OUT/32" peer "$GA_OUT/32" dev gb-out
  nsx "$NS_GB" ip addr add "$GB_IN/24" dev gb-in
  nsx "$NS_HB" ip addr add "$HB_IP/24" dev hb0
  for pair in "$NS_HA ha0" "$NS_GA ga-in" "$NS_GA ga-out" "$NS_GB gb-out" "$NS_GB gb-in" "$NS_HB hb0"; do
    set -- $pair; nsx "$1" ip link set "$2" up
  done
  nsx "$NS_HA" ip route add default via "$GA_IN"
  nsx "$NS_HB" ip route add default via "$GB_IN"
  for ns in "$NS_GA" "$NS_GB"; do
    nsx "$ns" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
  done
}

topo_delete() {
  local ns
  for ns in $ALL_NS; do ip netns del "$ns" 2>/dev/null || true; done
}
