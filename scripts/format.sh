#!/usr/bin/env bash
# Formats moat's C sources with the root .clang-format (clang-format 14, Debian 12).
#
#   scripts/format.sh           rewrite every file in place
#   scripts/format.sh --check   change nothing; list unformatted files, exit 1 if any
#
# The test command runs --check (a meson test, suite "format"), so unformatted C
# fails the build's tests, as a compile warning does.
set -euo pipefail
cd "$(dirname "$0")/.."
fmt=$(command -v clang-format-14 || command -v clang-format || true)
[ -n "$fmt" ] || { echo "format.sh: clang-format not found (scripts/install-deps.sh --test)" >&2; exit 2; }
mapfile -t files < <(git ls-files --cached --others --exclude-standard -- 'src/*.[ch]' 'tests/*.[ch]' 2>/dev/null ||
                     find src tests -name '*.[ch]')
if [ "${1:-}" != "--check" ]; then
    "$fmt" -i "${files[@]}"
    exit 0
fi
bad=0
for f in "${files[@]}"; do
    [ -f "$f" ] || continue
    if ! "$fmt" "$f" | cmp -s - "$f"; then
        echo "unformatted: $f (scripts/format.sh rewrites it)"
        bad=1
    fi
done
[ "$bad" -eq 0 ] && echo "format: ${#files[@]} files formatted"
exit "$bad"
