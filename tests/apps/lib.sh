# Shared helpers of the command-line test scripts: counters and pass/fail reporting.
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok: $1"; }
bad() { failed=$((failed + 1)); echo "FAILED: $1"; }
finish() { echo "$passed passed, $failed failed"; [ "$failed" -eq 0 ]; }
