#!/usr/bin/env python3
"""Eager PyTorch twin of the moe-train model (SPEC section 1), timed on synthetic tokens.

The baseline of the speed comparisons in docs/performance.md: the same shapes and the same work
per step (forward, backward, gradient clipping, AdamW) written the way eager PyTorch MoE code is
usually written (Hugging Face Mixtral / DeepSeek style: attention through an explicit masked
softmax, or fused scaled_dot_product_attention on a GPU, experts in a Python loop over index_select /
index_add_). It is not a reference for the
numbers (tests/reference_model.cpp is); it only has to do the same FLOPs.

    python3 launch/pytorch_baseline.py CONFIG.yaml [--steps N] [--threads T] [--device cpu|cuda]
                                       [--attention sdpa|explicit]

Prints tokens/s and MFU against the GEMM peak torch reaches on the same device in the same run
(fp32 2048^3 matmul on the CPU; on a GPU, 8192^3 in the config's train.precision, bf16 through
torch.autocast as eager mixed-precision code does). Needs torch (Debian: apt-get install
python3-torch; the GPU machines have a CUDA build) and PyYAML.
"""
import argparse
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml

# torch >= 2.0: on a GPU, attention runs through the fused scaled_dot_product_attention (flash
# attention); Debian's torch 1.13 (the CPU comparison) has none and uses the explicit masked softmax.
SDPA = hasattr(F, "scaled_dot_product_attention")
USE_SDPA = SDPA  # --attention explicit turns it off


def load_config(path):
    cfg = yaml.safe_load(open(path)) or {}
    m = dict(cfg.get("model") or {})
    moe = dict(m.get("moe") or {})
    t = dict(cfg.get("train") or {})
    o = dict(cfg.get("optim") or {})
    m.setdefault("n_kv_heads", m["n_heads"])
    m.setdefault("rope_theta", 10000.0)
    m.setdefault("norm_eps", 1e-5)
    m.setdefault("tie_embeddings", False)
    m.setdefault("init_std", 0.02)
    moe.setdefault("num_experts", 0)
    moe.setdefault("top_k", 2)
    moe.setdefault("num_shared_experts", 0)
    moe.setdefault("shared_expert_hidden", moe.get("expert_hidden", 0))
    moe.setdefault("first_dense_layers", 0)
    moe.setdefault("layer_freq", 1)
    moe.setdefault("score", "softmax")
    moe.setdefault("norm_topk", True)
    moe.setdefault("aux_loss_coef", 0.01)
    m["moe"] = moe
    t.setdefault("micro_batch", t["global_batch"])
    t.setdefault("grad_clip", 1.0)
    t.setdefault("precision", "fp32")
    o.setdefault("lr", 3e-4)
    o.setdefault("beta1", 0.9)
    o.setdefault("beta2", 0.95)
    o.setdefault("eps", 1e-8)
    o.setdefault("weight_decay", 0.1)
    return m, t, o


def is_moe_layer(m, layer):
    moe = m["moe"]
    return (moe["num_experts"] > 0 and layer >= moe["first_dense_layers"]
            and (layer - moe["first_dense_layers"]) % moe["layer_freq"] == 0)


class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class Attention(nn.Module):
    def __init__(self, m):
        super().__init__()
        d, self.h, self.hkv = m["d_model"], m["n_heads"], m["n_kv_heads"]
        self.hd = d // self.h
        self.wq = nn.Linear(d, self.h * self.hd, bias=False)
        self.wk = nn.Linear(d, self.hkv * self.hd, bias=False)
        self.wv = nn.Linear(d, self.hkv * self.hd, bias=False)
        self.wo = nn.Linear(self.h * self.hd, d, bias=False)

    def forward(self, x, cos, sin, mask):
        b, s, _ = x.shape
        q = self.wq(x).view(b, s, self.h, self.hd).transpose(1, 2)
        k = self.wk(x).view(b, s, self.hkv, self.hd).transpose(1, 2)
        v = self.wv(x).view(b, s, self.hkv, self.hd).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        if self.hkv != self.h:
            k = k.repeat_interleave(self.h // self.hkv, dim=1)
            v = v.repeat_interleave(self.h // self.hkv, dim=1)
        if USE_SDPA and q.is_cuda:  # fused flash attention, as current eager code (HF's default "sdpa") uses
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            scores = q @ k.transpose(-1, -2) / math.sqrt(self.hd) + mask
            o = scores.softmax(dim=-1) @ v
        return self.wo(o.transpose(1, 2).reshape(b, s, self.h * self.hd))


class SwiGLU(nn.Module):
    def __init__(self, d, f):
        super().__init__()
        self.w1 = nn.Linear(d, f, bias=False)
        self.w3 = nn.Linear(d, f, bias=False)
        self.w2 = nn.Linear(f, d, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class MoE(nn.Module):
    def __init__(self, m):
        super().__init__()
        moe = m["moe"]
        d = m["d_model"]
        self.e, self.k, self.cfg = moe["num_experts"], moe["top_k"], moe
        self.router = nn.Linear(d, self.e, bias=False)
        self.experts = nn.ModuleList(SwiGLU(d, moe["expert_hidden"]) for _ in range(self.e))
        ns = moe["num_shared_experts"]
        self.shared = SwiGLU(d, ns * moe["shared_expert_hidden"]) if ns > 0 else None

    def forward(self, x):
        b, s, d = x.shape
        x = x.reshape(b * s, d)
        logits = self.router(x)
        if self.cfg["score"] == "sigmoid":
            scores = torch.sigmoid(logits)
            probs = scores / scores.sum(-1, keepdim=True)
        else:
            scores = probs = logits.softmax(dim=-1)
        weight, chosen = scores.topk(self.k, dim=-1)
        if self.cfg["norm_topk"] and self.k > 1:
            weight = weight / weight.sum(-1, keepdim=True)
        y = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            token, slot = (chosen == e).nonzero(as_tuple=True)
            if token.numel() == 0:
                continue
            y.index_add_(0, token, expert(x[token]) * weight[token, slot].unsqueeze(-1))
        if self.shared is not None:
            y = y + self.shared(x)
        counts = torch.bincount(chosen.flatten(), minlength=self.e).to(x.dtype)
        f = counts / (self.k * x.shape[0])
        aux = self.cfg["aux_loss_coef"] * self.e * (f * probs.mean(0)).sum()
        return y.view(b, s, d), aux


class Block(nn.Module):
    def __init__(self, m, layer):
        super().__init__()
        self.attn_norm = RMSNorm(m["d_model"], m["norm_eps"])
        self.attn = Attention(m)
        self.ffn_norm = RMSNorm(m["d_model"], m["norm_eps"])
        self.moe = is_moe_layer(m, layer)
        self.ffn = MoE(m) if self.moe else SwiGLU(m["d_model"], m["ffn_hidden"])

    def forward(self, h, cos, sin, mask):
        h = h + self.attn(self.attn_norm(h), cos, sin, mask)
        if self.moe:
            y, aux = self.ffn(self.ffn_norm(h))
        else:
            y, aux = self.ffn(self.ffn_norm(h)), h.new_zeros(())
        return h + y, aux


class Model(nn.Module):
    def __init__(self, m, seq_len):
        super().__init__()
        self.embed = nn.Embedding(m["vocab_size"], m["d_model"])
        self.layers = nn.ModuleList(Block(m, l) for l in range(m["n_layers"]))
        self.final_norm = RMSNorm(m["d_model"], m["norm_eps"])
        self.lm_head = None if m["tie_embeddings"] else nn.Linear(m["d_model"], m["vocab_size"], bias=False)
        for p in self.parameters():
            if p.dim() >= 2:
                nn.init.normal_(p, std=m["init_std"])
        hd = m["d_model"] // m["n_heads"]
        inv = m["rope_theta"] ** (-torch.arange(0, hd // 2, dtype=torch.float32) * 2 / hd)
        ang = torch.arange(seq_len, dtype=torch.float32)[:, None] * inv[None, :]
        self.register_buffer("cos", torch.cat((ang.cos(), ang.cos()), -1), persistent=False)
        self.register_buffer("sin", torch.cat((ang.sin(), ang.sin()), -1), persistent=False)
        self.register_buffer("mask", torch.full((seq_len, seq_len), float("-inf")).triu(1), persistent=False)

    def forward(self, tokens, targets):
        h = self.embed(tokens)
        aux = h.new_zeros(())
        for layer in self.layers:
            h, a = layer(h, self.cos, self.sin, self.mask)
            aux = aux + a
        h = self.final_norm(h)
        logits = h @ (self.embed.weight if self.lm_head is None else self.lm_head.weight).t()
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)) + aux


def active_matmul_params(m):
    d, h, hkv = m["d_model"], m["n_heads"], m["n_kv_heads"]
    hd = d // h
    moe = m["moe"]
    n = 0
    for layer in range(m["n_layers"]):
        n += d * h * hd * 2 + d * hkv * hd * 2
        if is_moe_layer(m, layer):
            n += moe["num_experts"] * d + moe["top_k"] * 3 * d * moe["expert_hidden"]
            n += 3 * d * moe["num_shared_experts"] * moe["shared_expert_hidden"]
        else:
            n += 3 * d * m["ffn_hidden"]
    return n + m["vocab_size"] * d


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def gemm_peak_gflops(device, dtype, seconds=2.0):
    n = 2048 if device == "cpu" else 8192
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    sync(device)
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        a @ b
        sync(device)
        best = max(best, 2 * n ** 3 / (time.perf_counter() - t0) / 1e9)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--attention", default="sdpa", choices=["sdpa", "explicit"],
                    help="on a GPU: fused scaled_dot_product_attention (default) or the explicit masked softmax")
    args = ap.parse_args()
    global USE_SDPA
    USE_SDPA = SDPA and args.attention == "sdpa"
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    m, t, o = load_config(args.config)
    seq, gb, mb = t["seq_len"], t["global_batch"], t["micro_batch"]
    dev = args.device
    bf16 = t["precision"] == "bf16"
    if bf16 and dev != "cuda":
        sys.exit("train.precision bf16: run with --device cuda")
    model = Model(m, seq).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=o["lr"], betas=(o["beta1"], o["beta2"]), eps=o["eps"],
                            weight_decay=o["weight_decay"])
    gen = torch.Generator().manual_seed(1)

    def step():
        opt.zero_grad(set_to_none=True)
        for _ in range(gb // mb):
            tokens = torch.randint(0, m["vocab_size"], (mb, seq), generator=gen).to(dev)
            targets = torch.randint(0, m["vocab_size"], (mb, seq), generator=gen).to(dev)
            with torch.autocast(device_type=dev, dtype=torch.bfloat16, enabled=bf16):
                loss = model(tokens, targets)
            (loss * (mb / gb)).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), t["grad_clip"])
        opt.step()
        sync(dev)

    peak = gemm_peak_gflops(dev, torch.bfloat16 if bf16 else torch.float32)
    hd = m["d_model"] // m["n_heads"]
    flops_per_token = 6 * active_matmul_params(m) + 12 * m["n_layers"] * seq * m["n_heads"] * hd
    for _ in range(2):
        step()
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    tps = gb * seq * len(times) / sum(times)
    where = torch.cuda.get_device_name() if dev == "cuda" else f"{args.threads} thread(s)"
    attention = ("scaled_dot_product_attention" if USE_SDPA and args.device == "cuda" else "explicit softmax")
    print(f"pytorch {torch.__version__} eager, {where}, {t['precision']}, attention: {attention}: {args.config}")
    print(f"GEMM peak (torch matmul, {t['precision']}): {peak:.1f} GFLOP/s")
    print(f"steps timed: {len(times)}, mean step {1000 * sum(times) / len(times):.1f} ms")
    print(f"tokens/s: {tps:.1f}")
    print(f"MFU: {100 * flops_per_token * tps / (peak * 1e9):.1f}% of torch's measured GEMM peak")
    return 0


if __name__ == "__main__":
    sys.exit(main())
