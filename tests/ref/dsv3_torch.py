#!/usr/bin/python3
"""Independent float64 PyTorch reference for dsv3 (forward, training loss, gradient).

Written from /work/shared/spec/deepseek-v3.md (sections 2-6, 9) with transformers' config
semantics; it imports neither transformers nor safetensors. Run with Debian's /usr/bin/python3
(torch 1.13 + numpy). Commands:

  check-forward FIXTURES_DIR        main/MTP logits vs the transformers fixtures (log-softmax)
  loss --init CKPT --seqs SEQS.json [--mtp-weight 0.3] [--balance-alpha 1e-4]
            prints {"main", "mtp" (= lambda/D sum_k CE_k), "balance" (= alpha * ...), "total",
                    "mtp_ce" [CE_k per module, unweighted], "balance_raw" (unweighted),
                    "mtp_agree" [per module: share of its argmaxes equal to the main model's]}
  sgd-check --init CKPT --seqs SEQS.json --lr ETA --mtp-weight L --balance-alpha A
            --trained OUT_DIR [--grads GRADS.safetensors] [--tol 1e-4]
  sgd-ref   --init CKPT --seqs SEQS.json --lr ETA --mtp-weight L --balance-alpha A
            --out OUT_DIR [--grads-out GRADS.safetensors]   writes this reference's own SGD step
  loss, sgd-*, bias-check take --untie-mtp: the MTP modules' own embed_tokens and shared_head.head
            (by default they are the main embedding and lm_head, as dsv3 train trains them)
  loss, sgd-*, bias-check take --mtp-targets main (module k's target at i is the main model's
            argmax at i+1+k instead of t_{i+2+k}) and --mtp-only (the main model frozen: only
            the MTP layers' own tensors have gradients, only their router biases move)
  self-test [FIXTURES_DIR]          autograd vs central finite differences (float64)

Training loss for B sequences of length T (all start at position 0):
  main    = mean_{b, i<=T-2} CE(logits_i, t_{i+1})
  mtp     = lambda/D * sum_k mean_{b, i<=T-3-k} CE(mtp_k logits_i, t_{i+2+k})
            (module k runs over positions 0..T-2-k with emb(t_{i+1+k}); spec section 6)
  balance = alpha * mean_b sum_{MoE layers l} sum_e f_e P_e,
            f_e = E/(K T_l) count_e (constant), P_e = mean_t s_e / sum_j s_j
"""
import argparse, json, math, os, struct, sys
import numpy as np
import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)
HERE = os.path.dirname(os.path.abspath(__file__))

# ----------------------------------------------------------------------------- safetensors


def _e4m3_table():
    """float32 value of each FP8 E4M3 (fn) byte: bias 7, subnormals, 0x7f/0xff = NaN, no inf."""
    b = np.arange(256)
    s = np.where(b >> 7, -1.0, 1.0)
    e, m = (b >> 3) & 15, b & 7
    v = np.where(e == 0, m / 8.0 * 2.0 ** -6, (1 + m / 8.0) * 2.0 ** (e - 7.0)) * s
    v[(b & 0x7F) == 0x7F] = np.nan
    return v.astype(np.float32)


E4M3 = _e4m3_table()


def read_safetensors(path):
    """{name: float32 ndarray} of one file (F8_E4M3 decoded, not yet scaled)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in hdr.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        raw, dt, shape = data[a:b], t["dtype"], t["shape"]
        if dt == "F32":
            v = np.frombuffer(raw, "<f4")
        elif dt == "F64":
            v = np.frombuffer(raw, "<f8").astype(np.float32)
        elif dt == "F16":
            v = np.frombuffer(raw, "<f2").astype(np.float32)
        elif dt == "BF16":  # bf16 = upper 16 bits of a float32
            v = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
        elif dt == "F8_E4M3":
            v = E4M3[np.frombuffer(raw, np.uint8)]
        else:
            raise SystemExit(f"{path}: tensor {name}: unsupported dtype {dt}")
        out[name] = v.reshape(shape).copy()
    return out


SAFETENSORS_NP = {"F32": "<f4", "BF16": "<u2", "I32": "<i4", "I64": "<i8"}  # BF16 as raw bit patterns


def write_safetensors(path, tensors):
    """Write {name: ndarray} as safetensors (sorted names, 8-byte aligned header): F32, or any
    dtype of SAFETENSORS_NP when the value is a (dtype, ndarray) pair."""
    hdr, off, blobs = {}, 0, []
    for name in sorted(tensors):
        dt, a = tensors[name] if isinstance(tensors[name], tuple) else ("F32", tensors[name])
        b = np.ascontiguousarray(a, dtype=SAFETENSORS_NP[dt]).tobytes()
        hdr[name] = {"dtype": dt, "shape": list(np.shape(a)), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for b in blobs:
            f.write(b)


def load_dir(d):
    """All tensors of a checkpoint dir (sharded or not), FP8 weights dequantised in float32:
    value = e4m3(W) * scale_inv[i//128, j//128]. Returns {name: float32 ndarray} without *_scale_inv."""
    idx = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(idx):
        files = sorted(set(json.load(open(idx))["weight_map"].values()))
    else:
        files = sorted(f for f in os.listdir(d) if f.endswith(".safetensors"))
    if not files:
        raise SystemExit(f"{d}: no safetensors files")
    t = {}
    for f in files:
        t.update(read_safetensors(os.path.join(d, f)))
    for name in [n for n in t if n.endswith("_scale_inv")]:
        w, s = t[name[: -len("_scale_inv")]], t.pop(name)
        r, c = w.shape
        full = np.repeat(np.repeat(s, 128, 0), 128, 1)[:r, :c]
        t[name[: -len("_scale_inv")]] = (w * full).astype(np.float32)  # float32 product
    return t


# ----------------------------------------------------------------------------- config

# defaults of transformers' DeepseekV3Config / DeepseekV2Config for fields a config may omit
V3_DEFAULTS = dict(vocab_size=129280, hidden_size=7168, intermediate_size=18432, moe_intermediate_size=2048,
                   num_hidden_layers=61, num_attention_heads=128, n_shared_experts=1, n_routed_experts=256,
                   routed_scaling_factor=2.5, kv_lora_rank=512, q_lora_rank=1536, qk_rope_head_dim=64,
                   v_head_dim=128, qk_nope_head_dim=128, n_group=8, topk_group=4, num_experts_per_tok=8,
                   first_k_dense_replace=3, norm_topk_prob=True, rms_norm_eps=1e-6, rope_theta=10000.0,
                   rope_scaling=None, tie_word_embeddings=False, moe_layer_freq=1, topk_method="noaux_tc",
                   scoring_func="sigmoid", num_nextn_predict_layers=0)
V2_DEFAULTS = dict(V3_DEFAULTS, vocab_size=102400, hidden_size=4096, intermediate_size=11008,
                   moe_intermediate_size=1407, num_hidden_layers=30, num_attention_heads=32,
                   n_shared_experts=None, n_routed_experts=None, routed_scaling_factor=1.0, n_group=None,
                   topk_group=None, num_experts_per_tok=None, first_k_dense_replace=0, norm_topk_prob=False,
                   topk_method="greedy", scoring_func="softmax")


def load_config(d):
    raw = json.load(open(os.path.join(d, "config.json")))
    mt = raw.get("model_type")
    if mt not in ("deepseek_v3", "deepseek_v2"):
        raise SystemExit(f"{d}/config.json: model_type {mt!r} is not deepseek_v3/deepseek_v2")
    c = dict(V3_DEFAULTS if mt == "deepseek_v3" else V2_DEFAULTS)
    c.update({k: v for k, v in raw.items() if v is not None or k in ("q_lora_rank", "rope_scaling")})
    c["n_routed_experts"] = c["n_routed_experts"] or 0
    c["n_shared_experts"] = c["n_shared_experts"] or 0
    return c


def is_moe(c, i):
    """Layer i (MTP layers i >= num_hidden_layers included) uses DeepSeekMoE."""
    return c["n_routed_experts"] > 0 and i >= c["first_k_dense_replace"] and i % c["moe_layer_freq"] == 0


def yarn_mscale(factor, m=1.0):
    return 1.0 if factor <= 1 else 0.1 * m * math.log(factor) + 1.0


def rope_tables(c, T):
    """cos, sin [T, d/2] for consecutive-pair RoPE with transformers' YaRN (spec section 4)."""
    d, theta = c["qk_rope_head_dim"], float(c["rope_theta"])
    inv = 1.0 / theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d)  # [d/2]
    att = 1.0
    rs = c.get("rope_scaling") or {}
    if rs.get("type", rs.get("rope_type")) == "yarn":
        f = float(rs["factor"])
        orig = rs.get("original_max_position_embeddings") or c["max_position_embeddings"]
        bf, bs = rs.get("beta_fast") or 32, rs.get("beta_slow") or 1
        cd = lambda r: d * math.log(orig / (r * 2 * math.pi)) / (2 * math.log(theta))
        lo, hi = max(math.floor(cd(bf)), 0), min(math.ceil(cd(bs)), d - 1)
        if lo == hi:
            hi += 0.001
        ramp = ((torch.arange(d // 2, dtype=torch.float64) - lo) / (hi - lo)).clamp(0, 1)
        inv = inv / f * ramp + inv * (1 - ramp)
        m, mall = rs.get("mscale"), rs.get("mscale_all_dim")
        att = rs.get("attention_factor") or (
            yarn_mscale(f, m) / yarn_mscale(f, mall) if (m and mall) else yarn_mscale(f))
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None]  # [T, d/2]
    return ang.cos() * att, ang.sin() * att


def softmax_scale(c):
    s = (c["qk_nope_head_dim"] + c["qk_rope_head_dim"]) ** -0.5
    rs = c.get("rope_scaling") or {}
    if rs and rs.get("mscale_all_dim"):
        s *= yarn_mscale(float(rs["factor"]), rs["mscale_all_dim"]) ** 2
    return s


# ----------------------------------------------------------------------------- model


def rms(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def lin(x, w):
    return x @ w.t()


def rope(x, cos, sin):
    """x [B, T, h, d]: rotate consecutive pairs (2i, 2i+1) by position*inv_freq_i."""
    xr = x.reshape(*x.shape[:-1], -1, 2)
    a, b = xr[..., 0], xr[..., 1]  # [B, T, h, d/2]
    cs, sn = cos[None, :, None], sin[None, :, None]
    return torch.stack([a * cs - b * sn, a * sn + b * cs], -1).reshape(x.shape)


class Model:
    def __init__(self, c, P):
        self.c, self.P = c, P  # P: {name: float64 tensor}
        self.L, self.D = c["num_hidden_layers"], c.get("num_nextn_predict_layers") or 0
        self.eps = c["rms_norm_eps"]
        self.routes = []  # per MoE layer call: (layer, s [B, T, E], chosen idx [B, T, K])

    def w(self, name, fallback=None):
        if name in self.P:
            return self.P[name]
        if fallback and fallback in self.P:
            return self.P[fallback]
        raise SystemExit(f"checkpoint lacks tensor {name}")

    def attn(self, x, p, cos, sin):
        """Naive (non-absorbed) MLA. x [B, T, H] -> [B, T, H]."""
        c, B, T = self.c, x.shape[0], x.shape[1]
        nh, nope, rd, vd = c["num_attention_heads"], c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"]
        if c.get("q_lora_rank"):
            q = lin(rms(lin(x, self.w(p + "q_a_proj.weight")), self.w(p + "q_a_layernorm.weight"), self.eps),
                    self.w(p + "q_b_proj.weight"))
        else:
            q = lin(x, self.w(p + "q_proj.weight"))
        q = q.view(B, T, nh, nope + rd)
        q_nope, q_pe = q[..., :nope], rope(q[..., nope:], cos, sin)  # [B, T, nh, nope], [B, T, nh, rd]
        kv = lin(x, self.w(p + "kv_a_proj_with_mqa.weight"))  # [B, T, kvl + rd]
        ckv = rms(kv[..., : c["kv_lora_rank"]], self.w(p + "kv_a_layernorm.weight"), self.eps)
        k_pe = rope(kv[..., c["kv_lora_rank"]:].unsqueeze(2), cos, sin)  # [B, T, 1, rd] shared by heads
        kvb = lin(ckv, self.w(p + "kv_b_proj.weight")).view(B, T, nh, nope + vd)
        k_nope, v = kvb[..., :nope], kvb[..., nope:]
        sc = (torch.einsum("bthd,bshd->bhts", q_nope, k_nope)
              + torch.einsum("bthd,bsd->bhts", q_pe, k_pe[:, :, 0])) * softmax_scale(c)  # [B, nh, T, T]
        mask = torch.ones(T, T, dtype=torch.bool).triu(1)
        pr = sc.masked_fill(mask, float("-inf")).softmax(-1)
        o = torch.einsum("bhts,bshd->bthd", pr, v).reshape(B, T, nh * vd)
        return lin(o, self.w(p + "o_proj.weight"))

    def mlp(self, x, p):
        return lin(F.silu(lin(x, self.w(p + "gate_proj.weight"))) * lin(x, self.w(p + "up_proj.weight")),
                   self.w(p + "down_proj.weight"))

    def route(self, s, bias):
        """Discrete expert choice (no gradient). s [N, E] unbiased scores -> idx [N, K]."""
        c, E, K = self.c, self.c["n_routed_experts"], self.c["num_experts_per_tok"]
        ch = s.detach() + (bias if bias is not None else 0.0)
        meth = c["topk_method"]
        if meth in ("noaux_tc", "group_limited_greedy") and (c.get("n_group") or 1) > 1:
            G = c["n_group"]
            g = ch.view(-1, G, E // G)
            gs = g.topk(2, -1).values.sum(-1) if meth == "noaux_tc" else g.max(-1).values  # [N, G]
            keep = torch.sort(gs, dim=-1, descending=True, stable=True).indices[:, : c["topk_group"]]
            gmask = torch.zeros_like(gs).scatter_(1, keep, 1.0).bool()
            # -inf as the official code and the spec (transformers fills 0.0: differs when score+bias < 0)
            ch = ch.masked_fill(~gmask.repeat_interleave(E // G, 1), float("-inf"))
        elif meth not in ("noaux_tc", "group_limited_greedy", "greedy"):
            raise SystemExit(f"config: topk_method {meth!r} unsupported")
        return torch.sort(ch, dim=-1, descending=True, stable=True).indices[:, :K]  # ties -> lower index

    def moe(self, x, p, layer):
        """DeepSeekMoE. x [B, T, H] -> [B, T, H]; records (s, idx) for the balance loss."""
        c, B, T, H = self.c, *x.shape
        K = c["num_experts_per_tok"]
        xf = x.reshape(-1, H)  # [N, H]
        logits = lin(xf, self.w(p + "gate.weight"))  # [N, E]
        s = logits.sigmoid() if c["scoring_func"] == "sigmoid" else logits.softmax(-1)
        idx = self.route(s, self.P.get(p + "gate.e_score_correction_bias"))
        wt = s.gather(1, idx)  # [N, K] unbiased scores: gradient reaches gate.weight
        if c["norm_topk_prob"] and K > 1 and c["model_type"] != "deepseek_v2":
            wt = wt / (wt.sum(-1, keepdim=True) + 1e-20)
        wt = wt * c["routed_scaling_factor"]
        y = torch.zeros_like(xf)
        for e in idx.unique().tolist():
            rows, slot = (idx == e).nonzero(as_tuple=True)
            y = y.index_add(0, rows, wt[rows, slot, None] * self.mlp(xf[rows], f"{p}experts.{e}."))
        if c["n_shared_experts"]:
            y = y + self.mlp(xf, p + "shared_experts.")
        self.routes.append((layer, s.view(B, T, -1), idx.view(B, T, K)))
        return y.view(B, T, H)

    def layer(self, x, i, cos, sin):
        p = f"model.layers.{i}."
        x = x + self.attn(rms(x, self.w(p + "input_layernorm.weight"), self.eps), p + "self_attn.", cos, sin)
        h = rms(x, self.w(p + "post_attention_layernorm.weight"), self.eps)
        return x + (self.moe(h, p + "mlp.", i) if is_moe(self.c, i) else self.mlp(h, p + "mlp."))

    def head(self):
        return self.w("lm_head.weight", "model.embed_tokens.weight" if self.c["tie_word_embeddings"] else None)

    def forward(self, ids):
        """ids [B, T] -> main logits [B, T, V], hidden after model.norm [B, T, H]."""
        T = ids.shape[1]
        cos, sin = rope_tables(self.c, T)
        x = self.w("model.embed_tokens.weight")[ids]
        for i in range(self.L):
            x = self.layer(x, i, cos, sin)
        h = rms(x, self.w("model.norm.weight"), self.eps)
        return lin(h, self.head()), h

    def mtp(self, k, h, ids):
        """MTP module k (layer L+k) over positions 0..n-1, n = T-1-k.
        h [B, >=n, H]: main hidden after model.norm (k=0) or module k-1's decoder output.
        Returns logits [B, n, V] (row i predicts t_{i+2+k}) and the decoder output z [B, n, H]."""
        p, n = f"model.layers.{self.L + k}.", ids.shape[1] - 1 - k
        emb = self.w(p + "embed_tokens.weight", "model.embed_tokens.weight")[ids[:, 1 + k: 1 + k + n]]
        z = lin(torch.cat([rms(emb, self.w(p + "enorm.weight"), self.eps),
                           rms(h[:, :n], self.w(p + "hnorm.weight"), self.eps)], -1), self.w(p + "eh_proj.weight"))
        cos, sin = rope_tables(self.c, n)
        z = self.layer(z, self.L + k, cos, sin)
        lg = lin(rms(z, self.w(p + "shared_head.norm.weight"), self.eps),
                 self.w(p + "shared_head.head.weight", "lm_head.weight"))
        return lg, z


def losses(m, ids, lam, alpha, main_targets=False):
    """Loss components (tensors) for ids [B, T]; see the module docstring. main_targets: the MTP
    modules learn the main model's greedy predictions (argmax of its logits, a constant)."""
    m.routes = []
    B, T = ids.shape
    lg, h = m.forward(ids)
    V = lg.shape[-1]
    main = F.cross_entropy(lg[:, :-1].reshape(-1, V), ids[:, 1:].reshape(-1))
    ce, agree = [], []
    for k in range(m.D):
        if T - 1 - k < 1:
            break
        lgk, h = m.mtp(k, h, ids)
        if T - 2 - k >= 1:
            tgt = lg[:, 1 + k:-1].detach().argmax(-1) if main_targets else ids[:, 2 + k:]
            ce.append(F.cross_entropy(lgk[:, :-1].reshape(-1, V), tgt.reshape(-1)))
            agree.append((lgk[:, :-1].argmax(-1) == lg[:, 1 + k:-1].argmax(-1)).double().mean())
    mtp_raw = sum(ce) / m.D if ce else torch.zeros(())
    E, K = m.c["n_routed_experts"], m.c["num_experts_per_tok"]
    bal = torch.zeros(B)
    for _, s, idx in m.routes:
        Tl = s.shape[1]
        cnt = F.one_hot(idx, E).sum((1, 2)).to(s.dtype)  # [B, E] constant
        Pm = (s / s.sum(-1, keepdim=True)).mean(1)  # [B, E]
        bal = bal + (E / (K * Tl) * cnt * Pm).sum(-1)
    bal_raw = bal.mean()
    total = main + lam * mtp_raw + alpha * bal_raw
    return dict(main=main, mtp=lam * mtp_raw, balance=alpha * bal_raw, total=total,
                mtp_ce=[x for x in ce], balance_raw=bal_raw, mtp_agree=[x for x in agree])


def shared_mtp_names(c):
    """{MTP tensor: main tensor} that training shares (spec 6: the MTP modules' embed_tokens and
    shared_head.head are the main embedding and lm_head)."""
    L, D = c["num_hidden_layers"], c.get("num_nextn_predict_layers") or 0
    head = "model.embed_tokens.weight" if c["tie_word_embeddings"] else "lm_head.weight"
    out = {}
    for k in range(D):
        out[f"model.layers.{L + k}.embed_tokens.weight"] = "model.embed_tokens.weight"
        out[f"model.layers.{L + k}.shared_head.head.weight"] = head
    return out


def share_mtp(c, P):
    """Drops the MTP copies from P, so Model.w falls back to the main tensors: one leaf, whose
    autograd gradient sums the main and MTP uses (dsv3 train's default)."""
    for n in shared_mtp_names(c):
        P.pop(n, None)
    return P


def load_params(d, grad=False, tied=False):
    """(config, {name: float64 tensor}, {name: float32 ndarray W0}); with tied, P lacks the MTP
    copies of the main embedding and head (share_mtp)."""
    c = load_config(d)
    raw = load_dir(d)
    P = {n: torch.from_numpy(a.astype(np.float64)) for n, a in raw.items()}
    if tied:
        share_mtp(c, P)
    if grad:
        for n, t in P.items():
            if not n.endswith("e_score_correction_bias"):
                t.requires_grad_(True)
    return c, P, raw


def trainable(P):
    return [n for n in sorted(P) if not n.endswith("e_score_correction_bias")]


def read_seqs(path):
    s = json.load(open(path))
    if not s or len({len(x) for x in s}) != 1 or len(s[0]) < 2:
        raise SystemExit(f"{path}: need a non-empty list of equal-length (>=2) token lists")
    return torch.tensor(s, dtype=torch.long)


def is_mtp_tensor(c, name):
    return any(name.startswith(f"model.layers.{c['num_hidden_layers'] + k}.")
               for k in range(c.get("num_nextn_predict_layers") or 0))


def grads(d, seqs, lam, alpha, tied, main_targets=False, mtp_only=False):
    """mtp_only: the gradients of every tensor outside the MTP layers are zero (frozen; the
    shared embedding and head are main tensors, so frozen too)."""
    c, P, raw = load_params(d, grad=True, tied=tied)
    m = Model(c, P)
    ls = losses(m, seqs, lam, alpha, main_targets)
    names = trainable(P)
    g = torch.autograd.grad(ls["total"], [P[n] for n in names], allow_unused=True)
    G = {n: (gi if gi is not None and (not mtp_only or is_mtp_tensor(c, n)) else torch.zeros_like(P[n])).detach().numpy()
         for n, gi in zip(names, g)}
    return c, raw, ls, G


def jl(ls):
    return {k: ([float(x) for x in v] if isinstance(v, list) else float(v)) for k, v in ls.items()}


# ----------------------------------------------------------------------------- commands


def cmd_check_forward(a):
    fx = a.fixtures
    ref = json.load(open(os.path.join(fx, "ref.json")))
    worst, lines = 0.0, []

    def cmp(tag, lg, path, V):
        nonlocal worst
        want = torch.from_numpy(np.fromfile(path, "<f4").astype(np.float64)).view(-1, V)
        got = lg.detach()[: want.shape[0]]
        assert got.shape == want.shape, (tag, got.shape, want.shape)
        dlp = (got.log_softmax(-1) - want.log_softmax(-1)).abs()
        row = dlp.max(-1).values
        worst = max(worst, float(row.max()))
        lines.append(f"{tag:28s} rows {want.shape[0]:4d}  max|dlogprob| {float(row.max()):.3e} "
                     f"(row {int(row.argmax())})  argmax agree {int((got.argmax(-1) == want.argmax(-1)).sum())}"
                     f"/{want.shape[0]}")

    for model, key in (("v3-fp8", "v3-fp8"), ("v2lite-bf16", "v2lite-bf16")):
        c, P, _ = load_params(os.path.join(fx, model))
        m = Model(c, P)
        V = c["vocab_size"]
        with torch.no_grad():
            for k, e in enumerate(ref[key]):
                ids = torch.tensor([e["prompt"]])
                lg, _ = m.forward(ids)
                cmp(f"{model} prompt {k}", lg[0], os.path.join(fx, f"{model}_logits_{k}.f32"), V)
                full = torch.tensor([e["prompt"] + e["greedy"]])
                lg, h = m.forward(full)
                n = len(e["prompt"])
                gr = lg[0, n - 1: -1].argmax(-1).tolist()
                bad = [j for j in range(len(gr)) if gr[j] != e["greedy"][j]]
                lines.append(f"{model} prompt {k} greedy: {len(gr) - len(bad)}/{len(gr)} tokens agree"
                             + (f" (first miss step {bad[0]}, gap {e['gaps'][bad[0]]:.2e})" if bad else ""))
                if "mtp_argmax" in e and m.D:
                    mlg, _ = m.mtp(0, h, full)
                    am = mlg[0].argmax(-1).tolist()
                    ok = sum(int(x == y) for x, y in zip(am, e["mtp_argmax"]))
                    lines.append(f"{model} prompt {k} mtp_argmax: {ok}/{len(e['mtp_argmax'])} agree")
                    if k == 1:
                        cmp(f"{model} MTP prompt 1+greedy", mlg[0], os.path.join(fx, f"{model}_mtp_logits_1.f32"), V)
    print("\n".join(lines))
    print(f"worst max|dlogprob| {worst:.3e}")
    return 0 if worst < a.tol else 1


def cmd_loss(a):
    c, P, _ = load_params(a.init, tied=not a.untie_mtp)
    with torch.no_grad():
        ls = losses(Model(c, P), read_seqs(a.seqs), a.mtp_weight, a.balance_alpha, a.mtp_targets == "main")
    print(json.dumps(jl(ls)))
    return 0


def cmd_sgd_ref(a):
    c, raw, ls, G = grads(a.init, read_seqs(a.seqs), a.mtp_weight, a.balance_alpha, not a.untie_mtp,
                          a.mtp_targets == "main", a.mtp_only)
    os.makedirs(a.out, exist_ok=True)
    out = dict(raw)
    for n, g in G.items():  # W1 = fl32(W0_f32 - eta * g)
        out[n] = (raw[n].astype(np.float64) - a.lr * g).astype(np.float32)
    for n, m in shared_mtp_names(c).items():  # tied: the MTP tensors are copies, as dsv3 writes them
        if n in raw and n not in G:
            out[n] = out[m]
    write_safetensors(os.path.join(a.out, "model.safetensors"), out)
    json.dump({k: v for k, v in c.items() if k != "quantization_config"},
              open(os.path.join(a.out, "config.json"), "w"), indent=2)
    if a.grads_out:
        write_safetensors(a.grads_out, G)
    print(json.dumps(jl(ls)))
    return 0


def cmd_sgd_check(a):
    c, raw, ls, G = grads(a.init, read_seqs(a.seqs), a.mtp_weight, a.balance_alpha, not a.untie_mtp,
                          a.mtp_targets == "main", a.mtp_only)
    W1 = load_dir(a.trained)
    GF = read_safetensors(a.grads) if a.grads else None
    fails, rows, noisy = [], [], 0
    if not a.untie_mtp:  # the shared MTP tensors must be written as exact copies of the main ones
        for n, m in shared_mtp_names(c).items():
            if n in raw and not (n in W1 and m in W1 and np.array_equal(W1[n].view(np.uint32), W1[m].view(np.uint32))):
                fails.append(f"{n}: not a copy of {m} in {a.trained}")
    for n, gr in G.items():
        if n not in W1 or W1[n].shape != raw[n].shape:
            fails.append(f"{n}: missing or wrong shape in {a.trained}")
            continue
        w0, w1 = raw[n], W1[n]
        nr = float(np.linalg.norm(gr))
        if nr == 0.0:  # unused (e.g. an expert nobody chose): must be bit-identical
            if not np.array_equal(w0.view(np.uint32), w1.view(np.uint32)):
                fails.append(f"{n}: zero reference gradient but W1 != W0")
        else:
            g = (w0.astype(np.float64) - w1.astype(np.float64)) / a.lr
            err = np.linalg.norm(g - gr)
            # W1 is float32: its rounding (<= ulp/2 per element where W moves) limits how well g
            # can be implied; elements with a zero reference gradient must not move at all
            floor = float(np.linalg.norm(np.where(gr != 0, 0.5 * np.spacing(np.abs(w1)), 0.0)) / a.lr)
            rel, fl = err / nr, floor / nr
            mx = float(np.abs(g - gr).max() / np.abs(gr).max())
            rows.append((rel, n, mx, fl))
            noisy += fl > a.tol
            if err > a.tol * nr + floor:
                fails.append(f"{n}: rel {rel:.3e} (f32 rounding floor {fl:.1e}) max-elem {mx:.3e}")
        if GF is not None:
            if n not in GF or GF[n].shape != gr.shape:
                fails.append(f"{n}: missing or wrong shape in {a.grads}")
                continue
            e2 = np.linalg.norm(GF[n].astype(np.float64) - gr)
            if (nr == 0.0 and np.any(GF[n] != 0)) or (nr > 0 and e2 > a.tol * nr):
                fails.append(f"{n}: --grads rel {e2 / max(nr, 1e-300):.3e}")
            elif nr > 0:
                rows.append((e2 / nr, n + " [grads]", float(np.abs(GF[n] - gr).max() / np.abs(gr).max()), 0.0))
    for n in raw:
        if n.endswith("e_score_correction_bias"):
            if n not in W1 or not np.array_equal(raw[n].view(np.uint32), W1[n].view(np.uint32)):
                fails.append(f"{n}: router bias changed or missing")
    rows.sort(reverse=True)
    print(json.dumps({"loss": jl(ls)}))
    print(f"tensors {len(G)} (zero-grad {sum(1 for g in G.values() if not g.any())}); "
          + (f"worst rel {rows[0][0]:.3e} in {rows[0][1]} (max-elem {rows[0][2]:.3e}, f32 floor {rows[0][3]:.1e})"
             if rows else "nothing compared"))
    if noisy:
        print(f"note: {noisy} tensors have a float32 rounding floor above --tol; use a larger --lr or --grads")
    for r in rows[: 8 if fails else 3]:
        print(f"  rel {r[0]:.3e}  max-elem {r[2]:.3e}  floor {r[3]:.1e}  {r[1]}")
    if fails:
        print(f"FAIL: {len(fails)} problems")
        for f in fails[:20]:
            print("  " + f)
        return 1
    print("OK")
    return 0


def cmd_self_test(a):
    """Autograd vs central differences on the v3-fp8 fixture, 2 x 12 tokens."""
    c, P, _ = load_params(os.path.join(a.fixtures, "v3-fp8"), grad=True)
    gen = torch.Generator().manual_seed(7)
    ids = torch.randint(3, c["vocab_size"], (2, 12), generator=gen)
    ids[:, 0] = 0
    m, L, eps = Model(c, P), c["num_hidden_layers"], 1e-6
    picks = ["model.embed_tokens.weight", "model.layers.0.self_attn.q_a_proj.weight",
             "model.layers.0.mlp.gate_proj.weight", "model.layers.1.self_attn.kv_a_proj_with_mqa.weight",
             "model.layers.1.self_attn.kv_b_proj.weight", "model.layers.2.self_attn.q_a_layernorm.weight",
             "model.layers.2.mlp.gate.weight", "model.layers.3.mlp.shared_experts.down_proj.weight",
             "model.layers.3.post_attention_layernorm.weight", "model.norm.weight", "lm_head.weight",
             f"model.layers.{L}.embed_tokens.weight", f"model.layers.{L}.eh_proj.weight",
             f"model.layers.{L}.hnorm.weight", f"model.layers.{L}.mlp.gate.weight",
             f"model.layers.{L}.shared_head.head.weight", f"model.layers.{L}.self_attn.o_proj.weight"]
    worst, bad = 0.0, 0
    for lam, alpha, names in ((0.3, 0.01, picks), (0.0, 1.0, [f"model.layers.{i}.mlp.gate.weight"
                                                              for i in (1, 2, 3, L)])):
        def f():
            with torch.no_grad():
                ls = losses(m, ids, lam, alpha)
            return float(ls["total"]), [r[2].clone() for r in m.routes]
        with torch.no_grad():
            losses(m, ids, lam, alpha)
        if lam:  # also an expert that received tokens: layer 1's first choice for token 0
            names = names + [f"model.layers.1.mlp.experts.{int(m.routes[0][2][0, 0, 0])}.up_proj.weight"]
        ls = losses(m, ids, lam, alpha)
        r0 = [r[2].clone() for r in m.routes]
        G = torch.autograd.grad(ls["total"], [P[n] for n in names])
        print(f"lambda {lam} alpha {alpha}: loss {float(ls['total']):.6f}")
        for n, g in zip(names, G):
            flat = g.reshape(-1).abs()
            cand = torch.sort(flat, descending=True).indices[:40].tolist()
            tried = 0
            for j in cand[::7]:  # a few large entries, spread over the top 40
                t = P[n].view(-1)
                with torch.no_grad():
                    old = float(t[j])
                    t[j] = old + eps
                lp, rp = f()
                with torch.no_grad():
                    t[j] = old - eps
                lm, rm = f()
                with torch.no_grad():
                    t[j] = old
                if any(not torch.equal(x, y) for x, y in zip(rp + rm, r0 + r0)):
                    continue  # routing flipped: finite differences meaningless here
                fd, ag = (lp - lm) / (2 * eps), float(g.reshape(-1)[j])
                rel = abs(fd - ag) / max(abs(ag), 1e-12)
                worst = max(worst, rel)
                bad += rel > 1e-4
                print(f"  {n}[{j}]  autograd {ag: .6e}  fd {fd: .6e}  rel {rel:.1e}")
                tried += 1
                if tried == 2:
                    break
    print(f"worst rel {worst:.2e}; {'OK' if not bad else f'FAIL ({bad} entries > 1e-4)'}")
    return 1 if bad else 0


def cmd_bias_check(a):
    """One step with lr 0: every routed expert's bias must move by exactly
    gamma * sign(mean load - load) of that step's routing (all MoE layers, MTP included; with
    --mtp-only the main layers' biases must not move)."""
    c, P, raw = load_params(a.init, tied=not a.untie_mtp)
    m = Model(c, P)
    with torch.no_grad():
        losses(m, read_seqs(a.seqs), 1.0, 0.0)
    out = load_dir(a.trained)
    E, bad, layers = c["n_routed_experts"], 0, 0
    for layer, s, idx in m.routes:
        name = f"model.layers.{layer}.mlp.gate.e_score_correction_bias"
        if name not in raw:
            continue
        layers += 1
        load = np.bincount(idx.reshape(-1).numpy(), minlength=E).astype(np.float64)
        want = raw[name].astype(np.float32) + np.float32(a.gamma) * np.sign(load.mean() - load).astype(np.float32)
        if a.mtp_only and layer < c["num_hidden_layers"]:
            want = raw[name].astype(np.float32)
        got = out[name].astype(np.float32)
        if not np.array_equal(want, got):
            bad += 1
            print(f"{name}: loads {load.astype(int).tolist()}\n  want {want.tolist()}\n  got  {got.tolist()}")
    print(f"{layers} MoE layers checked; {'OK' if not bad and layers else 'FAIL'}")
    return 1 if bad or not layers else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("check-forward")
    p.add_argument("fixtures", nargs="?", default="/work/shared/fixtures")
    p.add_argument("--tol", type=float, default=1e-4)
    p = sub.add_parser("self-test")
    p.add_argument("fixtures", nargs="?", default="/work/shared/fixtures")
    untie = dict(action="store_true", help="the MTP modules' own embed_tokens / shared_head.head (dsv3 train "
                 "--untie-mtp); default: the main embedding and lm_head")
    def objective(p):
        p.add_argument("--untie-mtp", **untie)
        p.add_argument("--mtp-targets", choices=("data", "main"), default="data",
                       help="main: the MTP modules learn the main model's argmax (dsv3 train --mtp-targets main)")
        p.add_argument("--mtp-only", action="store_true", help="the main model frozen (dsv3 train --mtp-only)")
    for name in ("loss", "sgd-check", "sgd-ref"):
        p = sub.add_parser(name)
        objective(p)
        p.add_argument("--init", required=True)
        p.add_argument("--seqs", required=True)
        p.add_argument("--mtp-weight", type=float, default=0.3 if name == "loss" else None, required=name != "loss")
        p.add_argument("--balance-alpha", type=float, default=1e-4 if name == "loss" else None,
                       required=name != "loss")
        if name != "loss":
            p.add_argument("--lr", type=float, required=True)
        if name == "sgd-check":
            p.add_argument("--trained", required=True)
            p.add_argument("--grads")
            p.add_argument("--tol", type=float, default=1e-4)
        if name == "sgd-ref":
            p.add_argument("--out", required=True)
            p.add_argument("--grads-out")
    p = sub.add_parser("bias-check")
    objective(p)
    p.add_argument("--init", required=True)
    p.add_argument("--seqs", required=True)
    p.add_argument("--gamma", type=float, required=True)
    p.add_argument("--trained", required=True)
    a = ap.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    fn = {"check-forward": cmd_check_forward, "loss": cmd_loss, "sgd-check": cmd_sgd_check,
          "sgd-ref": cmd_sgd_ref, "self-test": cmd_self_test,
          "bias-check": cmd_bias_check}[a.cmd]
    sys.exit(fn(a))


if __name__ == "__main__":
    main()
