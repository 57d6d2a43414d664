#!/usr/bin/env python3
"""Projected decode speed of expert-parallel dsv3 (mpirun -np K, one rank per machine).

dsv3's layout (README "Expert-parallel inference"): rank 0 reads the attention, dense layers,
shared experts, embedding row and head for every token, plus the routed experts it owns; ranks
> 0 read only their routed experts. Each MoE layer is three all-to-alls: a header, the dispatch of
x [H] per (token, off-rank expert) and the combine of the expert's output [H] back.

One decode token (batch 1), routing uniform over experts:
  rank 0 bytes  = non-routed active bytes + top_k * expert_bytes * moe_layers / K
  wire bytes    = moe_layers * 2 * top_k * (K-1)/K * H * wire_bytes      (rank 0 out + back in)
  time          = rank0_bytes / mem_bw + wire_bytes / net_bw + moe_layers * 3 * latency
Workers read top_k/K experts per layer at the same time as rank 0's shared and local experts, so
rank 0 is the critical path. Memory per machine: rank 0 = everything but the routed experts +
1/K of them; the others 1/K of the routed experts.

  python3 bench/ep_cost_model.py [--config config.json] [--mem-gbs 300] [--net-gbits 100]
                                 [--latency-us 20] [--wire-bytes 4] [--ranks 1,2,4,8]
Without --config: DeepSeek-V3 671B as released (FP8 E4M3 Linears with 128x128 float32 scales,
BF16 embedding and head).
"""
import argparse
import json

V3 = dict(hidden_size=7168, num_hidden_layers=61, first_k_dense_replace=3, n_routed_experts=256,
          num_experts_per_tok=8, n_shared_experts=1, moe_intermediate_size=2048, intermediate_size=18432,
          q_lora_rank=1536, kv_lora_rank=512, num_attention_heads=128, qk_nope_head_dim=128,
          qk_rope_head_dim=64, v_head_dim=128, vocab_size=129280, num_nextn_predict_layers=1)


def fp8(rows, cols):  # E4M3 bytes + one float32 scale per 128x128 block
    return rows * cols + 4 * ((rows + 127) // 128) * ((cols + 127) // 128)


def sizes(c):
    H, nh = c["hidden_size"], c["num_attention_heads"]
    qk = c["qk_nope_head_dim"] + c["qk_rope_head_dim"]
    ql, kvl, rd = c.get("q_lora_rank") or 0, c["kv_lora_rank"], c["qk_rope_head_dim"]
    attn = (fp8(ql, H) + fp8(nh * qk, ql) if ql else fp8(nh * qk, H)) + fp8(kvl + rd, H) + \
        fp8(nh * (c["qk_nope_head_dim"] + c["v_head_dim"]), kvl) + fp8(H, nh * c["v_head_dim"])
    mlp = lambda i: 2 * fp8(i, H) + fp8(H, i)
    expert = mlp(c["moe_intermediate_size"])
    shared = mlp(c["moe_intermediate_size"] * c.get("n_shared_experts", 0))
    L, dense = c["num_hidden_layers"], c["first_k_dense_replace"]
    moe_layers = L - dense
    head = 2 * c["vocab_size"] * H
    active_rest = head + L * attn + dense * mlp(c["intermediate_size"]) + moe_layers * shared
    mtp = c.get("num_nextn_predict_layers", 0)
    routed_total = (moe_layers + mtp) * c["n_routed_experts"] * expert
    rest_total = (L + mtp) * attn + dense * mlp(c["intermediate_size"]) + (moe_layers + mtp) * shared + \
        2 * head + mtp * (fp8(H, 2 * H) + head)
    return dict(active_rest=active_rest, expert=expert, moe_layers=moe_layers, routed_total=routed_total,
                rest_total=rest_total)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", help="config.json (default: DeepSeek-V3 671B)")
    ap.add_argument("--mem-gbs", type=float, default=300, help="memory read bandwidth per machine, GB/s")
    ap.add_argument("--net-gbits", type=float, default=100, help="network bandwidth per machine, Gbit/s")
    ap.add_argument("--latency-us", type=float, default=20, help="one small all-to-all, microseconds")
    ap.add_argument("--wire-bytes", type=float, default=4, help="bytes per value on the wire (dsv3: 4, float32)")
    ap.add_argument("--ranks", default="1,2,4,8")
    a = ap.parse_args()
    c = dict(V3)
    if a.config:
        c.update(json.load(open(a.config)))
    s = sizes(c)
    H, k = c["hidden_size"], c["num_experts_per_tok"]
    print(f"mem {a.mem_gbs:g} GB/s, net {a.net_gbits:g} Gbit/s, latency {a.latency_us:g} us, "
          f"{a.wire_bytes:g} bytes/value on the wire\n")
    print("| machines | weights on rank 0 | on each other | rank-0 bytes/token | wire bytes/token | tok/s |")
    print("|---|---|---|---|---|---|")
    for K in (int(x) for x in a.ranks.split(",")):
        r0 = s["active_rest"] + k * s["expert"] * s["moe_layers"] / K
        wire = s["moe_layers"] * 2 * k * (K - 1) / K * H * a.wire_bytes
        t = r0 / (a.mem_gbs * 1e9) + wire / (a.net_gbits / 8 * 1e9) + (s["moe_layers"] * 3 * a.latency_us * 1e-6 if K > 1 else 0)
        m0 = s["rest_total"] + s["routed_total"] / K
        mo = s["routed_total"] / K if K > 1 else 0
        print(f"| {K} | {m0/1e9:.0f} GB | {mo/1e9:.0f} GB | {r0/1e9:.1f} GB | {wire/1e6:.1f} MB | {1/t:.1f} |")


if __name__ == "__main__":
    main()
