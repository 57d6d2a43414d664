#!/usr/bin/python3
"""Evaluate a demo model on the held-out chat questions and held-out prose (issue 11).

  scripts/demo_eval.py -m MODEL [--dsv3 build/bin/dsv3] [--corpus .cache/demo-corpus]
                       [-n 100] [--jobs 1] [-t 2] [--out results.jsonl]

Chat: for the first N questions of each kind in CORPUS/chat_eval.jsonl runs
  dsv3 generate -m MODEL --chat --temperature 0 -n 64 -p QUESTION --json
and scores each answer against the reference:
  define    exact: the answer equals the reference ("word (pos): definition.");
            lenient: it contains >= 50% of the reference definition's content words
  synonyms  exact: equals the reference ("Synonyms of word: a, b.");
            lenient: contains at least one reference synonym (not the word itself)
  example   exact: equals the reference sentence;
            lenient: contains the word or an inflection of it, has >= 4 words and
            starts with a capital letter and ends with . ! or ?
  real words: share of alphabetic words ([A-Za-z]+) of all answers found in
            /usr/share/dict/words (as written or lower-cased)
Prose: bits per byte of CORPUS/heldout_prose.txt: `dsv3 tokenize --no-special` gives the ids,
which are scored in pieces of --piece tokens, each piece prefixed with BOS so that every text
token has a log-probability (none is left unscored):
  bpb = sum(-logprob) / ln 2 / UTF-8 bytes of the file.
With --unigram-data DATA, the same ids under an add-one unigram model of DATA/train.bin give the
baseline (same tokens, same bytes).
Prints one JSON summary on stdout; --out writes every question's answer and scores.
"""
import argparse
import array
import concurrent.futures
import json
import math
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from demo_corpus import inflections  # noqa: E402  (the corpus's own inflection rule)

STOP = set('''a an the of to in on at by for with from into onto as or and nor but not no is are
was were be been being that which who whom whose this these those it its their his her them they
he she you your one ones some any something someone usually especially often esp very more most
less least such than then so if when where while how what all each every other another same
used use using make makes made have has having do does done can may might must should would
about over under up down out off through between among against without within also etc e g
i.e. per very much many few s'''.split())


def words(s):
    return re.findall(r"[A-Za-z]+", s)


def content_words(s, exclude=()):
    return [w for w in (x.lower() for x in words(s)) if w not in STOP and w not in exclude
            and len(w) > 1]


def stem(w):
    for suf in ('ing', 'ed', 'es', 's'):
        if w.endswith(suf) and len(w) - len(suf) >= 3:
            return w[:-len(suf)]
    return w


def load_exceptions(wn='/usr/share/wordnet'):
    inv = {}
    for pf in ('noun', 'verb', 'adj', 'adv'):
        p = os.path.join(wn, pf + '.exc')
        if not os.path.exists(p):
            continue
        with open(p) as f:
            for line in f:
                t = line.split()
                for base in t[1:]:
                    inv.setdefault(base, set()).add(t[0].replace('_', ' '))
    return inv


def has_phrase(text, phrase):
    return re.search(r'(?<![a-z])' + re.escape(phrase.lower()) + r'(?![a-z])', text.lower()) is not None


def norm(s):
    return re.sub(r'\s+', ' ', s).strip().lower()


def score_answer(kind, word, answer, ref, exc):
    r = {'exact': norm(answer) == norm(ref)}
    if kind == 'define':
        ref_def = ref.split('):', 1)[1] if '):' in ref else ref
        ans_def = answer.split('):', 1)[1] if '):' in answer else answer
        rc = set(stem(w) for w in content_words(ref_def, exclude={word}))
        ac = set(stem(w) for w in content_words(ans_def))
        r['overlap'] = round(len(rc & ac) / len(rc), 3) if rc else 0.0
        r['lenient'] = bool(rc) and len(rc & ac) >= 0.5 * len(rc)
    elif kind == 'synonyms':
        m = re.match(r'Synonyms of [^:]+:\s*(.*?)\.?$', ref)
        syns = [s.strip() for s in (m.group(1) if m else ref).split(',') if s.strip()]
        body = answer.split(':', 1)[1] if answer.startswith('Synonyms of') and ':' in answer else answer
        hit = [s for s in syns if s.lower() != word and has_phrase(body, s)]
        r['hits'] = hit
        r['lenient'] = bool(hit)
    elif kind == 'example':
        forms = inflections(word, exc)
        a = answer.strip()
        r['lenient'] = (any(has_phrase(a, f) for f in forms) and len(a.split()) >= 4
                        and a[:1].isupper() and a[-1:] in '.!?')
    else:
        raise ValueError(kind)
    return r


def generate(a, question):
    cmd = [a.dsv3, 'generate', '-m', a.model, '--chat', '--temperature', '0', '-n', str(a.max_tokens),
           '-p', question, '--json']
    if a.threads:
        cmd += ['-t', str(a.threads)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit('demo_eval: %s failed: %s' % (' '.join(cmd[:4]), r.stderr.strip()[-500:]))
    return json.loads(r.stdout)


def chat_eval(a, rows, exc, dwords):
    per_kind = {}
    for r in rows:
        per_kind.setdefault(r['kind'], [])
        if len(per_kind[r['kind']]) < a.n:
            per_kind[r['kind']].append(r)
    todo = [r for k in sorted(per_kind) for r in per_kind[k]]
    results = [None] * len(todo)
    t0 = time.time()
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, a.jobs)) as ex:
        futs = {ex.submit(generate, a, r['messages'][0]['content']): i for i, r in enumerate(todo)}
        done = 0
        for f in concurrent.futures.as_completed(futs):
            i = futs[f]
            g = f.result()
            r = todo[i]
            ans = g['text'].strip()
            s = score_answer(r['kind'], r['word'], ans, r['messages'][1]['content'], exc)
            ws = words(ans)
            s['real'] = sum(1 for w in ws if w in dwords or w.lower() in dwords)
            s['alpha'] = len(ws)
            results[i] = {'kind': r['kind'], 'word': r['word'], 'question': r['messages'][0]['content'],
                          'reference': r['messages'][1]['content'], 'answer': ans,
                          'finish_reason': g.get('finish_reason'), **s}
            done += 1
            if a.progress and (done % 25 == 0 or done == len(todo)):
                print('demo_eval: %d/%d answers (%.0f s)' % (done, len(todo), time.time() - t0),
                      file=sys.stderr, flush=True)
    summary = {}
    for k in sorted(per_kind):
        rs = [x for x in results if x['kind'] == k]
        alpha = sum(x['alpha'] for x in rs)
        summary[k] = {'n': len(rs),
                      'exact': round(sum(x['exact'] for x in rs) / len(rs), 4),
                      'lenient': round(sum(x['lenient'] for x in rs) / len(rs), 4),
                      'real_word_share': round(sum(x['real'] for x in rs) / alpha, 4) if alpha else None,
                      'stopped_at_eos': round(sum(x['finish_reason'] == 'stop' for x in rs) / len(rs), 4)}
    alpha = sum(x['alpha'] for x in results)
    summary['all'] = {'n': len(results),
                      'exact': round(sum(x['exact'] for x in results) / len(results), 4),
                      'lenient': round(sum(x['lenient'] for x in results) / len(results), 4),
                      'real_word_share': round(sum(x['real'] for x in results) / alpha, 4) if alpha else None,
                      'alphabetic_words': alpha,
                      'seconds': round(time.time() - t0, 1)}
    return summary, results


def bos_id(model):
    for name in ('tokenizer_config.json', 'config.json'):
        p = os.path.join(model, name)
        if not os.path.exists(p):
            continue
        with open(p) as f:
            c = json.load(f)
        if name == 'config.json' and 'bos_token_id' in c:
            return c['bos_token_id']
        tok = c.get('bos_token')
        if isinstance(tok, dict):
            tok = tok.get('content')
        if tok:
            with open(os.path.join(model, 'tokenizer.json'), encoding='utf-8') as f:
                for t in json.load(f).get('added_tokens', []):
                    if t['content'] == tok:
                        return t['id']
    raise SystemExit('demo_eval: no BOS id in %s' % model)


def bits_per_byte(a, path):
    with open(path, 'rb') as f:
        data = f.read()
    text = data.decode('utf-8')
    r = subprocess.run([a.dsv3, 'tokenize', '-m', a.model, '--no-special'], input=text,
                       capture_output=True, text=True, check=True)
    ids = json.loads(r.stdout)
    bos = bos_id(a.model)
    step = a.piece - 1
    pieces = [ids[i:i + step] for i in range(0, len(ids), step)]
    nll, scored, t0 = 0.0, 0, time.time()
    for p in pieces:
        cmd = [a.dsv3, 'score', '-m', a.model, '--prompt-ids', ','.join(map(str, [bos] + p)), '--json']
        if a.threads:
            cmd += ['-t', str(a.threads)]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit('demo_eval: dsv3 score failed: ' + out.stderr.strip()[-500:])
        lps = json.loads(out.stdout)['token_logprobs'][1:]  # [0] is BOS, which has none
        if len(lps) != len(p) or any(x is None for x in lps):
            raise SystemExit('demo_eval: dsv3 score returned %d log-probs for %d tokens' % (len(lps), len(p)))
        nll -= sum(lps)
        scored += len(lps)
    out = {'file': path, 'bytes': len(data), 'tokens': len(ids), 'pieces': len(pieces),
           'piece_tokens': a.piece, 'unscored_tokens': len(ids) - scored,
           'bytes_per_token': round(len(data) / max(1, len(ids)), 3),
           'bits_per_byte': round(nll / math.log(2) / len(data), 4),
           'seconds': round(time.time() - t0, 1)}
    if a.unigram_data:
        out['unigram_bits_per_byte'] = round(unigram_bits(a.unigram_data, ids) / len(data), 4)
    return out


def unigram_bits(data_dir, ids):
    """-log2 P of `ids` under the add-one unigram model of DATA_DIR/train.bin (the same
    tokens the model trained on; BOS/EOS counted like any id): the baseline for bits per byte."""
    with open(os.path.join(data_dir, 'meta.json')) as f:
        vocab = json.load(f)['vocab_size']
    counts = [1] * vocab
    with open(os.path.join(data_dir, 'train.bin'), 'rb') as f:
        if f.read(32)[:8] != b'DSV3TOK1':
            raise SystemExit('demo_eval: %s/train.bin is not dsv3 token data' % data_dir)
        train = array.array('I', f.read())
    if sys.byteorder != 'little':
        train.byteswap()
    for t in train:
        counts[t] += 1
    total = sum(counts)
    return -sum(math.log2(counts[t] / total) for t in ids)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('-m', '--model', required=True, help='model directory (with tokenizer.json)')
    ap.add_argument('--dsv3', default='build/bin/dsv3')
    ap.add_argument('--corpus', default='.cache/demo-corpus',
                    help='directory with chat_eval.jsonl and heldout_prose.txt')
    ap.add_argument('--eval', help='chat eval file (default CORPUS/chat_eval.jsonl)')
    ap.add_argument('--prose', help='held-out prose (default CORPUS/heldout_prose.txt)')
    ap.add_argument('-n', type=int, default=100, help='questions per kind (default 100)')
    ap.add_argument('--max-tokens', type=int, default=64)
    ap.add_argument('--piece', type=int, default=512, help='tokens per scored piece, BOS included')
    ap.add_argument('-t', '--threads', type=int, default=0, help='threads per dsv3 call (0: its default)')
    ap.add_argument('--jobs', type=int, default=1, help='dsv3 generate calls at once')
    ap.add_argument('--dict', default='/usr/share/dict/words')
    ap.add_argument('--out', help='write per-question results (JSON lines) here')
    ap.add_argument('--no-chat', action='store_true')
    ap.add_argument('--no-bpb', action='store_true')
    ap.add_argument('--unigram-data', help='token data the model trained on (dsv3 data output): also '
                    'report the bits per byte of an add-one unigram model of its tokens')
    ap.add_argument('--quiet', dest='progress', action='store_false')
    a = ap.parse_args()
    summary = {'model': a.model}
    if not a.no_chat:
        with open(a.eval or os.path.join(a.corpus, 'chat_eval.jsonl'), encoding='utf-8') as f:
            rows = [json.loads(l) for l in f if l.strip()]
        with open(a.dict, encoding='utf-8') as f:
            dwords = set(w.strip() for w in f if w.strip())
        chat, results = chat_eval(a, rows, load_exceptions(), dwords)
        summary['chat'] = chat
        if a.out:
            with open(a.out, 'w', encoding='utf-8') as f:
                for r in results:
                    f.write(json.dumps(r, ensure_ascii=False) + '\n')
    if not a.no_bpb:
        summary['prose'] = bits_per_byte(a, a.prose or os.path.join(a.corpus, 'heldout_prose.txt'))
    print(json.dumps(summary, indent=1))


if __name__ == '__main__':
    main()
