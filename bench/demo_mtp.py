#!/usr/bin/python3
"""MTP speculative decoding on the demo model (issue 11): draft acceptance, and decode tok/s with
and without `--speculative mtp`, measured in one run.

  bench/demo_mtp.py [-m models/demo] [--dsv3 build/bin/dsv3] [--eval tests/data/demo/chat_eval.jsonl]
                    [--prose tests/data/demo/heldout_prose.txt] [-n 30] [--rounds 2] [-t 1]
                    [--draft-vocab auto[,0,N...]]

For each prompt (held-out chat questions with --chat, and the openings of held-out prose
paragraphs as plain prompts), `dsv3 generate --temperature 0 --json` runs without MTP and with
it (once per --draft-vocab value: auto, 0 = all ids, or N), the order rotating from one prompt to
the next so that load drifts hit all alike. Greedy output must be the same every way (speculative
decoding is exact). Decode speed is summed generated tokens over summed decode seconds;
acceptance is accepted over drafted tokens. Prints one JSON object: the first --draft-vocab
value's figures at the top level, every value's under "variants".
"""
import argparse
import json
import subprocess
import sys


def run(a, prompt, chat, draft_vocab):
    """draft_vocab None: plain decode; else MTP with that --draft-vocab."""
    cmd = [a.dsv3, 'generate', '-m', a.model, '-p', prompt, '--temperature', '0', '-n', str(a.max_tokens),
           '--json', '-t', str(a.threads)]
    if chat:
        cmd.append('--chat')
    if draft_vocab is not None:
        cmd += ['--speculative', 'mtp', '--draft-vocab', draft_vocab]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit('demo_mtp: dsv3 generate failed: ' + r.stderr.strip()[-500:])
    return json.loads(r.stdout)


def prompts(a):
    out = []
    with open(a.eval, encoding='utf-8') as f:
        rows = [json.loads(l) for l in f if l.strip()]
    out += [(r['messages'][0]['content'], True) for r in rows[:a.n]]
    with open(a.prose, encoding='utf-8') as f:
        paras = [p.strip() for p in f.read().split('\n') if len(p.split()) >= 12]
    step = max(1, len(paras) // max(1, a.n))
    out += [(' '.join(p.split()[:8]), False) for p in paras[::step][:a.n]]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('-m', '--model', default='models/demo')
    ap.add_argument('--dsv3', default='build/bin/dsv3')
    ap.add_argument('--eval', default='tests/data/demo/chat_eval.jsonl')
    ap.add_argument('--prose', default='tests/data/demo/heldout_prose.txt')
    ap.add_argument('-n', type=int, default=30, help='prompts of each kind (chat, prose)')
    ap.add_argument('--max-tokens', type=int, default=64)
    ap.add_argument('--rounds', type=int, default=2, help='passes over the prompts')
    ap.add_argument('-t', '--threads', type=int, default=1)
    ap.add_argument('--draft-vocab', default='auto',
                    help='dsv3 --draft-vocab values for the MTP runs, comma-separated (auto, 0 = all ids, N)')
    a = ap.parse_args()
    modes = [None] + a.draft_vocab.split(',')
    tot = {m: [0, 0.0, 0, 0] for m in modes}  # mode -> [decode tokens, decode seconds, drafted, accepted]
    mismatches = 0
    i = 0
    for _ in range(a.rounds):
        for prompt, chat in prompts(a):
            tokens = {}
            for m in modes[i % len(modes):] + modes[:i % len(modes)]:
                r = run(a, prompt, chat, m)
                t = r['timings']
                # the first token comes from the prefill; decode covers the rest
                tot[m][0] += max(0, t['completion_tokens'] - 1)
                tot[m][1] += t['decode_seconds']
                tot[m][2] += r['mtp']['drafted']
                tot[m][3] += r['mtp']['accepted']
                tokens[m] = r['tokens']
            mismatches += sum(tokens[m] != tokens[None] for m in modes[1:])
            i += 1
    plain = tot[None][0] / tot[None][1]
    variants = []
    for m in modes[1:]:
        spec = tot[m][0] / tot[m][1]
        variants.append({'draft_vocab': m, 'drafted': tot[m][2], 'accepted': tot[m][3],
                         'acceptance': round(tot[m][3] / max(1, tot[m][2]), 4),
                         'decode_tok_s_mtp': round(spec, 1), 'speedup': round(spec / plain, 3)})
    out = {'model': a.model, 'threads': a.threads, 'runs': i, 'decode_tok_s': round(plain, 1)}
    out.update(variants[0])
    out.update({'greedy_mismatches': mismatches, 'variants': variants})
    print(json.dumps(out, indent=1))
    if mismatches:
        sys.exit('demo_mtp: speculative decoding changed the greedy output in %d runs' % mismatches)


if __name__ == '__main__':
    main()
