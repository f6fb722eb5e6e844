/* MathJax 3 for the notebooks' formulas, offline: mkdocs-jupyter loads this file as its MathJax URL
   (mkdocs.yml); it configures MathJax like Jupyter does and loads the SVG renderer (no web fonts,
   so it works from disk too) from assets/mathjax/, which make site copies from the
   django-static-mathjax package. */
window.MathJax = {
  tex: {
    inlineMath: [["$", "$"], ["\\(", "\\)"]],
    displayMath: [["$$", "$$"], ["\\[", "\\]"]],
    processEscapes: true,
    processEnvironments: true,
    tags: "ams"
  },
  svg: {fontCache: "global"}
};
(function () {
  var script = document.createElement("script");
  script.src = new URL("mathjax/tex-svg-full.js", document.currentScript.src).href;
  script.async = true;
  document.head.appendChild(script);
})();
