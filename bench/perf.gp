# SPDX-License-Identifier: MIT
# perf.gp - draws the raw-socket comparison (build/bench/perf.dat, written
# by bench/perf.c) as an SVG.
#
#   gnuplot -e "datafile='build/bench/perf.dat'; outfile='docs/performance.svg'" bench/perf.gp
#
# Left: requests per second at window 64, each bar labelled with its ratio
# to the raw generator against the raw ceiling (row 0) of the same rounds.
# Right: the median round trip at window 1, labelled the same way.
# Columns: 1 row index, 2 label ("|" breaks the line), 3 W=1 req/s, 4 W=64
# req/s, 5 W=64 ratio to raw, 6 W=1 p50 us, 7 p50 ratio to raw, 8 peak RSS
# KiB. NaN: not measured for that row.

if (!exists("datafile")) datafile = 'build/bench/perf.dat'
if (!exists("outfile")) outfile = 'docs/performance.svg'

set terminal svg size 1100,520 dynamic font "Helvetica,13" background rgb "white"
set output outfile
set datafile missing "NaN"

tic(s) = (p = strstrt(s, "|"), p > 0 ? s[1:p-1] . "\n" . s[p+1:] : s)
half = 0.32
set style fill solid 1.0 noborder
set grid ytics lc rgb "#d0d0d0" lw 1 dt 1
set xtics scale 0 nomirror offset 0,-0.2 font ",11"
set ytics nomirror
set border 3
set bmargin 5
set xrange [-0.6:6.6]

set multiplot layout 1,2 title "libudprr against raw sockets on loopback (server on CPU 1, load on CPU 0; medians; labels: ratio to raw)"

set title "requests/s at window 64 (thousands)"
set yrange [0:*]
set offsets 0, 0, graph 0.1, 0
plot datafile using 1:($4/1000):(half):xtic(tic(strcol(2))) with boxes lc rgb "#2166ac" notitle, \
     '' using 1:($4/1000):(sprintf("%.2fx", $5)) with labels offset 0,0.8 notitle

set title "round trip p50 at window 1 (us)"
plot datafile using 1:6:(half):xtic(tic(strcol(2))) with boxes lc rgb "#d94701" notitle, \
     '' using 1:6:(sprintf("%.2fx", $7)) with labels offset 0,0.8 notitle

unset multiplot
