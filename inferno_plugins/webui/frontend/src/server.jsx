import { useEffect, useState } from 'preact/hooks';

import { AuthNeeded, getJSON, humanSize, postJSON } from './api.js';

const POINTS = 60;


function Chart({ values }) {
  const max = Math.max(1, ...values);
  const w = 600;
  const h = 160;
  const step = w / (POINTS - 1);
  const start = POINTS - values.length;
  const pts = values.map((v, i) => `${((start + i) * step).toFixed(1)},${(h - (v / max) * (h - 10)).toFixed(1)}`);
  const now = values.length ? values[values.length - 1] : 0;
  return (
    <figure class="chart">
      <svg viewBox={`0 0 ${w} ${h}`} preserveAspectRatio="none" role="img" aria-label={`tokens per second, now ${now.toFixed(1)}`}>
        <line x1="0" y1={h - 0.5} x2={w} y2={h - 0.5} class="axis" />
        {pts.length > 1 && <polyline points={[`${start * step},${h}`, ...pts, `${w},${h}`].join(' ')} class="area" />}
        {pts.length > 1 && <polyline points={pts.join(' ')} class="line" />}
      </svg>
      <figcaption><strong class="tps">{now.toFixed(1)}</strong> tokens/s now · peak {max.toFixed(1)} over the last minute</figcaption>
    </figure>
  );
}

function Slots({ used, total }) {
  const boxes = [];
  for (let i = 0; i < (total || 0); i += 1) boxes.push(<span key={i} class={i < used ? 'slot used' : 'slot'} />);
  return <span class="slots" aria-label={`${used} of ${total} slots in use`}>{boxes}</span>;
}

export function Server({ epoch }) {
  const [ps, setPs] = useState(null);
  const [version, setVersion] = useState('');
  const [rates, setRates] = useState([]);
  const [error, setError] = useState('');

  useEffect(() => {
    getJSON('/api/version').then((v) => setVersion(v.inferno_version || v.version)).catch(() => {});
    let stopped = false;
    const tick = async () => {
      try {
        const p = await getJSON('/api/ps');
        if (stopped) return;
        const models = p.models || [];
        setPs(models);
        // each model's engine reports its decode rate over the last seconds, all slots together
        const rate = models.reduce((sum, m) => sum + (m.tokens_per_second || 0), 0);
        setRates((old) => [...old, rate].slice(-POINTS));
        setError('');
      } catch (e) {
        if (!(e instanceof AuthNeeded)) setError(e.message);
      }
    };
    tick();
    const timer = setInterval(() => { if (!document.hidden) tick(); }, 1000);
    return () => { stopped = true; clearInterval(timer); };
  }, [epoch]);

  const unload = async (name) => {
    try { await postJSON('/api/generate', { model: name, keep_alive: 0 }); } catch (e) { setError(e.message); }
  };
  const total = (ps || []).reduce((s, m) => s + (m.size || 0), 0);
  return (
    <div class="page server-page">
      {error && <div class="error" role="alert">{error}</div>}
      <div class="card">
        <h2>Generation</h2>
        <Chart values={rates} />
      </div>
      <div class="card">
        <h2>Loaded models <span class="muted">{humanSize(total)} in memory{version ? ` · Inferno ${version}` : ''}</span></h2>
        {ps && ps.length === 0 && <p class="muted">No model is loaded; one loads on its first request.</p>}
        <ul class="loaded">
          {(ps || []).map((m) => (
            <li key={m.name} class="loaded-model" data-model={m.name} data-slots-in-use={m.slots_in_use ?? 0}>
              <div class="model-head">
                <strong>{m.name}</strong>
                <span class={`state ${m.state || ''}`}>{m.state}</span>
                <button type="button" onClick={() => unload(m.name)}>Unload</button>
              </div>
              {m.error && <div class="error">{m.error}</div>}
              <div class="memory"><div class="fill" style={{ width: `${total ? (100 * m.size) / total : 0}%` }} /></div>
              <div class="muted">
                {humanSize(m.size)} · context {m.context_length} · slots <Slots used={m.slots_in_use || 0} total={m.slots || 0} />
                {' '}{m.slots_in_use || 0}/{m.slots || 0} in use · {m.queued || 0} queued
                {m.tokens_per_second ? ` · ${m.tokens_per_second.toFixed(1)} tok/s` : ''}
              </div>
            </li>
          ))}
        </ul>
      </div>
    </div>
  );
}
