#!/usr/bin/python3
"""Build the demo training corpus from freely licensed text in Debian packages (issue 11).

  demo_corpus.py build [OUTDIR]            corpus, chat data, held-out prose, SOURCES.md
  demo_corpus.py ids --dsv3 BIN --tokenizer DIR [OUTDIR]
                                           pretrain.jsonl -> pretrain_ids.jsonl (for `dsv3 data --ids`)

Sources (installed by scripts/demo_corpus.sh): WordNet 3.0 (wordnet-base), the King James Bible
(bible-kjv-text, read with bible-kjv's `bible`), fortunes / fortunes-min (English) and a small
share of fortunes-zh. Only the Python standard library is used; every random choice is seeded.

Why `ids`: `dsv3 data -m TOK FILE.jsonl` tokenizes special-token text inside the data as plain
text, so a chat rendered as text would train the model on `<`, `｜`, `User`... pieces instead of the
<｜User｜>/<｜Assistant｜>/<｜end▁of▁sentence｜> ids that `dsv3 generate --chat` feeds it. `ids` runs
`dsv3 tokenize` (which matches special tokens) on every document, adds BOS (and EOS unless the
document already ends with it) and writes one id list per line.
"""
import argparse
import collections
import hashlib
import json
import os
import random
import re
import subprocess
import sys
import time

SEED = 11
WN = '/usr/share/wordnet'
FORTUNES = '/usr/share/games/fortunes'
DICT_WORDS = '/usr/share/dict/words'
BOS_TEXT = '<｜begin▁of▁sentence｜>'
EOS_TEXT = '<｜end▁of▁sentence｜>'
USER_TEXT = '<｜User｜>'
ASSISTANT_TEXT = '<｜Assistant｜>'

POS_NAME = {'n': 'noun', 'v': 'verb', 'a': 'adjective', 's': 'adjective', 'r': 'adverb'}
POS_FILES = {'n': 'noun', 'v': 'verb', 'a': 'adj', 'r': 'adv'}
SS_TYPE = {'1': 'n', '2': 'v', '3': 'a', '4': 'r', '5': 'a'}  # sense-key ss_type -> index file

QUESTIONS = {
    'define': ['What does {w} mean?', 'Define {w}.', 'What is the meaning of {w}?'],
    'example': ['Use {w} in a sentence.', 'Give an example sentence with {w}.',
                'Show me how to use {w} in a sentence.'],
    'synonyms': ['What are synonyms for {w}?', 'Give a synonym for {w}.',
                 'What is another word for {w}?'],
}

# KJV: book abbreviations as `bible` prints them -> names; held-out books for bits per byte.
KJV_BOOKS = [
    ('Ge', 'Genesis'), ('Exo', 'Exodus'), ('Lev', 'Leviticus'), ('Num', 'Numbers'),
    ('Deu', 'Deuteronomy'), ('Josh', 'Joshua'), ('Jdgs', 'Judges'), ('Ruth', 'Ruth'),
    ('1Sm', '1 Samuel'), ('2Sm', '2 Samuel'), ('1Ki', '1 Kings'), ('2Ki', '2 Kings'),
    ('1Chr', '1 Chronicles'), ('2Chr', '2 Chronicles'), ('Ezra', 'Ezra'), ('Neh', 'Nehemiah'),
    ('Est', 'Esther'), ('Job', 'Job'), ('Psa', 'Psalms'), ('Prv', 'Proverbs'),
    ('Eccl', 'Ecclesiastes'), ('SSol', 'Song of Solomon'), ('Isa', 'Isaiah'), ('Jer', 'Jeremiah'),
    ('Lam', 'Lamentations'), ('Eze', 'Ezekiel'), ('Dan', 'Daniel'), ('Hos', 'Hosea'),
    ('Joel', 'Joel'), ('Amos', 'Amos'), ('Obad', 'Obadiah'), ('Jonah', 'Jonah'), ('Mic', 'Micah'),
    ('Nahum', 'Nahum'), ('Hab', 'Habakkuk'), ('Zep', 'Zephaniah'), ('Hag', 'Haggai'),
    ('Zec', 'Zechariah'), ('Mal', 'Malachi'), ('Mat', 'Matthew'), ('Mark', 'Mark'),
    ('Luke', 'Luke'), ('John', 'John'), ('Acts', 'Acts'), ('Rom', 'Romans'),
    ('1Cor', '1 Corinthians'), ('2Cor', '2 Corinthians'), ('Gal', 'Galatians'),
    ('Eph', 'Ephesians'), ('Phi', 'Philippians'), ('Col', 'Colossians'),
    ('1Th', '1 Thessalonians'), ('2Th', '2 Thessalonians'), ('1Tim', '1 Timothy'),
    ('2Tim', '2 Timothy'), ('Titus', 'Titus'), ('Phmn', 'Philemon'), ('Heb', 'Hebrews'),
    ('Jas', 'James'), ('1Pet', '1 Peter'), ('2Pet', '2 Peter'), ('1Jn', '1 John'),
    ('2Jn', '2 John'), ('3Jn', '3 John'), ('Jude', 'Jude'), ('Rev', 'Revelation')]
KJV_HELDOUT = {'Ruth', 'Joel', 'Jonah', 'Philippians', 'James'}  # ~54 KB
ZH_FORTUNE_FILES = {'chinese', 'tang300', 'song100'}
SKIP_FORTUNE_FILES = {'ascii-art'}


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def render_chat(messages):
    """The DeepSeek-V3 chat template for plain user/assistant turns, without the leading BOS
    (`dsv3 data`/`ids` add BOS per document). Checked against `dsv3 template` by verify_template."""
    out = []
    for m in messages:
        if m['role'] == 'user':
            out.append(USER_TEXT + m['content'])
        elif m['role'] == 'assistant':
            out.append(ASSISTANT_TEXT + m['content'] + EOS_TEXT)
        else:
            raise ValueError(m['role'])
    return ''.join(out)


def stable_hash(s):
    return int.from_bytes(hashlib.sha256(s.encode()).digest()[:8], 'big')


# ----------------------------------------------------------------------------- KJV
def read_kjv():
    txt = subprocess.run(['bible', '-f', 'Gen1:1-Rev22:21'], check=True, capture_output=True,
                         text=True).stdout
    names = dict(KJV_BOOKS)
    chapters = collections.OrderedDict()  # (book, chapter) -> [verse text]
    for line in txt.splitlines():
        m = re.match(r'^(\d?[A-Za-z]+)(\d+):(\d+) (.*)$', line)
        if not m:
            raise SystemExit('demo_corpus: unexpected line from bible: %r' % line[:80])
        chapters.setdefault((names[m.group(1)], int(m.group(2))), []).append(m.group(4).strip())
    if len(chapters) != 1189:
        raise SystemExit('demo_corpus: KJV has %d chapters, expected 1189' % len(chapters))
    return chapters


def kjv_chapter_text(book, ch, verses):
    title = ('Psalm %d' % ch) if book == 'Psalms' else ('%s %d' % (book, ch))
    return title + '\n\n' + '\n'.join(verses) + '\n'


# ----------------------------------------------------------------------------- fortunes
def clean_fortune(s):
    s = re.sub(r'\x1b\[[0-9;]*[A-Za-z]', '', s)      # ANSI colours (fortunes-zh)
    while re.search('[^\x08]\x08', s):                  # overstrike: keep the last character
        s = re.sub('[^\x08]\x08', '', s)
    s = s.replace('\x08', '').expandtabs(8)
    s = ''.join(c for c in s if c == '\n' or c >= ' ')
    s = '\n'.join(l.rstrip() for l in s.split('\n')).strip('\n')
    return s


def read_fortune_file(path):
    with open(path, 'rb') as f:
        raw = f.read().decode('utf-8', errors='replace')
    out = []
    for part in re.split(r'^%\s*$', raw, flags=re.M):
        s = clean_fortune(part)
        if s.strip():
            out.append(s)
    return out


def letter_share(s):
    vis = [c for c in s if not c.isspace()]
    return sum(c.isalpha() for c in vis) / max(1, len(vis))


def fortune_files():
    en, zh = [], []
    for name in sorted(os.listdir(FORTUNES)):
        p = os.path.join(FORTUNES, name)
        if name.endswith(('.dat', '.u8')) or os.path.islink(p) or not os.path.isfile(p):
            continue
        if name in SKIP_FORTUNE_FILES:
            continue
        (zh if name in ZH_FORTUNE_FILES else en).append(p)
    return en, zh


# ----------------------------------------------------------------------------- WordNet
def load_dict_words():
    with open(DICT_WORDS, encoding='utf-8') as f:
        return set(w.strip() for w in f if w.strip())


def is_real(word, dwords):
    return word in dwords or word.lower() in dwords


def load_exceptions():
    """inflected form -> base, from WordNet's *.exc files (e.g. ran -> run, geese -> goose)."""
    inv = collections.defaultdict(set)
    for pf in ('noun', 'verb', 'adj', 'adv'):
        with open(os.path.join(WN, pf + '.exc')) as f:
            for line in f:
                parts = line.split()
                for base in parts[1:]:
                    inv[base].add(parts[0])
    return inv


def inflections(w, exc):
    forms = {w, w + 's', w + 'es', w + 'ed', w + 'd', w + 'ing', w + 'er', w + 'est', w + "'s"}
    if w.endswith('e'):
        forms |= {w[:-1] + 'ing', w[:-1] + 'er', w[:-1] + 'est'}
    if w.endswith('y') and len(w) > 2:
        forms |= {w[:-1] + 'ies', w[:-1] + 'ied', w[:-1] + 'ier', w[:-1] + 'iest', w[:-1] + 'ily'}
    if len(w) >= 3 and w[-1] not in 'aeiouwxy' and w[-2] in 'aeiou' and w[-3] not in 'aeiou':
        forms |= {w + w[-1] + 'ed', w + w[-1] + 'ing', w + w[-1] + 'er', w + w[-1] + 'est'}
    forms |= exc.get(w, set())
    return {f.replace('_', ' ') for f in forms}


def contains_form(text, forms):
    low = text.lower()
    return any(re.search(r'(?<![a-z])' + re.escape(f) + r'(?![a-z])', low) for f in forms)


def parse_data(pf):
    """offset -> (ss_type, [lemmas], gloss) of one WordNet data file."""
    syn = {}
    with open(os.path.join(WN, 'data.' + pf), encoding='utf-8', errors='replace') as f:
        for line in f:
            if line.startswith('  '):
                continue  # licence header
            head, _, gloss = line.partition(' | ')
            t = head.split()
            off, ss_type, wcnt = t[0], t[2], int(t[3], 16)
            lemmas = [re.sub(r'\([a-z]+\)$', '', t[4 + 2 * i]) for i in range(wcnt)]
            syn[off] = (ss_type, lemmas, gloss.strip())
    return syn


def split_gloss(gloss):
    """-> (definitions, examples) of a WordNet gloss: definitions are the ';'-separated parts
    outside quotes, examples the quoted strings."""
    examples = re.findall(r'"([^"]+)"', gloss)
    rest = re.sub(r'"[^"]*"', ' ', gloss)
    defs = [re.sub(r'\s+', ' ', d).strip(' ;:,') for d in rest.split(';')]
    return [d for d in defs if d], [e.strip() for e in examples]


def short_definition(d, max_words):
    d = re.sub(r'\s*\([^()]*\)', '', d)           # parenthetical remarks
    d = re.sub(r'\s+', ' ', d).strip(' ;:,.')
    d = d.replace('`', "'")
    if not d or '(' in d or ')' in d:
        return None
    words = d.split()
    if len(words) > max_words:
        return None
    return d


def sentence(s):
    s = re.sub(r'\s+', ' ', s).strip()
    s = re.sub(r'\s*--\s*[A-Z][^"]*$', '', s).strip()  # trailing attributions
    if not s:
        return s
    s = s[0].upper() + s[1:]
    if s[-1] not in '.!?':
        s += '.'
    return s


def build_dictionary(dwords, max_def_words, min_count):
    tag = collections.Counter()  # (lemma, pos) -> SemCor tag count
    with open(os.path.join(WN, 'cntlist.rev')) as f:
        for line in f:
            key, _, c = line.split()
            lemma, _, rest = key.partition('%')
            tag[(lemma, SS_TYPE[rest[0]])] += int(c)
    index = {}  # (lemma, pos) -> [offsets] in sense order
    for pos, pf in POS_FILES.items():
        with open(os.path.join(WN, 'index.' + pf)) as f:
            for line in f:
                if line.startswith('  '):
                    continue
                t = line.split()
                lemma, n_syn, p_cnt = t[0], int(t[2]), int(t[3])
                index[(lemma, pos)] = t[-n_syn:]
    data = {pos: parse_data(pf) for pos, pf in POS_FILES.items()}
    exc = load_exceptions()

    total = collections.Counter()
    for (lemma, pos), c in tag.items():
        total[lemma] += c
    entries = {}
    for lemma in sorted(total):
        if total[lemma] < min_count or not re.fullmatch(r'[a-z]{2,}', lemma) or lemma not in dwords:
            continue
        # the part of speech with the most tagged uses; its first (most frequent) sense
        cands = [(tag[(lemma, p)], -i, p) for i, p in enumerate('nvar') if (lemma, p) in index]
        if not cands:
            continue
        pos = max(cands)[2]
        offs = index[(lemma, pos)]
        ss_type, lemmas, gloss = data[pos][offs[0]]
        defs, exs = split_gloss(gloss)
        d = short_definition(defs[0], max_def_words) if defs else None
        if not d:
            continue
        dw = re.findall(r'[A-Za-z]+', d)
        if sum(is_real(w, dwords) for w in dw) < 0.9 * len(dw):
            continue
        forms = inflections(lemma, exc)
        example = None
        for off in offs:  # an example that uses the word, first sense first
            for e in split_gloss(data[pos][off][2])[1]:
                e2 = sentence(e)
                n = len(e2.split())
                ew = re.findall(r'[A-Za-z]+', e2)
                if (4 <= n <= 18 and contains_form(e2, forms) and '"' not in e2
                        and sum(is_real(w, dwords) for w in ew) >= 0.9 * len(ew)):
                    example = e2
                    break
            if example:
                break
        syns = []
        for l in lemmas:
            s = l.replace('_', ' ')
            if (s.lower() != lemma and re.fullmatch(r"[a-z][a-z' -]*", s) and s not in syns
                    and all(is_real(x, dwords) for x in re.findall(r'[A-Za-z]+', s))):
                syns.append(s)
        entries[lemma] = {'word': lemma, 'pos': POS_NAME[ss_type], 'definition': d,
                          'example': example, 'synonyms': syns[:4], 'count': total[lemma]}
    return entries


def entry_prose(e):
    s = '%s (%s): %s.' % (e['word'], e['pos'], e['definition'])
    if e['example']:
        s += ' Example: ' + e['example']
    if e['synonyms']:
        s += ' Synonyms: ' + ', '.join(e['synonyms']) + '.'
    return s


def answers(e):
    out = {'define': '%s (%s): %s.' % (e['word'], e['pos'], e['definition'])}
    if e['example']:
        out['example'] = e['example']
    if e['synonyms']:
        out['synonyms'] = 'Synonyms of %s: %s.' % (e['word'], ', '.join(e['synonyms']))
    return out


# ----------------------------------------------------------------------------- build
def chat_row(question, word, kind, answer):
    return {'messages': [{'role': 'user', 'content': question.format(w=word)},
                         {'role': 'assistant', 'content': answer}],
            'kind': kind, 'word': word}


def group_docs(items, max_bytes, sep='\n\n'):
    docs, cur, n = [], [], 0
    for it in items:
        b = len(it.encode()) + len(sep)
        if cur and n + b > max_bytes:
            docs.append(sep.join(cur))
            cur, n = [], 0
        cur.append(it)
        n += b
    if cur:
        docs.append(sep.join(cur))
    return docs


def write_jsonl(path, rows):
    with open(path, 'w', encoding='utf-8') as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + '\n')


def verify_template(dsv3, tokdir, chats):
    """Our render_chat == `dsv3 template` (BOS stripped) on a few chats."""
    for m in chats:
        r = subprocess.run([dsv3, 'template', '-m', tokdir], input=json.dumps(m), text=True,
                           capture_output=True, check=True).stdout
        if r.startswith(BOS_TEXT):
            r = r[len(BOS_TEXT):]
        if r != render_chat(m):
            raise SystemExit('demo_corpus: template mismatch:\n%r\n%r' % (r, render_chat(m)))
    return len(chats)


def build(a):
    t0 = time.time()
    out = a.outdir
    os.makedirs(out, exist_ok=True)
    rng = random.Random(SEED)
    dwords = load_dict_words()
    counts = collections.OrderedDict()
    docs = []  # (kind, text)

    # --- KJV: one document per chapter; held-out books go to heldout_prose.txt
    chapters = read_kjv()
    held_kjv = []
    for (book, ch), verses in chapters.items():
        t = kjv_chapter_text(book, ch, verses)
        if book in KJV_HELDOUT:
            held_kjv.append(t)
        else:
            docs.append(('kjv', t))
    counts['kjv_chapters_train'] = sum(1 for k, _ in docs if k == 'kjv')
    counts['kjv_chapters_heldout'] = len(held_kjv)

    # --- fortunes (English): dedupe, drop art/tables, hold out ~heldout_fortune_bytes
    en_files, zh_files = fortune_files()
    seen, en = set(), []
    for p in en_files:
        for s in read_fortune_file(p):
            key = re.sub(r'\s+', ' ', s.lower()).strip()
            if key in seen or len(s) < 20 or len(s) > 4000 or letter_share(s) < 0.6:
                continue
            seen.add(key)
            en.append(s)
    rng.shuffle(en)
    held_fort, train_fort, nb = [], [], 0
    for s in en:
        if nb < a.heldout_fortune_bytes and letter_share(s) >= 0.75 and len(s) < 1500:
            held_fort.append(s)
            nb += len(s.encode()) + 2
        else:
            train_fort.append(s)
    # a held-out fortune quoted inside a training one goes back to training
    norm = lambda s: re.sub(r'\s+', ' ', s.lower()).strip()
    big = '\n'.join(norm(s) for s in train_fort)
    back = [s for s in held_fort if norm(s) in big]
    held_fort = [s for s in held_fort if norm(s) not in big]
    train_fort += back
    fdocs = group_docs(train_fort, 2000)
    docs += [('fortunes', d) for d in fdocs]
    counts['fortunes_en_train'] = len(train_fort)
    counts['fortunes_en_heldout'] = len(held_fort)

    # --- fortunes-zh: a small seeded sample
    zh = []
    for p in zh_files:
        zh += [s for s in read_fortune_file(p) if len(s) >= 10]
    rng.shuffle(zh)
    zh_take, nb = [], 0
    for s in zh:
        if nb >= a.zh_bytes:
            break
        zh_take.append(s)
        nb += len(s.encode()) + 2
    docs += [('fortunes_zh', d) for d in group_docs(zh_take, 2000)]
    counts['fortunes_zh'] = len(zh_take)

    # --- WordNet dictionary + chat
    entries = build_dictionary(dwords, a.max_def_words, 1)
    vocab = sorted(w for w, e in entries.items() if e['count'] >= a.min_count)
    # words of the question phrasings themselves ("example", "word", "mean"...) are never eval words
    template_words = set(re.findall(r'[a-z]+', ' '.join(sum(QUESTIONS.values(), [])).lower()))
    counts['dictionary_entries'] = len(entries)
    counts['chat_words'] = len(vocab)
    # eval words: a seeded sample, enough for eval_per_kind of every kind
    order = sorted(vocab, key=lambda w: stable_hash('%d:%s' % (SEED, w)))
    eval_words, need = [], {k: a.eval_per_kind for k in QUESTIONS}
    for w in order:
        if w in template_words:
            continue
        if not any(need.values()):
            break
        ans = answers(entries[w])
        if any(need[k] > 0 for k in ans):
            eval_words.append(w)
            for k in ans:
                need[k] -= 1
    eval_set = set(eval_words)
    chat_train, chat_eval = [], []
    left = {k: a.eval_per_kind for k in QUESTIONS}
    for w in eval_words:  # seeded order: no alphabetical bias
        for kind, answer in answers(entries[w]).items():
            if left[kind] > 0:
                left[kind] -= 1
                chat_eval.append(chat_row(rng.choice(QUESTIONS[kind]), w, kind, answer))
    for w in vocab:
        if w in eval_set:
            continue
        for kind, answer in answers(entries[w]).items():
            for q in rng.sample(QUESTIONS[kind], a.train_variants):
                chat_train.append(chat_row(q, w, kind, answer))
    rng.shuffle(chat_train)
    rng.shuffle(chat_eval)
    write_jsonl(os.path.join(out, 'chat_train.jsonl'), chat_train)
    write_jsonl(os.path.join(out, 'chat_eval.jsonl'), chat_eval)
    for name, rows in (('train', chat_train), ('eval', chat_eval)):
        c = collections.Counter(r['kind'] for r in rows)
        for k in QUESTIONS:
            counts['chat_%s_%s' % (name, k)] = c[k]

    # dictionary prose: every entry once, chat words (eval words included) dict_repeats times,
    # each repeat in a different seeded grouping of ~dict_group entries per document
    all_words = sorted(entries)
    for rep in range(a.dict_repeats):
        ws = all_words if rep == 0 else vocab
        ws = list(ws)
        random.Random(SEED + rep).shuffle(ws)
        if rep == 0:
            ws.sort()  # first copy alphabetical, like a dictionary
        for i in range(0, len(ws), a.dict_group):
            docs.append(('dictionary', '\n'.join(entry_prose(entries[w]) for w in ws[i:i + a.dict_group]) + '\n'))

    # chat examples rendered with the chat template (no BOS), one document each
    for r in chat_train:
        docs.append(('chat', render_chat(r['messages'])))

    # template check against dsv3 itself when it is at hand
    if (a.dsv3 and os.path.exists(a.dsv3) and a.template_dir
            and os.path.exists(os.path.join(a.template_dir, 'tokenizer_config.json'))):
        sample = [r['messages'] for r in chat_train[:3]] + [[
            {'role': 'user', 'content': 'Define "quote" & <tag>.'},
            {'role': 'assistant', 'content': 'Line one.\nLine two.'}]]
        counts['template_checked'] = verify_template(a.dsv3, a.template_dir, sample)

    # --- write
    random.Random(SEED + 100).shuffle(docs)
    kinds = collections.Counter()
    kbytes = collections.Counter()
    with open(os.path.join(out, 'pretrain.jsonl'), 'w', encoding='utf-8') as f:
        for k, t in docs:
            f.write(json.dumps({'text': t}, ensure_ascii=False) + '\n')
            kinds[k] += 1
            kbytes[k] += len(t.encode())
    with open(os.path.join(out, 'tokenizer_train.txt'), 'w', encoding='utf-8') as f:
        for k, t in docs:
            if k == 'chat':  # template markers are special tokens: no merges for them
                t = t.replace(USER_TEXT, '').replace(ASSISTANT_TEXT, '\n').replace(EOS_TEXT, '')
            f.write(t + '\n\n')
    held = [kjv_chapter_text(b, c, v) for (b, c), v in chapters.items() if b in KJV_HELDOUT]
    with open(os.path.join(out, 'heldout_prose.txt'), 'w', encoding='utf-8') as f:
        f.write('\n'.join(held) + '\n' + '\n\n'.join(held_fort) + '\n')
    write_sources(out, en_files, zh_files)

    stats = collections.OrderedDict()
    stats['documents'] = {k: kinds[k] for k in sorted(kinds)}
    stats['bytes'] = {k: kbytes[k] for k in sorted(kbytes)}
    stats['pretrain_documents'] = len(docs)
    stats['pretrain_bytes'] = os.path.getsize(os.path.join(out, 'pretrain.jsonl'))
    stats['text_bytes'] = sum(kbytes.values())
    stats['tokenizer_train_bytes'] = os.path.getsize(os.path.join(out, 'tokenizer_train.txt'))
    stats['heldout_prose_bytes'] = os.path.getsize(os.path.join(out, 'heldout_prose.txt'))
    stats['counts'] = counts
    stats['seconds'] = round(time.time() - t0, 1)
    with open(os.path.join(out, 'stats.json'), 'w') as f:
        json.dump(stats, f, indent=1)
    print(json.dumps(stats, indent=1))


def pkg_info(pkg):
    ver = subprocess.run(['dpkg-query', '-W', '-f', '${Version}', pkg], capture_output=True,
                         text=True).stdout.strip() or '(not installed)'
    return ver


def write_sources(out, en_files, zh_files):
    owner = {}
    r = subprocess.run(['dpkg', '-S'] + en_files + zh_files, capture_output=True, text=True)
    for line in r.stdout.splitlines():
        pkg, _, path = line.partition(': ')
        owner[path.strip()] = pkg
    by_pkg = collections.defaultdict(list)
    for p in en_files + zh_files:
        by_pkg[owner.get(p, '?')].append(os.path.basename(p))
    rows = [
        ('wordnet-base', 'WordNet 3.0 licence (permissive, BSD-like; keep the Princeton notice)',
         'data.{noun,verb,adj,adv}, index.*, *.exc, cntlist.rev: first gloss of each word\'s most '
         'frequent sense, a quoted example using the word, synonyms from the same synset; '
         'dictionary prose and the chat questions/answers'),
        ('bible-kjv-text', 'KJV text: public domain (copyright expired, 1611); BRS data file: '
         '"unrestricted use ... copy, modify or distribute at will" (Chip Chapin); Debian code GPL-2+',
         'all 66 books, one document per chapter; Ruth, Joel, Jonah, Philippians and James held out '
         'for heldout_prose.txt'),
        ('bible-kjv', 'GPL-2+ (program only)', 'the `bible` reader used to decompress bible.data'),
        ('fortunes', 'BSD (fortune-mod, University of California), as distributed in Debian main',
         'English fortune files: ' + ', '.join(sorted(by_pkg.get('fortunes', [])))),
        ('fortunes-min', 'BSD (fortune-mod), as distributed in Debian main',
         'English fortune files: ' + ', '.join(sorted(by_pkg.get('fortunes-min', [])))),
        ('fortunes-zh', 'GPL-3+', 'a seeded sample of: ' + ', '.join(sorted(by_pkg.get('fortunes-zh', [])))),
        ('wamerican', 'SCOWL licence (permissive; Kevin Atkinson et al.)',
         '/usr/share/dict/words: only to filter words (definitions, examples, synonyms must be real '
         'words); not part of the text'),
    ]
    with open(os.path.join(out, 'SOURCES.md'), 'w') as f:
        f.write('# Sources of the demo corpus\n\nBuilt by `scripts/demo_corpus.sh` from Debian 12 '
                'packages. Full licence texts: `/usr/share/doc/PACKAGE/copyright`.\n\n'
                '| package | version | licence | what was taken |\n|---|---|---|---|\n')
        for pkg, lic, what in rows:
            f.write('| %s | %s | %s | %s |\n' % (pkg, pkg_info(pkg), lic, what))
        f.write('\nfortune files skipped: ascii-art (pictures); fortunes with under 60% letters '
                '(tables, art) and duplicates are dropped. The WordNet notice: "WordNet 3.0 '
                'Copyright 2006 by Princeton University. All rights reserved." (see its copyright '
                'file for the permission and disclaimer).\n')


# ----------------------------------------------------------------------------- ids
def special_ids(tokdir):
    with open(os.path.join(tokdir, 'tokenizer.json'), encoding='utf-8') as f:
        tj = json.load(f)
    ids = {t['content']: t['id'] for t in tj.get('added_tokens', [])}
    return ids[BOS_TEXT], ids[EOS_TEXT]


def make_ids(a):
    bos, eos = special_ids(a.tokenizer)
    src = os.path.join(a.outdir, 'pretrain.jsonl')
    dst = os.path.join(a.outdir, 'pretrain_ids.jsonl')
    with open(src, encoding='utf-8') as f:
        texts = [json.loads(l)['text'] for l in f]
    inp = ''.join(json.dumps(t, ensure_ascii=False) + '\n' for t in texts)
    r = subprocess.run([a.dsv3, 'tokenize', '-m', a.tokenizer, '--jsonl'], input=inp.encode(),
                       capture_output=True, check=True)
    lines = r.stdout.decode().splitlines()
    if len(lines) != len(texts):
        raise SystemExit('demo_corpus: %d texts but %d id lists' % (len(texts), len(lines)))
    n = 0
    with open(dst, 'w') as f:
        for l in lines:
            ids = [bos] + json.loads(l)
            if ids[-1] != eos:
                ids.append(eos)
            n += len(ids)
            f.write(json.dumps(ids, separators=(',', ':')) + '\n')
    print(json.dumps({'documents': len(texts), 'tokens': n, 'bytes': sum(len(t.encode()) for t in texts),
                      'bytes_per_token': round(sum(len(t.encode()) for t in texts) / n, 3),
                      'out': dst}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest='cmd', required=True)
    b = sub.add_parser('build', help='build the corpus into OUTDIR')
    b.add_argument('outdir', nargs='?', default='.cache/demo-corpus')
    b.add_argument('--eval-per-kind', type=int, default=300)
    b.add_argument('--min-count', type=int, default=2,
                   help='chat words: WordNet SemCor tag count at least this (default 2)')
    b.add_argument('--max-def-words', type=int, default=14)
    b.add_argument('--train-variants', type=int, default=1, choices=[1, 2, 3],
                   help='question phrasings per training word and kind')
    b.add_argument('--dict-repeats', type=int, default=3,
                   help='copies of the chat words\' dictionary entries (1 = every entry once)')
    b.add_argument('--dict-group', type=int, default=12, help='dictionary entries per document')
    b.add_argument('--zh-bytes', type=int, default=300000, help='bytes of fortunes-zh to take')
    b.add_argument('--heldout-fortune-bytes', type=int, default=50000)
    b.add_argument('--dsv3', default='build/bin/dsv3', help='to check the template (if present)')
    b.add_argument('--template-dir', default='.cache/tokenizer',
                   help='tokenizer_config.json with the chat template, for the check')
    i = sub.add_parser('ids', help='pretrain.jsonl -> pretrain_ids.jsonl with special tokens')
    i.add_argument('outdir', nargs='?', default='.cache/demo-corpus')
    i.add_argument('--dsv3', default='build/bin/dsv3')
    i.add_argument('--tokenizer', required=True)
    a = ap.parse_args()
    if a.cmd == 'build':
        build(a)
    else:
        make_ids(a)


if __name__ == '__main__':
    main()
