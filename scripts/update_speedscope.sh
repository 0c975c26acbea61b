#!/usr/bin/env bash
# Replace the speedscope viewer vendored in fntrace/analysis/speedscope_dist/ with
# the release build of the npm package `speedscope` at VERSION (default: the
# version vendored now).  npm checks the tarball's integrity against the
# registry; the build (dist/release/) is copied unchanged, with its licence and
# the package's, and VERSION records what was taken.  Needs npm.
#
#   scripts/update_speedscope.sh [VERSION]
set -euo pipefail
cd "$(dirname "$0")/.."
dest=fntrace/analysis/speedscope_dist
version=${1:-$(sed -n 's/^speedscope@//p' "$dest/VERSION" 2>/dev/null || true)}
version=${version:-1.25.0}
command -v npm >/dev/null || { echo "update_speedscope: npm is needed" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "speedscope@$version" >/dev/null)
tar -xzf "$work"/speedscope-"$version".tgz -C "$work"
[ -f "$work/package/dist/release/index.html" ] || {
  echo "update_speedscope: speedscope@$version has no dist/release/index.html" >&2; exit 1; }
[ -f "$work/package/dist/release/file-format-schema.json" ] || {
  echo "update_speedscope: speedscope@$version has no file-format-schema.json" >&2; exit 1; }
rm -rf "$dest"
mkdir -p "$dest"
cp "$work"/package/dist/release/* "$dest"/
cp "$work/package/LICENSE" "$dest/LICENSE"
echo "speedscope@$version" > "$dest/VERSION"
echo "update_speedscope: $dest now holds speedscope $version ($(ls "$dest" | wc -l) files)"
