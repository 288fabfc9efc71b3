#!/usr/bin/env bash
# Runs every README.md block fenced as ```sh runnable, in order, against a fresh server:
#   BIN=target/release/siamese SIAMESE_DATA=/path/to/data bash scripts/check-readme.sh
# It starts `$BIN serve` on a free port with an empty SQLite database in a temporary folder, lays out the sample
# files the blocks name (copies of real images from $SIAMESE_DATA, only ever inside that temporary folder), and
# runs the blocks there as one bash script (set -euo pipefail), so a block may use a variable set by an earlier
# one. The README speaks of 127.0.0.1:8080; the checker rewrites `127.0.0.1:8080` and ` :8080` in each block to
# the port it chose. Curl calls in runnable blocks must use -f (-fsS), so a non-2xx answer fails the block; the
# checker refuses a block whose curl lacks it. `$BIN`'s folder is put first on PATH, so blocks call `siamese`.
# MODELS (default: the repository's models/) is the folder the server loads; README (default README.md) the file
# checked; VERBOSE=1 prints the blocks' output.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BIN=${BIN:-target/release/siamese}
die() { echo "check-readme: $*" >&2; exit 1; }
[ -x "$BIN" ] || die "no executable binary at $BIN (run \`make build\`, or set BIN)"
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
[ -n "${SIAMESE_DATA:-}" ] || die "SIAMESE_DATA is not set: point it at the folder holding lfw-view1/, cedar-dev/, att_faces/"
[ -d "$SIAMESE_DATA" ] || die "SIAMESE_DATA=$SIAMESE_DATA is not a folder"
SIAMESE_DATA=$(cd "$SIAMESE_DATA" && pwd)
for d in lfw-view1/lfw cedar-dev/full_org cedar-dev/full_forg att_faces; do
  [ -d "$SIAMESE_DATA/$d" ] || die "missing $SIAMESE_DATA/$d"
done
MODELS=$(cd "${MODELS:-models}" && pwd)
for m in face-dlib-r29-v1 mtcnn-v1; do
  [ -s "$MODELS/$m/weights.safetensors" ] || die "$MODELS/$m/weights.safetensors is missing (\`make build\` makes it)"
done
command -v curl > /dev/null || die "curl is needed"

TMP=$(mktemp -d -t siamese-readme.XXXXXX)
SERVER=
cleanup() {
  local rc=$?
  if [ -n "$SERVER" ]; then kill "$SERVER" 2> /dev/null || true; wait "$SERVER" 2> /dev/null || true; fi
  if [ "$rc" -ne 0 ] && [ -f "$TMP/server.log" ]; then
    echo "--- end of the server log ---" >&2; tail -n 12 "$TMP/server.log" >&2
  fi
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The runnable blocks, and a lint: every curl in them uses -f.
BLOCKS=$TMP/blocks
mkdir "$BLOCKS"
awk -v dir="$BLOCKS" '
  /^```sh runnable[[:space:]]*$/ { n++; f = sprintf("%s/%03d.sh", dir, n); inb = 1; printf "" > f; next }
  inb && /^```[[:space:]]*$/ { inb = 0; close(f); next }
  inb { print > f }
  END { if (inb) { print "unterminated runnable block " n > "/dev/stderr"; exit 1 } }
' "${README:-README.md}"
N=$(find "$BLOCKS" -name '*.sh' | wc -l)
[ "$N" -gt 0 ] || die "${README:-README.md} has no \`\`\`sh runnable blocks"
bad=$(grep -n 'curl ' "$BLOCKS"/*.sh | grep -v -E 'curl +-[A-Za-z]*f' || true)
[ -z "$bad" ] || die "curl without -f in a runnable block (a non-2xx answer would pass): $bad"

# A free port: ask the kernel through python3, else try 18080..18099.
free_port() {
  if command -v python3 > /dev/null; then
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' && return
  fi
  for p in $(seq 18080 18099); do
    (exec 3<> "/dev/tcp/127.0.0.1/$p") 2> /dev/null || { echo "$p"; return; }
  done
  return 1
}
PORT=$(free_port) || die "no free port"

# Sample files, copied from the datasets into the temporary folder.
# Faces: the first LFW person (by name) with at least 5 photos; a.jpg/b.jpg and a1/a2/probe are theirs.
person=
for d in "$SIAMESE_DATA"/lfw-view1/lfw/*/; do
  [ "$(find "$d" -maxdepth 1 -name '*.jpg' | wc -l)" -ge 5 ] && { person=$d; break; }
done
[ -n "$person" ] || die "no LFW person with 5 photos under $SIAMESE_DATA/lfw-view1/lfw"
mapfile -t photos < <(find "$person" -maxdepth 1 -name '*.jpg' | sort)
cp "${photos[0]}" "$TMP/a.jpg"; cp "${photos[1]}" "$TMP/b.jpg"
cp "${photos[2]}" "$TMP/a1.jpg"; cp "${photos[3]}" "$TMP/a2.jpg"; cp "${photos[4]}" "$TMP/probe.jpg"
# Signatures: CEDAR writer 42, genuine 1 and 2 enrolled, genuine 3 questioned.
C=$SIAMESE_DATA/cedar-dev/full_org
cp "$C/original_42_1.png" "$TMP/g1.png"; cp "$C/original_42_2.png" "$TMP/g2.png"
cp "$C/original_42_3.png" "$TMP/questioned.png"

export DATABASE_URL="sqlite://$TMP/db.sqlite"   # `siamese keys create` in a block finds the server's database
export SIAMESE_DATA
(cd "$TMP" && exec "$BIN" serve --bind "127.0.0.1:$PORT" --database-url "$DATABASE_URL" --models "$MODELS" \
  --data-root "$SIAMESE_DATA") \
  > "$TMP/server.log" 2>&1 &
SERVER=$!
echo "README: server $BIN on 127.0.0.1:$PORT (pid $SERVER), $N runnable blocks"
ready=
for _ in $(seq 1 240); do
  kill -0 "$SERVER" 2> /dev/null || die "the server exited before it was ready"
  if curl -fsS -o /dev/null "http://127.0.0.1:$PORT/readyz" 2> /dev/null; then ready=1; break; fi
  sleep 0.5
done
[ -n "$ready" ] || die "GET /readyz did not answer 200 within 120 s"

# One script of all blocks, each announced by its first line.
SCRIPT=$TMP/readme-blocks.sh
i=0
for f in "$BLOCKS"/*.sh; do
  i=$((i + 1))
  head -n 1 "$f" > "$TMP/head-$i"
  printf 'echo "== [%d/%d] $(cat %q)" >&3\n' "$i" "$N" "$TMP/head-$i" >> "$SCRIPT"
  sed -e "s/127\.0\.0\.1:8080/127.0.0.1:$PORT/g" -e "s/ :8080/ :$PORT/g" "$f" >> "$SCRIPT"
  printf '\n' >> "$SCRIPT"
done
LOG=$TMP/blocks.log
set +e
# Progress (fd 3) goes to the terminal as the blocks run; their own output goes to the log.
(cd "$TMP" && PATH="$(dirname "$BIN"):$PATH" timeout 150 bash -euo pipefail "$SCRIPT") 3>&1 > "$LOG" 2>&1
rc=$?
set -e
[ "${VERBOSE:-0}" = 0 ] || cat "$LOG"
if [ "$rc" -ne 0 ]; then
  echo "--- end of the blocks' output ---" >&2; tail -c 1500 "$LOG" >&2; echo >&2
  die "a runnable block failed (exit $rc)"
fi
echo "README: $N runnable blocks passed"
