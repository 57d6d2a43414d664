#!/usr/bin/python3
"""PyTorch-eager side of bench/train_vs_torch.sh, and the model-FLOPs count both sides share.

  train_torch_step.py step  --init CKPT --data TRAIN.bin --batch B --seq T --steps N --threads P
      N training steps of the torch transcription tests/ref/dsv3_torch.py in float32; one JSON
      line per step: {"step", "loss", "tok_s"} (tok_s = B*T / wall time of the step).
  train_torch_step.py flops --init CKPT --seq T
      {"flops_per_token", ...}: model FLOPs of one training step per token (see flops()).

The step is the one `dsv3 train` takes with its default recipe: loss = CE + 0.3 * MTP CE +
1e-4 * sequence-wise balance loss (the reference's own `losses`), backward, global-norm clip 1.0,
torch.optim.AdamW (lr 3e-4, betas 0.9/0.95, eps 1e-8, weight decay 0.1 on matrices only, as
dsv3 decays 2-D non-norm tensors), then the aux-loss-free router-bias update (gamma 1e-3).
Run with Debian's /usr/bin/python3 (torch 1.13).
"""
import argparse, json, os, sys, time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "ref"))
import dsv3_torch as R  # noqa: E402  (sets the default dtype to float64 on import)

# The reference computes in float64 for gradient checks. For speed we want PyTorch's ordinary
# fp32 path without editing the reference: make new tensors float32 (the balance-loss
# accumulator, zeros) and cast its RoPE tables, the only tensors it builds as explicit float64
# (a float64 cos/sin would promote q/k, and then everything after, to float64).
torch.set_default_dtype(torch.float32)
_rope64 = R.rope_tables
R.rope_tables = lambda c, T: tuple(t.float() for t in _rope64(c, T))


def flops(c, T):
    """Model FLOPs per token of one training step (forward + backward), for sequences of T.

    Counted: 6 x the matmul weights each token touches (2 forward, 2 for the input gradient,
    2 for the weight gradient): per decoder layer the MLA projections (q_a, q_b or q, kv_a, kv_b,
    o), the dense FFN or the MoE router + shared experts + top-K routed experts; the LM head; per
    MTP module eh_proj, its decoder layer and its head, over the T-1-k positions it runs on.
    Plus causal attention: forward 2*nh*(qk_head + v_head) FLOPs per (query, key) pair
    (scores and P.V), (T+1)/2 keys per query on average, x3 for forward + backward.
    Not counted: embedding lookups, norms, RoPE, softmax, SiLU, cross-entropy, the optimizer.
    """
    H, V, nh = c["hidden_size"], c["vocab_size"], c["num_attention_heads"]
    qk, vd = c["qk_nope_head_dim"] + c["qk_rope_head_dim"], c["v_head_dim"]
    kvl, rd = c["kv_lora_rank"], c["qk_rope_head_dim"]
    ql = c.get("q_lora_rank")
    attn = (H * ql + ql * nh * qk if ql else H * nh * qk) + H * (kvl + rd) + kvl * nh * (c["qk_nope_head_dim"] + vd) \
        + nh * vd * H
    dense = 3 * H * c["intermediate_size"]
    Im, E, K = c["moe_intermediate_size"], c["n_routed_experts"], c["num_experts_per_tok"]
    moe = H * E + 3 * H * Im * (c["n_shared_experts"] + K)
    ffn = lambda i: moe if R.is_moe(c, i) else dense
    att_pair = 2 * nh * (qk + vd)  # forward FLOPs per (query, key) pair
    L, D = c["num_hidden_layers"], c.get("num_nextn_predict_layers") or 0
    main_w = sum(attn + ffn(i) for i in range(L)) + H * V
    main_att = L * att_pair * (T + 1) / 2
    mtp_w = mtp_att = 0.0
    for k in range(D):  # module k runs on T-1-k of the T positions
        Tk = T - 1 - k
        if Tk < 1:
            break
        mtp_w += Tk / T * (2 * H * H + attn + ffn(L + k) + H * V)
        mtp_att += Tk / T * att_pair * (Tk + 1) / 2
    total = 6 * (main_w + mtp_w) + 3 * (main_att + mtp_att)
    return dict(flops_per_token=total, matmul_params_per_token=main_w + mtp_w,
                matmul_flops=6 * (main_w + mtp_w), attention_flops=3 * (main_att + mtp_att))


def cmd_step(a):
    torch.set_num_threads(a.threads)
    c = R.load_config(a.init)
    raw = R.load_dir(a.init)  # the reference's own loader: {name: float32 ndarray}
    P = {n: torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)) for n, x in raw.items()}
    R.share_mtp(c, P)  # the MTP modules use the main embedding and head, as dsv3 train does
    names = R.trainable(P)  # everything but the router biases
    for n in names:
        P[n].requires_grad_(True)
    m = R.Model(c, P)
    groups = [{"params": [P[n] for n in names if P[n].dim() == 2 and "norm" not in n], "weight_decay": 0.1},
              {"params": [P[n] for n in names if not (P[n].dim() == 2 and "norm" not in n)], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=3e-4, betas=(0.9, 0.95), eps=1e-8)
    params = [P[n] for n in names]
    # The same kind of tokens dsv3 trains on: consecutive B x T windows of its train.bin
    # (32-byte header, then uint32 ids).
    ids = np.fromfile(a.data, dtype="<u4", offset=32).astype(np.int64)
    n = a.batch * a.seq
    if len(ids) < n:
        raise SystemExit(f"{a.data}: {len(ids)} tokens, need {n}")
    E = c["n_routed_experts"]
    for step in range(a.steps):
        o = (step * n) % (len(ids) - n + 1)
        batch = torch.from_numpy(ids[o: o + n].reshape(a.batch, a.seq))
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        ls = R.losses(m, batch, 0.3, 1e-4)
        assert ls["total"].dtype == torch.float32, ls["total"].dtype  # really the fp32 path
        ls["total"].backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        with torch.no_grad():  # aux-loss-free balancing: bias += gamma * sign(mean load - load)
            for layer, s, idx in m.routes:
                b = P.get(f"model.layers.{layer}.mlp.gate.e_score_correction_bias")
                if b is not None:
                    load = torch.bincount(idx.reshape(-1), minlength=E).to(b.dtype)
                    b += 1e-3 * torch.sign(load.mean() - load)
        dt = time.perf_counter() - t0
        print(json.dumps({"step": step + 1, "loss": float(ls["total"]), "tok_s": n / dt}), flush=True)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("step")
    p.add_argument("--init", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p = sub.add_parser("flops")
    p.add_argument("--init", required=True)
    p.add_argument("--seq", type=int, default=256)
    a = ap.parse_args()
    if a.cmd == "flops":
        print(json.dumps(flops(R.load_config(a.init), a.seq)))
        return 0
    return cmd_step(a)


if __name__ == "__main__":
    sys.exit(main())
