#!/usr/bin/env bash
# What an app developer gets from `meson install`: installs the build into a
# scratch DESTDIR and, using only what was installed (through pkg-config),
#   - pkg-config --cflags --libs hinge works and points into the DESTDIR;
#   - examples/stream.c and threaded.c build (cc directly, and through
#     examples/Makefile where make is installed) and run against the
#     installed libhinge.so: stream gives the stories260K oracle, threaded
#     cancels and carries on with the same text;
#   - libhinge.so exports hinge_* symbols only and has a versioned soname;
#   - the one installed header is include/hinge/hinge.h;
#   - stream.c links against libhinge.a (pkg-config --static) and runs.
# Any mismatch fails the test with a line starting with FAIL.
#   test_install.sh MESON BUILD_DIR SOURCE_DIR SHARED_DIR
set -euo pipefail
meson=$1 build=$2 src=$3 shared=$4
stories=$shared/models/stories260K.gguf
oracle=$shared/oracles/stories260K-greedy-200.txt

tmp=$(mktemp -d /tmp/hinge-install-XXXXXX)
ok=0
cleanup() { if [ "$ok" = 1 ]; then rm -rf "$tmp"; else echo "kept $tmp" >&2; fi; }
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "== $*"; }

# The build's compiler and sanitizer: an instrumented libhinge needs
# instrumented apps.
read -r cc_cmd san < <(python3 - "$build/meson-info" <<'PY'
import json, sys
load = lambda name: json.load(open(f"{sys.argv[1]}/intro-{name}.json"))
opts = {o["name"]: o["value"] for o in load("buildoptions")}
cc = next(s["compiler"] for t in load("targets") for s in t["target_sources"] if s.get("language") == "c")
print(" ".join(cc), opts.get("b_sanitize", "none"))
PY
)
[ -n "$cc_cmd" ] || fail "meson introspect gave no C compiler"
extra=()
[ "$san" != none ] && extra=("-fsanitize=$san")

step "meson install --destdir $tmp/root"
"$meson" install --destdir "$tmp/root" --no-rebuild --quiet -C "$build" >"$tmp/install.log" 2>&1 ||
  { cat "$tmp/install.log" >&2; fail "meson install"; }
root=$tmp/root

step "pkg-config"
pcs=$(find "$root" -name hinge.pc -path '*/pkgconfig/*')
[ "$(printf '%s\n' "$pcs" | grep -c .)" = 1 ] || fail "expected one installed hinge.pc, found: ${pcs:-none}"
pcdir=$(dirname "$pcs")
libdir=$(dirname "$pcdir")
export PKG_CONFIG_PATH=$pcdir PKG_CONFIG_SYSROOT_DIR=$root
unset PKG_CONFIG_LIBDIR
cflags=$(pkg-config --cflags hinge) || fail "pkg-config --cflags hinge"
libs=$(pkg-config --libs hinge) || fail "pkg-config --libs hinge"
echo "cflags: $cflags"
echo "libs:   $libs"
for w in $cflags $libs; do
  case $w in
    -I* | -L*) case ${w:2} in "$root"/*) ;; *) fail "$w from pkg-config points outside $root" ;; esac ;;
  esac
done
case " $cflags " in *" -I$root/"*) ;; *) fail "no -I into $root in: $cflags" ;; esac
case " $libs " in *" -L$libdir "*) ;; *) fail "no -L$libdir in: $libs" ;; esac
case " $libs " in *" -lhinge "*) ;; *) fail "no -lhinge in: $libs" ;; esac

step "installed headers"
headers=$(cd "$root" && find . -path '*/include/*' ! -type d | sort)
if [ "$(printf '%s\n' "$headers" | grep -c .)" != 1 ] || [[ $headers != */include/hinge/hinge.h ]]; then
  fail "the installed headers should be include/hinge/hinge.h alone, are: $(echo "$headers" | tr '\n' ' ')"
fi

step "libhinge.so: exports and soname"
so=$libdir/libhinge.so
[ -L "$so" ] || fail "$so (the link-time name) is missing or not a symlink"
soname=$(readelf -d "$so" | sed -n 's/.*(SONAME).*\[\(.*\)\]$/\1/p')
[[ $soname =~ ^libhinge\.so\.[0-9]+(\.[0-9]+)*$ ]] || fail "soname '$soname' is not versioned (libhinge.so.N...)"
[ -e "$libdir/$soname" ] || fail "no $soname in $libdir for the soname"
echo "soname: $soname"
nm -D --defined-only "$so" | awk '{print $NF}' | sort >"$tmp/exports"
[ -s "$tmp/exports" ] || fail "nm -D shows no symbols in $so"
if grep -v '^hinge_' "$tmp/exports" >"$tmp/stray"; then
  fail "libhinge.so exports more than hinge_*: $(head -20 "$tmp/stray" | tr '\n' ' ')"
fi
echo "$(wc -l <"$tmp/exports") symbols, all hinge_*"
# Functions the header declares that the library lacks: an app calling one fails to link.
grep -o '\bhinge_[a-z0-9_]*(' "$root/${headers#./}" | tr -d '(' | sort -u >"$tmp/declared"
missing=$(comm -23 "$tmp/declared" "$tmp/exports" | tr '\n' ' ')
[ -z "$missing" ] || echo "NOTE: hinge.h declares functions libhinge.so does not define: $missing"

step "build the examples against the installed SDK"
mkdir -p "$tmp/bin" "$tmp/make"
for ex in stream threaded; do
  # shellcheck disable=SC2086  # word splitting of pkg-config output is intended
  $cc_cmd -std=c11 -Wall -Wextra -Wpedantic -Werror -pthread "${extra[@]}" $cflags -o "$tmp/bin/$ex" \
    "$src/examples/$ex.c" $libs || fail "cc $ex.c with pkg-config's flags"
done
if command -v make >/dev/null; then
  make -s -C "$src/examples" O="$tmp/make" CC="$cc_cmd" CFLAGS="-O2 -Wall -Wextra -Werror ${extra[*]}" \
    PKG_CONFIG=pkg-config >"$tmp/make.log" 2>&1 || { cat "$tmp/make.log" >&2; fail "make -C examples"; }
  if [ ! -x "$tmp/make/stream" ] || [ ! -x "$tmp/make/threaded" ]; then
    fail "make -C examples did not build stream and threaded"
  fi
else
  echo "NOTE: no make here: examples/Makefile not exercised (cc above did the same build)"
fi

step "run against the installed libhinge.so"
export LD_LIBRARY_PATH=$libdir
where=$(ldd "$tmp/bin/stream" | awk '/libhinge/ {print $3}')
[[ $where == "$libdir"/* ]] || fail "stream loads libhinge from '$where', not from $libdir"
printf '%s\n' "$(cat "$oracle")" >"$tmp/oracle.txt" # the oracle has no trailing newline; stream adds one
for bin in "$tmp/bin" "$tmp/make"; do
  [ -x "$bin/stream" ] || continue
  timeout 30 "$bin/stream" "$stories" "" 200 >"$tmp/stream.out" 2>"$tmp/stream.err" ||
    { rc=$?; cat "$tmp/stream.err" >&2; fail "$bin/stream exited $rc"; }
  cmp -s "$tmp/stream.out" "$tmp/oracle.txt" ||
    fail "$bin/stream's text differs from the oracle: $(head -c 200 "$tmp/stream.out")"
done
echo "stream: the oracle, byte for byte"

timeout 30 "$tmp/bin/threaded" "$stories" 0 >"$tmp/threaded.out" 2>"$tmp/threaded.err" ||
  { rc=$?; cat "$tmp/threaded.err" >&2; fail "threaded exited $rc"; }
cat "$tmp/threaded.err"
grep -q '^worker: cancelled; .* stop: cancelled;' "$tmp/threaded.err" || fail "threaded: the worker was not cancelled"
grep -Eq '^main: success; [0-9]+ prompt \+ 16 generated tokens, stop: length;' "$tmp/threaded.err" ||
  fail "threaded: the session did not carry on after the cancel"
# the text before and after the cancel is one greedy text: it agrees with the oracle where both have text
python3 - "$tmp/threaded.out" "$oracle" <<'PY' || fail "threaded's text is not the greedy text"
import sys
got = open(sys.argv[1], "rb").read().rstrip(b"\n")
ref = open(sys.argv[2], "rb").read()
n = min(len(got), len(ref))
sys.exit(0 if n > 0 and got[:n] == ref[:n] else 1)
PY
echo "threaded: cancelled, carried on, text agrees with the oracle"

step "link stream.c against libhinge.a (pkg-config --static)"
static_libs=$(pkg-config --static --libs hinge) || fail "pkg-config --static --libs hinge"
echo "static libs: $static_libs"
[ -f "$libdir/libhinge.a" ] || fail "no libhinge.a in $libdir"
# libraries of libhinge's dependencies' own static closures (libcurl's
# -lrtmp, -lssh2, ...) need dev packages Debian does not pull in; they are
# not needed when those dependencies link shared. hinge.pc's own libraries
# and its direct dependencies' must all be there.
mapfile -t requires < <(pkg-config --print-requires-private hinge)
direct=" $(pkg-config --libs "${requires[@]}") -lhinge -lm "
use=() dropped=()
for w in $static_libs; do
  if [[ $w == -l* && $w != -lhinge ]] &&
     ! echo 'int main(void){return 0;}' | $cc_cmd -x c - -o /dev/null "$w" 2>/dev/null; then
    [[ $direct == *" $w "* ]] && fail "$w, which libhinge needs, does not link"
    dropped+=("$w")
    continue
  fi
  [ "$w" = -lhinge ] && w=-l:libhinge.a
  use+=("$w")
done
[ ${#dropped[@]} = 0 ] ||
  echo "NOTE: left out $(printf '%s\n' "${dropped[@]}" | sort -u | tr '\n' ' ')(libcurl's static closure: its dev" \
    "packages are not installed, and libcurl links shared here)"
# shellcheck disable=SC2086
$cc_cmd -std=c11 -Wall -Wextra -Werror "${extra[@]}" $cflags -o "$tmp/bin/stream-static" "$src/examples/stream.c" \
  "${use[@]}" || fail "linking stream.c against libhinge.a"
if readelf -d "$tmp/bin/stream-static" | grep -q 'NEEDED.*libhinge'; then
  fail "stream-static still needs libhinge.so"
fi
env -u LD_LIBRARY_PATH timeout 30 "$tmp/bin/stream-static" "$stories" "" 200 >"$tmp/static.out" ||
  fail "stream-static exited $?"
cmp -s "$tmp/static.out" "$tmp/oracle.txt" || fail "stream-static's text differs from the oracle"
echo "stream-static: the oracle, byte for byte"
if [ ${#dropped[@]} != 0 ] || ! command -v make >/dev/null; then
  echo "NOTE: make -C examples static not run (libraries left out above, or no make)"
else
  make -s -C "$src/examples" O="$tmp/make" CC="$cc_cmd" CFLAGS="-O2 -Wall -Wextra -Werror ${extra[*]}" \
    PKG_CONFIG=pkg-config static >"$tmp/make.log" 2>&1 || { cat "$tmp/make.log" >&2; fail "make -C examples static"; }
  env -u LD_LIBRARY_PATH timeout 30 "$tmp/make/stream-static" "$stories" "" 200 | cmp -s - "$tmp/oracle.txt" ||
    fail "make's stream-static differs from the oracle"
  echo "make static: the same"
fi
ok=1
echo "install: OK"
