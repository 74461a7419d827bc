#!/bin/sh
# netns-rsh.sh - Open MPI's remote-shell agent for the network-namespace "hosts" of test_netns.sh:
# mpirun --mca plm_rsh_agent netns-rsh.sh calls it like ssh (HOST COMMAND-WORDS...). It runs the
# command inside namespace HOST, with its own UTS namespace so that each host has its own hostname
# (and Open MPI its own session directory).
host=$1; shift
[ -e "/run/netns/$host" ] || { echo "netns-rsh: no network namespace '$host'" >&2; exit 255; }
exec ip netns exec "$host" unshare --uts /bin/sh -c 'hostname "$1"; shift; exec /bin/sh -c "$*"' sh "$host" "$@"
