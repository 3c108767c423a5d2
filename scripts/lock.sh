#!/usr/bin/env bash
# Refresh requirements/lock.txt: every dependency of every extra (all, test) pinned, torch excluded (it is
# pinned in requirements/torch.txt and installed first). Run after changing pyproject.toml's dependencies;
# commit the result. Resolves for this platform (Linux x86_64, Python 3.11). ~2 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
tools=$(mktemp -d)
trap 'rm -rf "$tools"' EXIT
"$PY" -m venv "$tools/venv"
"$tools/venv/bin/pip" install -q --disable-pip-version-check pip-tools==7.6.2
"$tools/venv/bin/pip-compile" -q --extra all --extra test --unsafe-package torch --strip-extras \
  --no-emit-index-url --no-emit-find-links --no-emit-options -c requirements/torch.txt \
  -o requirements/lock.txt pyproject.toml
sed -i 's#--constraint=[^ ]*torch.txt#--constraint=requirements/torch.txt#; s#-c /[^ ]*/requirements/torch.txt#-c requirements/torch.txt#' \
  requirements/lock.txt
# the project itself is installed by setup.sh (editable, no deps); pip-compile pins it by this machine's path
sed -i '/^kronos-batch @ file:/,+1d' requirements/lock.txt
if grep -q 'file://' requirements/lock.txt; then
  echo "lock.sh: requirements/lock.txt still names a local path:" >&2
  grep -n 'file://' requirements/lock.txt >&2
  exit 1
fi
echo "wrote requirements/lock.txt ($(grep -c '==' requirements/lock.txt) pins)"
