"""Time per kernel name from `ncu --csv --metrics gpu__time_duration.sum[,dram__bytes_read.sum]`
on standard input: total ms, launches, DRAM MB read and its rate, longest first."""
import collections, csv, sys

SCALE = {"ns": 1e-6, "nsecond": 1e-6, "us": 1e-3, "usecond": 1e-3, "ms": 1, "msecond": 1,
         "byte": 1e-6, "Kbyte": 1e-3, "Mbyte": 1, "Gbyte": 1e3}
ms, mb, launches = collections.defaultdict(float), collections.defaultdict(float), collections.Counter()
for r in csv.DictReader(line for line in sys.stdin if line.startswith('"')):
    value = float(r["Metric Value"].replace(",", "")) * SCALE.get(r.get("Metric Unit", ""), 1)
    name = r["Kernel Name"][:60]
    if r["Metric Name"] == "gpu__time_duration.sum":
        ms[name] += value
        launches[name] += 1
    elif r["Metric Name"] == "dram__bytes_read.sum":
        mb[name] += value
print(f"total {sum(ms.values()):.3f} ms over {sum(launches.values())} launches")
for name, t in sorted(ms.items(), key=lambda x: -x[1]):
    rate = f"{mb[name] / t:6.0f} GB/s" if mb.get(name) else ""
    print(f"{t:9.3f} ms {launches[name]:5d}x {mb.get(name, 0):9.1f} MB {rate:>10} {name}")
