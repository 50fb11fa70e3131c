import { useEffect, useRef, useState } from 'preact/hooks';

import { humanSize } from './api.js';
import { listConversations, newConversation, saveConversation } from './db.js';
import { generate } from './generate.js';
import { Message } from './message.jsx';
import { Settings } from './settings.jsx';
import { Sidebar } from './sidebar.jsx';

function modelLabel(m) {
  const d = m.details || {};
  const bits = [d.parameter_size, d.quantization_level, m.context ? `${Math.round(m.context / 1024)}K ctx` : '',
    humanSize(m.size), ...(m.capabilities || []).filter((c) => c !== 'completion')].filter(Boolean);
  return `${m.name} — ${bits.join(' · ')}`;
}

function readImage(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

export function Chat({ models, conversationId, navigate }) {
  const [conversations, setConversations] = useState([]);
  const [conv, setConv] = useState(null);
  const [input, setInput] = useState('');
  const [images, setImages] = useState([]);
  const [notice, setNotice] = useState('');
  const [busy, setBusy] = useState(false);
  const abort = useRef(null);
  const bottom = useRef(null);
  const current = useRef(null);
  current.current = conv;

  const reload = async (removed) => {
    const list = await listConversations();
    setConversations(list);
    if (removed && conv && removed === conv.id) navigate('#/chat');
    return list;
  };

  useEffect(() => { reload(); }, []);

  useEffect(() => {
    // open the conversation in the address (a reload finds it again), else a fresh one; the address of the
    // conversation shown changes when its first message saves it: nothing to reopen then
    if (current.current && current.current.id === conversationId) return;
    if (abort.current) abort.current.abort();
    listConversations().then((list) => {
      setConversations(list);
      const found = list.find((c) => c.id === conversationId);
      setConv(found || newConversation(models[0]?.name));
    });
  }, [conversationId]);

  useEffect(() => {
    if (conv && !conv.model && models.length) setConv({ ...conv, model: models[0].name });
  }, [models, conv && conv.id]);

  useEffect(() => { bottom.current?.scrollIntoView({ block: 'end' }); }, [conv && conv.messages]);

  useEffect(() => {
    const onKey = (e) => { if (e.key === 'Escape' && abort.current) abort.current.abort(); };
    addEventListener('keydown', onKey);
    return () => removeEventListener('keydown', onKey);
  }, []);

  if (!conv) return null;
  const model = models.find((m) => m.name === conv.model);
  const canSee = !!model && model.capabilities.includes('vision');

  const persist = async (c) => {
    const saved = { ...c, updated: Date.now() };
    await saveConversation(saved);
    setConv(saved);
    await reload();
    if (conversationId !== c.id) navigate(`#/chat/${encodeURIComponent(c.id)}`);
    return saved;
  };

  const run = async (c) => {
    const controller = new AbortController();
    abort.current = controller;
    setBusy(true);
    setNotice('');
    try {
      const final = await generate(c, model, controller.signal, (updated) => setConv(updated));
      await persist(final);
    } finally {
      abort.current = null;
      setBusy(false);
    }
  };

  const send = async () => {
    const text = input.trim();
    if (!text || busy) return;
    if (!conv.model) { setNotice('pick a model first'); return; }
    const user = { role: 'user', content: text, ...(images.length ? { images } : {}) };
    const title = conv.messages.length ? conv.title : text.slice(0, 48);
    setInput('');
    setImages([]);
    await run(await persist({ ...conv, title, messages: [...conv.messages, user] }));
  };

  const attach = async (files) => {
    const list = [...files].filter((f) => f.type.startsWith('image/'));
    if (!list.length) return;
    if (!canSee) {
      setNotice(`${conv.model || 'this model'} does not take images (it has no vision projector)`);
      return;
    }
    const read = await Promise.all(list.map(readImage));
    setImages((old) => [...old, ...read]);
  };

  const editAt = (index) => async (text) => {
    const messages = [...conv.messages.slice(0, index), { ...conv.messages[index], content: text }];
    await run(await persist({ ...conv, messages }));
  };

  const regenerate = async () => {
    const messages = conv.messages.slice(0, -1);
    await run(await persist({ ...conv, messages }));
  };

  const onKeyDown = (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      send();
    }
  };

  const lastAssistant = conv.messages.length - 1;
  return (
    <div class="chat-page">
      <Sidebar conversations={conversations} current={conv.id} onNew={() => navigate('#/chat')}
        onOpen={() => {}} onChanged={reload} />
      <section class="chat"
        onDragOver={(e) => e.preventDefault()}
        onDrop={(e) => { e.preventDefault(); attach(e.dataTransfer.files); }}>
        <div class="toolbar">
          <select aria-label="Model" value={conv.model} disabled={busy}
            onChange={(e) => setConv({ ...conv, model: e.target.value })}>
            {!models.length && <option value="">no models: pull one on the Models page</option>}
            {models.map((m) => <option key={m.name} value={m.name}>{modelLabel(m)}</option>)}
          </select>
          <Settings key={conv.id} conv={conv} model={model} onChange={(c) => (c.messages.length ? persist(c) : setConv(c))} />
        </div>
        <div class="messages" aria-live="polite">
          {conv.messages.length === 0 && <p class="empty">Ask {conv.model || 'a model'} anything.</p>}
          {conv.messages.map((m, i) => (
            <Message key={i} m={m} busy={busy} last={i === lastAssistant && m.role === 'assistant'}
              onEdit={editAt(i)} onRegenerate={regenerate} />
          ))}
          <div ref={bottom} />
        </div>
        {notice && <div class="error" role="alert">{notice}</div>}
        {images.length > 0 && (
          <div class="pending images">
            {images.map((src, i) => (
              <button type="button" key={i} aria-label="Remove image" onClick={() => setImages(images.filter((_, j) => j !== i))}>
                <img src={src} alt="to send" />
              </button>
            ))}
          </div>
        )}
        <form class="composer" onSubmit={(e) => { e.preventDefault(); send(); }}>
          <label class="button attach" title={canSee ? 'Attach images' : 'This model does not take images'}>
            Image<input type="file" accept="image/*" multiple hidden aria-label="Attach images"
              onChange={(e) => { attach(e.target.files); e.target.value = ''; }} />
          </label>
          <textarea aria-label="Message" placeholder="Message (Enter sends, Shift+Enter new line)" value={input}
            onInput={(e) => setInput(e.target.value)} onKeyDown={onKeyDown}
            onPaste={(e) => { if (e.clipboardData.files.length) { e.preventDefault(); attach(e.clipboardData.files); } }} />
          {busy
            ? <button type="button" class="stop" onClick={() => abort.current?.abort()}>Stop</button>
            : <button type="submit" class="primary" disabled={!input.trim()}>Send</button>}
        </form>
      </section>
    </div>
  );
}
