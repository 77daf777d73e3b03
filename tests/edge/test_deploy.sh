#!/usr/bin/env bash
# docs/deploy: the systemd unit passes `systemd-analyze verify` (no
# warning either) with ExecStart pointed at the built hinge-edge, and
# hinge-edge takes every key of the example config. Skipped (77) without
# systemd-analyze. No container engine runs here: the Containerfile is not
# built by any test (docs/deploy/README.md).
#   test_deploy.sh HINGE_EDGE DEPLOY_DIR
set -u
edge=$1 deploy=$2
fail=0
tmp=$(mktemp -d /tmp/hinge-deploy-test-XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# every key of edge.conf is an option with a valid value (--help stops after parsing)
if "$edge" --config "$deploy/edge.conf" --help >/dev/null 2>"$tmp/conf.err"; then
  echo "ok - edge.conf parses"
else
  echo "not ok - edge.conf: $(cat "$tmp/conf.err")"; fail=1
fi

if ! command -v systemd-analyze >/dev/null; then
  echo "# systemd-analyze not installed: skipping the unit check"
  exit $((fail ? 1 : 77))
fi
sed "s|/usr/local/bin/hinge-edge|$edge|" "$deploy/hinge-edge.service" >"$tmp/hinge-edge.service"
if timeout 60 systemd-analyze verify "$tmp/hinge-edge.service" >"$tmp/verify.out" 2>&1 && ! [ -s "$tmp/verify.out" ]; then
  echo "ok - systemd-analyze verify hinge-edge.service"
else
  echo "not ok - systemd-analyze verify:"; cat "$tmp/verify.out"; fail=1
fi
exit $fail
