#!/usr/bin/env bash
# lab_smoke.sh - the performance lab, firn alone, checked for shape and sanity.
#
# Runs `tools/bench/lab.sh --quick --firn-only --no-install --no-plots
# --no-build` against this build (no peers: CI installs none, and the peers
# are the lab's business, not the test suite's), then checks lab.json and
# every run file it points to: every field is there, counts and rates are
# positive and consistent with each other (MB/s = records/s x 100 B,
# p50 <= p99 <= p99.9 <= max, the open-loop run acked its offered rate), the
# ratios are the quotients of the numbers they claim to divide, the ramp has
# steps, the per-stage cycles add up to the total. The DPDK path and the
# perf profile may be skipped (no netns, no perf) but then must say why.
# No timing is asserted beyond "the system did something".
#
# usage: lab_smoke.sh BUILD_DIR        exit 0 pass, 1 fail, 77 skip
set -u
BUILD=${1:?usage: lab_smoke.sh BUILD_DIR}
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
OUT=$(mktemp -d /var/tmp/firn-lab-smoke-XXXXXX) || exit 1
trap 'rm -rf "$OUT"' EXIT
trap 'exit 1' INT TERM

[ -x "$BUILD/app/firnd/firnd" ] || { echo "SKIP: firnd not built"; exit 77; }
[ -x "$BUILD/tools/bench/lab_kernels" ] || { echo "SKIP: lab_kernels not built"; exit 77; }
command -v python3 >/dev/null || { echo "SKIP: python3 missing"; exit 77; }

timeout 280 "$ROOT/tools/bench/lab.sh" --quick --firn-only --no-install --no-plots --no-build \
	--build "$BUILD" --out "$OUT/lab" >"$OUT/stdout" 2>"$OUT/stderr"
rc=$?
if [ $rc != 0 ]; then
	echo "FAIL: lab.sh exited $rc"
	tail -n 30 "$OUT/stderr"
	exit 1
fi
cat "$OUT/stdout"

python3 - "$OUT/lab" <<'PY'
import json, os, sys

out = sys.argv[1]
errors = []


def check(cond, what):
    if not cond:
        errors.append(what)
    return cond


def num(d, k, lo=0.0, hi=float("inf"), where=""):
    v = d.get(k) if isinstance(d, dict) else None
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and lo < v < hi
    check(ok, f"{where}{k} = {v!r}, want a number in ({lo}, {hi})")
    return v if ok else None


lab = json.load(open(os.path.join(out, "lab.json")))
for k in ("systems", "fixed_rate", "raw", "ratios", "knee", "machine", "lab", "runs", "skipped"):
    check(k in lab, f"lab.json has no '{k}'")
m, L = lab.get("machine", {}), lab.get("lab", {})
check(isinstance(m.get("cpu_model"), str) and m["cpu_model"], "machine.cpu_model")
num(m, "cpus", 0, 4097, "machine.")
for k in ("loadavg_start", "loadavg_end"):
    check(len(str(m.get(k, "")).split()) == 3, f"machine.{k} = {m.get(k)!r}")
for k in ("date", "command", "mode", "firn_commit"):
    check(isinstance(L.get(k), str) and L[k], f"lab.{k} missing")
check(L.get("mode") == "quick", "lab.mode is not quick")
check("--firn-only" in str(L.get("command")), "lab.command does not say --firn-only")
rate = num(L, "fixed_rate", 0, 1e9, "lab.")
size = num(L, "record_size", 0, 1 << 20, "lab.")

S = lab.get("systems", {})
need = ["firn-socket", "firn-http"]
if "firn-dpdk" in lab.get("skipped", {}):
    check(lab["skipped"]["firn-dpdk"].strip() != "", "firn-dpdk skipped without a reason")
else:
    need.append("firn-dpdk")
for s in need:
    if not check(s in S, f"systems.{s} missing"):
        continue
    x, w = S[s], f"systems.{s}."
    rps = num(x, "rec_per_s", 100, 1e9, w)
    mbps = num(x, "MBps", 0, 1e5, w)
    if rps and mbps and size:
        check(abs(mbps - rps * size / 1e6) <= 0.01 * mbps + 0.01, f"{w}MBps != rec_per_s x size")
    p50, p99, p999 = (num(x, k, 0, 60e6, w) for k in ("p50_us", "p99_us", "p999_us"))
    if p50 and p99 and p999:
        check(p50 <= p99 <= p999, f"{w} percentiles out of order {p50} {p99} {p999}")
    num(x, "server_cpu_us_per_rec", 0, 1e6, w)
    check(x.get("durability", "").strip() != "", f"{w}durability missing")
    f = lab.get("fixed_rate", {}).get(s)
    if check(f is not None, f"fixed_rate.{s} missing") and rate:
        a = num(f, "rec_per_s", 0, 1e9, f"fixed_rate.{s}.")
        if a:
            check(0.8 * rate <= a <= 1.2 * rate, f"fixed_rate.{s} acked {a}/s, offered {rate}/s")

R = lab.get("raw", {})
for k in ("deflate_log_MBps", "deflate_rand_MBps", "crc32c_MBps", "ec_3p2_MBps",
          "aes256gcm_MBps"):
    num(R, k, 1, 1e7, "raw.")
if "fio_MBps" in R:
    fio = num(R, "fio_MBps", 0, 1e6, "raw.")
    r = lab.get("ratios", {}).get("firn_over_fio_MBps")
    if fio and check(isinstance(r, float), "ratios.firn_over_fio_MBps missing"):
        check(abs(r - S["firn-socket"]["MBps"] / fio) < 1e-6 * max(r, 1),
              "ratios.firn_over_fio_MBps is not firn MB/s / fio MB/s")
else:
    check(L.get("fio_MBps_skipped"), "no fio_MBps and no reason")

K = lab.get("knee", {}).get("firn-socket")
if check(K is not None, "knee.firn-socket missing"):
    steps = K.get("steps", [])
    check(len(steps) >= 2, f"ramp has {len(steps)} steps")
    offered = [st.get("offered", 0) for st in steps]
    check(offered == sorted(offered) and offered[0] > 0, f"ramp offered rates {offered}")
    for st in steps:
        check(st.get("acked", 0) > 0 and st.get("p99_us", 0) >= st.get("p50_us", 0) > 0,
              f"ramp step {st}")

if "stages" in lab:
    st = lab["stages"]
    tot = num(st, "cycles_per_record_total", 0, 1e9, "stages.")
    parts = sum(x["cycles_per_record"] for x in st.get("stages", []))
    if tot:
        check(abs(parts - tot) <= 0.01 * tot, f"stages add up to {parts}, total {tot}")
    check(len(st.get("stages", [])) >= 8, "fewer than 8 stages")
else:
    check(L.get("stages_skipped"), "no stages and no reason")

# every firn-bench run file has the full shape
for r in lab.get("runs", []):
    if r.get("kind") == "skipped":
        continue
    if not check(r.get("json") not in (None, "-"), f"run {r.get('name')} has no JSON"):
        continue
    d = json.load(open(os.path.join(out, r["json"])))
    for k in ("config", "results", "latency_us", "percentiles", "date", "date_iso",
              "command", "machine"):
        check(k in d, f"{r['json']}: no '{k}'")
    for k in ("p50", "p90", "p99", "p999", "p9999", "max", "count"):
        check(k in d.get("latency_us", {}), f"{r['json']}: no latency_us.{k}")
    for k in ("records", "rec_per_s", "MBps", "cpu_us_per_rec", "offered", "secs"):
        check(k in d.get("results", {}), f"{r['json']}: no results.{k}")
    if r.get("kind") == "ramp":
        check(len(d.get("ramp", [])) >= 2 and "knee" in d, f"{r['json']}: no ramp/knee")
    check(r.get("hist") not in (None, "-") and os.path.getsize(os.path.join(out, r["hist"])) > 0,
          f"run {r['name']}: no histogram file")

table = open(os.path.join(out, "table.txt")).read()
check("firn, kernel UDP socket path" in table and "Raw references" in table,
      "table.txt lacks the firn rows or the raw references")

if errors:
    print("FAIL: lab.json:")
    for e in errors:
        print("  " + e)
    sys.exit(1)
print(f"PASS: lab smoke ({len(lab.get('runs', []))} runs checked)")
PY
