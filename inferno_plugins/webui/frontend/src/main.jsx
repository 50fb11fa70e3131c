import { render } from 'preact';
import { useCallback, useEffect, useState } from 'preact/hooks';

import { AuthNeeded, listModels, onAuthNeeded, setApiKey } from './api.js';
import { Chat } from './chat.jsx';
import { Models } from './models.jsx';
import { Server } from './server.jsx';
import './style.css';

function route() {
  const parts = location.hash.replace(/^#\/?/, '').split('/');
  return { page: parts[0] || 'chat', arg: decodeURIComponent(parts.slice(1).join('/')) };
}

function KeyPrompt({ onSaved }) {
  const [key, setKey] = useState('');
  const submit = (e) => {
    e.preventDefault();
    setApiKey(key.trim());
    onSaved();
  };
  return (
    <div class="modal" role="dialog" aria-modal="true" aria-labelledby="key-title">
      <form class="card" onSubmit={submit}>
        <h2 id="key-title">This server needs an API key</h2>
        <p>It was started with <code>INFERNO_API_KEY</code>. The key is kept in this browser only.</p>
        <label>API key <input type="password" autoFocus value={key} onInput={(e) => setKey(e.target.value)} /></label>
        <button type="submit" class="primary" disabled={!key.trim()}>Save</button>
      </form>
    </div>
  );
}

function App() {
  const [where, setWhere] = useState(route());
  const [models, setModels] = useState(null);
  const [error, setError] = useState('');
  const [needKey, setNeedKey] = useState(false);
  const [epoch, setEpoch] = useState(0); // bumped when the key changes or a model is pulled / deleted

  useEffect(() => {
    const onHash = () => setWhere(route());
    addEventListener('hashchange', onHash);
    onAuthNeeded(() => setNeedKey(true));
    return () => removeEventListener('hashchange', onHash);
  }, []);

  const refresh = useCallback(() => setEpoch((n) => n + 1), []);

  useEffect(() => {
    listModels().then((m) => { setModels(m); setError(''); }).catch((e) => {
      if (!(e instanceof AuthNeeded)) setError(`could not list the models: ${e.message}`);
    });
  }, [epoch]);

  const navigate = (hash) => { location.hash = hash; };
  const tab = (page, label) => (
    <a href={`#/${page}`} class={where.page === page ? 'active' : ''} aria-current={where.page === page ? 'page' : undefined}>{label}</a>
  );
  return (
    <div class="app">
      <header>
        <span class="brand">Inferno</span>
        <nav>{tab('chat', 'Chat')}{tab('models', 'Models')}{tab('server', 'Server')}</nav>
      </header>
      {error && <div class="error" role="alert">{error}</div>}
      <main>
        {where.page === 'models' && <Models models={models} refresh={refresh} />}
        {where.page === 'server' && <Server epoch={epoch} />}
        {where.page !== 'models' && where.page !== 'server' &&
          <Chat models={models || []} conversationId={where.arg} navigate={navigate} epoch={epoch} />}
      </main>
      {needKey && <KeyPrompt onSaved={() => { setNeedKey(false); refresh(); }} />}
    </div>
  );
}

render(<App />, document.getElementById('app'));
