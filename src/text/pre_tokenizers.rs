//! Byte-level BPE pre-tokenizers, by the name GGUF gives them
//! (`tokenizer.ggml.pre`). llama.cpp's converter names a vocabulary's
//! split rule instead of storing it; this file maps each name llama.cpp
//! knows (`llama-vocab.cpp`) to the pipeline the family's own
//! `tokenizer.json` runs: a `Split` per regex (isolating the matches), then
//! `ByteLevel` without a regex of its own, as Llama 3's and Qwen 2's files
//! do; GPT-2's single regex stays inside `ByteLevel`. It also owns the
//! other per-name facts of the BPE model: Qwen's NFC normalizer, and
//! `ignore_merges` (a pre-token that is whole in the vocabulary is taken
//! as is; Llama 3's `tokenizer.json` sets it, llama.cpp too).
//!
//! Regexes are the `tokenizer.json` originals where llama.cpp adapted them
//! to its own engine: ours (`fancy-regex`) knows `(?i:..)`, lookahead
//! `\s+(?!\S)` and the `\p{..}` classes.

use tokenizers::normalizers::unicode::NFC;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{NormalizerWrapper, PreTokenizerWrapper, SplitDelimiterBehavior};

use super::TextError;

/// Llama 3's split: contractions, letters with one leading non-letter,
/// numbers of up to three digits, punctuation runs, newlines, spaces.
const LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Qwen 2's: Llama 3's with every digit alone.
const QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Qwen 3.5's: Qwen 2's with combining marks kept on their letters.
const QWEN35: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Mistral's Tekken (Nemo, Pixtral 12B): words split at case changes.
const TEKKEN: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// GPT-4o's (Llama 4): Tekken's with contractions and three-digit numbers.
const GPT4O: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// GPT-2's regex (what `ByteLevel` runs when it splits itself).
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";

// Written with escapes: the letter classes hold code points (Ohm, Kelvin,
// Greek with tonos) that an editor's NFC would silently change.

/// DeepSeek LLM's five splits, in order.
const DEEPSEEK_LLM: &[&str] = &[
    "[\\r\\n]",
    "\\s?[A-Za-z\u{b5}\u{c0}-\u{d6}\u{d8}-\u{f6}\u{f8}-\u{1ba}\u{1bc}-\u{1bf}\u{1c4}-\u{293}\u{295}-\u{2af}\u{370}-\u{373}\u{376}\u{377}\u{37b}-\u{37d}\u{37f}\u{386}\u{388}-\u{38a}\u{38c}\u{38e}-\u{3a1}\u{3a3}-\u{3f5}\u{3f7}-\u{481}\u{48a}-\u{52f}\u{531}-\u{556}\u{10a0}-\u{10c5}\u{13a0}-\u{13f5}\u{13f8}-\u{13fd}\u{1c90}-\u{1cba}\u{1cbd}-\u{1cbf}\u{1d00}-\u{1d2b}\u{1d6b}-\u{1d77}\u{1d79}-\u{1d9a}\u{1e00}-\u{1f15}\u{1f18}-\u{1f1d}\u{1f20}-\u{1f45}\u{1f48}-\u{1f4d}\u{1f50}-\u{1f57}\u{1f59}\u{1f5b}\u{1f5d}\u{1f5f}-\u{1f7d}\u{1f80}-\u{1fb4}\u{1fb6}-\u{1fbc}\u{1fbe}\u{1fc2}-\u{1fc4}\u{1fc6}-\u{1fcc}\u{1fd0}-\u{1fd3}\u{1fd6}-\u{1fdb}\u{1fe0}-\u{1fec}\u{1ff2}-\u{1ff4}\u{1ff6}-\u{1ffc}\u{2102}\u{2107}\u{210a}-\u{2113}\u{2115}\u{2119}-\u{211d}\u{2124}\u{2126}\u{2128}\u{212a}-\u{212d}\u{212f}-\u{2134}\u{2139}\u{213c}-\u{213f}\u{2145}-\u{2149}\u{214e}\u{2183}\u{2184}\u{2c00}-\u{2c7b}\u{2c7e}-\u{2ce4}\u{2ceb}-\u{2cee}\u{2cf2}\u{2cf3}\u{a640}-\u{a66d}\u{a680}-\u{a69b}\u{a722}-\u{a76f}\u{a771}-\u{a787}\u{a78b}-\u{a78e}\u{ab70}-\u{abbf}\u{fb00}-\u{fb06}\u{fb13}-\u{fb17}\u{ff21}-\u{ff3a}\u{ff41}-\u{ff5a}\u{10400}-\u{1044f}\u{104b0}-\u{104d3}\u{104d8}-\u{104fb}\u{10c80}-\u{10cb2}\u{10cc0}-\u{10cf2}\u{118a0}-\u{118df}\u{1e900}-\u{1e943}]+",
    "\\s?[!-/:-~\u{ff01}-\u{ff0f}\u{ff1a}-\u{ff5e}\u{2018}-\u{201f}\u{3000}-\u{3002}]+",
    "\\s+$",
    CJK_HANGUL,
    "\\p{N}+",
];

/// CJK ideographs, a span before them, and Hangul (DeepSeek's).
const CJK_HANGUL: &str = "[\u{4e00}-\u{9fa5}\u{800}-\u{4e00}\u{ac00}-\u{d7ff}]+";

/// DeepSeek Coder's five splits, in order.
const DEEPSEEK_CODER: &[&str] = &[r"[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", CJK_HANGUL, r"\p{N}"];

/// DeepSeek V3's three splits, in order.
const DEEPSEEK_V3: &[&str] = &[
    r"\p{N}{1,3}",
    "[\u{4e00}-\u{9fa5}\u{3040}-\u{309f}\u{30a0}-\u{30ff}]+",
    r##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"##,
];

/// Falcon's: punctuation runs, GPT-2's regex, then digits in threes.
const FALCON: &[&str] = &[r"[\p{P}\$\+<=>\^~\|`]+", GPT2, r"[0-9][0-9][0-9]"];

/// How a family splits text before the byte-level BPE.
#[derive(Debug, Clone, Copy)]
enum Splits {
    /// GPT-2's regex, inside `ByteLevel`.
    Gpt2,
    /// Every digit alone, then GPT-2's regex (StarCoder, SmolLM):
    /// "2024" -> 2,0,2,4.
    DigitsThenGpt2,
    /// These regexes in turn, each isolating its matches.
    Regexes(&'static [&'static str]),
}

/// One row of the table: the names llama.cpp gives a split rule, and the
/// pipeline it stands for.
struct Family {
    names: &'static [&'static str],
    splits: Splits,
    /// Unicode NFC before splitting (Qwen's `tokenizer.json`).
    nfc: bool,
    ignore_merges: bool,
    /// Whether llama.cpp adds BOS when the file does not say
    /// (`tokenizer.ggml.add_bos_token` absent).
    add_bos_by_default: bool,
}

const fn family(names: &'static [&'static str], splits: Splits) -> Family {
    Family { names, splits, nfc: false, ignore_merges: false, add_bos_by_default: false }
}

/// llama.cpp's names, grouped by the rule they share there. A name not
/// listed is refused: a wrong split silently changes every prompt.
const FAMILIES: &[Family] = &[
    // llama.cpp's own "default" is an odd four-regex split; files say
    // "default" when their converter knew no better, and GPT-2's rule has
    // served them here so far.
    family(
        &[
            "default",
            "gpt2",
            "gpt-2",
            "phi-2",
            "mpt",
            "olmo",
            "jais",
            "jina-es",
            "jina-de",
            "jina-v2-es",
            "jina-v2-de",
            "gigachat",
            "a.x-4.0",
            "mellum",
            "modern-bert",
            "exaone4",
            "trillion",
            "granite-docling",
        ],
        Splits::Gpt2,
    ),
    family(
        &["smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b"],
        Splits::DigitsThenGpt2,
    ),
    Family {
        ignore_merges: true,
        add_bos_by_default: true,
        ..family(
            &["llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2"],
            Splits::Regexes(&[LLAMA3]),
        )
    },
    family(&["dbrx", "smaug-bpe", "chatglm-bpe", "glm4"], Splits::Regexes(&[LLAMA3])),
    Family { nfc: true, ..family(&["qwen2", "deepseek-r1-qwen"], Splits::Regexes(&[QWEN2])) },
    family(&["stablelm2", "megrez", "hunyuan", "kormo"], Splits::Regexes(&[QWEN2])),
    Family { nfc: true, ..family(&["qwen35"], Splits::Regexes(&[QWEN35])) },
    Family {
        ignore_merges: true,
        add_bos_by_default: true,
        ..family(&["tekken"], Splits::Regexes(&[TEKKEN]))
    },
    family(&["gpt-4o", "llama4"], Splits::Regexes(&[GPT4O])),
    family(&["deepseek-llm"], Splits::Regexes(DEEPSEEK_LLM)),
    family(&["deepseek-coder"], Splits::Regexes(DEEPSEEK_CODER)),
    family(&["deepseek-v3"], Splits::Regexes(DEEPSEEK_V3)),
    family(&["falcon"], Splits::Regexes(FALCON)),
];

/// What the BPE model and its tokenizer need from a `pre` name.
pub(crate) struct BpePipeline {
    pub normalizer: Option<NormalizerWrapper>,
    pub pre_tokenizer: PreTokenizerWrapper,
    pub ignore_merges: bool,
}

/// The pipeline named by `tokenizer.ggml.pre`; an empty name is GPT-2's
/// (llama.cpp's reading of a file without one).
pub(crate) fn bpe_pipeline(pre: &str) -> Result<BpePipeline, TextError> {
    let family = find(pre)?;
    // Bytes -> GPT-2's unicode form; no prefix space (llama.cpp and HF agree
    // for these models); trimming offsets changes no id.
    let byte_level = |use_regex: bool| ByteLevel::new(false, true, use_regex);
    let pre_tokenizer: PreTokenizerWrapper = match family.splits {
        Splits::Gpt2 => byte_level(true).into(),
        Splits::DigitsThenGpt2 => {
            Sequence::new(vec![Digits::new(true).into(), byte_level(true).into()]).into()
        }
        Splits::Regexes(regexes) => {
            let mut steps = regexes.iter().map(|r| isolate(r)).collect::<Result<Vec<_>, _>>()?;
            steps.push(byte_level(false).into());
            Sequence::new(steps).into()
        }
    };
    Ok(BpePipeline {
        normalizer: family.nfc.then(|| NFC.into()),
        pre_tokenizer,
        ignore_merges: family.ignore_merges,
    })
}

/// Whether llama.cpp adds BOS for a file of this `pre` that does not say
/// (Llama 3 and Tekken vocabularies start every sequence with it).
pub fn adds_bos_by_default(pre: &str) -> bool {
    find(pre).is_ok_and(|family| family.add_bos_by_default)
}

/// Every `pre` name this file knows, for error messages.
pub fn supported_names() -> Vec<&'static str> {
    FAMILIES.iter().flat_map(|f| f.names.iter().copied()).collect()
}

fn find(pre: &str) -> Result<&'static Family, TextError> {
    let name = if pre.is_empty() { "default" } else { pre };
    FAMILIES
        .iter()
        .find(|f| f.names.contains(&name))
        .ok_or_else(|| TextError::UnsupportedPreTokenizer(pre.to_string()))
}

fn isolate(regex: &str) -> Result<PreTokenizerWrapper, TextError> {
    let pattern = SplitPattern::Regex(regex.to_string());
    Split::new(pattern, SplitDelimiterBehavior::Isolated, false)
        .map(Into::into)
        .map_err(|e| TextError::InvalidVocab(format!("pre-tokenizer regex {regex:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use tokenizers::{OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer};

    use super::*;

    /// The pieces `pre` splits `text` into, in byte-level form.
    fn pieces(pre: &str, text: &str) -> Vec<String> {
        let pipeline = match bpe_pipeline(pre) {
            Ok(p) => p,
            Err(e) => panic!("{pre}: {e}"),
        };
        let mut s = PreTokenizedString::from(text);
        if let Err(e) = pipeline.pre_tokenizer.pre_tokenize(&mut s) {
            panic!("{pre}: {e}");
        }
        s.get_splits(OffsetReferential::Original, OffsetType::Byte)
            .into_iter()
            .map(|(p, _, _)| p.into())
            .collect()
    }

    #[test]
    fn every_name_builds() {
        for name in supported_names() {
            assert!(bpe_pipeline(name).is_ok(), "{name}");
        }
        assert!(
            matches!(bpe_pipeline("nonesuch"), Err(TextError::UnsupportedPreTokenizer(n)) if n == "nonesuch")
        );
    }

    #[test]
    fn llama3_keeps_three_digits_and_qwen2_one() {
        assert_eq!(pieces("llama-bpe", "12345 I'LL"), ["123", "45", "ĠI", "'LL"]);
        assert_eq!(pieces("qwen2", "12345"), ["1", "2", "3", "4", "5"]);
    }

    #[test]
    fn spaces_before_a_word_stay_apart_from_its_own_space() {
        // `\s+(?!\S)`: of three spaces before "b", two stand alone and one
        // starts the word (the lookahead the regex engine must support).
        assert_eq!(pieces("qwen2", "a   b\n\n c"), ["a", "ĠĠ", "Ġb", "ĊĊ", "Ġc"]);
        assert_eq!(pieces("gpt2", "a   b"), ["a", "ĠĠ", "Ġb"]);
    }

    #[test]
    fn tekken_splits_at_case_changes() {
        assert_eq!(pieces("tekken", "HelloWorld"), ["Hello", "World"]);
    }

    #[test]
    fn llama3_adds_bos_by_default_and_qwen2_does_not() {
        assert!(adds_bos_by_default("llama-bpe"));
        assert!(!adds_bos_by_default("qwen2"));
        assert!(!adds_bos_by_default("nonesuch"));
    }
}
