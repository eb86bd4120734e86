// Structured model output as collapsible blocks: an answer whose whole
// content is a JSON object or array (response_format json_object or
// json_schema), and the tool calls of an answer. Each is a <details>
// (keyboard-operable as it is) whose summary says what it holds and whose
// body is the JSON pretty-printed, as text only: nothing here parses markup.
//
// Blocks start closed. The streaming answer is re-rendered every frame and
// the thread on every change, so which blocks a reader opened is kept here,
// by message and block, for as long as the page lives.

const openBlocks = new Set();

/** The parsed document when all of `text` is a JSON object or array, else null. */
export function jsonDocument(text) {
  const trimmed = text.trim();
  if (!/^[[{]/.test(trimmed)) return null;
  try {
    const value = JSON.parse(trimmed);
    return value !== null && typeof value === 'object' ? value : null;
  } catch {
    return null;
  }
}

/** "JSON · 3 keys", "JSON · 1 item". */
export function jsonSummary(value) {
  const [count, noun] = Array.isArray(value) ? [value.length, 'item'] : [Object.keys(value).length, 'key'];
  return `JSON · ${count} ${noun}${count === 1 ? '' : 's'}`;
}

/** `text` pretty-printed when it parses as JSON, else null (arguments mid-stream, say). */
export function prettyJson(text) {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return null;
  }
}

/** A closed (or reopened) <details> with `summary` over a code block of `body` in `language`. */
function block(key, className, summary, body, language) {
  const details = document.createElement('details');
  details.className = `block ${className}`;
  details.dataset.key = key;
  details.open = openBlocks.has(key);
  details.addEventListener('toggle', () => {
    if (details.open) openBlocks.add(key);
    else openBlocks.delete(key);
  });
  const title = document.createElement('summary');
  details.append(title);
  // The same code block markdown makes, so its Copy button works here too.
  const code = document.createElement('div');
  code.className = 'code-block';
  const bar = document.createElement('div');
  bar.className = 'code-bar';
  const label = document.createElement('span');
  const copy = document.createElement('button');
  copy.type = 'button';
  copy.className = 'copy-code';
  copy.textContent = 'Copy';
  bar.append(label, copy);
  const pre = document.createElement('pre');
  pre.append(document.createElement('code'));
  code.append(bar, pre);
  details.append(code);
  updateBlock(details, summary, body, language);
  return details;
}

function updateBlock(details, summary, body, language) {
  details.querySelector('summary').textContent = summary;
  details.querySelector('.code-bar span').textContent = language;
  const code = details.querySelector('code');
  if (code.textContent !== body) code.textContent = body;
}

/** Renders a JSON answer into `target`, replacing its children. */
export function renderJson(messageId, value, target) {
  target.replaceChildren(block(`${messageId}:json`, 'json-answer', jsonSummary(value), JSON.stringify(value, null, 2), 'json'));
}

/**
 * Brings `target` up to date with `calls` (OpenAI's tool_calls), one block
 * per call. Blocks already there are updated in place, so that a streaming
 * call keeps its open state and focus while its arguments grow.
 */
export function renderToolCalls(messageId, calls, target) {
  calls.forEach((call, i) => {
    const summary = `Tool call: ${call.function?.name || 'unnamed'}`;
    const text = call.function?.arguments ?? '';
    const pretty = prettyJson(text);
    const [body, language] = pretty === null ? [text, 'text'] : [pretty, 'json'];
    const key = `${messageId}:call:${i}`;
    const existing = target.children[i];
    if (existing?.dataset.key === key) updateBlock(existing, summary, body, language);
    else if (existing) existing.replaceWith(block(key, 'tool-call', summary, body, language));
    else target.append(block(key, 'tool-call', summary, body, language));
  });
  while (target.children.length > calls.length) target.lastElementChild.remove();
}
