#!/usr/bin/env bash
# Make a local Debian base image (python3 + pip, nothing else) for `scbp-edge package --build`
# on machines that reach Debian's mirror and PyPI but no container registry.
#   scripts/make_base_image.sh [TAG]      (default localhost/scbp-base:bookworm; needs root + debootstrap)
# Then: scbp-edge package RUN -o ctx --base-image localhost/scbp-base:bookworm --build
set -euo pipefail
tag=${1:-localhost/scbp-base:bookworm}
mirror=${SCBP_DEBIAN_MIRROR:-http://deb.debian.org/debian}
if [[ -n ${SCBP_CONTAINER_ENGINE:-} ]]; then engine=$SCBP_CONTAINER_ENGINE
elif command -v docker >/dev/null && docker version >/dev/null 2>&1; then engine=docker
elif command -v podman >/dev/null; then engine=podman
else echo "error: neither docker nor podman is installed (apt-get install podman)" >&2; exit 2; fi
command -v debootstrap >/dev/null || { echo "error: debootstrap is missing (apt-get install debootstrap)" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
debootstrap --variant=minbase --include=python3,python3-pip,ca-certificates bookworm "$work/rootfs" "$mirror" \
  > "$work/debootstrap.log" || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
r=$work/rootfs
# What an image never needs: package caches and lists, documentation, translations.
rm -rf "$r"/var/cache/apt/* "$r"/var/lib/apt/lists/* "$r"/usr/share/doc/* "$r"/usr/share/man/* \
  "$r"/usr/share/info/* "$r"/var/log/*
find "$r/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} +
# pip inside the build must trust what this host trusts (a TLS-inspecting proxy's CA, say).
cp /etc/ssl/certs/ca-certificates.crt "$r/etc/ssl/certs/ca-certificates.crt"
tar -C "$r" -c . | "$engine" import --change 'CMD ["python3"]' - "$tag" >/dev/null
echo "$tag"
