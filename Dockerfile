# Image for the KNET storefront (`shop`): build the virtualenv in one stage, run it in another.
#   docker build -t knet-shop .
#   docker run -p 8000:8000 -v shop-data:/data -e SHOP_ENV=production -e SHOP_SECRET_KEY=... \
#     -e SHOP_SANDBOX=0 -e SHOP_PUBLIC_URL=https://shop.example.com knet-shop
# See docs/docker.md for every variable and for how this file was verified.

# ---- build: install the project and its pinned dependencies into /opt/venv ------------------
FROM python:3.11-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1

RUN python -m venv /opt/venv
ENV PATH="/opt/venv/bin:${PATH}"

WORKDIR /src
# .dockerignore keeps the context to the package, its metadata and the runtime folders.
COPY . .
# A regular (non-editable) install: the `shop` package and the `shop` console script land in
# /opt/venv; templates/, static/ and migrations/ are copied into the runtime WORKDIR below.
# pip and setuptools are not needed at run time (the base image keeps its own pip): drop them.
RUN pip install --no-cache-dir . \
    && pip uninstall --yes pip setuptools \
    && shop --help > /dev/null

# ---- runtime -------------------------------------------------------------------------------
FROM python:3.11-slim-bookworm AS runtime

LABEL org.opencontainers.image.title="knet-shop" \
      org.opencontainers.image.description="Server-rendered Kuwaiti storefront (Litestar + uvicorn)" \
      org.opencontainers.image.licenses="MIT"

# Only these defaults are baked in; everything else comes from SHOP_ variables at run time.
# SHOP_DATABASE_URL points the SQLite default at the /data volume, the one writable place.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH="/opt/venv/bin:${PATH}" \
    SHOP_HOST=0.0.0.0 \
    SHOP_PORT=8000 \
    SHOP_DATABASE_URL=sqlite:////data/shop.db

# Unprivileged user with a fixed uid/gid (10001), so volume ownership is predictable.
# Without SHOP_SECRET_KEY, development mode writes ./.shop-secret-key; /app stays read-only
# for the app user, so that file is redirected into the volume by a symlink.
RUN groupadd --system --gid 10001 shop \
    && useradd --system --no-log-init --uid 10001 --gid shop --home-dir /data \
       --no-create-home --shell /usr/sbin/nologin shop \
    && mkdir -p /data /app \
    && chown shop:shop /data \
    && chmod 0750 /data \
    && ln -s /data/.shop-secret-key /app/.shop-secret-key

COPY --from=build /opt/venv /opt/venv

# shop/paths.py looks for these in the working directory when the package lives in
# site-packages. They stay owned by root: the app only reads them.
WORKDIR /app
COPY templates ./templates
COPY static ./static
COPY migrations ./migrations
COPY --chmod=0755 docker/entrypoint.sh /usr/local/bin/docker-entrypoint

USER 10001:10001
VOLUME ["/data"]
EXPOSE 8000

# No curl in slim images: probe with the standard library, on whatever SHOP_PORT is in force.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('SHOP_PORT', '8000'); sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=3).status == 200 else 1)"]

ENTRYPOINT ["docker-entrypoint"]
CMD ["serve"]
