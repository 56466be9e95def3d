#!/usr/bin/env bash
# The soak: builds fetchq-bench in release and runs its `soak` workload on a
# private PostgreSQL (30 minutes unless told otherwise).
#
#   bench/soak.sh                          # 30 minutes, CSV in target/fetchq-soak.csv
#   bench/soak.sh --minutes 5 --out /tmp/soak.csv
#
# Other options: --rate N (docs/s pushed, default 200), --sample-seconds N
# (default 30), --restart-minutes N (default 3). The table of first against
# last window is printed on stdout; progress goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
cargo build --release -p fetchq-bench
exec "$target/release/fetchq-bench" soak --json "$target/fetchq-soak.json" "$@"
