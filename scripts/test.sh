#!/usr/bin/env bash
# The whole test suite: unit, datastore (SQLite always; PostgreSQL when
# CAIRN_TEST_PG_URL is set, required when CAIRN_REQUIRE_PG=1) and end-to-end.
# Node 20's test runner does not expand globs, so the shell lists the files.
set -euo pipefail
cd "$(dirname "$0")/.."
shopt -s nullglob
files=(test/unit/*.test.ts test/datastore/*.test.ts test/e2e/*.test.ts)
if [ "$#" -gt 0 ]; then files=("$@"); fi
exec node --import tsx --test --test-concurrency=2 --test-reporter=spec "${files[@]}"
