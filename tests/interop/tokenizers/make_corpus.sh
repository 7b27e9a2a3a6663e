#!/usr/bin/env bash
# Re-creates the corpus files copied from elsewhere (see README.md): Debian's Apache-2.0 and
# GPL-3 license texts (GPL-3 cut to its first 28,000 bytes) and one C++ source of this repo.
# The hand-written files (multilingual.txt, special_tokens.txt and the small edge cases) are
# committed as they are. Run from anywhere; writes into corpus/ beside this script.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)/corpus
repo=$(cd "$here/../../../.." && pwd)
cp /usr/share/common-licenses/Apache-2.0 "$here/license_apache2.txt"
head -c 28000 /usr/share/common-licenses/GPL-3 > "$here/license_gpl3_head.txt"
cp "$repo/ir/edit.cpp" "$here/code_edit_cpp.txt"
