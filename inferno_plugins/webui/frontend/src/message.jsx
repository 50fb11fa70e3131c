import { useLayoutEffect, useRef, useState } from 'preact/hooks';

import { renderMarkdown } from './markdown.js';

function copy(text) {
  if (navigator.clipboard) navigator.clipboard.writeText(text).catch(() => {});
}

// A rendered answer: sanitized markdown, with a copy button added to each code block after rendering
// (the buttons are ours, never part of the model's HTML).
function Markdown({ text }) {
  const ref = useRef(null);
  useLayoutEffect(() => {
    for (const pre of ref.current.querySelectorAll('pre')) {
      if (pre.querySelector(':scope > button.copy')) continue; // the HTML was kept (the text changed, not it)
      const button = document.createElement('button');
      button.type = 'button';
      button.className = 'copy';
      button.textContent = 'Copy';
      button.setAttribute('aria-label', 'Copy code');
      button.addEventListener('click', () => copy(pre.querySelector('code')?.textContent || pre.textContent));
      pre.appendChild(button);
    }
  }, [text]);
  return <div class="md" ref={ref} dangerouslySetInnerHTML={{ __html: renderMarkdown(text) }} />;
}

function Stats({ stats }) {
  if (!stats) return null;
  const parts = [];
  if (stats.tokens != null) parts.push(`${stats.tokens} tokens`);
  if (stats.tokensPerSecond) parts.push(`${stats.tokensPerSecond.toFixed(1)} tok/s`);
  if (stats.ttftMs != null) parts.push(`first token ${Math.round(stats.ttftMs)} ms`);
  if (stats.reason && stats.reason !== 'stop') parts.push(stats.reason);
  return <div class="stats">{parts.join(' · ')}</div>;
}

function ToolCalls({ calls }) {
  if (!calls || !calls.length) return null;
  return (
    <div class="tool-calls">
      {calls.map((c, i) => (
        <div class="tool-call" key={i}>
          <span class="label">Tool call</span> <code>{c.function?.name}</code>
          <pre>{JSON.stringify(c.function?.arguments ?? {}, null, 2)}</pre>
        </div>
      ))}
    </div>
  );
}

export function Message({ m, busy, last, onEdit, onRegenerate }) {
  const [editing, setEditing] = useState(false);
  const [draft, setDraft] = useState(m.content);
  if (m.role === 'user') {
    return (
      <div class="msg user" data-role="user">
        {editing ? (
          <form class="edit" onSubmit={(e) => { e.preventDefault(); setEditing(false); onEdit(draft); }}>
            <textarea aria-label="Edit message" value={draft} onInput={(e) => setDraft(e.target.value)} />
            <div class="row">
              <button type="submit" class="primary">Save and send</button>
              <button type="button" onClick={() => setEditing(false)}>Cancel</button>
            </div>
          </form>
        ) : (
          <>
            <div class="text">{m.content}</div>
            {m.images && m.images.length > 0 && (
              <div class="images">{m.images.map((src, i) => <img key={i} src={src} alt="attached" />)}</div>
            )}
            {!busy && (
              <div class="actions">
                <button type="button" aria-label="Edit" onClick={() => { setDraft(m.content); setEditing(true); }}>Edit</button>
              </div>
            )}
          </>
        )}
      </div>
    );
  }
  return (
    <div class={`msg assistant${m.streaming ? ' streaming' : ''}`} data-role="assistant">
      {m.thinking && (
        <details class="thinking">
          <summary>{m.streaming && !m.content ? 'Thinking…' : 'Thought'}</summary>
          <div class="thinking-text">{m.thinking}</div>
        </details>
      )}
      <ToolCalls calls={m.tool_calls} />
      <Markdown text={m.content} />
      {m.error && <div class="error" role="alert">{m.error}</div>}
      {m.stopped && <div class="stats">stopped</div>}
      <Stats stats={m.stats} />
      {!busy && (
        <div class="actions">
          <button type="button" aria-label="Copy answer" onClick={() => copy(m.content)}>Copy</button>
          {last && <button type="button" aria-label="Regenerate" onClick={onRegenerate}>Regenerate</button>}
        </div>
      )}
    </div>
  );
}
