# SPDX-License-Identifier: MIT
# resilience.gp - draws the resilience benchmark's latency percentiles
# (build/bench/resilience.dat, written by bench/resilience.c) as an SVG.
#
#   gnuplot -e "datafile='build/bench/resilience.dat'; outfile='docs/resilience.svg'" bench/resilience.gp
#
# One pair of bars per path: adaptive (blue) beside fixed (orange). A bar
# reaches up to the p99; its dark lower part reaches up to the p50.
# Columns: 1 path index, 2 label ("|" breaks the line), 3 policy (0 adaptive,
# 1 fixed), 4 its name, 5 clients, 6 requests each, 7 completed %, 8 mean,
# 9 p50, 10 p99, 11 max, 12 p99 after warm-up (ms), 13 retransmissions per
# request, 14 spurious % after warm-up, 15 the path's fixed p99 / adaptive p99.

if (!exists("datafile")) datafile = 'build/bench/resilience.dat'
if (!exists("outfile")) outfile = 'docs/resilience.svg'

set terminal svg size 1000,600 dynamic font "Helvetica,14" background rgb "white"
set output outfile

ymin = 0.01
set logscale y
set yrange [ymin:40000]
set format y "%g"
set ytics ("0.01" 0.01, "0.1" 0.1, "1" 1, "10" 10, "100" 100, "1 000" 1000, "10 000" 10000)
set mytics 10
set grid ytics lc rgb "#d0d0d0" lw 1 dt 1
set ylabel "request latency, ms (log scale)"
set xrange [-0.6:4.6]
set xtics scale 0 nomirror offset 0,-0.3
set ytics nomirror
set border 3
set bmargin 7
set key below horizontal samplen 1.5 width 2
set title "libudprr: request latency by path, adaptive vs fixed (textbook) retry policy\n{/*0.8 bar top = p99, dark part = p50; each path: adaptive left, fixed right; above: fixed p99 / adaptive p99}" enhanced

# "loss 10%|each way" -> two lines
tic(s) = (p = strstrt(s, "|"), p > 0 ? s[1:p-1] . "\n" . s[p+1:] : s)
half = 0.18
xpos(i, policy) = i + (policy == 0 ? -0.2 : 0.2)
only(policy, want, v) = (policy == want ? v : 1/0)
num(v) = (v < 10 ? sprintf("%.2f", v) : v < 100 ? sprintf("%.1f", v) : sprintf("%.0f", v))

ad_light = "#9ecae1"; ad_dark = "#2166ac"
fx_light = "#fdbe85"; fx_dark = "#d94701"

plot \
  datafile using (xpos($1,$3)):(only($3,0,$10)):(xpos($1,$3)-half):(xpos($1,$3)+half):(ymin):(only($3,0,$10)) \
      with boxxyerror fs solid 1.0 noborder lc rgb ad_light title "adaptive p99", \
  '' using (xpos($1,$3)):(only($3,0,$9)):(xpos($1,$3)-half):(xpos($1,$3)+half):(ymin):(only($3,0,$9)) \
      with boxxyerror fs solid 1.0 noborder lc rgb ad_dark title "adaptive p50", \
  '' using (xpos($1,$3)):(only($3,1,$10)):(xpos($1,$3)-half):(xpos($1,$3)+half):(ymin):(only($3,1,$10)) \
      with boxxyerror fs solid 1.0 noborder lc rgb fx_light title "fixed p99", \
  '' using (xpos($1,$3)):(only($3,1,$9)):(xpos($1,$3)-half):(xpos($1,$3)+half):(ymin):(only($3,1,$9)) \
      with boxxyerror fs solid 1.0 noborder lc rgb fx_dark title "fixed p50", \
  '' using (xpos($1,$3)):10:(num($10)) with labels offset 0,0.7 font ",12" notitle, \
  '' using (xpos($1,$3)):9:(num($9)) with labels offset 0,-0.7 font ",11" tc rgb "white" notitle, \
  '' using 1:(20000):(sprintf("p99 ratio %.1fx", $15)) every 2 with labels font ",13" tc rgb "#333333" notitle, \
  '' using 1:(1/0):xtic(tic(strcol(2))) every 2 notitle
