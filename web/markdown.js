// Model output as markdown, safely. A model's text is untrusted: it may
// hold `<img src=x onerror=...>` or `<script>` (typed by a user, echoed
// from a document, or just hallucinated), and none of it may become markup.
//
// Two layers, either enough on its own:
// 1. marked (web/vendor, see its README) parses the markdown, and our
//    renderer turns every raw HTML token into escaped text, so markup
//    shows literally, as the model wrote it.
// 2. marked's output is parsed in an inert <template> (no script runs, no
//    image loads there) and walked against an allowlist: only the tags
//    markdown makes survive, with only harmless attributes, links only to
//    http(s) and mailto. Anything else becomes plain text.
// The page's Content-Security-Policy (no inline script, nothing from
// elsewhere) is a third line behind these.

import { Marked } from './vendor/marked.esm.js';

function escapeHtml(text) {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

const marked = new Marked({
  gfm: true,
  breaks: true, // a model's single newlines are meant as line breaks
  renderer: {
    html({ text, block }) {
      return block ? `<p>${escapeHtml(text)}</p>` : escapeHtml(text);
    },
    // Images become links: no request leaves for a URL a model chose.
    image({ href, text }) {
      return `<a href="${escapeHtml(href ?? '')}">${escapeHtml(text || href || 'image')}</a>`;
    },
    checkbox({ checked }) {
      return checked ? '☑ ' : '☐ ';
    },
  },
});

/** Tag -> the attributes it may keep. */
const ALLOWED = {
  P: [], BR: [], HR: [], H1: [], H2: [], H3: [], H4: [], H5: [], H6: [],
  STRONG: [], EM: [], DEL: [], CODE: ['class'], PRE: [], BLOCKQUOTE: [],
  UL: [], OL: ['start'], LI: [], A: ['href', 'title'],
  TABLE: [], THEAD: [], TBODY: [], TR: [], TH: ['align'], TD: ['align'],
};

function attributeAllowed(tag, name, value) {
  if (!ALLOWED[tag].includes(name)) return false;
  if (name === 'href') return safeUrl(value);
  if (name === 'class') return /^language-[\w+#.-]+$/.test(value);
  if (name === 'start') return /^\d{1,9}$/.test(value);
  if (name === 'align') return /^(left|right|center)$/.test(value);
  return true;
}

function safeUrl(value) {
  try {
    return ['http:', 'https:', 'mailto:'].includes(new URL(value, location.href).protocol);
  } catch {
    return false;
  }
}

/** Keeps allowed elements and attributes; the rest becomes text. */
function sanitize(parent) {
  for (const node of [...parent.childNodes]) {
    if (node.nodeType === Node.TEXT_NODE) continue;
    if (node.nodeType !== Node.ELEMENT_NODE) {
      node.remove(); // comments, processing instructions
      continue;
    }
    if (!(node.tagName in ALLOWED)) {
      node.replaceWith(document.createTextNode(node.textContent));
      continue;
    }
    for (const { name, value } of [...node.attributes]) {
      if (!attributeAllowed(node.tagName, name, value)) node.removeAttribute(name);
    }
    if (node.tagName === 'A' && node.hasAttribute('href')) {
      node.target = '_blank';
      node.rel = 'noopener noreferrer';
    }
    sanitize(node);
  }
}

/** Each code block gets a bar with its language and a copy button. */
function decorateCodeBlocks(root) {
  for (const pre of root.querySelectorAll('pre')) {
    const code = pre.querySelector('code');
    const language = code?.className.match(/language-(\S+)/)?.[1] ?? 'text';
    const block = document.createElement('div');
    block.className = 'code-block';
    const bar = document.createElement('div');
    bar.className = 'code-bar';
    const label = document.createElement('span');
    label.textContent = language;
    const copy = document.createElement('button');
    copy.type = 'button';
    copy.className = 'copy-code';
    copy.textContent = 'Copy';
    bar.append(label, copy);
    pre.replaceWith(block);
    block.append(bar, pre);
  }
}

/** Renders `text` as markdown into `target`, replacing its children. */
export function renderMarkdown(text, target) {
  const template = document.createElement('template');
  // Inert: parsing into a template runs no script and loads nothing.
  template.innerHTML = marked.parse(text);
  sanitize(template.content);
  decorateCodeBlocks(template.content);
  target.replaceChildren(template.content);
}
