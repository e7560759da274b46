#!/bin/sh
# Container entrypoint for the storefront image.
#   serve [extra `shop serve` options]  apply migrations, then exec the ASGI server (default)
#   migrate | seed | demo               run that `shop` subcommand
#   anything else                       exec it as given (e.g. `sh`, `python`)
set -eu

if [ "$#" -eq 0 ]; then
    set -- serve
fi

case "$1" in
    serve)
        shift
        shop migrate
        # exec: uvicorn becomes PID 1 and receives SIGTERM/SIGINT from the runtime directly.
        exec shop serve --host "${SHOP_HOST:-0.0.0.0}" --port "${SHOP_PORT:-8000}" "$@"
        ;;
    migrate | seed | demo)
        exec shop "$@"
        ;;
    -*)
        # Options only, e.g. `--workers 4`: treat them as options of `shop serve`.
        shop migrate
        exec shop serve --host "${SHOP_HOST:-0.0.0.0}" --port "${SHOP_PORT:-8000}" "$@"
        ;;
    *)
        exec "$@"
        ;;
esac
