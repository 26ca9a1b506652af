#!/bin/bash
# usage: ir.sh <srcdir> <variant> -> per-cell instructions
SRC=$1; V=$2
a=$(cd /work/main && PYTHONHASHSEED=0 PYTHONPATH=$SRC setarch -R valgrind --tool=callgrind --callgrind-out-file=/dev/null .venv/bin/python "$(dirname "$0")"/one.py $V 1000 2>&1 | grep Collected | awk '{print $4}')
b=$(cd /work/main && PYTHONHASHSEED=0 PYTHONPATH=$SRC setarch -R valgrind --tool=callgrind --callgrind-out-file=/dev/null .venv/bin/python "$(dirname "$0")"/one.py $V 3000 2>&1 | grep Collected | awk '{print $4}')
echo "$PATCH $V $SRC $(( (b - a) / 2000 )) instr/cell"
