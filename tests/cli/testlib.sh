# Shared by the CLI test scripts: `check NAME COMMAND...` counts a pass when the command
# succeeds; `finish` prints the closing "N passed, N failed" line and sets the exit status.
passed=0
failed=0
check() {
  local name=$1
  shift
  if "$@"; then
    passed=$((passed + 1))
    echo "ok   $name"
  else
    failed=$((failed + 1))
    echo "FAIL $name"
  fi
}
finish() {
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
}
