#!/usr/bin/env bash
# The crate's layering, checked (run by `make lint`, so by CI). Dependencies point one way:
#   cli, startup → api → jobs → catalog → gallery → pipeline → runtime → model (jobs also → train)
# and HTTP lives in `api` alone. Comment lines are not code and are skipped.
# Also: no file in src/ over 500 lines unless its first comment says why ("over 500 lines").
set -euo pipefail
cd "$(dirname "$0")/.."
fail=0

# Lines of code (not comments) in FILES matching the extended regex PATTERN.
code_matching() {
  local pattern=$1; shift
  grep -HnE "$pattern" "$@" 2>/dev/null | grep -vE '^[^:]+:[0-9]+:[[:space:]]*//' || true
}

violation() {
  echo "layering: $1" >&2
  echo "$2" | sed 's/^/    /' >&2
  fail=1
}

below_api=$(find src -name '*.rs' ! -path 'src/api/*' ! -path 'src/cli/*' ! -name startup.rs ! -name main.rs ! -name lib.rs)
hits=$(code_matching '\baxum\b|\bhttp::|tower_http|crate::(api|cli|startup)\b' $below_api)
[ -z "$hits" ] || violation "modules below api use HTTP, api, cli or startup" "$hits"

hits=$(code_matching 'crate::(train|gallery|pipeline|runtime|store|api|cli|startup)\b' $(find src/model -name '*.rs'))
[ -z "$hits" ] || violation "model depends on a layer above it" "$hits"

hits=$(code_matching '\btch\b' src/model/card.rs)
[ -z "$hits" ] || violation "the model card (src/model/card.rs) uses tch" "$hits"

hits=$(code_matching 'crate::(gallery|api|cli|startup|store)\b' $(find src/pipeline src/runtime -name '*.rs'))
[ -z "$hits" ] || violation "pipeline/runtime depend on a layer above them" "$hits"

hits=$(code_matching 'crate::(jobs|catalog|api|cli|startup)\b' $(find src/train -name '*.rs'))
[ -z "$hits" ] || violation "train depends on a layer above it (jobs call the trainer, not the other way)" "$hits"

hits=$(code_matching '\.store\(\)' $(find src/api -name '*.rs'))
[ -z "$hits" ] || violation "api reaches the store around the galleries (use Galleries' methods)" "$hits"

for f in $(find src -name '*.rs'); do
  n=$(wc -l < "$f")
  if [ "$n" -gt 500 ] && ! head -n 20 "$f" | grep -q 'over 500 lines'; then
    violation "$f has $n lines and its first comment does not say why it is one unit ('over 500 lines')" ""
  fi
done

[ "$fail" = 0 ] && echo "layering: ok ($(find src -name '*.rs' | wc -l) files)"
exit "$fail"
