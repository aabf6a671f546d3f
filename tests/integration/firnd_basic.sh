#!/usr/bin/env bash
# firnd_basic.sh - the daemon's contract with an operator, on the real binary:
#   * bad configuration exits 2 with one line naming the problem
#   * a second firnd on the same data dir is refused
#   * SIGTERM stops it cleanly (exit 0) and a restart finds its catalog
# usage: firnd_basic.sh FIRND
set -u
FIRND=$1
fail() { echo "FAIL: $*"; exit 1; }
DIR=$(mktemp -d /var/tmp/firn-basic-XXXXXX)
PID=
cleanup() { [ -n "$PID" ] && kill -9 "$PID" 2>/dev/null; rm -rf "$DIR"; }
trap cleanup EXIT

expect_exit2() { # name, expected text, args...
	local name=$1 text=$2; shift 2
	local out rc
	out=$("$FIRND" "$@" 2>&1); rc=$?
	[ $rc -eq 2 ] || fail "$name: exit $rc, want 2 (output: $out)"
	echo "$out" | grep -qF -- "$text" || fail "$name: '$out' does not say '$text'"
	echo "ok: $name -> $out"
}

printf 'writers = 1\nsegmnet_size = 1M\n' > "$DIR/typo.conf"
expect_exit2 "unknown key" "typo.conf:2: unknown key 'segmnet_size'" --config "$DIR/typo.conf"
expect_exit2 "missing file" "reading config file" --config "$DIR/nope.conf"
expect_exit2 "bad api" "is not ADDR:PORT" --api localhost --data-dir "$DIR/d"
expect_exit2 "bad net" "'socket' or 'dpdk'" --net carrier --data-dir "$DIR/d"
expect_exit2 "bad flag" "usage" --frobnicate
expect_exit2 "set unknown key" "unknown key 'nosuch'" --set nosuch=1 --data-dir "$DIR/d"
expect_exit2 "set without =" "--set wants KEY=VALUE" --set writers --data-dir "$DIR/d"
expect_exit2 "too many rx queues" "17 is outside 1..16" --rx-queues 17 --data-dir "$DIR/d"
expect_exit2 "dedupe window" "must be a power of two" --set dedupe_window=1000 --data-dir "$DIR/d"
printf 'kek = 1234\n' > "$DIR/kek.conf"
expect_exit2 "bad kek" "64 hex digits" --config "$DIR/kek.conf" --data-dir "$DIR/d"

port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
P=$(port)
"$FIRND" --data-dir "$DIR/d" --api 127.0.0.1:$P --listen 127.0.0.1:$(port) --pidfile "$DIR/pid" 2>"$DIR/log" &
PID=$!
for _ in $(seq 100); do [ -f "$DIR/pid" ] && break; sleep 0.1; done
[ -f "$DIR/pid" ] || { cat "$DIR/log"; fail "firnd not ready"; }
[ "$(cat "$DIR/pid")" = "$PID" ] || fail "pidfile holds $(cat "$DIR/pid"), want $PID"
[ -f "$DIR/d/keys/kek" ] || fail "no generated kek"
[ "$(stat -c %a "$DIR/d/keys/kek")" = 600 ] || fail "kek mode is not 0600"
grep -q "generated a key-encryption key" "$DIR/log" || fail "no warning about the generated kek"

expect_exit2 "locked data dir" "in use by another firnd" --data-dir "$DIR/d" --api 127.0.0.1:$(port) --listen 127.0.0.1:$(port)

kill -TERM "$PID"
wait "$PID"; rc=$?
PID=
[ $rc -eq 0 ] || { cat "$DIR/log"; fail "SIGTERM exit $rc"; }
grep -q "stopped cleanly" "$DIR/log" || fail "no clean-stop line"
[ -f "$DIR/pid" ] && fail "pidfile left behind"
echo "ok: SIGTERM -> exit 0"

# Restart on the same directory: the lock is free again and the key is reused.
K1=$(cat "$DIR/d/keys/kek")
"$FIRND" --data-dir "$DIR/d" --api 127.0.0.1:$(port) --listen 127.0.0.1:$(port) --pidfile "$DIR/pid" 2>"$DIR/log2" &
PID=$!
for _ in $(seq 100); do [ -f "$DIR/pid" ] && break; sleep 0.1; done
[ -f "$DIR/pid" ] || { cat "$DIR/log2"; fail "restart not ready"; }
[ "$K1" = "$(cat "$DIR/d/keys/kek")" ] || fail "kek changed on restart"
kill -INT "$PID"; wait "$PID"; rc=$?; PID=
[ $rc -eq 0 ] || fail "SIGINT exit $rc"
echo "ok: restart and SIGINT"
echo "PASS"
