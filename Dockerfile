# berth, the reconciling deploy daemon, as a container image.
#
#   docker build -t berth .
#   docker run -d --name berth -p 127.0.0.1:7373:7373 -v berth-data:/var/lib/berth \
#     -v "$PWD/berth.yml:/app/deploy/berth.yml:ro" --stop-timeout 30 berth
#
# See docs/docker.md for the environment, the volume, the listen/token decision
# and how this file was verified (scripts/verify-docker-image.sh).
#
# NODE_IMAGE is used by BOTH stages so the native module better-sqlite3 is compiled
# against exactly the Node (ABI) and libc that run it. Swap it for a mirror or a
# pinned digest: --build-arg NODE_IMAGE=registry.example/node:26-bookworm-slim@sha256:...
# It must be a Node line package.json's "engines" names (20.10+, 22, 24, 26: the LTS
# lines better-sqlite3 12.x supports) on a glibc (Debian) base.
#
# Why Node 26: it is the Active LTS line since 2026-10-28 (maintenance from 2027-10-20,
# end of life 2029-04-30), so an image built now gets bug fixes, not only security
# fixes, for the longest time. Node 24 is in maintenance since 2026-10 (end of life
# 2028-04-30) and Node 20 reached its end of life on 2026-04-30. better-sqlite3 12.11
# lists 26.x in its engines. Why bookworm: the Debian the build was verified on
# (scripts/verify-docker-image.sh bootstraps it), security-supported until 2028-06.
ARG NODE_IMAGE=node:26-bookworm-slim

# ---------------------------------------------------------------- build stage
FROM ${NODE_IMAGE} AS build

# Toolchain for node-gyp, in case no prebuilt better-sqlite3 binary can be fetched
# for this platform (it is then compiled from source). Only in this stage.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src

# Dependencies first (cached until package*.json change). Install scripts are
# skipped for every package, then run for better-sqlite3 alone: the same policy as
# package.json's "allowScripts" (ssh2/cpu-features optional native add-ons stay off,
# ssh2 uses its pure-JS crypto), and the same result whether the base image's npm
# knows "allowScripts" (npm 11) or not (npm 10, e.g. in node:20 and node:22 images).
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund \
 && npm rebuild better-sqlite3 \
 && node -e "new (require('better-sqlite3'))(':memory:').close()"

COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build \
 && npm prune --omit=dev --ignore-scripts --no-audit --no-fund \
 && cd node_modules/better-sqlite3 \
 && rm -rf deps src \
 && find build -mindepth 1 -maxdepth 1 ! -name Release -exec rm -rf {} + \
 && find build/Release -mindepth 1 -maxdepth 1 ! -name better_sqlite3.node -exec rm -rf {} + \
 && cd /src && node -e "new (require('better-sqlite3'))(':memory:').close()"

# -------------------------------------------------------------- runtime stage
FROM ${NODE_IMAGE} AS runtime

# Unprivileged user with a fixed uid/gid (10001), so volume ownership is predictable
# and `runAsNonRoot` policies can check the numeric USER below.
RUN groupadd --system --gid 10001 berth \
 && useradd --system --uid 10001 --gid berth --home-dir /var/lib/berth --no-create-home \
      --shell /usr/sbin/nologin berth \
 && mkdir -p /var/lib/berth \
 && chown berth:berth /var/lib/berth \
 && chmod 0750 /var/lib/berth

# BERTH_LISTEN: inside a container 127.0.0.1 is the container's own loopback, which
# nothing outside can reach, so the image listens on all of the CONTAINER's
# interfaces. The API still answers no read or write without the bearer token
# (BERTH_TOKEN, or the one generated into /var/lib/berth/token on first start), and
# `-p 127.0.0.1:7373:7373` keeps it on the HOST's loopback, as berth's default
# listen address (README.md, "HTTP API") intends.
#
# NODE_OPTIONS: V8 lets its heap grow to 4x what is live between full collections when
# it may use 2 GiB or more (Node's default with 8 GiB of memory or more), 1.8x at 1,536 MiB:
# at 10,000 apps, RSS after no-op resyncs 442-667 MiB without the cap, under 400 with it
# (docs/benchmarks.md, "Memory at 10,000 apps", which also says when to raise it).
# The young generation is kept at 4 MiB: a scavenge copies what survives it, and with the
# default (16) the resync's passes' survivors made scavenges of 20-40 ms, the loop's longest
# stalls (docs/benchmarks.md). `docker run -e NODE_OPTIONS=...` replaces both.
ENV NODE_ENV=production \
    NODE_OPTIONS="--max-old-space-size=1536 --max-semi-space-size=4" \
    BERTH_CONFIG=/app/deploy/berth.yml \
    BERTH_DB=/var/lib/berth/berth.db \
    BERTH_LISTEN=0.0.0.0:7373

WORKDIR /app
# Code is owned by root and read-only for the daemon; only /var/lib/berth is writable.
# dist/, migrations/ and ui/ must stay side by side (the store reads ../../migrations
# from dist/store/, the status page ../../../ui from dist/api/routes/), and package.json
# next to them (berth --version reads it).
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/dist ./dist
COPY migrations ./migrations
COPY ui ./ui
COPY deploy/berth.yml ./deploy/berth.yml

USER 10001:10001
VOLUME ["/var/lib/berth"]
EXPOSE 7373

# berth shuts down gracefully on SIGTERM (stops taking requests, finishes the step
# in flight, closes the database) within 25 s: run it with `--stop-timeout 30`.
STOPSIGNAL SIGTERM

# Liveness without curl/wget: Node's fetch against /healthz on the port BERTH_LISTEN
# names (0.0.0.0 and :: are probed on loopback).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "const l=process.env.BERTH_LISTEN||'127.0.0.1:7373';const i=l.lastIndexOf(':');let h=l.slice(0,i).replace('[','').replace(']','');if(h==='0.0.0.0')h='127.0.0.1';if(h==='::')h='::1';fetch('http://'+(h.includes(':')?'['+h+']':h)+':'+l.slice(i+1)+'/healthz',{signal:AbortSignal.timeout(4000)}).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]

ARG BERTH_VERSION=dev
ARG BERTH_REVISION=unknown
LABEL org.opencontainers.image.title="berth" \
      org.opencontainers.image.description="A reconciling, zero-downtime deploy controller for plain Docker hosts reached over SSH" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${BERTH_VERSION}" \
      org.opencontainers.image.revision="${BERTH_REVISION}" \
      org.opencontainers.image.documentation="docs/docker.md"

ENTRYPOINT ["node", "/app/dist/cli/bin.js"]
CMD ["daemon"]
