#!/usr/bin/python3
"""The main model's own greedy text, for MTP self-distillation of the demo model (issue 11).

  scripts/demo_selfgen.py -m MODEL --corpus CORPUS_DIR --out selfgen.jsonl
                          [--dsv3 build/bin/dsv3] [--chat 6000] [--prose 2000] [--max-tokens 96]

Speculative decoding accepts a draft when it equals the main model's greedy token after the main
model's own earlier tokens, so the MTP module is best trained on exactly that text: this script
starts `dsv3 serve` on MODEL and asks it, greedily,
  - the first --chat user questions of CORPUS/chat_train.jsonl (training questions only: the
    held-out ones in chat_eval.jsonl stay unseen), and
  - to continue the first 8 words of --prose training documents of CORPUS/pretrain.jsonl
    (dictionary, fortunes, scripture; chat documents skipped),
and writes one {"text": ...} document per answer, chat ones in the chat template's layout as the
corpus has them (`dsv3 data --special` reads them). Requests run 8 at a time, so the server
decodes them as one batch. Greedy, so a rerun gives the same file, up to rare near-ties that a
different batching of the requests can tip.
"""
import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import time
import urllib.request

USER, ASSISTANT, EOS = '<｜User｜>', '<｜Assistant｜>', '<｜end▁of▁sentence｜>'


def post(port, path, body):
    req = urllib.request.Request(f'http://127.0.0.1:{port}{path}', data=json.dumps(body).encode(),
                                 headers={'Content-Type': 'application/json'})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.load(r)


def chat_doc(port, question, max_tokens):
    r = post(port, '/v1/chat/completions', {'messages': [{'role': 'user', 'content': question}],
                                            'temperature': 0, 'max_tokens': max_tokens})
    c = r['choices'][0]
    end = EOS if c['finish_reason'] == 'stop' else ''
    return USER + question + ASSISTANT + c['message']['content'] + end


def prose_doc(port, opening, max_tokens):
    r = post(port, '/v1/completions', {'prompt': opening, 'temperature': 0, 'max_tokens': max_tokens})
    return opening + r['choices'][0]['text']


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('-m', '--model', required=True)
    ap.add_argument('--corpus', required=True, help='directory made by scripts/demo_corpus.sh')
    ap.add_argument('--out', required=True)
    ap.add_argument('--dsv3', default=os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'build', 'bin', 'dsv3'))
    ap.add_argument('--chat', type=int, default=6000, help='training questions to answer')
    ap.add_argument('--prose', type=int, default=2000, help='training prose openings to continue')
    ap.add_argument('--max-tokens', type=int, default=96)
    ap.add_argument('-t', '--threads', type=int, default=0, help='server threads (0: all cores)')
    a = ap.parse_args()

    with open(os.path.join(a.corpus, 'chat_train.jsonl'), encoding='utf-8') as f:
        questions = [json.loads(l)['messages'][0]['content'] for l in f if l.strip()][:a.chat]
    openings = []
    with open(os.path.join(a.corpus, 'pretrain.jsonl'), encoding='utf-8') as f:
        for l in f:
            text = json.loads(l)['text']
            if USER in text:
                continue
            w = text.split()
            if len(w) >= 16:
                openings.append(' '.join(w[:8]))
    step = max(1, len(openings) // max(1, a.prose))
    openings = openings[::step][:a.prose]

    cmd = [a.dsv3, 'serve', '-m', a.model, '--port', '0', '--max-batch', '8']
    if a.threads > 0:
        cmd += ['-t', str(a.threads)]
    srv = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        port = None
        for line in srv.stdout:  # the server prints the port it bound
            if 'http://' in line:
                port = int(line.rsplit(':', 1)[1].split('/')[0].strip())
                break
        if port is None:
            sys.exit('demo_selfgen: dsv3 serve did not start: ' + ' '.join(cmd))
        jobs = [(chat_doc, q) for q in questions] + [(prose_doc, o) for o in openings]
        t0, docs = time.time(), [None] * len(jobs)
        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            futs = {ex.submit(fn, port, x, a.max_tokens): i for i, (fn, x) in enumerate(jobs)}
            for n, fut in enumerate(concurrent.futures.as_completed(futs), 1):
                docs[futs[fut]] = fut.result()
                if n % 500 == 0 or n == len(jobs):
                    print(f'demo_selfgen: {n}/{len(jobs)} documents, {time.time() - t0:.0f} s', file=sys.stderr)
    finally:
        srv.terminate()
        srv.wait()
    tmp = a.out + '.partial'
    with open(tmp, 'w', encoding='utf-8') as f:
        for d in docs:
            f.write(json.dumps({'text': d}, ensure_ascii=False) + '\n')
    os.replace(tmp, a.out)
    print(f'demo_selfgen: {len(questions)} answers and {len(openings)} continuations -> {a.out}', file=sys.stderr)


if __name__ == '__main__':
    main()
