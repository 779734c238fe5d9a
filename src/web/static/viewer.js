// OpenDRIM viewer page: dwv (DICOM Web Viewer) over OpenDRIM's own WADO-RS for the exam opened.
// Each instance is asked for separately (single-part application/dicom), several at a time, while the server
// brings the series from the source DRIMbox in one series-level request and answers each instance request as
// soon as it has arrived: the first image shows before the series is complete. (dwv's multipart loader reads
// one multipart response as the whole data set, so it cannot be fed instance by instance.)
import { App, AppOptions, ViewConfig, ToolConfig } from '/app/static/dwv.min.js';

const ACCEPT = { name: 'Accept', value: 'application/dicom' };
const root = document.getElementById('viewer');
const status = document.getElementById('status');
const seriesList = document.getElementById('series-list');
let currentTool = 'Scroll';

function makeApp(layerGroupId) {
  const app = new App();
  const options = new AppOptions({ '*': [new ViewConfig(layerGroupId)] });
  options.tools = {
    Scroll: new ToolConfig(),
    WindowLevel: new ToolConfig(),
    ZoomAndPan: new ToolConfig(),
    Draw: new ToolConfig(['Ruler']),
  };
  app.init(options);
  let loaded = 0;
  app.addEventListener('loaditem', () => {
    loaded += 1;
    root.dataset[`loaded${layerGroupId.slice(-1)}`] = String(loaded);
  });
  app.addEventListener('load', () => useTool(app, currentTool));
  app.addEventListener('loadend', () => {
    root.dataset[`complete${layerGroupId.slice(-1)}`] = 'true';
    status.textContent = '';
  });
  app.addEventListener('error', (e) => {
    status.textContent = `Erreur de chargement : ${e.error?.message ?? e.message ?? ''}`;
  });
  return app;
}

// Measurements live in an annotation data set over the image (dwv >= 0.35): create it the first time the
// ruler is chosen for the image shown.
function useTool(app, tool) {
  if (tool === 'Draw') {
    const group = app.getActiveLayerGroup();
    const viewLayer = group?.getActiveViewLayer();
    if (viewLayer && !group.getActiveDrawLayer()) {
      const refId = viewLayer.getDataId();
      app.addAndRenderAnnotationData(app.createAnnotationData(refId), group.getDivId(), refId);
    }
  }
  app.setTool(tool);
  if (tool === 'Draw') app.setToolFeatures({ shapeName: 'Ruler' });
}

const apps = [makeApp('layerGroup0')];
// For support and automated checks: the dwv applications of the page.
window.opendrimViewer = { apps };

function load(app, series, index) {
  root.dataset[`loaded${index}`] = '0';
  delete root.dataset[`complete${index}`];
  app.reset();
  status.textContent = `${series.count} images…`;
  app.loadURLs(series.instances, { requestHeaders: [ACCEPT], batchSize: 8 });
}

async function manifest(url) {
  const res = await fetch(url, { headers: { accept: 'application/json' }, credentials: 'same-origin' });
  if (!res.ok) throw new Error(`${res.status} ${await res.text()}`);
  return res.json();
}

async function main() {
  const exam = await manifest(root.dataset.manifest);
  seriesList.replaceChildren(
    ...exam.series.map((s, i) => {
      const b = document.createElement('button');
      b.textContent = `Série ${s.label} · ${s.count} im.`;
      b.dataset.series = s.seriesUid;
      b.addEventListener('click', () => {
        for (const other of seriesList.children) other.classList.toggle('active', other === b);
        load(apps[0], s, 0);
      });
      if (i === 0) b.classList.add('active');
      return b;
    }),
  );
  if (exam.series[0]) load(apps[0], exam.series[0], 0);
}

for (const button of document.querySelectorAll('#toolbar [data-tool]')) {
  button.addEventListener('click', () => {
    currentTool = button.dataset.tool;
    for (const b of document.querySelectorAll('#toolbar [data-tool]')) b.classList.toggle('active', b === button);
    for (const app of apps) {
      try {
        useTool(app, currentTool);
      } catch (err) {
        status.textContent = `Outil indisponible : ${err.message}`;
      }
    }
  });
}
document.getElementById('reset').addEventListener('click', () => apps.forEach((a) => a.resetDisplay()));

// Side by side: the prior exam's first series in a second pane.
document.getElementById('compare').addEventListener('change', async (e) => {
  const pane = document.getElementById('pane1');
  const url = e.target.value;
  // The first pane changes size: dwv must fit its view to the new container.
  const refit = () => requestAnimationFrame(() => apps.forEach((a) => a.onResize()));
  if (!url) {
    pane.classList.add('hidden');
    refit();
    return;
  }
  pane.classList.remove('hidden');
  if (!apps[1]) apps.push(makeApp('layerGroup1'));
  refit();
  try {
    const prior = await manifest(url);
    if (prior.series[0]) load(apps[1], prior.series[0], 1);
  } catch (err) {
    status.textContent = `Comparaison impossible : ${err.message}`;
  }
});

window.addEventListener('resize', () => apps.forEach((a) => a.onResize()));

main().catch((err) => {
  status.textContent = `Erreur : ${err.message}`;
});
