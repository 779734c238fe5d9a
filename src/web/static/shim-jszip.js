// dwv imports "jszip" as an ES module; the page loads JSZip's UMD build, which defines window.JSZip.
export default window.JSZip;
