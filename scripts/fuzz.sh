#!/usr/bin/env bash
# fuzz.sh -- run every fuzz target (fuzz/) for a bounded time under a memory cap (issue 9, item 11).
#
# Engine: libFuzzer through cargo-fuzz on the nightly toolchain, both installed here if missing.
# If that cannot be had, the script says so loudly and runs the seeded mutation loop
# (fuzz_fallback, stable toolchain) instead, under the same memory cap.
# Memory cap: libFuzzer -rss_limit_mb / -malloc_limit_mb, and in every engine the fuzz crate's
# capping allocator (abort on one allocation over FUZZ_MALLOC_LIMIT_MB, or a live heap over
# FUZZ_RSS_LIMIT_MB): a parser that allocates from a count field the bytes do not back crashes.
# Order: every input in fuzz/regressions/TARGET/ is replayed first, then each target runs for
# FUZZ_SECONDS from the committed seeds in fuzz/corpus/TARGET (new inputs go to a scratch
# corpus, not into git). Crashes are saved in fuzz/artifacts/TARGET/ (git-ignored).
#
# Env: FUZZ_SECONDS (45 per target), FUZZ_TARGETS (all), FUZZ_ENGINE (auto | libfuzzer |
#      fallback; libfuzzer = fail if it cannot be installed), FUZZ_MALLOC_LIMIT_MB (1),
#      FUZZ_RSS_LIMIT_MB (1024), FUZZ_TARGET_DIR (cargo target dir of the fuzz crate, default
#      ~/.cache/ferroswan/fuzz-target).
# Exit: 0 if no target crashed; 1 if one did (or a build failed); 2 for a usage error.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

TARGETS=${FUZZ_TARGETS:-"ike_message ike_endpoint config esp_decap"}
SECS=${FUZZ_SECONDS:-45}
ENGINE=${FUZZ_ENGINE:-auto}
export FUZZ_MALLOC_LIMIT_MB=${FUZZ_MALLOC_LIMIT_MB:-1}
export FUZZ_RSS_LIMIT_MB=${FUZZ_RSS_LIMIT_MB:-1024}
WORKSPACE_TARGET_DIR=${CARGO_TARGET_DIR:-}
# A target dir outside the clone survives fresh CI clones on the same machine (a cache only).
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ferroswan/fuzz-target}
TRIPLE=$(rustc -vV 2>/dev/null | sed -n 's/^host: //p')
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/ferroswan-fuzz.XXXXXX")
trap 'rm -rf "$SCRATCH"' EXIT
case "$SECS" in '' | *[!0-9]*) echo "fuzz.sh: FUZZ_SECONDS must be a number" >&2; exit 2 ;; esac

max_len() {
  case "$1" in esp_decap) echo 4096 ;; *) echo 8192 ;; esac
}

loud() {
  local line='################################################################################'
  echo "$line"
  for l in "$@"; do echo "## $l"; done
  echo "$line"
  echo "fuzz.sh: WARNING: $1" >&2
}

# --- engine ---------------------------------------------------------------------------------
why=""
if [ "$ENGINE" != fallback ]; then
  if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "== rustup toolchain install nightly --profile minimal"
    rustup toolchain install nightly --profile minimal || why="the nightly toolchain cannot be installed"
  fi
  if [ -z "$why" ] && ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== cargo install cargo-fuzz --locked"
    cargo install cargo-fuzz --locked || why="cargo-fuzz cannot be installed"
  fi
  if [ -z "$why" ]; then
    echo "== cargo +nightly fuzz build -O --debug-assertions ($(cargo fuzz --version 2>/dev/null))"
    start=$SECONDS
    if (cd fuzz && cargo +nightly fuzz build -O --debug-assertions --target-dir "$CARGO_TARGET_DIR"); then
      echo "fuzz build: $((SECONDS - start)) s"
    else
      why="cargo +nightly fuzz build failed"
    fi
  fi
fi
if [ -z "$why" ] && [ "$ENGINE" != fallback ]; then
  engine=libfuzzer
  BIN="$CARGO_TARGET_DIR/$TRIPLE/release"
else
  if [ "$ENGINE" = libfuzzer ]; then
    echo "fuzz.sh: FUZZ_ENGINE=libfuzzer but $why" >&2
    exit 1
  fi
  engine=fallback
  [ "$ENGINE" = fallback ] && why="FUZZ_ENGINE=fallback"
  loud "COVERAGE-GUIDED FUZZING IS NOT AVAILABLE: $why." \
    "Running the seeded mutation loops instead (no coverage feedback, far weaker):" \
    "same targets, same seeds, same memory cap. Fix the toolchain to get libFuzzer back."
  echo "== cargo build --release --no-default-features --bin fuzz_fallback (stable)"
  if ! cargo build --release --no-default-features --manifest-path fuzz/Cargo.toml --bin fuzz_fallback; then
    echo "fuzz.sh: the fallback loop does not build" >&2
    exit 1
  fi
  BIN="$CARGO_TARGET_DIR/release"
fi

# --- the endpoint harness still reaches the exchange handlers (seeds authenticate, etc.) ---------
echo "== cargo test -p fs-ike --features fuzzing --lib fuzzing"
if ! (if [ -n "$WORKSPACE_TARGET_DIR" ]; then export CARGO_TARGET_DIR=$WORKSPACE_TARGET_DIR; else unset CARGO_TARGET_DIR; fi
  cargo test -q -p fs-ike --features fuzzing --lib fuzzing); then
  echo "fuzz.sh: the fs-ike fuzzing harness self-test failed" >&2
  exit 1
fi

# --- runs -----------------------------------------------------------------------------------
failed=0
summary=()
for t in $TARGETS; do
  mkdir -p "fuzz/artifacts/$t" "$SCRATCH/$t"
  log="$SCRATCH/$t.log"
  seeds=("fuzz/corpus/$t")
  regressions=()
  if [ -d "fuzz/regressions/$t" ]; then
    seeds+=("fuzz/regressions/$t")
    mapfile -t regressions < <(find "fuzz/regressions/$t" -type f | sort)
  fi
  # 1. Regressions: every saved crash input, once. If one still crashes, the fuzz run below
  #    starts without them (to show whether fuzzing from the seeds alone finds a crash).
  for r in "${regressions[@]}"; do
    if [ "$engine" = libfuzzer ]; then
      "$BIN/$t" -rss_limit_mb="$FUZZ_RSS_LIMIT_MB" -malloc_limit_mb="$FUZZ_MALLOC_LIMIT_MB" \
        -runs=1 "$r" >"$log" 2>&1
    else
      "$BIN/fuzz_fallback" --replay "$t" "$r" >"$log" 2>&1
    fi
    rc=$?
    if [ "$rc" -eq 0 ]; then
      echo "fuzz: $t: regression $r: ok"
    else
      echo "fuzz: $t: regression $r: CRASH (exit $rc)"
      grep -E "==fuzz memory cap==|panicked|ERROR: libFuzzer|SUMMARY" "$log" | head -5 | sed 's/^/    /'
      summary+=("$t: regression $(basename "$r") crashes")
      failed=1
      seeds=("fuzz/corpus/$t")
    fi
  done
  # 2. Fuzz for SECS seconds.
  echo "== fuzz $t ($engine, ${SECS} s, malloc cap ${FUZZ_MALLOC_LIMIT_MB} MB, rss cap ${FUZZ_RSS_LIMIT_MB} MB)"
  start=$SECONDS
  if [ "$engine" = libfuzzer ]; then
    "$BIN/$t" "$SCRATCH/$t" "${seeds[@]}" -max_total_time="$SECS" -max_len="$(max_len "$t")" \
      -rss_limit_mb="$FUZZ_RSS_LIMIT_MB" -malloc_limit_mb="$FUZZ_MALLOC_LIMIT_MB" -timeout=10 \
      -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$t/" >"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    [ -n "$execs" ] || execs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#')
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1)
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
  else
    dirs=()
    for d in "${seeds[@]}"; do dirs+=(--corpus "$d"); done
    "$BIN/fuzz_fallback" --seconds "$SECS" "${dirs[@]}" "$t" >"$log" 2>&1
    rc=$?
    execs=$(sed -n -e 's/.*: \([0-9]*\) execs in.*/\1/p' -e 's/.*at input #\([0-9]*\)$/\1/p' "$log" | tail -1)
    cov="no coverage"
    artifact=$(sed -n 's/.*input saved to \(.*\)$/\1/p' "$log" | tail -1)
    if [ "$rc" -ne 0 ] && [ -s "fuzz/artifacts/$t/fallback-crash" ]; then
      artifact="fuzz/artifacts/$t/crash-fallback-$(sha1sum "fuzz/artifacts/$t/fallback-crash" | cut -c1-16)"
      mv "fuzz/artifacts/$t/fallback-crash" "$artifact"
    fi
  fi
  secs=$((SECONDS - start))
  if [ "$rc" -eq 0 ]; then
    line="$t: $engine, ${execs:-?} execs in ${secs} s (${cov:-cov ?}), no crash"
  else
    line="$t: $engine, ${execs:-?} execs in ${secs} s, CRASH (exit $rc) ${artifact:+-> $artifact}"
    failed=1
    grep -E "==fuzz memory cap==|panicked|ERROR: libFuzzer|SUMMARY|out-of-memory|malloc\(" "$log" \
      | head -8 | sed 's/^/    /'
    echo "    (last lines of the log:)"
    tail -15 "$log" | sed 's/^/    /'
  fi
  echo "fuzz: $line"
  summary+=("$line")
done

echo "== fuzz summary (engine: $engine; a crash input becomes a file in fuzz/regressions/TARGET/)"
printf '  %s\n' "${summary[@]}"
if [ "$failed" -ne 0 ]; then
  echo "fuzz: FAILED (a target crashed; replay one input: $BIN/fuzz_fallback --replay TARGET FILE;"
  echo "      once fixed, keep the input as fuzz/regressions/TARGET/NAME)"
  exit 1
fi
echo "fuzz: ok"
