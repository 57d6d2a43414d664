#!/usr/bin/python3
"""An independent compressed-tensors pack-quantized writer (issue 14), from the format's
documentation (compressed_tensors PackedQuantizationCompressor / pack_to_int32), numpy only.

  int4_pack.py IN_DIR OUT_DIR --group G [--experts-only]

IN_DIR is a DeepSeek-V3-family checkpoint (FP8 or BF16, read by tests/ref/dsv3_torch.py's own
safetensors reader). Writes three checkpoints:
  OUT_DIR/int4      every Linear of the blocks (or the routed experts) as X.weight_packed (I32
                    [R, ceil(C/8)], value + 8 in bits 4i of int32 k for column 8k + i, zero
                    padding), X.weight_scale (BF16 [R, ceil(C/G)] = bf16(amax / 7.5)) and
                    X.weight_shape (I64 [2]); symmetric, q = clamp(round_half_even(w / scale),
                    -8, 7); every other tensor float32; config.json with a compressed-tensors
                    quantization_config.
  OUT_DIR/deq-f32   the same weights dequantised, q * scale in float32 (exact), no quantization.
  OUT_DIR/deq-bf16  the same, rounded to BF16 (what compressed-tensors' decompress yields).
"""
import argparse
import json
import os
import re
import shutil
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dsv3_torch import load_dir, write_safetensors  # noqa: E402  (float32 tensors, FP8 already scaled)

LINEAR = re.compile(r"model\.layers\.\d+\.(self_attn\.(q_a_proj|q_b_proj|q_proj|kv_a_proj_with_mqa|kv_b_proj|o_proj)"
                    r"|mlp\.(gate_proj|up_proj|down_proj)|mlp\.shared_experts\.(gate|up|down)_proj"
                    r"|mlp\.experts\.\d+\.(gate|up|down)_proj)\.weight$")
EXPERT = re.compile(r"\.mlp\.experts\.\d+\.")


def bf16_bits(a):
    """float32 -> bfloat16 bit patterns, round to nearest even (as torch's .to(torch.bfloat16))."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def bf16_value(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


def quantize(w, group):
    """Symmetric int4 per group of columns: (q int8 [R, C], scale bf16 bits [R, ceil(C/G)])."""
    r, c = w.shape
    gc = -(-c // group)
    pad = np.zeros((r, gc * group), np.float32)
    pad[:, :c] = w
    g = pad.reshape(r, gc, group)
    scale_bits = bf16_bits(np.abs(g).max(axis=2) / np.float32(7.5))
    scale = bf16_value(scale_bits)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(scale[:, :, None] > 0, np.round(g / scale[:, :, None]), 0.0)
    q = np.clip(q, -8, 7).astype(np.int8).reshape(r, gc * group)[:, :c]
    return q, scale_bits


def pack_to_int32(q):
    """compressed-tensors pack_to_int32(value, num_bits=4): unsigned value + 8, 8 per int32, element i
    of each group of 8 at bits 4i, columns padded with zeros to a multiple of 8."""
    r, c = q.shape
    u = (q.astype(np.int32) + 8).astype(np.uint32)
    kp = -(-c // 8)
    u = np.pad(u, ((0, 0), (0, kp * 8 - c)))
    packed = np.zeros((r, kp), np.uint32)
    for i in range(8):
        packed |= u[:, i::8] << (4 * i)
    return packed.view(np.int32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("inp")
    ap.add_argument("out")
    ap.add_argument("--group", type=int, required=True)
    ap.add_argument("--experts-only", action="store_true")
    a = ap.parse_args()
    t = load_dir(a.inp)
    cfg = json.load(open(os.path.join(a.inp, "config.json")))
    cfg.pop("quantization_config", None)
    outs = {"int4": {}, "deq-f32": {}, "deq-bf16": {}}
    n_int4 = 0
    for name, w in t.items():
        if LINEAR.match(name) and (not a.experts_only or EXPERT.search(name)):
            q, sb = quantize(w, a.group)
            deq = q.astype(np.float32) * np.repeat(bf16_value(sb), a.group, axis=1)[:, : w.shape[1]]
            base = name  # X.weight -> X.weight_packed / _scale / _shape
            outs["int4"][base + "_packed"] = ("I32", pack_to_int32(q))
            outs["int4"][base + "_scale"] = ("BF16", sb)
            outs["int4"][base + "_shape"] = ("I64", np.array(w.shape, np.int64))
            outs["deq-f32"][name] = ("F32", deq)
            outs["deq-bf16"][name] = ("BF16", bf16_bits(deq))
            n_int4 += 1
        else:
            for o in outs.values():
                o[name] = ("F32", w)
    ignore = ["lm_head"] + ([r"re:.*self_attn\..*", r"re:.*shared_experts\..*", r"re:.*mlp\.(gate|up|down)_proj$"]
                            if a.experts_only else [])
    qcfg = {"quant_method": "compressed-tensors", "format": "pack-quantized", "quantization_status": "compressed",
            "config_groups": {"group_0": {"targets": ["Linear"], "input_activations": None, "output_activations": None,
                                          "weights": {"num_bits": 4, "type": "int", "symmetric": True,
                                                      "strategy": "group", "group_size": a.group, "dynamic": False,
                                                      "actorder": None, "observer": "minmax"}}},
            "ignore": ignore, "kv_cache_scheme": None}
    for kind, tensors in outs.items():
        d = os.path.join(a.out, kind)
        os.makedirs(d, exist_ok=True)
        write_safetensors(os.path.join(d, "model.safetensors"), tensors)
        c = dict(cfg)
        if kind == "int4":
            c["quantization_config"] = qcfg
        json.dump(c, open(os.path.join(d, "config.json"), "w"), indent=2)
        for f in ("tokenizer.json", "tokenizer_config.json"):
            if os.path.exists(os.path.join(a.inp, f)):
                shutil.copy(os.path.join(a.inp, f), d)
    print(f"int4_pack: {n_int4} linears quantised in groups of {a.group} -> {a.out}/{{int4,deq-f32,deq-bf16}}")


if __name__ == "__main__":
    main()
