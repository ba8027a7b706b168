#!/usr/bin/env bash
# The task commands on the runtime install (`pip install -e ".[audio,image,data]"`), and a feature of another
# extra, which must say in one line which extra to install. Usage: .ci/runtime_smoke.sh VENV
set -euo pipefail
venv=${1:?usage: runtime_smoke.sh VENV}
aromni="$venv/bin/aromni"
inputs=src/aromni/toyworld/assets/demo_inputs
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$aromni" tts --model toy --threads 1 --text "a big red circle at the top left on white" --out "$out/tts.wav"
"$aromni" asr --model toy --threads 1 --audio "$inputs/asr.wav"
"$aromni" caption --model toy --threads 1 --image "$inputs/image.png"
"$aromni" t2i --model toy --threads 1 --text "a small blue square in the middle on white" --out "$out/t2i.png" --seed 0
test -s "$out/tts.wav" && test -s "$out/t2i.png"
# `aromni plot` needs matplotlib (the train extra), which the runtime install lacks: one line, exit 2.
echo '{"step": 1, "loss": 1.0}' > "$out/metrics.jsonl"
set +e
"$aromni" plot "$out" --out "$out/loss.png" > "$out/plot.out" 2> "$out/plot.err"
code=$?
set -e
cat "$out/plot.err"
if [ "$code" != 2 ] || [ "$(wc -l < "$out/plot.err")" != 1 ] || ! grep -q 'pip install "aromni\[train\]"' "$out/plot.err"; then
  echo "runtime smoke: 'aromni plot' without matplotlib must print one line naming the train extra and exit 2 (exit $code)" >&2
  exit 1
fi
echo "runtime smoke: task commands ran on the runtime install"
