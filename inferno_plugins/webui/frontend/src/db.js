// Conversations live in this browser's IndexedDB (nothing is kept on the server).
const DB = 'inferno-webui';
const STORE = 'conversations';
let opened = null;

function open() {
  if (!opened) {
    opened = new Promise((resolve, reject) => {
      const req = indexedDB.open(DB, 1);
      req.onupgradeneeded = () => req.result.createObjectStore(STORE, { keyPath: 'id' });
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
  }
  return opened;
}

async function run(mode, fn) {
  const db = await open();
  return new Promise((resolve, reject) => {
    const tx = db.transaction(STORE, mode);
    const req = fn(tx.objectStore(STORE));
    tx.oncomplete = () => resolve(req ? req.result : undefined);
    tx.onerror = () => reject(tx.error);
  });
}

export async function listConversations() {
  const all = await run('readonly', (s) => s.getAll());
  return all.sort((a, b) => b.updated - a.updated);
}

export const saveConversation = (c) => run('readwrite', (s) => s.put(c));
export const deleteConversation = (id) => run('readwrite', (s) => s.delete(id));

export function newConversation(model) {
  return {
    id: crypto.randomUUID(), title: 'New chat', model: model || '', system: '', messages: [],
    options: { temperature: '', top_p: '', num_predict: '', num_ctx: '', seed: '' }, extra: '', think: false,
    updated: Date.now(),
  };
}

// Import: a list of conversations as exported; each needs an id and a list of messages.
export function validConversations(data) {
  const list = Array.isArray(data) ? data : data && data.conversations;
  if (!Array.isArray(list)) throw new Error('not an Inferno export: expected a list of conversations');
  return list.filter((c) => c && typeof c.id === 'string' && Array.isArray(c.messages)).map((c) => ({
    ...newConversation(c.model), ...c, updated: Number(c.updated) || Date.now(),
  }));
}
