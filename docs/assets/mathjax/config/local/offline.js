/* MathJax 2 for the course site, offline: the jupyter-server-mathjax package ships the STIX-Web
   fonts only (the notebooks' formulas load MathJax with ?config=...,local/offline). */
MathJax.Hub.Config({
  "HTML-CSS": {availableFonts: [], preferredFont: null, webFont: "STIX-Web", imageFont: null},
  SVG: {font: "STIX-Web"}
});
MathJax.Ajax.loadComplete("[MathJax]/config/local/offline.js");
