"""A random first-order Markov source for trainer tests: rows of the transition matrix are
Dirichlet(alpha) draws, so each state has a few likely successors and a known entropy rate H.

  python3 markov.py OUT_DIR [--vocab 64] [--docs 700] [--len 1024] [--seed 7]

writes OUT_DIR/docs.jsonl (one JSON list of token ids per line) and OUT_DIR/H.json {"H": ...}."""
import argparse, bisect, json, math, random

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("--vocab", type=int, default=64)
ap.add_argument("--docs", type=int, default=700)
ap.add_argument("--len", type=int, default=1024)
ap.add_argument("--seed", type=int, default=7)
ap.add_argument("--alpha", type=float, default=0.3)
a = ap.parse_args()
random.seed(a.seed)
V = a.vocab
P = []
for _ in range(V):
    g = [random.gammavariate(a.alpha, 1) for _ in range(V)]
    s = sum(g)
    P.append([x / s for x in g])
pi = [1 / V] * V  # stationary distribution by power iteration
for _ in range(2000 if V <= 64 else 60):
    pi = [sum(pi[i] * P[i][j] for i in range(V)) for j in range(V)]
H = sum(pi[i] * -sum(p * math.log(p) for p in P[i] if p > 0) for i in range(V))
cum = []
for row in P:
    acc, c = 0.0, []
    for p in row:
        acc += p
        c.append(acc)
    cum.append(c)
def doc(n):
    x = random.randrange(V)
    out = [x]
    for _ in range(n - 1):
        x = min(bisect.bisect_right(cum[x], random.random()), V - 1)
        out.append(x)
    return out
with open(f"{a.out}/docs.jsonl", "w") as f:
    for _ in range(a.docs):
        f.write(json.dumps(doc(a.len)) + "\n")
json.dump({"H": H}, open(f"{a.out}/H.json", "w"))
print(f"Markov source: {V} tokens, entropy rate H = {H:.4f} nats")
