// The chat page in a real browser: Debian's headless Chromium driven by
// playwright-core against a running wgserve (started by tests/web_ui.rs,
// which passes its URL). Every wait is for a condition, with a deadline.
//
//   node tests/web/ui.test.mjs URL
//   env: WGSERVE_API_KEY (the server's --api-key), SCREENSHOT_DIR,
//        CHROMIUM (default /usr/bin/chromium)
//
// Prints one `ok - STEP` line per step; exits 1 at the first failure,
// after a screenshot of the page as it was (web-ui-failure.png).

import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { chromium } from 'playwright-core';
// The page's own parser, so it is also checked against the real exposition.
import { parseMetrics, total } from '../../web/metrics.js';
import { jsonSummary, prettyJson } from '../../web/blocks.js';
import { mergeToolCallDeltas, wireMessage } from '../../web/api.js';

const url = process.argv[2]?.replace(/\/$/, '');
const apiKey = process.env.WGSERVE_API_KEY ?? '';
const shotDir = process.env.SCREENSHOT_DIR ?? '.';
const executablePath = process.env.CHROMIUM ?? '/usr/bin/chromium';
assert.ok(url, 'usage: node tests/web/ui.test.mjs URL');

// lavapipe is slow (about 20 tokens/s here): generous, but bounded.
const ANSWER_DEADLINE = 120_000;
const watchdog = setTimeout(() => {
  console.log('not ok - the browser test did not finish within 8 minutes');
  process.exit(1);
}, 8 * 60_000);

// A failure screenshot from an earlier run would mislead.
await rm(path.join(shotDir, 'web-ui-failure.png'), { force: true });

const browser = await chromium.launch({
  executablePath,
  // As root Chromium needs --no-sandbox; the rest keep it off the network
  // (this machine has none beyond loopback) and quick to start.
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 860 }, reducedMotion: 'reduce' });
const page = await context.newPage();
page.setDefaultTimeout(30_000);
const pageErrors = [];
page.on('pageerror', (error) => pageErrors.push(error.message));

const $ = (selector) => page.locator(selector);
const answer = $('#thread .message.assistant').last();

async function metrics() {
  const response = await fetch(`${url}/metrics`);
  assert.equal(response.status, 200);
  return parseMetrics(await response.text());
}

/** Polls `check` every 100 ms until it returns a truthy value; fails after `ms`. */
async function eventually(what, ms, check) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    assert.ok(Date.now() < deadline, `not within ${ms / 1000} s: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function openSettings() {
  await $('#open-settings').click();
  await $('#settings[open]').waitFor();
}

/** Sets settings fields (range inputs included) as a user would, then closes. */
async function setSettings(values) {
  await openSettings();
  await page.evaluate((values) => {
    for (const [id, value] of Object.entries(values)) {
      const field = document.getElementById(id);
      field.value = String(value);
      field.dispatchEvent(new Event('input', { bubbles: true }));
    }
  }, values);
  await $('#settings-done').click();
  await $('#settings').waitFor({ state: 'hidden' });
}

async function sendMessage(text) {
  await $('#input').fill(text);
  await $('#input').press('Enter');
}

async function waitForAnswerEnd() {
  await page.waitForSelector('#thread .message.assistant:not(.streaming)', { timeout: ANSWER_DEADLINE });
  await $('#send').waitFor();
}

/**
 * The body of a streamed answer as the server sends it: a chunk with the
 * role, one chunk per delta, one with the finish reason, the usage, [DONE].
 */
function cannedStream(deltas, { finishReason = 'stop', usage }) {
  const chunk = (choices, extra = {}) => `data: ${JSON.stringify({
    id: 'chatcmpl-canned', object: 'chat.completion.chunk', created: 0, model: 'smol', choices, ...extra })}\n\n`;
  return [{ role: 'assistant', content: '' }, ...deltas]
    .map((delta) => chunk([{ index: 0, delta, finish_reason: null }])).join('')
    + chunk([{ index: 0, delta: {}, finish_reason: finishReason }])
    + chunk([], { usage })
    + 'data: [DONE]\n\n';
}

/** Answers the next chat request with `body`; resolves to the request's JSON. */
async function answerNextWith(body) {
  let sent;
  await page.route('**/v1/chat/completions', (route) => {
    sent = route.request().postDataJSON();
    return route.fulfill({ status: 200, headers: { 'content-type': 'text/event-stream' }, body });
  }, { times: 1 });
  return () => sent;
}

async function shot(name) {
  const file = path.join(shotDir, name);
  await page.screenshot({ path: file });
  console.log(`  screenshot: ${file}`);
}

const steps = [];
const step = (name, run) => steps.push({ name, run });

// --- the steps ----------------------------------------------------------------

let firstAnswer = '';

step('the page loads, asks for the API key on a 401, and lists the models once given', async () => {
  const response = await page.goto(url);
  assert.equal(response.status(), 200);
  assert.match(response.headers()['content-security-policy'], /default-src 'self'/);
  await $('#banner').waitFor();
  assert.match(await $('#banner-title').textContent(), /needs an API key/);
  await $('#banner-action').click();
  await $('#settings[open]').waitFor();
  assert.equal(await page.evaluate(() => document.activeElement.id), 'setting-api-key');
  await $('#setting-api-key').fill(apiKey);
  await $('#settings-done').click();
  await page.waitForFunction(() => document.getElementById('model-name').textContent === 'smol');
  await $('#banner').waitFor({ state: 'hidden' });
  assert.deepEqual(await $('#setting-model option').allTextContents(), ['smol']);
});

step('the metrics strip shows the server state from /metrics', async () => {
  await page.waitForFunction(() => document.getElementById('metrics').dataset.state === 'ready');
  assert.equal(await $('#metric-running .value').textContent(), '0');
  assert.equal(await $('#metric-waiting .value').textContent(), '0');
  assert.match(await $('#metric-kv .value').textContent(), /^0 \/ \d+$/, 'KV blocks used / total');
});

step('Shift+Enter adds a line, Enter sends, and the answer streams in', async () => {
  await setSettings({ 'setting-max-tokens': 48, 'setting-temperature': 0 });
  await $('#input').click();
  await page.keyboard.type('Name three fruits');
  await page.keyboard.press('Shift+Enter');
  await page.keyboard.type('as a markdown list.');
  assert.equal(await $('#input').inputValue(), 'Name three fruits\nas a markdown list.');
  assert.equal(await $('#thread .message').count(), 0, 'Shift+Enter must not send');
  // Record the length of the answer at each change of the page, to see it grow.
  await page.evaluate(() => {
    window.answerLengths = [];
    new MutationObserver(() => {
      const content = document.querySelector('#thread .message.assistant.streaming .content');
      if (content) window.answerLengths.push(content.textContent.length);
    }).observe(document.getElementById('thread'), { subtree: true, childList: true, characterData: true });
  });
  await page.keyboard.press('Enter');
  await $('#thread .message.assistant.streaming').waitFor();
  assert.equal(await $('#stop').isVisible(), true, 'Stop is offered while streaming');
  await waitForAnswerEnd();

  const lengths = [...new Set(await page.evaluate(() => window.answerLengths))].filter((n) => n > 0);
  assert.ok(lengths.length >= 3, `the answer came in one piece, not streamed: lengths ${lengths}`);
  assert.deepEqual(lengths, [...lengths].sort((a, b) => a - b), 'the streamed answer only grows');
  assert.equal(await $('#thread .message.user .content').textContent(), 'Name three fruits\nas a markdown list.');
  firstAnswer = await answer.locator('.content').textContent();
  assert.ok(firstAnswer.trim().length > 0, 'an empty answer');
  const stats = await answer.locator('.stats').textContent();
  assert.match(stats, /^\d+ tokens · [\d.]+ tok\/s · first token [\d.]+ s · prompt \d+ tokens/);
  assert.match(await answer.getAttribute('data-status'), /^(done|length)$/);
  assert.equal(await $('.conversation.active .conversation-open').textContent(), 'Name three fruits');
  await shot('web-ui.png');
});

step('the conversation survives a reload', async () => {
  const stats = await answer.locator('.stats').textContent();
  await page.reload();
  await $('.conversation.active').waitFor();
  assert.equal(await $('.conversation.active .conversation-open').textContent(), 'Name three fruits');
  assert.equal(await $('#thread .message.user .content').textContent(), 'Name three fruits\nas a markdown list.');
  assert.equal(await answer.locator('.content').textContent(), firstAnswer);
  assert.equal(await answer.locator('.stats').textContent(), stats);
});

step('conversations can be renamed and deleted, and that is kept too', async () => {
  await $('.conversation.active .rename').click();
  await $('.rename-field').fill('Fruit chat');
  await $('.rename-field').press('Enter');
  assert.equal(await $('#title').textContent(), 'Fruit chat');
  await $('#new-chat').click();
  assert.equal(await $('.conversation').count(), 2);
  page.once('dialog', (dialog) => dialog.accept());
  await $('.conversation.active .delete').click();
  assert.equal(await $('.conversation').count(), 1);
  await page.reload();
  await $('.conversation').first().waitFor();
  assert.deepEqual(await $('.conversation .conversation-open').allTextContents(), ['Fruit chat']);
});

step('errors are shown: the server refusing a request (400) and an unreachable server', async () => {
  await $('#new-chat').click();
  await setSettings({ 'setting-max-tokens': 100000 });
  await sendMessage('Hello');
  await $('#banner').waitFor();
  assert.match(await $('#banner-title').textContent(), /refused the request \(400\)/);
  assert.match(await $('#banner-message').textContent(), /100000/, 'the server\'s own message, with the numbers');
  assert.equal(await $('#thread .message.assistant').count(), 0, 'no empty answer left behind');
  // The test server's KV cache (64 MiB, 91 blocks) holds 1456 tokens.
  await setSettings({ 'setting-max-tokens': 1200 }); // temperature stays 0: the same long story every run

  // The server going away, simulated for one request (the real one must
  // keep serving the other steps).
  await page.route('**/v1/chat/completions', (route) => route.abort('connectionrefused'), { times: 1 });
  await sendMessage('Hello again');
  await page.waitForFunction(() => /Cannot reach the server/.test(document.getElementById('banner-title').textContent));
  assert.equal(await $('#banner-action').textContent(), 'Retry');
  await page.unrouteAll();
});

step('Stop aborts a long answer, and /metrics shows the server aborted it', async () => {
  await $('#new-chat').click();
  // Absent until the first request ends so: then 0.
  const aborted = (samples) => total(samples, 'vllm:request_success_total', { finished_reason: 'abort' }) ?? 0;
  const abortedBefore = aborted(await metrics());
  await sendMessage('Write a very long story about a dragon and a knight, in many chapters.');
  await page.waitForFunction(() => {
    const content = document.querySelector('#thread .message.assistant.streaming .content');
    return content?.textContent.length > 40 || !document.getElementById('banner').hidden;
  }, null, { timeout: ANSWER_DEADLINE });
  assert.equal(await $('#banner').isVisible(), false, `an error: ${await $('#banner').textContent()}`);
  // The live strip sees the request running.
  await page.waitForFunction(() => document.querySelector('#metric-running .value').textContent === '1',
    null, { timeout: 15_000 });
  const stoppedAt = Date.now();
  await $('#stop').click();
  await $('#thread .message.assistant[data-status="stopped"]').waitFor();
  assert.match(await answer.locator('.stats').textContent(), /stopped$/);
  assert.equal(await $('#send').isVisible(), true);

  // 1200 tokens at ~20 tokens/s would take about a minute: the server
  // must count the request aborted, and run nothing, within seconds.
  const abortedAfter = await eventually('the server to abort the stopped request', 20_000, async () => {
    const samples = await metrics();
    const idle = total(samples, 'vllm:num_requests_running') === 0;
    return idle && aborted(samples) > abortedBefore ? aborted(samples) : null;
  });
  assert.equal(abortedAfter, abortedBefore + 1);
  console.log(`  server aborted ${((Date.now() - stoppedAt) / 1000).toFixed(1)} s after Stop: `
    + `vllm:request_success_total{finished_reason="abort"} ${abortedBefore} -> ${abortedAfter}`);
  const text = await answer.locator('.content').textContent();
  await page.waitForFunction(() => document.querySelector('#metric-running .value').textContent === '0');
  assert.equal(await answer.locator('.content').textContent(), text, 'text arrived after Stop');
  // By now the server has seen prompts: the strip shows a prefix-cache hit rate.
  assert.match(await $('#metric-prefix .value').textContent(), /^\d+\.\d %$/);
});

step('model output with markup renders as text, markdown as markdown (canned stream)', async () => {
  // This step tests the renderer, not the model: the browser gets a canned
  // stream for this one request, since a 135M model cannot be relied on to
  // write these strings. The markup is split across chunks, as tokens are.
  const pieces = [
    'Markup: <img src=x onerr', 'or="window.pwned=1"> and <script>window.pwned=2</script>\n\n',
    '**bold**, *emphasis* and `inline code`\n\n- first\n- second\n\n',
    '```js\nconsole.log("<b>not bold</b>");\n```\n\n',
    '[a link](javascript:window.pwned=3) and ![a picture](http://127.0.0.1:9/p.png)',
  ];
  await answerNextWith(cannedStream(pieces.map((content) => ({ content })),
    { usage: { prompt_tokens: 12, completion_tokens: 64, total_tokens: 76 } }));
  await $('#new-chat').click();
  await sendMessage('Show me some markup.');
  await waitForAnswerEnd();
  await page.unrouteAll();

  const content = answer.locator('.content');
  const text = await content.textContent();
  assert.ok(text.includes('<img src=x onerror="window.pwned=1">'), `the tag is not shown as text: ${text}`);
  assert.ok(text.includes('<script>window.pwned=2</script>'), `the script is not shown as text: ${text}`);
  assert.equal(await page.locator('#thread img, #thread script').count(), 0, 'markup became elements');
  assert.equal(await page.evaluate(() => window.pwned), undefined, 'model output ran script');
  assert.equal(await content.locator('strong').textContent(), 'bold');
  assert.equal(await content.locator('em').textContent(), 'emphasis');
  assert.deepEqual(await content.locator('li').allTextContents(), ['first', 'second']);
  assert.equal(await content.locator('.code-block .code-bar span').textContent(), 'js');
  assert.equal(await content.locator('.code-block code').textContent(), 'console.log("<b>not bold</b>");\n');
  assert.equal(await content.locator('.code-block b').count(), 0);
  assert.equal(await content.locator('a', { hasText: 'a link' }).getAttribute('href'), null);
  assert.equal(await content.locator('a', { hasText: 'a picture' }).getAttribute('href'), 'http://127.0.0.1:9/p.png');
  assert.match(await answer.locator('.stats').textContent(), /^64 tokens/);
  await shot('web-ui-markdown.png');
});

step('tool calls stream in as closed blocks that open by click or keyboard, and survive a reload', async () => {
  // OpenAI's streamed shape: a call's first delta has its id and name,
  // later ones pieces of its arguments under the same index.
  const args = (index, text) => ({ tool_calls: [{ index, function: { arguments: text } }] });
  const call = (index, id, name, text) =>
    ({ tool_calls: [{ index, id, type: 'function', function: { name, arguments: text } }] });
  await answerNextWith(cannedStream([
    { content: 'Let me look that up.' },
    call(0, 'call_weather', 'get_weather', ''), args(0, '{"city": '), args(0, '"Paris", "unit": "celsius"}'),
    call(1, 'call_time', 'get_time', '{"zone":'), args(1, ' "Europe/Paris"}'),
    call(2, 'call_raw', 'lookup', 'city=Par'), args(2, 'is'),
  ], { finishReason: 'tool_calls', usage: { prompt_tokens: 20, completion_tokens: 30, total_tokens: 50 } }));
  await $('#new-chat').click();
  await sendMessage('What is the weather in Paris?');
  await waitForAnswerEnd();

  const calls = answer.locator('.tool-calls details.tool-call');
  const summaries = ['Tool call: get_weather', 'Tool call: get_time', 'Tool call: lookup'];
  assert.deepEqual(await calls.locator('summary').allTextContents(), summaries);
  assert.deepEqual(await calls.evaluateAll((all) => all.map((d) => d.open)), [false, false, false], 'blocks start closed');
  assert.equal(await calls.first().locator('code').isVisible(), false);
  assert.equal((await answer.locator('.content').textContent()).trim(), 'Let me look that up.');
  assert.equal(await answer.getAttribute('data-status'), 'done');
  assert.match(await answer.locator('.stats').textContent(), /^30 tokens/);

  await calls.first().locator('summary').click();
  assert.equal(await calls.first().locator('code').isVisible(), true, 'a click opens the block');
  assert.equal(await calls.first().locator('code').textContent(), '{\n  "city": "Paris",\n  "unit": "celsius"\n}');
  assert.equal(await calls.first().locator('.code-bar span').textContent(), 'json');
  await calls.nth(1).locator('summary').focus();
  await page.keyboard.press('Enter');
  assert.equal(await calls.nth(1).locator('code').isVisible(), true, 'Enter opens the block');
  assert.equal(await calls.nth(1).locator('code').textContent(), '{\n  "zone": "Europe/Paris"\n}');
  await calls.nth(2).locator('summary').click();
  assert.equal(await calls.nth(2).locator('code').textContent(), 'city=Paris', 'arguments that do not parse, as sent');
  assert.equal(await calls.nth(2).locator('.code-bar span').textContent(), 'text');
  await calls.first().locator('summary').click();
  assert.equal(await calls.first().locator('code').isVisible(), false, 'a second click closes it');
  await shot('web-ui-tools.png');

  await page.reload();
  await answer.waitFor();
  assert.deepEqual(await calls.locator('summary').allTextContents(), summaries);
  assert.equal((await answer.locator('.content').textContent()).trim(), 'Let me look that up.');
});

step('a JSON answer is a closed block summed up by its keys; the tool calls went back with the request', async () => {
  const reply = { city: 'Paris', temperature_c: 18, conditions: ['cloudy', 'light rain'] };
  const text = JSON.stringify(reply);
  const request = await answerNextWith(cannedStream([{ content: text.slice(0, 20) }, { content: text.slice(20) }],
    { usage: { prompt_tokens: 60, completion_tokens: 25, total_tokens: 85 } }));
  await sendMessage('Answer in JSON.');
  await waitForAnswerEnd();

  const block = answer.locator('.content details.json-answer');
  assert.equal(await block.locator('summary').textContent(), 'JSON · 3 keys');
  assert.equal(await block.evaluate((d) => d.open), false);
  assert.equal(await answer.locator('.content p').count(), 0, 'not rendered as markdown');
  await block.locator('summary').focus();
  await page.keyboard.press('Space');
  assert.equal(await block.locator('code').isVisible(), true, 'Space opens the block');
  assert.equal(await block.locator('code').textContent(), JSON.stringify(reply, null, 2));

  // The earlier answer goes back with its calls in OpenAI's shape; the page
  // has no tools of its own to offer.
  const sent = request();
  assert.equal('tools' in sent, false);
  assert.deepEqual(sent.messages.find((m) => m.role === 'assistant'), {
    role: 'assistant',
    content: 'Let me look that up.',
    tool_calls: [
      { id: 'call_weather', type: 'function', function: { name: 'get_weather', arguments: '{"city": "Paris", "unit": "celsius"}' } },
      { id: 'call_time', type: 'function', function: { name: 'get_time', arguments: '{"zone": "Europe/Paris"}' } },
      { id: 'call_raw', type: 'function', function: { name: 'lookup', arguments: 'city=Paris' } },
    ],
  });
  await shot('web-ui-json.png');
});

step('the block helpers: summaries, arguments, deltas folded by index, the wire shape', async () => {
  assert.equal(jsonSummary([1]), 'JSON · 1 item');
  assert.equal(jsonSummary({}), 'JSON · 0 keys');
  assert.equal(prettyJson('{"a":[1]}'), '{\n  "a": [\n    1\n  ]\n}');
  assert.equal(prettyJson('{"a": '), null, 'arguments mid-stream do not parse');
  const calls = mergeToolCallDeltas([], [{ index: 1, id: 'b', type: 'function', function: { name: 'f', arguments: '{' } }]);
  mergeToolCallDeltas(calls, [{ index: 1, function: { arguments: '}' } }, { index: 0, id: 'a', function: { name: 'g' } }]);
  assert.deepEqual(calls.map((c) => [c.id, c.function.name, c.function.arguments]), [['a', 'g', ''], ['b', 'f', '{}']]);
  assert.deepEqual(wireMessage({ role: 'assistant', content: '', toolCalls: calls }),
    { role: 'assistant', content: null, tool_calls: calls });
  assert.deepEqual(wireMessage({ role: 'user', content: 'hi', status: 'done' }), { role: 'user', content: 'hi' });
});

step('at phone width the conversation list is a drawer', async () => {
  await page.setViewportSize({ width: 390, height: 844 });
  const sidebar = $('#sidebar');
  await page.waitForFunction(() => document.getElementById('sidebar').getBoundingClientRect().right <= 0);
  await $('#open-sidebar').click();
  await page.waitForFunction(() => document.getElementById('sidebar').getBoundingClientRect().left >= 0);
  await sidebar.locator('.conversation-open', { hasText: 'Fruit chat' }).click();
  await page.waitForFunction(() => document.getElementById('sidebar').getBoundingClientRect().right <= 0);
  assert.equal(await $('#title').textContent(), 'Fruit chat');
  const composer = await $('#composer').boundingBox();
  assert.ok(composer.x >= 0 && composer.x + composer.width <= 390, 'the composer fits the screen');
  await shot('web-ui-phone.png');
  await page.setViewportSize({ width: 1280, height: 860 });
});

// --- run ------------------------------------------------------------------------

let failed = false;
for (const { name, run } of steps) {
  const started = Date.now();
  try {
    await run();
    assert.deepEqual(pageErrors, [], 'uncaught errors in the page');
    console.log(`ok - ${name} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
  } catch (error) {
    failed = true;
    console.log(`not ok - ${name}`);
    console.log(error);
    await shot('web-ui-failure.png').catch(() => {});
    break;
  }
}
await browser.close();
clearTimeout(watchdog);
console.log(failed ? 'browser test: FAILED' : `browser test: all ${steps.length} steps passed`);
process.exit(failed ? 1 : 0);
