// The chat page: wires the conversation list, the thread, the composer,
// the settings dialog, the error banner and the metrics strip together.
// One answer streams at a time; Stop aborts its request, which closes the
// connection, and the server then aborts the sequence.

import { ApiError, listModels, streamChat, wireMessage } from './api.js';
import { fillIcons, icon } from './icons.js';
import { MetricsStrip } from './metrics.js';
import { ConversationStore, DEFAULT_SETTINGS, loadSettings, saveSettings } from './store.js';
import { answerStats, messageElement, updateMessageElement } from './thread.js';

const $ = (id) => document.getElementById(id);
const ui = {
  layout: $('layout'), backdrop: $('backdrop'), conversations: $('conversations'),
  title: $('title'), modelName: $('model-name'), messages: $('messages'), empty: $('empty'),
  thread: $('thread'), banner: $('banner'), bannerTitle: $('banner-title'),
  bannerMessage: $('banner-message'), bannerAction: $('banner-action'), composer: $('composer'),
  input: $('input'), send: $('send'), stop: $('stop'), settings: $('settings'),
  model: $('setting-model'), modelInfo: $('model-info'), system: $('setting-system'),
  temperature: $('setting-temperature'), temperatureValue: $('temperature-value'),
  topP: $('setting-top-p'), topPValue: $('top-p-value'), maxTokens: $('setting-max-tokens'),
  apiKey: $('setting-api-key'),
};

const store = new ConversationStore();
let settings = loadSettings();
let models = [];
/** The answer being generated: {conversationId, message, controller}. */
let generation = null;
let bannerActionHandler = null;
let modelsRetry = null;
/** The API key when the settings dialog opened: a new one reloads the models. */
let keyWhenOpened = '';
const metricsStrip = new MetricsStrip($('metrics'));

// --- persistence -------------------------------------------------------------

function persist() {
  try {
    store.save();
  } catch (e) {
    showBanner(new ApiError('storage', 'Could not save the conversations', `The browser refused: ${e.message}`));
  }
}

function updateSettings(changes) {
  settings = { ...settings, ...changes };
  try {
    saveSettings(settings);
  } catch {
    // Settings still apply to this page; only the reload would lose them.
  }
}

// --- banner --------------------------------------------------------------------

/** Shows an error clearly; `retry` (optional) becomes the banner's button. */
function showBanner(error, retry = null) {
  ui.bannerTitle.textContent = error.title ?? 'Error';
  ui.bannerMessage.textContent = error.message;
  ui.banner.dataset.kind = error.kind ?? 'error';
  let action = null;
  if (error.kind === 'auth') action = ['Enter API key', () => openSettings(ui.apiKey)];
  else if (error.kind === 'request') action = ['Open settings', () => openSettings()];
  else if (retry) action = ['Retry', retry];
  ui.bannerAction.hidden = !action;
  ui.bannerAction.textContent = action?.[0] ?? '';
  bannerActionHandler = action?.[1] ?? null;
  ui.banner.hidden = false;
}

function hideBanner() {
  ui.banner.hidden = true;
  bannerActionHandler = null;
}

// --- models --------------------------------------------------------------------

async function loadModels() {
  clearTimeout(modelsRetry);
  try {
    models = await listModels(settings.apiKey);
  } catch (e) {
    models = [];
    renderModels();
    showBanner(e, loadModels);
    // While the model loads the server answers 503: try again shortly.
    if (e.kind === 'unavailable' || e.kind === 'network') modelsRetry = setTimeout(loadModels, 3000);
    return;
  }
  if (['auth', 'unavailable', 'network'].includes(ui.banner.dataset.kind)) hideBanner();
  if (!models.some((m) => m.id === settings.model)) updateSettings({ model: models[0]?.id ?? '' });
  renderModels();
}

function renderModels() {
  ui.model.replaceChildren(...models.map((m) => new Option(m.id, m.id, false, m.id === settings.model)));
  ui.modelName.textContent = settings.model || 'no model';
  const info = models.find((m) => m.id === settings.model);
  ui.modelInfo.textContent = info?.maxModelLen ? `Context: ${info.maxModelLen} tokens` : '';
}

// --- rendering -----------------------------------------------------------------

function renderSidebar() {
  const items = store.sorted().map((conversation) => {
    const item = document.createElement('li');
    item.className = 'conversation';
    item.classList.toggle('active', conversation.id === store.activeId);
    item.dataset.id = conversation.id;
    const open = document.createElement('button');
    open.type = 'button';
    open.className = 'conversation-open';
    open.textContent = conversation.title;
    open.title = conversation.title;
    const rename = iconButton('rename', 'pencil', `Rename “${conversation.title}”`);
    const remove = iconButton('delete', 'trash', `Delete “${conversation.title}”`);
    item.append(open, rename, remove);
    return item;
  });
  ui.conversations.replaceChildren(...items);
}

function iconButton(className, iconName, label) {
  const button = document.createElement('button');
  button.type = 'button';
  button.className = `icon-button ${className}`;
  button.append(icon(iconName));
  button.setAttribute('aria-label', label);
  button.title = label;
  return button;
}

function renderThread() {
  const conversation = store.active;
  const messages = conversation?.messages ?? [];
  ui.title.textContent = conversation?.title ?? 'New chat';
  ui.empty.hidden = messages.length > 0;
  ui.thread.replaceChildren(...messages.map((m) => messageElement(m, m === generation?.message)));
  scrollToEnd(true);
}

let renderPending = false;
/** Re-renders the streaming answer at most once per frame. */
function scheduleAnswerRender() {
  if (renderPending) return;
  renderPending = true;
  requestAnimationFrame(() => {
    renderPending = false;
    if (!generation) return;
    const item = ui.thread.querySelector(`[data-id="${generation.message.id}"]`);
    if (!item) return; // another conversation is shown
    const pinned = isNearEnd();
    updateMessageElement(item, generation.message, true);
    scrollToEnd(pinned);
  });
}

function isNearEnd() {
  const m = ui.messages;
  return m.scrollHeight - m.scrollTop - m.clientHeight < 80;
}

function scrollToEnd(really) {
  if (really) ui.messages.scrollTop = ui.messages.scrollHeight;
}

function setGenerating(on) {
  ui.send.hidden = on;
  ui.stop.hidden = !on;
  ui.layout.classList.toggle('generating', on);
}

// --- chat ----------------------------------------------------------------------

async function send(text) {
  if (generation || !text.trim()) return;
  const conversation = store.active ?? store.create();
  store.append(conversation, { role: 'user', content: text.trim() });
  ui.input.value = '';
  autosize();
  persist();
  renderSidebar();
  await generate(conversation);
}

/** Streams an answer to the conversation as it stands. */
async function generate(conversation) {
  hideBanner();
  const messages = [];
  if (settings.systemPrompt.trim()) messages.push({ role: 'system', content: settings.systemPrompt });
  for (const m of conversation.messages) if (m.content || m.toolCalls?.length) messages.push(wireMessage(m));
  const message = store.append(conversation, { role: 'assistant', content: '', status: 'streaming' });
  generation = { conversationId: conversation.id, message, controller: new AbortController() };
  setGenerating(true);
  renderThread();
  metricsStrip.refresh();
  const clock = { startedAt: performance.now(), firstTokenAt: null, pieces: 0, usage: null };
  try {
    const { finishReason, usage } = await streamChat({
      apiKey: settings.apiKey,
      signal: generation.controller.signal,
      body: {
        model: settings.model || undefined,
        messages,
        temperature: settings.temperature,
        top_p: settings.topP,
        max_tokens: settings.maxTokens,
      },
      onDelta(text) {
        clock.firstTokenAt ??= performance.now();
        clock.pieces += 1;
        message.content += text;
        scheduleAnswerRender();
      },
      onToolCalls(calls) {
        clock.firstTokenAt ??= performance.now();
        clock.pieces += 1;
        message.toolCalls = calls;
        scheduleAnswerRender();
      },
    });
    clock.usage = usage;
    message.status = finishReason === 'length' ? 'length' : 'done';
  } catch (e) {
    if (e.name === 'AbortError') {
      message.status = 'stopped';
    } else {
      message.status = 'error';
      message.error = e.message;
      showBanner(e instanceof ApiError ? e : new ApiError('server', 'Something went wrong', String(e)),
        () => retry(conversation));
    }
  }
  message.stats = answerStats({ ...clock, endedAt: performance.now() });
  // A request that failed before any token leaves nothing worth keeping;
  // the banner says why and offers a retry.
  if (message.status === 'error' && !message.content && !message.toolCalls?.length) {
    conversation.messages = conversation.messages.filter((m) => m !== message);
  }
  generation = null;
  setGenerating(false);
  metricsStrip.refresh();
  persist();
  if (store.activeId === conversation.id) renderThread();
  ui.input.focus();
}

function retry(conversation) {
  if (generation || !store.get(conversation.id)) return;
  store.select(conversation.id);
  renderSidebar();
  generate(conversation);
}

function stop() {
  generation?.controller.abort();
}

// --- settings ------------------------------------------------------------------

function openSettings(focus = null) {
  ui.model.value = settings.model;
  ui.system.value = settings.systemPrompt;
  ui.temperature.value = settings.temperature;
  ui.topP.value = settings.topP;
  ui.maxTokens.value = settings.maxTokens;
  ui.apiKey.value = settings.apiKey;
  showSliderValues();
  keyWhenOpened = settings.apiKey;
  ui.settings.showModal();
  (focus ?? ui.system).focus();
}

function showSliderValues() {
  ui.temperatureValue.textContent = Number(ui.temperature.value).toFixed(2);
  ui.topPValue.textContent = Number(ui.topP.value).toFixed(2);
}

function readSettingsForm() {
  const maxTokens = Number.parseInt(ui.maxTokens.value, 10);
  updateSettings({
    model: ui.model.value || settings.model,
    systemPrompt: ui.system.value,
    temperature: Number(ui.temperature.value),
    topP: Number(ui.topP.value),
    maxTokens: maxTokens > 0 ? maxTokens : DEFAULT_SETTINGS.maxTokens,
    apiKey: ui.apiKey.value.trim(),
  });
  showSliderValues();
  renderModels();
}

// --- sidebar (a drawer at phone width) -----------------------------------------

function setSidebarOpen(open) {
  ui.layout.classList.toggle('sidebar-open', open);
  ui.backdrop.hidden = !open;
}

function startRename(item) {
  const conversation = store.get(item.dataset.id);
  const open = item.querySelector('.conversation-open');
  const field = document.createElement('input');
  field.className = 'rename-field';
  field.value = conversation.title;
  field.setAttribute('aria-label', 'Conversation name');
  let done = false;
  const finish = (keep) => {
    if (done) return;
    done = true;
    if (keep) store.rename(conversation.id, field.value);
    persist();
    renderSidebar();
    renderThread();
  };
  field.addEventListener('keydown', (event) => {
    if (event.key === 'Enter') finish(true);
    if (event.key === 'Escape') finish(false);
  });
  field.addEventListener('blur', () => finish(true));
  open.replaceWith(field);
  field.focus();
  field.select();
}

function removeConversation(id) {
  const conversation = store.get(id);
  if (!conversation || !confirm(`Delete “${conversation.title}”?`)) return;
  if (generation?.conversationId === id) stop();
  store.remove(id);
  persist();
  renderSidebar();
  renderThread();
}

// --- events --------------------------------------------------------------------

function autosize() {
  ui.input.style.height = 'auto';
  ui.input.style.height = `${Math.min(ui.input.scrollHeight, 200)}px`;
}

ui.composer.addEventListener('submit', (event) => {
  event.preventDefault();
  send(ui.input.value);
});
ui.input.addEventListener('keydown', (event) => {
  // Enter sends, Shift+Enter is a new line; never mid-composition (IME).
  if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    send(ui.input.value);
  }
  if (event.key === 'Escape' && generation) stop();
});
ui.input.addEventListener('input', autosize);
ui.stop.addEventListener('click', stop);

$('new-chat').addEventListener('click', () => {
  const current = store.active;
  if (!current || current.messages.length > 0) store.create();
  persist();
  renderSidebar();
  renderThread();
  setSidebarOpen(false);
  ui.input.focus();
});
ui.conversations.addEventListener('click', (event) => {
  const item = event.target.closest('.conversation');
  if (!item) return;
  if (event.target.closest('.rename')) startRename(item);
  else if (event.target.closest('.delete')) removeConversation(item.dataset.id);
  else if (event.target.closest('.conversation-open')) {
    store.select(item.dataset.id);
    persist();
    renderSidebar();
    renderThread();
    setSidebarOpen(false);
  }
});
ui.conversations.addEventListener('dblclick', (event) => {
  const item = event.target.closest('.conversation');
  if (item && event.target.closest('.conversation-open')) startRename(item);
});

ui.thread.addEventListener('click', async (event) => {
  const button = event.target.closest('.copy-code, .copy-message');
  if (!button) return;
  const message = store.active?.messages.find((m) => m.id === button.closest('.message').dataset.id);
  const source = button.classList.contains('copy-code')
    ? button.closest('.code-block').querySelector('code').textContent
    // An answer of tool calls only copies as its calls.
    : message?.content || (message?.toolCalls ? JSON.stringify(message.toolCalls, null, 2) : '');
  try {
    await navigator.clipboard.writeText(source);
    button.textContent = 'Copied';
  } catch {
    button.textContent = 'Copy failed';
  }
  setTimeout(() => (button.textContent = 'Copy'), 1500);
});

for (const suggestion of document.querySelectorAll('.suggestion')) {
  suggestion.addEventListener('click', () => send(suggestion.textContent));
}

$('open-sidebar').addEventListener('click', () => setSidebarOpen(true));
$('close-sidebar').addEventListener('click', () => setSidebarOpen(false));
ui.backdrop.addEventListener('click', () => setSidebarOpen(false));

$('open-settings').addEventListener('click', () => openSettings());
$('model-chip').addEventListener('click', () => openSettings(ui.model));
$('settings-form').addEventListener('input', readSettingsForm);
ui.settings.addEventListener('close', () => {
  readSettingsForm();
  if (keyWhenOpened !== settings.apiKey || models.length === 0) loadModels();
  ui.input.focus();
});
$('clear-all').addEventListener('click', () => {
  if (!confirm('Delete every conversation kept in this browser?')) return;
  stop();
  store.clear();
  persist();
  renderSidebar();
  renderThread();
});

ui.bannerAction.addEventListener('click', () => bannerActionHandler?.());
$('banner-close').addEventListener('click', hideBanner);

// --- start ---------------------------------------------------------------------

fillIcons();
renderSidebar();
renderThread();
renderModels();
loadModels();
metricsStrip.start();
ui.input.focus();
