#!/usr/bin/env python3
"""Renders a window of a bellhop --trace-file timeline as an SVG picture (docs/timeline.svg).

    scripts/timeline-svg.py TRACE.json OUT.svg [FROM_MS [TO_MS]]

A row per track (the vCPUs, the loop, guest bells, interrupts), a box per slice (exits blue,
handlers green), a tick per instant, a line per flow. Only for pictures: Perfetto's UI is the
place to read a trace."""
import json
import sys
from html import escape

doc = json.load(open(sys.argv[1]))
events = doc["traceEvents"]
names = {e["tid"]: e["args"]["name"] for e in events if e.get("ph") == "M" and e.get("name") == "thread_name"}
timed = [e for e in events if "ts" in e and "tid" in e]
lo = float(sys.argv[3]) * 1000 if len(sys.argv) > 3 else min(e["ts"] for e in timed)
hi = float(sys.argv[4]) * 1000 if len(sys.argv) > 4 else max(e["ts"] + e.get("dur", 0) for e in timed)
shown = [e for e in timed if e["ts"] + e.get("dur", 0) >= lo and e["ts"] <= hi]
order = sorted({e["tid"] for e in shown}, key=lambda t: (t >= 1000, t))
row = {t: i for i, t in enumerate(order)}
W, LEFT, H = 1000, 120, 34
x = lambda ts: LEFT + (ts - lo) / (hi - lo) * (W - LEFT - 10)
out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H * len(order) + 40}" font-family="sans-serif" font-size="11">',
       '<rect width="100%" height="100%" fill="white"/>']
for t, i in row.items():
    y = 20 + i * H
    out.append(f'<text x="4" y="{y + H / 2 + 4}">{escape(names.get(t, str(t)))}</text>')
    out.append(f'<line x1="{LEFT}" x2="{W - 10}" y1="{y + H - 2}" y2="{y + H - 2}" stroke="#ddd"/>')
starts = {}
for e in shown:
    y = 20 + row[e["tid"]] * H
    if e["ph"] == "X":
        color = "#4a7bd0" if e.get("cat") == "exit" else "#3aa35a"
        w = max(x(e["ts"] + e["dur"]) - x(e["ts"]), 1.0)
        out.append(f'<rect x="{x(e["ts"]):.1f}" y="{y + 6}" width="{w:.1f}" height="{H - 14}" fill="{color}">'
                   f'<title>{escape(e["name"])}</title></rect>')
    elif e["ph"] == "i":
        out.append(f'<line x1="{x(e["ts"]):.1f}" x2="{x(e["ts"]):.1f}" y1="{y + 4}" y2="{y + H - 6}" stroke="#c0392b">'
                   f'<title>{escape(e["name"])}</title></line>')
    elif e["ph"] == "s":
        starts[(e.get("cat"), e["id"])] = (x(e["ts"]), y + H / 2)
    elif e["ph"] == "f" and (e.get("cat"), e["id"]) in starts:
        x0, y0 = starts[(e.get("cat"), e["id"])]
        out.append(f'<line x1="{x0:.1f}" y1="{y0}" x2="{x(e["ts"]):.1f}" y2="{y + H / 2}" stroke="#888" stroke-dasharray="3,2"/>')
out.append(f'<text x="{LEFT}" y="{20 + H * len(order) + 14}">{lo / 1000:.3f} ms</text>')
out.append(f'<text x="{W - 90}" y="{20 + H * len(order) + 14}">{hi / 1000:.3f} ms</text>')
out.append("</svg>")
open(sys.argv[2], "w").write("\n".join(out) + "\n")
