#!/usr/bin/env bash
# Checks what each package would publish, from the tarball `pnpm pack` makes of its built dist/:
#   publint --strict          the package.json fields, exports and files;
#   attw --profile esm-only   that every entry point resolves to types and JavaScript under
#                             node16 and bundler module resolution (the packages are ESM only).
# Run after `pnpm build` (./dev test does).
set -euo pipefail
cd "$(dirname "$0")/.."

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

for dir in packages/*/; do
  name="$(node -p "require('./${dir}package.json').name")"
  echo "[check-packages] $name"
  (cd "$dir" && publint --strict)
  tarball="$(cd "$dir" && pnpm pack --pack-destination "$out" --config.ignore-scripts=true | tail -n 1)"
  attw "$tarball" --profile esm-only --format table-flipped --no-emoji --no-color --no-summary
done
