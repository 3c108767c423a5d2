"""Which torch operations give a row a different result depending on what else is in its batch.

    python benchmarks/probe_batch_invariance.py

The first measurement for batch-invariant generation: each probe computes one row alone, then the same row
inside batches of other sizes, at other positions, or with its key buffer padded to other lengths, and counts
the placements whose output is bit-identical to the row alone. Widths are Kronos-mini's (d_model 256, 8
heads of 32). A sampled token whose uniform lands near a CDF boundary flips on a last-bit difference, so
anything short of "identical n/n" can change a sample path.
"""

from __future__ import annotations

import platform

import torch
import torch.nn.functional as F

D, HD, H = 256, 32, 8
TILE = 64
S = 100  # valid keys of the probed row


def report(name: str, alone: torch.Tensor, others: list[torch.Tensor]) -> None:
    diffs = [(o - alone).abs().max().item() for o in others]
    same = sum(d == 0 for d in diffs)
    print(f"| {name} | {same}/{len(diffs)} | {max(diffs):.1e} |")


def main() -> None:
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {platform.machine()}, threads {torch.get_num_threads()}, float32\n")
    print("| probe | placements bit-identical to the row alone | max abs diff |\n|---|---|---|")
    lin = torch.nn.Linear(D, 4 * D)
    x = torch.randn(1, D)
    with torch.no_grad():
        outs = []
        for m in (2, 3, 7, 8, 16, 33, 64, 128, 256, 512):
            for pos in (0, m // 2, m - 1):
                b = torch.randn(m, D)
                b[pos] = x[0]
                outs.append(lin(b)[pos : pos + 1])
        report("Linear, batch of M rows (M 2-512, row first/middle/last)", lin(x), outs)

        def tiled(inp: torch.Tensor) -> torch.Tensor:
            pad = (-inp.shape[0]) % TILE
            z = torch.cat([inp, inp.new_zeros(pad, inp.shape[1])]) if pad else inp
            return torch.cat([lin(z[i : i + TILE]) for i in range(0, z.shape[0], TILE)])[: inp.shape[0]]

        outs = []
        for m in (2, 3, 7, 64, 65, 200, 512):
            for pos in (0, m // 2, m - 1):
                b = torch.randn(m, D)
                b[pos] = x[0]
                outs.append(tiled(b)[pos : pos + 1])
        report(f"Linear in fixed {TILE}-row tiles (last tile zero-padded)", tiled(x), outs)

        def rms(v: torch.Tensor) -> torch.Tensor:
            return v * torch.rsqrt(v.pow(2).mean(-1, keepdim=True) + 1e-5)

        outs = []
        for m in (2, 7, 64, 512):
            b = torch.randn(m, D)
            b[m // 2] = x[0]
            outs.append(rms(b)[m // 2 : m // 2 + 1])
        report("RMSNorm over d_model, batch of M rows", rms(x), outs)

        q, k, v = torch.randn(1, H, 1, HD), torch.randn(1, H, S, HD), torch.randn(1, H, S, HD)

        def batch_with_row0(rows: int, slots: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            """Random queries and key/value buffers of ``slots`` slots, row 0 holding the probed q, k, v."""
            kk, vv, qq = (
                torch.randn(rows, H, slots, HD),
                torch.randn(rows, H, slots, HD),
                torch.randn(rows, H, 1, HD),
            )
            kk[0, :, :S], vv[0, :, :S], qq[0] = k[0], v[0], q[0]
            return kk, vv, qq

        def sdpa_step(smax: int, rows: int) -> torch.Tensor:
            kk, vv, qq = batch_with_row0(rows, smax)
            mask = torch.ones(rows, 1, 1, smax, dtype=torch.bool)
            mask[0, :, :, S:] = False
            return F.scaled_dot_product_attention(qq, kk, vv, attn_mask=mask)[0:1]

        alone = sdpa_step(S, 1)
        report(
            "SDPA decode step, key buffer padded (S+1 .. S+400)",
            alone,
            [sdpa_step(S + e, 1) for e in (1, 7, 28, 156, 400)],
        )
        report("SDPA decode step, same keys, other rows (2-64)", alone, [sdpa_step(S, r) for r in (2, 8, 64)])

        def manual_step(rows: int, cap: int) -> torch.Tensor:
            kk, vv, qq = batch_with_row0(rows, cap)
            valid = torch.arange(cap).view(1, 1, 1, cap) < S
            scores = ((qq @ kk.transpose(-1, -2)) / HD**0.5).masked_fill(~valid, float("-inf"))
            return (scores.softmax(-1) @ vv)[0:1]

        ref = manual_step(1, 512)
        report(
            "masked matmul-softmax step, fixed key capacity (rows 2-64; capacity 1024)",
            ref,
            [
                manual_step(2, 512),
                manual_step(8, 512),
                manual_step(64, 512),
                manual_step(1, 1024),
                manual_step(8, 1024),
            ],
        )
        L = 90
        qf, kf, vf = (torch.randn(1, H, L, HD) for _ in range(3))

        def prefill(pad: int, rows: int) -> torch.Tensor:
            Q, K, V = (torch.randn(rows, H, L + pad, HD) for _ in range(3))
            Q[0, :, :L], K[0, :, :L], V[0, :, :L] = qf[0], kf[0], vf[0]
            return F.scaled_dot_product_attention(Q, K, V, is_causal=True)[0:1, :, :L]

        report(
            "SDPA causal prefill, right-padded and other rows",
            prefill(0, 1),
            [prefill(p, r) for p, r in ((1, 1), (38, 1), (166, 4), (0, 8))],
        )


if __name__ == "__main__":
    main()
