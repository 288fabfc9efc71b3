#!/usr/bin/env bash
# Transfer learning over HTTP, measured on LFW View 1 (people disjoint between DevTrain and DevTest):
#   SIAMESE_DATA=/path/to/data scripts/lfw_transfer.sh [OUT]        (BIN=target/release/siamese by default)
# 1. starts `siamese serve` on a free port (SQLite and work folder in OUT, `--data-root $SIAMESE_DATA`);
# 2. enrols, over HTTP, every DevTrain person with ≥ 2 photos into the collection `lfw-devtrain`;
# 3. triggers a job from `face-dlib-r29-v1` on that collection (JOB, JSON; defaults below), whose gate judges
#    the candidate and the active model on the DevTest pairs (`gate_pairs`), and waits for it;
# 4. with SCRATCH=1, a second job: the same architecture from random weights, time-limited to the first
#    job's wall time.
# Prints each job's report (candidate vs active EER, AUC, TAR@FAR=1e-3 on the same 1,000 pairs) and wall time.
# LFW is an evaluation set: the candidate stays in OUT's database, never in models/.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${BIN:-$ROOT/target/release/siamese}
OUT=$(mkdir -p "${1:-out/lfw-transfer}" && cd "${1:-out/lfw-transfer}" && pwd)
: "${SIAMESE_DATA:?set SIAMESE_DATA to the datasets folder}"
LFW=$SIAMESE_DATA/lfw-view1
JOB=${JOB:-'{"base": "face-dlib-r29-v1", "collection": "lfw-devtrain", "gate_pairs": "lfw-view1/pairsDevTest.txt",
  "gate_images": "lfw-view1/lfw", "val_ratio": 0.1, "epochs": 4, "pk": {"p": 16, "k": 2, "steps": 40},
  "lr": 0.0001, "margin": 1.0, "freeze": ["stage0", "stage1", "stage2", "stage3"], "lr_mult": {"stage4": 0.09, "stage5": 0.3}}'}
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL=http://127.0.0.1:$PORT
# KEEP=1 keeps OUT's database (DevTrain already enrolled) and only runs the job(s).
[ "${KEEP:-0}" = 1 ] || rm -f "$OUT/db.sqlite"*
"$BIN" serve --bind "127.0.0.1:$PORT" --database-url "sqlite://$OUT/db.sqlite" --models "$ROOT/models" \
  --work-dir "$OUT/work" --data-root "$SIAMESE_DATA" --collection lfw-devtrain=face:face-dlib-r29-v1 \
  > "$OUT/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2> /dev/null || true' EXIT
until curl -fsS -o /dev/null "$URL/readyz" 2> /dev/null; do kill -0 $SERVER; sleep 0.5; done

t0=$(date +%s)
if [ "${KEEP:-0}" != 1 ]; then
people=$(awk 'NF == 3 {print $1} NF == 4 {print $1; print $3}' "$LFW/pairsDevTrain.txt" | sort -u)
n=0; images=0
for p in $people; do
  files=("$LFW/lfw/$p"/*.jpg)
  [ "${#files[@]}" -ge 2 ] || continue
  curl -fsS -o /dev/null -H 'content-type: application/json' -d "{\"name\": \"$p\"}" "$URL/v1/collections/lfw-devtrain/subjects"
  args=(); for f in "${files[@]}"; do args+=(-F "image=@$f"); done
  # 207: a photo without a face is refused, the others stored.
  curl -sS -o /dev/null -w '%{http_code}\n' "${args[@]}" "$URL/v1/collections/lfw-devtrain/subjects/$p/samples" \
    | grep -qE '^20[17]$'
  n=$((n + 1)); images=$((images + ${#files[@]}))
done
echo "enrolled $n DevTrain people ($images photos) over HTTP in $(( $(date +%s) - t0 )) s"
fi

run_job() {
  local id state t
  t=$(date +%s)
  id=$(curl -fsS -H 'content-type: application/json' -d "$1" "$URL/v1/jobs" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  while :; do
    state=$(curl -fsS "$URL/v1/jobs/$id" | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')
    case $state in succeeded|failed|cancelled) break ;; esac
    sleep 5
  done
  WALL=$(( $(date +%s) - t ))
  curl -fsS "$URL/v1/jobs/$id" > "$OUT/$2-job.json"
  echo "job $id ($2): $state in $WALL s"
  [ "$state" = succeeded ] || { python3 -m json.tool "$OUT/$2-job.json"; return 1; }
  curl -fsS "$URL/v1/jobs/$id/report" | tee "$OUT/$2-report.json" | python3 -c '
import json, sys
r = json.load(sys.stdin)
for who in ("active", "candidate"):
    m = r[who]
    print("  %-9s v%s: EER %.2f %% (%s), AUC %.4f, TAR@FAR=1e-3 %.1f %%; cosine EER %.2f %%, AUC %.4f" % (who,
          m["version"], 100 * m["eer"], m["metric"], m["auc"], 100 * m["tar_at_far_1e-3"], 100 * m["cosine"]["eer"],
          m["cosine"]["auc"]))
print("  pairs:", json.dumps(r["pairs"]), "| better:", r["better"])'
  curl -fsS -o "$OUT/$2-roc.png" "$URL/v1/jobs/$id/report/roc.png"
}
run_job "$JOB" transfer
if [ "${SCRATCH:-0}" = 1 ]; then
  minutes=$(python3 -c "print($WALL / 60)")
  scratch=$(python3 -c "import json,sys; j = json.loads(sys.argv[1]); j.update(from_scratch=True, freeze=[], lr_mult={}, lr=1e-3, epochs=1000, time_limit_min=$minutes); print(json.dumps(j))" "$JOB")
  run_job "$scratch" scratch
fi
