#!/usr/bin/env bash
# Checks what each package would publish, from the tarball `pnpm pack` makes of its built dist/:
#   publint --strict          the package.json fields, exports and files;
#   attw --profile esm-only   that every entry point resolves to types and JavaScript under
#                             node16 and bundler module resolution (the packages are ESM only);
#   private packages          that the packed package.json names no private workspace package
#                             (e.g. @tsraft/bench-cli) in any of its dependency fields: they are
#                             not on the registry. Tooling they provide goes in the root
#                             package.json's devDependencies instead.
# Run after `pnpm build` (./dev test does).
set -euo pipefail
cd "$(dirname "$0")/.."

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

# The names of the workspace's private packages, as a JSON array.
private="$(pnpm ls -r --depth -1 --json | node -e '
  const projects = JSON.parse(require("node:fs").readFileSync(0, "utf8"));
  console.log(JSON.stringify(projects.filter((p) => p.private && p.name).map((p) => p.name)));
')"
if [[ "$private" != *'"@tsraft/bench-cli"'* ]]; then
  echo "[check-packages] pnpm ls did not list @tsraft/bench-cli as private: $private" >&2
  exit 1
fi

for dir in packages/*/; do
  name="$(node -p "require('./${dir}package.json').name")"
  echo "[check-packages] $name"
  (cd "$dir" && publint --strict)
  tarball="$(cd "$dir" && pnpm pack --pack-destination "$out" --config.ignore-scripts=true | tail -n 1)"
  attw "$tarball" --profile esm-only --format table-flipped --no-emoji --no-color --no-summary
  tar -xOzf "$tarball" package/package.json | PRIVATE="$private" node -e '
    const manifest = JSON.parse(require("node:fs").readFileSync(0, "utf8"));
    const isPrivate = new Set(JSON.parse(process.env.PRIVATE));
    const fields = ["dependencies", "devDependencies", "peerDependencies", "optionalDependencies"];
    const named = fields.flatMap((field) =>
      Object.keys(manifest[field] ?? {})
        .filter((dependency) => isPrivate.has(dependency))
        .map((dependency) => `${field} ${dependency}`),
    );
    if (named.length > 0) {
      console.error(
        `[check-packages] ${manifest.name}: the packed package.json names private workspace packages, which are not on the registry: ${named.join(", ")}`,
      );
      process.exit(1);
    }
  '
done
