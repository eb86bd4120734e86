//! `POST /v1/chat/completions` and `POST /v1/completions`: parse and
//! validate into a `GenerateRequest`, submit it, shape the answer (one
//! JSON document, or server-sent events with `stream`). The shapes live in
//! `openai`, the parameter mapping and the response building in
//! `generation` and `sse`.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::engine::constraint::{Constraint, OutputConstraint};
use crate::engine::request::GenerateRequest;
use crate::text::ChatTemplate;
use crate::text::tool_calls::{TemplateTools, ToolCallFormat};

use super::super::body::Response;
use super::super::error::ApiError;
use super::super::generation::{Api, Choice, Prompt, ResponseMeta, collect, submit_error};
use super::super::json;
use super::super::openai::{CompletionRequest, chat_messages};
use super::super::sse::sse_response;
use super::super::state::{AppState, ServedModel};
use super::super::tools::ToolRequest;

pub async fn chat(state: &Arc<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let arrived = Instant::now();
    let mut request: CompletionRequest = json::parse(&body)?;
    let model = state.model()?;
    let name = model_name(model, &request)?;
    let messages =
        request.messages.take().ok_or_else(|| ApiError::invalid("`messages` is required", "messages"))?;
    let messages = chat_messages(&messages)?;
    let params = request.sampling_params(Api::Chat)?;
    let template = model
        .chat_template
        .clone()
        .ok_or_else(|| ApiError::invalid("this model has no chat template", "messages"))?;
    let tools = ToolRequest::parse(
        request.tools.as_deref(),
        request.tool_choice.as_ref(),
        request.parallel_tool_calls,
    )?;
    let (output_constraint, tool_format) = chat_constraint(&request, &template, tools.as_ref())?;
    let constraint = compile(model, output_constraint).await?;
    let definitions = tools.map(|t| t.definitions).unwrap_or_default();
    // On the blocking pool: a long chat may spend its whole fuel budget
    // (text/template_limits.rs), which must not stall the accept loop.
    // Hitting a limit is the request's 400 ("chat template: stopped ...").
    let text = tokio::task::spawn_blocking(move || template.render_chat(&messages, &definitions, true))
        .await
        .map_err(|e| ApiError::Internal(format!("chat template task failed: {e}")))?
        .map_err(|e| ApiError::invalid(e.to_string(), "messages"))?;
    // The template writes any special tokens the model expects.
    let prompt = encode(model, text, false).await?;
    let generate = GenerateRequest { constraint, ..GenerateRequest::new(prompt, params) };
    let inputs = vec![Input { request: generate, echo: String::new(), token_param: None }];
    run(model, Api::Chat, name, inputs, &request, arrived, tool_format).await
}

pub async fn completion(state: &Arc<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let arrived = Instant::now();
    let mut request: CompletionRequest = json::parse(&body)?;
    let model = state.model()?;
    let name = model_name(model, &request)?;
    let prompts = request.prompt.take().ok_or_else(|| ApiError::invalid("`prompt` is required", "prompt"))?;
    let params = request.sampling_params(Api::Completion)?;
    if request.tools.is_some() || request.tool_choice.is_some() {
        return Err(ApiError::invalid("tools are called through /v1/chat/completions", "tools"));
    }
    let constraint = compile(model, request.output_constraint()?).await?;
    let mut inputs = Vec::new();
    let prompts = prompts.prompts()?;
    let num_prompts = prompts.len();
    for (index, prompt) in prompts.into_iter().enumerate() {
        let param = if num_prompts == 1 { "prompt".to_string() } else { format!("prompt[{index}]") };
        let (prompt, echo, token_param) = match prompt {
            Prompt::Text(text) => {
                let echo = if request.echo { text.clone() } else { String::new() };
                (encode(model, text, true).await?, echo, None)
            }
            Prompt::Tokens(tokens) => {
                let echo = if request.echo {
                    model
                        .tokenizer
                        .decode(&tokens, false)
                        .map_err(|e| ApiError::invalid(e.to_string(), param.as_str()))?
                } else {
                    String::new()
                };
                (tokens, echo, Some(param))
            }
        };
        let generate = GenerateRequest {
            constraint: constraint.clone(),
            ..GenerateRequest::new(prompt, params.clone())
        };
        inputs.push(Input { request: generate, echo, token_param });
    }
    run(model, Api::Completion, name, inputs, &request, arrived, None).await
}

/// The name to report: the one asked for (404 if unknown), or the first.
fn model_name(model: &ServedModel, request: &CompletionRequest) -> Result<String, ApiError> {
    match &request.model {
        Some(name) => {
            model.check_name(name)?;
            Ok(name.clone())
        }
        None => Ok(model.names[0].clone()),
    }
}

/// A constraint and the request field that asks for it (named in errors).
type FieldConstraint = (OutputConstraint, String);

/// What a chat request's output is held to, with the field that asks,
/// and the form its tool calls are read in: the calls of its tools (unless
/// `tool_choice` is `none`) or its `response_format`, not both.
fn chat_constraint(
    request: &CompletionRequest,
    template: &ChatTemplate,
    tools: Option<&ToolRequest>,
) -> Result<(Option<FieldConstraint>, Option<ToolCallFormat>), ApiError> {
    let requested = request.output_constraint()?;
    let Some(tools) = tools.filter(|t| t.calls_allowed()) else { return Ok((requested, None)) };
    if let Some((_, param)) = requested {
        return Err(ApiError::invalid(
            format!("`{param}` cannot be combined with tool calls (`tool_choice: \"none\"` allows it)"),
            param,
        ));
    }
    let format = match template.tools() {
        TemplateTools::Unsupported(why) => return Err(ApiError::invalid(why, "tools")),
        support => support.format(),
    };
    let constraint = format.and_then(|format| tools.constraint(format)).map(|c| (c, "tools".to_string()));
    Ok((constraint, format))
}

/// The request's output constraint compiled for this model, on the blocking
/// pool (a large schema takes a while); a 400 naming the field when it
/// does not compile or the model cannot carry one.
async fn compile(
    model: &ServedModel,
    constraint: Option<FieldConstraint>,
) -> Result<Option<Constraint>, ApiError> {
    let Some((constraint, param)) = constraint else { return Ok(None) };
    let compiler = model.grammar.clone().map_err(|why| ApiError::invalid(why, param.as_str()))?;
    tokio::task::spawn_blocking(move || compiler.compile(&constraint))
        .await
        .map_err(|e| ApiError::Internal(format!("grammar task failed: {e}")))?
        .map(Some)
        .map_err(|why| ApiError::invalid(format!("`{param}` does not compile: {why}"), param.as_str()))
}

/// Tokenizes on the blocking pool: a 4 MiB prompt must not stall the accept loop.
async fn encode(model: &ServedModel, text: String, add_special: bool) -> Result<Vec<u32>, ApiError> {
    let tokenizer = model.tokenizer.clone();
    tokio::task::spawn_blocking(move || tokenizer.encode(&text, add_special))
        .await
        .map_err(|e| ApiError::Internal(format!("tokenizer task failed: {e}")))?
        .map_err(|e| ApiError::invalid(e.to_string(), "prompt"))
}

/// One prompt of a request: what to generate from, the text shown before
/// the completion (legacy `echo`), and the field its token ids came from
/// (`None` when the tokenizer made them).
struct Input {
    request: GenerateRequest,
    echo: String,
    token_param: Option<String>,
}

/// Submits `n` choices of each input and answers; choice
/// `index` is `prompt * n + choice`, as OpenAI numbers them.
async fn run(
    model: &ServedModel,
    api: Api,
    name: String,
    inputs: Vec<Input>,
    request: &CompletionRequest,
    arrived: Instant,
    tool_format: Option<ToolCallFormat>,
) -> Result<Response, ApiError> {
    let n = request.num_choices()?;
    let logprobs = inputs[0].request.params.logprobs.then(|| model.tokenizer.clone());
    // One engine request per choice; the later choices of a prompt take
    // over the first one's prompt KV blocks once it has computed them. A
    // given seed is offset per choice, or the choices would all be the
    // same. An error drops the streams so far, which aborts them.
    let mut choices: Vec<Choice> = Vec::with_capacity(n * inputs.len());
    for Input { request: generate, echo, token_param } in &inputs {
        let first = choices.len();
        for i in 0..n {
            let mut one = generate.clone();
            one.params.seed = generate.params.seed.map(|seed| seed.wrapping_add(i as u64));
            one.shares_prompt_with = (i > 0).then(|| choices[first].stream.id());
            let stream = model.engine.submit(one).map_err(|e| submit_error(e, token_param.as_deref()))?;
            let latency = model.metrics.requests().track(arrived);
            choices.push(Choice { stream, echo: echo.clone(), counts_prompt: i == 0, latency });
        }
    }
    let meta = ResponseMeta { tool_format, ..ResponseMeta::new(api, choices[0].stream.id(), name, logprobs) };
    if request.stream {
        Ok(sse_response(choices, meta, request.include_usage()))
    } else {
        collect(choices, meta).await
    }
}
