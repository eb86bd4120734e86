// The server's OpenAI-compatible API as the page uses it: the model list
// and streamed chat completions. Every failure becomes an ApiError whose
// kind tells the page what to offer (retry, ask for a key, fix settings).

export class ApiError extends Error {
  /**
   * kind: 'network' (no answer), 'auth' (401), 'request' (4xx: the
   * request was refused), 'unavailable' (503: loading or stopped),
   * 'server' (5xx, or an error event in the middle of a stream).
   */
  constructor(kind, title, message, status = null) {
    super(message);
    this.kind = kind;
    this.title = title;
    this.status = status;
  }
}

async function request(path, { apiKey, body, signal } = {}) {
  const headers = {};
  if (apiKey) headers.Authorization = `Bearer ${apiKey}`;
  if (body) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(path, {
      method: body ? 'POST' : 'GET',
      headers,
      body: body ? JSON.stringify(body) : undefined,
      signal,
      cache: 'no-store',
    });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError('network', 'Cannot reach the server',
      `No answer from ${location.origin}. Is wgserve still running?`);
  }
  if (!response.ok) throw await errorOf(response, Boolean(apiKey));
  return response;
}

/** The server's OpenAI error object, as an ApiError for its status. */
async function errorOf(response, sentKey) {
  const status = response.status;
  let message = '';
  try {
    const text = await response.text();
    try {
      message = JSON.parse(text)?.error?.message ?? text;
    } catch {
      message = text;
    }
  } catch {
    // The body broke off; the status still says what happened.
  }
  message = message || response.statusText || `HTTP ${status}`;
  if (status === 401) {
    return new ApiError('auth', sentKey ? 'The server refused this API key' : 'This server needs an API key',
      'Enter the key the server was started with (--api-key) in Settings.', status);
  }
  if (status === 503) return new ApiError('unavailable', 'The server is not ready', message, status);
  if (status >= 400 && status < 500) {
    return new ApiError('request', `The server refused the request (${status})`, message, status);
  }
  return new ApiError('server', `Server error (${status})`, message, status);
}

/** [{id, max_model_len}] of the chat models from GET /v1/models (not the embedding model). */
export async function listModels(apiKey) {
  const response = await request('/v1/models', { apiKey });
  const body = await response.json();
  return (body.data ?? [])
    .filter((m) => m.task !== 'embed')
    .map((m) => ({ id: m.id, maxModelLen: m.max_model_len ?? null }));
}

/**
 * A stored message as the API takes it: an answer's tool calls go back as
 * its `tool_calls` (content may then be null), so the model sees them.
 */
export function wireMessage({ role, content, toolCalls }) {
  if (!toolCalls?.length) return { role, content };
  return { role, content: content || null, tool_calls: toolCalls };
}

/**
 * Folds one chunk's `delta.tool_calls` into `calls`, whole calls in
 * OpenAI's shape: a call's first delta brings its id and name, later
 * deltas with the same index pieces of its arguments to append.
 */
export function mergeToolCallDeltas(calls, deltas) {
  for (const delta of deltas) {
    const index = Number.isInteger(delta.index) ? delta.index : calls.length;
    calls[index] ??= { id: '', type: 'function', function: { name: '', arguments: '' } };
    const call = calls[index];
    if (delta.id) call.id = delta.id;
    if (delta.type) call.type = delta.type;
    if (delta.function?.name) call.function.name = delta.function.name;
    if (delta.function?.arguments) call.function.arguments += delta.function.arguments;
  }
  return calls;
}

/**
 * POST /v1/chat/completions with `stream: true`: calls onDelta(text) for
 * each piece of the answer as it arrives, and onToolCalls(calls) with the
 * tool calls so far each time a piece of one arrives; resolves to
 * {finishReason, usage} at `data: [DONE]`. Aborting `signal` closes the
 * connection, which makes the server abort the request.
 */
export async function streamChat({ apiKey, body, signal, onDelta, onToolCalls }) {
  const response = await request('/v1/chat/completions', {
    apiKey,
    signal,
    body: { ...body, stream: true, stream_options: { include_usage: true } },
  });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let finishReason = null;
  let usage = null;
  const toolCalls = [];
  for (;;) {
    let chunk;
    try {
      chunk = await reader.read();
    } catch (e) {
      if (e.name === 'AbortError') throw e;
      throw new ApiError('network', 'The answer broke off', 'The connection to the server was lost.');
    }
    if (chunk.done) break;
    buffer += chunk.value;
    // Server-sent events end with a blank line; the last piece may be partial.
    const events = buffer.split(/\r?\n\r?\n/);
    buffer = events.pop();
    for (const event of events) {
      const data = event
        .split(/\r?\n/)
        .filter((line) => line.startsWith('data:'))
        .map((line) => line.slice(5).trimStart())
        .join('\n');
      if (!data) continue;
      if (data === '[DONE]') return { finishReason, usage };
      const message = JSON.parse(data);
      if (message.error) {
        throw new ApiError('server', 'The server failed while answering', message.error.message ?? 'unknown error');
      }
      if (message.usage) usage = message.usage;
      for (const choice of message.choices ?? []) {
        if (choice.delta?.content) onDelta(choice.delta.content);
        if (Array.isArray(choice.delta?.tool_calls)) {
          mergeToolCallDeltas(toolCalls, choice.delta.tool_calls);
          onToolCalls(toolCalls.filter(Boolean)); // no holes, should indexes skip
        }
        if (choice.finish_reason) finishReason = choice.finish_reason;
      }
    }
  }
  throw new ApiError('network', 'The answer broke off', 'The server closed the stream before it finished.');
}
