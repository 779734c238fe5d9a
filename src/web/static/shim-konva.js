// dwv imports "konva" as an ES module; the page loads Konva's UMD build, which defines window.Konva.
export default window.Konva;
