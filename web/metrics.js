// The live strip of the server's state, read from GET /metrics (Prometheus
// or OpenMetrics text) every two seconds while the tab is visible.
// Metrics that this server does not (yet) expose show as a dash.

const POLL_MS = 2000;

/**
 * Parses exposition text into samples [{name, labels, value}]. Comment
 * lines (# HELP, # TYPE, # EOF) are skipped; label values may hold
 * spaces, commas, braces and escaped quotes.
 */
export function parseMetrics(text) {
  const samples = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const name = line.match(/^[a-zA-Z_:][a-zA-Z0-9_:]*/)?.[0];
    if (!name) continue;
    let rest = line.slice(name.length);
    const labels = {};
    if (rest.startsWith('{')) {
      const end = parseLabels(rest, labels);
      if (end < 0) continue;
      rest = rest.slice(end);
    }
    const value = parseValue(rest.trim().split(/\s+/)[0]);
    if (!Number.isNaN(value)) samples.push({ name, labels, value });
  }
  return samples;
}

/** Fills `labels` from `{a="x",b="y"}` at the start of `text`; returns the index after `}`, or -1. */
function parseLabels(text, labels) {
  const pattern = /\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?/y;
  pattern.lastIndex = 1;
  for (;;) {
    if (text[pattern.lastIndex] === '}') return pattern.lastIndex + 1;
    const match = pattern.exec(text);
    if (!match) return -1;
    labels[match[1]] = match[2].replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c));
  }
}

function parseValue(text) {
  if (text === '+Inf' || text === 'Inf') return Infinity;
  if (text === '-Inf') return -Infinity;
  return Number(text);
}

/** The sum of `name` over every label set matching `where`; null when absent. */
export function total(samples, name, where = {}) {
  let sum = null;
  for (const sample of samples) {
    if (sample.name !== name) continue;
    if (Object.entries(where).some(([k, v]) => sample.labels[k] !== v)) continue;
    sum = (sum ?? 0) + sample.value;
  }
  return sum;
}

/** Polls /metrics and shows it in the strip's elements (ids metric-*). */
export class MetricsStrip {
  constructor(root) {
    this.root = root;
    this.active = false; // wanted: the tab is visible
    this.polling = false; // the loop runs
    this.wake = null; // ends the loop's current wait
    this.previous = null; // {at, generated} of the last poll, for a rate
    document.addEventListener('visibilitychange', () => {
      if (document.hidden) this.stop();
      else this.start();
    });
  }

  start() {
    if (this.active || document.hidden) return;
    this.active = true;
    if (this.polling) this.wake?.();
    else this.loop();
  }

  stop() {
    this.active = false;
    this.wake?.();
  }

  /** Polls now rather than at the next tick (a request started or ended). */
  refresh() {
    if (this.active) this.wake?.();
  }

  async loop() {
    this.polling = true;
    while (this.active) {
      await this.poll();
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, POLL_MS);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    this.polling = false;
  }

  async poll() {
    try {
      const response = await fetch('/metrics', { cache: 'no-store', signal: AbortSignal.timeout(POLL_MS * 2) });
      if (response.status === 503) {
        this.showStatus('loading', 'loading model');
      } else if (!response.ok) {
        this.showStatus('error', `metrics: HTTP ${response.status}`);
      } else {
        this.show(parseMetrics(await response.text()));
      }
    } catch {
      this.showStatus('offline', 'server unreachable');
      this.previous = null;
    }
  }

  showStatus(state, text) {
    this.root.dataset.state = state;
    this.set('status', text);
  }

  show(samples) {
    this.showStatus('ready', 'ready');
    const running = total(samples, 'vllm:num_requests_running');
    const waiting = total(samples, 'vllm:num_requests_waiting');
    this.set('running', format(running));
    this.set('waiting', format(waiting));
    this.root.dataset.busy = running > 0 ? 'true' : 'false';

    const used = total(samples, 'wgserve:kv_cache_blocks_used');
    const blocks = total(samples, 'wgserve:kv_cache_blocks_total');
    const usage = total(samples, 'vllm:kv_cache_usage_perc');
    if (used !== null && blocks !== null) this.set('kv', `${format(used)} / ${format(blocks)}`);
    else this.set('kv', usage === null ? null : `${(usage * 100).toFixed(1)} %`);

    const queries = total(samples, 'vllm:prefix_cache_queries_total');
    const hits = total(samples, 'vllm:prefix_cache_hits_total');
    this.set('prefix', queries ? `${((100 * hits) / queries).toFixed(1)} %` : null);

    const generated = total(samples, 'vllm:generation_tokens_total');
    const now = performance.now();
    if (generated !== null && this.previous) {
      const rate = (generated - this.previous.generated) / ((now - this.previous.at) / 1000);
      this.set('throughput', `${Math.max(0, rate).toFixed(1)} tok/s`);
    } else {
      this.set('throughput', null);
    }
    this.previous = generated === null ? null : { at: now, generated };
  }

  set(id, text) {
    const value = this.root.querySelector(`#metric-${id} .value`);
    if (value) value.textContent = text ?? '–';
  }
}

function format(value) {
  return value === null ? null : Number.isInteger(value) ? String(value) : value.toFixed(2);
}
