#!/bin/bash
# loop.sh TAG FIRST LAST
for i in $(seq $2 $3); do m=between; [ $((i%2)) = 0 ] && m=running; /tmp/repro/run.sh $i $m 2>/dev/null; done > /tmp/repro/$1.log 2>&1
