# Shared by the scripts/device/*.sh checks (sourced): step and sanitize append to the caller's log and
# set rc=1 on a failure. The caller defines B (the bundle dir), tmp (a scratch dir) and rc=0 first.
step() {  # step NAME TIMEOUT CMD...: runs, prints the time and the status, marks failure
  local name=$1 to=$2; shift 2
  echo "== $name"
  local t0=$SECONDS
  timeout "$to" "$@"
  local s=$?
  echo "-- $name: exit $s, $((SECONDS - t0)) s"
  [ $s -eq 0 ] || rc=1
}
sanitize() {  # sanitize TOOL TIMEOUT CMD...: compute-sanitizer, summary lines only
  local tool=$1 to=$2; shift 2
  echo "== compute-sanitizer $tool: $*"
  local t0=$SECONDS
  timeout "$to" compute-sanitizer --tool "$tool" --error-exitcode 9 "$B/run" "$@" > "$tmp/san.txt" 2>&1
  local s=$?
  grep -E "ERROR SUMMARY|RACECHECK SUMMARY|Race reported|========= (Invalid|Program hit|Error)|cases|kernels bit-exact" \
    "$tmp/san.txt" | tail -12
  echo "-- compute-sanitizer $tool: exit $s (9: errors found, 124: timeout), $((SECONDS - t0)) s"
  [ $s -eq 0 ] || rc=1
}
