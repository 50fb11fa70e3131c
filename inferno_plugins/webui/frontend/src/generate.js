// One answer: Ollama's /api/chat streamed as NDJSON. Stopping aborts the fetch, which closes the connection;
// the server then cancels the generation and frees its slot.
import { ndjson, request } from './api.js';

const NUMBERS = ['temperature', 'top_p', 'num_predict', 'num_ctx', 'seed'];

export function requestBody(conv, model) {
  const options = {};
  for (const k of NUMBERS) {
    const v = conv.options?.[k];
    if (v !== '' && v != null && !Number.isNaN(Number(v))) options[k] = Number(v);
  }
  let extra = {};
  if (conv.extra && conv.extra.trim()) {
    extra = JSON.parse(conv.extra); // checked when typed (settings.jsx): a fault here is reported as an error
  }
  const messages = [];
  if (conv.system && conv.system.trim()) messages.push({ role: 'system', content: conv.system });
  for (const m of conv.messages) {
    const out = { role: m.role, content: m.content || '' };
    if (m.images && m.images.length) out.images = m.images.map((src) => src.slice(src.indexOf(',') + 1));
    if (m.tool_calls) out.tool_calls = m.tool_calls;
    messages.push(out);
  }
  const body = { ...extra, model: conv.model, messages, stream: true,
    options: { ...(extra.options || {}), ...options } };
  if (conv.think && model && model.capabilities.includes('thinking')) body.think = true;
  return body;
}

export async function generate(conv, model, signal, onUpdate) {
  const answer = { role: 'assistant', content: '', thinking: '', streaming: true };
  const show = () => onUpdate({ ...conv, messages: [...conv.messages, { ...answer }] });
  show();
  const started = performance.now();
  let first = null;
  try {
    const res = await request('/api/chat', { method: 'POST', body: requestBody(conv, model), signal });
    for await (const chunk of ndjson(res)) {
      const m = chunk.message || {};
      if (first === null && (m.content || m.thinking)) first = performance.now();
      answer.content += m.content || '';
      answer.thinking += m.thinking || '';
      if (m.tool_calls) answer.tool_calls = [...(answer.tool_calls || []), ...m.tool_calls];
      if (chunk.done) {
        answer.stats = {
          tokens: chunk.eval_count,
          tokensPerSecond: chunk.eval_duration ? chunk.eval_count / (chunk.eval_duration / 1e9) : null,
          ttftMs: first !== null ? first - started : null,
          reason: chunk.done_reason,
        };
      }
      show();
    }
  } catch (e) {
    if (e.name === 'AbortError') answer.stopped = true;
    else answer.error = e.message;
  }
  delete answer.streaming;
  if (!answer.thinking) delete answer.thinking;
  return { ...conv, messages: [...conv.messages, answer] };
}
