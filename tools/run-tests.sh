#!/bin/sh
# Run each test program given as an argument (under $RUNNER if set, e.g. valgrind), show its
# cmocka output, and finish with one summary line: "N passed, N failed" counting the programs.
passed=0
failed=0
failed_names=""
for test in "$@"; do
    echo "== $test"
    if $RUNNER "$test"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        failed_names="$failed_names $test"
    fi
done
echo
[ -n "$failed_names" ] && echo "failed suites:$failed_names"
echo "suites: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
