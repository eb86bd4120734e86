// The messages of one conversation as DOM: user text as plain text, model
// answers as (safe) markdown, or as a JSON block when the whole answer is a
// JSON document, then the answer's tool calls as blocks (blocks.js), and
// under each answer its stats line.

import { jsonDocument, renderJson, renderToolCalls } from './blocks.js';
import { renderMarkdown } from './markdown.js';

/** An <li> for `message`; `streaming` marks the answer being generated. */
export function messageElement(message, streaming) {
  const item = document.createElement('li');
  item.className = `message ${message.role}`;
  item.dataset.id = message.id;
  const bubble = document.createElement('div');
  bubble.className = 'bubble';
  const content = document.createElement('div');
  content.className = 'content';
  bubble.append(content);
  item.append(bubble);
  if (message.role === 'assistant') {
    const toolCalls = document.createElement('div');
    toolCalls.className = 'tool-calls';
    bubble.append(toolCalls);
    const meta = document.createElement('div');
    meta.className = 'meta';
    const stats = document.createElement('span');
    stats.className = 'stats';
    const copy = document.createElement('button');
    copy.type = 'button';
    copy.className = 'copy-message';
    copy.textContent = 'Copy';
    meta.append(stats, copy);
    item.append(meta);
  }
  updateMessageElement(item, message, streaming);
  return item;
}

/** Brings an element made by messageElement up to date with `message`. */
export function updateMessageElement(item, message, streaming) {
  const content = item.querySelector('.content');
  if (message.role === 'assistant') {
    const toolCalls = message.toolCalls ?? [];
    const json = jsonDocument(message.content);
    if (json) renderJson(message.id, json, content);
    else renderMarkdown(message.content, content);
    // An answer that is only tool calls has no text to show (nor a caret).
    content.hidden = message.content === '' && toolCalls.length > 0;
    renderToolCalls(message.id, toolCalls, item.querySelector('.tool-calls'));
    item.classList.toggle('streaming', streaming);
    item.setAttribute('aria-busy', String(streaming)); // no reading of every partial render
    item.classList.toggle('waiting', streaming && message.content === '' && toolCalls.length === 0);
    item.dataset.status = streaming ? 'streaming' : message.status ?? 'done';
    item.querySelector('.stats').textContent = streaming ? 'generating…' : statsText(message);
  } else {
    content.textContent = message.content;
  }
}

/** "42 tokens · 19.7 tok/s · first token 0.41 s · prompt 31 tokens · stopped" */
export function statsText(message) {
  const parts = [];
  const stats = message.stats;
  if (stats) {
    const approx = stats.counted ? '' : '~';
    parts.push(`${approx}${stats.completionTokens} token${stats.completionTokens === 1 ? '' : 's'}`);
    if (stats.tokensPerSecond !== null) parts.push(`${stats.tokensPerSecond.toFixed(1)} tok/s`);
    if (stats.firstTokenSeconds !== null) parts.push(`first token ${stats.firstTokenSeconds.toFixed(2)} s`);
    if (stats.promptTokens !== null) parts.push(`prompt ${stats.promptTokens} tokens`);
  }
  if (message.status === 'stopped') parts.push('stopped');
  if (message.status === 'length') parts.push('cut at max tokens');
  if (message.status === 'error') parts.push(`failed: ${message.error ?? 'error'}`);
  return parts.join(' · ');
}

/**
 * Stats of one answer from the client's clock (ms from performance.now())
 * and the server's usage, when it sent one (not after a Stop). Tokens/s is
 * the decode rate: the tokens after the first over the time after the first.
 */
export function answerStats({ startedAt, firstTokenAt, endedAt, pieces, usage }) {
  const completionTokens = usage?.completion_tokens ?? pieces;
  const decodeSeconds = firstTokenAt === null ? 0 : (endedAt - firstTokenAt) / 1000;
  return {
    completionTokens,
    counted: Boolean(usage),
    promptTokens: usage?.prompt_tokens ?? null,
    firstTokenSeconds: firstTokenAt === null ? null : (firstTokenAt - startedAt) / 1000,
    tokensPerSecond: completionTokens > 1 && decodeSeconds > 0 ? (completionTokens - 1) / decodeSeconds : null,
  };
}
