"""Tokenizers of the tiny family models, trained offline on CORPUS and laid
out as each family's tokenizer.json, and the fixture's tokenizer and chat
sections (transformers' ids and renderings). Part of
make_family_fixtures.py, whose docstring gives every decision."""

import io
import json
import os
import unicodedata

TEMPLATES_SUBDIR = "models/templates"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# The Mistral-7B-Instruct-v0.1 chat template (see make_family_fixtures.py's docstring).
MISTRAL_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}"
    "{% endif %}{% endfor %}"
)


# Training text for the tokenizers. The test cases below are other sentences.
CORPUS = [
    "The quick brown fox jumps over the lazy dog. I don't think it's late; you'll see.",
    "We're reading the news, they've left, I'd go, she'll stay, I'M here, YOU'RE there.",
    "Language models predict the next token from the previous tokens in the sequence.",
    "The server streams tokens to the client as soon as they are generated.",
    "Please write a short story about a robot who learns to paint the sea.",
    "What is the capital of France? The capital of France is Paris.",
    "Hello! How can I help you today? Thank you very much, have a nice day.",
    "Der schnelle braune Fuchs springt über den faulen Hund. Größe, Straße, Mädchen, schön.",
    "Ich möchte heute Abend ins Kino gehen, aber es regnet draußen sehr stark.",
    "Le cœur a ses raisons que la raison ne connaît point. Où est la bibliothèque ?",
    "Les élèves étudient à l'école ; c'est déjà l'été, garçon, français, très bien.",
    "Быстрая коричневая лиса прыгает через ленивую собаку. Привет, как дела?",
    "Москва — столица России. Я люблю читать книги и гулять в парке.",
    "Η γρήγορη καφέ αλεπού πηδάει πάνω από τον τεμπέλη σκύλο. Καλημέρα κόσμε!",
    "我们今天在学习自然语言处理。这是一个简单的中文句子，用来训练分词器。",
    "北京是中国的首都。天气很好，我们去公园散步吧。人工智能正在改变世界。",
    "今日はとても良い天気ですね。私は日本語を勉強しています。ありがとうございます。",
    "東京は日本の首都です。カタカナとひらがなと漢字を使います。",
    "안녕하세요, 만나서 반갑습니다. 오늘 날씨가 정말 좋네요. 한국어를 배우고 있어요.",
    "مرحبا بكم في عالم الذكاء الاصطناعي. اللغة العربية جميلة جدا.",
    "नमस्ते, आप कैसे हैं? मैं हिंदी सीख रहा हूँ। भारत एक बड़ा देश है।",
    "Emoji time 😀 😂 🎉 👍 ❤️ 🚀 🌍 — smiles and rockets everywhere 😀😀.",
    "def add(a, b):\n    return a + b\n\nprint(add(2, 3))\n",
    "for (int i = 0; i < n; i++) {\n\tsum += values[i];\n}\n",
    "fn main() {\n    let x: u32 = 42;\n    println!(\"{}\", x);\n}\n",
    "import numpy as np\nx = np.zeros((3, 4), dtype=np.float32)\n",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 2024 12345 3.14159 2.71828 1e-6 -7",
    "Prices: $19.99, €5,00, ¥1000, 50% off, #1 item, user@example.com, a_b-c.",
    "Tabs\tand  double  spaces,   triple   spaces,\n\nnew lines\r\nand carriage returns.",
    "    indented line with four spaces\n        and eight spaces\n\t\ttwo tabs",
    "JSON: {\"name\": \"wgserve\", \"tokens\": [1, 2, 3], \"ok\": true}",
    "HTML <div class=\"note\">Hello</div> and markdown **bold** _italic_ `code`.",
]
TOKENIZER_CASES = [
    "",
    " ",
    "   ",
    "\n\n\t",
    " leading space",
    "trailing space ",
    "Hello world",
    "A brand new sentence about tokenizers, written for the tests.",
    "HE'S sure THEY'LL come; we'D better go, isn't it?",
    "Die Bäckerei öffnet um acht Uhr.",
    "Voilà une phrase française, avec des accents: é è à ç ô.",
    "Съешь же ещё этих мягких французских булок.",
    "Γειά σου Κόσμε",
    "机器学习很有趣。",
    "猫が好きです。",
    "사과를 먹었어요.",
    "العدد 2024 هو سنة",
    "हिंदी भाषा",
    "1234567",
    "pi is 3.14159265 and e is 2.718",
    "rare characters: 龘 𠜎 ㊙ ꙮ",
    "emoji: 🦙🧪🫠 and 👨‍👩‍👧",
    "def mul(x, y):\n\treturn x * y\n",
    "spaces    inside\t\ttabs\n\n\nnewlines",
    "text with <|im_end|> inside and <|endoftext|> too",
    "header <|start_header_id|>user<|end_header_id|> and <s> </s> [INST]",
    "<|user|>\nHi there<|end|>\n<|assistant|>\n",
]
CHAT_CASES = [
    {
        "name": "user_only",
        "messages": [{"role": "user", "content": "Hello! Who are you?"}],
        "add_generation_prompt": True,
    },
    {
        "name": "system_user",
        "messages": [
            {"role": "system", "content": "You are a terse assistant."},
            {"role": "user", "content": "Name a colour."},
        ],
        "add_generation_prompt": True,
    },
    {
        "name": "multi_turn",
        "messages": [
            {"role": "user", "content": "What is 2 + 2?"},
            {"role": "assistant", "content": "2 + 2 = 4."},
            {"role": "user", "content": "And times 3?"},
        ],
        "add_generation_prompt": True,
    },
    {
        "name": "multi_turn_no_generation_prompt",
        "messages": [
            {"role": "user", "content": "Say hi in German."},
            {"role": "assistant", "content": "Hallo!"},
        ],
        "add_generation_prompt": False,
    },
]
QWEN3_EXTRA_CHAT_CASES = [
    {
        "name": "user_only_thinking_disabled",
        "messages": [{"role": "user", "content": "Hello! Who are you?"}],
        "add_generation_prompt": True,
        "template_kwargs": {"enable_thinking": False},
    },
    {
        "name": "assistant_with_reasoning",
        "messages": [
            {"role": "user", "content": "What is 2 + 2?"},
            {"role": "assistant", "content": "<think>\nEasy sum.\n</think>\n\n2 + 2 = 4."},
            {"role": "user", "content": "Thanks!"},
        ],
        "add_generation_prompt": True,
    },
]


# Gemma's SentencePiece ids: <pad> <eos> <bos> <unk> first, then control
# pieces (real Gemma 3: <mask> 4, <start_of_turn> 105, <end_of_turn> 106).
GEMMA_SPECIAL_IDS = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3}
GEMMA_CONTROL_SYMBOLS = ["<mask>", "<start_of_turn>", "<end_of_turn>"]
GEMMA_EXTRA_TOKENIZER_CASES = [
    "<start_of_turn>user\nHi there<end_of_turn>\n<start_of_turn>model\n",
    "<bos>text after bos and <eos> and <pad><mask>",
]
BPE_VOCAB_SIZE = 640  # byte alphabet + merges, before the added tokens
SPM_VOCAB_SIZE = 900  # incl. <unk> <s> </s> and the 256 byte pieces


def read_template(llama_cpp, spec):
    if "template_repo_file" in spec:
        with open(os.path.join(REPO_ROOT, spec["template_repo_file"]), encoding="utf-8") as f:
            return f.read()
    if spec["template_file"] is None:
        return MISTRAL_TEMPLATE
    with open(os.path.join(llama_cpp, TEMPLATES_SUBDIR, spec["template_file"]), encoding="utf-8") as f:
        return f.read()


def build_bpe_tokenizer(spec):
    """Byte-level BPE laid out as Qwen2's / Llama 3's tokenizer.json."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers
    from tokenizers import pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC() if spec["nfc"] else None
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(spec["pattern"]), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_VOCAB_SIZE,
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    tok.train_from_iterator(CORPUS * 3, trainer=trainer)
    # Added tokens go after the trained vocabulary, as in the real files.
    tok.add_tokens([
        AddedToken(content, special=special, normalized=False, lstrip=False, rstrip=False, single_word=False)
        for content, special in spec["added_tokens"]
    ])
    byte_level = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    if spec["add_bos"]:
        bos = spec["bos"]
        tok.post_processor = processors.Sequence([
            byte_level,
            processors.TemplateProcessing(
                single=f"{bos}:0 $A:0",
                pair=f"{bos}:0 $A:0 {bos}:1 $B:1",
                special_tokens=[(bos, tok.token_to_id(bos))],
            ),
        ])
    else:
        tok.post_processor = byte_level
    return tok


def train_spm(gemma=False):
    """A SentencePiece BPE model configured as Llama 2 / Mistral / Phi-3's,
    or with gemma as Gemma's: no dummy prefix, <pad> <eos> <bos> <unk> as
    ids 0-3 and the control pieces GEMMA_CONTROL_SYMBOLS after them."""
    import sentencepiece as spm

    if gemma:
        ids = dict(pad_id=0, eos_id=1, bos_id=2, unk_id=3, pad_piece="<pad>", eos_piece="<eos>",
                   bos_piece="<bos>", unk_piece="<unk>", control_symbols=GEMMA_CONTROL_SYMBOLS)
        assert {k: ids[k.strip("<>") + "_id"] for k in GEMMA_SPECIAL_IDS} == GEMMA_SPECIAL_IDS
    else:
        ids = dict(unk_id=0, bos_id=1, eos_id=2, pad_id=-1)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS * 3),
        model_writer=model,
        model_type="bpe",
        vocab_size=SPM_VOCAB_SIZE,
        byte_fallback=True,
        split_digits=True,
        add_dummy_prefix=not gemma,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True,
        split_by_unicode_script=True,
        split_by_whitespace=True,
        character_coverage=0.9995,
        unk_surface=" \u2047 ",
        num_threads=1,
        shuffle_input_sentence=False,
        hard_vocab_limit=False,
        minloglevel=2,
        **ids,
    )
    return model.getvalue()


def spm_as_bpe(model_proto):
    """(BPE tokenizer with byte fallback over the sentencepiece model's
    pieces and merges, the sentencepiece processor, its vocabulary): what
    transformers' converters start from; the caller adds the rest."""
    import sentencepiece as spm
    from tokenizers import Tokenizer, models
    from transformers.convert_slow_tokenizer import generate_merges

    sp = spm.SentencePieceProcessor(model_proto=model_proto)
    vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
    merges = generate_merges(vocab, {p: sp.get_score(i) for p, i in vocab.items()})
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    return tok, sp, vocab


def build_spm_tokenizer(spec, model_proto):
    """The tokenizer.json that the Llama-2-era converter wrote for Mistral
    and Phi-3 (legacy: normalizer Prepend + Replace, no pre-tokenizer)."""
    from tokenizers import AddedToken, decoders, normalizers, processors

    tok, sp, _ = spm_as_bpe(model_proto)
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.pre_tokenizer = None
    tok.decoder = decoders.Sequence([
        decoders.Replace("▁", " "),
        decoders.ByteFallback(),
        decoders.Fuse(),
        decoders.Strip(" ", 1, 0),
    ])
    tok.add_special_tokens([
        AddedToken(t, special=True, normalized=False, lstrip=False, rstrip=False)
        for t in ["<unk>", "<s>", "</s>"]
    ])
    tok.add_tokens([
        AddedToken(content, special=special, normalized=False, lstrip=False, rstrip=False, single_word=False)
        for content, special in spec["added_tokens"]
    ])
    tok.post_processor = processors.TemplateProcessing(
        single="<s>:0 $A:0", pair="<s>:0 $A:0 <s>:1 $B:1", special_tokens=[("<s>", 1)]
    )
    return tok, sp


def build_gemma_tokenizer(model_proto):
    """The tokenizer.json of google/gemma-3-*: BPE with byte fallback over
    the sentencepiece vocabulary, normalizer Replace(" ", "▁") (no dummy
    prefix), no pre-tokenizer, every piece before the byte pieces a special
    added token, a <bos> post-processor."""
    from tokenizers import AddedToken, decoders, normalizers, processors

    tok, sp, vocab = spm_as_bpe(model_proto)
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.pre_tokenizer = None
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    specials = list(GEMMA_SPECIAL_IDS) + GEMMA_CONTROL_SYMBOLS
    assert [vocab[t] for t in specials] == list(range(len(specials))), specials
    tok.add_special_tokens([
        AddedToken(t, special=True, normalized=False, lstrip=False, rstrip=False) for t in specials
    ])
    tok.post_processor = processors.TemplateProcessing(
        single="<bos>:0 $A:0", pair="<bos>:0 $A:0 <bos>:1 $B:1", special_tokens=[("<bos>", vocab["<bos>"])]
    )
    return tok, sp


def gemma_segment_ids(sp, text, add_bos):
    """sentencepiece ids with Gemma's special pieces matched whole in the
    text and each text segment between them encoded alone (no dummy
    prefix): what llama.cpp computes from the GGUF."""
    specials = list(GEMMA_SPECIAL_IDS) + GEMMA_CONTROL_SYMBOLS
    ids = [GEMMA_SPECIAL_IDS["<bos>"]] if add_bos else []
    rest = text
    while rest:
        hits = [(rest.find(t), t) for t in specials if t in rest]
        if not hits:
            ids += sp.encode(rest)
            break
        pos, token = min(hits)
        ids += sp.encode(rest[:pos]) + [sp.piece_to_id(token)]
        rest = rest[pos + len(token):]
    return ids


def write_tokenizer_files(spec, tok, template, hf_dir, spm_proto):
    """Writes tokenizer.json + tokenizer_config.json as the real repos have
    them, loads them with AutoTokenizer and saves them back with
    save_pretrained (chat template kept inside tokenizer_config.json)."""
    from transformers import AutoTokenizer

    def write_spm_model():
        with open(os.path.join(hf_dir, "tokenizer.model"), "wb") as f:
            f.write(spm_proto)

    os.makedirs(hf_dir, exist_ok=True)
    tok.save(os.path.join(hf_dir, "tokenizer.json"))
    if spm_proto is not None:
        write_spm_model()
    config = {
        "tokenizer_class": spec["tokenizer_class"],
        "bos_token": spec["bos"],
        "eos_token": spec["eos"],
        "pad_token": spec["pad"],
        "unk_token": spec["unk"],
        "add_bos_token": spec["add_bos"],
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 256,
        "chat_template": template,
    }
    if spec["tokenizer"] == "spm":
        config["legacy"] = True
        config["add_prefix_space"] = None
    if spec["tokenizer"] == "bpe" and spec["tokenizer_class"] == "Qwen2Tokenizer":
        config["errors"] = "replace"
        config["split_special_tokens"] = False
    with open(os.path.join(hf_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, ensure_ascii=False, indent=2)
    loaded = AutoTokenizer.from_pretrained(hf_dir)
    loaded.save_pretrained(hf_dir, save_jinja_files=False)
    if spm_proto is not None and not os.path.isfile(os.path.join(hf_dir, "tokenizer.model")):
        write_spm_model()  # transformers 5 no longer writes it
    return AutoTokenizer.from_pretrained(hf_dir)


def check_tokenizer(spec, hf_tok, raw_tok, sp):
    """Byte-level BPE: AutoTokenizer must agree with the tokenizer.json we
    built and decode back to the (NFC) text. SPM: the legacy tokenizer.json
    we built must agree with sentencepiece on text without special-token
    strings (AutoTokenizer's LlamaTokenizer differs on leading spaces, see
    spm_ids)."""
    if spec["tokenizer"] == "gemma":
        for text in tokenizer_cases(spec) + CORPUS:
            ids = hf_tok.encode(text, add_special_tokens=False)
            assert ids == raw_tok.encode(text, add_special_tokens=False).ids, text
            assert ids == gemma_segment_ids(sp, text, False), (text, ids, gemma_segment_ids(sp, text, False))
            assert hf_tok.encode(text, add_special_tokens=True) == gemma_segment_ids(sp, text, True), text
            assert hf_tok.decode(ids) == text, (text, hf_tok.decode(ids))
        return
    specials = [c for c, _ in spec["added_tokens"]] + ["<s>", "</s>", "<unk>"]
    for text in TOKENIZER_CASES + CORPUS:
        raw_ids = raw_tok.encode(text, add_special_tokens=False).ids
        if sp is not None:
            if not any(s in text for s in specials):
                assert raw_ids == sp.encode(text), (text, raw_ids, sp.encode(text))
            continue
        ids = hf_tok.encode(text, add_special_tokens=False)
        assert ids == raw_ids, (text, ids, raw_ids)
        expected = unicodedata.normalize("NFC", text) if spec["nfc"] else text
        assert hf_tok.decode(ids) == expected, (text, hf_tok.decode(ids))


def spm_ids(raw_tok, text, add_special_tokens):
    """Ids with sentencepiece's semantics (a dummy "▁" prefix on every text
    segment, also right after a special token), from the legacy
    tokenizer.json: what llama.cpp's SPM tokenizer computes for the GGUF.
    transformers 5's LlamaTokenizer rebuilds the pipeline as
    Metaspace(prepend_scheme="always"), which adds no "▁" to a segment that
    already starts with a space: " a" -> "▁a", where sentencepiece and
    llama.cpp give "▁▁a"."""
    return raw_tok.encode(text, add_special_tokens=add_special_tokens).ids


def tokenizer_cases(spec):
    return TOKENIZER_CASES + (GEMMA_EXTRA_TOKENIZER_CASES if spec["tokenizer"] == "gemma" else [])


def tokenizer_section(spec, hf_tok, raw_tok):
    cases = []
    for text in tokenizer_cases(spec):
        case = {
            "text": text,
            "ids_with_special": hf_tok.encode(text, add_special_tokens=True),
            "ids": hf_tok.encode(text, add_special_tokens=False),
        }
        if spec["tokenizer"] == "spm":
            case["ids_with_special_sentencepiece"] = spm_ids(raw_tok, text, True)
            case["ids_sentencepiece"] = spm_ids(raw_tok, text, False)
        cases.append(case)
    section = {
        "class": type(hf_tok).__name__,
        "add_bos": spec["add_bos"],
        "cases": cases,
    }
    if spec["tokenizer"] == "gemma":
        section["note"] = (
            "ids equal sentencepiece's (no dummy prefix) on each text segment between special "
            "pieces matched whole, as llama.cpp computes them from the GGUF (asserted)."
        )
    if spec["tokenizer"] == "spm":
        section["note"] = (
            "ids/ids_with_special: AutoTokenizer of hf/ (transformers 5 LlamaTokenizer, "
            "Metaspace prepend_scheme=always). *_sentencepiece: sentencepiece semantics "
            "(dummy prefix on every text segment), what llama.cpp computes from the GGUF; "
            "they differ only where a text segment starts with a space."
        )
    return section


def chat_section(family, spec, hf_tok, raw_tok):
    cases = CHAT_CASES + (QWEN3_EXTRA_CHAT_CASES if family == "qwen3" else [])
    out = []
    for case in cases:
        kwargs = case.get("template_kwargs", {})
        entry = {"name": case["name"], "messages": case["messages"],
                 "add_generation_prompt": case["add_generation_prompt"]}
        if kwargs:
            entry["template_kwargs"] = kwargs
        try:
            text = hf_tok.apply_chat_template(
                case["messages"], add_generation_prompt=case["add_generation_prompt"], tokenize=False, **kwargs
            )
            ids = hf_tok.apply_chat_template(
                case["messages"], add_generation_prompt=case["add_generation_prompt"], tokenize=True, **kwargs
            )
            if hasattr(ids, "keys"):
                ids = ids["input_ids"]
            entry["text"] = text
            entry["ids"] = list(ids)
            assert entry["ids"] == hf_tok.encode(text, add_special_tokens=False)
            if spec["tokenizer"] == "spm":
                entry["ids_sentencepiece"] = spm_ids(raw_tok, text, False)
        except Exception as e:  # the template's raise_exception
            entry["error"] = str(e)
        out.append(entry)
    return out


def make_tokenizer(family, spec, llama_cpp, hf_dir):
    """Returns (hf tokenizer, tokenizers.Tokenizer we built, template) after
    writing hf/'s tokenizer files."""
    template = read_template(llama_cpp, spec)
    if spec["tokenizer"] == "bpe":
        raw, sp, proto = build_bpe_tokenizer(spec), None, None
    elif spec["tokenizer"] == "gemma":
        proto = train_spm(gemma=True)
        raw, sp = build_gemma_tokenizer(proto)
    else:
        proto = train_spm()
        raw, sp = build_spm_tokenizer(spec, proto)
    hf_tok = write_tokenizer_files(spec, raw, template, hf_dir, proto)
    check_tokenizer(spec, hf_tok, raw, sp)
    return hf_tok, raw, template
