#!/usr/bin/env bash
# Host setup for `make image-test`, idempotent (each step is skipped when already done):
#   1. podman, runc and debootstrap (installed with apt-get when missing, as root);
#   2. rootful podman without systemd: no default ulimits in /etc/containers/containers.conf;
#   3. a base image equivalent to python:3.11-slim-bookworm + openjdk-17-jre-headless, made with debootstrap from
#      the Debian mirror apt already uses, for hosts that cannot pull from a container registry.
# Set BASE_IMAGE to an image podman can already use (e.g. a pulled python:3.11-slim-bookworm) to skip step 3.
set -euo pipefail

BASE_IMAGE=${BASE_IMAGE:-localhost/consumer-base:bookworm}
# Rootful podman without systemd: runc and cgroupfs (override with PODMAN="podman" where systemd runs).
read -r -a podman <<<"${PODMAN:-podman --runtime runc --cgroup-manager=cgroupfs}"

fail() {
  printf 'image-test: %s\n' "$*" >&2
  exit 1
}

timed() {
  local label=$1 start
  shift
  start=$(date +%s)
  "$@"
  printf 'image-test: %-34s %4ss\n' "$label" "$(($(date +%s) - start))"
}

install_tools() {
  local missing=()
  command -v podman >/dev/null || missing+=(podman)
  command -v runc >/dev/null || missing+=(runc)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    fail "needs ${missing[*]}: install them (Debian/Ubuntu: apt-get install podman runc debootstrap) and run as root"
  fi
  printf 'image-test: installing %s\n' "${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

configure_podman() {
  local conf=/etc/containers/containers.conf
  if [ -f "$conf" ]; then
    grep -q '^[[:space:]]*default_ulimits' "$conf" ||
      fail "$conf exists without default_ulimits; add 'default_ulimits = []' to its [containers] table"
    return 0
  fi
  # A container that runs podman cannot raise the default nofile/nproc limits podman would ask for.
  mkdir -p /etc/containers
  printf '[containers]\ndefault_ulimits = []\n' >"$conf"
}

build_base() {
  if "${podman[@]}" image exists "$BASE_IMAGE"; then
    printf 'image-test: base image %s exists, kept\n' "$BASE_IMAGE"
    return 0
  fi
  [ "$BASE_IMAGE" = localhost/consumer-base:bookworm ] ||
    fail "base image $BASE_IMAGE not found: pull it first, or unset BASE_IMAGE to build one with debootstrap"
  [ "$(id -u)" -eq 0 ] || fail "debootstrap needs root"
  local mirror rootfs
  mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | grep -v security | head -n 1)
  mirror=${mirror:-http://deb.debian.org/debian}
  rootfs=$(mktemp -d /var/tmp/consumer-base.XXXXXX)
  if ! debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,openjdk-17-jre-headless \
    bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1; then
    tail -n 20 "$rootfs.log" >&2
    rm -rf "$rootfs"
    fail "debootstrap failed (log: $rootfs.log)"
  fi
  # The downloaded .deb files and package lists do not belong in an image (the Dockerfile runs apt-get update).
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | "${podman[@]}" import --quiet - "$BASE_IMAGE" >/dev/null
  rm -rf "$rootfs" "$rootfs.log"
}

timed "podman, runc, debootstrap" install_tools
timed "podman configuration" configure_podman
"${podman[@]}" --version
timed "base image $BASE_IMAGE" build_base
