#!/usr/bin/env python3
"""The training step of bench_train.cpp written in Python with Debian's python3-torch (LibTorch 1.13 underneath):
the same UNet (modules/diffusion/src/network.cpp), EDM preconditioning, clean loss, gradient clipping, Adam and
EMA. Prints images/s for fp32 and bf16 autocast. Usage: train_step.py [--batch N] [--size N] [--steps N]"""
import argparse
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def groups_for(channels, wanted):
    g = min(wanted, channels)
    while channels % g:
        g -= 1
    return g


def norm_fp32(norm, x):
    # As in network.cpp: GroupNorm in float32, outside CPU autocast.
    with torch.autocast("cpu", enabled=False):
        return norm(x.float())


class ResBlock(nn.Module):
    def __init__(self, cin, cout, emb, groups):
        super().__init__()
        self.norm0 = nn.GroupNorm(groups_for(cin, groups), cin)
        self.conv0 = nn.Conv2d(cin, cout, 3, padding=1)
        self.affine = nn.Linear(emb, 2 * cout)
        self.norm1 = nn.GroupNorm(groups_for(cout, groups), cout, affine=False)
        self.conv1 = nn.Conv2d(cout, cout, 3, padding=1)
        nn.init.zeros_(self.conv1.weight)
        nn.init.zeros_(self.conv1.bias)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, emb):
        h = self.conv0(F.silu(norm_fp32(self.norm0, x)))
        scale, shift = self.affine(emb)[:, :, None, None].chunk(2, 1)
        h = F.silu(norm_fp32(self.norm1, h) * (scale + 1) + shift)
        h = self.conv1(h)
        return (self.skip(x) if self.skip is not None else x).to(h.dtype) + h


class Attention(nn.Module):
    def __init__(self, ch, groups):
        super().__init__()
        self.heads = max(1, ch // 64)
        self.norm = nn.GroupNorm(groups_for(ch, groups), ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x):
        b, c, hh, ww = x.shape
        t = self.qkv(norm_fp32(self.norm, x)).reshape(b, 3, self.heads, c // self.heads, hh * ww)
        q, k, v = t[:, 0], t[:, 1], t[:, 2]
        w = torch.softmax(q.transpose(2, 3) @ k / math.sqrt(c // self.heads), -1)
        p = self.proj((v @ w.transpose(2, 3)).reshape(b, c, hh, ww))
        return x.to(p.dtype) + p


class UNet(nn.Module):
    def __init__(self, image=2, cond=0, base=32, mult=(1, 2, 2), blocks=2, attn=(2,), groups=8):
        super().__init__()
        self.base, self.levels, self.blocks = base, len(mult), blocks
        emb = 4 * base
        self.map0, self.map1 = nn.Linear(base, emb), nn.Linear(emb, emb)
        self.conv_in = nn.Conv2d(image + cond, base, 3, padding=1)
        self.enc, self.enc_attn, self.downs = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        skips, ch = [base], base
        for lvl, m in enumerate(mult):
            for _ in range(blocks):
                self.enc.append(ResBlock(ch, base * m, emb, groups))
                self.enc_attn.append(Attention(base * m, groups) if lvl in attn else nn.Identity())
                ch = base * m
                skips.append(ch)
            if lvl + 1 < len(mult):
                self.downs.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                skips.append(ch)
        self.mid0 = ResBlock(ch, ch, emb, groups)
        self.mid_attn = Attention(ch, groups)
        self.mid1 = ResBlock(ch, ch, emb, groups)
        self.dec, self.dec_attn, self.ups = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for lvl in reversed(range(len(mult))):
            for _ in range(blocks + 1):
                self.dec.append(ResBlock(ch + skips.pop(), base * mult[lvl], emb, groups))
                self.dec_attn.append(Attention(base * mult[lvl], groups) if lvl in attn else nn.Identity())
                ch = base * mult[lvl]
            if lvl > 0:
                self.ups.append(nn.Conv2d(ch, ch, 3, padding=1))
        self.norm_out = nn.GroupNorm(groups_for(ch, groups), ch)
        self.conv_out = nn.Conv2d(ch, image, 3, padding=1)
        with torch.no_grad():
            self.conv_out.weight.mul_(0.2)

    def forward(self, x, c_noise):
        half = self.base // 2
        freqs = (1.0 / 10000) ** (torch.arange(half, dtype=torch.float32) / half)
        args = c_noise.float()[:, None] * freqs[None]
        emb = torch.cat([torch.cos(args), torch.sin(args)], 1)
        emb = F.silu(self.map1(F.silu(self.map0(emb))))
        t = self.conv_in(x)
        skips = [t]
        i = d = 0
        for lvl in range(self.levels):
            for _ in range(self.blocks):
                t = self.enc_attn[i](self.enc[i](t, emb))
                skips.append(t)
                i += 1
            if lvl + 1 < self.levels:
                t = self.downs[d](t)
                d += 1
                skips.append(t)
        t = self.mid1(self.mid_attn(self.mid0(t, emb)), emb)
        i = u = 0
        for lvl in reversed(range(self.levels)):
            for _ in range(self.blocks + 1):
                t = self.dec_attn[i](self.dec[i](torch.cat([t, skips.pop()], 1), emb))
                i += 1
            if lvl > 0:
                t = self.ups[u](F.interpolate(t, scale_factor=2, mode="nearest"))
                u += 1
        return self.conv_out(F.silu(norm_fp32(self.norm_out, t)))


class Edm(nn.Module):
    def __init__(self, net, sigma_data=0.5):
        super().__init__()
        self.net, self.sd = net, sigma_data

    def forward(self, x, sigma):
        s = sigma.reshape(-1, 1, 1, 1)
        sd = self.sd
        c_skip = sd * sd / (s * s + sd * sd)
        c_out = s * sd / (s * s + sd * sd).sqrt()
        c_in = 1 / (s * s + sd * sd).sqrt()
        return c_skip * x + c_out * self.net(c_in * x, sigma.log() / 4).to(x.dtype)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    for bf16 in (False, True):
        torch.manual_seed(0)
        model = Edm(UNet())
        params = sum(q.numel() for q in model.parameters())
        shadow = [q.detach().clone() for q in model.parameters()]
        opt = torch.optim.Adam(model.parameters(), lr=2e-4)
        x0 = torch.randn(a.batch, 2, a.size, a.size) * 0.5

        def step():
            sigma = (torch.randn(a.batch) * 1.2 - 1.2).exp()
            noise = torch.randn_like(x0)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                d = model(x0 + sigma.reshape(-1, 1, 1, 1) * noise, sigma)
                err = (d - x0).square().flatten(1).mean(1)
                loss = ((sigma * sigma + 0.25) / (sigma * 0.5) ** 2 * err).mean()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            with torch.no_grad():
                for s, q in zip(shadow, model.parameters()):
                    s.mul_(0.999).add_(q, alpha=0.001)

        step()
        t0 = time.perf_counter()
        for _ in range(a.steps):
            step()
        s = time.perf_counter() - t0
        print(f"Python {'bf16' if bf16 else 'fp32'}: {params} parameters, batch {a.batch} at {a.size}x{a.size}, "
              f"{a.threads} threads: {s / a.steps:.3f} s/step, {a.batch * a.steps / s:.2f} images/s", flush=True)


if __name__ == "__main__":
    main()
