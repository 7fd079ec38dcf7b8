"""Shared main of the CLI test scripts that run named groups: `script.py FP8FLOW_BINARY [GROUP...]`.

Runs the named groups (all when none is named), prints PASS/FAIL per group with the traceback of a failure,
and exits 1 if any failed.
"""
import sys
import traceback


def run_groups(groups):
    names = sys.argv[2:] or list(groups)
    failed = 0
    for name in names:
        try:
            groups[name]()
            print(f"PASS {name}")
        except Exception:
            failed += 1
            print(f"FAIL {name}")
            traceback.print_exc()
    sys.exit(1 if failed else 0)
