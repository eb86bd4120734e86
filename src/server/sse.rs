//! The streamed form of a completion response: a server-sent-event body
//! that owns its choices' request streams (hyper dropping the body for a
//! gone client drops the streams, which aborts the requests in the engine).
//! This file is the framing and the order of events; the chunks' shapes
//! are `openai::response`, filled by `ResponseMeta`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Frame;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use serde::Serialize;
use serde_json::json;

use crate::engine::request::{FinishReason, RequestError, RequestOutput, TokenOutput, Usage};
use crate::engine::worker::RequestStream;
use crate::text::tool_calls::{ToolCallEvent, ToolCallReader};

use super::body::Response;
use super::error::ApiError;
use super::generation::{Api, Choice, ResponseMeta, add_usage, finish_error, finish_with_calls};
use super::metrics::LatencyTracker;
use super::openai::response::{
    self, ChatLogprobs, ChunkChoice, Delta, FunctionCallDelta, StreamError, StreamUsage, TextChoice,
    ToolCallDelta,
};

/// A server-sent-event response that owns the choices' request streams.
pub fn sse_response(choices: Vec<Choice>, meta: ResponseMeta, include_usage: bool) -> Response {
    let n = choices.len();
    let counts_prompt = choices.iter().map(|c| c.counts_prompt).collect();
    let mut echoes = Vec::with_capacity(n);
    let mut streams = Vec::with_capacity(n);
    let mut latencies = Vec::with_capacity(n);
    for choice in choices {
        echoes.push(choice.echo);
        streams.push(Some(choice.stream));
        latencies.push(choice.latency);
    }
    let readers = vec![meta.tool_format.map(ToolCallReader::new); n];
    let mut body = SseBody {
        readers,
        streams,
        latencies,
        counts_prompt,
        meta,
        include_usage,
        queue: VecDeque::new(),
        done: false,
        text_offsets: vec![0; n],
        usage: Usage::default(),
    };
    for (index, echo) in echoes.iter().enumerate() {
        match body.meta.api {
            Api::Chat => body.push_delta(index, Delta::start(), None, None),
            Api::Completion if !echo.is_empty() => body.push_text(index, echo, None, None),
            Api::Completion => {}
        }
    }
    let mut response = hyper::Response::new(body.boxed());
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

struct SseBody {
    /// One per choice; `None` once its final output has been read.
    streams: Vec<Option<RequestStream>>,
    latencies: Vec<LatencyTracker>,
    counts_prompt: Vec<bool>,
    meta: ResponseMeta,
    include_usage: bool,
    /// Events ready to send.
    queue: VecDeque<Bytes>,
    done: bool,
    /// Bytes of text sent so far per choice (legacy logprobs' `text_offset`).
    text_offsets: Vec<usize>,
    usage: Usage,
    /// Per choice, when the request may call tools: what reads the calls
    /// out of the text as it comes.
    readers: Vec<Option<ToolCallReader>>,
}

impl SseBody {
    fn push_event(&mut self, value: &impl Serialize) {
        let json = serde_json::to_string(value).unwrap_or_else(|e| {
            json!({"error": {"message": format!("cannot encode a chunk: {e}"), "type": "server_error"}})
                .to_string()
        });
        self.queue.push_back(Bytes::from(format!("data: {json}\n\n")));
    }

    /// `null` on each chunk before the last if the client asked for usage.
    fn pending_usage(&self) -> Option<StreamUsage> {
        self.include_usage.then_some(StreamUsage::Pending)
    }

    fn push_delta(
        &mut self,
        index: usize,
        delta: Delta,
        logprobs: Option<ChatLogprobs>,
        finish: Option<FinishReason>,
    ) {
        let finish_reason = finish.map(FinishReason::as_str);
        let choice = ChunkChoice { index, delta, logprobs, finish_reason };
        let chunk = self.meta.chat_chunk(vec![choice], self.pending_usage());
        self.push_event(&chunk);
    }

    /// More text of choice `index`; `token` is the one it completes, if
    /// its logprobs are to be shown.
    fn push_text(
        &mut self,
        index: usize,
        text: &str,
        token: Option<&TokenOutput>,
        finish: Option<FinishReason>,
    ) {
        let text_offset = self.text_offsets[index];
        self.text_offsets[index] += text.len();
        let tokens = token.map(std::slice::from_ref);
        match self.meta.api {
            Api::Chat => {
                let logprobs = tokens.and_then(|tokens| self.meta.chat_logprobs(tokens));
                self.push_delta(index, Delta::content(text), logprobs, finish);
            }
            Api::Completion => {
                let logprobs = tokens.and_then(|tokens| self.meta.text_logprobs(tokens, text_offset));
                let finish_reason = finish.map(FinishReason::as_str);
                let choice = TextChoice { index, text: text.to_string(), logprobs, finish_reason };
                let chunk = self.meta.text_completion(vec![choice], self.pending_usage());
                self.push_event(&chunk);
            }
        }
    }

    /// One token: a content chunk when it completes text, or always when
    /// the client asked for logprobs (each token's own chunk).
    fn push_token(&mut self, index: usize, token: TokenOutput) {
        if let Some(reader) = self.readers[index].as_mut() {
            let events = reader.push(&token.text);
            let logprobs = self.meta.chat_logprobs(std::slice::from_ref(&token));
            self.push_tool_events(index, events, logprobs);
        } else if self.meta.logprobs.is_some() {
            self.push_text(index, &token.text, Some(&token), None);
        } else if !token.text.is_empty() {
            self.push_text(index, &token.text, None, None);
        }
    }

    fn push_finish(
        &mut self,
        index: usize,
        reason: FinishReason,
        usage: Usage,
        tail: String,
        error: Option<RequestError>,
    ) {
        if let Some(e) = finish_error(reason, error) {
            self.push_error(e);
            return;
        }
        let mut finish_reason = reason.as_str();
        if let Some(reader) = self.readers[index].as_mut() {
            let mut events = reader.push(&tail);
            events.extend(reader.finish());
            if reader.calls_started() > 0 {
                finish_reason = finish_with_calls(reason);
            }
            self.push_tool_events(index, events, None);
        } else if !tail.is_empty() {
            self.push_text(index, &tail, None, None);
        }
        match self.meta.api {
            Api::Chat => {
                let choice = ChunkChoice {
                    index,
                    delta: Delta::default(),
                    logprobs: None,
                    finish_reason: Some(finish_reason),
                };
                let chunk = self.meta.chat_chunk(vec![choice], self.pending_usage());
                self.push_event(&chunk);
            }
            Api::Completion => self.push_text(index, "", None, Some(reason)),
        }
        add_usage(&mut self.usage, &usage, self.counts_prompt[index]);
        if self.streams.iter().all(Option::is_none) {
            if self.include_usage {
                let total = StreamUsage::Total(response::Usage::from(&self.usage));
                match self.meta.api {
                    Api::Chat => self.push_event(&self.meta.chat_chunk(vec![], Some(total))),
                    Api::Completion => self.push_event(&self.meta.text_completion(vec![], Some(total))),
                }
            }
            self.finish();
        }
    }

    /// What the tool-call reader found, as deltas: text as `content`, a
    /// call's start with its id, type and name, then its arguments in
    /// fragments (OpenAI's stream). A token's logprobs ride on its first
    /// delta, or on an empty one when it completed nothing yet.
    fn push_tool_events(
        &mut self,
        index: usize,
        events: Vec<ToolCallEvent>,
        mut logprobs: Option<ChatLogprobs>,
    ) {
        for event in events {
            let call = |call: usize, id: Option<String>, name: Option<String>, arguments: String| Delta {
                tool_calls: Some(vec![ToolCallDelta {
                    index: call,
                    kind: id.as_ref().map(|_| "function"),
                    id,
                    function: FunctionCallDelta { name, arguments: Some(arguments) },
                }]),
                ..Delta::default()
            };
            let delta = match event {
                ToolCallEvent::Content(text) => Delta::content(&text),
                ToolCallEvent::CallStart { index: i, name } => {
                    call(i, Some(self.meta.call_id(index, i)), Some(name), String::new())
                }
                ToolCallEvent::Arguments { index: i, fragment } => call(i, None, None, fragment),
            };
            self.push_delta(index, delta, logprobs.take(), None);
        }
        if logprobs.is_some() {
            self.push_delta(index, Delta::content(""), logprobs, None);
        }
    }

    /// An error event, then the end: the other choices are aborted.
    fn push_error(&mut self, e: ApiError) {
        self.push_event(&StreamError::new(e.to_string(), e.status().as_u16()));
        self.finish();
    }

    fn finish(&mut self) {
        self.queue.push_back(Bytes::from_static(b"data: [DONE]\n\n"));
        self.streams.clear();
        self.done = true;
    }
}

impl hyper::body::Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        loop {
            if let Some(bytes) = this.queue.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(bytes))));
            }
            if this.done {
                return Poll::Ready(None);
            }
            // Every open stream is polled, so each has registered the waker
            // before this returns Pending.
            let mut progressed = false;
            for index in 0..this.streams.len() {
                if this.done {
                    break;
                }
                let Some(stream) = this.streams[index].as_mut() else { continue };
                match stream.poll_next(cx) {
                    Poll::Pending => {}
                    Poll::Ready(Some(RequestOutput::Token(token))) => {
                        progressed = true;
                        this.latencies[index].on_token();
                        this.push_token(index, token);
                    }
                    Poll::Ready(Some(RequestOutput::Finished { reason, usage, text, error })) => {
                        progressed = true;
                        this.streams[index] = None;
                        this.latencies[index].on_finish(reason);
                        this.push_finish(index, reason, usage, text, error);
                    }
                    Poll::Ready(None) => {
                        progressed = true;
                        this.push_error(ApiError::Unavailable(
                            "the engine stopped before the request finished".into(),
                        ));
                    }
                }
            }
            if !progressed && this.queue.is_empty() {
                return Poll::Pending;
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.queue.is_empty()
    }
}
