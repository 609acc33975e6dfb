#!/bin/sh
# Entry point of the Agora image.
#
# On a private container network (compose, a test cluster) a node's own address is the container's:
# with AGORA_LISTEN_SELF=PORT and no AGORA_LISTEN, listen on /ip4/<this container's IP>/tcp/PORT, so
# that `loopback = true` (listen addresses count as external ones) advertises an address the other
# containers can dial. With AGORA_BOOTSTRAP_FILE (one multiaddr a line) and no AGORA_BOOTSTRAP, the
# bootstrap list comes from that file (deploy/compose/init-mesh.sh writes it). Everything else goes
# straight to the command.
set -eu
if [ -n "${AGORA_BOOTSTRAP_FILE:-}" ] && [ -z "${AGORA_BOOTSTRAP:-}" ]; then
    AGORA_BOOTSTRAP=$(grep -v '^[[:space:]]*$' "$AGORA_BOOTSTRAP_FILE" | paste -sd, -)
    export AGORA_BOOTSTRAP
fi
if [ -n "${AGORA_LISTEN_SELF:-}" ] && [ -z "${AGORA_LISTEN:-}" ]; then
    ip=$(hostname -i | awk '{print $1}')
    AGORA_LISTEN="/ip4/${ip}/tcp/${AGORA_LISTEN_SELF}"
    export AGORA_LISTEN
fi
exec "$@"
