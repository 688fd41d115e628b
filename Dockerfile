# celeriac: one image, two entrypoints.
#   worker:   celeriac worker -A /app/tasks/tasks.js -Q celery
#   operator: celeriac-operator --metrics-port 8080
# The ENTRYPOINT is tini, so SIGTERM reaches node (warm shutdown) and zombies are reaped. Both
# commands are docker/node-init.sh, which puts tini in front itself when it finds itself PID 1
# (a Kubernetes `command:` replaced the ENTRYPOINT).
#
# Worker image contract (docs/install.md): put an ES module that exports a celeriac app under
# /app/tasks (FROM this image, or a mounted volume); `import { createApp } from 'celeriac'`
# resolves there because /app/node_modules/celeriac links to the package itself.
#
# NODE_IMAGE is an official slim image of a current Node LTS; a build without registry access
# can pass a compatible local base (Debian + node on PATH) with --build-arg NODE_IMAGE=...
ARG NODE_IMAGE=node:24-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY runtime ./runtime
COPY operator ./operator
# tsconfig also includes test/**, which the image leaves out: only runtime and operator compile.
RUN npx tsc -p tsconfig.json

FROM ${NODE_IMAGE} AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 celeriac \
 && useradd --system --uid 10001 --gid celeriac --home-dir /app --shell /usr/sbin/nologin celeriac
ENV NODE_ENV=production
# A young generation of 4 MB semi-spaces (V8 lets them grow to 64 MB on Node 24): a worker's
# garbage is short-lived; its peak RSS under load fell from 239-256 MB to 146-156 MB on Node 24
# with no CPU cost per task we could measure (README "Memory"). `celeriac worker` re-executes node
# with the flag when NODE_OPTIONS lacks it (an ENV NODE_OPTIONS of your own replaces this one);
# setting it here saves that exec.
ENV NODE_OPTIONS=--max-semi-space-size=4
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund \
 && npm cache clean --force \
 && ln -s .. node_modules/celeriac
# The package's files only: the examples (dist/runtime/examples) import dev dependencies.
COPY --from=build /src/dist/runtime/src ./dist/runtime/src
COPY --from=build /src/dist/operator/src ./dist/operator/src
COPY crds ./crds
COPY docker/node-init.sh ./docker/node-init.sh
RUN ln -s /app/docker/node-init.sh /usr/local/bin/celeriac \
 && ln -s /app/docker/node-init.sh /usr/local/bin/celeriac-operator \
 && mkdir -p /app/tasks
USER 10001:10001
# The worker's metrics/health port and the operator's.
EXPOSE 9540 8080
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["celeriac", "--help"]
