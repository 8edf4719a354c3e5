"""Where a decode step's time goes with its kernels overlapped as they run: gpu-bench's timeline
lines (TURBINE_CUDA_TIMELINE) on stdin, per (batch, context, graphs): per kernel, launches, mean
span, mean gap from the previous launch's end (negative: overlapped), and the step's time with no
kernel running."""
import collections, json, sys
rows = collections.defaultdict(list)
for l in sys.stdin:
    if l.startswith("{") and '"timeline"' in l:
        r = json.loads(l)
        rows[(r["batch"], r["context"], r["graphs"])].append(r)
for key, spans in rows.items():
    spans.sort(key=lambda r: r["start_us"])
    end, idle, per = spans[0]["start_us"], 0.0, collections.defaultdict(list)
    for r in spans:
        gap = r["start_us"] - end
        idle += max(0.0, gap)
        per[r["kernel"]].append((r["end_us"] - r["start_us"], gap))
        end = max(end, r["end_us"])
    print(f"batch {key[0]} context {key[1]} graphs {key[2]}: {len(spans)} launches, "
          f"{end - spans[0]['start_us']:.1f} us, no kernel running {idle:.1f} us")
    for name, v in sorted(per.items(), key=lambda x: -sum(d for d, _ in x[1])):
        print(f"  {name:28} {len(v):4d}x span {sum(d for d, _ in v)/len(v):8.2f} us "
              f"total {sum(d for d, _ in v):8.1f} gap {sum(g for _, g in v)/len(v):7.2f}")
