// The guideline rule, evaluated from the table `eutirads.categories.rule_table()` exports
// (one rule, written once in Python; a browser test checks this file against Python's
// `classify` and `rule_path` on every combination). No knowledge of EU-TIRADS lives here,
// only how to read the table (its docstring says how).
(function (global) {
  "use strict";
  function holds(condition, descriptors) {
    return Object.keys(condition).every((n) => condition[n].indexOf(descriptors[n]) >= 0);
  }
  // descriptors: {composition: "solid", ...}; nodule false: no nodule. The category, or
  // null while a descriptor is still unset.
  function evaluate(table, descriptors, nodule) {
    if (nodule === false) return table.no_nodule_category;
    for (const name of Object.keys(table.descriptors)) {
      if (!descriptors[name]) return null;
    }
    for (const rule of table.rules) {
      if (rule.any_of.some((c) => holds(c, descriptors))) return rule.category;
    }
    return null;
  }
  // The rule path ("solid, markedly hypoechoic -> EU-TIRADS 5"). `say` may translate:
  // {words: {value: text}, high_risk: {value: text}, no_nodule: text, arrow: text}.
  function path(table, descriptors, nodule, say) {
    const category = evaluate(table, descriptors, nodule);
    if (category === null) return "";
    say = say || {};
    const p = table.path;
    const arrow = say.arrow || p.arrow;
    const label = p.label_format.replace("{category}", category);
    if (nodule === false) return (say.no_nodule || p.no_nodule) + arrow + label;
    const parts = p.descriptors.map((n) => (say.words && say.words[descriptors[n]]) || table.words[n][descriptors[n]]);
    for (const name of Object.keys(table.high_risk)) {
      const value = descriptors[name];
      if (p.descriptors.indexOf(name) < 0 && table.high_risk[name][value] !== undefined) {
        parts.push((say.high_risk && say.high_risk[value]) || table.high_risk[name][value]);
      }
    }
    return parts.join(p.separator) + arrow + label;
  }
  global.EutiradsRule = { evaluate: evaluate, path: path };
})(window);
