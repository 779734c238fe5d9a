// dwv imports "magic-wand-tool" as an ES module; the page loads its script, which defines window.MagicWand.
export default window.MagicWand;
