#!/bin/bash
SRC=$1; V=$2
run() { cd /work/main && PYTHONHASHSEED=0 PYTHONPATH=$SRC setarch -R valgrind --tool=callgrind --callgrind-out-file=/dev/null .venv/bin/python "$(dirname "$0")"/onep.py $V $1 2>&1 | grep Collected | awk '{print $4}'; }
a=$(run 1000); b=$(run 4000)
echo "pipeline $V $SRC $(( (b - a) / 3000 )) instr/record"
