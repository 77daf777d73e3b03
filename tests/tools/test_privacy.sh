#!/usr/bin/env bash
# `hinge experiment privacy` end to end on stories260K (seconds):
#   test_privacy.sh HINGE_BINARY SHARED_DIR SOURCE_DIR
# - the attack is right: f32 wire, no defence, k = 1: at least 90% of the
#   prompt tokens come back (the bar; the attack gets them all);
# - strong noise lowers recovery and its perplexity cost is reported;
# - the CSV has the documented columns, the JSON summary its cells, and the
#   plot script draws both PNGs from them;
# - the JSON is a privacy profile: hinge generate --max-recovery refuses a
#   fixed cut it shows over the policy.
set -uo pipefail
hinge=$1 shared=$2 src=$3
stories="$shared/models/stories260K.gguf"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0

check() { # name, then a command that must succeed
  local name=$1; shift
  if "$@"; then pass=$((pass + 1)); echo "ok - $name"; else fail=$((fail + 1)); echo "not ok - $name"; fi
}

"$hinge" experiment privacy --model "$stories" --cuts 1 --codecs f32 --noise 0,2 --out "$tmp/out" \
  --prompts "$src/tests/data/privacy-prompts.txt" --passage "$src/tests/data/passage.txt" --n-prompts 12 \
  --gen 60 --no-plots >"$tmp/log" 2>&1
check "the experiment runs" test $? -eq 0
cat "$tmp/log"

check "k=1, f32, no noise: token recovery >= 0.90; noise 2 recovers less, at a perplexity cost" python3 -c "
import csv
rows = {float(r['noise']): r for r in csv.DictReader(open('$tmp/out/privacy.csv'))}
for k in ('cut', 'codec', 'noise', 'token_recovery', 'exact_prompt', 'attack_s_per_position', 'ppl', 'ppl_cost',
          'greedy_agreement'):
    assert k in rows[0.0], k
clean, noisy = rows[0.0], rows[2.0]
assert clean['cut'] == '1' and clean['codec'] == 'f32'
assert int(clean['positions']) > 12 * 7, clean
assert float(clean['token_recovery']) >= 0.90, clean
assert float(noisy['token_recovery']) < float(clean['token_recovery']), (clean, noisy)
assert float(clean['ppl_cost']) == 0.0 and float(clean['greedy_agreement']) == 1.0, clean
assert float(noisy['ppl_cost']) > 0.1 and float(noisy['greedy_agreement']) < 1.0, noisy
"

check "the JSON summary holds every cell" python3 -c "
import json
d = json.load(open('$tmp/out/privacy.json'))
assert d['kind'] == 'hinge-privacy-profile' and len(d['sha256']) == 64 and d['n_layer'] == 5, d
assert len(d['cells']) == 2 and d['attack']['prompts'] == 12, d
assert all(0.0 <= c['token_recovery'] <= 1.0 for c in d['cells']), d
"

py=/usr/bin/python3 # Debian's, where scripts/setup installs python3-matplotlib
[ -x "$py" ] || py=python3
check "the plot script draws both PNGs" "$py" "$src/scripts/privacy-plot" "$tmp/out"
check "the PNGs are there" test -s "$tmp/out/recovery_vs_cut.png" -a -s "$tmp/out/recovery_vs_cost.png"

# The device's noise: a fixed --noise-seed gives the same text, and noise
# of 1x the RMS changes it.
plain=$("$hinge" generate --model "$stories" --prompt "Once upon a time" -n 16 --temp 0 --cut 2 2>/dev/null)
n1=$("$hinge" generate --model "$stories" --prompt "Once upon a time" -n 16 --temp 0 --cut 2 --noise 1 --noise-seed 5 2>/dev/null)
n2=$("$hinge" generate --model "$stories" --prompt "Once upon a time" -n 16 --temp 0 --cut 2 --noise 1 --noise-seed 5 2>/dev/null)
check "noise with a fixed seed is reproducible" test -n "$n1" -a "$n1" = "$n2"
check "noise changes the text" test "$n1" != "$plain"

# The policy with a fixed cut: hinge generate refuses a (cut, wire, noise)
# the profile measured over --max-recovery, or did not measure at all.
gen() { "$hinge" generate --model "$stories" --prompt "Once" -n 4 --temp 0 --privacy-profile "$tmp/out/privacy.json" "$@" \
  >/dev/null 2>"$tmp/gen.err"; }
refused() { ! gen "$@"; }
check "over the policy: refused" refused --cut 1 --max-recovery 0.9
check "the refusal says why" grep -q "over the policy" "$tmp/gen.err"
check "unmeasured (q8): refused" refused --cut 1 --wire q8 --max-recovery 0.9
check "noise 2 brings k=1 under 0.9: allowed" gen --cut 1 --noise 2 --max-recovery 0.9
check "everything on the device: allowed" gen --cut 5 --max-recovery 0.01
check "a policy needs a profile" bash -c "! '$hinge' generate --model '$stories' --prompt Once -n 2 --cut 1 --max-recovery 0.5 >/dev/null 2>&1"

# hinge partition reads the same profile: with noise 2 only k=1 (measured at
# 0.707) is within 0.9; every other split is refused, k=N stays possible.
"$hinge" partition --model "$stories" --device "$src/profiles/devices/snapdragon-8-gen3.json" \
  --channel "$src/profiles/channels/wifi6.json" --edge "$src/profiles/edges/h100-sxm.json" --codecs f32 \
  --max-recovery 0.9 --noise 2 --privacy-profile "$tmp/out/privacy.json" --json >"$tmp/plan.json" 2>"$tmp/plan.err"
check "hinge partition applies the policy" python3 -c "
import json
d = json.load(open('$tmp/plan.json'))
assert d['policy']['max_recovery'] == 0.9 and d['policy']['noise'] == 2, d['policy']
why = {c['cut']: c['why'] for c in d['candidates']}
assert why[1] == 'ok' and why[5] == 'ok', why
assert all('privacy' in why[k] for k in (0, 2, 3, 4)), why
assert d['cut'] in (1, 5), d['cut']
"

check "bad arguments are usage errors" bash -c "'$hinge' experiment privacy --model '$stories' --cuts 1 --codecs f64 \
  --noise 0 --out '$tmp/x' >/dev/null 2>&1; test \$? -eq 2"

echo "# $pass passed, $fail failed"
[ "$fail" -eq 0 ]
