//! The soak run's requests, drawn from a seeded RNG: valid chat and
//! completion requests with random sampling parameters, streamed or not;
//! streamed ones whose client hangs up after a random number of events;
//! and malformed ones that must get a 4xx with OpenAI's error object,
//! their kinds taken in turn so that a short run still covers each.
//!
//! Prompts share a long opening, so that the prefix cache is exercised,
//! and end in a few random words, so that each request differs.

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

/// What the client plans to do, and what it expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Read the whole response.
    Complete,
    /// Stream, and hang up after reading this many events (0: right after
    /// the response head). A shorter stream simply completes.
    DisconnectAfter(usize),
    /// Malformed: expect a 4xx with an OpenAI error object.
    Reject,
}

pub struct SoakRequest {
    pub path: &'static str,
    pub body: Bytes,
    pub stream: bool,
    /// Choices asked for (`n`).
    pub n: usize,
    pub plan: Plan,
    /// For reports: what was sent (`chat`, `completion`, or the malformed kind).
    pub kind: &'static str,
}

/// The fractions of each plan, and the largest `max_tokens`.
#[derive(Debug, Clone, Copy)]
pub struct Mix {
    pub disconnect_fraction: f64,
    pub malformed_fraction: f64,
    pub max_tokens: usize,
}

const SHARED_OPENING: &str = "You are reading a short story about a village by a river. The village has a \
    market, a bridge, an old mill and a harbor where boats arrive every morning with fish and letters. \
    Continue the story in a few words:";

const WORDS: &[&str] = &[
    "river", "mountain", "quiet", "village", "engine", "summer", "bright", "window", "garden", "story",
    "ancient", "market", "silver", "journey", "forest", "letter", "harbor", "winter", "lantern", "meadow",
];

const STOP_STRINGS: &[&str] = &["\n\n", ".", " the", "!", "river"];

const NUM_MALFORMED_KINDS: usize = 10;

/// A token id beyond any vocabulary this server loads.
const OUT_OF_VOCABULARY_ID: u64 = 1_000_000_000;

/// Draws the requests of one soak run.
pub struct Generator {
    rng: StdRng,
    model: String,
    mix: Mix,
    num_malformed: usize,
}

impl Generator {
    pub fn new(seed: u64, model: &str, mix: Mix) -> Self {
        Self { rng: StdRng::seed_from_u64(seed), model: model.to_string(), mix, num_malformed: 0 }
    }

    pub fn draw(&mut self, count: usize) -> Vec<SoakRequest> {
        (0..count).map(|_| self.next_request()).collect()
    }

    fn next_request(&mut self) -> SoakRequest {
        let (rng, mix) = (&mut self.rng, self.mix);
        let roll: f64 = rng.random();
        if roll < mix.malformed_fraction {
            self.num_malformed += 1;
            return malformed(self.num_malformed - 1, &self.model);
        }
        let hangs_up = roll < mix.malformed_fraction + mix.disconnect_fraction;
        valid(rng, &self.model, mix.max_tokens.max(1), hangs_up)
    }
}

fn tail(rng: &mut StdRng) -> String {
    let words: Vec<&str> =
        (0..rng.random_range(1..=4)).map(|_| WORDS[rng.random_range(0..WORDS.len())]).collect();
    words.join(" ")
}

fn valid(rng: &mut StdRng, model: &str, max_tokens: usize, hangs_up: bool) -> SoakRequest {
    let chat = rng.random_bool(0.5);
    let stream = hangs_up || rng.random_bool(0.5);
    let n = rng.random_range(1..=2);
    let max_tokens = rng.random_range(1..=max_tokens);
    // Within the stream's events (at least one per token, more with a
    // role chunk or `n` = 2), so that nearly every planned hang-up happens.
    let plan = if hangs_up { Plan::DisconnectAfter(rng.random_range(0..max_tokens)) } else { Plan::Complete };
    let mut body = json!({"model": model, "max_tokens": max_tokens, "n": n, "stream": stream});
    let prompt = format!("{SHARED_OPENING} {}", tail(rng));
    if chat {
        body["messages"] = json!([{"role": "user", "content": prompt}]);
    } else {
        body["prompt"] = json!(prompt);
    }
    body["temperature"] = if rng.random_bool(0.25) { json!(0) } else { json!(rng.random_range(0.1..1.5)) };
    if rng.random_bool(0.5) {
        body["top_p"] = json!(rng.random_range(0.5..=1.0));
    }
    if rng.random_bool(0.5) {
        body["top_k"] = json!(rng.random_range(1..=50));
    }
    if rng.random_bool(0.5) {
        body["seed"] = json!(rng.random_range(0..1_000_000u64));
    }
    if rng.random_bool(0.3) {
        let count = rng.random_range(1..=2);
        let stop: Vec<&str> =
            (0..count).map(|_| STOP_STRINGS[rng.random_range(0..STOP_STRINGS.len())]).collect();
        body["stop"] = json!(stop);
    }
    if rng.random_bool(0.3) {
        let top = rng.random_range(0..=5);
        if chat {
            body["logprobs"] = json!(true);
            body["top_logprobs"] = json!(top);
        } else {
            body["logprobs"] = json!(top);
        }
    }
    if stream && rng.random_bool(0.5) {
        body["stream_options"] = json!({"include_usage": true});
    }
    SoakRequest {
        path: if chat { "/v1/chat/completions" } else { "/v1/completions" },
        body: Bytes::from(body.to_string()),
        stream,
        n,
        plan,
        kind: if chat { "chat" } else { "completion" },
    }
}

/// The `index`-th malformed request: one of the ways a hostile or buggy
/// client gets a request wrong, in turn.
fn malformed(index: usize, model: &str) -> SoakRequest {
    // Otherwise valid, with a small `max_tokens`: wrong in one way only, so
    // that no other check (the context, the KV cache) refuses it first.
    let chat = |messages: Value| {
        ("/v1/chat/completions", json!({"model": model, "messages": messages, "max_tokens": 4}))
    };
    let completion =
        |prompt: Value| ("/v1/completions", json!({"model": model, "prompt": prompt, "max_tokens": 4}));
    let with = |(path, mut body): (&'static str, Value), field: &str, value: Value| {
        body[field] = value;
        (path, body)
    };
    let hello = || json!([{"role": "user", "content": "Hello"}]);
    let (kind, (path, body)): (&'static str, (&'static str, Value)) = match index % NUM_MALFORMED_KINDS {
        0 => {
            // Cut off mid-object: not JSON at all.
            let text = format!(r#"{{"model": "{model}", "prompt": "Hello"#);
            return reject("bad JSON", "/v1/completions", Bytes::from(text));
        }
        1 => ("wrong type", with(completion(json!("Hello")), "max_tokens", json!("ten"))),
        2 => ("wrong type", chat(json!("Hello"))),
        3 => ("out of range", with(chat(hello()), "temperature", json!(-1.0))),
        4 => ("out of range", with(completion(json!("Hello")), "n", json!(0))),
        5 => ("out of range", with(completion(json!("Hello")), "logprobs", json!(1000))),
        6 => ("out of range", with(chat(hello()), "top_k", json!(-5))),
        7 => ("unknown model", with(chat(hello()), "model", json!("no-such-model"))),
        8 => ("token id outside the vocabulary", completion(json!([1, 2, OUT_OF_VOCABULARY_ID]))),
        _ => ("empty messages", chat(json!([]))),
    };
    reject(kind, path, Bytes::from(body.to_string()))
}

fn reject(kind: &'static str, path: &'static str, body: Bytes) -> SoakRequest {
    SoakRequest { path, body, stream: false, n: 1, plan: Plan::Reject, kind }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIX: Mix = Mix { disconnect_fraction: 0.2, malformed_fraction: 0.1, max_tokens: 16 };

    #[test]
    fn the_mix_follows_its_fractions_and_its_seed() {
        let requests = Generator::new(7, "m", MIX).draw(2000);
        let share = |plan: fn(&Plan) -> bool| {
            requests.iter().filter(|r| plan(&r.plan)).count() as f64 / requests.len() as f64
        };
        assert!((share(|p| *p == Plan::Reject) - 0.1).abs() < 0.03);
        assert!((share(|p| matches!(p, Plan::DisconnectAfter(_))) - 0.2).abs() < 0.03);
        assert!(requests.iter().filter(|r| matches!(r.plan, Plan::DisconnectAfter(_))).all(|r| r.stream));
        let again = Generator::new(7, "m", MIX).draw(1);
        assert_eq!(again[0].body, requests[0].body);
    }

    #[test]
    fn malformed_kinds_come_in_turn() {
        let mix = Mix { malformed_fraction: 1.0, ..MIX };
        let requests = Generator::new(3, "m", mix).draw(NUM_MALFORMED_KINDS);
        let kinds: std::collections::BTreeSet<&str> = requests.iter().map(|r| r.kind).collect();
        assert_eq!(kinds.len(), 6, "{kinds:?}");
        assert!(requests.iter().all(|r| r.plan == Plan::Reject));
        assert!(kinds.contains("token id outside the vocabulary") && kinds.contains("bad JSON"));
    }

    #[test]
    fn valid_requests_are_json_with_parameters_in_range() {
        for request in Generator::new(1, "m", MIX).draw(500) {
            if request.plan == Plan::Reject {
                continue;
            }
            let body: Value = serde_json::from_slice(&request.body).unwrap();
            let max_tokens = body["max_tokens"].as_u64().unwrap();
            assert!((1..=16).contains(&max_tokens), "{body}");
            assert!((1..=2).contains(&body["n"].as_u64().unwrap()), "{body}");
            assert!(body["temperature"].as_f64().is_some_and(|t| (0.0..1.5).contains(&t)), "{body}");
            assert!(body.get("messages").is_some() != body.get("prompt").is_some(), "{body}");
        }
    }
}
