// The guideline rule, evaluated from the table `eutirads.categories.rule_table()` exports
// (one rule, written once in Python; a browser test checks this against it on every
// combination). No knowledge of EU-TIRADS lives here, only how to read the table.
(function (global) {
  "use strict";
  // descriptors: {composition: "solid", ...}; nodule false: no nodule.
  // Returns {category, hits} (hits: the values that made the matching rule fire), or null
  // while a descriptor is still unset.
  function evaluate(table, descriptors, nodule) {
    if (nodule === false) return { category: table.no_nodule, hits: [] };
    for (const name of Object.keys(table.descriptors)) {
      if (!descriptors[name]) return null;
    }
    for (const rule of table.rules) {
      const names = Object.keys(rule.any);
      const hits = names.filter((n) => rule.any[n].indexOf(descriptors[n]) >= 0)
                        .map((n) => descriptors[n]);
      if (names.length === 0 || hits.length > 0) return { category: rule.category, hits: hits };
    }
    return null;
  }
  global.EutiradsRule = { evaluate: evaluate };
})(window);
