// Media upload with a progress bar: a folder (each file with its path) or one zip archive, sent with the
// session's CSRF token in a header; the server answers with the import report.
const form = document.getElementById('media-form');
const progress = document.getElementById('media-progress');
const status = document.getElementById('media-status');
const out = document.getElementById('media-report');
const text = (tag, value, cls) => {
  const el = document.createElement(tag);
  el.textContent = value;
  if (cls) el.className = cls;
  return el;
};
form.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const data = new FormData();
  const folder = document.getElementById('media-folder').files;
  const zip = document.getElementById('media-zip').files;
  if (zip.length) data.append('media', zip[0], zip[0].name);
  else for (const f of folder) data.append('media', f, f.webkitRelativePath || f.name);
  if (![...data.keys()].length) return;
  const xhr = new XMLHttpRequest();
  xhr.open('POST', '/app/media/upload');
  xhr.setRequestHeader('X-CSRF-Token', form.dataset.csrf);
  progress.hidden = false;
  out.replaceChildren();
  xhr.upload.onprogress = (e) => {
    if (e.lengthComputable) progress.value = Math.round((100 * e.loaded) / e.total);
    status.textContent = `${Math.round(e.loaded / 1048576)} Mo`;
  };
  xhr.upload.onload = () => {
    progress.removeAttribute('value');
    status.textContent = '…';
  };
  xhr.onload = () => {
    progress.hidden = true;
    let r;
    try {
      r = JSON.parse(xhr.responseText);
    } catch {
      r = { error: `HTTP ${xhr.status}` };
    }
    if (xhr.status !== 200) {
      status.replaceChildren(text('span', r.error || `HTTP ${xhr.status}`, 'error'));
      return;
    }
    status.textContent = `${r.instances} instance(s), ${r.studies.length} examen(s) (${r.kind})`;
    const list = document.createElement('ul');
    list.id = 'media-studies';
    for (const s of r.studies) {
      const li = text('li', `${s.studyUid} — ${s.instances} — ${s.outcome.state}${s.outcome.localId ? ` → ${s.outcome.localId}` : ''}${s.outcome.reason ? ` (${s.outcome.reason})` : ''}${s.outcome.error ? ` (${s.outcome.error})` : ''}`);
      li.dataset.state = s.outcome.state;
      list.append(li);
    }
    out.append(list);
    if (r.problems.length) {
      const p = document.createElement('ul');
      p.id = 'media-problems';
      for (const x of r.problems) p.append(text('li', `${x.file}: ${x.reason}`));
      out.append(p);
    }
  };
  xhr.onerror = () => {
    progress.hidden = true;
    status.replaceChildren(text('span', 'network error', 'error'));
  };
  xhr.send(data);
});
