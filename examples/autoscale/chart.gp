# chart.gp - draw a load generator run (its CSV) as a PNG:
#   gnuplot -e "csv='run.csv'; png='run.png'; target=2" examples/autoscale/chart.gp
# Replicas (running and target) on the left axis, requests (clients of the
# load generator and the autoscaler's ongoing-request metric) on the right.
# The right axis is the left one times target_ongoing_requests, so where the
# metric line meets the replica line the deployment holds its target load.
if (!exists("csv")) csv = 'run.csv'
if (!exists("png")) png = 'run.png'
if (!exists("target")) target = 2

set terminal pngcairo size 1100,520 font "sans,11" noenhanced
set output png
set datafile separator ","
set datafile columnheaders
set key outside top center horizontal
set title sprintf("serve: autoscaled replicas follow the load (target_ongoing_requests %g)", target)
set xlabel "time (s)"
set ylabel "replicas"
set y2label "requests"
set ytics nomirror
set y2tics
stats csv using 12 nooutput
top_replicas = STATS_max
stats csv using 3 nooutput
top_requests = STATS_max
top = top_replicas > top_requests / target ? top_replicas : top_requests / target
set yrange [0:top * 1.1 + 0.5]
set link y2 via y * target inverse y / target
set grid ytics lc rgb "#dddddd"

plot csv using 1:3 axes x1y2 with lines lw 1.5 lc rgb "#aaaaaa" title "clients (load)", \
     ''  using 1:9 axes x1y2 with lines lw 1.5 lc rgb "#ff9900" title "ongoing (autoscaler metric)", \
     ''  using 1:11 with steps lw 2 dt 2 lc rgb "#3366cc" title "target replicas", \
     ''  using 1:12 with steps lw 3 lc rgb "#109618" title "running replicas"
