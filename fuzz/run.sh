#!/usr/bin/env bash
# The fuzz campaign of README.md ("Fuzzing"): every target, coverage-guided
# with libFuzzer (cargo-fuzz, nightly), from the seeds in seeds/<target>,
# for a fixed number of executions each (over 10 million in all). A crash,
# a panic, a leak, an input taking more than 10 s (a hang) or more than
# 2 GiB stops the run with the input saved in artifacts/<target>/.
#   cargo install cargo-fuzz --locked; rustup toolchain install nightly
#   fuzz/run.sh                 # the whole campaign
#   fuzz/run.sh entry 100000    # one target, N executions
set -euo pipefail
cd "$(dirname "$0")"
# Executions per target: 10.4 million in all. The targets that replay a
# whole ledger or bundle per input (export, bundle, records) run at about
# a thousand inputs a second, the others at tens of thousands.
declare -A runs=(
  [entry]=5000000
  [checkpoint]=2000000
  [request_signature]=2500000
  [export]=300000
  [bundle]=300000
  [records]=300000
)
targets=("${!runs[@]}")
if [ "$#" -ge 1 ]; then
  targets=("$1")
  runs[$1]=${2:-${runs[$1]}}
fi
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target"
  echo "== $target: ${runs[$target]} executions"
  cargo +nightly fuzz run "$target" "corpus/$target" "seeds/$target" -- \
    -runs="${runs[$target]}" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
done
