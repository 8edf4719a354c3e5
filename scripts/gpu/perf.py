"""Turbine's CUDA executor against PyTorch on the same GPU, Llama-family shapes, dummy weights.

Measures the ceilings first (HBM read bandwidth: a bf16 sum over 8 GiB; cuBLAS bf16 peak:
8192^3 matmul), runs `turbine gpu-bench`, then a plain-PyTorch Llama (bf16, dense static KV cache,
SDPA; eager) on the same rows, and prints one table with % of roofline.
"""
import argparse, json, math, os, subprocess, sys, time

import torch
import torch.nn.functional as F


def timed(fn, reps=10, warm=3):
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record(); fn(); b.record(); b.synchronize()
        ts.append(a.elapsed_time(b) / 1e3)
    return sorted(ts)[len(ts) // 2]


def ceilings():
    x = torch.randn(4 << 30, device="cuda", dtype=torch.bfloat16)  # 8 GiB
    read = x.numel() * 2 / timed(lambda: x.sum(dtype=torch.float32))
    y = torch.empty_like(x)
    copy = 2 * x.numel() * 2 / timed(lambda: y.copy_(x))
    del x, y
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    flops = 2 * 8192**3 / timed(lambda: a @ b)
    del a, b
    torch.cuda.empty_cache()
    return read, copy, flops


class TorchLlama:
    """Plain-PyTorch Llama forward: fused QKV and gate-up weights, dense KV cache, SDPA."""

    def __init__(self, c, max_batch, max_len):
        self.c = c
        h, nh, kv = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"]
        d = c.get("head_dim", h // nh)
        self.nh, self.kv, self.d, self.h, self.i = nh, kv, d, h, c["intermediate_size"]
        dev, dt = "cuda", torch.bfloat16
        r = lambda *s: (torch.rand(*s, device=dev, dtype=dt) - 0.5) * 0.07
        self.layers = [dict(qkv=r((nh + 2 * kv) * d, h), o=r(h, nh * d), gu=r(2 * self.i, h), down=r(h, self.i),
                            n1=torch.ones(h, device=dev, dtype=dt), n2=torch.ones(h, device=dev, dtype=dt))
                       for _ in range(c["num_hidden_layers"])]
        self.emb = r(c["vocab_size"], h)
        self.head = r(c["vocab_size"], h)
        self.norm = torch.ones(h, device=dev, dtype=dt)
        inv = 1.0 / (c.get("rope_theta", 10000.0) ** (torch.arange(0, d, 2, device=dev).float() / d))
        t = torch.arange(max_len, device=dev).float()
        ang = torch.outer(t, inv)
        self.cos, self.sin = torch.cat([ang.cos()] * 2, -1).to(dt), torch.cat([ang.sin()] * 2, -1).to(dt)
        self.kc = [torch.empty(max_batch, kv, max_len, d, device=dev, dtype=dt) for _ in self.layers]
        self.vc = [torch.empty(max_batch, kv, max_len, d, device=dev, dtype=dt) for _ in self.layers]
        self.eps = c.get("rms_norm_eps", 1e-5)

    def rope(self, x, pos):
        cos, sin = self.cos[pos][:, None], self.sin[pos][:, None]
        x1, x2 = x[..., : self.d // 2], x[..., self.d // 2:]
        return x * cos + torch.cat([-x2, x1], -1) * sin

    @torch.no_grad()
    def forward(self, tokens, start):
        """tokens: [B, T] at positions start..start+T (same for all rows); returns next tokens."""
        B, T = tokens.shape
        pos = torch.arange(start, start + T, device="cuda")
        x = self.emb[tokens]
        for l, w in enumerate(self.layers):
            hn = F.rms_norm(x, (self.h,), w["n1"], self.eps)
            qkv = hn @ w["qkv"].t()
            q, k, v = qkv.split([self.nh * self.d, self.kv * self.d, self.kv * self.d], -1)
            q = self.rope(q.view(B, T, self.nh, self.d), pos).transpose(1, 2)
            k = self.rope(k.view(B, T, self.kv, self.d), pos).transpose(1, 2)
            self.kc[l][:B, :, start:start + T] = k
            self.vc[l][:B, :, start:start + T] = v.view(B, T, self.kv, self.d).transpose(1, 2)
            kk, vv = self.kc[l][:B, :, : start + T], self.vc[l][:B, :, : start + T]
            a = F.scaled_dot_product_attention(q, kk, vv, is_causal=T > 1, enable_gqa=True)
            x = x + a.transpose(1, 2).reshape(B, T, -1) @ w["o"].t()
            hn = F.rms_norm(x, (self.h,), w["n2"], self.eps)
            g, u = (hn @ w["gu"].t()).chunk(2, -1)
            x = x + (F.silu(g) * u) @ w["down"].t()
        last = F.rms_norm(x[:, -1], (self.h,), self.norm, self.eps)
        return (last @ self.head.t()).float().argmax(-1)


def torch_rows(c, bench_rows, steps):
    out = {}
    free = torch.cuda.mem_get_info()[0]
    wbytes = 2 * (c["num_hidden_layers"] * c["hidden_size"] * ((c["num_attention_heads"] + 2 * c["num_key_value_heads"]) * c.get("head_dim", 128) + c["num_attention_heads"] * c.get("head_dim", 128) + 3 * c["intermediate_size"]) + 2 * c["vocab_size"] * c["hidden_size"])
    kv_tok = 2 * c["num_hidden_layers"] * c["num_key_value_heads"] * c.get("head_dim", 128) * 2
    for r in bench_rows:
        if r.get("skipped"):
            continue
        if r["kind"] == "decode":
            B, L = r["batch"], r["context"] + steps + 3
        else:
            B, L = 1, r["tokens"]
        need = wbytes + B * L * kv_tok + (B * L * c["intermediate_size"] * 8 if r["kind"] == "prefill" else 0)
        if need > 0.9 * free:
            out[key(r)] = None
            continue
        m = TorchLlama(c, B, L)
        if r["kind"] == "decode":
            tok = torch.ones(B, 1, dtype=torch.long, device="cuda")
            ctx = r["context"]
            ts = []
            for s in range(steps + 2):
                torch.cuda.synchronize(); t0 = time.perf_counter()
                tok = m.forward(tok, ctx + s)[:, None]
                torch.cuda.synchronize()
                if s >= 2:
                    ts.append(time.perf_counter() - t0)
            out[key(r)] = sorted(ts)[len(ts) // 2]
        else:
            n = r["tokens"]
            tok = torch.randint(0, 1000, (1, n), device="cuda")
            ts = []
            for _ in range(3):
                torch.cuda.synchronize(); t0 = time.perf_counter()
                m.forward(tok, 0)
                torch.cuda.synchronize(); ts.append(time.perf_counter() - t0)
            out[key(r)] = min(ts)
        del m
        torch.cuda.empty_cache()
    return out


def key(r):
    return (r["kind"], r.get("batch", 1), r.get("context", r.get("tokens")))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--turbine", required=True)
    ap.add_argument("--config", required=True)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("bench_args", nargs="*", help="extra gpu-bench flags, after --")
    args = ap.parse_args()
    c = json.load(open(args.config))
    read, copy, peak = ceilings()
    print(f"{torch.cuda.get_device_name()}: HBM read {read/1e12:.2f} TB/s (copy {copy/1e12:.2f}), cuBLAS bf16 {peak/1e12:.0f} TFLOP/s", flush=True)
    cmd = [args.turbine, "gpu-bench", "--model", args.config, "--steps", str(args.steps)] + args.bench_args
    run = subprocess.run(cmd, capture_output=True, text=True)
    open(os.path.join(args.out, "gpu-bench.log"), "w").write(run.stdout + run.stderr)
    if run.returncode != 0:
        print(run.stdout, run.stderr[-4000:])
        sys.exit(1)
    lines = [json.loads(l) for l in run.stdout.splitlines() if l.startswith("{")]
    setup = lines[0]
    rows = [r for r in lines if r["kind"] in ("decode", "prefill")]
    gemms = [r for r in lines if r["kind"] == "gemm"]
    theirs = {} if args.no_torch else torch_rows(c, rows, args.steps)
    params = setup["weight_bytes"] / 2
    layers, qdim = c["num_hidden_layers"], c["num_attention_heads"] * c.get("head_dim", 128)
    print(f"\nweights read per step {setup['weight_bytes']/1e9:.2f} GB; load {setup['load_s']:.1f} s")
    print(f"{'row':22} {'turbine':>11} {'% roofline':>11} {'pytorch':>11} {'speedup':>8}")
    result = dict(setup=setup, read_bw=read, copy_bw=copy, peak_flops=peak, rows=[], gemm=gemms)
    for r in rows:
        name = f"decode b{r['batch']} ctx{r['context']}" if r["kind"] == "decode" else f"prefill {r['tokens']}"
        if r.get("skipped"):
            print(f"{name:22} {'no room':>11}")
            continue
        t = theirs.get(key(r))
        if r["kind"] == "decode":
            ours = r["step_ms"] / 1e3
            roof = (r["weight_bytes"] + r["kv_bytes"]) / read
            shown = f"{ours*1e3:8.2f} ms"
            other = f"{t*1e3:8.2f} ms" if t else "n/a"
        else:
            n = r["tokens"]
            ours = r["ms"] / 1e3
            flops = 2 * params * n + 2 * layers * qdim * n * n  # GEMMs + causal QK^T and PV
            roof = flops / peak
            shown = f"{n/ours/1e3:7.1f} kt/s"
            other = f"{n/t/1e3:7.1f} kt/s" if t else "n/a"
        pct = 100 * roof / ours
        speed = f"{t/ours:7.2f}x" if t else ""
        print(f"{name:22} {shown:>11} {pct:10.1f}% {other:>11} {speed:>8}")
        result["rows"].append(dict(r, pct_roofline=pct, torch_s=t))
    json.dump(result, open(os.path.join(args.out, "perf.json"), "w"), indent=1)


if __name__ == "__main__":
    main()
