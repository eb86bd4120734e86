//! Stop strings matched incrementally on decoded text.
//!
//! A `StopMatcher` belongs to one request. It is fed the detokenizer's text
//! deltas (whole UTF-8 characters) and says what may be sent to the client
//! now. A stop string can arrive split over several tokens, so the matcher
//! holds back the longest tail of the text that is still the start of some
//! stop string, and no more. When a stop string appears, the text before it
//! is released and it, and anything after it, is cut. It knows nothing of
//! tokens: stop token ids are the sequence's business.

/// What one delta lets through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StopResult {
    /// Text safe to emit now (possibly empty).
    pub emit: String,
    /// A stop string was found: generation should end; later deltas are dropped.
    pub stopped: bool,
}

#[derive(Debug, Clone)]
pub struct StopMatcher {
    stop_strings: Vec<String>,
    /// Text received but not emitted: a tail that could still begin a stop string.
    held: String,
    /// Index into `stop_strings` of the one that stopped the text.
    matched: Option<usize>,
}

impl StopMatcher {
    /// Empty stop strings are ignored (they would match before any text).
    pub fn new(stop_strings: Vec<String>) -> Self {
        let stop_strings = stop_strings.into_iter().filter(|s| !s.is_empty()).collect();
        Self { stop_strings, held: String::new(), matched: None }
    }

    /// Takes the next piece of decoded text.
    pub fn push(&mut self, delta: &str) -> StopResult {
        if self.matched.is_some() {
            return StopResult { emit: String::new(), stopped: true };
        }
        if self.stop_strings.is_empty() {
            return StopResult { emit: delta.to_owned(), stopped: false };
        }
        // Every match starts inside `held`: what was emitted could not begin one.
        self.held.push_str(delta);
        let earliest = self
            .stop_strings
            .iter()
            .enumerate()
            .filter_map(|(i, stop)| self.held.find(stop.as_str()).map(|at| (at, i)))
            .min();
        if let Some((at, i)) = earliest {
            self.matched = Some(i);
            self.held.truncate(at);
            return StopResult { emit: std::mem::take(&mut self.held), stopped: true };
        }
        let keep =
            self.stop_strings.iter().map(|stop| partial_match_len(&self.held, stop)).max().unwrap_or(0);
        let tail = self.held.split_off(self.held.len() - keep);
        StopResult { emit: std::mem::replace(&mut self.held, tail), stopped: false }
    }

    /// Releases the held-back text at the end of generation (none after a stop).
    pub fn flush(&mut self) -> String {
        std::mem::take(&mut self.held)
    }

    pub fn is_stopped(&self) -> bool {
        self.matched.is_some()
    }

    /// The stop string that ended the text (vLLM's `stop_reason`).
    pub fn matched(&self) -> Option<&str> {
        self.matched.and_then(|i| self.stop_strings.get(i)).map(String::as_str)
    }
}

/// Length in bytes of the longest tail of `text` that is a proper prefix of
/// `stop`. Byte comparison is char-safe: `stop` starts on a character, so a
/// matching tail cannot start inside one of `text`'s characters.
fn partial_match_len(text: &str, stop: &str) -> usize {
    let (text_bytes, stop_bytes) = (text.as_bytes(), stop.as_bytes());
    let longest = (stop_bytes.len() - 1).min(text_bytes.len());
    let len = (1..=longest).rev().find(|&k| text_bytes.ends_with(&stop_bytes[..k])).unwrap_or(0);
    debug_assert!(text.is_char_boundary(text.len() - len));
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn matcher(stops: &[&str]) -> StopMatcher {
        StopMatcher::new(stops.iter().map(|s| s.to_string()).collect())
    }

    /// Feeds the deltas; returns each delta's emitted text, then the flush
    /// (or "" after a stop), and whether it stopped.
    fn run(stops: &[&str], deltas: &[&str]) -> (Vec<String>, bool) {
        let mut m = matcher(stops);
        let mut emitted = Vec::new();
        for delta in deltas {
            let result = m.push(delta);
            emitted.push(result.emit);
            if result.stopped {
                assert!(m.is_stopped());
                assert_eq!(m.flush(), "", "nothing is released after a stop");
                return (emitted, true);
            }
        }
        emitted.push(m.flush());
        (emitted, false)
    }

    #[test]
    fn stop_string_split_across_two_and_three_deltas() {
        assert_eq!(run(&["STOP"], &["hello ST", "OP world"]), (vec!["hello ".into(), "".into()], true));
        assert_eq!(run(&["bcd"], &["ab", "c", "de"]), (vec!["a".into(), "".into(), "".into()], true));
    }

    #[test]
    fn stop_string_at_the_start() {
        assert_eq!(run(&["STOP"], &["STOP and more"]), (vec!["".into()], true));
        assert_eq!(run(&["STOP"], &["S", "TOP"]), (vec!["".into(), "".into()], true));
    }

    #[test]
    fn overlapping_prefixes() {
        // "ab" in "aab": the first "a" is released once the second shows it was no start.
        assert_eq!(run(&["ab"], &["a", "a", "b"]), (vec!["".into(), "a".into(), "".into()], true));
        assert_eq!(run(&["ab"], &["aab"]), (vec!["a".into()], true));
        assert_eq!(run(&["aab"], &["a", "a", "a", "b", "c"]).0.concat(), "a");
    }

    #[test]
    fn earliest_stop_string_wins_and_is_reported() {
        let mut m = matcher(&["world", "lo w"]);
        assert_eq!(m.push("hello world"), StopResult { emit: "hel".into(), stopped: true });
        assert_eq!(m.matched(), Some("lo w"));
        assert_eq!(m.push("more"), StopResult { emit: String::new(), stopped: true });
    }

    #[test]
    fn multi_byte_characters() {
        assert_eq!(run(&["é!"], &["caf", "é", "!", "x"]), (vec!["caf".into(), "".into(), "".into()], true));
        assert_eq!(run(&["日本"], &["今日", "本語"]), (vec!["今".into(), "".into()], true));
        // Same lead byte, different character (é is C3 A9, ê is C3 AA): no match, no holdback.
        assert_eq!(run(&["é"], &["tête", "-à-"]), (vec!["tête".into(), "-à-".into(), "".into()], false));
    }

    #[test]
    fn no_false_holdback() {
        // Text that cannot start a stop string goes out at once.
        assert_eq!(
            run(&["xyz"], &["hello", " there"]),
            (vec!["hello".into(), " there".into(), "".into()], false)
        );
        // A possible start is held, then released by flush.
        assert_eq!(run(&["ab"], &["end a"]), (vec!["end ".into(), "a".into()], false));
        assert_eq!(run(&[], &["no stops"]), (vec!["no stops".into(), "".into()], false));
        assert_eq!(run(&[""], &["empty stop"]), (vec!["empty stop".into(), "".into()], false));
    }

    /// Random texts cut into random deltas give the same output as cutting
    /// the whole text at its first stop string.
    #[test]
    fn any_split_equals_the_whole_text() {
        let alphabet = ['a', 'b', 'é', '日', ' '];
        let mut rng = StdRng::seed_from_u64(17);
        let random_text = |rng: &mut StdRng, max_len: usize| -> String {
            let len = rng.random_range(1..=max_len);
            (0..len).map(|_| alphabet[rng.random_range(0..alphabet.len())]).collect()
        };
        for _ in 0..2000 {
            let stops: Vec<String> = (0..rng.random_range(1..=3)).map(|_| random_text(&mut rng, 3)).collect();
            let text = random_text(&mut rng, 12);
            let first = stops.iter().filter_map(|s| text.find(s.as_str())).min();
            let expected = &text[..first.unwrap_or(text.len())];

            let mut m = StopMatcher::new(stops.clone());
            let mut output = String::new();
            let mut stopped = false;
            let mut rest = text.as_str();
            while !rest.is_empty() && !stopped {
                let chars = rng.random_range(1..=rest.chars().count());
                let at = rest.char_indices().nth(chars).map_or(rest.len(), |(i, _)| i);
                let result = m.push(&rest[..at]);
                output.push_str(&result.emit);
                stopped = result.stopped;
                rest = &rest[at..];
            }
            output.push_str(&m.flush());
            assert_eq!((output.as_str(), stopped), (expected, first.is_some()), "{text:?} {stops:?}");
        }
    }
}
