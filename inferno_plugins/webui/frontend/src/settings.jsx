import { useState } from 'preact/hooks';

const FIELDS = [
  ['temperature', 'Temperature', '0.8', '0.05'],
  ['top_p', 'Top p', '0.9', '0.05'],
  ['num_predict', 'Max tokens', 'unlimited', '1'],
  ['num_ctx', 'Context length', 'model default', '256'],
  ['seed', 'Seed', 'random', '1'],
];

// The conversation's system prompt and sampling parameters, plus raw JSON merged into each /api/chat body
// (any Ollama field: options.grammar, format, tools…).
export function Settings({ conv, model, onChange }) {
  const [extraError, setExtraError] = useState('');
  const set = (patch) => onChange({ ...conv, ...patch });
  const setOption = (k, v) => set({ options: { ...conv.options, [k]: v } });
  const setExtra = (text) => {
    try {
      if (text.trim()) {
        const parsed = JSON.parse(text);
        if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('expected an object');
      }
      setExtraError('');
      set({ extra: text });
    } catch (e) {
      setExtraError(`not used: ${e.message}`);
    }
  };
  const thinks = model && model.capabilities.includes('thinking');
  return (
    <details class="settings">
      <summary>Settings</summary>
      <div class="settings-body">
        <label class="wide">System prompt
          <textarea aria-label="System prompt" value={conv.system} onInput={(e) => set({ system: e.target.value })} />
        </label>
        {FIELDS.map(([k, label, placeholder, step]) => (
          <label key={k}>{label}
            <input type="number" step={step} placeholder={placeholder} value={conv.options?.[k] ?? ''}
              onInput={(e) => setOption(k, e.target.value)} />
          </label>
        ))}
        {thinks && (
          <label class="check"><input type="checkbox" checked={!!conv.think}
            onChange={(e) => set({ think: e.target.checked })} /> Think (show the reasoning)</label>
        )}
        <label class="wide">Extra request JSON
          <textarea aria-label="Extra request JSON" placeholder='{"options": {"grammar": "…"}}'
            defaultValue={conv.extra} onInput={(e) => setExtra(e.target.value)} />
          {extraError && <span class="error">{extraError}</span>}
        </label>
      </div>
    </details>
  );
}
