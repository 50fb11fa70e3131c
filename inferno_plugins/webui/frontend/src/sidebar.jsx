import { useState } from 'preact/hooks';

import { deleteConversation, saveConversation, validConversations } from './db.js';

function download(name, text) {
  const url = URL.createObjectURL(new Blob([text], { type: 'application/json' }));
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

export function Sidebar({ conversations, current, onOpen, onNew, onChanged }) {
  const [query, setQuery] = useState('');
  const [notice, setNotice] = useState('');
  const q = query.trim().toLowerCase();
  const shown = q
    ? conversations.filter((c) => c.title.toLowerCase().includes(q) ||
        c.messages.some((m) => (m.content || '').toLowerCase().includes(q)))
    : conversations;

  const rename = async (c) => {
    const title = prompt('Rename the conversation', c.title);
    if (title && title.trim()) {
      await saveConversation({ ...c, title: title.trim() });
      onChanged();
    }
  };
  const remove = async (c) => {
    if (confirm(`Delete "${c.title}"?`)) {
      await deleteConversation(c.id);
      onChanged(c.id);
    }
  };
  const importFile = async (e) => {
    const file = e.target.files[0];
    e.target.value = '';
    if (!file) return;
    try {
      const list = validConversations(JSON.parse(await file.text()));
      for (const c of list) await saveConversation(c);
      setNotice(`imported ${list.length} conversation${list.length === 1 ? '' : 's'}`);
      onChanged();
    } catch (err) {
      setNotice(`import failed: ${err.message}`);
    }
  };
  return (
    <aside class="sidebar">
      <button type="button" class="primary" onClick={onNew}>New chat</button>
      <input type="search" placeholder="Search conversations" aria-label="Search conversations" value={query}
        onInput={(e) => setQuery(e.target.value)} />
      <ul class="conversations">
        {shown.map((c) => (
          <li key={c.id} class={c.id === current ? 'active' : ''}>
            <a href={`#/chat/${encodeURIComponent(c.id)}`} onClick={() => onOpen(c.id)}>{c.title}</a>
            <button type="button" aria-label={`Rename ${c.title}`} title="Rename" onClick={() => rename(c)}>✎</button>
            <button type="button" aria-label={`Delete ${c.title}`} title="Delete" onClick={() => remove(c)}>✕</button>
          </li>
        ))}
      </ul>
      <div class="row">
        <button type="button" onClick={() => download('inferno-conversations.json',
          JSON.stringify({ conversations }, null, 2))}>Export</button>
        <label class="button">Import<input type="file" accept="application/json,.json" hidden aria-label="Import conversations" onChange={importFile} /></label>
      </div>
      {notice && <div class="notice" role="status">{notice}</div>}
    </aside>
  );
}
