// Conversations and settings, kept in this browser's localStorage so that
// they survive a reload. Nothing here talks to the server.
//
// A conversation: {id, title, createdAt, updatedAt, messages}; a message:
// {id, role: 'user'|'assistant', content, status?, stats?, error?,
// toolCalls?}, where status is 'done', 'stopped', 'error' or 'length' for
// answers, and toolCalls an answer's tool calls in OpenAI's shape
// ([{id, type: 'function', function: {name, arguments}}]).

const CONVERSATIONS_KEY = 'wgserve.conversations.v1';
const SETTINGS_KEY = 'wgserve.settings.v1';

export const DEFAULT_SETTINGS = Object.freeze({
  model: '',
  systemPrompt: '',
  temperature: 0.7,
  topP: 1,
  maxTokens: 512,
  apiKey: '',
});

function readJson(key, fallback) {
  try {
    const text = localStorage.getItem(key);
    return text === null ? fallback : JSON.parse(text);
  } catch {
    // Unreadable (private mode, or edited by hand): start afresh.
    return fallback;
  }
}

/** Throws when the browser refuses (quota): the caller shows it. */
function writeJson(key, value) {
  localStorage.setItem(key, JSON.stringify(value));
}

export function newId() {
  return crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random().toString(16).slice(2)}`;
}

export function loadSettings() {
  return { ...DEFAULT_SETTINGS, ...readJson(SETTINGS_KEY, {}) };
}

export function saveSettings(settings) {
  writeJson(SETTINGS_KEY, settings);
}

export class ConversationStore {
  constructor() {
    const saved = readJson(CONVERSATIONS_KEY, {});
    this.conversations = Array.isArray(saved.conversations) ? saved.conversations : [];
    this.activeId = saved.activeId ?? null;
    if (!this.get(this.activeId)) this.activeId = this.conversations[0]?.id ?? null;
    // An answer still streaming when the page went away was cut there.
    for (const message of this.conversations.flatMap((c) => c.messages)) {
      if (message.status === 'streaming') message.status = 'stopped';
    }
  }

  save() {
    writeJson(CONVERSATIONS_KEY, { conversations: this.conversations, activeId: this.activeId });
  }

  get(id) {
    return this.conversations.find((c) => c.id === id) ?? null;
  }

  get active() {
    return this.get(this.activeId);
  }

  /** Most recently used first. */
  sorted() {
    return [...this.conversations].sort((a, b) => b.updatedAt - a.updatedAt);
  }

  create() {
    const now = Date.now();
    const conversation = { id: newId(), title: 'New chat', createdAt: now, updatedAt: now, messages: [] };
    this.conversations.push(conversation);
    this.activeId = conversation.id;
    return conversation;
  }

  select(id) {
    if (this.get(id)) this.activeId = id;
  }

  rename(id, title) {
    const conversation = this.get(id);
    const trimmed = title.trim();
    if (conversation && trimmed) conversation.title = trimmed.slice(0, 120);
  }

  remove(id) {
    this.conversations = this.conversations.filter((c) => c.id !== id);
    if (this.activeId === id) this.activeId = this.sorted()[0]?.id ?? null;
  }

  clear() {
    this.conversations = [];
    this.activeId = null;
  }

  /** Appends a message; a first user message also names the conversation. */
  append(conversation, message) {
    const stored = { id: newId(), ...message };
    conversation.messages.push(stored);
    conversation.updatedAt = Date.now();
    if (message.role === 'user' && conversation.title === 'New chat') {
      conversation.title = titleFrom(message.content);
    }
    return stored;
  }
}

function titleFrom(text) {
  const line = text.trim().split('\n')[0].replace(/\s+/g, ' ');
  return line.length > 48 ? `${line.slice(0, 47)}…` : line || 'New chat';
}
