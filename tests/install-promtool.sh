#!/usr/bin/env bash
# Puts promtool (the alert-rule tests run it) at the path given, from the first source that works:
#   1. a promtool already on PATH: linked, not installed again (skipped with PROMTOOL_IGNORE_PATH=1, which CI sets
#      to prove that a machine without one gets one);
#   2. Go: `go install` of the pinned Prometheus release (the Go toolchain checks the module against the Go
#      checksum database, so the pin covers the content as a sha256 would; a Go older than the release needs, from
#      1.21 on, fetches the newer toolchain itself);
#   3. as root on Debian or Ubuntu: the distribution's prometheus package.
# Otherwise it fails with one line saying what is missing and how to install it.
set -euo pipefail

target=${1:?usage: install-promtool.sh PATH}
# Prometheus 3.16.0 (its Go module tags are v0.<major><minor>.<patch>). `go install module@version` refuses a
# release whose go.mod has replace or exclude directives, as every 3.x release before this one has.
PROMETHEUS_MODULE=github.com/prometheus/prometheus
PROMETHEUS_VERSION=v0.316.0

mkdir -p "$(dirname "$target")"
dest=$(cd "$(dirname "$target")" && pwd)/$(basename "$target")

works() { "$1" --version >/dev/null 2>&1; }

link() {
  ln -sf "$1" "$dest"
  echo "promtool: using $1"
}

existing=$(command -v promtool || true)
if [ "${PROMTOOL_IGNORE_PATH:-}" = 1 ]; then
  existing=""
fi
if [ -n "$existing" ] && [ "$existing" != "$dest" ] && works "$existing"; then
  link "$existing"
  exit 0
fi

if command -v go >/dev/null 2>&1; then
  echo "promtool: building $PROMETHEUS_MODULE/cmd/promtool@$PROMETHEUS_VERSION with Go (a few minutes the first time)"
  staging=$(mktemp -d)
  trap 'rm -rf "$staging"' EXIT
  # remove_all_sd leaves out the cloud service-discovery plugins: promtool's rule checks need none of them, and
  # they are most of the build.
  if GOBIN=$staging GOFLAGS=-buildvcs=false go install -tags remove_all_sd \
      "$PROMETHEUS_MODULE/cmd/promtool@$PROMETHEUS_VERSION" && works "$staging/promtool"; then
    mv -f "$staging/promtool" "$dest"
    echo "promtool: installed $dest"
    exit 0
  fi
  echo "promtool: the Go build failed; trying the next source" >&2
fi

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "promtool: installing Debian's prometheus package"
  if apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus \
      && works /usr/bin/promtool; then
    link /usr/bin/promtool
    exit 0
  fi
fi

echo "promtool is missing and could not be installed: install Go 1.21+ and run \`make $target\`, or \`apt-get install prometheus\` as root, or put a promtool on PATH" >&2
exit 1
