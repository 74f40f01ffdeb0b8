// The guideline's rule in the browser, read from `categories.rule_table()` (site.json's
// "rule"): the category of a set of descriptor values and the one-line reason, as
// `categories.classify` and `categories.rule_path` give them. Nothing of the rule is
// written here; a browser test checks every combination of values against Python.

// values: {composition: "solid", ...}, or {nodule: false}
export function ruleCategory(table, values) {
  if (values.nodule === false) return table.no_nodule_category;
  for (const rule of table.rules) {
    const holds = rule.any_of.some((condition) =>
      Object.entries(condition).every(([name, allowed]) => allowed.includes(values[name])));
    if (holds) return rule.category;
  }
  throw new Error("the rule table has no rule that always applies");
}

export function rulePath(table, values) {
  const path = table.path;
  const category = ruleCategory(table, values);
  const label = path.label_format.replace("{category}", String(category));
  if (values.nodule === false) return `${path.no_nodule}${path.arrow}${label}`;
  const parts = path.descriptors.map((name) => table.words[name][values[name]]);
  for (const [name, said] of Object.entries(table.high_risk)) {
    if (!path.descriptors.includes(name) && values[name] in said) parts.push(said[values[name]]);
  }
  return `${parts.join(path.separator)}${path.arrow}${label}`;
}
